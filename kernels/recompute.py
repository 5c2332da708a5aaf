"""Layers that recompute their input, ReLU(training-mode BatchNorm(x)), in their backward.

Why this file exists: inside a ResNet bottleneck, conv -> BatchNorm -> ReLU -> conv, the
backward keeps two tensors per unit: the BatchNorm input x (FusedBatchNormGradV3 reads it)
and the ReLU output r (ReluGrad reads it, and the next convolution's kernel gradient).
r is ReLU(BatchNorm(x)) with statistics the forward already computed, so it can be made
again from x in the backward, one fused BatchNorm pass and a ReLU, and the forward's r
freed as soon as the next layer has read it. In DeepLab v3 R50 at 384 px, batch 8,
0.26 GiB of the bottlenecks' ReLU outputs (of 0.94) are not kept this way
(docs/small_batches.md); recomputing them is about 1% of the step's work (measured:
`relu(batch_norm(x))` over those tensors takes 62-88 ms against a 9.4-10 s step on
vm-AMD-EPYC-2cpu). The stem's max-pool reads ReLU(zero-padded BatchNorm(x)) alone and
its gradient reads that input too: the same holds there.

How a layer finds x. A Keras layer receives only its input tensor, so these layers read
the ops that made it in the traced graph: when the input is the output of a `Relu` whose
input is a training-mode `FusedBatchNormV3` (what `kernels.FusedBatchNormalization`
runs), or a zero `Pad` of one, they take that op's input, scale, offset and saved
statistics. Anything else (eager execution, XLA, synchronized or frozen BatchNorm,
inference, mixed layers) is Keras' own computation, unchanged. The model builder chooses
`RecomputingConv2D`, `kernels.AtrousConv2D(recompute_input=True)` for a dilated
convolution and `RecomputingMaxPooling2D` for the stem's max-pool (all through
`bn_relu_recomputed`) only where the layer reads a BatchNorm's ReLU alone
(`research.models.resnet`), so that no other op needs r.

The backward is autodiff's own ops on the same inputs (ReluGrad, the pad's and the
layer's gradients, FusedBatchNormGradV3 with the forward's saved statistics), and the
recomputed BatchNorm is the forward's op on the same inputs, so the gradients are
bit-identical to autodiff's (tests/kernels/test_recompute.py). The reference twins are
Keras' `Conv2D` and `MaxPooling2D` (and `AtrousConv2D` without the option) after the same
layers.
"""
import keras
import tensorflow as tf

from kernels.batchnorm import fused_batch_norm_training


def training_batch_norm_source(relu_output):
    """(x, scale, offset, saved statistics (3 tensors), epsilon, paddings) of the
    training-mode FusedBatchNormV3 whose output `relu_output` is the ReLU of, or None.

    paddings: None, or the [4, 2] paddings of a zero `Pad` between the BatchNorm and the
    ReLU (the ResNet stem's pool1_pad: ReLU(Pad(BatchNorm(x)))).

    Args:
      relu_output: a tensor of a traced graph (None for eager tensors).
    """
    if tf.executing_eagerly() or not hasattr(relu_output, "op"):
        return None
    relu = relu_output.op
    if relu.type != "Relu":
        return None
    batch_norm, paddings = relu.inputs[0].op, None
    if batch_norm.type == "Pad":  # zeros (PadV2, with another value, is not matched)
        batch_norm, paddings = batch_norm.inputs[0].op, batch_norm.inputs[1]
    if batch_norm.type != "FusedBatchNormV3":
        return None
    if not batch_norm.get_attr("is_training") or batch_norm.get_attr("data_format") != b"NHWC":
        return None
    x, scale, offset = batch_norm.inputs[:3]
    return x, scale, offset, tuple(batch_norm.outputs[3:6]), batch_norm.get_attr("epsilon"), paddings


