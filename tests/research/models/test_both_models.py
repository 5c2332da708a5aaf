"""What DeepLab v3 and U-Net share: float32 logits under mixed precision, .keras round trip."""
import keras
import numpy as np
import pytest

import research.models  # noqa: F401  registers the custom layers for loading
from kernels import AtrousConv2D
from research.models import deeplab_v3, unet
from tests.research.models.conftest import TINY, random_images

# (builder, a layer that must compute in the policy's half precision)
MODELS = {
    "deeplab_v3": (lambda **kw: deeplab_v3(num_classes=5, aspp_filters=16, **TINY, **kw),
                   "aspp_atrous1_conv"),
    "unet": (lambda **kw: unet(num_classes=5, decoder_filters=(16, 12, 8, 8, 4), **TINY,
                               **kw),
             "decoder1_1_conv"),
}


@pytest.mark.parametrize("model_name", MODELS)
def test_logits_are_float32_under_mixed_precision(model_name, mixed_policy):
    build, half_precision_layer = MODELS[model_name]
    model = build()
    assert model.get_layer(half_precision_layer).compute_dtype == (
        keras.config.dtype_policy().compute_dtype)
    assert model.get_layer(half_precision_layer).compute_dtype != "float32"
    logits = model(random_images(1, 72, 56, 3))
    assert logits.shape == (1, 72, 56, 5)
    assert logits.dtype == "float32"
    assert np.isfinite(logits.numpy()).all()


@pytest.mark.parametrize("model_name, preprocessing", [("deeplab_v3", "caffe"),
                                                       ("unet", "unit")])
def test_save_and_load_keeps_outputs_and_preprocessing(model_name, preprocessing, tmp_path):
    build, _ = MODELS[model_name]
    model = build(preprocessing=preprocessing)
    images = random_images(2, 72, 56, 3)
    expected = model(images).numpy()
    path = tmp_path / f"{model_name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_layer("preprocessing").mode == preprocessing
    assert ([type(layer) for layer in loaded.layers]
            == [type(layer) for layer in model.layers])
    assert (AtrousConv2D in {type(layer) for layer in loaded.layers}) == (
        model_name == "deeplab_v3")
    np.testing.assert_allclose(loaded(images).numpy(), expected, rtol=1e-6, atol=1e-6)
