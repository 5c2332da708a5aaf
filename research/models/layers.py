"""Small building blocks shared by the ResNet-50 backbone, DeepLab v3 and U-Net.

- `Preprocessing`: the model's first layer; maps [0, 255] RGB to what the backbone expects.
- `ResizeLike`: bilinear resize of one tensor to another's (dynamic) height and width.
- `conv2d`: a convolution layer; the one place that chooses `kernels.AtrousConv2D` or
  `keras.layers.Conv2D` for a dilated 3x3 convolution.
- `batch_normalization`: a BatchNormalization layer; the one place that chooses
  `kernels.FusedBatchNormalization` or `keras.layers.BatchNormalization`.
- `conv_bn_relu`: convolution, BatchNormalization, optional ReLU, named like Keras' ResNet
  (`{prefix}_conv`, `{prefix}_bn`, `{prefix}_relu`).
- `batchnorm_layers`, `freeze_batchnorm`: a built model's BatchNorm layers, and freezing
  them (the "frozen" BatchNorm policy, `research.build.build_model`).

Both layers are registered for Keras serialization (package "research"), so a `.keras`
file loads once `research.models` is imported.
"""
import keras
import tensorflow as tf

from kernels import AtrousConv2D, FusedBatchNormalization, RecomputingConv2D

# keras.applications.resnet50.preprocess_input ("caffe" mode) subtracts this ImageNet
# mean, in BGR order, from BGR images in [0, 255].
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="research")
class Preprocessing(keras.layers.Layer):
    """Maps float RGB images in [0, 255] to the backbone's input convention.

    Modes:
      - "tf": x / 127.5 - 1, to [-1, 1]; exactly `keras.applications.mobilenet_v2.
        preprocess_input`, what Keras' ImageNet MobileNetV2 weights were trained with.
      - "caffe": RGB -> BGR, then subtract the ImageNet mean `IMAGENET_BGR_MEAN`; exactly
        `keras.applications.resnet50.preprocess_input`. Use with ImageNet weights: it is the
        preprocessing those weights were trained with.
      - "unit": x / 255, to [0, 1]. Used when training from scratch. A fixed scale is
        dataset-agnostic (no statistics to compute, store or get wrong when the data
        changes, e.g. synthetic VOC vs real VOC), and `conv1_bn` right after the first
        convolution re-centres and re-scales its output anyway, so per-channel
        standardization of the input would buy little.

    The layer always computes in float32 (its dtype defaults to "float32" even under a
    mixed-precision policy): subtracting a mean of about 100 in float16 would round away
    detail; the next layer casts to the compute dtype.

    Args:
      mode: "caffe", "tf" or "unit".
      **kwargs: `keras.layers.Layer` arguments (name, dtype, ...).

    Shapes and dtypes: input [B, H, W, 3] float32 RGB in [0, 255] (any real dtype is
    cast to float32); output [B, H, W, 3] float32.

    Example:
    >>> layer = Preprocessing("caffe")
    >>> y = layer(np.full((1, 2, 2, 3), 128.0, "float32"))  # BGR minus mean
    """

    def __init__(self, mode, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if mode not in ("caffe", "tf", "unit"):
            raise ValueError(f'Preprocessing mode must be "caffe", "tf" or "unit"; got {mode!r}')
        self.mode = mode

    def call(self, images):
        """images [B, H, W, 3] RGB in [0, 255] (any real dtype) -> float32 [B, H, W, 3] as the
        backbone's weights expect (`mode`)."""
        images = tf.cast(images, "float32")
        if self.mode == "caffe":
            return images[..., ::-1] - tf.constant(IMAGENET_BGR_MEAN, "float32")
        if self.mode == "tf":
            return images / 127.5 - 1.0
        return images / 255.0

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode)
        return config


