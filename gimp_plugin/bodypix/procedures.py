"""GIMP 3 procedures: Select Person and the Select > Body Part entries (acting at once, with the
settings of Select > BodyPix Options...), Choose Body Parts, Body Parts to Layers, Person to Layer
Mask, Persons to Layers, Pose to Path.

Thin on purpose: every pixel decision is made by ``bodypix_gimp`` (core/) in a separate
process (``worker_client``); this file declares the procedures and their dialog, moves
pixels in and masks out (``pixels``) and wraps every change of the image in one undo group.
The image is changed only after the worker has succeeded, so an error or a cancel leaves
it untouched.  GIMP runs ``bodypix.py``, which calls ``main`` here.
"""

import json
import os
import sys
import time

import gi

gi.require_version("Gimp", "3.0")
import pixels  # noqa: E402
from gi.repository import Gimp, GLib, GObject  # noqa: E402
from worker_client import BodyPixError, Worker, load_config  # noqa: E402

PLUG_IN_BINARY = "bodypix"
TIMING_ENV = "BODYPIX_GIMP_TIMING"  # set: print where a call's time went (benchmark)
TIMES = {}
T0 = [time.perf_counter()]  # when the plug-in process's Python was up (main() sets it)
RUN_MODE = [Gimp.RunMode.NONINTERACTIVE]  # of the current call


def stamp(name):
    TIMES[name] = round((time.perf_counter() - T0[0]) * 1000, 1)


def timed(chunks, name):
    """Pass ``chunks`` through, adding the time spent producing them to ``TIMES[name]``."""
    TIMES[name] = 0.0
    it = iter(chunks)
    while True:
        t = time.perf_counter()
        chunk = next(it, None)
        TIMES[name] = round(TIMES[name] + (time.perf_counter() - t) * 1000, 1)
        if chunk is None:
            return
        yield chunk


SELECT_PERSON = "plug-in-bodypix-select-person"
SELECT_PARTS = "plug-in-bodypix-select-parts"
SELECT_OPTIONS = "plug-in-bodypix-select-options"
PARTS_TO_LAYERS = "plug-in-bodypix-parts-to-layers"
PERSON_TO_MASK = "plug-in-bodypix-person-to-layer-mask"
PERSONS_TO_LAYERS = "plug-in-bodypix-persons-to-layers"
POSE_TO_PATH = "plug-in-bodypix-pose-to-path"

PART_NAMES = (
    "left_face",
    "right_face",
    "left_upper_arm_front",
    "left_upper_arm_back",
    "right_upper_arm_front",
    "right_upper_arm_back",
    "left_lower_arm_front",
    "left_lower_arm_back",
    "right_lower_arm_front",
    "right_lower_arm_back",
    "left_hand",
    "right_hand",
    "torso_front",
    "torso_back",
    "left_upper_leg_front",
    "left_upper_leg_back",
    "right_upper_leg_front",
    "right_upper_leg_back",
    "left_lower_leg_front",
    "left_lower_leg_back",
    "right_lower_leg_front",
    "right_lower_leg_back",
    "left_feet",
    "right_feet",
)  # fmt: skip  (names only, for the dialog; the core owns what they mean)
GROUPS = ("person", "face", "hands", "arms", "legs", "feet", "torso", "upper_body", "lower_body", "custom")
PART_MENU = "<Image>/Select/Body Part (BodyPix)"
# Select > Body Part (BodyPix) > ...: procedure -> (group, menu label, what it selects).
# The group names are the core's (bodypix_gimp.result.PART_GROUPS); the core resolves them.
INSTANT_PARTS = {
    "plug-in-bodypix-select-face": ("face", "_Face", "the face (head and hair, as body-pix labels it)"),
    "plug-in-bodypix-select-hands": ("hands", "_Hands", "both hands, with the fingers"),
    "plug-in-bodypix-select-arms": ("arms", "_Arms", "the arms, upper and lower, without the hands"),
    "plug-in-bodypix-select-legs": ("legs", "_Legs", "the legs, upper and lower, without the feet"),
    "plug-in-bodypix-select-feet": ("feet", "F_eet", "the feet"),
    "plug-in-bodypix-select-torso": ("torso", "_Torso", "the torso"),
    "plug-in-bodypix-select-upper-body": ("upper_body", "_Upper Body", "face, arms, hands and torso"),
    "plug-in-bodypix-select-lower-body": ("lower_body", "Lo_wer Body", "legs and feet"),
}
# Entries that act at once (no dialog) with the settings Select > BodyPix Options... remembers.
INSTANT = (SELECT_PERSON, *INSTANT_PARTS)
# Those settings: a global persistent parasite (GIMP keeps it in the profile's parasiterc).
OPTIONS_PARASITE = "bodypix-gimp-select-options"
SHARED_ARGUMENTS = ("source", "quality", "refine-edges", "recover-fingers", "threshold", "internal-resolution",
                    "soft-edges", "operation", "inside-selection", "include-held")  # fmt: skip
