"""research.build: a model rebuilt without its pretrained file keeps the input scaling
those weights imply (a preprocessing layer has no weights, so no checkpoint restores it)."""
import numpy as np
import pytest

from research import build
from research import configs

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
        for a, b in zip(layer.get_weights(), rebuilt.get_layer(layer.name).get_weights()):
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
