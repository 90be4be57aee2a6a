"""One cached onnxruntime session per model file, on the best execution provider.

Sessions are created once per (file, providers, threads) and reused: loading a model
costs 20-200 ms, running it often less.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

ENV_FORCE_CPU = "BODYPIX_FORCE_CPU"
ENV_THREADS = "BODYPIX_THREADS"

# Preference order for execution providers; CPU is always the last resort.
PREFERRED_PROVIDERS = (
    "CUDAExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
    "CPUExecutionProvider",
)



def choose_providers(force_cpu: bool | None = None) -> list[str]:
    """Best available onnxruntime execution providers, CPU last; ``force_cpu`` keeps CPU only."""
    import onnxruntime as ort

    if force_cpu is None:
        force_cpu = os.environ.get(ENV_FORCE_CPU, "") not in ("", "0", "false", "no")
    if force_cpu:
        return ["CPUExecutionProvider"]
    available = set(ort.get_available_providers())
    return [p for p in PREFERRED_PROVIDERS if p in available] or ["CPUExecutionProvider"]


@dataclass(frozen=True)
class RuntimeOptions:
    """How models run: a models folder, CPU-only or best provider, thread count (0 = ort default)."""

    models: str | None = None
    force_cpu: bool | None = None
    threads: int = 0


_lock = threading.Lock()
_sessions: dict[tuple[Any, ...], Any] = {}
# onnxruntime's CPU memory arena keeps the peak of the largest call for the life of the
# session (a 24 MP call left the idle model server at ~590 MB instead of ~190 MB,
# docs/reliability.md), and with its memory patterns a second photo added ~250 MB more at
# 24 MP (peak 935 -> 566 MB over three 24 MP photos without it; CPU time per photo unchanged
# within the noise, docs/performance.md).  Off for every caller: CLI, batch, model server.
MEMORY_ARENA = False


def session(path: str | os.PathLike[str], force_cpu: bool | None = None, threads: int = 0) -> Any:
    """A cached ``onnxruntime.InferenceSession`` for ``path``."""
    import onnxruntime as ort

    if not threads:
        threads = int(os.environ.get(ENV_THREADS, "0") or 0)
    providers = tuple(choose_providers(force_cpu))
    key = (str(path), providers, threads)
    with _lock:
        sess = _sessions.get(key)
        if sess is None:
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            opts.enable_cpu_mem_arena = MEMORY_ARENA
            # No busy-waiting worker threads: they cost more than they save on a loaded
            # 2-core machine (GIMP itself, other plug-ins) and between short runs.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            if threads:
                opts.intra_op_num_threads = threads
                opts.inter_op_num_threads = 1
            sess = ort.InferenceSession(str(path), sess_options=opts, providers=list(providers))
            _sessions[key] = sess
        return sess


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logits -> probabilities, for the heads whose graphs leave the activation to the caller."""
    return 1.0 / (1.0 + np.exp(-x))
