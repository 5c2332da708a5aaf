"""Pretrained ResNet-50 weights: lookup, errors, and exact by-name loading at real depth.

The weights come from a seeded keras.applications.ResNet50 with every variable random
(the `imagenet_style_weights` fixture), since ImageNet weights cannot be downloaded here.
"""
import os
import shutil
import socket

import h5py
import keras
import numpy as np
import pytest

from research.models import PretrainedWeightsError, deeplab_v3, deeplab_v3_plus, unet
from research.models import weights as weights_module
from research.models.weights import load_resnet50_weights, resolve_resnet50_weights
from tests.research.models.conftest import TINY, atrous_rates, random_images

NOTOP = weights_module.RESNET50_NOTOP_FILE


def assert_all_resnet_weights_equal(model, reference):
    """Every layer with weights (conv kernels and biases, BN gamma, beta, moving stats)."""
    compared = 0
    for layer in reference.layers:
        if not layer.weights:
            continue
        for expected, actual in zip(layer.get_weights(),
                                    model.get_layer(layer.name).get_weights(), strict=True):
            np.testing.assert_array_equal(actual, expected, err_msg=layer.name)
            compared += 1
    assert compared == len(reference.weights) == 318  # 53 convs x 2 + 53 BNs x 4


def assert_sees_imagenet_preprocessing(model):
    images = random_images(1, 8, 8, 3)
    np.testing.assert_array_equal(
        model.get_layer("preprocessing")(images).numpy(),
        keras.applications.resnet50.preprocess_input(images.copy()))


def test_os16_loads_every_layer_from_keras3_weights_file(imagenet_style_weights):
    model = deeplab_v3(weights=imagenet_style_weights.keras3_path)
    assert_all_resnet_weights_equal(model, imagenet_style_weights.reference)
    assert_sees_imagenet_preprocessing(model)
    assert atrous_rates(model) == {
        "conv5_block1_2_conv": 2, "conv5_block2_2_conv": 2, "conv5_block3_2_conv": 2,
        "aspp_atrous1_conv": 6, "aspp_atrous2_conv": 12, "aspp_atrous3_conv": 18}
    logits = model(random_images(1, 64, 64, 3))
    assert logits.shape == (1, 64, 64, 21) and logits.dtype == "float32"
    # Up to conv4 the network is ResNet-50 unchanged: same activations as Keras'.
    probe = keras.Model(model.input, model.get_layer("conv4_block6_out").output)
    reference = keras.Model(imagenet_style_weights.reference.input,
                            imagenet_style_weights.reference.get_layer(
                                "conv4_block6_out").output)
    images = random_images(1, 64, 64, 3, seed=1)
    expected = reference(keras.applications.resnet50.preprocess_input(images.copy()))
    np.testing.assert_allclose(probe(images).numpy(), expected.numpy(), rtol=1e-5,
                               atol=1e-5 * np.abs(expected.numpy()).max())


def test_os8_loads_imagenet_from_the_keras_cache_legacy_h5(imagenet_style_weights,
                                                          tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    shutil.copy(imagenet_style_weights.legacy_path, tmp_path / "models" / NOTOP)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    model = deeplab_v3(output_stride=8, weights="imagenet")
    assert_all_resnet_weights_equal(model, imagenet_style_weights.reference)
    assert_sees_imagenet_preprocessing(model)
    expected_rates = {f"conv4_block{i}_2_conv": 2 for i in range(1, 7)}
    expected_rates.update({f"conv5_block{i}_2_conv": 4 for i in range(1, 4)})
    expected_rates.update(aspp_atrous1_conv=12, aspp_atrous2_conv=24, aspp_atrous3_conv=36)
    assert atrous_rates(model) == expected_rates
    assert model(random_images(1, 64, 64, 3)).shape == (1, 64, 64, 21)


def test_unet_encoder_is_keras_resnet50_with_its_weights(imagenet_style_weights):
    model = unet(weights=imagenet_style_weights.keras3_path)
    assert_all_resnet_weights_equal(model, imagenet_style_weights.reference)
    assert_sees_imagenet_preprocessing(model)
    probe = keras.Model(model.input, [model.get_layer("conv5_block3_out").output,
                                      model.output])
    images = random_images(1, 64, 64, 3)
    features, logits = probe(images)
    expected = imagenet_style_weights.reference(
        keras.applications.resnet50.preprocess_input(images.copy())).numpy()
    np.testing.assert_allclose(features.numpy(), expected, rtol=1e-5,
                               atol=1e-5 * np.abs(expected).max())
    assert logits.shape == (1, 64, 64, 21)


@pytest.fixture
def offline_keras_home(tmp_path, monkeypatch):
    """An empty Keras cache, and an origin that refuses connections at once."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(weights_module, "RESNET50_NOTOP_URL",
                        f"http://127.0.0.1:{port}/{NOTOP}")
    return tmp_path


def test_imagenet_without_file_or_network_says_where_to_put_the_file(offline_keras_home):
    with pytest.raises(PretrainedWeightsError) as caught:
        deeplab_v3(weights="imagenet")
    message = str(caught.value)
    assert NOTOP in message
    assert os.path.join(str(offline_keras_home), "models", NOTOP) in message
    assert caught.value.__suppress_context__  # no urllib traceback chained on
    assert isinstance(caught.value, RuntimeError)
    assert not (offline_keras_home / "models" / NOTOP).exists()  # no partial download


def test_imagenet_found_in_keras_home_needs_no_network(offline_keras_home):
    (offline_keras_home / "models").mkdir()
    cached = offline_keras_home / "models" / NOTOP
    cached.write_bytes(b"")
    assert resolve_resnet50_weights("imagenet") == str(cached)


def test_missing_weights_path_is_named(tmp_path):
    missing = tmp_path / "nowhere.h5"
    with pytest.raises(PretrainedWeightsError, match="nowhere.h5"):
        unet(weights=missing)


def test_corrupt_weights_file_is_named(tmp_path):
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"not an HDF5 file" * 10)
    with pytest.raises(PretrainedWeightsError, match="corrupt.h5"):
        deeplab_v3(weights=str(corrupt))


def test_hdf5_file_without_resnet_weights_is_named(tmp_path):
    wrong = tmp_path / "wrong.h5"
    with h5py.File(wrong, "w") as file:
        file.create_dataset("x", data=np.zeros(3))
    with pytest.raises(PretrainedWeightsError, match="wrong.h5"):
        load_resnet50_weights(None, str(wrong))


def test_reduced_models_refuse_pretrained_weights(tmp_path):
    with pytest.raises(ValueError, match="blocks_per_stage"):
        deeplab_v3(weights="imagenet", **TINY)
    with pytest.raises(ValueError, match="width"):
        unet(weights=tmp_path / "any.h5", blocks_per_stage=(3, 4, 6, 3), width=32)


@pytest.mark.slow  # the loader is DeepLab v3's (tested above); a second real-depth build
def test_v3_plus_loads_the_same_backbone_weights(imagenet_style_weights):
    # The same loader as DeepLab v3: every ResNet-50 layer by name; the decoder stays random.
    model = deeplab_v3_plus(weights=imagenet_style_weights.keras3_path)
    assert_all_resnet_weights_equal(model, imagenet_style_weights.reference)
    assert_sees_imagenet_preprocessing(model)
    assert model.get_layer("decoder_low_level_conv").input is model.get_layer("conv2_block3_out").output
    assert model(random_images(1, 64, 64, 3)).shape == (1, 64, 64, 21)
