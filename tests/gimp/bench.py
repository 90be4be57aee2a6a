#!/usr/bin/env python3
"""Benchmark of issue 3: time from calling Select Person to the selection existing, in headless
GIMP 3, for a 2 MP and a 12 MP photo with the default settings, beside the core-only time for
the same photo (so the plug-in's own overhead is visible).

    python tests/gimp/bench.py [--out reports] [--repeats 3]

Needs root (the GIMP 3 rootfs, see tests/gimp/setup-gimp.sh). Installs the plug-in with
installer/install.py into a throw-away profile, then runs everything in that profile:
GIMP times ``procedure.run()`` (plug-in process start, pixels out of GIMP, worker process,
BodyPix, selection written); the core-only time is ``segment()`` in the same environment the
plug-in's worker uses, measured warm (model loaded) and as a fresh process (what one click
costs the worker). Prints a table, writes <out>/gimp-bench.json and <out>/gimp-bench.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

PHOTO = harness.SHARED / "eval" / "p3m_demo_pseudo" / "images" / "p_d684dae3.jpg"  # 1920x1080
SIZES = {"2MP": None, "12MP": (4608, 2592)}  # 12 MP: the same photo upscaled (Lanczos)

CORE_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
from bodypix_gimp import load_image, segment
from bodypix_gimp.worker.operations import build_settings
defaults = json.loads(sys.argv[3])
img = load_image(sys.argv[1])
s = build_settings(defaults)
t1 = time.perf_counter()
first = segment(img, s, __import__('bodypix_gimp').RuntimeOptions(models=sys.argv[2]))
t2 = time.perf_counter()
warm = []
for _ in range(int(sys.argv[4])):
    t = time.perf_counter()
    r = segment(img, s, __import__('bodypix_gimp').RuntimeOptions(models=sys.argv[2]))
    warm.append(time.perf_counter() - t)
print("CORE", json.dumps({"import_s": t1 - t0, "first_call_s": t2 - t1, "warm_s": warm,
                          "stages_ms": {k: round(v, 1) for k, v in r.timings.items()},
                          "person_pixels": int((r.person_mask >= 128).sum())}))
"""
DEFAULTS = harness.PLUGIN_DEFAULTS


