"""``bodypix-gimp bench`` in its quick mode: runs for real and writes a sane report."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from bodypix_gimp.cli import main
from bodypix_gimp.evaluate.bench import parse_sizes, resized_photo
from conftest import EVAL, load


def run_quick(tmp_path, *extra: str) -> dict:
    out = tmp_path / "reports"
    assert main(["bench", "--quick", "--out", str(out), "--photo", str(EVAL / "seed" / "jim.jpg"), *extra]) == 0
    report = json.loads((out / "bench.json").read_text())
    md = (out / "bench.md").read_text()
    assert "| model |" in md and report["rows"][0]["model"] in md
    return report


def test_quick_bench_writes_a_sane_report(tmp_path, capsys):
    report = run_quick(tmp_path, "--no-reference", "--no-refine", "--no-fingers")
    assert len(report["rows"]) == 1
    row = report["rows"][0]
    assert row["model"] == "mobilenet075-quant2-stride16"
    # 0.25 MP from the 900x506 seed photo, aspect kept
    assert abs(row["width"] * row["height"] - 250_000) < 2_000
    assert abs(row["width"] / row["height"] - 900 / 506) < 0.01
    raw = row["raw"]
    assert "error" not in raw, raw
    assert 0 < raw["ms"] < 60_000 and raw["ms"] == sorted(raw["all_ms"])[(len(raw["all_ms"]) - 1) // 2]
    assert {"network", "decode"} <= set(raw["stages_ms"])
    assert sum(raw["stages_ms"].values()) <= raw["ms"] * 1.05 + 1
    # peak RSS: at least interpreter + numpy + onnxruntime + model, far below a gigabyte here
    assert 40 < raw["peak_rss_mb"] < 1024 and raw["base_rss_mb"] <= raw["peak_rss_mb"]
    assert raw["person_pixels"] > 0.05 * row["width"] * row["height"]  # jim is found
    assert row["tfjs"] == {"backend": "wasm", "error": "skipped (--no-reference)"}
    assert "full" not in row  # raw BodyPix settings: nothing extra to time
    assert "bench" in capsys.readouterr().out


def test_bench_times_extra_stages_separately(tmp_path):
    # The product defaults add stages body-pix lacks: bench times them ("full") next to "raw".
    report = run_quick(tmp_path, "--no-reference")
    row = report["rows"][0]
    assert report["raw_settings_for_ratio"]["refine"] == "none" and report["settings"]["refine"] != "none"
    assert report["settings"]["fingers"] is True and report["raw_settings_for_ratio"]["fingers"] is False
    full = row["full"]
    assert "error" not in full, full
    assert full["stages_ms"]["refine"] > 0 and "fingers" in full["stages_ms"]
    assert "refine" not in row["raw"]["stages_ms"] and "fingers" not in row["raw"]["stages_ms"]
    assert full["ms"] > row["raw"]["ms"]


@pytest.mark.reference
def test_quick_bench_compares_with_tfjs_wasm(tmp_path):
    row = run_quick(tmp_path, "--no-refine", "--no-fingers")["rows"][0]
    ref = row["tfjs"]
    assert "error" not in ref, ref
    assert ref["wasm"]["simd"] is True
    assert ref["ms"] > 0 and row["speedup"] == pytest.approx(ref["ms"] / row["raw"]["ms"])


def test_bench_rejects_bad_sizes_and_missing_models(tmp_path, capsys):
    with pytest.raises(ValueError):
        parse_sizes("1,big")
    with pytest.raises(ValueError):
        parse_sizes("0")
    out = tmp_path / "r"
    assert main(["bench", "--quick", "--sizes", "x", "--out", str(out)]) == 2
    assert main(["bench", "--quick", "--model", "mobilenet100-float-stride16", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "sizes must be" in err and "mobilenet100" in err
    assert not out.exists()  # nothing written on bad input


def test_resized_photo_keeps_aspect_and_content():
    img = load(EVAL / "seed" / "jim.jpg")
    big = resized_photo(img, 12)
    assert abs(big.shape[0] * big.shape[1] - 12e6) < 12e6 * 0.002
    assert abs(big.shape[1] / big.shape[0] - img.shape[1] / img.shape[0]) < 0.005
    assert abs(float(big.mean()) - float(img.mean())) < 1.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork+exec keeping ru_maxrss is Linux behaviour")
def test_peak_rss_of_a_case_is_its_own_not_the_parents():
    # ru_maxrss survives fork+exec on Linux; the bench must not report the parent's peak.
    big = np.ones(400 * 1024 * 1024, np.uint8)  # parent peak >= 400 MiB
    code = "from bodypix_gimp.evaluate.bench import peak_rss_mb; print(peak_rss_mb())"
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert big.sum() == big.size
    assert 5 < child < 300
