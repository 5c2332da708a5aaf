"""FusedBatchNormalization agrees with keras.layers.BatchNormalization (its reference twin)."""
import numpy as np
import keras
import pytest
import tensorflow as tf

from kernels import FusedBatchNormalization
from kernels import batchnorm
from research.tools.memory_breakdown import backward_reads
from tests.kernels._modes import MODES, assert_close, assert_same_value_and_grads, in_mode

SHAPE = (2, 5, 4, 3)


def _inputs(shape=SHAPE, seed=0):
    # Channel means far from 0 (up to 30 standard deviations): a variance computed as
    # E[x^2] - E[x]^2 in float32 would be visibly off here.
    rng = np.random.default_rng(seed)
    offset = np.array([0.0, 5.0, -30.0])[: shape[-1]]
    return tf.constant(rng.normal(size=shape) * 2.0 + offset, tf.float32)


def _pair(momentum=0.9, epsilon=1e-3, **kwargs):
    """(ours, keras') built alike with the same non-trivial variables."""
    ours = FusedBatchNormalization(momentum=momentum, epsilon=epsilon, **kwargs)
    ref = keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon, **kwargs)
    for layer in (ours, ref):
        layer.build((None, None, None, SHAPE[-1]))
    rng = np.random.default_rng(1)
    values = [rng.uniform(0.5, 1.5, size=w.shape).astype("float32") for w in ref.weights]
    ref.set_weights(values)
    ours.set_weights(values)
    return ours, ref


def _steps(layer, xs, training):
    """Runs layer on each x with a tape; returns [(y, [dx, dgamma, dbeta])] per step."""
    out = []
    for x in xs:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            probe = tf.cast(tf.math.floormod(tf.range(tf.size(y)) * 7 + 3, 11) - 5, y.dtype) / 5
            loss = tf.reduce_sum(tf.cast(y * tf.reshape(probe, tf.shape(y)), tf.float32))
        out.append((y, tape.gradient(loss, [x] + layer.trainable_variables)))
    return out


def _check_against_keras(mode, training, steps=3, rtol=1e-5, **kwargs):
    ours, ref = _pair(**kwargs)
    xs = [_inputs(seed=s) for s in range(steps)]
    want = _steps(ref, xs, training)
    got = in_mode(lambda *xs: _steps(ours, xs, training), mode)(*xs)
    for (y, grads), (wy, wgrads) in zip(got, want, strict=True):
        assert y.dtype == wy.dtype
        assert_close(y, wy, rtol)
        for g, w in zip(grads, wgrads, strict=True):
            assert g.dtype == w.dtype
            assert_close(g, w, rtol)
    for v, w in zip(ours.weights, ref.weights, strict=True):  # moving statistics after the steps
        assert v.path.split("/")[-1] == w.path.split("/")[-1]
        assert_close(v, w, 1e-6)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("training", [True, False])
def test_matches_keras_float32(mode, training):
    _check_against_keras(mode, training)


@pytest.mark.parametrize("mode", MODES)
def test_matches_keras_without_scale_or_center(mode):
    _check_against_keras(mode, True, scale=False, center=False)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("policy, rtol", [("mixed_float16", 2e-3), ("mixed_bfloat16", 1e-2)])
def test_matches_keras_mixed_precision(policy, rtol, mode):
    # Both layers get half-precision inputs and keep float32 variables and statistics;
    # the difference is the rounding of the output and of the input gradient.
    try:
        keras.config.set_dtype_policy(policy)
        ours, ref = _pair()
    finally:
        keras.config.set_dtype_policy("float32")
    half = ours.compute_dtype
    assert half in ("float16", "bfloat16") and all(w.dtype == "float32" for w in ours.weights)
    xs = [tf.cast(_inputs(seed=s), half) for s in range(3)]
    want = _steps(ref, xs, True)
    got = in_mode(lambda *xs: _steps(ours, xs, True), mode)(*xs)
    for (y, grads), (wy, wgrads) in zip(got, want, strict=True):
        assert y.dtype == wy.dtype == half
        assert_close(y, wy, rtol)
        for g, w in zip(grads, wgrads, strict=True):
            assert g.dtype == w.dtype
            assert_close(g, w, rtol)
    for v, w in zip(ours.weights, ref.weights, strict=True):
        assert v.dtype == "float32"
        assert_close(v, w, 1e-5)


