"""`bodypix-gimp segment` over many photos with the local engine (issue 13's batch, issue 12's CLI batch).

Real photos from ../shared/eval and the real models; faults are injected only where a real
one cannot be made on demand (a full disk, an OpenCV error inside one photo).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from bodypix_gimp.batch import inputs, outputs
from bodypix_gimp.batch import manifest as manifest_mod
from bodypix_gimp.cli import main
from bodypix_gimp.imageio import load_image
from bodypix_gimp.pipeline import segment
from bodypix_gimp.render import part_overlay
from bodypix_gimp.settings import default_settings
from conftest import SAMPLE, human_seg_pairs
from PIL import Image

KINDS = ("person.png", "parts.png", "overlay.png")


def photos_dir(tmp: Path, n: int, name: str = "in") -> Path:
    folder = tmp / name
    folder.mkdir()
    for img, _ in human_seg_pairs(n):
        shutil.copy(img, folder / img.name)
    return folder


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bodypix_gimp.cli", *args], capture_output=True, text=True,
                          timeout=600, **kw)


def error_lines(stderr: str) -> list[str]:
    lines = (ln.strip() for ln in stderr.replace("\r", "\n").splitlines())
    return [ln for ln in lines if ln.startswith("bodypix-gimp: error:")]


def test_local_engine_writes_what_segment_computes(tmp_path):
    """Each photo's files decode to exactly segment()'s arrays (product defaults, several photos)."""
    folder = photos_dir(tmp_path, 2)
    shutil.copy(SAMPLE, folder / SAMPLE.name)
    out = tmp_path / "out"
    assert main(["segment", str(folder), "--out", str(out), "--overlay", "png", "-q"]) == 0
    assert main(["segment", str(folder / SAMPLE.name), "--out", str(tmp_path / "jpg"), "-q"]) == 0
    settings = default_settings()
    for img in sorted(folder.iterdir()):
        photo = load_image(img)
        want = segment(photo, settings)
        person = np.asarray(Image.open(out / f"{img.stem}.person.png"))
        parts = np.asarray(Image.open(out / f"{img.stem}.parts.png"))
        overlay = np.asarray(Image.open(out / f"{img.stem}.overlay.png"))
        assert person.dtype == np.uint8 and np.array_equal(person, want.person_mask), img.name
        assert np.array_equal(parts, want.part_map), img.name
        assert np.array_equal(overlay, part_overlay(photo, want.part_map)), img.name
        if img.name == SAMPLE.name:  # the default JPEG overlay: the same picture, lossy
            jpg = np.asarray(Image.open(tmp_path / "jpg" / f"{img.stem}.overlay.jpg").convert("RGB"))
            assert cv2.PSNR(jpg, part_overlay(photo, want.part_map)) > 30
    lines = manifest_mod.read(out / "manifest.jsonl")
    assert sorted(ln["input"] for ln in lines) == sorted(str(p) for p in folder.iterdir())
    for ln in lines:
        stem = Path(ln["input"]).stem
        assert ln["status"] == "ok" and ln["outputs"] == [f"{stem}.{k}" for k in KINDS]
        assert ln["engine"] == "local" and ln["timings_ms"]["segment"]["total"] > 0


def test_overlay_table_equals_render_for_every_colour_and_value():
    """The table-driven overlay gives render.part_overlay's bytes for all 25 colours x 256 values."""
    ids = np.array([*range(24), 255], np.uint8)
    part_map = np.repeat(ids, 256)[None, :].repeat(3, axis=0)
    values = np.tile(np.arange(256, dtype=np.uint8), len(ids))
    rng = np.random.default_rng(0)
    image = np.stack([values, rng.permutation(values), values[::-1]], axis=-1)[None].repeat(3, axis=0)
    got = outputs.overlay_bgr(image, part_map)[..., ::-1]
    assert np.array_equal(got, part_overlay(image, part_map))


