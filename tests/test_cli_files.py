"""The CLI's files, pixel for pixel, against ``segment()`` on the same photo decoded independently.

One real photo of three people (human_seg_300 photo 266) is written in every input format the
README promises (8-bit RGB, 16-bit RGB, 16-bit grey, grey, palette, RGBA) and segmented by
``bodypix-gimp segment`` with every output option.  The expected arrays come from
``segment()`` on pixels decoded here without the project's loader (Pillow / OpenCV and the
formats' own definitions: 16-bit = 8-bit x 257, palette = Pillow's RGB conversion, RGBA =
its colours), so a loader, writer or option bug shows up as a pixel difference.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from bodypix_gimp import PART_NAMES, Settings, segment
from bodypix_gimp.cli import main
from bodypix_gimp.settings import default_settings
from conftest import EVAL
from PIL import Image

PHOTO = EVAL / "human_seg_300" / "images" / "266.jpg"  # three people side by side, touching, 613x408
# body-pix's RAINBOW_PART_COLORS (output_rendering_util.ts), copied here as the independent
# source of the overlay's colours.
RAINBOW = np.array(
    [[110, 64, 170], [143, 61, 178], [178, 60, 178], [210, 62, 167], [238, 67, 149], [255, 78, 125],
     [255, 94, 99], [255, 115, 75], [255, 140, 56], [239, 167, 47], [217, 194, 49], [194, 219, 64],
     [175, 240, 91], [135, 245, 87], [96, 247, 96], [64, 243, 115], [40, 234, 141], [28, 219, 169],
     [26, 199, 194], [33, 176, 213], [47, 150, 224], [65, 125, 224], [84, 101, 214], [99, 81, 195]], np.uint8)


def png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    with Image.open(PHOTO) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def inputs(photo: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """Input files of every kind and the RGB pixels each one holds, decoded without bodypix_gimp."""
    d = tmp_path_factory.mktemp("inputs")
    grey = np.asarray(Image.fromarray(photo).convert("L"))
    expected: dict[str, np.ndarray] = {}
    Image.fromarray(photo).save(d / "rgb8.png")
    expected["rgb8"] = photo
    # 48-bit RGB PNG (OpenCV writes BGR order); each 16-bit value is the 8-bit one x 257.
    cv2.imwrite(str(d / "rgb16.png"), (photo.astype(np.uint16) * 257)[..., ::-1])
    expected["rgb16"] = photo
    # 16-bit greyscale (Pillow mode I;16): scaled wrongly, the photo turns white and nobody is found.
    cv2.imwrite(str(d / "grey16.png"), grey.astype(np.uint16) * 257)
    expected["grey16"] = np.repeat(grey[..., None], 3, axis=2)
    Image.fromarray(grey).save(d / "grey.png")
    expected["grey"] = expected["grey16"]
    pal = Image.fromarray(photo).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    pal.save(d / "palette.png")
    expected["palette"] = np.asarray(pal.convert("RGB"))
    # RGBA with a varying alpha: BodyPix sees the colours only (README: alpha is ignored).
    alpha = np.linspace(0, 255, photo.shape[1], dtype=np.uint8)[None, :].repeat(photo.shape[0], 0)
    Image.fromarray(np.dstack([photo, alpha])).save(d / "rgba.png")
    expected["rgba"] = photo
    return d, expected


def check_files(out: Path, stem: str, res, rgb: np.ndarray, soft: bool) -> None:  # noqa: ANN001
    """Every file the CLI wrote for ``stem`` against the in-process result ``res``."""
    person = png(out / f"{stem}.person.png")
    assert person.dtype == np.uint8 and person.shape == rgb.shape[:2]
    assert np.array_equal(person, res.person_mask), f"{stem}: person.png differs from segment()"
    if soft:
        ramp = (person > 0) & (person < 255)
        assert ramp.sum() > 500, f"{stem}: a --soft mask needs its alpha ramp"
    else:
        assert set(np.unique(person)) <= {0, 255}
    parts = png(out / f"{stem}.parts.png")
    assert np.array_equal(parts, res.part_map), f"{stem}: parts.png differs"
    # the files' contract: a part id on every person pixel, 255 everywhere else
    assert np.array_equal(parts == 255, person < 128), f"{stem}: parts.png and person.png disagree"
    assert len(set(np.unique(parts)) - {255}) >= 10  # the part ids themselves, not a binarised map
    # overlay: body-pix drawMask, 0.3 photo + 0.7 part colour (white where no part), rounded;
    # exact as PNG (--overlay png), within JPEG's loss as the default JPEG
    colours = np.where((parts == 255)[..., None], np.uint8(255), RAINBOW[np.minimum(parts, 23)])
    want = np.floor(rgb.astype(np.float64) * 0.3 + colours.astype(np.float64) * 0.7 + 0.5)
    if (out / f"{stem}.overlay.png").exists():
        got = png(out / f"{stem}.overlay.png").astype(np.float64)
        assert np.abs(got - want).max() <= 1, f"{stem}: overlay is not the part colours over the photo"
    else:
        got = png(out / f"{stem}.overlay.jpg").astype(np.float64)
        assert np.abs(got - want).mean() < 3, f"{stem}: overlay.jpg is not the part colours over the photo"
    # one 0/255 file per part present, named after it
    present = {PART_NAMES[i] for i in np.unique(res.part_map) if i < len(PART_NAMES)}
    written = {p.name[len(stem) + 6:-4] for p in out.glob(f"{stem}.part-*.png")}
    assert written == present
    for name in present:
        want_mask = np.where(res.part_map == PART_NAMES.index(name), 255, 0)
        assert np.array_equal(png(out / f"{stem}.part-{name}.png"), want_mask), f"{stem}: part-{name}.png"
    # one file per person, each that person's pixels of the mask; together the whole mask
    assert len(res.persons) == 3, "photo 266 shows three people"
    union = np.zeros(person.shape, np.int32)
    sizes = []
    for p in res.persons:
        mine = png(out / f"{stem}.person-{p.index}.png")
        assert np.array_equal(mine, p.mask), f"{stem}: person-{p.index}.png"
        sizes.append((mine >= 128).sum())
        union += mine >= 128
    assert min(sizes) > 0.1 * (person >= 128).sum()  # three people, not slivers (measured: 0.14 the smallest)
    assert union.max() == 1 and np.array_equal(union > 0, person >= 128)
    assert not (out / f"{stem}.person-{len(res.persons) + 1}.png").exists()
    # JSON: the result's own summary (timings aside)
    data = json.loads((out / f"{stem}.json").read_text())
    want_json = json.loads(json.dumps(res.summary()))
    for key in ("width", "height", "person_found", "person_pixels", "parts", "poses", "persons"):
        assert data[key] == want_json[key], f"{stem}.json: {key}"
    assert data["person_pixels"] == int((person >= 128).sum())
    assert data["settings"]["soft_edges"] is soft


@pytest.fixture(scope="module")
def cli_run(inputs, tmp_path_factory):  # noqa: ANN001, ANN201
    d, _ = inputs
    out = tmp_path_factory.mktemp("out")
    files = sorted(d.glob("*.png"))
    rc = main(["segment", *map(str, files), "--out", str(out), "--json", "--part-masks", "--persons", "-q",
               "--overlay", "png"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def expected_results(inputs):  # noqa: ANN001, ANN201
    _, expected = inputs
    settings = default_settings(multi_person=True)
    cache: dict[bytes, object] = {}
    out = {}
    for stem, rgb in expected.items():
        key = rgb.tobytes()
        if key not in cache:
            cache[key] = segment(rgb, settings)
        out[stem] = cache[key]
    return out


@pytest.mark.parametrize("stem", ["rgb8", "rgb16", "grey16", "grey", "palette", "rgba"])
def test_cli_files_equal_segment_on_the_same_pixels(stem, inputs, cli_run, expected_results) -> None:  # noqa: ANN001
    _, expected = inputs
    res = expected_results[stem]
    assert res.found_person
    check_files(cli_run, stem, res, expected[stem], soft=False)


def test_soft_files_equal_segment_with_soft_edges(inputs, tmp_path) -> None:  # noqa: ANN001
    d, expected = inputs
    rc = main(["segment", str(d / "rgb8.png"), "--out", str(tmp_path), "--soft", "--json", "--part-masks",
               "--persons", "-q"])
    assert rc == 0
    res = segment(expected["rgb8"], default_settings(multi_person=True, soft_edges=True))
    check_files(tmp_path, "rgb8", res, expected["rgb8"], soft=True)


def test_threshold_and_no_refine_options_reach_segment(inputs, tmp_path) -> None:  # noqa: ANN001
    d, expected = inputs
    rc = main(["segment", str(d / "rgb8.png"), "--out", str(tmp_path), "--no-refine", "--no-fingers",
               "--threshold", "0.9", "-q"])
    assert rc == 0
    want = segment(expected["rgb8"], Settings(segmentation_threshold=0.9))
    loose = segment(expected["rgb8"], Settings(segmentation_threshold=0.3))
    assert (want.person_mask >= 128).sum() < (loose.person_mask >= 128).sum()  # the knob matters here
    assert np.array_equal(png(tmp_path / "rgb8.person.png"), want.person_mask)
    assert np.array_equal(png(tmp_path / "rgb8.parts.png"), want.part_map)


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (9, 6)])
def test_tiny_inputs_equal_segment(photo, tmp_path, size) -> None:  # noqa: ANN001
    small = Image.fromarray(photo).resize(size)
    small.save(tmp_path / "tiny.png")
    assert main(["segment", str(tmp_path / "tiny.png"), "--out", str(tmp_path / "o"), "-q"]) == 0
    want = segment(np.asarray(small), default_settings())
    assert np.array_equal(png(tmp_path / "o" / "tiny.person.png"), want.person_mask)
    assert np.array_equal(png(tmp_path / "o" / "tiny.parts.png"), want.part_map)


def test_an_output_never_overwrites_an_input_even_with_force(tmp_path, capsys) -> None:  # noqa: ANN001
    # `segment DIR/* --out DIR --force` after an earlier run: a.jpg's output a.person.png is
    # also one of the inputs.  The run is refused before anything is written.
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.open(PHOTO).save(folder / "a.jpg")
    Image.open(PHOTO).convert("L").save(folder / "a.person.png")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    rc = main(["segment", str(folder / "a.jpg"), str(folder / "a.person.png"), "--out", str(folder), "--force"])
    assert rc == 2
    assert "would overwrite an input" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_failed_write_leaves_no_file_and_no_temp_file(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from bodypix_gimp import imageio

    target = tmp_path / "x.person.png"
    target.write_bytes(b"old contents")

    def disk_full(self, fp, *args, **kwargs):  # noqa: ANN001, ANN202 - the injected fault
        Path(fp).write_bytes(b"\x89PNG partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        imageio.save_png(target, np.zeros((4, 4), np.uint8))
    assert target.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["x.person.png"]


def test_save_png_keeps_every_value(tmp_path) -> None:  # noqa: ANN001
    """imageio.save_png (evaluation overlays and masks) writes the array as it is: soft alpha,
    part ids and colours, not a binarised copy."""
    from bodypix_gimp import imageio

    ramp = np.arange(256, dtype=np.uint8).reshape(16, 16)
    colour = np.dstack([ramp, ramp[::-1], ramp.T])
    for name, array in (("ramp.png", ramp), ("colour.png", colour)):
        imageio.save_png(tmp_path / name, array)
        assert np.array_equal(png(tmp_path / name), array), name


def test_exif_orientation_of_a_png_is_applied(photo, tmp_path) -> None:  # noqa: ANN001
    """EXIF orientation in a PNG (JPEGs take OpenCV's path, which applies it itself)."""
    from PIL import ImageOps

    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    Image.fromarray(photo).save(tmp_path / "turned.png", exif=exif)
    with Image.open(tmp_path / "turned.png") as im:
        upright = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert upright.shape[:2] == photo.shape[1::-1]
    assert main(["segment", str(tmp_path / "turned.png"), "--out", str(tmp_path / "o"), "-q", "--no-refine"]) == 0
    want = segment(upright, default_settings(refine="none"))
    assert np.array_equal(png(tmp_path / "o" / "turned.person.png"), want.person_mask)
