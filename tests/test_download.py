"""Model setup: download (from a local HTTP server serving the real files), local-folder install, faults.

The server on 127.0.0.1 serves ``shared/models``; below ``bodypix/tfjs/`` the files are laid
out as in Google's bucket, so ``<server>/bodypix/tfjs/`` stands in for
``https://storage.googleapis.com/.../bodypix/`` (and ``selfie_segmentation/tfjs/`` for the npm CDN).
Faults (corrupted bytes, a connection closed mid-file, 404) are injected per path.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from bodypix_gimp import cli, models
from bodypix_gimp.download import ChecksumMismatchError, DownloadError, fetch
from bodypix_gimp.manifest import ManifestError, default_variants, onnx_checksums
from bodypix_gimp.setup_models import SetupError, install

Q2_16 = "mobilenet075-quant2-stride16"
F050_8 = "mobilenet050-float-stride8"
SHARD_075 = "mobilenet/quant2/075/group1-shard1of1.bin"
SERVED_SHARD = "bodypix/tfjs/" + SHARD_075


class Server:
    """A threaded HTTP server over a folder; ``faults[path] = 'corrupt' | 'truncate'`` injects errors."""

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
    s.aux = s.url + "selfie_segmentation/tfjs/"
    yield s
    s.close()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_download_and_convert(server, tmp_path, models_dir):
    seen: list[float] = []
    result = install(tmp_path, variants=[Q2_16, F050_8], base_url=server.bodypix, aux_base_url=server.aux,
                     progress=lambda f, m: seen.append(f))
    rel = models.bodypix_relpath(Q2_16)
    # official tfjs files kept beside the ONNX, byte-identical to the originals
    for tfjs in ("bodypix/tfjs/mobilenet/quant2/075/model-stride16.json",
                 "bodypix/tfjs/mobilenet/quant2/075/group1-shard1of1.bin"):
        assert sha(tmp_path / tfjs) == sha(models_dir / tfjs)
    record = json.loads((tmp_path / "checksums.json").read_text())
    assert record == result.installed
    assert all(sha(tmp_path / r) == s for r, s in record.items())
    assert set(record) >= {rel, models.bodypix_relpath(F050_8)}
    # the runtime accepts the converted file (its own record wins over the reference checksum)
    assert models.model_path(rel, folder=tmp_path) == tmp_path.resolve() / rel
    # and it computes what the reference conversion computes
    x = np.random.default_rng(1).uniform(-1, 1, (1, 257, 257, 3)).astype(np.float32)
    new = ort.InferenceSession(str(tmp_path / rel)).run(["float_segments:0"], {"sub_2:0": x})[0]
    ref = ort.InferenceSession(str(models_dir / rel)).run(["float_segments:0"], {"sub_2:0": x})[0]
    assert float(np.abs(new - ref).max()) < 2e-3
    assert seen == sorted(seen) and seen[-1] == 1.0  # monotonic, ends at 1
    # the selfie model is downloaded as TF.js and converted: same outputs as the reference file
    selfie = "selfie_segmentation/selfie_segmentation_256.onnx"
    assert selfie in record and sha(tmp_path / "selfie_segmentation/tfjs/selfie.bin") == sha(
        models_dir / "selfie_segmentation/tfjs/selfie.bin")
    x = np.random.default_rng(2).uniform(0, 1, (1, 256, 256, 3)).astype(np.float32)
    new = ort.InferenceSession(str(tmp_path / selfie)).run(None, {"input_1:0": x})[0]
    ref = ort.InferenceSession(str(models_dir / selfie)).run(None, {"input_1:0": x})[0]
    assert float(np.abs(new - ref).max()) < 1e-5
    # the other helper models have no TF.js-free download: the result says where they come from
    assert any("rvm" in n and "RobustVideoMatting" in n for n in result.notes)
    assert not (tmp_path / "rvm").exists()
    assert not list(tmp_path.glob(".staging-*"))


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
        assert result.installed[rel] == reference[rel] == sha(tmp_path / rel)
        models.model_path(rel, folder=tmp_path)
    assert json.loads((tmp_path / "checksums.json").read_text()) == result.installed
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
    install(tmp_path, models_from=models_dir, variants=[Q2_16], aux=[], convert=True)
    rel = models.bodypix_relpath(Q2_16)
    path = tmp_path / rel
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
    assert (target / models.bodypix_relpath(Q2_16)).is_file()
    code = cli.main(["setup-models", "--from", str(models_dir), "--target", str(target), "--variant", "bogus"])
    err = capsys.readouterr().err
    assert code == 2 and "Unknown BodyPix variant 'bogus'" in err and len(err.strip().splitlines()) == 1
