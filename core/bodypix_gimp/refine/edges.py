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
- ``fusion``: BodyPix + Selfie + RVM blended, RVM weighted most (it places the edge best) and,
  for photos up to 0.5 MP, averaged over the photo and its mirror image, then guided-filter sharpened at full
  resolution for photos larger than RVM's working size.  ``fusion-fast``: one RVM pass.
  Given BodyPix's sharper second pass and its poses (the pipeline passes them), ``fusion``
  then settles the pieces the networks disagree on: it drops held or nearby *objects* the
  foreground networks count as person (a pram, a bag on the bench; ``veto_objects``) and
  re-votes on solid pieces of person that RVM alone dropped (striped trousers;
  ``revote_disputed``).  ``fusion-blend``: the same blend without that step.

All full-resolution work is limited to a band around the edge: pixels whose probability
is already near 0 or 1 keep it.  ``METHODS`` is the registry; the harness picks the
default (``settings.PRODUCT_DEFAULTS``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from ..runtime.sessions import RuntimeOptions
from ..settings import Settings
from .guided import coefficients_near, guided_filter
from .snake import snake_mask

# Fusion weights and threshold, chosen on human_seg_300 (see README "Evaluation"): RVM
# places the edge best, Selfie and BodyPix mostly vote on which regions are a person.
# The threshold is below 0.5 because human_seg_300's reference edges sit ~1.3 px outside
# RVM's 0.5 contour; P3M's mattes (alpha 128) sit nearer 0.5 (there 0.5 scores F@2px +0.1),
# so the two references disagree by about a pixel and 0.35 follows the target set.
# A gate that dropped fused foreground far from BodyPix's region ("BodyPix decides who")
# was tried and removed: +0.000 IoU on human_seg_300, -0.016 on p3m, where BodyPix misses
# whole limbs the peers find.
FUSION_WEIGHTS = {"bodypix": 0.1, "selfie": 0.2, "rvm": 0.7}
FUSION_THRESHOLD = 0.35
# RVM's 0.5 cuts ~1.3 px inside the reference edges; 0.3 centres it (human_seg_300).
RVM_THRESHOLD = 0.3
# Below/above these a probability is settled; only the band between is refined at full size.
BAND_LOW, BAND_HIGH = 0.02, 0.98
# Methods work on a copy of the photo of at most this many pixels (RVM's working size);
# only the edge band is carried to the photo's full resolution.
WORK_PIXELS = 1_000_000
# Guided-filter radius (working-grid px) and regulariser for the final upsampling.
UPSAMPLE_RADIUS, UPSAMPLE_EPS = 2, 1e-4
# ``fusion`` adds the mirrored pass for photos up to this size (see ``_fusion``).
FLIP_MAX_PIXELS = 500_000
# Object veto (``veto_objects``): fused foreground farther than VETO_DISTANCE torso lengths
# from every confident pose's skeleton, in a piece of at least VETO_MIN_AREA of the photo not
# touching the photo's border, is dropped when a sharper BodyPix pass (internal resolution
# "high") gives it a mean person probability below VETO_BODYPIX.  human_seg_300 / p3m results
# hold for distance 0.5-0.8, area 0-0.003 and probability 0.2-0.35 (README "Evaluation").
VETO_DISTANCE, VETO_MIN_AREA, VETO_BODYPIX = 0.5, 0.001, 0.2
# The sharper pass looks at a copy of at most this many pixels (human_seg_300's photo size):
# its cost stays fixed (~25 ms, against ~100 ms on the 1 MP working copy of a 2 MP photo)
# and its judgement does not change with the photo's pixel count (on the 1 MP copy BodyPix
# put the pram at 0.20-0.22, on 0.25-0.5 MP at 0.03-0.11).
VETO_WORK_PIXELS = 250_000
# Poses and keypoints below these scores are not trusted to draw a skeleton.
VETO_POSE_SCORE, VETO_KEYPOINT_SCORE = 0.3, 0.3
# Re-vote (``revote_disputed``): where the sharper BodyPix pass is above REVOTE_BODYPIX but the
# fusion says background, the part left after an erosion by REVOTE_CORE of the diagonal (BodyPix's
# spill band is about that wide) must keep at least REVOTE_MIN_AREA of the photo to count as a
# solid piece of person.  human_seg_300 / p3m results hold for core 0.01-0.02, area 0.0002-0.001
# and probability 0.5-0.6 (README "Evaluation").
REVOTE_CORE, REVOTE_MIN_AREA, REVOTE_BODYPIX = 0.015, 0.0005, 0.5
# Keypoint pairs drawn as the skeleton: limbs, torso (with diagonals so it is filled), face.
SKELETON = (
    ("leftShoulder", "rightShoulder"), ("leftShoulder", "leftElbow"), ("leftElbow", "leftWrist"),
    ("rightShoulder", "rightElbow"), ("rightElbow", "rightWrist"), ("leftShoulder", "leftHip"),
    ("rightShoulder", "rightHip"), ("leftHip", "rightHip"), ("leftHip", "leftKnee"), ("leftKnee", "leftAnkle"),
    ("rightHip", "rightKnee"), ("rightKnee", "rightAnkle"), ("nose", "leftEye"), ("nose", "rightEye"),
    ("leftEye", "leftEar"), ("rightEye", "rightEar"), ("leftShoulder", "rightHip"),
    ("rightShoulder", "leftHip"), ("nose", "leftShoulder"), ("nose", "rightShoulder"),
)


def _diag(shape: tuple[int, ...]) -> float:
    return float(np.hypot(shape[0], shape[1]))


def working_copy(rgb: np.ndarray, max_pixels: int = WORK_PIXELS) -> np.ndarray:
    """The photo area-downscaled to at most ``max_pixels`` (itself when already small)."""
    h, w = rgb.shape[:2]
    if h * w <= max_pixels:
        return rgb
    s = (max_pixels / (h * w)) ** 0.5
    return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def _resize(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if a.shape[:2] == shape[:2]:
        return a
    small = shape[0] * shape[1] < a.shape[0] * a.shape[1]
    return cv2.resize(a, (shape[1], shape[0]), interpolation=cv2.INTER_AREA if small else cv2.INTER_LINEAR)


def to_alpha(p: np.ndarray, threshold: float) -> np.ndarray:
    """Probability -> 0..1 alpha with ``threshold`` mapped to 0.5, 0 to 0 and 1 to 1 (piecewise linear).

    So the soft mask's ``>= 128`` is exactly the hard mask, and settled background stays 0.
    """
    p = np.clip(p, 0.0, 1.0)
    lo = p * np.float32(0.5 / threshold)
    hi = np.float32(0.5) + (p - np.float32(threshold)) * np.float32(0.5 / (1.0 - threshold))
    return np.where(p < threshold, lo, hi).astype(np.float32)


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
    Cost grows with the band's length, not the photo's area.
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
    out = cv2.resize(to_mask(p_small, threshold, soft), (W, H), interpolation=cv2.INTER_NEAREST)
    band = cv2.resize(unsure, (W, H), interpolation=cv2.INTER_NEAREST)
    ys, xs = np.nonzero(band)
    if not len(ys):
        return out
    # Pixel-centre mapping from the photo to the working grid (as cv2.resize uses), laid out
    # as rows of 1024 because cv2.remap limits each side of its maps to 32767.
    n = len(ys)
    pad = (-n) % 1024
    sx = np.pad(((xs + 0.5) * (w / W) - 0.5).astype(np.float32), (0, pad)).reshape(-1, 1024)
    sy = np.pad(((ys + 0.5) * (h / H) - 0.5).astype(np.float32), (0, pad)).reshape(-1, 1024)

    def sample(c: np.ndarray) -> np.ndarray:
        return cv2.remap(c, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).ravel()[:n]

    colours = rgb[ys, xs].astype(np.float32) * np.float32(1 / 255)
    q = sample(coef[-1])
    for c in range(3):
        q += sample(coef[c]) * colours[:, c]
    out[ys, xs] = to_mask(q, threshold, soft)
    return out


@dataclass(frozen=True)
class SecondOpinion:
    """What settles the networks' disputes (see ``veto_objects``, ``revote_disputed``)."""

    far: np.ndarray | None  # working grid: distance to the nearest confident skeleton (``skeleton_distance``)
    bodypix: np.ndarray  # BodyPix person probability at internal resolution "high", on a <= VETO_WORK_PIXELS copy


# --- methods: (small rgb, BodyPix prob on the working grid, runtime, second opinion) -> (p on grid, threshold)


def _guided_bodypix(small, prob_small, runtime, opinion):  # noqa: ANN001, ANN202
    # BodyPix's ramp is wide (stride 16 upsampled): the window must span it, 2% of the diagonal.
    radius = max(2, round(_diag(small.shape) * 0.02))
    return guided_filter(small.astype(np.float32) * np.float32(1 / 255), prob_small, radius, 1e-3), 0.5


def _selfie_guided(small, prob_small, runtime, opinion):  # noqa: ANN001, ANN202
    from .peers import selfie_probability

    p = 0.5 * prob_small + 0.5 * selfie_probability(small, runtime)
    radius = max(2, round(_diag(small.shape) * 0.01))
    return guided_filter(small.astype(np.float32) * np.float32(1 / 255), p, radius, 1e-3), 0.5


def _rvm(small, prob_small, runtime, opinion):  # noqa: ANN001, ANN202
    from .peers import rvm_alpha

    return rvm_alpha(small, runtime), RVM_THRESHOLD


def _fusion(small, prob_small, runtime, opinion):  # noqa: ANN001, ANN202
    # The mirrored pass only where it is cheap: two passes on <= 0.5 MP cost less than one
    # on the 1 MP working copy of a large photo, which keeps the 2 MP budget (300 ms).
    flip = small.shape[0] * small.shape[1] <= FLIP_MAX_PIXELS
    selfie, rvm = peer_probabilities(small, runtime, flip=flip)
    p = fuse(prob_small, selfie, rvm)
    if opinion is not None:
        p = veto_objects(p, FUSION_THRESHOLD, opinion.far, opinion.bodypix)
        p = revote_disputed(p, FUSION_THRESHOLD, opinion.bodypix, selfie, rvm)
    return p, FUSION_THRESHOLD


def _fusion_fast(small, prob_small, runtime, opinion):  # noqa: ANN001, ANN202
    return fuse(prob_small, *peer_probabilities(small, runtime, flip=False)), FUSION_THRESHOLD


def peer_probabilities(
    rgb: np.ndarray, runtime: RuntimeOptions | None, flip: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(Selfie probability, RVM alpha) of the photo, both float32 HxW.

    ``flip``: average both over the photo and its mirror image.  The two passes make
    different mistakes at the edge (the networks are not mirror-symmetric); for RVM their mean
    scored IoU +0.003 and boundary F@2px +0.013 on human_seg_300 (Selfie +0.002 F@2px), for
    twice the network time.
    """
    from .peers import rvm_alpha, selfie_probability

    alpha = rvm_alpha(rgb, runtime)
    selfie = selfie_probability(rgb, runtime)
    if flip:
        mirror = np.ascontiguousarray(rgb[:, ::-1])
        alpha = (alpha + rvm_alpha(mirror, runtime)[:, ::-1]) * np.float32(0.5)
        selfie = (selfie + selfie_probability(mirror, runtime)[:, ::-1]) * np.float32(0.5)
    return selfie, alpha


def fuse(
    bodypix: np.ndarray, selfie: np.ndarray, rvm: np.ndarray, weights: dict[str, float] = FUSION_WEIGHTS
) -> np.ndarray:
    """Weighted mean of the three person probabilities (float32 HxW)."""
    out = bodypix * np.float32(weights["bodypix"])
    out += selfie * np.float32(weights["selfie"])
    out += rvm * np.float32(weights["rvm"])
    return out


def _torso(kp: dict[str, tuple[float, float]]) -> float | None:
    """A pose's size: mean shoulder-hip distance, else 1.5 x shoulder width (None if neither)."""

    def dist(a: str, b: str) -> float | None:
        if a in kp and b in kp:
            return float(np.hypot(kp[a][0] - kp[b][0], kp[a][1] - kp[b][1]))
        return None

    sides = [d for d in (dist("leftShoulder", "leftHip"), dist("rightShoulder", "rightHip")) if d]
    if sides:
        return float(np.mean(sides))
    width = dist("leftShoulder", "rightShoulder")
    return 1.5 * width if width else None


def skeleton_distance(shape: tuple[int, int], poses: list, scale: tuple[float, float]) -> np.ndarray | None:
    """Distance to the nearest confident pose skeleton, in that pose's torso lengths (HxW float32).

    ``poses``: BodyPix poses in photo pixels; ``scale``: (x, y) photo -> ``shape`` grid.
    None when no pose is confident enough to draw (then nothing can be judged far from a body).
    Relative distance, so the same limit fits a child far away and a close-up.
    """
    best = None
    for pose in poses:
        if pose.score < VETO_POSE_SCORE:
            continue
        kp = {k.part: (k.x * scale[0], k.y * scale[1]) for k in pose.keypoints if k.score >= VETO_KEYPOINT_SCORE}
        size = _torso(kp)
        if not size or len(kp) < 5:
            continue
        canvas = np.full(shape, 255, np.uint8)
        for a, b in SKELETON:
            if a in kp and b in kp:
                cv2.line(canvas, (round(kp[a][0]), round(kp[a][1])), (round(kp[b][0]), round(kp[b][1])), 0, 1)
        for x, y in kp.values():
            cv2.circle(canvas, (round(x), round(y)), 1, 0, -1)
        d = cv2.distanceTransform(canvas, cv2.DIST_L2, 3) * np.float32(1 / size)
        best = d if best is None else np.minimum(best, d)
    return best


def veto_objects(p: np.ndarray, threshold: float, far: np.ndarray | None, sharp: np.ndarray) -> np.ndarray:
    """``p`` with fused foreground that is an object, not a person, set to 0.

    RVM and Selfie segment the *foreground*, so a pram being pushed or a bag beside a sitting
    person counts as person; BodyPix at its usual resolution agrees too often to veto alone,
    and a sharper BodyPix pass used everywhere loses limbs of large people (p3m IoU -0.06).
    So only pieces that the poses cannot explain are judged: foreground farther than
    VETO_DISTANCE torso lengths (``far``, from ``skeleton_distance``) from every skeleton,
    connected, not touching the border (a body cut by the frame or a person without a
    pose usually does), and not tiny.  Each such piece goes when ``sharp`` (BodyPix person
    probability at internal resolution "high", on ``p``'s grid) averages below VETO_BODYPIX
    over it.
    """
    if far is None:
        return p
    pieces = ((p > threshold) & (far > VETO_DISTANCE)).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(pieces, connectivity=8)
    h, w = p.shape
    judged = [
        i for i in range(1, n)
        if stats[i, cv2.CC_STAT_AREA] >= VETO_MIN_AREA * h * w
        and stats[i, cv2.CC_STAT_LEFT] > 0 and stats[i, cv2.CC_STAT_TOP] > 0
        and stats[i, cv2.CC_STAT_LEFT] + stats[i, cv2.CC_STAT_WIDTH] < w
        and stats[i, cv2.CC_STAT_TOP] + stats[i, cv2.CC_STAT_HEIGHT] < h
    ]
    if not judged:
        return p
    sharp = _resize(sharp, p.shape)
    out = p.copy()
    for i in judged:
        piece = labels == i
        if float(sharp[piece].mean()) < VETO_BODYPIX:
            out[piece] = 0.0
    return out


def revote_disputed(
    p: np.ndarray, threshold: float, sharp: np.ndarray, selfie: np.ndarray, rvm: np.ndarray
) -> np.ndarray:
    """``p`` raised to the three networks' plain mean over solid pieces of person it dropped.

    The fusion weights RVM 0.7, so what RVM misses is lost even where BodyPix or Selfie see a
    person (striped trousers on a dark rug, human_seg_300 photo 274: RVM 0.0, BodyPix 0.8).
    BodyPix alone is no judge: its "yes" spills a band around every person.  So only a
    *solid* dispute is re-voted: where ``sharp`` (BodyPix at internal resolution "high", on
    its own grid) is above REVOTE_BODYPIX and ``p`` is not above ``threshold``, eroded by
    REVOTE_CORE of the diagonal (which removes the spill band), in pieces that keep at least
    REVOTE_MIN_AREA of the photo.  Over each such disputed piece, whole and grown back by the
    same radius, the three networks vote as equals: ``max(p, (sharp + selfie + rvm) / 3)``.
    What only BodyPix claims stays out (that mean is at most 1/3, under the fusion's 0.35);
    a leg BodyPix is sure of and one peer half-sees comes back.  The search runs on ``sharp``'s
    grid (at most VETO_WORK_PIXELS), so it costs a few ms whatever the photo's size.
    """
    h, w = sharp.shape
    disputed = ((sharp > REVOTE_BODYPIX) & (_resize(p, (h, w)) <= threshold)).astype(np.uint8)
    r = max(1, round(_diag(sharp.shape) * REVOTE_CORE))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    n, cores, stats, _ = cv2.connectedComponentsWithStats(cv2.erode(disputed, disk), connectivity=8)
    solid = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= REVOTE_MIN_AREA * h * w]
    if not solid:
        return p
    _, pieces = cv2.connectedComponents(disputed, connectivity=8)
    chosen = np.unique(pieces[np.isin(cores, solid)])
    zone = cv2.dilate(np.isin(pieces, chosen).astype(np.uint8), disk)
    zone = cv2.resize(zone, (p.shape[1], p.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    vote = (_resize(sharp, p.shape) + selfie + rvm) * np.float32(1 / 3)
    return np.where(zone, np.maximum(p, vote), p)


Method = Callable[..., tuple[np.ndarray, float]]
METHODS: dict[str, Method | None] = {
    "snake": None,  # works on the outline at full resolution, see refine()
    "guided": _guided_bodypix,
    "selfie-guided": _selfie_guided,
    "rvm": _rvm,
    "fusion": _fusion,
    "fusion-fast": _fusion_fast,
    "fusion-blend": _fusion,
}
# Methods that settle disputes (``veto_objects``, ``revote_disputed``) when the pipeline passes
# BodyPix's sharper pass; ``fusion-blend`` is ``fusion`` without it.
JUDGED_METHODS = ("fusion",)


def refine(
    rgb: np.ndarray,
    prob: np.ndarray,
    mask: np.ndarray,
    settings: Settings,
    runtime: RuntimeOptions | None = None,
    poses: list | None = None,
    sharp_bodypix: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """The pipeline's edge stage: ``settings.refine`` names the method.

    Returns uint8 HxW, 0/255, or a 0..255 alpha with ``settings.soft_edges`` (>= 128 is the
    hard mask).  ``prob`` is BodyPix's full-resolution person probability; ``mask`` its
    thresholded mask (unused by the current methods, kept for the pipeline's contract).
    ``poses`` (BodyPix's, photo pixels) and ``sharp_bodypix`` (photo -> BodyPix person
    probability at internal resolution "high") are the ``SecondOpinion`` of JUDGED_METHODS;
    without ``sharp_bodypix`` those methods behave as ``fusion-blend``.
    """
    if settings.refine not in METHODS:
        from ..settings import ConfigError

        allowed = ", ".join(["none", *METHODS])
        raise ConfigError(f"Unknown refine method {settings.refine!r}. Should be one of {allowed}")
    if settings.refine == "snake":
        return _snake(rgb, prob, settings.soft_edges)
    small = working_copy(rgb)
    prob_small = _resize(prob, small.shape)
    opinion = None
    if settings.refine in JUDGED_METHODS and sharp_bodypix is not None:
        scale = (small.shape[1] / rgb.shape[1], small.shape[0] / rgb.shape[0])
        far = skeleton_distance(small.shape[:2], poses or [], scale)
        opinion = SecondOpinion(far, sharp_bodypix(working_copy(small, VETO_WORK_PIXELS)))
    p, threshold = METHODS[settings.refine](small, prob_small, runtime, opinion)
    return upsample_band(rgb, small, p, threshold, settings.soft_edges)


def _snake(rgb: np.ndarray, prob: np.ndarray, soft: bool) -> np.ndarray:
    d = _diag(prob.shape)
    radius = max(3, round(d * 0.012))
    spacing = max(2, round(d / 300))
    # Start from BodyPix's 0.5 contour: its mean offset there is small, the threshold's is not.
    moved = snake_mask(rgb, prob > 0.5, radius, spacing)
    if not soft:
        return np.where(moved, np.uint8(255), np.uint8(0))
    # A snake gives a hard outline; soften it by one pixel so the alpha is not aliased.
    a = cv2.GaussianBlur(moved.astype(np.float32), (3, 3), 0)
    return to_mask(a, 0.5, True)


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
