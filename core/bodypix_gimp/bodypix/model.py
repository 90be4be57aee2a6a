"""One BodyPix forward pass: pad + resize as body-pix does, normalise, run ONNX, name the heads.

Mirrors body-pix 2.x ``body_pix_model.ts`` (``segmentPersonActivation``), ``util.ts``
(``toInputResolutionHeightAndWidth``, ``padAndResizeTo``) and ``mobilenet.ts`` /
``resnet.ts`` (``preprocessInput``).  The only addition is the input cap: a photo whose
internal resolution would exceed ``Settings.max_input_pixels`` is first shrunk with an
area filter (the reference's plain bilinear would alias badly at 24 MP), and the heads
are later resampled straight to the full photo size;
and the product's working copy: a photo above ``Settings.max_work_pixels`` is area-shrunk
to that size first and the internal resolution applies to the copy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ..errors import ModelNotFoundError
from ..runtime.sessions import RuntimeOptions, session, sigmoid
from ..runtime.store import bodypix_relpath, model_path
from ..settings import Settings
from .resize import apply_cols, apply_rows, resize_axis

# ResNet50 preprocessing (resnet.ts): subtract the ImageNet means, no scaling.
IMAGENET_MEAN = np.array([-123.15, -115.90, -103.06], dtype=np.float32)

# Output heads looked up by substring of the TF output names (ONNX keeps ':0').
HEADS = {
    "segments": "float_segments",
    "part_heatmaps": "float_part_heatmaps",
    "part_offsets": "float_part_offsets",
    "heatmaps": "float_heatmaps",
    "short_offsets": "float_short_offsets",
    "long_offsets": "float_long_offsets",
    "displacement_fwd": "displacement_fwd",
    "displacement_bwd": "displacement_bwd",
}


@dataclass(frozen=True)
class Geometry:
    """How the photo maps onto the network input (all in working-image pixels)."""

    height: int  # original photo
    width: int
    work_height: int  # photo after the input cap (== original when not capped)
    work_width: int
    input_height: int  # network input, a valid resolution k*stride+1
    input_width: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int
    output_stride: int

    @property
    def capped(self) -> bool:
        return (self.work_height, self.work_width) != (self.height, self.width)


@dataclass
class BodyPixOutput:
    """Raw heads at the network grid (h x w x C float32) plus the geometry to map them back.

    ``heatmaps`` are already through the sigmoid, as body-pix's ``BaseModel.predict`` returns them.
    """

    geometry: Geometry
    segments: np.ndarray
    part_heatmaps: np.ndarray
    heatmaps: np.ndarray
    short_offsets: np.ndarray
    long_offsets: np.ndarray
    displacement_fwd: np.ndarray
    displacement_bwd: np.ndarray
    part_offsets: np.ndarray | None = None
    # ``decode.part_argmax``'s work kept between its calls (the labels computed so far, the
    # sampling windows), so that the pipeline's second call only computes what the first did not
    part_cache: dict[tuple[str, int, int], Any] = field(default_factory=dict, repr=False, compare=False)


def to_valid_resolution(value: float, stride: int) -> int:
    """body-pix ``toValidInputResolution``: floor(value / stride) * stride + 1 (a valid size k*stride+1)."""
    if float(value).is_integer() and (int(value) - 1) % stride == 0:
        return int(value)
    return int(math.floor(value / stride) * stride + 1)


def plan_geometry(height: int, width: int, settings: Settings) -> Geometry:
    """Decide the working size, network input size and padding for a photo.

    Without the cap this is exactly body-pix: internal resolution = fraction x photo size,
    snapped down to k*stride+1; padding keeps the aspect ratio of that input.  With
    ``settings.max_work_pixels`` a larger photo is first shrunk to that many pixels (its
    working copy) and the internal resolution applies to the copy: the input grows with the
    photo up to that size and stays there (no step).
    """
    stride = settings.output_stride
    frac = settings.internal_resolution_fraction()
    work_h, work_w = height, width
    work_max = settings.max_work_pixels
    if work_max is not None and height * width > work_max:
        # the same size, same arithmetic, as refine.scale.budget_shape (the edge stage's working copy)
        scale = (work_max / (height * width)) ** 0.5
        work_h, work_w = max(1, round(height * scale)), max(1, round(width * scale))
    if frac * frac * work_h * work_w > settings.max_input_pixels:
        # Shrink the photo so that its full-resolution input fits the cap.
        scale = math.sqrt(settings.max_input_pixels / (height * width))
        work_h, work_w = max(1, round(height * scale)), max(1, round(width * scale))
        frac = 1.0
    in_h = max(to_valid_resolution(work_h * frac, stride), stride + 1)
    in_w = max(to_valid_resolution(work_w * frac, stride), stride + 1)
    target_aspect = in_w / in_h
    aspect = work_w / work_h
    # body-pix padAndResizeTo; JS Math.round rounds .5 up.
    if aspect < target_aspect:
        pad = math.floor(0.5 * (target_aspect * work_h - work_w) + 0.5)
        pt = pb = 0
        pl = pr = pad
    else:
        pad = math.floor(0.5 * ((1.0 / target_aspect) * work_w - work_h) + 0.5)
        pt = pb = pad
        pl = pr = 0
    return Geometry(height, width, work_h, work_w, in_h, in_w, pt, pb, pl, pr, stride)


def looks_closer(geo: Geometry, settings: Settings, gain: float = 1.5) -> bool:
    """Whether ``settings`` give the photo of ``geo`` a network input ``gain`` times as many pixels."""
    other = plan_geometry(geo.height, geo.width, settings)
    return other.input_height * other.input_width >= gain * geo.input_height * geo.input_width


def prepare_input(
    image: np.ndarray, geo: Geometry, architecture: str, shrunk: np.ndarray | None = None
) -> np.ndarray:
    """Pad with zeros, resize (TF resizeBilinear, no align corners), normalise -> 1xHxWx3 float32.

    ``shrunk``: the photo already area-shrunk by the caller (the edge stage's working copy);
    used instead of shrinking again when it has the capped working size.
    """
    rgb = image[..., :3]
    if geo.capped:
        if shrunk is not None and shrunk.shape[:2] == (geo.work_height, geo.work_width):
            rgb = shrunk[..., :3]
        else:
            rgb = cv2.resize(rgb, (geo.work_width, geo.work_height), interpolation=cv2.INTER_AREA)
    # Resampling the padded image equals resampling the photo at shifted positions; padding
    # materialised here is small (a few rows or columns).
    padded = np.pad(rgb, ((geo.pad_top, geo.pad_bottom), (geo.pad_left, geo.pad_right), (0, 0)))
    ph, pw = padded.shape[:2]
    rows = resize_axis(ph, geo.input_height, align_corners=False)
    cols = resize_axis(pw, geo.input_width, align_corners=False)
    x = apply_cols(apply_rows(padded, rows), cols)  # a fresh float32 array: normalised in place
    if architecture == "ResNet50":
        x += IMAGENET_MEAN
    else:
        x /= np.float32(127.5)
        x -= np.float32(1.0)
    return x[None]


class BodyPixModel:
    """A loaded BodyPix network (one ONNX session, cached process-wide)."""

    def __init__(self, settings: Settings, runtime: RuntimeOptions | None = None) -> None:
        self.settings = settings
        self.runtime = runtime or RuntimeOptions()
        path = model_path(bodypix_relpath(settings.model_name), self.runtime.models)
        self.session = session(path, self.runtime.force_cpu, self.runtime.threads)
        self.input_name = self.session.get_inputs()[0].name
        names = [o.name for o in self.session.get_outputs()]
        self.output_names: dict[str, str] = {}
        for head, key in HEADS.items():
            match = [n for n in names if key in n]
            if match:
                self.output_names[head] = match[0]
        missing = {"segments", "part_heatmaps", "heatmaps", "short_offsets"} - set(self.output_names)
        if missing:
            raise ModelNotFoundError(f"{path} is not a BodyPix graph: no output for {sorted(missing)}")

    def run(
        self, image: np.ndarray, settings: Settings | None = None, shrunk: np.ndarray | None = None
    ) -> BodyPixOutput:
        """Forward pass on an HxWx3/4 uint8 photo; ``settings`` overrides the inference knobs
        (internal resolution, input cap) of the ones the model was loaded with; ``shrunk``: see
        ``prepare_input``."""
        settings = settings or self.settings
        h, w = image.shape[:2]
        geo = plan_geometry(h, w, settings)
        x = prepare_input(image, geo, settings.architecture, shrunk)
        heads = list(self.output_names)
        values = self.session.run([self.output_names[k] for k in heads], {self.input_name: x})
        out = {k: v[0].astype(np.float32, copy=False) for k, v in zip(heads, values, strict=True)}
        out["heatmaps"] = sigmoid(out["heatmaps"])
        empty = np.zeros(out["segments"].shape[:2] + (0,), np.float32)
        return BodyPixOutput(
            geometry=geo,
            segments=out["segments"],
            part_heatmaps=out["part_heatmaps"],
            heatmaps=out["heatmaps"],
            short_offsets=out["short_offsets"],
            long_offsets=out.get("long_offsets", empty),
            displacement_fwd=out.get("displacement_fwd", empty),
            displacement_bwd=out.get("displacement_bwd", empty),
            part_offsets=out.get("part_offsets"),
        )
