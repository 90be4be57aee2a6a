"""Run named pipeline configurations over datasets and score every photo.

A configuration (``configs``) is either a full ``segment`` run with some ``Settings`` or one of the
peer person models alone (RVM, MediaPipe Selfie), so all of them are measured the same
way in one run.  Every photo is decoded once and handed to each configuration in turn;
each configuration is warmed up once (model loading is not counted in its time).
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ..errors import ConfigError
from ..runtime.sessions import RuntimeOptions
from . import metrics
from .configs import RAW_CONFIGS, Config
from .datasets import Dataset, part_group_iou
from .hands import hand_row, hands_from_info

METRIC_KEYS = ("iou", "f@1", "f@2", "f@5", "offset", "band_iou")


@dataclass
class ConfigResult:
    """Per-photo scores of one configuration on one dataset, and its worst photos' masks."""

    config: Config
    rows: list[dict[str, Any]] = field(default_factory=list)
    worst: list[tuple[float, int, str, np.ndarray]] = field(
        default_factory=list
    )  # heap of (-iou, i, name, mask)

    def summary(self) -> dict[str, float]:
        """Mean of each metric over photos (NaNs skipped), plus time per photo in ms."""
        out: dict[str, float] = {}
        keys = [k for k in self.rows[0] if k not in ("name",)] if self.rows else []
        for k in keys:
            vals = [r[k] for r in self.rows if isinstance(r.get(k), (int, float)) and not math.isnan(r[k])]
            if vals:
                out[k] = float(np.mean(vals))
        return out


@dataclass
class DatasetResult:
    dataset: Dataset
    configs: dict[str, ConfigResult]


def upscaled(rgb: np.ndarray, megapixels: float) -> np.ndarray:
    """The photo Lanczos-upscaled (aspect kept) to about ``megapixels`` MP; itself when already that large."""
    h, w = rgb.shape[:2]
    scale = math.sqrt(megapixels * 1e6 / (h * w))
    if scale <= 1.0:
        return rgb
    size = (max(w, round(w * scale)), max(h, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_LANCZOS4)


def shrunk_back(
    mask: np.ndarray, parts: np.ndarray | None, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray | None]:
    """A large photo's mask area-averaged (0..255) and part map nearest-sampled back to ``shape``."""
    h, w = shape[:2]
    if mask.shape[:2] == (h, w):
        return mask, parts
    mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_AREA)
    if parts is not None:
        parts = cv2.resize(parts, (w, h), interpolation=cv2.INTER_NEAREST)
    return mask, parts


def hands_scaled(hands: list[dict[str, Any]], factor: float) -> list[dict[str, Any]]:
    """The finger stage's hands (box, fingertips, sizes in photo pixels) on a photo scaled by ``factor``."""
    out = []
    for hand in hands:
        h = dict(hand)
        h["box"] = [v * factor for v in hand["box"]]
        if "tips" in hand:
            h["tips"] = [[x * factor, y * factor] for x, y in hand["tips"]]
        for key in ("scale", "size"):
            if key in hand:
                h[key] = hand[key] * factor
        out.append(h)
    return out