def test_moving_variance_is_keras_biased_variance_by_hand():
    # One step from moving_mean 0, moving_variance 1, momentum 0.5: the update is
    # 0.5 * 1 + 0.5 * biased_var. x = [1, 3] in one channel: mean 2, biased variance 1
    # (the Bessel-corrected one the kernel returns would be 2).
    layer = FusedBatchNormalization(momentum=0.5)
    x = tf.reshape(tf.constant([1.0, 3.0]), [2, 1, 1, 1])
    layer(x, training=True)
    np.testing.assert_allclose(layer.moving_mean.numpy(), [1.0])
    np.testing.assert_allclose(layer.moving_variance.numpy(), [1.0])


def test_single_value_per_channel_has_zero_variance():
    # n = 1 (batch 1 at 1 x 1, as the ASPP pooling branch with batch 1): variance 0.
    ours, ref = _pair(momentum=0.5)
    x = tf.constant([[[[1.0, 2.0, 3.0]]]])
    assert_close(ours(x, training=True), ref(x, training=True), 1e-5)
    for v, w in zip(ours.weights, ref.weights, strict=True):
        assert_close(v, w, 1e-6)


def test_single_value_variance_is_zero_where_the_kernel_gives_nan(monkeypatch):
    # cuDNN's fused kernel returns NaN as the corrected variance when n = 1 (CPU's: 0);
    # simulated here, as no GPU runs the tests: the moving variance must stay finite.
    real = tf.raw_ops.FusedBatchNormV3

    def cudnn_like(**kwargs):
        y, mean, corrected, *rest = real(**kwargs)
        n = tf.reduce_prod(tf.shape(kwargs["x"])[:3])
        return (y, mean, tf.where(n > 1, corrected, tf.fill(tf.shape(corrected), float("nan"))), *rest)

    monkeypatch.setattr(tf.raw_ops, "FusedBatchNormV3", cudnn_like)
    ours, ref = _pair(momentum=0.5)
    x = tf.constant([[[[1.0, 2.0, 3.0]]]])
    ours(x, training=True), ref(x, training=True)
    assert np.isfinite(ours.moving_variance.numpy()).all()
    assert_close(ours.moving_variance, ref.moving_variance, 1e-6)


def test_frozen_layer_runs_in_inference_mode():
    ours, ref = _pair()
    ours.trainable = ref.trainable = False
    x = _inputs()
    assert_close(ours(x, training=True), ref(x, training=True), 1e-5)
    assert_close(ours.moving_variance, ref.moving_variance, 0)


def _frozen_args(dtype):
    rng = np.random.default_rng(2)
    statistics = [tf.constant(rng.uniform(lo, hi, SHAPE[-1]), tf.float32)
                  for lo, hi in ((0.5, 1.5), (-1.0, 1.0), (-3.0, 3.0), (0.5, 4.0))]
    return tf.cast(_inputs(), dtype), statistics


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype, rtol", [("float32", 1e-5), ("float16", 2e-3), ("bfloat16", 1e-2)])
def test_frozen_batch_norm_matches_its_reference(mode, dtype, rtol):
    # Values and the gradient in x (the only one: scale, offset and the statistics are
    # constants), eagerly, in tf.function and under XLA, in every supported dtype.
    x, (scale, offset, mean, variance) = _frozen_args(dtype)

    def fast(x):
        return batchnorm.frozen_batch_norm(x, scale, offset, mean, variance, 1e-3)

    def reference(x):
        return batchnorm.reference_frozen_batch_norm(x, scale, offset, mean, variance, 1e-3)

    assert_same_value_and_grads(fast, reference, [x], mode, rtol=rtol)


def test_frozen_batch_norm_gives_no_gradient_to_its_constants():
    x, statistics = _frozen_args("float32")
    with tf.GradientTape() as tape:
        tape.watch(statistics)
        y = batchnorm.frozen_batch_norm(x, *statistics, 1e-3)
    assert tape.gradient(y, statistics) == [None] * 4


def _kept_for_backward(layer, x):
    """The op types of the forward of layer(x, training=True) whose full-size outputs
    (x's shape) the traced backward reads: what the backward keeps alive."""
    reads = backward_reads(lambda x: (layer(x, training=True), [x]), tf.TensorSpec(x.shape), watch=True)
    return {t.op.type for t, _ in reads if t.shape == x.shape}


