"""Multi-person pose decoding, a faithful port of body-pix 2.x ``decodeMultiplePoses``.

Follows ``multi_person/decode_multiple_poses.ts``, ``decode_pose.ts``,
``build_part_with_score_queue.ts``, ``max_heap.ts`` and ``util.ts`` step by step:

1. Root candidates: every (cell, keypoint) whose heatmap score is >= ``score_threshold``
   and not beaten by any cell in its 3x3 window (``kLocalMaximumRadius = 1``).  Found with
   numpy shifts instead of body-pix's per-cell loop.
2. Candidates are dequeued in max-heap order.  The heap itself is ported as is (why by
   hand: ``heapq`` breaks score ties differently, and the order of equal-score roots
   decides which of two overlapping poses survives).
3. A root within ``nms_radius`` of the same keypoint of an earlier pose is skipped;
   otherwise the pose is grown along ``POSE_CHAIN`` (backward displacements towards the
   nose first, then forward ones), each displaced point snapped to its cell and refined
   twice with the short offsets.
4. Pose score = sum of the scores of keypoints not within ``nms_radius`` of the same
   keypoint of an earlier pose, divided by 17.

Coordinates are network-input pixels, (y, x), computed in float64 like JavaScript numbers;
:func:`to_photo` does ``scaleAndFlipPoses`` (via ``decode.grid_to_image``).
The whole decode is a few hundred scalar steps (at most ``max_detections`` x 16 edges), so
plain Python floats are faster here than numpy calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..result import KEYPOINT_NAMES, POSE_CHAIN, Keypoint, Pose
from .decode import grid_to_image, grid_to_work
from .model import BodyPixOutput, Geometry

NUM_KEYPOINTS = len(KEYPOINT_NAMES)
LOCAL_MAXIMUM_RADIUS = 1  # body-pix kLocalMaximumRadius
OFFSET_REFINE_STEPS = 2  # body-pix traverseToTargetKeypoint default offsetRefineStep
_PARENT = [KEYPOINT_NAMES.index(p) for p, _ in POSE_CHAIN]  # childToParentEdges
_CHILD = [KEYPOINT_NAMES.index(c) for _, c in POSE_CHAIN]  # parentToChildEdges


@dataclass(frozen=True)
class RawPose:
    """One decoded pose at the network input: ``yx`` (17x2 float64), ``scores`` (17,), ``score``."""

    score: float
    scores: np.ndarray
    yx: np.ndarray


def local_maximum_candidates(scores: np.ndarray, score_threshold: float,
                             radius: int = LOCAL_MAXIMUM_RADIUS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, x, keypoint) of every root candidate, in body-pix's enqueue order (y, then x, then keypoint).

    A candidate scores >= ``score_threshold`` and no cell of its (2r+1)^2 window, clipped at
    the border, scores strictly higher (``scoreIsMaximumInLocalWindow``).
    """
    h, w, _ = scores.shape
    padded = np.pad(scores, ((radius, radius), (radius, radius), (0, 0)), constant_values=-np.inf)
    window_max = np.full_like(scores, -np.inf)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            np.maximum(window_max, padded[dy:dy + h, dx:dx + w], out=window_max)
    keep = (scores >= score_threshold) & (scores >= window_max)
    return np.nonzero(keep)  # row-major over (y, x, k): the reference's loop order


