"""Pixels in and masks out of GIMP: buffers, channels, layers, the selection.

Only moves bytes (no numpy: GIMP's bundled Python on Windows/macOS may not have it).
Formats are chosen so that GEGL converts every image mode and precision for us:
"R'G'B'A u8" reads any layer (grey, indexed, 16/32-bit, linear or perceptual) as the
sRGB 8-bit values BodyPix expects; masks are written in the target's own encoding family
so a mask value p arrives as p (see shared/gimp3/README, "Channels vs selection").
"""

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("Babl", "0.1")
from gi.repository import Babl, Gegl, Gimp  # noqa: E402

RGBA = "R'G'B'A u8"
# 8-bit sRGB layers are read as stored: asking GEGL for another format costs a babl
# conversion (about 1 s the first time in a process for a 2 MP RGB layer read as RGBA).
NATIVE = {"R'G'B' u8": 3, "R'G'B'A u8": 4}

LAYER_TYPES = {
    Gimp.ImageBaseType.RGB: Gimp.ImageType.RGBA_IMAGE,
    Gimp.ImageBaseType.GRAY: Gimp.ImageType.GRAYA_IMAGE,
    Gimp.ImageBaseType.INDEXED: Gimp.ImageType.INDEXEDA_IMAGE,
}


def mask_format(drawable):
    """8-bit format in the drawable's own encoding family, so raw mask values survive."""
    enc = Babl.format_get_encoding(drawable.get_format())
    return "Y' u8" if enc.startswith("Y'") else "Y u8"


def rect_of(drawable):
    """(x, y, w, h) of a layer in image coordinates."""
    _, x, y = drawable.get_offsets()
    return x, y, drawable.get_width(), drawable.get_height()


def read(drawable, fmt=RGBA, rect=None):
    """Raw bytes of ``rect`` (drawable-local x, y, w, h; default: all) in ``fmt``."""
    x, y, w, h = rect or (0, 0, drawable.get_width(), drawable.get_height())
    raw = drawable.get_buffer().get(Gegl.Rectangle.new(x, y, w, h), 1.0, fmt, Gegl.AbyssPolicy.NONE)
    return bytes(raw)


def write(drawable, data, rect, fmt):
    """Write raw bytes into ``rect`` (drawable-local) of a drawable this plug-in just made.

    Straight into the buffer, not via the shadow buffer: merge_shadow() would clip the
    write to the user's current selection (as it does for filters), and new items need no
    undo step of their own (their creation is in the undo group).
    """
    x, y, w, h = rect
    if w <= 0 or h <= 0:
        return
    buf = drawable.get_buffer()
    buf.set(Gegl.Rectangle.new(x, y, w, h), fmt, data)
    buf.flush()
    drawable.update(x, y, w, h)


def read_source_channels(drawable):
    """How many channels ``read_source`` will deliver (known before reading, for the header)."""
    return NATIVE.get(Babl.format_get_encoding(drawable.get_format()), 3)


def source_format(drawable):
    """The format BodyPix gets a layer in: 8-bit sRGB as stored, anything else as R'G'B' u8."""
    enc = Babl.format_get_encoding(drawable.get_format())
    return enc if enc in NATIVE else "R'G'B' u8"


def read_source(drawable):
    """Pixels for BodyPix: (bytes, channels)."""
    fmt = source_format(drawable)
    return read(drawable, fmt), NATIVE[fmt]


# Rows per strip of ``source_strips``. One get() of a whole 12 MP layer took 100-190 ms in a
# fresh plug-in process, the same layer in strips of 32-64 rows 50-70 ms (GIMP 3.0.4, strips
# of 512 rows as slow as one get): each strip's tiles stay in the CPU cache on their way.
STRIP_ROWS = 64


def source_strips(drawable, rows=STRIP_ROWS):
    """``read_source``'s bytes as strips of ``rows`` rows, top to bottom (a generator), so each
    strip goes to the worker while GIMP delivers the next."""
    fmt = source_format(drawable)
    w, h = drawable.get_width(), drawable.get_height()
    buf = drawable.get_buffer()
    for y in range(0, h, rows):
        yield buf.get(Gegl.Rectangle.new(0, y, w, min(rows, h - y)), 1.0, fmt, Gegl.AbyssPolicy.NONE)


def read_visible(image):
    """Bytes of what is visible, canvas-sized: merged on a throw-away duplicate image."""
    dup = image.duplicate()
    try:
        dup.undo_disable()
        layer = dup.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
        if layer is None:
            raise ValueError("nothing is visible")
        w, h = image.get_width(), image.get_height()
        _, ox, oy = layer.get_offsets()
        if (ox, oy, layer.get_width(), layer.get_height()) != (0, 0, w, h):
            layer.resize(w, h, ox, oy)
        data, channels = read_source(layer)
        return data, channels, (0, 0, w, h)
    finally:
        dup.delete()


def read_selection(image, rect):
    """The selection over ``rect`` (image coordinates) as 1 byte per pixel, or None when empty."""
    if Gimp.Selection.is_empty(image):
        return None
    sel = image.get_selection()
    return read(sel, mask_format(sel), rect)


def new_channel(image, name, color=(0, 0, 0), opacity=50.0, visible=False, position=0):
    """A canvas-sized empty channel at ``position`` (0 = top); ``color``: how GIMP tints it when shown."""
    ch = Gimp.Channel.new(
        image,
        name,
        image.get_width(),
        image.get_height(),
        opacity,
        Gegl.Color.new("#{:02x}{:02x}{:02x}".format(*tuple(color))),
    )
    image.insert_channel(ch, None, position)
    ch.set_visible(visible)
    return ch


def write_mask(drawable, data, rect, origin=(0, 0)):
    """Mask bytes for ``rect`` (image coordinates) into a channel/mask placed at ``origin``."""
    x, y, w, h = rect
    write(drawable, data, (x - origin[0], y - origin[1], w, h), mask_format(drawable))


def new_layer(image, name, rect, opacity=100.0):
    """An empty layer with alpha, of the image's base type, at ``rect`` (image coordinates)."""
    x, y, w, h = rect
    layer = Gimp.Layer.new(image, name, w, h, LAYER_TYPES[image.get_base_type()], opacity, Gimp.LayerMode.NORMAL)
    layer.set_offsets(x, y)
    return layer


def solid_rgba(color, mask):
    """RGBA bytes: ``color`` everywhere, alpha = mask bytes (a coloured cut-out of a part)."""
    r, g, b = color
    out = bytearray(len(mask) * 4)
    out[0::4] = bytes([r]) * len(mask)
    out[1::4] = bytes([g]) * len(mask)
    out[2::4] = bytes([b]) * len(mask)
    out[3::4] = mask
    return bytes(out)
