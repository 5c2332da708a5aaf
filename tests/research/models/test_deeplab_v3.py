"""DeepLab v3 on reduced backbones: shapes, ASPP wiring, atrous layers, arguments.

The real-depth model and its pretrained weights are tested in test_weights.py.
"""
import keras
import numpy as np
import pytest

import tensorflow as tf

from kernels import BranchLink, FusedBatchNormalization, ordering
from research.models import deeplab_v3, deeplab_v3_plus
from research.models.mobilenet_v2 import MOBILENET_V2_BLOCKS
from tests.research.models.conftest import TINY, atrous_rates, random_images

HEAD = dict(num_classes=5, aspp_filters=16)


@pytest.fixture(scope="module", params=[16, 8])
def tiny_deeplab(request):
    return deeplab_v3(output_stride=request.param, **HEAD, **TINY)


@pytest.mark.parametrize("height, width", [(64, 64), (96, 64), (128, 128), (72, 56),
                                           (50, 70)])
def test_logits_have_the_input_size(tiny_deeplab, height, width):
    logits = tiny_deeplab(random_images(2, height, width, 3))
    assert logits.shape == (2, height, width, 5)
    assert logits.dtype == "float32"


def test_static_input_shape_gives_static_output_shape():
    model = deeplab_v3(input_shape=(96, 64, 3), **HEAD, **TINY)
    assert model.output.shape == (None, 96, 64, 5)


@pytest.mark.parametrize("output_stride", [4, 32, "16"])
def test_other_output_strides_are_refused(output_stride):
    with pytest.raises(ValueError, match="output_stride"):
        deeplab_v3(output_stride=output_stride, **TINY)


@pytest.mark.parametrize("output_stride, feature_size", [(16, 4), (8, 8)])
def test_backbone_output_stride(output_stride, feature_size):
    model = deeplab_v3(output_stride=output_stride, **HEAD, **TINY)
    probe = keras.Model(model.input, model.get_layer("aspp_concat").output)
    assert probe(random_images(1, 64, 64, 3)).shape == (1, feature_size, feature_size, 80)


@pytest.mark.parametrize("output_stride, expected", [
    (16, {"conv5_block1_2_conv": 2, "conv5_block2_2_conv": 2,
          "aspp_atrous1_conv": 6, "aspp_atrous2_conv": 12, "aspp_atrous3_conv": 18}),
    (8, {"conv4_block1_2_conv": 2, "conv4_block2_2_conv": 2,
         "conv5_block1_2_conv": 4, "conv5_block2_2_conv": 4,
         "aspp_atrous1_conv": 12, "aspp_atrous2_conv": 24, "aspp_atrous3_conv": 36}),
])
def test_every_dilated_conv_is_an_atrous_kernel(output_stride, expected):
    model = deeplab_v3(output_stride=output_stride, blocks_per_stage=(1, 1, 2, 2),
                       width=8, **HEAD)
    assert atrous_rates(model) == expected
    dilated_keras_convs = [layer.name for layer in model.layers
                           if isinstance(layer, keras.layers.Conv2D)
                           and max(layer.dilation_rate) > 1]
    assert dilated_keras_convs == []


@pytest.mark.parametrize("output_stride, expected", [(16, (2, 3, 4)), (8, (4, 6, 8))])
def test_aspp_rates_are_given_at_output_stride_16_and_doubled_at_8(output_stride, expected):
    model = deeplab_v3(output_stride=output_stride, aspp_rates=(2, 3, 4), **HEAD, **TINY)
    rates = atrous_rates(model)
    assert [rates[f"aspp_atrous{i}_conv"] for i in (1, 2, 3)] == list(expected)
    assert model(random_images(1, 64, 64, 3)).shape == (1, 64, 64, 5)


def test_aspp_rate_1_and_any_number_of_rates_build():
    model = deeplab_v3(aspp_rates=(1, 2), **HEAD, **TINY)
    assert atrous_rates(model)["aspp_atrous2_conv"] == 2
    assert model.get_layer("aspp_atrous1_conv").kernel_size in (3, (3, 3))   # rate 1: a plain 3x3
    with pytest.raises(ValueError, match="aspp_atrous3_conv"):
        model.get_layer("aspp_atrous3_conv")
    assert model(random_images(1, 32, 32, 3)).shape == (1, 32, 32, 5)


