"""Our core against the real TF.js body-pix 2.2.1 (Node, cpu backend) on real photos.

Same pixels go to both sides (our decoder's output is handed to Node as .npy), with the same
body-pix settings.  Bars: person-mask IoU >= 0.9995, part-label agreement >= 99.8 % inside the
mask, keypoints within 0.01 px for keypoints the reference scores above 0.5 (just outside what
is measured; issue 2 asked for 0.995 / 99 % / 2 px).

Stride 8 is special: the official TF.js graphs run their dilated layers with an asymmetric
(d, 1) dilation (converter bug, shared/models/bodypix/README.md pitfall 2); our ONNX files use
the intended (d, d).  So at stride 8 we check (a) that the reference given the symmetric
dilation equals our output, and (b) that the unpatched official runtime really differs and is
further from the ground-truth masks than we are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from bodypix_gimp import Settings, segment
from bodypix_gimp.runtime.sessions import RuntimeOptions
from bodypix_gimp.settings import parse_model_name
from conftest import EVAL, MODELS, iou, load
from reference import tfjs

pytestmark = pytest.mark.reference

# ~0.25 MP real photos: one person, one person with a wide aspect (horizontal padding), a tall
# photo (vertical padding), and two people side by side.
PHOTOS = ("074", "100", "148", "266")
# Bars just outside what is measured (2026-11-30, TF.js cpu backend, onnxruntime on x86-64): person
# IoU >= 0.99992 on every photo and setting (README: 0.99998-1.0), part agreement >= 0.9984
# (266 at stride 8), worst keypoint 0.004 px.  Issue 2's original targets were 0.995 / 0.99 / 2 px.
MIN_IOU = 0.9995
MIN_PART_AGREEMENT = 0.998
MAX_KEYPOINT_PX = 0.01
KEYPOINT_SCORE = 0.5


@dataclass(repr=False)
class Case:
    name: str
    image: np.ndarray
    truth: np.ndarray  # ground-truth person mask 0/255

    def __repr__(self) -> str:
        return f"Case({self.name}, {self.image.shape})"


@pytest.fixture(scope="module")
def photos() -> list[Case]:
    folder = EVAL / "human_seg_300"
    return [Case(n, load(folder / "images" / f"{n}.jpg"), load_mask(folder / "masks" / f"{n}.png")) for n in PHOTOS]


def load_mask(path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("L"))


def settings_for(model: str, **changes) -> Settings:
    # The raw BodyPix output: no refinement, no fingers, body-pix's defaults otherwise.
    return Settings(**parse_model_name(model), refine="none", fingers=False, soft_edges=False, **changes)


def reference(cases, settings: Settings, **kw) -> list[tfjs.ReferenceResult]:
    return tfjs.run([c.image for c in cases], settings.model_name, tfjs.bodypix_config(settings), models=MODELS, **kw)


def ours(case: Case, settings: Settings):
    return segment(case.image, settings, RuntimeOptions(models=str(MODELS)))


def part_agreement(our_parts: np.ndarray, our_mask: np.ndarray, ref_parts: np.ndarray) -> float:
    """Share of pixels inside both person masks where the part ids agree."""
    inside = (our_mask >= 128) & (ref_parts >= 0)
    if not inside.any():
        return 1.0
    return float((our_parts[inside].astype(np.int16) == ref_parts[inside]).mean())


def compare_masks(cases, settings, refs) -> list[tuple[str, float, float]]:
    rows = []
    for case, ref in zip(cases, refs, strict=True):
        res = ours(case, settings)
        rows.append((case.name, iou(res.person_mask, ref.person * 255),
                     part_agreement(res.part_map, res.person_mask, ref.parts)))
    return rows


@pytest.mark.parametrize("model", ["mobilenet075-quant2-stride16", "mobilenet050-float-stride16"])
def test_person_mask_and_parts_match_reference(photos, model):
    settings = settings_for(model)
    rows = compare_masks(photos, settings, reference(photos, settings))
    print(model, rows)
    for name, mask_iou, agree in rows:
        assert mask_iou >= MIN_IOU, f"{model} {name}: person IoU {mask_iou:.4f} vs TF.js"
        assert agree >= MIN_PART_AGREEMENT, f"{model} {name}: part agreement {agree:.4f} vs TF.js"


@pytest.fixture(scope="module")
def small_photos() -> list[Case]:
    # CIHP samples (300x200 and 576x313): cheap on the pure-JS backend even at full resolution.
    folder = EVAL / "cihp_samples" / "images"
    return [Case(n, load(folder / f"{n}.jpg"), np.zeros(0, np.uint8)) for n in ("0002190", "0005008")]


@pytest.mark.parametrize("resolution", ["full", 1.3, 0.35])
def test_other_internal_resolutions_match_reference(small_photos, resolution):
    # Other input sizes exercise other padding and rounding paths of padAndResizeTo.
    settings = settings_for("mobilenet075-quant2-stride16", internal_resolution=resolution)
    cases = small_photos
    rows = compare_masks(cases, settings, reference(cases, settings))
    print(resolution, rows)
    for name, mask_iou, agree in rows:
        assert mask_iou >= MIN_IOU, f"{resolution} {name}: person IoU {mask_iou:.4f} vs TF.js"
        assert agree >= MIN_PART_AGREEMENT, f"{resolution} {name}: part agreement {agree:.4f} vs TF.js"


def test_hd_photo_matches_reference():
    # A 1080p portrait (2 MP): large upsampling factors in the decode, still below the input cap.
    photo = EVAL / "p3m_demo_pseudo" / "images" / "p_09ba26b4.jpg"
    case = Case(photo.stem, load(photo), np.zeros(0, np.uint8))
    settings = settings_for("mobilenet075-quant2-stride16")
    (name, mask_iou, agree), = compare_masks([case], settings, reference([case], settings))
    print(name, mask_iou, agree)
    assert mask_iou >= MIN_IOU and agree >= MIN_PART_AGREEMENT, (name, mask_iou, agree)


def test_12mp_photo_matches_reference_with_the_input_cap_lifted():
    # Our pipeline caps the network input (Settings.max_input_pixels); lifted, a 12 MP photo
    # must give TF.js's mask (wasm backend: same masks as cpu, and affordable at this size).
    from bodypix_gimp.evaluate.bench import resized_photo

    photo = EVAL / "p3m_demo_pseudo" / "images" / "p_d684dae3.jpg"
    case = Case(photo.stem, resized_photo(load(photo), 12), np.zeros(0, np.uint8))
    settings = settings_for("mobilenet075-quant2-stride16", max_input_pixels=150_000_000)
    (ref,) = reference([case], settings, backend="wasm", parts=False)
    res = ours(case, settings)
    assert not res.info.get("capped_to")
    mask_iou = iou(res.person_mask, ref.person * 255)
    print(case.name, case.image.shape, mask_iou)
    assert mask_iou >= MIN_IOU


def keypoint_errors(our_pose, ref_pose) -> dict[str, float]:
    """Distance in photo pixels per keypoint the reference is confident about."""
    mine = {k.part: k for k in our_pose.keypoints}
    out = {}
    for rk in ref_pose["keypoints"]:
        if rk["score"] > KEYPOINT_SCORE:
            k = mine[rk["part"]]
            out[rk["part"]] = float(np.hypot(k.x - rk["x"], k.y - rk["y"]))
    return out


def check_poses(model: str, case: Case, res, ref) -> None:
    """Every confident reference pose (score > 0.5) has its twin at the same rank in ours."""
    confident = [p for p in ref.poses if p["score"] > KEYPOINT_SCORE]
    assert confident, f"{case.name}: the reference found no confident pose; pick another photo"
    assert len(res.poses) >= len(confident), f"{case.name}: {len(res.poses)} poses, TF.js {len(ref.poses)}"
    for rank, ref_pose in enumerate(confident):
        errors = keypoint_errors(res.poses[rank], ref_pose)
        worst = max(errors, key=errors.get)
        print(model, case.name, f"pose {rank}: {len(errors)} keypoints, worst {worst} {errors[worst]:.3f} px")
        assert errors[worst] <= MAX_KEYPOINT_PX, f"{model} {case.name} pose {rank}: {worst} {errors[worst]:.1f} px off"
        assert abs(res.poses[rank].score - ref_pose["score"]) < 0.01, f"{case.name}: pose {rank} score"


@pytest.mark.parametrize("model", ["mobilenet075-quant2-stride16", "mobilenet050-float-stride16"])
def test_keypoints_match_reference(photos, model):
    # segmentPerson's allPoses come from PoseNet's multi-pose decoder, best pose first.
    settings = settings_for(model)
    for case, ref in zip(photos, reference(photos, settings), strict=True):
        check_poses(model, case, ours(case, settings), ref)


@pytest.mark.parametrize("model", ["mobilenet075-quant2-stride8", "mobilenet050-float-stride8"])
def test_stride8_matches_reference_with_symmetric_dilation(photos, model):
    settings = settings_for(model)
    refs = reference(photos, settings, fix_dilations=True)
    assert all(r.record["dilation_layers_patched"] == 7 for r in refs)  # all dilated layers
    rows = compare_masks(photos, settings, refs)
    print(model, rows)
    for name, mask_iou, agree in rows:
        assert mask_iou >= MIN_IOU, f"{model} {name}: person IoU {mask_iou:.4f} vs patched TF.js"
        assert agree >= MIN_PART_AGREEMENT, f"{model} {name}: part agreement {agree:.4f} vs patched TF.js"
    for case, ref in zip(photos, refs, strict=True):
        check_poses(model, case, ours(case, settings), ref)


@pytest.mark.parametrize("model", ["mobilenet075-quant2-stride8", "mobilenet050-float-stride8"])
def test_stride8_official_runtime_is_worse_than_ours(photos, model):
    # The documented difference: with the asymmetric dilation TF.js's masks differ from ours
    # and are further from the ground truth on every photo.
    settings = settings_for(model)
    refs = reference(photos, settings, parts=False)
    rows = []
    for case, ref in zip(photos, refs, strict=True):
        res = ours(case, settings)
        rows.append((case.name, iou(res.person_mask, ref.person * 255), iou(res.person_mask, case.truth),
                     iou(ref.person * 255, case.truth)))
    print(model, rows)
    assert np.mean([r[1] for r in rows]) < 0.95, "the unpatched TF.js stride-8 masks should differ from ours"
    for name, _, mine, theirs in rows:
        assert mine > theirs, f"{model} {name}: ours IoU {mine:.3f} vs truth, TF.js {theirs:.3f}"
    assert np.mean([r[2] - r[3] for r in rows]) > 0.05
