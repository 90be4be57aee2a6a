"""``DIR/manifest.jsonl``: one JSON line per input and run, appended as each photo ends.

Fields: ``input`` (as given), ``status`` (``ok``, ``failed`` or ``skipped``), ``outputs``
(file names in DIR), ``error`` (the one-line message when it failed), ``person_found``,
``size`` ([width, height]), ``timings_ms`` (read, segment stages, encode, write), ``engine``,
``run`` (the run's start time, grouping its lines) and ``time`` (when the line was written).
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


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


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
