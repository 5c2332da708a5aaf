"""research.sliding_window: window placement, the per-pixel average of overlapping windows
(checked against numpy by hand), padding, and composition with flip and multi-scale."""
import numpy as np
import pytest
import tensorflow as tf
import keras

from research import evaluate as evaluate_lib
from research import sliding_window, window_options
from research.data.pipeline import PAD_RGB_MEAN

C = 4


def context_model(seed=0):
    """A 3x3 convolution (zero padding at the input's border): a pixel's logits depend on its
    neighbours and on where the window ends, so overlapping windows disagree."""
    images = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255.0)(images)
    logits = keras.layers.Conv2D(C, 3, padding="same",
                                 kernel_initializer=keras.initializers.RandomNormal(0, 1, seed=seed),
                                 bias_initializer=keras.initializers.RandomNormal(0, 1, seed=seed + 1))(x)
    return keras.Model(images, logits)


@pytest.fixture(scope="module")
def model():
    return context_model()


def noise(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3)).astype(np.float32)


def run(model, image):
    return np.asarray(model(image[None], training=False))[0]


def test_window_starts():
    assert sliding_window.window_starts(10, 4, 3) == [0, 3, 6]
    assert sliding_window.window_starts(10, 4, 4) == [0, 4, 6]     # the last flush with the edge
    assert sliding_window.window_starts(4, 4, 2) == [0]
    with pytest.raises(ValueError, match="smaller than the window"):
        sliding_window.window_starts(3, 4, 2)
    assert window_options.default_stride((769, 512)) == (513, 342)


def test_a_window_covering_the_image_is_the_whole_image_result(model):
    image = noise(16, 24)
    whole = np.asarray(evaluate_lib.tta_logits(model, image[None], (16, 24)))[0]
    slide = sliding_window.slide_logits(sliding_window.window_model(model, (16, 24)), image, (16, 24), (8, 8))
    np.testing.assert_array_equal(slide, whole)
    # The same through research.evaluate's predictors.
    predictor = evaluate_lib.make_predictor(model, (16, 24), mode="slide")
    np.testing.assert_array_equal(predictor(image[None])[0], whole)


def test_two_windows_average_their_overlap(model):
    # A 8 x 12 image, window 8 x 8, stride 4: windows at columns 0-7 and 4-11.
    image = noise(8, 12, seed=1)
    left, right = run(model, image[:, 0:8]), run(model, image[:, 4:12])
    assert not np.allclose(left[:, 4:8], right[:, 0:4], atol=1e-3)   # they do disagree there
    expected = np.empty((8, 12, C), np.float32)
    expected[:, 0:4] = left[:, 0:4]                                  # one window
    expected[:, 4:8] = (left[:, 4:8] + right[:, 0:4]) / 2            # both
    expected[:, 8:12] = right[:, 4:8]                                # one window
    got = sliding_window.slide_logits(sliding_window.window_model(model, (8, 8)), image, (8, 8), (4, 4),
                                      windows_per_call=1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_an_image_smaller_than_the_window_is_padded_with_the_mean(model):
    image = noise(5, 6, seed=2)
    padded = np.empty((8, 8, 3), np.float32)
    padded[...] = PAD_RGB_MEAN
    padded[:5, :6] = image
    got = sliding_window.slide_logits(sliding_window.window_model(model, (8, 8)), image, (8, 8), (4, 4))
    np.testing.assert_allclose(got, run(model, padded)[:5, :6], rtol=1e-5, atol=1e-5)


def test_slide_composes_with_flip_and_scales(model):
    image = noise(10, 14, seed=3)
    run_windows = sliding_window.window_model(model, (8, 8))

    def slide(x):
        return sliding_window.slide_logits(run_windows, x, (8, 8), (5, 5))

    flipped = sliding_window.slide_tta_logits(run_windows, image, (8, 8), (5, 5), flip=True)
    np.testing.assert_allclose(flipped, (slide(image) + slide(image[:, ::-1])[:, ::-1]) / 2, rtol=1e-5, atol=1e-5)
    big = tf.image.resize(image[None], (20, 28))[0].numpy()
    back = tf.image.resize(slide(big)[None], (10, 14))[0].numpy()
    scaled = sliding_window.slide_tta_logits(run_windows, image, (8, 8), (5, 5), scales=(1.0, 2.0))
    np.testing.assert_allclose(scaled, (slide(image) + back) / 2, rtol=1e-5, atol=1e-5)


def test_a_stride_larger_than_the_window_is_refused(model):
    with pytest.raises(ValueError, match="larger than the window"):
        sliding_window.make_slide_predictor(model, (8, 8), (9, 4))


@pytest.mark.parametrize("window, stride, what", [((8, 8), (0, 4), "stride"), ((8, 8), (-4, 4), "stride"),
                                                  ((0, 8), None, "window")])
def test_a_window_or_stride_that_is_not_positive_is_refused(model, window, stride, what):
    # Uncovered pixels would get NaN logits (a negative stride), or a division by zero.
    with pytest.raises(ValueError, match=f"the {what} must be two positive integers"):
        sliding_window.make_slide_predictor(model, window, stride)


def test_the_command_lines_refuse_a_stride_below_one(capsys):
    import argparse

    parser = argparse.ArgumentParser()
    window_options.add_window_arguments(parser, "whole")
    assert parser.parse_args(["--stride", "3", "5"]).stride == [3, 5]
    with pytest.raises(SystemExit):
        parser.parse_args(["--stride", "-4", "16"])
    assert "must be a positive integer; got -4" in capsys.readouterr().err
