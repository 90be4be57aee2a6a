#!/usr/bin/env python3
"""The README picture, made by a real headless GIMP 3 run of the installed plug-in:
Body Parts to Layers (coloured part map at 50 %) and Select Person (outline stroked in
magenta) on a P3M demo portrait (MIT), flattened and exported by GIMP; a screenshot of
the Select Body Parts dialog in a virtual display; and a group photo with Persons to Layers
(one colour per person) and Pose to Path (the paths stroked in white).

    python tests/gimp/readme_image.py [--out docs/images/gimp-bodypix.jpg]
                                      [--dialog docs/images/gimp-dialog-parts.png]
                                      [--group-photo PHOTO --group-out docs/images/gimp-persons.jpg]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

PHOTO = harness.SHARED / "eval" / "p3m_demo_pseudo" / "images" / "p_09ba26b4.jpg"
GROUP = harness.SHARED / "eval" / "human_seg_300" / "images" / "266.jpg"  # three people


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(harness.ROOT / "docs" / "images" / "gimp-bodypix.jpg"))
    ap.add_argument("--dialog", default=str(harness.ROOT / "docs" / "images" / "gimp-dialog-parts.png"))
    ap.add_argument("--photo", default=str(PHOTO))
    ap.add_argument("--width", type=int, default=960)
    ap.add_argument("--group-out", default=str(harness.ROOT / "docs" / "images" / "gimp-persons.jpg"))
    # Off by default: the eval photos with several people (human_seg_300, CIHP) may not be
    # redistributed, so no picture of them is committed. Pass e.g. --group-photo GROUP_JPG
    # to look at one locally.
    ap.add_argument("--group-photo", default=None, help=f"a photo with several people, e.g. {GROUP}")
    args = ap.parse_args()
    harness.ensure_gimp()
    inst = harness.make_install(harness.ROOT / ".cache" / "gimp-readme")
    case = {
        "id": "readme",
        "image": args.photo,
        "proc": "plug-in-bodypix-parts-to-layers",
        "also": [{"proc": "plug-in-bodypix-select-person"}],
        "stroke": "#ff00ff",
        "export": "readme.png",
    }
    img = render(inst, case)
    if img is None:
        return 1
    img = img.resize((args.width, round(img.height * args.width / img.width)), Image.Resampling.LANCZOS)
    save(img, Path(args.out))

    if args.group_photo and not group_picture(inst, args):
        return 1
    return dialog_picture(inst, args)


def render(inst, case: dict) -> Image.Image | None:  # noqa: ANN001
    """Run one batch case and return its exported picture (None, with GIMP's log printed, on failure)."""
    proc, _ = inst.batch({"out": str(inst.work / "out"), "empty_models": "", "cases": [case]})
    if proc.returncode != 0:
        print((proc.stdout + proc.stderr)[-3000:])
        return None
    return Image.open(inst.work / "out" / case["id"] / case["export"]).convert("RGB")


def save(img: Image.Image, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out, quality=88)
    print(f"wrote {out} ({img.width}x{img.height}, {out.stat().st_size // 1024} KiB)")


def group_picture(inst, args) -> bool:  # noqa: ANN001
    """Persons to Layers plus Pose to Path, stroked, on a group photo."""
    group = {
        "id": "group",
        "image": args.group_photo,
        "proc": "plug-in-bodypix-persons-to-layers",
        "also": [{"proc": "plug-in-bodypix-pose-to-path"}],
        "stroke_paths": "#ffffff",
        "export": "group.png",
    }
    img = render(inst, group)
    if img is None:
        return False
    save(img, Path(args.group_out))
    return True


def dialog_picture(inst, args) -> int:  # noqa: ANN001
    """The Select Body Parts dialog in a virtual display."""
    case = {"id": "dialog", "image": args.photo, "proc": "plug-in-bodypix-select-parts", "interactive": "Choose Parts"}
    with harness.VirtualDisplay(inst) as display:
        proc, _ = inst.batch({"out": str(inst.work / "out"), "empty_models": "", "cases": [case]}, DISPLAY=display)
    shot = inst.work / "out" / "dialog" / "dialog.png"
    if proc.returncode != 0 or not shot.is_file():
        print((proc.stdout + proc.stderr)[-3000:])
        return 1
    import numpy as np

    screen = Image.open(shot).convert("RGB")
    x0, y0, x1, y1 = Image.fromarray((np.asarray(screen).max(axis=2) > 0).astype(np.uint8) * 255).getbbox()
    dialog = screen.crop((x0, y0, x1, y1))
    Path(args.dialog).parent.mkdir(parents=True, exist_ok=True)
    dialog.save(args.dialog, optimize=True)
    print(f"wrote {args.dialog} ({dialog.width}x{dialog.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
