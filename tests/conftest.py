"""Shared fixtures: the real models and photos in ../shared, found the way CI finds them."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BODYPIX_SHARED", ROOT.parent / "shared")).resolve()
MODELS = Path(os.environ.get("BODYPIX_MODELS", SHARED / "models")).resolve()
EVAL = SHARED / "eval"
SAMPLE = ROOT / "samples" / "astronaut.jpg"


def pytest_configure(config: pytest.Config) -> None:
    if not (MODELS / "bodypix" / "onnx").is_dir():
        raise pytest.UsageError(
            f"BodyPix models not found in {MODELS}: set BODYPIX_MODELS to a folder laid out like ../shared/models"
        )
    os.environ.setdefault("BODYPIX_MODELS", str(MODELS))
    # Derived model files (runtime/rvm_graph.py) go to this run's own folder, not the user's cache.
    if "BODYPIX_GRAPH_CACHE" not in os.environ:
        folder = Path(tempfile.mkdtemp(prefix="bodypix-test-graphs-"))
        os.environ["BODYPIX_GRAPH_CACHE"] = str(folder)
        config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return MODELS


@pytest.fixture(scope="session")
def eval_dir() -> Path:
    return EVAL


def load(path: Path) -> np.ndarray:
    from bodypix_gimp import load_image

    return load_image(path)


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    return load(SAMPLE)


@pytest.fixture(scope="session")
def jim() -> np.ndarray:
    return load(EVAL / "seed" / "jim.jpg")


def human_seg_pairs(n: int | None = None) -> list[tuple[Path, Path]]:
    """(image, mask) pairs from ../shared/eval/human_seg_300, sorted by name."""
    images = sorted((EVAL / "human_seg_300" / "images").glob("*.jpg"))
    pairs = [(i, EVAL / "human_seg_300" / "masks" / f"{i.stem}.png") for i in images]
    return pairs[:n] if n else pairs


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a >= 128, b >= 128
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
