# Runs INSIDE GIMP 3 *with its GUI* in a virtual X display (python-fu-eval exec()s it; the
# helpers it shares with undo.py are in gimp_gui.py). Photo 1 was opened from GIMP's command line, as a user opens it
# (undo enabled, clean); photo 2 ($BODYPIX_CLICK_GROUP) is loaded by this script. Writes
# $BODYPIX_CLICK_OUT/report.json and .npy arrays that tests/test_gimp_click.py checks.
#
# 1. Every Select entry that acts at once (Select > Person, Select > Body Part > ...), called
#    as the menu calls it (run mode INTERACTIVE) on photo 1 with nothing selected, with damaged
#    stored options (each bad value falls back to its default): a watcher
#    process records every window that appears during the call (a dialog would; it presses
#    Escape on it so a wrong dialog fails the test instead of hanging it); then ONE Ctrl+Z in
#    the image window must bring back the image from before (one undo step).
# 2. Select > BodyPix Options... from a script (mode "add", persons inside the selection off),
#    then Select > Body Part > Hands from the menu on a rectangle: the stored mode is used.
#    Then the Options dialog (interactive): it opens with the stored values, Return keeps them.
# 3. Photo 2 (a group): a rectangle inside the leftmost person, then Select > Person from the
#    menu with the default options: only that person.
# 4. The cache: Select > Person on photo 1 again (answered from the worker's cache), then the
#    layer moved, one pixel changed, a block painted white: each next click must give the
#    result for the layer as it is now (the report keeps the pixels the plug-in saw).
import json
import os
import subprocess
import sys
import time

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
import numpy as np  # noqa: E402
from gi.repository import Gegl, Gimp, Gio  # noqa: E402
from gimp_gui import image_window, opened_image, press, procedure, read, state  # noqa: E402

OUT = os.environ["BODYPIX_CLICK_OUT"]
INSTANT = json.loads(os.environ["BODYPIX_CLICK_PROCS"])
OPTIONS = "plug-in-bodypix-select-options"
LEFT_OF_GROUP = json.loads(os.environ["BODYPIX_CLICK_GROUP_BOX"])

WATCHER = r"""
import subprocess, sys, time

def windows():
    out = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", "."], capture_output=True, text=True)
    return set(out.stdout.split())

before = windows()
print("ready", flush=True)
seen = set()
deadline = time.time() + 600
while time.time() < deadline:
    for w in windows() - before - seen:
        seen.add(w)
        name = subprocess.run(["xdotool", "getwindowname", w], capture_output=True, text=True).stdout.strip()
        print(name, flush=True)
        time.sleep(1.0)  # let GTK draw, then answer it
        subprocess.run(["xdotool", "windowfocus", "--sync", w], capture_output=True)
        subprocess.run(["xdotool", "key", "--clearmodifiers", sys.argv[1]], capture_output=True)
    time.sleep(0.1)
"""


def selection(image):
    sel = image.get_selection()
    return np.frombuffer(read(sel, "Y u8"), np.uint8).reshape(sel.get_height(), sel.get_width())


def rgb(layer):
    return np.frombuffer(read(layer, "R'G'B' u8"), np.uint8).reshape(layer.get_height(), layer.get_width(), 3)


def call(name, image=None, layer=None, interactive=False, answer="Escape", **args):
    """Run a procedure as the menu (INTERACTIVE) or a script does; a watcher process notes every
    window that opens meanwhile and answers it with ``answer``. Returns a report entry."""
    proc = procedure(name)
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE if interactive else Gimp.RunMode.NONINTERACTIVE)
    if image is not None:
        cfg.set_property("image", image)
        cfg.set_core_object_array("drawables", [layer])
    for k, v in args.items():
        cfg.set_property(k.replace("_", "-"), v)
    watcher = subprocess.Popen([sys.executable, "-c", WATCHER, answer], stdout=subprocess.PIPE, text=True)
    watcher.stdout.readline()  # "ready": the windows open before the call are known
    t = time.perf_counter()
    res = proc.run(cfg)
    seconds = time.perf_counter() - t
    time.sleep(0.5)  # a window opened at the very end would be seen by now
    watcher.terminate()
    windows = [w for w in watcher.communicate(timeout=30)[0].splitlines() if w.strip()]
    status = res.index(0)
    message = res.index(1) if res.length() > 1 and status != Gimp.PDBStatusType.SUCCESS else ""
    print("CLICK-CALL", name, status.value_nick, round(seconds, 2), windows, flush=True)
    return {"proc": name, "status": status.value_nick, "message": message, "seconds": round(seconds, 3),
            "windows": windows}  # fmt: skip


