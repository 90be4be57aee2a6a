"""The process the GIMP plug-in talks to: pixels in over stdin, masks out as raw files.

Why a separate process: GIMP on Windows and macOS bundles its own Python, and Flatpak has
its own runtime, so onnxruntime cannot be imported into the plug-in's Python everywhere.
The plug-in therefore starts ``VENV_PYTHON -m bodypix_gimp.worker`` (the environment the
installer made) and keeps to moving bytes: it needs neither numpy nor onnxruntime.

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

Everything that decides a pixel (BodyPix, thresholds, which person overlaps the selection,
part groups, colours) happens here or deeper in the core; nothing in GIMP computes.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import numpy as np

PROTOCOL = 1
OPS = ("select-person", "select-parts", "parts-to-layers", "person-mask")
QUALITY = {"fast": {"output_stride": 16}, "accurate": {"output_stride": 8}}


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


def build_settings(options: dict[str, Any]) -> Any:
    """Dialog values -> Settings on top of the product defaults.

    quality: "fast" (stride 16) or "accurate" (stride 8); refine / fingers: on or off;
    threshold: 0..1; internal_resolution: low/medium/high/full or a number.
    """
    from .settings import ConfigError, default_settings

    base = default_settings()
    changes: dict[str, Any] = {}
    quality = options.get("quality", "fast")
    if quality not in QUALITY:
        raise WorkerError(f"quality must be one of {', '.join(QUALITY)}, not {quality!r}", "config")
    changes.update(QUALITY[quality])
    if "threshold" in options:
        changes["segmentation_threshold"] = float(options["threshold"])
    if options.get("internal_resolution"):
        changes["internal_resolution"] = options["internal_resolution"]
    if "refine" in options:
        changes["refine"] = refine_method() if options["refine"] else "none"
    if "fingers" in options:
        changes["fingers"] = bool(options["fingers"]) and stage_available("hands")
    if "soft_edges" in options:
        changes["soft_edges"] = bool(options["soft_edges"])
    try:
        return base.replace(**changes)
    except ConfigError as e:
        raise WorkerError(str(e), "config") from None


def stage_available(name: str) -> bool:
    """Whether the core ships the optional stage ``bodypix_gimp.refine.<name>``.

    The dialog's switches stay meaningful on an install whose core predates a stage.
    """
    import importlib.util

    try:
        return importlib.util.find_spec(f"bodypix_gimp.refine.{name}") is not None
    except ModuleNotFoundError:
        return False


def refine_method() -> str:
    """The edge method "refine edges: on" means: the product default, else the core's default."""
    from .settings import default_settings

    method = default_settings().refine
    if method != "none" or not stage_available("edges"):
        return method
    from .refine import edges  # type: ignore[attr-defined]

    return str(getattr(edges, "DEFAULT_METHOD", "none"))


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


