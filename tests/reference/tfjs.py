"""Install and run the TF.js body-pix 2.2.1 reference (``run_reference.js``) from Python.

Why: the faithfulness tests and ``bodypix-gimp bench`` compare our onnxruntime pipeline with
the implementation it claims to reproduce.  The npm packages are pinned by the committed
``package.json`` + ``package-lock.json`` and installed once with ``npm ci`` into
``<repo>/.cache/reference/node`` (git-ignored); weights are never downloaded, they are served
from the shared models folder on 127.0.0.1 by the Node script.

Pixels are handed over as ``.npy`` (exactly what our own decoder produced), so a JPEG decoder
difference can never pass for a model difference.  Results are cached per (pixels, model,
settings, package versions, script) under ``.cache/reference/results``; the cache only saves
time, CI starts without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
SCRIPT = HERE / "run_reference.js"
PACKAGE_FILES = ("package.json", "package-lock.json")
ENV_CACHE = "BODYPIX_REFERENCE_CACHE"


class ReferenceUnavailable(RuntimeError):
    """Node/npm is missing or the npm install failed; the message says which."""


def cache_root() -> Path:
    """``$BODYPIX_REFERENCE_CACHE`` or ``<repo>/.cache/reference``."""
    return Path(os.environ.get(ENV_CACHE) or REPO_ROOT / ".cache" / "reference")


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()


def lock_digest() -> str:
    """Identifies the installed package set and the runner script (part of every cache key)."""
    return _digest(*(HERE.joinpath(f).read_bytes() for f in PACKAGE_FILES), SCRIPT.read_bytes())


def ensure_installed() -> Path:
    """``npm ci`` the pinned packages into the cache once; returns the ``node_modules`` folder."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise ReferenceUnavailable("The TF.js reference needs Node.js 18+ and npm on PATH (not found).")
    dest = cache_root() / "node"
    stamp = dest / ".installed"
    want = _digest(*(HERE.joinpath(f).read_bytes() for f in PACKAGE_FILES))
    if stamp.is_file() and stamp.read_text() == want and (dest / "node_modules").is_dir():
        return dest / "node_modules"
    dest.mkdir(parents=True, exist_ok=True)
    for f in PACKAGE_FILES:
        shutil.copyfile(HERE / f, dest / f)
    proc = subprocess.run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=dest, capture_output=True, text=True, timeout=900,
    )
    if proc.returncode != 0:
        raise ReferenceUnavailable(f"npm ci of the TF.js reference failed: {proc.stderr.strip()[-2000:]}")
    stamp.write_text(want)
    return dest / "node_modules"


@dataclass(frozen=True)
class TfjsModel:
    """Where the original TF.js graph of one of our ONNX models lives."""

    name: str
    model_dir: Path
    graph: str
    architecture: str
    multiplier: float
    quant_bytes: int
    output_stride: int


def tfjs_model(name: str, models: str | os.PathLike[str] | None = None) -> TfjsModel:
    """``mobilenet075-quant2-stride16`` -> ``<models>/bodypix/tfjs/mobilenet/quant2/075/model-stride16.json``."""
    from bodypix_gimp.runtime.store import models_dir
    from bodypix_gimp.settings import QUANT_NAMES, parse_model_name

    p = parse_model_name(name)
    base = models_dir(models) / "bodypix" / "tfjs"
    if p["architecture"] == "ResNet50":
        folder = base / "resnet50" / QUANT_NAMES[p["quant_bytes"]]
    else:
        folder = base / "mobilenet" / QUANT_NAMES[p["quant_bytes"]] / f"{round(p['multiplier'] * 100):03d}"
    graph = f"model-stride{p['output_stride']}.json"
    if not (folder / graph).is_file():
        raise FileNotFoundError(f"No TF.js graph for {name}: {folder / graph} does not exist")
    return TfjsModel(name, folder, graph, p["architecture"], p["multiplier"], p["quant_bytes"], p["output_stride"])


def bodypix_config(settings: Any, multi: bool = False) -> dict[str, Any]:
    """body-pix inference config (camelCase) from a ``bodypix_gimp.Settings``."""
    cfg: dict[str, Any] = {
        "internalResolution": settings.internal_resolution,
        "segmentationThreshold": settings.segmentation_threshold,
        "maxDetections": settings.max_detections,
        "scoreThreshold": settings.score_threshold,
        "nmsRadius": settings.nms_radius,
    }
    if multi:
        cfg.update(minKeypointScore=settings.min_keypoint_score, refineSteps=settings.refine_steps)
    return cfg


