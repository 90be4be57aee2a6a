"""The guided filter (He, Sun and Tang 2010/2013) with box filters, and its fast subsampled form.

Hand-written because ``cv2.ximgproc.guidedFilter`` lives in opencv-contrib, which is not a
dependency; the filter is a handful of box filters (``cv2.boxFilter``), so OpenCV does the
work.  Used to carry a coarse probability onto the photo's real edges: the output is
locally a linear function of the guide image, so its transitions follow colour edges.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np


def _box(x: np.ndarray, r: int) -> np.ndarray:
    return cv2.boxFilter(x, cv2.CV_32F, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT)


def coefficients(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> list[np.ndarray]:
    """Box-averaged linear coefficients [a_1..a_c, b] with q = sum_c a_c * guide_c + b.

    ``guide`` is HxW (grey) or HxWx3 (colour; the 3x3 system per pixel is solved in closed
    form with the adjugate, vectorised).
    """
    p = src.astype(np.float32, copy=False)
    g = guide.astype(np.float32, copy=False)
    mean_p = _box(p, radius)
    if g.ndim == 2:
        mean_i = _box(g, radius)
        a = (_box(g * p, radius) - mean_i * mean_p) / (_box(g * g, radius) - mean_i * mean_i + eps)
        b = mean_p - a * mean_i
        return [_box(a, radius), _box(b, radius)]
    m = [_box(g[..., c], radius) for c in range(3)]
    cov = [_box(g[..., c] * p, radius) - m[c] * mean_p for c in range(3)]
    v = {}
    for i in range(3):
        for j in range(i, 3):
            v[i, j] = _box(g[..., i] * g[..., j], radius) - m[i] * m[j] + (eps if i == j else 0.0)
    a11, a12, a13, a22, a23, a33 = v[0, 0], v[0, 1], v[0, 2], v[1, 1], v[1, 2], v[2, 2]
    c11 = a22 * a33 - a23 * a23
    c12 = a13 * a23 - a12 * a33
    c13 = a12 * a23 - a13 * a22
    c22 = a11 * a33 - a13 * a13
    c23 = a12 * a13 - a11 * a23
    c33 = a11 * a22 - a12 * a12
    det = a11 * c11 + a12 * c12 + a13 * c13
    det = np.where(np.abs(det) < 1e-12, np.float32(1e-12), det)
    ax = (c11 * cov[0] + c12 * cov[1] + c13 * cov[2]) / det
    ay = (c12 * cov[0] + c22 * cov[1] + c23 * cov[2]) / det
    az = (c13 * cov[0] + c23 * cov[1] + c33 * cov[2]) / det
    b = mean_p - ax * m[0] - ay * m[1] - az * m[2]
    return [_box(ax, radius), _box(ay, radius), _box(az, radius), _box(b, radius)]


def coefficients_near(
    guide: np.ndarray, src: np.ndarray, radius: int, eps: float, near: np.ndarray, tile: int = 64
) -> list[np.ndarray]:
    """``coefficients``, computed only on the tiles of the grid where ``near`` is set (0 elsewhere).

    Why: the edge-band upsampling needs the coefficients along the person's outline, a few %
    of the grid, and on the whole 1 MP working grid they cost ~65 ms.  Runs of neighbouring
    tiles that hold a ``near`` pixel are computed as one block with a 2 * radius margin (the
    two box-filter passes), so inside a block the values equal the whole-grid ones up to
    float rounding.
    """
    h, w = src.shape[:2]
    out = [np.zeros((h, w), np.float32) for _ in range((guide.shape[2] if guide.ndim == 3 else 1) + 1)]
    ty, tx = -(-h // tile), -(-w // tile)
    padded = np.pad(near.astype(bool), ((0, ty * tile - h), (0, tx * tile - w)))
    hit = padded.reshape(ty, tile, tx, tile).any(axis=(1, 3))
    m = 2 * radius

    def tile_row(i: int) -> None:
        j = 0
        while j < tx:
            if not hit[i, j]:
                j += 1
                continue
            k = j
            while k < tx and hit[i, k]:
                k += 1
            y0, y1, x0, x1 = i * tile, min(h, (i + 1) * tile), j * tile, min(w, k * tile)
            Y0, Y1, X0, X1 = max(0, y0 - m), min(h, y1 + m), max(0, x0 - m), min(w, x1 + m)
            block = coefficients(guide[Y0:Y1, X0:X1], src[Y0:Y1, X0:X1], radius, eps)
            for o, c in zip(out, block, strict=True):
                o[y0:y1, x0:x1] = c[y0 - Y0 : y1 - Y0, x0 - X0 : x1 - X0]
            j = k

    # Tile rows write disjoint rows of ``out``; OpenCV and numpy release the GIL.
    with ThreadPoolExecutor(max(1, min(4, cv2.getNumThreads()))) as pool:
        list(pool.map(tile_row, range(ty)))
    return out


def apply(guide: np.ndarray, coef: list[np.ndarray]) -> np.ndarray:
    """q = sum_c a_c * guide_c + b (coefficients already at the guide's size)."""
    g = guide.astype(np.float32, copy=False)
    if g.ndim == 2:
        return coef[0] * g + coef[1]
    return coef[0] * g[..., 0] + coef[1] * g[..., 1] + coef[2] * g[..., 2] + coef[3]


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float, scale: int = 1) -> np.ndarray:
    """Guided filter of ``src`` (float32 HxW) by ``guide`` (HxW or HxWx3 in 0..1).

    Small ``eps`` follows the guide's edges closely, large ``eps`` smooths like a box filter.
    ``scale`` > 1 is the fast guided filter (He and Sun 2015): coefficients on a grid
    ``scale`` times smaller, upsampled, then applied to the full-resolution guide, so the
    box filtering costs 1/scale^2 while the edges stay at full resolution.
    """
    h, w = src.shape[:2]
    if scale <= 1:
        return apply(guide, coefficients(guide, src, radius, eps))
    size = (max(1, round(w / scale)), max(1, round(h / scale)))
    g_small = cv2.resize(guide, size, interpolation=cv2.INTER_AREA)
    p_small = cv2.resize(src, size, interpolation=cv2.INTER_AREA)
    coef = coefficients(g_small, p_small, max(1, round(radius / scale)), eps)
    coef = [cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in coef]
    return apply(guide, coef)