def test_frozen_layer_backward_does_not_keep_its_input():
    # The memory point of frozen_batch_norm: the backward reads no full-size tensor of
    # the forward. A trainable layer's gradient op (FusedBatchNormGradV3) reads the input.
    ours, _ = _pair()
    x = _inputs()
    assert "Placeholder" in _kept_for_backward(ours, x)
    ours.trainable = False
    assert _kept_for_backward(ours, x) == set()


def test_frozen_layer_trains_like_keras_frozen_layer():
    # Gradient in the input through a frozen layer called with training=True, against
    # Keras' layer (moving statistics used, nothing updated).
    ours, ref = _pair()
    ours.trainable = ref.trainable = False
    xs = [_inputs(seed=s) for s in range(2)]
    for (y, grads), (wy, wgrads) in zip(_steps(ours, xs, True), _steps(ref, xs, True), strict=True):
        assert_close(y, wy, 1e-5)
        assert len(grads) == len(wgrads) == 1
        assert_close(grads[0], wgrads[0], 1e-5)


def test_fused_kernel_is_used_where_exact_and_keras_path_elsewhere():
    # The fused op appears in the graph outside XLA; under XLA, synchronized, or for a
    # 2-D input the layer is Keras' own code (no FusedBatchNormV3).
    def ops_of(layer, shape, jit=False):
        fn = tf.function(lambda x: layer(x, training=True), jit_compile=jit)
        graph = fn.get_concrete_function(tf.TensorSpec(shape)).graph
        return {op.type for op in graph.get_operations()}

    assert "FusedBatchNormV3" in ops_of(FusedBatchNormalization(), [2, 4, 4, 3])
    assert "FusedBatchNormV3" not in ops_of(FusedBatchNormalization(), [2, 4, 4, 3], jit=True)
    assert "FusedBatchNormV3" not in ops_of(FusedBatchNormalization(synchronized=True), [2, 4, 4, 3])
    assert "FusedBatchNormV3" not in ops_of(FusedBatchNormalization(), [2, 3])


def test_xla_fused_variance_is_inexact_which_is_why_xla_uses_keras_path():
    # The documented reason: XLA's FusedBatchNormV3 variance is one-pass. A channel with
    # mean 1000 and std 1: the variance is off by far more than float32 rounding.
    x = tf.constant(np.random.default_rng(0).normal(size=(2, 16, 16, 1)) + 1000.0, tf.float32)
    fn = tf.function(lambda x: batchnorm.fused_batch_norm_training(x, tf.ones([1]), tf.zeros([1]), 1e-3)[2],
                     jit_compile=True)
    exact = np.var(x.numpy().astype(np.float64))
    assert abs(float(fn(x)[0]) - exact) / exact > 1e-3
    assert abs(float(batchnorm.fused_batch_norm_training(x, tf.ones([1]), tf.zeros([1]), 1e-3)[2][0])
               - exact) / exact < 1e-5


def test_weights_and_config_load_into_either(tmp_path):
    ours, ref = _pair(epsilon=1.001e-5)
    assert [w.path.split("/")[-1] for w in ours.weights] == [
        "gamma", "beta", "moving_mean", "moving_variance"]
    clone = FusedBatchNormalization.from_config(ref.get_config())
    assert (clone.momentum, clone.epsilon) == (0.9, 1.001e-5)
    # A checkpoint written from one loads into the other.
    path = tf.train.Checkpoint(layer=ref).write(str(tmp_path / "ckpt"))
    fresh = FusedBatchNormalization()
    fresh.build((None, None, None, SHAPE[-1]))
    tf.train.Checkpoint(layer=fresh).read(path).assert_consumed()
    for v, w in zip(fresh.weights, ref.weights, strict=True):
        np.testing.assert_array_equal(v.numpy(), w.numpy())


def test_model_with_the_layer_saves_and_loads(tmp_path):
    inputs = keras.Input((None, None, SHAPE[-1]))
    model = keras.Model(inputs, FusedBatchNormalization(name="bn")(inputs))
    model.get_layer("bn").set_weights(_pair()[1].get_weights())
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.get_layer("bn"), FusedBatchNormalization)
    x = _inputs()
    np.testing.assert_array_equal(loaded(x), model(x))
