"""The Select entries that act at once, and repeated clicks answered from the worker's cache,
in a real GIMP 3 with its GUI (Xvfb), installed by installer/install.py.

tests/gimp/instant_entries.py calls each entry as the menu does (run mode INTERACTIVE) on photos opened
from GIMP's command line; this file checks what GIMP holds against the CLI's own masks of the
same photo file (``bodypix-gimp segment --part-masks``: an independent front-end to the core)
and against the core on the very pixels the plug-in saw after the layer was changed.
Marked ``gimp``; needs root.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "gimp"))
import harness  # noqa: E402
from bodypix_gimp import segment  # noqa: E402
from bodypix_gimp.worker.operations import build_settings  # noqa: E402
from PIL import Image  # noqa: E402

pytestmark = pytest.mark.gimp

EVAL = harness.SHARED / "eval" / "human_seg_300" / "images"
PHOTO = EVAL / "130.jpg"  # one person, whole body: face, both hands, arms, legs, both feet
GROUP = EVAL / "266.jpg"  # three people, the right two overlapping
LEFT_OF_GROUP = (220, 150, 60, 100)  # x, y, w, h: inside the leftmost of the three only
# Each entry and the body-pix part names it must select (written out here from body-pix's part
# list, not taken from the code under test). "person": the CLI's person mask.
ARM = [f"{s}_{u}_arm_{f}" for s in ("left", "right") for u in ("upper", "lower") for f in ("front", "back")]
LEG = [f"{s}_{u}_leg_{f}" for s in ("left", "right") for u in ("upper", "lower") for f in ("front", "back")]
ENTRIES = {
    "plug-in-bodypix-select-person": "person",
    "plug-in-bodypix-select-face": ["left_face", "right_face"],
    "plug-in-bodypix-select-hands": ["left_hand", "right_hand"],
    "plug-in-bodypix-select-arms": ARM,
    "plug-in-bodypix-select-legs": LEG,
    "plug-in-bodypix-select-feet": ["left_feet", "right_feet"],
    "plug-in-bodypix-select-torso": ["torso_front", "torso_back"],
    "plug-in-bodypix-select-upper-body": ["left_face", "right_face", *ARM, "left_hand", "right_hand",
                                          "torso_front", "torso_back"],  # fmt: skip
    "plug-in-bodypix-select-lower-body": [*LEG, "left_feet", "right_feet"],
}
DEFAULTS = harness.PLUGIN_DEFAULTS


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a >= 128, b >= 128
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


@pytest.fixture(scope="module", params=harness.test_versions())
def click(request) -> dict:
    gimp = harness.ensure_gimp(request.param)
    inst = harness.make_install(harness.ROOT / ".cache" / f"gimp-click-{request.param}", gimp)
    out = inst.work / "out"
    out.mkdir()
    # lossless copies: GIMP and the CLI read the very same pixels (no two JPEG decoders)
    photos = []
    for src in (PHOTO, GROUP):
        png = inst.work / (src.stem + ".png")
        Image.open(src).convert("RGB").save(png)
        photos.append(png)
    log = inst.gui_script(harness.HERE / "instant_entries.py", photos[:1], "CLICK-OK", "instant entries and cache",
                          timeout=900, BODYPIX_CLICK_OUT=str(out), BODYPIX_CLICK_PROCS=json.dumps(list(ENTRIES)),
                          BODYPIX_CLICK_GROUP=str(photos[1]), BODYPIX_CLICK_GROUP_BOX=json.dumps(LEFT_OF_GROUP),
                          BODYPIX_GIMP_TIMING="1")  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    # the plug-in's own account of each call, in call order (BODYPIX-TIMING lines)
    report["timing"] = [json.loads(x.split("BODYPIX-TIMING ", 1)[1]) for x in log.splitlines()
                        if "BODYPIX-TIMING " in x]  # fmt: skip
    # the expectation: the CLI on the same file, another front-end to the core
    cli = inst.work / "cli"
    command = Path(sys.executable).with_name("bodypix-gimp")  # the console script of this environment
    done = subprocess.run([str(command), "segment", str(photos[0]), "--out", str(cli), "--part-masks", "--quiet",
                           "--force"], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report["cli"], report["out"], report["photo_png"] = cli, out, photos[0]
    return report


def cli_mask(report: dict, parts: str | list[str]) -> np.ndarray:
    stem = report["photo_png"].stem
    if parts == "person":
        return np.asarray(Image.open(report["cli"] / f"{stem}.person.png"))
    h, w = np.load(report["out"] / "photo.npy").shape[:2]
    out = np.zeros((h, w), np.uint8)
    for name in parts:
        f = report["cli"] / f"{stem}.part-{name}.png"
        if f.is_file():  # a part the photo does not show has no file
            out = np.maximum(out, np.asarray(Image.open(f)))
    return out


@pytest.mark.parametrize("proc", list(ENTRIES))
def test_instant_entry_selects_what_the_cli_says(click: dict, proc: str) -> None:
    """With damaged stored options (bad quality, threshold, mode, edges): the defaults, as the CLI."""
    assert click["stored_at_start"]["quality"] == "ultra" and click["stored_at_start"]["threshold"] == 7.0
    (e,) = [e for e in click["instant"] if e["proc"] == proc]
    assert e["status"] == "success", e["message"]
    expected = cli_mask(click, ENTRIES[proc])
    assert (expected >= 128).sum() > 500, "the photo must show this group"
    got = np.load(click["out"] / f"select-{proc}.npy")
    photo = np.asarray(Image.open(click["photo_png"]).convert("RGB"))
    assert np.array_equal(np.load(click["out"] / "photo.npy"), photo), "GIMP did not hold the photo's pixels"
    assert iou(got, expected) >= 0.99


@pytest.mark.parametrize("proc", list(ENTRIES))
def test_instant_entry_opens_no_dialog_and_is_one_undo_step(click: dict, proc: str) -> None:
    (e,) = [e for e in click["instant"] if e["proc"] == proc]
    assert e["windows"] == [], f"a window opened during the call: {e['windows']}"
    assert e["before_selection_empty"] is False, "nothing is selected after the call"
    assert e["changed"], "the call changed nothing"
    assert e["one_undo_restores"], f"it took {e['undo_steps'] or 'more than 20'} Ctrl+Z to undo"


def test_repeated_clicks_on_the_same_layer_compute_once(click: dict) -> None:
    """Person, then every body-part entry on the unchanged layer: one segmentation."""
    calls = [t for t in click["timing"] if t["procedure"] in ENTRIES][: len(ENTRIES)]
    assert [t["procedure"] for t in calls] == list(ENTRIES)
    cache = [t["ms_since_python_start"]["cache"] for t in calls]
    assert cache == ["miss"] + ["hit"] * (len(ENTRIES) - 1), cache


def test_options_are_remembered_and_used(click: dict) -> None:
    r = click
    assert r["options_call"]["status"] == "success" and r["options_call"]["windows"] == []
    stored = r["stored_after_options"]
    assert stored["operation"] == "add" and stored["inside-selection"] is False
    # Hands from the menu, with the stored mode "add": the rectangle plus the hands
    assert r["add"]["status"] == "success" and r["add"]["windows"] == []
    before = np.load(click["out"] / "add-before.npy") >= 128
    hands = cli_mask(click, ENTRIES["plug-in-bodypix-select-hands"]) >= 128
    assert before.any() and not (before & hands).any()
    assert iou(np.load(click["out"] / "add-after.npy"), (before | hands).astype(np.uint8) * 255) >= 0.99
    # the dialog opened (a window appeared), showed the stored values, and OK kept them
    d = r["options_dialog"]
    assert d["status"] == "success" and any("Options" in w for w in d["windows"]), d
    assert r["stored_after_dialog"] == stored


def test_persons_inside_a_rectangle(click: dict) -> None:
    """A rectangle inside the leftmost of three people, then Select > Person from the menu (the
    default options): that person only. The expectation is the photo's ground truth and where the
    people stand, read off the photo (the man left of x=285, the right woman from x=365), not the
    core's own selection code."""
    r = click["inside"]
    assert r["status"] == "success" and r["windows"] == [], r
    before = np.load(click["out"] / "group-before.npy") >= 128
    x, y, w, h = LEFT_OF_GROUP
    assert before[y:y + h, x:x + w].all() and before.sum() == w * h
    got = np.load(click["out"] / "group-after.npy") >= 128
    with Image.open(GROUP.parents[1] / "masks" / "266.png") as im:
        truth = np.asarray(im.convert("L")) >= 128
    cols = np.arange(truth.shape[1])[None, :]
    man = truth & (cols < 285)
    assert (got & man).sum() >= 0.95 * man.sum()  # measured 0.967
    assert not (got & (cols >= 365)).any()