def intersect(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """Intersection of two (x, y, w, h) rectangles; w or h may come out 0."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def persons_overlapping(person_mask: np.ndarray, selection: np.ndarray) -> np.ndarray:
    """Keep only the people that touch the selection (a box around one person in a group).

    People are the 8-connected components of the hard person mask; issue 6 may swap this
    for BodyPix's instance masks.  Soft mask values are kept inside the chosen people.
    """
    import cv2

    hard = (person_mask >= 128).astype(np.uint8)
    count, labels = cv2.connectedComponents(hard, connectivity=8)
    hit = np.unique(labels[(selection >= 128) & (hard > 0)])
    keep = np.isin(labels, hit[hit > 0])
    # soft edges just outside a kept component belong to it: grow the kept area by the
    # soft fringe (pixels 1..127 adjacent to kept people)
    if person_mask.max() < 255 or ((person_mask > 0) & (person_mask < 128)).any():
        grown = cv2.dilate(keep.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=3) > 0
        keep = keep | (grown & (person_mask > 0) & ~hard.astype(bool))
    return np.where(keep, person_mask, np.uint8(0))


def bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x, y, w, h) of the non-zero pixels, None when there are none."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


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


def run(
    req: Request, rgba: np.ndarray, selection: np.ndarray | None, progress: Callable[[float, str], None]
) -> dict:
    """Compute what ``req.op`` asks for and write it; returns the result description."""
    from . import render
    from .models import ChecksumError, ModelNotFoundError, RuntimeOptions
    from .pipeline import segment
    from .result import PART_GROUPS, PART_NAMES, part_ids

    settings = build_settings(req.options)
    if req.op == "select-parts":
        try:
            ids = part_ids(req.parts or ["person"])
        except ValueError as e:
            raise WorkerError(str(e), "config") from None
    try:
        res = segment(rgba, settings, RuntimeOptions(models=req.models), progress=progress)
    except (ModelNotFoundError, ChecksumError) as e:
        raise WorkerError(str(e), "model") from None
    if not res.found_person:
        raise WorkerError(
            f"No person found in '{req.label}'. Nothing was changed. "
            "Try a lower threshold or the accurate quality.",
            "empty",
        )
    # the part of the source that lands inside the target (canvas or layer), in source pixels
    sx, sy = req.source_rect[:2]
    tx, ty, tw, th = intersect(req.source_rect, req.target_rect)
    local = (tx - sx, ty - sy, tw, th)
    out = Output(req.outdir, (sx, sy))
    summary: dict[str, Any] = {"timings_ms": {k: round(v, 1) for k, v in res.timings.items()}}

    if req.op in ("select-person", "person-mask"):
        mask = res.person_mask
        if selection is not None:
            mask = persons_overlapping(mask, selection)
            if not (mask >= 128).any():
                raise WorkerError("No person overlaps the selection. Nothing was changed.", "empty")
        out.add("person", mask, local)
    elif req.op == "select-parts":
        if req.parts in ([], ["person"]):
            mask = res.person_mask
        else:
            mask = np.where(np.isin(res.part_map, ids), np.uint8(255), np.uint8(0))
        if selection is not None:
            mask = np.where(persons_overlapping(res.person_mask, selection) >= 128, mask, np.uint8(0))
        if not (mask >= 128).any():
            names = ", ".join(req.parts or ["person"])
            raise WorkerError(f"None of these parts was found: {names}. Nothing was changed.", "empty")
        out.add("parts", mask, local)
    elif req.op == "parts-to-layers":
        region = res.part_map[local[1] : local[1] + th, local[0] : local[0] + tw]
        region_origin = (tx, ty)
        counts = np.bincount(region.ravel(), minlength=256)
        for pid in np.flatnonzero(counts[: len(PART_NAMES)]):
            m = region == pid
            bx, by, bw, bh = bbox(m)  # type: ignore[misc]
            crop = np.where(m[by : by + bh, bx : bx + bw], np.uint8(255), np.uint8(0))
            color = [int(c) for c in render.RAINBOW_PART_COLORS[pid]]
            out.add(
                part_label(PART_NAMES[pid]),
                crop,
                (0, 0, bw, bh),
                origin=(tx + bx, ty + by),
                kind="part",
                part=PART_NAMES[pid],
                color=color,
                pixels=int(counts[pid]),
            )
        colored = render.colored_part_mask(region, background=(0, 0, 0))
        alpha = np.where(region != 255, np.uint8(255), np.uint8(0))
        out.add(
            "part map", np.dstack([colored, alpha]), (0, 0, tw, th), origin=region_origin, kind="part-map"
        )
        out.add("person", res.person_mask, local, kind="person")
        summary["groups"] = {g: [part_label(n) for n in names] for g, names in PART_GROUPS.items()}
    summary["items"] = out.items
    return summary


def part_label(name: str) -> str:
    """``left_hand`` -> ``left hand``: the names users see on layers and channels."""
    return name.replace("_", " ")


def serve(stdin: BinaryIO, stdout: TextIO) -> int:
    """Read one request, answer it; returns the process exit status."""
    parent = os.getppid()
    t0 = time.perf_counter()

    def emit(obj: dict[str, Any]) -> None:
        stdout.write(json.dumps(obj) + "\n")
        stdout.flush()

    def progress(fraction: float, message: str) -> None:
        # GIMP kills the plug-in when the user cancels; stop instead of finishing for nobody
        if os.getppid() != parent:
            raise WorkerError("cancelled", "cancelled")
        emit({"progress": round(float(fraction), 3), "message": message})

    try:
        req = parse_header(stdin.readline())
        # warm up while the plug-in is still reading pixels out of GIMP
        from .models import ChecksumError, ModelNotFoundError, RuntimeOptions
        from .pipeline import get_model

        settings = build_settings(req.options)
        try:
            get_model(settings, RuntimeOptions(models=req.models))
        except (ModelNotFoundError, ChecksumError) as e:
            raise WorkerError(str(e), "model") from None
        t_ready = time.perf_counter()
        raw = read_exact(stdin, req.width * req.height * req.channels)
        rgba = np.frombuffer(raw, np.uint8).reshape(req.height, req.width, req.channels)
        selection = None
        if req.selection:
            sel = read_exact(stdin, req.width * req.height)
            selection = np.frombuffer(sel, np.uint8).reshape(req.height, req.width)
        t_read = time.perf_counter()
        result = run(req, rgba, selection, progress)
        result["worker_ms"] = {
            "startup_and_model": round((t_ready - t0) * 1000, 1),
            "wait_for_pixels": round((t_read - t_ready) * 1000, 1),
            "compute_and_write": round((time.perf_counter() - t_read) * 1000, 1),
        }
        emit({"result": result})
        return 0
    except WorkerError as e:
        emit({"error": str(e), "kind": e.kind})
        return 2
    except Exception as e:  # last resort: one line for GIMP, the traceback for the log
        traceback.print_exc(file=sys.stderr)
        emit({"error": f"{type(e).__name__}: {e}".splitlines()[0], "kind": "internal"})
        return 3


def main() -> int:
    return serve(sys.stdin.buffer, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
