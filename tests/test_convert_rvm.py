"""The graph converter on Robust Video Matting: ``rvm.json`` -> ONNX against the reference conversion.

Reference: ``shared/models/rvm/rvm_mobilenetv3.onnx`` (tensorflow + tf2onnx 1.17, its one
conditional inlined to the general branch; see shared/models/rvm/README.md).  Both files run
in onnxruntime on real photos at the ratios the project uses and at sizes that are not
multiples of 32.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from bodypix_gimp.setup.convert import ConversionError, convert, convert_file, needs_graph_converter
from conftest import MODELS, human_seg_pairs, load

RVM_DIR = MODELS / "rvm"
RVM_JSON = RVM_DIR / "tfjs" / "rvm.json"
REFERENCE = RVM_DIR / "rvm_mobilenetv3.onnx"
ALPHA_TOL = 1e-5  # measured: 0.0 (bit-identical); tfjs-style float64 dequantisation would give 3e-4


@pytest.fixture(scope="session")
def rvm_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rvm.json converted once per session (about 0.3 s)."""
    return convert_file(RVM_JSON, tmp_path_factory.mktemp("rvm") / "rvm_mobilenetv3.onnx")


@pytest.fixture(scope="session")
def sessions(rvm_onnx: Path) -> tuple[ort.InferenceSession, ort.InferenceSession]:
    cpu = ["CPUExecutionProvider"]
    return ort.InferenceSession(str(rvm_onnx), providers=cpu), ort.InferenceSession(str(REFERENCE), providers=cpu)


def project_ratio(h: int, w: int) -> float:
    """What ``refine.peers.rvm_alpha`` feeds for a photo of this size (within its pixel cap)."""
    from bodypix_gimp.refine.peers import RVM_NETWORK_SIDE

    return float(min(1.0, RVM_NETWORK_SIDE / max(h, w)))


def feeds(rgb: np.ndarray, ratio: float) -> dict[str, np.ndarray]:
    zero = np.zeros((1, 1, 1, 1), np.float32)
    return {"src": (rgb.astype(np.float32) / 255.0)[None], "downsample_ratio:0": np.array([ratio], np.float32),
            "r1i:0": zero, "r2i:0": zero, "r3i:0": zero, "r4i:0": zero}


def compare(sessions, rgb: np.ndarray, ratio: float) -> tuple[float, float, float]:
    """(max |pha diff|, max |fgr diff|, IoU of pha > 0.5) between converted and reference."""
    new, ref = (dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds(rgb, ratio)), strict=True))
                for s in sessions)
    h, w = rgb.shape[:2]
    for name, r in ref.items():
        assert new[name].shape == r.shape, name
    assert ref["pha"].shape == (1, h, w, 1) and ref["fgr"].shape == (1, h, w, 3)
    a, b = new["pha"][0, :, :, 0] > 0.5, ref["pha"][0, :, :, 0] > 0.5
    assert 0.02 < b.mean() < 0.98  # a photo with both person and background
    union = np.logical_or(a, b).sum()
    iou = float(np.logical_and(a, b).sum() / union) if union else 1.0
    return float(np.abs(new["pha"] - ref["pha"]).max()), float(np.abs(new["fgr"] - ref["fgr"]).max()), iou


def test_rvm_goes_to_the_graph_converter_and_keeps_the_interface(rvm_onnx, sessions):
    model_json = json.loads(RVM_JSON.read_text())
    assert needs_graph_converter(model_json)
    new, ref = sessions
    # same names, same output order, same element types; src is NHWC with 3 channels
    assert sorted(i.name for i in new.get_inputs()) == sorted(i.name for i in ref.get_inputs())
    assert [o.name for o in new.get_outputs()] == [o.name for o in ref.get_outputs()]
    assert [o.shape[3] for o in new.get_outputs()] == [o.shape[3] for o in ref.get_outputs()] == [64, 1, 3, 40, 20, 16]
    src = next(i for i in new.get_inputs() if i.name == "src")
    assert src.shape[3] == 3 and all(isinstance(d, str) for d in src.shape[:3])
    assert {i.type for i in new.get_inputs()} == {"tensor(float)"}
    m = onnx.load(str(rvm_onnx))
    assert [(o.domain, o.version) for o in m.opset_import] == [("", 13)]
    onnx.checker.check_model(m)


