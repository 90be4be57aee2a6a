"""What the user named on the command line -> the list of photos to segment.

An argument is a file (kept even when it does not exist: that photo then fails with its
own one-line message), a folder (the image files directly inside it, by extension, sorted)
or a glob pattern (``photos/*.jpg``, ``shoot/**/*.png``; quote it so the shell does not
expand it first).  Folders and patterns skip this command's own outputs (``*.person.png``,
``*.overlay.jpg``...), so a second run into the same folder does not segment the masks.  Duplicates are
dropped; two inputs with the same stem would write the same output names and are refused.
"""

from __future__ import annotations

import glob
from pathlib import Path

from ..settings import ConfigError
from .outputs import is_output_name

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".ppm", ".pgm", ".pnm"}
)


def folder_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (not hidden, not one of our outputs), sorted by name."""
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
                  and not is_output_name(p.name) and p.is_file())


def expand(specs: list[str]) -> list[Path]:
    """Files, folders and glob patterns -> photos, in the order given, without duplicates."""
    found: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            images = folder_images(path)
            if not images:
                raise ConfigError(f"{spec}: no image files in this folder")
            found.extend(images)
        elif not path.exists() and glob.has_magic(spec):
            matches = sorted(Path(m) for m in glob.glob(spec, recursive=True))
            files = [m for m in matches if m.is_file() and not m.name.startswith(".") and not is_output_name(m.name)]
            if not files:
                raise ConfigError(f"{spec}: no files match this pattern")
            found.extend(files)
        else:
            found.append(path)
    seen: set[Path] = set()
    photos: list[Path] = []
    for p in found:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            photos.append(p)
    return photos


def check_names(photos: list[Path]) -> None:
    """Refuse two photos whose outputs would collide (same stem in different folders)."""
    stems: dict[str, Path] = {}
    for img in photos:
        other = stems.setdefault(img.stem, img)
        if other is not img:
            raise ConfigError(f"Two inputs share the name {img.stem!r} ({other} and {img}); "
                              "their outputs would collide. Segment them into different --out folders.")
