"""``bodypix-gimp segment IMAGE... --out DIR``: masks, part maps and overlays as files.

Outputs per input ``<stem>``: ``<stem>.person.png`` (0/255, or 0..255 with ``--soft``),
``<stem>.parts.png`` (part id 0..23, 255 = background), ``<stem>.overlay.png`` (body-pix's
rainbow part mask over the photo) and, with ``--json``, ``<stem>.json``.  Inputs are
never overwritten and an existing output needs ``--force``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..settings import ConfigError, Settings, default_settings, parse_model_name

OUTPUT_KINDS = ("person", "parts", "overlay")


def add_settings_arguments(p: argparse.ArgumentParser) -> None:
    """The knobs shared by segment, eval and bench (body-pix names in the help)."""
    g = p.add_argument_group("BodyPix settings (defaults: the best pipeline)")
    g.add_argument("--model", help="model name, e.g. mobilenet075-quant2-stride16 (see `bodypix-gimp models`)")
    g.add_argument("--stride", type=int, help="outputStride: 8 or 16 (MobileNetV1), 16 or 32 (ResNet50)")
    g.add_argument("--threshold", type=float, help="segmentationThreshold, 0..1")
    g.add_argument("--internal-resolution", help="internalResolution: low, medium, high, full or 0.1..2")
    g.add_argument("--max-input-pixels", type=int, help="cap on the network input size in pixels")
    g.add_argument("--refine", help="edge refinement method ('none' = raw BodyPix edge)")
    g.add_argument("--no-refine", action="store_true", help="keep BodyPix's own edge")
    g.add_argument("--no-fingers", action="store_true", help="do not recover fingers with the hand model")
    g.add_argument("--soft", action="store_true", help="soft 0..255 alpha person mask (hair, motion blur)")
    g.add_argument("--models", metavar="DIR", help="models folder (default: $BODYPIX_MODELS, then the installed one)")
    g.add_argument("--cpu", action="store_true", help="run on the CPU even if a GPU provider is available")
    g.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0 = default)")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Build Settings from the shared options on top of the product defaults."""
    changes: dict[str, object] = {}
    if args.model:
        changes.update(parse_model_name(args.model))
    if args.stride is not None:
        changes["output_stride"] = args.stride
    if args.threshold is not None:
        changes["segmentation_threshold"] = args.threshold
    if args.internal_resolution is not None:
        ir = args.internal_resolution
        try:
            changes["internal_resolution"] = float(ir)
        except ValueError:
            changes["internal_resolution"] = ir
    if args.max_input_pixels is not None:
        changes["max_input_pixels"] = args.max_input_pixels
    if args.refine is not None:
        changes["refine"] = args.refine
    if args.no_refine:
        changes["refine"] = "none"
    if args.no_fingers:
        changes["fingers"] = False
    if args.soft:
        changes["soft_edges"] = True
    return default_settings(**changes)


