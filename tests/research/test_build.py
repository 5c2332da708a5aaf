"""research.build: a model rebuilt without its pretrained file keeps the input scaling
those weights imply (a preprocessing layer has no weights, so no checkpoint restores it);
DeepLab v3+ from a config and at another output stride; the BatchNorm policies."""
import numpy as np
import pytest

from research import build
from research import configs
from research.models.layers import batchnorm_layers

MOBILE_SMOKE = dict(backbone="mobilenet_v2", backbone_blocks=(1, 1, 1, 1, 1, 1, 1), backbone_width=8,
                    head="light")


@pytest.mark.parametrize("backbone, expected", [("resnet50", "caffe"), ("mobilenet_v2", "tf")])
def test_rebuilt_without_the_file_keeps_the_pretrained_input_scaling(backbone, expected):
    config = configs.load_config("smoke").replace(weights="/nonexistent/weights.h5")
    if backbone == "mobilenet_v2":
        config = config.replace(**MOBILE_SMOKE)
    model = build.build_model(config, pretrained=False)
    assert model.get_layer("preprocessing").mode == expected
    assert build.build_model(config.replace(weights=None)).get_layer("preprocessing").mode == "unit"


def test_output_stride_rebuild_keeps_weights_and_input_scaling():
    config = configs.load_config("smoke").replace(weights="/nonexistent/weights.h5")
    model = build.build_model(config, pretrained=False)
    rebuilt = build.build_model_at_output_stride(model, config, 8)
    assert rebuilt is not model
    assert rebuilt.get_layer("preprocessing").mode == model.get_layer("preprocessing").mode == "caffe"
    for layer in model.layers:
        for a, b in zip(layer.get_weights(), rebuilt.get_layer(layer.name).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)


def aspp_rates(model):
    """The ASPP branches' dilation rates (AtrousConv2D keeps an int, Conv2D a pair)."""
    rates = [model.get_layer(f"aspp_atrous{i}_conv").dilation_rate for i in (1, 2, 3)]
    return [rate if isinstance(rate, int) else rate[0] for rate in rates]


def test_config_aspp_rates_and_filters_reach_the_model_and_its_output_stride_rebuild():
    config = configs.load_config("smoke").replace(aspp_rates=(1, 3, 4), aspp_filters=24)
    model = build.build_model(config)
    assert aspp_rates(model) == [1, 3, 4]
    assert model.get_layer("aspp_project_conv").filters == 24
    rebuilt = build.build_model_at_output_stride(model, config, 8)
    assert aspp_rates(rebuilt) == [2, 6, 8]


V3_PLUS = dict(model="deeplab_v3_plus", aspp_filters=16)


def test_v3_plus_config_builds_the_decoder_and_rebuilds_at_output_stride_8_with_its_weights():
    config = configs.load_config("smoke").replace(**V3_PLUS)
    model = build.build_model(config)
    assert model.name == "deeplab_v3_plus" and model.get_layer("decoder_1_conv").filters == 16
    rebuilt = build.build_model_at_output_stride(model, config, 8)
    assert rebuilt is not model and aspp_rates(rebuilt) == [12, 24, 36]
    assert [w.path for w in rebuilt.weights] == [w.path for w in model.weights]
    for a, b in zip(model.weights, rebuilt.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # The rebuild is the OS8 network with the same weights: a model built at OS8 and given
    # the weights computes the same logits; rebuilt back at OS16 it is the original again.
    direct = build.build_model(config.replace(output_stride=8))
    direct.set_weights(model.get_weights())
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 48, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(rebuilt(images)), np.asarray(direct(images)))
    back = build.build_model_at_output_stride(rebuilt, config.replace(output_stride=8), 16)
    np.testing.assert_array_equal(np.asarray(back(images)), np.asarray(model(images)))


def batchnorm_settings(model):
    """{layer name: (synchronized, trainable)} of the model's BatchNorm layers."""
    return {layer.name: (layer.synchronized, layer.trainable) for layer in batchnorm_layers(model)}


def test_bn_policy_sync_and_train_differ_only_with_several_replicas():
    config = configs.load_config("smoke")
    sync, train = config, config.replace(bn_policy="train")
    one_sync, one_train = build.build_model(sync), build.build_model(train)
    # One replica: the same network, layer for layer (the fused kernel, no collective).
    assert one_sync.get_config() == one_train.get_config()
    assert set(batchnorm_settings(one_sync).values()) == {(False, True)}
    assert build.moving_statistics_to_average(one_train, train, 1) == []
    # Several: "sync" synchronizes every BatchNorm; "train" none, and averages the moving
    # statistics once per step instead.
    assert set(batchnorm_settings(build.build_model(sync, num_replicas=2)).values()) == {(True, True)}
    two_train = build.build_model(train, num_replicas=2)
    assert set(batchnorm_settings(two_train).values()) == {(False, True)}
    layers = batchnorm_layers(two_train)
    assert build.moving_statistics_to_average(two_train, train, 2) == [
        v for layer in layers for v in (layer.moving_mean, layer.moving_variance)]
    assert build.moving_statistics_to_average(two_train, sync, 2) == []


@pytest.mark.parametrize("model", ["deeplab_v3", "deeplab_v3_plus", "unet"])
def test_bn_policy_frozen_freezes_every_batchnorm_and_keeps_the_variables(model):
    config = configs.load_config("smoke").replace(model=model)
    trained = build.build_model(config)
    frozen = build.build_model(config.replace(bn_policy="frozen"), num_replicas=2)
    assert set(batchnorm_settings(frozen).values()) == {(False, False)}   # no collective either
    # The same variables (what a checkpoint, an export or a TFLite conversion reads) ...
    assert [(w.path, w.shape) for w in frozen.weights] == [(w.path, w.shape) for w in trained.weights]
    # ... but gamma and beta are not trainable: no optimizer slot, no weight decay.
    names = {w.path.rsplit("/", 1)[-1] for w in frozen.trainable_variables}
    assert "gamma" not in names and "beta" not in names and "kernel" in names
    assert len(trained.trainable_variables) - len(frozen.trainable_variables) == 2 * len(batchnorm_layers(frozen))
    # Rebuilt at another output stride (evaluation), the model stays frozen.
    if model != "unet":
        rebuilt = build.build_model_at_output_stride(frozen, config.replace(bn_policy="frozen"), 8)
        assert set(batchnorm_settings(rebuilt).values()) == {(False, False)}
