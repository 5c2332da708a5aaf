"""An embedded dataset in the real VOC layout, so everything runs without downloading VOC.

`make_synthetic_voc` writes ``root/VOCdevkit/VOC2012`` with JPEG photos, palettized PNG
masks and split lists, exactly as the real release lays them out. Each photo shows 1-4
objects of different classes over a textured background with clutter. Every class has
its own shape family, colour range and texture, but colour ranges overlap between
classes (blue: aeroplane/boat/train; red: bicycle/car/motorbike; browns: cat, chair,
cow, table, dog, horse...), so a model must use shape and texture, not colour alone.
Objects overlap (later ones on top), and a 4 px band of 255 marks every visible
outline, like VOC's boundary annotation.

Determinism: the classes of every image are planned up front from `seed`, and image i
is drawn with its own `numpy.random.Generator([seed, i])`, so the same arguments give
the same bytes (PIL's JPEG/PNG encoders are deterministic for fixed settings).
"""
import argparse
import concurrent.futures
import dataclasses
import glob
import json
import math
import multiprocessing
import os
import shutil

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from research import cli
from research.data import voc
from research.fileio import atomic_directory
from research.progress import ProgressBar

GENERATOR_VERSION = 1
MANIFEST_NAME = "synthetic_manifest.json"
BOUNDARY_RADIUS = 2          # pixels each side of an outline -> a 4 px band of 255
JPEG_QUALITY = 90
MIN_SIDE, MAX_SIDE = 200, 500
PARALLEL_FROM = 64           # samples; fewer are rendered in this process (no start-up cost)


@dataclasses.dataclass(frozen=True)
class ClassStyle:
    """How objects of one class look.

    shape: a shape family, a key of `SHAPE_FAMILIES`; aspect: (min, max) width/height;
    hue: (centre, spread) on the 0-1 hue circle; saturation, value: (min, max);
    texture: "stripes", "checks", "dots", "noise" or "smooth"; frequency: texture
    cycles per pixel; angle: texture direction in degrees; contrast: texture strength.
    """
    shape: str
    aspect: tuple
    hue: tuple
    saturation: tuple
    value: tuple
    texture: str
    frequency: float
    angle: float
    contrast: float


