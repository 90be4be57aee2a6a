"""Hand metrics: does finger recovery make the person mask better around hands?

BodyPix's whole-person IoU hardly moves when a finger is added (a finger is 0.1% of a
portrait), so hands are scored on their own:

* hand-box IoU and recall: the person mask against the ground truth inside a box around
  each hand the finger stage found (the landmark box grown by a quarter of the hand's
  size on each side, so the gaps and the BodyPix halo around the fingers count);
* fingertips: for each confident hand (landmark presence >= ``CONFIDENT``), how many of
  the five fingertip landmarks fall inside the final mask.

``compare`` scores raw BodyPix and the finger stage on the *same* boxes (found by the
finger run), so the before/after numbers are paired.  ``bench`` times the finger stage.
Both back ``bodypix-gimp hands`` (``cli.hands``).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..imageio import load_image
from ..pipeline import segment
from ..refine import fingers as finger_stage
from ..result import Result
from ..runtime.sessions import RuntimeOptions
from ..settings import Settings, default_settings
from .configs import RAW_CONFIGS, builtin_configs

CONFIDENT = 0.8  # landmark presence from which a hand counts for the fingertip score
BOX_GROW = 0.25  # box margin around the landmarks, in hand sizes
OUTLINE_BG = 0.2  # a hand box with at least this much true background shows the hand's outline


def found_hands(result: Result) -> list[dict[str, Any]]:
    """The hands the finger stage used (skipped ones excluded), from ``result.info``."""
    return hands_from_info(result.info)


def hands_from_info(info: dict[str, Any] | None) -> list[dict[str, Any]]:
    """``found_hands`` for a bare ``Result.info`` dict (what the eval harness keeps)."""
    stage = (info or {}).get("hands") or {}
    return [h for h in stage.get("hands", []) if "skipped" not in h]


def _as_bool(mask: np.ndarray) -> np.ndarray:
    """Boolean masks as they are; uint8 masks and alphas from 128."""
    a = np.asarray(mask)
    return a if a.dtype == bool else a >= 128


def hand_box(hand: dict[str, Any], shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """Integer box (x0, y0, x1, y1), end-exclusive, clipped to the image."""
    h, w = shape
    x0, y0, x1, y1 = hand["box"]
    g = BOX_GROW * float(hand.get("scale", hand.get("size", 0.0)))
    return (
        max(0, int(x0 - g)),
        max(0, int(y0 - g)),
        min(w, int(np.ceil(x1 + g)) + 1),
        min(h, int(np.ceil(y1 + g)) + 1),
    )


def hand_metrics(
    image: np.ndarray | None,
    result: Result,
    gt_mask: np.ndarray | None,
    hands: Sequence[dict[str, Any]] | None = None,
    mask: np.ndarray | None = None,
) -> dict[str, Any]:
    """Per-hand IoU/recall inside the hand boxes and fingertips inside the mask.

    ``hands`` defaults to the hands in ``result``; ``mask`` to ``result.person_mask`` (pass
    another run's mask to score it on the same boxes).  ``gt_mask``: truth, >= 128 person;
    None scores fingertips only.  ``image`` is unused but keeps the harness signature.
    """
    del image
    hands = found_hands(result) if hands is None else list(hands)
    return score_hands(result.person_mask if mask is None else mask, gt_mask, hands)


def score_hands(mask: np.ndarray, gt_mask: np.ndarray | None, hands: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The scores of ``hand_metrics`` for a bare mask (uint8, >= 128 person)."""
    pred = _as_bool(mask)
    gt = None if gt_mask is None else _as_bool(gt_mask)
    per_hand = []
    for hand in hands:
        x0, y0, x1, y1 = hand_box(hand, pred.shape)
        entry: dict[str, Any] = {"box": [x0, y0, x1, y1], "presence": hand["presence"]}
        if gt is not None:
            p, g = pred[y0:y1, x0:x1], gt[y0:y1, x0:x1]
            inter, union = int((p & g).sum()), int((p | g).sum())
            entry["iou"] = inter / union if union else 1.0
            entry["recall"] = inter / int(g.sum()) if g.any() else 1.0
            entry["precision"] = inter / int(p.sum()) if p.any() else 1.0
            entry["gt_fraction"] = float(g.mean())
        if hand["presence"] >= CONFIDENT:
            # fingertips beyond the photo's frame (the model extrapolates them) cannot be
            # in any mask: only the visible ones count
            visible = [
                (int(round(x)), int(round(y)))
                for x, y in hand["tips"]
                if 0 <= round(y) < pred.shape[0] and 0 <= round(x) < pred.shape[1]
            ]
            entry["tips_visible"] = len(visible)
            entry["tips_inside"] = sum(bool(pred[y, x]) for x, y in visible)
        per_hand.append(entry)
    return {"hands": per_hand, **summarise(per_hand)}


def hand_row(mask: np.ndarray, gt_mask: np.ndarray | None, hands: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Flat per-photo hand scores of one configuration's ``mask``, for the eval harness's rows.

    ``hands`` are shared by every configuration of a photo (``found_hands`` of the run with
    finger recovery on), so all configurations are scored on the same boxes.  Keys:
    hand_iou, hand_recall, hand_tips (fraction of confident fingertips inside); NaN when
    the photo has no hand (the harness's means skip NaN).
    """
    if not hands:
        return {"hand_iou": float("nan"), "hand_recall": float("nan"), "hand_tips": float("nan")}
    r = score_hands(mask, gt_mask, hands)
    nan = float("nan")
    return {
        "hand_iou": nan if r["iou"] is None else r["iou"],
        "hand_recall": nan if r["recall"] is None else r["recall"],
        "hand_tips": nan if r["tip_rate"] is None else r["tip_rate"],
    }


def summarise(per_hand: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means over hands, and fingertip rates over confident hands.

    ``outline_*``: the same means over hands whose box is at least ``OUTLINE_BG`` ground-truth
    background, i.e. hands seen against the background, where a person mask has finger
    outlines to get right (a hand in front of the body is inside the person either way).
    """
    out: dict[str, Any] = {"n_hands": len(per_hand)}
    outline = [h for h in per_hand if h.get("gt_fraction", 1.0) <= 1.0 - OUTLINE_BG]
    out["n_outline"] = len(outline)
    for key in ("iou", "recall", "precision"):
        vals = [h[key] for h in per_hand if key in h]
        out[key] = float(np.mean(vals)) if vals else None
        vals = [h[key] for h in outline if key in h]
        out[f"outline_{key}"] = float(np.mean(vals)) if vals else None
    tips = [(h["tips_inside"], h["tips_visible"]) for h in per_hand if h.get("tips_visible")]
    out["n_confident"] = len(tips)
    out["tip_rate"] = sum(i for i, _ in tips) / sum(v for _, v in tips) if tips else None
    out["all_tips_rate"] = sum(i == v for i, v in tips) / len(tips) if tips else None
    return out


def raw_baselines() -> dict[str, Settings]:
    """Raw BodyPix as the evaluation harness runs it (the seed's settings, body-pix's defaults)."""
    return {c.name: c.settings for c in builtin_configs() if c.name in RAW_CONFIGS and c.settings}


def compare(
    image: np.ndarray,
    gt_mask: np.ndarray | None,
    before: Settings,
    after: Settings,
    runtime: RuntimeOptions | None = None,
    baselines: dict[str, Settings] | None = None,
) -> dict[str, Any]:
    """Score ``before`` (fingers off) and ``after`` (fingers on) on the hands ``after`` found.

    ``baselines`` (default ``raw_baselines()``): more configurations scored on the same
    boxes, so "over raw BodyPix" is measured on exactly the hands the product found.
    """
    res_after = segment(image, after, runtime)
    hands = found_hands(res_after)
    if not hands:
        return {"n_hands": 0}
    res_before = segment(image, before, runtime)
    b = hand_metrics(image, res_before, gt_mask, hands)
    a = hand_metrics(image, res_after, gt_mask, hands)
    base = baselines if baselines is not None else raw_baselines()
    raw = {name: hand_metrics(image, segment(image, s, runtime), gt_mask, hands) for name, s in base.items()}
    return {
        "n_hands": len(hands),
        "before": b,
        "after": a,
        "raw": raw,
        "fingers_ms": res_after.timings.get("fingers"),
        "hand_info": res_after.info.get("hands"),
    }


def read_truth(path: Path) -> np.ndarray:
    """A mask or alpha PNG as uint8 (person >= 128)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


def dataset_pairs(folder: Path) -> list[tuple[Path, Path | None]]:
    """(photo, truth) pairs of an eval folder: images/ with masks/ or alpha_pred/, else photos only."""
    folder = Path(folder)
    images = folder / "images" if (folder / "images").is_dir() else folder
    truth_dir = next((folder / d for d in ("masks", "alpha_pred") if (folder / d).is_dir()), None)
    pairs = []
    for img in sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
        truth = truth_dir / f"{img.stem}.png" if truth_dir else None
        pairs.append((img, truth if truth and truth.is_file() else None))
    return pairs


def evaluate(
    folders: Iterable[Path],
    after: Settings | None = None,
    runtime: RuntimeOptions | None = None,
    limit: int | None = None,
    log=print,
) -> dict[str, Any]:
    """Before/after hand metrics over eval folders; photos where no hand is found are counted only."""
    after = after or default_settings(fingers=True)
    if not after.fingers:
        after = after.replace(fingers=True)
    before = after.replace(fingers=False)
    photos: list[dict[str, Any]] = []
    for folder in folders:
        pairs = dataset_pairs(Path(folder))[:limit]
        for img_path, truth_path in pairs:
            image = load_image(img_path)
            gt = read_truth(truth_path) if truth_path else None
            r = compare(image, gt, before, after, runtime)
            r["photo"] = f"{Path(folder).name}/{img_path.name}"
            photos.append(r)
            if r["n_hands"]:
                log(
                    f"{r['photo']}: {r['n_hands']} hand(s) "
                    f"IoU {_f(r['before']['iou'])} -> {_f(r['after']['iou'])}"
                    f"  tips {r['before']['tip_rate']} -> {r['after']['tip_rate']}"
                )
    return {"settings": after.to_dict(), "photos": photos, "summary": totals(photos)}


def totals(photos: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pooled over all hands of all photos (each hand weighs the same)."""
    out: dict[str, Any] = {"photos": len(photos), "photos_with_hands": sum(1 for p in photos if p["n_hands"])}
    for stage in ("before", "after"):
        hands = [h for p in photos if p["n_hands"] for h in p[stage]["hands"]]
        out[stage] = summarise(hands)
    b, a = out["before"], out["after"]
    for key in ("iou", "outline_iou"):
        ok = a[key] is not None and b[key] is not None
        out[f"{key}_gain_points"] = 100 * (a[key] - b[key]) if ok else None
    names = sorted({n for p in photos if p["n_hands"] for n in p.get("raw", {})})
    out["raw"] = {}
    for name in names:
        t = summarise([h for p in photos if p["n_hands"] for h in p["raw"][name]["hands"]])
        for key in ("iou", "outline_iou"):
            ok = a[key] is not None and t[key] is not None
            t[f"product_{key}_gain_points"] = 100 * (a[key] - t[key]) if ok else None
        out["raw"][name] = t
    return out


def _f(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def markdown(report: dict[str, Any]) -> str:
    """A short table of the pooled numbers for the README / notes."""
    s = report["summary"]
    rows = [
        "| | hand-box IoU | IoU, hands against background | recall | precision "
        "| fingertips inside | hands with all 5 |",
        "|---|---|---|---|---|---|---|",
    ]
    stages = [(t, f"raw BodyPix, {n}") for n, t in s.get("raw", {}).items()]
    stages += [(s["before"], "pipeline, fingers off"), (s["after"], "pipeline with finger recovery")]
    for t, label in stages:
        rows.append(
            f"| {label} | {_f(t['iou'])} | {_f(t['outline_iou'])} | {_f(t['recall'])} | "
            f"{_f(t['precision'])} | {_f(t['tip_rate'])}% | {_f(t['all_tips_rate'])}% |"
        )
    head = (
        f"{s['photos_with_hands']} of {s['photos']} photos have hands found; "
        f"{s['after']['n_hands']} hands, {s['after']['n_confident']} confident, "
        f"{s['after']['n_outline']} against the background (box >= {100 * OUTLINE_BG:.0f}% true background)."
    )
    gains = [
        f"- the pipeline over raw BodyPix ({n}), same boxes: {t['product_iou_gain_points']:+.1f} points"
        for n, t in s.get("raw", {}).items()
        if t.get("product_iou_gain_points") is not None
    ]
    if s.get("iou_gain_points") is not None:
        gains.append(f"- the finger stage alone: {s['iou_gain_points']:+.1f} points")
    return head + "\n\n" + "\n".join(rows) + "\n" + ("\n" + "\n".join(gains) + "\n" if gains else "")


def bench(
    image: np.ndarray,
    settings: Settings | None = None,
    runtime: RuntimeOptions | None = None,
    repeats: int = 7,
) -> dict[str, Any]:
    """Time the finger stage alone on one photo: ms per run and per hand (median, min, max).

    BodyPix runs once; the finger stage then runs ``repeats`` times on its output (after
    one warm-up that loads the hand models), so only the added cost is timed.
    """
    settings = (settings or default_settings()).replace(fingers=True)
    # The finger stage's input as the pipeline hands it over, from raw BodyPix (the worst case).
    raw = segment(image, settings.replace(fingers=False, refine="none"), runtime)
    mask, parts, poses = raw.person_mask, raw.part_map, raw.poses
    _, _, info = finger_stage.recover_fingers(image, mask, parts, poses, settings, runtime)
    n = len([h for h in info["hands"] if "skipped" not in h])
    runs, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        finger_stage.recover_fingers(image, mask, parts, poses, settings, runtime)
        runs.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    med = statistics.median(runs)
    return {
        "hands": n,
        "candidates": info["candidates"],
        "runs_ms": [round(r, 1) for r in runs],
        "median_ms": round(med, 1),
        "min_ms": round(min(runs), 1),
        "max_ms": round(max(runs), 1),
        "median_ms_per_hand": round(med / n, 1) if n else None,
        "min_ms_per_hand": round(min(runs) / n, 1) if n else None,
        # CPU time of this process (all threads): what the stage costs whatever else runs
        "median_cpu_ms_per_hand": round(statistics.median(cpu) / n, 1) if n else None,
        "load_average": round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else None,
    }


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    j, m = out_dir / "hands.json", out_dir / "hands.md"
    j.write_text(json.dumps(report, indent=1, default=float))
    m.write_text(markdown(report))
    return j, m
