"""``bodypix-gimp bench --scale``: full-resolution cost by photo size, per stage, with peak memory.

One real photo (default: a 1920x1080 P3M portrait) is resized (Lanczos) to each size and saved
as a JPEG.  For every size two fresh processes run:

- ``cli``: ``bodypix-gimp segment A.jpg B.jpg --out DIR --json`` (the same photo under several names:
  all but the first run warm), as a user runs it: loading, ``segment``, writing the outputs.
- ``segment``: the same photos through ``load_image`` + ``segment()`` only, no files written, so
  the pipeline's own share of time and memory is seen apart from the writing.

Timed sizes run 1 + ``--repeat`` photos (default 3 + 1).  Reported per size: the per-stage
median timings of the warm photos (``Result.timings``: network, decode, refine, fingers,
parts, total), the wall time per photo and each process's peak RSS
(``VmHWM``: interpreter, libraries, models, photo, pipeline and, for ``cli``, the writing).
Sizes in ``--memory-sizes`` (default 64 and 150 MP, the CLI's limit) run one photo each: their
timings are cold.  The report gives total(12 MP) / total(1 MP) (the full-resolution stages'
overhead; both sides measured in the same run, so shared-machine noise mostly cancels), the
24 MP peak, and the peak's growth in bytes per pixel between the memory sizes.

Writes ``bench-scale.json`` and ``bench-scale.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .memory import peak_rss_mb

DEFAULT_SIZES = (1.0, 12.0, 24.0)
DEFAULT_MEMORY_SIZES = (64.0, 150.0)
TARGET_RATIO_12_TO_1 = 1.6
TARGET_PEAK_MIB_24MP_CLI = 1024.0  # 1.0 GiB
STAGES = ("load", "network", "decode", "refine", "fingers", "parts", "persons", "total")
MODES = ("cli", "segment")


def photo_size(height: int, width: int, megapixels: float) -> tuple[int, int]:
    """(width, height) with the aspect kept and at most ``megapixels`` million pixels (never above a limit)."""
    scale = math.sqrt(megapixels * 1e6 / (height * width))
    w, h = max(1, math.floor(width * scale)), max(1, math.floor(height * scale))
    while w * h > megapixels * 1e6 and w > 1:
        w -= 1
    return w, h


def make_photo(source: Path, megapixels: float, path: Path) -> tuple[int, int]:
    """Save ``source`` resized (Lanczos) to about ``megapixels`` as a JPEG (quality 95); (width, height)."""
    from PIL import Image, ImageOps

    with Image.open(source) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        size = photo_size(im.height, im.width, megapixels)
        big = im.resize(size, Image.Resampling.LANCZOS)
    big.save(path, format="JPEG", quality=95)
    return size


# ---- one measured process ----------------------------------------------------------------------


def measure(mode: str, report: Path, argv: list[str]) -> int:
    """Run one case in this (fresh) process and write its wall time and peak RSS to ``report``.

    ``cli``: ``argv`` are the command's arguments; ``segment``: ``argv`` are photo paths (the
    product defaults, models from ``$BODYPIX_MODELS``).
    """
    record: dict[str, Any] = {"mode": mode, "base_rss_mib": peak_rss_mb()}
    t0 = time.perf_counter()
    if mode == "cli":
        from importlib.metadata import entry_points

        (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "bodypix-gimp"]
        record["rc"] = ep.load()(argv)
    else:
        from ..imageio import load_image
        from ..pipeline import segment
        from ..settings import default_settings

        settings = default_settings()
        record["timings"] = []
        for p in argv:
            cpu = time.process_time()
            image = load_image(p)
            result = segment(image, settings)
            # CPU seconds of the whole process (all threads), loading included: less sensitive than
            # wall time to other work on a shared machine
            record["timings"].append({**result.timings, "cpu": (time.process_time() - cpu) * 1000})
            del image, result
        record["rc"] = 0
    record["wall_s"] = time.perf_counter() - t0
    record["peak_rss_mib"] = peak_rss_mb()
    report.write_text(json.dumps(record))
    return int(record["rc"])


def run_measured(mode: str, argv: list[str], work: Path, timeout: float) -> dict[str, Any]:
    """``measure`` in a fresh interpreter (its own peak RSS); the record, or {"error": ...}."""
    report = work / f"measure-{mode}.json"
    report.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bodypix_gimp.evaluate.scale", "--measure", mode, str(report), "--", *argv]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not report.is_file():
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    record = json.loads(report.read_text())
    record["process_wall_s"] = wall
    return record


def warm_median(timings: list[dict[str, float]]) -> dict[str, float]:
    """Per-stage medians over the warm photos (all but the first; the only one if there is one)."""
    warm = timings[1:] or timings
    return {k: statistics.median(t.get(k, 0.0) for t in warm) for k in warm[0]}


def case(mp: float, photo: Path, photos: int, work: Path, timeout: float) -> dict[str, Any]:
    """Both modes for one size: ``photos`` copies of ``photo``; stage medians of the warm ones."""
    names = [photo] + [work / f"{photo.stem}-{i}{photo.suffix}" for i in range(1, photos)]
    for extra in names[1:]:
        shutil.copyfile(photo, extra)
    out = work / "out"
    row: dict[str, Any] = {}
    for mode in MODES:
        if mode == "cli":
            shutil.rmtree(out, ignore_errors=True)
            argv = ["segment", *map(str, names), "--out", str(out), "--json", "--quiet"]
        else:
            argv = list(map(str, names))
        rec = run_measured(mode, argv, work, timeout)
        if "error" not in rec:
            if mode == "cli":
                rec["timings"] = [json.loads((out / f"{n.stem}.json").read_text())["timings_ms"] for n in names]
            rec["all_timings"] = rec["timings"]
            rec["timings"] = warm_median(rec["timings"])
            rec["wall_per_photo_s"] = rec["wall_s"] / photos
        row[mode] = rec
        print(f"  {mp:g} MP {mode}: " + (rec.get("error") or
              f"total {rec['timings'].get('total', 0):.0f} ms, peak {rec['peak_rss_mib']:.0f} MiB"),
              file=sys.stderr, flush=True)
    for extra in names[1:]:
        extra.unlink()
    shutil.rmtree(out, ignore_errors=True)
    return row


# ---- the command -------------------------------------------------------------------------------


def run_scale(args: argparse.Namespace, sizes: list[float], memory_sizes: list[float], photo: Path) -> int:
    from .bench import machine_info

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bodypix-bench-scale-") as tmp:
        work = Path(tmp)
        for mp in sizes + [m for m in memory_sizes if m not in sizes]:
            path = work / f"photo_{mp:g}mp.jpg"
            w, h = make_photo(photo, mp, path)
            timed = mp in sizes
            print(f"{w}x{h} ({mp:g} MP) ...", file=sys.stderr, flush=True)
            row = {"megapixels": mp, "width": w, "height": h, "pixels": w * h, "timed": timed,
                   "photos": 1 + max(1, args.repeat) if timed else 1}
            row.update(case(mp, path, row["photos"], work, timeout=args.scale_timeout))
            rows.append(row)
            path.unlink()
    report = {
        "photo": str(photo),
        "settings": "product defaults",
        "targets": {"total_12mp_over_1mp": TARGET_RATIO_12_TO_1, "peak_rss_mib_24mp_cli": TARGET_PEAK_MIB_24MP_CLI},
        "machine": machine_info(),
        "rows": rows,
        "summary": summary(rows),
    }
    table = markdown_table(rows)
    lines = summary_lines(report["summary"])
    (out_dir / "bench-scale.json").write_text(json.dumps(report, indent=2))
    (out_dir / "bench-scale.md").write_text(markdown_report(report, table, lines))
    print(table)
    print("\n".join(lines))
    print(f"\nWrote {out_dir / 'bench-scale.json'} and {out_dir / 'bench-scale.md'}")
    return 0 if all("error" not in r[m] for r in rows for m in MODES) else 1


def _total(row: dict[str, Any] | None, mode: str) -> float | None:
    rec = (row or {}).get(mode, {})
    return rec.get("timings", {}).get("total") if "error" not in rec else None


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_mp = {r["megapixels"]: r for r in rows}
    out: dict[str, Any] = {}
    for mode in MODES:
        one, twelve = _total(by_mp.get(1.0), mode), _total(by_mp.get(12.0), mode)
        out[f"total_12mp_over_1mp_{mode}"] = twelve / one if one and twelve else None
        if mode == "segment":
            cpu = [by_mp.get(mp, {}).get(mode, {}).get("timings", {}).get("cpu") for mp in (1.0, 12.0)]
            out["cpu_12mp_over_1mp_segment"] = cpu[1] / cpu[0] if all(cpu) else None
        peak = by_mp.get(24.0, {}).get(mode, {}).get("peak_rss_mib")
        out[f"peak_rss_mib_24mp_{mode}"] = peak
        # Growth of the peak per extra pixel between the two largest sizes measured (the photo
        # itself is 3 bytes a pixel as RGB).
        big = sorted((r for r in rows if r.get(mode, {}).get("peak_rss_mib")), key=lambda r: r["pixels"])[-2:]
        if len(big) == 2 and big[1]["pixels"] > big[0]["pixels"]:
            d = (big[1][mode]["peak_rss_mib"] - big[0][mode]["peak_rss_mib"]) * 2**20
            out[f"bytes_per_pixel_{mode}"] = {"from_mp": big[0]["megapixels"], "to_mp": big[1]["megapixels"],
                                              "value": d / (big[1]["pixels"] - big[0]["pixels"])}
    return out


def summary_lines(s: dict[str, Any]) -> list[str]:
    lines = []
    for mode in MODES:
        ratio = s.get(f"total_12mp_over_1mp_{mode}")
        if ratio is not None:
            ok = "meets" if ratio <= TARGET_RATIO_12_TO_1 else "MISSES"
            lines.append(f"{mode}: total(12 MP) / total(1 MP) = {ratio:.2f} "
                         f"({ok} the <= {TARGET_RATIO_12_TO_1} target)")
        cpu = s.get(f"cpu_12mp_over_1mp_{mode}")
        if cpu is not None:
            lines.append(f"{mode}: CPU time per photo (load + segment), 12 MP / 1 MP = {cpu:.2f}")
        peak = s.get(f"peak_rss_mib_24mp_{mode}")
        if peak is not None:
            note = ""
            if mode == "cli":
                note = " (" + ("meets" if peak <= TARGET_PEAK_MIB_24MP_CLI else "MISSES") + \
                    f" the <= {TARGET_PEAK_MIB_24MP_CLI:g} MiB target)"
            lines.append(f"{mode}: peak RSS at 24 MP = {peak:.0f} MiB{note}")
        bpp = s.get(f"bytes_per_pixel_{mode}")
        if bpp:
            lines.append(f"{mode}: peak grows {bpp['value']:.1f} bytes per pixel from {bpp['from_mp']:g} to "
                         f"{bpp['to_mp']:g} MP (the RGB photo itself is 3)")
    return lines


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    head = ["photo", "mode", *[s for s in STAGES if s not in ("load", "persons")], "wall per photo ms",
            "CPU per photo ms", "peak RSS MiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        for mode in MODES:
            rec = r[mode]
            cells = [f"{r['width']}x{r['height']} ({r['megapixels']:g} MP{'' if r['timed'] else ', cold'})", mode]
            if "error" in rec:
                cells += [rec["error"]] + [""] * (len(head) - 3)
            else:
                t = rec["timings"]
                cells += [_fmt(t.get(s)) for s in STAGES if s not in ("load", "persons")]
                cells += [_fmt(rec["wall_per_photo_s"] * 1000), _fmt(t.get("cpu")), _fmt(rec["peak_rss_mib"])]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_report(report: dict[str, Any], table: str, lines: list[str]) -> str:
    m = report["machine"]
    return "\n".join([
        "# bodypix-gimp full-resolution benchmark (`bodypix-gimp bench --scale`)", "",
        f"Machine: {m['platform']}, {m['cpus']} CPUs, Python {m['python']}, onnxruntime {m['onnxruntime']}; "
        f"load average at the end {m['load_average_1_5_15']} (above the CPU count: other work skewed the "
        "timings; compare the ratios, measured in the same run).",
        f"Photo: `{report['photo']}` resized (Lanczos) to each size, saved as JPEG (quality 95); product "
        "defaults. Timed sizes: 1 + repeat photos per process, median stages of the warm ones; memory "
        "sizes: one (cold) photo. `cli` = `bodypix-gimp segment A B --out DIR --json` (outputs written); `segment` = "
        "`load_image` + `segment()` only (its CPU column: process CPU time, all threads, per photo). "
        "Peak RSS = the process's VmHWM (interpreter, libraries, models, "
        "photo, pipeline).", "",
        table, "", *[f"- {x}" for x in lines], "",
    ])


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "--measure" and sys.argv[4] == "--":
        sys.exit(measure(sys.argv[2], Path(sys.argv[3]), sys.argv[5:]))
    sys.exit("usage: bodypix-gimp bench --scale [options] (this module's --measure mode is internal)")
