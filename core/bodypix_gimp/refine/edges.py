"""Edge refinement: move BodyPix's coarse person edge onto the photo's real edge.

BodyPix predicts the person at 1/16 (or 1/8) of the network input and upsamples; its
edge is smooth and misplaced by several pixels (spilling into the background at low
thresholds, cutting inside at high ones).  Each method here takes the photo and BodyPix's
full-resolution probability and returns the refined mask at full resolution:

- ``snake``: active contour on BodyPix's outline (the project's origin idea, ``snake.py``).
- ``guided``: edge-aware (guided-filter) upsampling of the BodyPix probability.
- ``selfie-guided``: BodyPix and MediaPipe Selfie probabilities averaged, then guided filter
  (Apache-2.0 models only).
- ``rvm``: the RVM alpha matte (GPL-3.0 model) where BodyPix finds a person.
- ``fusion``: BodyPix + Selfie + RVM blended, RVM weighted most (it places the edge best) and
  averaged over the photo and its mirror image, then guided-filter sharpened at full
  resolution for photos larger than RVM's working size.  ``fusion-fast``: one RVM pass.

All full-resolution work is limited to a band around the edge: pixels whose probability
is already near 0 or 1 keep it.  ``METHODS`` is the registry; the harness picks the
default (``settings.PRODUCT_DEFAULTS``).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from ..models import RuntimeOptions
from ..settings import Settings
from .guided import guided_filter
from .snake import snake_mask

# Fusion weights and threshold, chosen on human_seg_300 (see README "Evaluation"): RVM
# places the edge best, Selfie and BodyPix mostly vote on which regions are a person.
FUSION_WEIGHTS = {"bodypix": 0.1, "selfie": 0.2, "rvm": 0.7}
FUSION_THRESHOLD = 0.35
# RVM's 0.5 cuts ~1.3 px inside the reference edges; 0.3 centres it (human_seg_300).
RVM_THRESHOLD = 0.3
# Below/above these the fused probability is settled; only the band between is refined.
BAND_LOW, BAND_HIGH = 0.02, 0.98


def _diag(shape: tuple[int, ...]) -> float:
    return float(np.hypot(shape[0], shape[1]))


def _band_box(unsure: np.ndarray, pad: int) -> tuple[slice, slice] | None:
    """Bounding box (padded) of the uncertain pixels, or None when there are none."""
    rows = np.flatnonzero(unsure.any(axis=1))
    if not len(rows):
        return None
    cols = np.flatnonzero(unsure.any(axis=0))
    h, w = unsure.shape
    return (
        slice(max(0, rows[0] - pad), min(h, rows[-1] + pad + 1)),
        slice(max(0, cols[0] - pad), min(w, cols[-1] + pad + 1)),
    )


def edge_aware(
    rgb: np.ndarray, prob: np.ndarray, radius: int, eps: float, low: float = BAND_LOW, high: float = BAND_HIGH
) -> np.ndarray:
    """Guided-filter ``prob`` (float32 HxW) by the colour photo, only in its uncertain band.

    The filter runs on the bounding box of the band, at a grid coarse enough that the box
    filters see at most ~0.5 MP (fast guided filter); the output replaces ``prob`` only where
    ``low < prob < high`` (dilated by ``radius``), so settled regions are untouched.
    """
    unsure = (prob > low) & (prob < high)
    box = _band_box(unsure, 2 * radius)
    if box is None:
        return prob
    crop = rgb[box]
    area = crop.shape[0] * crop.shape[1]
    scale = max(1, int(np.sqrt(area / 500_000)))
    guide = crop.astype(np.float32) * np.float32(1 / 255)
    q = guided_filter(guide, prob[box], radius, eps, scale=scale)
    grow = max(1, radius // 2)
    band = cv2.dilate(unsure[box].astype(np.uint8), np.ones((3, 3), np.uint8), iterations=grow) > 0
    out = prob.copy()
    out[box] = np.where(band, np.clip(q, 0.0, 1.0), prob[box])
    return out


def to_mask(alpha: np.ndarray, threshold: float, soft: bool) -> np.ndarray:
    """Probability -> uint8 mask: 0/255 at ``threshold``, or a 0..255 alpha whose 128 is the threshold."""
    if not soft:
        return np.where(alpha > threshold, np.uint8(255), np.uint8(0))
    # Shift so that the threshold lands on 0.5 (128): the soft mask's >= 128 is the hard mask.
    shifted = np.clip(alpha + (0.5 - threshold), 0.0, 1.0)
    return np.clip(shifted * 255.0 + 0.5, 0, 255).astype(np.uint8)


# --- methods: (rgb, prob, mask, settings, runtime) -> float probability, threshold ----------------


def _snake(rgb, prob, mask, settings, runtime):  # noqa: ANN001, ANN202
    d = _diag(prob.shape)
    radius = max(3, round(d * 0.012))
    spacing = max(2, round(d / 300))
    # Start from BodyPix's 0.5 contour: its mean offset there is small, the threshold's is not.
    start = prob > 0.5
    moved = snake_mask(rgb, start, radius, spacing)
    return moved.astype(np.float32), 0.5


def _guided_bodypix(rgb, prob, mask, settings, runtime):  # noqa: ANN001, ANN202
    # BodyPix's ramp is wide (stride 16 upsampled): the window must span it, 2% of the diagonal.
    radius = max(2, round(_diag(prob.shape) * 0.02))
    return edge_aware(rgb, prob, radius, 1e-3), 0.5


def _selfie_guided(rgb, prob, mask, settings, runtime):  # noqa: ANN001, ANN202
    from .matting import selfie_probability

    p = 0.5 * prob + 0.5 * selfie_probability(rgb, runtime)
    radius = max(2, round(_diag(prob.shape) * 0.01))
    return edge_aware(rgb, p, radius, 1e-3), 0.5


def _sharpen_upsampled(rgb: np.ndarray, p: np.ndarray) -> np.ndarray:
    """RVM ran below the photo's size: put its upsampled edge back on the photo's edge."""
    from .matting import RVM_MAX_PIXELS

    h, w = p.shape
    if h * w <= RVM_MAX_PIXELS * 1.05:
        return p
    up = np.sqrt(h * w / RVM_MAX_PIXELS)
    return edge_aware(rgb, p, max(2, round(2 * up)), 1e-4)


def _rvm(rgb, prob, mask, settings, runtime):  # noqa: ANN001, ANN202
    from .matting import rvm_alpha

    return _sharpen_upsampled(rgb, rvm_alpha(rgb, runtime)), RVM_THRESHOLD


def _fusion(rgb, prob, mask, settings, runtime):  # noqa: ANN001, ANN202
    p = fuse(prob, *peer_probabilities(rgb, runtime, flip=True))
    return _sharpen_upsampled(rgb, p), FUSION_THRESHOLD


def _fusion_fast(rgb, prob, mask, settings, runtime):  # noqa: ANN001, ANN202
    p = fuse(prob, *peer_probabilities(rgb, runtime, flip=False))
    return _sharpen_upsampled(rgb, p), FUSION_THRESHOLD


def peer_probabilities(
    rgb: np.ndarray, runtime: RuntimeOptions | None, flip: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(Selfie probability, RVM alpha) of the photo, both float32 HxW.

    ``flip``: average RVM over the photo and its mirror image.  The two passes make
    different mistakes at the edge (the network is not mirror-symmetric), and their mean
    scored IoU +0.003 to +0.009 and boundary F@2px +0.013 on human_seg_300, for twice the
    RVM time.
    """
    from .matting import rvm_alpha, selfie_probability

    alpha = rvm_alpha(rgb, runtime)
    if flip:
        mirrored = rvm_alpha(np.ascontiguousarray(rgb[:, ::-1]), runtime)[:, ::-1]
        alpha = (alpha + mirrored) * np.float32(0.5)
    return selfie_probability(rgb, runtime), alpha


