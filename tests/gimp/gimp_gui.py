# Helpers for the scripts that run INSIDE GIMP 3 *with its GUI* in a virtual X display
# (tests/gimp/instant_entries.py, tests/gimp/undo.py): reading an image's state, finding its
# window and pressing keys in it with xdotool, waiting for the photo named on GIMP's command
# line, looking up a procedure. GIMP's Python imports it: harness.Install.gui_batch puts this
# folder on sys.path before it exec()s the script.
import hashlib
import subprocess
import time

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402


class Busy(Exception):
    """An item went away while it was being read: GIMP is still applying an undo step."""


def xdotool(*args):
    return subprocess.run(["xdotool", *args], capture_output=True, text=True, timeout=30).stdout.split()


def read(drawable, fmt=None):
    """The drawable's pixels as bytes (``fmt``: a Babl format name, None = its own)."""
    w, h = drawable.get_width(), drawable.get_height()
    buffer = drawable.get_buffer()
    if buffer is None:
        raise Busy(drawable.get_id())
    return bytes(buffer.get(Gegl.Rectangle.new(0, 0, w, h), 1.0, fmt, Gegl.AbyssPolicy.NONE))


def digest(drawable):
    return hashlib.sha1(read(drawable)).hexdigest()


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
    """The layer tree (place, size, visibility, alpha, pixels, masks), channels, paths,
    selection and the dirty flag."""

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


def opened_image(timeout=60):
    """The photo named on GIMP's command line, once GIMP has opened it."""
    deadline = time.time() + timeout
    while not Gimp.get_images() and time.time() < deadline:
        time.sleep(0.2)
    return Gimp.get_images()[0]


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


def procedure(name):
    """The PDB procedure ``name``; a clear error when the plug-in is not where GIMP looks."""
    proc = Gimp.get_pdb().lookup_procedure(name)
    if proc is None:
        raise RuntimeError(name + " is not registered: plug-in not installed where GIMP looks")
    return proc