def placed(mask: np.ndarray, offsets: list[int], canvas: list[int]) -> np.ndarray:
    w, h = canvas
    out = np.zeros((h, w), np.uint8)
    x, y = offsets
    out[y : y + mask.shape[0], x : x + mask.shape[1]] = mask[: h - y, : w - x]
    return out


def test_a_changed_layer_never_gets_a_stale_result(click: dict) -> None:
    """After cached clicks: the layer moved, one pixel changed, a block painted white; each next
    click selects what the core finds on the layer as it is then, at its place."""
    steps = {e["step"]: e for e in click["cache"]}
    assert list(steps) == ["same", "moved", "one_pixel", "painted"]
    person_calls = [t for t in click["timing"] if t["procedure"] == "plug-in-bodypix-select-person"]
    cache = [t["ms_since_python_start"]["cache"] for t in person_calls[-4:]]
    # same pixels (also after a move): from the cache; any changed pixel: computed again
    assert cache == ["hit", "hit", "miss", "miss"], cache
    settings = build_settings(DEFAULTS)
    results = {}
    for step, e in steps.items():
        assert e["status"] == "success", e["message"]
        pixels = np.load(click["out"] / f"cache-{step}-pixels.npy")
        core = segment(pixels, settings).person_mask
        got = np.load(click["out"] / f"cache-{step}.npy")
        assert iou(got, placed(core, e["offsets"], e["canvas"])) >= 0.99, step
        results[step] = got
    assert steps["moved"]["offsets"] == [25, 15]
    assert iou(results["painted"], results["one_pixel"]) < 0.9  # the painted legs are gone
