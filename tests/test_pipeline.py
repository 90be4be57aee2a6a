"""The core pipeline on real photos and real models."""

from __future__ import annotations

import numpy as np
import pytest
from bodypix_gimp import PART_NAMES, Settings, segment
from bodypix_gimp.bodypix import decode as dec
from bodypix_gimp.bodypix.model import plan_geometry, to_valid_resolution
from bodypix_gimp.bodypix.resize import apply_cols, apply_rows
from bodypix_gimp.errors import ModelNotFoundError
from bodypix_gimp.pipeline import get_model
from bodypix_gimp.runtime.sessions import RuntimeOptions
from conftest import EVAL, human_seg_pairs, iou, load

RAW = Settings(output_stride=16)


def test_valid_resolution_matches_body_pix():
    # body-pix util.ts toValidInputResolution
    assert to_valid_resolution(513, 16) == 513
    assert to_valid_resolution(512, 16) == 513  # floor(512/16)*16+1: may round up by one
    assert to_valid_resolution(253.0, 8) == 249
    assert to_valid_resolution(900 * 0.5, 16) == 449


def test_geometry_pads_to_the_input_aspect_ratio():
    g = plan_geometry(506, 900, Settings(internal_resolution="full"))
    assert (g.input_height, g.input_width) == (497, 897)
    # padding keeps (h + pad) / (w + pad) equal to the input's aspect ratio
    assert abs((506 + g.pad_top + g.pad_bottom) / (900 + g.pad_left + g.pad_right) - 497 / 897) < 3e-3


def test_person_found_on_real_photos_agrees_with_ground_truth():
    scores = []
    for img, mask in human_seg_pairs(4):
        r = segment(load(img), RAW)
        assert r.person_mask.shape == r.part_map.shape == load(img).shape[:2]
        scores.append(iou(r.person_mask, load(mask)[..., 0]))
    assert np.mean(scores) > 0.8, scores


def test_parts_lie_inside_the_person_and_cover_it(astronaut):
    r = segment(astronaut, RAW)
    person = r.person_mask >= 128
    assert person.any()
    assert np.all(r.part_map[~person] == 255)
    assert np.all(r.part_map[person] < len(PART_NAMES))
    stats = r.part_stats()
    assert {"left_face", "right_face"} <= set(stats)
    assert sum(s["pixels"] for s in stats.values()) == person.sum()


def test_fast_part_argmax_equals_resampling_every_channel(jim):
    full = Settings(internal_resolution="full")
    out = get_model(full).run(jim, full)
    geo = out.geometry
    grid = dec.to_input_grid(out.part_heatmaps, geo)
    rows, cols = dec._crop_axes(geo, geo.height, geo.width)
    exact = apply_cols(apply_rows(grid, rows), cols).argmax(-1)
    assert (dec.part_argmax(out) == exact).mean() > 0.9995


@pytest.mark.parametrize("scale", [1, 3])  # the photo's own grid; capped, labels on the working grid
def test_part_labels_do_not_depend_on_what_was_asked_before(jim, scale):
    """The pipeline asks ``part_argmax`` twice of one output (BodyPix's mask, then the pixels the
    edge stage added), and the labels computed the first time are kept: the second answer must be
    the one a fresh output gives, and the first answer the same pixels' labels of a single call."""
    image = np.kron(jim, np.ones((scale, scale, 1), np.uint8))
    model = get_model(RAW)
    asked, fresh = model.run(image, RAW), model.run(image, RAW)
    assert asked.geometry.capped == (scale > 1)
    prob = dec.person_probability(asked)
    inner = prob > 0.7
    ring = (prob > 0.05) & ~inner  # what an edge stage adds around BodyPix's mask
    assert inner.sum() > 1000 and ring.sum() > 1000
    first = dec.part_argmax(asked, where=inner)
    second = dec.part_argmax(asked, where=ring.view(np.uint8) * np.uint8(255))
    assert np.array_equal(second, dec.part_argmax(fresh, where=ring))
    both = dec.part_argmax(model.run(image, RAW), where=inner | ring)
    if scale == 1:  # on the photo's grid a label does not depend on ``where`` at all
        assert np.array_equal(np.where(inner, both, 255), first)
        assert np.array_equal(np.where(ring, both, 255), second)
    assert np.all(first[~inner] == 255) and np.all(first[inner] < len(PART_NAMES))


def test_huge_photo_is_capped_and_masks_come_out_at_full_size(jim):
    big = np.kron(jim, np.ones((5, 5, 1), np.uint8))  # 4500x2530 = 11 MP, same content
    small = segment(jim, Settings(internal_resolution="full", max_input_pixels=460_000))
    r = segment(big, Settings(internal_resolution="full", max_input_pixels=460_000))
    assert r.person_mask.shape == big.shape[:2]
    assert r.info["capped_to"][0] < big.shape[0]
    down = r.person_mask[2::5, 2::5]
    assert iou(down, small.person_mask) > 0.97


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 2, 3), (3, 700, 3), (700, 2, 4), (40, 30)])
def test_tiny_and_odd_images_give_full_size_results(shape):
    rng = np.random.default_rng(0)
    r = segment(rng.integers(0, 255, shape, dtype=np.uint8), RAW)
    assert r.person_mask.shape == shape[:2] and r.part_map.shape == shape[:2]


