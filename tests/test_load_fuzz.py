"""Property-based fuzzing of image loading: any bytes in a file (a real photo cut short, bytes
flipped, garbage spliced in, a header that lies about the size) give either an RGB(A) uint8
array or one ``InputError`` naming the file, never another exception (hypothesis, bounded in
examples and time)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from bodypix_gimp import InputError, load_image
from conftest import EVAL
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image


def _seeds() -> dict[str, bytes]:
    """Small real files in the formats users open: JPEG, 8-bit RGB/RGBA/grey/palette PNG, 16-bit PNG."""
    with Image.open(EVAL / "seed" / "jim.jpg") as im:
        photo = im.convert("RGB").resize((48, 32))
    out: dict[str, bytes] = {}
    for name, image, fmt in [
        ("jpeg", photo, "JPEG"),
        ("rgb", photo, "PNG"),
        ("rgba", photo.convert("RGBA"), "PNG"),
        ("grey", photo.convert("L"), "PNG"),
        ("palette", photo.convert("P"), "PNG"),
        ("grey16", Image.fromarray(np.asarray(photo.convert("L"), np.uint16) * 257), "PNG"),
    ]:
        buf = io.BytesIO()
        image.save(buf, fmt)
        out[name] = buf.getvalue()
    return out


SEEDS = _seeds()


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "splice", "size"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "splice":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:  # a header field that claims a huge or zero size (PNG IHDR width/height, JPEG SOF)
            data[at:at + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\x7f\xff"]))
    return bytes(data)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def test_undamaged_seeds_load(folder: Path) -> None:
    for name, data in SEEDS.items():
        path = folder / f"{name}.img"
        path.write_bytes(data)
        image = load_image(path)
        assert image.dtype == np.uint8 and image.shape[:2] == (32, 48) and image.shape[2] in (3, 4), name


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=damaged())
def test_damaged_files_load_or_raise_input_error(folder: Path, data: bytes) -> None:
    path = folder / "damaged.img"
    path.write_bytes(data)
    try:
        image = load_image(path)
    except InputError as e:
        message = str(e)
        assert str(path) in message and "\n" not in message.strip()
        return
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8
    assert image.ndim == 3 and image.shape[2] in (3, 4) and min(image.shape[:2]) >= 1
