"""MobileNetV2 (Sandler et al. 2018, as `keras.applications.MobileNetV2`) with dilation.

The DeepLab model zoo's mobile backbone: inverted residual blocks of a 1x1 expansion
(ReLU6), a 3x3 depthwise convolution (ReLU6) and a linear 1x1 projection, with a residual
connection where shapes allow. Where the output stride is reached, later strides become 1
and the depthwise convolutions are dilated instead (slim's `mobilenet.py` rule, used by
the DeepLab model zoo), so the features keep a resolution of input / output_stride.
"""
import keras

from research.models.layers import batch_normalization

# (expansion t, output channels c, blocks n, first stride s) of the seven stages, as in
# the paper's Table 2 and keras.applications.MobileNetV2 (block ids 0..16).
MOBILENET_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
MOBILENET_V2_BLOCKS = tuple(n for _, _, n, _ in MOBILENET_V2_STAGES)  # (1, 2, 3, 4, 3, 3, 1)
MOBILENET_V2_WIDTH = 32  # channels of the first convolution at width multiplier 1.0


def _make_divisible(value, divisor=8):
    """Keras' and slim's channel rounding: nearest multiple of 8, never 10% below."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def mobilenet_v2(x, output_stride=16, blocks_per_stage=MOBILENET_V2_BLOCKS,
                 width=MOBILENET_V2_WIDTH, bn_momentum=0.99, sync_batchnorm=False,
                 bn_impl="fused"):
    """Adds a MobileNetV2 feature extractor to the functional graph at `x`.

    Layer names are those of `keras.applications.MobileNetV2(include_top=False)` (Conv1,
    bn_Conv1, Conv1_relu, expanded_conv_depthwise, ..., block_{i}_expand,
    block_{i}_expand_BN, block_{i}_depthwise, block_{i}_depthwise_BN, block_{i}_project,
    block_{i}_project_BN, block_{i}_add), convolutions have no bias and BatchNorm epsilon
    is 1e-3, so that model's weights copy in by layer name
    (`research.models.weights.load_mobilenet_v2_weights`). Keras' last 1x1 convolution
    (Conv_1, 1280 channels) is left out, as the DeepLab model zoo does: the features are
    block 16's 320-channel projection.

    Output stride: strides accumulate until they reach `output_stride`; from then on a
    stride-2 block gets stride 1 and multiplies the dilation rate by 2, applied to the
    depthwise convolutions of the FOLLOWING blocks (the block whose stride was removed
    keeps the current rate). Output stride 16: blocks 14-16 at rate 2. Output stride 8:
    blocks 7-13 at rate 2, blocks 14-16 at rate 4.

    Args:
      x: Keras tensor [B, H, W, 3], already preprocessed (`layers.Preprocessing("tf")`
        for ImageNet weights).
      output_stride: 8, 16 or 32 (32 = the classification network).
      blocks_per_stage: 7 ints >= 1; (1, 2, 3, 4, 3, 3, 1) is MobileNetV2. Fewer blocks
        give a reduced model (its block ids are renumbered 0, 1, ...).
      width: channels of the first convolution; 32 = MobileNetV2 at width multiplier
        1.0. Every layer scales by `width / 32` (Keras' `alpha`), rounded to multiples of
        8 as Keras rounds.
      bn_momentum, sync_batchnorm, bn_impl: BatchNorm settings (see `layers.conv_bn_relu`).

    Returns:
      A tuple of Keras tensors, one per stage, at strides 2, 4, 8, 16, 16, 32, 32 of the
      input (capped at `output_stride`); the last is the DeepLab feature map with
      `_make_divisible(320 * width / 32)` channels (320 at width 32).

    Example:
    >>> images = keras.Input((None, None, 3))
    >>> features = mobilenet_v2(images, output_stride=16)[-1]  # [B, H/16, W/16, 320]
    """
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32; got {output_stride!r}")
    if len(blocks_per_stage) != len(MOBILENET_V2_STAGES) or min(blocks_per_stage) < 1:
        raise ValueError(f"blocks_per_stage needs {len(MOBILENET_V2_STAGES)} positive ints "
                         f"(MobileNetV2: {MOBILENET_V2_BLOCKS}); got {tuple(blocks_per_stage)!r}")
    if width < 1:
        raise ValueError(f"width must be positive; got {width!r}")
    alpha = width / MOBILENET_V2_WIDTH
    batchnorm = dict(bn_momentum=bn_momentum, sync_batchnorm=sync_batchnorm, bn_impl=bn_impl)

    x = keras.layers.Conv2D(_make_divisible(MOBILENET_V2_WIDTH * alpha), 3, strides=2,
                            padding="same", use_bias=False, name="Conv1")(x)
    x = batch_normalization("bn_Conv1", **batchnorm)(x)
    x = keras.layers.ReLU(6.0, name="Conv1_relu")(x)
    current_stride, rate, block_id, features = 2, 1, 0, []
    for (expansion, channels, _, first_stride), blocks in zip(MOBILENET_V2_STAGES, blocks_per_stage):
        for index in range(blocks):
            stride = first_stride if index == 0 else 1
            block_rate = rate
            if stride > 1 and current_stride == output_stride:
                stride, rate = 1, rate * stride  # dilate the following blocks instead
            else:
                current_stride *= stride
            x = _inverted_residual(x, expansion, stride, block_rate,
                                   _make_divisible(int(channels * alpha)), block_id, batchnorm)
            block_id += 1
        features.append(x)
    return tuple(features)


def _inverted_residual(inputs, expansion, stride, rate, filters, block_id, batchnorm):
    """1x1 expand (ReLU6) -> 3x3 depthwise (strided or dilated, ReLU6) -> 1x1 project (+x)."""
    prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
    x = inputs
    if block_id:  # Keras' block 0 has expansion 1 and no expand layer
        x = keras.layers.Conv2D(expansion * inputs.shape[-1], 1, use_bias=False,
                                name=f"{prefix}expand")(x)
        x = batch_normalization(f"{prefix}expand_BN", **batchnorm)(x)
        x = keras.layers.ReLU(6.0, name=f"{prefix}expand_relu")(x)
    # SAME padding also at stride 2: (0, 1) on even sizes, (1, 1) on odd ones, so an odd
    # size (257, 513, a VOC image) gives ceil(size / stride) features on the zoo's grid.
    # Keras' explicit ZeroPadding2D reads the pad from a static size; a fixed (0, 1)
    # lost a row and column at every odd size (257 -> 16x16 features instead of 17x17).
    x = keras.layers.DepthwiseConv2D(3, strides=stride, dilation_rate=rate, use_bias=False,
                                     padding="same", name=f"{prefix}depthwise")(x)
    x = batch_normalization(f"{prefix}depthwise_BN", **batchnorm)(x)
    x = keras.layers.ReLU(6.0, name=f"{prefix}depthwise_relu")(x)
    x = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{prefix}project")(x)
    x = batch_normalization(f"{prefix}project_BN", **batchnorm)(x)
    if stride == 1 and inputs.shape[-1] == filters:
        return keras.layers.Add(name=f"{prefix}add")([inputs, x])
    return x