CLASS_STYLES = {  # index -> style; colour groups overlap on purpose (see module doc)
    1: ClassStyle("cross", (1.0, 1.4), (0.58, 0.05), (0.10, 0.35), (0.70, 0.95), "stripes", 0.06, 0, 0.25),    # aeroplane
    2: ClassStyle("wheels", (1.5, 2.0), (0.00, 0.04), (0.60, 0.90), (0.50, 0.80), "dots", 0.12, 0, 0.50),      # bicycle
    3: ClassStyle("triangle", (0.8, 1.3), (0.12, 0.05), (0.50, 0.90), (0.60, 0.90), "noise", 0.15, 0, 0.45),   # bird
    4: ClassStyle("boat", (1.2, 1.8), (0.58, 0.05), (0.40, 0.80), (0.40, 0.80), "stripes", 0.10, 90, 0.40),    # boat
    5: ClassStyle("bottle", (0.3, 0.45), (0.33, 0.06), (0.40, 0.80), (0.30, 0.70), "checks", 0.20, 0, 0.35),   # bottle
    6: ClassStyle("bus", (1.6, 2.2), (0.12, 0.04), (0.70, 1.00), (0.70, 1.00), "checks", 0.04, 0, 0.30),       # bus
    7: ClassStyle("car", (1.5, 2.2), (0.00, 0.05), (0.50, 0.90), (0.40, 0.80), "smooth", 0.00, 0, 0.30),       # car
    8: ClassStyle("eared", (1.0, 1.4), (0.07, 0.04), (0.40, 0.80), (0.50, 0.80), "stripes", 0.09, 45, 0.45),   # cat
    9: ClassStyle("chair", (0.6, 0.9), (0.08, 0.04), (0.50, 0.80), (0.30, 0.60), "stripes", 0.20, 0, 0.30),    # chair
    10: ClassStyle("ellipse", (1.3, 1.8), (0.07, 0.05), (0.10, 0.50), (0.20, 0.90), "dots", 0.03, 0, 0.70),    # cow
    11: ClassStyle("table", (1.3, 2.0), (0.08, 0.04), (0.40, 0.70), (0.40, 0.70), "noise", 0.05, 0, 0.30),     # diningtable
    12: ClassStyle("floppy", (1.0, 1.4), (0.09, 0.05), (0.30, 0.70), (0.40, 0.80), "noise", 0.25, 0, 0.40),    # dog
    13: ClassStyle("polygon", (1.1, 1.5), (0.06, 0.04), (0.50, 0.80), (0.30, 0.60), "smooth", 0.00, 0, 0.30),  # horse
    14: ClassStyle("motorbike", (1.4, 1.9), (0.00, 0.05), (0.50, 0.90), (0.30, 0.70), "checks", 0.15, 0, 0.40),  # motorbike
    15: ClassStyle("person", (0.35, 0.5), (0.05, 0.45), (0.30, 0.80), (0.40, 0.90), "stripes", 0.15, 90, 0.40),  # person
    16: ClassStyle("star", (0.8, 1.2), (0.33, 0.06), (0.50, 0.90), (0.30, 0.70), "noise", 0.20, 0, 0.50),      # pottedplant
    17: ClassStyle("blob", (1.1, 1.5), (0.12, 0.05), (0.00, 0.20), (0.75, 1.00), "dots", 0.25, 0, 0.30),       # sheep
    18: ClassStyle("sofa", (1.5, 2.0), (0.83, 0.06), (0.30, 0.70), (0.30, 0.70), "checks", 0.08, 0, 0.35),     # sofa
    19: ClassStyle("train", (2.8, 4.0), (0.58, 0.06), (0.40, 0.80), (0.40, 0.80), "stripes", 0.05, 0, 0.35),   # train
    20: ClassStyle("frame", (1.2, 1.5), (0.83, 0.30), (0.00, 0.20), (0.10, 0.40), "noise", 0.50, 0, 0.25),     # tvmonitor
}

# ---------------------------------------------------------------- drawing helpers
# Shapes are drawn into an "L" canvas the size of the object's box: 255 marks the main
# part, 128 a secondary part (head, ears, wheels, screen...) that gets a darker colour.
MAIN, PART = 255, 128


def _regular_polygon(cx, cy, rx, ry, count, radii, rotation):
    angles = rotation + 2 * np.pi * np.arange(count) / count
    return [(cx + rx * r * math.cos(a), cy + ry * r * math.sin(a)) for a, r in zip(angles, radii)]


def _wheel_pair(draw, w, h, thickness, bar_fill):
    radius = min(h * 0.45, w * 0.25)
    centres = [(radius, h - radius - 1), (w - radius - 1, h - radius - 1)]
    cx0, cx1, cy = centres[0][0], centres[1][0], centres[0][1]
    draw.polygon([(cx0, cy), (w * 0.5, h * 0.15), (cx1, cy)], outline=bar_fill,
                 fill=bar_fill if thickness > 0.4 else None, width=max(3, int(radius * 0.2)))
    for cx, cy in centres:
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=MAIN)
        inner = radius * (1 - thickness)
        draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=0)


# ---------------------------------------------------------------- shape families
# One function per family: draw(draw, w, h, rng) paints the object's box [0, w) x [0, h)
# of an "L" canvas with MAIN and PART. x1, y1 = w - 1, h - 1 are the box's last pixels.

def _ellipse(draw, w, h, rng):
    draw.ellipse([0, 0, w - 1, h - 1], fill=MAIN)


