"""One frozen Settings object for every knob, with body-pix's names, defaults and checks.

The CLI, the GIMP dialog and the evaluation harness all build a ``Settings``; a knob is
added here once.  Validation messages follow body-pix 2.x (``body_pix_model.ts``) and
name the allowed values, so a typo in a script says what would have worked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .errors import ConfigError

VALID_ARCHITECTURES = ("MobileNetV1", "ResNet50")
VALID_STRIDES = {"MobileNetV1": (8, 16, 32), "ResNet50": (32, 16)}
VALID_MULTIPLIERS = {"MobileNetV1": (0.50, 0.75, 1.0), "ResNet50": (1.0,)}
VALID_QUANT_BYTES = (1, 2, 4)
INTERNAL_RESOLUTIONS = {"low": 0.25, "medium": 0.5, "high": 0.75, "full": 1.0}
MIN_INTERNAL_RESOLUTION = 0.1
MAX_INTERNAL_RESOLUTION = 2.0
QUANT_NAMES = {4: "float", 2: "quant2", 1: "quant1"}
# Edge refinement methods (bodypix_gimp.refine.edges.METHODS, plus "none" = BodyPix's own edge).
REFINE_METHODS = ("none", "snake", "guided", "selfie-guided", "rvm", "fusion", "fusion-fast", "fusion-blend")


@dataclass(frozen=True)
class Settings:
    """Everything that changes what ``segment`` computes.

    The first block mirrors body-pix 2.x ``ModelConfig`` and ``PersonInferenceConfig``
    (same defaults, snake_case names).  ``quant_bytes`` defaults to 2, not body-pix's 4:
    the 16-bit MobileNet 0.75 is the model that installs everywhere (the float one is
    not published for 0.75 in a form we can verify) and its outputs match float to 1e-3.
    The second block is this project's own: the network-input cap that keeps huge
    photos cheap, and the stages that fix BodyPix's two visible flaws.
    """

    architecture: str = "MobileNetV1"
    multiplier: float = 0.75
    quant_bytes: int = 2
    output_stride: int = 16
    internal_resolution: str | float = "medium"
    segmentation_threshold: float = 0.7
    max_detections: int = 10
    score_threshold: float = 0.4
    nms_radius: float = 20.0
    min_keypoint_score: float = 0.3
    refine_steps: int = 10

    # Largest network input in pixels (height*width of the padded, resized input).
    # Masks always come out at the photo's full resolution.
    max_input_pixels: int = 1_000_000
    # A photo larger than this (pixels) is first area-shrunk to it, then BodyPix's internal
    # resolution applies (None: the internal resolution of the photo itself, up to the cap above).
    # The product's 1 MP: every photo from 1 MP up gives BodyPix the input a 1 MP photo gets.
    max_work_pixels: int | None = None
    # Edge refinement method ("none" = raw BodyPix edge); see bodypix_gimp.refine.
    refine: str = "none"
    # Recover fingers with the hand-landmark model where BodyPix finds a hand.
    fingers: bool = False
    # Return a soft 0-255 alpha person mask instead of a hard 0/255 one.
    soft_edges: bool = False
    # Also split the person mask into people (Result.persons), as body-pix segmentMultiPerson.
    multi_person: bool = False
    # Lowest pose score that makes a person instance (body-pix's minPoseScore, which it sets
    # to score_threshold: None).  0.25 finds more people in group photos (bodypix-gimp eval-persons).
    min_pose_score: float | None = None
    # What people hold (refine.held): True = each held object wholly in the person mask, False =
    # wholly out, None = not judged (the networks' own mask, which may tear it).  Its pixels
    # get no body part either way.
    include_held: bool | None = None
    # Decode more than max_detections poses, up to this many, while they keep holding people
    # (a crowd; ``bodypix.poses.decode_crowd``).  None: body-pix's cap alone.
    crowd_detections: int | None = None
    # Look again, closer, at people with a confident pose and little mask (``refine.crops``).
    look_again: bool = False

    def __post_init__(self) -> None:
        validate(self)

    @property
    def model_name(self) -> str:
        """The manifest name of the BodyPix variant these settings load."""
        return model_name(self.architecture, self.multiplier, self.quant_bytes, self.output_stride)

    def internal_resolution_fraction(self) -> float:
        return internal_resolution_fraction(self.internal_resolution)

    def replace(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def product(cls, **changes: Any) -> Settings:
        """The product's best pipeline (``PRODUCT_DEFAULTS``): what ``segment(image)``, the CLI and GIMP run."""
        return cls(**{**PRODUCT_DEFAULTS, **changes})

    @classmethod
    def bodypix_faithful(cls, **changes: Any) -> Settings:
        """body-pix 2.x's own defaults, raw BodyPix as the TF.js reference computes it (``Settings()``)."""
        return cls(**changes)


