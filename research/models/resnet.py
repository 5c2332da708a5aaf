"""ResNet-50 (v1, as `keras.applications.ResNet50`) with per-stage stride and dilation."""
import keras

from kernels import RecomputingMaxPooling2D
from research.models.layers import conv_bn_relu

# keras.applications.ResNet50 uses this BatchNormalization epsilon (not Keras' 1e-3);
# loading its statistics with another epsilon would shift every normalized activation.
BN_EPSILON = 1.001e-5
RESNET50_BLOCKS = (3, 4, 6, 3)
RESNET50_WIDTH = 64


def resnet50(x, stage_strides=(1, 2, 2, 2), stage_dilations=(1, 1, 1, 1),
             blocks_per_stage=RESNET50_BLOCKS, width=RESNET50_WIDTH, atrous="kernels",
             bn_momentum=0.99, sync_batchnorm=False, bn_impl="fused", stride2_map=True):
    """Adds a ResNet-50 v1 to the functional graph at `x`; returns its five feature maps.

    Layer names are those of `keras.applications.ResNet50` (conv1_pad, conv1_conv,
    conv1_bn, conv1_relu, pool1_pad, pool1_pool, conv2_block1_0_conv, ...,
    conv5_block3_out), convolutions have biases and BatchNormalization epsilon is
    1.001e-5, as there, so that model's weights copy into this one by layer name
    (`research.models.weights.load_resnet50_weights`).

    The four residual stages conv2..conv5 each take a stride and a dilation rate. Where a
    stage has stride 1 instead of 2 (DeepLab's output stride 16 or 8), its first block's
    1x1 convolution and its projection shortcut get stride 1; the stride sits on the
    first 1x1 convolution as in Keras' v1. A stage's dilation applies to the 3x3
    convolution of every block in it (DeepLab v3 without multi-grid); dilated ones are
    `kernels.AtrousConv2D` (or Keras' `Conv2D` with `atrous="keras"`).

    Common settings (stage_strides, stage_dilations):
      - standard, output stride 32: (1, 2, 2, 2), (1, 1, 1, 1)
      - output stride 16: (1, 2, 2, 1), (1, 1, 1, 2)
      - output stride 8:  (1, 2, 1, 1), (1, 1, 2, 4)

    Args:
      x: Keras tensor [B, H, W, 3], already preprocessed (see `layers.Preprocessing`).
      stage_strides: 4 ints in {1, 2}, strides of stages conv2..conv5.
      stage_dilations: 4 ints >= 1, dilation rates of the 3x3 convs of conv2..conv5.
      blocks_per_stage: 4 ints >= 1, residual blocks per stage; (3, 4, 6, 3) is
        ResNet-50. Fewer blocks give a reduced model for fast tests and ablations.
      width: base number of filters (64 = ResNet-50): conv1 has `width`, stage k's
        bottleneck has `width * 2**(k-2)` and its output four times that.
      atrous: "kernels" or "keras", which layer computes the dilated convolutions.
      bn_momentum, sync_batchnorm, bn_impl: BatchNorm settings (see `layers.conv_bn_relu`).
      stride2_map: whether the caller reads the stride-2 map (the U-Net does, DeepLab
        does not). Without it the stem zero-pads the BatchNorm output for the max-pool
        before its ReLU (pool1_pad, then conv1_relu: the same values, as ReLU(0) = 0), and
        the max-pool, which alone reads that ReLU, makes it again in its backward
        (`kernels.RecomputingMaxPooling2D`): the training step keeps neither the ReLU
        output nor its padded copy (145.5 MiB at batch 8, 384 px); the first map returned
        is then None. The same weighted layers in the same places either way, so weights
        and checkpoints load into both.

    Returns:
      A tuple of five Keras tensors of x's batch and compute dtype, at strides 2, 4, 8,
      16, 32 of the input (or less where stages are dilated), with `width`, 4*width,
      8*width, 16*width, 32*width channels: the outputs of conv1_relu,
      conv2_block{n}_out, conv3_block{n}_out, conv4_block{n}_out and conv5_block{n}_out
      (n = that stage's last block; for ResNet-50: conv2_block3_out, conv3_block4_out,
      conv4_block6_out, conv5_block3_out).

    Example:
    >>> images = keras.Input((None, None, 3))
    >>> c1, c2, c3, c4, c5 = resnet50(images, (1, 2, 2, 1), (1, 1, 1, 2))
    >>> backbone = keras.Model(images, c5)  # output stride 16
    """
    for argument, value in (("stage_strides", stage_strides),
                            ("stage_dilations", stage_dilations),
                            ("blocks_per_stage", blocks_per_stage)):
        if len(value) != 4 or min(value) < 1:
            raise ValueError(f"{argument} needs 4 positive ints; got {value!r}")
    if not set(stage_strides) <= {1, 2}:
        raise ValueError(f"stage_strides must be 1 or 2; got {stage_strides!r}")

    x = keras.layers.ZeroPadding2D(padding=3, name="conv1_pad")(x)
    batchnorm = dict(bn_momentum=bn_momentum, sync_batchnorm=sync_batchnorm, bn_impl=bn_impl)
    x = conv_bn_relu(x, width, 7, "conv1", strides=2, use_bias=True, epsilon=BN_EPSILON,
                     relu=False, **batchnorm)
    x, features = _stem_pool(x, stride2_map)
    stages = zip(stage_strides, stage_dilations, blocks_per_stage)
    for stage, (stride, rate, blocks) in enumerate(stages, start=2):
        filters = width * 2 ** (stage - 2)
        for block in range(1, blocks + 1):
            # Only a stage's first block changes resolution and channel count, so only
            # it has a stride and a projection shortcut.
            x = _bottleneck(x, filters, stride if block == 1 else 1, rate,
                            projection=block == 1, atrous=atrous,
                            name=f"conv{stage}_block{block}", batchnorm=batchnorm)
        features.append(x)
    return tuple(features)


def _stem_pool(x, stride2_map):
    """conv1_relu, pool1_pad and pool1_pool on the stem's BatchNorm output x; returns
    (the pooled map, [conv1_relu's output or None]). See `resnet50`'s stride2_map."""
    relu = keras.layers.Activation("relu", name="conv1_relu")
    pad = keras.layers.ZeroPadding2D(padding=1, name="pool1_pad")
    if stride2_map:
        features = [relu(x)]
        return keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(pad(features[0])), features
    # The max-pool alone reads ReLU(Pad(BatchNorm)): it makes it again in the backward
    # instead of keeping it (kernels/recompute.py).
    return RecomputingMaxPooling2D(3, strides=2, name="pool1_pool")(relu(pad(x))), [None]


def _bottleneck(x, filters, stride, rate, projection, atrous, name, batchnorm):
    """1x1 (strided) -> 3x3 (dilated) -> 1x1 (4*filters), plus shortcut, then ReLU."""
    common = dict(use_bias=True, epsilon=BN_EPSILON, **batchnorm)
    if projection:
        shortcut = conv_bn_relu(x, 4 * filters, 1, f"{name}_0", strides=stride, relu=False,
                                **common)
    else:
        shortcut = x
    x = conv_bn_relu(x, filters, 1, f"{name}_1", strides=stride, **common)
    # The 3x3 and the last 1x1 convolution alone read the ReLU before them: where they
    # can, they make it again in the backward instead of keeping it (kernels/recompute.py).
    x = conv_bn_relu(x, filters, 3, f"{name}_2", dilation_rate=rate, atrous=atrous,
                     recompute_input=True, **common)
    x = conv_bn_relu(x, 4 * filters, 1, f"{name}_3", relu=False, recompute_input=True, **common)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)
