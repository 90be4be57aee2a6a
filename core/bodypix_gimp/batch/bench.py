"""``make bench-batch``: photos per second of ``segment`` over many photos, local and on Ray.

Real 1080p portraits from the shared evaluation set, upscaled to 2 and 12 MP (JPEG q95), go
through the real CLI (a fresh process per run, product defaults) with the local engine and
with ``--engine ray --workers 1`` and ``2``.  Per run: photos per second over the whole
command (start-up and model loading included) and in the steady state (from the first
photo's read to the last photo's commit, per photo, from the manifest's times: start-up and
model loading excluded); the local engine's CPU seconds per photo (all threads; without the
start-up: minus a one-photo run); for Ray, the per-photo overhead it adds (each actor's
interval between photos minus the time it spent inside them) and its start-up.

Next to it, in the same run (so on the same, possibly shared, machine): ``segment()``'s own
``total`` per photo in a warm process; the CLI's steady wall per photo divided by that
``total`` (target <= 1.3 at 12 MP; also divided by the ``total`` measured inside the batch,
where the reading and writing threads share the CPU with it); the same ratio for the CLI
before the batch engine (one photo after another, Pillow PNGs at level 6, the overlay as
PNG); and what each encoder costs at the largest size.  The machine's load average is
recorded: numbers taken while other jobs ran say so in the report.

Writes ``bench_batch.json`` and ``bench_batch.md`` to ``--out`` (default ``reports/``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[3]
PHOTOS = Path("eval") / "p3m_demo_pseudo" / "images"


def shared_dir() -> Path:
    return Path(os.environ.get("BODYPIX_SHARED", REPO_ROOT.parent / "shared"))


def make_photos(folder: Path, megapixels: float, n: int) -> list[Path]:
    """``n`` real portraits resized (same aspect) to about ``megapixels``, saved as JPEG q95."""
    import cv2

    sources = sorted((shared_dir() / PHOTOS).glob("*.jpg"))
    if not sources:
        raise SystemExit(f"no photos in {shared_dir() / PHOTOS}: set BODYPIX_SHARED")
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        src = cv2.imread(str(sources[i % len(sources)]))
        h, w = src.shape[:2]
        scale = (megapixels * 1e6 / (h * w)) ** 0.5
        big = cv2.resize(src, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)
        path = folder / f"p{i:02d}.jpg"
        cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 95])
        out.append(path)
    return out


def run_cli(photos_dir: Path, out: Path, extra: list[str]) -> dict[str, Any]:
    """One ``bodypix-gimp segment`` process over a folder: wall, CPU time, manifest intervals."""
    from .manifest import parse_time, read

    shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "bodypix_gimp.cli", "segment", str(photos_dir), "--out", str(out),
                        "-q", *extra], capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"segment {' '.join(extra)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    lines = [ln for ln in read(out / "manifest.jsonl") if ln["status"] == "ok"]
    ends = sorted(parse_time(ln["time"]) for ln in lines)
    first_start = min(parse_time(ln["started"]) for ln in lines)
    n = len(lines)
    # From the first photo's read to the last photo's commit: start-up and model loading excluded.
    steady = (ends[-1] - first_start) / n
    inside = [ln["timings_ms"].get("segment_wall", 0) + ln["timings_ms"].get("read", 0)
              + ln["timings_ms"].get("encode", 0) for ln in lines]
    # CPU of the CLI process and its children: all of the local engine's work; for Ray only the
    # driver's (the workers are the raylet's children), so it is not reported there.
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    local = "--engine" not in extra
    return {"photos": n, "wall_s": round(wall, 2), "photos_per_s": round(n / wall, 3),
            "steady_s_per_photo": round(steady, 3), "steady_photos_per_s": round(1 / steady, 3),
            "first_photo_s": round(ends[0] - parse_time(lines[0]["run"]), 2),
            "cpu_s": round(cpu, 2) if local else None, "cpu_s_per_photo": round(cpu / n, 3) if local else None,
            "worker_ms_per_photo": round(statistics.mean(inside), 1),
            "worker_cpu_ms_per_photo": round(statistics.mean(ln["timings_ms"]["cpu"] for ln in lines), 1)
            if not local else None,
            "segment_total_ms": round(statistics.mean(ln["timings_ms"]["segment"]["total"] for ln in lines), 1)}


def segment_totals(photos: list[Path]) -> dict[str, Any]:
    """``segment()``'s own ``total`` per photo in a warm process, and the old CLI's sequential writing."""
    from PIL import Image

    from ..imageio import load_image
    from ..pipeline import segment
    from ..render import part_overlay
    from ..settings import default_settings

    settings = default_settings()
    segment(load_image(photos[0]), settings)  # warm: models loaded, caches filled
    totals, old_walls, cpus = [], [], []
    for path in photos:
        t = time.perf_counter()
        cpu = time.process_time()  # nothing else runs in this process: all its threads are this photo's
        photo = load_image(path)
        result = segment(photo, settings)
        cpus.append(time.process_time() - cpu)
        totals.append(result.timings["total"])
        for array in (result.person_mask, result.part_map, part_overlay(photo, result.part_map)):
            Image.fromarray(array).save(io.BytesIO(), format="PNG")  # the CLI before: Pillow, level 6
        old_walls.append((time.perf_counter() - t) * 1000)
    return {"total_ms": round(statistics.mean(totals), 1), "old_cli_ms_per_photo": round(statistics.mean(old_walls), 1),
            "read_segment_cpu_s": round(statistics.mean(cpus), 3)}


def encoders(photo_path: Path) -> list[dict[str, Any]]:
    """Time (best of 3) and size of each output encoding at this photo's size."""
    from PIL import Image

    from ..imageio import load_image
    from ..pipeline import segment
    from ..render import part_overlay
    from ..settings import default_settings
    from .outputs import encode_overlay, encode_png

    photo = load_image(photo_path)
    r = segment(photo, default_settings())

    def pil(array: np.ndarray, level: int) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="PNG", compress_level=level)
        return buf.getvalue()

    cases = {
        "person mask, OpenCV PNG level 1 RLE (now)": lambda: encode_png(r.person_mask),
        "person mask, Pillow PNG level 6 (before)": lambda: pil(r.person_mask, 6),
        "part map, OpenCV PNG level 1 RLE (now)": lambda: encode_png(r.part_map),
        "part map, Pillow PNG level 6 (before)": lambda: pil(r.part_map, 6),
        "overlay, table + OpenCV JPEG q90 (now, default)": lambda: encode_overlay(photo, r.part_map, "jpg"),
        "overlay, table + OpenCV PNG level 1 (--overlay png)": lambda: encode_overlay(photo, r.part_map, "png"),
        "overlay, render.part_overlay + Pillow PNG level 6 (before)": lambda: pil(part_overlay(photo, r.part_map), 6),
    }
    rows = []
    for name, fn in cases.items():
        times, data = [], b""
        for _ in range(3):
            t = time.perf_counter()
            data = fn()
            times.append((time.perf_counter() - t) * 1000)
        rows.append({"output": name, "ms": round(min(times), 1), "kB": round(len(data) / 1024)})
    return rows


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# Batch throughput (`make bench-batch`)", "",
        f"{m['cpus']} CPUs, {m['platform']}, Python {m['python']}; load average {m['load_before']} before, "
        f"{m['load_after']} after. {m['note']}", "",
        "Product defaults; each run is a fresh `bodypix-gimp segment FOLDER --out DIR -q` process. "
        "Steady = from the first photo's read to the last photo's commit, per photo (from the manifest: "
        "start-up and model loading excluded); "
        "overall = photos / whole command.", "",
        "CPU s/photo: the whole process's CPU time (all threads) per photo, start-up included, and "
        "without it (minus a one-photo run); for Ray the actor's CPU time inside each photo.", "",
        "| photos | engine | photos/s steady | s/photo steady | photos/s overall | first photo after | "
        "CPU s/photo (without start-up) | segment total ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size, runs in report["runs"].items():
        for engine, r in runs.items():
            cpu = (f"{r['cpu_s_per_photo']} ({r['cpu_s_per_photo_steady']})" if "cpu_s_per_photo_steady" in r
                   else f"({r['worker_cpu_ms_per_photo'] / 1000:.3f} in the actor)")
            lines.append(f"| {r['photos']} x {size} | {engine} | {r['steady_photos_per_s']} | "
                         f"{r['steady_s_per_photo']} | {r['photos_per_s']} | {r['first_photo_s']} s | "
                         f"{cpu} | {r['segment_total_ms']} |")
    lines += ["", "## Wall per photo in a batch vs `segment()`'s `total` (target <= 1.3x at 12 MP)", "",
              "| size | segment() total (warm, alone) | batch CLI steady wall / that total | "
              "segment() total inside the batch | wall / that total | "
              "before: one after another, Pillow PNGs / total alone | CPU s/photo: read + segment() alone; "
              "the whole batch (read, segment, encode, write) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for size, r in report["ratios"].items():
        lines.append(f"| {size} | {r['segment_total_ms']} ms | {r['batch_ratio']}x | {r['batch_total_ms']} ms | "
                     f"{r['batch_ratio_in_run']}x | {r['old_ratio']}x | {r['read_segment_cpu_s']}; "
                     f"{r['batch_cpu_s']} |")
    lines += ["", "## What Ray adds per photo", "",
              "Overhead = the interval at which each actor takes a photo (steady x workers) minus the time "
              "it spent inside the photo (read, segment, encode; from the manifest): Ray's scheduling and "
              "the transfer of the encoded files, plus any wait for a CPU.", "",
              "| size | workers | steady s/photo | inside the actor ms/photo | overhead per photo | "
              "local engine steady s/photo | first photo after: Ray / local |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in report["ray_overhead"]:
        lines.append(f"| {row['size']} | {row['workers']} | {row['steady_s_per_photo']} | "
                     f"{row['worker_ms_per_photo']} | {row['overhead_ms_per_photo']} ms "
                     f"({row['overhead_fraction']:+.0%}) | {row['local_steady_s_per_photo']} | "
                     f"{row['first_photo_s']} s / {row['local_first_photo_s']} s |")
    lines += ["", f"## Encoders at {report['encoders_at']} (best of 3)", "", "| output | ms | kB |",
              "| --- | --- | --- |"]
    for row in report["encoders"]:
        lines.append(f"| {row['output']} | {row['ms']} | {row['kB']} |")
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bodypix_gimp.batch.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="reports", help="report folder (default: reports/)")
    p.add_argument("--sizes", default="2:8,12:5", metavar="MP:N,...",
                   help="photo sizes in megapixels and photos of each (default: %(default)s); "
                   "the encoders are timed at the largest")
    p.add_argument("--workers", default="1,2", help="Ray worker counts (default: 1,2); '' skips Ray")
    args = p.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    try:
        sizes = [(float(mp), int(n)) for mp, n in (item.split(":") for item in args.sizes.split(","))]
    except ValueError:
        p.error(f"--sizes takes MP:N pairs like 2:8,12:5, not {args.sizes!r}")
    if any(n < 2 or not 0.01 <= mp <= 50 for mp, n in sizes):
        p.error("--sizes: at least 2 photos of 0.01 to 50 MP each")
    if workers:
        from .ray_engine import require_ray

        require_ray()
    load_before = [round(x, 2) for x in os.getloadavg()]
    report: dict[str, Any] = {"command": "python -m bodypix_gimp.batch.bench " + " ".join(argv or sys.argv[1:]),
                              "runs": {}, "ratios": {}, "ray_overhead": []}
    with tempfile.TemporaryDirectory(prefix="bodypix-bench-batch-") as tmp:
        root = Path(tmp)
        for mp, n in sizes:
            size = f"{mp:g} MP"
            folder = root / f"{mp:g}MP"
            photos = make_photos(folder, mp, n)
            print(f"{size}: segment() in-process...", file=sys.stderr)
            seg = segment_totals(photos)
            runs: dict[str, Any] = {}
            print(f"{size}: local engine...", file=sys.stderr)
            runs["local"] = run_cli(folder, root / "out", [])
            one = root / f"{mp:g}MP-one"  # the same command on one photo: its CPU is the start-up's + 1 photo
            one.mkdir()
            shutil.copy(photos[0], one / photos[0].name)
            cpu_one = run_cli(one, root / "out", [])["cpu_s"]
            runs["local"]["cpu_s_per_photo_steady"] = round((runs["local"]["cpu_s"] - cpu_one) / (n - 1), 3)
            for w in workers:
                print(f"{size}: Ray, {w} worker(s)...", file=sys.stderr)
                runs[f"ray, {w} worker{'s' if w > 1 else ''}"] = run_cli(
                    folder, root / "out", ["--engine", "ray", "--workers", str(w)])
            report["runs"][size] = runs
            local = runs["local"]
            report["ratios"][size] = {
                "segment_total_ms": seg["total_ms"],
                "batch_ratio": round(local["steady_s_per_photo"] * 1000 / seg["total_ms"], 2),
                "batch_total_ms": local["segment_total_ms"],
                "batch_ratio_in_run": round(local["steady_s_per_photo"] * 1000 / local["segment_total_ms"], 2),
                "old_ratio": round(seg["old_cli_ms_per_photo"] / seg["total_ms"], 2),
                "old_cli_ms_per_photo": seg["old_cli_ms_per_photo"],
                "read_segment_cpu_s": seg["read_segment_cpu_s"],
                "batch_cpu_s": local["cpu_s_per_photo_steady"]}
            for w in workers:
                r = runs[f"ray, {w} worker{'s' if w > 1 else ''}"]
                # Each actor takes a photo every steady x workers seconds; what it spent inside the
                # photo (read, segment, encode) is in the manifest: the rest is Ray's (scheduling,
                # moving the encoded files to the driver) plus any wait for a CPU.
                over = r["steady_s_per_photo"] * w * 1000 - r["worker_ms_per_photo"]
                report["ray_overhead"].append({
                    "size": size, "workers": w, "steady_s_per_photo": r["steady_s_per_photo"],
                    "worker_ms_per_photo": r["worker_ms_per_photo"], "overhead_ms_per_photo": round(over),
                    "overhead_fraction": over / r["worker_ms_per_photo"],
                    "local_steady_s_per_photo": local["steady_s_per_photo"],
                    "first_photo_s": r["first_photo_s"], "local_first_photo_s": local["first_photo_s"]})
        largest = max(mp for mp, _ in sizes)
        print(f"encoders at {largest:g} MP...", file=sys.stderr)
        report["encoders"] = encoders(root / f"{largest:g}MP" / "p00.jpg")
        report["encoders_at"] = f"{largest:g} MP"
    load_after = [round(x, 2) for x in os.getloadavg()]
    cpus = os.cpu_count() or 1
    shared = max(load_before[0], load_after[0]) > 0.5 * cpus
    report["machine"] = {
        "cpus": cpus, "platform": platform.platform(), "python": platform.python_version(),
        "load_before": load_before, "load_after": load_after, "shared": shared,
        "note": ("The machine was shared with other jobs while this ran (load average above half the CPUs): "
                 "absolute times are inflated; the ratios within this run compare like with like.")
        if shared else "The machine was otherwise quiet."}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_batch.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "bench_batch.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
