"""A convolution that recomputes its input, ReLU(training-mode BatchNorm(x)), in its backward.

Why this file exists: inside a ResNet bottleneck, conv -> BatchNorm -> ReLU -> conv, the
backward keeps two tensors per unit: the BatchNorm input x (FusedBatchNormGradV3 reads it)
and the ReLU output r (ReluGrad reads it, and the next convolution's kernel gradient).
r is ReLU(BatchNorm(x)) with statistics the forward already computed, so it can be made
again from x in the backward, one fused BatchNorm pass and a ReLU, and the forward's r
freed as soon as the next convolution has read it. In DeepLab v3 R50 at 384 px, batch 8,
0.26 GiB of the bottlenecks' ReLU outputs (of 0.94) are not kept this way
(docs/small_batches.md); recomputing them is about 1% of the step's work (measured:
`relu(batch_norm(x))` over those tensors takes 62-88 ms against a 9.4-10 s step on
vm-AMD-EPYC-2cpu).

How the convolution finds x. A Keras layer receives only its input tensor, so
`RecomputingConv2D` reads the ops that made it in the traced graph: when its input is the
output of a `Relu` whose input is a training-mode `FusedBatchNormV3` (what
`kernels.FusedBatchNormalization` runs), it takes that op's input, scale, offset and saved
statistics. Anything else (eager execution, XLA, synchronized or frozen BatchNorm,
inference, mixed layers) is Keras' own `Conv2D` computation, unchanged. The model builder
chooses this class, or `kernels.AtrousConv2D(recompute_input=True)` for a dilated
convolution (which calls `bn_relu_conv_recomputed` the same way), only where a
convolution reads a BatchNorm's ReLU alone (`research.models.resnet`), so that no other
op needs r.

The backward is autodiff's own ops on the same inputs (ReluGrad, the convolution's
gradient, FusedBatchNormGradV3 with the forward's saved statistics), and the recomputed
BatchNorm is the forward's op on the same inputs, so the gradients are bit-identical to
autodiff's (tests/kernels/test_recompute.py). Its reference twin is Keras' `Conv2D` after
the same layers.
"""
import keras
import tensorflow as tf

from kernels.batchnorm import fused_batch_norm_training


def training_batch_norm_source(relu_output):
    """(x, scale, offset, saved statistics (3 tensors), epsilon) of the training-mode
    FusedBatchNormV3 whose output `relu_output` is the ReLU of, or None.

    Args:
      relu_output: a tensor of a traced graph (None for eager tensors).
    """
    if tf.executing_eagerly() or not hasattr(relu_output, "op"):
        return None
    relu = relu_output.op
    if relu.type != "Relu" or relu.inputs[0].op.type != "FusedBatchNormV3":
        return None
    batch_norm = relu.inputs[0].op
    if not batch_norm.get_attr("is_training") or batch_norm.get_attr("data_format") != b"NHWC":
        return None
    x, scale, offset = batch_norm.inputs[:3]
    return x, scale, offset, tuple(batch_norm.outputs[3:6]), batch_norm.get_attr("epsilon")


def bn_relu_conv_recomputed(relu_output, source, conv, kernel, bias):
    """conv(relu_output, kernel, bias), whose gradient recomputes relu_output from the
    BatchNorm input instead of keeping it.

    Args:
      relu_output: [B, H, W, C] float, ReLU(FusedBatchNormV3(x, training)).
      source: `training_batch_norm_source(relu_output)`.
      conv: function (r [B, H, W, C], kernel, bias) -> [B, H', W', F], built from
        differentiable TF ops (the layer's own convolution).
      kernel, bias: tensors (the layer's variables, read).
    Returns:
      [B, H', W', F] of relu_output's dtype. Gradients: for x, scale and offset (the
      BatchNorm's, through its saved batch statistics, as autodiff computes them), the
      kernel and the bias; none for relu_output itself, so the ReLU's and the BatchNorm's
      own gradients are never formed and r is not kept.
    """
    x, scale, offset, saved, epsilon = source

    @tf.custom_gradient
    def unit(r, x, scale, offset, kernel, bias):
        def grad(upstream):
            # Made after the upstream gradient exists: without the dependency the executor
            # would recompute as soon as x exists, in the forward, and keep the result.
            with tf.name_scope("recomputed_bn_relu"), tf.control_dependencies([upstream]):
                # The forward's own op (kernels.FusedBatchNormalization's) on the same inputs.
                y, _, _ = fused_batch_norm_training(tf.identity(x), scale, offset, epsilon)
                r_again = tf.nn.relu(y)
            with tf.GradientTape() as tape:
                tape.watch([r_again, kernel, bias])
                out = conv(r_again, kernel, bias)
            d_r, d_kernel, d_bias = tape.gradient(out, [r_again, kernel, bias], output_gradients=upstream)
            d_y = tf.raw_ops.ReluGrad(gradients=d_r, features=r_again)
            d_x, d_scale, d_offset = tf.raw_ops.FusedBatchNormGradV3(
                y_backprop=d_y, x=x, scale=scale, reserve_space_1=saved[0], reserve_space_2=saved[1],
                reserve_space_3=saved[2], epsilon=epsilon, data_format="NHWC", is_training=True)[:3]
            return None, d_x, d_scale, d_offset, d_kernel, d_bias

        return conv(r, kernel, bias), grad

    with tf.name_scope("bn_relu_conv_recomputed"):  # a traced graph's op names show this path ran
        return unit(relu_output, x, scale, offset, kernel, bias)


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
        return bn_relu_conv_recomputed(inputs, source, self._conv, tf.convert_to_tensor(self.kernel),
                                       tf.convert_to_tensor(self.bias))
