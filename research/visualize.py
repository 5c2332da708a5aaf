"""Pictures of segmentation results, made with PIL + numpy only (no matplotlib).

- `error_map(image, truth, prediction)`: where a prediction is wrong, at a glance.
- `overlay(image, mask)`: a photo with its mask's colours blended in.
- `legend(class_ids)`: colour swatch + class name for each class shown.

Colours and names default to VOC's; every function that draws classes takes the
`class_names` and `palette` (uint8 [256, 3]) of the dataset (`research.data.datasets`).
- `sample_grid(images, truths, predictions, captions)`: one row per image:
  image | true mask | predicted mask | error map, with a legend below.
- `confusion_heatmap(confusion)`: the row-normalised confusion matrix, class names on
  both axes and the percentage in each cell.
- `write_png(path, array)`: writes any of these atomically.

Every picture function returns a uint8 RGB array [H, W, 3], so the same pictures can go
to a PNG file or to TensorBoard (`tf.summary.image` takes [1, H, W, 3] uint8).
Geometry lives in `GridLayout` and `HeatmapLayout`, which both the drawing code and the
tests use to find a cell.
"""
import dataclasses
import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from research.data import voc
from research.fileio import atomic_path

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
ERROR_COLOUR = (255, 0, 0)       # wrong pixels in an error map
IGNORE_COLOUR = (128, 128, 128)  # pixels whose label is `ignore_label`
DIM = 0.4                        # correct pixels: the photo at 40 % brightness
HEAT_COLOUR = (8, 48, 107)       # a 100 % cell of the heat map (0 % is white)
EMPTY_COLOUR = (230, 230, 230)   # a heat-map row whose class never occurs in the labels
GRID_COLUMNS = ("image", "true mask", "predicted mask", "errors (red) / ignored (grey)")


@functools.lru_cache(maxsize=None)
def font(size=12):
    """PIL's built-in font at `size` px (a FreeType font since Pillow 10.1)."""
    return ImageFont.load_default(size=size)


def text_size(text, size=12):
    """(width, height) in pixels of `text` drawn with `font(size)`."""
    left, top, right, bottom = font(size).getbbox(text)
    return right - left, bottom


