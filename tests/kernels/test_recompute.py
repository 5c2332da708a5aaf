"""RecomputingConv2D agrees with keras.layers.Conv2D (its reference twin) after
FusedBatchNormalization + ReLU, AtrousConv2D(recompute_input=True) with AtrousConv2D, and
RecomputingMaxPooling2D with keras.layers.MaxPooling2D after BatchNorm, zero pad and ReLU,
in values, gradients and moving statistics; their backward keeps no ReLU output."""
import functools

import numpy as np
import keras
import pytest
import tensorflow as tf

from kernels import AtrousConv2D, FusedBatchNormalization, RecomputingConv2D, RecomputingMaxPooling2D
from kernels import recompute
from research.tools.memory_breakdown import backward_reads
from tests.kernels._modes import MODES, in_mode

SHAPE = (2, 6, 5, 3)
LAYERS = ("conv2d", "atrous", "maxpool")  # the layer after the first BatchNorm and ReLU


def _middle(layer, recomputing, dtype_policy):
    """The layers between the first BatchNorm and the second: ReLU, then a 3x3 convolution
    (RecomputingConv2D or Keras' Conv2D; "atrous": AtrousConv2D at rate 2, recomputing its
    input or not) or, for "maxpool", the ResNet stem's zero pad, ReLU and 3x3 max-pool of
    stride 2 (RecomputingMaxPooling2D or Keras')."""
    if layer == "maxpool":
        pool = RecomputingMaxPooling2D if recomputing else keras.layers.MaxPooling2D
        return [keras.layers.ZeroPadding2D(1, dtype=dtype_policy), keras.layers.Activation("relu", dtype=dtype_policy),
                pool(3, strides=2, dtype=dtype_policy)]
    if layer == "atrous":
        conv = AtrousConv2D(6, 3, dilation_rate=2, recompute_input=recomputing, dtype=dtype_policy)
    else:
        conv = (RecomputingConv2D if recomputing else keras.layers.Conv2D)(6, 3, padding="same", dtype=dtype_policy)
    return [keras.layers.Activation("relu", dtype=dtype_policy), conv]


def _unit_model(recomputing, dtype_policy="float32", layer="conv2d"):
    """conv -> BN -> `_middle` -> BN -> ReLU -> conv 1x1 (RecomputingConv2D or Keras'
    Conv2D), with seeded weights."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(SHAPE[1:])
    x = keras.layers.Conv2D(4, 1, dtype=dtype_policy)(inputs)
    x = FusedBatchNormalization(momentum=0.5, dtype=dtype_policy)(x)
    for middle in _middle(layer, recomputing, dtype_policy):
        x = middle(x)
    x = FusedBatchNormalization(momentum=0.5, dtype=dtype_policy)(x)
    x = keras.layers.Activation("relu", dtype=dtype_policy)(x)
    conv = RecomputingConv2D if recomputing else keras.layers.Conv2D
    outputs = conv(5, 1, padding="same", dtype=dtype_policy)(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(size=w.shape).astype("float32") * 0.5 + (1.0 if "gamma" in w.path else 0.0)
                       for w in model.weights])
    return model


def _images():
    rng = np.random.default_rng(2)
    return tf.constant(rng.normal(size=SHAPE) * 3.0 + 1.0, tf.float32)


def _train_step(model):
    """(loss, gradients of the trainable variables): a training-mode forward with a fixed
    non-uniform cotangent."""
    def step(images):
        with tf.GradientTape() as tape:
            out = tf.cast(model(images, training=True), tf.float32)
            probe = tf.cast(tf.math.floormod(tf.range(tf.size(out)) * 7 + 3, 11) - 5, tf.float32) / 5
            loss = tf.reduce_sum(out * tf.reshape(probe, tf.shape(out)))
        return loss, tape.gradient(loss, model.trainable_variables)
    return step


def _run(recomputing, mode, dtype_policy="float32", layer="conv2d"):
    model = _unit_model(recomputing, dtype_policy, layer)
    step = in_mode(_train_step(model), mode)
    loss, grads = step(_images())
    return float(loss), [g.numpy() for g in grads], [v.numpy() for v in model.non_trainable_variables], step


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("mode", MODES)
def test_values_gradients_and_statistics_equal_keras_conv2d(mode, layer):
    loss, grads, statistics, step = _run(True, mode, layer=layer)
    want_loss, want_grads, want_statistics, _ = _run(False, mode, layer=layer)
    # The recomputed BatchNorm and ReLU are the forward's ops on the same inputs, and the
    # gradient ops autodiff's: bit-identical. (Eager and XLA run Keras' Conv2D itself.)
    assert loss == want_loss
    for got, want in zip(grads + statistics, want_grads + want_statistics, strict=True):
        np.testing.assert_array_equal(got, want)
    if mode == "function":
        graph = step.get_concrete_function(_images()).graph
        assert any("bn_relu_recomputed" in op.name for op in graph.get_operations())


@pytest.mark.parametrize("layer", LAYERS)
def test_mixed_float16_gradients_equal_keras_conv2d(layer):
    loss, grads, statistics, _ = _run(True, "function", "mixed_float16", layer)
    want_loss, want_grads, want_statistics, _ = _run(False, "function", "mixed_float16", layer)
    assert loss == want_loss
    for got, want in zip(grads + statistics, want_grads + want_statistics, strict=True):
        np.testing.assert_array_equal(got, want)


def _relu_outputs_read_by_the_backward(recomputing, layer):
    model = _unit_model(recomputing, layer=layer)
    reads = backward_reads(lambda images: (tf.reduce_sum(model(images, training=True)),
                                           model.trainable_variables),
                           tf.TensorSpec((None,) + SHAPE[1:], tf.float32))
    return [tensor for tensor, _ in reads if tensor.op.type == "Relu"]


@pytest.mark.parametrize("layer", LAYERS)
def test_the_backward_keeps_no_relu_output(layer):
    assert len(_relu_outputs_read_by_the_backward(recomputing=False, layer=layer)) == 2
    assert _relu_outputs_read_by_the_backward(recomputing=True, layer=layer) == []


def test_the_recomputation_waits_for_the_upstream_gradient():
    """Made in the forward, the recomputed tensors would be kept as long as the ReLU
    outputs they replace."""
    model = _unit_model(True)
    graph = tf.function(_train_step(model)).get_concrete_function(_images()).graph
    recomputed = [op for op in graph.get_operations()
                  if op.type == "FusedBatchNormV3" and "recomputed_bn_relu" in op.name]
    assert len(recomputed) == 2
    for op in recomputed:
        assert op.inputs[0].op.type == "Identity" and op.inputs[0].op.control_inputs


def test_other_inputs_run_keras_conv2d():
    conv = RecomputingConv2D(4, 3, padding="same")

    @tf.function
    def plain(x):   # not a ReLU of a BatchNorm
        return conv(tf.nn.relu(x))

    graph = plain.get_concrete_function(_images()).graph
    assert not any("bn_relu_recomputed" in op.name for op in graph.get_operations())
    assert recompute.training_batch_norm_source(_images()) is None   # eager


@pytest.mark.parametrize("kwargs", [dict(strides=2), dict(dilation_rate=2), dict(use_bias=False)])
def test_only_stride_1_undilated_convolutions_with_a_bias(kwargs):
    with pytest.raises(ValueError, match="strides 1, dilation 1 and a bias"):
        RecomputingConv2D(4, 3, **kwargs)
    with pytest.raises(ValueError, match="recompute_input needs use_bias"):
        AtrousConv2D(4, 3, dilation_rate=2, use_bias=False, recompute_input=True)
