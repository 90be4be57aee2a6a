# Runs INSIDE headless GIMP 3 (python-fu-eval exec()s it; Gimp, Gegl, Gio are imported).
# Reads a plan (JSON, path in $BODYPIX_GIMP_PLAN): a list of cases, each "load a photo,
# prepare the image (mode, offsets, group, selection), call one bodypix procedure". For every
# case it writes <out>/<id>/: source.npy (the pixels the plug-in saw), selection.npy,
# channels/*.npy, layers/*.npy (alpha), tree.json (layers, channels, paths with their strokes'
# control points, status, message, timing, whether the original layer's pixels changed).
# Checks are made by the pytest side.
import json
import os
import threading
import time
import traceback

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("Babl", "0.1")
import numpy as np  # noqa: E402
from gi.repository import Babl, Gegl, Gimp, Gio  # noqa: E402

PLAN = json.load(open(os.environ["BODYPIX_GIMP_PLAN"]))
OUT = PLAN["out"]


def gfile(p):
    return Gio.File.new_for_path(os.path.abspath(p))


def mask_format(d):
    enc = Babl.format_get_encoding(d.get_format())
    return "Y' u8" if enc.startswith("Y'") else "Y u8"


def get_bytes(d, fmt):
    w, h = d.get_width(), d.get_height()
    return bytes(d.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, fmt, Gegl.AbyssPolicy.NONE))


def get_np(d, fmt, nch):
    w, h = d.get_width(), d.get_height()
    return np.frombuffer(get_bytes(d, fmt), np.uint8).reshape(h, w, nch)


def prepare(image, layer, steps):
    """Apply the case's preparation steps; returns the layer the procedure gets."""
    for step in steps:
        name, _, arg = step.partition(":")
        vals = [int(v) for v in arg.split(",")] if arg and name != "precision" else []
        if name == "rgba":
            layer.add_alpha()
        elif name == "gray":
            image.convert_grayscale()
        elif name == "indexed":
            image.convert_indexed(Gimp.ConvertDitherType.NONE, Gimp.ConvertPaletteType.GENERATE, 255, False, False, "")
        elif name == "precision":
            image.convert_precision(getattr(Gimp.Precision, arg))
        elif name == "canvas":  # bigger canvas, layer moved by (dx, dy)
            dx, dy, pw, ph = vals
            image.resize(image.get_width() + pw, image.get_height() + ph, dx, dy)
        elif name == "move":  # layer offsets (may hang over the canvas edge)
            layer.set_offsets(*vals)
        elif name == "group":
            g = Gimp.GroupLayer.new(image, "Group")
            image.insert_layer(g, None, 0)
            image.reorder_item(layer, g, 0)
        elif name == "rect":
            image.select_rectangle(Gimp.ChannelOps.REPLACE, *vals)
        elif name == "cover":  # a second, opaque layer on top hiding the left half
            top = Gimp.Layer.new(
                image,
                "cover",
                image.get_width() // 2,
                image.get_height(),
                Gimp.ImageType.RGBA_IMAGE,
                100.0,
                Gimp.LayerMode.NORMAL,
            )
            image.insert_layer(top, None, 0)
            top.fill(Gimp.FillType.WHITE)
        elif name == "bad_models":  # fault injection: the installed config points at an empty folder
            pass
        else:
            raise ValueError("unknown step " + step)
    image.set_selected_layers([layer])
    return layer


def tree(image):
    def walk(items, parent):
        out = []
        for it in items:
            _, x, y = it.get_offsets()
            e = {
                "name": it.get_name(),
                "parent": parent,
                "x": x,
                "y": y,
                "w": it.get_width(),
                "h": it.get_height(),
                "visible": it.get_visible(),
                "opacity": it.get_opacity(),
                "group": it.is_group_layer(),
                "has_mask": it.get_mask() is not None,
                "id": it.get_id(),
            }
            out.append(e)
            if it.is_group_layer():
                out += walk(it.get_children(), it.get_name())
        return out

    return walk(image.get_layers(), None)


