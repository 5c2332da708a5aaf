"""Your own data: a dataset in a plain folder (the "folder" layout).

    ROOT/classes.json   {"names": [...], "ignore_label": 255, "palette": [[r, g, b], ...]}
    ROOT/images/<id>.jpg | <id>.jpeg | <id>.png      the photos
    ROOT/masks/<id>.png                              pixel value = class index
    ROOT/splits/train.txt, val.txt [, test.txt]      one id per line

classes.json: `names` (one per class, in index order; C = len(names)); `ignore_label`
(optional, default 255): the mask value that is never trained on or scored, at least C
and at most 255; `palette` (optional): one [r, g, b] per class, used for pictures and
for reading colour masks; without it indices take the VOC colours.

Masks: 8-bit single-channel ("L"), 1-bit or palettized ("P") PNGs whose pixel value is
the class index (a palettized mask's own colours do not matter), or RGB colour masks
when classes.json has a palette (each colour is read as its class; every colour must be
one of the palette's). Values that are neither a class nor the ignore label are refused
with a hint at the likely cause (`research.data.labels`). The reader hands masks on with
the ignore label as 255, the value the pipeline, losses and metrics skip.

Subsets: "train" (train.txt; refused when it holds an id of val.txt or test.txt),
"val" and "test" (val.txt and test.txt; without test.txt, the two halves of val.txt,
as for VOC: `research.data.voc.read_split`), "trainval" (train + val).

numpy + PIL only (no TensorFlow).
"""
import json
import os

import numpy as np

from research.data import labels, voc

CLASSES_FILE = "classes.json"
IMAGE_FOLDER, MASK_FOLDER, SPLIT_FOLDER = "images", "masks", "splits"
# Image file extensions, in the order an id's file is looked for.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")
SUBSETS = ("train", "val", "test", "trainval")
_CLASSES_KEYS = ("names", "ignore_label", "palette")


# ---------------------------------------------------------------- classes.json

class Classes:
    """What classes.json says: `names` (tuple of C str), `ignore_label` (int, C..255),
    `colours` (uint8 [C, 3] or None when it gives no palette)."""

    def __init__(self, names, ignore_label=voc.IGNORE_LABEL, colours=None):
        self.names = tuple(names)
        self.ignore_label = int(ignore_label)
        self.colours = None if colours is None else np.asarray(colours, dtype=np.uint8).reshape(-1, 3)

    def palette(self):
        """uint8 [256, 3]: the class colours first, VOC's colours for the other indices
        (so 255, the ignore label as the pipeline sees it, keeps VOC's outline colour)."""
        palette = voc.VOC_PALETTE.copy()
        if self.colours is not None:
            palette[:len(self.colours)] = self.colours
        return palette

    def to_json(self):
        """classes.json's content: names, ignore label and palette (when given)."""
        data = {"names": list(self.names), "ignore_label": self.ignore_label}
        if self.colours is not None:
            data["palette"] = self.colours.tolist()
        return data


def classes_file(root):
    """Path of ROOT/classes.json."""
    return os.path.join(os.fspath(root), CLASSES_FILE)


def _no_classes_file(root):
    return (f"{classes_file(root)} does not exist: a folder dataset needs classes.json "
            f"({{\"names\": [...], \"ignore_label\": 255}}) beside images/, masks/ and splits/")


def _checked_names(path, names):
    if not isinstance(names, list) or not names:
        raise ValueError(f"{path}: \"names\" must be a non-empty list of class names")
    if not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError(f"{path}: every class name must be a non-empty string; got {names[:10]!r}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{path}: class names must be distinct; repeated: {repeated[:10]}")
    if len(names) > 255:
        raise ValueError(f"{path}: {len(names)} classes; 8-bit masks hold at most 255 classes "
                         f"and the ignore label")
    return names


