"""bodypix_gimp.worker, the process the GIMP plug-in talks to, run as the plug-in runs it
(``python -m bodypix_gimp.worker``, pixels over stdin) on real photos, without GIMP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bodypix_gimp import PART_NAMES, load_image, segment
from bodypix_gimp.bodypix.instances import persons_overlapping
from bodypix_gimp.render import RAINBOW_PART_COLORS
from bodypix_gimp.worker.operations import build_settings, part_label
from conftest import EVAL

# Protocol tests run BodyPix alone (refinement and fingers are the core's business and tested
# there); the plug-in's defaults (both on) are exercised in the first test and in real GIMP.
DEFAULTS = {"quality": "fast", "refine": False, "fingers": False, "threshold": 0.7, "internal_resolution": "medium"}
PLUGIN_DEFAULTS = {**DEFAULTS, "refine": True, "fingers": True}


@pytest.fixture(scope="module")
def two_people(eval_dir: Path) -> np.ndarray:
    """A woman centre right and a second person cut by the left edge (human_seg_300/163)."""
    return load_image(eval_dir / "human_seg_300" / "images" / "163.jpg")


@pytest.fixture(scope="module")
def core(two_people):
    return segment(two_people, build_settings(DEFAULTS))


def call(tmp: Path, header: dict, pixels: bytes, extra: bytes = b"", models: Path | None = None):
    header = {"outdir": str(tmp / "out"), "options": DEFAULTS, **header}
    if models is not None:
        header["models"] = str(models)
    proc = subprocess.run(
        [sys.executable, "-m", "bodypix_gimp.worker"],
        input=json.dumps(header).encode() + b"\n" + pixels + extra,
        capture_output=True,
        timeout=120,
    )
    lines = [json.loads(x) for x in proc.stdout.decode().splitlines()]
    return proc.returncode, lines


def item(tmp: Path, it: dict) -> np.ndarray:
    w, h = it["rect"][2:]
    a = np.fromfile(tmp / "out" / it["file"], np.uint8)
    return a.reshape(h, w) if it["channels"] == 1 else a.reshape(h, w, it["channels"])


def on_canvas(tmp: Path, it: dict, w: int, h: int, origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """A one-channel item placed on an empty w x h area whose top-left is image point ``origin``
    (GIMP writes it into an empty channel or a black mask the same way)."""
    out = np.zeros((h, w), np.uint8)
    x, y, iw, ih = it["rect"]
    x, y = x - origin[0], y - origin[1]
    assert 0 <= x and 0 <= y and x + iw <= w and y + ih <= h, it["rect"]
    out[y : y + ih, x : x + iw] = item(tmp, it)
    return out


def test_select_person_equals_core_and_reports_progress(tmp_path, two_people, models_dir) -> None:
    h, w = two_people.shape[:2]
    core = segment(two_people, build_settings(PLUGIN_DEFAULTS))
    assert build_settings(PLUGIN_DEFAULTS).refine != "none" and build_settings(PLUGIN_DEFAULTS).fingers
    code, lines = call(tmp_path, {"op": "select-person", "source_rect": [0, 0, w, h], "channels": 3,
                                  "options": PLUGIN_DEFAULTS}, two_people.tobytes(), models=models_dir)  # fmt: skip
    assert code == 0, lines
    fractions = [m["progress"] for m in lines if "progress" in m]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    (it,) = lines[-1]["result"]["items"]
    m = item(tmp_path, it)  # cut to the mask's box: its border rows and columns hold the person
    assert m[0].any() and m[-1].any() and m[:, 0].any() and m[:, -1].any()
    assert np.array_equal(on_canvas(tmp_path, it, w, h), core.person_mask)


def test_offset_layer_is_clipped_to_the_canvas(tmp_path, two_people, core, models_dir) -> None:
    """A layer hanging 60 px over the left edge: only the part inside the canvas comes back."""
    h, w = two_people.shape[:2]
    rgba = np.dstack([two_people, np.full((h, w), 255, np.uint8)])
    hdr = {"op": "select-person", "source_rect": [-60, 20, w, h], "target_rect": [0, 0, w, h + 40]}
    code, lines = call(tmp_path, hdr, rgba.tobytes(), models=models_dir)
    assert code == 0, lines
    (it,) = lines[-1]["result"]["items"]
    # within the layer's part inside the canvas (x 0.., y 20..): the core's mask from column 60 on
    assert np.array_equal(on_canvas(tmp_path, it, w - 60, h, origin=(0, 20)), core.person_mask[:, 60:])


def test_only_persons_overlapping_the_selection(tmp_path, two_people, core, models_dir) -> None:
    h, w = two_people.shape[:2]
    sel = np.zeros((h, w), np.uint8)
    sel[150:350, 250:400] = 255  # a box around the woman only
    hdr = {"op": "select-person", "source_rect": [0, 0, w, h], "channels": 3, "selection": True}
    code, lines = call(tmp_path, hdr, two_people.tobytes(), sel.tobytes(), models=models_dir)
    assert code == 0, lines
    got = on_canvas(tmp_path, lines[-1]["result"]["items"][0], w, h)
    # expected from the ground truth, not from the worker's selection code: the truth's person
    # the box touches, and nothing of the other one (cut by the left edge; BodyPix finds no pose
    # for them, so the core's instances give their pixels to the selected person and only the worker's
    # component rule keeps her out)
    import cv2

    truth = cv2.imread(str(EVAL / "human_seg_300" / "masks" / "163.png"), cv2.IMREAD_GRAYSCALE) >= 128
    n, labels = cv2.connectedComponents(truth.astype(np.uint8), connectivity=8)
    touched = set(np.unique(labels[(sel >= 128) & truth])) - {0}
    assert len(touched) == 1 and n >= 3
    chosen = labels == touched.pop()
    others = truth & ~chosen
    assert others[:, :100].sum() > 2000
    person = got >= 128
    assert (person & chosen).sum() / (person | chosen).sum() > 0.85
    assert not (person & others).any()
    assert (core.person_mask[:, :100] >= 128).sum() > 2000  # the other person is there ...
    assert not got[:, :100].any()  # ... and not selected
    assert (got >= 128).sum() > 0.7 * (core.person_mask[:, 200:] >= 128).sum()


def test_instances_keep_touching_people_apart() -> None:
    """Two people whose masks touch: the instance map splits them, components alone cannot."""
    mask = np.zeros((40, 60), np.uint8)
    mask[5:35, 5:55] = 255  # one blob ...
    instances = np.zeros_like(mask)
    instances[5:35, 5:30], instances[5:35, 30:55] = 1, 2  # ... that is two people
    sel = np.zeros_like(mask)
    sel[10:20, 8:12] = 255
    assert (persons_overlapping(mask, sel) == 255).sum() == 30 * 50
    got = persons_overlapping(mask, sel, instances)
    assert (got[5:35, 5:30] == 255).all() and not got[:, 30:].any()


def test_parts_to_layers_items(tmp_path, two_people, core, models_dir) -> None:
    h, w = two_people.shape[:2]
    code, lines = call(tmp_path, {"op": "parts-to-layers", "source_rect": [0, 0, w, h], "channels": 3},
                       two_people.tobytes(), models=models_dir)  # fmt: skip
    assert code == 0, lines
    items = lines[-1]["result"]["items"]
    parts = [it for it in items if it["kind"] == "part"]
    present = [PART_NAMES[i] for i in np.unique(core.part_map) if i != 255]
    assert [it["name"] for it in parts] == [part_label(n) for n in present]
    rebuilt = np.full((h, w), 255, np.uint8)
    for it in parts:
        x, y, bw, bh = it["rect"]
        m = item(tmp_path, it)
        assert m[0].any() and m[-1].any() and m[:, 0].any() and m[:, -1].any()  # tight box
        rebuilt[y : y + bh, x : x + bw][m == 255] = PART_NAMES.index(it["part"])
        assert it["color"] == RAINBOW_PART_COLORS[PART_NAMES.index(it["part"])].tolist()
    assert np.array_equal(rebuilt, core.part_map)
    (pm,) = [it for it in items if it["kind"] == "part-map"]
    rgba = item(tmp_path, pm)
    assert np.array_equal(rgba[..., 3] == 255, core.part_map != 255)


def test_select_parts_group_and_unknown_part(tmp_path, two_people, core, models_dir) -> None:
    h, w = two_people.shape[:2]
    hdr = {"op": "select-parts", "source_rect": [0, 0, w, h], "channels": 3, "parts": ["face"]}
    code, lines = call(tmp_path, hdr, two_people.tobytes(), models=models_dir)
    assert code == 0, lines
    assert np.array_equal(on_canvas(tmp_path, lines[-1]["result"]["items"][0], w, h), core.part_mask("face"))
    code, lines = call(tmp_path, dict(hdr, parts=["left_elbow"]), two_people.tobytes(), models=models_dir)
    assert code == 2 and lines[-1]["kind"] == "config" and "Unknown part 'left_elbow'" in lines[-1]["error"]


def test_missing_models_is_one_clear_line(tmp_path, two_people) -> None:
    (tmp_path / "nomodels").mkdir()
    h, w = two_people.shape[:2]
    code, lines = call(tmp_path, {"op": "select-person", "source_rect": [0, 0, w, h], "channels": 3},
                       two_people.tobytes(), models=tmp_path / "nomodels")  # fmt: skip
    assert code == 2 and lines[-1]["kind"] == "model"
    assert "is not installed" in lines[-1]["error"] and "install.py" in lines[-1]["error"]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_photo_without_people(tmp_path, two_people, models_dir) -> None:
    crop = np.ascontiguousarray(two_people[:120, 420:])  # shop window, top right: nobody there
    assert not segment(crop, build_settings(DEFAULTS)).found_person
    h, w = crop.shape[:2]
    code, lines = call(tmp_path, {"op": "parts-to-layers", "source_rect": [0, 0, w, h], "channels": 3,
                                  "label": "Background"}, crop.tobytes(), models=models_dir)  # fmt: skip
    assert code == 2 and lines[-1]["kind"] == "empty"
    assert lines[-1]["error"].startswith("No person found in 'Background'")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ({"op": "blur", "source_rect": [0, 0, 4, 4]}, "unknown operation 'blur'"),
        ({"op": "select-person"}, "bad request"),
        ({"op": "select-person", "source_rect": [0, 0, 0, 4]}, "the layer is empty"),
        (
            {"op": "select-person", "source_rect": [0, 0, 4, 4], "options": {"quality": "best"}},
            "quality must be",
        ),
    ],
)
def test_bad_requests(tmp_path, header, message, models_dir) -> None:
    code, lines = call(tmp_path, header, b"", models=models_dir)
    assert code == 2 and message in lines[-1]["error"]


def test_truncated_pixels(tmp_path, models_dir) -> None:
    code, lines = call(tmp_path, {"op": "select-person", "source_rect": [0, 0, 64, 64]}, b"\0" * 100,
                       models=models_dir)  # fmt: skip
    assert code == 2 and "sent 100 of 16384 bytes" in lines[-1]["error"]


def test_model_server_is_reused_and_stopped(tmp_path, two_people, core, models_dir, monkeypatch) -> None:
    """The plug-in's client (stdlib only) starts one server, reuses it, and --stop ends it."""
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gimp_plugin" / "bodypix"))
    import worker_client

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    config = {"python": sys.executable, "models": str(models_dir), "launcher": [], "server_idle_seconds": 60}
    h, w = two_people.shape[:2]
    pids = []
    for _ in range(2):
        request = {"op": "select-person", "source_rect": [0, 0, w, h], "channels": 3, "options": DEFAULTS}
        with worker_client.Worker(config, request) as wk:
            wk.start()
            result = wk.finish(two_people.tobytes())
            (it,) = result["items"]
            x, y, iw, ih = it["rect"]
            got = np.zeros((h, w), np.uint8)
            got[y : y + ih, x : x + iw] = np.frombuffer(wk.read_item(it), np.uint8).reshape(ih, iw)
        assert result["mode"] == "server" and np.array_equal(got, core.person_mask)
        pids.append(worker_client.read_state(worker_client.state_path(config))["pid"])
    assert pids[0] == pids[1]
    stop = subprocess.run([sys.executable, "-m", "bodypix_gimp.worker", "--stop"], capture_output=True,
                          text=True, env={**__import__("os").environ, "TMPDIR": str(tmp_path)})  # fmt: skip
    assert "stopped 1 server" in stop.stdout
    import os
    import time

    for _ in range(100):  # the server is our child here (GIMP's plug-in would have exited)
        if os.waitpid(pids[0], os.WNOHANG)[0] == pids[0]:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("server still running after --stop")


