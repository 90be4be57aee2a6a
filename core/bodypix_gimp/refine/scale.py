"""Sizes: shrink a photo to a pixel budget, resize an array to another's grid."""

from __future__ import annotations

import cv2
import numpy as np


def diagonal(shape: tuple[int, ...]) -> float:
    """Length of the diagonal of an HxW[xC] grid, in pixels."""
    return float(np.hypot(shape[0], shape[1]))


def budget_shape(shape: tuple[int, ...], max_pixels: int) -> tuple[int, int]:
    """(h, w) of an HxW grid scaled, aspect kept, to at most ``max_pixels`` (itself when already small)."""
    h, w = shape[:2]
    if h * w <= max_pixels:
        return h, w
    s = (max_pixels / (h * w)) ** 0.5
    return max(1, round(h * s)), max(1, round(w * s))


def working_copy(rgb: np.ndarray, max_pixels: int) -> np.ndarray:
    """The photo area-downscaled to at most ``max_pixels`` (itself when already small)."""
    if rgb.shape[0] * rgb.shape[1] <= max_pixels:
        return rgb
    h, w = budget_shape(rgb.shape, max_pixels)
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)


def resize_to(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``a`` on an HxW grid: area-averaged when shrinking, bilinear when growing."""
    if a.shape[:2] == shape[:2]:
        return a
    small = shape[0] * shape[1] < a.shape[0] * a.shape[1]
    return cv2.resize(a, (shape[1], shape[0]), interpolation=cv2.INTER_AREA if small else cv2.INTER_LINEAR)