def write_png(path, array):
    """Writes a uint8 [H, W, 3] (or [H, W]) array as a PNG, atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(array, dtype=np.uint8)).save(tmp, format="PNG")


def _check_same_size(**arrays):
    shapes = {name: np.shape(a)[:2] for name, a in arrays.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"arrays must share height and width; got {shapes}")


# ---------------------------------------------------------------- single panels

def error_map(image, truth, prediction, ignore_label=voc.IGNORE_LABEL):
    """Shows where a prediction is wrong.

    Args:
      image: uint8 [H, W, 3] RGB photo.
      truth: integer [H, W] true class indices (`ignore_label` = not scored).
      prediction: integer [H, W] predicted class indices.
      ignore_label: the label value that is not scored.
    Returns:
      uint8 [H, W, 3]: wrong pixels `ERROR_COLOUR` (red), ignored pixels `IGNORE_COLOUR`
      (grey), correct pixels the photo dimmed to `DIM` of its brightness (so the red
      stands out while the scene stays recognisable).
    """
    _check_same_size(image=image, truth=truth, prediction=prediction)
    truth, prediction = np.asarray(truth), np.asarray(prediction)
    out = (np.asarray(image, dtype=np.float32) * DIM).astype(np.uint8)
    ignored = truth == ignore_label
    out[(truth != prediction) & ~ignored] = ERROR_COLOUR
    out[ignored] = IGNORE_COLOUR
    return out


def overlay(image, mask, alpha=0.5, palette=voc.VOC_PALETTE):
    """The photo with the mask's colours blended in.

    Args:
      image: uint8 [H, W, 3] RGB.
      mask: integer [H, W] class indices (0..255).
      alpha: weight of the class colour where the class is not coloured black.
      palette: uint8 [256, 3], the colour of each class (VOC's by default).
    Returns:
      uint8 [H, W, 3]. Classes coloured black (VOC's background, class 0) are left as
      the photo: blending black in would only darken the scene.
    """
    _check_same_size(image=image, mask=mask)
    mask = np.asarray(mask)
    image = np.asarray(image, dtype=np.float32)
    colours = voc.index_to_rgb(mask.astype(np.uint8), palette).astype(np.float32)
    blended = (1.0 - alpha) * image + alpha * colours
    out = np.where(colours.any(axis=-1, keepdims=True), blended, image)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def legend(class_ids, width=600, class_names=voc.CLASS_NAMES, size=12, palette=voc.VOC_PALETTE):
    """Colour swatches with class names, flowing left to right and wrapping at `width`.

    Args:
      class_ids: iterable of class indices to show (sorted, duplicates dropped;
        values outside `class_names`, e.g. 255, are shown as "ignore").
      width: the picture's width in pixels.
      class_names: names by index.
      size: font size in pixels.
      palette: uint8 [256, 3], the colour of each index.
    Returns:
      uint8 [h, width, 3], white background.
    """
    entries = []
    for index in sorted({int(i) for i in class_ids}):
        name = class_names[index] if index < len(class_names) else "ignore"
        entries.append((index, f"{index} {name}"))
    swatch, gap, pad = size + 2, 14, 4
    row_height = swatch + pad
    positions, x, y = [], pad, pad
    for index, label in entries:
        entry_width = swatch + 4 + text_size(label, size)[0]
        if x > pad and x + entry_width > width - pad:
            x, y = pad, y + row_height
        positions.append((x, y, index, label))
        x += entry_width + gap
    picture = Image.new("RGB", (width, y + row_height + pad), WHITE)
    draw = ImageDraw.Draw(picture)
    for x, y, index, label in positions:
        colour = tuple(int(c) for c in palette[index])
        draw.rectangle([x, y, x + swatch - 1, y + swatch - 1], fill=colour, outline=BLACK)
        draw.text((x + swatch + 4, y + 1), label, fill=BLACK, font=font(size))
    return np.asarray(picture)


def _fit(array, height, width, resample):
    """Resizes `array` to fit (height, width), keeping its aspect ratio."""
    h, w = array.shape[:2]
    scale = min(height / h, width / w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    if (new_h, new_w) == (h, w):
        return np.asarray(array, dtype=np.uint8)
    resized = Image.fromarray(np.asarray(array, dtype=np.uint8)).resize((new_w, new_h), resample)
    return np.asarray(resized)


# ---------------------------------------------------------------- sample grid

@dataclasses.dataclass(frozen=True)
class GridLayout:
    """Where things go in a `sample_grid` picture.

    From the top: a header line of column titles, then for each row a caption line
    and a row of cells, then the legend. Each panel is scaled to fit its cell
    (aspect kept) and placed at the cell's top-left corner.
    """
    rows: int
    cell_height: int
    cell_width: int
    columns: int = len(GRID_COLUMNS)
    margin: int = 8
    gap: int = 6
    header: int = 18
    caption: int = 16

    @property
    def width(self):
        """The picture's width in pixels: the columns, gaps and margins."""
        return 2 * self.margin + self.columns * self.cell_width + (self.columns - 1) * self.gap

    @property
    def cells_bottom(self):
        """The y just below the last row of cells (the legend starts a margin lower)."""
        return self.margin + self.header + self.rows * (self.caption + self.cell_height + self.gap)

    def caption_origin(self, row):
        """(x, y) of row `row`'s caption text."""
        return self.margin, self.margin + self.header + row * (self.caption + self.cell_height + self.gap)

    def cell_box(self, row, column):
        """(top, left, bottom, right) pixel bounds of a cell (bottom/right exclusive)."""
        top = self.caption_origin(row)[1] + self.caption
        left = self.margin + column * (self.cell_width + self.gap)
        return top, left, top + self.cell_height, left + self.cell_width


def sample_grid(images, truths, predictions, captions=None, cell_size=192,
                ignore_label=voc.IGNORE_LABEL, class_names=voc.CLASS_NAMES, palette=voc.VOC_PALETTE):
    """One row per image: image | true mask | predicted mask | error map, and a legend.

    Args:
      images: sequence of uint8 [H_i, W_i, 3] RGB photos (sizes may differ per row).
      truths: sequence of integer [H_i, W_i] true class indices (255 = ignore).
      predictions: sequence of integer [H_i, W_i] predicted class indices.
      captions: optional sequence of str, one line above each row (id, loss...).
      cell_size: int or (height, width) of every cell; each panel is scaled to fit it
        (nearest for masks, so their colours stay exact; bilinear for photos).
      ignore_label: label value that is not scored (grey in the error map).
      class_names: names for the legend.
      palette: uint8 [256, 3], the colour of each class in the mask panels and legend.
    Returns:
      uint8 [H, W, 3]; geometry as in `GridLayout(len(images), *cell_size)`. The
      legend lists the classes present in the rows' true or predicted masks
      (and "ignore", the VOC boundary colour, where a truth has it).
    """
    if not (len(images) == len(truths) == len(predictions)):
        raise ValueError(f"sample_grid needs as many truths and predictions as images; got "
                         f"{len(images)}, {len(truths)}, {len(predictions)}")
    cell_h, cell_w = (cell_size, cell_size) if np.isscalar(cell_size) else cell_size
    layout = GridLayout(rows=len(images), cell_height=int(cell_h), cell_width=int(cell_w))
    present = set()
    for truth, prediction in zip(truths, predictions):
        present |= set(np.unique(truth).tolist()) | set(np.unique(prediction).tolist())
    key = legend(present, width=layout.width, class_names=class_names, palette=palette)

    canvas = np.full((layout.cells_bottom + layout.margin + key.shape[0], layout.width, 3),
                     255, dtype=np.uint8)
    canvas[layout.cells_bottom + layout.margin:] = key
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    for column, title in enumerate(GRID_COLUMNS):
        _, left, _, _ = layout.cell_box(0, column)
        draw.text((left, layout.margin), title, fill=BLACK, font=font(12))
    for row, (image, truth, prediction) in enumerate(zip(images, truths, predictions)):
        _check_same_size(image=image, truth=truth, prediction=prediction)
        truth = np.asarray(truth).astype(np.uint8)
        prediction = np.asarray(prediction).astype(np.uint8)
        panels = (
            (image, Image.BILINEAR),
            (voc.index_to_rgb(truth, palette), Image.NEAREST),
            (voc.index_to_rgb(prediction, palette), Image.NEAREST),
            (error_map(image, truth, prediction, ignore_label), Image.NEAREST),
        )
        for column, (panel, resample) in enumerate(panels):
            top, left, _, _ = layout.cell_box(row, column)
            fitted = _fit(panel, cell_h, cell_w, resample)
            picture.paste(Image.fromarray(fitted), (left, top))
        if captions is not None:
            draw.text(layout.caption_origin(row), str(captions[row]), fill=BLACK, font=font(12))
    return np.asarray(picture)


# ---------------------------------------------------------------- confusion heat map

@dataclasses.dataclass(frozen=True)
class HeatmapLayout:
    """Where things go in a `confusion_heatmap` picture: a title line, column names
    written vertically above the matrix, row names right-aligned to its left."""
    num_classes: int
    label_width: int   # room for the longest class name
    cell: int = 28
    margin: int = 10
    title: int = 20
    font_size: int = 12

    @classmethod
    def for_names(cls, class_names, cell=28):
        """A layout whose label column fits the longest class name."""
        longest = max(text_size(name, 12)[0] for name in class_names)
        return cls(num_classes=len(class_names), label_width=longest + 8, cell=cell)

    @property
    def left(self):
        """x of the matrix's first column (after the vertical axis title and row names)."""
        return self.margin + self.title + self.label_width

    @property
    def top(self):
        """y of the matrix's first row (after the title and the vertical column names)."""
        return self.margin + self.title + self.title + self.label_width

    @property
    def size(self):
        """(height, width) of the whole picture."""
        side = self.num_classes * self.cell
        return self.top + side + self.margin, self.left + side + self.margin

    def cell_box(self, row, column):
        """(top, left, bottom, right) of the cell of true class `row`, predicted `column`."""
        top, left = self.top + row * self.cell, self.left + column * self.cell
        return top, left, top + self.cell, left + self.cell


def row_normalise(confusion):
    """float64 [C, C]: each row divided by its sum (NaN rows where the sum is 0)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    totals = confusion.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, confusion / totals, np.nan)


def heat_colour(fraction):
    """uint8 [..., 3]: white at 0, `HEAT_COLOUR` at 1, linear in between; NaN -> EMPTY."""
    fraction = np.asarray(fraction, dtype=np.float64)
    safe = np.nan_to_num(fraction, nan=0.0).clip(0, 1)[..., None]
    colour = (1 - safe) * np.array(WHITE) + safe * np.array(HEAT_COLOUR)
    colour = np.where(np.isnan(fraction)[..., None], np.array(EMPTY_COLOUR), colour)
    return np.rint(colour).astype(np.uint8)


def _vertical_text(text, size, height, fill=BLACK):
    """An RGBA image of `text` rotated to read bottom-to-top, right-aligned to `height`."""
    width, text_h = text_size(text, size)
    strip = Image.new("RGBA", (height, text_h + 2), (255, 255, 255, 0))
    ImageDraw.Draw(strip).text((height - width - 4, 0), text, fill=fill, font=font(size))
    return strip.rotate(90, expand=True)


def confusion_heatmap(confusion, class_names=voc.CLASS_NAMES, title=None, cell=28):
    """The confusion matrix as a heat map, each row normalised to 100 %.

    Args:
      confusion: integer [C, C], rows = true class, columns = predicted class.
      class_names: C names, written along both axes.
      title: the line above the picture (default says what the colours mean).
      cell: cell side in pixels.
    Returns:
      uint8 [H, W, 3], geometry as in `HeatmapLayout.for_names(class_names, cell)`.
      Each cell's colour goes from white (0 %) to dark blue (100 % of that true
      class's pixels); the rounded percentage is written in cells of at least 0.5 %;
      rows of classes absent from the labels are light grey.
    """
    confusion = np.asarray(confusion)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1] \
            or confusion.shape[0] != len(class_names):
        raise ValueError(f"confusion must be [C, C] with C = {len(class_names)} class names; "
                         f"got shape {confusion.shape}")
    layout = HeatmapLayout.for_names(class_names, cell)
    fractions = row_normalise(confusion)
    height, width = layout.size
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    side = layout.num_classes * cell
    colours = heat_colour(fractions)
    # Each cell is a block of its colour with a one-pixel white grid line around it.
    cells = np.repeat(np.repeat(colours, cell, axis=0), cell, axis=1)
    cells[::cell, :] = 255
    cells[:, ::cell] = 255
    canvas[layout.top:layout.top + side, layout.left:layout.left + side] = cells

    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    title = title or "confusion matrix: % of each true class's pixels (rows) predicted as each class (columns)"
    draw.text((layout.margin, layout.margin), title, fill=BLACK, font=font(13))
    draw.text((layout.left, layout.margin + layout.title), "predicted class", fill=BLACK, font=font(12))
    axis = _vertical_text("true class", 12, side)
    picture.paste(axis, (layout.margin, layout.top), axis)
    for index, name in enumerate(class_names):
        top, left, bottom, right = layout.cell_box(index, 0)
        name_w, name_h = text_size(name, 12)
        draw.text((layout.left - 6 - name_w, top + (cell - name_h) // 2), name, fill=BLACK, font=font(12))
        top, left, bottom, right = layout.cell_box(0, index)
        label = _vertical_text(name, 12, layout.label_width)
        picture.paste(label, (left + (cell - label.width) // 2, layout.top - layout.label_width), label)
    for (row, column), fraction in np.ndenumerate(fractions):
        if not fraction >= 0.005:  # also skips NaN rows
            continue
        text = f"{100 * fraction:.0f}"
        top, left, _, _ = layout.cell_box(row, column)
        text_w, text_h = text_size(text, 11)
        ink = WHITE if fraction > 0.5 else BLACK
        draw.text((left + (cell - text_w) // 2, top + (cell - text_h) // 2), text, fill=ink, font=font(11))
    return np.asarray(picture)
