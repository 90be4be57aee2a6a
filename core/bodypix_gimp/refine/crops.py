"""Look again: a person BodyPix finds with a confident pose is in the mask, however small.

The fused mask follows RVM (weight 0.7), and RVM attends to the main subject; BodyPix itself
sees a person 100 px tall at internal resolution "medium" on a coarse grid.  So in a crowd
or a wide shot, people the pose decoder is sure of can be missing from the mask.

For every confident pose (``LOOK_POSE_SCORE``, at least ``LOOK_MIN_KEYPOINTS`` keypoints of
``LOOK_KEYPOINT_SCORE``) the stage samples the mask along the pose's skeleton.  Where the
skeleton is mostly covered (``LOOK_COVERED``) nothing more happens: on a photo where every
confident pose has its mask the stage costs a few hundred point reads.  A lone passer-by much
smaller than the people in the mask is left out too (``uncovered_poses``).  Otherwise
BodyPix looks again at a crop around the pose, with the person enlarged to about
``LOOK_INPUT`` network pixels (internal resolution up to 2.0).  What it confirms there is
added: its probability above ``LOOK_THRESHOLD``, carried onto the crop's colour edges by
the guided filter, in the pieces that touch the skeleton and within ``LOOK_REACH`` torso
lengths of it (so background next to a small person stays out).  If the sharper look still
does not cover the skeleton, nothing is added: a confident pose alone is no person.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from .edges import to_mask
from .fusion import SKELETON, torso_length
from .guided import guided_filter

# Which poses are looked at again: pose score, keypoint score, keypoints needed.
LOOK_POSE_SCORE, LOOK_KEYPOINT_SCORE, LOOK_MIN_KEYPOINTS = 0.3, 0.3, 5
# A skeleton with at least this share of its samples in the mask has its person already.
LOOK_COVERED = 0.5
# Subjects, not bystanders (``uncovered_poses``): size against the largest person in the mask;
# a group: torso lengths within a factor LOOK_SIMILAR, centres within LOOK_GROUP torso lengths.
LOOK_PEER, LOOK_SIMILAR, LOOK_GROUP = 0.75, 2.0, 4.0
# The crop: margin around the keypoints (torso lengths), the person's size in network pixels.
LOOK_MARGIN, LOOK_INPUT = 0.8, 384
# What the sharper look adds: BodyPix level, distance from the skeleton (torso lengths).
LOOK_THRESHOLD, LOOK_REACH = 0.5, 1.0
# The sharper look must cover at least this share of the skeleton to count as a confirmation.
LOOK_CONFIRMED = 0.6
# Samples per skeleton segment.
SAMPLES = 8

# crop (HxWx3 uint8), internal resolution -> BodyPix person probability on the crop (HxW float32)
BodyPixOnCrop = Callable[[np.ndarray, float], np.ndarray]


def _keypoints(pose: object) -> dict[str, tuple[float, float]]:
    return {k.part: (k.x, k.y) for k in pose.keypoints if k.score >= LOOK_KEYPOINT_SCORE}  # type: ignore[attr-defined]


def skeleton_points(kp: dict[str, tuple[float, float]]) -> np.ndarray:
    """(N, 2) x, y points along the skeleton's segments between confident keypoints, and the keypoints."""
    pts = [np.array(list(kp.values()), np.float64)]
    t = np.linspace(0.0, 1.0, SAMPLES)[:, None]
    for a, b in SKELETON:
        if a in kp and b in kp:
            pa, pb = np.array(kp[a]), np.array(kp[b])
            pts.append(pa + t * (pb - pa))
    return np.concatenate(pts)


def coverage(mask: np.ndarray, points: np.ndarray) -> float:
    """Share of ``points`` (x, y in ``mask``'s pixels) where ``mask`` >= 128; points outside count as covered."""
    h, w = mask.shape[:2]
    xs, ys = np.round(points[:, 0]).astype(np.intp), np.round(points[:, 1]).astype(np.intp)
    inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    if not inside.any():
        return 1.0
    return float((mask[ys[inside], xs[inside]] >= 128).mean())


