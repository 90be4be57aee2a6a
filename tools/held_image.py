#!/usr/bin/env python3
"""The README's held-object picture: `make demo`'s astronaut with "include what people hold" on
(left) and off (right), each the CLI's part overlay (body-pix's colours; no colour = no body
part) with the person mask's outline in magenta.

    .venv/bin/python tools/held_image.py [--out docs/images/held-astronaut.jpg] [--width 720]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from bodypix_gimp import Settings, load_image, segment
from bodypix_gimp.render import part_overlay

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photo", default=str(ROOT / "samples" / "astronaut.jpg"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "images" / "held-astronaut.jpg"))
    ap.add_argument("--width", type=int, default=720)
    args = ap.parse_args()
    photo = load_image(args.photo)
    panels = []
    for held in (True, False):
        res = segment(photo, Settings.product(include_held=held))
        # a 3 px outline, so it survives the shrink to the README's width
        person = (res.person_mask >= 128).astype(np.uint8)
        edge = person - cv2.erode(person, np.ones((7, 7), np.uint8))
        panel = part_overlay(photo, res.part_map)
        panel[edge > 0] = (255, 0, 255)
        panels.append(panel)
    both = np.hstack([panels[0], np.full((photo.shape[0], 8, 3), 255, np.uint8), panels[1]])
    h = round(both.shape[0] * args.width / both.shape[1])
    small = cv2.resize(both, (args.width, h), interpolation=cv2.INTER_AREA)
    cv2.imwrite(args.out, small[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {args.out} ({Path(args.out).stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
