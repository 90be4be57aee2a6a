"""The configurations an evaluation compares: pipeline Settings, or a peer person model alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..pipeline import segment
from ..refine import peers
from ..runtime.sessions import RuntimeOptions
from ..settings import Settings, default_settings

RAW_CONFIGS = ("bodypix-seed", "bodypix-defaults")


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
            res = segment(rgb, self.settings, runtime)
            return res.person_mask, res.part_map, res.info
        if self.model == "rvm":
            prob = peers.rvm_alpha(rgb, runtime)
        elif self.model == "selfie":
            prob = peers.selfie_probability(rgb, runtime)
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
