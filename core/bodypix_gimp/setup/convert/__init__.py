"""TF.js and TFLite model files to ONNX (no TensorFlow).

``tfjs`` reads TF.js weights and converts BodyPix's layer graphs; ``tfjs_graph`` converts
general TF.js graphs (run-time shapes, conditionals: Robust Video Matting); ``tflite``
converts MediaPipe's .tflite files; ``onnx_io`` holds what they share.  :func:`convert_file`
is the one entry point for TF.js files: graphs with any op of :data:`GRAPH_ONLY_OPS` go to
``tfjs_graph``, the rest (BodyPix, MediaPipe Selfie) keep the NCHW layer conversion.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .onnx_io import ConversionError, write_onnx
from .tfjs import build_onnx, read_weights
from .tfjs_graph import build_graph_onnx

__all__ = ["ConversionError", "convert", "convert_file", "needs_graph_converter", "write_onnx"]


def convert(model_json_path: str | os.PathLike[str], dilation: str = "fixed") -> Any:
    """Read ``model-strideN.json`` (or any supported tfjs graph) and its shards; return the ONNX ``ModelProto``.

    Graphs with run-time shapes or conditionals (:data:`GRAPH_ONLY_OPS`, e.g. ``rvm.json``) go to
    :func:`bodypix_gimp.setup.convert.tfjs_graph.build_graph_onnx`; ``dilation`` applies to BodyPix graphs only.
    """
    path = Path(model_json_path)
    try:
        model_json = json.loads(path.read_text())
        nodes = model_json["modelTopology"]["node"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConversionError(f"{path} is not a TF.js graph model: {e}") from None
    if not nodes:
        raise ConversionError(f"{path} has no nodes")
    try:
        if needs_graph_converter(model_json):
            # float32 dequantisation as tf2onnx does: reproduces the reference RVM conversion
            weights = read_weights(model_json, path.parent, float32_math=True)
            return build_graph_onnx(model_json, weights, name=path.stem)
        weights = read_weights(model_json, path.parent)
        return build_onnx(model_json, weights, dilation=dilation, name=path.stem)
    except ConversionError as e:
        raise ConversionError(f"{path}: {e}") from None


# Ops that only the general graph converter (tfjs_graph.py) handles: run-time shape
# arithmetic, conditionals, splits and reductions.  A graph without any of them (BodyPix,
# MediaPipe Selfie) keeps tfjs.py's NCHW conversion, so its output stays byte-identical.
GRAPH_ONLY_OPS = frozenset({
    "Switch", "Merge", "Shape", "StridedSlice", "Pack", "Slice", "Split", "SplitV", "Mean", "Cast",
    "BroadcastTo", "FloorMod", "SpaceToBatchND", "BatchToSpaceND", "Squeeze", "Equal", "Square",
})


def needs_graph_converter(model_json: dict[str, Any]) -> bool:
    """Whether a tfjs graph needs :mod:`bodypix_gimp.setup.convert.tfjs_graph` (e.g. Robust Video Matting)."""
    return any(n.get("op") in GRAPH_ONLY_OPS for n in model_json["modelTopology"]["node"])


def convert_file(model_json_path: str | os.PathLike[str], out_path: str | os.PathLike[str],
                 dilation: str = "fixed", check: bool = True) -> Path:
    """Convert and write atomically (temp file + rename): a failed run leaves nothing behind."""
    return write_onnx(convert(model_json_path, dilation=dilation), out_path, check)
