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
OPS = ("select-person", "select-parts", "parts-to-layers", "person-mask", "persons-to-layers", "pose-to-path")
MULTI_PERSON_OPS = ("persons-to-layers", "pose-to-path")  # need body-pix's person instances
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


def persons_overlapping(
    person_mask: np.ndarray, selection: np.ndarray, instance_map: np.ndarray | None = None
) -> np.ndarray:
    """Keep only the people that touch the selection (a box around one person in a group).

    A pixel is kept when its 8-connected component of the hard mask touches the selection
    and, with body-pix's person instances (``instance_map`` from ``multi_person``), its
    person does too (or no person claimed it): components keep apart people who stand
    apart, instances split people who touch.  Soft mask values are kept inside the chosen
    people.
    """
    import cv2

    hard = (person_mask >= 128).astype(np.uint8)
    count, labels = cv2.connectedComponents(hard, connectivity=8)
    inside = (selection >= 128) & (hard > 0)
    hit = np.unique(labels[inside])
    keep = np.isin(labels, hit[hit > 0])
    if instance_map is not None and instance_map.any():
        people = np.unique(instance_map[inside])
        # both must agree: a component the selection touches, and (within it) a touched
        # person; body-pix can miss a pose (someone cut by the frame) and hand their pixels
        # to a neighbour's instance, which the component test then removes again
        keep = keep & (np.isin(instance_map, people[people > 0]) | (instance_map == 0))
    # soft edges just outside a kept person belong to it: grow the kept area by the
    # soft fringe (pixels 1..127 adjacent to kept people)
    if ((person_mask > 0) & (person_mask < 128)).any():
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
    from .pipeline import segment
    from .result import PART_GROUPS, PART_NAMES, part_ids
    from .runtime.sessions import RuntimeOptions
    from .runtime.store import ChecksumError, ModelNotFoundError

    settings = build_settings(req.options)
    if selection is not None or req.op in MULTI_PERSON_OPS:  # these need to tell people apart
        settings = settings.replace(multi_person=True)
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
            mask = persons_overlapping(mask, selection, res.instance_map)
            if not (mask >= 128).any():
                raise WorkerError("No person overlaps the selection. Nothing was changed.", "empty")
        out.add("person", mask, local)
    elif req.op == "select-parts":
        if req.parts in ([], ["person"]):
            mask = res.person_mask
        else:
            mask = np.where(np.isin(res.part_map, ids), np.uint8(255), np.uint8(0))
        if selection is not None:
            chosen = persons_overlapping(res.person_mask, selection, res.instance_map)
            mask = np.where(chosen >= 128, mask, np.uint8(0))
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
    elif req.op == "persons-to-layers":
        persons_to_items(res, out, req, local, (tx, ty))
    elif req.op == "pose-to-path":
        out.items.extend(pose_paths(res, req, settings.min_keypoint_score))
    summary["items"] = out.items
    return summary


def require_persons(res: Any, label: str) -> None:
    """Person pixels but no pose confident enough to make a person: say so, change nothing."""
    if not res.persons:
        raise WorkerError(
            f"BodyPix found person pixels in '{label}' but could not tell people apart (no confident pose). "
            "Nothing was changed. Use Select Person for the whole mask.",
            "empty",
        )


def persons_to_items(
    res: Any, out: Output, req: Request, local: tuple[int, int, int, int], origin: tuple[int, int]
) -> None:
    """One tight mask item per person ("Person 1" leftmost), cropped to the target.

    Each mask is the core's ``Person.mask`` (the final mask on that person's pixels), so the
    layers and channels partition the person mask the way the core's instances do.
    """
    require_persons(res, req.label)
    lx, ly, tw, th = local
    for p in res.persons:
        # the person's box (source pixels) within the part of the source inside the target
        x0, y0 = max(p.bbox[0], lx), max(p.bbox[1], ly)
        x1, y1 = min(p.bbox[2], lx + tw), min(p.bbox[3], ly + th)
        if x1 <= x0 or y1 <= y0:
            continue  # this person lies outside the canvas (a layer hanging over its edge)
        mine = res.instance_map[y0:y1, x0:x1] == p.index
        crop = np.where(mine, res.person_mask[y0:y1, x0:x1], np.uint8(0))
        box = bbox(crop)
        if box is None:
            continue
        color = [int(c) for c in PERSON_COLORS[(p.index - 1) % len(PERSON_COLORS)]]
        out.add(
            f"Person {p.index}",
            crop,
            box,
            origin=(origin[0] + x0 - lx, origin[1] + y0 - ly),
            kind="person",
            index=p.index,
            color=color,
            pixels=int(mine.sum()),
        )
    if not out.items:
        raise WorkerError(f"Nobody in '{req.label}' lies inside the canvas. Nothing was changed.", "empty")


