"""The embedded dataset's shape families (research/data/synthetic.py)."""
import hashlib

import numpy as np
import pytest

from research.data import synthetic


def test_every_class_style_names_a_family_and_every_family_draws_its_main_part():
    assert {style.shape for style in synthetic.CLASS_STYLES.values()} <= set(synthetic.SHAPE_FAMILIES)
    for shape in synthetic.SHAPE_FAMILIES:
        mask = synthetic._draw_shape(shape, 40, 30, np.random.default_rng(0))
        assert mask.shape == (30, 40) and mask.dtype == np.uint8, shape
        assert set(np.unique(mask)) <= {0, synthetic.PART, synthetic.MAIN}, shape
        assert (mask == synthetic.MAIN).mean() > 0.1, shape


# md5 (first 12 hex digits) of each family's mask, 40 x 30, default_rng(7), as the
# drawing code was when the demo's figures were measured: a change to a family's drawing
# or to the order it draws random numbers changes the embedded dataset and fails here.
MASK_MD5 = {
    "ellipse": "c0d56fa0712f", "cross": "f06c40ff8717", "wheels": "d857755b6e12",
    "motorbike": "0588f7684e74", "triangle": "795ea94e8b00", "boat": "d59fbac2a365",
    "bottle": "7186e03d426b", "bus": "b103c2d602eb", "car": "d7d9ae544eab",
    "eared": "941d4843adef", "floppy": "c8a1b118c91f", "chair": "c4459c86b35c",
    "table": "d318af07a4de", "polygon": "3d48a2fdf5d0", "person": "e9209aeb906c",
    "star": "1c39cf793d02", "blob": "f2ccb1abcc1b", "sofa": "1d2b1fb8fc6d",
    "train": "05c3f2a6b56c", "frame": "8f95651d675e",
}


def test_each_family_draws_what_it_drew_when_the_demo_was_measured():
    drawn = {shape: hashlib.md5(synthetic._draw_shape(shape, 40, 30, np.random.default_rng(7)).tobytes())
             .hexdigest()[:12] for shape in synthetic.SHAPE_FAMILIES}
    assert drawn == MASK_MD5


def test_an_unknown_family_is_refused():
    with pytest.raises(ValueError, match="unknown shape family 'hexagon'"):
        synthetic._draw_shape("hexagon", 10, 10, np.random.default_rng(0))