@dataclass
class ReferenceResult:
    """What body-pix returned for one image (arrays at the image's full size)."""

    person: np.ndarray | None  # uint8 0/1 (single mode)
    parts: np.ndarray | None  # int8 part id, -1 background (single mode, parts=True)
    prob: np.ndarray | None  # float32 person probability (probs=True)
    poses: list[dict[str, Any]]  # allPoses of segmentPerson: {score, keypoints:[{part,x,y,score}]}
    people: list[dict[str, Any]] = field(default_factory=list)  # multi mode: {pose, mask, parts}
    record: dict[str, Any] = field(default_factory=dict)  # the raw JSON record (timings, config)

    @property
    def timings_ms(self) -> dict[str, float]:
        return dict(self.record.get("timings_ms", {}))


def _load_result(prefix: Path, mode: str) -> ReferenceResult:
    record = json.loads(prefix.with_suffix(".json").read_text())

    def opt(suffix: str) -> np.ndarray | None:
        f = Path(str(prefix) + suffix)
        return np.load(f) if f.is_file() else None

    if mode == "single":
        return ReferenceResult(opt(".person.npy"), opt(".parts.npy"), opt(".prob.npy"), record["allPoses"],
                               record=record)
    people = []
    for k, p in enumerate(record["people"]):
        people.append({"pose": p["pose"], "mask": opt(f".person{k}.npy"), "parts": opt(f".parts{k}.npy")})
    return ReferenceResult(None, None, None, [p["pose"] for p in record["people"]], people, record)


def run(
    images: Sequence[np.ndarray],
    model: str,
    config: dict[str, Any],
    *,
    backend: str = "cpu",
    mode: str = "single",
    parts: bool = True,
    probs: bool = False,
    fix_dilations: bool = False,
    warmup: int = 0,
    repeat: int = 1,
    models: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    timeout: float = 3600,
) -> list[ReferenceResult]:
    """Run body-pix on each RGB(A) uint8 image in one Node process (model loaded once).

    ``fix_dilations`` serves the stride-8 graphs with the symmetric dilation our ONNX files use
    (``run_reference.js`` ``patchDilations``).  Cached results are reused unless ``use_cache`` is
    False (timing runs must not be cached).
    """
    if mode not in ("single", "multi"):
        raise ValueError(f"mode must be 'single' or 'multi', not {mode!r}")
    if backend == "wasm" and parts:
        raise ValueError("body-pix part segmentation fails on the wasm backend (int BatchMatMul); use cpu")
    tm = tfjs_model(model, models)
    settings_key = json.dumps(
        {"model": model, "graph": (tm.graph, (tm.model_dir / tm.graph).stat().st_size), "config": config,
         "backend": backend, "mode": mode, "parts": parts, "probs": probs, "fix_dilations": fix_dilations},
        sort_keys=True,
    ).encode()
    base = lock_digest().encode() + settings_key
    results_dir = cache_root() / "results"
    keys = [_digest(base, str(img.shape).encode(), np.ascontiguousarray(img).tobytes())[:32] for img in images]
    prefixes = [results_dir / k / "ref" for k in keys]
    todo = [i for i, p in enumerate(prefixes) if not (use_cache and p.with_suffix(".json").is_file())]
    if todo:
        node_modules = ensure_installed()
        with tempfile.TemporaryDirectory(prefix="bodypix-ref-") as tmp:
            items = []
            for i in todo:
                src = Path(tmp) / f"img{i}.npy"
                np.save(src, np.ascontiguousarray(images[i][..., :3], dtype=np.uint8))
                out = prefixes[i] if use_cache else Path(tmp) / f"out{i}" / "ref"
                out.parent.mkdir(parents=True, exist_ok=True)
                prefixes[i] = out
                items.append({"path": str(src), "out": str(out)})
            job = {"model_dir": str(tm.model_dir), "graph": tm.graph, "architecture": tm.architecture,
                   "multiplier": tm.multiplier, "quant_bytes": tm.quant_bytes, "output_stride": tm.output_stride,
                   "backend": backend, "mode": mode, "parts": parts, "probs": probs, "config": config,
                   "fix_dilations": fix_dilations,
                   "warmup": warmup, "repeat": repeat, "images": items}
            job_file = Path(tmp) / "job.json"
            job_file.write_text(json.dumps(job))
            env = dict(os.environ, NODE_PATH=str(node_modules))
            proc = subprocess.run(["node", str(SCRIPT), str(job_file)], capture_output=True, text=True,
                                  env=env, timeout=timeout)
            if proc.returncode != 0:
                raise RuntimeError(f"TF.js reference failed (exit {proc.returncode}): {proc.stderr.strip()[-3000:]}")
            # Read everything before the temporary folder (uncached outputs) goes away.
            return [_load_result(p, mode) for p in prefixes]
    return [_load_result(p, mode) for p in prefixes]