def stored_options():
    p = Gimp.get_parasite("bodypix-gimp-select-options")
    return None if p is None else json.loads(bytes(p.get_data()).decode())


def save(name, array):
    np.save(os.path.join(OUT, name + ".npy"), array)


# GIMP's own messages (GIMP 3.2 turns Gdk criticals about xdotool's virtual keyboard into a
# "GIMP Message" window) go to the console: a window during a call can then only be a dialog
Gimp.message_set_handler(Gimp.MessageHandlerType.CONSOLE)
photo = opened_image()
group = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(os.environ["BODYPIX_CLICK_GROUP"]))
window = image_window(photo)
layer = photo.get_layers()[0]
# options stored by something else (an old or a damaged profile): each bad value must fall back
# to its default, so step 1 selects with the defaults
BAD = {"quality": "ultra", "threshold": 7.0, "operation": 3, "refine-edges": "yes", "unknown": 1}
Gimp.attach_parasite(Gimp.Parasite.new("bodypix-gimp-select-options", 0, json.dumps(BAD).encode()))
report = {"undo_enabled": photo.undo_is_enabled(), "stored_at_start": stored_options(), "instant": []}

# 1. each entry that acts at once: no window, the selection, one undo step
for name in INSTANT:
    before = state(photo)
    entry = call(name, photo, layer, interactive=True)
    entry["before_selection_empty"] = bool(Gimp.Selection.is_empty(photo))
    after = state(photo)
    save("select-" + name, selection(photo))
    now, steps = press(window, photo, "ctrl+z", after), 1
    entry["one_undo_restores"] = now == before
    while now != before and steps < 20:
        now, steps = press(window, photo, "ctrl+z", now, wait=3.0, settle=0.3), steps + 1
    entry["undo_steps"] = steps if now == before else None
    entry["changed"] = after != before
    report["instant"].append(entry)
save("photo", rgb(layer))

# 2. Options from a script, then an entry from the menu uses them
report["options_call"] = call(OPTIONS, operation="add", inside_selection=False, quality="fast")
report["stored_after_options"] = stored_options()
photo.select_rectangle(Gimp.ChannelOps.REPLACE, 0, 0, 40, 40)
save("add-before", selection(photo))
report["add"] = call("plug-in-bodypix-select-hands", photo, layer, interactive=True)
save("add-after", selection(photo))
# the dialog: opens (seen by the watcher), starts from the stored values, Return = OK keeps them
report["options_dialog"] = call(OPTIONS, photo, layer, interactive=True, answer="Return")
report["stored_after_dialog"] = stored_options()
# back to the menu defaults, as a user who changes them back
report["options_reset"] = call(OPTIONS, operation="replace", inside_selection=True)

# 3. a rectangle inside one person of a group, then Select > Person from the menu
group_layer = group.get_layers()[0]
group.select_rectangle(Gimp.ChannelOps.REPLACE, *LEFT_OF_GROUP)
save("group-before", selection(group))
report["inside"] = call("plug-in-bodypix-select-person", group, group_layer, interactive=True)
save("group-after", selection(group))
save("group", rgb(group_layer))

# 4. the cache must never answer for pixels, a size or a place that changed
Gimp.Selection.none(photo)
report["cache"] = []


def cached_click(step):
    entry = call("plug-in-bodypix-select-person", photo, layer, interactive=True)
    _, x, y = layer.get_offsets()
    entry.update(step=step, offsets=[x, y], canvas=[photo.get_width(), photo.get_height()])
    save("cache-" + step, selection(photo))
    save("cache-" + step + "-pixels", rgb(layer))
    report["cache"].append(entry)


cached_click("same")  # nothing changed since step 1
layer.set_offsets(25, 15)
cached_click("moved")
Gimp.Selection.none(photo)
layer.set_pixel(layer.get_width() // 2, layer.get_height() // 3, Gegl.Color.new("#ff00ff"))
cached_click("one_pixel")
Gimp.Selection.none(photo)
photo.select_rectangle(Gimp.ChannelOps.REPLACE, 25, 15 + layer.get_height() // 2, layer.get_width(),
                       layer.get_height() // 2)  # fmt: skip
layer.edit_fill(Gimp.FillType.WHITE)
Gimp.Selection.none(photo)
cached_click("painted")

with open(os.path.join(OUT, "report.json"), "w") as f:
    json.dump(report, f, indent=1)
print("CLICK-OK", flush=True)