KILLER = r"""
import os, signal, sys, time
busy_s = float(sys.argv[1])
TICK = os.sysconf("SC_CLK_TCK")

def processes(marker):
    pids = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():  # this script's own command line holds the markers
            try:
                if marker in open(f"/proc/{pid}/cmdline", "rb").read():
                    pids.add(int(pid))
            except OSError:
                pass
    return pids

def cpu_s(pids):
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15 of stat)
    return total / TICK

before = processes(b"plug-ins/bodypix/bodypix.py")
print("ready", flush=True)
deadline = time.time() + 120
plugin, cpu0, result = None, None, None
while time.time() < deadline:
    if plugin is None:
        new = processes(b"plug-ins/bodypix/bodypix.py") - before
        if new:
            plugin = min(new)
            cpu0 = {p: cpu_s([p]) for p in processes(b"bodypix_gimp.worker")}
    else:
        # the worker processes (the model server, or a one-shot worker the plug-in started);
        # one that appeared after the plug-in started counts from zero
        spent = sum(cpu_s([p]) - cpu0.get(p, 0.0) for p in processes(b"bodypix_gimp.worker"))
        if not os.path.exists(f"/proc/{plugin}"):
            break  # the call ended before the worker got busy: nothing was cancelled
        if spent >= busy_s:
            os.kill(plugin, signal.SIGKILL)
            result = f"{plugin} {spent:.2f}"
            break
    time.sleep(0.005)
print(result or "", flush=True)
"""
# CPU seconds the worker must have spent on the call before the cancel: the pixels are in and
# the models are running (the handshake and reading the pixels take milliseconds of CPU).
BUSY_CPU_S = 0.5


def start_killer(busy_s):
    """The user cancels: a separate process waits for the plug-in process this call starts,
    then for the worker to be busy with its pixels (``busy_s`` CPU seconds spent by the
    bodypix_gimp.worker processes since the plug-in started), then SIGKILLs the plug-in (as
    GIMP does on cancel). A condition, not a delay: the kill lands mid-computation on a slow
    or a fast machine alike.

    A separate process, not a thread: the PDB call holds this interpreter's GIL until it
    returns, so a thread here would only run after the call (and kill the next one).
    Plug-in processes that already exist are left alone.
    """
    import subprocess
    import sys

    killer = subprocess.Popen([sys.executable, "-c", KILLER, str(busy_s)], stdout=subprocess.PIPE, text=True)
    killer.stdout.readline()  # "ready": the list of earlier plug-in processes is taken
    return killer


def killed(killer):
    """(pid of the killed plug-in, worker CPU seconds at the kill), or (None, None)."""
    out, _ = killer.communicate(timeout=150)
    if not out.strip():
        return None, None
    pid, spent = out.split()
    return int(pid), float(spent)


def drive_dialog(title, rep, folder):
    """Interactive run in a virtual X display: wait for the procedure dialog, grab the
    screen (xwd), press Return (OK). Leaves what happened in ``rep``."""
    import subprocess

    deadline = time.time() + 90
    while time.time() < deadline:
        found = subprocess.run(["xdotool", "search", "--name", title], capture_output=True, text=True)
        ids = found.stdout.split()
        if ids:
            time.sleep(1.5)  # let GTK draw
            subprocess.run(["xwd", "-root", "-silent", "-out", os.path.join(folder, "dialog.xwd")])
            rep["dialog_seen_after_s"] = round(time.time() - (deadline - 90), 1)
            subprocess.run(["xdotool", "windowfocus", "--sync", ids[-1]], capture_output=True)
            subprocess.run(["xdotool", "key", "--clearmodifiers", "Return"], capture_output=True)
            return
        time.sleep(0.2)
    rep["dialog_seen_after_s"] = None


def with_config(plugin_dir, change):
    path = os.path.join(plugin_dir, "bodypix-config.json")
    old = open(path).read()
    cfg = json.loads(old)
    cfg.update(change)
    open(path, "w").write(json.dumps(cfg))
    return path, old