def _cross(draw, w, h, rng):
    """Fuselage, wings and tail."""
    x1, y1 = w - 1, h - 1
    draw.rectangle([0, h * 0.4, x1, h * 0.6], fill=MAIN)
    draw.polygon([(w * 0.35, 0), (w * 0.55, 0), (w * 0.6, y1), (w * 0.4, y1)], fill=MAIN)
    draw.rectangle([0, h * 0.2, w * 0.1, h * 0.8], fill=PART)


def _wheels(draw, w, h, rng):
    _wheel_pair(draw, w, h, thickness=0.25, bar_fill=PART)


def _motorbike(draw, w, h, rng):
    _wheel_pair(draw, w, h, thickness=0.55, bar_fill=MAIN)


def _triangle(draw, w, h, rng):
    """A triangle with a random apex and a beak."""
    x1, y1 = w - 1, h - 1
    apex = rng.uniform(0.2, 0.8) * w
    draw.polygon([(apex, 0), (0, y1 * rng.uniform(0.7, 1.0)), (x1, y1)], fill=MAIN)
    draw.polygon([(apex, 0), (apex - w * 0.1, h * 0.2), (apex + w * 0.1, h * 0.2)], fill=PART)


def _boat(draw, w, h, rng):
    """Hull and sail."""
    x1, y1 = w - 1, h - 1
    draw.polygon([(0, h * 0.6), (x1, h * 0.6), (w * 0.8, y1), (w * 0.2, y1)], fill=MAIN)
    draw.polygon([(w * 0.45, 0), (w * 0.45, h * 0.58), (w * 0.85, h * 0.58)], fill=PART)


def _bottle(draw, w, h, rng):
    """Body, shoulders and neck."""
    x1, y1 = w - 1, h - 1
    draw.rectangle([0, h * 0.35, x1, y1], fill=MAIN)
    draw.polygon([(0, h * 0.35), (w * 0.3, h * 0.2), (w * 0.7, h * 0.2), (x1, h * 0.35)], fill=MAIN)
    draw.rectangle([w * 0.3, 0, w * 0.7, h * 0.2], fill=PART)


def _bus(draw, w, h, rng):
    """Body, four windows, two wheels."""
    x1, y1 = w - 1, h - 1
    draw.rectangle([0, 0, x1, y1 * 0.9], fill=MAIN)
    for i in range(4):
        draw.rectangle([w * (0.05 + 0.23 * i), h * 0.15, w * (0.22 + 0.23 * i), h * 0.4], fill=PART)
    for cx in (w * 0.2, w * 0.8):
        draw.ellipse([cx - h * 0.12, h * 0.76, cx + h * 0.12, y1], fill=PART)


def _car(draw, w, h, rng):
    """Rounded body, cabin, two wheels."""
    x1, y1 = w - 1, h - 1
    draw.rounded_rectangle([0, h * 0.35, x1, h * 0.85], radius=int(h * 0.15), fill=MAIN)
    draw.polygon([(w * 0.2, h * 0.36), (w * 0.35, 0), (w * 0.7, 0), (w * 0.85, h * 0.36)], fill=MAIN)
    for cx in (w * 0.22, w * 0.78):
        draw.ellipse([cx - h * 0.16, h * 0.68, cx + h * 0.16, y1], fill=PART)


def _animal_body(draw, w, h):
    """Body and head of the two four-legged families."""
    draw.ellipse([0, h * 0.25, w - 1, h - 1], fill=MAIN)
    draw.ellipse([w * 0.55, h * 0.05, w * 0.95, h * 0.55], fill=MAIN)


def _eared(draw, w, h, rng):
    """Body, head and pointed ears."""
    _animal_body(draw, w, h)
    draw.polygon([(w * 0.58, h * 0.2), (w * 0.62, 0), (w * 0.72, h * 0.12)], fill=PART)
    draw.polygon([(w * 0.78, h * 0.12), (w * 0.88, 0), (w * 0.92, h * 0.2)], fill=PART)


