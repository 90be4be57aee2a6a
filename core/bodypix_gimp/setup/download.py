"""Download one file over HTTP(S), verify its sha256, and only then put it in place.

Written on the standard library (urllib + hashlib) rather than pooch: the installer runs
it before anything else is installed, the whole job is ~60 lines, and we need our own
error wording (the file name and both hashes) and a ``progress(fraction, message)`` hook
that pooch's progress-bar interface does not offer.

Guarantees: the bytes go to ``<dest>.part`` next to the destination and are renamed only
after the length and the checksum are right; on any failure the partial file is removed,
so a bad download never sits where the runtime would load it.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..errors import ChecksumError
from ..result import Progress

T = TypeVar("T")
CHUNK = 1 << 16
USER_AGENT = "bodypix-gimp-setup/1"


class DownloadError(RuntimeError):
    """The file could not be fetched completely; nothing was kept."""


class ChecksumMismatchError(DownloadError, ChecksumError):
    """The fetched bytes do not match the recorded sha256; nothing was kept."""


class RefusedError(DownloadError):
    """The download is larger than a limit: refused at once, never retried; nothing was kept."""


# Characters no file name may hold on some platform: separators of either kind, the drive and
# stream colon, Windows' reserved punctuation, and control characters.
_NOT_IN_NAMES = re.compile(r'[/\\:*?"<>|\x00-\x1f\x7f]')
# Windows device names, reserved with any extension (``NUL.bin`` is the NUL device there).
_DEVICES = re.compile(r"CON|PRN|AUX|NUL|CONIN\$|CONOUT\$|(COM|LPT)[0-9\u00b9\u00b2\u00b3]", re.IGNORECASE)
# Local write failures: retrying a download does not help with these.
LOCAL_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG})


def plain_file_name(name: object) -> bool:
    """Whether ``name`` is a plain file name on every platform (a hand-written rule: no library has it).

    Refused: anything that is not a non-empty string, separators of either kind (``a/b``,
    ``a\\b``), drive letters and NTFS streams (``D:x.bin``), ``.``/``..`` and other leading
    dots, control and Windows-reserved characters, trailing dots or spaces (Windows drops
    them, so two names would meet), Windows device names (``NUL``, ``com1.bin``) and names
    longer than 255 bytes.
    """
    return (
        isinstance(name, str)
        and 0 < len(name.encode("utf-8", "surrogatepass")) <= 255
        and not name.startswith(".")
        and not name.endswith((".", " "))
        and _NOT_IN_NAMES.search(name) is None
        and _DEVICES.fullmatch(name.split(".", 1)[0].rstrip(" ")) is None
    )


def fetch(url: str, dest: str | os.PathLike[str], sha256: str | None = None, *,
          progress: Progress | None = None, timeout: float = 60.0, retries: int = 2) -> str:
    """Download ``url`` to ``dest`` and return its sha256.

    ``sha256`` (when known) must match, else :class:`ChecksumMismatchError` naming the
    file.  Network errors and short reads are retried ``retries`` times (a checksum
    mismatch is not: the server sent complete but different bytes).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return with_retries(lambda: _fetch_once(url, dest, sha256, progress, timeout), retries=retries,
                        transient=(urllib.error.URLError, http.client.HTTPException, OSError, DownloadError),
                        label=dest.name, url=url, where=lambda e: dest)


def with_retries(attempt: Callable[[], T], *, retries: int, transient: tuple[type[Exception], ...],
                 label: str, url: str, where: Callable[[OSError], object]) -> T:
    """``attempt()``, tried again up to ``retries`` times after a ``transient`` error (1, 2, 4, 5 s apart).

    The one retry loop of the downloads (``fetch`` and ``npm.extract``); hand-written because
    the installer runs it before anything else is installed (no tenacity/urllib3 yet).  Never
    retried: :class:`ChecksumMismatchError` and :class:`RefusedError` (raised as they are), a
    local write failure (``LOCAL_ERRNOS``: one :class:`DownloadError` naming ``where(error)``)
    and an HTTP 4xx (it will not heal).  When no attempt succeeds: one :class:`DownloadError`
    naming ``label``, ``url`` and the last error.
    """
    last: Exception | None = None
    for n in range(retries + 1):
        try:
            return attempt()
        except (ChecksumMismatchError, RefusedError):
            raise
        except transient as e:
            if isinstance(e, OSError) and not isinstance(e, urllib.error.URLError) and e.errno in LOCAL_ERRNOS:
                raise DownloadError(f"cannot write {where(e)}: {e.strerror}; nothing was kept") from None
            last = e
            if isinstance(e, urllib.error.HTTPError) and 400 <= e.code < 500:
                break  # 404 and friends will not heal on retry
            if n < retries:
                time.sleep(min(2.0**n, 5.0))
    raise DownloadError(f"could not download {label} from {url}: {last}") from last


def _fetch_once(url: str, dest: Path, sha256: str | None, progress: Progress | None, timeout: float) -> str:
    part = dest.with_name(dest.name + ".part")
    h = hashlib.sha256()
    received = 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp, open(part, "wb") as out:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            while True:
                block = resp.read(CHUNK)
                if not block:
                    break
                out.write(block)
                h.update(block)
                received += len(block)
                if progress is not None and total:
                    progress(min(received / total, 1.0), f"downloading {dest.name}")
        if total is not None and received != total:
            raise DownloadError(f"{dest.name}: connection closed after {received} of {total} bytes (truncated)")
        digest = h.hexdigest()
        if sha256 is not None and digest != sha256.lower():
            raise ChecksumMismatchError(
                f"{dest.name} from {url} does not match its recorded sha256 "
                f"(expected {sha256}, got {digest}); the file was not kept"
            )
        os.replace(part, dest)
        return digest
    finally:
        part.unlink(missing_ok=True)
