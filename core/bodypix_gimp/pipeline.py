"""``segment``: photo in, full-resolution person mask, part map and poses out.

Stages, each a plain array function so the evaluation harness can combine them freely:

1. BodyPix forward pass (``bodypix``), decoded at full resolution (``decode``).
2. Edge refinement (``refine.edges``) when ``Settings.refine`` names a method.
3. Finger recovery (``refine.fingers``) when ``Settings.fingers`` is on; it receives the part
   map (255 outside BodyPix's own mask) and labels the fingers it adds as hand.
4. Parts are the BodyPix part argmax restricted to the final person mask: pixels the stages
   added get their argmax too, so every person pixel has a part and no part lies outside
   the person, whatever the stages changed.
5. Held objects (``refine.held``) when ``Settings.include_held`` is set: each object a person
   holds wholly in the mask or wholly out, and no body part on it (255 in the part map).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import cv2
import numpy as np

from .bodypix import decode
from .bodypix import poses as poses_mod
from .bodypix.instances import build_persons, split_takes_closer
from .bodypix.model import BodyPixModel, BodyPixOutput, looks_closer
from .errors import ModelNotFoundError
from .imageio import as_rgb
from .refine import crops, edges, fingers, held
from .result import Pose, Progress, Result
from .runtime.sessions import RuntimeOptions
from .settings import Settings

# The instance split's closer look: BodyPix at internal resolution "full" on at most this many pixels.
CLOSER_PIXELS = 250_000
_models: dict[tuple[object, ...], BodyPixModel] = {}


def get_model(settings: Settings, runtime: RuntimeOptions | None = None) -> BodyPixModel:
    """A BodyPix model for these settings, created once per process and reused."""
    runtime = runtime or RuntimeOptions()
    key = (settings.model_name, settings.architecture, runtime)
    model = _models.get(key)
    if model is None:
        model = _models[key] = BodyPixModel(settings, runtime)
    return model


@contextmanager
def _stage_needs_models(stage: str, how_to_skip: str) -> Iterator[None]:
    """A helper model missing for an optional stage: say which stage needs it and how to skip it."""
    try:
        yield
    except ModelNotFoundError as e:
        message = f"{stage} needs a model that is missing: {e} To run without it: {how_to_skip}."
        raise ModelNotFoundError(message) from None


def refine_edges(
    model: BodyPixModel, rgb: np.ndarray, prob: np.ndarray, poses: list[Pose], settings: Settings,
    runtime: RuntimeOptions, small: np.ndarray | None = None, peers: Callable[[], tuple] | None = None,
) -> np.ndarray:
    """The edge stage: ``settings.refine``'s method on BodyPix's probability.

    ``small``: the photo's working copy (``edges.small_copy``) when ``segment`` has made it;
    ``prob`` may then be on its grid; ``peers``: ``edges.start_peers``'s function for it.
    For the methods that take BodyPix's second opinion (``refine.fusion``), BodyPix runs once
    more, at internal resolution "high", on a smaller copy of it, and the edge stage gets that
    probability as an array.
    """
    sharp = None
    if settings.refine in edges.JUDGED_METHODS:
        small = edges.small_copy(rgb) if small is None else small
        high = settings.replace(internal_resolution="high")
        sharp = decode.person_probability(model.run(edges.opinion_photo(small), high))
    return edges.refine(rgb, prob, settings, runtime, poses, sharp, small, peers)


def final_parts(out: BodyPixOutput, mask: np.ndarray, parts: np.ndarray) -> np.ndarray:
    """The part map on the final ``mask``: BodyPix's ``parts`` (255 where it has none), and the
    argmax of the person pixels the stages added, restricted to the person."""
    # Full-size passes as uint8 OpenCV operations (threaded, no bool temporaries): person pixels
    # (mask >= 128) without a part (255).
    missing = cv2.bitwise_and(cv2.threshold(mask, 127, 255, cv2.THRESH_BINARY)[1],
                              cv2.threshold(parts, 254, 255, cv2.THRESH_BINARY)[1])
    if cv2.countNonZero(missing):
        # part_argmax gives 255 outside ``missing``, where ``parts`` is kept; inside, parts is 255
        parts = cv2.min(parts, decode.part_argmax(out, where=missing))
    del missing
    return decode.mask_parts(parts, mask)


def sample_parts(out: BodyPixOutput, mask: np.ndarray, parts: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``final_parts(out, mask, parts)`` shrunk to ``size`` by nearest neighbour (the pixels
    ``cv2.resize`` takes), computed on those pixels only: the held-object stage reads the part
    map on a 65 k-pixel grid, and making the whole map first cost ~35 ms at 12 MP."""
    H, W = mask.shape
    iy = cv2.resize(np.arange(H, dtype=np.int32)[:, None], (1, size[0]), interpolation=cv2.INTER_NEAREST)[:, 0]
    ix = cv2.resize(np.arange(W, dtype=np.int32)[None, :], (size[1], 1), interpolation=cv2.INTER_NEAREST)[0]
    person = mask[iy[:, None], ix] >= 128
    found = parts[iy[:, None], ix]
    yy, xx = np.nonzero(person & (found == 255))
    if len(yy):
        found[yy, xx] = decode.labels_at(out, (H, W), iy[yy].astype(np.intp), ix[xx].astype(np.intp))
    found[~person] = 255
    return found


