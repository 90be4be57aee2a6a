"""What ``segment`` returns, and the names body-pix gives to parts and keypoints."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PART_NAMES = (
    "left_face", "right_face", "left_upper_arm_front", "left_upper_arm_back",
    "right_upper_arm_front", "right_upper_arm_back", "left_lower_arm_front",
    "left_lower_arm_back", "right_lower_arm_front", "right_lower_arm_back",
    "left_hand", "right_hand", "torso_front", "torso_back",
    "left_upper_leg_front", "left_upper_leg_back", "right_upper_leg_front",
    "right_upper_leg_back", "left_lower_leg_front", "left_lower_leg_back",
    "right_lower_leg_front", "right_lower_leg_back", "left_feet", "right_feet",
)  # fmt: skip
BACKGROUND = 255

# Groups users pick in the GIMP dialog ("Select Body Part(s)").
PART_GROUPS = {
    "face": ("left_face", "right_face"),
    "hands": ("left_hand", "right_hand"),
    "arms": tuple(n for n in PART_NAMES if "_arm_" in n),
    "legs": tuple(n for n in PART_NAMES if "_leg_" in n),
    "feet": ("left_feet", "right_feet"),
    "torso": ("torso_front", "torso_back"),
    "person": PART_NAMES,
}
# Above and below the waist (GIMP's Select > Body Part > Upper Body / Lower Body).
PART_GROUPS["upper_body"] = PART_GROUPS["face"] + PART_GROUPS["arms"] + PART_GROUPS["hands"] + PART_GROUPS["torso"]
PART_GROUPS["lower_body"] = PART_GROUPS["legs"] + PART_GROUPS["feet"]

KEYPOINT_NAMES = (
    "nose", "leftEye", "rightEye", "leftEar", "rightEar", "leftShoulder",
    "rightShoulder", "leftElbow", "rightElbow", "leftWrist", "rightWrist",
    "leftHip", "rightHip", "leftKnee", "rightKnee", "leftAnkle", "rightAnkle",
)  # fmt: skip

# The 16 body-pix POSE_CHAIN segments (parent, child), used to draw skeletons.
POSE_CHAIN = (
    ("nose", "leftEye"), ("leftEye", "leftEar"), ("nose", "rightEye"),
    ("rightEye", "rightEar"), ("nose", "leftShoulder"),
    ("leftShoulder", "leftElbow"), ("leftElbow", "leftWrist"),
    ("leftShoulder", "leftHip"), ("leftHip", "leftKnee"),
    ("leftKnee", "leftAnkle"), ("nose", "rightShoulder"),
    ("rightShoulder", "rightElbow"), ("rightElbow", "rightWrist"),
    ("rightShoulder", "rightHip"), ("rightHip", "rightKnee"),
    ("rightKnee", "rightAnkle"),
)  # fmt: skip


# progress(fraction 0..1, message): how long calls report; raising from it cancels the work.
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class Keypoint:
    part: str
    x: float
    y: float
    score: float


@dataclass(frozen=True)
class Pose:
    score: float
    keypoints: list[Keypoint]

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 4),
            "keypoints": [
                {"part": k.part, "x": round(k.x, 2), "y": round(k.y, 2), "score": round(k.score, 4)}
                for k in self.keypoints
            ],
        }


@dataclass(frozen=True, eq=False)
class Person:
    """One person of a group photo (``segment`` with ``Settings(multi_person=True)``).

    index:  1-based; people are numbered left to right (by the x of their mask's centroid).
    bbox:   (x0, y0, x1, y1) of the person's pixels, inclusive-exclusive.
    pixels: pixel count; parts: part names present; pose: the body-pix pose it was built from.
    The masks are views of the photo-wide arrays, made on demand (a group photo at 24 MP
    would otherwise hold one full-size array per person).
    """

    index: int
    bbox: tuple[int, int, int, int]
    pixels: int
    pose: Pose
    parts: list[str]
    instance_map: np.ndarray = field(repr=False)  # photo-wide: 0 = nobody, k = Person k
    person_mask: np.ndarray = field(repr=False)  # photo-wide final person mask
    all_parts: np.ndarray = field(repr=False)  # photo-wide part map

    @property
    def mask(self) -> np.ndarray:
        """uint8 HxW: the final person mask (0/255, or soft alpha) on this person's pixels, 0 elsewhere."""
        return np.where(self.instance_map == self.index, self.person_mask, np.uint8(0))

    @property
    def part_map(self) -> np.ndarray:
        """uint8 HxW: part ids 0..23 on this person's pixels, 255 elsewhere."""
        return np.where(self.instance_map == self.index, self.all_parts, np.uint8(BACKGROUND))

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "bbox": list(self.bbox), "pixels": self.pixels,
                "parts": list(self.parts), **self.pose.to_dict()}