def evaluate(
    datasets: Iterable[Dataset],
    configs: list[Config],
    runtime: RuntimeOptions | None = None,
    keep_worst: int = 5,
    on_image: Callable[[Dataset, str], None] | None = None,
    keep_all: bool = False,
    megapixels: float | None = None,
) -> list[DatasetResult]:
    """Score every configuration on every photo of every dataset.

    ``keep_worst`` masks per configuration and dataset are kept (lowest IoU; every mask
    when the dataset has no truth, or with ``keep_all``) so the report can draw overlays.
    ``megapixels``: each photo is first Lanczos-upscaled to that size (``upscaled``), as a
    camera's photo of the same scene, and the masks are shrunk back (``shrunk_back``) to be
    scored against the truth at its own size: the full-resolution path of the pipeline.
    """
    runtime = runtime or RuntimeOptions()
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ConfigError(f"Configuration names must be unique, got {', '.join(names)}")
    results = []
    warmed: set[str] = set()
    for ds in datasets:
        per = {c.name: ConfigResult(c) for c in configs}
        for i, sample in enumerate(ds.samples()):
            rgb = sample.image()
            shape = rgb.shape
            if megapixels:
                rgb = upscaled(rgb, megapixels)
            if on_image:
                on_image(ds, sample.name)
            hands: list[dict[str, Any]] = []
            scored: list[tuple[dict[str, Any], np.ndarray]] = []
            for c in configs:
                if c.name not in warmed:
                    c.run(rgb, runtime)  # load sessions outside the timing
                    warmed.add(c.name)
                t0 = time.perf_counter()
                mask, parts, info = c.run(rgb, runtime)
                ms = (time.perf_counter() - t0) * 1000.0
                mask, parts = shrunk_back(mask, parts, shape)
                row: dict[str, Any] = {
                    "name": sample.name,
                    "ms": ms,
                    "megapixels": rgb.shape[0] * rgb.shape[1] / 1e6,
                }
                pred = mask >= 128
                if not hands and c.settings is not None and c.settings.fingers:
                    hands = hands_from_info(info)  # the hands the finger stage found score every config
                    if rgb.shape[:2] != shape[:2]:  # found on the upscaled photo: to the truth's pixels
                        hands = hands_scaled(hands, shape[1] / rgb.shape[1])
                scored.append((row, pred))
                if sample.gt is not None:
                    row.update(metrics.score(pred, sample.gt, sample.band))
                    if sample.alpha is not None:
                        row["alpha_mae_band"] = metrics.alpha_mae(mask, sample.alpha, sample.band)
                    if sample.labels is not None and parts is not None:
                        groups = part_group_iou(parts, sample.labels)
                        row.update({f"part_{g}": v for g, v in groups.items()})
                        if groups:
                            row["parts_iou"] = float(np.mean(list(groups.values())))
                    key = -row["iou"]
                else:
                    key = float(i)
                res = per[c.name]
                res.rows.append(row)
                limit = len(ds) if (sample.gt is None or keep_all) else keep_worst
                item = (key, i, sample.name, mask)
                if len(res.worst) < limit:
                    heapq.heappush(res.worst, item)
                elif limit:
                    heapq.heappushpop(res.worst, item)
            if sample.gt is not None:
                for row, pred in scored:  # hand-box IoU, recall and fingertips (NaN without hands)
                    row.update(hand_row(pred, sample.gt, hands))
        results.append(DatasetResult(ds, per))
    return results


def regressions(
    result: DatasetResult, config: str, raw: tuple[str, ...] = RAW_CONFIGS, points: float = 0.01
) -> list[tuple[str, float, float]]:
    """Photos where ``config`` is more than ``points`` IoU worse than the better raw BodyPix.

    Returns (photo, config IoU, best raw IoU) for each.
    """
    mine = result.configs.get(config)
    raws = [result.configs[r] for r in raw if r in result.configs]
    if mine is None or not raws or "iou" not in (mine.rows[0] if mine.rows else {}):
        return []
    out = []
    for j, row in enumerate(mine.rows):
        best = max(r.rows[j]["iou"] for r in raws)
        if row["iou"] < best - points:
            out.append((row["name"], row["iou"], best))
    return out


def targets(result: DatasetResult, config: str = "default") -> list[tuple[str, bool, str]]:
    """The issue's targets for ``config`` on this dataset: (target, met, measured)."""
    res = result.configs.get(config)
    if res is None or not res.rows or "iou" not in res.rows[0]:
        return []
    s = res.summary()
    out = [
        ("IoU >= 0.95", s["iou"] >= 0.95, f"{s['iou']:.3f}"),
        ("boundary F@2px >= 0.80", s["f@2"] >= 0.80, f"{s['f@2']:.3f}"),
        ("|mean offset| <= 1 px", abs(s["offset"]) <= 1.0, f"{s['offset']:+.2f} px"),
    ]
    for peer in ("rvm", "selfie"):
        other = result.configs.get(peer)
        if other is None or other is res:
            continue
        o = other.summary()
        worse = [
            k
            for k in METRIC_KEYS
            if k in s and k in o and (abs(s[k]) > abs(o[k]) if k == "offset" else s[k] < o[k])
        ]
        out.append(
            (
                f"better than {peer} on every metric",
                not worse,
                "worse on " + ", ".join(worse) if worse else "all better",
            )
        )
    if not any(r in result.configs for r in RAW_CONFIGS):
        return out
    reg = regressions(result, config)
    out.append(
        (
            "no photo > 1 IoU point worse than raw BodyPix",
            not reg,
            f"{len(reg)} photo(s)" + (": " + ", ".join(n for n, _, _ in reg[:8]) if reg else ""),
        )
    )
    return out
