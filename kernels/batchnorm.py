"""BatchNormalization through TF's fused batch-norm kernels; the reference is Keras' layer.

Why this file exists: Keras 3's `BatchNormalization` on TensorFlow computes the moments
(`tf.nn.moments`) and the normalization (`tf.nn.batch_normalization`) as separate
elementwise ops, forward and backward: about 14% of a DeepLab v3 train step's op time
on vm-Intel-R-Xeon-R-Processor-2cpu (TensorFlow's profiler, `scripts/profile_train.py`). `tf.raw_ops.FusedBatchNormV3` and its gradient do the
same work in one kernel each way (Eigen's or oneDNN's on CPU, cuDNN's on GPU).

Semantics kept from Keras (keras/src/layers/normalization/batch_normalization.py):
- training: normalize with the batch mean and the BIASED batch variance (divide by n),
  then moving = moving * momentum + batch * (1 - momentum) for the mean and for that
  biased variance. FusedBatchNormV3 returns the Bessel-corrected variance
  (n / (n - 1) times the biased one): it is scaled back by (n - 1) / n here.
- inference (training=False, or a layer with trainable=False): normalize with the
  moving statistics. A frozen layer (trainable=False) called with training=True has a
  hand-written gradient for its input alone (`frozen_batch_norm`), so the backward does
  not keep the layer's input.
- float16/bfloat16 inputs: statistics in float32, variables float32, output in the
  input's dtype (the kernel takes T=half and float32 scale/offset/statistics).

Where the fused kernel would not compute the same numbers, the layer runs Keras' own
code instead:
- under XLA (jit_compile=True): XLA lowers FusedBatchNormV3 to its BatchNormTraining,
  whose variance is the one-pass E[x^2] - E[x]^2. Measured (2-core Zen 3, TF 2.21):
  relative variance error 1.8e-5 at mean/std = 10, 2.7e-3 at 100, 0.32 at 1000, where
  the two-pass `tf.nn.moments` stays at 1e-7. XLA fuses Keras' elementwise ops itself.
- synchronized=True (statistics over all tf.distribute replicas), renorm, a mask,
  or an input that is not 4-D channels-last: Keras' path, unchanged.
"""
import keras
import tensorflow as tf
from tensorflow.python.ops import control_flow_util


def _in_xla():
    """Whether ops built now are compiled by XLA (inside a jit_compile=True function)."""
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def fused_batch_norm_training(x, scale, offset, epsilon):
    """Training-mode batch norm over axes 0, 1, 2 of an NHWC tensor, in one fused kernel.

    Args:
      x: [B, H, W, C] float32, float16 or bfloat16.
      scale, offset: float32 [C] (gamma, beta).
      epsilon: Python float added to the variance.
    Returns:
      (y [B, H, W, C] of x's dtype, mean float32 [C], variance float32 [C]) with the
      BIASED batch variance (as `tf.nn.moments` and Keras use) and
      y = (x - mean) / sqrt(variance + epsilon) * scale + offset. Differentiable in x,
      scale and offset (FusedBatchNormGradV3); mean and variance are for the moving
      statistics and carry no gradient.
    """
    empty = tf.zeros([0], tf.float32)  # no running statistics passed: exponential_avg_factor=1
    y, mean, corrected, _, _, _ = tf.raw_ops.FusedBatchNormV3(
        x=x, scale=scale, offset=offset, mean=empty, variance=empty, epsilon=epsilon,
        exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
    # The kernel returns variance * n / (n - 1) (n = B*H*W): undo it. For n = 1 the CPU
    # kernel returns 0 but cuDNN NaN (tensorflow#34062), which would make moving_variance
    # NaN for good (the ASPP pooling branch at batch 1 has n = 1): the variance is 0 there.
    n = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), tf.float32)
    variance = tf.where(n > 1.0, corrected * ((n - 1.0) / tf.maximum(n, 1.0)), tf.zeros_like(corrected))
    return y, tf.stop_gradient(mean), tf.stop_gradient(variance)


def fused_batch_norm_inference(x, scale, offset, mean, variance, epsilon):
    """Inference-mode batch norm with given statistics, in one fused kernel.

    Args:
      x: [B, H, W, C] float32, float16 or bfloat16.
      scale, offset, mean, variance: float32 [C].
      epsilon: Python float.
    Returns:
      [B, H, W, C] of x's dtype: (x - mean) / sqrt(variance + epsilon) * scale + offset.
    """
    y, _, _, _, _, _ = tf.raw_ops.FusedBatchNormV3(
        x=x, scale=scale, offset=offset, mean=mean, variance=variance, epsilon=epsilon,
        exponential_avg_factor=1.0, data_format="NHWC", is_training=False)
    return y