# Menu defaults that differ from the PDB argument defaults (scripts keep the old behaviour):
# a rough rectangle around one person, then Select > Person, selects that person.
MENU_DEFAULTS = {"inside-selection": True}
OPERATIONS = {
    "replace": Gimp.ChannelOps.REPLACE,
    "add": Gimp.ChannelOps.ADD,
    "subtract": Gimp.ChannelOps.SUBTRACT,
    "intersect": Gimp.ChannelOps.INTERSECT,
}

DOCS = {
    SELECT_PERSON: (
        "Select the person (or people) in the active layer",
        "Runs BodyPix 2.0 on the active layer (or on everything visible) and makes the person mask the "
        "selection, with the usual modes (replace, add, subtract, intersect). With 'Only persons inside "
        "the selection', only people who overlap the existing selection are selected: draw a rectangle "
        "around one person in a group photo, then call this. From the menu it acts at once with the "
        "settings of Select > BodyPix Options... (there 'Only persons inside the selection' is on).",
        "<Image>/Select",
        "_Person (BodyPix)",
    ),
    SELECT_PARTS: (
        "Select body parts (face, hands, arms, legs, feet, torso or any of 24 parts)",
        "Runs BodyPix 2.0 and selects the chosen body-part group, or with group 'custom' the parts ticked in "
        "the dialog and those named in 'Parts' (comma separated, e.g. 'left_hand,right_hand'). Part names: "
        + ", ".join(PART_NAMES)
        + ".",
        PART_MENU,
        "_Choose Parts...",
    ),
    SELECT_OPTIONS: (
        "Settings of Select > Person (BodyPix) and Select > Body Part (BodyPix)",
        "Opens the settings the Select entries that act at once use (source, quality, edges, fingers, "
        "threshold, internal resolution, what people hold, soft edges, mode, only persons inside the selection) and "
        "remembers them, also across GIMP sessions. Changes nothing in the image. Called from a script, "
        "it stores the values it is given.",
        "<Image>/Select",
        "BodyPix _Options...",
    ),
    PARTS_TO_LAYERS: (
        "Body parts to a layer group and channels",
        "Adds a layer group above the active layer with one mask layer per body part that is present "
        "(named by part, e.g. 'left hand'), a coloured part map at reduced opacity, and the same masks as "
        "channels (saved selections) so any part can be re-selected from the Channels dock.",
        "<Image>/Layer",
        "Body Parts to _Layers (BodyPix)...",
    ),
    PERSON_TO_MASK: (
        "Person mask as layer mask of the active layer",
        "Runs BodyPix 2.0 and adds the person mask as a layer mask of the active layer (the classic "
        "cut-out). The layer's pixels are not changed; an alpha channel is added when the layer has none.",
        "<Image>/Layer/Mask",
        "Person to Layer _Mask (BodyPix)...",
    ),
    PERSONS_TO_LAYERS: (
        "Each person to a layer and a channel (group photos)",
        "Tells the people in the active layer apart (BodyPix multi-person) and adds a layer group above it "
        "with one coloured mask layer per person, named 'Person 1', 'Person 2', ... from left to right, "
        "and the same masks as channels, so each person can be re-selected from the Channels dock.",
        "<Image>/Layer",
        "P_ersons to Layers (BodyPix)...",
    ),
    POSE_TO_PATH: (
        "Each person's pose skeleton as a path",
        "Finds every person's pose (17 keypoints, BodyPix multi-person) and adds one path per person, "
        "named 'Pose 1', 'Pose 2', ... from left to right, with the skeleton's segments (shoulder to elbow, "
        "hip to knee, ...) whose two keypoints are confidently found, each as its own open stroke: stroke "
        "the path or use it as a drawing guide.",
        "<Image>/Layer",
        "Pose to _Path (BodyPix)...",
    ),
}


