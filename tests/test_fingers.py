"""The finger stage's documented rules (refine/fingers.py), on real photos with the real hand models.

- Hands smaller than MIN_HAND_SCALE (12 px, wrist to middle-finger base) are left alone: the
  landmark model still finds jim's hand at a 10 px scale, the stage does not use it.
- Fingers the incoming mask already has keep their outline: given human_seg_300 photo 284's
  ground-truth mask (an open hand, every finger drawn by the annotator), the stage finds the
  hand and changes no pixel.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from bodypix_gimp import Settings, load_image, segment
from bodypix_gimp.refine import fingers as hands
from bodypix_gimp.refine.mediapipe_hands import HandModels
from conftest import EVAL
from PIL import Image


@pytest.fixture(scope="module")
def jim_square(jim) -> tuple[float, float, float]:  # noqa: ANN001
    raw = segment(jim, Settings())
    (square,) = hands.find_candidates(raw.person_mask, raw.part_map, raw.poses)
    return square


def found_in(jim: np.ndarray, square: tuple[float, float, float], f: float) -> list:
    small = cv2.resize(jim, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    return hands.detect_hands(small, [(square[0] * f, square[1] * f, square[2] * f)], HandModels())


def test_hands_under_12_px_are_left_alone(jim, jim_square, monkeypatch) -> None:  # noqa: ANN001
    assert hands.MIN_HAND_SCALE == 12.0  # the README's number
    (bigger,) = found_in(jim, jim_square, 0.15)  # jim's hand at ~18 px: recovered
    assert hands.hand_scale(bigger.landmarks) > 12
    assert found_in(jim, jim_square, 0.09) == []  # ~10 px: left alone
    # ... by the size rule, not because the models miss it: without the rule it is there
    monkeypatch.setattr(hands, "MIN_HAND_SCALE", 0.0)
    (tiny,) = found_in(jim, jim_square, 0.09)
    assert tiny.presence > 0.9 and hands.hand_scale(tiny.landmarks) < 12


def test_fingers_the_mask_already_has_keep_their_outline() -> None:
    image = load_image(EVAL / "human_seg_300" / "images" / "284.jpg")
    with Image.open(EVAL / "human_seg_300" / "masks" / "284.png") as im:
        truth = np.where(np.asarray(im.convert("L")) >= 128, np.uint8(255), np.uint8(0))
    raw = segment(image, Settings())
    mask, parts, info = hands.recover_fingers(image, truth, raw.part_map, raw.poses, Settings(fingers=True))
    used = [h for h in info["hands"] if "skipped" not in h]
    assert len(used) == 1 and used[0]["presence"] > 0.9  # the open hand was found and judged
    assert np.array_equal(mask, truth)
    assert used[0]["added"] == used[0]["removed"] == 0
    # BodyPix's own mask of the same photo lacks fingers: there the stage does change the mask
    fixed, _, _ = hands.recover_fingers(image, raw.person_mask, raw.part_map, raw.poses, Settings(fingers=True))
    assert np.count_nonzero(fixed != raw.person_mask) > 100
