#!/usr/bin/env python3
"""Benchmark of issues 3 and 14: time from calling Select Person to the selection existing, in
headless GIMP 3, for a 2 MP and a 12 MP photo with the default settings, beside the core-only
time for the same photo (so the plug-in's own overhead is visible); and the second click on the
same unchanged layer (Select > Body Part > Face right after Select Person), which the worker
answers from its cache.

Every "first click" gets pixels the worker has not seen (the photo with one pixel changed per
run), so it is a real segmentation; run 0 is the first click after GIMP started (the model
server starts), the later runs have it warm.

    python tests/gimp/bench.py [--out reports] [--repeats 3] [--sizes 12MP] [--no-core]

Needs root (the GIMP 3 rootfs, see tests/gimp/setup-gimp.sh). Installs the plug-in with
installer/install.py into a throw-away profile, then runs everything in that profile:
GIMP times ``procedure.run()`` (plug-in process start, pixels out of GIMP, worker process,
BodyPix, selection written); the core-only time is ``segment()`` in the same environment the
plug-in's worker uses, with the settings the worker runs (people told apart), measured warm
(model loaded) and as a fresh process, once before and once after the GIMP clicks (the machine
is shared: the load average before, between and after is in the report). Prints a table,
writes <out>/gimp-bench.json and <out>/gimp-bench.md.
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
s = build_settings(defaults).replace(multi_person=True)  # the worker always tells people apart
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


SECOND = "plug-in-bodypix-select-face"  # the second click: another entry, the same pixels


def make_photos(work: Path, runs: int, sizes: list[str]) -> dict[str, list[Path]]:
    """Per size, ``runs`` files of the photo that differ in one pixel each (new pixels for the
    worker's cache, the same work for BodyPix)."""
    import numpy as np
    from PIL import Image

    out = {}
    for name in sizes:
        size = SIZES[name]
        img = Image.open(PHOTO).convert("RGB")
        if size is not None:
            img = img.resize(size, Image.Resampling.LANCZOS)
        a = np.array(img)
        out[name] = []
        for i in range(runs):
            a[0, 0] = (i * 53 % 256, 255 - i, 17)
            p = work / f"photo-{name}-{i}.png"
            Image.fromarray(a).save(p, compress_level=1)
            out[name].append(p)
    return out


def overhead_ms(t: dict) -> dict:
    """The plug-in's own steps in one click (ms, from its BODYPIX-TIMING stamps).

    The layer leaves GIMP strip by strip and each strip is sent while GIMP delivers the next:
    ``pixels_read_from_gimp`` is the time spent in GIMP's reads alone, ``pixels_out`` the whole
    stretch from connected to the last byte sent (reads and sends together).
    """
    return {
        # GIMP's call to the plug-in's Python being up (process start, interpreter, site)
        "gimp_to_python": t.get("gimp_to_python", 0.0),
        "start_to_run": t["run_called"],
        "connect": round(t["connected"] - t["worker_started"], 1),
        "pixels_read_from_gimp": t["pixels_read_from_gimp_ms"],
        "pixels_out": round(t["pixels_sent"] - t["connected"], 1),
        "worker_after_last_byte": round(t["worker_done"] - t["pixels_sent"], 1),
        "masks_written_back": round(t["applied"] - t["worker_done"], 1),
        # the plug-in's last stamp to GIMP's call returning (return values, GIMP's side)
        "return_to_gimp": t.get("return_to_gimp", 0.0),
        # the model server's CPU (all its threads) and page faults from the last byte to its answer:
        # what the click's core cost, whatever the machine's load did to the wall times
        "worker_cpu_after_last_byte": (t.get("worker") or {}).get("cpu_after_last_byte", 0.0),
        "worker_page_faults": (t.get("worker") or {}).get("page_faults_after_last_byte", 0),
    }


def click_times(line: dict, report: dict) -> dict:
    """One click's stamps (ms since the plug-in's Python was up) with the time before it and after
    its last stamp within GIMP's call, both clocks being the system's monotonic one."""
    t = dict(line["ms_since_python_start"])
    if "python_up_s" in line and "run_perf_s" in report:
        start, end = report["run_perf_s"]
        t["gimp_to_python"] = round((line["python_up_s"] - start) * 1000, 1)
        t["return_to_gimp"] = round((end - line["python_up_s"]) * 1000 - t["applied"], 1)
    return t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(harness.ROOT / "reports"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", default=",".join(SIZES), help=f"comma-separated, of {', '.join(SIZES)}")
    ap.add_argument("--no-core", action="store_true", help="skip the core-only runs (quicker before/after runs)")
    args = ap.parse_args()
    sizes = [n.strip() for n in args.sizes.split(",") if n.strip()]
    if not sizes or set(sizes) - set(SIZES):
        ap.error(f"--sizes: choose from {', '.join(SIZES)}")
    harness.ensure_gimp()
    inst = harness.make_install(harness.ROOT / ".cache" / "gimp-bench")
    photos = make_photos(inst.work, args.repeats + 1, sizes)
    core = skipped_core if args.no_core else core_only
    load_before = os.getloadavg()
    # core-only before and after the GIMP run, so a change of the machine's load shows
    core_before = {name: core(inst, paths[0], args.repeats) for name, paths in photos.items()}
    if None in core_before.values():
        return 1
    cases = []
    for name, paths in photos.items():
        for i, path in enumerate(paths):  # run 0 = first click after GIMP start
            for suffix, proc in (("", "plug-in-bodypix-select-person"), ("-again", SECOND)):
                cases.append({"id": f"{name}-{i}{suffix}", "image": str(path), "proc": proc, "timing_only": True})
    proc, _ = inst_batch(inst, cases)
    log = proc.stdout + proc.stderr
    (inst.work / "bench.log").write_text(log)
    if proc.returncode != 0:
        print(log[-4000:])
        return 1
    breakdown = [json.loads(x.split("BODYPIX-TIMING ", 1)[1]) for x in log.splitlines() if "BODYPIX-TIMING " in x]
    results = {
        "load_average_before_run": load_before,
        "load_average_after_gimp": os.getloadavg(),
        "machine": {
            "platform": platform.platform(),
            "python_host": platform.python_version(),
            "cpus": __import__("os").cpu_count(),
        },
        "photo": str(PHOTO),
        "settings": DEFAULTS,
        "sizes": {},
    }
    calls = iter(breakdown)  # one BODYPIX-TIMING line per call, in call order
    for name, paths in photos.items():
        reps, again, t_first, t_again = [], [], [], []
        for i in range(len(paths)):
            for suffix, runs, times in (("", reps, t_first), ("-again", again, t_again)):
                r = json.loads((inst.work / "out" / f"{name}-{i}{suffix}" / "report.json").read_text())
                assert r["status"] == "success" and not r["selection_empty"], r
                runs.append(r)
                times.append(click_times(next(calls), r))
        c = core(inst, paths[0], args.repeats)
        if c is None:
            return 1
        c0 = core_before[name]
        warm = c0["warm_s"] + c["warm_s"]
        gimp_s = [r["seconds"] for r in reps[1:]]
        again_s = [r["seconds"] for r in again[1:]]
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
            # the same layer right after Select Person, another entry (issue 14)
            "gimp_second_click_s": {
                "procedure": SECOND,
                "repeats": [round(s, 3) for s in again_s],
                "median": round(statistics.median(again_s), 3),
                "cache": [t.get("cache") for t in t_again],
                "ratio_to_first_click": round(statistics.median(again_s) / statistics.median(gimp_s), 3),
            },
            "first_click_cache": [t.get("cache") for t in t_first],
            "core_segment_s": {
                "warm_median": round(statistics.median(warm), 3),
                "warm_before_gimp": [round(v, 3) for v in c0["warm_s"]],
                "warm_after_gimp": [round(v, 3) for v in c["warm_s"]],
                "fresh_process_first_call": round(c["first_call_s"], 3),
                "import": round(c["import_s"], 3),
                "stages_ms": c["stages_ms"],
            },
            "plugin_breakdown_ms": t_first[-1],
            "plugin_breakdown_second_click_ms": t_again[-1],
            # the plug-in's own steps (median over the warm runs): reading the layer out of GIMP,
            # writing the mask back and making it the selection
            "plugin_steps_ms": {k: round(statistics.median(overhead_ms(t)[k] for t in t_first[1:]), 1)
                                for k in overhead_ms(t_first[-1])},  # fmt: skip
            "plugin_steps_each_click_ms": [overhead_ms(t) for t in t_first],
            "plugin_steps_each_second_click_ms": [overhead_ms(t) for t in t_again],
            "plugin_steps_second_click_ms": {k: round(statistics.median(overhead_ms(t)[k] for t in t_again[1:]), 1)
                                             for k in overhead_ms(t_again[-1])},  # fmt: skip
        }
        # the plug-in's own overhead, click by click: GIMP's end-to-end time minus the core's
        # segment() time inside that same click (robust to the machine's load changing between
        # the GIMP run and the separate core-only run)
        core_in_click = [t["core"]["total"] / 1000 for t in t_first[1:]]
        entry["core_inside_click_s"] = {"repeats": [round(v, 3) for v in core_in_click],
                                        "median": round(statistics.median(core_in_click), 3)}  # fmt: skip
        overheads = [g - c for g, c in zip(gimp_s, core_in_click, strict=True)]
        entry["plugin_overhead_s"] = {"repeats": [round(v, 3) for v in overheads],
                                      "median": round(statistics.median(overheads), 3),
                                      "first_click": round(reps[0]["seconds"] - t_first[0]["core"]["total"] / 1000,
                                                           3)}  # fmt: skip
        results["sizes"][name] = entry
    results["load_average_after_run"] = os.getloadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gimp-bench.json").write_text(json.dumps(results, indent=1))
    md = [
        f"| photo | Select Person in GIMP, new pixels, server warm (median of {args.repeats}) "
        "| core inside those clicks | plug-in overhead | first click after GIMP start (overhead) "
        "| core-only, separate process (warm) | click minus core-only | second click, same layer (Face) "
        "| second / first |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in results["sizes"].items():
        md.append(
            f"| {name} ({e['width']}x{e['height']}) | {e['gimp_select_person_s']['median']:.2f} s | "
            f"{e['core_inside_click_s']['median']:.2f} s | {e['plugin_overhead_s']['median']:.2f} s | "
            f"{e['gimp_select_person_s']['first']:.2f} s ({e['plugin_overhead_s']['first_click']:.2f} s) | "
            f"{e['core_segment_s']['warm_median']:.2f} s | "
            f"{e['gimp_select_person_s']['median'] - e['core_segment_s']['warm_median']:.2f} s | "
            f"{e['gimp_second_click_s']['median']:.2f} s | "
            f"{e['gimp_second_click_s']['ratio_to_first_click']:.2f} |"
        )
    md += ["", "The plug-in's own steps (ms, median of the warm runs; first click / second click):", "",
           "| photo | " + " | ".join(overhead_ms(t_first[-1])) + " |",
           "|---|" + "---|" * len(overhead_ms(t_first[-1]))]  # fmt: skip
    for name, e in results["sizes"].items():
        steps = [f"{e['plugin_steps_ms'][k]:.0f} / {e['plugin_steps_second_click_ms'][k]:.0f}"
                 for k in e["plugin_steps_ms"]]  # fmt: skip
        md.append(f"| {name} | " + " | ".join(steps) + " |")
    md.append("")
    md.append(
        f"Machine: {results['machine']['platform']}, {results['machine']['cpus']} CPUs. Settings: plug-in "
        f"defaults {DEFAULTS}. GIMP 3.0.4 headless (Debian 13 rootfs), worker in the installer's venv. "
        f"Load average (1 min) before the run {load_before[0]:.1f}, after the GIMP clicks "
        f"{results['load_average_after_gimp'][0]:.1f}, at the end {results['load_average_after_run'][0]:.1f} "
        "(the machine is shared: compare the click with the core-only time of the same run, measured "
        "before and after the clicks)."
    )
    (out / "gimp-bench.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    for name, e in results["sizes"].items():
        print(name, "plug-in breakdown (ms since plug-in Python start):", json.dumps(e["plugin_breakdown_ms"]))
        print(name, "second click:", json.dumps(e["plugin_breakdown_second_click_ms"]))
    print(f"wrote {out / 'gimp-bench.json'} and {out / 'gimp-bench.md'}")
    return 0


def core_only(inst: harness.Install, photo: Path, repeats: int) -> dict | None:
    """``segment()`` alone in a fresh process of the plug-in's environment (first call, then warm)."""
    core = inst.run_inside(
        [str(inst.data / "venv" / "bin" / "python"), "-c", CORE_SCRIPT, str(photo), str(inst.data / "models"),
         json.dumps(DEFAULTS), str(repeats)]
    )  # fmt: skip
    line = [x for x in core.stdout.splitlines() if x.startswith("CORE ")]
    if core.returncode != 0 or not line:
        print(core.stdout[-2000:], core.stderr[-2000:])
        return None
    return json.loads(line[0][5:])


def skipped_core(inst: harness.Install, photo: Path, repeats: int) -> dict:
    """--no-core: no core-only run (its columns read 0)."""
    return {"import_s": 0.0, "first_call_s": 0.0, "warm_s": [0.0], "stages_ms": {}}


def inst_batch(inst: harness.Install, cases: list[dict]):
    return inst.batch(
        {"out": str(inst.work / "out"), "empty_models": "", "cases": cases},
        timeout=1800,
        BODYPIX_GIMP_TIMING="1",
        # as in a user's GIMP: Python keeps the plug-in's modules compiled in its __pycache__
        PYTHONDONTWRITEBYTECODE="",
    )


if __name__ == "__main__":
    sys.exit(main())