def _floppy(draw, w, h, rng):
    """Body, head and hanging ears."""
    _animal_body(draw, w, h)
    draw.ellipse([w * 0.5, h * 0.1, w * 0.62, h * 0.45], fill=PART)
    draw.ellipse([w * 0.88, h * 0.1, w - 1, h * 0.45], fill=PART)


def _chair(draw, w, h, rng):
    """An L (back and seat) on two legs."""
    x1, y1 = w - 1, h - 1
    draw.rectangle([0, 0, w * 0.25, h * 0.65], fill=MAIN)
    draw.rectangle([0, h * 0.5, x1, h * 0.65], fill=MAIN)
    draw.rectangle([0, h * 0.65, w * 0.12, y1], fill=PART)
    draw.rectangle([w * 0.88, h * 0.65, x1, y1], fill=PART)


def _table(draw, w, h, rng):
    """A T on two legs."""
    x1, y1 = w - 1, h - 1
    draw.rectangle([0, 0, x1, h * 0.2], fill=MAIN)
    draw.rectangle([w * 0.08, h * 0.2, w * 0.18, y1], fill=PART)
    draw.rectangle([w * 0.82, h * 0.2, w * 0.92, y1], fill=PART)


def _polygon(draw, w, h, rng):
    """A random 7- to 10-gon."""
    count = int(rng.integers(7, 11))
    radii = rng.uniform(0.55, 1.0, count)
    draw.polygon(_regular_polygon(w / 2, h / 2, w / 2, h / 2, count, radii, rng.uniform(0, 6.3)), fill=MAIN)


def _person(draw, w, h, rng):
    """Body, legs and head."""
    y1 = h - 1
    draw.ellipse([w * 0.15, h * 0.22, w * 0.85, h * 0.75], fill=MAIN)
    draw.rectangle([w * 0.25, h * 0.6, w * 0.45, y1], fill=MAIN)
    draw.rectangle([w * 0.55, h * 0.6, w * 0.75, y1], fill=MAIN)
    draw.ellipse([w * 0.25, 0, w * 0.75, h * 0.22], fill=PART)


def _star(draw, w, h, rng):
    """A five-pointed star in a pot."""
    radii = np.tile([1.0, 0.45], 5)
    draw.polygon(_regular_polygon(w / 2, h * 0.45, w / 2, h * 0.45, 10, radii, -np.pi / 2), fill=MAIN)
    draw.rectangle([w * 0.3, h * 0.75, w * 0.7, h - 1], fill=PART)


def _blob(draw, w, h, rng):
    """6 to 9 overlapping circles and a face."""
    for _ in range(int(rng.integers(6, 10))):
        r = rng.uniform(0.18, 0.3) * min(w, h)
        cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=MAIN)
    draw.ellipse([0, h * 0.3, w * 0.25, h * 0.7], fill=PART)


def _sofa(draw, w, h, rng):
    """A U (back and arms) around a cushion."""
    x1, y1 = w - 1, h - 1
    draw.rectangle([0, 0, x1, h * 0.45], fill=MAIN)
    draw.rectangle([0, 0, w * 0.15, y1], fill=MAIN)
    draw.rectangle([w * 0.85, 0, x1, y1], fill=MAIN)
    draw.rectangle([w * 0.15, h * 0.45, w * 0.85, h * 0.8], fill=PART)


def _train(draw, w, h, rng):
    """Three carriages with windows, joined by couplings."""
    cars = 3
    for i in range(cars):
        draw.rectangle([w * i / cars, 0, w * (i + 0.92) / cars, h - 1], fill=MAIN)
        draw.rectangle([w * (i + 0.1) / cars, h * 0.2, w * (i + 0.8) / cars, h * 0.45], fill=PART)
    draw.rectangle([0, h * 0.8, w - 1, h * 0.88], fill=MAIN)


