"""bodypix-gimp core: BodyPix 2.0 person and body-part segmentation on onnxruntime.

Public API (arrays in, arrays out; never imports GIMP)::

    from bodypix_gimp import Settings, segment
    result = segment(rgb_uint8_array, Settings(output_stride=16))
    result.person_mask, result.part_map, result.poses
"""

from .settings import ConfigError, Settings

__all__ = ["ConfigError", "Settings"]
__version__ = "0.1.0"