def test_a_failing_photo_is_one_line_and_the_batch_goes_on(tmp_path):
    folder = photos_dir(tmp_path, 3)
    (folder / "broken.jpg").write_bytes((folder / "055.jpg").read_bytes()[:3000])
    (folder / "notes.png").write_text("not an image\n")
    out = tmp_path / "out"
    p = cli("segment", str(folder), "--out", str(out), "--no-refine")
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr
    errors = error_lines(p.stderr)
    assert len(errors) == 2 and any("broken.jpg" in e for e in errors) and any("notes.png" in e for e in errors)
    assert "2 of 5 photo(s) failed" in p.stderr
    latest = manifest_mod.latest(out / "manifest.jsonl")
    assert {Path(k).name: v["status"] for k, v in latest.items()} == {
        "055.jpg": "ok", "061.jpg": "ok", "064.jpg": "ok", "broken.jpg": "failed", "notes.png": "failed"}
    assert "broken.jpg" in latest[str(folder / "broken.jpg")]["error"]
    for stem in ("055", "061", "064"):
        assert all((out / f"{stem}.{k}").exists() for k in ("person.png", "parts.png", "overlay.jpg"))
    assert not list(out.glob("broken.*")) and not list(out.glob("notes.*"))


@pytest.mark.parametrize("fault", ["cv2", "oserror", "memory", "runtime"])
def test_any_error_type_fails_only_its_photo(tmp_path, monkeypatch, capsys, fault):
    """OSError, cv2.error, MemoryError, onnxruntime's RuntimeError inside one photo: its line, the rest done."""
    import bodypix_gimp.batch.local as local

    folder = photos_dir(tmp_path, 3)
    errors = {"cv2": cv2.error("OpenCV(4.x) remap.cpp:42: error: (-215:Assertion failed) dst.rows < SHRT_MAX"),
              "oserror": OSError(errno.EIO, "Input/output error"), "memory": MemoryError(),
              "runtime": RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Invalid input shape")}
    real = local.segment

    def faulty(photo, *a, **k):  # fault injection: the second photo fails inside segment()
        if photo.shape[:2] == load_image(folder / "061.jpg").shape[:2]:
            raise errors[fault]
        return real(photo, *a, **k)

    monkeypatch.setattr(local, "segment", faulty)
    out = tmp_path / "out"
    assert main(["segment", str(folder), "--out", str(out), "--no-refine", "-q"]) == 1
    err = capsys.readouterr().err
    lines = error_lines(err)
    assert len(lines) == 1 and "061.jpg" in lines[0] and type(errors[fault]).__name__.split(".")[-1] in lines[0]
    assert "1 of 3 photo(s) failed" in err
    assert (out / "055.person.png").exists() and (out / "064.person.png").exists()
    assert not list(out.glob("061.*"))
    status = {Path(k).name: v["status"] for k, v in manifest_mod.latest(out / "manifest.jsonl").items()}
    assert status == {"055.jpg": "ok", "061.jpg": "failed", "064.jpg": "ok"}


def _unwritable(path: Path) -> None:
    path.mkdir()
    if os.geteuid() == 0:  # root writes through permissions; the immutable attribute stops it too
        subprocess.run(["chattr", "+i", str(path)], check=True)
    else:
        path.chmod(0o555)


def _writable_again(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], check=False)
    path.chmod(0o755)


