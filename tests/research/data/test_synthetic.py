"""The embedded dataset's shape families (research/data/synthetic.py)."""
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


def test_the_same_seed_draws_the_same_shape():
    for shape in ("triangle", "polygon", "blob"):   # the families that draw random numbers
        first, second = (synthetic._draw_shape(shape, 40, 30, np.random.default_rng(7)) for _ in range(2))
        np.testing.assert_array_equal(first, second)


def test_an_unknown_family_is_refused():
    with pytest.raises(ValueError, match="unknown shape family 'hexagon'"):
        synthetic._draw_shape("hexagon", 10, 10, np.random.default_rng(0))