def test_rvm_matches_reference_on_jim(sessions, jim):
    """The seed photo (506x900) at the project's ratio and at 0.25 (0.5 and 1.0: the slow test)."""
    h, w = jim.shape[:2]
    for ratio in (project_ratio(h, w), 0.25):
        pha, fgr, iou = compare(sessions, jim, ratio)
        print(f"jim {h}x{w} ratio {ratio:.3f}: max|pha| {pha:.2e} max|fgr| {fgr:.2e} IoU {iou:.6f}")
        assert pha < ALPHA_TOL and fgr < 10 * ALPHA_TOL, (ratio, pha, fgr)
        assert iou >= 0.9999, (ratio, iou)


def test_rvm_matches_reference_at_odd_sizes(sessions, jim):
    """Sizes that are not multiples of 32 (odd, prime) exercise the run-time crop/pad/resize arithmetic."""
    for h, w, ratio in ((333, 517, 0.5), (401, 283, 0.37), (181, 243, 1.0)):
        y, x = (jim.shape[0] - h) // 2, (jim.shape[1] - w) // 2  # centred: person and background
        rgb = np.ascontiguousarray(jim[y : y + h, x : x + w])
        pha, fgr, iou = compare(sessions, rgb, ratio)
        print(f"jim crop {h}x{w} ratio {ratio}: max|pha| {pha:.2e} IoU {iou:.6f}")
        assert pha < ALPHA_TOL and iou >= 0.9999, (h, w, ratio, pha, iou)


@pytest.mark.slow
def test_rvm_matches_reference_on_human_seg_300(sessions, jim):
    """The seed photo and 30 human_seg_300 photos at the project's ratio and at 0.25 / 0.5 / 1.0."""
    worst = {"pha": 0.0, "iou": 1.0}
    for image in [None] + [p for p, _ in human_seg_pairs(30)]:
        rgb = jim if image is None else load(image)
        for ratio in sorted({project_ratio(*rgb.shape[:2]), 0.25, 0.5, 1.0}):
            pha, _, iou = compare(sessions, rgb, ratio)
            assert pha < ALPHA_TOL and iou >= 0.9999, (image, ratio, pha, iou)
            worst = {"pha": max(worst["pha"], pha), "iou": min(worst["iou"], iou)}
    print(f"jim + human_seg_300 x30, 4 ratios: worst max|pha| {worst['pha']:.2e}, worst IoU {worst['iou']:.6f}")


def converted_models_folder(folder: Path, rvm_onnx: Path) -> Path:
    """A models folder like ../shared/models whose RVM is the converted file (checksum recorded)."""
    folder.mkdir()
    for sub in ("bodypix", "mediapipe_hands", "selfie_segmentation"):
        (folder / sub).symlink_to(MODELS / sub, target_is_directory=True)
    (folder / "rvm").mkdir()
    shutil.copyfile(rvm_onnx, folder / "rvm" / "rvm_mobilenetv3.onnx")
    digest = hashlib.sha256(rvm_onnx.read_bytes()).hexdigest()
    (folder / "checksums.json").write_text(json.dumps({"rvm/rvm_mobilenetv3.onnx": digest}))
    return folder


def test_matting_runs_unchanged_on_the_converted_file(tmp_path, rvm_onnx, jim):
    """``refine.peers.rvm_alpha`` (the project's caller) gives the same alpha with either file."""
    from bodypix_gimp.refine.peers import rvm_alpha
    from bodypix_gimp.runtime.sessions import RuntimeOptions

    folder = converted_models_folder(tmp_path / "models", rvm_onnx)
    new = rvm_alpha(jim, RuntimeOptions(models=str(folder), force_cpu=True))
    ref = rvm_alpha(jim, RuntimeOptions(models=str(MODELS), force_cpu=True))
    assert new.shape == ref.shape == jim.shape[:2]
    assert float(np.abs(new - ref).max()) < ALPHA_TOL


