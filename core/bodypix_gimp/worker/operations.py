"""The plug-in's operations: dialog options -> Settings, one function per operation.

Each operation gets the core's Result for the source rectangle and writes what GIMP should
apply as result files (``protocol.Output``); GIMP only copies them into layers, channels,
selections and paths.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .. import render
from ..bodypix.instances import persons_overlapping
from ..bodypix.poses import skeleton
from ..errors import ChecksumError, ConfigError, ModelNotFoundError
from ..pipeline import segment
from ..result import PART_GROUPS, PART_NAMES, Result, part_ids
from ..runtime.sessions import RuntimeOptions
from ..settings import Settings, settings_from_options
from .cache import ResultCache, digest, key
from .protocol import MULTI_PERSON_OPS, Output, Request, WorkerError

QUALITY = {"fast": {"output_stride": 16}, "accurate": {"output_stride": 8}}


def build_settings(options: dict[str, Any]) -> Settings:
    """Dialog values -> Settings on top of the product defaults (``settings_from_options``).

    quality: "fast" (stride 16) or "accurate" (stride 8); refine / fingers: on or off;
    threshold: 0..1; internal_resolution: low/medium/high/full or a number; include_held: on or
    off.  A bad value is a
    "config" WorkerError.
    """
    quality = options.get("quality", "fast")
    if not isinstance(quality, str) or quality not in QUALITY:
        raise WorkerError(f"quality must be one of {', '.join(QUALITY)}, not {quality!r:.40}", "config")
    threshold = options.get("threshold")
    if "threshold" in options and type(threshold) not in (int, float):  # a string or a list from a script
        raise WorkerError(f"threshold must be a number between 0 and 1, not {threshold!r:.40}", "config")
    try:
        return settings_from_options(
            **QUALITY[quality], threshold=float(threshold) if "threshold" in options else None,
            internal_resolution=options.get("internal_resolution") or None,
            refine=bool(options["refine"]) if "refine" in options else None,
            fingers=bool(options["fingers"]) if "fingers" in options else None,
            soft_edges=bool(options["soft_edges"]) if "soft_edges" in options else None,
            include_held=bool(options["include_held"]) if "include_held" in options else None,
        )
    except (ConfigError, TypeError, ValueError) as e:
        raise WorkerError(str(e).splitlines()[0] if str(e) else "bad options", "config") from None


def intersect(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """Intersection of two (x, y, w, h) rectangles; w or h may come out 0."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x, y, w, h) of the non-zero pixels of a 2-D uint8 or bool array, None when there are none.

    OpenCV's bounding box of an 8-bit image's non-zero pixels: one pass, no temporaries
    (numpy's ``any`` per axis took ~12 ms at 12 MP, this ~2 ms).
    """
    if mask.size == 0:
        return None
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8) if mask.dtype == np.bool_ else mask)
    return (int(x), int(y), int(w), int(h)) if w and h else None


def any_selected(mask: np.ndarray) -> bool:
    """Whether any pixel is selected (>= 128, GIMP's rule for a hard selection)."""
    return mask.size > 0 and int(mask.max()) >= 128




@dataclass
class Job:
    """One request after segmenting: what every operation reads and where it writes."""

    req: Request
    res: Result
    settings: Settings
    selection: np.ndarray | None
    out: Output
    local: tuple[int, int, int, int]  # the part of the source inside the target, in source pixels
    origin: tuple[int, int]  # image position of that part's top-left corner


def add_tight(job: Job, name: str, mask: np.ndarray) -> None:
    """``mask`` within the target, cut to the box of its non-zero pixels (soft edges included).

    GIMP writes the item into an empty canvas-sized channel (selection) or a black layer mask,
    so the pixels outside the box are 0 either way; a tight box only moves fewer bytes (at
    12 MP a face is about 2 % of the canvas instead of 12 MB written through GIMP's tiles).
    """
    lx, ly, tw, th = job.local
    box = bbox(mask[ly : ly + th, lx : lx + tw])
    bx, by, bw, bh = box if box is not None else (0, 0, 0, 0)  # nobody inside the target: an empty item
    job.out.add(name, mask, (lx + bx, ly + by, bw, bh))


def select_person(job: Job) -> None:
    """The person mask; with a selection, only the people it touches."""
    mask = job.res.person_mask
    if job.selection is not None:
        mask = persons_overlapping(mask, job.selection, job.res.instance_map)
        if not any_selected(mask):
            raise WorkerError("No person overlaps the selection. Nothing was changed.", "empty")
    add_tight(job, "person", mask)


def select_parts(job: Job) -> None:
    """The chosen parts or part groups; with a selection, of the people it touches only."""
    req, res = job.req, job.res
    if req.parts in ([], ["person"]):
        mask = res.person_mask
    else:
        wanted = np.zeros(256, np.uint8)  # part id -> 255 for the chosen parts (a lookup, not np.isin)
        wanted[part_ids(req.parts)] = 255
        mask = cv2.LUT(res.part_map, wanted)  # = wanted[part_map]; ~150 ms -> ~5 ms at 12 MP
    if job.selection is not None:
        chosen = persons_overlapping(res.person_mask, job.selection, res.instance_map)
        mask = np.where(chosen >= 128, mask, np.uint8(0))
    if not any_selected(mask):
        names = ", ".join(req.parts or ["person"])
        raise WorkerError(f"None of these parts was found: {names}. Nothing was changed.", "empty")
    add_tight(job, "parts", mask)


def parts_to_layers(job: Job) -> dict[str, Any]:
    """One tight mask per present part, the coloured part map and the person mask."""
    res, out = job.res, job.out
    lx, ly, tw, th = job.local
    tx, ty = job.origin
    region = res.part_map[ly : ly + th, lx : lx + tw]
    counts = np.bincount(region.ravel(), minlength=256)
    for pid in np.flatnonzero(counts[: len(PART_NAMES)]):
        m = region == pid
        bx, by, bw, bh = bbox(m)  # type: ignore[misc]
        crop = np.where(m[by : by + bh, bx : bx + bw], np.uint8(255), np.uint8(0))
        color = [int(c) for c in render.RAINBOW_PART_COLORS[pid]]
        out.add(
            part_label(PART_NAMES[pid]),
            crop,
            (0, 0, bw, bh),
            origin=(tx + bx, ty + by),
            kind="part",
            part=PART_NAMES[pid],
            color=color,
            pixels=int(counts[pid]),
        )
    colored = render.colored_part_mask(region, background=(0, 0, 0))
    alpha = np.where(region != 255, np.uint8(255), np.uint8(0))
    out.add("part map", np.dstack([colored, alpha]), (0, 0, tw, th), origin=(tx, ty), kind="part-map")
    out.add("person", res.person_mask, job.local, kind="person")
    return {"groups": {g: [part_label(n) for n in names] for g, names in PART_GROUPS.items()}}


def persons_to_layers(job: Job) -> None:
    persons_to_items(job.res, job.out, job.req, job.local, job.origin)


def pose_to_path(job: Job) -> None:
    job.out.items.extend(pose_paths(job.res, job.req, job.settings.min_keypoint_score))


# op name (protocol.OPS) -> operation; an operation may return extra keys for the result line
OPERATIONS: dict[str, Callable[[Job], dict[str, Any] | None]] = {
    "select-person": select_person,
    "person-mask": select_person,
    "select-parts": select_parts,
    "parts-to-layers": parts_to_layers,
    "persons-to-layers": persons_to_layers,
    "pose-to-path": pose_to_path,
}


# The model server's recent results (worker/cache.py): Select Person, then Hands, then Face on
# the same unchanged layer segment once. One per process, like the loaded models.
CACHE = ResultCache()


def segment_cached(
    req: Request,
    rgba: np.ndarray,
    settings: Settings,
    progress: Callable[[float, str], None],
    pixel_digest: bytes | None = None,
    early: Callable[[Result], None] | None = None,
) -> tuple[Result, dict[str, Any]]:
    """``segment()``, or the result of an earlier call on the very same pixels and settings.

    ``pixel_digest``: ``cache.digest`` of ``rgba``'s bytes when the caller hashed them already
    (the server hashes the pixels while they arrive); else they are hashed here.
    Returns the result and {"cache": "hit" | "miss", "timings_ms": ...}; on a hit the timings
    are this call's (the key), not those of the call that computed the result.
    ``early``: passed to ``segment`` on a miss (``run``'s early answer).
    """
    t0 = time.perf_counter()
    k = key(pixel_digest or digest(rgba), rgba.shape, settings, req.models)
    res = CACHE.get(k, need_persons=settings.multi_person)
    key_ms = round((time.perf_counter() - t0) * 1000, 1)
    if res is not None:
        progress(1.0, "Done (the same pixels as before)")
        return res, {"cache": "hit", "timings_ms": {"cache_key": key_ms, "total": key_ms}}
    try:
        # people told apart always (about 1 % more time at 12 MP): after Select Person the
        # selection holds the person, so the next click (Hands, inside that selection) needs them
        res = segment(rgba, settings.replace(multi_person=True), RuntimeOptions(models=req.models), progress=progress,
                      early=early)
    except (ModelNotFoundError, ChecksumError) as e:
        raise WorkerError(str(e), "model") from None
    CACHE.put(k, res)
    timings = {k: round(v, 1) for k, v in res.timings.items()}
    timings["cache_key"] = key_ms
    timings["total"] = round(timings.get("total", 0.0) + key_ms, 1)
    return res, {"cache": "miss", "timings_ms": timings}


# Operations that need only the person mask and the part map when no selection narrows them
# to some people: they can answer before the people are told apart (``run``'s ``reply``).
EARLY_OPS = ("select-person", "person-mask", "select-parts")


def run(
    req: Request,
    rgba: np.ndarray,
    selection: np.ndarray | None,
    progress: Callable[[float, str], None],
    settings: Settings | None = None,
    pixel_digest: bytes | None = None,
    reply: Callable[[dict[str, Any]], None] | None = None,
) -> dict | None:
    """Compute what ``req.op`` asks for and write it; returns the result description.

    ``settings``: ``build_settings(req.options)`` when the server has made them already (once
    per request); ``pixel_digest``: the pixels' ``cache.digest`` when the server hashed them
    as they arrived.  ``reply(description)``: where the server can answer before the work is
    done: an operation in EARLY_OPS without a selection is answered (its files written,
    ``reply`` called) as soon as the person mask and part map are final, then the people are
    told apart for the result cache (the next click, inside the new selection, needs them),
    and None is returned.  The files are those the whole pipeline's result gives: nothing
    after that point changes the mask or the part map (``segment``'s ``early``).
    """
    settings = settings or build_settings(req.options)
    if selection is not None or req.op in MULTI_PERSON_OPS:  # these need to tell people apart
        settings = settings.replace(multi_person=True)
    if req.op == "select-parts":
        try:  # a typo in a part name fails before BodyPix runs
            part_ids(req.parts or ["person"])
        except ValueError as e:
            raise WorkerError(str(e), "config") from None
    answered = False

    def early(partial: Result) -> None:
        nonlocal answered
        timings = {k: round(v, 1) for k, v in partial.timings.items()}
        try:
            summary = answer(req, partial, settings, selection, {"cache": "miss", "timings_ms": timings})
        except WorkerError:
            return  # no person, no such part: said after the whole pipeline, as without an early answer
        summary["early"] = True
        answered = True
        reply(summary)  # type: ignore[misc]

    use_early = reply is not None and selection is None and req.op in EARLY_OPS
    res, cache = segment_cached(req, rgba, settings, progress, pixel_digest, early if use_early else None)
    if answered:
        return None
    return answer(req, res, settings, selection, cache)


def answer(req: Request, res: Result, settings: Settings, selection: np.ndarray | None,
           cache: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """``req.op`` on a segmentation: writes its files; returns the result description."""
    if not any_selected(res.person_mask):  # = res.found_person, without a 12 MB temporary
        raise WorkerError(
            f"No person found in '{req.label}'. Nothing was changed. "
            "Try a lower threshold or the accurate quality.",
            "empty",
        )
    sx, sy = req.source_rect[:2]
    tx, ty, tw, th = intersect(req.source_rect, req.target_rect)
    job = Job(req, res, settings, selection, Output(req.outdir, (sx, sy)), (tx - sx, ty - sy, tw, th), (tx, ty))
    summary: dict[str, Any] = {"timings_ms": cache["timings_ms"], "cache": cache["cache"]}
    summary.update(OPERATIONS[req.op](job) or {})
    summary["items"] = job.out.items
    return summary


def require_persons(res: Any, label: str) -> None:
    """Person pixels but no pose confident enough to make a person: say so, change nothing."""
    if not res.persons:
        raise WorkerError(
            f"BodyPix found person pixels in '{label}' but could not tell people apart (no confident pose). "
            "Nothing was changed. Use Select Person for the whole mask.",
            "empty",
        )


def persons_to_items(
    res: Any, out: Output, req: Request, local: tuple[int, int, int, int], origin: tuple[int, int]
) -> None:
    """One tight mask item per person ("Person 1" leftmost), cropped to the target.

    Each mask is the core's ``Person.mask`` (the final mask on that person's pixels), so the
    layers and channels partition the person mask the way the core's instances do.
    """
    require_persons(res, req.label)
    lx, ly, tw, th = local
    for p in res.persons:
        # the person's box (source pixels) within the part of the source inside the target
        x0, y0 = max(p.bbox[0], lx), max(p.bbox[1], ly)
        x1, y1 = min(p.bbox[2], lx + tw), min(p.bbox[3], ly + th)
        if x1 <= x0 or y1 <= y0:
            continue  # this person lies outside the canvas (a layer hanging over its edge)
        mine = res.instance_map[y0:y1, x0:x1] == p.index
        crop = np.where(mine, res.person_mask[y0:y1, x0:x1], np.uint8(0))
        box = bbox(crop)
        if box is None:
            continue
        color = [int(c) for c in PERSON_COLORS[(p.index - 1) % len(PERSON_COLORS)]]
        out.add(
            f"Person {p.index}",
            crop,
            box,
            origin=(origin[0] + x0 - lx, origin[1] + y0 - ly),
            kind="person",
            index=p.index,
            color=color,
            pixels=int(mine.sum()),
        )
    if not out.items:
        raise WorkerError(f"Nobody in '{req.label}' lies inside the canvas. Nothing was changed.", "empty")


# Distinct colours for "Person k" layers and channels (Okabe-Ito, readable for colour-blind users).
PERSON_COLORS = np.array(
    [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0), (204, 121, 167)],
    np.uint8,
)


def pose_paths(res: Any, req: Request, min_score: float) -> list[dict[str, Any]]:
    """Per person with a confident skeleton: ``{"kind": "pose", "name": "Pose k", "segments"}``.

    ``segments`` are the body-pix skeleton's adjacent-keypoint edges whose two keypoints both
    score above ``min_score`` (``poses.skeleton``), as [x0, y0, x1, y1] in image coordinates;
    "Pose k" belongs to "Person k".  No file: GIMP makes one open stroke per segment.
    """
    require_persons(res, req.label)
    sx, sy = req.source_rect[:2]
    items = []
    for p in res.persons:
        bones = skeleton(p.pose, min_score=min_score)
        if bones:
            segments = [[x0 + sx, y0 + sy, x1 + sx, y1 + sy] for (x0, y0), (x1, y1) in bones]
            items.append({"name": f"Pose {p.index}", "kind": "pose", "index": p.index, "segments": segments})
    if not items:
        raise WorkerError(
            f"No confident pose found in '{req.label}' (no keypoint pair scores above {min_score}). "
            "Nothing was changed.",
            "empty",
        )
    return items


def part_label(name: str) -> str:
    """``left_hand`` -> ``left hand``: the names users see on layers and channels."""
    return name.replace("_", " ")
