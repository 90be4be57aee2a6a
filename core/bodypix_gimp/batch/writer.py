"""What every engine hands its finished photos to: the writer thread, the per-photo item, the signals.

Engines (``local``, ``ray_engine``) import this module and ``runner`` imports the engines, so
these shared pieces stand on their own and the batch package has no import circle.
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..imageio import InputError
from ..result import Result
from ..settings import ConfigError, Settings
from .manifest import Manifest, stamp
from .outputs import Aborted, Encoded, OutputOptions, commit, encode_photo, person_files


class RayJobError(RuntimeError):
    """Ray itself failed (a worker process died and could not be restarted, the cluster went away)."""


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt is for SIGINT."""


@dataclass
class Item:
    """One photo on its way to the writer: failed, segmented (local) or already encoded (Ray)."""

    path: Path
    timings: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    photo: np.ndarray | None = None
    result: Result | None = None
    encoded: Encoded | None = None
    started: float = 0.0  # time.time() when its reading began

    @property
    def label(self) -> str:
        return str(self.path)


@dataclass
class BatchSummary:
    total: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    no_person: int = 0
    interrupted: int = 0  # the signal number that stopped the batch, 0 if none
    wall_s: float = 0.0
    failures: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 128 + self.interrupted
        return 1 if self.failed else 0


def describe_error(label: str, exc: BaseException) -> str:
    """One line naming the file: the message of a user-facing error, type and first line otherwise."""
    text = str(exc).strip().splitlines()
    first = next((t.strip() for t in text if t.strip()), "")
    if isinstance(exc, (InputError, ConfigError)):
        message = first or type(exc).__name__
    else:
        message = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    if len(message) > 400:
        message = message[:397] + "..."
    return message if label in message else f"{label}: {message}"


class Writer:
    """The one thread that writes outputs and the manifest (bounded queue: a photo or two)."""

    def __init__(self, out_dir: Path, settings: Settings, options: OutputOptions, manifest: Manifest,
                 summary: BatchSummary, total: int, quiet: bool, describe: bool) -> None:
        from tqdm import tqdm

        self.out_dir, self.settings, self.options = out_dir, settings, options
        self.manifest, self.summary, self.describe = manifest, summary, describe
        self.queue: queue.Queue[Item | None] = queue.Queue(maxsize=1)
        self.abort = threading.Event()
        self.bar = tqdm(total=total, unit="photo", disable=quiet or total < 2, file=sys.stderr)
        self.thread = threading.Thread(target=self._loop, name="bodypix-writer", daemon=True)
        self.thread.start()

    def put(self, item: Item) -> None:
        if not self._offer(item):
            raise RuntimeError("the output writer stopped")  # only after a bug in _loop

    def _offer(self, item: Item | None) -> bool:
        """Queue ``item`` once there is room; False if the writer thread has ended meanwhile."""
        while self.thread.is_alive():
            try:
                self.queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def close(self, abort: bool) -> None:
        """Finish the queue (or, with ``abort``, drop it and abandon the current photo); join."""
        if abort:
            self.abort.set()
            while True:  # drop what waits; the writer sees abort before its next photo
                try:
                    self.queue.get_nowait()
                except queue.Empty:
                    break
        self._offer(None)  # the end mark
        self.thread.join()
        self.bar.close()

    def error_line(self, text: str) -> None:
        self.bar.write(f"bodypix-gimp: error: {text}", file=sys.stderr)

    def _loop(self) -> None:
        while True:
            item = self.queue.get()
            if item is None or self.abort.is_set():
                return
            try:
                self._one(item)
            except Aborted:
                return
            except Exception as e:  # noqa: BLE001 - any failure of one photo is that photo's line
                self._failed(item, describe_error(item.label, e))
            self.bar.update(1)

    def _one(self, item: Item) -> None:
        if item.error is not None:
            self._failed(item, item.error)
            return
        stem = item.path.stem
        if item.encoded is None:
            assert item.photo is not None and item.result is not None
            t = time.perf_counter()
            item.encoded = encode_photo(item.photo, item.result, stem, item.label, self.settings, self.options,
                                        self.describe)
            item.photo = item.result = None
            item.timings["encode"] = round((time.perf_counter() - t) * 1000, 1)
        enc = item.encoded
        t = time.perf_counter()
        stale = person_files(stem, self.out_dir) if self.settings.multi_person else []
        names = commit(self.out_dir, enc.files, self.abort, remove=stale)
        item.timings["write"] = round((time.perf_counter() - t) * 1000, 1)
        self.summary.ok += 1
        if not enc.person_found:
            self.summary.no_person += 1
            self.bar.write(f"{item.label}: no person found", file=sys.stderr)
        for note in enc.notes:
            self.bar.write(note)
        self.manifest.append({"input": item.label, "status": "ok", "outputs": names,
                              "person_found": enc.person_found, "size": list(enc.size),
                              "timings_ms": item.timings, "started": stamp(item.started)})

    def _failed(self, item: Item, message: str) -> None:
        self.summary.failed += 1
        self.summary.failures.append(message)
        self.error_line(message)
        self.manifest.append({"input": item.label, "status": "failed", "outputs": [], "error": message,
                              "timings_ms": item.timings, "started": stamp(item.started)})


@contextmanager
def signals_raise() -> Iterator[None]:
    """SIGTERM raises ``Terminated`` in the main thread while the batch runs (SIGINT already raises)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: object) -> None:
        raise Terminated

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextmanager
def signals_ignored() -> Iterator[None]:
    """While cleaning up after a stop, a second Ctrl+C must not leave temporaries behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