@keras.saving.register_keras_serializable(package="research")
class ResizeLike(keras.layers.Layer):
    """Bilinear resize of `x` to the height and width of `reference`, read at run time.

    The target size comes from `tf.shape(reference)`, so one model serves any input size
    (no hard-coded upsampling factors). Bilinear uses half-pixel centres
    (`tf.image.resize`, align_corners=False).

    Args:
      **kwargs: `keras.layers.Layer` arguments. Pass `dtype="float32"` for a model's last
        layer so that logits are float32 under a mixed-precision policy.

    Call args:
      inputs: a pair `[x, reference]`; x [B, h, w, C] float, reference [B, H, W, ...]
        (only its shape is used).

    Returns: [B, H, W, C] in the layer's compute dtype.

    Example:
    >>> features = keras.Input((None, None, 256))
    >>> images = keras.Input((None, None, 3))
    >>> upsampled = ResizeLike(name="upsample")([features, images])
    """

    def call(self, inputs):
        """[x [B, h, w, C], reference [B, H, W, ...]] -> x resized to [B, H, W, C]."""
        x, reference = inputs
        size = tf.shape(reference)[1:3]
        # tf.image.resize returns float32 for half-precision inputs: cast back.
        return tf.cast(tf.image.resize(x, size, method="bilinear"), x.dtype)

    def compute_output_shape(self, input_shapes):
        x_shape, reference_shape = input_shapes
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[-1])


def conv2d(filters, kernel_size, name, strides=1, dilation_rate=1, atrous="kernels",
           use_bias=True, recompute_input=False):
    """A convolution layer with SAME padding (VALID where `strides` > 1, as Keras' ResNet).

    A dilated (rate > 1) convolution is `kernels.AtrousConv2D` when `atrous="kernels"`
    and `keras.layers.Conv2D(dilation_rate=rate)` when `atrous="keras"`; both have the
    same weight names and shapes, so weights copy between the two by layer name.

    Args:
      filters: output channels.
      kernel_size: int.
      name: layer name.
      strides: int; only for rate 1 (a stride-2 1x1 conv is VALID-padded, as in Keras'
        ResNet50: for 1x1 kernels that is the same as SAME).
      dilation_rate: int >= 1.
      atrous: "kernels" or "keras".
      use_bias: bool.
      recompute_input: the layer's input is ReLU(BatchNorm) read by this layer alone: a
        stride-1, undilated convolution with a bias is then `kernels.RecomputingConv2D`,
        a dilated one with a bias `kernels.AtrousConv2D(recompute_input=True)`; their
        backward makes that input again instead of keeping it.

    Returns: a Keras layer mapping [B, H, W, Cin] to [B, H', W', filters].

    Example:
    >>> layer = conv2d(256, 3, "aspp_atrous1_conv", dilation_rate=6, use_bias=False)
    """
    if atrous not in ("kernels", "keras"):
        raise ValueError(f'atrous must be "kernels" or "keras"; got {atrous!r}')
    if dilation_rate > 1 and strides != 1:
        raise ValueError("a dilated convolution must have stride 1")
    if dilation_rate > 1 and atrous == "kernels":
        return AtrousConv2D(filters, kernel_size, dilation_rate=dilation_rate, use_bias=use_bias,
                            recompute_input=recompute_input and use_bias, name=name)
    padding = "valid" if strides > 1 else "same"
    if recompute_input and strides == 1 and dilation_rate == 1 and use_bias:
        return RecomputingConv2D(filters, kernel_size, padding=padding, name=name)
    return keras.layers.Conv2D(filters, kernel_size, strides=strides, padding=padding,
                               dilation_rate=dilation_rate, use_bias=use_bias, name=name)