# Distinct colours for "Person k" layers and channels (Okabe-Ito, readable for colour-blind users).
PERSON_COLORS = np.array(
    [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0), (204, 121, 167)],
    np.uint8,
)


def pose_paths(res: Any, req: Request, min_score: float) -> list[dict[str, Any]]:
    """Per person with a confident skeleton: ``{"kind": "pose", "name": "Pose k", "segments"}``.

    ``segments`` are the body-pix skeleton's adjacent-keypoint edges whose two keypoints both
    score above ``min_score`` (``poses.skeleton``), as [x0, y0, x1, y1] in image coordinates;
    "Pose k" belongs to "Person k".  No file: GIMP makes one open stroke per segment.
    """
    from .bodypix.poses import skeleton

    require_persons(res, req.label)
    sx, sy = req.source_rect[:2]
    items = []
    for p in res.persons:
        bones = skeleton(p.pose, min_score=min_score)
        if bones:
            segments = [[x0 + sx, y0 + sy, x1 + sx, y1 + sy] for (x0, y0), (x1, y1) in bones]
            items.append({"name": f"Pose {p.index}", "kind": "pose", "index": p.index, "segments": segments})
    if not items:
        raise WorkerError(
            f"No confident pose found in '{req.label}' (no keypoint pair scores above {min_score}). "
            "Nothing was changed.",
            "empty",
        )
    return items


def part_label(name: str) -> str:
    """``left_hand`` -> ``left hand``: the names users see on layers and channels."""
    return name.replace("_", " ")


def serve(stdin: BinaryIO, stdout: TextIO, alive: Callable[[], bool] | None = None) -> int:
    """Read one request, answer it; returns the exit status (0 done, 2 refused, 3 crashed).

    ``alive()`` says whether anyone still waits for the answer (default: our parent process,
    which GIMP kills when the user cancels); when not, the work stops at the next stage.
    """
    parent = os.getppid()
    alive = alive or (lambda: os.getppid() == parent)
    t0 = time.perf_counter()

    def emit(obj: dict[str, Any]) -> None:
        try:
            stdout.write(json.dumps(obj) + "\n")
            stdout.flush()
        except (BrokenPipeError, ConnectionError, ValueError):
            raise WorkerError("cancelled", "cancelled") from None

    def progress(fraction: float, message: str) -> None:
        # GIMP kills the plug-in when the user cancels; stop instead of finishing for nobody
        if not alive():
            raise WorkerError("cancelled", "cancelled")
        emit({"progress": round(float(fraction), 3), "message": message})

    try:
        req = parse_header(stdin.readline())
        # warm up while the plug-in is still reading pixels out of GIMP
        from .pipeline import get_model
        from .runtime.sessions import RuntimeOptions
        from .runtime.store import ChecksumError, ModelNotFoundError

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
        if e.kind == "cancelled":
            return 2
        try:
            emit({"error": str(e), "kind": e.kind})
        except WorkerError:
            pass
        return 2
    except Exception as e:  # last resort: one line for GIMP, the traceback for the log
        traceback.print_exc(file=sys.stderr)
        try:
            emit({"error": f"{type(e).__name__}: {e}".splitlines()[0], "kind": "internal"})
        except WorkerError:
            pass
        return 3