@dataclass
class Result:
    """Full-resolution outputs of one photo.

    person_mask: uint8 HxW, 0/255 (0..255 alpha when soft edges were asked for).
    person_prob: float32 HxW, BodyPix's own person probability before any refinement
                 (a property: given as a function, it is computed on first use, so a Result
                 does not hold 4 bytes a pixel nobody reads).
    part_map:    uint8 HxW, part id 0..23 inside the person, 255 elsewhere (also on an object
                 the person holds that ``Settings.include_held`` keeps in the mask).  Also a
                 property that may be given as a function: ``segment``'s early answer hands
                 it out before the map is made, so a caller that needs only the mask (Select
                 Person in GIMP) does not wait for it.
    """

    person_mask: np.ndarray
    _person_prob: np.ndarray | Callable[[], np.ndarray] = field(repr=False)
    _part_map: np.ndarray | Callable[[], np.ndarray] = field(repr=False)
    poses: list[Pose] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    # With Settings(multi_person=True): people left to right, and the map of who is where
    # (uint8 HxW, 0 = nobody, k = persons[k - 1]).  Empty / None otherwise.
    persons: list[Person] = field(default_factory=list)
    instance_map: np.ndarray | None = None

    @property
    def person_prob(self) -> np.ndarray:
        if callable(self._person_prob):
            self._person_prob = self._person_prob()
        return self._person_prob

    @property
    def part_map(self) -> np.ndarray:
        if callable(self._part_map):
            self._part_map = self._part_map()
        return self._part_map

    @property
    def found_person(self) -> bool:
        return bool((self.person_mask >= 128).any())

    def part_mask(self, parts: str | int | list[str | int] | tuple[str | int, ...]) -> np.ndarray:
        """0/255 mask of one part, a list of parts or a group name from PART_GROUPS."""
        ids = part_ids(parts)
        return np.where(np.isin(self.part_map, ids), np.uint8(255), np.uint8(0))

    def part_stats(self) -> dict[str, dict[str, Any]]:
        """Per present part: pixel count and bounding box [x0, y0, x1, y1] (inclusive-exclusive)."""
        counts = np.bincount(self.part_map.ravel(), minlength=256)
        stats: dict[str, dict[str, Any]] = {}
        for pid in np.nonzero(counts[: len(PART_NAMES)])[0]:
            rows = np.nonzero((self.part_map == pid).any(axis=1))[0]
            cols = np.nonzero((self.part_map == pid).any(axis=0))[0]
            stats[PART_NAMES[pid]] = {
                "id": int(pid),
                "pixels": int(counts[pid]),
                "bbox": [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1],
            }
        return stats

    def summary(self) -> dict[str, Any]:
        """JSON-ready description: parts with pixel counts and boxes, keypoints, timings."""
        h, w = self.person_mask.shape
        person = self.person_mask >= 128
        return {
            "width": w,
            "height": h,
            "person_found": bool(person.any()),
            "message": None if person.any() else "no person found",
            "person_pixels": int(person.sum()),
            "parts": self.part_stats(),
            "poses": [p.to_dict() for p in self.poses],
            **({"persons": [p.to_dict() for p in self.persons]} if self.instance_map is not None else {}),
            "timings_ms": {k: round(v, 1) for k, v in self.timings.items()},
            **({"info": self.info} if self.info else {}),
        }


def part_ids(parts: str | int | list[str | int] | tuple[str | int, ...]) -> list[int]:
    """Resolve part names, ids and group names to ids; unknown names raise with the allowed list."""
    items = [parts] if isinstance(parts, (str, int)) else list(parts)
    ids: list[int] = []
    for item in items:
        if isinstance(item, int):
            if not 0 <= item < len(PART_NAMES):
                raise ValueError(f"Invalid part id {item}. Should be in range [0, {len(PART_NAMES) - 1}]")
            ids.append(item)
        elif item in PART_GROUPS:
            ids.extend(PART_NAMES.index(n) for n in PART_GROUPS[item])
        elif item in PART_NAMES:
            ids.append(PART_NAMES.index(item))
        else:
            raise ValueError(
                f"Unknown part {item!r}. Should be one of {', '.join(PART_NAMES)} "
                f"or a group: {', '.join(PART_GROUPS)}"
            )
    return ids
