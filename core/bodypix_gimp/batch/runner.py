"""The batch around the engines: checks before work, engine choice, the summary (the writer is in ``writer``).

``run`` checks everything it can before reading a photo (the --out folder, colliding names,
existing outputs), records skipped photos, then hands the rest to an engine (``local`` or
``ray``).  Engines deliver finished photos to one ``Writer`` thread that encodes them when
they are not encoded yet, commits each photo's files all-or-nothing, appends the manifest
line and prints the one-line error of a photo that failed.

SIGINT and SIGTERM raise in the main thread (SIGTERM as ``Terminated``); the writer then
drops what is queued, abandons the photo it is writing unless its renames have begun, and
removes its temporaries.  Photos already committed stay; ``--skip-existing`` resumes.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from ..settings import ConfigError, Settings
from . import inputs as inputs_mod
from .manifest import Manifest
from .outputs import OutputOptions, fixed_names, person_files, prepare_out_dir
from .writer import BatchSummary, Terminated, Writer, signals_ignored, signals_raise

ENGINES = ("local", "ray")


def plan(photos: list[Path], out_dir: Path, options: OutputOptions, settings: Settings,
         force: bool, skip_existing: bool) -> tuple[list[Path], list[tuple[Path, list[str]]]]:
    """(photos to segment, photos skipped with their outputs); refuse overwriting without --force."""
    inputs_mod.check_names(photos)
    resolved_inputs = {p.resolve() for p in photos if p.exists()}
    todo: list[Path] = []
    skipped: list[tuple[Path, list[str]]] = []
    for img in photos:
        names = fixed_names(img.stem, options)
        paths = [out_dir / n for n in names]
        for path in paths:
            if path.resolve() in resolved_inputs:
                raise ConfigError(f"Output {path} would overwrite an input; choose another --out folder.")
        if skip_existing and all(p.exists() for p in paths):
            skipped.append((img, names))
            continue
        if not force and not skip_existing:
            existing = [p for p in paths if p.exists()]
            if settings.multi_person:
                existing += person_files(img.stem, out_dir)
            if existing:
                raise ConfigError(f"Output {existing[0]} exists; use --force to overwrite it, "
                                  "or --skip-existing to resume a batch.")
        todo.append(img)
    return todo, skipped


def run(photos: list[Path], out_dir: Path, settings: Settings, runtime: Any, options: OutputOptions, *,
        engine: str = "local", force: bool = False, skip_existing: bool = False, quiet: bool = False,
        address: str | None = None, workers: int | None = None) -> BatchSummary:
    """Segment ``photos`` into ``out_dir``; per-photo failures are counted, never raised.

    Raises ConfigError (before any photo is read) for a bad --out, colliding names or existing
    outputs, and lets ModelNotFoundError/ChecksumError through: every photo would fail alike.
    """
    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {workers}")
    if engine == "ray":
        from .ray_engine import check_reachable, require_ray

        require_ray()
        if address:
            check_reachable(address)
    prepare_out_dir(out_dir)
    todo, skipped = plan(photos, out_dir, options, settings, force, skip_existing)
    summary = BatchSummary(total=len(photos), skipped=len(skipped))
    start = time.perf_counter()
    manifest = Manifest(out_dir, engine)
    try:
        for img, names in skipped:
            manifest.append({"input": str(img), "status": "skipped", "outputs": names})
        if not todo:
            return summary
        writer = Writer(out_dir, settings, options, manifest, summary, len(todo), quiet,
                        describe=len(photos) == 1 and not quiet)
        with signals_raise():
            try:
                if engine == "local":
                    from .local import run_local

                    run_local(todo, settings, runtime, writer)
                else:
                    from .ray_engine import run_ray

                    run_ray(todo, settings, runtime, options, writer, address=address, workers=workers)
            except KeyboardInterrupt:
                summary.interrupted = int(signal.SIGINT)
            except Terminated:
                summary.interrupted = int(signal.SIGTERM)
            finally:
                # A fatal error (models missing) still writes the photos already segmented.
                with signals_ignored():
                    writer.close(abort=bool(summary.interrupted))
    finally:
        manifest.close()
        summary.wall_s = time.perf_counter() - start
    return summary