@pytest.mark.parametrize("rates", [(), (0, 2), (2.5,)])
def test_bad_aspp_rates_are_refused(rates):
    with pytest.raises(ValueError, match="aspp_rates must be positive integers"):
        deeplab_v3(aspp_rates=rates, **HEAD, **TINY)


def test_keras_atrous_choice_has_same_names_and_shapes_and_outputs():
    settings = dict(output_stride=8, blocks_per_stage=(1, 1, 2, 1), width=8, **HEAD)
    fast = deeplab_v3(atrous="kernels", **settings)
    plain = deeplab_v3(atrous="keras", **settings)
    assert atrous_rates(plain) == {}
    for name, rate in atrous_rates(fast).items():
        layer = plain.get_layer(name)
        assert type(layer) is keras.layers.Conv2D and layer.dilation_rate == (rate, rate)
    assert ([(layer.name, [tuple(w.shape) for w in layer.weights]) for layer in fast.layers]
            == [(layer.name, [tuple(w.shape) for w in layer.weights])
                for layer in plain.layers])
    for layer in fast.layers:
        plain.get_layer(layer.name).set_weights(layer.get_weights())
    images = random_images(2, 64, 48, 3)
    expected = fast(images).numpy()
    np.testing.assert_allclose(plain(images).numpy(), expected,
                               atol=1e-4 * np.abs(expected).max())


def test_batchnorm_choice_has_same_names_shapes_and_training_results():
    # Default "fused": every BatchNorm is FusedBatchNormalization; "keras" gives Keras'
    # layer with the same names and variables. Weights copy by name, and one training-mode
    # forward + backward gives the same logits, gradients and moving statistics, up to
    # float32 rounding carried through the network (the layers alone agree to 1e-5:
    # tests/kernels/test_batchnorm.py).
    keras.utils.set_random_seed(0)
    settings = dict(output_stride=16, **TINY, **HEAD)
    fused = deeplab_v3(**settings)
    plain = deeplab_v3(bn_impl="keras", **settings)
    bn_layers = [layer for layer in fused.layers if "_bn" in layer.name]
    assert bn_layers and all(type(layer) is FusedBatchNormalization for layer in bn_layers)
    assert all(type(plain.get_layer(layer.name)) is keras.layers.BatchNormalization
               for layer in bn_layers)
    assert ([(w.path, tuple(w.shape)) for w in fused.weights]
            == [(w.path, tuple(w.shape)) for w in plain.weights])
    plain.set_weights(fused.get_weights())
    images = tf.constant(random_images(2, 64, 48, 3))
    # A convolution's bias right before a BatchNorm has gradient exactly 0 (the batch
    # mean absorbs it): both models give rounding noise there, so it is not compared.
    compared = [i for i, w in enumerate(fused.trainable_variables) if not w.path.endswith("_conv/bias")]
    results = []
    for model in (fused, plain):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = tf.reduce_sum(logits * tf.sin(logits))
        grads = tape.gradient(loss, model.trainable_variables)
        results.append([logits] + [grads[i] for i in compared] + model.non_trainable_weights)
    for got, want in zip(*results, strict=True):
        want = np.asarray(want)
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-3 * np.abs(want).max())


def test_pooled_branch_is_the_resized_1x1_conv_output():
    # The book resizes the pooled 2048-channel mean instead of its 1x1 conv output: its
    # fifth concat input would have the backbone's channels, not aspp_filters, and would
    # not change with the conv's weights.
    model = deeplab_v3(**HEAD, **TINY)
    branch = model.get_layer("aspp_concat").input[-1]
    probe = keras.Model(model.input, [model.get_layer("aspp_pool_relu").output, branch])
    images = random_images(2, 64, 96, 3)
    pooled, resized = (t.numpy() for t in probe(images))
    assert pooled.shape == (2, 1, 1, 16)
    assert resized.shape == (2, 4, 6, 16)  # the OS16 feature map of a 64x96 input
    np.testing.assert_allclose(resized, np.broadcast_to(pooled, resized.shape), rtol=1e-6)
    assert np.abs(resized).max() > 0
    conv = model.get_layer("aspp_pool_conv")
    conv.set_weights([-w for w in conv.get_weights()])
    assert not np.allclose(probe(images)[1].numpy(), resized)


