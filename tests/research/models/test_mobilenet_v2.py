"""The MobileNetV2 backbone: shapes, output stride 16 and 8, weights by name, offline error.

The weights come from a seeded keras.applications.MobileNetV2 (alpha 1.0) with every
variable random, written by the test in Keras' legacy `.h5` layout (as the distributed
ImageNet file) and in Keras 3's `.weights.h5`.
"""
import socket

import h5py
import keras
import numpy as np
import pytest

from research.models import PretrainedWeightsError, deeplab_v3
from research.models import weights as weights_module
from research.models.mobilenet_v2 import MOBILENET_V2_BLOCKS, mobilenet_v2
from tests.research.models.conftest import random_images

TINY_MOBILE = dict(backbone="mobilenet_v2", blocks_per_stage=(1, 1, 1, 1, 1, 1, 1), width=8,
                   aspp_filters=16)
FULL_MOBILE = dict(backbone="mobilenet_v2", blocks_per_stage=MOBILENET_V2_BLOCKS, width=32)


def depthwise_rates(model):
    return {layer.name: layer.dilation_rate[0] for layer in model.layers
            if isinstance(layer, keras.layers.DepthwiseConv2D) and layer.dilation_rate[0] > 1}


@pytest.mark.parametrize("stride", [8, 16, 32])
def test_feature_strides(stride):
    # Stages at strides 2, 4, 8, 16, 16, 32, 32, capped at the output stride; SAME padding:
    # ceil(size / stride) also at odd sizes (65 -> 33 -> 17 -> 9 -> 5, as the zoo's 257 -> 17).
    expected = [min(s, stride) for s in (2, 4, 8, 16, 16, 32, 32)]
    for height, width in ((64, 96), (65, 97)):
        features = mobilenet_v2(keras.Input((height, width, 3)), output_stride=stride,
                                blocks_per_stage=(1,) * 7, width=8)
        assert [tuple(f.shape[1:3]) for f in features] == [
            (-(-height // s), -(-width // s)) for s in expected], (height, width)


def test_full_network_dilates_the_blocks_after_the_output_stride():
    model = deeplab_v3(output_stride=16, head="light", **FULL_MOBILE)
    assert depthwise_rates(model) == {"block_14_depthwise": 2, "block_15_depthwise": 2,
                                      "block_16_depthwise": 2}
    assert model.get_layer("block_13_depthwise").strides == (1, 1)
    assert model.get_layer("block_16_project").kernel.shape == (1, 1, 960, 320)
    model8 = deeplab_v3(output_stride=8, head="light", **FULL_MOBILE)
    rates = depthwise_rates(model8)
    assert rates == {**{f"block_{i}_depthwise": 2 for i in range(7, 14)},
                     **{f"block_{i}_depthwise": 4 for i in range(14, 17)}}
    logits = model8(random_images(1, 64, 64, 3))
    assert logits.shape == (1, 64, 64, 21)


@pytest.mark.parametrize("head,branches", [("aspp", 5), ("light", 2)])
def test_tiny_model_shapes_and_heads(head, branches):
    model = deeplab_v3(num_classes=5, head=head, **TINY_MOBILE)
    assert model(random_images(2, 48, 40, 3)).shape == (2, 48, 40, 5)
    assert len(model.get_layer("aspp_concat").input) == branches


def test_reduced_backbone_with_weights_is_refused():
    with pytest.raises(ValueError, match="full MobileNetV2"):
        deeplab_v3(weights="imagenet", **TINY_MOBILE)


@pytest.fixture(scope="module")
def mobilenet_weights(tmp_path_factory):
    """(reference Keras MobileNetV2 with random variables, legacy .h5 path, .weights.h5 path)."""
    folder = tmp_path_factory.mktemp("mobilenet_weights")
    keras.utils.set_random_seed(4321)
    reference = keras.applications.MobileNetV2(input_shape=(224, 224, 3), include_top=False,
                                               weights=None)
    rng = np.random.default_rng(4321)
    for variable in reference.weights:
        if variable.path.endswith(("moving_variance", "gamma")):
            value = rng.uniform(0.5, 1.5, variable.shape)
        else:
            value = rng.normal(0.0, 0.05, variable.shape)
        variable.assign(value.astype("float32"))
    keras3 = str(folder / "mobilenet_v2.weights.h5")
    reference.save_weights(keras3)
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    legacy = str(folder / weights_module.MOBILENET_V2_NOTOP_FILE)
    with h5py.File(legacy, "w") as file:
        save_weights_to_hdf5_group(file, reference)
    return reference, legacy, keras3


@pytest.mark.parametrize("which", ["legacy", "keras3"])
def test_weights_load_by_name(mobilenet_weights, which):
    reference, legacy, keras3 = mobilenet_weights
    model = deeplab_v3(weights=legacy if which == "legacy" else keras3, head="light", **FULL_MOBILE)
    compared = 0
    for layer in reference.layers:
        if not layer.weights or layer.name in ("Conv_1", "Conv_1_bn"):
            continue
        for expected, actual in zip(layer.get_weights(), model.get_layer(layer.name).get_weights(),
                                    strict=True):
            np.testing.assert_array_equal(actual, expected, err_msg=layer.name)
            compared += 1
    assert compared == len(reference.weights) - 5  # all but Conv_1's kernel and BN's four
    images = random_images(1, 224, 224, 3)  # Keras' model was built for 224
    # With weights the model preprocesses as Keras' MobileNetV2 does ([-1, 1]) ...
    np.testing.assert_allclose(model.get_layer("preprocessing")(images).numpy(),
                               keras.applications.mobilenet_v2.preprocess_input(images.copy()),
                               rtol=1e-6, atol=1e-6)
    # ... and up to block 13 (before any dilation) computes what Keras' model computes.
    probe = keras.Model(model.input, model.get_layer("block_12_add").output)
    expected = keras.Model(reference.input, reference.get_layer("block_12_add").output)(
        keras.applications.mobilenet_v2.preprocess_input(images.copy())).numpy()
    np.testing.assert_allclose(probe(images).numpy(), expected, rtol=1e-4,
                               atol=1e-4 * np.abs(expected).max())


def test_imagenet_offline_error_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    name = weights_module.MOBILENET_V2_NOTOP_FILE
    monkeypatch.setattr(weights_module, "MOBILENET_V2_NOTOP_URL", f"http://127.0.0.1:{port}/{name}")
    with pytest.raises(PretrainedWeightsError) as caught:
        deeplab_v3(weights="imagenet", **FULL_MOBILE)
    message = str(caught.value)
    assert "MobileNetV2" in message and str(tmp_path / "models" / name) in message
    assert caught.value.__suppress_context__


def test_imagenet_found_in_keras_cache(tmp_path, monkeypatch, mobilenet_weights):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    cached = tmp_path / "models" / weights_module.MOBILENET_V2_NOTOP_FILE
    cached.write_bytes(open(mobilenet_weights[1], "rb").read())
    model = deeplab_v3(weights="imagenet", head="light", **FULL_MOBILE)
    np.testing.assert_array_equal(model.get_layer("Conv1").get_weights()[0],
                                  mobilenet_weights[0].get_layer("Conv1").get_weights()[0])