def _frame(draw, w, h, rng):
    """A monitor: frame, screen, stand."""
    x1, y1 = w - 1, h - 1
    draw.rectangle([0, 0, x1, h * 0.82], fill=MAIN)
    draw.rectangle([w * 0.08, h * 0.08, w * 0.92, h * 0.74], fill=PART)
    draw.rectangle([w * 0.4, h * 0.82, w * 0.6, y1], fill=MAIN)


SHAPE_FAMILIES = {
    "ellipse": _ellipse, "cross": _cross, "wheels": _wheels, "motorbike": _motorbike,
    "triangle": _triangle, "boat": _boat, "bottle": _bottle, "bus": _bus, "car": _car,
    "eared": _eared, "floppy": _floppy, "chair": _chair, "table": _table,
    "polygon": _polygon, "person": _person, "star": _star, "blob": _blob, "sofa": _sofa,
    "train": _train, "frame": _frame,
}


def _draw_shape(shape, w, h, rng):
    """Draws one object of a shape family (`SHAPE_FAMILIES`) into a uint8 [h, w] canvas
    (0 / PART / MAIN), mirrored left-right half of the time."""
    if shape not in SHAPE_FAMILIES:
        raise ValueError(f"unknown shape family {shape!r}")
    canvas = Image.new("L", (w, h), 0)
    SHAPE_FAMILIES[shape](ImageDraw.Draw(canvas), w, h, rng)
    shape_mask = np.asarray(canvas)
    return shape_mask[:, ::-1] if rng.random() < 0.5 else shape_mask   # mirror half of them


def _value_noise(h, w, frequency, rng):
    """Smooth noise in [0, 1], float32 [h, w], about `frequency` bumps per pixel."""
    gh, gw = max(2, int(h * frequency) + 2), max(2, int(w * frequency) + 2)
    grid = Image.fromarray((rng.random((gh, gw)) * 255).astype(np.uint8))
    return np.asarray(grid.resize((w, h), Image.BICUBIC), dtype=np.float32) / 255.0


def _grid(h, w):
    """Row and column coordinates, float32 [h, 1] and [1, w] (they broadcast to [h, w])."""
    return np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]


def _texture(kind, h, w, frequency, angle_degrees, rng):
    """A pattern in [0, 1], float32 [h, w]."""
    yy, xx = _grid(h, w)
    angle = np.deg2rad(angle_degrees + rng.uniform(-15, 15))
    u = xx * np.cos(angle) + yy * np.sin(angle) + rng.uniform(0, 100)
    v = -xx * np.sin(angle) + yy * np.cos(angle) + rng.uniform(0, 100)
    f = 2 * np.pi * frequency * rng.uniform(0.85, 1.15)
    if kind == "stripes":
        return 0.5 + 0.5 * np.sin(f * u)
    if kind == "checks":
        return (np.sin(f * u) * np.sin(f * v) > 0).astype(np.float32)
    if kind == "dots":
        return (np.sin(f * u) * np.sin(f * v) > 0.55).astype(np.float32)
    if kind == "noise":
        return _value_noise(h, w, frequency, rng)
    if kind == "smooth":
        return (u - u.min()) / max(1.0, float(u.max() - u.min()))
    raise ValueError(f"unknown texture {kind!r}")


def _hsv_colour(hue, saturation, value):
    """RGB float32 [3] in 0..255 from HSV components in [0, 1]."""
    i = int(hue * 6) % 6
    f = hue * 6 - math.floor(hue * 6)
    p, q, t = value * (1 - saturation), value * (1 - f * saturation), value * (1 - (1 - f) * saturation)
    rgb = [(value, t, p), (q, value, p), (p, value, t), (p, q, value), (t, p, value), (value, p, q)][i]
    return np.array(rgb, dtype=np.float32) * 255


def _class_colour(style, rng):
    centre, spread = style.hue
    return _hsv_colour((centre + rng.uniform(-spread, spread)) % 1.0,
                       rng.uniform(*style.saturation), rng.uniform(*style.value))