def ink_layer(image, name, colour, width):
    """A transparent top layer to stroke on, with the context set to a ``width`` px line of ``colour``."""
    ink = Gimp.Layer.new(image, name, image.get_width(), image.get_height(), Gimp.ImageType.RGBA_IMAGE, 100.0,
                         Gimp.LayerMode.NORMAL)  # fmt: skip
    image.insert_layer(ink, None, 0)
    Gimp.context_set_foreground(Gegl.Color.new(colour))
    Gimp.context_set_stroke_method(Gimp.StrokeMethod.LINE)  # no brushes with gimp -d
    Gimp.context_set_line_width(width)
    return ink


def run_case(case):
    d = os.path.join(OUT, case["id"])
    os.makedirs(os.path.join(d, "channels"), exist_ok=True)
    os.makedirs(os.path.join(d, "layers"), exist_ok=True)
    image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, gfile(case["image"]))
    layer = prepare(image, image.get_layers()[0], case.get("prep", []))
    rep = {
        "id": case["id"],
        "canvas": [image.get_width(), image.get_height()],
        "precision": image.get_precision().value_nick,
        "base_type": image.get_base_type().value_nick,
    }
    _, lx, ly = layer.get_offsets()
    rep["layer"] = {
        "name": layer.get_name(),
        "x": lx,
        "y": ly,
        "w": layer.get_width(),
        "h": layer.get_height(),
    }
    sel = image.get_selection()
    if not case.get("timing_only"):
        np.save(os.path.join(d, "source.npy"), get_np(layer, "R'G'B'A u8", 4))
        np.save(os.path.join(d, "selection_before.npy"), get_np(sel, mask_format(sel), 1)[..., 0])
        native_before = get_bytes(layer, None)
    n_channels_before = len(image.get_channels())
    rep["tree_before"] = tree(image)
    rep["paths_before"] = len(image.get_paths())

    proc = Gimp.get_pdb().lookup_procedure(case["proc"])
    if proc is None:
        raise RuntimeError(case["proc"] + " is not registered: plug-in not installed where GIMP looks")
    rep["blurb"] = proc.get_blurb()
    rep["help"] = proc.get_help()
    rep["menu_paths"] = list(proc.get_menu_paths())
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("image", image)
    cfg.set_core_object_array("drawables", [layer])
    for k, v in case.get("args", {}).items():
        cfg.set_property(k, v)
    restore = None
    if "bad_models" in case.get("prep", []):
        restore = with_config(PLAN["plugin_dir"], {"models": PLAN["empty_models"]})
    if case.get("last_values"):  # as "Repeat" and the instant menu entries run: the stored options
        cfg.set_property("run-mode", Gimp.RunMode.WITH_LAST_VALS)
    if case.get("interactive"):  # the dialog, in the virtual display the harness started
        cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
        threading.Thread(target=drive_dialog, args=(case["interactive"], rep, d), daemon=True).start()
    if case.get("cancel"):  # the user cancels: GIMP kills the plug-in process
        killer = start_killer(BUSY_CPU_S)
    t0 = time.perf_counter()
    try:
        res = proc.run(cfg)
    finally:
        if restore:
            open(restore[0], "w").write(restore[1])
    t1 = time.perf_counter()
    rep["seconds"] = t1 - t0
    rep["run_perf_s"] = [t0, t1]  # on the monotonic clock the plug-in's timing line uses too
    status = res.index(0)
    rep["status"] = status.value_nick
    if case.get("cancel"):
        rep["killed_pid"], rep["worker_cpu_s_at_kill"] = killed(killer)
    rep["message"] = res.index(1) if res.length() > 1 and status != Gimp.PDBStatusType.SUCCESS else ""
    if case.get("timing_only"):  # benchmark: no array dumps
        _, non_empty, *_ = Gimp.Selection.bounds(image)
        rep["selection_empty"] = not non_empty
        with open(os.path.join(d, "report.json"), "w") as f:
            json.dump(rep, f, indent=1)
        image.delete()
        return

    rep["original_unchanged"] = get_bytes(layer, None) == native_before
    rep["tree"] = tree(image)
    rep["selection_empty"] = Gimp.Selection.is_empty(image)
    np.save(os.path.join(d, "selection.npy"), get_np(sel, mask_format(sel), 1)[..., 0])
    rep["channels"] = []
    for i, ch in enumerate(image.get_channels()):
        f = f"{i:02d}.npy"
        np.save(os.path.join(d, "channels", f), get_np(ch, mask_format(ch), 1)[..., 0])
        rep["channels"].append({"name": ch.get_name(), "file": f, "visible": ch.get_visible()})
    rep["channels_before"] = n_channels_before
    rep["paths"] = []
    for path in image.get_paths():
        strokes = []
        for sid in path.get_strokes():
            kind, points, closed = path.stroke_get_points(sid)
            strokes.append({"type": kind.value_nick, "points": list(points), "closed": bool(closed)})
        rep["paths"].append({"name": path.get_name(), "visible": path.get_visible(), "strokes": strokes})
    mask = layer.get_mask()
    if mask is not None:
        np.save(os.path.join(d, "layer_mask.npy"), get_np(mask, mask_format(mask), 1)[..., 0])
        rep["layer_has_alpha"] = layer.has_alpha()
        rgb_after = get_np(layer, "R'G'B'A u8", 4)[..., :3]
        rep["layer_rgb_unchanged"] = bool(np.array_equal(rgb_after, np.load(os.path.join(d, "source.npy"))[..., :3]))
    before_ids = {e["id"] for e in rep["tree_before"]}

    def all_layers(items):
        for it in items:
            yield it
            if it.is_group_layer():
                yield from all_layers(it.get_children())

    for it in all_layers(image.get_layers()):
        if it.get_id() not in before_ids and not it.is_group_layer():
            np.save(os.path.join(d, "layers", f"{it.get_id()}.npy"), get_np(it, "R'G'B'A u8", 4))
    if case.get("retry"):  # the same call again after the cancel: must work (server survived)
        res2 = proc.run(cfg)
        rep["retry_status"] = res2.index(0).value_nick
        rep["tree_after_retry"] = tree(image)
        rep["selection_empty_after_retry"] = Gimp.Selection.is_empty(image)
    for extra in case.get("also", []):  # further procedure calls on the same image (README picture)
        cfg2 = Gimp.get_pdb().lookup_procedure(extra["proc"]).create_config()
        cfg2.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
        cfg2.set_property("image", image)
        cfg2.set_core_object_array("drawables", [layer])
        for k, v in extra.get("args", {}).items():
            cfg2.set_property(k, v)
        assert Gimp.get_pdb().lookup_procedure(extra["proc"]).run(cfg2).index(0) == Gimp.PDBStatusType.SUCCESS
    if case.get("stroke"):  # draw the selection's outline on a new top layer
        ink_layer(image, "outline", case["stroke"], max(2.0, image.get_width() / 400)).edit_stroke_selection()
    if case.get("stroke_paths"):  # draw every path (Pose to Path) on a new top layer
        ink = ink_layer(image, "skeleton", case["stroke_paths"], max(3.0, image.get_width() / 200))
        for path in image.get_paths():
            ink.edit_stroke_item(path)
    if os.path.exists(os.path.join(d, "dialog.xwd")):  # GIMP reads XWD: save the screen as PNG
        shot = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, gfile(os.path.join(d, "dialog.xwd")))
        Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, shot, gfile(os.path.join(d, "dialog.png")), None)
        shot.delete()
    if case.get("export"):
        Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, image, gfile(os.path.join(d, case["export"])), None)
    with open(os.path.join(d, "report.json"), "w") as f:
        json.dump(rep, f, indent=1)
    image.delete()


failures = []
for case in PLAN["cases"]:
    try:
        run_case(case)
        print("CASE-DONE", case["id"], flush=True)
    except Exception:
        traceback.print_exc()
        failures.append(case["id"])
        print("CASE-FAILED", case["id"], flush=True)
if failures:
    raise RuntimeError("batch cases failed: " + ", ".join(failures))
print("BATCH-OK", flush=True)
