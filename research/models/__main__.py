"""Model summaries:

    python -m research.models --summary [--input-size 384] [--num-classes 21]
    python -m research.models --json PATH [--configs NAME [NAME ...]]

`--summary` prints, for DeepLab v3 (ResNet-50 with ASPP, MobileNetV2 with ASPP and with
the light head), DeepLab v3+ (ResNet-50, MobileNetV2 with ASPP), each at output stride 16
and 8, and U-Net, all with random weights: the total, trainable and non-trainable
parameter counts, the GFLOPs of one 257x257 and one 513x513 image, and the output shape
at --input-size.

`--json PATH` writes, for every named config (or those given to --configs), what the
config builds (`research.build.build_model`, without reading pretrained files): model,
backbone, head, output strides, input size, BatchNorm policy, parameter counts and the
GFLOPs of one image at the config's input size (and at its eval_output_stride), under a
"provenance" field (machine, TensorFlow and Keras versions, git commit, date, the
command). Written atomically; the model zoo page is generated from it.
"""
import argparse
import sys

import numpy as np

from research import cli, provenance, results

FLOPS_SIZES = (257, 513)


def parameter_counts(model):
    """Returns (total, trainable, non_trainable) parameter counts of a Keras model.

    Non-trainable parameters are the BatchNormalization moving means and variances (and
    gamma and beta too under bn_policy "frozen").

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


def summary_builders(num_classes):
    """[(label, build)] of the models `--summary` prints; `build()` returns the model."""
    from research.models import deeplab_v3, deeplab_v3_plus, unet
    from research.models.mobilenet_v2 import MOBILENET_V2_BLOCKS

    # Built for any size: FLOPs are counted at 257 and 513, the shape at --input-size.
    common = dict(num_classes=num_classes, input_shape=(None, None, 3))
    mobile = dict(backbone="mobilenet_v2", blocks_per_stage=MOBILENET_V2_BLOCKS, width=32, **common)
    builders = []
    for s in (16, 8):
        builders += [
            (f"deeplab_v3 (output stride {s})", lambda s=s: deeplab_v3(output_stride=s, **common)),
            (f"deeplab_v3 mobilenet_v2 aspp (OS{s})", lambda s=s: deeplab_v3(output_stride=s, **mobile)),
            (f"deeplab_v3 mobilenet_v2 light (OS{s})",
             lambda s=s: deeplab_v3(output_stride=s, head="light", **mobile)),
            (f"deeplab_v3_plus (output stride {s})", lambda s=s: deeplab_v3_plus(output_stride=s, **common)),
            (f"deeplab_v3_plus mobilenet_v2 (OS{s})", lambda s=s: deeplab_v3_plus(output_stride=s, **mobile))]
    builders.append(("unet", lambda: unet(**common)))
    return builders


def print_summary(input_size, num_classes):
    """Prints the `--summary` table (see the module docstring)."""
    import keras

    flops_columns = " ".join(f"{f'GFLOPs@{size}':>11}" for size in FLOPS_SIZES)
    print(f"{'model':<40} {'total':>12} {'trainable':>12} {'non-trainable':>14} {flops_columns}  output")
    for label, build in summary_builders(num_classes):
        model = build()
        total, trainable, frozen = parameter_counts(model)
        flops = " ".join(f"{conv_flops(model, size, size) / 1e9:>11.2f}" for size in FLOPS_SIZES)
        output = model.compute_output_spec(keras.KerasTensor((None, input_size, input_size, 3)))
        print(f"{label:<40} {total:>12,} {trainable:>12,} {frozen:>14,} {flops}  {tuple(output.shape)}")


def config_summary(config):
    """What a config builds, as a JSON-ready dict (the fields of one `--json` row).

    Keys: model, backbone, head, output_stride, eval_output_stride (the DeepLab fields;
    None for U-Net where they do not apply), input_size [H, W], num_classes, weights,
    bn_policy, parameters (total), trainable, non_trainable, gflops (one image at
    input_size, at output_stride) and gflops_eval (at eval_output_stride; None unless it
    differs from output_stride).
    """
    from research import build
    from research.config import DEEPLAB_MODELS, network_of

    deeplab = config.model in DEEPLAB_MODELS
    model = build.build_model(config, pretrained=False)
    height, width = config.input_size
    total, trainable, frozen = parameter_counts(model)
    eval_stride = config.eval_output_stride if deeplab else None
    gflops_eval = None
    if eval_stride not in (None, config.output_stride):
        rebuilt = build.build_model(config.replace(output_stride=eval_stride), pretrained=False)
        gflops_eval = round(conv_flops(rebuilt, height, width) / 1e9, 4)
    return {"model": config.model, "backbone": config.backbone,
            "head": config.head if deeplab else None,
            "output_stride": config.output_stride if deeplab else None,
            "eval_output_stride": eval_stride, "input_size": [height, width],
            "num_classes": config.num_classes, "network": network_of(config), "weights": config.weights,
            "bn_policy": config.bn_policy,
            "parameters": total, "trainable": trainable, "non_trainable": frozen,
            "gflops": round(conv_flops(model, height, width) / 1e9, 4), "gflops_eval": gflops_eval}


def write_json(path, names, command):
    """Saves one row per named config in `names` (research/results.py's "models" schema)
    with its provenance, atomically; returns the path."""
    import keras

    from research import results
    from research.configs import load_config

    rows = []
    for name in names:
        rows.append({"config": name, **config_summary(load_config(name))})
        keras.backend.clear_session()   # one model at a time in memory
    return results.write_results(path, {
        "flops": "2 x multiply-adds of the convolutions, one image at the config's input size",
        "rows": rows}, command)


def main(argv=None):
    """Command-line entry point; `argv` defaults to sys.argv[1:]."""
    from research.configs import NAMED_CONFIGS

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="python -m research.models",
        description="Print or save parameter counts, FLOPs and output shapes of the segmentation models.")
    parser.add_argument("--summary", action="store_true",
                        help="build DeepLab v3, DeepLab v3+ (OS16, OS8) and U-Net and print their sizes")
    parser.add_argument("--input-size", type=int, default=384,
                        help="--summary: square input size in pixels (default: 384)")
    parser.add_argument("--num-classes", type=int, default=21,
                        help="--summary: number of classes (default: 21, Pascal VOC)")
    results.add_json_argument(parser, "models")
    parser.add_argument("--configs", nargs="+", metavar="NAME", choices=sorted(NAMED_CONFIGS),
                        help="--json: only these named configs (default: all)")
    args = parser.parse_args(argv)
    if not (args.summary or args.json):
        parser.print_help()
        return 0

    def work():
        # TensorFlow is imported below this point only, so that --help does not pay for it.
        if args.summary:
            print_summary(args.input_size, args.num_classes)
        if args.json:
            names = args.configs or list(NAMED_CONFIGS)
            saved = write_json(args.json, names, provenance.command_line("python -m research.models", argv))
            print(f"result: {saved}")

    return cli.run_main(work)


if __name__ == "__main__":
    sys.exit(main())