def _shading(h, w, rng, strength):
    """A linear light ramp around 1, float32 [h, w, 1]."""
    yy, xx = _grid(h, w)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (xx / max(w, 1)) * np.cos(angle) + (yy / max(h, 1)) * np.sin(angle)
    return (1 + strength * (ramp - ramp.mean()))[:, :, None]


def _paint_object(style, h, w, rng):
    """Colours of one object, float32 [h, w, 3] (main and secondary parts)."""
    main = _class_colour(style, rng)
    second = main * rng.uniform(0.3, 1.0 - style.contrast)
    pattern = _texture(style.texture, h, w, style.frequency, style.angle, rng)[:, :, None]
    colours = main * (1 - style.contrast * pattern) + second * (style.contrast * pattern)
    return colours * _shading(h, w, rng, 0.3)


def _background(h, w, rng):
    """A gradient with soft noise, a faint texture and clutter, float32 [h, w, 3]."""
    first = _hsv_colour(rng.random(), rng.uniform(0, 0.5), rng.uniform(0.3, 0.9))
    second = _hsv_colour(rng.random(), rng.uniform(0, 0.5), rng.uniform(0.3, 0.9))
    ramp = _texture("smooth", h, w, 0, rng.uniform(0, 360), rng)[:, :, None]
    image = first * (1 - ramp) + second * ramp
    image *= (0.8 + 0.4 * _value_noise(h, w, 0.02, rng))[:, :, None]
    kind = rng.choice(["stripes", "checks", "noise", "smooth"])
    image *= (1 - rng.uniform(0.05, 0.2) * _texture(kind, h, w, rng.uniform(0.02, 0.2), rng.uniform(0, 180), rng))[:, :, None]
    canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(3, 9))):    # clutter: lines and small blobs, label 0
        colour = tuple(int(c) for c in _hsv_colour(rng.random(), rng.random(), rng.random()))
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        size = rng.uniform(6, 30)
        if rng.random() < 0.5:
            draw.line([x, y, x + rng.uniform(-80, 80), y + rng.uniform(-80, 80)], fill=colour,
                      width=int(rng.integers(2, 6)))
        else:
            draw.ellipse([x, y, x + size, y + size * rng.uniform(0.5, 2)], fill=colour)
    return np.asarray(canvas, dtype=np.float32)


def _boundary_band(label, radius):
    """True where a pixel has a differently labelled pixel within `radius` (Chebyshev)."""
    padded = np.pad(label, radius, mode="edge")
    h, w = label.shape
    size = 2 * radius + 1

    def window(reduce):     # separable max / min filter over shifted views
        rows = reduce.reduce([padded[d:d + h] for d in range(size)])
        return reduce.reduce([rows[:, d:d + w] for d in range(size)])

    return window(np.maximum) != window(np.minimum)


def render_sample(classes, rng):
    """Draws one photo and its mask.

    Args:
      classes: the object classes (1..20), painted in this order (later on top).
      rng: a numpy Generator.
    Returns:
      (image uint8 [H, W, 3], mask uint8 [H, W] with values in `classes`, 0 and 255),
      H and W in [200, 500] and different.
    """
    while True:
        h, w = (int(v) for v in rng.integers(MIN_SIDE, MAX_SIDE + 1, size=2))
        if h != w:
            break
    image = _background(h, w, rng)
    label = np.zeros((h, w), dtype=np.uint8)
    for cls in classes:
        style = CLASS_STYLES[cls]
        aspect = rng.uniform(*style.aspect)                   # width / height
        side = math.sqrt(rng.uniform(0.06, 0.35) * h * w)
        ow = int(np.clip(side * math.sqrt(aspect), 40, w - 1))
        oh = int(np.clip(side / math.sqrt(aspect), 40, h - 1))
        x0, y0 = int(rng.integers(0, w - ow + 1)), int(rng.integers(0, h - oh + 1))
        shape = _draw_shape(style.shape, ow, oh, rng)
        colours = _paint_object(style, oh, ow, rng)
        colours = np.where((shape == PART)[:, :, None], colours * 0.45, colours)
        inside = shape > 0
        image[y0:y0 + oh, x0:x0 + ow][inside] = colours[inside]
        label[y0:y0 + oh, x0:x0 + ow][inside] = cls
    label[_boundary_band(label, BOUNDARY_RADIUS)] = voc.IGNORE_LABEL
    photo = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    photo = photo.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.0)))
    noisy = np.asarray(photo, dtype=np.float32) + 3.0 * rng.standard_normal((h, w, 3), dtype=np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8), label