def test_aspp_branches_read_the_features_through_links_in_order():
    # Each branch after the 1x1 reads the link of the one before: their backward passes
    # run one at a time (kernels/ordering.py).
    model = deeplab_v3(**HEAD, **TINY)
    links = [layer for layer in model.layers if isinstance(layer, BranchLink)]
    assert [layer.name for layer in links] == ["aspp_link1", "aspp_link2", "aspp_link3", "aspp_link_pool"]
    previous = ["aspp_1x1_relu", "aspp_atrous1_relu", "aspp_atrous2_relu", "aspp_atrous3_relu"]
    for link, branch in zip(links, previous):
        assert link.input[1] is model.get_layer(branch).output


def test_aspp_links_change_no_value_or_gradient(monkeypatch):
    # The same training step with the links replaced by their reference twin (the
    # identity): the same logits, gradients and moving statistics, up to the order of
    # the features' gradient sum.
    keras.utils.set_random_seed(0)
    model = deeplab_v3(output_stride=16, **TINY, **HEAD)
    images = tf.constant(random_images(2, 64, 48, 3))
    start = model.get_weights()

    def step():
        model.set_weights(start)
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = tf.reduce_sum(logits * tf.sin(logits))
        grads = tape.gradient(loss, model.trainable_variables)
        return [logits] + [g for g, w in zip(grads, model.trainable_variables)
                           if not w.path.endswith("_conv/bias")] + model.non_trainable_weights

    linked = [np.asarray(t) for t in tf.function(step, autograph=False)()]
    monkeypatch.setattr(ordering, "branch_link", ordering.reference_branch_link)
    plain = [np.asarray(t) for t in tf.function(step, autograph=False)()]
    for got, want in zip(linked, plain, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5 * max(np.abs(want).max(), 1e-6))


def test_dropout_is_optional():
    names = {layer.name for layer in deeplab_v3(**HEAD, **TINY).layers}
    assert "aspp_dropout" not in names
    model = deeplab_v3(dropout=0.1, **HEAD, **TINY)
    assert model.get_layer("aspp_dropout").rate == 0.1


def test_preprocessing_defaults_to_unit_without_weights_and_can_be_forced():
    assert deeplab_v3(**HEAD, **TINY).get_layer("preprocessing").mode == "unit"
    model = deeplab_v3(preprocessing="caffe", **HEAD, **TINY)
    assert model.get_layer("preprocessing").mode == "caffe"


# --- DeepLab v3+ ------------------------------------------------------------------------
MOBILE_TINY = dict(backbone="mobilenet_v2", blocks_per_stage=(1,) * 7, width=8)


