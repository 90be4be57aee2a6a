"""A photo's output files: what they are called, how they are encoded, how they are committed.

Encoding is a pure function of the photo and its ``Result`` (``encode_photo``), so the local
engine and a Ray worker produce the same bytes.  Committing (``commit``) writes every file
under a temporary name in the output folder, then renames them all: a photo's outputs
appear together or not at all, and an abort before the renames removes the temporaries.
Files are created with mode 0666 minus the umask, as ``open()`` would.

Encoder choice, measured at 12 MP on this project's 2-core machine (``make bench-batch``
prints the current figures): OpenCV's PNG at zlib level 1 with the RLE strategy writes the
person mask and the part map about as fast as any setting and 3x smaller than the default
strategy; the RGB overlay costs about 0.6 s as PNG even at level 1 and 65 ms as JPEG, so
``--overlay jpg`` is the default and ``png``/``none`` are there for who wants them.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..render import RAINBOW_PART_COLORS
from ..result import Result
from ..settings import ConfigError, Settings

OVERLAY_FORMATS = ("jpg", "png", "none")
JPEG_QUALITY = 90
TMP_PREFIX = ".tmp-"
# An --out folder with less free space than this is "full": no batch gets far there.
MIN_FREE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class OutputOptions:
    """Which files a photo gets, besides the person mask and the part map."""

    overlay: str = "jpg"  # jpg | png | none
    json: bool = False
    part_masks: bool = False

    def __post_init__(self) -> None:
        if self.overlay not in OVERLAY_FORMATS:
            raise ConfigError(f"--overlay must be one of {', '.join(OVERLAY_FORMATS)}, not {self.overlay!r}")


def fixed_names(stem: str, options: OutputOptions) -> list[str]:
    """The files every photo gets whatever is in it (the per-part and per-person files vary)."""
    names = [f"{stem}.person.png", f"{stem}.parts.png"]
    if options.overlay != "none":
        names.append(f"{stem}.overlay.{options.overlay}")
    if options.json:
        names.append(f"{stem}.json")
    return names


def is_output_name(name: str) -> bool:
    """Whether a file name looks like one this command writes (so a folder input skips it)."""
    parts = name.split(".")
    if len(parts) < 3:
        return False
    kind = parts[-2]
    return (kind in ("person", "parts") and parts[-1] == "png") or (
        kind == "overlay" and parts[-1] in ("png", "jpg")
    ) or (kind.startswith("part-") and parts[-1] == "png") or (
        kind.startswith("person-") and kind[7:].isdigit() and parts[-1] == "png"
    )


def person_files(stem: str, out_dir: Path) -> list[Path]:
    """Existing ``<stem>.person-<k>.png`` files of one input."""
    if not out_dir.is_dir():
        return []
    prefix = f"{stem}.person-"
    return sorted(p for p in out_dir.iterdir()
                  if p.name.startswith(prefix) and p.name.endswith(".png") and p.name[len(prefix):-4].isdigit())


# --- encoding ------------------------------------------------------------------------------

def encode_png(array: np.ndarray) -> bytes:
    """HxW uint8 -> PNG bytes (level 1, RLE: masks are long runs of one value)."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(array),
                           [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE])
    if not ok:
        raise RuntimeError("OpenCV could not encode a PNG")
    return buf.tobytes()


def _overlay_tables(opacity: float) -> np.ndarray:
    """(3, 256 * 256) uint8: for colour channel c, part id p and photo value v, the overlay value.

    The same float32 arithmetic as ``render.draw_mask`` on every (p, v) pair, so a table
    lookup gives the identical bytes without full-size float copies of the photo (at 12 MP
    that is 0.4 GB of temporaries and most of the overlay's time).
    """
    colours = np.full((256, 3), 255, np.uint8)  # background white, as render.colored_part_mask
    colours[: len(RAINBOW_PART_COLORS)] = RAINBOW_PART_COLORS
    base = np.broadcast_to(np.arange(256, dtype=np.uint8)[None, :], (256, 256)).astype(np.float32)
    tables = np.empty((3, 256 * 256), np.uint8)
    for c in range(3):
        mask = np.broadcast_to(colours[:, c][:, None], (256, 256)).astype(np.float32)
        out = base * (1.0 - opacity) + mask * opacity
        tables[c] = np.clip(out + 0.5, 0, 255).astype(np.uint8).ravel()
    return tables


