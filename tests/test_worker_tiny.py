"""Photos a few pixels across (1x1, 2x2, thin strips) give a mask, in the CLI and in the
GIMP worker, with the default refinement on (RVM's network used to fail below 3 px)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import SAMPLE
from PIL import Image

SIZES = [(1, 1), (2, 2), (1, 64), (64, 1), (2, 600), (600, 2), (3, 2000)]  # (width, height)


def small(size: tuple[int, int]) -> Image.Image:
    return Image.open(SAMPLE).convert("RGB").resize(size, Image.Resampling.BOX)


def test_cli_segments_photos_of_one_or_two_pixels(tmp_path) -> None:
    paths = []
    for w, h in SIZES:
        paths.append(tmp_path / f"p{w}x{h}.png")
        small((w, h)).save(paths[-1])
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "bodypix_gimp.cli", "segment", *map(str, paths), "--out", str(out),
                        "-q"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    for path, (w, h) in zip(paths, SIZES, strict=True):
        mask = Image.open(out / f"{path.stem}.person.png")
        assert mask.size == (w, h) and mask.mode == "L"


@pytest.mark.parametrize(("w", "h"), [(1, 1), (2, 2), (2, 600)])
def test_worker_answers_photos_of_one_or_two_pixels(tmp_path, models_dir, w, h) -> None:
    rgb = np.asarray(small((w, h)))
    header = {"op": "select-person", "source_rect": [0, 0, w, h], "channels": 3, "outdir": str(tmp_path / "out"),
              "models": str(models_dir), "options": {"refine": True, "fingers": True}}  # fmt: skip
    p = subprocess.run([sys.executable, "-m", "bodypix_gimp.worker"], capture_output=True, timeout=120,
                       input=json.dumps(header).encode() + b"\n" + rgb.tobytes())  # fmt: skip
    last = json.loads(p.stdout.decode().splitlines()[-1])
    assert b"Traceback" not in p.stderr, p.stderr.decode()
    if "result" in last:
        (it,) = last["result"]["items"]
        x, y, iw, ih = it["rect"]  # the mask's box within the photo
        assert 0 <= x and 0 <= y and 0 < iw and 0 < ih and x + iw <= w and y + ih <= h, it["rect"]
        assert (tmp_path / "out" / it["file"]).stat().st_size == iw * ih
    else:  # nobody in a photo this small: the worker's one-line "no person" answer
        assert last["kind"] == "empty" and "\n" not in last["error"], last
