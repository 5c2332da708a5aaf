"""Model summaries: `python -m research.models --summary [--input-size 384] [--num-classes 21]`.

Prints, for DeepLab v3 (ResNet-50 with ASPP, MobileNetV2 with ASPP and with the light
head; output stride 16 and 8) and U-Net with random weights, the total, trainable and
non-trainable parameter counts, the GFLOPs of one 257x257 and one 513x513 image, and the
output shape at --input-size.
"""
import argparse
import sys

import numpy as np

from research import cli

FLOPS_SIZES = (257, 513)


def parameter_counts(model):
    """Returns (total, trainable, non_trainable) parameter counts of a Keras model.

    Non-trainable parameters are the BatchNormalization moving means and variances.

    Example:
    >>> total, trainable, frozen = parameter_counts(deeplab_v3())
    """
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    frozen = sum(int(np.prod(v.shape)) for v in model.non_trainable_weights)
    return trainable + frozen, trainable, frozen


def conv_flops(model, height, width):
    """Floating-point operations of a model's convolutions on one [1, height, width, 3] image.

    2 x multiply-adds of every layer with a 4-D kernel (Conv2D, DepthwiseConv2D,
    AtrousConv2D): output height x width x the kernel's size (kh*kw*Cin*Cout, or
    kh*kw*C*multiplier for depthwise). Dilation does not change the count. BatchNorm,
    activations, additions and resizes are left out (folded or negligible on a device).
    Shapes come from Keras' symbolic shape inference: nothing is computed.

    Returns: int.
    """
    import keras

    convs = [layer for layer in model.layers
             if getattr(layer, "kernel", None) is not None and len(layer.kernel.shape) == 4]
    probe = keras.Model(model.inputs, [layer.output for layer in convs])
    specs = probe.compute_output_spec(keras.KerasTensor((1, height, width, 3)))
    return sum(2 * int(spec.shape[1]) * int(spec.shape[2]) * int(np.prod(layer.kernel.shape))
               for layer, spec in zip(convs, specs))


def main(argv=None):
    """Command-line entry point; `argv` defaults to sys.argv[1:]."""
    parser = argparse.ArgumentParser(
        prog="python -m research.models",
        description="Print parameter counts and output shapes of the segmentation models.")
    parser.add_argument("--summary", action="store_true",
                        help="build DeepLab v3 (OS16, OS8) and U-Net and print their sizes")
    parser.add_argument("--input-size", type=int, default=384,
                        help="square input size in pixels (default: 384)")
    parser.add_argument("--num-classes", type=int, default=21,
                        help="number of classes (default: 21, Pascal VOC)")
    args = parser.parse_args(argv)
    if not args.summary:
        parser.print_help()
        return 0
    return cli.run_main(lambda: print_summary(args.num_classes, args.input_size))


def print_summary(num_classes, input_size):
    """Prints each model's parameter counts, GFLOPs at FLOPS_SIZES and output shape at
    `input_size` (square, pixels) for `num_classes` classes."""
    # Imported here so that --help does not pay for importing TensorFlow.
    import keras

    from research.models import deeplab_v3, unet
    from research.models.mobilenet_v2 import MOBILENET_V2_BLOCKS

    # Built for any size: FLOPs are counted at 257 and 513, the shape at --input-size.
    shape = (None, None, 3)
    mobile = dict(backbone="mobilenet_v2", blocks_per_stage=MOBILENET_V2_BLOCKS, width=32)
    builders = []
    for stride in (16, 8):
        builders += [
            (f"deeplab_v3 (output stride {stride})",
             lambda s=stride: deeplab_v3(num_classes, shape, output_stride=s)),
            (f"deeplab_v3 mobilenet_v2 aspp (OS{stride})",
             lambda s=stride: deeplab_v3(num_classes, shape, output_stride=s, **mobile)),
            (f"deeplab_v3 mobilenet_v2 light (OS{stride})",
             lambda s=stride: deeplab_v3(num_classes, shape, output_stride=s, head="light",
                                         **mobile))]
    builders.append(("unet", lambda: unet(num_classes, shape)))
    flops_columns = " ".join(f"{f'GFLOPs@{size}':>11}" for size in FLOPS_SIZES)
    print(f"{'model':<40} {'total':>12} {'trainable':>12} {'non-trainable':>14} {flops_columns}  output")
    for label, build in builders:
        model = build()
        total, trainable, frozen = parameter_counts(model)
        flops = " ".join(f"{conv_flops(model, size, size) / 1e9:>11.2f}" for size in FLOPS_SIZES)
        output = model.compute_output_spec(
            keras.KerasTensor((None, input_size, input_size, 3)))
        print(f"{label:<40} {total:>12,} {trainable:>12,} {frozen:>14,} {flops}  "
              f"{tuple(output.shape)}")


if __name__ == "__main__":
    sys.exit(main())