for _name, (_group, _label, _what) in INSTANT_PARTS.items():
    DOCS[_name] = (
        f"Select {_what} of the person (or people) in the active layer",
        f"Runs BodyPix 2.0 on the active layer (or on everything visible) and selects {_what}, with the usual "
        "modes (replace, add, subtract, intersect) and 'Only persons inside the selection'. From the menu it "
        "acts at once with the settings of Select > BodyPix Options...; a script passes them as arguments. "
        f"Same as Choose Parts with group '{_group}'.",
        PART_MENU,
        _label,
    )


def choice(*items):
    c = Gimp.Choice.new()
    for i, (nick, label) in enumerate(items):
        c.add(nick, i, label, "")
    return c


def add_common_arguments(p, soft=False):
    """Quality knobs every procedure shares; defaults are the product defaults."""
    rw = GObject.ParamFlags.READWRITE
    p.add_choice_argument(
        "source",
        "_Source",
        "Which pixels to analyse",
        choice(("layer", "Active layer"), ("visible", "Everything visible (merged copy)")),
        "layer",
        rw,
    )
    p.add_choice_argument(
        "quality",
        "_Quality",
        "fast: MobileNet stride 16; accurate: stride 8 (slower)",
        choice(("fast", "Fast"), ("accurate", "Accurate")),
        "fast",
        rw,
    )
    p.add_boolean_argument("refine-edges", "_Refine edges", "Move the mask edge onto the real edge", True, rw)
    p.add_boolean_argument("recover-fingers", "Recover _fingers", "Add fingers BodyPix misses", True, rw)
    p.add_double_argument(
        "threshold", "_Threshold", "Person probability threshold (body-pix default 0.7)", 0.0, 1.0, 0.7, rw
    )
    p.add_choice_argument(
        "internal-resolution",
        "_Internal resolution",
        "Network input size relative to the photo",
        choice(("low", "Low"), ("medium", "Medium"), ("high", "High"), ("full", "Full")),
        "medium",
        rw,
    )
    p.add_boolean_argument(
        "include-held", "Include what people _hold", "A held object (a helmet, a ball) wholly in the person, "
        "or wholly out when off; never a body part", True, rw)
    if soft:
        p.add_boolean_argument("soft-edges", "So_ft edges", "Partial selection along the edge", False, rw)


def add_selection_arguments(p):
    rw = GObject.ParamFlags.READWRITE
    p.add_choice_argument(
        "operation",
        "_Mode",
        "How to combine with the current selection",
        choice(("replace", "Replace"), ("add", "Add"), ("subtract", "Subtract"), ("intersect", "Intersect")),
        "replace",
        rw,
    )
    p.add_boolean_argument(
        "inside-selection",
        "Only persons _inside the selection",
        "Select only the people who overlap the current selection",
        False,
        rw,
    )


def options_of(config, soft=False):
    """Dialog values -> the worker's options (the core turns them into Settings)."""
    opts = {
        "quality": config.get_property("quality"),
        "refine": config.get_property("refine-edges"),
        "fingers": config.get_property("recover-fingers"),
        "threshold": config.get_property("threshold"),
        "internal_resolution": config.get_property("internal-resolution"),
        "include_held": config.get_property("include-held"),
    }
    if soft:
        opts["soft_edges"] = config.get_property("soft-edges")
    return opts