def uncovered_poses(mask: np.ndarray, poses: Sequence[object]) -> list[tuple[dict[str, tuple[float, float]], float]]:
    """(keypoints, torso length) of each confident pose whose skeleton is mostly outside ``mask``
    and who is one of the photo's subjects, not a bystander.

    A photo's reference masks (human_seg_300, CIHP) hold its subjects: a passer-by far behind
    them is background there, and BodyPix is sure of passers-by too.  So an uncovered person is
    looked at again when no confident person has mask (the mask missed the subject), when they
    are at least LOOK_PEER times the size of the largest person in the mask (a peer of the
    subjects), or when they stand in a group of uncovered people of a similar size (a crowd, or
    a group the peers dropped): one lone person much smaller than the subjects stays out.
    """
    covered, uncovered = [], []
    for pose in poses:
        if pose.score < LOOK_POSE_SCORE:  # type: ignore[attr-defined]
            continue
        kp = _keypoints(pose)
        size = torso_length(kp)
        if not size or len(kp) < LOOK_MIN_KEYPOINTS:
            continue
        if coverage(mask, skeleton_points(kp)) < LOOK_COVERED:
            uncovered.append((kp, size))
        else:
            covered.append(size)
    largest = max(covered, default=0.0)
    centres = [np.mean(list(kp.values()), axis=0) for kp, _ in uncovered]

    def in_group(i: int) -> bool:
        size = uncovered[i][1]
        return any(j != i and 1 / LOOK_SIMILAR <= s / size <= LOOK_SIMILAR
                   and float(np.hypot(*(centres[j] - centres[i]))) <= LOOK_GROUP * size
                   for j, (_, s) in enumerate(uncovered))

    return [(kp, size) for i, (kp, size) in enumerate(uncovered)
            if size >= LOOK_PEER * largest or in_group(i)]


def look_again(
    rgb: np.ndarray, mask: np.ndarray, poses: Sequence[object], bodypix: BodyPixOnCrop, soft: bool = False
) -> tuple[np.ndarray, dict[str, int]]:
    """``mask`` with the people of confident poses it misses added where BodyPix, looking closer, confirms them.

    ``rgb``: the photo; ``mask``: the full-resolution uint8 mask (0/255, or a 0..255 alpha with
    ``soft``); ``poses``: BodyPix's poses in photo pixels; ``bodypix(crop, internal_resolution)``:
    BodyPix's person probability on a crop.  Returns the mask (the same array when nothing was
    added) and counts for ``Result.info``.
    """
    todo = uncovered_poses(mask, poses)
    info = {"looked_at": len(todo), "added": 0}
    if not todo:
        return mask, info
    h, w = mask.shape[:2]
    out = mask.copy()
    for kp, size in todo:
        pts = skeleton_points(kp)
        margin = LOOK_MARGIN * size
        x0 = max(0, int(np.floor(pts[:, 0].min() - margin)))
        y0 = max(0, int(np.floor(pts[:, 1].min() - margin)))
        x1 = min(w, int(np.ceil(pts[:, 0].max() + margin)) + 1)
        y1 = min(h, int(np.ceil(pts[:, 1].max() + margin)) + 1)
        if x1 - x0 < 8 or y1 - y0 < 8:
            continue
        crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
        resolution = float(np.clip(LOOK_INPUT / max(y1 - y0, x1 - x0), 0.25, 2.0))
        prob = bodypix(crop, resolution)
        radius = max(2, round(np.hypot(*prob.shape) * 0.02))
        prob = guided_filter(crop.astype(np.float32) * np.float32(1 / 255), prob, radius, 1e-3)
        local = pts - (x0, y0)
        # Distance to the skeleton, in torso lengths, on the crop.
        canvas = np.full(prob.shape, 255, np.uint8)
        for a, b in SKELETON:
            if a in kp and b in kp:
                pa = (round(kp[a][0] - x0), round(kp[a][1] - y0))
                pb = (round(kp[b][0] - x0), round(kp[b][1] - y0))
                cv2.line(canvas, pa, pb, 0, 1)
        for x, y in local[: len(kp)]:
            cv2.circle(canvas, (round(x), round(y)), 1, 0, -1)
        near = cv2.distanceTransform(canvas, cv2.DIST_L2, 3) <= LOOK_REACH * size
        yes = ((prob > LOOK_THRESHOLD) & near).astype(np.uint8)
        # Only the pieces the skeleton runs through.
        n, pieces = cv2.connectedComponents(yes, connectivity=8)
        lx = np.clip(np.round(local[:, 0]).astype(np.intp), 0, prob.shape[1] - 1)
        ly = np.clip(np.round(local[:, 1]).astype(np.intp), 0, prob.shape[0] - 1)
        touched = np.unique(pieces[ly, lx])
        keep = np.isin(pieces, touched[touched > 0])
        if (keep[ly, lx]).mean() < LOOK_CONFIRMED:
            continue
        # With ``soft``, the soft fringe just around the kept pieces comes too (below 128).
        fringe = cv2.dilate(keep.view(np.uint8), np.ones((5, 5), np.uint8)) > 0
        p = np.where(keep, prob, np.where(fringe, np.minimum(prob, LOOK_THRESHOLD), 0.0))
        add = to_mask(p, LOOK_THRESHOLD, soft)
        np.maximum(out[y0:y1, x0:x1], add, out=out[y0:y1, x0:x1])
        info["added"] += 1
    return out, info
