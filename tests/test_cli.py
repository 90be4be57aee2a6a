"""`bodypix-gimp segment` on real photos and on every kind of bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bodypix_gimp.cli import main
from conftest import SAMPLE
from PIL import Image


def run_cli(*args: str) -> tuple[int, str, str]:
    p = subprocess.run([sys.executable, "-m", "bodypix_gimp.cli", *args], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def test_segment_writes_the_contracted_files(tmp_path):
    out = tmp_path / "out"
    rc = main(["segment", str(SAMPLE), "--out", str(out), "--json", "--part-masks", "--no-refine"])
    assert rc == 0
    person = np.asarray(Image.open(out / "astronaut.person.png"))
    parts = np.asarray(Image.open(out / "astronaut.parts.png"))
    overlay = Image.open(out / "astronaut.overlay.jpg")  # --overlay png for a lossless one (tests/test_batch.py)
    assert person.dtype == np.uint8 and person.shape == (512, 512) and set(np.unique(person)) <= {0, 255}
    assert set(np.unique(parts[person == 0])) == {255} and parts[person == 255].max() < 24
    assert overlay.size == (512, 512) and overlay.mode == "RGB"
    summary = json.loads((out / "astronaut.json").read_text())
    assert summary["person_found"] and "left_face" in summary["parts"]
    assert len(summary["poses"][0]["keypoints"]) == 17
    face = np.asarray(Image.open(out / "astronaut.part-left_face.png"))
    assert (face == 255).sum() == summary["parts"]["left_face"]["pixels"]


def test_existing_output_needs_force_and_inputs_are_never_overwritten(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["segment", str(SAMPLE), "--out", str(out), "--no-refine"]) == 0
    before = (out / "astronaut.person.png").stat().st_mtime_ns
    assert main(["segment", str(SAMPLE), "--out", str(out)]) == 2
    assert "use --force" in capsys.readouterr().err
    assert (out / "astronaut.person.png").stat().st_mtime_ns == before
    # An input named like an output in the output folder is refused even with --force.
    trap = out / "x.person.png"
    Image.open(SAMPLE).save(trap)
    data = trap.read_bytes()
    assert main(["segment", str(trap), "--out", str(out), "--force"]) in (0, 2)
    assert trap.read_bytes() == data


def _bad_inputs(tmp: Path) -> dict[str, Path]:
    files = {}
    files["zero"] = tmp / "zero.jpg"
    files["zero"].write_bytes(b"")
    files["truncated"] = tmp / "truncated.jpg"
    files["truncated"].write_bytes(SAMPLE.read_bytes()[:4000])
    files["text"] = tmp / "notes.png"
    files["text"].write_text("this is not an image\n")
    return files


@pytest.mark.parametrize("kind", ["zero", "truncated", "text"])
def test_broken_files_give_one_line_errors_and_no_outputs(tmp_path, kind):
    bad = _bad_inputs(tmp_path)[kind]
    rc, out, err = run_cli("segment", str(bad), "--out", str(tmp_path / "out"), "--no-refine")
    assert rc == 1
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("bodypix-gimp: error:")]
    assert len(lines) == 1 and bad.name in lines[0]
    # Nothing but the manifest's line saying the photo failed.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.jsonl"]
    line = json.loads((tmp_path / "out" / "manifest.jsonl").read_text())
    assert line["status"] == "failed" and bad.name in line["error"]


def _variants(tmp: Path) -> dict[str, Path]:
    rgb = Image.open(SAMPLE).convert("RGB")
    v = {}
    v["grey"] = tmp / "grey.png"
    rgb.convert("L").save(v["grey"])
    v["palette"] = tmp / "palette.png"
    rgb.convert("P", palette=Image.Palette.ADAPTIVE).save(v["palette"])
    v["rgba"] = tmp / "rgba.png"
    rgb.convert("RGBA").save(v["rgba"])
    v["cmyk"] = tmp / "cmyk.jpg"
    rgb.convert("CMYK").save(v["cmyk"])
    v["sixteen"] = tmp / "sixteen.png"
    Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257).save(v["sixteen"])
    v["tiny"] = tmp / "tiny.png"
    rgb.resize((1, 1)).save(v["tiny"])
    v["two"] = tmp / "two.png"
    rgb.resize((2, 2)).save(v["two"])
    v["spaces and ünïcödé фото"] = tmp / "dir with space" / "фото ünï.jpg"
    v["spaces and ünïcödé фото"].parent.mkdir()
    rgb.save(v["spaces and ünïcödé фото"])
    return v


def test_image_modes_paths_and_sizes_all_segment(tmp_path):
    v = _variants(tmp_path)
    out = tmp_path / "out"
    rc, stdout, err = run_cli("segment", *map(str, v.values()), "--out", str(out), "--no-refine", "-q")
    assert rc == 0, err
    for path in v.values():
        mask = Image.open(out / f"{path.stem}.person.png")
        assert mask.size == Image.open(path).size and mask.mode == "L"
    ref = np.asarray(Image.open(out / "rgba.person.png"))
    assert np.array_equal(ref, np.asarray(Image.open(out / "palette.person.png"))) or \
        (ref == np.asarray(Image.open(out / "palette.person.png"))).mean() > 0.97
    assert (np.asarray(Image.open(out / "cmyk.person.png")) == ref).mean() > 0.97


def test_exif_orientation_is_respected(tmp_path):
    rgb = Image.open(SAMPLE).convert("RGB").crop((0, 0, 512, 300))  # landscape pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display -> portrait
    path = tmp_path / "rotated.jpg"
    rgb.save(path, exif=exif)
    assert main(["segment", str(path), "--out", str(tmp_path), "--no-refine", "-q"]) == 0
    assert Image.open(tmp_path / "rotated.person.png").size == (300, 512)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model", "mobilenet999-float-stride16"], "Invalid multiplier"),
        (["--model", "nonsense"], "Should look like"),
        (["--threshold", "1.5"], "Should be in range [0.0, 1.0]"),
        (["--internal-resolution", "ultra"], "must be one of low,medium,high,full"),
        (["--stride", "12"], "Should be one of 8,16,32"),
        (["--models", "/nonexistent/models"], "does not exist"),
        (["--model", "resnet50-float-stride16"], "not installed"),
    ],
)
def test_bad_settings_are_one_line_errors(tmp_path, args, needle):
    rc, _, err = run_cli("segment", str(SAMPLE), "--out", str(tmp_path / "o"), *args)
    assert rc == 2 and "Traceback" not in err
    assert needle in err and err.count("\n") == 1
    assert not (tmp_path / "o" / "astronaut.person.png").exists()


def test_models_lists_installed_variants():
    rc, out, _ = run_cli("models")
    assert rc == 0
    assert "mobilenet075-quant2-stride16" in out and "installed" in out
    assert "resnet50-float-stride16" in out
