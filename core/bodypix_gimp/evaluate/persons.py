"""Measure person instances (``Settings(multi_person=True)``) on the shared evaluation photos.

Prints, and writes as JSON + markdown (default ``reports/persons.{json,md}``):

* natural group photos (../shared/eval/human_seg_300 multi-person photos and all of
  ../shared/eval/cihp_samples): people in the ground truth vs instances found -> missed /
  extra people, exact-count rate.  Their masks are semantic (all people share one label),
  so people are counted by hand (``GT_PEOPLE`` below: every person the ground-truth mask
  covers, looked up by eye on the mask; people the mask leaves out are not counted).
* the one-person photos of human_seg_300: extra instances on a photo with one person.
* composed group photos (one-person photos side by side, rows of 2, 3 and 5): the true
  instances are known, so instance-level IoU is measured (Hungarian matching,
  scipy.optimize.linear_sum_assignment), and a person counts as found when matched with
  IoU >= 0.5.
* time per photo: the one-person pipeline (``multi_person=False``) vs with instances, same
  process, interleaved, median over the natural group photos.

Usage: ``bodypix-gimp eval-persons [--quick] [--product] [--out DIR]``.
"""

from __future__ import annotations

import os
import statistics
import time
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from ..imageio import load_image
from ..pipeline import segment
from ..settings import Settings
from .datasets import Dataset, open_dataset

ROOT = Path(__file__).resolve().parents[3]
EVAL = Path(os.environ.get("BODYPIX_SHARED", ROOT.parent / "shared")) / "eval"
HS = EVAL / "human_seg_300"

# People covered by each ground-truth mask, counted by eye (see the module docstring).
GT_PEOPLE = {
    "human_seg_300/061": 2, "human_seg_300/089": 2, "human_seg_300/090": 2, "human_seg_300/094": 2,
    "human_seg_300/105": 2, "human_seg_300/163": 2, "human_seg_300/265": 3, "human_seg_300/266": 3,
    "human_seg_300/267": 4, "human_seg_300/272": 3, "human_seg_300/276": 2, "human_seg_300/280": 3,
    "human_seg_300/289": 2, "human_seg_300/300": 2,
    "cihp_samples/0002190": 2, "cihp_samples/0005008": 7, "cihp_samples/0012008": 3,
    "cihp_samples/0026375": 3, "cihp_samples/0032190": 2,
}
# One-person photos with a clean background, used to compose group photos with known instances.
COMPOSE_FROM = ["129", "130", "131", "132", "133", "135", "137", "138", "143", "144", "145", "142",
                "119", "122", "128", "134", "136", "139", "140", "141"]
TILE = (240, 320)


@cache
def dataset(folder: str) -> Dataset:
    """One evaluation folder under ``EVAL`` (``datasets.open_dataset``), opened once."""
    return open_dataset(EVAL / folder)


def photo_path(key: str) -> Path:
    """``"human_seg_300/061"`` -> that photo's path."""
    folder, stem = key.split("/")
    return dataset(folder).photo(stem)


