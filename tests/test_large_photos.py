"""Large photos: the edge band's tiles (same mask as one dense pass, inside cv2.remap's limits), and a
real 72 MP photo through the CLI (the band laid out as rows of 1024 crossed remap's 32767-row limit)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from bodypix_gimp.cli import main
from bodypix_gimp.refine import edges
from bodypix_gimp.refine.guided import coefficients_near
from bodypix_gimp.refine.scale import working_copy
from conftest import EVAL, load
from PIL import Image

# The evaluation photo with the widest edge band (hair against a busy background): about 68% of
# the photo is band, so its band passed 32767 rows of 1024 pixels above ~49 MP.
WIDE_BAND = EVAL / "p3m_demo_pseudo" / "images" / "p_71bcce3a.jpg"


def upscaled(path, megapixels: float) -> np.ndarray:  # noqa: ANN001
    rgb = load(path)
    h, w = rgb.shape[:2]
    k = (megapixels * 1e6 / (h * w)) ** 0.5
    return np.asarray(Image.fromarray(rgb).resize((round(w * k), round(h * k)), Image.Resampling.LANCZOS))


@pytest.fixture(scope="module")
def band_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 3 MP photo, its 1 MP working copy and a working-grid probability with a wide soft edge.

    The probability is the photo's own smoothed luminance ramp (no network needed): what
    matters here is that a third or more of the photo is band.
    """
    rgb = upscaled(WIDE_BAND, 3.0)
    small = working_copy(rgb, edges.WORK_PIXELS)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    p = cv2.GaussianBlur(grey, (0, 0), 6)
    p = np.clip((p - p.min()) / (p.max() - p.min() + 1e-6), 0, 1).astype(np.float32)
    return rgb, small, p


