"""The local engine: decode the next photo and write the previous one while this one segments.

Three stages on threads joined by queues of one photo each: a reader thread decodes photos
(Pillow releases the GIL while it decodes), the calling (main) thread runs ``segment``
(onnxruntime, OpenCV and numpy release it too), and the ``Writer`` thread encodes and commits
(OpenCV's encoders release it).  So at most about five photos are in memory at once: one
being decoded, one waiting, one being segmented, one waiting to be written, one being written.
Threads, not processes: the models load once and nothing is copied between processes.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any

from ..imageio import load_image
from ..pipeline import segment
from ..settings import Settings
from .writer import Item, Writer, describe_error

_DONE = object()


def _fatal_errors() -> tuple[type[BaseException], ...]:
    """Errors of the setup, not of a photo: every photo would fail alike, so the batch stops."""
    from ..runtime.store import ChecksumError, ModelNotFoundError

    return (ModelNotFoundError, ChecksumError)


def run_local(photos: list[Path], settings: Settings, runtime: Any, writer: Writer) -> None:
    stop = threading.Event()
    decoded: queue.Queue[Any] = queue.Queue(maxsize=1)

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                decoded.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        for path in photos:
            if stop.is_set():
                return
            item = Item(path, started=time.time())
            t = time.perf_counter()
            try:
                item.photo = load_image(path)
            except Exception as e:  # noqa: BLE001 - any failure to read is this photo's line
                item.error = describe_error(item.label, e)
            item.timings["read"] = round((time.perf_counter() - t) * 1000, 1)
            if not put(item):
                return
        put(_DONE)

    reader = threading.Thread(target=read, name="bodypix-reader", daemon=True)
    reader.start()
    fatal = _fatal_errors()
    try:
        while True:
            item = decoded.get()
            if item is _DONE:
                break
            if item.error is None:
                t = time.perf_counter()
                try:
                    item.result = segment(item.photo, settings, runtime)
                    item.timings["segment"] = {k: round(v, 1) for k, v in item.result.timings.items()}
                except fatal:
                    raise
                except Exception as e:  # noqa: BLE001 - OSError, cv2.error, onnxruntime, MemoryError...
                    item.photo = None
                    item.error = describe_error(item.label, e)
                item.timings["segment_wall"] = round((time.perf_counter() - t) * 1000, 1)
            writer.put(item)
    finally:
        stop.set()
        reader.join()