@pytest.fixture(scope="module")
def group(eval_dir: Path) -> np.ndarray:
    """Three people side by side, two of them overlapping (human_seg_300/266)."""
    return load_image(eval_dir / "human_seg_300" / "images" / "266.jpg")


@pytest.fixture(scope="module")
def group_core(group):
    return segment(group, build_settings(DEFAULTS).replace(multi_person=True))


def test_persons_to_layers_items(tmp_path, group, group_core, models_dir) -> None:
    """One tight mask per person, left to right, equal to the core's Person.mask; the layer
    is placed at (30, 10) and hangs 40 px over a canvas's right edge (clipped there)."""
    h, w = group.shape[:2]
    assert build_settings(DEFAULTS).min_pose_score == 0.25  # the product default, not body-pix's 0.4
    persons = group_core.persons
    assert len(persons) == 3
    hdr = {"op": "persons-to-layers", "source_rect": [30, 10, w, h], "target_rect": [0, 0, w - 10, h + 10],
           "channels": 3}  # fmt: skip
    code, lines = call(tmp_path, hdr, group.tobytes(), models=models_dir)
    assert code == 0, lines
    items = lines[-1]["result"]["items"]
    assert [it["name"] for it in items] == [f"Person {p.index}" for p in persons]
    canvas_w = w - 10
    for it, p in zip(items, persons, strict=True):
        x, y, bw, bh = it["rect"]
        m = item(tmp_path, it)
        assert m[0].any() and m[-1].any() and m[:, 0].any() and m[:, -1].any()  # tight box
        placed = np.zeros((h + 40, w + 40), np.uint8)
        placed[y : y + bh, x : x + bw] = m
        expected = np.zeros_like(placed)
        expected[10 : 10 + h, 30 : 30 + w] = p.mask
        expected[:, canvas_w:] = 0
        assert np.array_equal(placed, expected), it["name"]
    assert len({tuple(it["color"]) for it in items}) == len(items)
    xs = [it["rect"][0] + it["rect"][2] / 2 for it in items]
    assert xs[0] < xs[-1]  # left to right


