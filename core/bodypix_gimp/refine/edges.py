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
- ``fusion``: BodyPix + Selfie + RVM blended, then settled by BodyPix's second opinion
  (``fusion.py``); ``fusion-fast``: one RVM pass; ``fusion-blend``: the blend alone.

All full-resolution work is limited to a band around the edge: pixels whose probability
is already near 0 or 1 keep it.  ``METHODS`` is the registry; the harness picks the
default (``settings.PRODUCT_DEFAULTS``).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import cv2
import numpy as np

from ..errors import ConfigError
from ..runtime.sessions import RuntimeOptions
from ..settings import Settings
from .fusion import (
    VETO_WORK_PIXELS,
    SecondOpinion,
    fusion,
    fusion_fast,
    method_peers,
    skeleton_distance,
    to_alpha,
)
from .guided import coefficients_near, guided_filter
from .peers import rvm_alpha, selfie_probability
from .scale import diagonal, resize_to, working_copy
from .snake import snake_mask

# RVM's 0.5 cuts ~1.3 px inside the reference edges; 0.3 centres it (human_seg_300).
RVM_THRESHOLD = 0.3
# Below/above these a probability is settled; only the band between is refined at full size.
BAND_LOW, BAND_HIGH = 0.02, 0.98
# Methods work on a copy of the photo of at most this many pixels (RVM's working size);
# only the edge band is carried to the photo's full resolution.
WORK_PIXELS = 1_000_000
# Guided-filter radius (working-grid px) and regulariser for the final upsampling.
UPSAMPLE_RADIUS, UPSAMPLE_EPS = 2, 1e-4
# The band is upsampled in tiles of BAND_TILE x BAND_TILE photo pixels, in runs of at most
# BAND_RUN_TILES tiles (so every cv2.remap map is at most 64 x 4096, whatever the photo).  64
# rather than 128: fewer pixels off the band are computed (12 MP P3M portrait: 42 % of the photo
# instead of 49 %, for a band of 32 %), ~10 % less CPU for the stage; 32 gained no more.
BAND_TILE, BAND_RUN_TILES = 64, 64


def to_mask(p: np.ndarray, threshold: float, soft: bool) -> np.ndarray:
    """Probability -> uint8 mask: 0/255 at ``threshold``, or a 0..255 alpha whose 128 is the threshold."""
    if not soft:
        return np.where(p > threshold, np.uint8(255), np.uint8(0))
    a = to_alpha(p, threshold)
    # Round so that p > threshold <=> alpha >= 128 (ties at exactly the threshold go out).
    out = np.clip(np.floor(a * 255.0) + (a > 0.5), 0, 255).astype(np.uint8)
    return out