def dense_reference(rgb: np.ndarray, small: np.ndarray, p: np.ndarray, threshold: float, soft: bool) -> np.ndarray:
    """The band upsampling written the plain way: every coefficient map remapped over the whole photo."""
    H, W = rgb.shape[:2]
    h, w = p.shape
    unsure = cv2.dilate(((p > edges.BAND_LOW) & (p < edges.BAND_HIGH)).astype(np.uint8), np.ones((3, 3), np.uint8))
    near = cv2.dilate(unsure, np.ones((3, 3), np.uint8))
    coef = coefficients_near(small.astype(np.float32) * np.float32(1 / 255), p, edges.UPSAMPLE_RADIUS,
                             edges.UPSAMPLE_EPS, near)
    sx = np.broadcast_to(((np.arange(W) + 0.5) * (w / W) - 0.5).astype(np.float32), (H, W)).copy()
    sy = np.broadcast_to(((np.arange(H) + 0.5) * (h / H) - 0.5).astype(np.float32)[:, None], (H, W)).copy()
    colours = rgb.astype(np.float32) * np.float32(1 / 255)
    q = cv2.remap(coef[3], sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    for c in range(3):
        q += cv2.remap(coef[c], sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE) * colours[..., c]
    band = cv2.resize(unsure, (W, H), interpolation=cv2.INTER_NEAREST) > 0
    out = cv2.resize(edges.to_mask(p, threshold, soft), (W, H), interpolation=cv2.INTER_NEAREST)
    return np.where(band, edges.to_mask(q, threshold, soft), out)


@pytest.mark.parametrize("soft", [False, True])
def test_band_tiles_give_the_dense_mask(band_case, soft: bool) -> None:  # noqa: ANN001
    rgb, small, p = band_case
    band = cv2.dilate(((p > edges.BAND_LOW) & (p < edges.BAND_HIGH)).astype(np.uint8), np.ones((3, 3), np.uint8))
    assert band.mean() > 0.3  # a wide band: many tiles, runs split, tiles at every border
    ours = edges.upsample_band(rgb, small, p, 0.35, soft)
    assert ours.shape == rgb.shape[:2] and ours.dtype == np.uint8
    assert np.array_equal(ours, dense_reference(rgb, small, p, 0.35, soft))


def test_band_remaps_stay_small_whatever_the_tile_layout(band_case, monkeypatch) -> None:  # noqa: ANN001
    """With tiles patched tiny (16 px, runs of 3), every remap must stay within them; mask unchanged.

    The limit OpenCV enforces is 32767 per side; the patched one stands for it at a size a test
    can afford, so a layout that grows with the band (as rows of 1024 did) fails here.
    """
    rgb, small, p = band_case
    expected = edges.upsample_band(rgb, small, p, 0.35, False)
    monkeypatch.setattr(edges, "BAND_TILE", 16)
    monkeypatch.setattr(edges, "BAND_RUN_TILES", 3)
    sides: list[tuple[int, ...]] = []
    real_remap = cv2.remap

    def limited_remap(src, map1, map2, *args, **kwargs):  # noqa: ANN001, ANN202
        sides.append((*map1.shape[:2], *src.shape[:2]))
        if max(map1.shape[:2]) > 48 or max(src.shape[:2]) > 48:
            raise cv2.error("remap beyond the patched limit")  # as OpenCV's own assertion would
        return real_remap(src, map1, map2, *args, **kwargs)

    monkeypatch.setattr(cv2, "remap", limited_remap)
    assert np.array_equal(edges.upsample_band(rgb, small, p, 0.35, False), expected)
    assert len(sides) > 1000  # the band was really cut into many small pieces


@pytest.mark.slow
def test_a_72_mp_photo_with_a_wide_band_segments_through_the_cli(tmp_path) -> None:
    photo = tmp_path / "wide72.jpg"
    Image.fromarray(upscaled(WIDE_BAND, 72.0)).save(photo, quality=90)
    out = tmp_path / "out"
    assert main(["segment", str(photo), "--out", str(out), "--quiet"]) == 0
    with Image.open(photo) as im:
        size = im.size
    for path in [out / "wide72.person.png", out / "wide72.parts.png", *out.glob("wide72.overlay.*")]:
        with Image.open(path) as im:
            assert im.size == size
    mask = np.asarray(Image.open(out / "wide72.person.png"))
    assert 0.05 < (mask >= 128).mean() < 0.95  # a person, not an empty or full mask


def test_network_input_grows_with_the_photo_up_to_1_mp_and_stays_there() -> None:
    """Product settings: BodyPix looks at the photo's 1 MP working copy at internal resolution
    "medium", so from 1 MP up every photo gets a 1 MP photo's input, with no step anywhere
    (a 4.0 and a 4.1 MP photo alike); body-pix's own settings keep the 1 MP input cap."""
    from bodypix_gimp.bodypix.model import plan_geometry
    from bodypix_gimp.settings import Settings

    product, faithful = Settings.product(), Settings()
    sizes = np.geomspace(0.2e6, 40e6, 400)
    inputs = []
    for pixels in sizes:
        h = round((pixels * 9 / 16) ** 0.5)
        g = plan_geometry(h, round(h * 16 / 9), product)
        inputs.append(g.input_height * g.input_width)
    inputs = np.array(inputs)
    assert np.all(np.diff(inputs) >= 0)  # never fewer input pixels for a larger photo
    assert np.all(inputs[1:] <= inputs[:-1] * 1.1)  # no step: neighbouring sizes, neighbouring inputs
    from_1mp = inputs[sizes >= 1.0e6]
    assert np.all(from_1mp == from_1mp[0]) and 0.2e6 < from_1mp[0] <= 0.25e6
    assert plan_geometry(2598, 4619, product).work_height == working_copy(np.zeros((2598, 4619, 1), np.uint8),
                                                                          edges.WORK_PIXELS).shape[0]
    g = plan_geometry(2598, 4619, faithful)  # body-pix defaults: capped at a 1 MP input
    assert 0.9e6 < g.input_height * g.input_width <= 1e6


def test_a_large_photos_parts_fill_exactly_its_full_resolution_person() -> None:
    """A 6 MP photo: the part map is the working grid's labels scaled up, clipped by the full-size
    person mask (every person pixel has a part, no part outside it), and it agrees with the 1 MP
    photo's part map on the person pixels both have.  (Held objects, which get no part, not judged.)"""
    from bodypix_gimp.pipeline import segment
    from bodypix_gimp.settings import Settings

    settings = Settings.product(include_held=None)
    big = upscaled(WIDE_BAND, 6.0)
    one = upscaled(WIDE_BAND, 1.0)
    r_big, r_one = segment(big, settings), segment(one, settings)
    assert r_big.info["input_size"] == r_one.info["input_size"]
    person = r_big.person_mask >= 128
    assert person.sum() > 0.1 * person.size
    assert np.array_equal(r_big.part_map != 255, person)
    down = cv2.resize(r_big.part_map, one.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    both = (down != 255) & (r_one.part_map != 255)
    assert both.sum() > 0.9 * (r_one.part_map != 255).sum()
    assert (down[both] == r_one.part_map[both]).mean() > 0.9
