"""How long each edge method adds to a photo of a given size (the issue's 2 MP / 12 MP budget).

Refinement time is what the edge stage (``pipeline.refine_edges``) takes given BodyPix's
full-resolution probability and poses: the peer networks it runs (RVM, Selfie, and for
``fusion`` the sharper BodyPix pass) included, the first BodyPix pass excluded.  Each method is
warmed up once and then timed ``repeats`` times; the median and the minimum are reported,
because the machine may be shared and a single time says little.  The CPU time (all threads
of this process) is reported too: on a busy machine wall time mostly measures the others,
while CPU time divided by the cores used bounds what an idle machine would take.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from ..bodypix import decode
from ..bodypix import poses as poses_mod
from ..pipeline import get_model, refine_edges
from ..runtime.sessions import RuntimeOptions
from ..settings import Settings


def resize_to(rgb: np.ndarray, megapixels: float) -> np.ndarray:
    s = (megapixels * 1e6 / (rgb.shape[0] * rgb.shape[1])) ** 0.5
    size = (max(1, round(rgb.shape[1] * s)), max(1, round(rgb.shape[0] * s)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_CUBIC if s > 1 else cv2.INTER_AREA)


def refine_timings(
    rgb: np.ndarray,
    methods: list[str],
    megapixels: tuple[float, ...] = (2.0, 12.0),
    repeats: int = 3,
    runtime: RuntimeOptions | None = None,
) -> list[dict[str, float | str]]:
    """Rows of (method, megapixels, median ms, min ms) for ``rgb`` resized to each size."""
    runtime = runtime or RuntimeOptions()
    rows: list[dict[str, float | str]] = []
    for mp in megapixels:
        photo = resize_to(rgb, mp)
        base = Settings()
        out = get_model(base, runtime).run(photo, base)
        prob = decode.person_probability(out)
        raw = poses_mod.decode_raw(out, base.max_detections, base.score_threshold, base.nms_radius)
        poses = [poses_mod.to_photo(r, out.geometry) for r in raw]
        model = get_model(base, runtime)
        for m in methods:
            settings = base.replace(refine=m)
            refine_edges(model, photo, prob, poses, settings, runtime)
            times, cpu = [], []
            for _ in range(repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                refine_edges(model, photo, prob, poses, settings, runtime)
                times.append((time.perf_counter() - t0) * 1000.0)
                cpu.append((time.process_time() - c0) * 1000.0)
            rows.append(
                {
                    "method": m,
                    "megapixels": round(photo.shape[0] * photo.shape[1] / 1e6, 2),
                    "median_ms": float(np.median(times)),
                    "min_ms": float(min(times)),
                    "cpu_ms": float(np.median(cpu)),
                }
            )
    return rows


def timing_table(rows: list[dict[str, float | str]]) -> str:
    lines = [f"{'method':14s} {'MP':>6s} {'median ms':>10s} {'min ms':>8s} {'CPU ms':>8s}"]
    lines += [
        f"{r['method']:14s} {r['megapixels']:6.2f} {r['median_ms']:10.0f} {r['min_ms']:8.0f} {r['cpu_ms']:8.0f}"
        for r in rows
    ]
    return "\n".join(lines)
