"""Held objects: decided per connected object, wholly in the person mask or wholly out.

A helmet held against the chest, a ball, a bouquet: the foreground networks count such an
object as person in places and as background in others, so the mask tears it (the astronaut
of ``make demo``: the visor's lower half in, its rim out, ragged holes), and BodyPix paints it
as face.  This stage finds such objects and settles each one as a whole, by
``Settings.include_held``: True puts every pixel of it in the person mask, False takes every
pixel out; either way its pixels get no body part (255 in the part map), so the part layers
stay clean.

Finding the object, and why this way:

1. **Seed** (the gate, about 1 ms at any photo size): a blob BodyPix labels face (ids 0, 1)
   with no face keypoint (nose, eyes, ears) of any decoded pose scoring ``SEED_KEYPOINT_SCORE``
   in or near it, while some pose has a confident face keypoint elsewhere.  BodyPix's part
   head and its keypoint heads disagree there: a real face, even one whose person's pose is
   weak, fires the face keypoint heatmaps the poses are decoded from (the astronaut's face:
   0.9996; her helmet: 0.02).  This is the cheap, decisive signal that is already computed;
   RVM's and Selfie's disagreement with BodyPix (the other signal) exists only inside the edge
   stage, and recomputing RVM on every photo would cost ~150 ms at 2 MP.  Blobs that hold a
   confident keypoint of any kind, or sit where a pose's head should be (just above its
   shoulders), are body, not objects, and are left alone (a head seen from behind).  Without
   a confident face anywhere (a face blurred for privacy, as in the P3M portraits, or turned
   away) face labels cannot be judged and nothing is done.
2. **Whole object**: OpenCV's GrabCut on a crop around the seed, on a copy of at most
   ``WORK_PIXELS``.  Colour models separate the object (helmet black and white) from the suit
   and the backdrop, which BodyPix's coarse labels and the peers' edges cannot: the peers see
   the object in pieces.  Seeds: the seed's convex hull is sure object (the hull closes the
   holes BodyPix labels torso or leg inside it); person pixels away from the hull are sure
   not-object; Selfie (one 256 x 256 pass, ~7 ms), which sees a held object as foreground,
   marks the probable object, and what neither Selfie nor the mask holds is sure background.
   The object is GrabCut's foreground connected to the seed, holes filled.
3. **Decision**, per connected object: only a torn one (``TORN_MIN`` to ``1 - TORN_MIN`` of it
   in the mask) is decided, all its pixels in (``include_held``) or all out, at the photo's
   full resolution (the crop's decision scaled up with a linear filter, cut at one half).  An
   object the networks give whole, or not at all, is left as they give it: an untorn face blob
   without keypoints is as often a face BodyPix cannot read as an object.

Photos without a seed pay for one nearest-neighbour shrink of the part map and one
connected-components pass on it (0.8 ms median at 2 MP on the loaded 2-core machine;
docs/evaluation.md, "Held objects").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from ..result import Pose
from ..runtime.sessions import RuntimeOptions
from .peers import selfie_probability
from .scale import budget_shape, diagonal, working_copy

FACE_PARTS = (0, 1)  # left_face, right_face
FACE_KEYPOINTS = ("nose", "leftEye", "rightEye", "leftEar", "rightEar")
# A face blob with a face keypoint of at least this score within SEED_NEAR of it is a face.
SEED_KEYPOINT_SCORE = 0.3
# Seeds smaller than this share of the photo are ignored (label noise at part borders).
SEED_MIN_AREA = 0.002
# "Near": this share of the photo's diagonal.
SEED_NEAR = 0.02
# A blob holding a keypoint of any kind at this score is body (a hand on the face, a head from behind).
BODY_KEYPOINT_SCORE = 0.5
# The gate's grid and GrabCut's working copy.
# The part map, or a function that makes it (``decide_held``).
PartMap = np.ndarray | Callable[[], np.ndarray]
GATE_PIXELS = 65_536
WORK_PIXELS = 120_000
# GrabCut iterations: on the astronaut 1 to 8 change at most 0.5 % of the object; each costs
# about as much as the rest of the stage.
GRABCUT_ITERATIONS = 3
# Selfie levels: above SELFIE_OBJECT probable object, below SELFIE_BACKGROUND (and off the mask) background.
SELFIE_OBJECT, SELFIE_BACKGROUND = 0.5, 0.2
# An object is torn (and decided) when at least this share of it is in the mask and as much out.
TORN_MIN = 0.1
# Person pixels closer than this share of the diagonal to the seed's hull may still be object.
BODY_MARGIN = 0.02


def _shrink(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if a.shape[:2] == size:
        return a
    return cv2.resize(a, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def gate_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """The grid (h, w) on which ``find_seeds`` reads the part map of a photo of ``shape``."""
    return budget_shape(shape, GATE_PIXELS)


def find_seeds(parts: np.ndarray, poses: list[Pose], shape: tuple[int, int]) -> np.ndarray | None:
    """uint8 mask on ``parts``' grid: face-labelled blobs no face keypoint explains; None if none.

    ``parts``: the part map of a photo of ``shape`` (H, W), shrunk by nearest neighbour to
    ``gate_shape(shape)``.
    """
    h, w = size = parts.shape[:2]
    sy, sx = h / shape[0], w / shape[1]
    face = cv2.inRange(parts, FACE_PARTS[0], FACE_PARTS[-1])
    n, labels, stats, _ = cv2.connectedComponentsWithStats(face, connectivity=8)
    big = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= SEED_MIN_AREA * h * w]
    if not big:
        return None
    near = max(1, round(SEED_NEAR * diagonal((h, w))))
    faces, bodies, shoulders = [], [], []
    for pose in poses:
        kp = {k.part: k for k in pose.keypoints}
        for k in pose.keypoints:
            xy = (min(w - 1, max(0, round(k.x * sx))), min(h - 1, max(0, round(k.y * sy))))
            if k.part in FACE_KEYPOINTS and k.score >= SEED_KEYPOINT_SCORE:
                faces.append(xy)
            if k.score >= BODY_KEYPOINT_SCORE:
                bodies.append(xy)
        ls, rs = kp.get("leftShoulder"), kp.get("rightShoulder")
        if ls and rs and min(ls.score, rs.score) >= SEED_KEYPOINT_SCORE:
            shoulders.append(((ls.x + rs.x) * 0.5 * sx, (ls.y + rs.y) * 0.5 * sy,
                              float(np.hypot((ls.x - rs.x) * sx, (ls.y - rs.y) * sy))))
    if not faces:
        return None  # no face found anywhere (hidden or blurred): face labels cannot be judged
    seeds = np.zeros(size, np.uint8)
    for i in big:
        x, y, bw, bh = stats[i, :4]
        x0, y0, x1, y1 = max(0, x - near), max(0, y - near), min(w, x + bw + near), min(h, y + bh + near)
        blob = (labels[y0:y1, x0:x1] == i).astype(np.uint8)
        grown = cv2.dilate(blob, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * near + 1, 2 * near + 1)))
        if any(x0 <= px < x1 and y0 <= py < y1 and grown[py - y0, px - x0] for px, py in faces):
            continue  # a face
        if any(x0 <= px < x1 and y0 <= py < y1 and blob[py - y0, px - x0] for px, py in bodies):
            continue  # a confident keypoint inside: body
        cx, cy = x + bw / 2.0, y + bh / 2.0
        # Where a head would be: above the shoulder line, within a shoulder width of its middle.
        if any(cy < my and np.hypot(cx - mx, cy - my) < width for mx, my, width in shoulders):
            continue
        seeds[labels == i] = 1
    return seeds if seeds.any() else None


def _hull(seeds: np.ndarray) -> np.ndarray:
    hull = np.zeros_like(seeds)
    contours, _ = cv2.findContours(seeds, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    for c in contours:
        cv2.fillConvexPoly(hull, cv2.convexHull(c), 1)
    return hull


def object_mask(small: np.ndarray, mask_small: np.ndarray, seeds: np.ndarray,
                runtime: RuntimeOptions | None) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The whole held object around ``seeds`` on ``small``'s grid: (float32 0/1 crop, (x0, y0, x1, y1))."""
    h, w = seeds.shape
    hull = _hull(seeds)
    ys, xs = np.nonzero(hull)
    bx0, bx1, by0, by1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    # The object may reach beyond the seed by the seed's own size (the astronaut's rim).
    margin = max(bx1 - bx0, by1 - by0)
    x0, x1, y0, y1 = max(0, bx0 - margin), min(w, bx1 + margin), max(0, by0 - margin), min(h, by1 + margin)
    crop = np.s_[y0:y1, x0:x1]
    selfie = selfie_probability(small, runtime)[crop]
    person = mask_small[crop] >= 128
    seed = hull[crop] > 0
    r = max(1, round(BODY_MARGIN * diagonal((h, w))))
    close = cv2.dilate(seed.view(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) > 0
    gc = np.full(seed.shape, cv2.GC_PR_BGD, np.uint8)
    gc[selfie > SELFIE_OBJECT] = cv2.GC_PR_FGD
    gc[person & ~close] = cv2.GC_BGD
    gc[(selfie < SELFIE_BACKGROUND) & ~person] = cv2.GC_BGD
    core = cv2.erode(seed.view(np.uint8), np.ones((3, 3), np.uint8)) > 0
    gc[core] = cv2.GC_FGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    # GrabCut seeds its colour models from OpenCV's process-wide generator: fix it, so a photo
    # gives the same object whatever ran before.
    cv2.setRNGSeed(0)
    cv2.grabCut(np.ascontiguousarray(small[crop][..., ::-1]), gc, None, bgd, fgd, GRABCUT_ITERATIONS,
                cv2.GC_INIT_WITH_MASK)
    fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).view(np.uint8)
    _, pieces = cv2.connectedComponents(fg, connectivity=8)
    keep = np.unique(pieces[core])
    obj = np.isin(pieces, keep[keep > 0])
    # Holes inside the object (a reflection GrabCut gave to the backdrop) are object too.
    filled = obj.astype(np.uint8)
    contours, _ = cv2.findContours(filled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(filled, contours, -1, 1, cv2.FILLED)
    return filled.astype(np.float32), (x0, y0, x1, y1)


def decide_held(
    rgb: np.ndarray, mask: np.ndarray, part_map: PartMap, poses: list[Pose], include: bool,
    runtime: RuntimeOptions | None = None, gate: np.ndarray | None = None,
) -> tuple[np.ndarray, PartMap, list[dict[str, Any]]]:
    """(mask, part_map, info): each held object wholly in (``include``) or wholly out, with no part.

    ``mask``: the person mask (0/255 or soft 0..255); ``part_map``: 0..23, 255 off the person,
    or a function that makes it.  ``gate``: the part map shrunk to ``gate_shape`` by nearest
    neighbour, when the caller has it without making the map: then the map is made only for a
    photo with a torn object (``segment`` answers GIMP's Select Person before it is made).
    ``info``: per object its box in photo pixels, its pixel count and whether it was included.
    Photos without a held object come back as the same ``mask`` and ``part_map``.
    """
    H, W = mask.shape
    if gate is None:
        gate = _shrink(part_map() if callable(part_map) else part_map, gate_shape((H, W)))
    seeds = find_seeds(gate, poses, (H, W))
    if seeds is None:
        return mask, part_map, []
    small = working_copy(rgb, WORK_PIXELS)
    h, w = small.shape[:2]
    seeds = _shrink(seeds, (h, w))
    mask_small = _shrink(mask, (h, w))
    obj, (x0, y0, x1, y1) = object_mask(small, mask_small, seeds, runtime)
    # Each connected object on its own: only a torn one is decided; one the networks gave
    # whole (or not at all) is left as they gave it.
    n, pieces = cv2.connectedComponents(obj.astype(np.uint8), connectivity=8)
    person = mask_small[y0:y1, x0:x1] >= 128
    torn = [i for i in range(1, n) if TORN_MIN <= float(person[pieces == i].mean()) <= 1.0 - TORN_MIN]
    if not torn:
        return mask, part_map, []
    # The crop's decision at full resolution: its box in photo pixels, each object's 0/1 map
    # scaled with a linear filter and cut at one half (a smooth outline, not working-grid steps).
    X0, Y0, X1, Y1 = (x0 * W) // w, (y0 * H) // h, -(-x1 * W // w), -(-y1 * H // h)
    mask, part_map = mask.copy(), (part_map() if callable(part_map) else part_map).copy()
    info = []
    for i in torn:
        piece = (pieces == i).astype(np.float32)
        big = cv2.resize(piece, (X1 - X0, Y1 - Y0), interpolation=cv2.INTER_LINEAR) >= 0.5
        if not big.any():
            continue
        mask[Y0:Y1, X0:X1][big] = 255 if include else 0
        part_map[Y0:Y1, X0:X1][big] = 255
        ys, xs = np.nonzero(big)
        info.append({"box": [X0 + int(xs.min()), Y0 + int(ys.min()), int(xs.max() - xs.min()) + 1,
                             int(ys.max() - ys.min()) + 1], "pixels": int(big.sum()), "included": include})
    return mask, part_map, info
