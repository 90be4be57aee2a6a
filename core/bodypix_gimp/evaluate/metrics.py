"""Mask quality scores: pure functions, boolean masks in, numbers out.

Boundaries are scored with distance transforms (OpenCV), so a tolerance of ``t`` px means
Euclidean distance <= t.  A mask touching the image frame has no boundary there: the
frame is not an edge anyone drew, so it neither helps nor hurts the boundary scores.
"""

from __future__ import annotations

import cv2
import numpy as np

BOUNDARY_TOLERANCES = (1, 2, 5)
BAND_PX = 5


def iou(pred: np.ndarray, gt: np.ndarray, where: np.ndarray | None = None) -> float:
    """Intersection over union of two boolean masks, optionally only inside ``where``.

    Two empty masks agree perfectly (1.0): a photo without people scored as empty is right.
    """
    if where is not None:
        pred, gt = pred & where, gt & where
    union = np.count_nonzero(pred | gt)
    return float(np.count_nonzero(pred & gt) / union) if union else 1.0


def boundary(mask: np.ndarray) -> np.ndarray:
    """Inner boundary pixels of a boolean mask (pixels with a 4-neighbour outside it).

    Border replication makes the image frame count as "more of the same", so a person cut
    by the frame has no boundary along it.
    """
    m = mask.astype(np.uint8)
    eroded = cv2.erode(m, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)), borderType=cv2.BORDER_REPLICATE)
    return m > eroded


def distance_to(pixels: np.ndarray) -> np.ndarray:
    """Euclidean distance (float32) of every pixel to the nearest True pixel of ``pixels``.

    With no True pixel at all every distance is +inf (nothing is ever within tolerance).
    """
    if not pixels.any():
        return np.full(pixels.shape, np.inf, np.float32)
    return cv2.distanceTransform((~pixels).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def boundary_f(
    pred: np.ndarray, gt: np.ndarray, tolerances: tuple[int, ...] = BOUNDARY_TOLERANCES
) -> dict[int, float]:
    """Boundary F-score at each tolerance (px): harmonic mean of boundary precision and recall.

    Precision: share of predicted boundary pixels within ``t`` of the true boundary;
    recall: share of true boundary pixels within ``t`` of the predicted one.  Two masks
    without boundary agree (1.0); one without boundary against one with scores 0.
    """
    bp, bg = boundary(pred), boundary(gt)
    np_, ng = np.count_nonzero(bp), np.count_nonzero(bg)
    if np_ == 0 and ng == 0:
        return {t: 1.0 for t in tolerances}
    if np_ == 0 or ng == 0:
        return {t: 0.0 for t in tolerances}
    d_to_gt = distance_to(bg)[bp]
    d_to_pred = distance_to(bp)[bg]
    out = {}
    for t in tolerances:
        p = np.count_nonzero(d_to_gt <= t) / np_
        r = np.count_nonzero(d_to_pred <= t) / ng
        out[t] = float(2 * p * r / (p + r)) if p + r else 0.0
    return out


def signed_distance(gt: np.ndarray) -> np.ndarray:
    """Signed distance to the true edge: > 0 outside the person, < 0 inside (float32, px).

    Outside pixels get their distance to the nearest person pixel, inside pixels minus
    their distance to the nearest background pixel; the edge sits between +1 and -1.
    """
    if not gt.any():
        return np.full(gt.shape, np.inf, np.float32)
    outside = distance_to(gt)
    inside = distance_to(~gt) if (~gt).any() else np.full(gt.shape, np.inf, np.float32)
    return np.where(gt, -inside, outside).astype(np.float32)


def mean_signed_offset(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean signed distance (px) of the predicted boundary from the true one.

    Positive = the predicted edge lies outside the person (spill into the background, BodyPix's
    usual error), negative = it cuts inside.  Each predicted boundary pixel is placed by the
    signed distance of its position; the half-pixel between the two sides is removed so that a
    perfect mask scores 0.  NaN when either mask has no boundary.
    """
    bp = boundary(pred)
    if not bp.any() or not boundary(gt).any():
        return float("nan")
    sd = signed_distance(gt)[bp]
    # A perfect inner boundary pixel has sd = -1 (one step from background): shift by +1 inside,
    # so a perfect mask scores 0 and a mask grown by k px scores about +k.
    sd = np.where(sd < 0, sd + 1.0, sd)
    return float(sd.mean())


def edge_band(gt: np.ndarray, width: int = BAND_PX, extra: np.ndarray | None = None) -> np.ndarray:
    """Pixels within ``width`` px of the true boundary (plus ``extra``, e.g. a matte's soft region)."""
    band = distance_to(boundary(gt)) <= width
    if extra is not None:
        band |= extra
    return band


def band_iou(pred: np.ndarray, gt: np.ndarray, band: np.ndarray) -> float:
    """IoU restricted to a narrow band around the true edge: edge accuracy without the easy interior."""
    return iou(pred, gt, where=band)


def alpha_mae(pred_alpha: np.ndarray, gt_alpha: np.ndarray, where: np.ndarray | None = None) -> float:
    """Mean absolute alpha error in 0..1 units (both uint8 0..255), optionally inside ``where``."""
    d = np.abs(pred_alpha.astype(np.float32) - gt_alpha.astype(np.float32)) / 255.0
    return float(d[where].mean() if where is not None else d.mean()) if d.size else 0.0


def score(
    pred: np.ndarray,
    gt: np.ndarray,
    band: np.ndarray | None = None,
    tolerances: tuple[int, ...] = BOUNDARY_TOLERANCES,
) -> dict[str, float]:
    """All person scores for one photo: iou, f@t, offset, band_iou.  Masks are boolean."""
    band = edge_band(gt) if band is None else band
    f = boundary_f(pred, gt, tolerances)
    out = {"iou": iou(pred, gt)}
    out.update({f"f@{t}": v for t, v in f.items()})
    out["offset"] = mean_signed_offset(pred, gt)
    out["band_iou"] = band_iou(pred, gt, band)
    return out