_TABLES: dict[float, np.ndarray] = {}
_TABLES_LOCK = threading.Lock()


def overlay_bgr(image: np.ndarray, part_map: np.ndarray, opacity: float = 0.7) -> np.ndarray:
    """``render.part_overlay`` (identical values) in BGR channel order, for OpenCV's encoders.

    Outside the people's bounding box every pixel is background: one per-channel LUT
    (``cv2.LUT``); inside it, the (part, value) table.
    """
    import cv2

    with _TABLES_LOCK:
        tables = _TABLES.get(opacity)
        if tables is None:
            tables = _TABLES[opacity] = _overlay_tables(opacity)
    background = np.ascontiguousarray(tables[::-1, 255 * 256:].T.reshape(1, 256, 3))  # BGR, part 255 (white)
    out = cv2.LUT(cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2BGR), background)
    rows = np.flatnonzero((part_map != 255).any(axis=1))
    if rows.size:
        y0, y1 = rows[0], rows[-1] + 1
        cols = np.flatnonzero((part_map[y0:y1] != 255).any(axis=0))
        x0, x1 = cols[0], cols[-1] + 1
        index = part_map[y0:y1, x0:x1].astype(np.uint16) << 8
        for c in range(3):
            np.take(tables[c], index | image[y0:y1, x0:x1, c], out=out[y0:y1, x0:x1, 2 - c])
    return out


def encode_overlay(image: np.ndarray, part_map: np.ndarray, fmt: str) -> bytes:
    import cv2

    bgr = overlay_bgr(image, part_map)
    if fmt == "jpg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    else:
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode the overlay as {fmt}")
    return buf.tobytes()


@dataclass
class Encoded:
    """One photo's files as bytes, and what to tell the user about it."""

    files: dict[str, bytes]
    person_found: bool
    size: tuple[int, int]
    notes: list[str] = field(default_factory=list)  # the one-photo summary lines


def encode_photo(photo: np.ndarray, result: Result, stem: str, label: str, settings: Settings,
                 options: OutputOptions, describe: bool = False) -> Encoded:
    """Every output file of one photo, as bytes (the same bytes on every engine)."""
    from ..result import PART_NAMES

    files: dict[str, bytes] = {
        f"{stem}.person.png": encode_png(result.person_mask),
        f"{stem}.parts.png": encode_png(result.part_map),
    }
    if options.overlay != "none":
        files[f"{stem}.overlay.{options.overlay}"] = encode_overlay(photo, result.part_map, options.overlay)
    stats = result.part_stats() if (options.part_masks or describe) else {}
    if options.part_masks:
        for name, s in stats.items():
            files[f"{stem}.part-{name}.png"] = encode_png(result.part_mask(s["id"]))
    if settings.multi_person:
        for person in result.persons:
            files[f"{stem}.person-{person.index}.png"] = encode_png(person.mask)
    if options.json:
        summary: dict[str, Any] = {"input": label, "settings": settings.to_dict(), **result.summary()}
        files[f"{stem}.json"] = json.dumps(summary, indent=2).encode()
    found = result.found_person
    notes = []
    if describe and found:
        present = ", ".join(sorted(stats, key=PART_NAMES.index))
        notes.append(f"{label}: person {int((result.person_mask >= 128).sum())} px; parts: {present}")
        if settings.multi_person:
            notes.append(f"{label}: {len(result.persons)} people, left to right: "
                         + ", ".join(f"{p.pixels} px" for p in result.persons))
    h, w = result.person_mask.shape
    return Encoded(files, found, (w, h), notes)


