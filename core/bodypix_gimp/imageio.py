"""Reading photos and writing results, with one-line errors for bad input.

Pillow reads the header (format, size, limit) and decodes everything except plain 8-bit
RGB and greyscale JPEGs, which OpenCV decodes (same libjpeg-turbo pixels, half the time, no
second copy of the photo); this module normalises what comes out (EXIF rotation, 16-bit,
CMYK, palette, greyscale, alpha) to HxWx3 uint8 RGB, and writes files atomically so that a
failure never leaves a half-written output.
"""

from __future__ import annotations

import os
import secrets
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

# Photos above this many pixels are refused with a clear message (measured with
# `bodypix-gimp bench --scale`: a 150 MP photo peaks at about 1.7 GB in segment() and 2.8 GB
# through the CLI, docs/reliability.md; beyond that a refusal beats swapping the machine).
MAX_PIXELS = 150_000_000


def as_rgb(image: np.ndarray) -> np.ndarray:
    """HxW, HxWx1, HxWx3 or HxWx4 array (uint8, uint16 or float 0..1) -> HxWx3 uint8.

    Alpha is ignored: BodyPix sees the colours, as body-pix does with an RGBA canvas.
    """
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise InputError(f"Expected an HxW, HxWx3 or HxWx4 image array, got shape {a.shape}")
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise InputError("Image array contains NaN or infinite values")
        a = np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        raise InputError(f"Unsupported image dtype {a.dtype}; expected uint8, uint16 or float")
    if a.shape[2] in (1, 2):  # grey or grey+alpha
        a = np.repeat(a[..., :1], 3, axis=2)
    if a.shape[2] == 4:  # OpenCV's one pass: numpy's strided copy of a 12 MP RGBA photo took ~55 ms, this ~8
        return cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGBA2RGB)
    return np.ascontiguousarray(a)


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a photo as HxWx3 uint8 RGB, upright (EXIF orientation applied)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, not an image")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            with Image.open(p) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise InputError(
                        f"{p}: {im.width}x{im.height} is {im.width * im.height / 1e6:.0f} MP, above the "
                        f"{MAX_PIXELS / 1e6:.0f} MP limit; downscale it first"
                    )
                fast = _decode_jpeg(p, im)
                if fast is not None:
                    return fast
                im = ImageOps.exif_transpose(im)
                im.load()
                return pil_to_rgb(im)
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{p}: not an image file Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{p}: image is larger than the {MAX_PIXELS / 1e6:.0f} MP limit") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{p}: cannot decode image ({e})") from None


def _decode_jpeg(path: Path, im: Image.Image) -> np.ndarray | None:
    """An 8-bit RGB or grey JPEG decoded by OpenCV, upright; None when Pillow should decode it.

    Why: at 12 MP OpenCV's decoder takes half Pillow's time and writes straight into the one
    array returned (Pillow decodes into its own buffer, then numpy copies it).  Both use
    libjpeg-turbo with the same settings, so the pixels are the same (tests/test_load_image.py
    compares them, EXIF orientations included); anything else (CMYK, a file that does not end
    with the end-of-image marker, odd orientation data, an OpenCV that fails) goes the Pillow way.
    """
    if im.format != "JPEG" or im.mode not in ("RGB", "L"):
        return None
    orientation = im.getexif().get(0x0112, 1)
    upright = (im.height, im.width) if orientation in (5, 6, 7, 8) else (im.width, im.height)
    data = np.fromfile(path, np.uint8)
    if data[-2:].tobytes() != b"\xff\xd9":
        # No end-of-image marker last: cut short (some OpenCV versions then return a grey-filled
        # photo where Pillow refuses) or trailing bytes; Pillow decides, as it always did.
        return None
    rgb_flag = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.11 converts while decoding
    try:
        a = cv2.imdecode(data, cv2.IMREAD_COLOR if rgb_flag is None else rgb_flag)
    except cv2.error:
        return None
    if a is None or a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8 or (a.shape[1], a.shape[0]) != upright:
        return None
    if rgb_flag is None:
        cv2.cvtColor(a, cv2.COLOR_BGR2RGB, dst=a)
    return a


def pil_to_rgb(im: Image.Image) -> np.ndarray:
    """Any Pillow mode -> HxWx3 uint8 RGB (16-bit scaled, CMYK and palette converted)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        return as_rgb(np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float32)
        return as_rgb(np.clip(a, 0, 1) if a.max() <= 1.0 else np.clip(a / 255.0, 0, 1))
    if im.mode != "RGB":
        im = im.convert("RGBA" if "A" in im.mode or im.mode == "P" else "RGB")
    return as_rgb(np.asarray(im))


def atomic_write(path: Path, write: callable) -> None:  # type: ignore[valid-type]
    """Write through a temp file in the same folder, then rename: never a partial file.

    The temp file is created with mode 0666 minus the umask, as ``open()`` would (mkstemp's
    0600 would make every output private whatever the user's umask).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".tmp-{secrets.token_hex(6)}{path.suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_png(path: Path, array: np.ndarray) -> None:
    """Save an HxW (greyscale) or HxWx3 uint8 array as PNG, atomically."""
    atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))