class MaxHeap:
    """body-pix ``MaxHeap`` (1-based-style sink with ``2k`` children), ported for identical tie order."""

    def __init__(self) -> None:
        self.items: list[tuple[float, int, int, int]] = []  # (score, y, x, keypoint)

    def enqueue(self, item: tuple[float, int, int, int]) -> None:
        q = self.items
        q.append(item)
        k = len(q) - 1
        while k > 0 and q[k // 2][0] < q[k][0]:
            q[k], q[k // 2] = q[k // 2], q[k]
            k //= 2

    def dequeue(self) -> tuple[float, int, int, int]:
        q = self.items
        top = q[0]
        q[0], q[-1] = q[-1], q[0]
        q.pop()
        n = len(q) - 1  # body-pix numberOfElements (index of the last element)
        k = 0
        while 2 * k <= n:
            j = 2 * k
            if j < n and q[j][0] < q[j + 1][0]:
                j += 1
            if not q[k][0] < q[j][0]:
                break
            q[k], q[j] = q[j], q[k]
            k = j
        return top

    def __len__(self) -> int:
        return len(self.items)


def _js_round(v: float) -> int:
    """JavaScript ``Math.round``: halves go towards +infinity."""
    return int(np.floor(v + 0.5))


def decode_multiple_poses(
    heatmaps: np.ndarray,
    short_offsets: np.ndarray,
    displacement_fwd: np.ndarray,
    displacement_bwd: np.ndarray,
    output_stride: int,
    max_detections: int = 10,
    score_threshold: float = 0.5,
    nms_radius: float = 20.0,
) -> list[RawPose]:
    """body-pix ``decodeMultiplePoses`` on the raw heads (h x w x 17 sigmoid scores, 34 and 32 offsets).

    Returns the poses in detection order (decreasing root score), in network-input pixels.
    """
    h, w, nk = heatmaps.shape
    num_edges = displacement_fwd.shape[2] // 2
    # Python lists: scalar indexing into nested lists is ~10x faster than into numpy arrays.
    sc = heatmaps.astype(np.float64).tolist()
    off = short_offsets.astype(np.float64).tolist()
    fwd = displacement_fwd.astype(np.float64).tolist()
    bwd = displacement_bwd.astype(np.float64).tolist()
    stride = float(output_stride)
    sq_nms = float(nms_radius) * float(nms_radius)

    def cell(y: float, x: float) -> tuple[int, int]:  # getStridedIndexNearPoint
        return (min(max(_js_round(y / stride), 0), h - 1), min(max(_js_round(x / stride), 0), w - 1))

    def traverse(edge: int, src: tuple[float, float], target: int, disp: list) -> tuple[float, float, float]:
        cy, cx = cell(*src)
        d = disp[cy][cx]
        ty, tx = src[0] + d[edge], src[1] + d[num_edges + edge]
        for _ in range(OFFSET_REFINE_STEPS):
            cy, cx = cell(ty, tx)
            o = off[cy][cx]
            ty, tx = cy * stride + o[target], cx * stride + o[target + nk]
        cy, cx = cell(ty, tx)
        return ty, tx, sc[cy][cx][target]

    poses: list[RawPose] = []
    pose_yx: list[list[tuple[float, float]]] = []

    def near_existing(y: float, x: float, k: int) -> bool:  # withinNmsRadiusOfCorrespondingPoint
        for kps in pose_yx:
            py, px = kps[k]
            if (py - y) * (py - y) + (px - x) * (px - x) <= sq_nms:
                return True
        return False

    heap = MaxHeap()
    ys, xs, ks = local_maximum_candidates(heatmaps, score_threshold)
    for y, x, k in zip(ys.tolist(), xs.tolist(), ks.tolist(), strict=True):
        heap.enqueue((sc[y][x][k], y, x, k))

    while len(poses) < max_detections and len(heap):
        root_score, ry, rx, rk = heap.dequeue()
        o = off[ry][rx]
        root_y, root_x = ry * stride + o[rk], rx * stride + o[rk + nk]
        if near_existing(root_y, root_x, rk):
            continue
        kps: list[tuple[float, float, float] | None] = [None] * nk
        kps[rk] = (root_y, root_x, root_score)
        for edge in range(num_edges - 1, -1, -1):
            s, t = _CHILD[edge], _PARENT[edge]
            src = kps[s]
            if src is not None and kps[t] is None:
                kps[t] = traverse(edge, (src[0], src[1]), t, bwd)
        for edge in range(num_edges):
            s, t = _PARENT[edge], _CHILD[edge]
            src = kps[s]
            if src is not None and kps[t] is None:
                kps[t] = traverse(edge, (src[0], src[1]), t, fwd)
        full = [kp for kp in kps if kp is not None]  # every keypoint is reached from any root
        total = 0.0
        for k, (y, x, s) in enumerate(full):
            if not near_existing(y, x, k):
                total += s
        poses.append(RawPose(total / nk, np.array([kp[2] for kp in full]),
                             np.array([(kp[0], kp[1]) for kp in full], dtype=np.float64)))
        pose_yx.append([(kp[0], kp[1]) for kp in full])
    return poses


def to_work(raw: RawPose, geo: Geometry) -> np.ndarray:
    """Keypoints (17x2, y then x) in working-image pixels: ``scaleAndFlipPoses`` on the image body-pix saw."""
    return np.stack(grid_to_work(geo, raw.yx[:, 0], raw.yx[:, 1]), axis=1)


def to_photo(raw: RawPose, geo: Geometry) -> Pose:
    """A decoded pose in photo pixels (``decode.grid_to_image``), as the public ``Pose``."""
    iy, ix = grid_to_image(geo, raw.yx[:, 0], raw.yx[:, 1])
    kps = [Keypoint(KEYPOINT_NAMES[i], float(ix[i]), float(iy[i]), float(raw.scores[i]))
           for i in range(len(KEYPOINT_NAMES))]
    return Pose(score=float(raw.score), keypoints=kps)


def decode_raw(out: BodyPixOutput, max_detections: int = 10, score_threshold: float = 0.4,
               nms_radius: float = 20.0) -> list[RawPose]:
    """``decode_multiple_poses`` on a forward pass's heads."""
    return decode_multiple_poses(out.heatmaps, out.short_offsets, out.displacement_fwd, out.displacement_bwd,
                                 out.geometry.output_stride, max_detections, score_threshold, nms_radius)


# A crowd: the cap grows in steps of CROWD_STEP while the last step's poses hold a person.
CROWD_STEP = 5


def decode_crowd(out: BodyPixOutput, max_detections: int, score_threshold: float, nms_radius: float,
                 min_pose_score: float, crowd_limit: int) -> list[RawPose]:
    """``decode_raw`` with body-pix's cap raised where a crowd needs it, up to ``crowd_limit`` poses.

    body-pix stops after ``max_detections`` poses (10), so in a crowd of more people some are
    never decoded.  When the last CROWD_STEP poses under the cap still hold one scoring at
    least ``min_pose_score`` (a person, for the instance split), the cap grows by CROWD_STEP,
    and again, until a step brings no such pose or ``crowd_limit`` is reached.  The decoder
    takes poses in the same order whatever the cap, so the first ``max_detections`` poses are
    body-pix's; a photo with fewer people decodes once, as before.
    """
    cap = max_detections
    raws = decode_raw(out, cap, score_threshold, nms_radius)
    while len(raws) == cap < crowd_limit and max(r.score for r in raws[-CROWD_STEP:]) >= min_pose_score:
        cap = min(crowd_limit, cap + CROWD_STEP)
        raws = decode_raw(out, cap, score_threshold, nms_radius)
    return raws


# A group: at least this many people (poses scoring min_pose_score or more).
GROUP_POSES = 3


def is_group(raws: Sequence[RawPose], min_pose_score: float) -> bool:
    """Whether the poses hold a group of GROUP_POSES people or more.

    A large photo's first look runs BodyPix on its 1 MP working copy at a 1 MP photo's input
    (``Settings.max_work_pixels``): enough for one or two people, who fill much of the frame,
    but a group's people are each a few cells of BodyPix's grid there (a 3 x 3 mosaic of
    group photos at 2.2 MP: 19 of 24 people, whole-mask IoU 0.818, against 23 and 0.848 at
    the photo's own input).  A group is looked at again at the photo's own input.
    """
    return sum(r.score >= min_pose_score for r in raws) >= GROUP_POSES


def skeleton(pose: Pose, min_score: float = 0.3) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """The body-pix skeleton of a pose: one ((x0, y0), (x1, y1)) segment per ``POSE_CHAIN`` edge
    whose two keypoints both score above ``min_score`` (what "Pose to Path" draws).

    ``POSE_CHAIN`` is body-pix's tree of 16 adjacent-keypoint edges, the one the decoder walks.
    """
    kp = {k.part: k for k in pose.keypoints}
    return [((kp[a].x, kp[a].y), (kp[b].x, kp[b].y)) for a, b in POSE_CHAIN
            if kp[a].score > min_score and kp[b].score > min_score]