def frozen_batch_norm(x, scale, offset, mean, variance, epsilon):
    """Batch norm with fixed statistics and fixed scale and offset, differentiable in x only.

    Its gradient is written by hand because autodiff's (FusedBatchNormGradV3) also
    forms d/d scale and d/d offset, and for those it reads x: every frozen BatchNorm
    layer would keep its input alive until the backward, about half of a ResNet's
    activations (docs/small_batches.md). With everything but x fixed, y = x * a + b per
    channel, a = scale / sqrt(variance + epsilon), so d/dx = upstream * a: no tensor of
    the forward is kept.

    Args:
      x: [B, H, W, C] float32, float16 or bfloat16.
      scale, offset, mean, variance: float32 [C], treated as constants (no gradient).
      epsilon: Python float.
    Returns:
      [B, H, W, C] of x's dtype, (x - mean) / sqrt(variance + epsilon) * scale + offset.
    """
    scale, offset, mean, variance = (tf.stop_gradient(t) for t in (scale, offset, mean, variance))
    factor = scale * tf.math.rsqrt(variance + epsilon)

    @tf.custom_gradient
    def normalize(x):
        if x.dtype == tf.float32:
            # Two elementwise ops: in one isolated comparison (forward + backward of this
            # function alone at [2, 96, 96, 256], vm-Intel-R-Xeon-R-Processor-2cpu, TF 2.21)
            # the fused inference op under a gradient tape took 7.2 ms where these took 4.2
            # with oneDNN on, 7.5 vs 7.0 with it off.
            y = x * factor + (offset - mean * factor)
        else:
            # Half precision: the fused op computes in float32 and rounds once.
            y = fused_batch_norm_inference(x, scale, offset, mean, variance, epsilon)

        def grad(upstream):
            # In float32, rounded once to x's dtype, as FusedBatchNormGradV3 does for
            # half-precision inputs (the casts vanish for float32).
            return tf.cast(tf.cast(upstream, tf.float32) * factor, upstream.dtype)

        return y, grad

    with tf.name_scope("frozen_batch_norm"):  # a traced graph's op names show this path ran
        return normalize(x)


def reference_frozen_batch_norm(x, scale, offset, mean, variance, epsilon):
    """`frozen_batch_norm` written plainly, differentiated by autodiff (its reference twin).

    Args and result as in `frozen_batch_norm` (computed in float32, cast to x's dtype).
    """
    x32 = tf.cast(x, tf.float32)
    y = (x32 - tf.stop_gradient(mean)) * tf.math.rsqrt(tf.stop_gradient(variance) + epsilon)
    return tf.cast(y * tf.stop_gradient(scale) + tf.stop_gradient(offset), x.dtype)


@keras.saving.register_keras_serializable(package="kernels")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` computed with TF's fused batch-norm kernels.

    The same arguments, variables (gamma, beta, moving_mean, moving_variance: names,
    shapes, float32 under mixed precision), config and results as Keras' layer (see the
    module docstring for the moving statistics), so ImageNet weights (copied by name),
    tf.train checkpoints and `.keras` files load into either; the `.keras` class name is
    `kernels>FusedBatchNormalization`. Not a `.weights.h5` saved with the other class
    (Keras finds no variables for the layer there and raises); the project writes none.
    The fused kernel runs for 4-D channels-last inputs outside XLA; everything else
    (XLA, synchronized=True, renorm, masks, other ranks or axes) is Keras' own code.
    One difference: a frozen layer (trainable=False) called with training=True runs
    `frozen_batch_norm`, which gives no gradient for gamma, beta or the statistics (they
    are not trained: Keras' layer would return one for gamma and beta if asked).

    Args: as `keras.layers.BatchNormalization`.

    Example:
      >>> bn = FusedBatchNormalization(momentum=0.9, epsilon=1.001e-5, name="conv1_bn")
      >>> y = bn(tf.zeros([2, 8, 8, 64]), training=True)  # [2, 8, 8, 64]
    """

    def _uses_fused_kernel(self, inputs, mask):
        """Whether the fused kernel computes Keras' numbers here (module docstring)."""
        return (mask is None and not self.synchronized and not self.renorm
                and len(inputs.shape) == 4 and self.axis in (-1, 3) and not _in_xla())

    def call(self, inputs, training=None, mask=None):
        """inputs [B, H, W, C] (any float dtype) -> the same shape in the compute dtype.

        Which path runs: Keras' own code where the fused kernel does not apply
        (`_uses_fused_kernel`); training a trainable layer: the fused training kernel and
        the moving statistics' update; training a frozen layer: `frozen_batch_norm`
        (no gradient for its variables, nothing kept for the backward); inference: the
        fused kernel with the moving statistics.
        """
        if not self._uses_fused_kernel(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        channels = inputs.shape[-1]
        scale = self.gamma if self.scale else tf.ones([channels], tf.float32)
        offset = self.beta if self.center else tf.zeros([channels], tf.float32)
        scale, offset = tf.convert_to_tensor(scale), tf.convert_to_tensor(offset)
        if training and self.trainable:
            outputs, mean, variance = fused_batch_norm_training(inputs, scale, offset, self.epsilon)
            # Keras' update, written as Keras writes it.
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(
                self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            # Training a frozen layer (trainable=False: the "frozen" BatchNorm policy): no
            # gradient for its variables, so its backward need not keep its input.
            # Inference and exports keep the plain op.
            normalize = frozen_batch_norm if training and not self.trainable else fused_batch_norm_inference
            outputs = normalize(inputs, scale, offset, tf.convert_to_tensor(self.moving_mean),
                                tf.convert_to_tensor(self.moving_variance), self.epsilon)
        return tf.cast(outputs, self.compute_dtype)
