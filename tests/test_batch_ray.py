"""`segment --engine ray`: a real local Ray (Ray Data actors) over real photos.

One Ray for the module (2 CPUs, a small object store, no dashboard, logs in a temporary
folder, always shut down); the interrupted run is a real CLI process with its own Ray.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from bodypix_gimp.batch import OutputOptions, run
from bodypix_gimp.batch import manifest as manifest_mod
from bodypix_gimp.runtime.sessions import RuntimeOptions
from bodypix_gimp.settings import default_settings
from test_batch import KINDS, _complete_or_absent, cli, ok_lines, photos_dir, wait_for

ray = pytest.importorskip("ray", reason="the [ray] extra (make test installs it)")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    tmp = tempfile.mkdtemp(prefix="bodypix-ray-test-")
    try:  # a start that fails half-way (a timeout on a loaded machine) must not leave Ray's processes
        ray.init(address="local", num_cpus=2, object_store_memory=128 * 1024 * 1024, include_dashboard=False,
                 _temp_dir=tmp, log_to_driver=False)
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def test_ray_writes_the_same_bytes_as_the_local_engine_and_records_failures(tmp_path, local_ray):
    folder = photos_dir(tmp_path, 11)
    (folder / "broken.jpg").write_bytes((folder / "055.jpg").read_bytes()[:3000])
    photos = sorted(folder.iterdir())
    assert len(photos) == 12
    settings, runtime = default_settings(), RuntimeOptions()
    options = OutputOptions(overlay="png")
    local = run(photos, tmp_path / "local", settings, runtime, options, quiet=True)
    remote = run(photos, tmp_path / "ray", settings, runtime, options, engine="ray", workers=2, quiet=True)
    assert (local.ok, local.failed, remote.ok, remote.failed) == (11, 1, 11, 1)
    for img in (p for p in photos if p.name != "broken.jpg"):
        for kind in KINDS:
            name = f"{img.stem}.{kind}"
            assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    assert not list((tmp_path / "ray").glob("broken.*"))
    lines = {Path(k).name: v for k, v in manifest_mod.latest(tmp_path / "ray" / "manifest.jsonl").items()}
    assert len(lines) == 12 and lines["broken.jpg"]["status"] == "failed"
    assert "broken.jpg" in lines["broken.jpg"]["error"] and "truncated" in lines["broken.jpg"]["error"]
    ok = [v for v in lines.values() if v["status"] == "ok"]
    assert all(v["engine"] == "ray" and v["outputs"] == [f"{Path(v['input']).stem}.{k}" for k in KINDS] for v in ok)
    assert len({v["timings_ms"]["worker"] for v in ok}) == 2  # both actors worked
    local_lines = manifest_mod.latest(tmp_path / "local" / "manifest.jsonl")
    assert {k: (v["status"], v["outputs"]) for k, v in local_lines.items()} == \
        {k: (v["status"], v["outputs"]) for k, v in manifest_mod.latest(tmp_path / "ray" / "manifest.jsonl").items()}


def test_interrupted_ray_run_resumes(tmp_path, local_ray):
    folder = photos_dir(tmp_path, 8)
    stems = sorted(p.stem for p in folder.iterdir())
    out = tmp_path / "out"
    args = ["segment", str(folder), "--out", str(out), "--no-refine", "--overlay", "png", "-q"]
    proc = subprocess.Popen([sys.executable, "-m", "bodypix_gimp.cli", *args, "--engine", "ray", "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: ok_lines(out / "manifest.jsonl") >= 1, 300, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert not [p.name for p in out.iterdir() if p.name.startswith(".tmp-")]
    done = _complete_or_absent(out, stems)
    assert 1 <= len(done) < len(stems)
    mtimes = {s: (out / f"{s}.person.png").stat().st_mtime_ns for s in done}
    resumed = run(sorted(folder.iterdir()), out, default_settings(refine="none"), RuntimeOptions(),
                  OutputOptions(overlay="png"), engine="ray", skip_existing=True, quiet=True)
    assert (resumed.ok, resumed.skipped, resumed.failed) == (len(stems) - len(done), len(done), 0)
    assert _complete_or_absent(out, stems) == stems
    assert {s: (out / f"{s}.person.png").stat().st_mtime_ns for s in done} == mtimes
    # The resumed files are the ones a local run writes.
    local = cli(*args[:3], str(tmp_path / "local"), *args[4:])
    assert local.returncode == 0, local.stderr
    for s in stems:
        for kind in KINDS:
            assert (out / f"{s}.{kind}").read_bytes() == (tmp_path / "local" / f"{s}.{kind}").read_bytes()


def test_bench_batch_writes_its_report(tmp_path):
    """`make bench-batch` on a small case: both engines ran every photo and the report holds the figures."""
    import json

    from bodypix_gimp.batch import bench

    assert bench.main(["--out", str(tmp_path), "--sizes", "0.3:3", "--workers", "1"]) == 0
    report = json.loads((tmp_path / "bench_batch.json").read_text())
    runs = report["runs"]["0.3 MP"]
    assert set(runs) == {"local", "ray, 1 worker"}
    for r in runs.values():
        assert r["photos"] == 3 and r["photos_per_s"] > 0 and r["steady_s_per_photo"] > 0
    assert runs["local"]["cpu_s_per_photo"] > 0 and runs["local"]["cpu_s_per_photo_steady"] > 0
    assert runs["ray, 1 worker"]["worker_cpu_ms_per_photo"] > 0
    overhead = report["ray_overhead"][0]
    assert overhead["workers"] == 1 and overhead["worker_ms_per_photo"] > 0
    ratio = report["ratios"]["0.3 MP"]
    assert ratio["segment_total_ms"] > 0 and ratio["batch_ratio"] > 0 and ratio["old_ratio"] > 0
    assert len(report["encoders"]) == 7 and all(row["kB"] > 0 for row in report["encoders"])
    assert "Wall per photo in a batch" in (tmp_path / "bench_batch.md").read_text()
