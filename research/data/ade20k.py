"""ADE20K (the SceneParsing benchmark, ADEChallengeData2016) as a folder dataset.

The release (ADEChallengeData2016.zip, extracted; the `ade_root`)::

    images/{training,validation}/ADE_<split>_<n>.jpg
    annotations/{training,validation}/ADE_<split>_<n>.png    8-bit: 0 = "other objects"
                                                             (not scored), 1..150 the classes

`prepare_ade20k` writes OUT/images/<stem>.jpg, OUT/masks/<stem>.png with 0 -> 255 (the
ignore label) and 1..150 -> 0..149 (what other trainers call `reduce_labels` /
`reduce_zero_label`), OUT/splits/train.txt (training, 20,210 ids on the real data) and
OUT/splits/val.txt (validation, 2,000; no test.txt, so this project's val and test
subsets are its two halves: evaluate both), and OUT/classes.json with the 150 class
names of objectInfo150 (first name of each; no palette: indices take the VOC colours).
Counting ADE20K's 0 as a class is the classic mistake this conversion avoids.
"""
import os

import numpy as np

from research.data import folder, folder_writer, voc

CLASS_NAMES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing",
    "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
    "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case",
    "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister",
    "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
)
NUM_CLASSES = len(CLASS_NAMES)      # 150
# ADEChallengeData2016's split folders -> this project's split names.
SPLITS = {"training": "train", "validation": "val"}


def shift_labels(annotation):
    """uint8 [H, W] classes of an ADE20K annotation [H, W]: 0 -> 255, v -> v - 1."""
    annotation = np.asarray(annotation, dtype=np.uint8)
    return np.where(annotation == 0, np.uint8(voc.IGNORE_LABEL), annotation - np.uint8(1))


def read_annotation(path):
    """An annotation PNG as uint8 [H, W] classes 0..149 and 255 (`shift_labels`).

    Raises `voc.BadFileError`: missing, not a PNG, not 8-bit single-channel, or values
    above 150 ("mask_values": not ADE20K SceneParsing labels).
    """
    annotation = folder_writer.read_8bit_mask(path, "ADE20K annotations")
    above = np.unique(annotation[annotation > NUM_CLASSES])
    if above.size:
        raise voc.BadFileError(path, "mask_values",
                               f"values {', '.join(map(str, above[:10]))} are not ADE20K SceneParsing "
                               f"labels (0 = other, 1-{NUM_CLASSES} the classes)")
    return shift_labels(annotation)


def check_root(ade_root):
    """Raises FileNotFoundError naming what is missing, with "did you mean
    ROOT/ADEChallengeData2016?" for the folder the zip was extracted into."""
    root = os.fspath(ade_root)
    if all(os.path.isdir(os.path.join(root, name)) for name in ("images", "annotations")):
        return
    below = os.path.join(root, "ADEChallengeData2016")
    hint = f"; did you mean {below}?" if os.path.isdir(below) else ""
    raise FileNotFoundError(f"{root}: no images/ and annotations/ folders (expected the extracted "
                            f"ADEChallengeData2016 folder){hint}")


def find_samples(ade_root):
    """`folder_writer.Sample`s of every .jpg of images/{training,validation}, sorted; the
    annotation is annotations/<split>/<stem>.png."""
    root = os.fspath(ade_root)
    check_root(root)
    samples = []
    for source_split, split in SPLITS.items():
        images = os.path.join(root, "images", source_split)
        if not os.path.isdir(images):
            raise FileNotFoundError(f"{images} does not exist")
        for name in sorted(os.listdir(images)):
            stem, extension = os.path.splitext(name)
            if extension.lower() == ".jpg":
                samples.append(folder_writer.Sample(
                    split, stem, os.path.join(images, name),
                    os.path.join(root, "annotations", source_split, stem + ".png")))
    if not samples:
        raise FileNotFoundError(f"{root}: no .jpg images in images/training or images/validation")
    return samples


def prepare_ade20k(ade_root, out, skip_bad=False, progress=True):
    """Converts ADEChallengeData2016 into a folder dataset at `out` (module doc).

    Returns `folder_writer.ConversionResult`; raises FileNotFoundError for a wrong root
    and `folder_writer.ConversionError` for bad files (without skip_bad).
    """
    classes = folder.Classes(CLASS_NAMES, voc.IGNORE_LABEL)
    return folder_writer.write_folder_dataset(out, find_samples(ade_root), classes,
                                              read_annotation, skip_bad, progress)
