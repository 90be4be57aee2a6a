"""RVM's graph for the alpha matte alone: derived once from the model file, cached per user.

Robust Video Matting's deep guided filter refines four channels at the photo's size
(foreground colour 3 + alpha 1): per channel ``out = A * fine_x + b`` with A and b upsampled
from the network's working size and ``fine_x = concat(src, mean(src))``.  The alpha needs only
A[3], b[3] and the mean channel, but the graph resizes, concatenates, transposes and splits all
four, and clamps with Min/Max on a slow broadcasting path.  onnxruntime does not prune that
work when only ``pha`` is fetched.  ``derive_alpha_only`` rewrites the graph exactly: it pushes
"take the alpha channel" back through the refiner to the network's working size, turns the
Max(Min(x, 1), 0) clamp into Clip, and keeps only ``pha``.  Same arithmetic per element, so
the same alpha bit for bit (tests/test_rvm_graph.py, on real photos and on both conversions).
Measured per call on a 1333x750 working copy (2 shared cores, docs/performance.md): median
225 -> 144 ms for the reference conversion, 247 -> 192 ms for the installer's.

Why a cached file and not a rewrite at each session: the rewrite needs the ``onnx`` package
(importing it costs ~0.3 s, the rewrite ~0.2 s more), so doing it in every process would cost
a CLI run or the model server's first click about half a second.  The derived file is made
once per user and model: compared with the source on probe inputs (``pha`` must be
identical), then published with an atomic rename in a private (0700) folder, named by the
source's sha256, ``REWRITE_VERSION`` and its own sha256 (checked once per process, as model
files are).  The source file is never written: it may live in a read-only models folder.
Whatever goes wrong (no ``onnx``, a graph the rewrite does not know, a mismatch, a cache
folder that cannot be made or is not private, a damaged cached file) leaves the original
graph in use: the same alpha, only slower.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs

from .sessions import session
from .store import APP_NAME, sha256_file

ENV_CACHE = "BODYPIX_GRAPH_CACHE"
# Bump when derive_alpha_only changes: the file name carries it, so old copies are not reused.
REWRITE_VERSION = 1
OUTPUT = "pha"
SRC = "src"
# (height, width, downsample ratio) of the probe inputs the derived graph must match exactly.
PROBES = ((96, 128, 0.5), (61, 47, 0.75))

log = logging.getLogger(__name__)
_lock = threading.Lock()
_derived: dict[tuple[str, str, int, int], Path] = {}

ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Min", "Max", "Pow"}
UNARY = {"Identity", "Relu", "Sigmoid", "Tanh", "Clip", "Neg", "Abs", "Exp", "Sqrt", "Reciprocal"}


def cache_dir() -> Path:
    """Where derived graphs live: ``$BODYPIX_GRAPH_CACHE`` or the per-user cache folder."""
    value = os.environ.get(ENV_CACHE)
    if value:
        return Path(value).expanduser()
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)) / "graphs"


def derive_alpha_only(model: Any, output: str = OUTPUT) -> Any:
    """An ``onnx.ModelProto`` that computes only ``output`` of ``model`` (RVM, NHWC), cheaply.

    Hand-written graph surgery (no library prunes by channel): a request "channel ``index`` of
    tensor T along ``axis``" is pushed back through Split, Concat, Transpose, element-wise ops
    and per-channel Resize; where it cannot go further, a Slice takes the channel.  Channel
    counts come from onnx's shape inference on a copy with a fixed probe size.
    """
    import onnx
    from onnx import helper, numpy_helper, shape_inference

    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    probe = onnx.ModelProto.FromString(model.SerializeToString())
    for i in probe.graph.input:
        if i.name == SRC:
            for d, v in zip(i.type.tensor_type.shape.dim, (1, PROBES[0][0], PROBES[0][1], 3), strict=True):
                d.Clear()
                d.dim_value = v
    inferred = shape_inference.infer_shapes(probe, strict_mode=False, data_prop=True).graph
    shapes: dict[str, list[int | None]] = {}
    for v in [*inferred.value_info, *inferred.input, *inferred.output]:
        if v.type.tensor_type.HasField("shape"):
            shapes[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    shapes.update({k: list(a.shape) for k, a in consts.items()})
    producer = {o: n for n in g.node for o in n.output}
    added: list[Any] = []
    memo: dict[tuple[str, int, int], str] = {}

    def const(value: np.ndarray) -> str:
        name = f"alpha_only/c{len(consts)}"
        g.initializer.append(numpy_helper.from_array(value, name))
        consts[name] = value
        shapes[name] = list(value.shape)
        return name

    def i64(*values: int) -> str:
        return const(np.array(values, np.int64))

    def add(op: str, inputs: list[str], attrs: dict[str, Any], base: str) -> str:
        out = f"alpha_only/{len(added)}/{base.rsplit('/', 1)[-1]}"
        added.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def attrs(n: Any) -> dict[str, Any]:
        return {a.name: helper.get_attribute_value(a) for a in n.attribute}

    def dim(name: str, axis: int) -> int | None:
        s = shapes.get(name)
        return None if s is None or axis >= len(s) else s[axis]

    def take(name: str, axis: int, index: int) -> str:
        """The tensor ``name[..., index:index + 1 along axis, ...]``; ``name`` itself where that is all of it."""
        key = (name, axis, index)
        if key not in memo:
            memo[key] = push(name, axis, index)
        return memo[key]

    def cut(name: str, axis: int, index: int) -> str:
        return name if dim(name, axis) == 1 else add("Slice", [name, i64(index), i64(index + 1), i64(axis)], {}, name)

    def push(name: str, axis: int, index: int) -> str:
        n = producer.get(name)
        rank = len(shapes.get(name, ()))
        d = dim(name, axis)
        if n is None or not rank:
            return cut(name, axis, index)
        op, a = n.op_type, attrs(n)
        if op == "Split" and a.get("axis", 0) % rank == axis and len(n.input) > 1 and n.input[1] in consts:
            sizes = consts[n.input[1]]
            return take(n.input[0], axis, int(sum(sizes[: list(n.output).index(name)])) + index)
        if op == "Concat" and a["axis"] % rank == axis:
            start = 0
            for i in n.input:
                di = dim(i, axis)
                if di is None:
                    break
                if start <= index < start + di:
                    return take(i, axis, index - start)
                start += di
            return cut(name, axis, index)
        if op == "Transpose":
            perm = list(a["perm"])
            inner = take(n.input[0], perm[axis], index)
            if inner == n.input[0]:
                return name
            rest = [p for j, p in enumerate(perm) if j != axis]
            if rest == sorted(rest):  # only the one-element axis moves: a reshape, no copy
                squeezed = add("Squeeze", [inner, i64(perm[axis])], {}, name)
                return add("Unsqueeze", [squeezed, i64(axis)], {}, name)
            return add("Transpose", [inner], {"perm": perm}, name)
        if op in UNARY:
            inner = take(n.input[0], axis, index)
            return name if inner == n.input[0] else add(op, [inner, *n.input[1:]], a, name)
        if op in ELEMENTWISE:
            inputs = []
            for i in n.input:
                ax = axis - (rank - len(shapes.get(i, ())))
                di = dim(i, ax) if ax >= 0 else 1
                if i not in shapes or di is None:
                    return cut(name, axis, index)
                inputs.append(i if di == 1 and d != 1 else take(i, ax, index))  # broadcast stays whole
            return name if inputs == list(n.input) else add(op, inputs, a, name)
        if (op == "Resize" and len(n.input) == 4 and n.input[3]
                and (not n.input[2] or consts.get(n.input[2], np.ones(1)).size == 0)
                and a.get("coordinate_transformation_mode") != b"tf_crop_and_resize"
                and d is not None and dim(n.input[0], axis) == d):
            # each channel is resized on its own: resize the one channel, asking for size 1 on its axis
            sizes = n.input[3]
            pieces = ([add("Slice", [sizes, i64(0), i64(axis)], {}, "sizes")] if axis else []) + [i64(1)]
            if axis < rank - 1:
                pieces.append(add("Slice", [sizes, i64(axis + 1), i64(rank)], {}, "sizes"))
            new_sizes = add("Concat", pieces, {"axis": 0}, "sizes")
            return add("Resize", [take(n.input[0], axis, index), n.input[1], n.input[2], new_sizes], a, name)
        return cut(name, axis, index)

    # Shape(Concat(...)) keeps a full-size Concat alive for its shape alone: take the shape of
    # its first input with the concatenated axis's size (known) put back.
    for n in g.node:
        c = producer.get(n.input[0]) if n.op_type == "Shape" and not n.attribute else None
        if c is None or c.op_type != "Concat":
            continue
        rank = len(shapes.get(c.output[0], ()))
        ax = attrs(c)["axis"] % rank if rank else 0
        total = dim(c.output[0], ax)
        if total is None:
            continue
        first = add("Shape", [c.input[0]], {}, "shape")
        pieces = ([add("Slice", [first, i64(0), i64(ax)], {}, "shape")] if ax else []) + [i64(total)]
        if ax < rank - 1:
            pieces.append(add("Slice", [first, i64(ax + 1), i64(rank)], {}, "shape"))
        n.op_type = "Identity"
        n.input[0] = add("Concat", pieces, {"axis": 0}, "shape")

    # Max(Min(x, hi), lo) and Min(Max(x, lo), hi) with scalar bounds, lo <= hi: Clip(x, lo, hi)
    # (the same value for every number; onnxruntime's Min/Max took ~25 ms each at 1 MP).
    for n in g.node:
        inner = producer.get(n.input[0]) if n.op_type in ("Min", "Max") and len(n.input) == 2 else None
        if inner is None or inner.op_type not in ("Min", "Max") or inner.op_type == n.op_type or len(inner.input) != 2:
            continue
        outer_c, inner_c, x = consts.get(n.input[1]), consts.get(inner.input[1]), inner.input[0]
        if outer_c is None or inner_c is None or outer_c.size != 1 or inner_c.size != 1:
            continue
        if len(shapes.get(x, ())) < max(outer_c.ndim, inner_c.ndim):
            continue
        lo, hi = (outer_c, inner_c) if n.op_type == "Max" else (inner_c, outer_c)
        if not float(lo.ravel()[0]) <= float(hi.ravel()[0]):
            continue
        n.op_type = "Clip"
        del n.input[:]
        n.input.extend([x, const(lo.reshape(())), const(hi.reshape(()))])

    if output not in shapes or not shapes[output]:
        raise ValueError(f"the graph has no output {output!r} with a known rank")
    result = take(output, len(shapes[output]) - 1, 0)
    if result == output:
        raise ValueError("nothing to rewrite")
    g.node.extend(added)

    # keep the nodes ``result`` needs, in an order that runs (the rewrite appended nodes that
    # earlier ones now read), then give ``result`` the output's name
    producer = {o: n for n in g.node for o in n.output}
    live, stack = set(), [result]
    while stack:
        n = producer.get(stack.pop())
        if n is not None and id(n) not in live:
            live.add(id(n))
            stack.extend(i for i in n.input if i)
    ready = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    ordered, pending = [], [n for n in g.node if id(n) in live]
    while pending:
        rest = []
        for n in pending:
            if all(i in ready for i in n.input):
                ordered.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ValueError("the rewritten graph has a cycle")
        pending = rest
    for n in ordered:
        n.output[:] = [output if o == result else o for o in n.output]
    del g.node[:]
    g.node.extend(ordered)
    kept = [o for o in g.output if o.name == output]
    del g.output[:]
    g.output.extend(kept)
    used = {i for n in g.node for i in n.input}
    inits = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(inits)
    del g.value_info[:]
    return model


def _probe_feeds(names: list[str], h: int, w: int, ratio: float) -> dict[str, np.ndarray]:
    rgb = np.random.default_rng(h * w).random((1, h, w, 3), dtype=np.float32)
    zero = np.zeros((1, 1, 1, 1), np.float32)
    return {n: rgb if n == SRC else np.array([ratio], np.float32) if n.startswith("downsample") else zero
            for n in names}


def same_alpha(source: Path, derived: bytes) -> bool:
    """Whether ``derived`` gives exactly the source's ``pha`` on the probe inputs (CPU)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    cpu = ["CPUExecutionProvider"]
    original = ort.InferenceSession(str(source), sess_options=opts, providers=cpu)
    new = ort.InferenceSession(derived, sess_options=opts, providers=cpu)
    names = [i.name for i in original.get_inputs()]
    if [o.name for o in new.get_outputs()] != [OUTPUT]:
        return False
    for h, w, ratio in PROBES:
        feeds = _probe_feeds(names, h, w, ratio)
        (a,) = original.run([OUTPUT], feeds)
        (b,) = new.run([OUTPUT], feeds)
        if a.shape != b.shape or not np.array_equal(a, b):
            return False
    return True


