"""``bodypix-gimp segment PHOTO|FOLDER|GLOB... --out DIR``: masks, part maps and overlays as files.

Outputs per input ``<stem>``: ``<stem>.person.png`` (0/255, or 0..255 with ``--soft``),
``<stem>.parts.png`` (part id 0..23, 255 = background), ``<stem>.overlay.jpg`` (body-pix's
rainbow part mask over the photo; ``--overlay png`` for a lossless one, ``none`` to skip it)
and, with ``--json``, ``<stem>.json``.  A photo's files appear together or not at all, and
``DIR/manifest.jsonl`` gets one line per input (status, files, timings, error).  Inputs are
never overwritten; an existing output needs ``--force``, or ``--skip-existing`` to resume an
interrupted batch.  A photo that fails is one line naming it and the batch goes on; the exit
status is 1 when any failed.  ``--engine ray`` runs the batch on Ray (docs/scale.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError
from ..settings import Settings, settings_from_options


def add_settings_arguments(p: argparse.ArgumentParser) -> None:
    """The knobs shared by segment, eval and bench (body-pix names in the help)."""
    g = p.add_argument_group("BodyPix settings (defaults: the best pipeline)")
    g.add_argument("--model", help="model name, e.g. mobilenet075-quant2-stride16 (see `bodypix-gimp models`)")
    g.add_argument("--stride", type=int, help="outputStride: 8 or 16 (MobileNetV1), 16 or 32 (ResNet50)")
    g.add_argument("--threshold", type=float, help="segmentationThreshold, 0..1")
    g.add_argument("--internal-resolution", help="internalResolution: low, medium, high, full or 0.1..2")
    g.add_argument("--max-input-pixels", type=int, help="cap on the network input size in pixels (default: the photo's "
                   "1 MP working copy at the internal resolution)")
    g.add_argument("--refine", help="edge refinement method ('none' = raw BodyPix edge)")
    g.add_argument("--no-refine", action="store_true", help="keep BodyPix's own edge")
    g.add_argument("--no-fingers", action="store_true", help="do not recover fingers with the hand model")
    g.add_argument("--soft", action="store_true", help="soft 0..255 alpha person mask (hair, motion blur)")
    g.add_argument("--held", choices=("in", "out"),
                   help="what people hold (a helmet, a ball): each object wholly in the person mask (default) "
                   "or wholly out; never a body part")
    g.add_argument("--models", metavar="DIR", help="models folder (default: $BODYPIX_MODELS, then the installed one)")
    g.add_argument("--cpu", action="store_true", help="run on the CPU even if a GPU provider is available")
    g.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0 = default)")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the shared options (``settings_from_options``) on top of the product defaults."""
    return settings_from_options(
        model=args.model or None, output_stride=args.stride, threshold=args.threshold,
        internal_resolution=args.internal_resolution, max_input_pixels=args.max_input_pixels,
        refine="none" if args.no_refine else args.refine, fingers=False if args.no_fingers else None,
        soft_edges=True if args.soft else None,
        include_held=None if args.held is None else args.held == "in",
    )


