"""Model summaries: `python -m research.models --summary [--input-size 384] [--num-classes 21]`.

Prints, for DeepLab v3 (output stride 16 and 8) and U-Net with random weights, the total,
trainable and non-trainable parameter counts and the output shape.
"""
import argparse

import numpy as np


def parameter_counts(model):
    """Returns (total, trainable, non_trainable) parameter counts of a Keras model.

    Non-trainable parameters are the BatchNormalization moving means and variances.

    Example:
    >>> total, trainable, frozen = parameter_counts(deeplab_v3())
    """
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    frozen = sum(int(np.prod(v.shape)) for v in model.non_trainable_weights)
    return trainable + frozen, trainable, frozen


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
        return
    # Imported here so that --help does not pay for importing TensorFlow.
    from research.models import deeplab_v3, unet

    shape = (args.input_size, args.input_size, 3)
    builders = (("deeplab_v3 (output stride 16)",
                 lambda: deeplab_v3(args.num_classes, shape, output_stride=16)),
                ("deeplab_v3 (output stride 8)",
                 lambda: deeplab_v3(args.num_classes, shape, output_stride=8)),
                ("unet", lambda: unet(args.num_classes, shape)))
    print(f"{'model':<30} {'total':>12} {'trainable':>12} {'non-trainable':>14}  output")
    for label, build in builders:
        model = build()
        total, trainable, frozen = parameter_counts(model)
        print(f"{label:<30} {total:>12,} {trainable:>12,} {frozen:>14,}  "
              f"{tuple(model.output.shape)}")


if __name__ == "__main__":
    main()
