"""Tiny folder datasets (`research.data.folder`) for tests.

A good sample is a gray photo whose brightness encodes its mask (as in voc_files):
class c is painted at brightness 40 + 60 * c, so a test can check that the pixels of
image and mask stay together.
"""
import json
import os

import numpy as np
from PIL import Image


def write_json(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)


def write_split(root, name, ids):
    os.makedirs(os.path.join(root, "splits"), exist_ok=True)
    with open(os.path.join(root, "splits", name + ".txt"), "w", encoding="utf-8") as f:
        f.write("".join(f"{i}\n" for i in ids))


def sample(num_classes, seed, height=24, width=32):
    """(image uint8 [H, W, 3], mask uint8 [H, W]): left half class 0, a block of each other class."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((height, width), np.uint8)
    for cls in range(1, num_classes):
        top, left = int(rng.integers(0, height - 8)), int(rng.integers(width // 2, width - 8))
        mask[top:top + 8, left:left + 8] = cls
    image = (40 + 60 * mask.astype(np.int32)).clip(0, 255).astype(np.uint8)[:, :, None].repeat(3, axis=2)
    return image, mask


def write_sample(root, image_id, image, mask, image_format="PNG", mask_mode="L"):
    """Writes images/<id>.png|jpg and masks/<id>.png (mask_mode "L", "P" or "RGB": an RGB
    `mask` [H, W, 3] is written as it is)."""
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "masks"), exist_ok=True)
    extension = ".png" if image_format == "PNG" else ".jpg"
    Image.fromarray(image).save(os.path.join(root, "images", image_id + extension), format=image_format)
    picture = Image.fromarray(np.asarray(mask, np.uint8))
    if mask_mode == "P":
        picture = picture.convert("P")
        picture.putpalette([255 - (i % 256) for i in range(768)])  # any palette: indices count
    picture.save(os.path.join(root, "masks", image_id + ".png"), format="PNG")


def make_folder_dataset(root, names=("background", "thing", "other"), train=("a", "b", "c"),
                        val=("d", "e"), test=None, ignore_label=None, palette=None):
    """A folder dataset of `sample`s; returns {id: (image, mask)}."""
    classes = {"names": list(names)}
    if ignore_label is not None:
        classes["ignore_label"] = ignore_label
    if palette is not None:
        classes["palette"] = palette
    write_json(os.path.join(root, "classes.json"), classes)
    samples = {}
    for split, ids in (("train", train), ("val", val), ("test", test)):
        if ids is None:
            continue
        write_split(root, split, ids)
        for image_id in ids:
            samples[image_id] = sample(len(names), seed=len(samples))
            write_sample(root, image_id, *samples[image_id])
    return samples