def runtime_from_args(args: argparse.Namespace):  # noqa: ANN201 - RuntimeOptions
    from ..runtime.sessions import RuntimeOptions
    from ..runtime.store import models_dir

    if args.models:
        models_dir(args.models)  # a wrong folder is an error now, not per image
    return RuntimeOptions(models=args.models, force_cpu=True if args.cpu else None, threads=args.threads)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="segment photos into person mask, part map and overlay files",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="PHOTO",
                   help="photo files, folders (their image files) or quoted glob patterns ('shoot/**/*.jpg')")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--json", action="store_true", help="also write <stem>.json with parts, keypoints, timings")
    p.add_argument("--overlay", choices=("jpg", "png", "none"), default="jpg",
                   help="the part overlay picture: jpg (default; 10x cheaper than png at 12 MP), png or none")
    p.add_argument("--part-masks", action="store_true", help="also write <stem>.part-<name>.png per present part")
    p.add_argument("--persons", action="store_true",
                   help="also split the mask into people: <stem>.person-1.png ... (left to right), "
                   "and a 'persons' list in the JSON")
    p.add_argument("--min-pose-score", type=float, metavar="S",
                   help="with --persons: lowest pose score that makes a person (default: body-pix's, "
                   "the score threshold 0.4; 0.25 finds more people in group photos)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--skip-existing", action="store_true",
                   help="skip photos whose outputs are all there (resume an interrupted batch)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    g = p.add_argument_group("engine (docs/scale.md)")
    g.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process, decoding and writing while it segments (default); "
                   "ray: Ray Data actors (pip install 'bodypix-gimp[ray]')")
    g.add_argument("--address", metavar="ADDR",
                   help="with --engine ray: join this Ray cluster (default: start a private one here)")
    g.add_argument("--workers", type=int, metavar="N",
                   help="with --engine ray: Ray actors, each with its own models (default: one per CPU)")
    add_settings_arguments(p)
    p.set_defaults(func=run)


def one_malloc_arena() -> None:
    """Every thread of the local batch allocates from glibc's main heap (``M_ARENA_MAX`` = 1, as
    the model server does: ``worker.server.one_heap``).

    Why: the batch's reader, writer, pipeline and edge-peer threads each got an arena of their
    own, and blocks freed in one are not reused by another: four 24 MP photos in one run peaked
    at 1022-1034 MiB RSS (three runs), 923-1001 MiB with this call (three runs; 968 MiB with
    ``MALLOC_ARENA_MAX=1`` in the environment instead), at the same speed (``bodypix-gimp bench
    --scale``, docs/performance.md).  Set before the batch's threads start.
    """
    from ..worker.server import glibc

    libc = glibc()
    if libc is not None:
        libc.mallopt(-8, 1)  # M_ARENA_MAX


def run(args: argparse.Namespace) -> int:
    from ..batch import OutputOptions
    from ..batch import run as run_batch
    from ..batch.inputs import expand
    from ..batch.writer import RayJobError

    if args.force and args.skip_existing:
        raise ConfigError("--force and --skip-existing exclude each other: overwrite, or resume")
    if args.engine != "ray" and (args.address or args.workers):
        raise ConfigError("--address and --workers need --engine ray")
    settings = settings_from_args(args)
    if getattr(args, "persons", False):
        settings = settings.replace(multi_person=True)
    if getattr(args, "min_pose_score", None) is not None:
        settings = settings.replace(min_pose_score=args.min_pose_score)
    runtime = runtime_from_args(args)
    options = OutputOptions(overlay=args.overlay, json=args.json, part_masks=args.part_masks)
    out_dir = Path(args.out)
    photos = expand(args.images)
    if args.engine == "local":
        one_malloc_arena()
    try:
        s = run_batch(photos, out_dir, settings, runtime, options, engine=args.engine, force=args.force,
                      skip_existing=args.skip_existing, quiet=args.quiet, address=args.address,
                      workers=args.workers)
    except RayJobError as e:
        print(f"bodypix-gimp: error: {e}; the photos written so far stay: rerun with --skip-existing",
              file=sys.stderr)
        return 2
    done = s.ok
    if s.interrupted:
        print(f"bodypix-gimp: interrupted; {done} photo(s) written to {out_dir}/ this run. "
              "Run the same command with --skip-existing to resume.", file=sys.stderr)
    elif s.failed:
        print(f"bodypix-gimp: {s.failed} of {s.total} photo(s) failed (listed above and in "
              f"{out_dir}/manifest.jsonl); {done} written, {s.skipped} skipped.", file=sys.stderr)
    if not args.quiet and not s.interrupted:
        extra = f", {s.skipped} skipped" if s.skipped else ""
        rate = f"; {s.wall_s / done:.2f} s a photo" if done > 1 else ""
        print(f"Wrote {done} result(s) to {out_dir}/{extra}{rate}")
    return s.exit_code
