# Runs INSIDE GIMP 3 *with its GUI* in a virtual X display (python-fu-eval exec()s it; Gimp,
# Gegl, Gio are imported). The photo was opened from GIMP's command line, as a user opens it:
# one image window, undo enabled, clean. (An image loaded with Gimp.file_load() from a batch
# script has undo disabled, so undo can only be tested on an image GIMP itself opened.)
#
# For each procedure in $BODYPIX_UNDO_PROCS: run it non-interactively, then press Ctrl+Z ONCE
# in the image window (xdotool, real key events through GIMP's own shortcut), then Ctrl+Y
# (redo), then Ctrl+Z again; after each key, wait until GIMP has acted and record the image's
# state (layer tree, channels, paths, selection, every layer's pixels, dirty flag). The PDB has
# no undo call, so the keyboard is the only way to press Undo from a script. While this script
# waits, GIMP's core runs its main loop (the batch interpreter is a plug-in it waits for), so
# the key events are handled. Writes $BODYPIX_UNDO_OUT/report.json; pytest checks it.
import hashlib
import json
import os
import subprocess
import time

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

OUT = os.environ["BODYPIX_UNDO_OUT"]
PROCS = json.loads(os.environ["BODYPIX_UNDO_PROCS"])


def xdotool(*args):
    return subprocess.run(["xdotool", *args], capture_output=True, text=True, timeout=30).stdout.split()


def digest(drawable):
    w, h = drawable.get_width(), drawable.get_height()
    buffer = drawable.get_buffer()
    if buffer is None:
        raise Busy(drawable.get_id())
    raw = buffer.get(Gegl.Rectangle.new(0, 0, w, h), 1.0, None, Gegl.AbyssPolicy.NONE)
    return hashlib.sha1(bytes(raw)).hexdigest()


class Busy(Exception):
    """An item went away while it was being read: GIMP is still applying an undo step."""


def state(image, tries=100):
    """Everything a plug-in call may change, in a form that compares with ==; read again while
    GIMP is in the middle of an undo or redo (an item listed a moment ago has no buffer)."""
    for _ in range(tries):
        try:
            return read_state(image)
        except Busy:
            time.sleep(0.05)
    raise RuntimeError("the image stayed in flux for 5 s")


def read_state(image):

    def walk(items, parent):
        for it in items:
            _, x, y = it.get_offsets()
            mask = it.get_mask()
            yield {
                "id": it.get_id(),
                "name": it.get_name(),
                "parent": parent,
                "rect": [x, y, it.get_width(), it.get_height()],
                "visible": it.get_visible(),
                "alpha": it.has_alpha(),
                "pixels": None if it.is_group_layer() else digest(it),
                "mask": None if mask is None else digest(mask),
            }
            if it.is_group_layer():
                yield from walk(it.get_children(), it.get_id())

    return {
        "layers": list(walk(image.get_layers(), None)),
        "channels": [{"id": c.get_id(), "name": c.get_name(), "pixels": digest(c)} for c in image.get_channels()],
        "paths": [{"id": p.get_id(), "name": p.get_name(), "strokes": len(p.get_strokes())} for p in image.get_paths()],
        "selection": digest(image.get_selection()),
        "dirty": bool(image.is_dirty()),
    }


def image_window(image):
    """The X window of the image's display (its title holds '-<image id>.<display id> (')."""
    deadline = time.time() + 60
    while time.time() < deadline:
        for wid in xdotool("search", "--onlyvisible", "--name", "GIMP"):
            if f"-{image.get_id()}." in " ".join(xdotool("getwindowname", wid)):
                return wid
        time.sleep(0.2)
    raise RuntimeError("no image window found in the virtual display")


def press(window, image, keys, before, wait=15.0, settle=1.0):
    """One key press in the image window; returns the state once it changed and settled
    (or the unchanged state after ``wait`` s)."""
    xdotool("windowfocus", "--sync", window)
    xdotool("key", "--clearmodifiers", keys)
    deadline = time.time() + wait
    now = state(image)
    while now == before and time.time() < deadline:
        time.sleep(0.1)
        now = state(image)
    time.sleep(settle)  # anything more to come from this one key press would have happened by now
    return state(image)


def run(name, image, layer):
    proc = Gimp.get_pdb().lookup_procedure(name)
    if proc is None:
        raise RuntimeError(name + " is not registered: plug-in not installed where GIMP looks")
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("image", image)
    cfg.set_core_object_array("drawables", [layer])
    res = proc.run(cfg)
    status = res.index(0)
    return status.value_nick, (res.index(1) if status != Gimp.PDBStatusType.SUCCESS else "")


deadline = time.time() + 60
while not Gimp.get_images() and time.time() < deadline:  # the photo named on the command line
    time.sleep(0.2)
image = Gimp.get_images()[0]
window = image_window(image)
layer = image.get_layers()[0]
report = {"undo_enabled": image.undo_is_enabled(), "procs": []}
for name in PROCS:
    t = time.perf_counter()
    entry = {"proc": name, "before": state(image)}
    entry["status"], entry["message"] = run(name, image, layer)
    entry["run_s"] = round(time.perf_counter() - t, 2)
    entry["after"] = state(image)
    t = time.perf_counter()
    entry["undo"] = press(window, image, "ctrl+z", entry["after"])
    entry["undo_s"] = round(time.perf_counter() - t, 2)
    entry["redo"] = press(window, image, "ctrl+y", entry["undo"])
    entry["undo_again"] = press(window, image, "ctrl+z", entry["redo"])
    # how many Ctrl+Z the call really takes (1 if it is one undo step); this also gives the
    # next procedure the clean image back
    now, extra = entry["undo_again"], 0
    while now != entry["before"] and extra < 80:
        now, extra = press(window, image, "ctrl+z", now, wait=3.0, settle=0.3), extra + 1
    entry["undo_steps"] = 1 + extra if now == entry["before"] else None
    report["procs"].append(entry)
    print("UNDO-CASE", name, entry["status"], entry["run_s"], entry["undo_s"], entry["undo_steps"], flush=True)
with open(os.path.join(OUT, "report.json"), "w") as f:
    json.dump(report, f, indent=1)
print("UNDO-OK", flush=True)