def model_name(architecture: str, multiplier: float, quant_bytes: int, output_stride: int) -> str:
    """``mobilenet075-quant2-stride16`` or ``resnet50-float-stride32``."""
    quant = QUANT_NAMES[quant_bytes]
    if architecture == "ResNet50":
        return f"resnet50-{quant}-stride{output_stride}"
    return f"mobilenet{round(multiplier * 100):03d}-{quant}-stride{output_stride}"


def parse_model_name(name: str) -> dict[str, Any]:
    """Inverse of :func:`model_name`; raises ConfigError naming the pattern."""
    parts = name.lower().split("-")
    quants = {v: k for k, v in QUANT_NAMES.items()}
    try:
        arch, quant, stride = parts
        if not stride.startswith("stride") or quant not in quants:
            raise ValueError
        out: dict[str, Any] = {"quant_bytes": quants[quant], "output_stride": int(stride[6:])}
        if arch == "resnet50":
            out.update(architecture="ResNet50", multiplier=1.0)
        elif arch.startswith("mobilenet") and len(arch) == len("mobilenet") + 3:
            out.update(architecture="MobileNetV1", multiplier=int(arch[9:]) / 100)
        else:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"Invalid model name {name!r}. Should look like 'mobilenet075-quant2-stride16' "
            "(mobilenet050|mobilenet075|mobilenet100|resnet50)-(float|quant2|quant1)-stride(8|16|32)"
        ) from None
    return out


def internal_resolution_fraction(value: str | float) -> float:
    """body-pix's ``toInternalResolutionPercentage``: low/medium/high/full or 0.1-2."""
    if isinstance(value, str):
        if value in INTERNAL_RESOLUTIONS:
            return INTERNAL_RESOLUTIONS[value]
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(
                "string value of internalResolution must be one of "
                f"{','.join(INTERNAL_RESOLUTIONS)} but was {value}."
            ) from None
    if not (MIN_INTERNAL_RESOLUTION <= float(value) <= MAX_INTERNAL_RESOLUTION):
        raise ConfigError(
            f"internalResolution must be a string or number between {MIN_INTERNAL_RESOLUTION} "
            f"and {MAX_INTERNAL_RESOLUTION}, but was {value}"
        )
    return float(value)


def validate(s: Settings) -> None:
    """Raise ConfigError with body-pix's wording for any value out of range."""
    if s.architecture not in VALID_ARCHITECTURES:
        raise ConfigError(
            f"Invalid architecture {s.architecture}. Should be one of {','.join(VALID_ARCHITECTURES)}"
        )
    strides = VALID_STRIDES[s.architecture]
    if s.output_stride not in strides:
        raise ConfigError(
            f"Invalid outputStride {s.output_stride}. Should be one of {','.join(map(str, strides))} "
            f"for architecture {s.architecture}."
        )
    mults = VALID_MULTIPLIERS[s.architecture]
    if not any(abs(s.multiplier - m) < 1e-9 for m in mults):
        raise ConfigError(
            f"Invalid multiplier {s.multiplier}. Should be one of {','.join(map(str, mults))} "
            f"for architecture {s.architecture}."
        )
    if s.quant_bytes not in VALID_QUANT_BYTES:
        raise ConfigError(
            f"Invalid quantBytes {s.quant_bytes}. Should be one of "
            f"{','.join(map(str, VALID_QUANT_BYTES))} for architecture {s.architecture}."
        )
    internal_resolution_fraction(s.internal_resolution)
    if not 0.0 <= s.segmentation_threshold <= 1.0:
        raise ConfigError(f"segmentationThreshold {s.segmentation_threshold}. Should be in range [0.0, 1.0]")
    if s.max_detections <= 0:
        raise ConfigError(f"Invalid maxDetections {s.max_detections}. Should be > 0")
    if not 0.0 <= s.score_threshold <= 1.0:
        raise ConfigError(f"Invalid scoreThreshold {s.score_threshold}. Should be in range [0.0, 1.0]")
    if s.nms_radius <= 0:
        raise ConfigError(f"Invalid nmsRadius {s.nms_radius}.")
    if not 0.0 <= s.min_keypoint_score <= 1.0:
        raise ConfigError(f"Invalid minKeypointScore {s.min_keypoint_score}. Should be in range [0.0, 1.0]")
    if s.min_pose_score is not None and not 0.0 <= s.min_pose_score <= 1.0:
        raise ConfigError(f"Invalid min_pose_score {s.min_pose_score}. Should be in range [0.0, 1.0]")
    if s.crowd_detections is not None and s.crowd_detections <= 0:
        raise ConfigError(f"Invalid crowd_detections {s.crowd_detections}. Should be > 0")
    if not 1 <= s.refine_steps <= 20:
        raise ConfigError(f"Invalid refineSteps {s.refine_steps}. Should be in range [1, 20]")
    if s.refine not in REFINE_METHODS:
        raise ConfigError(f"Invalid refine {s.refine!r}. Should be one of {', '.join(REFINE_METHODS)}")
    if s.include_held not in (None, True, False):
        raise ConfigError(f"Invalid include_held {s.include_held!r}. Should be True, False or None")
    if s.max_input_pixels < 10_000:
        raise ConfigError(f"Invalid max_input_pixels {s.max_input_pixels}. Should be >= 10000")
    if s.max_work_pixels is not None and s.max_work_pixels < 10_000:
        raise ConfigError(f"Invalid max_work_pixels {s.max_work_pixels}. Should be >= 10000 or None")


