"""RecomputingConv2D agrees with keras.layers.Conv2D (its reference twin) after
FusedBatchNormalization + ReLU, and AtrousConv2D(recompute_input=True) with
AtrousConv2D, in values, gradients and moving statistics; their backward keeps no ReLU
output."""
import functools

import numpy as np
import keras
import pytest
import tensorflow as tf

from kernels import AtrousConv2D, FusedBatchNormalization, RecomputingConv2D
from kernels import recompute
from research.tools.memory_breakdown import backward_reads
from tests.kernels._modes import MODES, in_mode

SHAPE = (2, 6, 5, 3)


def _unit_model(recomputing, dtype_policy="float32", atrous=False):
    """conv -> BN -> ReLU -> conv 3x3 -> BN -> ReLU -> conv 1x1 (the last two convolutions
    RecomputingConv2D or Keras' Conv2D; with atrous, the 3x3 one is AtrousConv2D at rate 2,
    recomputing its input or not), with seeded weights."""
    conv = RecomputingConv2D if recomputing else keras.layers.Conv2D
    conv3x3 = (functools.partial(AtrousConv2D, dilation_rate=2, recompute_input=recomputing) if atrous
               else functools.partial(conv, padding="same"))
    keras.utils.set_random_seed(0)
    inputs = keras.Input(SHAPE[1:])
    x = keras.layers.Conv2D(4, 1, dtype=dtype_policy)(inputs)
    x = FusedBatchNormalization(momentum=0.5, dtype=dtype_policy)(x)
    x = keras.layers.Activation("relu", dtype=dtype_policy)(x)
    x = conv3x3(6, 3, dtype=dtype_policy)(x)
    x = FusedBatchNormalization(momentum=0.5, dtype=dtype_policy)(x)
    x = keras.layers.Activation("relu", dtype=dtype_policy)(x)
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


def _run(recomputing, mode, dtype_policy="float32", atrous=False):
    model = _unit_model(recomputing, dtype_policy, atrous)
    step = in_mode(_train_step(model), mode)
    loss, grads = step(_images())
    return float(loss), [g.numpy() for g in grads], [v.numpy() for v in model.non_trainable_variables], step


@pytest.mark.parametrize("atrous", [False, True], ids=["conv2d", "atrous"])
@pytest.mark.parametrize("mode", MODES)
def test_values_gradients_and_statistics_equal_keras_conv2d(mode, atrous):
    loss, grads, statistics, step = _run(True, mode, atrous=atrous)
    want_loss, want_grads, want_statistics, _ = _run(False, mode, atrous=atrous)
    # The recomputed BatchNorm and ReLU are the forward's ops on the same inputs, and the
    # gradient ops autodiff's: bit-identical. (Eager and XLA run Keras' Conv2D itself.)
    assert loss == want_loss
    for got, want in zip(grads + statistics, want_grads + want_statistics, strict=True):
        np.testing.assert_array_equal(got, want)
    if mode == "function":
        graph = step.get_concrete_function(_images()).graph
        assert any("bn_relu_conv_recomputed" in op.name for op in graph.get_operations())


@pytest.mark.parametrize("atrous", [False, True], ids=["conv2d", "atrous"])
def test_mixed_float16_gradients_equal_keras_conv2d(atrous):
    loss, grads, statistics, _ = _run(True, "function", "mixed_float16", atrous)
    want_loss, want_grads, want_statistics, _ = _run(False, "function", "mixed_float16", atrous)
    assert loss == want_loss
    for got, want in zip(grads + statistics, want_grads + want_statistics, strict=True):
        np.testing.assert_array_equal(got, want)


def _relu_outputs_read_by_the_backward(recomputing, atrous=False):
    model = _unit_model(recomputing, atrous=atrous)
    reads = backward_reads(lambda images: (tf.reduce_sum(model(images, training=True)),
                                           model.trainable_variables),
                           tf.TensorSpec((None,) + SHAPE[1:], tf.float32))
    return [tensor for tensor, _ in reads if tensor.op.type == "Relu"]


@pytest.mark.parametrize("atrous", [False, True], ids=["conv2d", "atrous"])
def test_the_backward_keeps_no_relu_output(atrous):
    assert len(_relu_outputs_read_by_the_backward(recomputing=False, atrous=atrous)) == 2
    assert _relu_outputs_read_by_the_backward(recomputing=True, atrous=atrous) == []


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
    assert not any("bn_relu_conv_recomputed" in op.name for op in graph.get_operations())
    assert recompute.training_batch_norm_source(_images()) is None   # eager


@pytest.mark.parametrize("kwargs", [dict(strides=2), dict(dilation_rate=2), dict(use_bias=False)])
def test_only_stride_1_undilated_convolutions_with_a_bias(kwargs):
    with pytest.raises(ValueError, match="strides 1, dilation 1 and a bias"):
        RecomputingConv2D(4, 3, **kwargs)
    with pytest.raises(ValueError, match="recompute_input needs use_bias"):
        AtrousConv2D(4, 3, dilation_rate=2, use_bias=False, recompute_input=True)
