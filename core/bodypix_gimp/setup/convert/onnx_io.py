"""What every converter shares: the ONNX opset and IR version, the error, the atomic write."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

OPSET = 13
IR_VERSION = 7  # the lowest IR for opset 13: loads in every onnxruntime >= 1.7


class ConversionError(ValueError):
    """The tfjs model cannot be converted; the message names the file and the node."""


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
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".part", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
