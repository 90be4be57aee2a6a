"""The evaluation commands the README documents, on small real subsets: `eval --methods`,
`eval --refine-timing`, `hands eval`, `hands bench`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bodypix_gimp import load_image, segment
from bodypix_gimp.cli import main
from bodypix_gimp.refine.edges import METHODS
from bodypix_gimp.settings import default_settings
from conftest import EVAL
from PIL import Image

HS = EVAL / "human_seg_300"


def test_eval_methods_scores_the_pipeline_with_each_edge_method(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    only = "refine-none,refine-guided,refine-snake"
    # without --methods those configurations do not exist
    assert main(["eval", str(HS), "--limit", "2", "--only", only, "--out", str(tmp_path / "x"), "-q"]) == 2
    assert "Unknown configuration(s) refine-none" in capsys.readouterr().err
    out = tmp_path / "m"
    assert main(["eval", str(HS), "--limit", "2", "--methods", "--only", only, "--out", str(out), "-q"]) == 0
    hs = json.loads((out / "eval.json").read_text())["datasets"]["human_seg_300"]
    assert set(hs["summary"]) == set(only.split(","))
    # the harness's scores are the plain definitions, recomputed here for the first photo
    first = hs["per_photo"]["refine-none"][0]
    image = load_image(HS / "images" / f"{first['name']}.jpg")
    truth = np.asarray(Image.open(HS / "masks" / f"{first['name']}.png").convert("L")) >= 128
    mine = segment(image, default_settings(refine="none")).person_mask >= 128
    assert first["iou"] == pytest.approx((mine & truth).sum() / (mine | truth).sum(), abs=1e-9)
    # edge methods move BodyPix's coarse edge onto the photo's (README: F@2px 0.255 -> 0.49-0.51)
    s = hs["summary"]
    for method in ("refine-guided", "refine-snake"):
        assert s[method]["f@2"] > s["refine-none"]["f@2"] + 0.1, (method, s)


@pytest.mark.slow
def test_refine_timing_times_every_method_at_2_and_12_mp(tmp_path: Path) -> None:
    out = tmp_path / "t"
    assert main(["eval", str(HS), "--limit", "1", "--refine-timing", "--repeats", "1", "--out", str(out), "-q"]) == 0
    rows = json.loads((out / "refine_timing.json").read_text())["rows"]
    assert {(r["method"], round(r["megapixels"])) for r in rows} == {(m, mp) for m in METHODS for mp in (2, 12)}
    for r in rows:
        assert 0 < r["min_ms"] <= r["median_ms"] and r["cpu_ms"] > 0, r
        assert 1.9 <= r["megapixels"] <= 2.1 or 11.5 <= r["megapixels"] <= 12.5


def test_hands_eval_scores_hand_boxes_before_and_after(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    # human_seg_300's first two photos: 055 (no hand in view), 061 (an open hand)
    out = tmp_path / "hands"
    assert main(["hands", "eval", str(HS), "--limit", "2", "--out", str(out)]) == 0
    report = json.loads((out / "hands.json").read_text())
    assert [p["photo"] for p in report["photos"]] == ["human_seg_300/055.jpg", "human_seg_300/061.jpg"]
    s = report["summary"]
    assert s["photos"] == 2 and s["photos_with_hands"] == 1
    assert s["after"]["n_hands"] == 1 and s["after"]["iou"] > 0.95 and s["after"]["tip_rate"] == 1.0
    # the pipeline against raw BodyPix on the same hand box (measured +7.5 / +7.6 points)
    for raw in ("bodypix-seed", "bodypix-defaults"):
        assert s["raw"][raw]["product_iou_gain_points"] > 4
    assert (out / "hands.md").read_text().count("|") > 10
    assert "finger stage, hand-box IoU gain" in capsys.readouterr().out


def test_hands_bench_times_the_finger_stage(capsys) -> None:  # noqa: ANN001
    assert main(["hands", "bench", str(EVAL / "seed" / "jim.jpg"), "--repeats", "2"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("jim.jpg: ")
    r = json.loads(line.split(": ", 1)[1])
    assert r["hands"] == 1 and len(r["runs_ms"]) == 2
    assert 0 < r["min_ms"] <= r["median_ms"] <= r["max_ms"]
