# Runs INSIDE GIMP 3 *with its GUI* in a virtual X display (python-fu-eval exec()s it; the
# helpers it shares with instant_entries.py are in gimp_gui.py). The photo was opened from
# GIMP's command line, as a user opens it: one image window, undo enabled, clean. (An image
# loaded with Gimp.file_load() from a batch script has undo disabled, so undo can only be
# tested on an image GIMP itself opened.)
#
# For each procedure in $BODYPIX_UNDO_PROCS: run it non-interactively, then press Ctrl+Z ONCE
# in the image window (xdotool, real key events through GIMP's own shortcut), then Ctrl+Y
# (redo), then Ctrl+Z again; after each key, wait until GIMP has acted and record the image's
# state (layer tree, channels, paths, selection, every layer's pixels, dirty flag). The PDB has
# no undo call, so the keyboard is the only way to press Undo from a script. While this script
# waits, GIMP's core runs its main loop (the batch interpreter is a plug-in it waits for), so
# the key events are handled. Writes $BODYPIX_UNDO_OUT/report.json; pytest checks it.
import json
import os
import time

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp  # noqa: E402
from gimp_gui import image_window, opened_image, press, procedure, state  # noqa: E402

OUT = os.environ["BODYPIX_UNDO_OUT"]
PROCS = json.loads(os.environ["BODYPIX_UNDO_PROCS"])


def run(name, image, layer):
    proc = procedure(name)
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("image", image)
    cfg.set_core_object_array("drawables", [layer])
    res = proc.run(cfg)
    status = res.index(0)
    return status.value_nick, (res.index(1) if status != Gimp.PDBStatusType.SUCCESS else "")


image = opened_image()
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