@pytest.mark.parametrize("case", ["file", "under-file", "unwritable", "full"])
def test_a_bad_out_is_refused_before_any_work(tmp_path, monkeypatch, capsys, case):
    import bodypix_gimp.batch.local as local

    def no_work(*a, **k):
        raise AssertionError("a photo was read or segmented before --out was checked")

    monkeypatch.setattr(local, "load_image", no_work)
    monkeypatch.setattr(local, "segment", no_work)
    (tmp_path / "afile").write_text("x")
    out = {"file": tmp_path / "afile", "under-file": tmp_path / "afile" / "sub",
           "unwritable": tmp_path / "ro", "full": tmp_path / "full"}[case]
    if case == "unwritable":
        _unwritable(out)
    if case == "full":  # fault injection: the disk reports no free space
        real = shutil.disk_usage
        monkeypatch.setattr(outputs.shutil, "disk_usage",
                            lambda p: real(p)._replace(free=4096) if Path(p) == out else real(p))
    try:
        assert main(["segment", str(SAMPLE), "--out", str(out), "-q"]) == 2
    finally:
        if case == "unwritable":
            _writable_again(out)
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith(f"bodypix-gimp: error: --out {out}:")
    assert {"file": "is a file", "under-file": "is a file", "unwritable": "cannot write",
            "full": "full"}[case] in err
    assert (tmp_path / "afile").read_text() == "x"
    if case in ("unwritable", "full"):
        assert list(out.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_honour_the_umask(tmp_path, umask):
    out = tmp_path / "out"
    old = os.umask(umask)
    try:
        assert main(["segment", str(SAMPLE), "--out", str(out), "--no-refine", "--json", "-q"]) == 0
    finally:
        os.umask(old)
    files = sorted(out.iterdir())
    assert len(files) == 5  # person, parts, overlay, json, manifest
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask, f.name


def _complete_or_absent(out: Path, stems: list[str]) -> list[str]:
    """Stems whose outputs are all there; fail if any photo has only some of them."""
    done = []
    for stem in stems:
        present = [(out / f"{stem}.{k}").exists() for k in KINDS]
        assert all(present) or not any(present), f"{stem}: partial outputs {present}"
        if all(present):
            done.append(stem)
    return done


def wait_for(predicate, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended early: {proc.returncode} {proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def ok_lines(path: Path) -> int:
    return sum(ln["status"] == "ok" for ln in manifest_mod.read(path)) if path.exists() else 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_batch_leaves_whole_photos_and_resumes(tmp_path, sig):
    folder = photos_dir(tmp_path, 10)
    stems = sorted(p.stem for p in folder.iterdir())
    out = tmp_path / "out"
    args = ["segment", str(folder), "--out", str(out), "--no-refine", "--overlay", "png", "-q"]
    proc = subprocess.Popen([sys.executable, "-m", "bodypix_gimp.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: ok_lines(out / "manifest.jsonl") >= 1, 300, proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err and "--skip-existing" in err
    assert not [p.name for p in out.iterdir() if p.name.startswith(".tmp-")]
    done = _complete_or_absent(out, stems)
    assert 1 <= len(done) < len(stems)
    assert sorted(Path(ln["input"]).stem for ln in manifest_mod.read(out / "manifest.jsonl")) == done
    mtimes = {s: (out / f"{s}.person.png").stat().st_mtime_ns for s in done}

    p = cli(*args, "--skip-existing")
    assert p.returncode == 0, p.stderr
    assert _complete_or_absent(out, stems) == stems
    assert {s: (out / f"{s}.person.png").stat().st_mtime_ns for s in done} == mtimes
    lines = manifest_mod.read(out / "manifest.jsonl")
    last_run = [ln for ln in lines if ln["run"] == lines[-1]["run"]]
    assert sorted(Path(ln["input"]).stem for ln in last_run if ln["status"] == "skipped") == done
    assert len(last_run) == len(stems)


def test_existing_outputs_need_force_or_skip_existing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["segment", str(SAMPLE), "--out", str(out), "--no-refine", "-q"]) == 0
    assert main(["segment", str(SAMPLE), "--out", str(out), "--no-refine", "-q"]) == 2
    assert "--skip-existing" in capsys.readouterr().err
    assert main(["segment", str(SAMPLE), "--out", str(out), "--force", "--skip-existing"]) == 2
    assert main(["segment", str(SAMPLE), "--out", str(tmp_path / "w"), "--engine", "ray", "--workers", "0"]) == 2
    assert main(["segment", str(SAMPLE), "--out", str(tmp_path / "w"), "--workers", "2"]) == 2  # local engine
    assert not (tmp_path / "w").exists()
    assert main(["segment", str(SAMPLE), "--out", str(out), "--no-refine", "--skip-existing"]) == 0
    assert manifest_mod.read(out / "manifest.jsonl")[-1]["status"] == "skipped"


def test_commit_is_all_or_nothing(tmp_path, monkeypatch):
    files = {"a.person.png": b"1" * 1000, "a.parts.png": b"2" * 1000, "a.overlay.jpg": b"3" * 1000}
    real_write = os.write
    calls = {"n": 0}

    def full_disk(fd, data):  # fault injection: the disk fills up during the second file
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(outputs.os, "write", full_disk)
    with pytest.raises(OSError):
        outputs.commit(tmp_path, files)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(outputs.os, "write", real_write)
    assert outputs.commit(tmp_path, files) == list(files)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)
    assert (tmp_path / "a.parts.png").read_bytes() == files["a.parts.png"]


def test_folders_globs_and_files_expand(tmp_path):
    folder = tmp_path / "shoot"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.jpg", "a.PNG", "c.webp", "sub/d.jpg", "notes.txt", ".hidden.jpg",
                 "a.person.png", "a.parts.png", "a.overlay.jpg", "a.part-left_face.png", "a.person-2.png"):
        (folder / name).write_bytes(b"x")
    got = inputs.expand([str(folder)])
    assert [p.name for p in got] == ["a.PNG", "b.jpg", "c.webp"]
    got = inputs.expand([str(folder / "**" / "*.jpg"), str(folder / "b.jpg"), str(tmp_path / "missing.jpg")])
    assert [p.relative_to(tmp_path).as_posix() for p in got] == [
        "shoot/b.jpg", "shoot/sub/d.jpg", "missing.jpg"]  # outputs of an earlier run are not inputs
    with pytest.raises(ValueError, match="no files match"):
        inputs.expand([str(tmp_path / "*.tif")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        inputs.expand([str(tmp_path / "empty")])
    with pytest.raises(ValueError, match="share the name"):
        inputs.check_names([folder / "b.jpg", folder / "sub" / "b.png"])


def test_globs_through_the_cli(tmp_path):
    folder = photos_dir(tmp_path, 3)
    out = tmp_path / "out"
    assert main(["segment", str(folder / "06*.jpg"), "--out", str(out), "--no-refine", "--overlay", "none",
                 "-q", "--json"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "061.json", "061.parts.png", "061.person.png", "064.json", "064.parts.png", "064.person.png",
        "manifest.jsonl"]
    summary = json.loads((out / "061.json").read_text())
    assert summary["input"] == str(folder / "061.jpg") and summary["person_found"]


def test_engine_ray_without_ray_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main(["segment", str(SAMPLE), "--out", str(tmp_path / "o"), "--engine", "ray"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'bodypix-gimp[ray]'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_an_address_where_no_ray_answers_is_one_line_before_any_work(tmp_path, capsys):
    pytest.importorskip("ray", reason="the [ray] extra (make test installs it)")
    import socket

    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = time.monotonic()
    assert main(["segment", str(SAMPLE), "--out", str(tmp_path / "o"), "--engine", "ray",
                 "--address", f"127.0.0.1:{port}"]) == 2
    assert time.monotonic() - t < 30
    err = capsys.readouterr().err
    assert f"--address 127.0.0.1:{port}: no Ray cluster answers there" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_atomic_write_honours_the_umask(tmp_path):
    """imageio.atomic_write (eval reports, JSON) creates files as open() would, not mkstemp's 0600."""
    from bodypix_gimp.imageio import atomic_write, save_png

    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.json", lambda tmp: tmp.write_text("{}"))
        save_png(tmp_path / "b.png", np.zeros((4, 4), np.uint8))
    finally:
        os.umask(old)
    assert [stat.S_IMODE(p.stat().st_mode) for p in sorted(tmp_path.iterdir())] == [0o644, 0o644]


def test_temporaries_a_killed_run_left_are_swept_when_old(tmp_path):
    """SIGKILL leaves .tmp-* files; the next batch there removes ours that are over an hour old, only those."""
    out = tmp_path / "out"
    out.mkdir()
    old = time.time() - 2 * outputs.STALE_TMP_SECONDS
    names = {"ours_old": ".tmp-astronaut.person.png.0123abcd", "ours_json_old": ".tmp-astronaut.json.89abcdef",
             "ours_fresh": ".tmp-astronaut.parts.png.fedcba98", "foreign_old": ".tmp-notes.txt.0123abcd",
             "foreign_tag": ".tmp-x.person.png.notours", "user_file": "astronaut.overlay.jpg.bak"}
    for key, name in names.items():
        (out / name).write_bytes(b"x")
        if key != "ours_fresh":
            os.utime(out / name, (old, old))
    assert main(["segment", str(SAMPLE), "--out", str(out), "--no-refine", "-q"]) == 0
    left = {p.name for p in out.iterdir()}
    assert names["ours_old"] not in left and names["ours_json_old"] not in left
    assert {names[k] for k in ("ours_fresh", "foreign_old", "foreign_tag", "user_file")} <= left
