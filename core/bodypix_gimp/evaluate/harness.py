"""Run named pipeline configurations over datasets and score every photo.

A configuration is either a full ``segment`` run with some ``Settings`` or one of the
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

import numpy as np

from ..runtime.sessions import RuntimeOptions
from ..settings import ConfigError, Settings, default_settings
from . import metrics
from .datasets import Dataset, part_group_iou
from .hands import hand_row, hands_from_info

METRIC_KEYS = ("iou", "f@1", "f@2", "f@5", "offset", "band_iou")


@dataclass(frozen=True)
class Config:
    """A named way to get a person mask: pipeline ``settings`` or a peer ``model`` alone."""

    name: str
    description: str
    settings: Settings | None = None
    model: str | None = None  # "rvm" or "selfie"

    def run(
        self, rgb: np.ndarray, runtime: RuntimeOptions
    ) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
        """(person mask uint8 0..255, part map or None, the pipeline's ``info``) for one photo."""
        if self.settings is not None:
            from ..pipeline import segment

            res = segment(rgb, self.settings, runtime)
            return res.person_mask, res.part_map, res.info
        from ..refine import peers as matting

        if self.model == "rvm":
            prob = matting.rvm_alpha(rgb, runtime)
        elif self.model == "selfie":
            prob = matting.selfie_probability(rgb, runtime)
        else:
            raise ConfigError(f"Unknown peer model {self.model!r}. Should be one of rvm, selfie")
        return np.where(prob > 0.5, np.uint8(255), np.uint8(0)), None, {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "settings": self.settings.to_dict() if self.settings else None,
            "model": self.model,
        }


def builtin_configs() -> list[Config]:
    """The configurations every run includes (the issue's fixed comparison set)."""
    return [
        Config(
            "bodypix-seed",
            "raw BodyPix, the seed's settings (threshold 0.2, internal resolution full)",
            Settings(segmentation_threshold=0.2, internal_resolution="full"),
        ),
        Config(
            "bodypix-defaults",
            "raw BodyPix, body-pix defaults (threshold 0.7, internal resolution medium)",
            Settings(),
        ),
        Config("selfie", "MediaPipe Selfie Segmentation alone (probability > 0.5)", model="selfie"),
        Config("rvm", "Robust Video Matting alone (alpha > 0.5)", model="rvm"),
        Config(
            "default",
            "the product's default pipeline (settings.PRODUCT_DEFAULTS)",
            default_settings(soft_edges=False),
        ),
    ]


def parse_config(spec: str) -> Config:
    """``NAME=key=value,key=value`` -> a pipeline Config on top of the product defaults.

    Example: ``s8-guided=output_stride=8,refine=guided``.  Values are parsed as int,
    float or bool where they look like one; unknown keys raise ConfigError naming them.
    """
    name, sep, rest = spec.partition("=")
    if not sep or not name:
        raise ConfigError(f"Invalid --config {spec!r}. Should look like NAME=key=value[,key=value...]")
    changes: dict[str, Any] = {}
    allowed = Settings.field_names()
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or key not in allowed:
            raise ConfigError(f"Invalid setting {item!r} in --config {name}. Keys: {', '.join(allowed)}")
        changes[key] = _parse_value(value.strip())
    changes.setdefault("soft_edges", False)
    return Config(
        name, f"default pipeline with {rest}" if rest else "default pipeline", default_settings(**changes)
    )


def _parse_value(v: str) -> Any:
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


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


Progress = Callable[[str], None]


def evaluate(
    datasets: Iterable[Dataset],
    configs: list[Config],
    runtime: RuntimeOptions | None = None,
    keep_worst: int = 5,
    on_image: Callable[[Dataset, str], None] | None = None,
    keep_all: bool = False,
) -> list[DatasetResult]:
    """Score every configuration on every photo of every dataset.

    ``keep_worst`` masks per configuration and dataset are kept (lowest IoU; every mask
    when the dataset has no truth, or with ``keep_all``) so the report can draw overlays.
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
                row: dict[str, Any] = {
                    "name": sample.name,
                    "ms": ms,
                    "megapixels": rgb.shape[0] * rgb.shape[1] / 1e6,
                }
                pred = mask >= 128
                if not hands and c.settings is not None and c.settings.fingers:
                    hands = hands_from_info(info)  # the hands the finger stage found score every config
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


RAW_CONFIGS = ("bodypix-seed", "bodypix-defaults")


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