def make_photos(work: Path) -> dict[str, Path]:
    from PIL import Image

    out = {}
    for name, size in SIZES.items():
        if size is None:
            out[name] = PHOTO
            continue
        p = work / f"photo-{name}.jpg"
        Image.open(PHOTO).convert("RGB").resize(size, Image.Resampling.LANCZOS).save(p, quality=95)
        out[name] = p
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(harness.ROOT / "reports"))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    harness.ensure_gimp()
    inst = harness.make_install(harness.ROOT / ".cache" / "gimp-bench")
    photos = make_photos(inst.work)
    cases = []
    for name, path in photos.items():
        for i in range(args.repeats + 1):  # run 0 = first click after GIMP start
            cases.append(
                {
                    "id": f"{name}-{i}",
                    "image": str(path),
                    "proc": "plug-in-bodypix-select-person",
                    "timing_only": True,
                }
            )
    proc, _ = inst_batch(inst, cases)
    log = proc.stdout + proc.stderr
    (inst.work / "bench.log").write_text(log)
    if proc.returncode != 0:
        print(log[-4000:])
        return 1
    breakdown = [json.loads(x.split("BODYPIX-TIMING ", 1)[1]) for x in log.splitlines() if "BODYPIX-TIMING " in x]
    results = {
        "load_average_after_run": os.getloadavg(),
        "machine": {
            "platform": platform.platform(),
            "python_host": platform.python_version(),
            "cpus": __import__("os").cpu_count(),
        },
        "photo": str(PHOTO),
        "settings": DEFAULTS,
        "sizes": {},
    }
    bi = 0
    for name, path in photos.items():
        reps = [
            json.loads((inst.work / "out" / f"{name}-{i}" / "report.json").read_text()) for i in range(args.repeats + 1)
        ]
        assert all(r["status"] == "success" and not r["selection_empty"] for r in reps), reps
        core = inst.run_inside(
            [
                str(inst.data / "venv" / "bin" / "python"),
                "-c",
                CORE_SCRIPT,
                str(path),
                str(inst.data / "models"),
                json.dumps(DEFAULTS),
                str(args.repeats),
            ]
        )
        line = [x for x in core.stdout.splitlines() if x.startswith("CORE ")]
        if core.returncode != 0 or not line:
            print(core.stdout[-2000:], core.stderr[-2000:])
            return 1
        c = json.loads(line[0][5:])
        gimp_s = [r["seconds"] for r in reps[1:]]
        w, h = reps[0]["canvas"]
        entry = {
            "width": w,
            "height": h,
            "megapixels": round(w * h / 1e6, 2),
            "gimp_select_person_s": {
                "first": round(reps[0]["seconds"], 3),
                "repeats": [round(s, 3) for s in gimp_s],
                "median": round(statistics.median(gimp_s), 3),
            },
            "core_segment_s": {
                "warm_median": round(statistics.median(c["warm_s"]), 3),
                "fresh_process_first_call": round(c["first_call_s"], 3),
                "import": round(c["import_s"], 3),
                "stages_ms": c["stages_ms"],
            },
            "plugin_breakdown_ms": breakdown[bi + args.repeats]["ms_since_python_start"],
        }
        # the plug-in's own overhead, click by click: GIMP's end-to-end time minus the core's
        # segment() time inside that same click (robust to the machine's load changing between
        # the GIMP run and the separate core-only run)
        clicks = breakdown[bi + 1 : bi + args.repeats + 1]
        core_in_click = [b["ms_since_python_start"]["core"]["total"] / 1000 for b in clicks]
        entry["core_inside_click_s"] = {"repeats": [round(v, 3) for v in core_in_click],
                                        "median": round(statistics.median(core_in_click), 3)}  # fmt: skip
        overheads = [g - c for g, c in zip(gimp_s, core_in_click, strict=True)]
        entry["plugin_overhead_s"] = {"repeats": [round(v, 3) for v in overheads],
                                      "median": round(statistics.median(overheads), 3),
                                      "first_click": round(reps[0]["seconds"] - breakdown[bi]["ms_since_python_start"]
                                                           ["core"]["total"] / 1000, 3)}  # fmt: skip
        bi += args.repeats + 1
        results["sizes"][name] = entry
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gimp-bench.json").write_text(json.dumps(results, indent=1))
    md = [
        f"| photo | Select Person in GIMP (median of {args.repeats}) | core inside those clicks "
        "| plug-in overhead | first click (overhead) | core-only, separate process (warm) |",
        "|---|---|---|---|---|---|",
    ]
    for name, e in results["sizes"].items():
        md.append(
            f"| {name} ({e['width']}x{e['height']}) | {e['gimp_select_person_s']['median']:.2f} s | "
            f"{e['core_inside_click_s']['median']:.2f} s | {e['plugin_overhead_s']['median']:.2f} s | "
            f"{e['gimp_select_person_s']['first']:.2f} s ({e['plugin_overhead_s']['first_click']:.2f} s) | "
            f"{e['core_segment_s']['warm_median']:.2f} s |"
        )
    md.append("")
    md.append(
        f"Machine: {results['machine']['platform']}, {results['machine']['cpus']} CPUs. Settings: plug-in "
        f"defaults {DEFAULTS}. GIMP 3.0.4 headless (Debian 13 rootfs), worker in the installer's venv. "
        f"Load average (1 min) after the run: {results['load_average_after_run'][0]:.1f}."
    )
    (out / "gimp-bench.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    for name, e in results["sizes"].items():
        print(name, "plug-in breakdown (ms since plug-in Python start):", json.dumps(e["plugin_breakdown_ms"]))
    print(f"wrote {out / 'gimp-bench.json'} and {out / 'gimp-bench.md'}")
    return 0


def inst_batch(inst: harness.Install, cases: list[dict]):
    return inst.batch(
        {"out": str(inst.work / "out"), "empty_models": "", "cases": cases},
        timeout=1800,
        BODYPIX_GIMP_TIMING="1",
    )


if __name__ == "__main__":
    sys.exit(main())
