"""Active contour ("snake") on BodyPix's rough outline: the project's origin idea.

Each outline point may slide along its normal by up to ``radius`` px; the position is
chosen by dynamic programming (Amini, Weymouth and Jain 1990) that trades image edge
strength along the normal against smoothness between neighbouring points and a pull
towards the starting outline.  Written with numpy/OpenCV rather than scikit-image's
``active_contour`` because that would add scikit-image (tens of MB) to the runtime, and
because the DP form finds the global optimum of its energy along the normals (no step
size, no iterations to tune), sampling only the band around the outline (cheap at 12 MP).
"""

from __future__ import annotations

import cv2
import numpy as np


def _normals(pts: np.ndarray) -> np.ndarray:
    """Unit normals of a closed polyline (N x 2, x/y), from the central-difference tangent."""
    t = np.roll(pts, -2, axis=0) - np.roll(pts, 2, axis=0)
    n = np.stack([t[:, 1], -t[:, 0]], axis=1).astype(np.float32)
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return n / np.maximum(norm, 1e-6)


def _dp_offsets(cost: np.ndarray, smooth: float) -> np.ndarray:
    """Viterbi along the chain: argmin sum cost[i, d_i] + smooth * (d_i - d_{i-1})^2.

    The chain is treated as open (the closing link is ignored); with hundreds of points the
    seam is invisible, and the closed form would cost one DP per start state.
    """
    n, s = cost.shape
    steps = np.arange(s)
    pair = smooth * (steps[:, None] - steps[None, :]) ** 2  # prev x cur
    acc = cost[0].copy()
    back = np.empty((n, s), np.int32)
    for i in range(1, n):
        total = acc[:, None] + pair
        back[i] = total.argmin(axis=0)
        acc = total[back[i], steps] + cost[i]
    out = np.empty(n, np.int32)
    out[-1] = int(acc.argmin())
    for i in range(n - 1, 0, -1):
        out[i - 1] = back[i, out[i]]
    return out


def snake_mask(
    rgb: np.ndarray,
    mask: np.ndarray,
    radius: int,
    spacing: int,
    smooth: float = 0.05,
    pull: float = 1.0,
    min_area: int = 64,
) -> np.ndarray:
    """Move the outline of ``mask`` (bool HxW) onto nearby colour edges; returns bool HxW.

    ``radius``: how far (px) a point may move; ``spacing``: px between outline points;
    ``smooth``: cost per squared step between neighbours (in units of the normalised edge
    strength); ``pull``: cost of moving the full radius away from the start.
    """
    h, w = mask.shape
    m8 = mask.astype(np.uint8)
    contours, hierarchy = cv2.findContours(m8, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return mask.copy()
    blur = cv2.GaussianBlur(rgb, (0, 0), 1.0).astype(np.float32)
    offsets = np.arange(-radius, radius + 1, dtype=np.float32)
    out = np.zeros((h, w), np.uint8)
    holes = []
    for ci, c in enumerate(contours):
        is_hole = hierarchy[0][ci][3] >= 0
        pts = c[:, 0, :].astype(np.float32)[::spacing]
        if cv2.contourArea(c) < min_area or len(pts) < 8:  # too small to move: kept as it is
            (holes if is_hole else []).append(c)
            if not is_hole:
                cv2.drawContours(out, [c], -1, 255, -1)
            continue
        nrm = _normals(pts)
        # Point the normals out of the region (into the background for outer outlines).
        probe = np.clip(np.rint(pts + 2 * nrm), [0, 0], [w - 1, h - 1]).astype(int)
        inside = m8[probe[:, 1], probe[:, 0]] > 0
        nrm[inside] *= -1
        # Sample colours along each normal at offsets -r-1 .. r+1 (one extra for differences).
        d = np.arange(-radius - 1, radius + 2, dtype=np.float32)
        xs = pts[:, 0, None] + nrm[:, 0, None] * d[None]
        ys = pts[:, 1, None] + nrm[:, 1, None] * d[None]
        samples = cv2.remap(
            blur,
            xs.astype(np.float32),
            ys.astype(np.float32),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        grad = np.linalg.norm(samples[:, 2:] - samples[:, :-2], axis=2)  # N x (2r+1)
        grad /= np.maximum(grad.max(axis=1, keepdims=True), 1e-3)
        cost = -grad + pull * np.abs(offsets)[None] / max(radius, 1)
        # The photo's frame is not an edge: points on it stay where they are.
        on_frame = (pts[:, 0] <= 1) | (pts[:, 1] <= 1) | (pts[:, 0] >= w - 2) | (pts[:, 1] >= h - 2)
        cost[on_frame] = 1e3
        cost[on_frame, radius] = 0.0
        best = _dp_offsets(cost.astype(np.float32), smooth)
        moved = pts + nrm * offsets[best][:, None]
        poly = np.rint(moved).astype(np.int32)[:, None, :]
        if is_hole:
            holes.append(poly)
        else:
            cv2.fillPoly(out, [poly], 255)
    # A moved outline may cross itself; fillPoly's even-odd rule would then punch holes into
    # the person.  Refill every outer outline solid, then cut out only the real holes.
    outer, _ = cv2.findContours(out, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, outer, -1, 255, -1)
    if holes:
        cv2.fillPoly(out, holes, 0)
    return out > 0
