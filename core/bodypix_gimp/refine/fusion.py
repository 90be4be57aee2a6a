"""The ``fusion`` edge method: BodyPix + Selfie + RVM blended, and BodyPix's second opinion.

RVM places the edge best; Selfie and BodyPix mostly vote on which regions are a person.
Given BodyPix's sharper second pass and its poses (``SecondOpinion``, from the pipeline),
``fusion`` then settles the pieces the networks disagree on: it drops held or nearby objects
the foreground networks count as person (``veto_objects``) and re-votes on solid pieces of
person that RVM alone dropped (``revote_disputed``).  On small grids the settled blend is
smoothed (``smooth``) and BodyPix's vote is taken out at the edge
(``edge_without_bodypix``); the edge is decided at a level that
rises with the working grid's size (``edge_level``), and the result is a matte: RVM's own alpha
wherever RVM agrees with that decision (``matte``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..result import POSE_CHAIN
from ..runtime.sessions import RuntimeOptions
from .peers import rvm_alpha, selfie_probability
from .scale import diagonal, resize_to

# Blend weights and threshold: RVM places the edge, Selfie and BodyPix vote (docs/evaluation.md, "Fusion").
FUSION_WEIGHTS = {"bodypix": 0.1, "selfie": 0.2, "rvm": 0.7}
FUSION_THRESHOLD = 0.35
# Edge level by working-grid pixels: FUSION_THRESHOLD up to 0.25 MP (binary references), the
# networks' even odds 0.5 (a matte's alpha-128 contour) from 1 MP, log-interpolated (docs/evaluation.md, "Edge level").
EDGE_LEVEL_LARGE, EDGE_LEVEL_PIXELS = 0.5, (250_000, 1_000_000)
# Smoothing of the settled blend (Gaussian sigma, working-grid px) up to 0.25 MP, none from 1 MP,
# log-interpolated like the edge level (docs/evaluation.md, "Smoothing the blend").
EDGE_SMOOTH = 0.8
# The edge without BodyPix (``edge_without_bodypix``): band around the level, lift in its place.
EDGE_BAND, EDGE_LIFT = 0.3, 0.03
# ``fusion`` adds the mirrored pass for photos up to this size (docs/evaluation.md, edge timing).
FLIP_MAX_PIXELS = 500_000
# Object veto (``veto_objects``): distance in torso lengths, piece area, BodyPix level (docs/evaluation.md).
VETO_DISTANCE, VETO_MIN_AREA, VETO_BODYPIX = 0.5, 0.001, 0.2
# The sharper pass's copy: fixed cost, judgement independent of the photo's size (docs/evaluation.md).
VETO_WORK_PIXELS = 250_000
# Poses and keypoints below these scores are not trusted to draw a skeleton.
VETO_POSE_SCORE, VETO_KEYPOINT_SCORE = 0.3, 0.3
# Re-vote (``revote_disputed``): erosion (share of the diagonal), core area, BodyPix level (docs/evaluation.md).
REVOTE_CORE, REVOTE_MIN_AREA, REVOTE_BODYPIX = 0.015, 0.0005, 0.5
# The skeleton drawn for the veto: body-pix's POSE_CHAIN plus cross pieces that fill the torso.
SKELETON = POSE_CHAIN + (
    ("leftShoulder", "rightShoulder"), ("leftHip", "rightHip"),
    ("leftShoulder", "rightHip"), ("rightShoulder", "leftHip"),
)


@dataclass(frozen=True)
class SecondOpinion:
    """What settles the networks' disputes (see ``veto_objects``, ``revote_disputed``)."""

    far: np.ndarray | None  # working grid: distance to the nearest confident skeleton (``skeleton_distance``)
    bodypix: np.ndarray  # BodyPix person probability at internal resolution "high", on a <= VETO_WORK_PIXELS copy



def fusion(small, prob_small, runtime, opinion, peers=None):  # noqa: ANN001, ANN202
    selfie, rvm = peers() if peers is not None else method_peers("fusion", small, runtime)
    blend = p = fuse(prob_small, selfie, rvm)
    level = edge_level(p.shape)
    if opinion is not None:
        p = veto_objects(p, level, opinion.far, opinion.bodypix)
        p = revote_disputed(p, level, opinion.bodypix, selfie, rvm)
    p = edge_without_bodypix(smooth(p), smooth(blend), level, (prob_small, selfie, rvm))
    return matte(p, level, rvm), 0.5