def source_layer(drawables):
    """The one layer the procedure works on; a clear message otherwise."""
    if len(drawables) != 1:
        raise BodyPixError(f"Select exactly one layer ({len(drawables)} items are selected).", "input")
    d = drawables[0]
    if d.is_layer_mask():
        d = Gimp.Layer.from_mask(d)
    if not d.is_layer():
        raise BodyPixError(f"'{d.get_name()}' is not a layer; select the layer to analyse.", "input")
    return d


def compute(image, layer, config, op, target_rect, parts=None, with_selection=False, soft=False):
    """Run the worker on the chosen pixels; returns (result, worker) for reading the items."""
    cfg = load_config()
    Gimp.progress_init("BodyPix: starting")

    def progress(fraction, message):
        Gimp.progress_set_text("BodyPix: " + message)
        Gimp.progress_update(0.1 + 0.8 * fraction)

    request = {
        "op": op,
        "options": options_of(config, soft),
        "label": layer.get_name(),
        "target_rect": list(target_rect),
        "parts": parts or [],
    }
    visible = config.get_property("source") == "visible"
    worker = Worker(cfg, request, progress)
    worker.linger = True  # the server waits for this process to end (or 1 s) before its cache's work
    try:
        if visible:
            # the source rectangle is only known after merging; start the worker afterwards
            data, channels, rect = pixels.read_visible(image)
            worker.request["channels"] = channels
            worker.request["source_rect"] = list(rect)
            worker.request["label"] = "visible image"
        else:
            rect = pixels.rect_of(layer)
            worker.request["source_rect"] = list(rect)
            worker.request["channels"] = pixels.read_source_channels(layer)
        selection = pixels.read_selection(image, rect) if with_selection else None
        worker.request["selection"] = selection is not None
        stamp("worker_started")
        worker.start()
        stamp("connected")
        if not visible:  # strip by strip out of GIMP, each sent while GIMP delivers the next
            data = timed(pixels.source_strips(layer), "pixels_read_from_gimp_ms")
        Gimp.progress_update(0.1)
        result = worker.finish(data, selection)
        TIMES["pixels_sent"] = round((worker.sent_at - T0[0]) * 1000, 1)
        stamp("worker_done")
        TIMES["worker"] = result.get("worker_ms")
        TIMES["core"] = result.get("timings_ms")
        TIMES["cache"] = result.get("cache")  # "hit": the worker had segmented these very pixels
    except BaseException:
        worker.__exit__(None, None, None)
        raise
    Gimp.progress_set_text("BodyPix: writing results")
    Gimp.progress_update(0.9)
    return result, worker


def canvas(image):
    return 0, 0, image.get_width(), image.get_height()


def apply_selection(image, worker, item, operation):
    """Mask bytes -> selection, through a temporary channel (select_item does the modes)."""
    layers = image.get_selected_layers()
    tmp = pixels.new_channel(image, "bodypix (temporary)")
    pixels.write_mask(tmp, worker.read_item(item), item["rect"])
    image.select_item(OPERATIONS[operation], tmp)
    image.remove_channel(tmp)
    image.set_selected_layers(layers)


def do_select_person(procedure, image, layer, config):
    inside = config.get_property("inside-selection")
    result, worker = compute(image, layer, config, "select-person", canvas(image), with_selection=inside, soft=True)
    with worker, undo_group(image):
        apply_selection(image, worker, result["items"][0], config.get_property("operation"))


def part_aux_name(part):
    """``left_hand`` -> ``part-left-hand``: the dialog's tick box for one part."""
    return "part-" + part.replace("_", "-")


def chosen_parts(config):
    """The parts Select Body Parts works on: a group, or for 'custom' the ticked parts
    (dialog) and the names in 'Parts' (scripts)."""
    group = config.get_property("group")
    if group != "custom":
        return [group]
    # tick boxes are dialog state: a script (non-interactive) names its parts in 'Parts'
    interactive = RUN_MODE[0] != Gimp.RunMode.NONINTERACTIVE
    ticked = [n for n in PART_NAMES if interactive and config.get_property(part_aux_name(n))]
    typed = [p.strip().replace(" ", "_") for p in config.get_property("parts").split(",") if p.strip()]
    parts = list(dict.fromkeys(ticked + typed))
    if not parts:
        raise BodyPixError("Group 'custom': tick some parts or name them in 'Parts', e.g. left_hand.", "config")
    return parts


