"""Property-based fuzzing of what the worker reads from the plug-in: any header line is either
a sane Request or a one-line error of kind "config" or "input", never a crash (hypothesis,
bounded in examples and time)."""

from __future__ import annotations

import json

from bodypix_gimp.imageio import MAX_PIXELS
from bodypix_gimp.worker.operations import build_settings
from bodypix_gimp.worker.protocol import OPS, WorkerError, parse_header
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=12,
)
NUMBER = st.integers(-(2**40), 2**40) | st.integers(-5, 5000) | JSON
OPTIONS = st.dictionaries(
    st.sampled_from(["quality", "threshold", "internal_resolution", "refine", "fingers", "soft_edges"]),
    st.sampled_from(["fast", "accurate", "low", "medium", "high", "full"]) | st.floats(-2, 2) | JSON,
)
HEADER = st.fixed_dictionaries(
    {},
    optional={
        "op": st.sampled_from(OPS) | JSON,
        "source_rect": st.lists(NUMBER, min_size=3, max_size=5) | JSON,
        "target_rect": st.lists(NUMBER, min_size=4, max_size=4) | JSON,
        "options": OPTIONS | JSON,
        "parts": st.lists(st.text(max_size=12), max_size=4) | JSON,
        "channels": st.sampled_from([3, 4]) | JSON,
        "selection": JSON,
        "models": st.text(max_size=20) | JSON,
        "outdir": st.text(max_size=20) | JSON,
        "label": st.text(max_size=80) | JSON,
        "protocol": st.sampled_from([2]) | JSON,
    },
)
LINES = (
    HEADER.map(lambda h: json.dumps(h).encode())
    | JSON.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=300)
    | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(LINES)
def test_any_header_is_a_sane_request_or_a_one_line_error(line: bytes) -> None:
    try:
        req = parse_header(line)
    except WorkerError as e:
        assert e.kind in ("config", "input") and str(e) and "\n" not in str(e), (e.kind, str(e))
        return
    assert req.op in OPS and req.channels in (3, 4)
    assert 1 <= req.width and 1 <= req.height and req.width * req.height <= MAX_PIXELS
    assert all(type(v) is int for v in (*req.source_rect, *req.target_rect))
    assert isinstance(req.options, dict) and all(isinstance(p, str) for p in req.parts)
    assert all(v is None or isinstance(v, str) for v in (req.models, req.outdir, req.label))
    try:  # the options then become Settings, or a "config" error
        build_settings(req.options)
    except WorkerError as e:
        assert e.kind == "config" and str(e) and "\n" not in str(e), str(e)