def test_pose_to_path_items(tmp_path, group, group_core, models_dir) -> None:
    """Per person the skeleton's confident segments, in image coordinates (layer at (30, 10))."""
    from bodypix_gimp.bodypix.poses import skeleton

    h, w = group.shape[:2]
    hdr = {"op": "pose-to-path", "source_rect": [30, 10, w, h], "target_rect": [0, 0, w + 30, h + 10],
           "channels": 3}  # fmt: skip
    code, lines = call(tmp_path, hdr, group.tobytes(), models=models_dir)
    assert code == 0, lines
    items = lines[-1]["result"]["items"]
    min_score = build_settings(DEFAULTS).min_keypoint_score
    expected = [(p.index, skeleton(p.pose, min_score)) for p in group_core.persons]
    expected = [(i, bones) for i, bones in expected if bones]
    assert [it["name"] for it in items] == [f"Pose {i}" for i, _ in expected] and items
    for it, (_, bones) in zip(items, expected, strict=True):
        want = np.array([[x0 + 30, y0 + 10, x1 + 30, y1 + 10] for (x0, y0), (x1, y1) in bones])
        assert np.allclose(np.array(it["segments"]), want, atol=1e-6)
    assert sum(len(it["segments"]) for it in items) > 16  # more than one person's skeleton


