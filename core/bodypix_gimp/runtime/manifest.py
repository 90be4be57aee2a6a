"""Every BodyPix variant body-pix 2.x can load, and where Google publishes it.

URLs follow body-pix's ``saved_models.ts``.  Checksums of the files we could verify live
in ``models/manifest.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..settings import QUANT_NAMES, model_name

BODYPIX_BASE_URL = "https://storage.googleapis.com/tfjs-models/savedmodel/bodypix/"
RESNET50_BASE_URL = BODYPIX_BASE_URL + "resnet50/"
MOBILENET_BASE_URL = BODYPIX_BASE_URL + "mobilenet/"

# Strides for which Google published graphs (MobileNet stride 32 validates in body-pix
# but has no saved model).
PUBLISHED = {"MobileNetV1": {"multipliers": (0.50, 0.75, 1.0), "strides": (8, 16)},
             "ResNet50": {"multipliers": (1.0,), "strides": (16, 32)}}


def graph_url(architecture: str, multiplier: float, quant_bytes: int, output_stride: int) -> str:
    """The official ``model-strideN.json`` URL (body-pix ``saved_models.ts``)."""
    graph = f"model-stride{output_stride}.json"
    quant = "float/" if quant_bytes == 4 else f"quant{quant_bytes}/"
    if architecture == "ResNet50":
        return RESNET50_BASE_URL + quant + graph
    return MOBILENET_BASE_URL + quant + f"{round(multiplier * 100):03d}/" + graph


def bodypix_variants() -> dict[str, dict[str, object]]:
    """name -> {architecture, multiplier, quant_bytes, output_stride, url}."""
    out: dict[str, dict[str, object]] = {}
    for arch, spec in PUBLISHED.items():
        for mult in spec["multipliers"]:
            for qb in sorted(QUANT_NAMES, reverse=True):
                for stride in spec["strides"]:
                    out[model_name(arch, mult, qb, stride)] = {
                        "architecture": arch,
                        "multiplier": mult,
                        "quant_bytes": qb,
                        "output_stride": stride,
                        "url": graph_url(arch, mult, qb, stride),
                    }
    return out


# --------------------------------------------------------------------------- models/manifest.json
# The JSON adds what code cannot derive: file checksums, the normalisation, the
# verification status of each variant and where the helper models come from.


def manifest_path() -> Path | None:
    """The project's ``models/manifest.json`` (the package links it into ``data/`` so wheels ship it)."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[1] / "data" / "manifest.json", here.parents[3] / "models" / "manifest.json"):
        if candidate.is_file():
            return candidate
    return None


class ManifestError(RuntimeError):
    """``models/manifest.json`` is missing or does not name the requested model."""


def load_manifest() -> dict[str, Any]:
    """The parsed ``models/manifest.json`` (checkout or installed copy beside the package)."""
    path = manifest_path()
    if path is None:
        raise ManifestError("models/manifest.json not found beside the package; reinstall bodypix-gimp")
    return json.loads(path.read_text())


def variant_spec(name: str, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """Manifest entry of one BodyPix variant; the error lists the valid names."""
    variants = (manifest or load_manifest())["bodypix"]
    if name not in variants:
        raise ManifestError(f"Unknown BodyPix variant {name!r}. Known: {', '.join(sorted(variants))}")
    return variants[name]


def default_variants(manifest: dict[str, Any] | None = None) -> list[str]:
    """The variants an install sets up unless told otherwise (the verified ones)."""
    return [n for n, v in (manifest or load_manifest())["bodypix"].items() if v.get("default")]


def aux_specs(manifest: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Helper models (hands, RVM, selfie): relative path, licence, origin, official URLs."""
    return dict((manifest or load_manifest())["aux"])


def onnx_checksums(manifest: dict[str, Any] | None = None) -> dict[str, str]:
    """Relative ONNX path -> sha256 of the reference files (``shared/models``)."""
    return dict((manifest or load_manifest()).get("onnx_sha256", {}))


def tfjs_relpath(url: str) -> str:
    """Official URL -> path below the BodyPix base (``mobilenet/quant2/075/model-stride16.json``)."""
    if not url.startswith(BODYPIX_BASE_URL):
        raise ManifestError(f"URL {url} is not below the BodyPix base URL {BODYPIX_BASE_URL}")
    return url[len(BODYPIX_BASE_URL):]
