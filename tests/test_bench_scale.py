"""``bodypix-gimp bench --scale``: runs the CLI and segment() for real per size and writes a sane report."""

from __future__ import annotations

import json

import pytest
from bodypix_gimp.cli import main
from bodypix_gimp.evaluate.scale import photo_size
from conftest import EVAL


def test_photo_sizes_never_pass_the_limit() -> None:
    # 1920x1080 at 150 MP: rounding to nearest would give 16330x9186 = 150.007 MP, refused by the CLI
    for mp in (1, 12, 24, 64, 150):
        w, h = photo_size(1080, 1920, mp)
        assert w * h <= mp * 1e6 and w * h > mp * 1e6 * 0.999
        assert abs(w / h - 1920 / 1080) < 0.002


@pytest.mark.slow
def test_scale_bench_reports_stages_and_peaks(tmp_path, capsys) -> None:
    out = tmp_path / "reports"
    assert main(["bench", "--scale", "--sizes", "0.1,0.3", "--memory-sizes", "0.6", "--repeat", "1",
                 "--photo", str(EVAL / "seed" / "jim.jpg"), "--out", str(out)]) == 0
    report = json.loads((out / "bench-scale.json").read_text())
    rows = {r["megapixels"]: r for r in report["rows"]}
    assert sorted(rows) == [0.1, 0.3, 0.6]
    assert rows[0.1]["photos"] == 2 and rows[0.6]["photos"] == 1 and not rows[0.6]["timed"]
    for r in rows.values():
        for mode in ("cli", "segment"):
            rec = r[mode]
            assert "error" not in rec, rec
            t = rec["timings"]
            assert {"network", "decode", "refine", "fingers", "parts", "total"} <= set(t)
            assert abs(sum(v for k, v in t.items() if k not in ("total", "cpu")) - t["total"]) < 1
            # peak: interpreter + numpy + onnxruntime + the models, and below a few GB for a small photo
            assert 100 < rec["peak_rss_mib"] < 3000 and rec["base_rss_mib"] < rec["peak_rss_mib"]
        assert r["segment"]["timings"]["cpu"] > 0
    s = report["summary"]
    assert s["total_12mp_over_1mp_segment"] is None  # no 1 and 12 MP rows in this run
    assert s["bytes_per_pixel_segment"]["from_mp"] == 0.3 and s["bytes_per_pixel_segment"]["to_mp"] == 0.6
    md = (out / "bench-scale.md").read_text()
    assert "| photo | mode | network |" in md and "(0.6 MP, cold)" in md
    assert "bench-scale.json" in capsys.readouterr().out