def batch_normalization(name, epsilon=1e-3, bn_momentum=0.99, sync_batchnorm=False,
                        bn_impl="fused"):
    """A BatchNormalization layer (channels last): fused kernels or Keras' own ops.

    `bn_impl="fused"` gives `kernels.FusedBatchNormalization` (TF's fused batch-norm
    kernels; it runs Keras' code itself where the fused kernel would not be exact:
    under XLA and with `synchronized=True`), `"keras"` gives
    `keras.layers.BatchNormalization`. Both have the same variables and config, so
    weights, checkpoints and ImageNet weights load into either by layer name.

    Args:
      name: layer name.
      epsilon: added to the variance.
      bn_momentum: moving-average momentum (see `conv_bn_relu`).
      sync_batchnorm: statistics over all tf.distribute replicas (see `conv_bn_relu`).
      bn_impl: "fused" or "keras".

    Returns: a Keras layer mapping [B, H, W, C] to [B, H, W, C].

    Example:
    >>> bn = batch_normalization("conv1_bn", epsilon=1.001e-5, bn_impl="keras")
    """
    if bn_impl not in ("fused", "keras"):
        raise ValueError(f'bn_impl must be "fused" or "keras"; got {bn_impl!r}')
    layer = FusedBatchNormalization if bn_impl == "fused" else keras.layers.BatchNormalization
    return layer(epsilon=epsilon, momentum=bn_momentum, synchronized=sync_batchnorm, name=name)


def conv_bn_relu(x, filters, kernel_size, prefix, strides=1, dilation_rate=1,
                 atrous="kernels", use_bias=False, epsilon=1e-3, relu=True, bn_momentum=0.99,
                 sync_batchnorm=False, bn_impl="fused", recompute_input=False):
    """Convolution, BatchNormalization and (optionally) ReLU: layers `{prefix}_conv`,
    `{prefix}_bn`, `{prefix}_relu`.

    The head's convolutions have no bias (`use_bias=False`) since BatchNormalization's
    offset follows; the ResNet-50 backbone passes `use_bias=True` and `epsilon=1.001e-5`
    to match `keras.applications.ResNet50`, whose weights it loads.

    Args:
      x: Keras tensor [B, H, W, Cin].
      filters, kernel_size, strides, dilation_rate, atrous, use_bias: see `conv2d`.
      prefix: layer-name prefix.
      epsilon: BatchNormalization epsilon.
      relu: whether to end with a ReLU.
      bn_momentum: BatchNormalization's moving-average momentum. Keras' 0.99 averages
        the last ~100 steps; a short from-scratch run needs less (0.9), or inference
        uses statistics of a network that no longer exists.
      sync_batchnorm: compute batch statistics over the global batch across
        tf.distribute replicas (Keras' `synchronized=True`), so N replicas train like
        one device on the whole batch; off for a single device, where it only costs.
      bn_impl: "fused" or "keras" (see `batch_normalization`).
      recompute_input: see `conv2d`.

    Returns: Keras tensor [B, H', W', filters].

    Example:
    >>> y = conv_bn_relu(keras.Input((None, None, 64)), 64, 3, "decoder1_1")
    """
    x = conv2d(filters, kernel_size, f"{prefix}_conv", strides=strides,
               dilation_rate=dilation_rate, atrous=atrous, use_bias=use_bias,
               recompute_input=recompute_input)(x)
    x = batch_normalization(f"{prefix}_bn", epsilon, bn_momentum, sync_batchnorm, bn_impl)(x)
    if relu:
        x = keras.layers.Activation("relu", name=f"{prefix}_relu")(x)
    return x


def batchnorm_layers(model):
    """The model's BatchNormalization layers (Keras' or `kernels.FusedBatchNormalization`),
    in model order."""
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def freeze_batchnorm(model):
    """Freezes every BatchNormalization layer of `model` in place; returns `model`.

    A Keras layer with `trainable=False`: its gamma and beta leave
    `model.trainable_variables` (so no optimizer, slot or weight decay sees them), and
    called with `training=True` it still normalizes with its moving statistics and does
    not update them (Keras' `BatchNormalization.call` and `kernels.FusedBatchNormalization`
    both test `training and self.trainable`; the fused one then runs
    `kernels.batchnorm.frozen_batch_norm`, whose backward keeps no input). Variables,
    names and shapes are unchanged, so weights, checkpoints and exports are those of a
    trainable model; a `.keras` file records `trainable: false`.

    Example:
    >>> model = freeze_batchnorm(deeplab_v3())
    >>> logits = model(images, training=True)  # moving statistics used, not updated
    """
    for layer in batchnorm_layers(model):
        layer.trainable = False
    return model
