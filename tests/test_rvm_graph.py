"""RVM's alpha-only graph (runtime/rvm_graph.py) against the model file it is derived from.

The reference is the original graph in onnxruntime: the derived graph must give the same
alpha, bit for bit, on real photos at the sizes ``rvm_alpha`` feeds, for the reference
conversion in shared/models and for the installer's own conversion of rvm.json.  Every way
the derivation can fail (no onnx, a cache folder that cannot be used, a derived graph that
differs, a damaged cached file) must leave the original graph in use, never a wrong alpha.
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from bodypix_gimp.refine import peers
from bodypix_gimp.refine.scale import working_copy
from bodypix_gimp.runtime import rvm_graph, sessions
from bodypix_gimp.runtime.store import sha256_file
from bodypix_gimp.setup.convert import convert_file
from conftest import EVAL, MODELS, load

REF = MODELS / "rvm" / "rvm_mobilenetv3.onnx"
PHOTOS = [EVAL / "p3m_demo_pseudo" / "images" / f"{n}.jpg" for n in ("p_07141906", "p_09ba26b4", "p_22fc0130")]
CPU = ["CPUExecutionProvider"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache") / "graphs"


@pytest.fixture(scope="module")
def derived(cache: Path) -> Path:
    return rvm_graph.alpha_only_path(REF, cache)


def feeds(rgb: np.ndarray) -> dict[str, np.ndarray]:
    """What ``rvm_alpha`` feeds for this photo: its working copy at the author's ratio."""
    small = working_copy(rgb, peers.RVM_MAX_PIXELS)
    zero = np.zeros((1, 1, 1, 1), np.float32)
    return {"src": (small.astype(np.float32) / 255.0)[None],
            "downsample_ratio:0": np.array([min(1.0, peers.RVM_NETWORK_SIDE / max(small.shape[:2]))], np.float32),
            "r1i:0": zero, "r2i:0": zero, "r3i:0": zero, "r4i:0": zero}


def alphas(model: Path, photos: list[Path]) -> list[np.ndarray]:
    sess = ort.InferenceSession(str(model), providers=CPU)
    return [sess.run(["pha"], feeds(load(p)))[0] for p in photos]


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_derived_file_is_private_and_named_by_the_source(derived: Path, cache: Path) -> None:
    assert derived.parent == cache and derived != REF
    assert sha256_file(REF)[:32] in derived.name
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE(derived.stat().st_mode) == 0o600
    assert files(cache) == [derived.name]  # no temporary file left behind
    assert [o.name for o in ort.InferenceSession(str(derived), providers=CPU).get_outputs()] == ["pha"]


def test_same_alpha_as_the_model_file_on_real_photos(derived: Path) -> None:
    for photo, want, got in zip(PHOTOS, alphas(REF, PHOTOS), alphas(derived, PHOTOS), strict=True):
        assert want.shape == got.shape, photo.name
        assert np.array_equal(want, got), f"{photo.name}: max |diff| {np.abs(want - got).max()}"


def four_channel_full_size(model_file: Path, h: int = 75, w: int = 133) -> list[str]:
    """Tensors of the photo's size with four channels (the refiner's colour + alpha, or photo + mean)."""
    model = onnx.load(str(model_file))
    for i in model.graph.input:
        if i.name == "src":
            for d, v in zip(i.type.tensor_type.shape.dim, (1, h, w, 3), strict=True):
                d.Clear()
                d.dim_value = v
    g = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True).graph
    out = []
    for v in [*g.value_info, *g.output]:
        dims = [d.dim_value for d in v.type.tensor_type.shape.dim]
        if len(dims) == 4 and (dims[1:3] == [h, w] and dims[3] >= 4 or dims[2:] == [h, w] and dims[1] >= 4):
            out.append(v.name)
    return out


def test_the_refiner_works_on_the_alpha_channel_alone(derived: Path) -> None:
    assert len(four_channel_full_size(REF)) >= 5  # resized A and b, fine_x, A*x+b, fgr...
    assert four_channel_full_size(derived) == []


def test_the_installers_own_conversion(tmp_path: Path) -> None:
    converted = convert_file(MODELS / "rvm" / "tfjs" / "rvm.json", tmp_path / "rvm_mobilenetv3.onnx")
    mine = rvm_graph.alpha_only_path(converted, tmp_path / "graphs")
    assert mine != converted and sha256_file(converted)[:32] in mine.name
    assert four_channel_full_size(mine) == []
    (want,), (got,) = alphas(converted, PHOTOS[1:2]), alphas(mine, PHOTOS[1:2])
    assert np.array_equal(want, got)


