"""Pictures of results: body-pix's rainbow part mask drawn over the photo."""

from __future__ import annotations

import numpy as np

# body-pix output_rendering_util.ts RAINBOW_PART_COLORS, indexed by part id.
RAINBOW_PART_COLORS = np.array(
    [
        [110, 64, 170], [143, 61, 178], [178, 60, 178], [210, 62, 167],
        [238, 67, 149], [255, 78, 125], [255, 94, 99], [255, 115, 75],
        [255, 140, 56], [239, 167, 47], [217, 194, 49], [194, 219, 64],
        [175, 240, 91], [135, 245, 87], [96, 247, 96], [64, 243, 115],
        [40, 234, 141], [28, 219, 169], [26, 199, 194], [33, 176, 213],
        [47, 150, 224], [65, 125, 224], [84, 101, 214], [99, 81, 195],
    ],
    dtype=np.uint8,
)  # fmt: skip


def colored_part_mask(part_map: np.ndarray, background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """body-pix ``toColoredPartMask``: HxWx3 uint8, part colours, ``background`` where no part."""
    lut = np.empty((256, 3), np.uint8)
    lut[:] = background
    lut[: len(RAINBOW_PART_COLORS)] = RAINBOW_PART_COLORS
    return lut[part_map]


def draw_mask(image: np.ndarray, mask_image: np.ndarray, opacity: float = 0.7) -> np.ndarray:
    """body-pix ``drawMask``: the mask image composited over the photo at ``opacity``."""
    base = image[..., :3].astype(np.float32)
    out = base * (1.0 - opacity) + mask_image.astype(np.float32) * opacity
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def part_overlay(image: np.ndarray, part_map: np.ndarray, opacity: float = 0.7) -> np.ndarray:
    """The coloured part overlay the CLI writes as ``<stem>.overlay.jpg`` (or ``.png``)."""
    return draw_mask(image, colored_part_mask(part_map), opacity)


def outline_overlay(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = (255, 0, 255)) -> np.ndarray:
    """The photo with the mask's boundary drawn in one pixel wide: for judging edges by eye."""
    import cv2

    binary = (mask >= 128).astype(np.uint8)
    edge = binary - cv2.erode(binary, np.ones((3, 3), np.uint8))
    out = image[..., :3].copy()
    out[edge.astype(bool)] = color
    return out
