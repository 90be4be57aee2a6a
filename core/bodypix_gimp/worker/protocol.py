"""The worker protocol: the request header, the pixel stream, progress and result lines.

Protocol (version 2), the same on a one-shot worker's stdin/stdout and on a connection to
the model server (there after the handshake in ``server``):

* in: one JSON header line (at most HEADER_CAP bytes), then ``width*height*channels``
  bytes of ``R'G'B'(A) u8`` pixels of the source rectangle (``header["channels"]``: 3 or
  4), then (only when ``header["selection"]``) ``width*height`` bytes of the image's
  selection over the same rectangle.
* out: ``{"go": true}`` once the header is accepted and the model is loaded, before the
  worker reads any pixel (the model loads while GIMP is still reading pixels; a client
  sends pixels only after "go", so an early error never leaves it writing to nobody);
  ``{"progress": f, "message": m}`` while working (the server adds ``{"busy": true}``
  every 2 s); then exactly one ``{"result": {...}}`` or
  ``{"error": "one line", "kind": "model|empty|input|config|internal"}``.  The error may
  come instead of "go".
* Results are raw uint8 files in ``header["outdir"]``, each described by
  ``{"name", "file", "rect": [x, y, w, h], "channels"}`` in image coordinates and already
  clipped to ``header["target_rect"]``, so the plug-in writes them with one buffer call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..imageio import MAX_PIXELS

PROTOCOL = 2
HEADER_CAP = 1 << 20  # longest request header line (a list of part names stays far below)
OPS = ("select-person", "select-parts", "parts-to-layers", "person-mask", "persons-to-layers", "pose-to-path")
MULTI_PERSON_OPS = ("persons-to-layers", "pose-to-path")  # need body-pix's person instances


class WorkerError(Exception):
    """A failure the user should read in GIMP's error console; ``kind`` lets scripts branch."""

    def __init__(self, message: str, kind: str = "internal") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class Request:
    """One plug-in call, as read from the header."""

    op: str
    width: int
    height: int
    source_rect: tuple[int, int, int, int]
    target_rect: tuple[int, int, int, int]
    options: dict[str, Any] = field(default_factory=dict)
    parts: list[str] = field(default_factory=list)
    selection: bool = False
    models: str | None = None
    outdir: str = "."
    label: str = "layer"
    channels: int = 4


def parse_header(line: bytes) -> Request:
    """Header JSON -> Request, with a one-line error of kind "config" (what the plug-in sent
    is malformed) or "input" (the layer cannot be used) for anything wrong; never another."""
    try:
        h = json.loads(line)
    except (ValueError, RecursionError) as e:
        raise WorkerError(f"bad request from the plug-in: not JSON ({e})", "config") from None
    if not isinstance(h, dict):
        raise WorkerError(f"bad request from the plug-in: a {type(h).__name__}, not an object", "config")
    if h.get("protocol", PROTOCOL) != PROTOCOL:
        raise WorkerError(f"plug-in speaks protocol {h.get('protocol')!r:.20}, worker {PROTOCOL}; reinstall", "config")
    op = h.get("op")
    if not isinstance(op, str) or op not in OPS:
        raise WorkerError(f"unknown operation {op!r:.40}; expected one of {', '.join(OPS)}", "config")
    src = rect(h.get("source_rect"), "source_rect")
    options, parts = h.get("options", {}), h.get("parts", [])
    if not isinstance(options, dict):
        raise WorkerError("bad request from the plug-in: options must be an object", "config")
    if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
        raise WorkerError("bad request from the plug-in: parts must be a list of names", "config")
    for name in ("models", "outdir", "label"):
        if h.get(name) is not None and not isinstance(h[name], str):
            raise WorkerError(f"bad request from the plug-in: {name} must be a string", "config")
    channels = h.get("channels", 4)
    if type(channels) is not int or channels not in (3, 4):
        raise WorkerError(f"pixels must have 3 or 4 channels, not {channels!r:.20}", "config")
    req = Request(
        op=op,
        width=src[2],
        height=src[3],
        source_rect=src,
        target_rect=rect(h.get("target_rect", list(src)), "target_rect"),
        options=options,
        parts=parts,
        selection=bool(h.get("selection", False)),
        models=h.get("models") or None,
        outdir=h.get("outdir") or ".",
        label=h.get("label") or "layer",
        channels=channels,
    )
    if req.width < 1 or req.height < 1:
        raise WorkerError(f"the layer is empty ({req.width}x{req.height} pixels)", "input")
    if req.width * req.height > MAX_PIXELS:
        name = " ".join(req.label.split())[:60]
        raise WorkerError(
            f"'{name}' is {req.width}x{req.height} pixels ({req.width * req.height / 1e6:.0f} MP), above "
            f"the {MAX_PIXELS // 1_000_000} MP limit; scale it down (Image > Scale Image) and try again.",
            "input",
        )
    return req


def rect(value: Any, name: str) -> tuple[int, int, int, int]:
    """Four whole numbers (x, y, w, h) within +-2^31, or a "config" error naming ``name``."""
    if not isinstance(value, list) or len(value) != 4 or not all(type(v) is int for v in value):
        raise WorkerError(f"bad request from the plug-in: {name} must be 4 whole numbers", "config")
    if not all(-(2**31) <= v < 2**31 for v in value):
        raise WorkerError(f"bad request from the plug-in: {name} is out of range", "config")
    return value[0], value[1], value[2], value[3]


def read_exact(stream: BinaryIO, n: int) -> bytes:
    """Read exactly n bytes (pipes deliver in chunks)."""
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise WorkerError(f"the plug-in sent {n - left} of {n} bytes", "config")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class Output:
    """Writes result arrays as raw files and collects their descriptions."""

    def __init__(self, outdir: str, origin: tuple[int, int]) -> None:
        self.dir = Path(outdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.origin = origin
        self.items: list[dict[str, Any]] = []

    def add(
        self,
        name: str,
        array: np.ndarray,
        rect: tuple[int, int, int, int],
        origin: tuple[int, int] | None = None,
        **extra: Any,
    ) -> None:
        """Store ``array[rect]`` (x, y, w, h in array pixels); ``origin`` = image position of array[0, 0]."""
        ox, oy = self.origin if origin is None else origin
        x, y, w, h = rect
        crop = np.ascontiguousarray(array[y : y + h, x : x + w])
        fname = f"{len(self.items):02d}.raw"
        crop.tofile(self.dir / fname)
        channels = 1 if crop.ndim == 2 else crop.shape[2]
        self.items.append(
            {"name": name, "file": fname, "channels": channels, "rect": [x + ox, y + oy, w, h], **extra}
        )