# ---------------------------------------------------------------- the dataset

def plan_classes(num_images, seed):
    """The object classes of each image: 1-4 distinct ones, dealt from shuffled decks of
    all 20 so every class is used once there are 20 objects or more. List of lists."""
    rng = np.random.default_rng([seed, 20120000])
    deck = []
    plan = []
    for _ in range(num_images):
        chosen = []
        for _ in range(int(rng.integers(1, 5))):
            if not [c for c in deck if c not in chosen]:
                deck += [int(c) for c in rng.permutation(np.arange(1, voc.NUM_CLASSES))]
            pick = next(c for c in deck if c not in chosen)
            deck.remove(pick)
            chosen.append(pick)
        plan.append(chosen)
    return plan


def _manifest(num_train, num_val, seed):
    return {"generator": "research.data.synthetic.make_synthetic_voc", "version": GENERATOR_VERSION,
            "num_train": num_train, "num_val": num_val, "seed": seed}


def _read_manifest(voc_root):
    path = os.path.join(voc_root, MANIFEST_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: treat as a different manifest


def _is_complete(voc_root):
    try:
        ids = voc.read_split(voc_root, "trainval")
    except (OSError, ValueError):
        return False
    return all(os.path.isfile(voc.image_path(voc_root, i)) and os.path.isfile(voc.mask_path(voc_root, i))
               for i in ids)


def make_synthetic_voc(root, num_train, num_val, seed, overwrite=False, progress=True):
    """Writes a synthetic dataset in VOC layout under ``root/VOCdevkit/VOC2012``.

    Args:
      root: the folder to hold ``VOCdevkit``.
      num_train, num_val: number of images in train.txt and val.txt (trainval.txt is both).
      seed: int; the same arguments always give the same files, byte for byte.
      overwrite: replace a dataset made with other arguments (otherwise ValueError).
      progress: show a progress bar on stderr.
    Returns:
      The voc_root path (str).

    Re-running with the same arguments on a complete dataset does nothing. The dataset
    is written into a temporary folder that replaces ``VOC2012`` only when complete (a
    killed run leaves no half dataset; its leftovers are removed on the next run). A
    ``VOC2012`` folder without our manifest is regenerated, unless it looks like the
    real VOC release (it has ``Annotations/``), which is refused.
    """
    if num_train < 1 or num_val < 1:
        raise ValueError(f"need at least one train and one val image, got {num_train} and {num_val}")
    voc_root = voc.voc_root_in(root)
    wanted = _manifest(int(num_train), int(num_val), int(seed))
    found = _read_manifest(voc_root)
    if found == wanted and _is_complete(voc_root):
        return voc_root
    if os.path.isdir(voc_root) and not overwrite:
        if found is None and os.path.isdir(os.path.join(voc_root, "Annotations")):
            raise ValueError(f"{voc_root} looks like the real VOC release (it has Annotations/); "
                             f"refusing to overwrite it with synthetic data")
        if found and found != wanted:
            raise ValueError(f"{voc_root} holds a synthetic dataset made with {found}, not {wanted}; "
                             f"pass overwrite=True (--overwrite) or choose another root")
    for leftover in glob.glob(os.path.join(os.path.dirname(voc_root), ".VOC2012.*.tmp")):
        shutil.rmtree(leftover, ignore_errors=True)   # from a killed run
    _write_dataset(voc_root, wanted, progress)
    return voc_root


def _write_dataset(voc_root, manifest, progress):
    num_images = manifest["num_train"] + manifest["num_val"]
    seed = manifest["seed"]
    ids = [f"2012_{i:06d}" for i in range(1, num_images + 1)]
    order = np.random.default_rng([seed, 1]).permutation(num_images)
    train = sorted(ids[i] for i in order[:manifest["num_train"]])
    val = sorted(ids[i] for i in order[manifest["num_train"]:])
    plan = plan_classes(num_images, seed)
    bar = ProgressBar(total=num_images, desc="synthetic VOC", unit="img") if progress else None
    with atomic_directory(voc_root) as tmp:
        for sub in ("JPEGImages", "SegmentationClass", os.path.join("ImageSets", "Segmentation")):
            os.makedirs(os.path.join(tmp, sub))
        samples = [(tmp, image_id, classes, seed, number)
                   for number, (image_id, classes) in enumerate(zip(ids, plan), start=1)]
        for _ in _map_samples(_write_sample, samples):
            if bar:
                bar.update(1)
        for name, members in (("train", train), ("val", val), ("trainval", sorted(train + val))):
            with open(voc.split_file(tmp, name), "w", encoding="utf-8") as f:
                f.write("".join(i + "\n" for i in members))
        with open(os.path.join(tmp, MANIFEST_NAME), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
    if bar:
        bar.close()


def _write_sample(args):
    """Renders sample `number` (its own generator [seed, number]) and writes its JPEG and
    PNG into the dataset folder `tmp`; plain writes: the whole folder appears atomically
    when it is complete."""
    tmp, image_id, classes, seed, number = args
    image, mask = render_sample(classes, np.random.default_rng([seed, number]))
    Image.fromarray(image).save(voc.image_path(tmp, image_id), format="JPEG",
                                quality=JPEG_QUALITY, subsampling=2, optimize=False)
    voc.mask_to_png(mask).save(voc.mask_path(tmp, image_id), format="PNG")


def _map_samples(function, samples):
    """`map(function, samples)`, over every CPU core for a dataset worth it.

    Each sample has its own generator, so the bytes do not depend on the process that
    renders them. "spawn" processes: the caller may hold TensorFlow's threads, which a
    fork would copy in an undefined state (the workers import only NumPy and PIL).
    """
    workers = min(os.cpu_count() or 1, 8)
    if workers == 1 or len(samples) < PARALLEL_FROM:
        yield from map(function, samples)
        return
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        yield from pool.map(function, samples, chunksize=16)


def main(argv=None):
    """scripts/make_synthetic_voc.py's command line: writes the dataset, validates it,
    prints a summary; returns the exit status (0 when the written dataset validates)."""
    parser = argparse.ArgumentParser(
        description="Writes the embedded synthetic dataset in Pascal VOC layout, validates it, prints a summary.")
    parser.add_argument("--root", required=True, help="folder to hold VOCdevkit/VOC2012")
    parser.add_argument("--num-train", type=int, default=960, help="images in train.txt (default 960, as make demo)")
    parser.add_argument("--num-val", type=int, default=240, help="images in val.txt (default 240: 120 val + 120 test)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a synthetic dataset made with other arguments")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    return cli.run_main(lambda: _make_and_validate(args.root, args.num_train, args.num_val, args.seed,
                                                   args.overwrite, not args.no_progress))


def _make_and_validate(root, num_train, num_val, seed, overwrite, progress):
    from research.data.validate import validate_voc

    voc_root = make_synthetic_voc(root, num_train, num_val, seed, overwrite=overwrite, progress=progress)
    report = validate_voc(voc_root, progress=progress)
    print(report.format())
    if not report.ok:
        print(f"FAILED: the generated dataset has {len(report.problems)} problem(s)")
        return 1
    print(f"OK: --voc-root {voc_root}")
    return 0
