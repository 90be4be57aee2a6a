"""``bodypix-gimp eval-persons``: person instances (group photos) measured on the shared eval photos."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import ConfigError
from ..evaluate import persons
from ..evaluate.persons import EVAL, HS, evaluate, markdown, timing
from ..settings import PRODUCT_DEFAULTS, Settings, parse_model_name


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval-persons", help="measure person instances (group photos) on the shared eval photos",
                       description=persons.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="reports", help="folder for persons.json and persons.md")
    p.add_argument("--quick", action="store_true", help="a fifth of the one-person photos, fewer composed rows")
    p.add_argument("--repeat", type=int, default=3, help="timing repeats")
    p.add_argument("--model", default=None, help="model name (default: Settings())")
    p.add_argument("--product", action="store_true",
                   help="also the product pipeline (edge refinement, fingers) with min_pose_score 0.25")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not (HS / "images").is_dir():
        raise ConfigError(f"Evaluation photos not found in {EVAL}; set BODYPIX_SHARED to the folder holding eval/")
    base = Settings(multi_person=True)
    if args.model:
        base = base.replace(**parse_model_name(args.model))
    tuned = base.replace(min_pose_score=0.25)
    runs = [{"label": f"body-pix defaults ({base.model_name}, minPoseScore = scoreThreshold = "
                      f"{base.score_threshold})",
             **evaluate(base, args.quick)},
            {"label": f"min_pose_score {tuned.min_pose_score} (more people from the same decoded poses)",
             **evaluate(tuned, args.quick)}]
    if args.product:
        product = tuned.replace(**PRODUCT_DEFAULTS)
        runs.append({"label": f"product pipeline ({PRODUCT_DEFAULTS}) with min_pose_score 0.25",
                     **evaluate(product, args.quick)})
    report = {"runs": runs, "timing": timing(base, args.repeat)}
    text = markdown(report)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "persons.json").write_text(json.dumps(report, indent=2))
    (out / "persons.md").write_text(text)
    print(f"Wrote {out / 'persons.json'} and {out / 'persons.md'}", file=sys.stderr)
    return 0