def fusion_fast(small, prob_small, runtime, opinion, peers=None):  # noqa: ANN001, ANN202
    selfie, rvm = peers() if peers is not None else method_peers("fusion-fast", small, runtime)
    p = fuse(prob_small, selfie, rvm)
    return matte(p, edge_level(p.shape), rvm), 0.5


def edge_level(shape: tuple[int, ...]) -> float:
    """The blend's level that is the edge on a working grid of this size (HxW).

    The references the level was measured on disagree by size: at about 0.25 MP (human_seg_300's
    remove.bg masks, CIHP's hand-drawn polygons) the edge sits about a pixel outside the
    networks' 50% contour, and 0.35 scores best (F@2px 0.804 against 0.778 at 0.5); at 1-2 MP
    (P3M's mattes) the edge is the matte's alpha-128 contour, and 0.5 scores best among
    natural levels (F@2px 0.649 against 0.550 at 0.35).  Between, the level follows the
    logarithm of the pixel count, so a photo's level changes smoothly with its size.
    """
    return FUSION_THRESHOLD + size_fraction(shape) * (EDGE_LEVEL_LARGE - FUSION_THRESHOLD)


def size_fraction(shape: tuple[int, ...]) -> float:
    """Where a working grid of this size (HxW) lies between EDGE_LEVEL_PIXELS: 0 below, 1 above, log between."""
    lo, hi = EDGE_LEVEL_PIXELS
    return min(1.0, max(0.0, float(np.log(shape[0] * shape[1] / lo) / np.log(hi / lo))))


def smooth(p: np.ndarray) -> np.ndarray:
    """The settled blend smoothed by a Gaussian of EDGE_SMOOTH px on small grids, fading out by 1 MP.

    RVM's alpha on a photo of about 0.25 MP is speckled and stair-stepped at the edge (the
    mirrored pass halves that, ``peer_probabilities``); a sigma of 0.8 px more: human_seg_300
    IoU +0.0015, F@2px +0.003, 72 photos changed, none by more than -0.4 IoU points
    (docs/evaluation.md, "Smoothing the blend").  On P3M's 1-2 MP portraits the same blur cost
    F@2px (the matte's edge is sharp at that size), so it fades out with the grid's size like
    the edge level; a 2 MP photo's 1 MP grid is not blurred.
    """
    sigma = EDGE_SMOOTH * (1.0 - size_fraction(p.shape))
    if sigma < 0.05:
        return p
    return cv2.GaussianBlur(p, (0, 0), sigma)