def segment(
    image: np.ndarray,
    settings: Settings | None = None,
    runtime: RuntimeOptions | None = None,
    progress: Progress | None = None,
    early: Callable[[Result], None] | None = None,
) -> Result:
    """Segment the people in ``image`` (HxW[x3|x4] uint8) with the full pipeline.

    ``settings`` default to the product's best pipeline (``Settings.product()``, what the CLI
    and GIMP run); ``Settings.bodypix_faithful()`` is raw body-pix 2.x.
    ``progress(fraction, message)`` is called between stages; raising from it cancels.
    ``early(result)`` is called once the person mask and the part map are final, before people
    are told apart (no ``persons``, no ``instance_map`` yet; the same arrays the returned Result
    holds): a caller that needs only those can answer then (the GIMP worker's Select entries).
    """
    settings = settings or Settings.product()
    runtime = runtime or RuntimeOptions()
    report = progress or (lambda f, m: None)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = (now - clock) * 1000.0
        clock = now

    report(0.0, "Loading BodyPix")
    rgb = as_rgb(image)
    model = get_model(settings, runtime)
    lap("load")
    report(0.1, "Running BodyPix")
    small = peers = None
    if settings.refine not in ("none", "snake"):
        # The edge stage's working copy; for a large photo it is also the network's capped input,
        # so the photo is area-shrunk once.  The edge stage's peer networks start on it now.
        small = edges.small_copy(rgb)
        peers = edges.start_peers(small, settings.refine, runtime)
    out = model.run(rgb, settings, small)  # the cached model may have been loaded with other knobs
    lap("network")
    report(0.4, "Decoding masks")
    min_pose = settings.score_threshold if settings.min_pose_score is None else settings.min_pose_score

    def decode_poses(heads: BodyPixOutput) -> list[poses_mod.RawPose]:
        return poses_mod.decode_crowd(heads, settings.max_detections, settings.score_threshold,
                                      settings.nms_radius, min_pose, settings.crowd_detections or 0)

    raw_poses = decode_poses(out)
    own = settings.replace(max_work_pixels=None)
    if poses_mod.is_group(raw_poses, min_pose) and looks_closer(out.geometry, own):
        # a group in a large photo: BodyPix at the photo's own input (its people are small)
        out = model.run(rgb, own, small)
        raw_poses = decode_poses(out)
    poses = [poses_mod.to_photo(r, out.geometry) for r in raw_poses]  # body-pix segmentPerson's allPoses
    if small is not None and small.shape[:2] != rgb.shape[:2]:
        # A large photo: the edge stage needs BodyPix's probability on its working grid only, so
        # it is decoded there (no full-size float probability; the Result recomputes it if it is
        # asked for), and the part map, inside BodyPix's mask, is that grid's labels scaled up.
        prob = decode.person_probability(out, small.shape[:2])
        parts = decode.scaled_labels(out, small.shape[:2], prob > settings.segmentation_threshold, rgb.shape[:2])
    else:
        prob = decode.person_probability(out)
        mask = (prob > settings.segmentation_threshold).view(np.uint8)  # 0/1, then 0/255 in place
        mask *= np.uint8(255)
        if settings.refine == "none":
            prob = None
        # Parts are needed inside the person only; pixels later stages add are filled below.
        parts = decode.part_argmax(out, where=mask)
    lap("decode")
    info: dict[str, object] = {"model": settings.model_name, "input_size": [out.geometry.input_height,
                                                                             out.geometry.input_width]}
    if out.geometry.capped:
        info["capped_to"] = [out.geometry.work_height, out.geometry.work_width]

    if settings.refine != "none":
        report(0.55, "Refining edges")
        with _stage_needs_models("Edge refinement", "--no-refine, or untick 'Refine edges' in GIMP"):
            mask = refine_edges(model, rgb, prob, poses, settings, runtime, small, peers)
        lap("refine")
    if settings.look_again:
        mask, looked = crops.look_again(rgb, mask, poses, lambda crop, r: decode.person_probability(
            model.run(crop, settings.replace(internal_resolution=r))), settings.soft_edges)
        if looked["looked_at"]:
            info["look_again"] = looked
        lap("look_again")
    del prob, small, peers
    if settings.fingers:
        report(0.75, "Recovering fingers")
        with _stage_needs_models("Finger recovery", "--no-fingers, or untick 'Recover fingers' in GIMP"):
            mask, parts, hand_info = fingers.recover_fingers(rgb, mask, parts, poses, settings, runtime)
        info["hands"] = hand_info
        lap("fingers")
    # made when first asked for (the held stage's sample and GIMP's Select Person need not wait for it)
    part_map: np.ndarray | Callable[[], np.ndarray] = functools.cache(functools.partial(final_parts, out, mask, parts))
    if settings.include_held is not None:  # each held object wholly in or out, with no part
        gate = sample_parts(out, mask, parts, held.gate_shape(mask.shape))
        mask, part_map, objects = held.decide_held(rgb, mask, part_map, poses, settings.include_held, runtime, gate)
        if objects:
            info["held_objects"] = objects
        lap("held")
    if early is not None:  # no stage after this line changes the mask or the part map
        # The part map is made only if the callback asks for it (GIMP's Select Person does not).
        early(Result(mask, lambda: decode.person_probability(out), part_map, poses,
                     {**timings, "total": sum(timings.values())}, dict(info)))
        clock = time.perf_counter()  # the callback's own time is no stage's
    if callable(part_map):
        part_map = part_map()
    lap("parts")
    persons, instance_map = [], None
    if settings.multi_person:
        report(0.9, "Separating people")
        split, split_poses = out, raw_poses
        if settings.look_again:  # a closer look, for people "medium" is unsure of (split_takes_closer)
            near = model.run(rgb, settings.replace(internal_resolution="full", max_input_pixels=CLOSER_PIXELS))
            closer = poses_mod.decode_raw(near, settings.max_detections, settings.score_threshold, settings.nms_radius)
            if split_takes_closer(raw_poses, closer, min_pose):
                split, split_poses = near, closer
        persons, instance_map, info["instances"] = build_persons(
            split, split_poses, mask, part_map, min_pose, settings.refine_steps, settings.min_keypoint_score,
            specks=settings.look_again)
        lap("persons")
    timings["total"] = sum(timings.values())
    report(1.0, "Done")
    return Result(mask, lambda: decode.person_probability(out), part_map, poses, timings, info, persons,
                  instance_map)
