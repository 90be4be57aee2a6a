"""Where model files live, and their sha256 check.

Lookup order (first hit wins): an explicit folder argument, then ``$BODYPIX_MODELS``, then
the per-user data folder the installer fills.  Each folder is laid out like
``../shared/models`` (``bodypix/onnx/...``, ``mediapipe_hands/...``, ``rvm/...``,
``selfie_segmentation/...``), so ``BODYPIX_MODELS=../shared/models`` works as is.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import platformdirs

from ..errors import ChecksumError, ModelNotFoundError
from .manifest import bodypix_variants, manifest_path

ENV_VAR = "BODYPIX_MODELS"
APP_NAME = "bodypix-gimp"

INSTALL_HINT = (
    "Install the models with `python installer/install.py --models-from DIR` (offline, a folder "
    "laid out like shared/models) or `python installer/install.py` (downloads the official files), "
    f"or point ${ENV_VAR} at such a folder."
)


def user_models_dir() -> Path:
    """The per-user data folder the installer fills (platform specific)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "models"


def models_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the models folder: argument -> $BODYPIX_MODELS -> user data folder.

    An explicit folder or environment variable that does not exist is an error (a typo
    should not silently fall through to another install).
    """
    for source, value in (("argument", explicit), (ENV_VAR, os.environ.get(ENV_VAR))):
        if value:
            path = Path(value).expanduser()
            if not path.is_dir():
                raise ModelNotFoundError(f"Models folder from {source} does not exist: {path}. {INSTALL_HINT}")
            return active_folder(path.resolve())
    path = user_models_dir()
    if not path.is_dir():
        raise ModelNotFoundError(f"No models installed (looked in {path}). {INSTALL_HINT}")
    return active_folder(path)


POINTER_FILE = "current.json"
SETS_DIR = "sets"


def active_folder(base: Path) -> Path:
    """The folder that holds the models in use: ``base`` itself, or the set ``base/current.json`` names.

    Model setup stages a complete new set in ``base/sets/`` and switches to it by replacing
    ``current.json`` in one atomic rename, so a reader sees the old set or the new one, never
    a mix.  A folder without ``current.json`` (``shared/models``, older installs) is used as is.
    """
    pointer = base / POINTER_FILE
    if not pointer.is_file():
        return base
    try:
        name = json.loads(pointer.read_text(encoding="utf-8"))["set"]
        if not isinstance(name, str) or name in ("", ".", "..") or any(c in name for c in "/\\:\0"):
            raise ValueError(f"not a set name: {name!r}")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise ModelNotFoundError(f"Models folder {base}: {POINTER_FILE} is damaged ({e}). {INSTALL_HINT}") from None
    folder = base / SETS_DIR / name
    if not folder.is_dir():
        raise ModelNotFoundError(f"Models folder {base}: the set {name} that {POINTER_FILE} names is missing. "
                                 f"{INSTALL_HINT}")
    return folder


# Relative paths of the ONNX files below a models folder.
def bodypix_relpath(model_name: str) -> str:
    """``mobilenet075-quant2-stride16`` -> ``bodypix/onnx/bodypix_mobilenet075_quant2_stride16.onnx``."""
    return f"bodypix/onnx/bodypix_{model_name.replace('-', '_')}.onnx"


AUX_MODELS = {
    "palm_detection_full": "mediapipe_hands/palm_detection_full.onnx",
    "palm_detection_lite": "mediapipe_hands/palm_detection_lite.onnx",
    "hand_landmark_full": "mediapipe_hands/hand_landmark_full.onnx",
    "hand_landmark_lite": "mediapipe_hands/hand_landmark_lite.onnx",
    "rvm": "rvm/rvm_mobilenetv3.onnx",
    "selfie": "selfie_segmentation/selfie_segmentation_256.onnx",
}


def known_checksums() -> dict[str, str]:
    """sha256 of known ONNX files by relative path, from ``models/manifest.json``.

    Files converted locally by the installer get their checksum recorded next to them in
    ``checksums.json`` in the models folder; that file is merged in by ``model_path``.
    """
    manifest = manifest_path()
    if manifest is None:
        return {}
    data = json.loads(manifest.read_text())
    return dict(data.get("onnx_sha256", {}))


def sha256_of(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime: float) -> str:
    return sha256_of(path)


def sha256_file(path: str | os.PathLike[str]) -> str:
    st = os.stat(path)
    return _sha256(str(path), st.st_size, st.st_mtime)


def model_path(relpath: str, folder: str | os.PathLike[str] | None = None, verify: bool = True) -> Path:
    """Absolute path of a model file, verified against its recorded sha256 when one is known."""
    base = models_dir(folder)
    path = base / relpath
    if not path.is_file():
        raise ModelNotFoundError(f"Model file {relpath} is not installed in {base}. {INSTALL_HINT}")
    if verify:
        # The installer's record beside the files wins: a file converted locally from the
        # official TF.js weights legitimately differs from the reference conversion.
        local = base / "checksums.json"
        expected = json.loads(local.read_text()).get(relpath) if local.is_file() else None
        if expected is None:
            expected = known_checksums().get(relpath)
        if expected is not None and sha256_file(path) != expected:
            raise ChecksumError(
                f"Model file {path} does not match its recorded sha256 (expected {expected[:12]}...); "
                "it is damaged or was replaced. Reinstall it: " + INSTALL_HINT
            )
    return path


def installed_models(folder: str | os.PathLike[str] | None = None) -> dict[str, bool]:
    """Which model files exist in the resolved folder (no checksum work)."""
    try:
        base = models_dir(folder)
    except ModelNotFoundError:
        base = None
    out = {}
    for name in bodypix_variants():
        out[name] = bool(base and (base / bodypix_relpath(name)).is_file())
    for name, rel in AUX_MODELS.items():
        out[name] = bool(base and (base / rel).is_file())
    return out