def do_select_parts(procedure, image, layer, config):
    name = procedure.get_name()
    parts = [INSTANT_PARTS[name][0]] if name in INSTANT_PARTS else chosen_parts(config)
    inside = config.get_property("inside-selection")
    result, worker = compute(image, layer, config, "select-parts", canvas(image), parts=parts, with_selection=inside)
    with worker, undo_group(image):
        apply_selection(image, worker, result["items"][0], config.get_property("operation"))


def group_above(image, layer, name):
    """A new layer group right above ``layer``, in the same parent."""
    group = Gimp.GroupLayer.new(image, name)
    image.insert_layer(group, layer.get_parent(), image.get_item_position(layer))
    return group


def do_parts_to_layers(procedure, image, layer, config):
    result, worker = compute(image, layer, config, "parts-to-layers", canvas(image))
    with worker, undo_group(image):
        selected = image.get_selected_layers()
        group = group_above(image, layer, "Body parts: " + layer.get_name())
        position = 0
        n_channels = 0  # new channels go on top in part order (left face first)
        for item in result["items"]:
            data = worker.read_item(item)
            if item["kind"] == "part-map":
                part_map = pixels.new_layer(image, "part map", item["rect"], opacity=50.0)
                image.insert_layer(part_map, group, 0)
                position += 1
                pixels.write(part_map, data, (0, 0) + tuple(item["rect"][2:]), pixels.RGBA)
            elif item["kind"] == "part":
                part = pixels.new_layer(image, item["name"], item["rect"])
                image.insert_layer(part, group, position)
                position += 1
                part.set_visible(False)
                pixels.write(
                    part,
                    pixels.solid_rgba(item["color"], data),
                    (0, 0) + tuple(item["rect"][2:]),
                    pixels.RGBA,
                )
                ch = pixels.new_channel(image, item["name"], item["color"], position=n_channels)
                n_channels += 1
                pixels.write_mask(ch, data, item["rect"])
            elif item["kind"] == "person":
                ch = pixels.new_channel(image, "person", (255, 255, 255), position=n_channels)
                pixels.write_mask(ch, data, item["rect"])
        image.set_selected_layers(selected)


def do_person_to_mask(procedure, image, layer, config):
    if layer.get_mask() is not None:
        raise BodyPixError(f"'{layer.get_name()}' already has a layer mask; apply or delete it first.", "input")
    result, worker = compute(image, layer, config, "person-mask", pixels.rect_of(layer), soft=True)
    with worker, undo_group(image):
        if not layer.has_alpha() and not layer.is_group_layer():
            layer.add_alpha()
        mask = layer.create_mask(Gimp.AddMaskType.BLACK)
        layer.add_mask(mask)
        item = result["items"][0]
        _, ox, oy = layer.get_offsets()
        pixels.write_mask(mask, worker.read_item(item), item["rect"], origin=(ox, oy))


def do_persons_to_layers(procedure, image, layer, config):
    result, worker = compute(image, layer, config, "persons-to-layers", canvas(image))
    with worker, undo_group(image):
        selected = image.get_selected_layers()
        group = group_above(image, layer, "Persons: " + layer.get_name())
        # Person 1 (leftmost) on top, in the group and in the Channels dock
        for position, item in enumerate(result["items"]):
            data = worker.read_item(item)
            person = pixels.new_layer(image, item["name"], item["rect"], opacity=50.0)
            image.insert_layer(person, group, position)
            pixels.write(person, pixels.solid_rgba(item["color"], data), (0, 0) + tuple(item["rect"][2:]), pixels.RGBA)
            ch = pixels.new_channel(image, item["name"], item["color"], position=position)
            pixels.write_mask(ch, data, item["rect"])
        image.set_selected_layers(selected)


