"""Cityscapes (fine annotations) as a folder dataset of the 19 official training classes.

The release (leftImg8bit_trainvaltest.zip + gtFine_trainvaltest.zip, extracted into one
folder, the `cityscapes_root`)::

    leftImg8bit/{train,val}/<city>/<x>_leftImg8bit.png      2048 x 1024 RGB photos
    gtFine/{train,val}/<city>/<x>_gtFine_labelIds.png       8-bit label ids 0-33

`prepare_cityscapes` writes OUT/images/<x>.png, OUT/masks/<x>.png holding `trainId`s
(the official table below: 19 classes, every other label id -> 255, the ignore label),
OUT/splits/{train,val}.txt (2,975 and 500 ids on the real data; no test.txt, so this
project's val and test subsets are the two halves of Cityscapes val, as for VOC:
evaluate both) and OUT/classes.json with the official names and colours. The test
split's labels are not public, so it is not converted.

The label table is that of the official cityscapesScripts (`labels.py`): (name, labelId,
trainId, colour). Using labelIds as trainIds is the classic mistake this conversion
avoids (a 19-class mask holding values up to 33).
"""
import os

import numpy as np

from research.data import folder, folder_writer, voc

# (name, labelId, trainId, colour); trainId 255 = not one of the 19 training classes.
LABELS = (
    ("unlabeled", 0, 255, (0, 0, 0)), ("ego vehicle", 1, 255, (0, 0, 0)),
    ("rectification border", 2, 255, (0, 0, 0)), ("out of roi", 3, 255, (0, 0, 0)),
    ("static", 4, 255, (0, 0, 0)), ("dynamic", 5, 255, (111, 74, 0)),
    ("ground", 6, 255, (81, 0, 81)), ("road", 7, 0, (128, 64, 128)),
    ("sidewalk", 8, 1, (244, 35, 232)), ("parking", 9, 255, (250, 170, 160)),
    ("rail track", 10, 255, (230, 150, 140)), ("building", 11, 2, (70, 70, 70)),
    ("wall", 12, 3, (102, 102, 156)), ("fence", 13, 4, (190, 153, 153)),
    ("guard rail", 14, 255, (180, 165, 180)), ("bridge", 15, 255, (150, 100, 100)),
    ("tunnel", 16, 255, (150, 120, 90)), ("pole", 17, 5, (153, 153, 153)),
    ("polegroup", 18, 255, (153, 153, 153)), ("traffic light", 19, 6, (250, 170, 30)),
    ("traffic sign", 20, 7, (220, 220, 0)), ("vegetation", 21, 8, (107, 142, 35)),
    ("terrain", 22, 9, (152, 251, 152)), ("sky", 23, 10, (70, 130, 180)),
    ("person", 24, 11, (220, 20, 60)), ("rider", 25, 12, (255, 0, 0)),
    ("car", 26, 13, (0, 0, 142)), ("truck", 27, 14, (0, 0, 70)),
    ("bus", 28, 15, (0, 60, 100)), ("caravan", 29, 255, (0, 0, 90)),
    ("trailer", 30, 255, (0, 0, 110)), ("train", 31, 16, (0, 80, 100)),
    ("motorcycle", 32, 17, (0, 0, 230)), ("bicycle", 33, 18, (119, 11, 32)),
)
_TRAIN = sorted((train_id, name, colour) for name, _, train_id, colour in LABELS if train_id != 255)
CLASS_NAMES = tuple(name for _, name, _ in _TRAIN)                      # 19, by trainId
COLOURS = np.array([colour for _, _, colour in _TRAIN], dtype=np.uint8)  # [19, 3]

# labelId -> trainId for every 8-bit value (anything not in the table -> 255).
LABEL_TO_TRAIN = np.full(256, voc.IGNORE_LABEL, dtype=np.uint8)
for _, _label_id, _train_id, _ in LABELS:
    LABEL_TO_TRAIN[_label_id] = _train_id

SPLITS = ("train", "val")
IMAGE_SUFFIX = "_leftImg8bit.png"
MASK_SUFFIX = "_gtFine_labelIds.png"


def to_train_ids(label_ids):
    """uint8 trainIds [H, W] of a labelIds array [H, W] (`LABEL_TO_TRAIN`)."""
    return LABEL_TO_TRAIN[np.asarray(label_ids, dtype=np.uint8)]


def read_label_ids(path):
    """A gtFine `*_labelIds.png` as uint8 [H, W] trainIds; raises `voc.BadFileError`
    (missing, not a PNG, not single-channel 8-bit: e.g. a `*_color.png` given instead)."""
    return to_train_ids(folder_writer.read_8bit_mask(path, "gtFine labelIds masks"))


def check_root(cityscapes_root):
    """Raises FileNotFoundError naming what is missing (leftImg8bit/ or gtFine/)."""
    root = os.fspath(cityscapes_root)
    for name in ("leftImg8bit", "gtFine"):
        if not os.path.isdir(os.path.join(root, name)):
            raise FileNotFoundError(f"{root}: no {name}/ folder (expected leftImg8bit/ and gtFine/ "
                                    f"from leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip "
                                    f"extracted into one folder)")


def find_samples(cityscapes_root, splits=SPLITS):
    """`folder_writer.Sample`s of every photo of `splits`, sorted; id = the file stem
    without "_leftImg8bit" (e.g. "aachen_000000_000019"), mask from gtFine/."""
    root = os.fspath(cityscapes_root)
    check_root(root)
    samples = []
    for split in splits:
        images = os.path.join(root, "leftImg8bit", split)
        if not os.path.isdir(images):
            raise FileNotFoundError(f"{images} does not exist")
        for city in sorted(os.listdir(images)):
            if not os.path.isdir(os.path.join(images, city)):   # .DS_Store and the like
                continue
            for name in sorted(os.listdir(os.path.join(images, city))):
                if name.endswith(IMAGE_SUFFIX):
                    stem = name[:-len(IMAGE_SUFFIX)]
                    samples.append(folder_writer.Sample(
                        split, stem, os.path.join(images, city, name),
                        os.path.join(root, "gtFine", split, city, stem + MASK_SUFFIX)))
    if not samples:
        raise FileNotFoundError(f"{root}: no *{IMAGE_SUFFIX} photos in leftImg8bit/{{{','.join(splits)}}}/")
    return samples


def prepare_cityscapes(cityscapes_root, out, skip_bad=False, progress=True):
    """Converts Cityscapes (train and val, fine annotations) into a folder dataset at `out`.

    Returns `folder_writer.ConversionResult`; raises FileNotFoundError for a wrong root
    and `folder_writer.ConversionError` for bad files (without skip_bad).
    """
    classes = folder.Classes(CLASS_NAMES, voc.IGNORE_LABEL, COLOURS)
    return folder_writer.write_folder_dataset(out, find_samples(cityscapes_root), classes,
                                              read_label_ids, skip_bad, progress)
