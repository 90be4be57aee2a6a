"""What every converter shares: the ONNX opset and IR version, the error, the atomic write."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...imageio import atomic_write

# Resize, Split/Squeeze/Unsqueeze with tensor inputs, ReduceMean with an axes attribute
OPSET = 13
IR_VERSION = 7  # the lowest IR for opset 13: loads in every onnxruntime >= 1.7


class ConversionError(ValueError):
    """The tfjs model cannot be converted; the message names the file and the node."""


def missing_package(package: str, kind: str) -> ConversionError:
    """The error for a converter package that is not installed (the optional ``convert`` extra)."""
    return ConversionError(f"converting {kind} models needs the {package!r} package: "
                           "pip install 'bodypix-gimp[convert]'")


def resize_coordinates(op: str, align_corners: bool, half_pixel_centers: bool) -> str:
    """ONNX Resize ``coordinate_transformation_mode`` of a TF ResizeBilinear/NearestNeighbor."""
    if align_corners:
        return "align_corners"
    if half_pixel_centers:
        return "half_pixel" if op == "ResizeBilinear" else "tf_half_pixel_for_nn"
    return "asymmetric"


def write_onnx(model: Any, out_path: str | os.PathLike[str], check: bool = True) -> Path:
    """Check an ONNX model and write it atomically (temp file + rename): a failed run leaves nothing."""
    import onnx

    if check:
        onnx.checker.check_model(model)
    out = Path(out_path)
    atomic_write(out, lambda tmp: tmp.write_bytes(model.SerializeToString()))
    return out


def make_model(graph: Any, producer: str) -> Any:
    """The ``ModelProto`` around a converted graph, at OPSET and IR_VERSION."""
    from onnx import helper

    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                             producer_name=producer, ir_version=IR_VERSION)
