"""atrous_conv2d / AtrousConv2D agree with tf.nn.atrous_conv2d and keras Conv2D."""
import numpy as np
import keras
import pytest
import tensorflow as tf
from tensorflow.python.util import _pywrap_util_port

from kernels import AtrousConv2D, atrous_conv2d, reference_atrous_conv2d
from kernels import atrous
from tests.kernels._modes import MODES, assert_close, assert_same_value_and_grads, in_mode, value_and_grads

FORMULATIONS = ("gemm", "rows", "taps")


def _inputs(kernel_size=(3, 3), shape=(2, 7, 6, 3), cout=4, seed=0):
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=shape), tf.float32)
    kernel = tf.constant(rng.normal(size=tuple(kernel_size) + (shape[-1], cout)), tf.float32)
    return x, kernel


# Rates on a 7 x 6 image: 1 and 2 keep every tap; at 6 the column taps (offset +-6 on
# W = 6) lie wholly in the padding and are skipped; at 9 only the centre tap is left.
@pytest.mark.parametrize("rate", [1, 2, 3, 6, 9])
@pytest.mark.parametrize("implementation", FORMULATIONS + ("auto",))
def test_matches_reference_eagerly(implementation, rate):
    x, kernel = _inputs()
    assert_same_value_and_grads(
        lambda x, k: atrous_conv2d(x, k, rate, implementation),
        lambda x, k: reference_atrous_conv2d(x, k, rate), [x, kernel], "eager")


# In graphs: rate 2 keeps every tap (the crop/pad code of both axes compiled), 6 skips
# the column taps, 9 leaves the centre tap only.
@pytest.mark.parametrize("implementation", FORMULATIONS + ("auto",))
@pytest.mark.parametrize("mode", ["function", "xla"])
@pytest.mark.parametrize("rate", [2, 6, 9])
def test_matches_reference_in_graphs(implementation, mode, rate):
    x, kernel = _inputs()
    assert_same_value_and_grads(
        lambda x, k: atrous_conv2d(x, k, rate, implementation),
        lambda x, k: reference_atrous_conv2d(x, k, rate), [x, kernel], mode)


@pytest.mark.parametrize("implementation", FORMULATIONS)
def test_backward_builds_no_slice_gradients(implementation):
    # The hand-written gradient (kernels.atrous._taps_conv) only slices forward: no
    # StridedSliceGrad / SliceGrad full-size zero buffers, as autodiff of the taps built.
    x, kernel = _inputs()
    fn = tf.function(lambda x, k: value_and_grads(lambda x, k: atrous_conv2d(x, k, 2, implementation), x, k))
    ops = {op.type for op in fn.get_concrete_function(x, kernel).graph.get_operations()}
    assert "Conv2D" not in ops and "MatMul" in ops
    assert not ops & {"StridedSliceGrad", "SliceGrad"}


def _waits_for(op, other):
    """Whether `op` runs only after `other` (a data or control path from other to op)."""
    seen, stack = set(), [op]
    while stack:
        current = stack.pop()
        for parent in [t.op for t in current.inputs] + list(current.control_inputs):
            if parent is other:
                return True
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return False


def _backward_graph(implementation):
    """(graph, upstream-gradient op, dx matmuls, dK matmuls) of atrous_conv2d's backward
    at rate 2 on a 7 x 6 image ("rows": 3 groups, "taps": 9)."""
    x, kernel = _inputs()

    def grads(x, k):
        with tf.GradientTape() as tape:
            tape.watch([x, k])
            y = atrous_conv2d(x, k, 2, implementation)
        return tape.gradient(y, [x, k], output_gradients=tf.ones_like(y, name="upstream"))

    graph = tf.function(grads, autograph=False).get_concrete_function(x, kernel).graph
    matmuls = [op for op in graph.get_operations() if op.type == "MatMul"]
    upstream = graph.get_operation_by_name("upstream")
    return (graph, upstream, [op for op in matmuls if op.get_attr("transpose_b")],
            [op for op in matmuls if op.get_attr("transpose_a")])


@pytest.mark.parametrize("implementation", ["rows", "taps"])
def test_backward_sums_the_groups_input_gradients_one_at_a_time(implementation):
    # Each group's dx term is a full-size [B, H, W, Cin] buffer once padded: the groups'
    # matmuls form a chain, so one term is alive at a time (not all, summed at the end).
    _, _, dx_matmuls, _ = _backward_graph(implementation)
    assert len(dx_matmuls) == {"rows": 3, "taps": 9}[implementation]
    for before, after in zip(dx_matmuls, dx_matmuls[1:]):
        assert _waits_for(after, before), (before.name, after.name)


@pytest.mark.parametrize("implementation", ["rows", "taps"])
def test_backward_crops_its_own_inputs(implementation):
    # The kernel gradient's input windows are cropped again in the backward, after the
    # upstream gradient exists: the forward's crops are not kept until the backward.
    _, upstream, _, dk_matmuls = _backward_graph(implementation)
    assert dk_matmuls
    for matmul in dk_matmuls:
        window = matmul.inputs[0].op  # reshape of the group's input window
        assert _waits_for(window, upstream), matmul.name