def fuse(
    bodypix: np.ndarray, selfie: np.ndarray, rvm: np.ndarray, weights: dict[str, float] = FUSION_WEIGHTS
) -> np.ndarray:
    """Weighted mean of the three person probabilities (float32 HxW)."""
    out = bodypix * np.float32(weights["bodypix"])
    out += selfie * np.float32(weights["selfie"])
    out += rvm * np.float32(weights["rvm"])
    return out


Method = Callable[..., tuple[np.ndarray, float]]
METHODS: dict[str, Method] = {
    "snake": _snake,
    "guided": _guided_bodypix,
    "selfie-guided": _selfie_guided,
    "rvm": _rvm,
    "fusion": _fusion,
    "fusion-fast": _fusion_fast,
}


def refine(
    rgb: np.ndarray,
    prob: np.ndarray,
    mask: np.ndarray,
    settings: Settings,
    runtime: RuntimeOptions | None = None,
) -> np.ndarray:
    """The pipeline's edge stage: ``settings.refine`` names the method.

    Returns uint8 HxW, 0/255, or a 0..255 alpha with ``settings.soft_edges`` (>= 128 is the
    hard mask).  ``mask`` is BodyPix's thresholded mask (kept for methods that start from it).
    """
    method = METHODS.get(settings.refine)
    if method is None:
        from ..settings import ConfigError

        allowed = ", ".join(["none", *METHODS])
        raise ConfigError(f"Unknown refine method {settings.refine!r}. Should be one of {allowed}")
    p, threshold = method(rgb, prob, mask, settings, runtime)
    return to_mask(p, threshold, settings.soft_edges)


def snap(rgb: np.ndarray, region: np.ndarray, band_px: int, eps: float = 1e-3) -> np.ndarray:
    """Snap a region's edge onto the photo's colour edges within ``band_px`` of where it was.

    ``region``: float probability 0..1 or a uint8/bool mask (>= 128 / True = inside), at the
    size of ``rgb`` (a crop is fine).  Returns uint8 0/255 of the same size.  Pixels farther
    than ``band_px`` from the original edge keep their original side, so a snap never adds
    or removes whole blobs.  Used by the finger stage to fit a hand's region to the photo.
    """
    if region.dtype == np.bool_:
        p = region.astype(np.float32)
    elif region.dtype == np.uint8:
        p = region.astype(np.float32) * np.float32(1 / 255)
    else:
        p = region.astype(np.float32)
    inside = p >= 0.5
    band_px = max(1, int(band_px))
    if not inside.any() or inside.all():
        return np.where(inside, np.uint8(255), np.uint8(0))
    # Soften the region first so a hard mask has a ramp for the filter to move.
    soft = cv2.GaussianBlur(p, (0, 0), max(0.5, band_px / 3))
    q = guided_filter(rgb.astype(np.float32) * np.float32(1 / 255), soft, band_px, eps)
    k = 2 * band_px + 1
    ker = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    u8 = inside.astype(np.uint8)
    near = (cv2.dilate(u8, ker) > 0) & (cv2.erode(u8, ker) == 0)
    out = np.where(near, q >= 0.5, inside)
    return np.where(out, np.uint8(255), np.uint8(0))
