"""branch_link equals its reference twin (the identity) in values and gradients, in every
mode, and orders the branches' backward passes: the earlier branch's gradient waits for
the later one's."""
import numpy as np
import keras
import pytest
import tensorflow as tf

from kernels import BranchLink, branch_link, reference_branch_link
from tests.helpers import graph_ancestors
from tests.kernels._modes import MODES, assert_close, in_mode, value_and_grads


def _branches(link):
    """Three branches reading x ([2, 5, 4, 3]) through links, concatenated: the ASPP's
    shape (a matmul, a tanh, a mean), with the links' gradients in every sum."""
    def fn(x, w0, w1):
        first = tf.einsum("bhwc,cd->bhwd", x, w0)
        x1 = link(x, first)
        second = tf.tanh(tf.einsum("bhwc,cd->bhwd", x1, w1))
        x2 = link(x1, second)
        third = tf.broadcast_to(tf.reduce_mean(x2, axis=[1, 2], keepdims=True), tf.shape(x2))
        return tf.concat([first, second, third * 2.0], axis=-1)
    return fn


def _inputs():
    rng = np.random.default_rng(0)
    return [tf.constant(rng.normal(size=shape), tf.float32) for shape in ((2, 5, 4, 3), (3, 4), (3, 2))]


@pytest.mark.parametrize("mode", MODES)
def test_values_and_gradients_equal_the_reference(mode):
    def run(link):  # each in the same mode: XLA fuses the matmuls its own way
        return in_mode(lambda *a: value_and_grads(_branches(link), *a), mode)(*_inputs())
    out, grads = run(branch_link)
    expected, expected_grads = run(reference_branch_link)
    np.testing.assert_array_equal(out.numpy(), expected.numpy())
    for grad, want in zip(grads, expected_grads):
        assert_close(grad, want, rtol=1e-6)


def test_the_previous_branch_gets_zeros():
    x, previous = tf.ones([2, 3]), tf.ones([4])
    with tf.GradientTape() as tape:
        tape.watch([x, previous])
        y = branch_link(x, previous) * 3.0
    d_x, d_previous = tape.gradient(y, [x, previous])
    np.testing.assert_array_equal(d_x.numpy(), np.full([2, 3], 3.0))
    np.testing.assert_array_equal(d_previous.numpy(), np.zeros([4]))


def _first_weight_gradient_waits_for_the_second_branch(link):
    """Whether, in the traced backward, w0's gradient depends on the second branch's
    backward (its TanhGrad)."""
    traced = tf.function(lambda *a: value_and_grads(_branches(link), *a)[1], autograph=False)
    graph = traced.get_concrete_function(*_inputs()).graph
    tanh_grads = {op.name for op in graph.get_operations() if op.type == "TanhGrad"}
    assert len(tanh_grads) == 1
    return bool(tanh_grads & set(graph_ancestors(graph.outputs[1].op)))


def test_the_earlier_branch_backward_waits_for_the_later_one():
    assert _first_weight_gradient_waits_for_the_second_branch(branch_link)
    assert not _first_weight_gradient_waits_for_the_second_branch(reference_branch_link)


def test_the_layer_links_only_in_training():
    x, previous = tf.ones([1, 2, 2, 3]), tf.ones([1, 2, 2, 1])
    layer = BranchLink(name="link")
    assert layer([x, previous]) is x
    assert layer([x, previous], training=False) is x
    for training, linked in ((True, True), (False, False)):
        with tf.GradientTape() as tape:
            tape.watch([x, previous])
            y = layer([x, previous], training=training)
        np.testing.assert_array_equal(y.numpy(), x.numpy())
        d_x, d_previous = tape.gradient(y, [x, previous])
        np.testing.assert_array_equal(d_x.numpy(), np.ones([1, 2, 2, 3]))
        assert (d_previous is not None) == linked


def test_the_layer_round_trips_through_keras_serialization():
    inputs = keras.Input((None, None, 3))
    first = keras.layers.Conv2D(2, 1)(inputs)
    linked = BranchLink(name="link")([inputs, first])
    model = keras.Model(inputs, keras.layers.Concatenate()([first, keras.layers.Conv2D(2, 1)(linked)]))
    clone = keras.Model.from_config(model.get_config())
    assert isinstance(clone.get_layer("link"), BranchLink)
    assert clone.output.shape == (None, None, None, 4)