@pytest.mark.parametrize("backbone", [TINY, MOBILE_TINY], ids=["resnet50", "mobilenet_v2"])
@pytest.mark.parametrize("output_stride", [16, 8])
def test_v3_plus_shapes_at_both_output_strides(backbone, output_stride):
    model = deeplab_v3_plus(output_stride=output_stride, **HEAD, **backbone)
    assert model.name == "deeplab_v3_plus"
    names = ("aspp_concat", "decoder_low_level_relu", "decoder_upsample", "decoder_concat",
             "decoder_2_relu", "logits")
    probe = keras.Model(model.input, [model.get_layer(name).output for name in names])
    aspp, low_level, upsampled, joined, decoded, logits = probe(random_images(2, 64, 96, 3))
    stride4 = (2, 16, 24)
    assert aspp.shape[:3] == (2, 64 // output_stride, 96 // output_stride)
    assert low_level.shape == stride4 + (48,)
    assert upsampled.shape == stride4 + (16,)                 # the ASPP output, at stride 4
    assert joined.shape == stride4 + (16 + 48,)
    assert decoded.shape == stride4 + (16,)
    assert logits.shape == (2, 64, 96, 5) and logits.dtype == "float32"
    assert model(random_images(1, 50, 70, 3)).shape == (1, 50, 70, 5)  # sizes off the strides


@pytest.mark.parametrize("backbone, low_level_layer", [
    (dict(blocks_per_stage=(2, 1, 1, 1), width=8), "conv2_block2_out"),   # conv2's output, 4 * width
    (dict(backbone="mobilenet_v2", blocks_per_stage=MOBILENET_V2_BLOCKS, width=32),
     "block_2_add"),                                                      # the stride-4 stage's output
])
def test_v3_plus_decoder_structure(backbone, low_level_layer):
    # The paper's decoder: stride-4 features -> 1x1 conv to 48 + BN + ReLU; concatenated with
    # the upsampled ASPP output; two 3x3 convs of 256 + BN + ReLU; a 1x1 classifier.
    model = deeplab_v3_plus(num_classes=21, **backbone)
    low_level = model.get_layer("decoder_low_level_conv")
    assert low_level.input is model.get_layer(low_level_layer).output
    assert (low_level.filters, low_level.kernel_size, low_level.use_bias) == (48, (1, 1), False)
    assert type(model.get_layer("decoder_low_level_bn")) is FusedBatchNormalization
    concat_inputs = model.get_layer("decoder_concat").input
    assert concat_inputs[0] is model.get_layer("decoder_upsample").output
    assert concat_inputs[1] is model.get_layer("decoder_low_level_relu").output
    assert model.get_layer("decoder_upsample").input[0] is model.get_layer("aspp_project_relu").output
    for name in ("decoder_1", "decoder_2"):
        conv = model.get_layer(f"{name}_conv")
        assert (conv.filters, conv.kernel_size, conv.dilation_rate, conv.use_bias) == (256, (3, 3), (1, 1), False)
        assert model.get_layer(f"{name}_relu").input is model.get_layer(f"{name}_bn").output
    assert model.get_layer("decoder_1_conv").input is model.get_layer("decoder_concat").output
    assert model.get_layer("classifier").input is model.get_layer("decoder_2_relu").output
    # What the decoder adds to DeepLab v3, by hand: 1x1 (C_low * 48), 3x3 ((256 + 48) * 256)
    # and 3x3 (256 * 256), no biases; three BatchNorms of 4 variables per channel.
    channels = low_level.input.shape[-1]
    added = channels * 48 + 9 * (256 + 48) * 256 + 9 * 256 * 256 + 4 * (48 + 256 + 256)
    assert model.count_params() - deeplab_v3(num_classes=21, **backbone).count_params() == added


def test_v3_plus_takes_every_deeplab_v3_option():
    model = deeplab_v3_plus(output_stride=8, head="light", atrous="keras", bn_impl="keras", dropout=0.1,
                            aspp_rates=(2, 3), **HEAD, **TINY)
    names = {layer.name for layer in model.layers}
    assert "aspp_atrous1_conv" not in names and "decoder_1_conv" in names   # light head + decoder
    assert type(model.get_layer("decoder_1_bn")) is keras.layers.BatchNormalization
    assert model.get_layer("decoder_upsample").input[0] is model.get_layer("aspp_dropout").output
    assert atrous_rates(model) == {}
    assert model(random_images(1, 32, 32, 3)).shape == (1, 32, 32, 5)
    with pytest.raises(ValueError, match="output_stride"):
        deeplab_v3_plus(output_stride=32, **TINY)
    with pytest.raises(ValueError, match="backbone must be one of"):
        deeplab_v3_plus(backbone="vgg16", **TINY)


def test_v3_plus_keras_file_reloads_with_identical_outputs(tmp_path):
    model = deeplab_v3_plus(**HEAD, **TINY)
    path = str(tmp_path / "v3plus.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    images = random_images(2, 40, 56, 3)
    np.testing.assert_array_equal(np.asarray(reloaded(images)), np.asarray(model(images)))


def test_v3_plus_logits_are_float32_under_mixed_precision(mixed_policy):
    model = deeplab_v3_plus(**HEAD, **TINY)
    assert model.get_layer("decoder_1_conv").compute_dtype == mixed_policy.split("_")[1]
    assert model(random_images(1, 32, 32, 3)).dtype == "float32"
