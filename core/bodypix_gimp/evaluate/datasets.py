"""Reading evaluation folders into (photo, truth) samples.

Layouts (see ../shared/eval/*/README.md):

- ``images/`` + ``masks/``: hard person masks, 255 = person (human_seg_300).
- ``images/`` + ``alpha_pred/``: soft alpha mattes; person = alpha >= 128, and the soft
  region 0 < alpha < 255 joins the edge band (p3m_demo_pseudo).
- ``images/`` + ``labels/``: CIHP class ids; person = label != 0, plus part groups
  (face, arms, legs) compared with BodyPix's parts (cihp_samples).
- anything else with photos in it (``images/`` or the folder itself), or a single photo:
  no truth; the harness only draws overlays (the seed photo).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from ..imageio import load_image
from . import metrics

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")

# CIHP class ids -> BodyPix part ids, for the groups the README calls comparable.
CIHP_GROUPS = {
    "face": ((13,), (0, 1)),
    "arms": ((3, 14, 15), (2, 3, 4, 5, 6, 7, 8, 9, 10, 11)),
    "legs": ((8, 16, 17, 18, 19), tuple(range(14, 24))),
}


@dataclass
class Sample:
    """One photo with its truth; ``gt`` is None for overlay-only folders."""

    name: str
    image_path: Path
    gt: np.ndarray | None = None  # bool HxW person
    band: np.ndarray | None = None  # bool HxW edge band
    alpha: np.ndarray | None = None  # uint8 HxW soft truth, when the set has one
    labels: np.ndarray | None = None  # uint8 HxW CIHP class ids
    extra: dict[str, object] = field(default_factory=dict)

    def image(self) -> np.ndarray:
        return load_image(self.image_path)


@dataclass(frozen=True)
class Dataset:
    name: str
    root: Path
    kind: str  # "mask", "alpha", "parts" or "images"
    images: tuple[Path, ...]

    def __len__(self) -> int:
        return len(self.images)

    def samples(self) -> Iterator[Sample]:
        for path in self.images:
            yield load_sample(self, path)

    def photo(self, stem: str) -> Path:
        """The photo named ``stem`` (any suffix of ``IMAGE_SUFFIXES``); an InputError if the set has none."""
        for path in self.images:
            if path.stem == stem:
                return path
        raise InputError(f"{self.root}: no photo named {stem!r}")

    def sample(self, stem: str) -> Sample:
        """The photo named ``stem`` with its truth."""
        return load_sample(self, self.photo(stem))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def open_dataset(root: str | Path, limit: int | None = None) -> Dataset:
    """Recognise the layout of ``root``; a folder with no photos is an InputError."""
    root = Path(root)
    if root.is_file() and root.suffix.lower() in IMAGE_SUFFIXES:  # one photo, no truth: overlays only
        return Dataset(root.stem, root.parent, "images", (root,))
    if not root.is_dir():
        raise InputError(
            f"{root}: not a dataset folder (expected images/ with masks/, alpha_pred/ or labels/)"
        )
    kind = "images"
    for sub, k in (("masks", "mask"), ("alpha_pred", "alpha"), ("labels", "parts")):
        if (root / "images").is_dir() and (root / sub).is_dir():
            kind = k
            break
    folder = root / "images" if (root / "images").is_dir() else root
    images = _images_in(folder)
    if not images:
        raise InputError(f"{root}: no photos found in {folder}")
    if limit:
        images = images[:limit]
    return Dataset(root.resolve().name, root, kind, tuple(images))


def _read_grey(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{path}: truth file missing for this photo")
    with Image.open(path) as im:
        if im.mode not in ("L", "P", "1"):
            im = im.convert("L")
        return np.asarray(im)


def load_sample(ds: Dataset, path: Path) -> Sample:
    """The truth of one photo, in the semantics its dataset's README gives."""
    name = path.stem
    if ds.kind == "images":
        return Sample(name, path)
    if ds.kind == "mask":
        gt = _read_grey(ds.root / "masks" / f"{name}.png") >= 128
        return Sample(name, path, gt=gt, band=metrics.edge_band(gt))
    if ds.kind == "alpha":
        alpha = _read_grey(ds.root / "alpha_pred" / f"{name}.png").astype(np.uint8)
        gt = alpha >= 128
        soft = (alpha > 0) & (alpha < 255)
        return Sample(name, path, gt=gt, band=metrics.edge_band(gt, extra=soft), alpha=alpha)
    labels = _read_grey(ds.root / "labels" / f"{name}.png").astype(np.uint8)
    gt = labels != 0
    return Sample(name, path, gt=gt, band=metrics.edge_band(gt), labels=labels)


def part_group_iou(part_map: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """IoU per comparable part group between BodyPix's part map and CIHP labels.

    Groups absent from both maps are left out (no evidence either way).
    """
    out = {}
    for group, (cihp_ids, bp_ids) in CIHP_GROUPS.items():
        truth = np.isin(labels, cihp_ids)
        pred = np.isin(part_map, bp_ids)
        if truth.any() or pred.any():
            out[group] = metrics.iou(pred, truth)
    return out
