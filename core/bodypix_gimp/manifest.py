"""Every BodyPix variant body-pix 2.x can load, and where Google publishes it.

URLs follow body-pix's ``saved_models.ts``.  Checksums of the files we could verify live
in ``models/manifest.json``.
"""

from __future__ import annotations

from .settings import QUANT_NAMES, model_name

RESNET50_BASE_URL = "https://storage.googleapis.com/tfjs-models/savedmodel/bodypix/resnet50/"
MOBILENET_BASE_URL = "https://storage.googleapis.com/tfjs-models/savedmodel/bodypix/mobilenet/"

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
