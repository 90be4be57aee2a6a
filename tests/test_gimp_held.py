""""Include what people hold" in a real GIMP 3 (headless), installed by installer/install.py:
Select > BodyPix Options... remembers the setting, and Select > Person, run as the menu entry
runs it (with the stored options), takes the astronaut's helmet wholly in or wholly out; Body
Parts to Layers puts none of the helmet in a face or hand layer.

The helmet region is the hand-drawn polygon of tests/test_held.py (independent of the code).
Marked ``gimp``; needs root.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "gimp"))
import harness  # noqa: E402
from test_held import HELMET  # noqa: E402

pytestmark = pytest.mark.gimp

PHOTO = harness.ROOT / "samples" / "astronaut.jpg"
OPTIONS = "plug-in-bodypix-select-options"
SELECT = "plug-in-bodypix-select-person"
LAYERS = "plug-in-bodypix-parts-to-layers"
FACE_AND_HANDS = ("left face", "right face", "left hand", "right hand")


@pytest.fixture(scope="module", params=harness.test_versions())
def held_run(request) -> Path:
    gimp = harness.ensure_gimp(request.param)
    inst = harness.make_install(harness.ROOT / ".cache" / f"gimp-held-{request.param}", gimp)
    image = str(PHOTO)
    plan = {"out": str(inst.work / "out"), "empty_models": "", "cases": [
        {"id": "store_off", "image": image, "proc": OPTIONS, "args": {"include-held": False}},
        {"id": "select_off", "image": image, "proc": SELECT, "last_values": True},
        {"id": "store_on", "image": image, "proc": OPTIONS, "args": {"include-held": True}},
        {"id": "select_on", "image": image, "proc": SELECT, "last_values": True},
        {"id": "layers", "image": image, "proc": LAYERS},
    ]}  # fmt: skip
    proc, seconds = inst.batch(plan)
    log = proc.stdout + proc.stderr
    (inst.work / "batch.log").write_text(log)
    print(f"[gimp] held objects in GIMP {request.param}: {seconds:.0f} s", flush=True)
    assert proc.returncode == 0 and "BATCH-OK" in log, log[-4000:]
    return inst.work / "out"


@pytest.fixture(scope="module")
def helmet() -> np.ndarray:
    region = np.zeros((512, 512), np.uint8)
    cv2.fillPoly(region, [np.array(HELMET, np.int32)], 1)
    return region > 0


def test_the_stored_setting_decides_the_helmet(held_run: Path, helmet: np.ndarray) -> None:
    for case, inside in (("select_on", True), ("select_off", False)):
        report = json.loads((held_run / case / "report.json").read_text())
        assert report["status"] == "success", report["message"]
        share = float((np.load(held_run / case / "selection.npy")[helmet] >= 128).mean())
        assert share >= 0.98 if inside else share <= 0.02, (case, share)


def test_no_face_or_hand_layer_holds_the_helmet(held_run: Path, helmet: np.ndarray) -> None:
    report = json.loads((held_run / "layers" / "report.json").read_text())
    assert report["status"] == "success", report["message"]
    names = {c["name"]: c["file"] for c in report["channels"]}
    assert {"left face", "right face"} <= set(names)  # her own face is there
    for name in FACE_AND_HANDS:
        if name in names:
            channel = np.load(held_run / "layers" / "channels" / names[name])
            assert (channel[helmet] >= 128).mean() <= 0.005, name
