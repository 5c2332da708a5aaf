"""Draws one batch of the training pipeline and measures the pipeline's speed.

    python scripts/show_batch.py --config demo --out runs/demo/batch.png
    python scripts/show_batch.py --voc-root data/synthetic/VOCdevkit/VOC2012 --out batch.png
    python scripts/show_batch.py --data-root MY_FOLDER_DATASET --out batch.png

With --config the batch is the config's first training batch as training draws it (its
dataset, batch size, input size, resize, scale range, augmentation, seed and split seed);
flags given beside it override those settings. Without it, the flags' defaults: batches
of 8 random 256 px crops of a 296 px resize, flipped and colour-jittered.

The picture shows each augmented image beside its mask in the dataset's colours (VOC's,
or those of a folder dataset's classes.json; ignored pixels in the VOC boundary colour),
with a legend of the class names. Printed: the split sizes and the pipeline's
images/s in its first epoch (decoding included) and after it (decoded cache warm).

`main` is the command line of scripts/show_batch.py.
"""
import argparse
import math
import time

import numpy as np

from research import cli, configs
from research.data import datasets, voc
from research.data.pipeline import dataset_size, make_dataset
from research.visualize import legend, write_png

GAP = 4


def batch_picture(images, labels, pairs_per_row=2, data=None):
    """Image | mask pairs in a grid, with a legend of the classes shown.

    Args:
      images: float [B, H, W, 3] in [0, 255]; labels: int [B, h, w] (255 = ignore).
      pairs_per_row: image | mask pairs side by side.
      data: the dataset (`research.data.datasets`) whose class names and colours to use
        (default VOC's).
    Returns:
      uint8 [H', W', 3].
    """
    names, palette = (data.class_names, data.palette) if data else (voc.CLASS_NAMES, voc.VOC_PALETTE)
    images = np.clip(np.rint(np.asarray(images)), 0, 255).astype(np.uint8)
    labels = np.asarray(labels).astype(np.uint8)
    height, width = images.shape[1:3]
    if labels.shape[1:] != (height, width):     # output_size labels: show them at image size
        rows = np.arange(height) * labels.shape[1] // height
        cols = np.arange(width) * labels.shape[2] // width
        labels = labels[:, rows][:, :, cols]
    pair_width = 2 * width + GAP
    grid_rows = math.ceil(len(images) / pairs_per_row)
    canvas = np.full((grid_rows * (height + GAP) + GAP, pairs_per_row * (pair_width + GAP) + GAP, 3),
                     255, np.uint8)
    for n, (image, label) in enumerate(zip(images, labels)):
        top = GAP + (n // pairs_per_row) * (height + GAP)
        left = GAP + (n % pairs_per_row) * (pair_width + GAP)
        canvas[top:top + height, left:left + width] = image
        canvas[top:top + height, left + width + GAP:left + pair_width] = palette[label]
    key = legend(set(np.unique(labels).tolist()), width=canvas.shape[1], class_names=names, palette=palette)
    return np.concatenate([canvas, key], axis=0)


def main(argv=None):
    """Returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="draw a batch as this config's training does (a named config or "
                                          "a .json file); the flags below override its settings")
    parser.add_argument("--voc-root", "--data-root", dest="root",
                        help="the .../VOCdevkit/VOC2012 folder, or a folder dataset's root (the folder "
                             "holding classes.json); default: the config's dataset (needed without --config)")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--subset", default=None, choices=voc.SUBSETS,
                        help="the split drawn (default the config's train subset, else train)")
    parser.add_argument("--batch-size", type=int, help="images in the batch (default the config's, else 8)")
    parser.add_argument("--input-size", type=int, help="square crop size (default the config's, else 256)")
    parser.add_argument("--resize-before-crop", type=int, default=None,
                        help="size before the random crop (default the config's, else input size x 444/384, "
                             "as the book)")
    parser.add_argument("--seed", type=int, help="the pipeline's seed (default the config's, else 0)")
    parser.add_argument("--warm-batches", type=int, default=10,
                        help="batches timed after the first epoch (default 10)")
    args = parser.parse_args(argv)
    return cli.run_main(lambda: show_batch(*drawing(args), warm_batches=args.warm_batches),
                        bad_file_hint="python -m research.data.validate lists every bad file")


def drawing(args):
    """(dataset, out, subset, batch_size, pipeline settings, seed) from the command line:
    the config's training pipeline (`--config`), or the flags' defaults, flags overriding."""
    if args.config is None and args.root is None:
        raise ValueError("give --config (draw as that config trains) or --voc-root/--data-root")
    if args.config is None:
        size = args.input_size or 256
        settings = {"input_size": (size, size), "augmentation": True, "scale_range": None,
                    "resize_to_before_crop": args.resize_before_crop or round(size * 444 / 384)}
        return (datasets.open_root(args.root), args.out, args.subset or "train", args.batch_size or 8,
                settings, args.seed or 0)
    config = configs.load_config(args.config)
    settings = {"input_size": tuple(config.input_size), "augmentation": config.augmentation,
                "scale_range": config.scale_range, "resize_to_before_crop": config.resize_to_before_crop,
                "split_seed": config.split_seed}
    if args.input_size:
        settings["input_size"] = (args.input_size, args.input_size)
    if args.resize_before_crop:
        settings["resize_to_before_crop"] = (args.resize_before_crop, args.resize_before_crop)
    data = datasets.open_root(args.root) if args.root else datasets.dataset_of(config)
    return (data, args.out, args.subset or config.train_subset, args.batch_size or config.batch_size,
            settings, config.seed if args.seed is None else args.seed)


def show_batch(data, out, subset, batch_size, settings, seed=0, warm_batches=10):
    """Writes `batch_picture` of the first batch of `subset` of `data` (a dataset of
    `research.data.datasets`) to `out` (PNG); prints the split sizes and the pipeline's
    images/s in its first epoch and then from the warm cache.

    Args:
      settings: `research.data.pipeline.make_dataset` keywords: input_size (h, w),
        augmentation, scale_range, resize_to_before_crop [, split_seed].
    """
    split_seed = settings.get("split_seed", 0)
    sizes = {name: dataset_size(data, name, split_seed=split_seed)
             for name in dict.fromkeys(("train", "val", "test", subset))}
    dataset = make_dataset(data, subset, batch_size, shuffle=True, seed=seed, epochs=2, **settings)
    print("split sizes: " + ", ".join(f"{name} {count}" for name, count in sizes.items()))
    batches_per_epoch = math.ceil(sizes[subset] / batch_size)
    iterator = iter(dataset)
    start = time.perf_counter()
    images, labels = next(iterator)
    write_png(out, batch_picture(images.numpy(), labels.numpy(), data=data))
    cold_images = len(images)
    for _ in range(batches_per_epoch - 1):
        cold_images += len(next(iterator)[0])
    cold = cold_images / (time.perf_counter() - start)
    start, warm_images = time.perf_counter(), 0
    for images, _ in iterator:
        warm_images += len(images)
        if warm_images >= warm_batches * batch_size:
            break
    warm = warm_images / (time.perf_counter() - start)
    print(f"pipeline ({subset}, batch {batch_size}, {describe(settings)}): first epoch "
          f"{cold:.1f} images/s (decoding included), then {warm:.1f} images/s (cache warm)")
    print(f"wrote {out}")
    return 0


def describe(settings):
    """"input 128x128, resize 128x128, scale 0.9-1.25 + crop, flip, colour jitter" and the like."""
    height, width = settings["input_size"]
    parts = [f"input {height}x{width}"]
    before = settings["resize_to_before_crop"]
    if before:
        before = (before, before) if isinstance(before, int) else tuple(before)
        parts.append(f"resize {before[0]}x{before[1]}")
    if settings["augmentation"]:
        scale = settings["scale_range"]
        parts.append((f"scale {scale[0]:g}-{scale[1]:g} + crop" if scale else "crop") + ", flip, colour jitter")
    return ", ".join(parts)