# --- committing ----------------------------------------------------------------------------

class Aborted(Exception):
    """The batch is stopping: this photo's files were not committed."""


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` (must not exist) with mode 0666 & ~umask, like open(path, 'xb')."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def commit(out_dir: Path, files: dict[str, bytes], abort: threading.Event | None = None,
           remove: Iterable[Path] = ()) -> list[str]:
    """Write ``files`` (name -> bytes) into ``out_dir`` all-or-nothing; return the names.

    Each file goes to a temporary ``.tmp-<name>.<random>`` in the same folder first; only when
    every one is written are they renamed (``os.replace``, atomic per file).  ``abort`` set
    before the renames, or any error, removes the temporaries and commits nothing.  The
    renames themselves run in a writer thread, which signals never interrupt, so they
    complete.  ``remove``: stale files of an earlier run to delete after the renames.
    """
    temps: list[tuple[Path, Path]] = []
    try:
        for name, data in files.items():
            if abort is not None and abort.is_set():
                raise Aborted
            tmp = out_dir / f"{TMP_PREFIX}{name}.{secrets.token_hex(4)}"
            temps.append((tmp, out_dir / name))
            _write_new(tmp, data)
        if abort is not None and abort.is_set():
            raise Aborted
    except BaseException:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, final in temps:
        os.replace(tmp, final)
    keep = {final for _, final in temps}
    for stale in remove:
        if stale not in keep:
            stale.unlink(missing_ok=True)
    return list(files)


# A photo's files are written in well under this; a temporary of ours older than it was left by
# a run that was killed (SIGKILL, power cut) and is removed when the next batch starts there.
STALE_TMP_SECONDS = 3600


def sweep_stale_temps(out: Path, now: float | None = None) -> list[str]:
    """Remove ``.tmp-<output name>.<8 hex>`` files older than an hour from ``out``; return their names.

    Only names this module makes (an output's name, then 8 hex digits), so nobody else's file goes;
    only old ones, so a batch running there now keeps its temporaries.
    """
    import time

    now = time.time() if now is None else now
    removed = []
    for p in out.iterdir():
        name = p.name
        if not name.startswith(TMP_PREFIX):
            continue
        inner, _, tag = name[len(TMP_PREFIX):].rpartition(".")
        if len(tag) != 8 or any(c not in "0123456789abcdef" for c in tag) or not (
                is_output_name(inner) or inner.endswith(".json") or inner.startswith("probe")):
            continue
        try:
            st = p.lstat()
            if p.is_symlink() or not p.is_file() or now - st.st_mtime < STALE_TMP_SECONDS:
                continue
            p.unlink()
            removed.append(name)
        except OSError:
            continue
    return removed


def prepare_out_dir(out: Path) -> None:
    """Create ``out`` and prove it takes files, before any photo is read.

    One-line ConfigErrors for an --out that is a file, lies under a file, cannot be created,
    is not writable or is (nearly) full.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file, not a folder")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"--out {out}: {parent} is a file, not a folder")
            break
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot create the folder ({os.strerror(e.errno or 0) or e})") from None
    free = shutil.disk_usage(out).free
    if free < MIN_FREE_BYTES:
        raise ConfigError(f"--out {out}: the disk is full ({free // 1024} KiB free)")
    probe = out / f"{TMP_PREFIX}probe.{secrets.token_hex(4)}"
    try:
        _write_new(probe, b"\0" * 65536)
    except OSError as e:
        reason = "the disk is full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else \
            f"cannot write there ({os.strerror(e.errno) if e.errno else e})"
        raise ConfigError(f"--out {out}: {reason}") from None
    finally:
        probe.unlink(missing_ok=True)
    sweep_stale_temps(out)