def test_photo_without_people_gives_empty_masks_and_says_so():
    sky = np.zeros((300, 400, 3), np.uint8)
    sky[:] = (110, 160, 220)
    r = segment(sky, RAW)
    assert not r.found_person
    assert r.summary()["message"] == "no person found"
    assert np.all(r.part_map == 255)


def test_rgba_grey_and_16bit_inputs_match_rgb(astronaut):
    base = segment(astronaut, RAW).person_mask
    rgba = np.dstack([astronaut, np.zeros(astronaut.shape[:2], np.uint8)])  # alpha is ignored
    assert np.array_equal(segment(rgba, RAW).person_mask, base)
    sixteen = astronaut.astype(np.uint16) * 257
    assert np.array_equal(segment(sixteen, RAW).person_mask, base)
    # a low byte unlike the high one: v = a * 256 + 128 is a / 255 of full scale to within half a step
    # of 8 bits, so it is the same photo (a low-byte read would see flat grey)
    sixteen = astronaut.astype(np.uint16) * 256 + 128
    assert np.array_equal(segment(sixteen, RAW).person_mask, base)
    grey = segment(astronaut.mean(axis=2).astype(np.uint8), RAW)
    assert iou(grey.person_mask, base) > 0.8


def test_progress_reports_and_can_cancel(astronaut):
    seen = []
    segment(astronaut, RAW, progress=lambda f, m: seen.append(f))
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)

    def cancel(f, m):
        if f > 0.3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        segment(astronaut, RAW, progress=cancel)


def test_keypoints_land_on_the_person():
    img, mask = human_seg_pairs(1)[0]
    r = segment(load(img), RAW)
    gt = load(mask)[..., 0] >= 128
    near = 0
    h, w = gt.shape
    # keypoints may lie beyond the frame (an elbow below the bottom edge); judge those inside it
    confident = [k for k in r.poses[0].keypoints if k.score > 0.5 and 0 <= k.x < w and 0 <= k.y < h]
    for k in confident:
        y, x = int(round(k.y)), int(round(k.x))
        window = gt[max(0, y - 10): y + 11, max(0, x - 10): x + 11]
        near += bool(window.any())
    assert confident and near == len(confident)


def test_missing_models_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not installed"):
        segment(np.zeros((20, 20, 3), np.uint8), Settings(multiplier=1.0, quant_bytes=4),
                RuntimeOptions(models=str(tmp_path)))
    assert EVAL.is_dir()


def test_missing_helper_model_names_the_stage_and_how_to_skip_it(tmp_path, models_dir, astronaut):
    (tmp_path / "bodypix").mkdir()
    (tmp_path / "bodypix" / "onnx").symlink_to(models_dir / "bodypix" / "onnx")
    (tmp_path / "selfie_segmentation").symlink_to(models_dir / "selfie_segmentation")
    runtime = RuntimeOptions(models=str(tmp_path))
    with pytest.raises(ModelNotFoundError, match=r"Edge refinement needs .*rvm.*--no-refine"):
        segment(astronaut, Settings(refine="fusion"), runtime)
    with pytest.raises(ModelNotFoundError, match=r"Finger recovery needs .*hand.*--no-fingers"):
        segment(astronaut, Settings(fingers=True), runtime)
    assert segment(astronaut, Settings(), runtime).found_person  # BodyPix alone still works


@pytest.mark.parametrize("megapixels", [None, 12])
def test_the_held_stage_reads_the_same_part_map_sample_without_the_map(monkeypatch, megapixels):
    """``sample_parts`` (the held stage's 65 k-pixel look at the part map, made before the map so
    GIMP's Select Person need not wait for it) equals the whole map shrunk as ``cv2.resize``
    shrinks it, on a P3M portrait at its own size and at 12 MP (the working-grid path)."""
    import cv2
    from bodypix_gimp import pipeline
    from bodypix_gimp.refine import held
    from PIL import Image

    photo = Image.open(sorted((EVAL / "p3m_demo_pseudo" / "images").glob("*.jpg"))[0]).convert("RGB")
    if megapixels:
        scale = (megapixels * 1e6 / (photo.width * photo.height)) ** 0.5
        photo = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.LANCZOS)
    seen = []
    real = pipeline.sample_parts

    def watch(out, mask, parts, size):  # observes the real call's inputs; injects nothing
        seen.append((out, mask.copy(), parts.copy(), size))
        return real(out, mask, parts, size)

    monkeypatch.setattr(pipeline, "sample_parts", watch)
    result = segment(np.asarray(photo), Settings.product())
    (out, mask, parts, size), = seen
    assert size == held.gate_shape(mask.shape)
    whole = cv2.resize(pipeline.final_parts(out, mask, parts), size[::-1], interpolation=cv2.INTER_NEAREST)
    assert np.array_equal(real(out, mask, parts, size), whole)
    assert np.array_equal(pipeline.final_parts(out, mask, parts), result.part_map)
    # the sample met person pixels BodyPix gave no part (the refined edge): its labels were computed
    small_mask = cv2.resize(mask, size[::-1], interpolation=cv2.INTER_NEAREST)
    small_parts = cv2.resize(parts, size[::-1], interpolation=cv2.INTER_NEAREST)
    assert ((small_mask >= 128) & (small_parts == 255)).sum() > 0
    # and ``labels_at`` gives every such pixel of the photo the label the whole map gives it
    missing = (mask >= 128) & (parts == 255)
    iy, ix = np.nonzero(missing)
    want = dec.part_argmax(out, where=missing)[iy, ix]
    assert np.array_equal(dec.labels_at(out, mask.shape, iy, ix), want)
