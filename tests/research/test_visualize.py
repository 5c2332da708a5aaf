"""Pictures: error map, overlay, legend, sample grid and confusion heat map.

Inputs are built so that the expected colour of every checked pixel is known: constant
photos, masks made of a few flat regions, and the layouts the drawing code itself uses
to place cells.
"""
import numpy as np
import pytest
from PIL import Image

from research import visualize
from research.data import voc

RED, GREY = visualize.ERROR_COLOUR, visualize.IGNORE_COLOUR
PERSON, CAT = 15, 8


def colour(index):
    return tuple(int(c) for c in voc.VOC_PALETTE[index])


def test_error_map_marks_wrong_red_ignored_grey_and_dims_correct():
    image = np.full((2, 3, 3), 200, np.uint8)
    truth = np.array([[1, 1, 255], [2, 2, 2]])
    prediction = np.array([[1, 5, 5], [2, 2, 0]])
    out = visualize.error_map(image, truth, prediction)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    assert tuple(out[0, 0]) == (80, 80, 80)      # correct: 200 * DIM
    assert tuple(out[0, 1]) == RED               # wrong
    assert tuple(out[0, 2]) == GREY              # ignored, even though "wrong"
    assert tuple(out[1, 2]) == RED
    with pytest.raises(ValueError, match="share height and width"):
        visualize.error_map(image, truth[:1], prediction)


def test_overlay_blends_classes_and_keeps_background():
    image = np.full((1, 2, 3), 100, np.uint8)
    mask = np.array([[0, PERSON]])
    out = visualize.overlay(image, mask, alpha=0.5)
    assert tuple(out[0, 0]) == (100, 100, 100)
    expected = np.rint(0.5 * 100 + 0.5 * np.array(colour(PERSON))).astype(np.uint8)
    assert tuple(out[0, 1]) == tuple(expected)


def test_legend_shows_a_swatch_per_class_present():
    picture = visualize.legend([PERSON, CAT, CAT], width=300)
    assert picture.dtype == np.uint8 and picture.shape[1] == 300
    colours = {tuple(c) for c in picture.reshape(-1, 3)}
    assert colour(PERSON) in colours and colour(CAT) in colours
    assert colour(6) not in colours  # bus (teal) is not listed


