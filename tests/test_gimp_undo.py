"""Each plug-in call is exactly ONE undo step, checked in a real GIMP (3.0.4 and 3.2.6) with its GUI.

GIMP's PDB cannot undo, so GIMP runs with its user interface in a virtual X display
(Xvfb in the GIMP rootfs), the photo opened from the command line as a user opens it, and
tests/gimp/undo.py presses Ctrl+Z / Ctrl+Y in the image window with xdotool after each call.
One Ctrl+Z must bring back exactly the image from before the call (layers, channels, paths,
selection, every pixel, and the clean flag); one Ctrl+Y must bring back all of the call's
work. A call that made two undo steps leaves part of its work after one Ctrl+Z and fails.
Marked ``gimp``; needs root.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "gimp"))
import harness  # noqa: E402

pytestmark = pytest.mark.gimp

PHOTO = harness.SHARED / "eval" / "human_seg_300" / "images" / "118.jpg"  # one person
PROCS = [
    "plug-in-bodypix-parts-to-layers",  # group + part map + a layer and a channel per part
    "plug-in-bodypix-select-person",  # the selection only
    "plug-in-bodypix-select-parts",  # the selection only (group "person", the default)
    "plug-in-bodypix-person-to-layer-mask",  # alpha channel + mask on the photo's own layer
    "plug-in-bodypix-persons-to-layers",  # group + a layer and a channel per person
    "plug-in-bodypix-pose-to-path",  # paths
]


@pytest.fixture(scope="module", params=harness.test_versions())
def undo_report(request) -> dict:
    gimp = harness.ensure_gimp(request.param)
    inst = harness.make_install(harness.ROOT / ".cache" / f"gimp-undo-{request.param}", gimp)
    out = inst.work / "out"
    out.mkdir()
    inst.gui_script(harness.HERE / "undo.py", [PHOTO], "UNDO-OK", f"undo checks of {len(PROCS)} procedures",
                    BODYPIX_UNDO_OUT=str(out), BODYPIX_UNDO_PROCS=json.dumps(PROCS))
    report = json.loads((out / "report.json").read_text())
    assert report["undo_enabled"], "GIMP opened the photo with undo disabled"
    return {e["proc"]: e for e in report["procs"]}


def differences(a: dict, b: dict) -> list[str]:
    """What differs between two image states, in words (for the failure message)."""
    out = []
    for key in ("layers", "channels", "paths"):
        na, nb = ([e["name"] for e in s[key]] for s in (a, b))
        if a[key] != b[key]:
            out.append(f"{key}: {na} != {nb}" if na != nb else f"{key}: contents differ")
    out += [key for key in ("selection", "dirty") if a[key] != b[key]]
    return out


@pytest.mark.parametrize("proc", PROCS)
def test_one_undo_removes_the_whole_call(undo_report: dict, proc: str) -> None:
    e = undo_report[proc]
    assert e["status"] == "success", e["message"]
    assert e["after"] != e["before"] and e["after"]["dirty"], "the call changed nothing"
    assert not e["before"]["dirty"]
    # one Ctrl+Z: everything the call did is gone, and the image is clean again
    steps = f"the call took {e['undo_steps'] or 'more than 80'} Ctrl+Z to undo; after ONE: "
    assert e["undo"] == e["before"], steps + "; ".join(differences(e["undo"], e["before"]))
    assert e["undo_steps"] == 1


@pytest.mark.parametrize("proc", PROCS)
def test_one_redo_brings_the_whole_call_back(undo_report: dict, proc: str) -> None:
    e = undo_report[proc]
    assert e["status"] == "success", e["message"]
    assert e["redo"] == e["after"], "after ONE Ctrl+Y: " + "; ".join(differences(e["redo"], e["after"]))
    assert e["undo_again"] == e["before"], "Ctrl+Z after the redo: " + "; ".join(
        differences(e["undo_again"], e["before"])
    )
