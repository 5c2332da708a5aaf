"""DeepLab v3 (Chen et al. 2017, "Rethinking Atrous Convolution"): dilated ResNet-50 or
MobileNetV2 + ASPP (or the model zoo's light head for mobile)."""
import keras

from research.models.layers import ResizeLike, conv_bn_relu
from research.models.mobilenet_v2 import mobilenet_v2
from research.models.resnet import RESNET50_BLOCKS, RESNET50_WIDTH, resnet50
from research.models.weights import image_input, load_mobilenet_v2_weights, load_resnet50_weights


def deeplab_v3(num_classes=21, input_shape=(None, None, 3), output_stride=16, weights=None,
               preprocessing=None, aspp_filters=256, atrous="kernels",
               blocks_per_stage=RESNET50_BLOCKS, width=RESNET50_WIDTH, dropout=0.0,
               bn_momentum=0.99, sync_batchnorm=False, bn_impl="fused", backbone="resnet50",
               head="aspp", aspp_rates=(6, 12, 18), name="deeplab_v3"):
    """Builds DeepLab v3 on ResNet-50 or MobileNetV2: images in [0, 255] -> class logits.

    Backbone: ResNet-50 unchanged up to conv4; conv5 with stride 1 and dilation 2 (output
    stride 16), or additionally conv4 with stride 1 and dilation 2 and conv5 dilation 4
    (output stride 8). Head (ASPP): a 1x1 conv and three 3x3 atrous convs at rates
    `aspp_rates` (6, 12, 18), doubled to (12, 24, 36) at output stride 8 as the paper does; an image
    pooling branch (global mean -> 1x1 conv -> BN -> ReLU -> bilinear resize of THAT
    conv output to the feature map's size); each conv without bias, followed by BN and
    ReLU; concatenation; a 1x1 projection with BN and ReLU; optional dropout; the 1x1
    classifier; a bilinear resize to the input's size. All resizes follow the run-time
    sizes, so any input size works (sizes divisible by the output stride align best).

    `backbone="mobilenet_v2"`: `research.models.mobilenet_v2` (Keras' MobileNetV2, its
    last blocks dilated for output stride 16 or 8) instead of ResNet-50; `head="light"`:
    the DeepLab model zoo's head for it, ASPP without the three atrous branches (the 1x1
    branch and image pooling only): on MobileNetV2 at OS16 it halves parameters (2.1 M
    against 4.6 M) and FLOPs (1.3 against 2.5 GFLOPs per 257x257 image;
    `python -m research.models --summary` prints both).

    Layer names: the backbone's are `keras.applications.ResNet50`'s; the head's are
    preprocessing, aspp_1x1_{conv,bn,relu}, aspp_atrous{1,2,3}_{conv,bn,relu} (by index,
    so they are the same at both output strides), aspp_pool_avg,
    aspp_pool_{conv,bn,relu}, aspp_pool_resize, aspp_concat, aspp_project_{conv,bn,relu},
    aspp_dropout (only if dropout > 0), classifier, logits.

    Mixed precision: under a global mixed_float16 / mixed_bfloat16 policy the network
    computes in half precision; the preprocessing and the last layer ("logits", the
    resize) run in float32, so the logits are float32.

    Args:
      num_classes: logits channels (21 for Pascal VOC).
      input_shape: (H, W, 3); None for sizes fixed at call time.
      output_stride: 16 or 8, input size / feature size after the backbone.
      weights: None (random init), "imagenet" (Keras' ResNet-50 or MobileNetV2 1.0 no-top
        file, from the Keras cache or downloaded), or a path to a weights file of
        `keras.applications.ResNet50(include_top=False)` (or `MobileNetV2(alpha=1.0,
        include_top=False)`; .h5 or .weights.h5). Loads every backbone layer, BatchNorm
        statistics included; the head stays random.
      preprocessing: "caffe", "tf", "unit" or None = what the weights want ("caffe" for
        ResNet-50, "tf" for MobileNetV2), else "unit". See
        `research.models.layers.Preprocessing`.
      aspp_filters: channels of every ASPP branch and of the projection (256 in the paper).
      atrous: "kernels" (`kernels.AtrousConv2D`, fast on CPU) or "keras"
        (`keras.layers.Conv2D(dilation_rate=r)`, the plain baseline) for every dilated
        conv; both give the same layer names and weight shapes.
      blocks_per_stage, width: backbone depth and base width; smaller values build a
        reduced model for smoke tests (then `weights` must be None). ResNet-50: 4 stages,
        (3, 4, 6, 3) and 64; MobileNetV2: 7 stages, (1, 2, 3, 4, 3, 3, 1) and 32 (the
        first convolution's channels; width 16 = Keras' alpha 0.5).
      dropout: dropout rate after the projection; 0 (default) adds no layer. Off by
        default like the book; the reference implementation uses 0.1 (keep_prob 0.9),
        torchvision 0.5: an ablation knob.
      bn_momentum: BatchNorm moving-average momentum (see `layers.conv_bn_relu`).
      sync_batchnorm: BatchNorm statistics over all tf.distribute replicas (see
        `layers.conv_bn_relu`); the training loop turns it on with several replicas.
      backbone: "resnet50" or "mobilenet_v2".
      head: "aspp" (1x1, three atrous 3x3, image pooling) or "light" (1x1 and image
        pooling only).
      bn_impl: "fused" (`kernels.FusedBatchNormalization`) or "keras" (see
        `layers.batch_normalization`).
      aspp_rates: the atrous rates of the ASPP's 3x3 branches at output stride 16
        (doubled at 8). The paper's (6, 12, 18) are for 513 px crops (33x33 features);
        on a small input they degenerate: at 128 px (8x8 features) rates 12 and 18 reach
        only padding, so those branches become 1x1 convolutions. Scale them with the
        feature size (about 6 * features / 33).
      name: model name.

    Returns:
      A `keras.Model` mapping float32 [B, H, W, 3] RGB in [0, 255] to float32 logits
      [B, H, W, num_classes] (no softmax).

    Raises:
      ValueError: output_stride other than 16 or 8; weights with a reduced backbone;
        an unknown backbone or head.
      research.models.PretrainedWeightsError: weights not available or unreadable.

    Example:
    >>> model = deeplab_v3(num_classes=21, output_stride=16)
    >>> logits = model(np.zeros((2, 384, 384, 3), "float32"))  # [2, 384, 384, 21]
    >>> tiny = deeplab_v3(blocks_per_stage=(1, 1, 1, 1), width=8, aspp_filters=16)
    >>> mobile = deeplab_v3(backbone="mobilenet_v2", blocks_per_stage=(1, 2, 3, 4, 3, 3, 1),
    ...                     width=32, head="light")
    """
    if output_stride == 16:
        strides, dilations, rates = (1, 2, 2, 1), (1, 1, 1, 2), tuple(aspp_rates)
    elif output_stride == 8:
        strides, dilations, rates = (1, 2, 1, 1), (1, 1, 2, 4), tuple(2 * r for r in aspp_rates)
    else:
        raise ValueError(f"output_stride must be 16 or 8; got {output_stride!r}")
    if not aspp_rates or not all(isinstance(r, int) and r >= 1 for r in aspp_rates):
        raise ValueError(f"aspp_rates must be positive integers; got {aspp_rates!r}")
    if head not in ("aspp", "light"):
        raise ValueError(f'head must be "aspp" or "light"; got {head!r}')
    images, x, weights_file = image_input(input_shape, weights, preprocessing, blocks_per_stage,
                                          width, backbone)
    batchnorm = dict(bn_momentum=bn_momentum, sync_batchnorm=sync_batchnorm, bn_impl=bn_impl)
    if backbone == "mobilenet_v2":
        features = mobilenet_v2(x, output_stride, blocks_per_stage, width, **batchnorm)[-1]
    else:
        features = resnet50(x, strides, dilations, blocks_per_stage, width, atrous, **batchnorm)[-1]
    x = _aspp(features, aspp_filters, rates if head == "aspp" else (), atrous, batchnorm)
    if dropout:
        x = keras.layers.Dropout(dropout, name="aspp_dropout")(x)
    x = keras.layers.Conv2D(num_classes, 1, name="classifier")(x)
    # float32 here makes the logits float32 under mixed precision (and the upsampling
    # of logits exact to float32).
    logits = ResizeLike(dtype="float32", name="logits")([x, images])
    model = keras.Model(images, logits, name=name)
    if weights_file and backbone == "mobilenet_v2":
        load_mobilenet_v2_weights(model, weights_file)
    elif weights_file:
        load_resnet50_weights(model, weights_file)
    return model


def _aspp(x, filters, rates, atrous, batchnorm):
    """Atrous spatial pyramid pooling: 1x1, one 3x3 per rate, image pooling; concatenated,
    projected. No rates: the light head (1x1 and image pooling)."""
    branches = [conv_bn_relu(x, filters, 1, "aspp_1x1", **batchnorm)]
    for index, rate in enumerate(rates, start=1):
        branches.append(conv_bn_relu(x, filters, 3, f"aspp_atrous{index}", dilation_rate=rate,
                                     atrous=atrous, **batchnorm))
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool_avg")(x)
    pooled = conv_bn_relu(pooled, filters, 1, "aspp_pool", **batchnorm)
    # Resize the 1x1 conv's output (not the 2048-channel mean, as the book does) to the
    # feature map's run-time size (not a factor fixed for one input size).
    branches.append(ResizeLike(name="aspp_pool_resize")([pooled, x]))
    x = keras.layers.Concatenate(name="aspp_concat")(branches)
    return conv_bn_relu(x, filters, 1, "aspp_project", **batchnorm)
