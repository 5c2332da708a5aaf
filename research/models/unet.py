"""U-Net (Ronneberger et al. 2015) with a ResNet-50 encoder and a resize-conv decoder."""
import keras

from research.models.layers import ResizeLike, conv_bn_relu
from research.models.resnet import RESNET50_BLOCKS, RESNET50_WIDTH, resnet50
from research.models.weights import image_input, load_resnet50_weights


def unet(num_classes=21, input_shape=(None, None, 3), weights=None, preprocessing=None,
         decoder_filters=(256, 128, 64, 32, 16), blocks_per_stage=RESNET50_BLOCKS,
         width=RESNET50_WIDTH, bn_momentum=0.99, sync_batchnorm=False, bn_impl="fused", name="unet"):
    """Builds a U-Net: ResNet-50 encoder, five decoder blocks, per-pixel class logits.

    Encoder: ResNet-50 with its standard strides (output stride 32). Decoder: starting
    from the stride-32 features, block i (i = 1..5) bilinearly resizes to the size of the
    next skip, the conv4, conv3, conv2 and conv1 outputs (strides 16, 8, 4, 2; for block
    5, the input image: stride 1, no skip), concatenates the skip, then applies two 3x3
    conv/BN/ReLU with `decoder_filters[i-1]` filters; a 1x1 classifier gives the logits.
    Resize-then-conv instead of transposed convolution: the target size is read from the
    skip at run time, so odd input sizes (e.g. 72x56 or 65x47) line up without cropping
    or padding, and there are no checkerboard artifacts.

    Layer names: the encoder's are `keras.applications.ResNet50`'s; the decoder's are
    decoder{i}_upsample, decoder{i}_concat, decoder{i}_{1,2}_{conv,bn,relu}, then
    classifier and logits (a float32 identity, so logits are float32 under a
    mixed-precision policy).

    Args:
      num_classes: logits channels.
      input_shape: (H, W, 3); None for sizes fixed at call time.
      weights: None, "imagenet" or a path to a `keras.applications.ResNet50(
        include_top=False)` weights file; loads the encoder (see `deeplab_v3`).
      preprocessing: "caffe", "unit" or None = "caffe" with weights, else "unit".
      decoder_filters: 5 ints, filters of the decoder blocks from coarse to fine.
      blocks_per_stage, width: encoder depth and base width; smaller values build a
        reduced model for smoke tests (then `weights` must be None).
      bn_momentum, sync_batchnorm, bn_impl: BatchNorm settings (see `layers.conv_bn_relu`).
      name: model name.

    Returns:
      A `keras.Model` mapping float32 [B, H, W, 3] RGB in [0, 255] to float32 logits
      [B, H, W, num_classes] (no softmax).

    Raises:
      ValueError: decoder_filters not 5 long; weights with a reduced encoder.
      research.models.PretrainedWeightsError: weights not available or unreadable.

    Example:
    >>> model = unet(num_classes=21)
    >>> logits = model(np.zeros((1, 72, 56, 3), "float32"))  # [1, 72, 56, 21]
    >>> tiny = unet(blocks_per_stage=(1, 1, 1, 1), width=8, decoder_filters=(8,) * 5)
    """
    if len(decoder_filters) != 5:
        raise ValueError(f"decoder_filters needs 5 ints (strides 16, 8, 4, 2, 1); got "
                         f"{decoder_filters!r}")
    images, x, weights_file = image_input(input_shape, weights, preprocessing, blocks_per_stage, width)
    batchnorm = dict(bn_momentum=bn_momentum, sync_batchnorm=sync_batchnorm, bn_impl=bn_impl)
    c1, c2, c3, c4, x = resnet50(x, blocks_per_stage=blocks_per_stage, width=width, **batchnorm)
    targets = (c4, c3, c2, c1, images)
    for index, (filters, target) in enumerate(zip(decoder_filters, targets), start=1):
        prefix = f"decoder{index}"
        x = ResizeLike(name=f"{prefix}_upsample")([x, target])
        if target is not images:
            x = keras.layers.Concatenate(name=f"{prefix}_concat")([x, target])
        x = conv_bn_relu(x, filters, 3, f"{prefix}_1", **batchnorm)
        x = conv_bn_relu(x, filters, 3, f"{prefix}_2", **batchnorm)
    x = keras.layers.Conv2D(num_classes, 1, name="classifier")(x)
    logits = keras.layers.Activation("linear", dtype="float32", name="logits")(x)
    model = keras.Model(images, logits, name=name)
    if weights_file:
        load_resnet50_weights(model, weights_file)
    return model