def runtime_from_args(args: argparse.Namespace):  # noqa: ANN201 - RuntimeOptions
    from ..runtime.sessions import RuntimeOptions
    from ..runtime.store import models_dir

    if args.models:
        models_dir(args.models)  # a wrong folder is an error now, not per image
    return RuntimeOptions(models=args.models, force_cpu=True if args.cpu else None, threads=args.threads)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="segment photos into person mask, part map and overlay files",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--json", action="store_true", help="also write <stem>.json with parts, keypoints, timings")
    p.add_argument("--part-masks", action="store_true", help="also write <stem>.part-<name>.png per present part")
    p.add_argument("--persons", action="store_true",
                   help="also split the mask into people: <stem>.person-1.png ... (left to right), "
                   "and a 'persons' list in the JSON")
    p.add_argument("--min-pose-score", type=float, metavar="S",
                   help="with --persons: lowest pose score that makes a person (default: body-pix's, "
                   "the score threshold 0.4; 0.25 finds more people in group photos)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_settings_arguments(p)
    p.set_defaults(func=run)


def output_paths(image: Path, out_dir: Path, with_json: bool) -> dict[str, Path]:
    stem = image.stem
    paths = {k: out_dir / f"{stem}.{k}.png" for k in OUTPUT_KINDS}
    if with_json:
        paths["json"] = out_dir / f"{stem}.json"
    return paths


def person_files(image: Path, out_dir: Path) -> list[Path]:
    """Existing ``<stem>.person-<k>.png`` files of one input."""
    if not out_dir.is_dir():
        return []
    prefix = f"{image.stem}.person-"
    return sorted(p for p in out_dir.iterdir()
                  if p.name.startswith(prefix) and p.name.endswith(".png") and p.name[len(prefix):-4].isdigit())


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..imageio import InputError, load_image, save_png
    from ..pipeline import segment
    from ..render import part_overlay
    from ..result import PART_NAMES
    from ..runtime.store import ChecksumError, ModelNotFoundError

    settings = settings_from_args(args)
    if getattr(args, "persons", False):
        settings = settings.replace(multi_person=True)
    if getattr(args, "min_pose_score", None) is not None:
        settings = settings.replace(min_pose_score=args.min_pose_score)
    runtime = runtime_from_args(args)
    out_dir = Path(args.out)
    images = [Path(i) for i in args.images]
    inputs = {p.resolve() for p in images if p.exists()}
    stems: dict[str, Path] = {}
    for img in images:
        if img.stem in stems and stems[img.stem] != img:
            raise ConfigError(f"Two inputs share the name {img.stem!r} ({stems[img.stem]} and {img}); "
                              "their outputs would collide. Segment them into different --out folders.")
        stems[img.stem] = img
        for path in output_paths(img, out_dir, args.json).values():
            if path.resolve() in inputs:
                raise ConfigError(f"Output {path} would overwrite an input; choose another --out folder.")
            if path.exists() and not args.force:
                raise ConfigError(f"Output {path} exists; use --force to overwrite it.")
        if settings.multi_person and not args.force:
            for path in person_files(img, out_dir):
                raise ConfigError(f"Output {path} exists; use --force to overwrite it.")

    failed = 0
    bar = tqdm(images, unit="image", disable=args.quiet or len(images) < 2, file=sys.stderr)
    for img in bar:
        bar.set_postfix_str(img.name[-30:])
        try:
            photo = load_image(img)
            result = segment(photo, settings, runtime)
        except (InputError, ConfigError) as e:
            tqdm.write(f"bodypix-gimp: error: {e}", file=sys.stderr)
            failed += 1
            continue
        except (ModelNotFoundError, ChecksumError):
            raise
        paths = output_paths(img, out_dir, args.json)
        save_png(paths["person"], result.person_mask)
        save_png(paths["parts"], result.part_map)
        save_png(paths["overlay"], part_overlay(photo, result.part_map))
        if args.part_masks:
            for name, stats in result.part_stats().items():
                save_png(out_dir / f"{img.stem}.part-{name}.png", result.part_mask(stats["id"]))
        if settings.multi_person:
            for stale in person_files(img, out_dir):  # from an earlier run with more people (--force)
                stale.unlink()
            for person in result.persons:
                save_png(out_dir / f"{img.stem}.person-{person.index}.png", person.mask)
        if args.json:
            summary = {"input": str(img), "settings": settings.to_dict(), **result.summary()}
            text = json.dumps(summary, indent=2)
            from ..imageio import atomic_write

            atomic_write(paths["json"], lambda tmp, text=text: tmp.write_text(text))
        if not result.found_person:
            tqdm.write(f"{img}: no person found", file=sys.stderr)
        elif len(images) == 1 and not args.quiet:
            present = ", ".join(sorted(result.part_stats(), key=PART_NAMES.index))
            print(f"{img}: person {int((result.person_mask >= 128).sum())} px; parts: {present}")
            if settings.multi_person:
                print(f"{img}: {len(result.persons)} people, left to right: "
                      + ", ".join(f"{p.pixels} px" for p in result.persons))
    if not args.quiet:
        print(f"Wrote {len(images) - failed} result(s) to {out_dir}/")
    return 1 if failed else 0
