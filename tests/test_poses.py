"""Multi-person pose decoding (body-pix decodeMultiplePoses) on real photos.

Faithfulness to the TF.js reference is checked in test_instances.py (``reference`` marker);
here: the decoder's own rules on real heads, and poses that agree with hand-made masks.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from bodypix_gimp import Settings, segment
from bodypix_gimp.bodypix import poses
from bodypix_gimp.pipeline import get_model
from bodypix_gimp.result import POSE_CHAIN
from conftest import EVAL, load

HS = EVAL / "human_seg_300"
MULTI = ["061", "089", "265", "272", "280"]  # two or three people each


@pytest.fixture(scope="module")
def outs():
    model = get_model(Settings())
    return {n: model.run(load(HS / "images" / f"{n}.jpg"), Settings()) for n in MULTI}


def gt_mask(name: str) -> np.ndarray:
    return cv2.imread(str(HS / "masks" / f"{name}.png"), cv2.IMREAD_GRAYSCALE) >= 128


def test_confident_keypoints_lie_on_the_people():
    # Every confident keypoint of every detected person (segment()'s poses: body-pix's allPoses,
    # in photo pixels) is on (or within a few pixels of) a person of the hand-checked mask;
    # several people per photo must be found.
    for name in MULTI:
        gt = gt_mask(name)
        near = cv2.dilate(gt.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
        found = [p for p in segment(load(HS / "images" / f"{name}.jpg"), Settings()).poses if p.score >= 0.4]
        assert len(found) >= 2, f"{name}: {len(found)} confident poses"
        pts = [(k.x, k.y) for p in found for k in p.keypoints if k.score >= 0.5]
        inside = [near[min(max(round(y), 0), gt.shape[0] - 1), min(max(round(x), 0), gt.shape[1] - 1)]
                  for x, y in pts]
        assert np.mean(inside) >= 0.95, f"{name}: {np.mean(inside):.2f} of {len(pts)} keypoints on a person"


def test_each_pose_has_a_root_outside_the_nms_radius_of_earlier_poses(outs):
    # Part-based NMS: a pose starts from a keypoint farther than nms_radius (input pixels)
    # from the same keypoint of every earlier pose.
    for name, out in outs.items():
        raws = poses.decode_raw(out, max_detections=10, score_threshold=0.4, nms_radius=20.0)
        assert raws, name
        for j, pose in enumerate(raws[1:], start=1):
            d = np.stack([np.hypot(*(pose.yx - raws[i].yx).T) for i in range(j)])  # earlier x keypoint
            assert (d.min(axis=0) > 20.0).any(), f"{name}: pose {j} has no free root keypoint"


def test_first_pose_score_is_the_mean_keypoint_score_and_later_ones_drop_suppressed_keypoints(outs):
    for name, out in outs.items():
        raws = poses.decode_raw(out, 10, 0.4, 20.0)
        assert raws[0].score == pytest.approx(raws[0].scores.mean(), abs=1e-9), name
        for j, pose in enumerate(raws[1:], start=1):
            d = np.stack([np.hypot(*(pose.yx - raws[i].yx).T) for i in range(j)])
            free = d.min(axis=0) > 20.0
            assert pose.score == pytest.approx(pose.scores[free].sum() / 17, abs=1e-9), f"{name} pose {j}"


def test_max_detections_keeps_the_detection_order_and_threshold_filters_roots(outs):
    out = outs["265"]
    full = poses.decode_raw(out, 10, 0.4, 20.0)
    first = poses.decode_raw(out, 2, 0.4, 20.0)
    assert len(full) > 2 and len(first) == 2
    for a, b in zip(first, full, strict=False):
        assert np.array_equal(a.yx, b.yx) and a.score == b.score
    assert poses.decode_raw(out, 10, 1.0, 20.0) == []  # no sigmoid score reaches 1.0 exactly
    strict = poses.decode_raw(out, 10, 0.9, 20.0)
    assert 0 < len(strict) < len(full)


def test_max_heap_dequeues_real_candidates_in_score_order(outs):
    heat = outs["280"].heatmaps
    ys, xs, ks = poses.local_maximum_candidates(heat, 0.1)
    heap = poses.MaxHeap()
    for y, x, k in zip(ys, xs, ks, strict=True):
        heap.enqueue((float(heat[y, x, k]), int(y), int(x), int(k)))
    got = [heap.dequeue()[0] for _ in range(len(heap))]
    assert len(got) == len(ys) > 20
    assert got == sorted(got, reverse=True)


def test_local_maximum_candidates_are_window_maxima(outs):
    heat = outs["061"].heatmaps
    ys, xs, ks = poses.local_maximum_candidates(heat, 0.3)
    assert len(ys) > 17
    h, w, _ = heat.shape
    for y, x, k in zip(ys, xs, ks, strict=True):
        window = heat[max(y - 1, 0):min(y + 2, h), max(x - 1, 0):min(x + 2, w), k]
        assert heat[y, x, k] >= 0.3 and heat[y, x, k] == window.max()
    # Candidates come in body-pix's enqueue order: row, then column, then keypoint.
    order = np.lexsort((ks, xs, ys))
    assert np.array_equal(order, np.arange(len(ys)))


# Measured against TF.js body-pix 2.2.1 (cpu backend) on these photos: every pose in the same
# order, worst keypoint 0.004 px, worst pose score difference 1e-6 (README "Faithfulness").
POSE_PX, POSE_SCORE = 0.01, 1e-4


@pytest.mark.reference
def test_pipeline_poses_are_body_pix_all_poses(jim):
    """segment()'s poses are segmentPerson's allPoses: every pose, in order, in photo pixels."""
    from conftest import MODELS
    from reference import tfjs

    settings = Settings(refine="none", fingers=False)
    images = [jim, load(HS / "images" / "265.jpg")]  # one person; a group of three
    refs = tfjs.run(images, settings.model_name, tfjs.bodypix_config(settings), models=MODELS, parts=False)
    for image, ref in zip(images, refs, strict=True):
        ours = segment(image, settings).poses
        assert len(ours) == len(ref.poses) >= 1
        for mine, theirs in zip(ours, ref.poses, strict=True):
            assert abs(mine.score - theirs["score"]) <= POSE_SCORE
            want = {k["part"]: k for k in theirs["keypoints"]}
            for k in mine.keypoints:
                assert abs(k.score - want[k.part]["score"]) <= POSE_SCORE, k.part
                assert np.hypot(k.x - want[k.part]["x"], k.y - want[k.part]["y"]) <= POSE_PX, k.part


def test_photo_without_people_has_no_confident_pose():
    rng = np.random.default_rng(0)
    wall = cv2.GaussianBlur(rng.integers(90, 160, (300, 400, 3), dtype=np.uint8), (0, 0), 3)
    res = segment(wall, Settings(multi_person=True))
    assert all(p.score < 0.4 for p in res.poses)
    assert res.persons == [] and not (res.instance_map > 0).any()


def test_skeleton_follows_the_pose_chain_on_each_person():
    res = segment(load(HS / "images" / "280.jpg"), Settings(multi_person=True))
    assert res.persons
    for p in res.persons:
        bones = poses.skeleton(p.pose, min_score=0.3)
        confident = {k.part for k in p.pose.keypoints if k.score > 0.3}
        assert len(bones) == sum(a in confident and b in confident for a, b in POSE_CHAIN) >= 4
        near = cv2.dilate(p.mask, np.ones((25, 25), np.uint8)) > 0
        ends = [pt for bone in bones for pt in bone]
        on = [near[min(max(round(y), 0), near.shape[0] - 1), min(max(round(x), 0), near.shape[1] - 1)]
              for x, y in ends]
        assert np.mean(on) >= 0.9, p.index
