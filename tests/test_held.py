"""Held objects (refine/held.py): the astronaut's helmet wholly in the person mask or wholly out,
never torn, and never painted as a body part; the setting through Settings, the CLI and the worker.

The helmet's region is a polygon drawn by hand on samples/astronaut.jpg (512 x 512, skimage's
astronaut): points on the helmet's outline read off a 3x zoom of the photo with a 20 px grid,
moved about 8 px inwards, and checked by eye over the photo.  It comes from the photo, not from
the code under test.  Before the held stage the product mask covered 56 % of it and BodyPix
painted 41 % of it as face.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from bodypix_gimp import PART_GROUPS, Settings, segment
from bodypix_gimp.cli.segment import add_settings_arguments, settings_from_args
from bodypix_gimp.errors import ConfigError
from bodypix_gimp.result import part_ids
from bodypix_gimp.worker.operations import build_settings
from conftest import SAMPLE, load
from PIL import Image

# (x, y) in photo pixels, clockwise from the helmet's lower left; the photo's bottom edge cuts it.
HELMET = [(290, 511), (291, 470), (297, 435), (309, 408), (327, 385), (350, 368), (377, 357), (405, 352),
          (432, 355), (455, 365), (472, 381), (484, 403), (491, 430), (494, 460), (494, 511)]  # fmt: skip
# Her own face: a box around nose and eyes (read off the photo), which must stay face.
FACE_BOX = (190, 80, 70, 80)  # x, y, w, h
FACE_AND_HANDS = part_ids(list(PART_GROUPS["face"] + PART_GROUPS["hands"]))


@pytest.fixture(scope="module")
def helmet() -> np.ndarray:
    region = np.zeros((512, 512), np.uint8)
    cv2.fillPoly(region, [np.array(HELMET, np.int32)], 1)
    return region > 0


@pytest.fixture(scope="module")
def results(astronaut):
    return {held: segment(astronaut, Settings.product(include_held=held)) for held in (True, False)}


def share_in(mask: np.ndarray, region: np.ndarray) -> float:
    return float((mask[region] >= 128).mean())


def test_the_product_default_includes_what_people_hold():
    assert Settings.product().include_held is True
    assert Settings().include_held is None  # body-pix's own pipeline does not judge objects


def test_helmet_wholly_in_with_the_setting_on(results, helmet):
    assert share_in(results[True].person_mask, helmet) >= 0.98


def test_helmet_wholly_out_with_the_setting_off(results, helmet):
    assert share_in(results[False].person_mask, helmet) <= 0.02


def test_the_helmet_is_not_painted_as_face_or_hand_and_her_face_still_is(results, helmet):
    x, y, w, h = FACE_BOX
    for res in results.values():
        parts = res.part_map
        assert np.isin(parts[helmet], FACE_AND_HANDS).mean() <= 0.005
        assert np.isin(parts[y : y + h, x : x + w], part_ids("face")).mean() >= 0.95
        # no part outside the person, as everywhere
        assert np.all(parts[res.person_mask < 128] == 255)


def test_the_rest_of_her_is_unchanged(results, astronaut, helmet):
    """Away from the helmet both settings give the mask of the stage switched off."""
    plain = segment(astronaut, Settings.product(include_held=None)).person_mask >= 128
    near = cv2.dilate(helmet.astype(np.uint8), np.ones((61, 61), np.uint8)) > 0
    for res in results.values():
        assert np.array_equal((res.person_mask >= 128)[~near], plain[~near])
    assert results[True].info["held_objects"][0]["included"] is True


def test_a_photo_without_held_objects_is_the_same_either_way(jim):
    """jim.jpg holds nothing: the stage leaves every byte as it was."""
    out = [segment(jim, Settings.product(include_held=held)) for held in (True, False, None)]
    for res in out[:2]:
        assert np.array_equal(res.person_mask, out[2].person_mask)
        assert np.array_equal(res.part_map, out[2].part_map)
        assert "held_objects" not in res.info


def test_a_bad_value_is_a_config_error():
    with pytest.raises(ConfigError, match="include_held"):
        Settings.product(include_held="yes")


def test_the_cli_flag_and_the_dialog_option_make_the_same_settings():
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    for flag, on in (("in", True), ("out", False)):
        want = Settings.product(include_held=on)
        assert settings_from_args(parser.parse_args(["--held", flag])) == build_settings({"include_held": on}) == want
    with pytest.raises(SystemExit):
        parser.parse_args(["--held", "maybe"])


def test_the_cli_flag_reaches_the_core(tmp_path, helmet):
    for flag, inside in (("in", True), ("out", False)):
        out = tmp_path / flag
        p = subprocess.run([sys.executable, "-m", "bodypix_gimp.cli", "segment", str(SAMPLE), "--out", str(out),
                            "--json", "-q", "--held", flag], capture_output=True, text=True, timeout=300)  # fmt: skip
        assert p.returncode == 0, p.stderr
        person = np.asarray(Image.open(out / "astronaut.person.png"))
        parts = np.asarray(Image.open(out / "astronaut.parts.png"))
        share = share_in(person, helmet)
        assert share >= 0.98 if inside else share <= 0.02, (flag, share)
        assert np.isin(parts[helmet], FACE_AND_HANDS).mean() <= 0.005
        (obj,) = json.loads((out / "astronaut.json").read_text())["info"]["held_objects"]
        assert obj["included"] is inside


def test_the_worker_option_reaches_the_core(tmp_path, models_dir, helmet):
    """The GIMP dialog's "Include what people hold" as the plug-in sends it, through the worker."""
    rgb = np.ascontiguousarray(load(SAMPLE))
    assert build_settings({"include_held": False}).include_held is False
    assert build_settings({}).include_held is True
    for inside in (True, False):
        out = tmp_path / str(inside)
        header = {"op": "select-person", "source_rect": [0, 0, 512, 512], "channels": 3, "outdir": str(out),
                  "models": str(models_dir), "options": {"refine": True, "fingers": True, "include_held": inside}}
        p = subprocess.run([sys.executable, "-m", "bodypix_gimp.worker"], capture_output=True, timeout=300,
                           input=json.dumps(header).encode() + b"\n" + rgb.tobytes())  # fmt: skip
        last = json.loads(p.stdout.decode().splitlines()[-1])
        (item,) = last["result"]["items"]
        x, y, w, h = item["rect"]
        mask = np.zeros((512, 512), np.uint8)
        mask[y : y + h, x : x + w] = np.frombuffer((out / item["file"]).read_bytes(), np.uint8).reshape(h, w)
        share = share_in(mask, helmet)
        assert share >= 0.98 if inside else share <= 0.02, (inside, share)