def upsample_band(
    rgb: np.ndarray,
    small_rgb: np.ndarray,
    p_small: np.ndarray,
    threshold: float,
    soft: bool,
    radius: int = UPSAMPLE_RADIUS,
    eps: float = UPSAMPLE_EPS,
) -> np.ndarray:
    """Full-resolution uint8 mask from a working-grid probability, sharp on the photo's edges.

    Away from the edge (``p`` settled below BAND_LOW or above BAND_HIGH) the mask is the
    working-grid decision upsampled by nearest neighbour, which is exact there.  In the edge
    band the fast guided filter's linear coefficients (computed on the working grid, guide
    = the small photo) are sampled at each band pixel and applied to the full-resolution
    colours, so the edge lands on the photo's own edge, not on a blurred upsampled ramp.
    Cost grows with the band's area, not the photo's.

    The band is worked in tiles (BAND_TILE rows, runs of at most BAND_RUN_TILES tiles that
    hold band pixels), each reading only the piece of the coefficients it samples: the
    temporaries stay a few MB at any photo size, every ``cv2.remap`` stays far inside
    OpenCV's 32767-pixel limit on each side (the whole band as rows of 1024 crossed it near
    70 MP), and the tile rows run on OpenCV's thread count.
    """
    H, W = rgb.shape[:2]
    h, w = p_small.shape
    if (h, w) == (H, W):
        return to_mask(p_small, threshold, soft)
    unsure = ((p_small > BAND_LOW) & (p_small < BAND_HIGH)).astype(np.uint8)
    unsure = cv2.dilate(unsure, np.ones((3, 3), np.uint8))
    # Bilinear sampling at a band pixel reads one grid pixel beyond ``unsure``.
    near = cv2.dilate(unsure, np.ones((3, 3), np.uint8))
    coef = coefficients_near(small_rgb.astype(np.float32) * np.float32(1 / 255), p_small, radius, eps, near)
    coef = cv2.merge(coef)  # [a_r, a_g, a_b, b]: one remap samples all four
    out = cv2.resize(to_mask(p_small, threshold, soft), (W, H), interpolation=cv2.INTER_NEAREST)
    band = cv2.resize(unsure, (W, H), interpolation=cv2.INTER_NEAREST)
    # Pixel-centre mapping from the photo to the working grid (as cv2.resize uses it).
    map_x = ((np.arange(W) + 0.5) * (w / W) - 0.5).astype(np.float32)
    map_y = ((np.arange(H) + 0.5) * (h / H) - 0.5).astype(np.float32)
    to_unit = np.arange(256, dtype=np.float32) * np.float32(1 / 255)
    tile, run = BAND_TILE, BAND_RUN_TILES * BAND_TILE
    starts = np.arange(0, W, tile)

    def tile_row(y0: int) -> None:
        y1 = min(H, y0 + tile)
        # numpy's column max: cv2.reduce(REDUCE_MAX) on uint8 took ~30 ms over a 12 MP photo, this < 1
        hit = np.maximum.reduceat(band[y0:y1].max(axis=0), starts) > 0
        bounds = np.flatnonzero(np.diff(np.concatenate(([0], hit.astype(np.int8), [0]))))
        for a, b in zip(bounds[::2], bounds[1::2], strict=True):
            for x0 in range(a * tile, min(W, b * tile), run):
                x1 = min(W, b * tile, x0 + run)
                # The coefficients this tile samples (bilinear: one more grid pixel each way).
                # Shifting the map by a whole pixel is exact in float32, and remap then reads
                # the same pixels with the same weights as on the whole grid.
                cy0, cx0 = max(0, int(map_y[y0]) - 1), max(0, int(map_x[x0]) - 1)
                cy1, cx1 = min(h, int(map_y[y1 - 1]) + 3), min(w, int(map_x[x1 - 1]) + 3)
                sx = np.broadcast_to(map_x[x0:x1] - np.float32(cx0), (y1 - y0, x1 - x0)).copy()
                sy = np.broadcast_to(map_y[y0:y1, None] - np.float32(cy0), (y1 - y0, x1 - x0)).copy()
                s = cv2.remap(coef[cy0:cy1, cx0:cx1], sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                colours = cv2.LUT(rgb[y0:y1, x0:x1], to_unit)  # float32(v) * float32(1 / 255), one pass
                q = s[..., 3].copy()
                for c in range(3):
                    q += s[..., c] * colours[..., c]
                np.copyto(out[y0:y1, x0:x1], to_mask(q, threshold, soft), where=band[y0:y1, x0:x1].view(bool))

    # Tile rows write disjoint rows of ``out``; numpy and OpenCV release the GIL.
    with ThreadPoolExecutor(max(1, min(4, cv2.getNumThreads()))) as pool:
        list(pool.map(tile_row, range(0, H, tile)))
    return out


# --- methods: (small rgb, BodyPix prob on the working grid, runtime, second opinion, peers) -> (p on grid, threshold)
# ``peers``: a function giving the fusion methods' (Selfie, RVM) on ``small``, when ``start_peers`` began them.


def _guided_bodypix(small, prob_small, runtime, opinion, peers=None):  # noqa: ANN001, ANN202
    # BodyPix's ramp is wide (stride 16 upsampled): the window must span it, 2% of the diagonal.
    radius = max(2, round(diagonal(small.shape) * 0.02))
    return guided_filter(small.astype(np.float32) * np.float32(1 / 255), prob_small, radius, 1e-3), 0.5


def _selfie_guided(small, prob_small, runtime, opinion, peers=None):  # noqa: ANN001, ANN202

    p = 0.5 * prob_small + 0.5 * selfie_probability(small, runtime)
    radius = max(2, round(diagonal(small.shape) * 0.01))
    return guided_filter(small.astype(np.float32) * np.float32(1 / 255), p, radius, 1e-3), 0.5


def _rvm(small, prob_small, runtime, opinion, peers=None):  # noqa: ANN001, ANN202

    return rvm_alpha(small, runtime), RVM_THRESHOLD


Method = Callable[..., tuple[np.ndarray, float]]
METHODS: dict[str, Method | None] = {
    "snake": None,  # works on the outline at full resolution, see refine()
    "guided": _guided_bodypix,
    "selfie-guided": _selfie_guided,
    "rvm": _rvm,
    "fusion": fusion,
    "fusion-fast": fusion_fast,
    "fusion-blend": fusion,
}
# Methods that settle disputes (``veto_objects``, ``revote_disputed``) when the pipeline passes
# BodyPix's sharper pass; ``fusion-blend`` is ``fusion`` without it.
JUDGED_METHODS = ("fusion",)


# Methods whose peer networks (Selfie, RVM) need only the working copy (``start_peers``).
PEER_METHODS = ("fusion", "fusion-fast", "fusion-blend")


def start_peers(small: np.ndarray, method: str, runtime: RuntimeOptions | None) -> Callable[[], tuple] | None:
    """Begin ``method``'s peer networks on the working copy in a thread; returns the function
    that waits for their (Selfie, RVM) pair, or None for a method without peers.

    Why: RVM is the edge stage's largest cost (~0.25 s at any photo size) and needs nothing but
    ``small``, so it can run while BodyPix runs and is decoded, whose numpy passes use one
    core.  The pair is the one ``method_peers`` gives (the same arrays, only earlier); an error
    in it (a missing model) is raised where the method asks for the pair.
    """
    if method not in PEER_METHODS:
        return None
    pool = ThreadPoolExecutor(1, thread_name_prefix="bodypix-peers")
    job: Future = pool.submit(method_peers, method, small, runtime)
    pool.shutdown(wait=False)  # the thread ends with the job; nothing else is queued
    return job.result


def small_copy(rgb: np.ndarray) -> np.ndarray:
    """The copy of the photo the methods work on (at most WORK_PIXELS)."""
    return working_copy(rgb, WORK_PIXELS)


def opinion_photo(small: np.ndarray) -> np.ndarray:
    """What BodyPix's sharper pass looks at for the second opinion: ``small_copy`` shrunk to VETO_WORK_PIXELS."""
    return working_copy(small, VETO_WORK_PIXELS)


def refine(
    rgb: np.ndarray,
    prob: np.ndarray,
    settings: Settings,
    runtime: RuntimeOptions | None = None,
    poses: list | None = None,
    sharp: np.ndarray | None = None,
    small: np.ndarray | None = None,
    peers: Callable[[], tuple] | None = None,
) -> np.ndarray:
    """The pipeline's edge stage: ``settings.refine`` names the method.

    Returns uint8 HxW, 0/255, or a 0..255 alpha with ``settings.soft_edges`` (>= 128 is the
    hard mask).  ``prob`` is BodyPix's full-resolution person probability, or already on the
    grid of ``small`` (what ``resize_to`` makes of it).  ``poses`` (BodyPix's, photo pixels) and
    ``sharp`` (BodyPix's person probability at internal resolution "high" on
    ``opinion_photo(small)``) are the ``SecondOpinion`` of JUDGED_METHODS; without ``sharp``
    those methods behave as ``fusion-blend``.  ``small``: the photo's working copy
    (``small_copy(rgb)``) when the caller has made it already; ``peers``: ``start_peers``'s
    function for that copy, when the caller began the peer networks early.
    """
    if settings.refine not in METHODS:
        allowed = ", ".join(["none", *METHODS])
        raise ConfigError(f"Unknown refine method {settings.refine!r}. Should be one of {allowed}")
    if settings.refine == "snake":
        return _snake(rgb, prob, settings.soft_edges)
    small = small_copy(rgb) if small is None else small
    prob_small = resize_to(prob, small.shape)
    opinion = None
    if settings.refine in JUDGED_METHODS and sharp is not None:
        scale = (small.shape[1] / rgb.shape[1], small.shape[0] / rgb.shape[0])
        far = skeleton_distance(small.shape[:2], poses or [], scale)
        opinion = SecondOpinion(far, sharp)
    p, threshold = METHODS[settings.refine](small, prob_small, runtime, opinion, peers)
    return upsample_band(rgb, small, p, threshold, settings.soft_edges)


def _snake(rgb: np.ndarray, prob: np.ndarray, soft: bool) -> np.ndarray:
    d = diagonal(prob.shape)
    radius = max(3, round(d * 0.012))
    spacing = max(2, round(d / 300))
    # Start from BodyPix's 0.5 contour: its mean offset there is small, the threshold's is not.
    moved = snake_mask(rgb, prob > 0.5, radius, spacing)
    if not soft:
        return np.where(moved, np.uint8(255), np.uint8(0))
    # A snake gives a hard outline; soften it by one pixel so the alpha is not aliased.
    a = cv2.GaussianBlur(moved.astype(np.float32), (3, 3), 0)
    return to_mask(a, 0.5, True)