def do_pose_to_path(procedure, image, layer, config):
    result, worker = compute(image, layer, config, "pose-to-path", canvas(image))
    with worker, undo_group(image):
        for position, item in enumerate(result["items"]):
            path = Gimp.Path.new(image, item["name"])
            for x0, y0, x1, y1 in item["segments"]:  # one open two-point stroke per bone
                stroke = path.bezier_stroke_new_moveto(x0, y0)
                path.bezier_stroke_lineto(stroke, x1, y1)
            image.insert_path(path, None, position)
            path.set_visible(True)


class undo_group:
    """Everything inside is one undo step (and is closed even when something fails)."""

    def __init__(self, image):
        self.image = image

    def __enter__(self):
        self.image.undo_group_start()

    def __exit__(self, *exc):
        self.image.undo_group_end()
        return False


# ------------------------------------------------------- settings the instant entries use ---
def stored_options():
    """The values Select > BodyPix Options... stored (argument name -> value); {} when none."""
    parasite = Gimp.get_parasite(OPTIONS_PARASITE)
    if parasite is None:
        return {}
    try:
        values = json.loads(bytes(parasite.get_data()).decode("utf-8"))
    except ValueError:
        return {}  # unreadable: the defaults, as if nothing were stored
    return values if isinstance(values, dict) else {}


def acceptable(pspec, value):
    """Whether ``value`` (from the stored JSON) fits the argument ``pspec`` of this version."""
    if GObject.type_name(pspec.__gtype__) == "GimpParamChoice":
        return isinstance(value, str) and Gimp.param_spec_choice_get_choice(pspec).is_valid(value)
    if pspec.value_type == GObject.TYPE_BOOLEAN:
        return isinstance(value, bool)
    if pspec.value_type == GObject.TYPE_DOUBLE:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and \
            pspec.minimum <= value <= pspec.maximum  # fmt: skip
    return False


def use_stored_options(config):
    """Give ``config`` the remembered settings (menu defaults where none is stored)."""
    stored = stored_options()
    for name in SHARED_ARGUMENTS:
        pspec = config.find_property(name)
        if pspec is None:
            continue  # e.g. soft edges: not an argument of the body-part entries
        default = MENU_DEFAULTS.get(name, pspec.get_default_value())
        value = stored.get(name, default)
        config.set_property(name, value if acceptable(pspec, value) else default)


def store_options(config):
    """Remember ``config``'s shared settings for the instant entries (global persistent parasite)."""
    values = {name: config.get_property(name) for name in SHARED_ARGUMENTS}
    data = json.dumps(values, sort_keys=True).encode("utf-8")
    Gimp.attach_parasite(Gimp.Parasite.new(OPTIONS_PARASITE, Gimp.PARASITE_PERSISTENT, data))


def run_options(procedure, run_mode, config):
    """Select > BodyPix Options...: the dialog, then remember; a script's values are remembered as given."""
    if run_mode == Gimp.RunMode.INTERACTIVE:
        use_stored_options(config)
        if not show_dialog(procedure, config):
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    store_options(config)
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


RUNNERS = {
    SELECT_PERSON: do_select_person,
    **{name: do_select_parts for name in INSTANT_PARTS},
    SELECT_PARTS: do_select_parts,
    PARTS_TO_LAYERS: do_parts_to_layers,
    PERSON_TO_MASK: do_person_to_mask,
    PERSONS_TO_LAYERS: do_persons_to_layers,
    POSE_TO_PATH: do_pose_to_path,
}


def show_dialog(procedure, config):
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi

    GimpUi.init(PLUG_IN_BINARY)
    dialog = GimpUi.ProcedureDialog.new(procedure, config, procedure.get_menu_label().replace("_", ""))
    try:
        if procedure.get_name() != SELECT_PARTS:
            raise LookupError
        # the 24 tick boxes in a flow box under the group choice, not one long column
        flow = dialog.fill_flowbox("parts-box", [part_aux_name(n) for n in PART_NAMES])
        flow.set_min_children_per_line(3)
        dialog.fill_frame("parts-frame", None, False, "parts-box")
        rest = [a.get_name() for a in procedure.get_arguments()]
        rest = [a for a in rest if a not in ("run-mode", "image", "drawables", "group")]
        dialog.fill(["group", "parts-frame"] + rest)
    except (LookupError, TypeError, AttributeError):
        dialog.fill(None)  # every argument, one per row
    ok = dialog.run()
    dialog.destroy()
    return ok


