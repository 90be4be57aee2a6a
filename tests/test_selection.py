"""The worker's answers when GIMP has a selection, and its dialog options, over the plug-in's protocol.

human_seg_300 photo 266: three people side by side, touching (a man left, x < ~300; a woman in
the middle; a woman in a striped shirt right, x > ~345).  A selection box on the right woman's
shirt must select her and nobody else; the expectations come from the photo's ground-truth mask
and from where the three faces are (read off the photo), not from the worker's own selection code.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bodypix_gimp import PART_NAMES, segment
from bodypix_gimp.settings import default_settings
from conftest import EVAL
from PIL import Image

PHOTO = EVAL / "human_seg_300" / "images" / "266.jpg"
TRUTH = EVAL / "human_seg_300" / "masks" / "266.png"
BODYPIX_ONLY = {"quality": "fast", "refine": False, "fingers": False}
# (x0, x1, y0, y1) of each face in photo pixels
FACES = {"man": (250, 300, 75, 130), "middle": (312, 338, 92, 135), "right": (348, 382, 80, 125)}


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    with Image.open(PHOTO) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def truth() -> np.ndarray:
    with Image.open(TRUTH) as im:
        return np.asarray(im.convert("L")) >= 128


def call(tmp: Path, op: str, rgb: np.ndarray, options: dict, selection: np.ndarray | None = None,
         **extra) -> list[np.ndarray]:
    """Run ``python -m bodypix_gimp.worker`` as the plug-in does; the result items as arrays."""
    h, w = rgb.shape[:2]
    header = {"op": op, "source_rect": [0, 0, w, h], "channels": 3, "outdir": str(tmp), "options": options,
              "selection": selection is not None, **extra}
    payload = json.dumps(header).encode() + b"\n" + rgb.tobytes()
    if selection is not None:
        payload += selection.tobytes()
    proc = subprocess.run([sys.executable, "-m", "bodypix_gimp.worker"], input=payload, capture_output=True,
                          timeout=300)
    lines = [json.loads(x) for x in proc.stdout.decode().splitlines()]
    assert proc.returncode == 0 and "result" in lines[-1], (proc.returncode, lines[-1:], proc.stderr[-2000:])
    out = []
    for it in lines[-1]["result"]["items"]:
        # select items are cut to the mask's box; GIMP writes them into an empty channel
        x, y, iw, ih = it["rect"]
        assert it["channels"] == 1 and x >= 0 and y >= 0 and x + iw <= w and y + ih <= h
        full = np.zeros((h, w), np.uint8)
        full[y:y + ih, x:x + iw] = np.fromfile(tmp / it["file"], np.uint8).reshape(ih, iw)
        out.append(full)
    return out


def right_selection(shape: tuple[int, ...]) -> np.ndarray:
    sel = np.zeros(shape[:2], np.uint8)
    sel[150:210, 375:415] = 255  # the right woman's striped shirt, nobody else
    return sel


def face_pixels(mask: np.ndarray, who: str) -> int:
    x0, x1, y0, y1 = FACES[who]
    return int((mask[y0:y1, x0:x1] >= 128).sum())


def test_select_person_with_a_selection_takes_only_that_person(tmp_path, photo, truth) -> None:  # noqa: ANN001
    (got,) = call(tmp_path, "select-person", photo, BODYPIX_ONLY, right_selection(photo.shape))
    person = got >= 128
    whole = segment(photo, default_settings(refine="none", fingers=False)).person_mask >= 128
    assert not (person & ~whole).any()  # a selection only takes people away
    # right of x = 390 the truth shows the right woman alone: she is kept whole there
    assert truth[:, 390:].sum() > 10_000
    assert np.array_equal(person[:, 390:], whole[:, 390:])
    assert face_pixels(got, "right") > 500
    # the man (left of x = 300 in the truth) is not selected; BodyPix's instances may give
    # the right woman some of the middle woman's pixels, so the middle is not judged
    assert truth[:, :300].sum() > 15_000 and whole[:, :300].sum() > 15_000
    assert not person[:, :300].any() and face_pixels(got, "man") == 0


def test_select_parts_with_a_selection_takes_that_persons_parts(tmp_path, photo) -> None:  # noqa: ANN001
    (got,) = call(tmp_path, "select-parts", photo, BODYPIX_ONLY, right_selection(photo.shape), parts=["face"])
    assert face_pixels(got, "right") > 300
    assert face_pixels(got, "man") == 0
    # without a selection all three faces are selected (the photo really shows them)
    (every,) = call(tmp_path / "all", "select-parts", photo, BODYPIX_ONLY, parts=["face"])
    assert min(face_pixels(every, who) for who in FACES) > 300
    # what it selects are face parts of the core's part map
    res = segment(photo, default_settings(refine="none", fingers=False))
    faces = np.isin(res.part_map, [PART_NAMES.index("left_face"), PART_NAMES.index("right_face")])
    assert np.array_equal(every >= 128, faces)


def test_accurate_quality_is_stride_8(tmp_path, photo) -> None:  # noqa: ANN001
    (got,) = call(tmp_path, "select-person", photo, {**BODYPIX_ONLY, "quality": "accurate"})
    stride8 = segment(photo, default_settings(refine="none", fingers=False, output_stride=8)).person_mask
    stride16 = segment(photo, default_settings(refine="none", fingers=False, output_stride=16)).person_mask
    assert np.count_nonzero(stride8 != stride16) > 1000  # the two strides really differ here
    assert np.array_equal(got, stride8)


def test_soft_edges_option_gives_the_cores_soft_mask(tmp_path, photo) -> None:  # noqa: ANN001
    options = {"quality": "fast", "refine": True, "fingers": False, "soft_edges": True}
    (got,) = call(tmp_path, "select-person", photo, options)
    want = segment(photo, default_settings(fingers=False, soft_edges=True)).person_mask
    assert ((want > 0) & (want < 255)).sum() > 500
    assert np.array_equal(got, want)