def test_even_kernel_with_every_tap_in_the_padding():
    # 2x2 at rate 14 on a 7 x 6 image: offsets -7 and +7 on both axes, every tap reads
    # only padding: the output and both gradients are zero.
    x, kernel = _inputs((2, 2))
    assert atrous._live_fraction((2, 2), 14, 7, 6) == 0
    assert_same_value_and_grads(
        lambda x, k: atrous_conv2d(x, k, 14, "taps"),
        lambda x, k: reference_atrous_conv2d(x, k, 14), [x, kernel], "eager")


@pytest.mark.parametrize("kernel_size", [(1, 1), (2, 2), (1, 3), (5, 2)])
@pytest.mark.parametrize("implementation", FORMULATIONS)
def test_other_kernel_sizes(kernel_size, implementation):
    x, kernel = _inputs(kernel_size)
    for rate in (1, 2, 4):
        assert_same_value_and_grads(
            lambda x, k: atrous_conv2d(x, k, rate, implementation),
            lambda x, k: reference_atrous_conv2d(x, k, rate), [x, kernel], "eager")


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("implementation", FORMULATIONS + ("auto",))
def test_unknown_spatial_size_at_trace_time(implementation, jit_compile):
    # With H, W unknown no tap can be skipped statically: taps beyond the image get
    # empty windows at run time. Rate 4 on a 7 x 3 image: the row taps (offset +-4)
    # overlap the image partly, the column taps lie wholly in the padding.
    x, kernel = _inputs(shape=(2, 7, 3, 3))
    spec = [tf.TensorSpec([None, None, None, 3]), tf.TensorSpec(kernel.shape)]
    traced = tf.function(lambda x, k: value_and_grads(
        lambda x, k: atrous_conv2d(x, k, 4, implementation), x, k), input_signature=spec,
        jit_compile=jit_compile)
    got, got_grads = traced(x, kernel)
    want, want_grads = value_and_grads(lambda x, k: reference_atrous_conv2d(x, k, 4), x, kernel)
    assert got.shape == want.shape
    assert_close(got, want, 1e-5)
    for g, w in zip(got_grads, want_grads, strict=True):
        assert_close(g, w, 1e-5)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
@pytest.mark.parametrize("implementation", FORMULATIONS + ("auto",))
def test_low_precision_inputs(dtype, implementation, mode):
    # Compared with the float32 reference on the same (rounded) inputs: the error is
    # the low-precision accumulation, about 1e-3 (float16) / 1e-2 (bfloat16) relative.
    # Every mode: mixed precision under XLA is the GPU's default training path.
    x, kernel = (tf.cast(t, dtype) for t in _inputs())
    got, (gx, gk) = in_mode(lambda x, k: value_and_grads(
        lambda x, k: atrous_conv2d(x, k, 2, implementation), x, k), mode)(x, kernel)
    want, (wx, wk) = value_and_grads(lambda x, k: reference_atrous_conv2d(x, k, 2),
                                     tf.cast(x, tf.float32), tf.cast(kernel, tf.float32))
    assert got.dtype == gx.dtype == gk.dtype == dtype
    rtol = 5e-3 if dtype == tf.float16 else 3e-2
    for a, b in [(got, want), (gx, wx), (gk, wk)]:
        assert_close(a, b, rtol)


def test_rejects_unknown_implementation():
    x, kernel = _inputs()
    with pytest.raises(ValueError, match="implementation"):
        atrous_conv2d(x, kernel, 2, implementation="fft")


# ----------------------------------------------------------------------------------------
# The "auto" rule

def test_auto_rule_rate_one_and_pointwise_are_plain_convolutions():
    x, kernel = _inputs()
    assert atrous._choose(x, kernel, 1) == "native"
    assert atrous._choose(x, kernel[1:2, 1:2], 6) == "native"


def test_live_fraction_by_hand():
    # 24 x 24, rate 18: each axis has offsets -18, 0, 18 with windows 6, 24, 6 long;
    # (6 + 24 + 6)^2 / (9 * 24^2) = 1296 / 5184 = 1/4.
    assert atrous._live_fraction((3, 3), 18, 24, 24) == pytest.approx(0.25)
    assert atrous._live_fraction((3, 3), 1, 24, 24) == pytest.approx((70 / 72) ** 2)
    assert atrous._live_fraction((3, 3), 2, tf.constant(24), 24) is None


def test_auto_rule_on_gpu_is_the_native_op(monkeypatch):
    monkeypatch.setattr(atrous, "_on_gpu", lambda x: True)  # cuDNN's dilated kernels
    kernel, x = tf.zeros([3, 3, 1, 1]), tf.zeros([1, 24, 24, 1])
    assert [atrous._choose(x, kernel, r) for r in (2, 6, 12, 18)] == ["native"] * 4