# The product's best pipeline (``Settings.product()``): what ``segment(image)``, the CLI, GIMP and
# the evaluation's "default" run; body-pix's own defaults stay in ``Settings()``.  Each value is
# chosen by measurement: docs/evaluation.md and the README's "Results".
PRODUCT_DEFAULTS: dict[str, Any] = {
    "refine": "fusion",  # edges: the best mask on every set and metric that matters (`make eval`)
    "fingers": True,  # hand-box IoU 94.8 -> 95.7 (`bodypix-gimp hands eval`)
    "min_pose_score": 0.25,  # group photos: missed people 14 -> 5 (`bodypix-gimp eval-persons --product`)
    # A held object wholly in: a cut-out keeps what the person holds, as background removers and
    # the references of human_seg_300 (remove.bg) and P3M (mattes) count it (refine/held.py).
    "include_held": True,
    "crowd_detections": 40,  # crowds: more than body-pix's 10 people (docs/evaluation.md, "Crowds")
    "look_again": True,  # small people with a confident pose and no mask (docs/evaluation.md, "Crowds")
    # BodyPix on a large photo's 1 MP working copy (the edge stage's) at the internal resolution:
    # a 12 MP photo's network input is a 1 MP photo's (0.25 MP at "medium"), not the 1 MP cap
    # (docs/performance.md, "Third pass")
    "max_work_pixels": 1_000_000,
}


def default_settings(**changes: Any) -> Settings:
    """The best pipeline (``PRODUCT_DEFAULTS``) with ``changes`` applied (``Settings.product``)."""
    return Settings.product(**changes)


def settings_from_options(
    *, model: str | None = None, output_stride: int | None = None, threshold: float | None = None,
    internal_resolution: str | float | None = None, max_input_pixels: int | None = None,
    refine: str | bool | None = None, fingers: bool | None = None, soft_edges: bool | None = None,
    include_held: bool | None = None,
) -> Settings:
    """A user's options -> ``Settings`` on top of the product's defaults; ``None`` keeps a default.

    The one translation the front-ends share: ``cli.segment``'s flags and the GIMP worker's
    dialog options (``worker.operations.build_settings``) each map their own names onto these.
    ``model``: a manifest name (:func:`parse_model_name`), applied before ``output_stride``;
    ``threshold``: segmentationThreshold; ``internal_resolution``: low/medium/high/full or a
    number (a numeric string counts as its number); ``max_input_pixels``: the network input's
    only size limit (the product's 1 MP working copy for BodyPix is off); ``refine``: a method name, or True/False
    for the product's method / BodyPix's own edge; ``include_held``: what people hold wholly in
    the person mask (True) or wholly out (False).  A value out of range is a ConfigError.
    """
    changes: dict[str, Any] = {}
    if model is not None:
        changes.update(parse_model_name(model))
    if output_stride is not None:
        changes["output_stride"] = output_stride
    if threshold is not None:
        changes["segmentation_threshold"] = threshold
    if internal_resolution is not None:
        if isinstance(internal_resolution, str):
            try:
                internal_resolution = float(internal_resolution)
            except ValueError:
                pass  # a name (or a typo: Settings says what would have worked)
        changes["internal_resolution"] = internal_resolution
    if max_input_pixels is not None:
        # an input cap asked for is the only limit: BodyPix's internal resolution then applies to
        # the photo itself, not to its 1 MP working copy (max_work_pixels)
        changes.update(max_input_pixels=max_input_pixels, max_work_pixels=None)
    if isinstance(refine, bool):
        changes["refine"] = PRODUCT_DEFAULTS["refine"] if refine else "none"
    elif refine is not None:
        changes["refine"] = refine
    if fingers is not None:
        changes["fingers"] = fingers
    if soft_edges is not None:
        changes["soft_edges"] = soft_edges
    if include_held is not None:
        changes["include_held"] = include_held
    return default_settings(**changes)
