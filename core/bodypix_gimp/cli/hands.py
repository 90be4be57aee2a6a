"""``bodypix-gimp hands``: finger-recovery metrics (``eval``) and its added time (``bench``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hands", help="finger recovery: hand-box metrics before/after, and timing")
    hs = p.add_subparsers(dest="hands_command", metavar="{eval,bench}")
    e = hs.add_parser("eval", help="hand-box IoU/recall and fingertips, raw BodyPix vs finger recovery")
    e.add_argument("folders", nargs="+", type=Path, help="eval folders (images/ + masks/ or alpha_pred/)")
    e.add_argument("--out", type=Path, default=Path("reports/hands"), help="where hands.json/.md go")
    e.add_argument("--limit", type=int, help="at most this many photos per folder")
    e.add_argument("--refine", help="edge method under both runs (default: the product's; 'none' = raw BodyPix)")
    e.add_argument("--models", metavar="DIR", help="models folder")
    e.set_defaults(func=run_eval)
    b = hs.add_parser("bench", help="ms added by finger recovery, per run and per hand")
    b.add_argument("images", nargs="+", type=Path)
    b.add_argument("--repeats", type=int, default=7)
    b.add_argument("--models", metavar="DIR", help="models folder")
    b.set_defaults(func=run_bench)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def run_eval(args: argparse.Namespace) -> int:
    from ..evaluate.hands import evaluate, markdown, write_report
    from ..runtime.sessions import RuntimeOptions
    from ..settings import default_settings

    after = default_settings(fingers=True, **({"refine": args.refine} if args.refine else {}))
    report = evaluate(args.folders, after, runtime=RuntimeOptions(models=args.models), limit=args.limit)
    j, m = write_report(report, args.out)
    print(markdown(report))
    s = report["summary"]
    gain = ", ".join(f"{k}: {v:+.1f} points" for k, v in s.items() if k.endswith("_gain_points") and v is not None)
    print(f"finger stage, hand-box IoU gain ({gain})")
    for name, t in s.get("raw", {}).items():
        g = t.get("product_iou_gain_points")
        go = t.get("product_outline_iou_gain_points")
        if g is not None:
            print(f"pipeline over raw BodyPix ({name}), same boxes: {g:+.1f} points"
                  + (f" ({go:+.1f} against the background)" if go is not None else ""))
    print(f"wrote {j} and {m}")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from ..evaluate.hands import bench
    from ..imageio import load_image
    from ..runtime.sessions import RuntimeOptions

    for path in args.images:
        r = bench(load_image(path), runtime=RuntimeOptions(models=args.models), repeats=args.repeats)
        print(f"{path.name}: {json.dumps(r)}")
    return 0