def _checked_ignore(path, value, num_classes):
    if isinstance(value, bool) or not isinstance(value, int) or not num_classes <= value <= 255:
        raise ValueError(f"{path}: \"ignore_label\" must be an integer from {num_classes} (the "
                         f"number of classes: 0-{num_classes - 1} are class indices) to 255; "
                         f"got {value!r}")
    return value


def _checked_palette(path, palette, num_classes):
    if palette is None:
        return None
    valid = (isinstance(palette, list) and all(
        isinstance(c, list) and len(c) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in c)
        for c in palette))
    if not valid or len(palette) != num_classes:
        raise ValueError(f"{path}: \"palette\" must be a list of {num_classes} [r, g, b] colours "
                         f"(integers 0-255), one per class")
    if len({tuple(c) for c in palette}) != len(palette):
        raise ValueError(f"{path}: palette colours must be distinct (a colour mask's colour names "
                         f"its class)")
    return palette


def read_classes(root):
    """Reads and checks ROOT/classes.json.

    Returns:
      `Classes`.
    Raises:
      FileNotFoundError: no classes.json (the message says what a folder dataset holds).
      ValueError: naming the file: not JSON, unknown keys, bad names, ignore label or palette.
    """
    path = classes_file(root)
    try:
        with open(path, encoding="utf-8-sig") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(_no_classes_file(root)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must hold a JSON object with \"names\"")
    unknown = sorted(set(data) - set(_CLASSES_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(_CLASSES_KEYS)}")
    return checked_classes(path, data.get("names"), data.get("ignore_label", voc.IGNORE_LABEL),
                           data.get("palette"))


def checked_classes(path, names, ignore_label=voc.IGNORE_LABEL, palette=None):
    """`Classes` from classes.json's values, checked; errors name `path` (the file they
    come from or go to).

    Args:
      names: list of C distinct non-empty str, C <= 255.
      ignore_label: int from C to 255.
      palette: None or a list of C distinct [r, g, b] (ints 0-255).
    Raises:
      ValueError: a value that breaks those rules, naming `path`.
    """
    names = _checked_names(path, names)
    ignore = _checked_ignore(path, ignore_label, len(names))
    colours = _checked_palette(path, palette, len(names))
    return Classes(names, ignore, colours)


# ---------------------------------------------------------------- masks

def colours_to_indices(path, rgb, colours):
    """Class indices uint8 [H, W] of a colour mask uint8 [H, W, 3], by `colours` uint8 [C, 3].

    Raises BadFileError (kind "mask_colours") naming the colours that are no class's.
    """
    packed = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    keys = (colours[:, 0].astype(np.int32) << 16) | (colours[:, 1].astype(np.int32) << 8) | colours[:, 2]
    order = np.argsort(keys)
    position = np.searchsorted(keys[order], packed).clip(0, len(keys) - 1)
    known = keys[order][position] == packed
    if not known.all():
        unknown, counts = np.unique(packed[~known], return_counts=True)
        listed = ", ".join(f"({c >> 16}, {(c >> 8) & 255}, {c & 255})" for c in unknown[:5])
        raise voc.BadFileError(path, "mask_colours",
                               f"colours {listed}{' ...' if len(unknown) > 5 else ''} on "
                               f"{int(counts.sum())} pixel(s) are not in the palette of classes.json; "
                               f"hint: was the mask resized with smoothing? A colour mask holds one "
                               f"colour per class and nothing else: mark pixels to ignore in an index "
                               f"mask (8-bit PNG, pixel = class, the ignore label for void) instead")
    return order[position].astype(np.uint8)


def _mode_problem(mode):
    if mode.startswith("I"):
        return (f"mask is a 16/32-bit image (mode {mode}); masks are 8-bit PNGs whose pixel value "
                f"is the class index")
    return (f"mask has colour mode {mode}; masks are 8-bit single-channel or palettized PNGs whose "
            f"pixel value is the class index")


def _missing_mask(path):
    """Raises BadFileError for a missing masks/<id>.png, naming a file of the same id with
    another extension (a JPEG mask, or an id listed with its extension) when there is one."""
    folder, name = os.path.split(path)
    stem = os.path.splitext(name)[0]
    others = sorted(n for n in (os.listdir(folder) if os.path.isdir(folder) else ())
                    if os.path.splitext(n)[0] in (stem, os.path.splitext(stem)[0]) and n != name)
    hint = (f"; hint: found {', '.join(others[:3])}: masks must be PNG files named <id>.png "
            f"(lossless: a JPEG's compression changes class indices), and split lists hold ids "
            f"without extensions" if others else "")
    raise voc.BadFileError(path, "missing", f"file does not exist{hint}")


def read_mask(path, expected_size, classes, max_pixels=voc.DEFAULT_MAX_PIXELS):
    """Reads a folder dataset's mask as class indices, with the ignore label as 255.

    Args:
      path: the PNG.
      expected_size: (width, height) of its image, or None.
      classes: the dataset's `Classes`.
      max_pixels: refuse larger masks before decoding.
    Returns:
      uint8 [H, W]: values 0..C-1 and 255 (the dataset's ignore label, whatever it is).
    Raises:
      BadFileError: missing/empty/not a PNG/truncated; a size other than `expected_size`;
        a colour mask without a palette in classes.json ("mask_mode", with the hint) or
        with colours outside it ("mask_colours"); 16-bit or other modes; values that
        are neither a class nor the ignore label ("mask_values", with the likely cause).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        _missing_mask(path)
    with voc.open_checked(path, max_pixels, ("PNG",)) as image:
        voc.check_mask_size(path, image.size, expected_size)
        if image.mode in ("RGB", "RGBA") and classes.colours is None:
            raise voc.BadFileError(path, "mask_mode", f"mask is an {image.mode} colour image; "
                                                      f"hint: {labels.COLOUR_MASK_HINT}")
        if image.mode not in ("RGB", "RGBA", "L", "P", "1"):
            raise voc.BadFileError(path, "mask_mode", _mode_problem(image.mode))
        voc.load_checked(image, path)
        if image.mode in ("RGB", "RGBA"):
            mask = colours_to_indices(path, np.asarray(image.convert("RGB")), classes.colours)
        else:
            mask = np.asarray(image).astype(np.uint8)    # mode "1" gives booleans: 0/1
    voc.check_mask_values(path, np.bincount(mask.ravel(), minlength=256), len(classes.names),
                          classes.ignore_label)
    if classes.ignore_label != voc.IGNORE_LABEL:
        mask = np.where(mask == classes.ignore_label, np.uint8(voc.IGNORE_LABEL), mask)
    return mask


# ---------------------------------------------------------------- the dataset

def check_folder_root(root):
    """Raises FileNotFoundError when `root` is not a folder dataset's root: missing, or
    without classes.json (saying when it is a VOC root, or holds a folder dataset below)."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"data root {root} does not exist (expected the folder holding "
                                f"classes.json, images/, masks/ and splits/)")
    if os.path.isfile(classes_file(root)):
        return
    if os.path.isdir(os.path.join(root, "ImageSets", "Segmentation")) or voc.voc_root_below(root):
        raise FileNotFoundError(f"{root} is a Pascal VOC dataset, not a folder dataset (no "
                                f"classes.json); read it with dataset \"voc\" and voc_root")
    below = [entry.path for entry in os.scandir(root)
             if entry.is_dir() and os.path.isfile(classes_file(entry.path))]
    hint = f"; did you mean {below[0]}?" if len(below) == 1 else ""
    raise FileNotFoundError(_no_classes_file(root) + hint)


class FolderDataset:
    """A dataset in the folder layout (module doc), as `research.data.datasets` reads it.

    Attributes: `kind` "folder", `root`, `classes` (`Classes`), `class_names`,
    `num_classes`, `ignore_label` (as stored in the masks), `palette` uint8 [256, 3],
    `subsets`.
    """
    kind = "folder"
    subsets = SUBSETS

    def __init__(self, root):
        self.root = os.fspath(root)
        check_folder_root(self.root)
        self.classes = read_classes(self.root)
        self.class_names = self.classes.names
        self.num_classes = len(self.class_names)
        self.ignore_label = self.classes.ignore_label
        self.palette = self.classes.palette()
        self._images = None

    def __repr__(self):
        return f"FolderDataset({self.root!r})"

    def split_file(self, name):
        """Path of splits/<name>.txt."""
        return os.path.join(self.root, SPLIT_FOLDER, name + ".txt")

    def check_root(self):
        """Raises FileNotFoundError when the root is not a folder dataset (`check_folder_root`)."""
        check_folder_root(self.root)

    def split(self, subset, split_seed=0):
        """The ids of a subset (module doc), as a list of str.

        Raises ValueError for an unknown subset, duplicate ids, or train ids that are also
        val or test ids (naming both files); FileNotFoundError for a missing list.
        """
        if subset not in SUBSETS:
            extra = " (train_aug is VOC's, made from SBD)" if subset == "train_aug" else ""
            raise ValueError(f"unknown subset {subset!r} for a folder dataset{extra}; "
                             f"valid subsets: {', '.join(SUBSETS)}")
        has_test = os.path.isfile(self.split_file("test"))
        if subset == "train":
            ids = voc.read_id_list(self.split_file("train"))
            for other in ("val", "test") if has_test else ("val",):
                self._refuse_overlap(ids, other)
            return ids
        if subset == "trainval":
            return self.split("train") + voc.read_id_list(self.split_file("val"))
        if has_test:
            return voc.read_id_list(self.split_file(subset))
        shuffled = voc.hash_order(voc.read_id_list(self.split_file("val")), split_seed)
        half = len(shuffled) // 2
        return shuffled[:half] if subset == "val" else shuffled[half:]

    def _refuse_overlap(self, train_ids, other):
        path = self.split_file(other)
        if not os.path.isfile(path):
            return
        shared = sorted(set(train_ids) & set(voc.read_id_list(path)))
        if shared:
            raise ValueError(f"{self.split_file('train')}: {len(shared)} id(s) are also in {path}, "
                             f"e.g. {shared[:5]}; the same id in train and {other} trains on an "
                             f"evaluation image (remove it from one list)")

    def image_path(self, image_id):
        """Path of the image of `image_id`: the first of images/<id>.jpg, .jpeg, .png
        (and upper-case extensions) that exists, else images/<id>.jpg."""
        if self._images is None:
            # One listing instead of a stat per id and extension.
            folder = os.path.join(self.root, IMAGE_FOLDER)
            names = set(os.listdir(folder)) if os.path.isdir(folder) else set()
            self._images = names
        for extension in IMAGE_EXTENSIONS:
            if image_id + extension in self._images:
                return os.path.join(self.root, IMAGE_FOLDER, image_id + extension)
        return os.path.join(self.root, IMAGE_FOLDER, image_id + ".jpg")

    def mask_path(self, image_id, subset=None):
        """Path of masks/<id>.png (the same for every subset)."""
        return os.path.join(self.root, MASK_FOLDER, image_id + ".png")

    def read_sample(self, image_file, mask_file, max_pixels=voc.DEFAULT_MAX_PIXELS):
        """Reads and checks one (image, mask) pair: (uint8 [H, W, 3], uint8 [H, W]) with
        the ignore label as 255. Raises `voc.BadFileError` naming the file."""
        if not os.path.isfile(image_file):
            stem = os.path.join(self.root, IMAGE_FOLDER, os.path.splitext(os.path.basename(image_file))[0])
            raise voc.BadFileError(image_file, "missing",
                                   f"file does not exist: the id is listed in a split but has no "
                                   f"image ({stem}.jpg, .jpeg or .png)")
        size = voc.image_size(image_file, max_pixels)
        mask = read_mask(mask_file, size, self.classes, max_pixels)
        return voc.read_image(image_file, max_pixels), mask
