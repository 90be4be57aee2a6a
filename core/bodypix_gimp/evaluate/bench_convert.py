"""``python -m bodypix_gimp.evaluate.bench_convert``: RVM TF.js -> ONNX conversion time and the converted file's speed.

Converts ``rvm/tfjs/rvm.json`` with :func:`bodypix_gimp.setup.convert.tfjs.convert_file` (median of
``--repeat`` runs), then runs the converted file and the reference conversion
(``rvm/rvm_mobilenetv3.onnx``, tensorflow + tf2onnx) on the same photo at each ratio, the two
sessions interleaved so machine load hits both alike, and reports the median inference time
of each and the largest output difference.  Writes ``bench_convert.json`` and ``.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..imageio import load_image
from ..refine.peers import RVM_NETWORK_SIDE
from ..runtime import store
from ..setup.convert import convert_file


def _feeds(rgb: np.ndarray, ratio: float) -> dict[str, np.ndarray]:
    zero = np.zeros((1, 1, 1, 1), np.float32)
    return {"src": (rgb.astype(np.float32) / 255.0)[None], "downsample_ratio:0": np.array([ratio], np.float32),
            "r1i:0": zero, "r2i:0": zero, "r3i:0": zero, "r4i:0": zero}


def run(models_dir: Path, photo: Path, ratios: list[float], repeat: int, threads: int) -> dict[str, Any]:
    """Measure; returns the report as a dict (times in ms)."""
    import onnxruntime as ort

    tfjs, reference = models_dir / "rvm" / "tfjs" / "rvm.json", models_dir / "rvm" / "rvm_mobilenetv3.onnx"
    rgb = load_image(photo)
    with tempfile.TemporaryDirectory() as tmp:
        convert_ms = []
        for k in range(repeat):
            start = time.perf_counter()
            converted = convert_file(tfjs, Path(tmp) / f"rvm{k}.onnx")
            convert_ms.append((time.perf_counter() - start) * 1000.0)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        cpu = ["CPUExecutionProvider"]
        sessions = {"converted": ort.InferenceSession(str(converted), opts, providers=cpu),
                    "reference": ort.InferenceSession(str(reference), opts, providers=cpu)}
        report: dict[str, Any] = {"photo": str(photo), "size": list(rgb.shape[:2]), "repeat": repeat,
                                  "threads": threads or "default", "convert_ms": statistics.median(convert_ms),
                                  "ratios": []}
        for ratio in ratios:
            feeds = _feeds(rgb, ratio)
            outs = {name: s.run(None, feeds) for name, s in sessions.items()}  # warm-up, and outputs
            diff = max(float(np.abs(a - b).max()) for a, b in zip(outs["converted"], outs["reference"], strict=True))
            times: dict[str, list[float]] = {name: [] for name in sessions}
            for _ in range(repeat):
                for name, s in sessions.items():
                    start = time.perf_counter()
                    s.run(None, feeds)
                    times[name].append((time.perf_counter() - start) * 1000.0)
            report["ratios"].append({"ratio": ratio, "max_abs_diff": diff,
                                     **{f"{n}_ms": statistics.median(t) for n, t in times.items()}})
    return report


def markdown(report: dict[str, Any]) -> str:
    h, w = report["size"]
    lines = [f"RVM conversion: {report['convert_ms']:.0f} ms (median of {report['repeat']}).", "",
             f"Inference on {Path(report['photo']).name} ({h}x{w}), CPU, median of {report['repeat']}:", "",
             "| ratio | converted ms | reference ms | max abs output diff |", "| --- | --- | --- | --- |"]
    for r in report["ratios"]:
        ms = f"{r['converted_ms']:.1f} | {r['reference_ms']:.1f}"
        lines.append(f"| {r['ratio']:.3f} | {ms} | {r['max_abs_diff']:.2e} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bodypix_gimp.evaluate.bench_convert",
                                description=__doc__.splitlines()[0])
    p.add_argument("--models", help="models folder (default: BODYPIX_MODELS / the usual search)")
    p.add_argument("--photo", type=Path, help="photo (default: <models>/../eval/seed/jim.jpg)")
    p.add_argument("--ratio", type=float, action="append", help="downsample ratio (repeatable; default: "
                   "the project's rule min(512 / long side, 1), 0.25, 0.5, 1.0)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = its default)")
    p.add_argument("--out", type=Path, default=Path("reports"))
    args = p.parse_args(argv)
    models_dir = store.models_dir(args.models)
    photo = args.photo or models_dir.parent / "eval" / "seed" / "jim.jpg"
    if not photo.is_file():
        p.error(f"photo {photo} not found; pass --photo")
    if args.ratio:
        ratios = args.ratio
    else:
        from PIL import Image


        with Image.open(photo) as im:
            ratios = [min(1.0, RVM_NETWORK_SIDE / max(im.size)), 0.25, 0.5, 1.0]
    report = run(models_dir, photo, ratios, args.repeat, args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_convert.json").write_text(json.dumps(report, indent=1))
    text = markdown(report)
    (args.out / "bench_convert.md").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
