"""Convert an official TF.js BodyPix graph model (``model-strideN.json`` + ``.bin`` shards) to ONNX.

Why a hand-written converter: the usual route (tensorflow + tf2onnx) needs a 500 MB
TensorFlow install and breaks with numpy 2.  BodyPix graphs use a dozen plain ops, so a
direct mapping with the ``onnx`` package and numpy is about 300 lines, runs in well under
a second per model and keeps the install small.

The ONNX graphs have the same interface as the reference conversions in
``shared/models/bodypix/onnx``: input ``sub_2:0`` float32 NHWC ``[1, H, W, 3]`` with
dynamic H and W, outputs named after the TF tensors (``float_segments:0``, ...) in NHWC.
Inside, activations are NCHW (ONNX ``Conv`` is NCHW-only); one transpose at the input and
one per output.

Dilation: the TF.js converter 1.2.6 wrote dilations as ``[d, d, 1, 1]`` and tfjs reads
elements ``[1:3]``, so the official JS runtime runs the stride-8 (and ResNet50 block-4)
atrous convolutions with an asymmetric ``(d, 1)`` dilation.  ``dilation="fixed"`` (the
default) restores the intended ``(d, d)``; ``dilation="tfjs"`` reproduces the JS runtime.
Dilated convolutions get explicit pads because onnxruntime rejects dilation with
``auto_pad=SAME_UPPER``.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .onnx_io import ConversionError, make_model, missing_package, resize_coordinates

DILATION_MODES = ("fixed", "tfjs")

_QUANT_DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}
_PLAIN_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
# TF NHWC axis -> internal NCHW axis (for Concat and 4-D constants).
_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1, -1: 1, -2: 3, -3: 2, -4: 0}


# --------------------------------------------------------------------------- weights


def dequantize(raw: bytes, spec: dict[str, Any], float32_math: bool = False) -> np.ndarray:
    """Decode one weight from its bytes as tfjs ``io.decodeWeights`` does.

    uint8/uint16 affine quantisation is ``q * scale + min`` computed in double precision
    and stored as float32 (what tfjs does in JavaScript); float16 is widened to float32.
    ``float32_math`` computes it in float32 instead, as tf2onnx does: the result can differ
    by one float32 ulp, which is what reproducing a tf2onnx reference conversion needs.
    """
    shape = [int(s) for s in spec["shape"]]
    quant = spec.get("quantization")
    if quant:
        qtype = quant["dtype"]
        if qtype not in _QUANT_DTYPES:
            raise ConversionError(f"weight {spec['name']}: unsupported quantization dtype {qtype!r}")
        q = np.frombuffer(raw, dtype=np.dtype(_QUANT_DTYPES[qtype]).newbyteorder("<"))
        if qtype == "float16":
            values = q.astype(np.float32)
        else:
            ftype = np.float32 if float32_math else np.float64
            values = q.astype(ftype) * ftype(quant["scale"]) + ftype(quant["min"])
            if spec["dtype"] == "int32":
                values = np.round(values)
        target = _PLAIN_DTYPES[spec["dtype"]]
        return values.astype(target).reshape(shape)
    dtype = spec["dtype"]
    if dtype not in _PLAIN_DTYPES:
        raise ConversionError(f"weight {spec['name']}: unsupported dtype {dtype!r}")
    return np.frombuffer(raw, dtype=np.dtype(_PLAIN_DTYPES[dtype]).newbyteorder("<")).reshape(shape).copy()


def _weight_nbytes(spec: dict[str, Any]) -> int:
    dtype = spec.get("quantization", {}).get("dtype") or spec["dtype"]
    itemsize = np.dtype(_QUANT_DTYPES.get(dtype) or _PLAIN_DTYPES.get(dtype) or np.float32).itemsize
    return int(np.prod([int(s) for s in spec["shape"]], dtype=np.int64)) * itemsize


def shard_paths(model_json: dict[str, Any]) -> list[str]:
    """Relative paths of every ``.bin`` shard a tfjs graph model needs, in manifest order."""
    return [p for group in model_json.get("weightsManifest", []) for p in group["paths"]]


def read_weights(model_json: dict[str, Any], folder: str | os.PathLike[str],
                 float32_math: bool = False) -> dict[str, np.ndarray]:
    """All weights of a tfjs model: each manifest group is its shards concatenated, read in order."""
    out: dict[str, np.ndarray] = {}
    for group in model_json.get("weightsManifest", []):
        parts = []
        for rel in group["paths"]:
            path = Path(folder) / rel
            if not path.is_file():
                raise ConversionError(f"weight shard {path} is missing")
            parts.append(path.read_bytes())
        buf = b"".join(parts)
        offset = 0
        for spec in group["weights"]:
            n = _weight_nbytes(spec)
            if offset + n > len(buf):
                raise ConversionError(
                    f"weight shards {group['paths']} are too short ({len(buf)} bytes) for {spec['name']}: "
                    "the download is truncated or the files do not belong to this model.json"
                )
            out[spec["name"]] = dequantize(buf[offset : offset + n], spec, float32_math)
            offset += n
        if offset != len(buf):
            raise ConversionError(
                f"weight shards {group['paths']} hold {len(buf)} bytes but the manifest describes {offset}"
            )
    return out


# --------------------------------------------------------------------------- graph


@dataclass
class TfjsNode:
    name: str
    op: str
    inputs: list[str]
    attr: dict[str, Any]

    def ints(self, key: str, default: Iterable[int] | None = None) -> list[int]:
        value = self.attr.get(key, {}).get("list", {}).get("i")
        if value is None:
            if default is None:
                raise ConversionError(f"node {self.name} ({self.op}) has no attribute {key}")
            return list(default)
        return [int(v) for v in value]

    def string(self, key: str, default: str = "") -> str:
        value = self.attr.get(key, {}).get("s")
        return base64.b64decode(value).decode() if value is not None else default

    def strings(self, key: str) -> list[str]:
        return [base64.b64decode(v).decode() for v in self.attr.get(key, {}).get("list", {}).get("s", [])]

    def boolean(self, key: str) -> bool:
        return bool(self.attr.get(key, {}).get("b", False))


def _input_name(ref: str) -> str:
    """``node:1`` -> ``node:1``; ``node`` / ``node:0`` -> ``node``; control inputs (``^x``) dropped."""
    if ref.endswith(":0"):
        return ref[:-2]
    return ref


def parse_nodes(model_json: dict[str, Any]) -> list[TfjsNode]:
    nodes = []
    for n in model_json["modelTopology"]["node"]:
        inputs = [_input_name(i) for i in n.get("input", []) if not i.startswith("^")]
        nodes.append(TfjsNode(n["name"], n["op"], inputs, n.get("attr", {})))
    return nodes


@dataclass
class _Builder:
    """Accumulates ONNX nodes; tensors are NCHW unless they are constants."""

    dilation: str
    consts: dict[str, np.ndarray]
    nodes: list[Any] = field(default_factory=list)
    initializers: dict[str, np.ndarray] = field(default_factory=dict)
    channels: dict[str, int] = field(default_factory=dict)
    alias: dict[str, str] = field(default_factory=dict)

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers[name] = value
        return name

    def ref(self, name: str) -> str:
        return self.alias.get(name, name)

    def add(self, op: str, inputs: list[str], output: str, name: str, **attrs: Any) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [output], name=name, **attrs))
        return output


def _spatial_dilation(node: TfjsNode, mode: str) -> tuple[int, int]:
    """Height/width dilation of a TF conv node.

    Well-formed NHWC dilations are ``[1, dh, dw, 1]`` and both modes agree.  The BodyPix
    files carry ``[d, d, 1, 1]``: tfjs reads ``[1:3]`` = ``(d, 1)``; the fix reads ``(d, d)``.
    """
    dil = node.ints("dilations", (1, 1, 1, 1))
    if mode == "tfjs" or (dil[0] == 1 and dil[3] == 1):
        return dil[1], dil[2]
    return dil[0], dil[1]


def _same_pads(kernel: tuple[int, int], dilation: tuple[int, int]) -> list[int]:
    """Static SAME padding for stride 1 (TF puts the odd pixel at the end): ONNX order [t, l, b, r]."""
    total = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
    begin = [t // 2 for t in total]
    return begin + [t - b for t, b in zip(total, begin, strict=True)]


def _window_attrs(node: TfjsNode, kernel: tuple[int, int], strides: tuple[int, int],
                  dilation: tuple[int, int]) -> dict[str, Any]:
    padding = node.string("padding", "VALID")
    if padding == "VALID":
        return {"pads": [0, 0, 0, 0]}
    if padding == "EXPLICIT":
        p = node.ints("explicit_paddings")  # NHWC pairs
        return {"pads": [p[2], p[4], p[3], p[5]]}
    if padding != "SAME":
        raise ConversionError(f"node {node.name}: unsupported padding {padding!r}")
    if strides == (1, 1):
        return {"pads": _same_pads(kernel, dilation)}
    if dilation != (1, 1):
        raise ConversionError(f"node {node.name}: dilated conv with stride {strides} is not supported")
    # SAME with stride > 1 depends on the (dynamic) input size; TF pads the odd pixel at the end.
    return {"auto_pad": "SAME_UPPER"}


def _check_layout(node: TfjsNode) -> None:
    fmt = node.string("data_format", "NHWC")
    if fmt != "NHWC":
        raise ConversionError(f"node {node.name} ({node.op}): data_format {fmt} is not supported")


def _conv(b: _Builder, node: TfjsNode, bias: str | None, activation: str | None, out: str) -> None:
    _check_layout(node)
    x = b.ref(node.inputs[0])
    if node.inputs[1] not in b.consts:
        raise ConversionError(f"node {node.name}: the filter must be a constant")
    w = b.consts[node.inputs[1]]
    kh, kw, cin, cout = w.shape
    depthwise = "Depthwise" in node.op
    if depthwise:  # [kh, kw, cin, mult] -> [cin*mult, 1, kh, kw]; TF orders outputs c*mult + m
        weight = np.ascontiguousarray(w.transpose(2, 3, 0, 1).reshape(cin * cout, 1, kh, kw))
        group, channels = cin, cin * cout
    else:
        weight = np.ascontiguousarray(w.transpose(3, 2, 0, 1))
        group, channels = 1, cout
    s = node.ints("strides", (1, 1, 1, 1))
    strides = (s[1], s[2])
    dilation = _spatial_dilation(node, b.dilation)
    attrs = _window_attrs(node, (kh, kw), strides, dilation)
    inputs = [x, b.const(node.inputs[1] + "__oihw", weight)]
    if bias is not None:
        inputs.append(b.const(bias + "__bias", b.consts[bias].astype(np.float32).reshape(-1)))
    conv_out = out if activation is None else out + "__preact"
    b.add("Conv", inputs, conv_out, node.name, kernel_shape=[kh, kw], strides=list(strides),
          dilations=list(dilation), group=group, **attrs)
    b.channels[out] = channels
    if activation is not None:
        _activation(b, activation, conv_out, out, node.name + "/" + activation)


def _conv_transpose(b: _Builder, node: TfjsNode, out: str) -> None:
    """TF ``Conv2DBackpropInput`` (transposed conv) with its static output size -> ONNX ``ConvTranspose``."""
    _check_layout(node)
    sizes, filt, x = node.inputs
    out_h, out_w = (int(v) for v in b.consts[sizes].reshape(-1)[1:3])
    w = b.consts[filt]  # [kh, kw, out_c, in_c] -> [in_c, out_c, kh, kw]
    kh, kw, cout, _ = w.shape
    s = node.ints("strides", (1, 1, 1, 1))
    padding = node.string("padding", "VALID")
    pads, extra = [], []
    for size, k, st in ((out_h, kh, s[1]), (out_w, kw, s[2])):
        n_in = -(-size // st) if padding == "SAME" else (size - k) // st + 1
        total = max((n_in - 1) * st + k - size, 0) if padding == "SAME" else 0
        pads.append((total // 2, total - total // 2))
        extra.append(size - ((n_in - 1) * st + k - total))
    b.add("ConvTranspose", [b.ref(x), b.const(filt + "__iohw", np.ascontiguousarray(w.transpose(3, 2, 0, 1)))],
          out, out, kernel_shape=[kh, kw], strides=[s[1], s[2]],
          pads=[pads[0][0], pads[1][0], pads[0][1], pads[1][1]], output_padding=extra)
    b.channels[out] = cout


def _activation(b: _Builder, op: str, x: str, out: str, name: str) -> None:
    if op == "Relu6":
        lo = b.const("__relu6_min", np.array(0.0, np.float32))
        hi = b.const("__relu6_max", np.array(6.0, np.float32))
        b.add("Clip", [x, lo, hi], out, name)
    elif op in ("Relu", "Sigmoid", "Tanh", "Elu"):
        b.add(op, [x], out, name)
    else:
        raise ConversionError(f"node {name}: unsupported fused activation {op!r}")


def _broadcast_const(b: _Builder, name: str) -> str:
    """A TF constant operand in the internal NCHW layout: [C] -> [1,C,1,1], NHWC 4-D -> NCHW."""
    v = b.consts[name].astype(np.float32) if b.consts[name].dtype != np.float32 else b.consts[name]
    if v.ndim == 1 and v.size > 1:
        v = v.reshape(1, -1, 1, 1)
    elif v.ndim == 4:
        v = v.transpose(0, 3, 1, 2)
    elif v.ndim not in (0, 1):
        raise ConversionError(f"constant {name} of shape {v.shape} cannot be broadcast in NCHW")
    return b.const(name + "__nchw", np.ascontiguousarray(v))


_BINARY = {"Add": "Add", "AddV2": "Add", "BiasAdd": "Add", "Sub": "Sub", "Mul": "Mul",
           "RealDiv": "Div", "Minimum": "Min", "Maximum": "Max"}
_UNARY = {"Relu", "Relu6", "Sigmoid", "Tanh", "Elu"}


def _plan_bias_fusion(nodes: list[TfjsNode], consts: dict[str, np.ndarray]) -> dict[str, TfjsNode]:
    """conv name -> the BiasAdd that follows it, when the conv feeds only that BiasAdd."""
    consumers: dict[str, list[TfjsNode]] = {}
    for n in nodes:
        for i in n.inputs:
            consumers.setdefault(i, []).append(n)
    plan = {}
    for n in nodes:
        if n.op in ("Conv2D", "DepthwiseConv2dNative"):
            users = consumers.get(n.name, [])
            if len(users) == 1 and users[0].op == "BiasAdd" and users[0].inputs[1] in consts:
                plan[n.name] = users[0]
    return plan


def build_onnx(model_json: dict[str, Any], weights: dict[str, np.ndarray], dilation: str = "fixed",
               name: str = "bodypix") -> Any:
    """The ONNX ``ModelProto`` for a parsed tfjs graph model and its weights (see module docstring)."""
    try:
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise missing_package("onnx", "TF.js") from None

    if dilation not in DILATION_MODES:
        raise ValueError(f"dilation must be one of {DILATION_MODES}, not {dilation!r}")
    nodes = parse_nodes(model_json)
    consts = {n.name: weights[n.name] for n in nodes if n.op == "Const" and n.name in weights}
    missing = [n.name for n in nodes if n.op == "Const" and n.name not in weights]
    if missing:
        raise ConversionError(f"constants without weights in the manifest: {missing[:5]}")
    b = _Builder(dilation=dilation, consts=consts)
    fused_bias = _plan_bias_fusion(nodes, consts)
    skip: set[str] = set()
    graph_inputs = []

    for node in nodes:
        op, out = node.op, node.name
        if op == "Const" or out in skip:
            continue
        if op == "Placeholder":
            dims = [int(d.get("size", -1)) for d in node.attr["shape"]["shape"]["dim"]]
            if len(dims) != 4:
                raise ConversionError(f"input {out} must be 4-D NHWC, not {dims}")
            shape = [d if d > 0 else sym for d, sym in zip(dims, ("N", "H", "W", "C"), strict=True)]
            graph_inputs.append(helper.make_tensor_value_info(out + ":0", TensorProto.FLOAT, shape))
            b.add("Transpose", [out + ":0"], out, out + "__to_nchw", perm=[0, 3, 1, 2])
            b.channels[out] = dims[3]
        elif op in ("Conv2D", "DepthwiseConv2dNative"):
            bias_node = fused_bias.get(out)
            if bias_node is not None:
                skip.add(bias_node.name)
                _conv(b, node, bias_node.inputs[1], None, bias_node.name)
            else:
                _conv(b, node, None, None, out)
        elif op in ("_FusedConv2D", "FusedDepthwiseConv2dNative"):
            fused = node.strings("fused_ops")
            bias = node.inputs[2] if fused and fused[0] == "BiasAdd" else None
            acts = [f for f in fused if f != "BiasAdd"]
            if len(acts) > 1 or (bias is None and fused):
                raise ConversionError(f"node {out}: unsupported fused ops {fused}")
            _conv(b, node, bias, acts[0] if acts else None, out)
        elif op in _BINARY:
            x, y = node.inputs
            xi = _broadcast_const(b, x) if x in consts else b.ref(x)
            yi = _broadcast_const(b, y) if y in consts else b.ref(y)
            b.add(_BINARY[op], [xi, yi], out, out)
            b.channels[out] = b.channels.get(x if x not in consts else y, 0)
        elif op == "AddN":
            ins = [_broadcast_const(b, i) if i in consts else b.ref(i) for i in node.inputs]
            b.add("Sum", ins, out, out)
            b.channels[out] = b.channels.get(node.inputs[0], 0)
        elif op in _UNARY:
            _activation(b, op, b.ref(node.inputs[0]), out, out)
            b.channels[out] = b.channels.get(node.inputs[0], 0)
        elif op == "Identity":
            b.alias[out] = b.ref(node.inputs[0])
            b.channels[out] = b.channels.get(node.inputs[0], 0)
        elif op in ("MaxPool", "AvgPool"):
            _check_layout(node)
            k, s = node.ints("ksize"), node.ints("strides")
            attrs = _window_attrs(node, (k[1], k[2]), (s[1], s[2]), (1, 1))
            onnx_op = "MaxPool" if op == "MaxPool" else "AveragePool"
            b.add(onnx_op, [b.ref(node.inputs[0])], out, out, kernel_shape=[k[1], k[2]],
                  strides=[s[1], s[2]], **attrs)
            b.channels[out] = b.channels.get(node.inputs[0], 0)
        elif op in ("Pad", "PadV2"):
            p = consts[node.inputs[1]].astype(np.int64).reshape(4, 2)
            order = [0, 3, 1, 2]  # NHWC pairs -> NCHW begins then ends
            pads = np.array([p[a, 0] for a in order] + [p[a, 1] for a in order], np.int64)
            ins = [b.ref(node.inputs[0]), b.const(out + "__pads", pads)]
            if op == "PadV2":
                ins.append(b.const(out + "__value", consts[node.inputs[2]].astype(np.float32).reshape(())))
            b.add("Pad", ins, out, out, mode="constant")
            b.channels[out] = b.channels.get(node.inputs[0], 0)
        elif op in ("ResizeBilinear", "ResizeNearestNeighbor"):
            size = [int(v) for v in consts[node.inputs[1]].reshape(-1)]
            channels = b.channels.get(node.inputs[0], 0)
            if not channels:
                raise ConversionError(f"node {out}: channel count of the input is unknown")
            coord = resize_coordinates(op, node.boolean("align_corners"), node.boolean("half_pixel_centers"))
            sizes = b.const(out + "__sizes", np.array([1, channels, *size], np.int64))
            b.add("Resize", [b.ref(node.inputs[0]), "", "", sizes], out, out,
                  mode="linear" if op == "ResizeBilinear" else "nearest", coordinate_transformation_mode=coord,
                  **({"nearest_mode": "floor" if coord == "asymmetric" else "round_prefer_ceil"}
                     if op != "ResizeBilinear" else {}))
            b.channels[out] = channels
        elif op == "Conv2DBackpropInput":
            _conv_transpose(b, node, out)
        elif op == "ConcatV2":
            axis = int(consts[node.inputs[-1]])
            ins = [b.ref(i) for i in node.inputs[:-1]]
            b.add("Concat", ins, out, out, axis=_NHWC_TO_NCHW_AXIS[axis])
            b.channels[out] = sum(b.channels.get(i, 0) for i in node.inputs[:-1])
        else:
            raise ConversionError(f"node {out}: op {op} is not supported by this converter")

    # Graph outputs: every non-constant node nobody consumes, in file order (as tf2onnx does).
    consumed = {i for n in nodes for i in n.inputs}
    outputs = []
    for node in nodes:
        if node.op in ("Const", "Placeholder") or node.name in consumed:
            continue
        tensor = b.ref(node.name)
        b.add("Transpose", [tensor], node.name + ":0", node.name + "__to_nhwc", perm=[0, 2, 3, 1])
        c = b.channels.get(node.name) or f"C_{len(outputs)}"
        outputs.append(helper.make_tensor_value_info(
            node.name + ":0", TensorProto.FLOAT, [1, f"oh{len(outputs)}", f"ow{len(outputs)}", c]))

    inits = [numpy_helper.from_array(v, k) for k, v in b.initializers.items()]
    graph = helper.make_graph(b.nodes, name, graph_inputs, outputs, initializer=inits)
    model = make_model(graph, "bodypix-gimp.convert")
    model.doc_string = f"converted from TF.js graph model; dilation={dilation}"
    return model
