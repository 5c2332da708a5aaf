"""DeepLab v3 (Chen et al. 2017, "Rethinking Atrous Convolution") and DeepLab v3+ (Chen et
al. 2018, "Encoder-Decoder with Atrous Separable Convolution"): a dilated ResNet-50 or
MobileNetV2, ASPP (or the model zoo's light head for mobile) and, for v3+, a decoder over
stride-4 features.

Backbone: ResNet-50 unchanged up to conv4; conv5 with stride 1 and dilation 2 (output
stride 16), or additionally conv4 with stride 1 and dilation 2 and conv5 dilation 4
(output stride 8). MobileNetV2: `research.models.mobilenet_v2`, its last blocks dilated.

ASPP: a 1x1 conv and one 3x3 atrous conv per rate (`aspp_rates`, the paper's (6, 12, 18)
at output stride 16, doubled at 8); an image pooling branch (global mean -> 1x1 conv ->
BN -> ReLU -> bilinear resize of THAT conv output to the feature map's size); each conv
without bias, followed by BN and ReLU; concatenation; a 1x1 projection with BN and ReLU;
optional dropout. The light head keeps the 1x1 branch and image pooling only. Each branch
after the 1x1 reads the feature map through a weightless `kernels.BranchLink` to the
branch before it: in training their backward passes run one at a time (the step's memory
peak is there, kernels/ordering.py); elsewhere the links are the identity.

v3+ decoder: the backbone's stride-4 features (ResNet-50: conv2's output, 256 channels;
MobileNetV2: the stride-4 stage's output, block 2's 24 channels, as mmsegmentation's
`c1_in_channels=24` and Model Garden's level-2 endpoint; TF DeepLab's research code takes
block 2's 144-channel depthwise output instead) -> 1x1 conv to 48 channels + BN + ReLU;
the ASPP output resized bilinearly to that size and concatenated with it; two 3x3 convs
(+BN+ReLU) of `aspp_filters` channels (256 in the paper, where ASPP has 256 too).

Then the 1x1 classifier and a bilinear resize to the input's size. All resizes follow the
run-time sizes, so any input size works (sizes divisible by the output stride align best).

Layer names: the backbone's are Keras' (`keras.applications.ResNet50`, `MobileNetV2`);
the head's are preprocessing, aspp_1x1_{conv,bn,relu}, aspp_atrous{1,2,3}_{conv,bn,relu}
(by index, so they are the same at both output strides), aspp_link{1,2,3}
and aspp_link_pool (one per rate, then the pooling branch's), aspp_pool_avg,
aspp_pool_{conv,bn,relu}, aspp_pool_resize, aspp_concat, aspp_project_{conv,bn,relu},
aspp_dropout (only if dropout > 0); v3+ adds decoder_low_level_{conv,bn,relu},
decoder_upsample, decoder_concat, decoder_{1,2}_{conv,bn,relu}; then classifier, logits.

Mixed precision: under a global mixed_float16 / mixed_bfloat16 policy the network
computes in half precision; the preprocessing and the last layer ("logits", the resize)
run in float32, so the logits are float32.
"""
import keras

from kernels import BranchLink
from research.models.layers import ResizeLike, conv_bn_relu
from research.models.mobilenet_v2 import mobilenet_v2
from research.models.resnet import RESNET50_BLOCKS, RESNET50_WIDTH, resnet50
from research.models.weights import (BACKBONES, image_input, load_mobilenet_v2_weights,
                                     load_resnet50_weights)

# ResNet-50's (stage strides, stage dilations) of conv2..conv5 at each output stride.
RESNET50_STRIDES_AND_DILATIONS = {16: ((1, 2, 2, 1), (1, 1, 1, 2)),
                                  8: ((1, 2, 1, 1), (1, 1, 2, 4))}
HEADS = ("aspp", "light")
# The v3+ decoder's projection of the stride-4 features: the paper's 48 channels (its
# ablation: fewer low-level channels than the 256 of the ASPP side, so they do not
# outweigh the semantic features).
LOW_LEVEL_FILTERS = 48


