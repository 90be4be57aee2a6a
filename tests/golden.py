"""Golden record of the pipeline's outputs on every photo of ../shared/eval (tests/test_golden.py).

Each photo runs twice: the product pipeline (what ``bodypix-gimp segment`` runs by default) and
the body-pix-faithful configuration (``Settings()`` of body-pix 2.x), both with person instances
on (the GIMP worker's "Select Person" in a selection and "Persons to layers" use them; they do not
change the mask).  Per run the record holds the shape and the sha256 of the person mask, the
person probability, the part map and the instance map bytes, and of the JSON summary without its
clock readings (poses, part boxes, persons, hand and instance info).  Any byte change fails the test.

Re-record (only for a deliberate output change, with evaluation numbers in the same commit)::

    .venv/bin/python tests/golden.py --record            # every photo (~10 min on 2 cores)
    .venv/bin/python tests/golden.py --check [--quick]   # compare without pytest

The record is specific to the CPU's onnxruntime kernels (recorded on the project machine, x86-64), and
was made in one fresh process in ``photos()`` order: the finger stage's GrabCut uses OpenCV's
process-wide random generator, so compare the same way (tests/test_golden.py does).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BODYPIX_SHARED", ROOT.parent / "shared")).resolve()
EVAL = SHARED / "eval"
RECORD = Path(__file__).resolve().parent / "golden" / "outputs.json"
SETS = ("human_seg_300", "p3m_demo_pseudo", "cihp_samples", "seed")
SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
# The quick subset of the fast suite: one photo per set, chosen for coverage (a group photo,
# hands, a soft matte, the seed photos).
QUICK = ("seed/jim.jpg", "seed/astronaut.png", "cihp_samples/images/0002190.jpg",
         "human_seg_300/images/274.jpg", "p3m_demo_pseudo/images/p_07141906.jpg")


def photos() -> list[str]:
    """Every photo of the evaluation sets, as paths relative to ../shared/eval, sorted."""
    out: list[str] = []
    for name in SETS:
        root = EVAL / name
        folder = root / "images" if (root / "images").is_dir() else root
        out += sorted(str(p.relative_to(EVAL)) for p in folder.iterdir()
                      if p.is_file() and p.suffix.lower() in SUFFIXES)
    return out


def configs() -> dict[str, Any]:
    """name -> Settings: the product pipeline and the body-pix-faithful one, with person instances."""
    from bodypix_gimp.settings import Settings, default_settings

    return {"product": default_settings(multi_person=True), "faithful": Settings(multi_person=True)}


def sha(array: np.ndarray | None) -> str | None:
    if array is None:
        return None
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def without_timings(value: Any) -> Any:
    """The summary without its clock readings (``timings_ms``, ``ms``, ``*_ms``, ``ms_*`` at any depth)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items()
                if not (k == "ms" or k.endswith("_ms") or k.startswith("ms_"))}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def fingerprint(result: Any) -> dict[str, Any]:
    """What the record keeps of one Result: shapes and hashes of every output."""
    text = json.dumps(without_timings(result.summary()), sort_keys=True, default=str)
    return {
        "shape": list(result.person_mask.shape),
        "person_mask": sha(result.person_mask),
        "person_prob": sha(result.person_prob),
        "part_map": sha(result.part_map),
        "instance_map": sha(result.instance_map),
        "persons": [p.pixels for p in result.persons],
        "summary": hashlib.sha256(text.encode()).hexdigest(),
    }


def run(names: list[str]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    from bodypix_gimp import load_image, segment

    settings = configs()
    for name in names:
        photo = load_image(EVAL / name)
        for config, s in settings.items():
            yield name, config, fingerprint(segment(photo, s))


def load_record() -> dict[str, dict[str, Any]]:
    return json.loads(RECORD.read_text())["photos"]


def record() -> None:
    names = photos()
    data: dict[str, dict[str, Any]] = {}
    for i, (name, config, fp) in enumerate(run(names)):
        data.setdefault(name, {})[config] = fp
        if config == "faithful":
            print(f"[{i // 2 + 1}/{len(names)}] {name}", file=sys.stderr)
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    doc = {"about": "tests/golden.py: sha256 of the pipeline's outputs per photo of ../shared/eval",
           "photos": data}
    RECORD.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"Recorded {len(data)} photos to {RECORD}", file=sys.stderr)


def differences(names: list[str]) -> list[str]:
    """One line per photo and configuration whose outputs differ from the record."""
    expected = load_record()
    out = []
    for name, config, fp in run(names):
        want = expected[name][config]
        changed = [k for k in want if want[k] != fp.get(k)]
        if changed:
            out.append(f"{name} [{config}]: {', '.join(changed)} changed")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--record", action="store_true", help="run every photo and write tests/golden/outputs.json")
    p.add_argument("--check", action="store_true", help="compare against the record")
    p.add_argument("--quick", action="store_true", help="with --check: only the quick subset")
    args = p.parse_args(argv)
    if args.record:
        record()
        return 0
    if args.check:
        diff = differences(list(QUICK) if args.quick else photos())
        print("\n".join(diff) or "golden: no change")
        return 1 if diff else 0
    p.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
