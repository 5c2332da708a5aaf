"""Line charts drawn with PIL + numpy (matplotlib is not a dependency).

- `line_chart(series, ...)`: one line per series (e.g. val mean IoU against step for each
  ablation cell), with ticks, axis labels, a title and a legend.
- `nice_ticks(low, high)`: round tick values (1, 2 or 5 x 10^k apart) covering a range.

Geometry lives in `ChartLayout`, which both the drawing code and the tests use to find
where a data point lands. Pictures are uint8 RGB arrays; `research.visualize.write_png`
writes them atomically.
"""
import dataclasses
import math

import numpy as np
from PIL import Image, ImageDraw

from research.visualize import BLACK, WHITE, _vertical_text, font, text_size

GRID_COLOUR = (225, 225, 225)
# Tableau 10 plus two more: distinct at a glance, and readable on white.
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
           (0, 0, 0), (120, 60, 160))
MARKERS = ("square", "circle", "diamond")  # the next shape once the palette is used up


def nice_ticks(low, high, count=6):
    """Round tick values covering [low, high], about `count` of them.

    The step is 1, 2 or 5 times a power of ten; the first tick is <= low and the last
    >= high. A zero-width range is widened so there is always more than one tick.
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"tick range must be finite; got [{low}, {high}]")
    if high < low:
        low, high = high, low
    if high == low:
        pad = abs(low) * 0.05 or 0.5
        low, high = low - pad, high + pad
    raw = (high - low) / max(count - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-9))
    first = math.floor(low / step + 1e-9) * step
    last = math.ceil(high / step - 1e-9) * step
    return [round(first + i * step, 12) for i in range(int(round((last - first) / step)) + 1)]


def _tick_label(value, step):
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return f"{value:.{decimals}f}"


@dataclasses.dataclass(frozen=True)
class ChartLayout:
    """Where a `line_chart` draws: the plot box in pixels and the data range it shows."""
    width: int
    height: int
    left: int      # the plot box, pixel bounds (inclusive)
    top: int
    right: int
    bottom: int
    x_range: tuple
    y_range: tuple

    def to_pixel(self, x, y):
        """(column, row) in the picture of the data point (x, y)."""
        (x0, x1), (y0, y1) = self.x_range, self.y_range
        column = self.left + (x - x0) / (x1 - x0) * (self.right - self.left)
        row = self.bottom - (y - y0) / (y1 - y0) * (self.bottom - self.top)
        return int(round(column)), int(round(row))


def _finite_values(series, index):
    values = [v for s in series for v in s[index] if v is not None and math.isfinite(v)]
    if not values:
        raise ValueError("line_chart: no finite data points to draw")
    return values


def chart_layout(series, width=900, height=520, title=True, y_range=None, size=12):
    """The `ChartLayout` that `line_chart` uses for these arguments."""
    xs, ys = _finite_values(series, 1), _finite_values(series, 2)
    x_ticks = nice_ticks(min(xs), max(xs))
    y_ticks = nice_ticks(*(y_range or (min(ys), max(ys))))
    y_step = y_ticks[1] - y_ticks[0]
    tick_width = max(text_size(_tick_label(t, y_step), size)[0] for t in y_ticks)
    legend_width = max(text_size(label, size)[0] for label, _, _ in series) + 40
    margin, line = 10, size + 6
    left = margin + line + tick_width + 8          # y-axis title, tick labels, tick marks
    top = margin + (line + 6 if title else 0) + size // 2
    right = width - margin - legend_width
    bottom = height - margin - 2 * line - 4       # tick labels and x-axis title below
    if right - left < 100 or bottom - top < 80:
        raise ValueError(f"line_chart: {width}x{height} px is too small for the labels and legend")
    return ChartLayout(width, height, left, top, right, bottom,
                       (x_ticks[0], x_ticks[-1]), (y_ticks[0], y_ticks[-1]))


def _marker(draw, shape, column, row, colour, radius=3):
    box = [column - radius, row - radius, column + radius, row + radius]
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "diamond":
        draw.polygon([(column, row - radius - 1), (column + radius + 1, row),
                      (column, row + radius + 1), (column - radius - 1, row)], fill=colour)
    else:
        draw.rectangle(box, fill=colour)


def line_chart(series, title="", x_label="", y_label="", width=900, height=520, y_range=None, size=12):
    """Lines of y against x, one per series, with ticks, axis titles and a legend.

    Args:
      series: list of (label, xs, ys); NaN or None y values are left out (the line
        joins the points on either side).
      title: the line above the plot.
      x_label, y_label: axis titles.
      width, height: the picture's size in pixels.
      y_range: (low, high) the y axis must cover (rounded out to ticks), e.g. (0, 1);
        default: the data's range.
      size: font size in pixels.
    Returns:
      uint8 [height, width, 3]; geometry as in `chart_layout(...)` with the same
      arguments. Series i is drawn in `PALETTE[i % 12]` with a marker at each point
      (squares, then circles, then diamonds once the colours repeat); the legend on the
      right lists the labels in order.
    """
    layout = chart_layout(series, width, height, bool(title), y_range, size)
    picture = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(picture)
    # Grid lines and ticks first, so the data lines are drawn over them.
    _draw_grid(draw, layout, size)
    _draw_titles(picture, draw, layout, title, x_label, y_label, size)
    _draw_series_and_legend(draw, layout, series, size)
    return np.asarray(picture)


def _draw_grid(draw, layout, size):
    """The y and x grid lines with their ticks and labels, and the plot's frame."""
    x_ticks = nice_ticks(*layout.x_range)
    y_ticks = nice_ticks(*layout.y_range)
    for value in y_ticks:
        _, row = layout.to_pixel(layout.x_range[0], value)
        draw.line([(layout.left, row), (layout.right, row)], fill=GRID_COLOUR)
        draw.line([(layout.left - 5, row), (layout.left, row)], fill=BLACK)
        label = _tick_label(value, y_ticks[1] - y_ticks[0])
        label_w, label_h = text_size(label, size)
        draw.text((layout.left - 8 - label_w, row - label_h // 2 - 1), label, fill=BLACK, font=font(size))
    for value in x_ticks:
        column, _ = layout.to_pixel(value, layout.y_range[0])
        draw.line([(column, layout.top), (column, layout.bottom)], fill=GRID_COLOUR)
        draw.line([(column, layout.bottom), (column, layout.bottom + 5)], fill=BLACK)
        label = _tick_label(value, x_ticks[1] - x_ticks[0])
        draw.text((column - text_size(label, size)[0] // 2, layout.bottom + 7), label,
                  fill=BLACK, font=font(size))
    draw.rectangle([layout.left, layout.top, layout.right, layout.bottom], outline=BLACK)


def _draw_titles(picture, draw, layout, title, x_label, y_label, size):
    """The title above the plot, the x axis title below it, the y axis title turned left."""
    if title:
        draw.text((layout.left, 10), title, fill=BLACK, font=font(size + 1))
    if x_label:
        draw.text(((layout.left + layout.right - text_size(x_label, size)[0]) // 2,
                   picture.height - 10 - size - 4), x_label, fill=BLACK, font=font(size))
    if y_label:
        axis = _vertical_text(y_label, size, layout.bottom - layout.top)
        top = (layout.top + layout.bottom - axis.height) // 2
        picture.paste(axis, (10, max(layout.top, top)), axis)


def _draw_series_and_legend(draw, layout, series, size):
    """Each series' line and markers, and its entry in the legend right of the plot."""
    legend_x, legend_y = layout.right + 14, layout.top
    for index, (label, xs, ys) in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        shape = MARKERS[(index // len(PALETTE)) % len(MARKERS)]
        points = [layout.to_pixel(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for column, row in points:
            _marker(draw, shape, column, row, colour)
        row = legend_y + index * (size + 8)
        draw.line([(legend_x, row + size // 2), (legend_x + 20, row + size // 2)], fill=colour, width=2)
        _marker(draw, shape, legend_x + 10, row + size // 2, colour)
        draw.text((legend_x + 26, row), label, fill=BLACK, font=font(size))
