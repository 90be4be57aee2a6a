"""``bodypix-gimp bench``: speed and peak memory of the full pipeline, next to TF.js body-pix.

For each model and photo size (real photos resized to 0.25, 2, 12 MP; 24 MP for memory) one
fresh subprocess loads the photo, runs ``segment`` once to warm up and then ``--repeat``
times, and reports the median wall time, the per-stage timings and the RSS high-water mark
(``VmHWM``, else ``getrusage``; a fresh process per case keeps one case's peak from hiding another's).

The same photos go through the reference, TF.js body-pix 2.2.1 ``segmentPerson`` on its wasm
backend (``tests/reference``, needs a source checkout plus Node and npm), with the same
body-pix settings; the ratio TF.js / ours is printed (target: >= 10).  Our side is timed twice
when the Settings add stages body-pix does not have (edge refinement, fingers): "raw" (those
stages off, equal work to ``segmentPerson``, used for the ratio) and "full" (as given).

Writes ``bench.json`` and ``bench.md`` to ``--out`` (default ``reports/``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..pipeline import segment
from ..runtime.sessions import RuntimeOptions, choose_providers
from ..settings import Settings
from .memory import peak_rss_mb

# Photo sizes in megapixels: timed (with the TF.js reference) and memory-only.
DEFAULT_SIZES = (0.25, 2.0, 12.0)
DEFAULT_MEMORY_SIZES = (24.0,)
TARGET_SPEEDUP = 10.0
TARGET_PEAK_MB_24MP = 1536.0
# A real 1920x1080 portrait from the shared evaluation photos; upscaled for 12 and 24 MP.
DEFAULT_PHOTO = Path("eval") / "p3m_demo_pseudo" / "images" / "p_d684dae3.jpg"
REPO_ROOT = Path(__file__).resolve().parents[3]


def parse_sizes(text: str) -> list[float]:
    try:
        sizes = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"sizes must be comma-separated megapixels like 0.25,2,12, not {text!r}") from None
    if any(not 0.01 <= s <= 150 for s in sizes):
        raise ValueError(f"sizes must be between 0.01 and 150 megapixels, got {text!r}")
    return sizes


def default_photo() -> Path:
    shared = os.environ.get("BODYPIX_SHARED")
    for base in ([Path(shared)] if shared else []) + [REPO_ROOT.parent / "shared"]:
        if (base / DEFAULT_PHOTO).is_file():
            return base / DEFAULT_PHOTO
    return REPO_ROOT / "samples" / "astronaut.jpg"


def resized_photo(rgb: np.ndarray, megapixels: float) -> np.ndarray:
    """The photo resized (Lanczos, aspect kept) to about ``megapixels`` million pixels."""
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = (megapixels * 1e6 / (h * w)) ** 0.5
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))


# ---- one case in a fresh process ---------------------------------------------------------------


def measure_case(spec: dict[str, Any]) -> dict[str, Any]:
    """Time ``segment`` on one .npy photo; runs in its own process (see ``run_case``)."""
    image = np.load(spec["photo"])
    settings = Settings(**spec["settings"])
    runtime = RuntimeOptions(**spec["runtime"])
    base_mb = peak_rss_mb()
    t0 = time.perf_counter()
    first = segment(image, settings, runtime)  # loads the model: reported, not in the median
    first_ms = (time.perf_counter() - t0) * 1000
    totals, stages = [], []
    for _ in range(max(1, spec["repeat"])):
        t0 = time.perf_counter()
        res = segment(image, settings, runtime)
        totals.append((time.perf_counter() - t0) * 1000)
        stages.append(res.timings)
    names = [k for k in stages[0] if k != "total"]
    return {
        "ms": statistics.median(totals),
        "all_ms": totals,
        "first_ms": first_ms,
        "stages_ms": {k: statistics.median(s.get(k, 0.0) for s in stages) for k in names},
        "peak_rss_mb": peak_rss_mb(),
        "base_rss_mb": base_mb,
        "info": first.info,
        "person_pixels": int((first.person_mask >= 128).sum()),
    }


def run_case(photo: Path, settings: Any, runtime: Any, repeat: int) -> dict[str, Any]:
    """Run ``worker`` in a fresh interpreter so that ``ru_maxrss`` is this case's own peak."""
    from dataclasses import asdict

    spec = {"photo": str(photo), "settings": settings.to_dict(), "runtime": asdict(runtime), "repeat": repeat}
    proc = subprocess.run([sys.executable, "-m", "bodypix_gimp.evaluate.bench", "--worker", json.dumps(spec)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- the TF.js reference -----------------------------------------------------------------------


def load_reference_driver() -> Any:
    """``tests/reference/tfjs.py`` from the source checkout this package runs from."""
    path = REPO_ROOT / "tests" / "reference" / "tfjs.py"
    if not path.is_file():
        raise FileNotFoundError(f"the TF.js reference driver needs a source checkout ({path} is missing)")
    spec = importlib.util.spec_from_file_location("bodypix_reference_tfjs", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def reference_times(photos: list[Path], model: str, settings: Any, models: str | None, repeat: int,
                    backend: str = "wasm") -> tuple[list[dict[str, Any]], str | None]:
    """TF.js segmentPerson medians per photo (one Node process), or ([], why not)."""
    try:
        tfjs = load_reference_driver()
        images = [np.load(p) for p in photos]
        results = tfjs.run(images, model, tfjs.bodypix_config(settings), backend=backend, parts=False,
                           warmup=1, repeat=repeat, models=models, use_cache=False)
    except Exception as e:  # the comparison is optional; say why it is missing
        return [], f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
    out = []
    for r in results:
        out.append({"backend": backend, "ms": r.timings_ms.get("segmentPerson"),
                    "all_ms": r.record.get("segmentPerson_all_ms"), "load_ms": r.record.get("load_ms"),
                    "wasm": r.record.get("wasm")})
    return out, None


def machine_info() -> dict[str, Any]:
    import onnxruntime as ort


    load = os.getloadavg() if hasattr(os, "getloadavg") else None  # other work on the machine skews timings
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "onnxruntime": ort.__version__, "providers": choose_providers(),
            "load_average_1_5_15": [round(x, 2) for x in load] if load else None}


def _fmt(x: float | None, spec: str = ".0f") -> str:
    return "-" if x is None else format(x, spec)


def markdown_table(rows: list[dict[str, Any]], extra_stages: bool, backend: str = "wasm") -> str:
    head = ["model", "photo", "input", "ours ms", "stages ms", "peak RSS MB"]
    if extra_stages:
        head += ["full ms", "full stages ms", "full peak MB"]
    head += [f"TF.js {backend} ms", "speedup"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        raw = r["raw"]
        cells = [r["model"], f"{r['width']}x{r['height']} ({r['megapixels']:g} MP)",
                 "x".join(map(str, raw.get("info", {}).get("input_size", []))) or "-"]
        if "error" in raw:
            cells += [raw["error"], "", ""]
        else:
            cells += [_fmt(raw["ms"]), stage_text(raw), _fmt(raw["peak_rss_mb"])]
        if extra_stages:
            full = r.get("full", {})
            cells += ([full.get("error", ""), "", ""] if "error" in full else
                      [_fmt(full.get("ms")), stage_text(full), _fmt(full.get("peak_rss_mb"))])
        ref = r.get("tfjs")
        if r["memory_only"] or ref is None:
            cells += ["(memory only)" if r["memory_only"] else "-", "-"]
        elif "error" in ref:
            cells += [f"n/a: {ref['error']}", "-"]
        else:
            cells += [_fmt(ref["ms"]), _fmt(r.get("speedup"), ".1f") + "x"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def stage_text(res: dict[str, Any]) -> str:
    return " ".join(f"{k} {v:.0f}" for k, v in res.get("stages_ms", {}).items() if k != "load")


def markdown_report(report: dict[str, Any], table: str) -> str:
    m = report["machine"]
    timed = [r for r in report["rows"] if r.get("speedup")]
    big = [r for r in report["rows"] if r["megapixels"] >= 24 and "peak_rss_mb" in r["raw"]]
    lines = [
        "# bodypix-gimp benchmark", "",
        f"Machine: {m['platform']}, {m['cpus']} CPUs, Python {m['python']}, onnxruntime {m['onnxruntime']} "
        f"({', '.join(m['providers'])}); load average at the end {m['load_average_1_5_15']} "
        "(well above the CPU count means other work skewed the timings).",
        f"Photo: `{report['photo']}` resized (Lanczos) to each size. Median of {report['repeat']} runs after "
        "one warm-up run; each case in a fresh process, peak = RSS high-water mark of that process "
        "(interpreter, libraries, model, photo and pipeline).",
        "'ours' = `segment()` with refinement and fingers off, the same work as TF.js `segmentPerson` "
        "(decode to a full-resolution mask included, photo decoding excluded on both sides); "
        "'full' = the settings as given, when they add stages.",
        f"TF.js = @tensorflow-models/body-pix 2.2.1 + tfjs 4.22 {report['reference_backend']} backend under "
        "Node (wasm: SIMD, single thread), same pixels, "
        "same body-pix settings. Note: our pipeline caps the network input at "
        f"{report['settings']['max_input_pixels']} pixels (see the input column), TF.js does not.", "",
        table, "",
    ]
    if timed:
        worst = min(timed, key=lambda r: r["speedup"])
        lines.append(f"Speed-up vs TF.js {report['reference_backend']}: {min(r['speedup'] for r in timed):.1f}x to "
                     f"{max(r['speedup'] for r in timed):.1f}x (target >= {TARGET_SPEEDUP:g}x; lowest: "
                     f"{worst['model']} at {worst['megapixels']:g} MP).")
    for r in big:
        for label, res in (("raw", r["raw"]), ("full", r.get("full"))):
            if not res or res.get("peak_rss_mb") is None:
                continue
            peak = res["peak_rss_mb"]
            ok = "meets" if peak < TARGET_PEAK_MB_24MP else "MISSES"
            lines.append(f"Peak memory at {r['megapixels']:g} MP ({r['model']}, {label}): {peak:.0f} MB, {ok} the "
                         f"< {TARGET_PEAK_MB_24MP:g} MB target.")
    lines.append("")
    lines.append("Settings: `" + json.dumps(report["settings"]) + "`")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(measure_case(json.loads(sys.argv[2]))))
        sys.exit(0)
    sys.exit("usage: bodypix-gimp bench [options] (this module's --worker mode is internal)")