def _private(folder: Path) -> bool:
    """Make ``folder`` (0700); True when it is a real folder of this user that nobody else can write."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = folder.lstat()
    if not stat.S_ISDIR(st.st_mode):
        return False
    return os.name != "posix" or (st.st_uid == os.getuid() and not st.st_mode & 0o077)


def _publish(folder: Path, name: str, data: bytes) -> Path:
    """Write ``data`` as ``folder/name`` in one atomic rename (readers see no partial file)."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".onnx", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return folder / name


def _make(source: Path, folder: Path) -> Path:
    # The name carries the source's sha256 and the derived file's own: a copy whose bytes no
    # longer match (a damaged disk) is dropped and made again, as model files are checked.
    stem = f"rvm-alpha-{sha256_file(source)[:32]}"
    prefix = f"{stem}-v{REWRITE_VERSION}-"
    try:
        if not _private(folder):
            log.debug("RVM alpha graph: %s is not a private folder; using %s", folder, source)
            return source
        for path in sorted(folder.glob(prefix + "*.onnx")):
            if path.is_file() and not path.is_symlink() and sha256_file(path)[:16] == path.stem[len(prefix):]:
                return path
            path.unlink(missing_ok=True)
    except OSError as e:
        log.debug("RVM alpha graph: cache folder %s: %s; using %s", folder, e, source)
        return source
    try:
        import onnx
    except ImportError:
        return source
    try:
        data = derive_alpha_only(onnx.load(str(source))).SerializeToString()
        if not same_alpha(source, data):
            log.debug("RVM alpha graph: derived graph differs from %s; using it as is", source)
            return source
        path = _publish(folder, f"{prefix}{hashlib.sha256(data).hexdigest()[:16]}.onnx", data)
    except Exception as e:  # an unknown graph, a full disk...: the source gives the same alpha
        log.debug("RVM alpha graph: %s: %s; using %s", type(e).__name__, e, source)
        return source
    # one copy per source: those of an earlier REWRITE_VERSION go
    for old in folder.glob(f"{stem}-*.onnx"):
        if old != path:
            with contextlib.suppress(OSError):
                old.unlink()
    return path