def edge_without_bodypix(
    p: np.ndarray, blend: np.ndarray, level: float, nets: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> np.ndarray:
    """On small grids, the settled smoothed blend ``p`` with BodyPix's vote taken out at the edge.

    BodyPix's probability is blurred over several pixels at a person's outline, so its share of
    the blend moves the edge off where RVM and Selfie put it.  Within EDGE_BAND of ``level``,
    where the veto and the re-vote left the blend alone (``p`` equals the plain smoothed
    ``blend``), ``p`` becomes the smoothed blend with BodyPix's weight moved to RVM, raised by
    EDGE_LIFT (about BodyPix's share inside a person, so the level keeps its meaning):
    human_seg_300 F@2px 0.8062 -> 0.8083, IoU +0.0001 (docs/evaluation.md, "The edge without
    BodyPix").  ``nets``: (BodyPix, Selfie, RVM) probabilities.  Fades out with the grid's
    size like ``smooth``; from 1 MP ``p`` is returned unchanged.
    """
    fade = 1.0 - size_fraction(p.shape)
    if fade <= 0.0:
        return p
    moved = FUSION_WEIGHTS["bodypix"] * fade
    weights = dict(FUSION_WEIGHTS, bodypix=FUSION_WEIGHTS["bodypix"] - moved, rvm=FUSION_WEIGHTS["rvm"] + moved)
    edge = smooth(fuse(*nets, weights=weights)) + np.float32(EDGE_LIFT * fade)
    band = (np.abs(p - blend) < 1e-6) & (np.abs(p - np.float32(level)) < EDGE_BAND)
    return np.where(band, edge, p)


def to_alpha(p: np.ndarray, threshold: float) -> np.ndarray:
    """Probability -> 0..1 alpha with ``threshold`` mapped to 0.5, 0 to 0 and 1 to 1 (piecewise linear).

    So the soft mask's ``>= 128`` is exactly the hard mask, and settled background stays 0.
    """
    p = np.clip(p, 0.0, 1.0)
    lo = p * np.float32(0.5 / threshold)
    hi = np.float32(0.5) + (p - np.float32(threshold)) * np.float32(0.5 / (1.0 - threshold))
    return np.where(p < threshold, lo, hi).astype(np.float32)


def matte(p: np.ndarray, threshold: float, rvm: np.ndarray) -> np.ndarray:
    """The decision ``p > threshold`` as an alpha whose 0.5 is the edge: RVM's alpha where it agrees.

    RVM is a matting network: where its alpha falls on the same side of 0.5 as the decision,
    it is the better soft edge (P3M band MAE 0.100 against 0.116 for the blend's own ramp,
    docs/evaluation.md, "Edge level"); elsewhere (the veto, the re-vote, where the level and
    RVM disagree) the blend's ramp rescaled so that ``threshold`` becomes 0.5 (``to_alpha``).
    ``alpha > 0.5`` is exactly ``p > threshold``.
    """
    alpha = rvm.astype(np.float32)  # a copy
    # The two disagree on few pixels (the edge's few px, the veto's and the re-vote's pieces).
    differ = np.flatnonzero((p > threshold) != (rvm > 0.5))
    alpha.flat[differ] = to_alpha(p.flat[differ], threshold)
    return alpha


def method_peers(method: str, small: np.ndarray, runtime: RuntimeOptions | None) -> tuple[np.ndarray, np.ndarray]:
    """(Selfie, RVM) as the fusion ``method`` ("fusion", "fusion-blend", "fusion-fast") uses them on ``small``.

    ``fusion`` mirrors only where it is cheap: two passes on <= FLIP_MAX_PIXELS cost less than
    one on the 1 MP working copy of a large photo, which keeps the 2 MP budget (300 ms).
    """
    flip = method != "fusion-fast" and small.shape[0] * small.shape[1] <= FLIP_MAX_PIXELS
    return peer_probabilities(small, runtime, flip=flip)


def peer_probabilities(
    rgb: np.ndarray, runtime: RuntimeOptions | None, flip: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(Selfie probability, RVM alpha) of the photo, both float32 HxW.

    ``flip``: average both over the photo and its mirror image.  The two passes make
    different mistakes at the edge (the networks are not mirror-symmetric); for RVM their mean
    scored IoU +0.003 and boundary F@2px +0.013 on human_seg_300 (Selfie +0.002 F@2px), for
    twice the network time.
    """
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


def torso_length(kp: dict[str, tuple[float, float]]) -> float | None:
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
        size = torso_length(kp)
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
    sharp = resize_to(sharp, p.shape)
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
    disputed = ((sharp > REVOTE_BODYPIX) & (resize_to(p, (h, w)) <= threshold)).astype(np.uint8)
    r = max(1, round(diagonal(sharp.shape) * REVOTE_CORE))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    n, cores, stats, _ = cv2.connectedComponentsWithStats(cv2.erode(disputed, disk), connectivity=8)
    solid = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= REVOTE_MIN_AREA * h * w]
    if not solid:
        return p
    _, pieces = cv2.connectedComponents(disputed, connectivity=8)
    chosen = np.unique(pieces[np.isin(cores, solid)])
    zone = cv2.dilate(np.isin(pieces, chosen).astype(np.uint8), disk)
    zone = cv2.resize(zone, (p.shape[1], p.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    vote = (resize_to(sharp, p.shape) + selfie + rvm) * np.float32(1 / 3)
    return np.where(zone, np.maximum(p, vote), p)