def assert_same_person_masks(folder: Path, photos: list[np.ndarray]) -> None:
    """Product default edges (BodyPix + Selfie + RVM fusion) and RVM-only edges: same mask with either RVM file."""
    from bodypix_gimp.pipeline import segment
    from bodypix_gimp.runtime.sessions import RuntimeOptions
    from bodypix_gimp.settings import Settings
    from conftest import iou

    for rgb in photos:
        for refine in ("fusion", "rvm"):
            new, ref = (segment(rgb, Settings(refine=refine), RuntimeOptions(models=str(m), force_cpu=True)).person_mask
                        for m in (folder, MODELS))
            assert (ref >= 128).any()
            assert iou(new, ref) >= 0.999, (refine, iou(new, ref))


def test_fusion_refine_gives_the_same_person_mask(tmp_path, rvm_onnx, jim):
    assert_same_person_masks(converted_models_folder(tmp_path / "models", rvm_onnx), [jim])


@pytest.mark.slow
def test_fusion_refine_gives_the_same_person_mask_on_human_seg_300(tmp_path, rvm_onnx):
    photos = [load(p) for p, _ in human_seg_pairs(6)]
    assert_same_person_masks(converted_models_folder(tmp_path / "models", rvm_onnx), photos)


def patched_rvm(folder, op, new_op):
    """A copy of RVM's graph in ``folder`` with its first ``op`` node turned into ``new_op``: (json path, node)."""
    model_json = json.loads(RVM_JSON.read_text())
    node = next(n for n in model_json["modelTopology"]["node"] if n["op"] == op)
    node["op"] = new_op
    path = folder / "rvm.json"
    path.write_text(json.dumps(model_json))
    (folder / "rvm.bin").symlink_to(RVM_DIR / "tfjs" / "rvm.bin")
    return path, node


def test_unsupported_op_names_file_and_node(tmp_path):
    """A graph-converter op it does not know: a clear error with the file and the node, no output file."""
    path, node = patched_rvm(tmp_path, "Tanh", "Softsign")
    with pytest.raises(ConversionError, match=rf"{path}: node {node['name']}: op Softsign is not supported"):
        convert_file(path, tmp_path / "out" / "rvm.onnx")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_data_dependent_conditional_is_refused(tmp_path):
    """Only 'input == constant' fast paths are resolved; any other predicate is an error, not a guess."""
    path, _ = patched_rvm(tmp_path, "Equal", "Greater")
    with pytest.raises(ConversionError, match=r"conditional on .* \(Greater\) is not a comparison with a constant"):
        convert(path)


def test_conversion_is_deterministic_and_quick(tmp_path, rvm_onnx):
    start = time.perf_counter()
    again = convert_file(RVM_JSON, tmp_path / "again.onnx")
    seconds = time.perf_counter() - start
    print(f"rvm.json converted in {seconds:.2f} s")
    assert again.read_bytes() == rvm_onnx.read_bytes()


def tfjs_node(name: str, op: str, inputs: list[str], **attr: object) -> dict:
    return {"name": name, "op": op, "input": inputs, "attr": attr}


