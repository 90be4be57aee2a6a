"""The worker protocol: the request header, the pixel stream, progress and result lines.

Protocol (version 1):

* stdin: one JSON header line, then ``width*height*channels`` bytes of ``R'G'B'(A) u8``
  pixels of the source rectangle (``header["channels"]``: 3 or 4), then (only when
  ``header["selection"]``) ``width*height`` bytes
  of the image's selection over the same rectangle.  The header is sent first so the
  worker imports onnxruntime and loads the model while GIMP is still reading pixels.
* stdout: JSON lines ``{"progress": f, "message": m}`` while working, then exactly one
  ``{"result": {...}}`` or ``{"error": "one line", "kind": "model|empty|input|config|internal"}``.
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

PROTOCOL = 1
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
    """Header JSON -> Request, with a one-line error for anything malformed."""
    try:
        h = json.loads(line)
        if h.get("protocol", PROTOCOL) != PROTOCOL:
            raise WorkerError(
                f"plug-in speaks protocol {h.get('protocol')}, worker {PROTOCOL}; reinstall", "config"
            )
        if h["op"] not in OPS:
            raise WorkerError(f"unknown operation {h['op']!r}; expected one of {', '.join(OPS)}", "config")
        src = tuple(int(v) for v in h["source_rect"])
        req = Request(
            op=h["op"],
            width=src[2],
            height=src[3],
            source_rect=src,  # type: ignore[arg-type]
            target_rect=tuple(int(v) for v in h.get("target_rect", src)),  # type: ignore[arg-type]
            options=dict(h.get("options", {})),
            parts=list(h.get("parts", [])),
            selection=bool(h.get("selection", False)),
            models=h.get("models") or None,
            outdir=h.get("outdir", "."),
            label=str(h.get("label", "layer")),
            channels=int(h.get("channels", 4)),
        )
    except WorkerError:
        raise
    except (ValueError, KeyError, TypeError) as e:
        raise WorkerError(f"bad request from the plug-in: {e}", "config") from None
    if req.channels not in (3, 4):
        raise WorkerError(f"pixels must have 3 or 4 channels, not {req.channels}", "config")
    if req.width < 1 or req.height < 1:
        raise WorkerError(f"the layer is empty ({req.width}x{req.height} pixels)", "input")
    return req


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
