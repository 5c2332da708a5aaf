"""Draws one batch of the training pipeline and measures the pipeline's speed.

    python scripts/show_batch.py --voc-root data/synthetic/VOCdevkit/VOC2012 --out runs/demo/batch.png
    python scripts/show_batch.py --data-root MY_FOLDER_DATASET --out batch.png

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

from research import cli
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
    parser.add_argument("--voc-root", "--data-root", dest="root", required=True,
                        help="the .../VOCdevkit/VOC2012 folder, or a folder dataset's root (the folder "
                             "holding classes.json)")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--subset", default="train", choices=voc.SUBSETS, help="the split drawn (default train)")
    parser.add_argument("--batch-size", type=int, default=8, help="images in the batch (default 8)")
    parser.add_argument("--input-size", type=int, default=256, help="square crop size (default 256)")
    parser.add_argument("--resize-before-crop", type=int, default=None,
                        help="size before the random crop (default: input size x 444/384, as the book)")
    parser.add_argument("--seed", type=int, default=0, help="the pipeline's seed (default 0)")
    parser.add_argument("--warm-batches", type=int, default=10,
                        help="batches timed after the first epoch (default 10)")
    args = parser.parse_args(argv)
    before_crop = args.resize_before_crop or round(args.input_size * 444 / 384)
    return cli.run_main(lambda: show_batch(args.root, args.out, args.subset, args.batch_size,
                                           args.input_size, before_crop, args.seed, args.warm_batches),
                        bad_file_hint="python -m research.data.validate lists every bad file")


def show_batch(root, out, subset, batch_size, input_size, before_crop, seed=0, warm_batches=10):
    """Writes `batch_picture` of the first batch of `subset` of the dataset at `root` (VOC or a
    folder dataset) to `out` (PNG); prints the split sizes and the pipeline's images/s in its
    first epoch and then from the warm cache."""
    data = datasets.open_root(root)
    sizes = {name: dataset_size(data, name) for name in dict.fromkeys(("train", "val", "test", subset))}
    dataset = make_dataset(data, subset, batch_size, input_size, resize_to_before_crop=before_crop,
                           augmentation=True, shuffle=True, seed=seed, epochs=2)
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
    print(f"pipeline ({subset}, batch {batch_size}, input {input_size}, resize "
          f"{before_crop} + crop, flip, colour jitter): first epoch {cold:.1f} images/s "
          f"(decoding included), then {warm:.1f} images/s (cache warm)")
    print(f"wrote {out}")