def test_rvm_alpha_uses_it_and_the_fallback_gives_the_same_alpha(monkeypatch: pytest.MonkeyPatch, cache: Path,
                                                                   derived: Path, tmp_path: Path) -> None:
    photo = load(PHOTOS[1])
    monkeypatch.setenv(rvm_graph.ENV_CACHE, str(cache))
    fast = peers.rvm_alpha(photo)
    assert any(key[0] == str(derived) for key in sessions._sessions)
    # fault: no onnx package (a plain `pip install bodypix-gimp`), an empty cache folder
    monkeypatch.setitem(sys.modules, "onnx", None)
    monkeypatch.setenv(rvm_graph.ENV_CACHE, str(tmp_path / "empty"))
    slow = peers.rvm_alpha(photo)
    assert files(tmp_path / "empty") == []
    assert np.array_equal(fast, slow)


def test_without_onnx_the_model_file_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert rvm_graph.alpha_only_path(REF, tmp_path / "graphs") == REF
    assert files(tmp_path / "graphs") == []


def test_a_cache_folder_that_cannot_be_used(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert rvm_graph.alpha_only_path(REF, blocker / "graphs") == REF
    assert blocker.read_text() == "not a folder"
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # others could swap the graph under us: not used
    assert rvm_graph.alpha_only_path(REF, shared) == REF
    assert files(shared) == [] and stat.S_IMODE(shared.stat().st_mode) == 0o777


def test_a_derived_graph_that_differs_is_not_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = rvm_graph.derive_alpha_only

    def wrong(model: onnx.ModelProto) -> onnx.ModelProto:  # fault: the alpha moved by 0.25
        m = real(model)
        last = next(n for n in m.graph.node if "pha" in n.output)
        last.output[:] = ["pha_before"]
        m.graph.initializer.append(onnx.numpy_helper.from_array(np.array(0.25, np.float32), "quarter"))
        m.graph.node.append(onnx.helper.make_node("Add", ["pha_before", "quarter"], ["pha"]))
        return m

    monkeypatch.setattr(rvm_graph, "derive_alpha_only", wrong)
    assert rvm_graph.alpha_only_path(REF, tmp_path / "graphs") == REF
    assert files(tmp_path / "graphs") == []


def test_made_once_then_reused_and_remade_when_damaged(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    folder = tmp_path / "graphs"
    monkeypatch.setattr(rvm_graph, "_derived", {})
    first = rvm_graph.alpha_only_path(REF, folder)
    made = first.stat().st_mtime_ns
    real = rvm_graph.derive_alpha_only

    def refuse(model: onnx.ModelProto) -> onnx.ModelProto:
        raise AssertionError("derived again although the cached file was there")

    monkeypatch.setattr(rvm_graph, "derive_alpha_only", refuse)
    monkeypatch.setattr(rvm_graph, "_derived", {})  # a new process
    assert rvm_graph.alpha_only_path(REF, folder) == first and first.stat().st_mtime_ns == made
    # one byte of a weight changed on disk: the graph still loads, so only its sha256 tells
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0x40
    first.write_bytes(bytes(data))
    ort.InferenceSession(str(first), providers=CPU)
    monkeypatch.setattr(rvm_graph, "derive_alpha_only", real)
    monkeypatch.setattr(rvm_graph, "_derived", {})
    again = rvm_graph.alpha_only_path(REF, folder)
    assert files(folder) == [again.name] and again.read_bytes() != bytes(data)
    assert sha256_file(again)[:16] in again.name
    # the cached copy removed while the process runs: the model file is used
    again.unlink()
    sess = rvm_graph.alpha_session(REF, force_cpu=True, cache=folder)
    assert "fgr" in [o.name for o in sess.get_outputs()]
    assert rvm_graph.alpha_only_path(REF, folder).is_file()  # and made again by the next call


def test_copies_of_an_earlier_rewrite_are_replaced_others_kept(tmp_path: Path) -> None:
    folder = tmp_path / "graphs"
    folder.mkdir(mode=0o700)
    stem = f"rvm-alpha-{sha256_file(REF)[:32]}"
    stale = [folder / f"{stem}-v0-0123456789abcdef.onnx", folder / f"{stem}-v1.onnx"]
    other = [folder / f"rvm-alpha-{'0' * 32}-v{rvm_graph.REWRITE_VERSION}-0123456789abcdef.onnx", folder / "notes.txt"]
    for p in stale + other:
        p.write_bytes(b"x")
    made = rvm_graph.alpha_only_path(REF, folder)
    assert files(folder) == sorted([made.name, *(p.name for p in other)])


def test_the_installer_makes_it_with_the_models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from bodypix_gimp.setup.install import install

    monkeypatch.setenv(rvm_graph.ENV_CACHE, str(tmp_path / "graphs"))
    result = install(tmp_path / "models", models_from=MODELS, variants=["mobilenet075-quant2-stride16"], aux=["rvm"])
    installed = result.folder / "rvm" / "rvm_mobilenetv3.onnx"
    (made,) = (tmp_path / "graphs").iterdir()
    assert sha256_file(installed)[:32] in made.name

    def refuse(model: onnx.ModelProto) -> onnx.ModelProto:
        raise AssertionError("the first click derived it again")

    monkeypatch.setattr(rvm_graph, "derive_alpha_only", refuse)
    monkeypatch.setattr(rvm_graph, "_derived", {})
    assert rvm_graph.alpha_only_path(installed) == made
