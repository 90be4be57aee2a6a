"""``load_image`` decodes JPEGs with OpenCV when it can: the pixels must be Pillow's, exactly."""

from __future__ import annotations

import numpy as np
import pytest
from bodypix_gimp import imageio
from bodypix_gimp.imageio import load_image, pil_to_rgb
from conftest import EVAL
from PIL import Image, ImageOps


def pillow_rgb(path) -> np.ndarray:
    """The Pillow way, independent of the OpenCV fast path: transpose by EXIF, convert."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        im.load()
        return pil_to_rgb(im)


def spy_opencv(monkeypatch) -> list[np.ndarray | None]:
    calls: list[np.ndarray | None] = []
    real = imageio._decode_jpeg

    def spy(path, im):  # noqa: ANN001, ANN202
        calls.append(real(path, im))
        return calls[-1]

    monkeypatch.setattr(imageio, "_decode_jpeg", spy)
    return calls


def test_eval_jpegs_decode_to_pillows_pixels(monkeypatch):
    photos = sorted((EVAL / "p3m_demo_pseudo" / "images").glob("*.jpg"))[:6] + [EVAL / "seed" / "jim.jpg"]
    calls = spy_opencv(monkeypatch)
    for path in photos:
        ours = load_image(path)
        assert calls[-1] is not None, f"{path}: the OpenCV path was not taken"
        ref = pillow_rgb(path)
        assert ours.dtype == np.uint8 and ours.flags.c_contiguous
        assert np.array_equal(ours, ref), path


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillow(tmp_path, monkeypatch, orientation):
    rng = np.random.default_rng(orientation)
    # an asymmetric picture (gradient + noise) so any wrong flip or turn shows
    y, x = np.mgrid[0:96, 0:160]
    rgb = np.stack([x * 1.5, y * 2.5, (x + y) % 256], -1) + rng.integers(0, 20, (96, 160, 3))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path, exif=exif, quality=92)
    calls = spy_opencv(monkeypatch)
    ours = load_image(path)
    assert calls and calls[-1] is not None
    ref = pillow_rgb(path)
    assert ours.shape == ref.shape == ((96, 160, 3) if orientation < 5 else (160, 96, 3))
    assert np.array_equal(ours, ref)


def test_grey_and_cmyk_jpegs(tmp_path, monkeypatch):
    rgb = np.asarray(Image.open(EVAL / "seed" / "jim.jpg").convert("RGB"))
    grey, cmyk = tmp_path / "grey.jpg", tmp_path / "cmyk.jpg"
    Image.fromarray(rgb).convert("L").save(grey)
    Image.fromarray(rgb).convert("CMYK").save(cmyk)
    calls = spy_opencv(monkeypatch)
    g = load_image(grey)
    assert calls[-1] is not None  # grey: OpenCV, three equal channels
    assert np.array_equal(g, pillow_rgb(grey)) and np.array_equal(g[..., 0], g[..., 2])
    c = load_image(cmyk)
    assert calls[-1] is None  # CMYK: Pillow's conversion, as before
    assert np.array_equal(c, pillow_rgb(cmyk))


@pytest.mark.parametrize("cut", [3, 1000, 100_000])
def test_a_cut_jpeg_is_still_pillows_one_line_error(tmp_path, monkeypatch, cut):
    path = tmp_path / "cut.jpg"
    path.write_bytes((EVAL / "seed" / "jim.jpg").read_bytes()[:-cut])
    calls = spy_opencv(monkeypatch)
    with pytest.raises(imageio.InputError, match="truncated") as e:
        load_image(path)
    assert calls == [None] and str(path) in str(e.value) and "\n" not in str(e.value)


def test_as_rgb_drops_alpha_of_every_layout_as_pillow_does():
    """RGBA, RGBA views, grey+alpha and uint16 arrays come out as Pillow's RGB of the same pixels."""
    photo = Image.open(EVAL / "human_seg_300" / "images" / "055.jpg").convert("RGBA")
    photo.putalpha(Image.linear_gradient("L").resize(photo.size))  # alpha must not leak into the colours
    rgba = np.asarray(photo)
    want = np.asarray(photo.convert("RGB"))
    for a in (rgba, rgba[::-1][::-1], np.asfortranarray(rgba), rgba[:, ::2]):
        got = imageio.as_rgb(a)
        assert got.flags.c_contiguous and got.dtype == np.uint8
        assert np.array_equal(got, want if a.shape == rgba.shape else want[:, ::2])
    assert np.array_equal(imageio.as_rgb(rgba.astype(np.uint16) * 257), want)
    grey = np.asarray(photo.convert("LA"))
    assert np.array_equal(imageio.as_rgb(grey), np.asarray(photo.convert("L").convert("RGB")))
