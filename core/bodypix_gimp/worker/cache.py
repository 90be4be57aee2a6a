"""Recent segmentations, so Select Person, then Hands, then Face on an unchanged layer compute once.

Pure and small: a key -> ``Result`` map bounded by total bytes and by entry count. When a new
result does not fit, the least recently used results go first until it does; a result larger
than the whole budget is not kept. The key (``key``) is a hash of the very pixels the plug-in
sent, their size and channel count, every setting that changes the result and the models
folder, so a layer with any other pixel, size or setting misses. Where the layer sits (its
offsets) and the current selection are not in the key: the operations apply them to the cached
result on every call.

Why the worker keeps these and not GIMP: the plug-in process lives for one call, and GIMP gives
no change counter for a layer's pixels, so the worker hashes what it receives. SHA-256 is used
(hashlib, no new dependency): about 30 ms for 36 MB (12 MP) on this 2-core machine with SHA
extensions, done chunk by chunk while the pixels arrive (``Hasher``), so the key is ready when
the last byte is, and neither a first nor a second click waits for it (docs/gimp.md).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from dataclasses import fields
from typing import Any

import numpy as np

from ..result import Result
from ..settings import Settings

# A 12 MP result holds about 36 MB (person mask, part map, instance map; BodyPix's float
# probability map is computed only when read, and no operation reads it), 24 MP about 72 MB:
# the budget keeps the last few photos a user clicks through, not a gallery.
# $BODYPIX_WORKER_CACHE_MB sets the budget (0: no cache).
MAX_BYTES = 256 * 1024 * 1024
MAX_ENTRIES = 4
ENV_BUDGET = "BODYPIX_WORKER_CACHE_MB"


def budget_from_env(default: int = MAX_BYTES) -> int:
    """The byte budget $BODYPIX_WORKER_CACHE_MB asks for (a whole number of MB), else ``default``."""
    value = os.environ.get(ENV_BUDGET, "").strip()
    if not value:
        return default
    try:
        return max(0, int(value)) * 1024 * 1024
    except ValueError:
        return default  # a typo must not stop the model server; the default is safe


def digest(pixels: np.ndarray | bytes | memoryview) -> bytes:
    """SHA-256 of the pixel bytes, as received (no copy for a contiguous array)."""
    data = memoryview(np.ascontiguousarray(pixels)) if isinstance(pixels, np.ndarray) else pixels
    return hashlib.sha256(data).digest()


class Hasher:
    """SHA-256 of a byte stream fed chunk by chunk (the pixels as they arrive on the socket),
    and the time spent hashing (hashlib releases the GIL on chunks over 2 KiB)."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.seconds = 0.0

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        t = time.perf_counter()
        self._h.update(chunk)
        self.seconds += time.perf_counter() - t

    def digest(self) -> bytes:
        return self._h.digest()


def key(pixel_digest: bytes, shape: tuple[int, ...], settings: Settings, models: str | None) -> tuple:
    """Cache key: the pixels' hash and shape, the settings (but ``multi_person``: a result with
    people answers a request without; see ``ResultCache.get``), the models folder."""
    s = settings.replace(multi_person=False).to_dict()
    return (pixel_digest, tuple(int(v) for v in shape), tuple(sorted((k, repr(v)) for k, v in s.items())),
            str(models))  # fmt: skip


def result_bytes(res: Result) -> int:
    """Memory a result holds: every distinct array (people share the photo-wide ones)."""
    arrays: dict[int, int] = {}

    def add(a: Any) -> None:
        if isinstance(a, np.ndarray):
            base = a
            while isinstance(base.base, np.ndarray):
                base = base.base
            arrays[id(base)] = max(arrays.get(id(base), 0), base.nbytes)

    for f in fields(res):
        add(getattr(res, f.name))
    for p in res.persons:
        for f in fields(p):
            add(getattr(p, f.name))
    return sum(arrays.values())


class ResultCache:
    """Least-recently-used results within ``max_bytes`` and ``max_entries``; thread-safe."""

    def __init__(self, max_bytes: int | None = None, max_entries: int = MAX_ENTRIES) -> None:
        max_bytes = budget_from_env() if max_bytes is None else max_bytes
        self.max_bytes, self.max_entries = max_bytes, max_entries
        self._items: OrderedDict[tuple, tuple[Result, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, k: tuple, need_persons: bool = False) -> Result | None:
        """The result for ``k``, or None; ``need_persons``: only a result that tells people apart."""
        with self._lock:
            item = self._items.get(k)
            if item is None or (need_persons and item[0].instance_map is None):
                self.misses += 1
                return None
            self._items.move_to_end(k)
            self.hits += 1
            return item[0]

    def put(self, k: tuple, res: Result) -> None:
        size = result_bytes(res)
        with self._lock:
            self._items.pop(k, None)
            if size > self.max_bytes or self.max_entries < 1:
                return
            while self._items and (len(self._items) >= self.max_entries or self.total_bytes + size > self.max_bytes):
                self._items.popitem(last=False)
            self._items[k] = (res, size)

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