@pytest.mark.parametrize("op", ["persons-to-layers", "pose-to-path"])
def test_group_ops_on_a_photo_without_people(tmp_path, two_people, op, models_dir) -> None:
    crop = np.ascontiguousarray(two_people[:120, 420:])  # nobody there (see test_photo_without_people)
    h, w = crop.shape[:2]
    code, lines = call(tmp_path, {"op": op, "source_rect": [0, 0, w, h], "channels": 3, "label": "Background"},
                       crop.tobytes(), models=models_dir)  # fmt: skip
    assert code == 2 and lines[-1]["kind"] == "empty"
    assert lines[-1]["error"].startswith("No person found in 'Background'") and "\n" not in lines[-1]["error"]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_person_pixels_but_no_people_told_apart(tmp_path, two_people, core) -> None:
    """A mask with no person instance (a result made without multi-person decoding): the two
    group procedures say so in one line instead of adding empty layers or paths."""
    from bodypix_gimp.worker.operations import persons_to_items, pose_paths
    from bodypix_gimp.worker.protocol import Output, Request, WorkerError

    assert core.found_person and not core.persons
    h, w = two_people.shape[:2]
    req = Request(op="persons-to-layers", width=w, height=h, source_rect=(0, 0, w, h), target_rect=(0, 0, w, h),
                  label="Background")  # fmt: skip
    out = Output(str(tmp_path / "out"), (0, 0))
    for call_op in (lambda: persons_to_items(core, out, req, (0, 0, w, h), (0, 0)), lambda: pose_paths(core, req, 0.3)):
        with pytest.raises(WorkerError, match="could not tell people apart") as e:
            call_op()
        assert e.value.kind == "empty" and "Nothing was changed" in str(e.value)
    assert not out.items and not any((tmp_path / "out").iterdir())
