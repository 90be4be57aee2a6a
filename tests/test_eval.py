"""`bodypix-gimp eval` end to end on a small real subset (the full run is the slow test / README command)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bodypix_gimp.cli import main
from bodypix_gimp.evaluate import datasets
from bodypix_gimp.evaluate.configs import builtin_configs
from conftest import EVAL

BUILTIN = [c.name for c in builtin_configs()]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("eval")
    rc = main([
        "eval", str(EVAL / "human_seg_300"), str(EVAL / "cihp_samples"), str(EVAL / "seed" / "jim.jpg"),
        "--limit", "3", "--worst", "2", "--out", str(out), "-q",
        "--config", "guided=refine=guided",
    ])  # fmt: skip
    assert rc == 0
    return out, json.loads((out / "eval.json").read_text())


def test_every_builtin_configuration_is_scored_side_by_side(small_run) -> None:  # noqa: ANN001
    _, data = small_run
    hs = data["datasets"]["human_seg_300"]
    assert hs["photos"] == 3
    assert list(hs["summary"]) == [*BUILTIN, "guided"]
    for name, s in hs["summary"].items():
        for key in ("iou", "f@1", "f@2", "f@5", "band_iou"):
            assert 0.0 <= s[key] <= 1.0, (name, key)
        assert s["f@1"] <= s["f@2"] <= s["f@5"]
        assert s["ms"] > 0
        assert len(hs["per_photo"][name]) == 3
    # The seed's low threshold spills out of the person; the default pipeline does not.
    assert hs["summary"]["bodypix-seed"]["offset"] > 5
    assert abs(hs["summary"]["default"]["offset"]) < 3
    assert hs["summary"]["default"]["iou"] > hs["summary"]["bodypix-seed"]["iou"]
    assert {t["target"] for t in hs["targets"]} >= {"IoU >= 0.95", "boundary F@2px >= 0.80"}


def test_cihp_parts_are_compared(small_run) -> None:  # noqa: ANN001
    _, data = small_run
    cihp = data["datasets"]["cihp_samples"]
    default = cihp["summary"]["default"]
    assert 0.0 < default["parts_iou"] <= 1.0
    assert "parts_iou" not in cihp["summary"]["rvm"]  # RVM has no parts


def test_report_files_and_overlays(small_run) -> None:  # noqa: ANN001
    out, _ = small_run
    md = (out / "eval.md").read_text()
    assert "| config |" in md and "bodypix-defaults" in md
    worst = sorted((out / "overlays" / "human_seg_300" / "default").glob("*.png"))
    assert len(worst) == 2 and "_iou" in worst[0].name
    assert (out / "overlays" / "jim" / "default").is_dir()  # truth-less photo: overlays only


def test_p3m_alpha_truth_has_soft_band() -> None:
    ds = datasets.open_dataset(EVAL / "p3m_demo_pseudo", limit=1)
    sample = next(ds.samples())
    assert ds.kind == "alpha"
    soft = (sample.alpha > 0) & (sample.alpha < 255)
    assert soft.any() and sample.band[soft].all()
    assert sample.gt.sum() == (sample.alpha >= 128).sum()


def test_bad_dataset_and_config_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "not a dataset folder" in capsys.readouterr().err
    args = ["eval", str(EVAL / "human_seg_300"), "--config", "x=refine=grabcutt", "--out", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "grabcutt" in err and "fusion" in err
    assert not (tmp_path / "eval.json").exists()


@pytest.mark.slow
def test_full_human_seg_run_meets_the_readme_targets(tmp_path: Path) -> None:
    """The README's full evaluation on human_seg_300 and its targets for `default`, recomputed
    here from the per-photo scores (not taken from the harness's own target check)."""
    assert main(["eval", str(EVAL / "human_seg_300"), "--out", str(tmp_path), "-q"]) == 0
    hs = json.loads((tmp_path / "eval.json").read_text())["datasets"]["human_seg_300"]
    rows = hs["per_photo"]
    assert len(rows["default"]) == 100

    def mean(config: str, key: str) -> float:
        return float(np.mean([r[key] for r in rows[config]]))

    # README: IoU >= 0.95 (0.955), boundary F@2px >= 0.80 (0.804), |mean offset| <= 1 px (-0.34)
    assert mean("default", "iou") >= 0.95
    assert mean("default", "f@2") >= 0.80
    assert abs(mean("default", "offset")) <= 1.0
    # better than RVM and Selfie on every metric
    for peer in ("rvm", "selfie"):
        for key in ("iou", "f@1", "f@2", "f@5", "band_iou"):
            assert mean("default", key) > mean(peer, key), (peer, key)
        assert abs(mean("default", "offset")) < abs(mean(peer, "offset")), peer
    # no photo more than 1 IoU point worse than the better raw BodyPix
    raw = {c: {r["name"]: r["iou"] for r in rows[c]} for c in ("bodypix-seed", "bodypix-defaults")}
    behind = [(r["name"], r["iou"]) for r in rows["default"]
              if r["iou"] < max(raw[c][r["name"]] for c in raw) - 0.01]
    assert not behind, behind
    # and the harness's own target list agrees
    assert hs["targets"] and all(t["met"] for t in hs["targets"]), hs["targets"]


def test_megapixels_runs_the_photo_upscaled_and_scores_at_the_truths_size(tmp_path: Path) -> None:
    """``--megapixels``: the pipeline sees a large photo (its full-resolution path) and the scores are
    taken at the truth's own size (same scene: both runs find the people)."""
    from bodypix_gimp.evaluate.harness import shrunk_back, upscaled

    sample = datasets.open_dataset(EVAL / "cihp_samples", 1).samples().__next__()
    rgb = sample.image()
    big = upscaled(rgb, 6.0)
    assert abs(big.shape[0] * big.shape[1] / 6e6 - 1.0) < 0.01
    assert abs(big.shape[1] / big.shape[0] - rgb.shape[1] / rgb.shape[0]) < 0.01
    assert upscaled(rgb, 0.01) is rgb  # never shrinks
    # the truth and its part labels upscaled by nearest neighbour come back as themselves
    ys = np.arange(big.shape[0]) * rgb.shape[0] // big.shape[0]
    xs = np.arange(big.shape[1]) * rgb.shape[1] // big.shape[1]
    truth = np.where(sample.gt, np.uint8(255), np.uint8(0))
    mask, parts = shrunk_back(truth[ys][:, xs], sample.labels[ys][:, xs], rgb.shape)
    assert mask.shape == truth.shape and parts.shape == truth.shape
    assert np.mean((mask >= 128) != sample.gt) < 0.002
    assert np.mean(parts != sample.labels) < 0.01

    runs = {}
    for name, extra in (("native", []), ("big", ["--megapixels", "6"])):
        out = tmp_path / name
        assert main(["eval", str(EVAL / "cihp_samples"), "--limit", "1", "--only", "default",
                     "--out", str(out), "-q", *extra]) == 0  # fmt: skip
        runs[name] = json.loads((out / "eval.json").read_text())["datasets"]["cihp_samples"]
    big_row = runs["big"]["per_photo"]["default"][0]
    native_row = runs["native"]["per_photo"]["default"][0]
    assert abs(big_row["megapixels"] - 6.0) < 0.1
    assert native_row["megapixels"] < 2.0
    for row in (big_row, native_row):
        assert 0.8 < row["iou"] <= 1.0 and 0.1 < row["parts_iou"] <= 1.0
    assert big_row["iou"] != native_row["iou"]  # another photo for the pipeline, scored on the same truth


def test_megapixels_scores_the_hands_found_on_the_large_photo_at_the_truths_size(tmp_path: Path) -> None:
    """The finger stage's hand boxes and fingertips come in the large photo's pixels: scored on
    the truth's grid they are scaled back (unscaled, a 4 MP photo's boxes fall off a 2 MP truth:
    IoU of two empty crops, no fingertip visible)."""
    out = tmp_path / "hands"
    assert main(["eval", str(EVAL / "p3m_demo_pseudo"), "--limit", "1", "--only", "default",
                 "--megapixels", "4", "--out", str(out), "-q"]) == 0  # fmt: skip
    row = json.loads((out / "eval.json").read_text())["datasets"]["p3m_demo_pseudo"]["per_photo"]["default"][0]
    assert row["name"] == "p_07141906"  # a raised hand against the background
    assert 0.7 < row["hand_iou"] < 1.0 and 0.7 < row["hand_recall"] <= 1.0
    assert row["hand_tips"] >= 0.8
