"""Edge methods on real photos and real models: shapes, soft/hard agreement, parts, errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from bodypix_gimp import ConfigError, Settings, segment
from bodypix_gimp.evaluate import metrics
from bodypix_gimp.refine import edges, fusion, guided
from bodypix_gimp.settings import REFINE_METHODS, default_settings
from conftest import EVAL, human_seg_pairs, load
from PIL import Image


@pytest.fixture(scope="module")
def photo() -> tuple[np.ndarray, np.ndarray]:
    image, mask = human_seg_pairs(3)[2]
    return load(image), np.asarray(Image.open(mask)) >= 128


@pytest.fixture(scope="module")
def raw(photo):  # noqa: ANN001, ANN201
    return segment(photo[0], Settings())


def test_registry_matches_settings() -> None:
    assert list(REFINE_METHODS) == ["none", *edges.METHODS]


def test_unknown_method_names_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match="fusion") as e:
        Settings(refine="grabcutt")
    assert "snake" in str(e.value) and "none" in str(e.value)


@pytest.mark.parametrize("method", list(edges.METHODS))
def test_each_method_beats_raw_bodypix_edge(photo, raw, method: str) -> None:  # noqa: ANN001
    rgb, gt = photo
    mask = edges.refine(rgb, raw.person_prob, Settings(refine=method))
    assert mask.shape == gt.shape and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 255}
    before = metrics.score(raw.person_mask >= 128, gt)
    after = metrics.score(mask >= 128, gt)
    assert after["f@2"] > before["f@2"], (method, before, after)


def test_soft_edges_agree_with_hard_mask(photo, raw) -> None:  # noqa: ANN001
    rgb, _ = photo
    hard = edges.refine(rgb, raw.person_prob, Settings(refine="fusion"))
    soft = edges.refine(rgb, raw.person_prob, Settings(refine="fusion", soft_edges=True))
    partial = (soft > 0) & (soft < 255)
    assert partial.any()  # a real alpha ramp at the edge
    # >= 128 of the soft mask is the hard mask, up to float rounding at the threshold.
    assert np.count_nonzero((soft >= 128) != (hard >= 128)) <= 0.001 * hard.size


def test_default_pipeline_parts_follow_refined_mask(photo) -> None:  # noqa: ANN001
    rgb, gt = photo
    res = segment(rgb, default_settings(soft_edges=True))
    person = res.person_mask >= 128
    assert np.array_equal(res.part_map != 255, person)
    assert metrics.iou(person, gt) > 0.9
    assert "refine" in res.timings


def test_band_coefficients_match_the_whole_grid_ones(photo, raw) -> None:  # noqa: ANN001
    # upsample_band computes the guided filter's coefficients only on tiles near the edge band;
    # there they must be the whole-grid values (the blocks carry the two box passes' margin).
    rgb, _ = photo
    guide = cv2.resize(rgb, None, fx=1.7, fy=1.7).astype(np.float32) / 255  # blocks spanning many tiles
    p = cv2.resize(raw.person_prob, (guide.shape[1], guide.shape[0]))
    near = (p > 0.1) & (p < 0.9)
    assert 0.01 < near.mean() < 0.2
    whole = guided.coefficients(guide, p, 2, 1e-4)
    tiled = guided.coefficients_near(guide, p, 2, 1e-4, near)
    for a, b in zip(whole, tiled, strict=True):
        np.testing.assert_allclose(b[near], a[near], atol=1e-5)
    assert (tiled[-1] == 0).mean() > 0.3  # tiles away from the band were skipped


def human_seg(name: str) -> tuple[np.ndarray, np.ndarray]:
    image = EVAL / "human_seg_300" / "images" / f"{name}.jpg"
    return load(image), np.asarray(Image.open(image.parent.parent / "masks" / f"{name}.png")) >= 128


def test_fusion_drops_a_pram_the_foreground_networks_count_as_person() -> None:
    # human_seg_300 photo 167: a man pushing a pram.  RVM and Selfie segment the foreground, so
    # the pram was part of the "person"; the pose-guided veto (fusion.veto_objects) drops it.
    rgb, gt = human_seg("167")
    veto = segment(rgb, default_settings(fingers=False)).person_mask >= 128
    plain = segment(rgb, default_settings(fingers=False, refine="fusion-blend")).person_mask >= 128
    raw = segment(rgb, Settings()).person_mask >= 128
    assert metrics.iou(veto, gt) > metrics.iou(raw, gt)
    assert metrics.iou(veto, gt) > metrics.iou(plain, gt) + 0.1
    # The pram's pixels (outside the truth) mostly gone, the man kept.
    assert np.count_nonzero(veto & ~gt) < 0.5 * np.count_nonzero(plain & ~gt)
    assert np.count_nonzero(veto & gt) > 0.95 * np.count_nonzero(plain & gt)


def test_fusion_brings_back_trousers_only_bodypix_sees() -> None:
    # human_seg_300 photo 274: a woman sitting in striped trousers on a rug.  RVM puts the
    # trousers at alpha ~0, so the blend loses half her legs; BodyPix's sharper pass is sure of
    # them, and the re-vote (fusion.revote_disputed) brings them back.
    rgb, gt = human_seg("274")
    judged = segment(rgb, default_settings(fingers=False)).person_mask >= 128
    blend = segment(rgb, default_settings(fingers=False, refine="fusion-blend")).person_mask >= 128
    seed = segment(rgb, Settings(segmentation_threshold=0.2, internal_resolution="full")).person_mask >= 128
    assert metrics.iou(judged, gt) > metrics.iou(blend, gt) + 0.05
    assert metrics.iou(judged, gt) > metrics.iou(seed, gt) - 0.01  # the "1 IoU point"
    added = judged & ~blend
    assert np.count_nonzero(added & gt) > 3 * np.count_nonzero(added & ~gt)


def test_fusion_revote_leaves_out_what_only_bodypix_claims() -> None:
    # human_seg_300 photo 166: BodyPix's sharper pass is sure of a large piece of background
    # next to the person (a solid dispute), but RVM and Selfie both reject it: the re-vote keeps it out.
    rgb, gt = human_seg("166")
    judged = segment(rgb, default_settings(fingers=False)).person_mask >= 128
    blend = segment(rgb, default_settings(fingers=False, refine="fusion-blend")).person_mask >= 128
    seed = segment(rgb, Settings(segmentation_threshold=0.2, internal_resolution="full")).person_mask >= 128
    claimed = seed & ~gt & ~blend  # what BodyPix alone adds beyond the truth
    assert np.count_nonzero(claimed) > 0.01 * gt.size
    assert np.count_nonzero(judged & claimed) < 0.05 * np.count_nonzero(claimed)
    assert metrics.iou(judged, gt) >= metrics.iou(blend, gt) - 0.002


def test_fusion_smoothing_fades_out_with_the_grid_size() -> None:
    # A lone confident pixel (RVM's speckle) falls below the low-resolution edge level once
    # smoothed (a Gaussian of sigma 0.8 keeps 1 / (2 pi 0.64) ~ 0.25 of it), a solid region
    # keeps its inside; from 1 MP the blend is returned untouched.
    small = np.zeros((500, 500), np.float32)
    small[100, 100] = 1.0
    small[200:300, 200:300] = 1.0
    out = fusion.smooth(small)
    level = fusion.edge_level(small.shape)
    assert small[100, 100] > level > out[100, 100]
    assert out[250, 250] == pytest.approx(1.0)
    big = np.zeros((1000, 1000), np.float32)
    assert fusion.smooth(big) is big


def test_fusion_smoothing_helps_a_small_person(monkeypatch) -> None:  # noqa: ANN001
    # human_seg_300 photo 169: a man walking a dog, ~130 px tall.  RVM's alpha is ragged at
    # that size; smoothing the settled blend (fusion.smooth) follows the reference better.
    rgb, gt = human_seg("169")
    smoothed = segment(rgb, default_settings(fingers=False)).person_mask >= 128
    monkeypatch.setattr(fusion, "EDGE_SMOOTH", 0.0)
    plain = segment(rgb, default_settings(fingers=False)).person_mask >= 128
    assert metrics.iou(smoothed, gt) > metrics.iou(plain, gt) + 0.005


def test_fusion_edge_without_bodypix_fades_out_with_the_grid_size() -> None:
    # Where the veto/re-vote changed nothing, the edge band takes the blend without BodyPix,
    # raised by EDGE_LIFT; away from the level and on 1 MP grids nothing changes.
    nets = tuple(np.full((500, 500), v, np.float32) for v in (1.0, 0.3, 0.3))  # BodyPix, Selfie, RVM
    level = fusion.edge_level((500, 500))
    blend = fusion.fuse(*nets)  # 0.1 + 0.06 + 0.21 = 0.37, just above the level 0.35
    out = fusion.edge_without_bodypix(blend, blend, level, nets)
    assert blend[0, 0] > level > out[0, 0]  # 0.06 + 0.24 + 0.03 = 0.33: BodyPix alone no longer decides
    settled = blend.copy()
    settled[:10] = 0.9  # the re-vote raised these rows: left as they are
    assert np.array_equal(fusion.edge_without_bodypix(settled, blend, level, nets)[:10], settled[:10])
    big = np.zeros((1000, 1000), np.float32)
    assert fusion.edge_without_bodypix(big, big, 0.5, (big, big, big)) is big


def test_fusion_edge_without_bodypix_follows_the_reference(monkeypatch) -> None:  # noqa: ANN001
    # human_seg_300 photo 278: BodyPix's blurred outline pulled the fused edge off the
    # person's; the edge from RVM and Selfie alone follows the reference's boundary better.
    rgb, gt = human_seg("278")
    new = segment(rgb, default_settings(fingers=False)).person_mask >= 128
    monkeypatch.setattr(fusion, "edge_without_bodypix", lambda p, blend, level, nets: p)
    old = segment(rgb, default_settings(fingers=False)).person_mask >= 128
    assert metrics.boundary_f(new, gt, (2,))[2] > metrics.boundary_f(old, gt, (2,))[2] + 0.02
    assert metrics.iou(new, gt) >= metrics.iou(old, gt)


@pytest.mark.parametrize("method", ["fusion", "fusion-fast"])
def test_peers_started_early_are_the_methods_own(photo, method: str) -> None:  # noqa: ANN001
    """``start_peers`` (the pipeline's early start in a thread) gives the pair the method computes
    itself: a small photo's mirrored pass for ``fusion``, one pass for ``fusion-fast``."""
    small = edges.small_copy(photo[0])
    wait = edges.start_peers(small, method, None)
    assert wait is not None
    early, own = wait(), fusion.method_peers(method, small, None)
    for a, b in zip(early, own, strict=True):
        assert np.array_equal(a, b)
    if method == "fusion":  # a 0.25 MP photo: the mirrored pass is in it (it differs from one pass)
        assert not np.array_equal(early[1], fusion.peer_probabilities(small, None, flip=False)[1])
    assert edges.start_peers(small, "guided", None) is None