def compose(names: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Photos side by side and each person's ground-truth mask in the composed photo."""
    photos, gts = [], []
    for i, n in enumerate(names):
        sample = dataset(HS.name).sample(n)
        photos.append(cv2.resize(sample.image(), TILE[::-1], interpolation=cv2.INTER_AREA))
        m = cv2.resize(sample.gt.view(np.uint8), TILE[::-1], interpolation=cv2.INTER_NEAREST) > 0
        full = np.zeros((TILE[0], TILE[1] * len(names)), bool)
        full[:, i * TILE[1]:(i + 1) * TILE[1]] = m
        gts.append(full)
    return np.hstack(photos), gts


def match(ours: list[np.ndarray], truth: list[np.ndarray]) -> list[float]:
    """IoU of each Hungarian-matched (ours, truth) pair."""
    from scipy.optimize import linear_sum_assignment  # the [eval] extra

    if not ours or not truth:
        return []
    iou = np.array([[np.logical_and(a, b).sum() / max(np.logical_or(a, b).sum(), 1) for b in truth] for a in ours])
    r, c = linear_sum_assignment(-iou)
    return [float(v) for v in iou[r, c]]


def evaluate(settings: Settings, quick: bool) -> dict:
    out: dict = {"settings": {k: v for k, v in settings.to_dict().items()
                              if k in ("internal_resolution", "score_threshold", "max_detections", "nms_radius",
                                       "min_keypoint_score", "refine_steps", "refine", "min_pose_score")},
                 "model": settings.model_name}
    # Natural group photos: counts.
    rows = []
    for key, n_gt in GT_PEOPLE.items():
        res = segment(load_image(photo_path(key)), settings)
        rows.append({"photo": key, "people": n_gt, "found": len(res.persons),
                     "unassigned_pixels": res.info["instances"]["unassigned_pixels"]})
    out["groups"] = {
        "photos": len(rows), "people": sum(r["people"] for r in rows), "found": sum(r["found"] for r in rows),
        "missed": sum(max(0, r["people"] - r["found"]) for r in rows),
        "extra": sum(max(0, r["found"] - r["people"]) for r in rows),
        "exact_count": sum(r["people"] == r["found"] for r in rows) / len(rows),
        "photos_with_nobody_separated": sum(r["found"] == 0 for r in rows),
        "per_photo": rows,
    }
    # One-person photos: extra instances.
    singles = [p for p in dataset(HS.name).images if f"{HS.name}/{p.stem}" not in GT_PEOPLE]
    if quick:
        singles = singles[::5]
    found = [len(segment(load_image(p), settings).persons) for p in singles]
    out["singles"] = {"photos": len(found), "exactly_one": sum(f == 1 for f in found) / len(found),
                      "none": sum(f == 0 for f in found), "extra": sum(max(0, f - 1) for f in found)}
    # Composed groups: instance IoU.
    ious, missed, extra, people, semantic = [], 0, 0, 0, []
    pool = COMPOSE_FROM[:10] if quick else COMPOSE_FROM
    for size in (2, 3, 5):
        for start in range(0, len(pool) - size + 1, size):
            photo, truth = compose(pool[start:start + size])
            res = segment(photo, settings)
            # Same-photo person-mask IoU (everybody together): the ceiling for instance IoU.
            semantic.append(match([res.person_mask >= 128], [np.any(truth, axis=0)])[0])
            m = match([p.mask >= 128 for p in res.persons], truth)
            hits = sum(v >= 0.5 for v in m)
            ious += m + [0.0] * (len(truth) - len(m))  # unmatched people count as IoU 0
            people += len(truth)
            missed += len(truth) - hits
            extra += len(res.persons) - hits
    out["composed"] = {"photos": "rows of 2, 3 and 5 one-person photos", "people": people,
                       "mean_instance_iou": float(np.mean(ious)), "median_instance_iou": float(np.median(ious)),
                       "missed": missed, "extra": extra, "mean_person_mask_iou": float(np.mean(semantic))}
    return out


def timing(settings: Settings, repeat: int) -> dict:
    """Median ms per photo over the natural group photos, with and without instances, interleaved."""
    photos = [load_image(photo_path(k)) for k in GT_PEOPLE]
    single = settings.replace(multi_person=False)
    for p in photos[:2]:
        segment(p, settings)
        segment(p, single)
    t_single, t_multi, t_stage, c_single, c_multi = [], [], [], [], []
    for _ in range(repeat):
        for p in photos:
            c, t = time.process_time(), time.perf_counter()
            segment(p, single)
            t_single.append((time.perf_counter() - t) * 1000)
            c_single.append((time.process_time() - c) * 1000)
            c, t = time.process_time(), time.perf_counter()
            res = segment(p, settings)
            t_multi.append((time.perf_counter() - t) * 1000)
            c_multi.append((time.process_time() - c) * 1000)
            t_stage.append(res.timings["persons"])
    med = statistics.median
    # CPU time (all threads) is printed too: on a shared machine it moves less than wall time.
    return {"photos": len(photos), "repeat": repeat, "single_ms": med(t_single), "multi_ms": med(t_multi),
            "persons_stage_ms": med(t_stage), "ratio": med(t_multi) / med(t_single),
            "single_cpu_ms": med(c_single), "multi_cpu_ms": med(c_multi),
            "cpu_ratio": med(c_multi) / med(c_single), "cpu_cores": os.cpu_count(),
            "load_average": os.getloadavg()[0]}


def markdown(report: dict) -> str:
    lines = ["# Person instances (body-pix segmentMultiPerson)", ""]
    for r in report["runs"]:
        g, s, c = r["groups"], r["singles"], r["composed"]
        lines += [f"## {r['label']}", "",
                  f"- natural group photos: {g['photos']} photos, {g['people']} people, found {g['found']}: "
                  f"missed {g['missed']}, extra {g['extra']}, exact count {g['exact_count']:.0%}, "
                  f"nobody separated on {g['photos_with_nobody_separated']}",
                  f"- one-person photos: {s['photos']}, exactly one instance {s['exactly_one']:.0%}, "
                  f"none {s['none']}, extra {s['extra']}",
                  f"- composed groups ({c['people']} people): instance IoU mean {c['mean_instance_iou']:.3f}, "
                  f"median {c['median_instance_iou']:.3f} (whole-person-mask IoU on the same photos "
                  f"{c['mean_person_mask_iou']:.3f}); missed {c['missed']}, extra {c['extra']}", ""]
    t = report["timing"]
    lines += ["## Time per photo", "",
              f"{t['photos']} group photos x {t['repeat']}: one-person pipeline {t['single_ms']:.0f} ms, "
              f"with instances {t['multi_ms']:.0f} ms (x{t['ratio']:.2f}; "
              f"instance stage {t['persons_stage_ms']:.0f} ms); CPU time {t['single_cpu_ms']:.0f} ms vs "
              f"{t['multi_cpu_ms']:.0f} ms (x{t['cpu_ratio']:.2f}); {t['cpu_cores']} cores, "
              f"load average {t['load_average']:.1f}",
              ""]
    return "\n".join(lines)