def deeplab_v3(num_classes=21, input_shape=(None, None, 3), output_stride=16, weights=None,
               preprocessing=None, aspp_filters=256, atrous="kernels",
               blocks_per_stage=RESNET50_BLOCKS, width=RESNET50_WIDTH, dropout=0.0,
               bn_momentum=0.99, sync_batchnorm=False, bn_impl="fused", backbone="resnet50",
               head="aspp", aspp_rates=(6, 12, 18), decoder=False, name=None):
    """Builds DeepLab v3, or v3+ with `decoder=True` (see the module docstring):
    float32 images [B, H, W, 3] in [0, 255] -> float32 logits [B, H, W, num_classes].

    Args:
      num_classes: logits channels (21 for Pascal VOC).
      input_shape: (H, W, 3); None for sizes fixed at call time.
      output_stride: 16 or 8, input size / feature size after the backbone.
      weights: None (random init), "imagenet" (Keras' ResNet-50 or MobileNetV2 1.0 no-top
        file, cached or downloaded) or a path to such a file (.h5 or .weights.h5): every
        backbone layer, BatchNorm statistics included; the head and decoder stay random.
      preprocessing: "caffe", "tf", "unit" or None = what the weights want ("caffe" for
        ResNet-50, "tf" for MobileNetV2), else "unit" (`layers.Preprocessing`).
      aspp_filters: channels of the ASPP branches, its projection and the v3+ decoder's
        3x3 convs (256 in the papers).
      atrous: "kernels" (`kernels.AtrousConv2D`, fast on CPU) or "keras" (`Conv2D` with
        `dilation_rate`) for every dilated conv: same layer names and weight shapes.
      blocks_per_stage, width: backbone depth and base width; smaller values build a
        reduced model (then `weights` must be None). ResNet-50: (3, 4, 6, 3) and 64;
        MobileNetV2: (1, 2, 3, 4, 3, 3, 1) and 32 (width 16 = Keras' alpha 0.5).
      dropout: dropout rate after the ASPP projection; 0 adds no layer.
      bn_momentum, sync_batchnorm, bn_impl: BatchNorm settings (`layers.conv_bn_relu`).
      backbone: "resnet50" or "mobilenet_v2".
      head: "aspp" or "light" (1x1 and image pooling only: on MobileNetV2 at OS16 half
        the parameters and FLOPs of ASPP).
      aspp_rates: the atrous rates at output stride 16 (doubled at 8). The paper's
        (6, 12, 18) are for 513 px crops (33x33 features); scale them with the feature
        size (about 6 * features / 33), or the outer taps read only padding.
      decoder: False for DeepLab v3, True for v3+ (`deeplab_v3_plus`).
      name: model name; None: "deeplab_v3" or "deeplab_v3_plus".

    Returns: a `keras.Model` (logits, no softmax).

    Raises:
      ValueError: output_stride other than 16 or 8; bad aspp_rates; an unknown backbone
        or head; weights with a reduced backbone.
      research.models.PretrainedWeightsError: weights not available or unreadable.

    Example:
    >>> model = deeplab_v3(num_classes=21, output_stride=16)
    >>> logits = model(np.zeros((2, 384, 384, 3), "float32"))  # [2, 384, 384, 21]
    >>> tiny = deeplab_v3(blocks_per_stage=(1, 1, 1, 1), width=8, aspp_filters=16)
    """
    rates = _checked_aspp_rates(output_stride, aspp_rates, backbone, head)
    images, x, weights_file = image_input(input_shape, weights, preprocessing, blocks_per_stage,
                                          width, backbone)
    batchnorm = dict(bn_momentum=bn_momentum, sync_batchnorm=sync_batchnorm, bn_impl=bn_impl)
    features = _backbone_features(x, backbone, output_stride, blocks_per_stage, width, atrous,
                                  batchnorm)
    x = _aspp(features[-1], aspp_filters, rates, atrous, batchnorm)
    if dropout:
        x = keras.layers.Dropout(dropout, name="aspp_dropout")(x)
    if decoder:
        x = _decoder(x, features[1], aspp_filters, batchnorm)
    x = keras.layers.Conv2D(num_classes, 1, name="classifier")(x)
    # float32 here makes the logits float32 under mixed precision (and the upsampling
    # of logits exact to float32).
    logits = ResizeLike(dtype="float32", name="logits")([x, images])
    model = keras.Model(images, logits, name=name or ("deeplab_v3_plus" if decoder else "deeplab_v3"))
    if weights_file:
        load = load_mobilenet_v2_weights if backbone == "mobilenet_v2" else load_resnet50_weights
        load(model, weights_file)
    return model


