"""Person instances: which person each mask pixel belongs to, as body-pix 2.x decides it.

A faithful, vectorised port of ``segmentMultiPerson`` / ``segmentMultiPersonParts`` on the
CPU backend (``multi_person/decode_instance_masks.ts`` -> ``decode_multiple_masks_cpu.ts``),
the one the TF.js reference tests run:

* Only poses with ``score >= min_pose_score`` become instances (``posesAboveScore``; body-pix
  passes its ``scoreThreshold`` as ``minPoseScore``).
* Every person pixel (x, y) of the photo body-pix saw gets an embedding per keypoint k
  of the first five (nose, eyes, ears; body-pix's ``numKptForMatching = 5``): start at
  (x, y) plus the long offset of the grid cell the pixel falls in, then ``refine_steps``
  times clamp to the photo's last row/column, look up the long offset of the cell
  under the point again and add it.  The long offsets are in network-input pixels but
  are added to photo coordinates unscaled, exactly as body-pix does.
* The pixel goes to the pose whose confident keypoints (score > ``min_keypoint_score``)
  are nearest on average (mean squared distance); ties go to the earlier pose; a pixel
  whose embedding leaves the grid (NaN in JavaScript) or that no pose can claim stays
  unassigned.

body-pix's CPU decoder hard-codes 0.3 as the keypoint-score cut and ignores its
``minKeypointScore`` knob (the WebGL one uses it); here the knob is honoured, and its
default 0.3 gives the reference result.

This project's additions, none of which change the reference result on body-pix's own
mask: the pixels assigned are those of the *final* person mask (after edge refinement and
finger recovery), so instances always partition it and never overlap; people are numbered
left to right; instances that get no pixels are dropped; above ``ASSIGN_PIXELS`` working
pixels (photos above the input cap, or big photos at a low internal resolution) body-pix's
rule is applied to a coarser grid of sample pixels and the labels taken back to full size by
nearest neighbour (assigning 24 MP pixels one by one would cost many seconds for no visible
gain: the long offsets live on a 16-pixel grid).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from ..result import PART_NAMES, Person
from .model import BodyPixOutput, Geometry
from .poses import NUM_KEYPOINTS, RawPose, to_photo, to_work
from .resize import strips

NUM_KEYPOINTS_FOR_MATCHING = 5  # body-pix decodeMultipleMasksCPU numKptForMatching
CHUNK = 1 << 17  # pixels per vectorised chunk (bounds the temporaries to ~60 MB per thread)
MAX_THREADS = 4
ASSIGN_PIXELS = 1_000_000  # working pixels assigned one by one; above, a coarser grid of samples


def embeddings(ys: np.ndarray, xs: np.ndarray, long_offsets: np.ndarray, geo: Geometry, refine_steps: int,
               keypoints: Sequence[int] = range(NUM_KEYPOINTS_FOR_MATCHING)) -> tuple[np.ndarray, np.ndarray]:
    """body-pix ``getEmbedding`` for pixels (ys, xs) of the working image -> y and x, (K, N) float64 each.

    Positions whose grid index falls outside the long-offset buffer become NaN, as the
    ``undefined`` read does in JavaScript; a negative column with a valid flat index wraps
    to the previous row, as there.  All K keypoints are stepped together as (K, N) arrays.
    """
    gh, gw, _ = long_offsets.shape
    ncell = gh * gw
    k_idx = np.asarray(list(keypoints), dtype=np.intp)
    num_keypoints = len(k_idx)
    # Per keypoint, the flat (cell) table with one NaN cell appended for out-of-buffer reads.
    table_y = np.full((num_keypoints, ncell + 1), np.nan)
    table_x = np.full((num_keypoints, ncell + 1), np.nan)
    flat = long_offsets.reshape(ncell, -1).astype(np.float64)
    table_y[:, :ncell] = flat[:, k_idx].T
    table_x[:, :ncell] = flat[:, k_idx + NUM_KEYPOINTS].T
    base = (np.arange(num_keypoints) * (ncell + 1))[:, None]  # row starts in the raveled tables
    table_y, table_x = table_y.ravel(), table_x.ravel()
    height, width = geo.work_height, geo.work_width
    scale_y = geo.input_height / (geo.pad_top + geo.pad_bottom + height)
    scale_x = geo.input_width / (geo.pad_left + geo.pad_right + width)
    stride = float(geo.output_stride)
    pad_t, pad_l = float(geo.pad_top), float(geo.pad_left)

    def grid(v: np.ndarray, pad: float, scale: float, out: np.ndarray) -> np.ndarray:
        # convertToPositionInOuput along one axis, in body-pix's order so halves round alike;
        # floor(v + 0.5) is JavaScript's Math.round (NaN stays NaN).
        np.add(v, pad, out=out)
        out += 1.0
        out *= scale
        out -= 1.0
        out /= stride
        out += 0.5
        return np.floor(out, out=out)

    shape = (num_keypoints, len(ys))
    gy, gx = np.empty(shape), np.empty(shape)
    ok, bad = np.empty(shape, bool), np.empty(shape, bool)
    idx = np.empty(shape, np.intp)

    def cell_index(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        grid(y, pad_t, scale_y, gy)
        np.multiply(gy, gw, out=gy)
        np.add(gy, grid(x, pad_l, scale_x, gx), out=gy)
        np.greater_equal(gy, 0, out=ok)
        np.less(gy, ncell, out=bad)
        np.logical_and(ok, bad, out=ok)
        np.logical_not(ok, out=bad)
        gy[bad] = ncell  # NaN or outside the buffer: the NaN cell
        idx[...] = gy
        np.add(idx, base, out=idx)
        return idx

    # First lookup: integer pixels inside the photo, so rows and columns map to cells separately.
    rows = np.arange(height, dtype=np.float64)
    cols = np.arange(width, dtype=np.float64)
    row_cell = grid(rows, pad_t, scale_y, rows).astype(np.intp) * gw
    col_cell = grid(cols, pad_l, scale_x, cols).astype(np.intp)
    first = (row_cell[ys] + col_cell[xs])[None, :] + base
    y = ys.astype(np.float64) + table_y.take(first)
    x = xs.astype(np.float64) + table_x.take(first)
    step_y, step_x = np.empty(shape), np.empty(shape)
    for _ in range(refine_steps):
        np.minimum(y, height - 1.0, out=y)
        np.minimum(x, width - 1.0, out=x)
        cell_index(y, x)
        y += table_y.take(idx, out=step_y)
        x += table_x.take(idx, out=step_x)
    return y, x


def match(emb_y: np.ndarray, emb_x: np.ndarray, keypoints: Sequence[int], pose_yx: list[np.ndarray],
          pose_scores: list[np.ndarray], min_keypoint_score: float) -> np.ndarray:
    """body-pix ``matchEmbeddingToInstance``: index of the nearest pose per pixel, -1 for none.

    Distance = mean over the pose's keypoints with score > ``min_keypoint_score`` of the
    squared distance to the pixel's embedding, summed in body-pix's order; a pose with no
    such keypoint never wins, and NaN distances never win (``dist < best`` is false).
    """
    n = emb_y.shape[1]
    best = np.full(n, np.inf)
    label = np.full(n, -1, np.int32)
    d, t, u = np.empty(n), np.empty(n), np.empty(n)
    for i, (yx, sc) in enumerate(zip(pose_yx, pose_scores, strict=True)):
        sel = [(row, k) for row, k in enumerate(keypoints) if sc[k] > min_keypoint_score]
        if not sel:
            continue
        d.fill(0.0)
        for row, k in sel:
            np.subtract(emb_x[row], yx[k, 1], out=t)
            t *= t
            np.subtract(emb_y[row], yx[k, 0], out=u)
            u *= u
            t += u
            d += t
        d /= len(sel)
        better = d < best  # strict: ties keep the earlier pose; NaN compares False
        best[better] = d[better]
        label[better] = i
    return label


def _sample_grid(geo: Geometry) -> tuple[int, int]:
    """Size of the grid of pixels that are assigned one by one: the working image, or a coarser grid."""
    h, w = geo.work_height, geo.work_width
    if h * w <= ASSIGN_PIXELS:
        return h, w
    scale = math.sqrt(ASSIGN_PIXELS / (h * w))
    return max(1, int(h * scale)), max(1, int(w * scale))


def instance_labels(out: BodyPixOutput, raws: list[RawPose], mask: np.ndarray, min_pose_score: float,
                    refine_steps: int, min_keypoint_score: float,
                    specks: bool = False) -> tuple[np.ndarray, list[int]]:
    """Label map (int16, photo size, -1 = nobody) of the pixels where ``mask`` > 0.

    Returns the labels and, per label value, the index into ``raws`` of its pose.  Up to
    ``ASSIGN_PIXELS`` working pixels every pixel is assigned as body-pix does; above, body-pix's
    rule is applied to a coarser grid of sample pixels and each pixel takes the label of its
    sample (the long offsets live on a 16-pixel grid, so labels change on that scale anyway).
    ``specks``: stray pieces of one person inside another go to that other person (``despeckle``,
    on the grid of assigned pixels, so it costs the same at every photo size).
    """
    geo = out.geometry
    above = [i for i, r in enumerate(raws) if r.score >= min_pose_score]
    labels = np.full(mask.shape, -1, np.int16)
    person = mask > 0
    if not above or not person.any():
        return labels, above
    pose_yx = [to_work(raws[i], geo) for i in above]
    pose_scores = [raws[i].scores for i in above]
    # Keypoints some pose can match on; the others' embeddings would never be read.
    keypoints = [k for k in range(NUM_KEYPOINTS_FOR_MATCHING) if any(sc[k] > min_keypoint_score for sc in pose_scores)]
    if not keypoints:
        return labels, above
    sh, sw = _sample_grid(geo)
    exact = (sh, sw) == (geo.height, geo.width)
    if exact:
        samples = person
    else:
        # A sample is a candidate when any person pixel falls in its area.
        samples = cv2.resize(person.view(np.uint8) * np.uint8(255), (sw, sh), interpolation=cv2.INTER_AREA) > 0
    si, sj = np.nonzero(samples)
    if (sh, sw) == (geo.work_height, geo.work_width):
        ys, xs = si, sj
    else:  # the working pixel nearest each sample's centre
        ys = np.minimum(np.round((si + 0.5) * geo.work_height / sh - 0.5), geo.work_height - 1).astype(np.intp)
        xs = np.minimum(np.round((sj + 0.5) * geo.work_width / sw - 0.5), geo.work_width - 1).astype(np.intp)
    sample_labels = np.full((sh, sw), -1, np.int16)

    def assign(span: tuple[int, int]) -> None:
        a, b = span
        emb_y, emb_x = embeddings(ys[a:b], xs[a:b], out.long_offsets, geo, refine_steps, keypoints)
        sample_labels[si[a:b], sj[a:b]] = match(emb_y, emb_x, keypoints, pose_yx, pose_scores,
                                                min_keypoint_score)

    # numpy releases the GIL in its loops, so chunks run in parallel on threads.
    workers = max(1, min(MAX_THREADS, os.cpu_count() or 1))
    step = max(4096, min(CHUNK, -(-len(si) // workers)))
    spans = list(strips(len(si), step))
    if workers == 1 or len(spans) == 1:
        for span in spans:
            assign(span)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(assign, spans))
    if specks:
        despeckle(sample_labels, len(above))
    if exact:
        labels[person] = sample_labels[person]
    else:
        rows = np.minimum(((np.arange(geo.height) + 0.5) * sh / geo.height).astype(np.intp), sh - 1)
        cols = np.minimum(((np.arange(geo.width) + 0.5) * sw / geo.width).astype(np.intp), sw - 1)
        for a, b in strips(geo.height, max(1, CHUNK // max(geo.width, 1))):
            labels[a:b] = np.where(person[a:b], sample_labels[rows[a:b]][:, cols], -1)
    return labels, above


def split_takes_closer(raws: list[RawPose], closer: list[RawPose], min_pose_score: float) -> bool:
    """Whether the instance split takes the closer look (BodyPix at "full") instead of the first one.

    The split takes one look whole, its poses and its long offsets: a union of the two looks'
    poses would count people twice, as the looks place the same person's keypoints up to half
    a torso apart, as far as two people who sit cheek to cheek.  It takes the closer look when

    * its poses hold more people (score >= ``min_pose_score``): BodyPix at internal resolution
      "medium" scores a person partly hidden by another low (a woman carried on a man's back:
      0.11), or merges two people into one pose (two heads closer than body-pix's NMS radius
      of 20 input pixels); at "full" it is sure of both (0.39, 0.66);
    * or the same number of people, and the least sure of them scores higher there: where
      "medium" is unsure of a person, a neighbour's instance takes part of them (the middle
      woman of human_seg_300/266, half behind a man's shoulder: 0.27 at "medium", and the
      man's instance held her left side, so a box inside him selected her too; 0.59 at
      "full", where he holds none of her).
    """
    near = [c.score for c in closer if c.score >= min_pose_score]
    first = [r.score for r in raws if r.score >= min_pose_score]
    if len(near) != len(first):
        return len(near) > len(first)
    return bool(first) and min(near) > min(first)


# A piece of a person (8-connected pixels of one instance) under this share of the person's pixels
# is a speck: body-pix assigns pixel by pixel, so stray pixels of one person lie inside another.
# A hand or a foot seen apart from its body is ~2-3% of the person.
SPECK_SHARE = 0.002


def despeckle(labels: np.ndarray, count: int) -> int:
    """Give each speck of a person (see ``SPECK_SHARE``) to the person who holds most of its border.

    In place on ``labels`` (-1 = nobody, 0..count-1 = person); a speck bordered mostly by
    nobody stays.  Returns the number of pixels moved.  Without it one stray pixel of the middle
    woman of human_seg_300/266 inside the right woman made a box on the right woman select
    both.
    """
    moved = 0
    kernel = np.ones((3, 3), np.uint8)
    padded = np.pad(labels, 1, constant_values=-1)  # every piece has its 1-pixel border inside
    inner = padded[1:-1, 1:-1]
    for k in range(count):
        mine = (inner == k).view(np.uint8)
        total = cv2.countNonZero(mine)
        if not total:
            continue
        x, y, w, h = cv2.boundingRect(mine)
        _, pieces, stats, _ = cv2.connectedComponentsWithStats(mine[y:y + h, x:x + w], connectivity=8)
        pieces = np.pad(pieces, 1)
        for i in np.nonzero(stats[1:, cv2.CC_STAT_AREA] < SPECK_SHARE * total)[0] + 1:
            px, py, pw, ph, area = stats[i]
            # the piece's rectangle and its border: rows py..py+ph+1 of ``pieces``, in ``padded``
            # (one pixel of padding each) the same rows from y
            piece = (pieces[py:py + ph + 2, px:px + pw + 2] == i).view(np.uint8)
            window = padded[y + py:y + py + ph + 2, x + px:x + px + pw + 2]
            around = window[(cv2.dilate(piece, kernel) > 0) & (piece == 0)] + 1  # 0 = nobody
            most = int(np.bincount(around).argmax()) - 1
            if most >= 0:
                window[piece > 0] = most
                moved += int(area)
    labels[...] = inner
    return moved


def build_persons(out: BodyPixOutput, raws: list[RawPose], person_mask: np.ndarray, part_map: np.ndarray,
                  min_pose_score: float, refine_steps: int, min_keypoint_score: float,
                  specks: bool = False) -> tuple[list[Person], np.ndarray, dict[str, int]]:
    """Persons ordered left to right, the instance map (0 = nobody, k = Person k) and counts for ``info``.

    Each person's mask is the final ``person_mask`` on the pixels assigned to it, so people
    partition the final mask (minus the pixels no pose claims) and never overlap.  ``specks``:
    stray pieces of one person inside another go to that other person (``despeckle``; the
    product's split, not body-pix's).
    """
    labels, pose_index = instance_labels(out, raws, person_mask, min_pose_score, refine_steps,
                                         min_keypoint_score, specks)
    n = len(pose_index)
    h, w = labels.shape
    stats = {}
    for i in range(n):
        mine = labels == i
        x, y, bw, bh = cv2.boundingRect(mine.view(np.uint8))
        if bw == 0:
            continue  # body-pix keeps instances without pixels; a person needs at least one
        crop = mine[y:y + bh, x:x + bw]
        m = cv2.moments(crop.view(np.uint8), binaryImage=True)
        present = np.bincount(part_map[y:y + bh, x:x + bw][crop], minlength=256)[: len(PART_NAMES)]
        stats[i] = {"bbox": (x, y, x + bw, y + bh), "pixels": int(round(m["m00"])),
                    "centroid": (x + m["m10"] / m["m00"], y + m["m01"] / m["m00"]),
                    "parts": [PART_NAMES[p] for p in np.nonzero(present)[0]]}
    info = {"instances_decoded": n, "instances_empty": n - len(stats),
            "unassigned_pixels": int((person_mask > 0).sum()) - sum(v["pixels"] for v in stats.values())}
    if not stats:
        return [], np.zeros((h, w), np.uint8), info
    order = sorted(stats, key=lambda i: (*stats[i]["centroid"], i))
    remap = np.zeros(n + 1, np.uint16 if len(order) >= 255 else np.uint8)
    for new, i in enumerate(order, start=1):
        remap[i + 1] = new
    instance_map = np.empty((h, w), remap.dtype)
    for a, b in strips(h, max(1, CHUNK // max(w, 1))):
        instance_map[a:b] = remap[labels[a:b].astype(np.intp) + 1]
    persons = [Person(index=new, bbox=stats[i]["bbox"], pixels=stats[i]["pixels"],
                      pose=to_photo(raws[pose_index[i]], out.geometry), parts=stats[i]["parts"],
                      instance_map=instance_map, person_mask=person_mask, all_parts=part_map)
               for new, i in enumerate(order, start=1)]
    return persons, instance_map, info


def persons_overlapping(
    person_mask: np.ndarray, selection: np.ndarray, instance_map: np.ndarray | None = None
) -> np.ndarray:
    """Keep only the people that touch the selection (a box around one person in a group).

    A pixel is kept when its 8-connected component of the hard mask touches the selection
    and, with body-pix's person instances (``instance_map`` from ``multi_person``), its
    person does too (or no person claimed it): components keep apart people who stand
    apart, instances split people who touch.  Soft mask values are kept inside the chosen
    people.
    """
    hard = (person_mask >= 128).astype(np.uint8)
    _, labels = cv2.connectedComponents(hard, connectivity=8)
    inside = (selection >= 128) & (hard > 0)
    hit = np.unique(labels[inside])
    keep = np.isin(labels, hit[hit > 0])
    if instance_map is not None and instance_map.any():
        people = np.unique(instance_map[inside])
        # both must agree: a component the selection touches, and (within it) a touched
        # person; body-pix can miss a pose (someone cut by the frame) and hand their pixels
        # to a neighbour's instance, which the component test then removes again
        keep = keep & (np.isin(instance_map, people[people > 0]) | (instance_map == 0))
    # soft edges just outside a kept person belong to it: grow the kept area by the
    # soft fringe (pixels 1..127 adjacent to kept people)
    if ((person_mask > 0) & (person_mask < 128)).any():
        grown = cv2.dilate(keep.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=3) > 0
        keep = keep | (grown & (person_mask > 0) & ~hard.astype(bool))
    return np.where(keep, person_mask, np.uint8(0))
