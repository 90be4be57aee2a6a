"""MediaPipe Hands on onnxruntime: palm detector and 21-point hand-landmark model.

Follows MediaPipe's CPU hand graphs (``palm_detection_cpu.pbtxt``,
``palm_detection_detection_to_roi.pbtxt``, ``hand_landmark_cpu.pbtxt``) step by step:

* palm detector: a square RGB crop in [0, 1] resized to 192x192, 2016 SSD anchors
  (strides 8,16,16,16, two anchors per cell and layer, fixed size, offset 0.5), sigmoid
  scores >= 0.5, weighted non-maximum suppression at IoU 0.3;
* palm -> hand region: rotation so that the wrist (palm keypoint 0) -> middle-finger base
  (palm keypoint 2) vector points up, box scaled 2.6x, shifted half a box towards the
  fingers, made square;
* landmark model: that rotated square resampled to 224x224 in [0, 1]; 21 landmarks in
  crop pixels mapped back through the same rotation, plus hand presence and handedness.

The decoding is written with numpy because MediaPipe's calculators are C++ graph nodes
with no Python package that still ships them (the PyPI ``mediapipe`` wheel dropped the
legacy solutions); the arithmetic is a few lines each.  Everything works in image pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..runtime.sessions import RuntimeOptions, session, sigmoid
from ..runtime.store import AUX_MODELS, model_path

PALM_SIZE = 192
LANDMARK_SIZE = 224
PALM_SCORE_THRESHOLD = 0.5
PALM_NMS_IOU = 0.3
# palm_detection_detection_to_roi.pbtxt
PALM_ROI_SCALE = 2.6
PALM_ROI_SHIFT_Y = -0.5
# hand_landmark_landmarks_to_roi.pbtxt (a second, tighter pass from the landmarks)
LANDMARK_ROI_SCALE = 2.0
LANDMARK_ROI_SHIFT_Y = -0.1
LANDMARK_ROI_IDS = (0, 1, 2, 3, 5, 6, 9, 10, 13, 14, 17, 18)
# The hand models are small (192/224 px inputs): a second onnxruntime thread saves little
# and its spin-waiting costs CPU.  Measured on the 2-core dev machine under load: one
# thread ran the finger stage in half the wall time and half the CPU time of two.
# An explicit RuntimeOptions.threads (or $BODYPIX_THREADS) still wins.
HAND_THREADS = 1


@dataclass(frozen=True)
class Palm:
    """One palm detection in image pixels: box (x0, y0, x1, y1), 7 keypoints, score."""

    box: tuple[float, float, float, float]
    keypoints: np.ndarray  # 7x2
    score: float


@dataclass(frozen=True)
class HandRegion:
    """A rotated square in image pixels: centre, side, rotation (radians, MediaPipe's sign)."""

    cx: float
    cy: float
    size: float
    rotation: float

    def to_image(self, n: int) -> np.ndarray:
        """2x3 affine mapping n x n crop pixels to image pixels."""
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        k = self.size / n
        # p = centre + R @ ((u/n - 0.5) * size)
        a = np.array([[c * k, -s * k, 0.0], [s * k, c * k, 0.0]])
        a[:, 2] = [self.cx, self.cy] - a[:, :2] @ [n / 2, n / 2]
        return a


@dataclass(frozen=True)
class Hand:
    """21 landmarks (x, y in image pixels, z relative), presence, handedness, the region used."""

    landmarks: np.ndarray  # 21x3
    presence: float
    handedness: float  # MediaPipe's "right hand" probability (for a mirrored, selfie image)
    region: HandRegion
    palm_score: float

    @property
    def size(self) -> float:
        """Wrist to middle-finger base, the hand's scale in pixels."""
        return float(np.hypot(*(self.landmarks[9, :2] - self.landmarks[0, :2])))


def palm_anchors() -> np.ndarray:
    """2016x2 anchor centres (x, y) in [0, 1], in the order the model emits them.

    SsdAnchorsCalculator with fixed_anchor_size: layers with equal stride are merged, and
    each cell gets 2 anchors per layer (aspect ratio 1 plus the interpolated scale), so the
    stride-8 layer has 2 per cell and the three stride-16 layers 6 per cell.
    """
    out = []
    for stride, per_cell in ((8, 2), (16, 6)):
        n = math.ceil(PALM_SIZE / stride)
        ys, xs = np.mgrid[0:n, 0:n]
        centres = np.stack([(xs + 0.5) / n, (ys + 0.5) / n], axis=-1).reshape(-1, 1, 2)
        out.append(np.repeat(centres, per_cell, axis=1).reshape(-1, 2))
    return np.concatenate(out).astype(np.float32)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(
    boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou: float = PALM_NMS_IOU
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's WEIGHTED non-max suppression: each cluster is averaged by score.

    Returns (box, keypoints, score) per cluster, the score being the best member's.
    """
    order = np.argsort(-scores)
    remaining = order
    out = []
    while len(remaining):
        top = remaining[0]
        overlap = _iou(boxes[top], boxes[remaining])
        members = remaining[overlap > iou]
        if len(members) == 0:
            members = remaining[:1]
        w = scores[members][:, None]
        box = (boxes[members] * w).sum(0) / w.sum()
        kps = (keypoints[members] * w[:, :, None]).sum(0) / w.sum()
        out.append((box, kps, float(scores[top])))
        remaining = remaining[overlap <= iou]
        remaining = remaining[remaining != top]
    return out


class HandModels:
    """The palm and landmark sessions for one runtime; cheap to create (sessions are cached)."""

    def __init__(self, runtime: RuntimeOptions | None = None, full: bool = True):
        runtime = runtime or RuntimeOptions()
        kind = "full" if full else "lite"

        def load(name: str) -> object:
            path = model_path(AUX_MODELS[name], runtime.models)
            return session(path, runtime.force_cpu, runtime.threads or HAND_THREADS)

        self.palm = load(f"palm_detection_{kind}")
        self.landmark = load(f"hand_landmark_{kind}")
        # the first, coarse landmark pass only places the second one's crop: lite is enough
        self.landmark_lite = load("hand_landmark_lite")

    def detect_palms(
        self, rgb: np.ndarray, square: tuple[float, float, float], threshold: float = PALM_SCORE_THRESHOLD
    ) -> list[Palm]:
        """Palms inside the axis-aligned square (x0, y0, side) of ``rgb``, in image pixels.

        Parts of the square outside the photo are black, as MediaPipe's letterbox is.
        """
        x0, y0, side = square
        k = side / PALM_SIZE
        to_image = np.array([[k, 0.0, x0], [0.0, k, y0]])
        crop = _warp(rgb, to_image, PALM_SIZE)
        x = (crop.astype(np.float32) / 255.0)[None]
        raw, logits = self.palm.run(None, {self.palm.get_inputs()[0].name: x})
        raw, scores = raw[0], sigmoid(np.clip(logits[0, :, 0], -100, 100))
        keep = scores >= threshold
        if not keep.any():
            return []
        anchors = palm_anchors()[keep]
        raw, scores = raw[keep] / PALM_SIZE, scores[keep]
        cx = raw[:, 0] + anchors[:, 0]
        cy = raw[:, 1] + anchors[:, 1]
        w, h = raw[:, 2], raw[:, 3]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        kps = raw[:, 4:18].reshape(-1, 7, 2) + anchors[:, None, :]
        palms = []
        for box, kp, score in weighted_nms(boxes, kps, scores):
            box_px = box * side + [x0, y0, x0, y0]
            kp_px = kp * side + [x0, y0]
            palms.append(Palm(tuple(float(v) for v in box_px), kp_px, score))
        return palms

    def landmarks(self, rgb: np.ndarray, region: HandRegion, lite: bool = False) -> Hand:
        """Run the landmark model on ``region``; landmarks come back in image pixels."""
        sess = self.landmark_lite if lite else self.landmark
        to_image = region.to_image(LANDMARK_SIZE)
        crop = _warp(rgb, to_image, LANDMARK_SIZE)
        x = (crop.astype(np.float32) / 255.0)[None]
        names = [o.name for o in sess.get_outputs()]
        outs = dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x}), strict=True))
        lm = outs["Identity"].reshape(21, 3).astype(np.float64)
        xy = lm[:, :2] @ to_image[:, :2].T + to_image[:, 2]
        z = lm[:, 2] * region.size / LANDMARK_SIZE
        return Hand(
            landmarks=np.column_stack([xy, z]),
            presence=float(outs["Identity_1"].ravel()[0]),
            handedness=float(outs["Identity_2"].ravel()[0]),
            region=region,
            palm_score=0.0,
        )


def _warp(rgb: np.ndarray, to_image: np.ndarray, n: int) -> np.ndarray:
    """n x n crop where crop pixel (u, v) shows image point to_image @ (u, v, 1); black outside.

    Shrinking by a lot aliases with plain bilinear sampling, so the photo is first
    pre-blurred by an area resize when the crop is much smaller than the region.
    """
    scale = float(np.hypot(*to_image[:, 0]))
    if scale > 2.0:
        f = 1.0 / (scale / 1.5)
        small = cv2.resize(rgb, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        sy, sx = rgb.shape[0] / small.shape[0], rgb.shape[1] / small.shape[1]
        to_small = np.diag([1 / sx, 1 / sy]) @ to_image
        # pixel centres: image x = sx * (small x + 0.5) - 0.5
        to_small[:, 2] = (to_image[:, 2] + 0.5) / [sx, sy] - 0.5
        rgb, to_image = small, to_small
    return cv2.warpAffine(
        rgb,
        to_image,
        (n, n),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


def _rotation(p0: np.ndarray, p1: np.ndarray) -> float:
    """DetectionsToRectsCalculator::ComputeRotation with target angle 90 degrees."""
    angle = math.pi / 2 - math.atan2(-(p1[1] - p0[1]), p1[0] - p0[0])
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def _transform(
    cx: float, cy: float, w: float, h: float, rotation: float, scale: float, shift_y: float
) -> HandRegion:
    """RectTransformationCalculator in pixels: shift along the rotated y axis, square_long, scale."""
    c, s = math.cos(rotation), math.sin(rotation)
    dx, dy = -h * shift_y * s, h * shift_y * c
    return HandRegion(cx + dx, cy + dy, max(w, h) * scale, rotation)


def palm_region(palm: Palm) -> HandRegion:
    """Hand region for the landmark model from a palm detection (palm_detection_detection_to_roi)."""
    x0, y0, x1, y1 = palm.box
    rot = _rotation(palm.keypoints[0], palm.keypoints[2])
    return _transform((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, rot, PALM_ROI_SCALE, PALM_ROI_SHIFT_Y)


def landmark_region(landmarks: np.ndarray) -> HandRegion:
    """Tighter hand region from the landmarks (hand_landmark_landmarks_to_roi): rotation wrist ->
    middle base, the rotated bounding box of the palm-side landmarks, scaled 2x."""
    pts = landmarks[list(LANDMARK_ROI_IDS), :2]
    rot = _rotation(landmarks[0, :2], landmarks[9, :2])
    c, s = math.cos(rot), math.sin(rot)
    # coordinates in the frame rotated by -rot (where the hand points up)
    r = np.array([[c, s], [-s, c]])
    local = pts @ r.T
    lo, hi = local.min(0), local.max(0)
    centre = r.T @ ((lo + hi) / 2)
    w, h = hi - lo
    return _transform(
        float(centre[0]), float(centre[1]), float(w), float(h), rot, LANDMARK_ROI_SCALE, LANDMARK_ROI_SHIFT_Y
    )