def deeplab_v3_plus(num_classes=21, **kwargs):
    """Builds DeepLab v3+: `deeplab_v3` with the decoder over stride-4 features.

    Same arguments as `deeplab_v3` (all but `decoder`); the module docstring describes
    the decoder. Output: float32 logits [B, H, W, num_classes] for float32 [B, H, W, 3]
    images in [0, 255], as DeepLab v3.

    Example:
    >>> model = deeplab_v3_plus(num_classes=21, output_stride=16)  # ResNet-50, 256-ch decoder
    >>> tiny = deeplab_v3_plus(blocks_per_stage=(1, 1, 1, 1), width=8, aspp_filters=16)
    >>> logits = tiny(np.zeros((1, 64, 64, 3), "float32"))  # [1, 64, 64, 21]
    """
    return deeplab_v3(num_classes, decoder=True, **kwargs)


def _checked_aspp_rates(output_stride, aspp_rates, backbone, head):
    """The ASPP's atrous rates at `output_stride` (none for the light head), once the
    arguments that shape the network are checked (before anything is built)."""
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}; got {backbone!r}")
    if output_stride not in RESNET50_STRIDES_AND_DILATIONS:
        raise ValueError(f"output_stride must be 16 or 8; got {output_stride!r}")
    if not aspp_rates or not all(isinstance(r, int) and r >= 1 for r in aspp_rates):
        raise ValueError(f"aspp_rates must be positive integers; got {aspp_rates!r}")
    if head not in HEADS:
        raise ValueError(f'head must be "aspp" or "light"; got {head!r}')
    if head == "light":
        return ()
    return tuple(aspp_rates) if output_stride == 16 else tuple(2 * r for r in aspp_rates)


def _backbone_features(x, backbone, output_stride, blocks_per_stage, width, atrous, batchnorm):
    """The backbone's feature maps, strides 2, 4, ... up to `output_stride` (last).

    Index 1 is the stride-4 map of either backbone (the v3+ decoder's input), index -1
    the one ASPP reads; index 0 is None on ResNet-50 (see resnet50's stride2_map).
    """
    if backbone == "mobilenet_v2":
        return mobilenet_v2(x, output_stride, blocks_per_stage, width, **batchnorm)
    strides, dilations = RESNET50_STRIDES_AND_DILATIONS[output_stride]
    # DeepLab never reads the stride-2 map: see resnet50's stride2_map.
    return resnet50(x, strides, dilations, blocks_per_stage, width, atrous, **batchnorm,
                    stride2_map=False)


def _aspp(x, filters, rates, atrous, batchnorm):
    """Atrous spatial pyramid pooling: 1x1, one 3x3 per rate, image pooling; concatenated,
    projected. No rates: the light head (1x1 and image pooling).

    Each branch after the first reads x through a `kernels.BranchLink` to the branch
    before it, so in training their backward passes run one at a time and x's five
    gradients are summed as they come: the step's memory peak is at the start of this
    backward (kernels/ordering.py).
    """
    source = x
    branches = [conv_bn_relu(x, filters, 1, "aspp_1x1", **batchnorm)]
    for index, rate in enumerate(rates, start=1):
        x = BranchLink(name=f"aspp_link{index}")([x, branches[-1]])
        branches.append(conv_bn_relu(x, filters, 3, f"aspp_atrous{index}", dilation_rate=rate,
                                     atrous=atrous, **batchnorm))
    x = BranchLink(name="aspp_link_pool")([x, branches[-1]])
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool_avg")(x)
    pooled = conv_bn_relu(pooled, filters, 1, "aspp_pool", **batchnorm)
    # Resize the 1x1 conv's output (not the 2048-channel mean, as the book does) to the
    # feature map's run-time size (not a factor fixed for one input size).
    branches.append(ResizeLike(name="aspp_pool_resize")([pooled, source]))
    x = keras.layers.Concatenate(name="aspp_concat")(branches)
    return conv_bn_relu(x, filters, 1, "aspp_project", **batchnorm)


def _decoder(x, low_level, filters, batchnorm):
    """DeepLab v3+'s decoder: [B, h, w, C] ASPP output and [B, H/4, W/4, c] stride-4
    features -> [B, H/4, W/4, filters]."""
    low_level = conv_bn_relu(low_level, LOW_LEVEL_FILTERS, 1, "decoder_low_level", **batchnorm)
    x = ResizeLike(name="decoder_upsample")([x, low_level])
    x = keras.layers.Concatenate(name="decoder_concat")([x, low_level])
    x = conv_bn_relu(x, filters, 3, "decoder_1", **batchnorm)
    return conv_bn_relu(x, filters, 3, "decoder_2", **batchnorm)
