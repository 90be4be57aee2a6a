"""bodypix-gimp core: BodyPix 2.0 person and body-part segmentation on onnxruntime.

Public API (arrays in, arrays out; never imports GIMP)::

    from bodypix_gimp import Settings, load_image, segment
    result = segment(load_image("photo.jpg"))             # the product's best pipeline
    result.person_mask, result.part_map, result.poses
    raw = segment(photo, Settings.bodypix_faithful())     # body-pix 2.x as TF.js computes it
"""

from .errors import ChecksumError, ConfigError, InputError, ModelNotFoundError
from .imageio import load_image
from .pipeline import segment
from .result import KEYPOINT_NAMES, PART_GROUPS, PART_NAMES, Keypoint, Pose, Result
from .runtime.sessions import RuntimeOptions
from .settings import Settings

__all__ = [
    "ChecksumError", "ConfigError", "InputError", "KEYPOINT_NAMES", "Keypoint", "ModelNotFoundError",
    "PART_GROUPS", "PART_NAMES", "Pose", "Result", "RuntimeOptions", "Settings", "load_image", "segment",
]
__version__ = "0.1.0"
