"""The ResNet-50 builder: Keras' architecture and names, strides, dilation, reduced variants."""
import keras
import numpy as np
import pytest

from kernels import AtrousConv2D
from research.models.resnet import resnet50
from tests.research.models.conftest import TINY, random_images

OUTPUT_NAMES = ["conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out",
                "conv5_block3_out"]


def backbone(strides=(1, 2, 2, 2), dilations=(1, 1, 1, 1), **kwargs):
    images = keras.Input((None, None, 3))
    return keras.Model(images, resnet50(images, strides, dilations, **kwargs))


def weight_shapes(model):
    return {layer.name: [tuple(w.shape) for w in layer.weights]
            for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)}


def test_full_depth_has_keras_resnet50_layers_and_computes_the_same(imagenet_style_weights):
    reference = imagenet_style_weights.reference
    ours = backbone()
    assert weight_shapes(ours) == weight_shapes(reference)
    for output, name in zip(ours.outputs, OUTPUT_NAMES, strict=True):
        assert output is ours.get_layer(name).output
    assert [ours.get_layer(n).output.shape[-1] for n in OUTPUT_NAMES] == [
        64, 256, 512, 1024, 2048]
    for layer in reference.layers:
        if layer.weights:
            ours.get_layer(layer.name).set_weights(layer.get_weights())
    images = random_images(1, 64, 48, 3)
    # Up to float32 rounding through 53 layers: our BatchNorm is the fused kernel, which
    # rounds differently from Keras' separate ops (1e-6 per layer).
    expected = reference(images).numpy()
    np.testing.assert_allclose(ours(images)[-1].numpy(), expected,
                               rtol=0, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("strides, dilations, expected_sizes", [
    ((1, 2, 2, 2), (1, 1, 1, 1), [32, 16, 8, 4, 2]),   # standard: strides 2 .. 32
    ((1, 2, 2, 1), (1, 1, 1, 2), [32, 16, 8, 4, 4]),   # output stride 16
    ((1, 2, 1, 1), (1, 1, 2, 4), [32, 16, 8, 8, 8]),   # output stride 8
])
def test_feature_strides(strides, dilations, expected_sizes):
    features = backbone(strides, dilations, **TINY)(random_images(1, 64, 64, 3))
    assert [f.shape[1] for f in features] == expected_sizes
    assert [f.shape[2] for f in features] == expected_sizes
    assert [f.shape[3] for f in features] == [8, 32, 64, 128, 256]  # width 8


def test_odd_input_sizes_round_up():
    features = backbone(**TINY)(random_images(1, 65, 47, 3))
    assert [tuple(f.shape[1:3]) for f in features] == [
        (33, 24), (17, 12), (9, 6), (5, 3), (3, 2)]


def test_dilated_stage_uses_atrous_kernel_with_stride_one_in_first_block():
    model = backbone((1, 2, 1, 1), (1, 1, 2, 4), blocks_per_stage=(1, 1, 2, 2), width=8)
    rates = {layer.name: layer.dilation_rate for layer in model.layers
             if isinstance(layer, AtrousConv2D)}
    assert rates == {"conv4_block1_2_conv": 2, "conv4_block2_2_conv": 2,
                     "conv5_block1_2_conv": 4, "conv5_block2_2_conv": 4}
    for name in ("conv4_block1_0_conv", "conv4_block1_1_conv", "conv5_block1_0_conv",
                 "conv5_block1_1_conv"):
        assert model.get_layer(name).strides == (1, 1)
    assert model.get_layer("conv3_block1_1_conv").strides == (2, 2)


def test_reduced_variant_keeps_the_naming_scheme():
    model = backbone(blocks_per_stage=(1, 2, 1, 1), width=4)
    names = {layer.name for layer in model.layers}
    assert {"conv1_relu", "conv2_block1_out", "conv3_block2_out", "conv3_block2_2_conv",
            "conv4_block1_out", "conv5_block1_out"} <= names
    assert "conv2_block2_out" not in names and "conv3_block3_out" not in names
    assert model.get_layer("conv5_block1_3_conv").filters == 4 * 4 * 8


@pytest.mark.parametrize("kwargs", [dict(stage_strides=(1, 2, 2)),
                                    dict(stage_strides=(1, 2, 3, 2)),
                                    dict(stage_dilations=(1, 1, 0, 1)),
                                    dict(blocks_per_stage=(3, 4, 0, 3))])
def test_bad_stage_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        resnet50(keras.Input((None, None, 3)), **kwargs)


def _weighted_operations(model):
    """(index, name) of the model's operations with weights: what checkpoints key by."""
    return [(index, op.name) for index, op in enumerate(model._operations) if op.weights]


def test_without_the_stride2_map_the_stem_keeps_no_relu_output_for_the_same_values():
    import tensorflow as tf
    from research.tools.memory_breakdown import backward_reads

    models = {}
    for stride2_map in (True, False):
        images = keras.Input((None, None, 3))
        features = resnet50(images, **TINY, stride2_map=stride2_map)
        assert (features[0] is None) == (not stride2_map)
        models[stride2_map] = keras.Model(images, features[1:])
    with_map, without = models[True], models[False]
    # The same layers in the same places (checkpoints name them by index), the same values.
    assert _weighted_operations(without) == _weighted_operations(with_map)
    without.set_weights(with_map.get_weights())
    batch = random_images(2, 64, 64, 3)
    for a, b in zip(with_map(batch, training=True), without(batch, training=True), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())

    def kept_bytes(model):
        def loss_and_sources(x):
            return tf.add_n([tf.reduce_sum(f) for f in model(x, training=True)]), model.trainable_variables
        reads = backward_reads(loss_and_sources, tf.TensorSpec([2, 64, 64, 3]))
        return sum(t.shape.num_elements() * t.dtype.size for t, _ in reads
                   if t.shape.is_fully_defined() and t.op.type not in ("Const", "ReadVariableOp", "Placeholder"))

    # With the map (Keras' order) the ReLU output [2, 32, 32, width 8] and its padded copy
    # [2, 34, 34, 8] (the max-pool's input) are kept; without it, the max-pool reads
    # ReLU(Pad(BatchNorm)) alone and makes it again in its backward (RecomputingMaxPooling2D).
    relu_output_bytes, padded_bytes = 2 * 32 * 32 * 8 * 4, 2 * 34 * 34 * 8 * 4
    assert kept_bytes(with_map) - kept_bytes(without) == relu_output_bytes + padded_bytes