def quadrant_masks(size, top, bottom):
    mask = np.full((size, size), top, np.uint8)
    mask[size // 2:] = bottom
    return mask


def test_sample_grid_layout_and_colours_at_known_pixels():
    size, cell = 16, 64  # panels are scaled 4x by nearest neighbour
    images = [np.full((size, size, 3), (10, 200, 30), np.uint8),
              np.full((size, size, 3), (250, 250, 250), np.uint8)]
    truths = [quadrant_masks(size, PERSON, CAT), quadrant_masks(size, 255, CAT)]
    predictions = [quadrant_masks(size, PERSON, PERSON), quadrant_masks(size, 0, CAT)]
    grid = visualize.sample_grid(images, truths, predictions, captions=["a", "b"], cell_size=cell)

    layout = visualize.GridLayout(rows=2, cell_height=cell, cell_width=cell)
    legend = visualize.legend({0, PERSON, CAT, 255}, width=layout.width)
    assert grid.shape == (layout.cells_bottom + layout.margin + legend.shape[0], layout.width, 3)

    def at(row, column, upper):
        top, left, bottom, right = layout.cell_box(row, column)
        y = top + (cell // 4 if upper else 3 * cell // 4)
        return tuple(int(c) for c in grid[y, (left + right) // 2])

    # Row 0: top half right (person), bottom half wrong (cat predicted as person).
    assert at(0, 0, True) == (10, 200, 30)
    assert at(0, 1, True) == colour(PERSON) and at(0, 1, False) == colour(CAT)
    assert at(0, 2, True) == colour(PERSON) and at(0, 2, False) == colour(PERSON)
    assert at(0, 3, True) == (4, 80, 12)         # correct: the photo dimmed to 40 %
    assert at(0, 3, False) == RED
    # Row 1: top half ignored (VOC boundary colour in the truth, grey in the error map).
    assert at(1, 1, True) == colour(255)
    assert at(1, 2, True) == colour(0)
    assert at(1, 3, True) == GREY and at(1, 3, False) == (100, 100, 100)
    # The legend lists the classes present, ignore included.
    legend_colours = {tuple(c) for c in grid[layout.cells_bottom:].reshape(-1, 3)}
    assert {colour(PERSON), colour(CAT), colour(255)} <= legend_colours


def test_sample_grid_fits_images_of_different_sizes():
    images = [np.zeros((10, 40, 3), np.uint8), np.zeros((30, 15, 3), np.uint8)]
    masks = [np.full((10, 40), PERSON, np.uint8), np.full((30, 15), CAT, np.uint8)]
    grid = visualize.sample_grid(images, masks, masks, cell_size=(60, 80))
    layout = visualize.GridLayout(rows=2, cell_height=60, cell_width=80)
    top, left, _, _ = layout.cell_box(0, 1)
    # 10 x 40 scales 2x to 20 x 80: the cell's top 20 rows are person, the rest white.
    assert tuple(grid[top + 19, left + 79]) == colour(PERSON)
    assert tuple(grid[top + 21, left + 40]) == visualize.WHITE
    top, left, _, _ = layout.cell_box(1, 2)
    # 30 x 15 scales 2x to 60 x 30.
    assert tuple(grid[top + 59, left + 29]) == colour(CAT)
    assert tuple(grid[top + 30, left + 31]) == visualize.WHITE


def test_confusion_heatmap_is_row_normalised_with_names_on_axes():
    names = ("background", "person", "cat")
    confusion = np.array([[10, 0, 0],
                          [1, 3, 0],
                          [0, 0, 0]])  # cat never occurs in the labels
    picture = visualize.confusion_heatmap(confusion, names, cell=30)
    layout = visualize.HeatmapLayout.for_names(names, cell=30)
    assert picture.shape == layout.size + (3,)

    def cell_colour(row, column):
        top, left, _, _ = layout.cell_box(row, column)
        return tuple(int(c) for c in picture[top + 3, left + 3])  # a corner: no text there

    assert cell_colour(0, 0) == visualize.HEAT_COLOUR                       # 100 %
    assert cell_colour(0, 1) == visualize.WHITE                              # 0 %
    assert cell_colour(1, 1) == tuple(visualize.heat_colour(0.75))           # 3 of 4
    assert cell_colour(1, 0) == tuple(visualize.heat_colour(0.25))
    assert cell_colour(2, 2) == visualize.EMPTY_COLOUR
    # Names are drawn: there is dark text left of the first row and above the columns.
    top, left, bottom, _ = layout.cell_box(0, 0)
    assert (picture[top:bottom, :left - 2] < 100).any()
    assert (picture[:layout.top - 2, left:left + 30] < 100).any()
    with pytest.raises(ValueError, match="class names"):
        visualize.confusion_heatmap(confusion, names[:2])


def test_heat_colour_and_row_normalise():
    np.testing.assert_allclose(visualize.row_normalise([[1, 3], [0, 0]])[0], [0.25, 0.75])
    assert np.isnan(visualize.row_normalise([[1, 3], [0, 0]])[1]).all()
    assert tuple(visualize.heat_colour(0.0)) == visualize.WHITE
    assert tuple(visualize.heat_colour(1.0)) == visualize.HEAT_COLOUR
    assert tuple(visualize.heat_colour(float("nan"))) == visualize.EMPTY_COLOUR


def test_write_png_round_trips(tmp_path):
    array = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    path = tmp_path / "out" / "picture.png"
    visualize.write_png(path, array)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), array)
    assert [p.name for p in path.parent.iterdir()] == ["picture.png"]  # no temporary left
