"""``bodypix-gimp eval DATASET...``: score pipeline configurations side by side.

Every run includes raw BodyPix (the seed's settings and body-pix's defaults), MediaPipe
Selfie, RVM alone and the default pipeline; ``--config NAME=key=value,...`` adds more
(on top of the product defaults) and ``--methods`` adds the default pipeline with each
edge method.  Writes ``eval.json``, ``eval.md`` and overlays of the worst photos to
``--out`` and prints the table.  Full run (README):

    bodypix-gimp eval ../shared/eval/human_seg_300 ../shared/eval/p3m_demo_pseudo \\
        ../shared/eval/cihp_samples ../shared/eval/seed/jim.jpg --methods --out out/eval
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="score pipeline configurations on evaluation datasets",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "datasets",
        nargs="+",
        metavar="DATASET",
        help="folder with images/ + masks/ | alpha_pred/ | labels/, or just photos (overlays only)",
    )
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="NAME=SETTINGS",
        help="extra configuration, e.g. s8=output_stride=8,refine=guided (repeatable)",
    )
    p.add_argument("--methods", action="store_true", help="add the default pipeline with every edge method")
    p.add_argument("--only", metavar="NAMES", help="comma-separated subset of the configurations to run")
    p.add_argument("--limit", type=int, help="first N photos of each dataset")
    p.add_argument(
        "--megapixels",
        type=float,
        metavar="N",
        help="run each photo Lanczos-upscaled to N MP (the full-resolution path); masks are "
        "area-shrunk back and scored at the truth's size",
    )
    p.add_argument("--out", "-o", default="out/eval", metavar="DIR", help="output folder (default out/eval)")
    p.add_argument("--worst", type=int, default=5, help="overlays of the N worst photos per configuration")
    p.add_argument(
        "--models", metavar="DIR", help="models folder (default: $BODYPIX_MODELS, then the installed one)"
    )
    p.add_argument(
        "--refine-timing",
        action="store_true",
        help="instead of scoring: time each edge method on the first photo resized to 2 and 12 MP",
    )
    p.add_argument("--repeats", type=int, default=3, help="timing repeats per method and size (default 3)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def configs_from_args(args: argparse.Namespace):  # noqa: ANN201 - list[Config]
    from ..errors import ConfigError
    from ..evaluate.configs import builtin_configs, parse_config
    from ..refine.edges import METHODS
    from ..settings import default_settings

    configs = builtin_configs()
    if args.methods:
        default_refine = default_settings().refine
        for m in METHODS:
            if m != default_refine:  # that one is `default` already
                configs.append(parse_config(f"refine-{m}=refine={m}"))
        configs.append(parse_config("refine-none=refine=none"))
    configs += [parse_config(c) for c in args.config]
    if args.only:
        names = {c.name for c in configs}
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise ConfigError(
                f"Unknown configuration(s) {', '.join(unknown)}. Known: {', '.join(sorted(names))}"
            )
        configs = [c for c in configs if c.name in wanted]
    seen: set[str] = set()
    for c in configs:
        if c.name in seen:
            raise ConfigError(f"Configuration {c.name!r} given twice")
        seen.add(c.name)
    return configs


def run(args: argparse.Namespace) -> int:
    from ..evaluate import datasets as ds_mod
    from ..evaluate import harness, report
    from ..runtime.sessions import RuntimeOptions
    from ..runtime.store import models_dir

    if args.models:
        models_dir(args.models)
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if args.megapixels is not None and not 0 < args.megapixels <= 200:
        raise ValueError(f"--megapixels must be in (0, 200], got {args.megapixels}")
    configs = configs_from_args(args)
    sets = [ds_mod.open_dataset(d, args.limit) for d in args.datasets]
    runtime = RuntimeOptions(models=args.models)
    if args.refine_timing:
        return _timing(args, sets, runtime)

    def tick(ds, name):  # noqa: ANN001
        if not args.quiet:
            print(f"\r{ds.name}: {name}        ", end="", file=sys.stderr, flush=True)

    results = harness.evaluate(sets, configs, runtime, keep_worst=args.worst, on_image=tick,
                               megapixels=args.megapixels)
    if not args.quiet:
        print(file=sys.stderr)
    command = (
        "bodypix-gimp eval " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        if sys.argv[1:2] == ["eval"]
        else None
    )
    paths = report.write_all(results, Path(args.out), command)
    for r in results:
        if r.dataset.kind != "images":
            print(report.text_table(r))
            print()
    print(f"Wrote {paths['json']}, {paths['markdown']} and overlays in {paths['overlays']}/")
    return 0


def _timing(args: argparse.Namespace, sets: list, runtime) -> int:  # noqa: ANN001
    import json

    from ..evaluate.timing import refine_timings, timing_table
    from ..imageio import atomic_write, load_image
    from ..refine.edges import METHODS

    rgb = load_image(sets[0].images[0])
    rows = refine_timings(rgb, list(METHODS), repeats=max(1, args.repeats), runtime=runtime)
    print(f"Refinement time on {sets[0].images[0]} resized (BodyPix itself not included):")
    print(timing_table(rows))
    out = Path(args.out) / "refine_timing.json"
    text = json.dumps({"photo": str(sets[0].images[0]), "rows": rows}, indent=1)
    atomic_write(out, lambda tmp: tmp.write_text(text))
    print(f"Wrote {out}")
    return 0