# ------------------------------------------------------------------ persistent server ---
# Starting Python, importing numpy/onnxruntime/opencv and loading the model costs about
# 0.6-1 s per click, and onnxruntime's first inference in a process is slower than the
# next ones.  So the plug-in starts one worker server per environment that keeps the
# models loaded and answers on a loopback socket until it has been idle for a while
# (the approach of intel/openvino-ai-plugins-gimp's model servers).  The protocol on a
# connection is the stdin/stdout one, after a token handshake; the token and port sit in
# a state file only the user can read.


def state_dir() -> Path:
    """Per-user folder for server state files (not shared between users)."""
    import getpass
    import tempfile

    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"bodypix-gimp-{user}"


def source_stamp() -> tuple[tuple[str, int, int], ...]:
    """Size and mtime of this package's files: a reinstall makes a running server retire."""
    here = Path(__file__).resolve().parent
    out = []
    for f in sorted(here.rglob("*.py")):
        st = f.stat()
        out.append((f.name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)


def serve_forever(state_path: Path, idle_seconds: float, models: str | None = None) -> int:
    """Answer requests on a loopback socket until idle for ``idle_seconds`` or told to quit."""
    import secrets
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    token = secrets.token_hex(16)
    stamp = source_stamp()
    try:  # load the default model before announcing, so the first client does not wait twice
        from .pipeline import get_model
        from .runtime.sessions import RuntimeOptions

        get_model(build_settings({}), RuntimeOptions(models=models))
    except Exception:
        pass  # the request will report it properly
    me = {"port": sock.getsockname()[1], "token": token, "pid": os.getpid(), "protocol": PROTOCOL,
          "python": sys.executable}  # fmt: skip
    write_state(state_path, me)
    sock.settimeout(idle_seconds)
    try:
        while True:
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                return 0
            with conn:
                conn.settimeout(None)
                rfile = conn.makefile("rb")
                wfile = conn.makefile("w", encoding="utf-8")
                try:
                    hello = json.loads(rfile.readline() or b"{}")
                except ValueError:
                    continue
                if hello.get("token") != token:
                    continue
                if hello.get("cmd") == "quit":
                    return 0
                if source_stamp() != stamp:  # reinstalled underneath us: hand over to a fresh process
                    wfile.write(json.dumps({"restart": True}) + "\n")
                    wfile.flush()
                    return 0
                wfile.write(json.dumps({"ready": True}) + "\n")
                wfile.flush()
                try:
                    serve(rfile, wfile, alive=lambda: True)
                except OSError:
                    pass  # the plug-in went away (cancelled); serve the next one
    finally:
        try:
            if json.loads(state_path.read_text()).get("pid") == os.getpid():
                state_path.unlink()
        except (OSError, ValueError):
            pass
        sock.close()


def stop_servers(python: str | None = None) -> int:
    """Tell the servers of this environment (``python``, default this one) to quit."""
    import socket

    python = python or sys.executable
    stopped = 0
    for f in state_dir().glob("*.json"):
        try:
            st = json.loads(f.read_text())
            if st.get("python") != python:
                continue
            with socket.create_connection(("127.0.0.1", st["port"]), timeout=2) as c:
                c.sendall((json.dumps({"token": st["token"], "cmd": "quit"}) + "\n").encode())
            stopped += 1
        except (OSError, ValueError, KeyError):
            pass
        f.unlink(missing_ok=True)
    return stopped


def main(argv: list[str] | None = None) -> int:
    """``-m bodypix_gimp.worker``: one request on stdin; ``--serve STATE``; ``--stop``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bodypix_gimp.worker")
    ap.add_argument("--serve", metavar="STATE_FILE", help="keep running, answer on a loopback socket")
    ap.add_argument("--idle", type=float, default=600.0, help="--serve: quit after this many idle seconds")
    ap.add_argument("--models", help="--serve: models folder to preload from")
    ap.add_argument("--stop", action="store_true", help="stop the servers of this environment")
    args = ap.parse_args(argv)
    if args.stop:
        print(f"stopped {stop_servers()} server(s)")
        return 0
    if args.serve:
        return serve_forever(Path(args.serve), args.idle, args.models)
    return serve(sys.stdin.buffer, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