def alpha_only_path(source: str | os.PathLike[str], cache: str | os.PathLike[str] | None = None) -> Path:
    """The derived alpha-only graph of the RVM file ``source`` (made once), or ``source`` itself."""
    source = Path(source)
    folder = Path(cache) if cache is not None else cache_dir()
    st = source.stat()
    key = (str(source), str(folder), st.st_size, st.st_mtime_ns)
    with _lock:
        path = _derived.get(key)
        if path is None:
            path = _derived[key] = _make(source, folder)
        return path


def forget(path: Path) -> None:
    """Drop a derived file that would not load (gone, damaged), so the next call makes it again."""
    with _lock:
        for key in [k for k, v in _derived.items() if v == path and Path(k[0]) != path]:
            del _derived[key]
    if path.name.startswith("rvm-alpha-"):
        path.unlink(missing_ok=True)


def alpha_session(source: str | os.PathLike[str], force_cpu: bool | None = None, threads: int = 0,
                  cache: str | os.PathLike[str] | None = None) -> Any:
    """A cached onnxruntime session that computes RVM's ``pha`` (inputs as the source's)."""
    path = alpha_only_path(source, cache)
    if path != Path(source):
        try:
            return session(path, force_cpu, threads)
        except Exception as e:  # a cached copy removed or damaged since: back to the source
            log.debug("RVM alpha graph: %s would not load (%s); using %s", path, e, source)
            forget(path)
    return session(source, force_cpu, threads)


def remove_cached(cache: str | os.PathLike[str] | None = None) -> int:
    """Delete the derived graphs (and unfinished writes) this module made in ``cache`` (default
    ``cache_dir()``), then the folder when it is left empty; returns how many files went.

    The uninstaller calls it (``python -m bodypix_gimp.runtime.rvm_graph --remove``): only
    files named as ``_make`` and ``_publish`` name them are touched, never another file there.
    """
    folder = Path(cache) if cache is not None else cache_dir()
    if not folder.is_dir() or folder.is_symlink():
        return 0
    removed = 0
    for path in [*folder.glob("rvm-alpha-*.onnx"), *folder.glob(".tmp-*.onnx")]:
        if path.is_file() and not path.is_symlink():
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
    with _lock:
        _derived.clear()
    with contextlib.suppress(OSError):
        folder.rmdir()  # only when empty
    return removed


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--remove"]:
        sys.exit("usage: python -m bodypix_gimp.runtime.rvm_graph --remove  (deletes the cached RVM alpha graphs)")
    print(f"removed {remove_cached()} cached RVM alpha graph file(s) from {cache_dir()}")
