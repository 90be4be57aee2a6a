"""Finger recovery: put back the fingers BodyPix drops, using MediaPipe's hand landmarks.

BodyPix sees palms, not fingers: its part heads run at stride 16 (8 at best), coarser than
a finger, so spread fingers vanish and the gaps between them fill in.  Here, for every
place BodyPix shows a hand (a left_hand/right_hand blob, or a wrist keypoint with the hand
likely beyond it):

1. crop generously and run the palm detector, then the 21-point landmark model on the
   rotated hand crop (``handmodel``); hands with a low presence score are skipped, so a
   gloved, hidden or imagined hand leaves BodyPix's mask exactly as it was;
2. draw each finger as a chain of capsules whose width follows the hand's size, plus the
   palm polygon: a shape prior that knows where the fingers are but not their outline;
3. snap that prior to the photo with a local GrabCut: sure-foreground seeds on the finger
   bones and the palm, the rest of BodyPix's person (arm, face, shirt) as foreground
   colour too, and BodyPix's background away from the hand as sure background.  The
   graph cut follows colour edges, so fingers get their real outline and background seen
   between spread fingers drops out even where BodyPix filled it in;
4. write the result into the person mask and the part map (person's left -> 10, right ->
   11) only inside the hand's own zone, so nothing else changes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from ..result import Pose
from ..runtime.sessions import RuntimeOptions
from ..settings import Settings
from . import guided
from .mediapipe_hands import Hand, HandModels, landmark_region, palm_region

LEFT_HAND, RIGHT_HAND = 10, 11
LEFT_LOWER_ARM = (6, 7)
RIGHT_LOWER_ARM = (8, 9)

# Hands below this landmark presence are ignored (MediaPipe's own tracking threshold).
MIN_PRESENCE = 0.5
# Hands smaller than this (wrist to middle-finger base, pixels) have fingers 2-3 px wide:
# nothing to recover, and the landmarks are too coarse to snap to.
MIN_HAND_SCALE = 12.0
# Hand blobs smaller than this many pixels are noise (a hand of 8x8 px has no fingers to add).
MIN_HAND_PIXELS = 64
# Candidate crop side as a multiple of the BodyPix hand blob's larger side.
CROP_FROM_BLOB = 2.6
# Wrist candidates: the hand's centre lies this far beyond the wrist, in forearm lengths,
# and the crop side is this many forearm lengths.
WRIST_REACH = 0.45
CROP_FROM_FOREARM = 1.4
MIN_WRIST_SCORE = 0.3
MAX_CANDIDATES = 12
# Second landmark pass on the tighter landmark-derived region (MediaPipe's tracking step).
REFINE_PASS = True

# Finger chains (MediaPipe landmark ids), thumb first, and their width relative to the hand
# size (wrist -> middle-finger base): adult fingers are about 0.18 of that, thumbs wider.
FINGERS = ((1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20))
FINGER_WIDTH = (0.24, 0.19, 0.19, 0.18, 0.16)
TAPER = (1.0, 0.92, 0.85)  # width factor per segment, base to tip
TIP_EXTRA = 0.35  # the tip landmark sits inside the fingertip: extend by this many widths
PALM_IDS = (0, 1, 2, 5, 9, 13, 17)
# How far (in hand sizes) the snapped outline may move outside the drawn prior.
SNAP_MARGIN = 0.06
SNAP_INNER_MARGIN = 0.015
# A finger whose bone line is at least this much inside the incoming mask is "present".
PRESENT_COVERAGE = 0.9
# With every finger present, the snap runs only if more than this fraction of the hand's
# area (or 8 px) is person between the fingers, away from them: gaps filled in.
GAP_FILL = 0.02
# GrabCut runs on at most this many pixels per hand (see snap_scaled), and the guided
# filter that brings its answer back to full size uses this regularisation.
SNAP_MAX_PIXELS = 10_000
GUIDED_EPS = 2e-3
SNAP_ITERATIONS = 1  # a second GrabCut round changed hand-box IoU by 0.06 points
FINGERTIPS = (4, 8, 12, 16, 20)


def recover_fingers(
    rgb: np.ndarray,
    mask: np.ndarray,
    parts: np.ndarray,
    poses: Sequence[Pose],
    settings: Settings,
    runtime: RuntimeOptions | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Add the fingers of every confident hand to ``mask`` and ``parts``; returns the maps and info.

    ``mask`` is the person mask so far (0/255 or 0..255 alpha), ``parts`` BodyPix's part
    argmax (255 where it was not computed).  Inputs are never modified: the maps returned
    are copies once a hand is looked for, the inputs themselves when there is no candidate
    (no full-size copies for a photo without hands).  ``info`` is JSON-ready: each hand's
    box, scores, side, pixels added and removed, and the time spent.
    """
    t0 = time.perf_counter()
    info: dict[str, Any] = {"hands": [], "candidates": 0}
    candidates = find_candidates(mask, parts, poses)
    info["candidates"] = len(candidates)
    if not candidates:
        info["ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return mask, parts, info
    mask, parts = mask.copy(), parts.copy()
    hm = HandModels(runtime)
    hands = detect_hands(rgb, candidates, hm, info)
    t_detect = time.perf_counter()
    person = mask >= 128
    for hand in hands:
        entry = hand_summary(hand)
        if not belongs_to_person(hand, person):
            entry["skipped"] = "not attached to a person"
            info["hands"].append(entry)
            continue
        t1 = time.perf_counter()
        side = hand_side(hand, parts, person, poses)
        added, removed = apply_hand(rgb, mask, parts, hand, side, soft=settings.soft_edges)
        entry.update(part=side, added=added, removed=removed, snap_ms=round((time.perf_counter() - t1) * 1000, 1))
        info["hands"].append(entry)
    total = (time.perf_counter() - t0) * 1000
    info["detect_ms"] = round((t_detect - t0) * 1000, 1)
    info["ms"] = round(total, 1)
    n = sum(1 for h in info["hands"] if "skipped" not in h)
    info["ms_per_hand"] = round(total / n, 1) if n else None
    return mask, parts, info


def hand_summary(hand: Hand) -> dict[str, Any]:
    lm = hand.landmarks
    return {
        "box": [round(float(v), 1) for v in (*lm[:, :2].min(0), *lm[:, :2].max(0))],
        "tips": [[round(float(lm[i, 0]), 1), round(float(lm[i, 1]), 1)] for i in FINGERTIPS],
        "scale": round(hand_scale(lm), 1),
        "presence": round(hand.presence, 4),
        "palm_score": round(hand.palm_score, 4),
        "size": round(hand.size, 1),
    }


# --- where to look -------------------------------------------------------------------------


def find_candidates(mask: np.ndarray, parts: np.ndarray, poses: Sequence[Pose]) -> list[tuple[float, float, float]]:
    """Square crops (x0, y0, side) in which a hand is likely: BodyPix hand blobs and wrists.

    A wrist that already lies in a blob's crop, or whose predicted hand centre does, adds
    nothing: the palm detector sees that hand in the blob's crop.
    """
    squares: list[tuple[float, float, float]] = []
    # uint8 OpenCV passes over the photo, then the blobs of the hand pixels' bounding box only
    # (aligned to even pixels, so the components come out in the same order as on the photo)
    is_hand = np.zeros(256, np.uint8)
    is_hand[[LEFT_HAND, RIGHT_HAND]] = 255
    hand = cv2.bitwise_and(cv2.LUT(parts, is_hand), cv2.threshold(mask, 127, 255, cv2.THRESH_BINARY)[1])
    bx, by, bw, bh = cv2.boundingRect(hand)
    if bw and bh:
        x0, y0 = bx - bx % 2, by - by % 2
        n, _, stats, _ = cv2.connectedComponentsWithStats(hand[y0:by + bh, x0:bx + bw], connectivity=8)
        stats[:, cv2.CC_STAT_LEFT] += x0
        stats[:, cv2.CC_STAT_TOP] += y0
        order = np.argsort(-stats[1:, cv2.CC_STAT_AREA]) + 1
        for i in order:
            x, y, w, h, area = stats[i]
            if area < MIN_HAND_PIXELS:
                continue
            side = max(w, h) * CROP_FROM_BLOB
            squares.append((x + w / 2 - side / 2, y + h / 2 - side / 2, side))
    del hand
    for pose in poses:
        kp = {k.part: k for k in pose.keypoints}
        for side_name in ("left", "right"):
            wrist, elbow = kp.get(f"{side_name}Wrist"), kp.get(f"{side_name}Elbow")
            if wrist is None or elbow is None or min(wrist.score, elbow.score) < MIN_WRIST_SCORE:
                continue
            forearm = math.hypot(wrist.x - elbow.x, wrist.y - elbow.y)
            if forearm < 4:
                continue
            cx = wrist.x + WRIST_REACH * (wrist.x - elbow.x)
            cy = wrist.y + WRIST_REACH * (wrist.y - elbow.y)
            if any(
                x0 <= px <= x0 + s and y0 <= py <= y0 + s
                for x0, y0, s in squares
                for px, py in ((cx, cy), (wrist.x, wrist.y))
            ):
                continue
            side = CROP_FROM_FOREARM * forearm
            squares.append((cx - side / 2, cy - side / 2, side))
    return squares[:MAX_CANDIDATES]


def detect_hands(
    rgb: np.ndarray,
    squares: Sequence[tuple[float, float, float]],
    hm: HandModels,
    timings: dict[str, float] | None = None,
) -> list[Hand]:
    """Palm detector in each square, landmarks on each palm; duplicates and low presence dropped.

    ``timings``, when given, receives the ms spent in the palm and landmark models.
    """
    timings = {} if timings is None else timings
    t0 = time.perf_counter()
    palms = []
    for square in squares:
        palms.extend(hm.detect_palms(rgb, square))
    timings["palm_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    t0 = time.perf_counter()
    palms.sort(key=lambda p: -p.score)
    hands: list[Hand] = []
    for palm in palms:
        region = palm_region(palm)
        if any(_same_hand(region.cx, region.cy, h) for h in hands):
            continue
        hand = hm.landmarks(rgb, region, lite=REFINE_PASS)
        if REFINE_PASS and hand.presence >= MIN_PRESENCE:
            # the full model on the tighter crop has the last word, presence included
            hand = hm.landmarks(rgb, landmark_region(hand.landmarks))
        if hand.presence < MIN_PRESENCE or hand_scale(hand.landmarks) < MIN_HAND_SCALE:
            continue
        hand = Hand(hand.landmarks, hand.presence, hand.handedness, hand.region, palm.score)
        if any(_overlap(hand, h) > 0.5 for h in hands):
            continue
        hands.append(hand)
    timings["landmark_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    return hands


def _same_hand(cx: float, cy: float, hand: Hand) -> bool:
    """A palm whose hand region centre falls on a hand we already have (another crop saw it)."""
    lm = hand.landmarks[:, :2]
    (x0, y0), (x1, y1) = lm.min(0), lm.max(0)
    return bool(x0 <= cx <= x1 and y0 <= cy <= y1)


def _overlap(a: Hand, b: Hand) -> float:
    """IoU of the landmark boxes of two hands."""
    (ax0, ay0), (ax1, ay1) = a.landmarks[:, :2].min(0), a.landmarks[:, :2].max(0)
    (bx0, by0), (bx1, by1) = b.landmarks[:, :2].min(0), b.landmarks[:, :2].max(0)
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / union if union > 0 else 0.0


def belongs_to_person(hand: Hand, person: np.ndarray) -> bool:
    """The hand touches BodyPix's person: its palm overlaps the mask or its wrist is next to it.

    A hand the palm detector finds on a poster or another photo in the scene is not added.
    """
    h, w = person.shape
    reach = max(2, int(round(0.35 * hand.size)))
    pts = hand.landmarks[list(PALM_IDS), :2]
    for x, y in pts:
        xi, yi = int(round(x)), int(round(y))
        y0, y1, x0, x1 = (
            max(0, yi - reach),
            min(h, yi + reach + 1),
            max(0, xi - reach),
            min(w, xi + reach + 1),
        )
        if y0 < y1 and x0 < x1 and person[y0:y1, x0:x1].any():
            return True
    return False


def hand_side(hand: Hand, parts: np.ndarray, person: np.ndarray, poses: Sequence[Pose]) -> int:
    """10 (person's left hand) or 11 (right), as BodyPix would name this hand.

    Order of evidence: BodyPix's own hand (then lower-arm) labels under the palm; the
    nearest wrist keypoint; MediaPipe's handedness (its "right" score, which matched the
    person's right hand on a non-mirrored photo).
    """
    h, w = parts.shape
    hull = cv2.convexHull(np.round(hand.landmarks[list(PALM_IDS), :2]).astype(np.int32))
    # the palm drawn on its bounding box (clipped to the photo), not on a photo-sized canvas
    bx, by, bw, bh = cv2.boundingRect(hull)
    x0, y0, x1, y1 = max(0, bx), max(0, by), min(w, bx + bw), min(h, by + bh)
    palm = np.zeros((max(0, y1 - y0), max(0, x1 - x0)), np.uint8)
    if palm.size:
        cv2.fillConvexPoly(palm, hull - np.array([x0, y0], np.int32), 1)
    region = palm.astype(bool) & person[y0:y1, x0:x1]
    crop = parts[y0:y1, x0:x1]
    for left_ids, right_ids in (((LEFT_HAND,), (RIGHT_HAND,)), (LEFT_LOWER_ARM, RIGHT_LOWER_ARM)):
        nl = int(np.isin(crop[region], left_ids).sum())
        nr = int(np.isin(crop[region], right_ids).sum())
        if nl + nr >= 16:
            return LEFT_HAND if nl > nr else RIGHT_HAND
    wrist = hand.landmarks[0, :2]
    best, best_d = None, 0.8 * hand.size
    for pose in poses:
        for k in pose.keypoints:
            if k.part in ("leftWrist", "rightWrist") and k.score >= MIN_WRIST_SCORE:
                d = math.hypot(k.x - wrist[0], k.y - wrist[1])
                if d < best_d:
                    best, best_d = k.part, d
    if best is not None:
        return LEFT_HAND if best == "leftWrist" else RIGHT_HAND
    return RIGHT_HAND if hand.handedness >= 0.5 else LEFT_HAND


# --- shape prior ---------------------------------------------------------------------------


def hand_scale(landmarks: np.ndarray) -> float:
    """Physical hand size in pixels: the larger of wrist->middle base and a palm-width estimate.

    Either one alone shrinks when the hand turns (foreshortening); the palm is about 0.8 of
    its length wide, so the larger of the two is a steadier scale for finger widths.
    """
    lm = landmarks[:, :2]
    length = float(np.hypot(*(lm[9] - lm[0])))
    width = float(np.hypot(*(lm[5] - lm[17]))) / 0.8
    return max(length, width, 1.0)


def finger_shapes(
    landmarks: np.ndarray,
    shape: tuple[int, int],
    offset: tuple[int, int] = (0, 0),
    widen: float = 1.0,
    per_finger: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rasterise the hand prior into arrays of ``shape`` whose (0, 0) is image ``offset`` (x, y).

    Returns (fingers, palm, bones): fingers = one capsule chain per finger, widths from
    FINGER_WIDTH x hand scale x ``widen``; palm = the polygon of the palm landmarks grown by
    a sixth of a finger width each side; bones = thin lines along the finger bones and an
    eroded palm, pixels that are certainly hand.  ``per_finger``, when given, receives
    (capsules, bone line) of each finger, thumb first.
    """
    scale = hand_scale(landmarks)
    pts = landmarks[:, :2] - np.asarray(offset, np.float64)
    fingers = np.zeros(shape, np.uint8)
    bones = np.zeros(shape, np.uint8)
    shift = 4  # sub-pixel precision for OpenCV drawing
    f = float(1 << shift)

    def p(v: np.ndarray) -> tuple[int, int]:
        return int(round(v[0] * f)), int(round(v[1] * f))

    for chain, rel in zip(FINGERS, FINGER_WIDTH, strict=True):
        width = rel * scale * widen
        joints = [pts[i] for i in chain]
        # extend past the tip landmark along the last bone
        d = joints[-1] - joints[-2]
        n = float(np.hypot(*d)) or 1.0
        tip = joints[-1] + d / n * TIP_EXTRA * width
        joints = [*joints[:-1], tip]
        one = np.zeros(shape, np.uint8)
        line = np.zeros(shape, np.uint8)
        for k, (a, b) in enumerate(zip(joints[:-1], joints[1:], strict=True)):
            wk = width * TAPER[k]
            t = max(1, int(round(wk)))
            cv2.line(one, p(a), p(b), 1, t, cv2.LINE_8, shift)
            cv2.circle(one, p(a), int(round(wk / 2 * f)), 1, -1, cv2.LINE_8, shift)
            cv2.circle(one, p(b), int(round(wk / 2 * f)), 1, -1, cv2.LINE_8, shift)
            cv2.line(bones, p(a), p(b), 1, max(1, int(round(wk * 0.3))), cv2.LINE_8, shift)
            cv2.line(line, p(a), p(b), 1, 1, cv2.LINE_8, shift)
        fingers |= one
        if per_finger is not None:
            per_finger.append((one.astype(bool), line.astype(bool)))
    palm = np.zeros(shape, np.uint8)
    hull = cv2.convexHull(np.round(pts[list(PALM_IDS)] * f).astype(np.int32))
    cv2.fillConvexPoly(palm, hull, 1, cv2.LINE_8, shift)
    grow = max(1, int(round(FINGER_WIDTH[1] * scale * widen / 3)))
    palm_core = cv2.erode(palm, _disk(grow))
    palm = cv2.dilate(palm, _disk(grow))
    bones |= palm_core
    # fingers' bases sit inside the palm; the bone lines there are certain too
    return fingers.astype(bool), palm.astype(bool), bones.astype(bool)


def _disk(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


# --- snapping and writing ------------------------------------------------------------------


def apply_hand(
    rgb: np.ndarray, mask: np.ndarray, parts: np.ndarray, hand: Hand, side: int, soft: bool = False
) -> tuple[int, int]:
    """Snap one hand's prior to the photo and write it into ``mask``/``parts`` in place.

    ``soft``: the mask is a 0..255 alpha; the outline this stage changed is then feathered
    over about a pixel, like the soft edges around it, instead of a hard step.

    Returns (pixels added to the person, pixels removed from it).
    """
    h, w = mask.shape
    scale = hand_scale(hand.landmarks)
    band = max(3, int(round(0.12 * scale)))
    lm = hand.landmarks[:, :2]
    pad = int(round(0.5 * scale)) + band
    x0 = max(0, int(math.floor(lm[:, 0].min())) - pad)
    y0 = max(0, int(math.floor(lm[:, 1].min())) - pad)
    x1 = min(w, int(math.ceil(lm[:, 0].max())) + pad + 1)
    y1 = min(h, int(math.ceil(lm[:, 1].max())) + pad + 1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return 0, 0
    shape = (y1 - y0, x1 - x0)
    each: list[tuple[np.ndarray, np.ndarray]] = []
    fingers, palm, bones = finger_shapes(hand.landmarks, shape, (x0, y0), per_finger=each)
    prior = fingers | palm
    person = mask[y0:y1, x0:x1] >= 128
    # one distance map replaces several large dilations (cost independent of the radius)
    dist = _distance_outside(prior)
    hand_zone = dist <= band
    # the hand's convex region: where BodyPix may have filled the gaps between fingers
    hull = np.zeros(shape, np.uint8)
    contours, _ = cv2.findContours(prior.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.concatenate(contours)), 1)
    zone = hand_zone | hull.astype(bool)

    margin = max(2, int(round(SNAP_MARGIN * scale)))
    # A finger the incoming mask already has (its bone line beyond the palm is >= 90%
    # person) keeps the mask's outline: after a good edge stage that outline is finer than
    # this snap, which runs at reduced resolution.  Only missing fingers (and a missing
    # palm) are added, and next to present fingers nothing within the snap's own pixel
    # size is removed.
    missing = np.zeros(shape, bool)
    for capsule, line in each:
        line = line & ~palm
        if line.any() and person[line].mean() < PRESENT_COVERAGE:
            missing |= capsule
    core = bones & palm
    if core.any() and person[core].mean() < PRESENT_COVERAGE:
        missing |= palm
    missing = _distance_outside(missing) <= margin if missing.any() else missing
    sub_mask = mask[y0:y1, x0:x1]
    sub_parts = parts[y0:y1, x0:x1]
    if not missing.any():
        # the whole hand is there: unless the gaps between the fingers are filled in, the
        # mask is left as it is (and the snap, most of this stage's cost, is skipped)
        filled = person & hull.astype(bool) & ~palm & (dist > margin)
        if filled.sum() <= max(8, GAP_FILL * prior.sum()):
            sub_parts[prior & person] = side
            return 0, 0

    fg = snap_scaled(rgb[y0:y1, x0:x1], prior, bones, person, zone)
    if fg is None:
        return 0, 0
    # the hand: what the snap calls foreground close to the prior, connected to the bones
    # outward the outline may move by the margin; between the fingers (inside the hull) by
    # a pixel or two only: there a skin-coloured background (a red book) would otherwise
    # bridge a narrow gap, and the drawn finger widths are calibrated to be about right
    inner = max(1.0, SNAP_INNER_MARGIN * scale)
    near_prior = (dist <= margin) & (~hull.astype(bool) | (dist <= inner))
    new_hand = _connected_to(fg & near_prior, bones)
    # sanity: the snapped hand must cover most of the bones and stay near the prior's size;
    # otherwise (a glove on a matching background, motion blur) trust the drawn prior
    if new_hand[bones].mean() < 0.6 or new_hand.sum() > 1.8 * prior.sum():
        new_hand = prior.copy()
    # between the fingers: inside the hand's convex region, outside the palm and the snapped
    # fingers, and background by the snap's colour models.  Only there is anything removed:
    # BodyPix's halo elsewhere is the edge stage's business, and a fist or a hand in front
    # of the body has no gaps (removals there only ever made the masks worse).
    tol = max(1, math.ceil(math.sqrt(shape[0] * shape[1] / SNAP_MAX_PIXELS)))
    away = _distance_outside(new_hand) > tol if new_hand.any() else np.ones(shape, bool)
    remove = person & hull.astype(bool) & ~palm & ~new_hand & ~fg & (away | missing)
    # a gap is background seen between the fingers, so it opens onto the background
    # outside the hand; a region enclosed by hand and person (an object held in the hand)
    # is left alone
    if remove.any():
        remove = _connected_to(remove | (~person & ~hull.astype(bool)), ~person & ~hull.astype(bool)) & remove
    add = new_hand & ~person & missing
    sub_mask[add] = 255
    sub_mask[remove] = 0
    if soft and (add.any() or remove.any()):
        changed = cv2.dilate((add | remove).astype(np.uint8), _disk(2)).astype(bool)
        hard = np.where(sub_mask >= 128, np.float32(255), np.float32(0))
        feathered = cv2.GaussianBlur(hard, (5, 5), 0.8)
        sub_mask[changed] = np.round(feathered[changed]).astype(np.uint8)
    # the snapped hand is the hand part (it never reaches the arm: the palm ends at the wrist)
    sub_parts[new_hand] = side
    return int(add.sum()), int(remove.sum())


def _distance_outside(region: np.ndarray) -> np.ndarray:
    """Euclidean distance (pixels) from each pixel to ``region``; 0 inside it."""
    return cv2.distanceTransform(np.where(region, 0, 1).astype(np.uint8), cv2.DIST_L2, 5)


def _connected_to(region: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The connected components of ``region`` that contain a seed pixel."""
    n, labels = cv2.connectedComponents(region.astype(np.uint8), connectivity=8)
    if n <= 1:
        return region
    keep = np.zeros(n, bool)
    keep[np.unique(labels[seeds & region])] = True
    keep[0] = False
    return keep[labels]


def snap_scaled(
    rgb: np.ndarray,
    prior: np.ndarray,
    bones: np.ndarray,
    person: np.ndarray,
    zone: np.ndarray,
    max_pixels: int | None = None,
) -> np.ndarray | None:
    """``snap`` on a copy shrunk to at most ``max_pixels``, its answer brought back to full size.

    GrabCut's cost grows with the pixel count (a 300x300 hand crop takes about 0.3 s here),
    but finger outlines need far fewer pixels than a close-up photo has.  The low-resolution
    answer is upsampled with a guided filter steered by the full-resolution photo, which puts
    the edge back on the photo's own edge rather than on a blocky upscaled one.
    """
    max_pixels = max_pixels or SNAP_MAX_PIXELS
    h, w = prior.shape
    f = math.sqrt(max_pixels / float(h * w))
    if f >= 1.0:
        return snap(rgb, prior, bones, person, zone)
    size = (max(8, int(round(w * f))), max(8, int(round(h * f))))

    def small(a: np.ndarray) -> np.ndarray:
        return cv2.resize(a.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)

    # bones must survive the shrink: thicken them by the lost pixels first
    k = int(math.ceil(1.0 / f))
    bones_s = cv2.resize(
        cv2.dilate(bones.astype(np.uint8), _disk(max(0, k // 2))), size, interpolation=cv2.INTER_NEAREST
    ).astype(bool) & small(bones | prior)
    fg = snap(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), small(prior), bones_s, small(person), small(zone))
    if fg is None:
        return None
    up = cv2.resize(fg.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    return guided.guided_filter(grey, up, radius=k + 1, eps=GUIDED_EPS) >= 0.5


def snap(
    rgb: np.ndarray,
    prior: np.ndarray,
    bones: np.ndarray,
    person: np.ndarray,
    zone: np.ndarray,
    iterations: int | None = None,
) -> np.ndarray | None:
    """GrabCut person/background labels around one hand, seeded by the hand prior and BodyPix.

    Seeds: sure foreground = the bones (and BodyPix's person well away from the hand, so that
    a shirt or face seen between the fingers keeps its person colour); sure background =
    BodyPix's background outside the hand's zone; the rest is "probably" foreground where
    the prior has fingers and "probably" background elsewhere.  Returns a boolean
    foreground map, or None when the seeds give GrabCut nothing to learn from.
    """
    iterations = iterations or SNAP_ITERATIONS
    gc = np.full(prior.shape, cv2.GC_PR_BGD, np.uint8)
    gc[prior] = cv2.GC_PR_FGD
    outside = ~zone
    erode_r = max(2, int(round(0.03 * max(prior.shape))))
    person_far = cv2.erode(person.astype(np.uint8), _disk(erode_r)).astype(bool) & outside
    background_far = cv2.erode((~person).astype(np.uint8), _disk(erode_r)).astype(bool) & outside
    gc[person_far] = cv2.GC_FGD
    gc[background_far] = cv2.GC_BGD
    # what remains outside the zone keeps BodyPix's call as "probably"
    rest = outside & ~person_far & ~background_far
    gc[rest & person] = cv2.GC_PR_FGD
    gc[bones] = cv2.GC_FGD
    if not (gc == cv2.GC_BGD).any() and not (gc == cv2.GC_PR_BGD).any():
        return None
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    # GrabCut seeds its colour models from OpenCV's per-thread generator: fix it, so a hand
    # gives the same fingers whatever ran before in this thread (batch order, Ray actors).
    cv2.setRNGSeed(0)
    try:
        cv2.grabCut(bgr, gc, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return None
    return (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
