"""Preprocessing and ResizeLike layers, and the conv2d and batch_normalization layer choices."""
import keras
import numpy as np
import pytest

from kernels import AtrousConv2D, FusedBatchNormalization
from research.models.layers import Preprocessing, ResizeLike, batch_normalization, conv2d
from tests.research.models.conftest import random_images


def test_caffe_mode_is_exactly_keras_resnet50_preprocess_input():
    images = random_images(2, 5, 7, 3)
    expected = keras.applications.resnet50.preprocess_input(images.copy())
    np.testing.assert_array_equal(Preprocessing("caffe")(images).numpy(), expected)


def test_caffe_mode_by_hand():
    # One RGB pixel (10, 20, 30) -> BGR (30, 20, 10) minus the BGR mean.
    pixel = np.array([[[[10.0, 20.0, 30.0]]]], "float32")
    np.testing.assert_allclose(Preprocessing("caffe")(pixel).numpy()[0, 0, 0],
                               [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-6)


def test_unit_mode_scales_to_zero_one():
    pixel = np.array([[[[0.0, 51.0, 255.0]]]], "float32")
    np.testing.assert_allclose(Preprocessing("unit")(pixel).numpy()[0, 0, 0],
                               [0.0, 0.2, 1.0], rtol=1e-6)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="caffe"):
        Preprocessing("torch")


def test_preprocessing_round_trips_through_config():
    layer = Preprocessing("caffe", name="preprocessing")
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(clone, Preprocessing) and clone.mode == "caffe"


def test_preprocessing_stays_float32_under_mixed_precision(mixed_policy):
    images = random_images(1, 4, 4, 3)
    out = Preprocessing("caffe")(images)
    assert out.dtype == "float32"
    np.testing.assert_array_equal(
        out.numpy(), keras.applications.resnet50.preprocess_input(images.copy()))


def test_resize_like_follows_the_reference_size_at_run_time():
    x = keras.Input((None, None, 5))
    reference = keras.Input((None, None, 3))
    model = keras.Model([x, reference], ResizeLike()([x, reference]))
    out = model([np.ones((2, 3, 4, 5), "float32"), np.zeros((2, 13, 7, 3), "float32")])
    assert out.shape == (2, 13, 7, 5)
    np.testing.assert_allclose(out.numpy(), 1.0)  # bilinear keeps a constant constant


def test_resize_like_static_shape_and_dtype(mixed_policy):
    x = keras.Input((4, 4, 5))
    reference = keras.Input((16, 12, 3))
    assert ResizeLike()([x, reference]).shape == (None, 16, 12, 5)
    out = ResizeLike()([np.ones((1, 2, 2, 5), "float32"), np.zeros((1, 6, 6, 3), "float32")])
    assert out.dtype == keras.config.dtype_policy().compute_dtype
    out32 = ResizeLike(dtype="float32")([np.ones((1, 2, 2, 5), "float16"),
                                         np.zeros((1, 6, 6, 3), "float32")])
    assert out32.dtype == "float32"


@pytest.mark.parametrize("atrous, rate, expected", [
    ("kernels", 2, AtrousConv2D), ("keras", 2, keras.layers.Conv2D),
    ("kernels", 1, keras.layers.Conv2D)])
def test_conv2d_uses_atrous_kernel_only_for_dilated_kernels_choice(atrous, rate, expected):
    layer = conv2d(4, 3, "c", dilation_rate=rate, atrous=atrous)
    assert type(layer) is expected
    assert layer(np.zeros((1, 9, 9, 2), "float32")).shape == (1, 9, 9, 4)


def test_conv2d_refuses_unknown_atrous_choice():
    with pytest.raises(ValueError, match="atrous"):
        conv2d(4, 3, "c", dilation_rate=2, atrous="tf")


@pytest.mark.parametrize("bn_impl, expected", [
    ("fused", FusedBatchNormalization), ("keras", keras.layers.BatchNormalization)])
def test_batch_normalization_choice(bn_impl, expected):
    layer = batch_normalization("b", epsilon=1.001e-5, bn_momentum=0.9, bn_impl=bn_impl)
    assert type(layer) is expected
    assert (layer.name, layer.epsilon, layer.momentum, layer.synchronized) == ("b", 1.001e-5, 0.9, False)
    with pytest.raises(ValueError, match="bn_impl"):
        batch_normalization("b", bn_impl="tf")
