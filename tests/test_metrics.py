"""Mask metrics on shapes whose answers follow from geometry, and on a real dataset mask."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from bodypix_gimp.evaluate import metrics
from conftest import human_seg_pairs
from PIL import Image


def disc(shape: tuple[int, int], r: float, cx: float = 100, cy: float = 100) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


@pytest.fixture(scope="module")
def real_mask() -> np.ndarray:
    _, mask = human_seg_pairs(1)[0]
    return np.asarray(Image.open(mask)) >= 128


def test_identical_masks_score_perfectly(real_mask: np.ndarray) -> None:
    s = metrics.score(real_mask, real_mask)
    assert s["iou"] == 1.0 and s["band_iou"] == 1.0
    assert s["f@1"] == s["f@2"] == s["f@5"] == 1.0
    assert s["offset"] == 0.0


@pytest.mark.parametrize("k", [1, 3, 6])
def test_grown_mask_offset_is_positive_k_and_shrunk_is_negative(real_mask: np.ndarray, k: int) -> None:
    ker = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
    grown = cv2.dilate(real_mask.astype(np.uint8), ker) > 0
    shrunk = cv2.erode(real_mask.astype(np.uint8), ker, borderType=cv2.BORDER_REPLICATE) > 0
    assert metrics.mean_signed_offset(grown, real_mask) == pytest.approx(k, abs=0.6)
    assert metrics.mean_signed_offset(shrunk, real_mask) == pytest.approx(-k, abs=0.6)
    f = metrics.boundary_f(grown, real_mask, (max(1, k - 1), k + 1))
    # Inside the tolerance the edge counts as right, one pixel short of it mostly wrong.
    assert f[k + 1] > 0.95
    if k > 1:
        assert f[k - 1] < 0.5


def test_iou_of_two_discs_matches_area_ratio() -> None:
    a, b = disc((200, 200), 50), disc((200, 200), 40)
    assert metrics.iou(b, a) == pytest.approx(40**2 / 50**2, rel=0.03)
    assert metrics.iou(np.zeros((5, 5), bool), np.zeros((5, 5), bool)) == 1.0


def test_frame_is_not_a_boundary() -> None:
    """A person cut by the bottom of the photo: the cut edge is not scored."""
    gt = np.zeros((100, 100), bool)
    gt[40:, 30:70] = True
    edge = metrics.boundary(gt)
    assert np.flatnonzero(edge[-1]).tolist() == [30, 69]  # only the sides, not the cut
    pred = gt.copy()
    pred[40:, 70:75] = True  # the right side moved 5 px out
    assert metrics.mean_signed_offset(pred, gt) > 0
    assert 0.5 < metrics.boundary_f(pred, gt, (1,))[1] < 1.0


def test_empty_prediction_scores_zero_and_nan_offset(real_mask: np.ndarray) -> None:
    empty = np.zeros_like(real_mask)
    s = metrics.score(empty, real_mask)
    assert s["iou"] == 0.0 and s["f@2"] == 0.0 and s["band_iou"] == 0.0
    assert np.isnan(s["offset"])


def test_band_covers_the_edge_and_not_the_interior(real_mask: np.ndarray) -> None:
    band = metrics.edge_band(real_mask, 5)
    assert band[metrics.boundary(real_mask)].all()
    deep = cv2.erode(real_mask.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    assert not (band & deep).any()


def test_alpha_mae() -> None:
    a = np.full((4, 4), 255, np.uint8)
    b = np.zeros((4, 4), np.uint8)
    assert metrics.alpha_mae(a, b) == 1.0
    assert metrics.alpha_mae(a, a) == 0.0