def test_auto_rule_on_cpu(monkeypatch):
    monkeypatch.setattr(atrous, "_on_gpu", lambda x: False)  # the CPU rule, on any machine
    # 24 x 24: live fractions .89, .69, .44, .25 for rates 2, 6, 12, 18: "rows" at
    # f >= 0.6, "taps" below, with oneDNN on or off and under XLA alike.
    kernel = tf.zeros([3, 3, 1, 1])
    x = tf.zeros([1, 24, 24, 1])
    assert [atrous._choose(x, kernel, r) for r in (2, 6, 12, 18)] == ["rows", "rows", "taps", "taps"]
    chosen = []  # decided while tracing: record it then
    record = lambda x, rate: chosen.append(atrous._choose(x, kernel, rate)) or x
    tf.function(lambda x: record(x, 12), jit_compile=True).get_concrete_function(x)
    tf.function(lambda x: record(x, 2)).get_concrete_function(tf.TensorSpec([None, None, None, 1]))
    assert chosen == ["taps", "taps"]  # XLA at rate 12; unknown H, W


def test_native_matches_reference_where_it_has_a_gradient():
    # tf.nn.conv2d(dilations > 1) has a CPU gradient only with oneDNN on, or under XLA.
    x, kernel = _inputs()
    modes = ["xla"] + (["eager"] if _pywrap_util_port.IsMklEnabled() else [])
    for mode in modes:
        assert_same_value_and_grads(
            lambda x, k: atrous_conv2d(x, k, 2, "native"),
            lambda x, k: reference_atrous_conv2d(x, k, 2), [x, kernel], mode)


# ----------------------------------------------------------------------------------------
# Keras layer

def _layer_pair(rate, use_bias, cin=3, filters=4, kernel_size=3):
    ours = AtrousConv2D(filters, kernel_size, dilation_rate=rate, use_bias=use_bias,
                        bias_initializer="random_normal")
    keras_conv = keras.layers.Conv2D(filters, kernel_size, dilation_rate=rate, padding="same",
                                     use_bias=use_bias, bias_initializer="random_normal")
    ours.build((None, None, None, cin))
    keras_conv.build((None, None, None, cin))
    return ours, keras_conv


def _layer_value_and_grads(layer, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * tf.sin(y))
    return y, tape.gradient(loss, [x] + layer.trainable_variables)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("rate", [1, 2, 6])
def test_layer_matches_keras_conv2d_both_ways(rate, use_bias, mode):
    x, _ = _inputs()
    ours, keras_conv = _layer_pair(rate, use_bias)
    assert [w.shape for w in ours.weights] == [w.shape for w in keras_conv.weights]
    for source, target in [(keras_conv, ours), (ours, keras_conv)]:
        source.set_weights([w * 1.5 for w in source.get_weights()])  # fresh values each way
        target.set_weights(source.get_weights())
        got, got_grads = in_mode(lambda x: _layer_value_and_grads(ours, x), mode)(x)
        want, want_grads = _layer_value_and_grads(keras_conv, x)
        assert_close(got, want, 1e-5)
        for g, w in zip(got_grads, want_grads, strict=True):
            assert_close(g, w, 1e-5)


def test_layer_weight_names_and_config_round_trip():
    layer = AtrousConv2D(5, (3, 3), dilation_rate=(4, 4), use_bias=True, implementation="rows",
                         kernel_initializer="he_normal", name="aspp")
    layer.build((None, 8, 8, 2))
    assert [w.path.split("/")[-1] for w in layer.weights] == ["kernel", "bias"]
    clone = AtrousConv2D.from_config(layer.get_config())
    assert (clone.filters, clone.kernel_size, clone.dilation_rate, clone.implementation) == (5, (3, 3), 4, "rows")
    with pytest.raises(ValueError):
        AtrousConv2D(5, 3, dilation_rate=(2, 3))


def test_layer_saves_and_loads(tmp_path):
    inputs = keras.Input((None, None, 3))
    outputs = AtrousConv2D(4, 3, dilation_rate=2, name="atrous")(inputs)
    model = keras.Model(inputs, outputs)
    x, _ = _inputs()
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.get_layer("atrous"), AtrousConv2D)
    np.testing.assert_array_equal(loaded(x), model(x))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_layer_respects_mixed_precision(policy):
    x, _ = _inputs()
    ours, keras_conv = _layer_pair(2, True)
    keras_conv.set_weights(ours.get_weights())
    try:
        keras.config.set_dtype_policy(policy)
        mixed = AtrousConv2D(4, 3, dilation_rate=2)
        mixed.build((None, None, None, 3))
    finally:
        keras.config.set_dtype_policy("float32")
    mixed.set_weights(ours.get_weights())
    y = mixed(x)
    assert y.dtype == mixed.compute_dtype and mixed.compute_dtype != "float32"
    assert all(w.dtype == "float32" for w in mixed.weights)
    assert_close(y, keras_conv(x), 3e-2 if policy == "mixed_bfloat16" else 5e-3)
