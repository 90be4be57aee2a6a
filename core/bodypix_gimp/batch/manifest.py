"""``DIR/manifest.jsonl``: one JSON line per input and run, appended as each photo ends.

Fields: ``input`` (as given), ``status`` (``ok``, ``failed`` or ``skipped``), ``outputs``
(file names in DIR), ``error`` (the one-line message when it failed), ``person_found``,
``size`` ([width, height]), ``timings_ms`` (read, segment stages, encode, write; with Ray the
worker's host:pid), ``started`` (when its reading began), ``time`` (when its files were
committed), ``engine`` and ``run`` (the run's start time, grouping its lines).
A resumed run appends; the last line for an input is its current state (``latest``).
Each line is one ``write`` on an ``O_APPEND`` descriptor, so an interrupt never leaves half
a line, and the file honours the umask like the outputs.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

NAME = "manifest.jsonl"


def stamp(now: float) -> str:
    """Seconds since the epoch -> ``2026-11-30T01:44:27.123Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def parse_time(text: str) -> float:
    """A manifest ``time`` or ``run`` back to seconds since the epoch."""
    import calendar

    base, _, ms = text.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) + (int(ms) / 1000 if ms else 0.0)


def _now() -> str:
    return stamp(time.time())


class Manifest:
    def __init__(self, out_dir: Path, engine: str) -> None:
        self.path = out_dir / NAME
        self.engine = engine
        self.run = _now()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)

    def append(self, record: dict[str, Any]) -> None:
        line = {**record, "engine": self.engine, "run": self.run, "time": _now()}
        data = (json.dumps(line, ensure_ascii=False) + "\n").encode()
        os.write(self._fd, data)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read(path: Path) -> list[dict[str, Any]]:
    """Every line of a manifest (a torn last line, from a crash, is ignored)."""
    lines = []
    for text in path.read_text(encoding="utf-8").splitlines():
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError:
            continue
    return lines


def latest(path: Path) -> dict[str, dict[str, Any]]:
    """input -> its last line."""
    return {line["input"]: line for line in read(path)}