def test_tf_semantics_of_ops_rvm_leaves_unexercised(jim):
    """StridedSlice masks (begin/end/shrink/new-axis, negative stride), FloorMod on floats and ints,
    Cast truncation, BroadcastTo, Mean without keep_dims: converted graph against numpy's TF semantics,
    on a patch of a real photo (centred on zero so the modulo sees negative values)."""
    from bodypix_gimp.setup.convert.tfjs_graph import build_graph_onnx

    i32 = lambda *v: np.array(v, np.int32)  # noqa: E731
    weights = {"b1": i32(0, 1, 0, 2), "e1": i32(0, 4, 0, 3), "s1": i32(1, 2, -1, 1),
               "b2": i32(0, 0, 1), "e2": i32(0, 1, 3), "s2": i32(1, 1, 1),
               "b3": i32(0, -2, 0, -1), "e3": i32(0, 0, 0, 0), "s3": i32(1, -1, 1, 1),
               "m": np.array(0.7, np.float32), "ten": np.array(10.0, np.float32), "k": i32(-3).reshape(()),
               "ax": i32(1, 2), "ones": np.ones((1, 1, 1, 1), np.float32)}
    nodes = [tfjs_node(n, "Const", [], dtype={"type": "DT_INT32" if v.dtype == np.int32 else "DT_FLOAT"})
             for n, v in weights.items()]
    nodes += [
        tfjs_node("x", "Placeholder", [], dtype={"type": "DT_FLOAT"},
                  shape={"shape": {"dim": [{"size": "1"}, {"size": "-1"}, {"size": "-1"}, {"size": "3"}]}}),
        # x[:, 1:4:2, ::-1, 2]
        tfjs_node("ss1", "StridedSlice", ["x", "b1", "e1", "s1"], begin_mask={"i": "5"}, end_mask={"i": "5"},
                  shrink_axis_mask={"i": "8"}),
        # x[None, 0, 1:3]
        tfjs_node("ss2", "StridedSlice", ["x", "b2", "e2", "s2"], new_axis_mask={"i": "1"},
                  shrink_axis_mask={"i": "2"}),
        # x[:, -2:0:-1, :, -1]
        tfjs_node("ss3", "StridedSlice", ["x", "b3", "e3", "s3"], begin_mask={"i": "5"}, end_mask={"i": "5"},
                  shrink_axis_mask={"i": "8"}),
        tfjs_node("fmod", "FloorMod", ["x", "m"]),
        tfjs_node("x10", "Mul", ["x", "ten"]),
        tfjs_node("xi", "Cast", ["x10"], SrcT={"type": "DT_FLOAT"}, DstT={"type": "DT_INT32"}),
        tfjs_node("imod", "FloorMod", ["xi", "k"]),
        tfjs_node("shape", "Shape", ["x"]),
        tfjs_node("bcast", "BroadcastTo", ["ones", "shape"]),
        tfjs_node("mean", "Mean", ["x", "ax"], keep_dims={"b": False}),
    ]
    model = build_graph_onnx({"modelTopology": {"node": nodes}}, weights, name="ops")
    onnx.checker.check_model(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = (jim[200:207, 400:409].astype(np.float32) / 255.0 - 0.5)[None]
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"x:0": x}), strict=True))
    xi = np.trunc(x * np.float32(10)).astype(np.int64)
    want = {"ss1:0": x[:, 1:4:2, ::-1, 2], "ss2:0": x[None, 0, 1:3], "ss3:0": x[:, -2:0:-1, :, -1],
            "fmod:0": np.mod(x, np.float32(0.7)),
            "imod:0": np.mod(xi, -3), "bcast:0": np.ones_like(x), "mean:0": x.mean(axis=(1, 2))}
    assert set(got) == set(want)
    assert (xi < 0).any() and (x < 0).any()
    for name, w in want.items():
        assert got[name].shape == w.shape, name
        np.testing.assert_allclose(got[name], w, rtol=0, atol=1e-6, err_msg=name)


def test_atrous_fold_refuses_a_padded_space_to_batch():
    """The SpaceToBatchND -> conv -> BatchToSpaceND fold is only exact without base paddings:
    give one of RVM's a leading pad (a SAME-padded atrous conv would have one) and it must refuse."""
    from bodypix_gimp.setup.convert.tfjs import read_weights
    from bodypix_gimp.setup.convert.tfjs_graph import build_graph_onnx

    model_json = json.loads(RVM_JSON.read_text())
    weights = read_weights(model_json, RVM_DIR / "tfjs", float32_math=True)
    build_graph_onnx(model_json, weights)  # as shipped: folds
    name = next(n for n in weights if n.endswith("required_space_to_batch_paddings/strided_slice_2"))
    assert int(weights[name]) == 0
    weights[name] = np.array(1, np.int32)
    with pytest.raises(ConversionError, match="SpaceToBatchND pads more than its BatchToSpaceND crops"):
        build_graph_onnx(model_json, weights)


def test_bench_convert_command(tmp_path, capsys):
    """``python -m bodypix_gimp.evaluate.bench_convert`` writes its JSON and markdown report (one quick run)."""
    from bodypix_gimp.evaluate.bench_convert import main

    assert main(["--models", str(MODELS), "--ratio", "0.25", "--repeat", "1", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "bench_convert.json").read_text())
    assert report["convert_ms"] > 0 and report["size"] == [506, 900]
    (row,) = report["ratios"]
    assert row["ratio"] == 0.25 and row["converted_ms"] > 0 and row["reference_ms"] > 0
    assert row["max_abs_diff"] < ALPHA_TOL
    assert (tmp_path / "bench_convert.md").read_text() in capsys.readouterr().out
