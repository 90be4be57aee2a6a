"""From raw heads to full-resolution maps and poses, as body-pix decodes them.

``person_probability`` and ``part_logits_argmax`` follow ``util.ts``
``scaleAndCropToInputTensorShape``: resize the grid to the network input with
alignCorners, (sigmoid for the person head), then ``cropAndResize`` the padding away
straight to the photo size.  Full-size work is done in row strips, so a 24 MP photo needs
a few tens of MB of temporaries, not 24 channels x 24 MP of floats.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..runtime.sessions import sigmoid
from .model import BodyPixOutput, Geometry
from .resize import Axis, apply_cols, apply_rows, axis_matrix, crop_axis, resize_axis, strips

STRIP_PIXELS = 1 << 19  # output pixels per strip for multi-channel work


def _crop_axes(geo: Geometry, out_h: int, out_w: int) -> tuple[Axis, Axis]:
    """cropAndResize sampling from the network-input grid to the photo (removePaddingAndResizeBack)."""
    def box(size: int, before: int, after: int) -> tuple[float, float]:
        span = size + before + after - 1.0
        if span <= 0:  # a 1-pixel photo: body-pix divides by zero here; sample the centre
            return 0.0, 1.0
        return before / span, (before + size - 1.0) / span

    rows = crop_axis(geo.input_height, out_h, *box(geo.work_height, geo.pad_top, geo.pad_bottom))
    cols = crop_axis(geo.input_width, out_w, *box(geo.work_width, geo.pad_left, geo.pad_right))
    return rows, cols


def to_input_grid(head: np.ndarray, geo: Geometry) -> np.ndarray:
    """resizeBilinear(head, [inputH, inputW], alignCorners=true)."""
    gh, gw = head.shape[:2]
    rows = resize_axis(gh, geo.input_height, align_corners=True)
    cols = resize_axis(gw, geo.input_width, align_corners=True)
    return apply_cols(apply_rows(head, rows), cols)


def person_probability(out: BodyPixOutput, size: tuple[int, int] | None = None) -> np.ndarray:
    """Person probability (float32, HxW, 0..1) at ``size`` (default: the photo's size).

    cropAndResize samples the input grid at positions affine in the output index along
    each axis, so one ``cv2.warpAffine`` (float32 bilinear, no fixed-point rounding of the
    values) does it; it matches the separable gather to 1e-5 and is faster at 24 MP.
    """
    geo = out.geometry
    out_h, out_w = size or (geo.height, geo.width)
    grid = sigmoid(to_input_grid(out.segments[..., 0], geo)).astype(np.float32)
    rows, cols = _crop_axes(geo, out_h, out_w)
    (sx, ox), (sy, oy) = _affine(cols), _affine(rows)
    m = np.array([[sx, 0.0, ox], [0.0, sy, oy]], np.float64)
    return cv2.warpAffine(grid, m, (out_w, out_h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def _affine(ax: Axis) -> tuple[float, float]:
    """(scale, offset) of an Axis whose sample positions are affine in the output index."""
    pos = ax.lo.astype(np.float64) + ax.w
    if len(pos) < 2:
        return 0.0, float(pos[0])
    return float((pos[-1] - pos[0]) / (len(pos) - 1)), float(pos[0])


def _composite(head_size: int, input_size: int, crop: Axis) -> np.ndarray:
    """Matrix of resize(alignCorners) followed by cropAndResize along one axis (exact composition).

    Built by blending rows of the small resize matrix rather than by a matrix product: BLAS
    threads on a busy 2-core machine made a product of this size cost 50 ms instead of 0.1.
    """
    resize = axis_matrix(resize_axis(head_size, input_size, True), head_size)
    w = crop.w.astype(np.float64)[:, None]
    m = resize[crop.lo] * (1.0 - w) + resize[crop.hi] * w
    if crop.valid is not None:
        m[~crop.valid] = 0.0
    return m


def part_argmax(
    out: BodyPixOutput, size: tuple[int, int] | None = None, where: np.ndarray | None = None
) -> np.ndarray:
    """Most likely part id (uint8, 0..23) at every pixel of ``where`` (default: all), 255 elsewhere.

    ``where``: bool, or uint8 where non-zero counts (a 0/255 mask).  body-pix takes the argmax
    of the resized part logits and then clips it by the person mask; computing it for any
    pixel (not only BodyPix's own mask) lets a refined, grown person mask find a part for
    every pixel it adds.

    Why not resample all 24 channels to full size: that is 24 x H x W floats (2.3 GB at
    24 MP).  Every output value is a convex combination of the grid values in a small
    window (both resamplings are linear with non-negative weights), and a convex
    combination of vectors that share their argmax keeps it.  So pixels whose window has
    one grid label take it directly; only the rest (part borders) are computed exactly.

    A photo shrunk to a working size (``Geometry.capped``) at least twice that size gets the
    labels of its working grid, scaled up by nearest neighbour: part borders inside the
    person sit within half a working pixel of the exact ones (the outline is the person
    mask's, which clips the part map), at a fraction of the cost at 24 MP.  The full-size
    passes are uint8 OpenCV operations (threaded); the working pixels labelled are the ones
    ``where``'s pixels scale up from (a nearest-neighbour shrink of ``where``, grown by a pixel),
    and the few of ``where`` still without a label (thin lines between the shrink's samples)
    get their working pixel's label as points, never as full-size arrays.  Labels computed
    once are kept in ``out.part_cache`` (``_labels``): the pipeline's second call (the pixels
    later stages added) only computes the working pixels the first did not.
    """
    geo = out.geometry
    out_h, out_w = size or (geo.height, geo.width)
    work = (geo.work_height, geo.work_width)
    if out_h * out_w > 2 * work[0] * work[1]:
        small_where = None
        if where is not None:
            where = where.view(np.uint8) if where.dtype == np.bool_ else where
            small_where = cv2.resize(where, work[::-1], interpolation=cv2.INTER_NEAREST)
            small_where = cv2.dilate(small_where, np.ones((3, 3), np.uint8)) > 0
        parts = scaled_labels(out, work, small_where, (out_h, out_w))
        left = cv2.threshold(parts, 254, 255, cv2.THRESH_BINARY)[1]  # parts == 255
        if where is not None:
            outside = cv2.threshold(where, 0, 255, cv2.THRESH_BINARY_INV)[1]  # not in ``where``
            cv2.bitwise_or(parts, outside, dst=parts)  # 255 outside ``where``
            cv2.bitwise_and(left, cv2.bitwise_not(outside, dst=outside), dst=left)
            del outside
        if cv2.countNonZero(left):
            iy, ix = _nonzero(left)
            # the working pixel nearest-neighbour scaling takes each from (cv::resize INTER_NEAREST)
            sy = np.minimum(np.floor(iy * (1.0 / (out_h / work[0]))).astype(np.intp), work[0] - 1)
            sx = np.minimum(np.floor(ix * (1.0 / (out_w / work[1]))).astype(np.intp), work[1] - 1)
            parts[iy, ix] = _part_argmax_points(out, work, sy, sx)
        return parts
    if where is not None and where.dtype != np.bool_:
        where = where != 0
    return _labels(out, (out_h, out_w), where)


def scaled_labels(
    out: BodyPixOutput, grid: tuple[int, int], where: np.ndarray | None, size: tuple[int, int]
) -> np.ndarray:
    """Exact part labels on a ``grid`` (``where``: bool on it, None: everywhere; 255 elsewhere),
    scaled up to ``size`` by nearest neighbour (uint8)."""
    labels = _labels(out, grid, where)
    return cv2.resize(labels, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def labels_at(out: BodyPixOutput, size: tuple[int, int], iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
    """``part_argmax(out, size)``'s labels at the pixels (``iy``, ``ix``) only (uint8, one per point).

    For a caller that needs a few pixels of the part map (a sample of it) before, or instead
    of, the whole map: a large photo's pixel gets its working pixel's label (the one
    ``part_argmax`` scales up to it), a small photo's its own, each computed as ``_labels``
    computes it, and kept in ``out.part_cache`` for the whole map.
    """
    geo = out.geometry
    out_h, out_w = size
    grid = (geo.work_height, geo.work_width)
    if out_h * out_w > 2 * grid[0] * grid[1]:  # as part_argmax: the working grid, nearest neighbour
        iy = np.minimum(np.floor(iy * (1.0 / (out_h / grid[0]))).astype(np.intp), grid[0] - 1)
        ix = np.minimum(np.floor(ix * (1.0 / (out_w / grid[1]))).astype(np.intp), grid[1] - 1)
    else:
        grid = (out_h, out_w)
    known = _known(out, grid)
    found = known[iy, ix]
    todo = found == 255
    if todo.any():  # points only: a whole-grid pass of ``_labels`` cost more than the points
        ty, tx = iy[todo], ix[todo]
        known[ty, tx] = _part_argmax_points(out, grid, ty, tx)
        found = known[iy, ix]
    return found


def _nonzero(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the few non-zero pixels of a large uint8 array.

    The rows holding any come from numpy's row max (< 1 ms at 12 MP); ``cv2.findNonZero``
    then reads those rows only (over the whole photo it took ~15 ms).
    """
    rows = np.flatnonzero(a.max(axis=1))
    xy = cv2.findNonZero(np.ascontiguousarray(a[rows])).reshape(-1, 2)
    return rows[xy[:, 1]].astype(np.intp), xy[:, 0].astype(np.intp)


def _known(out: BodyPixOutput, size: tuple[int, int]) -> np.ndarray:
    """The labels at ``size`` kept in ``out.part_cache`` (255 = not computed yet), started with
    the pixels whose window has one grid label (``part_argmax``)."""
    known = out.part_cache.get(("labels", *size))
    if known is None:
        ylo, _, xlo, _, uniform = _windows(out, size)
        known = out.part_cache[("labels", *size)] = uniform[ylo[:, None], xlo[None, :]]
    return known


def _labels(out: BodyPixOutput, size: tuple[int, int], where: np.ndarray | None) -> np.ndarray:
    """Exact part labels at ``size`` on ``where`` (bool; None: everywhere), 255 elsewhere.

    The labels are kept in ``out.part_cache`` (255 = not computed yet): a pixel's label does not
    depend on which other pixels are asked for, so each is computed once per ``out``, although
    the pipeline asks twice (BodyPix's mask, then what the later stages added).
    """
    known = _known(out, size)
    todo = known == 255
    if where is not None:
        todo &= where
    iy, ix = np.nonzero(todo)
    if len(iy):
        known[iy, ix] = _part_argmax_points(out, size, iy, ix)
    if where is None:
        return known.copy()
    return np.where(where, known, np.uint8(255))


def _windows(out: BodyPixOutput, size: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """(ylo, yw, xlo, xw, uniform): each output row's / column's grid window and weights
    (``_support`` of the composite resampling), and the grid label where a window is one label.
    Kept in ``out.part_cache``: at the photo's size they take a few ms to build."""
    cached = out.part_cache.get(("windows", *size))
    if cached is not None:
        return cached
    geo = out.geometry
    gh, gw = out.part_heatmaps.shape[:2]
    rows, cols = _crop_axes(geo, *size)
    ylo, yw = _support(_composite(gh, geo.input_height, rows))
    xlo, xw = _support(_composite(gw, geo.input_width, cols))
    grid_label = out.part_heatmaps.argmax(axis=-1).astype(np.uint8)
    windows = ylo, yw, xlo, xw, _uniform_windows(grid_label, max(yw.shape[1], xw.shape[1]))
    out.part_cache[("windows", *size)] = windows
    return windows


def _part_argmax_points(out: BodyPixOutput, size: tuple[int, int], iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
    """The part label at ``size`` of each pixel (iy, ix), exact up to float rounding, no full-size array.

    A pixel whose window holds one grid label takes it; the others blend the logits of their
    window's grid rows (only the rows in use), then the columns, and take the argmax.  Each
    pixel's arithmetic is the same whatever the other pixels, so its label is the same, bit
    for bit, however the pixels are grouped into calls.
    """
    logits = out.part_heatmaps
    gh, gw, nc = logits.shape
    ylo, yw, xlo, xw, uniform = _windows(out, size)
    labels = uniform[ylo[iy], xlo[ix]]
    todo = np.flatnonzero(labels == 255)
    if not len(todo):
        return labels
    ty, tx = iy[todo], ix[todo]
    need = np.unique(ty)  # the rows blended, only those in use
    t = np.zeros((len(need), gw, nc), np.float32)
    for s in range(yw.shape[1]):
        t += yw[need, s, None, None] * logits[np.minimum(ylo[need] + s, gh - 1)]
    row = np.searchsorted(need, ty)
    step = max(1, STRIP_PIXELS // nc)
    for a, b in strips(len(todo), step):
        jy, jx = row[a:b], tx[a:b]
        acc = np.zeros((b - a, nc), np.float32)
        for s in range(xw.shape[1]):
            acc += xw[jx, s, None] * t[jy, np.minimum(xlo[jx] + s, gw - 1)]
        labels[todo[a:b]] = acc.argmax(axis=-1)
    return labels


def _support(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First non-zero column of each row and the row's weights from there (padded to equal width)."""
    nz = m > 1e-12
    lo = nz.argmax(axis=1)
    hi = m.shape[1] - 1 - nz[:, ::-1].argmax(axis=1)
    width = int((hi - lo).max()) + 1 if len(lo) else 1
    idx = np.minimum(lo[:, None] + np.arange(width)[None, :], m.shape[1] - 1)
    w = np.take_along_axis(m, idx, axis=1)
    w[lo[:, None] + np.arange(width)[None, :] > m.shape[1] - 1] = 0.0
    return lo, w.astype(np.float32)


def _uniform_windows(label: np.ndarray, k: int) -> np.ndarray:
    """label[y, x] where label is constant on the k x k window starting at (y, x), else 255."""
    out = label.copy()
    same = np.ones(label.shape, bool)
    h, w = label.shape
    for dy in range(k):
        for dx in range(k):
            shifted = label[np.minimum(np.arange(h) + dy, h - 1)][:, np.minimum(np.arange(w) + dx, w - 1)]
            same &= shifted == label
    out[~same] = 255
    return out


def mask_parts(parts: np.ndarray, person_mask: np.ndarray) -> np.ndarray:
    """Part map restricted to the person (255 = background); soft masks count from 128.

    uint8 OpenCV passes (255 | id is 255, 0 | id is id): no bool or int64 temporaries.  (Thresholds,
    not ``cv2.compare`` with a number: OpenCV takes a 1x1 to 4x1 image for a scalar.)
    """
    parts = np.ascontiguousarray(parts, dtype=np.uint8)
    person_mask = np.ascontiguousarray(person_mask, dtype=np.uint8)
    return cv2.bitwise_or(parts, cv2.threshold(person_mask, 127, 255, cv2.THRESH_BINARY_INV)[1])


def grid_to_work(geo: Geometry, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map network-input pixel coordinates to working-image pixels (body-pix ``scaleAndFlipPoses``)."""
    scale_y = (geo.work_height + geo.pad_top + geo.pad_bottom) / geo.input_height
    scale_x = (geo.work_width + geo.pad_left + geo.pad_right) / geo.input_width
    return y * scale_y - geo.pad_top, x * scale_x - geo.pad_left


def grid_to_image(geo: Geometry, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map network-input pixel coordinates to photo pixels (``grid_to_work``, then the work -> photo scale)."""
    wy, wx = grid_to_work(geo, y, x)
    return wy * (geo.height / geo.work_height), wx * (geo.width / geo.work_width)