def bn_relu_recomputed(relu_output, source, fn, params):
    """fn(relu_output, *params), whose gradient recomputes relu_output from the BatchNorm
    input instead of keeping it.

    Args:
      relu_output: [B, H, W, C] float, ReLU(FusedBatchNormV3(x, training)), possibly
        zero-padded before the ReLU (see `training_batch_norm_source`).
      source: `training_batch_norm_source(relu_output)`.
      fn: function (r, *params) -> [B, H', W', F], built from differentiable TF ops (the
        layer's own convolution or pooling).
      params: list of tensors (the layer's variables, read; may be empty).
    Returns:
      fn's output, of relu_output's dtype. Gradients: for x, scale and offset (the
      BatchNorm's, through its saved batch statistics, as autodiff computes them) and
      each of params; none for relu_output itself, so the ReLU's and the BatchNorm's own
      gradients are never formed and r is not kept.
    """
    x, scale, offset, saved, epsilon, paddings = source

    # relu_output is not an argument: no gradient flows to it, and the tape then needs no
    # zeros for it (with an unknown batch size those are a ZerosLike that reads it).
    @tf.custom_gradient
    def unit(x, scale, offset, *params):
        def grad(upstream):
            # Made after the upstream gradient exists: without the dependency the executor
            # would recompute as soon as x exists, in the forward, and keep the result.
            with tf.name_scope("recomputed_bn_relu"), tf.control_dependencies([upstream]):
                # The forward's own op (kernels.FusedBatchNormalization's) on the same inputs.
                y, _, _ = fused_batch_norm_training(tf.identity(x), scale, offset, epsilon)
            with tf.GradientTape() as tape:  # autodiff's own gradient ops from here to y
                tape.watch([y, *params])
                r_again = tf.nn.relu(y if paddings is None else tf.pad(y, paddings))
                out = fn(r_again, *params)
            d_y, *d_params = tape.gradient(out, [y, *params], output_gradients=upstream)
            d_x, d_scale, d_offset = tf.raw_ops.FusedBatchNormGradV3(
                y_backprop=d_y, x=x, scale=scale, reserve_space_1=saved[0], reserve_space_2=saved[1],
                reserve_space_3=saved[2], epsilon=epsilon, data_format="NHWC", is_training=True)[:3]
            return (d_x, d_scale, d_offset, *d_params)

        return fn(relu_output, *params), grad

    with tf.name_scope("bn_relu_recomputed"):  # a traced graph's op names show this path ran
        return unit(x, scale, offset, *params)


@keras.saving.register_keras_serializable(package="kernels")
class RecomputingConv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` (stride 1, no dilation, with a bias) whose backward recomputes
    its input when that is ReLU(training-mode `kernels.FusedBatchNormalization`).

    The same arguments, variables, config and outputs as Keras' layer, so weights and
    checkpoints load into either; the `.keras` class name is `kernels>RecomputingConv2D`.
    See the module docstring for when the recomputation applies.

    Args: as `keras.layers.Conv2D`; strides and dilation_rate must be 1 and use_bias True.

    Example:
      >>> conv = RecomputingConv2D(64, 3, padding="same", name="conv2_block1_2_conv")
      >>> y = conv(tf.zeros([2, 8, 8, 64]))  # [2, 8, 8, 64]
    """

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        if set(self.strides) != {1} or set(self.dilation_rate) != {1} or not self.use_bias:
            raise ValueError(f"{self.name}: RecomputingConv2D needs strides 1, dilation 1 and a bias")

    def _conv(self, r, kernel, bias):
        """Keras' Conv2D computation on (r, kernel, bias) tensors (BaseConv.call's ops)."""
        outputs = self.convolution_op(r, kernel)
        outputs = keras.ops.add(outputs, keras.ops.reshape(bias, (1, 1, 1, self.filters)))
        return outputs if self.activation is None else self.activation(outputs)

    def call(self, inputs):
        """inputs [B, H, W, Cin] -> [B, H', W', filters], as `keras.layers.Conv2D`."""
        source = training_batch_norm_source(inputs)
        if source is None or self.data_format != "channels_last":
            return super().call(inputs)
        return bn_relu_recomputed(inputs, source, self._conv,
                                  [tf.convert_to_tensor(self.kernel), tf.convert_to_tensor(self.bias)])


@keras.saving.register_keras_serializable(package="kernels")
class RecomputingMaxPooling2D(keras.layers.MaxPooling2D):
    """`keras.layers.MaxPooling2D` whose backward recomputes its input when that is the
    ReLU of a training-mode `kernels.FusedBatchNormalization`, zero-padded or not: the
    ResNet stem's pool1_pool, whose input ReLU(Pad(BatchNorm)) nothing else reads.

    The same arguments, config and outputs as Keras' layer (no variables); the `.keras`
    class name is `kernels>RecomputingMaxPooling2D`. The max-pool's gradient needs its
    input; recomputed, it is one BatchNorm pass, a pad, a ReLU and the pooling again.

    Example:
      >>> pool = RecomputingMaxPooling2D(3, strides=2, name="pool1_pool")
      >>> y = pool(tf.zeros([2, 10, 10, 64]))  # [2, 4, 4, 64]
    """

    def call(self, inputs):
        """inputs [B, H, W, C] -> [B, H', W', C], as `keras.layers.MaxPooling2D`."""
        source = training_batch_norm_source(inputs)
        if source is None or self.data_format != "channels_last":
            return super().call(inputs)
        return bn_relu_recomputed(inputs, source, super().call, [])