def run(procedure, run_mode, image, drawables, config, data):
    name = procedure.get_name()
    stamp("run_called")
    RUN_MODE[0] = run_mode
    if name == SELECT_OPTIONS:
        return run_options(procedure, run_mode, config)
    try:
        layer = source_layer(drawables)
        if name in INSTANT:  # acts at once: from the menu (or "repeat") with the remembered settings
            if run_mode != Gimp.RunMode.NONINTERACTIVE:
                use_stored_options(config)
        elif run_mode == Gimp.RunMode.INTERACTIVE and not show_dialog(procedure, config):
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        RUNNERS[name](procedure, image, layer, config)
    except BodyPixError as e:
        Gimp.progress_end()
        status = Gimp.PDBStatusType.CALLING_ERROR if e.kind == "input" else Gimp.PDBStatusType.EXECUTION_ERROR
        return procedure.new_return_values(status, GLib.Error.new_literal(GLib.quark_from_string("bodypix"), str(e), 0))
    Gimp.progress_end()
    Gimp.displays_flush()
    stamp("applied")
    if os.environ.get(TIMING_ENV):
        # python_up_s: T0 on the system's monotonic clock (time.perf_counter), so a benchmark can
        # place the plug-in's steps within GIMP's call (the time before Python was up, and after)
        report = {"procedure": name, "ms_since_python_start": TIMES, "python_up_s": T0[0]}
        print("BODYPIX-TIMING " + json.dumps(report), file=sys.stderr, flush=True)
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


class BodyPix(Gimp.PlugIn):
    def do_set_i18n(self, name):
        return False

    def do_query_procedures(self):
        return [*RUNNERS, SELECT_OPTIONS]

    def do_create_procedure(self, name):
        blurb, help_text, menu, label = DOCS[name]
        p = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, None)
        p.set_image_types("*")
        p.set_sensitivity_mask(
            Gimp.ProcedureSensitivityMask.ALWAYS if name == SELECT_OPTIONS else Gimp.ProcedureSensitivityMask.DRAWABLE
        )
        p.set_menu_label(label)
        p.add_menu_path(menu)
        p.set_documentation(blurb, help_text, name)
        p.set_attribution("bodypix-gimp authors", "GPL-3.0-or-later", "2026")
        rw = GObject.ParamFlags.READWRITE
        if name == SELECT_PARTS:
            p.add_choice_argument(
                "group",
                "_Group",
                "Body-part group; 'custom' uses the Parts list",
                choice(*[(g, g.replace("_", " ").capitalize()) for g in GROUPS]),
                "person",
                rw,
            )
            p.add_string_argument("parts", "_Parts", "Comma-separated part names for group 'custom'", "", rw)
            for n in PART_NAMES:  # dialog tick boxes (aux: not part of the PDB signature)
                label = n.replace("_", " ").capitalize()
                p.add_boolean_aux_argument(part_aux_name(n), label, "Select " + label.lower(), False, rw)
        if name in (SELECT_PERSON, SELECT_PARTS, SELECT_OPTIONS, *INSTANT_PARTS):
            add_selection_arguments(p)
        add_common_arguments(p, soft=name in (SELECT_PERSON, PERSON_TO_MASK, SELECT_OPTIONS))
        return p


def main(t0):
    """Run the plug-in (GIMP's protocol); ``t0``: ``time.perf_counter()`` when its Python was up."""
    T0[0] = t0
    stamp("imported")  # gi, Gimp, Gegl and Babl loaded: the rest of start_to_run is GIMP's handshake
    Gimp.main(BodyPix.__gtype__, sys.argv)
