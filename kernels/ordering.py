"""Parallel branches that read one large tensor, with their backward passes one at a time.

Why this file exists: DeepLab's ASPP reads the backbone's output x ([B, h, w, 2048]) with
five branches (a 1x1 convolution, three atrous ones, image pooling). Autodiff starts every
branch's backward as soon as the concatenation's gradient exists, runs them side by side
and sums their five input gradients, each as large as x, at the end. That moment is the
training step's memory peak: every activation the backward keeps is still alive, and on
top of it five x-sized gradients and every branch's temporaries (the atrous gradients'
padded copies). In DeepLab v3 R50 at 384 px, batch 8, that is 0.35 GiB of gradients
being formed at the peak (`scripts/memory_breakdown.py`).

`branch_link(x, previous)` is x again, for the next branch to read, linked to the
previous branch's output. Built as a chain (branch k reads the link of branch k-1's
input and output), the backward goes one branch at a time, last branch first, and
keeps a running sum of x's gradient:

- the link's gradient for `previous` is zeros made only after the link's own upstream
  gradient exists (the gradient of every later branch's input, summed), and autodiff
  adds it to `previous`'s gradient, so branch k-1's backward cannot start before then;
- x's gradient reaches each link's input as the sum of two terms (this branch's and
  the later ones'), so at most two x-sized gradients and one branch's temporaries are
  alive at a time.

Values and gradients are those of the plain branches (its reference twin is the
identity), up to the order of the gradient sum (round-off; tests/kernels/
test_ordering.py). Outside training the link is the identity with no dependency: an
exported or converted model holds no trace of it.
"""
import keras
import tensorflow as tf


def reference_branch_link(x, previous):
    """The identity on x: what `branch_link` computes, without its ordering."""
    del previous
    return tf.identity(x)


def branch_link(x, previous):
    """x, computed after `previous`; in the backward, `previous`'s gradient waits for x's.

    Args:
      x: a tensor, [B, H, W, C] or any shape (the branches' shared input).
      previous: a tensor of any shape and float dtype (the previous branch's output).
    Returns:
      x's values, same shape and dtype. Gradients: x's upstream gradient for x; zeros
      for `previous`, made after that upstream gradient exists (see the module
      docstring for what this orders).
    """

    @tf.custom_gradient
    def link(x, previous):
        with tf.control_dependencies([previous]):
            linked = tf.identity(x)

        def grad(upstream):
            with tf.control_dependencies([upstream]):
                return tf.identity(upstream), tf.zeros_like(previous)

        return linked, grad

    return link(tf.convert_to_tensor(x), tf.convert_to_tensor(previous))


@keras.saving.register_keras_serializable(package="kernels")
class BranchLink(keras.layers.Layer):
    """`branch_link` as a weightless Keras layer: `BranchLink()([x, previous])` -> x.

    In training it orders the branches' backward passes (module docstring); otherwise it
    returns x unchanged. The `.keras` class name is `kernels>BranchLink`.

    Example (each branch reads the link of the one before; the last link feeds the
    last branch):
      >>> x = keras.Input((None, None, 64))
      >>> first = keras.layers.Conv2D(8, 1)(x)
      >>> second = keras.layers.Conv2D(8, 3, padding="same")(BranchLink()([x, first]))
    """

    def call(self, inputs, training=None):
        """[x, previous] -> x (see `branch_link`)."""
        x, previous = inputs
        if not training:
            return x
        return branch_link(x, previous)

    def compute_output_shape(self, input_shapes):
        """[x's shape, previous's shape] -> x's shape."""
        return input_shapes[0]
