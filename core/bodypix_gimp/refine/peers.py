"""The two peer person models used for edges: RVM (soft alpha matte) and MediaPipe Selfie.

Both are plain array functions, photo in, float32 HxW in [0, 1] at the photo's size out,
so the evaluation harness can run them alone and the edge methods can fuse them with
BodyPix.  Sessions come from ``runtime.sessions.session`` (cached per process).

RVM (Robust Video Matting, MobileNetV3) is GPL-3.0; see ../shared/models/rvm/README.md.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..runtime.rvm_graph import alpha_session
from ..runtime.sessions import RuntimeOptions, session
from ..runtime.store import AUX_MODELS, model_path
from .scale import working_copy

# RVM runs on a copy of the photo no larger than this many pixels; its own deep guided
# filter brings the alpha back to that copy's size, and we upsample the rest of the way.
# Why a cap: RVM's cost grows with the photo (its refiner works at full size); at 12 MP
# that would be seconds.  1 MP keeps it under ~0.2 s on two cores.
RVM_MAX_PIXELS = 1_000_000
# The network's own working size, the author's rule ``min(512 / max(H, W), 1)``.  Measured on
# human_seg_300 (~0.25 MP, alpha > 0.3): long side 384 IoU 0.943 / F@2px 0.780, 512 0.946 /
# 0.786, 768 0.942 / 0.783; 512 is both the author's choice and the best.
RVM_NETWORK_SIDE = 512
SELFIE_SIZE = 256
# The shortest side RVM's network may see after its downsample (measured: 2 px fails, 3 works).
RVM_MIN_SIDE = 4


def _session(name: str, runtime: RuntimeOptions | None):
    runtime = runtime or RuntimeOptions()
    path = model_path(AUX_MODELS[name], runtime.models)
    return session(path, runtime.force_cpu, runtime.threads)


def _grow(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if a.shape[:2] == shape:
        return a
    return cv2.resize(a, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def rvm_alpha(
    rgb: np.ndarray,
    runtime: RuntimeOptions | None = None,
    network_side: int = RVM_NETWORK_SIDE,
    max_pixels: int = RVM_MAX_PIXELS,
) -> np.ndarray:
    """RVM's alpha matte (float32 HxW, 0..1) of a still photo.

    The recurrent state is zeros (a single frame).  ``network_side`` is the long side the
    network sees (downsample_ratio = network_side / long side, at most 1).
    """
    # the graph that computes the alpha alone (made once per user; the model file otherwise)
    runtime = runtime or RuntimeOptions()
    sess = alpha_session(model_path(AUX_MODELS["rvm"], runtime.models), runtime.force_cpu, runtime.threads)
    h, w = rgb.shape[:2]
    small = working_copy(rgb, max_pixels)
    sh, sw = small.shape[:2]
    ratio = float(min(1.0, network_side / max(sh, sw)))
    # RVM's layers need a few pixels on each side at its working scale (a 1-2 px photo or a
    # thin strip fails inside onnxruntime): widen the copy by repeating its edge, crop after
    need = math.ceil(RVM_MIN_SIDE / ratio)
    if sh < need or sw < need:
        small = cv2.copyMakeBorder(small, 0, max(0, need - sh), 0, max(0, need - sw), cv2.BORDER_REPLICATE)
    zero = np.zeros((1, 1, 1, 1), np.float32)
    feeds = {
        "src": (small.astype(np.float32) / 255.0)[None],
        "downsample_ratio:0": np.array([ratio], np.float32),
        "r1i:0": zero, "r2i:0": zero, "r3i:0": zero, "r4i:0": zero,
    }  # fmt: skip
    (pha,) = sess.run(["pha"], feeds)
    return np.clip(_grow(pha[0, :sh, :sw, 0].astype(np.float32), (h, w)), 0.0, 1.0)


def selfie_probability(rgb: np.ndarray, runtime: RuntimeOptions | None = None) -> np.ndarray:
    """MediaPipe Selfie Segmentation person probability (float32 HxW, 0..1).

    The model sees the whole photo squeezed to 256x256 (as MediaPipe's general model does);
    the output is stretched back with bilinear interpolation.
    """
    sess = _session("selfie", runtime)
    h, w = rgb.shape[:2]
    x = cv2.resize(rgb, (SELFIE_SIZE, SELFIE_SIZE), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    (out,) = sess.run(None, {sess.get_inputs()[0].name: x[None]})
    return np.clip(_grow(out[0, :, :, 0].astype(np.float32), (h, w)), 0.0, 1.0)
