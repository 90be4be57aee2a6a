"""Convert a general TF.js graph model (dynamic shapes, static conditionals) to ONNX, NHWC throughout.

Why a second converter beside :mod:`bodypix_gimp.setup.convert.tfjs`: that one rewrites BodyPix-style
graphs (a dozen ops, fixed channel counts) to NCHW inside.  Graphs such as Robust Video
Matting (``rvm.json``) compute sizes at run time (``Shape`` -> ``StridedSlice`` -> ``Pack``
-> ``ResizeBilinear``/``Slice``), which are axis-number arithmetic in NHWC; rewriting them
to NCHW is error-prone.  Here every TF op maps one-to-one onto ONNX ops with TF's own NHWC
semantics, and only ``Conv``, the pools, ``Resize`` and spatial means (as
``GlobalAveragePool``, the op tf2onnx writes) run in NCHW between a pair of transposes.
onnxruntime's transpose optimiser cancels those pairs when it loads the model: on RVM the
result runs as fast as the tf2onnx reference and gives bit-identical outputs
(``python -m bodypix_gimp.evaluate.bench_convert``, ``tests/test_convert_rvm.py``).

Tensors: TF ``int32`` tensors become ``int64`` (what ONNX shape ops take), floats stay
``float32``.  :func:`bodypix_gimp.setup.convert.tfjs.convert` reads the weights with float32
dequantisation for this path (as tf2onnx does; tfjs's float64 arithmetic differs by one ulp
on some weights, which moved RVM's alpha by up to 3e-4 against the reference).

Names: graph inputs and outputs take the keys of the model's ``signature`` (``src``,
``downsample_ratio:0``, ``pha``, ...), as tf2onnx names them; without a signature,
placeholders are the inputs and unconsumed nodes the outputs.

Control flow: TF 1 conditionals (``Switch``/``Merge``) are resolved at conversion time to
their *false* branch, and only for predicates of the form ``input == constant`` (through
``Squeeze``/``Identity``): these are fast paths for one special input value (RVM's
``downsample_ratio == 1`` skips its resize and guided filter), and the general branch
computes a valid result for that value too.  The shared reference conversion
(``shared/models/rvm``) inlines the same branch.  Any other predicate is refused.

Atrous convolutions that TF wrote as ``SpaceToBatchND -> conv -> BatchToSpaceND`` (with
run-time paddings) are folded back into one dilated ``Conv``; TF emits this pattern for
that purpose (``tf.nn.with_space_to_batch``), and when SpaceToBatchND pads nothing but
what BatchToSpaceND crops again (checked) a VALID dilated conv is exactly it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .onnx_io import ConversionError, make_model, missing_package, resize_coordinates
from .tfjs import (
    TfjsNode,
    _activation,
    _Builder,
    _conv,
    _window_attrs,
    parse_nodes,
)

_INT64_MAX = np.iinfo(np.int64).max

_FLOAT, _INT, _BOOL = "float", "int", "bool"
_TF_DTYPES = {"DT_FLOAT": _FLOAT, "DT_HALF": _FLOAT, "DT_DOUBLE": _FLOAT, "DT_INT32": _INT, "DT_INT64": _INT,
              "DT_BOOL": _BOOL}
_ONNX_DTYPES = {_FLOAT: 1, _INT: 7, _BOOL: 9}  # TensorProto.FLOAT, INT64, BOOL

_BINARY = {"Add": "Add", "AddV2": "Add", "BiasAdd": "Add", "Sub": "Sub", "Mul": "Mul", "RealDiv": "Div",
           "Minimum": "Min", "Maximum": "Max", "Equal": "Equal", "Greater": "Greater", "Less": "Less",
           "Pow": "Pow"}
_UNARY = {"Relu": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Elu": "Elu", "Exp": "Exp", "Neg": "Neg",
          "Sqrt": "Sqrt", "Abs": "Abs", "Floor": "Floor", "Reciprocal": "Reciprocal"}
_CONVS = ("Conv2D", "DepthwiseConv2dNative", "_FusedConv2D", "FusedDepthwiseConv2dNative")
TO_NCHW, TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]
# TF.js signatures may leave an input's rank unknown, which ONNX's checker refuses.  These are
# the inputs of the graphs we convert that do (RVM): the ratio is one number, as the reference
# conversion declares it; the recurrent states are 4-D (zeros [1,1,1,1] for a still photo).
DEFAULT_INPUT_SHAPES: dict[str, list[int | str]] = {
    "downsample_ratio:0": [1],
    **{f"r{k}i:0": [f"r{k}i_n", f"r{k}i_h", f"r{k}i_w", f"r{k}i_c"] for k in range(1, 5)},
}


def _split_ref(ref: str) -> tuple[str, int]:
    """``node:2`` -> ``("node", 2)``; ``node`` -> ``("node", 0)``."""
    name, sep, port = ref.rpartition(":")
    if sep and port.isdigit():
        return name, int(port)
    return ref, 0


def _tensor(name: str, port: int) -> str:
    return name if port == 0 else f"{name}:{port}"


def _control_inputs(model_json: dict[str, Any]) -> dict[str, list[str]]:
    """node -> the nodes it has control dependencies on (``^name`` inputs)."""
    return {n["name"]: [i[1:] for i in n.get("input", []) if i.startswith("^")]
            for n in model_json["modelTopology"]["node"]}


def _topological(nodes: dict[str, TfjsNode], control: dict[str, list[str]]) -> list[str]:
    """Node names, producers first (Kahn's algorithm over data and control edges)."""
    deps = {name: {_split_ref(i)[0] for i in n.inputs} | set(control.get(name, ())) for name, n in nodes.items()}
    for name, ds in deps.items():
        unknown = ds - nodes.keys()
        if unknown:
            raise ConversionError(f"node {name}: input from unknown node {sorted(unknown)[0]!r}")
    users: dict[str, list[str]] = {name: [] for name in nodes}
    for name, ds in deps.items():
        for d in ds:
            users[d].append(name)
    waiting = {name: len(ds) for name, ds in deps.items()}
    ready = [name for name, k in waiting.items() if k == 0]
    order = []
    while ready:
        name = ready.pop()
        order.append(name)
        for u in users[name]:
            waiting[u] -= 1
            if waiting[u] == 0:
                ready.append(u)
    if len(order) != len(nodes):
        stuck = sorted(n for n, k in waiting.items() if k > 0)
        raise ConversionError(f"the graph has a cycle (a loop?) through node {stuck[0]}")
    return order


@dataclass
class _Graph:
    """The tfjs nodes with their conditionals resolved: every data reference maps to its producer.

    Dead-tensor semantics as in TF: ``Switch`` passes its data to port 0 (predicate false)
    and a dead tensor to port 1 (the branch not taken); a node with a dead data or control
    input is dead; ``Merge`` forwards its only live input.
    """

    nodes: dict[str, TfjsNode]
    consts: dict[str, np.ndarray]
    control: dict[str, list[str]]
    dead_nodes: set[str] = field(default_factory=set)  # every output dead
    dead_ports: set[str] = field(default_factory=set)  # the untaken "switch:1" outputs

    def __post_init__(self) -> None:
        for name in _topological(self.nodes, self.control):
            node = self.nodes[name]
            data_dead = [self.is_dead(i) for i in node.inputs]
            ctrl_dead = any(c in self.dead_nodes for c in self.control.get(name, ()))
            if node.op == "Merge":
                if data_dead and all(data_dead):
                    self.dead_nodes.add(name)
            elif any(data_dead) or ctrl_dead:
                self.dead_nodes.add(name)
            elif node.op == "Switch":
                self.dead_ports.add(name + ":1")

    def is_dead(self, ref: str) -> bool:
        name, port = _split_ref(ref)
        return name in self.dead_nodes or _tensor(name, port) in self.dead_ports

    @staticmethod
    def _canon(ref: str) -> str:
        return _tensor(*_split_ref(ref))

    def node(self, ref: str) -> TfjsNode:
        return self.nodes[_split_ref(ref)[0]]

    def resolve(self, ref: str) -> str | None:
        """The tensor that ``ref`` stands for once Identity/Switch/Merge are gone; None when dead."""
        ref = self._canon(ref)
        if self.is_dead(ref):
            return None
        node = self.node(ref)
        if node.op == "Identity":
            return self.resolve(node.inputs[0])
        if node.op == "Switch":
            self._check_predicate(node)
            return self.resolve(node.inputs[0])
        if node.op == "Merge":
            if ref != node.name:
                raise ConversionError(f"node {node.name}: the Merge value_index output is not supported")
            live = [i for i in node.inputs if not self.is_dead(i)]
            if len(live) != 1:
                raise ConversionError(f"node {node.name}: {len(live)} live inputs to a Merge (expected 1)")
            return self.resolve(live[0])
        return ref

    def _check_predicate(self, switch: TfjsNode) -> None:
        """Accept only ``input == constant`` predicates (see the module docstring)."""
        ref = switch.inputs[1]
        while self.node(ref).op in ("Squeeze", "Identity", "Switch"):
            ref = self.node(ref).inputs[0 if self.node(ref).op != "Switch" else 1]
        pred = self.node(ref)
        if pred.op == "Equal" and any(self.node(i).op == "Const" for i in pred.inputs):
            return
        raise ConversionError(
            f"node {switch.name}: conditional on {pred.name} ({pred.op}) is not a comparison with a constant; "
            "only such fast-path conditionals can be resolved at conversion time"
        )

    def live(self, ref: str) -> str:
        out = self.resolve(ref)
        if out is None:
            raise ConversionError(f"{ref} is on the branch of a conditional that is never taken")
        return out

    def const(self, ref: str) -> np.ndarray | None:
        """The value of ``ref`` when it resolves to a ``Const`` node."""
        out = self.resolve(ref)
        if out is None or out not in self.nodes or self.nodes[out].op != "Const":
            return None
        return self.consts.get(out)

    def need_const(self, node: TfjsNode, idx: int, what: str) -> np.ndarray:
        value = self.const(node.inputs[idx])
        if value is None:
            raise ConversionError(f"node {node.name} ({node.op}): the {what} must be a constant")
        return value


class _Emitter:
    """Walks the resolved graph from the outputs and writes ONNX nodes in NHWC semantics."""

    def __init__(self, g: _Graph):
        self.g = g
        self.b = _Builder(dilation="fixed", consts={})
        self.dtype: dict[str, str] = {}
        self.rank: dict[str, int] = {}  # where known: picks GlobalAveragePool for spatial means
        self.emitted: set[str] = set()
        self.inputs: dict[str, TfjsNode] = {}

    # -- helpers -------------------------------------------------------------------------
    def const_tensor(self, ref: str) -> str:
        """An initializer for a TF constant: int32 -> int64, floats -> float32."""
        value = self.g.const(ref)
        assert value is not None
        name = self.g.live(ref)
        if name not in self.dtype:
            if value.dtype.kind in "iu":
                value, kind = value.astype(np.int64), _INT
            elif value.dtype == np.bool_:
                kind = _BOOL
            else:
                value, kind = value.astype(np.float32), _FLOAT
            self.b.const(name, np.array(value, order="C"))
            self.dtype[name] = kind
            self.rank[name] = value.ndim
        return name

    def new_const(self, name: str, value: np.ndarray) -> str:
        self.dtype[name] = _INT if value.dtype.kind in "iu" else _FLOAT
        self.rank[name] = value.ndim
        return self.b.const(name, value)

    def x(self, ref: str) -> str:
        """ONNX tensor name of a data input (a constant becomes an initializer)."""
        if self.g.const(ref) is not None:
            return self.const_tensor(ref)
        return self.g.live(ref)

    def add(self, op: str, inputs: list[str], out: str, kind: str, **attrs: Any) -> str:
        self.b.add(op, inputs, out, out, **attrs)
        self.dtype[out] = kind
        return out

    def multi(self, op: str, inputs: list[str], outs: list[str], name: str, kind: str, **attrs: Any) -> None:
        from onnx import helper

        self.b.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        for o in outs:
            self.dtype[o] = kind

    def nchw(self, x: str, out: str, fn) -> str:
        """Run ``fn(nchw_input, nchw_output)`` between transposes: ONNX Conv/pools are NCHW-only."""
        t_in = self.add("Transpose", [x], out + "__nchw_in", _FLOAT, perm=TO_NCHW)
        fn(t_in, out + "__nchw_out")
        self.rank[out] = 4
        return self.add("Transpose", [out + "__nchw_out"], out, _FLOAT, perm=TO_NHWC)

    def same_rank(self, out: str, *ins: str) -> None:
        """``out`` has the broadcast rank of ``ins`` when all of theirs are known."""
        ranks = [self.rank.get(i) for i in ins]
        if all(r is not None for r in ranks):
            self.rank[out] = max(ranks)

    def int64(self, ref: str) -> str:
        x = self.x(ref)
        return x if self.dtype.get(x) == _INT else self.add("Cast", [x], x + "__i64", _INT, to=7)

    def dim_slice(self, shape: str, start: int, end: int, out: str) -> str:
        s = self.new_const(out + "__s", np.array([start], np.int64))
        e = self.new_const(out + "__e", np.array([end], np.int64))
        return self.add("Slice", [shape, s, e], out, _INT)

    # -- walk ----------------------------------------------------------------------------
    def data_inputs(self, node: TfjsNode) -> list[str]:
        """Refs this node needs computed (constants and static-only operands excluded)."""
        fold = self.atrous_source(node)
        if fold is not None:
            return [fold.inputs[0]]
        refs = list(node.inputs)
        if node.op in _CONVS:
            refs = refs[:1]
        elif node.op in ("ConcatV2", "Mean", "Pad", "Squeeze", "SplitV", "StridedSlice"):
            keep = {"ConcatV2": len(refs) - 1, "Mean": 1, "Pad": 1, "Squeeze": 1, "SplitV": 1, "StridedSlice": 1}
            refs = refs[: keep[node.op]]
        elif node.op == "Split":
            refs = refs[1:]
        out = []
        for r in refs:
            if self.g.const(r) is None:
                out.append(self.g.live(r))
        return out

    def emit_all(self, refs: list[str]) -> None:
        """Emit every node the given refs need, producers first (the graph is acyclic, checked)."""
        stack = [(_split_ref(self.g.live(r))[0], False) for r in refs]
        while stack:
            name, expanded = stack.pop()
            if name in self.emitted:
                continue
            node = self.g.nodes[name]
            if not expanded:
                stack.append((name, True))
                stack.extend((_split_ref(d)[0], False) for d in self.data_inputs(node))
                continue
            try:
                self.emit(node)
            except ConversionError:
                raise
            except (KeyError, IndexError, ValueError, TypeError) as e:
                raise ConversionError(f"node {name} ({node.op}): cannot convert: {e!r}") from None
            self.emitted.add(name)

    def atrous_source(self, node: TfjsNode) -> TfjsNode | None:
        """For ``BatchToSpaceND(conv(SpaceToBatchND(x)))`` return the SpaceToBatchND node."""
        if node.op != "BatchToSpaceND":
            return None
        conv = self.g.node(self.g.live(node.inputs[0]))
        if conv.op not in _CONVS:
            return None
        s2b = self.g.node(self.g.live(conv.inputs[0]))
        if s2b.op != "SpaceToBatchND":
            return None
        return s2b

    # -- ops -----------------------------------------------------------------------------
    def emit(self, node: TfjsNode) -> None:  # noqa: C901 - one branch per TF op reads best
        op, out, g = node.op, node.name, self.g
        if op == "Placeholder":
            self.inputs[out] = node
            self.dtype[out] = _TF_DTYPES.get(node.attr.get("dtype", {}).get("type", "DT_FLOAT"), _FLOAT)
            shape = node.attr.get("shape", {}).get("shape", {})
            if not shape.get("unknownRank"):
                self.rank[out] = len(shape.get("dim", []))
        elif op == "Const":
            self.const_tensor(out)
        elif op in _CONVS:
            self.conv(node, node.inputs[0], out, (1, 1))
        elif op == "BatchToSpaceND":
            s2b = self.atrous_source(node)
            if s2b is None:
                raise ConversionError(f"node {out}: BatchToSpaceND outside an atrous convolution is not supported")
            conv = g.node(g.live(node.inputs[0]))
            block = g.need_const(node, 1, "block shape").reshape(-1)
            if not np.array_equal(block, g.need_const(s2b, 1, "block shape").reshape(-1)) or block.size != 2:
                raise ConversionError(f"node {out}: SpaceToBatchND/BatchToSpaceND block shapes differ")
            if conv.string("padding") != "VALID" or conv.ints("strides", (1, 1, 1, 1)) != [1, 1, 1, 1]:
                raise ConversionError(f"node {conv.name}: atrous convolution must be VALID with stride 1")
            self.check_atrous_padding(s2b, node)
            self.conv(conv, s2b.inputs[0], out, (int(block[0]), int(block[1])))
        elif op == "SpaceToBatchND":
            raise ConversionError(f"node {out}: SpaceToBatchND outside an atrous convolution is not supported")
        elif op in _BINARY:
            a, b = (self.x(i) for i in node.inputs)
            kind = _BOOL if op in ("Equal", "Greater", "Less") else self.dtype[a]
            self.add(_BINARY[op], [a, b], out, kind)
            self.same_rank(out, a, b)
        elif op == "FloorMod":
            a, b = (self.x(i) for i in node.inputs)
            if self.dtype[a] == _INT:
                self.add("Mod", [a, b], out, _INT, fmod=0)  # integer Mod takes the divisor's sign: floor mod
            else:  # ONNX Mod on floats is C fmod (dividend's sign); floor mod is a - floor(a/b)*b
                q = self.add("Floor", [self.add("Div", [a, b], out + "__div", _FLOAT)], out + "__floor", _FLOAT)
                self.add("Sub", [a, self.add("Mul", [q, b], out + "__mul", _FLOAT)], out, _FLOAT)
        elif op == "Square":
            a = self.x(node.inputs[0])
            self.add("Mul", [a, a], out, self.dtype[a])
            self.same_rank(out, a)
        elif op == "Relu6":
            _activation(self.b, "Relu6", self.x(node.inputs[0]), out, out)
            self.dtype[out] = _FLOAT
            self.same_rank(out, self.x(node.inputs[0]))
        elif op in _UNARY:
            a = self.x(node.inputs[0])
            self.add(_UNARY[op], [a], out, self.dtype[a])
            self.same_rank(out, a)
        elif op == "Cast":
            kind = _TF_DTYPES.get(node.attr.get("DstT", {}).get("type", ""))
            if kind is None:
                raise ConversionError(f"node {out}: Cast to {node.attr.get('DstT')} is not supported")
            self.add("Cast", [self.x(node.inputs[0])], out, kind, to=_ONNX_DTYPES[kind])
        elif op == "Shape":
            self.add("Shape", [self.x(node.inputs[0])], out, _INT)
        elif op == "Mean":
            axes = [int(a) for a in g.need_const(node, 1, "reduction axes").reshape(-1)]
            a = self.x(node.inputs[0])
            if self.rank.get(a) == 4 and sorted(d % 4 for d in axes) == [1, 2] and node.boolean("keep_dims"):
                # a spatial mean (squeeze-excitation) as GlobalAveragePool, as tf2onnx writes it:
                # the same summation order as the reference conversion, and NCHW-friendly
                self.nchw(a, out, lambda i, o: self.add("GlobalAveragePool", [i], o, _FLOAT))
            else:
                self.add("ReduceMean", [a], out, _FLOAT, axes=axes, keepdims=int(node.boolean("keep_dims")))
        elif op == "ConcatV2":
            axis = int(g.need_const(node, len(node.inputs) - 1, "axis"))
            ins = [self.x(i) for i in node.inputs[:-1]]
            self.add("Concat", ins, out, self.dtype[ins[0]], axis=axis)
            self.same_rank(out, *ins)
        elif op == "Pack":
            axis = int(node.attr.get("axis", {}).get("i", 0))
            vals = [g.const(i) for i in node.inputs]
            if all(v is not None for v in vals):
                self.new_const(out, np.stack(vals, axis=axis).astype(np.int64 if vals[0].dtype.kind in "iu"
                                                                        else np.float32))
                return
            ax = self.new_const(out + "__axis", np.array([axis], np.int64))
            ins = [self.add("Unsqueeze", [self.x(i), ax], f"{out}__u{k}", self.dtype[self.x(i)])
                   for k, i in enumerate(node.inputs)]
            self.add("Concat", ins, out, self.dtype[ins[0]], axis=axis)
        elif op == "StridedSlice":
            self.strided_slice(node)
        elif op == "Slice":
            self.slice(node)
        elif op == "Squeeze":
            a = self.x(node.inputs[0])
            dims = node.ints("squeeze_dims", ())
            ins = [a] + ([self.new_const(out + "__axes", np.array(dims, np.int64))] if dims else [])
            self.add("Squeeze", ins, out, self.dtype[a])
        elif op == "Pad":
            pads = g.need_const(node, 1, "paddings").astype(np.int64).reshape(-1, 2)
            p = self.new_const(out + "__pads", np.concatenate([pads[:, 0], pads[:, 1]]))
            self.add("Pad", [self.x(node.inputs[0]), p], out, _FLOAT, mode="constant")
            self.rank[out] = len(pads)
        elif op in ("ResizeBilinear", "ResizeNearestNeighbor"):
            self.resize(node)
        elif op in ("AvgPool", "MaxPool"):
            k, s = node.ints("ksize"), node.ints("strides")
            if node.string("data_format", "NHWC") != "NHWC" or k[0] != 1 or k[3] != 1 or s[0] != 1 or s[3] != 1:
                raise ConversionError(f"node {out}: only NHWC spatial pooling is supported")
            attrs = _window_attrs(node, (k[1], k[2]), (s[1], s[2]), (1, 1))
            onnx_op = "AveragePool" if op == "AvgPool" else "MaxPool"
            self.nchw(self.x(node.inputs[0]), out, lambda i, o: self.add(
                onnx_op, [i], o, _FLOAT, kernel_shape=[k[1], k[2]], strides=[s[1], s[2]], **attrs))
        elif op in ("Split", "SplitV"):
            n = int(node.attr.get("num_split", {}).get("i", 1))
            outs = [_tensor(out, k) for k in range(n)]
            if op == "Split":
                axis, src, sizes = int(g.need_const(node, 0, "split axis")), self.x(node.inputs[1]), []
            else:
                axis, src = int(g.need_const(node, 2, "split axis")), self.x(node.inputs[0])
                split = g.need_const(node, 1, "split sizes").astype(np.int64).reshape(-1)
                if (split < 0).any():
                    raise ConversionError(f"node {out}: SplitV with an inferred (-1) size is not supported")
                sizes = [self.new_const(out + "__split", split)]
            self.multi("Split", [src, *sizes], outs, out, self.dtype[src], axis=axis)
            for o in outs:
                self.same_rank(o, src)
        elif op == "BroadcastTo":
            self.add("Expand", [self.x(node.inputs[0]), self.int64(node.inputs[1])], out,
                     self.dtype[self.x(node.inputs[0])])
        else:
            raise ConversionError(f"node {out}: op {op} is not supported by this converter")

    def pad_rows(self, ref: str) -> list[list[Any]] | None:
        """A [2, 2] paddings/crops tensor as rows of items: a constant value or a resolved tensor ref."""
        value = self.g.const(ref)
        if value is not None:
            return [[int(v) for v in row] for row in value.reshape(-1, 2)]
        node = self.g.node(self.g.live(ref))
        if node.op != "Pack" or int(node.attr.get("axis", {}).get("i", 0)) != 0:
            return None
        rows = []
        for r in node.inputs:
            inner = self.g.node(self.g.live(r)) if self.g.const(r) is None else None
            if inner is None or inner.op != "Pack":
                return None
            rows.append([int(v) if (v := self.g.const(i)) is not None else self.g.live(i) for i in inner.inputs])
        return rows

    def same_value(self, a: Any, b: Any) -> bool:
        """Whether two pad items are provably equal: equal constants, one tensor, or identical StridedSlices."""
        if isinstance(a, int) or isinstance(b, int):
            return a == b
        if a == b:
            return True
        na, nb = self.g.node(a), self.g.node(b)
        if na.op != "StridedSlice" or nb.op != "StridedSlice" or self.g.live(na.inputs[0]) != self.g.live(nb.inputs[0]):
            return False
        masks = ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask")
        return all(np.array_equal(self.g.const(x), self.g.const(y)) and self.g.const(x) is not None
                   for x, y in zip(na.inputs[1:], nb.inputs[1:], strict=True)) and all(
            na.attr.get(m, {}).get("i", 0) == nb.attr.get(m, {}).get("i", 0) for m in masks)

    def check_atrous_padding(self, s2b: TfjsNode, b2s: TfjsNode) -> None:
        """The fold is exact only when SpaceToBatchND adds no padding of its own (TF's base paddings
        are zero, as for a VALID dilated conv): nothing before, and at the end exactly what
        BatchToSpaceND crops off again (the run-time round-up to a multiple of the block)."""
        pads, crops = self.pad_rows(s2b.inputs[2]), self.pad_rows(b2s.inputs[2])
        ok = pads is not None and crops is not None and len(pads) == len(crops) == 2 and all(
            p[0] == 0 and c[0] == 0 and self.same_value(p[1], c[1]) for p, c in zip(pads, crops, strict=True))
        if not ok:
            raise ConversionError(f"node {s2b.name}: SpaceToBatchND pads more than its BatchToSpaceND crops "
                                  "(a SAME-padded atrous conv?); only the VALID pattern is supported")

    def conv(self, node: TfjsNode, x_ref: str, out: str, dilation: tuple[int, int]) -> None:
        """Any TF 2-D conv (plain, depthwise, fused with bias and one activation) as an NCHW Conv."""
        if node.string("data_format", "NHWC") != "NHWC":
            raise ConversionError(f"node {node.name}: data_format {node.string('data_format')} is not supported")
        filt = self.g.need_const(node, 1, "filter")
        bias = act = None
        if node.op.startswith(("_Fused", "Fused")):
            fused = node.strings("fused_ops")
            if not fused or fused[0] != "BiasAdd" or len(fused) > 2:
                raise ConversionError(f"node {node.name}: unsupported fused ops {fused}")
            bias = node.inputs[2]
            act = fused[1] if len(fused) == 2 else None
        filt_name = self.g.live(node.inputs[1])
        self.b.consts[filt_name] = filt
        bias_name = None
        if bias is not None:
            bias_name = self.g.live(bias)
            self.b.consts[bias_name] = self.g.need_const(node, 2, "bias")
        attrs = dict(node.attr)
        if dilation != (1, 1):
            attrs["dilations"] = {"list": {"i": ["1", str(dilation[0]), str(dilation[1]), "1"]}}
        plain_op = "DepthwiseConv2dNative" if "Depthwise" in node.op else "Conv2D"

        def body(i: str, o: str) -> None:
            shim = TfjsNode(o, plain_op, [i, filt_name] + ([bias_name] if bias_name else []), attrs)
            _conv(self.b, shim, bias_name, act, o)
            self.dtype[o] = _FLOAT

        self.nchw(self.x(x_ref), out, body)

    def strided_slice(self, node: TfjsNode) -> None:
        """TF StridedSlice with constant begin/end/strides and begin/end/shrink/new-axis masks."""
        g, out = self.g, node.name
        begin, end, strides = (g.need_const(node, k, w).astype(np.int64).reshape(-1)
                               for k, w in ((1, "begin"), (2, "end"), (3, "strides")))
        mask = {k: int(node.attr.get(k, {}).get("i", 0)) for k in
                ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask")}
        if mask["ellipsis_mask"]:
            raise ConversionError(f"node {out}: StridedSlice with an ellipsis is not supported")
        starts, ends, axes, steps, shrink, new_axes = [], [], [], [], [], []
        in_axis = 0
        for k in range(begin.size):
            bit = 1 << k
            if mask["new_axis_mask"] & bit:
                new_axes.append(k)
                continue
            step = int(strides[k])
            # a masked bound is "from the first / to the last element in the step's direction"
            first, last = (0, _INT64_MAX) if step > 0 else (_INT64_MAX, -_INT64_MAX)
            b = first if mask["begin_mask"] & bit else int(begin[k])
            e = last if mask["end_mask"] & bit else int(end[k])
            if mask["shrink_axis_mask"] & bit:  # one element at begin (masks ignored), axis dropped
                b = int(begin[k])
                e, step = (b + 1 if b != -1 else _INT64_MAX), 1
                shrink.append(k)
            starts.append(b)
            ends.append(e)
            axes.append(in_axis)
            steps.append(step)
            in_axis += 1
        a = self.x(node.inputs[0])
        kind = self.dtype[a]
        cur = self.add("Slice", [a, *(self.new_const(f"{out}__{n}", np.array(v, np.int64)) for n, v in
                                      (("starts", starts), ("ends", ends), ("axes", axes), ("steps", steps)))],
                       out + "__sliced" if shrink or new_axes else out, kind)
        # output axis numbers: spec positions that are not shrunk; new axes are inserted there
        if shrink:
            sq = [k - sum(1 for n in new_axes if n < k) for k in shrink]
            cur = self.add("Squeeze", [cur, self.new_const(out + "__sq", np.array(sq, np.int64))],
                           out + "__squeezed" if new_axes else out, kind)
        if new_axes:
            un = [k - sum(1 for s in shrink if s < k) for k in new_axes]
            self.add("Unsqueeze", [cur, self.new_const(out + "__un", np.array(un, np.int64))], out, kind)

    def slice(self, node: TfjsNode) -> None:
        """TF Slice(x, begin, size): ONNX ends = begin + size, and size -1 means 'to the end'."""
        out = node.name
        a, begin = self.x(node.inputs[0]), self.int64(node.inputs[1])
        size_c = self.g.const(node.inputs[2])
        if size_c is not None:
            b_c = self.g.const(node.inputs[1])
            if b_c is not None:
                ends = np.where(size_c < 0, _INT64_MAX, b_c.astype(np.int64) + size_c).astype(np.int64)
                end = self.new_const(out + "__ends", ends.reshape(-1))
            else:
                raise ConversionError(f"node {out}: Slice with a dynamic begin and constant size is not supported")
        else:
            size = self.int64(node.inputs[2])
            zero = self.new_const(out + "__zero", np.array(0, np.int64))
            big = self.new_const(out + "__big", np.array(_INT64_MAX, np.int64))
            neg = self.add("Less", [size, zero], out + "__neg", _BOOL)
            end = self.add("Where", [neg, big, self.add("Add", [begin, size], out + "__sum", _INT)],
                           out + "__ends", _INT)
        self.add("Slice", [a, begin, end], out, self.dtype[a])

    def resize(self, node: TfjsNode) -> None:
        """TF ResizeBilinear/NearestNeighbor: ONNX Resize in NCHW with ``sizes = [N, C, h, w]``.

        NCHW although onnxruntime can resize NHWC: its transpose optimiser cannot move a
        transpose across a Resize whose sizes are computed at run time, and RVM concatenates
        a resized 32-channel map with the photo before its last convs.  An NHWC Resize left a
        35-channel full-resolution transpose there (+15% time at ratio 1); in NCHW the
        transposes pair up and cancel.
        """
        out, op = node.name, node.op
        a = self.x(node.inputs[0])
        shape = self.add("Shape", [a], out + "__shape", _INT)
        n = self.dim_slice(shape, 0, 1, out + "__n")
        c = self.dim_slice(shape, 3, 4, out + "__c")
        sizes = self.add("Concat", [n, c, self.int64(node.inputs[1])], out + "__sizes", _INT, axis=0)
        coord = resize_coordinates(op, node.boolean("align_corners"), node.boolean("half_pixel_centers"))
        extra = {} if op == "ResizeBilinear" else {
            "nearest_mode": "floor" if coord == "asymmetric" else "round_prefer_ceil"}
        mode = "linear" if op == "ResizeBilinear" else "nearest"
        self.nchw(a, out, lambda i, o: self.add("Resize", [i, "", "", sizes], o, _FLOAT, mode=mode,
                                                coordinate_transformation_mode=coord, **extra))


def _io(model_json: dict[str, Any], nodes: list[TfjsNode]) -> tuple[list[tuple[str, str, Any]],
                                                                     list[tuple[str, str, Any]]]:
    """(onnx name, tf ref, declared shape) for inputs and outputs, from the signature when present."""
    sig = model_json.get("signature") or {}
    if sig.get("inputs") and sig.get("outputs"):
        def entry(key: str, spec: dict[str, Any]) -> tuple[str, str, Any]:
            ts = spec.get("tensorShape", {})
            shape = None if ts.get("unknownRank") else [int(d.get("size", -1)) for d in ts.get("dim", [])]
            ref = spec["name"][:-2] if spec["name"].endswith(":0") else spec["name"]
            return key, ref, shape

        # signature order (RVM: src first, like every image model here; the tf2onnx reference
        # sorts them by name, which puts downsample_ratio:0 first); inputs are fed by name anyway
        ins = [entry(k, v) for k, v in sig["inputs"].items()]
        outs = [entry(k, v) for k, v in sig["outputs"].items()]
        return ins, outs
    ins, outs = [], []
    consumed = {_split_ref(i)[0] for n in nodes for i in n.inputs}
    for n in nodes:
        if n.op == "Placeholder":
            shp = n.attr.get("shape", {}).get("shape", {})
            dims = None if shp.get("unknownRank") else [int(d.get("size", -1)) for d in shp.get("dim", [])]
            ins.append((n.name + ":0", n.name, dims))
        elif n.op not in ("Const", "NoOp") and n.name not in consumed:
            outs.append((n.name + ":0", n.name, None))
    return ins, outs


def build_graph_onnx(model_json: dict[str, Any], weights: dict[str, np.ndarray], name: str = "tfjs",
                     input_shapes: dict[str, list[int | str]] | None = None) -> Any:
    """The ONNX ``ModelProto`` (opset 13, NHWC interface) of a tfjs graph model and its weights.

    ``input_shapes`` declares inputs whose rank the model leaves unknown (default
    :data:`DEFAULT_INPUT_SHAPES`).
    """
    input_shapes = DEFAULT_INPUT_SHAPES if input_shapes is None else input_shapes
    try:
        from onnx import helper, numpy_helper
    except ImportError:
        raise missing_package("onnx", "TF.js") from None

    nodes = parse_nodes(model_json)
    by_name = {n.name: n for n in nodes}
    missing = [n.name for n in nodes if n.op == "Const" and n.name not in weights]
    if missing:
        raise ConversionError(f"constants without weights in the manifest: {missing[:5]}")
    g = _Graph(by_name, {n.name: weights[n.name] for n in nodes if n.op == "Const"}, _control_inputs(model_json))
    ins, outs = _io(model_json, nodes)
    for _, ref, _ in ins + outs:
        if _split_ref(ref)[0] not in by_name:
            raise ConversionError(f"signature names {ref}, which is not a node of the graph")
    em = _Emitter(g)
    em.emit_all([ref for _, ref, _ in outs])

    graph_inputs = []
    rename: dict[str, str] = {}
    for onnx_name, ref, shape in ins:
        node = by_name[_split_ref(ref)[0]]
        if node.name not in em.inputs:
            continue  # not needed by any output
        if shape is None:
            if onnx_name not in input_shapes:
                raise ConversionError(f"input {onnx_name} has an unknown rank; declare its shape (input_shapes)")
            shape = input_shapes[onnx_name]
        else:
            shape = [d if d >= 0 else f"{node.name}_{k}" for k, d in enumerate(shape)]
        kind = em.dtype[node.name]
        graph_inputs.append(helper.make_tensor_value_info(onnx_name, _ONNX_DTYPES[kind], shape))
        rename[node.name] = onnx_name
    for n in em.b.nodes:
        for k, i in enumerate(n.input):
            if i in rename:
                n.input[k] = rename[i]
    graph_outputs = []
    for onnx_name, ref, shape in outs:
        src = rename.get(g.live(ref), g.live(ref))
        em.b.add("Identity", [src], onnx_name, onnx_name + "__out")
        if shape is not None:
            shape = [d if d >= 0 else f"{onnx_name}_{k}" for k, d in enumerate(shape)]
        graph_outputs.append(helper.make_tensor_value_info(onnx_name, _ONNX_DTYPES[em.dtype[g.live(ref)]], shape))

    inits = [numpy_helper.from_array(v, k) for k, v in em.b.initializers.items()]
    graph = helper.make_graph(em.b.nodes, name, graph_inputs, graph_outputs, initializer=inits)
    model = make_model(graph, "bodypix-gimp.convert_graph")
    model.doc_string = "converted from a TF.js graph model (NHWC, conditionals resolved to the general branch)"
    if any(not o.type.tensor_type.HasField("shape") for o in model.graph.output):
        _infer_output_shapes(model)
    return model


def _infer_output_shapes(model: Any) -> None:
    """Outputs the signature does not describe get their rank from ONNX shape inference
    (the checker requires one)."""
    from onnx import shape_inference

    inferred = {v.name: v for v in shape_inference.infer_shapes(model).graph.output}
    for o in model.graph.output:
        if not o.type.tensor_type.HasField("shape"):
            found = inferred.get(o.name)
            if found is None or not found.type.tensor_type.HasField("shape"):
                raise ConversionError(f"output {o.name}: its rank cannot be inferred")
            o.type.tensor_type.shape.CopyFrom(found.type.tensor_type.shape)
