"""Many photos at once: the engines behind ``bodypix-gimp segment`` over folders and globs.

``inputs`` expands folders and glob patterns; ``outputs`` encodes a photo's files and
commits them all-or-nothing; ``manifest`` keeps ``DIR/manifest.jsonl``; ``local`` is the
bounded decode -> segment -> write pipeline of one machine; ``ray_engine`` runs the same
per-photo work on Ray Data.  ``run`` is the one entry point the CLI calls.

Data flows one way: this package uses pipeline, imageio, render, settings and result;
nothing below it imports it.
"""

from __future__ import annotations

from .outputs import OutputOptions
from .runner import run
from .writer import BatchSummary

__all__ = ["BatchSummary", "OutputOptions", "run"]
