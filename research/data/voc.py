"""Pascal VOC 2012 segmentation: classes, palette, folder layout, split lists, checked file reads.

Layout (``voc_root`` always means the ``.../VOCdevkit/VOC2012`` folder)::

    voc_root/JPEGImages/<id>.jpg                    RGB photos
    voc_root/SegmentationClass/<id>.png             palettized masks: pixel value = class index
    voc_root/SegmentationClassAug/<id>.png          train_aug's masks (scripts/prepare_sbd.py)
    voc_root/ImageSets/Segmentation/{train,val,trainval,train_aug}.txt   one id per line

Masks store class indices 0-20 and 255 ("ignore": object outlines and unclear regions);
the palette only decides how they look. Everything here is numpy + PIL (no TensorFlow),
so the validator and scripts import it cheaply.

Every problem with a data file raises `BadFileError`, whose message starts with the
file's path and says what is wrong; its `kind` groups problems in validation reports.
"""
import hashlib
import os

import numpy as np
from PIL import Image

from research.fileio import atomic_path

CLASS_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)
NUM_CLASSES = len(CLASS_NAMES)
IGNORE_LABEL = 255
SUBSETS = ("train", "val", "test", "trainval", "train_aug")
# The subsets models train on: an id of val.txt (whose halves are "val" and "test") in
# one of them would leak evaluation images into training, so reading one refuses it.
TRAIN_SUBSETS = ("train", "train_aug")
# Where train_aug's masks are: SBD's, converted, and VOC's own for ids that have one
# (written by scripts/prepare_sbd.py; research/data/sbd.py).
AUG_MASK_FOLDER = "SegmentationClassAug"

# Refuse images with more pixels than this before decoding them (decompression bombs:
# a tiny PNG can claim 50000 x 50000 pixels). VOC photos are at most 500 x 500.
DEFAULT_MAX_PIXELS = 64_000_000


def _voc_colormap(size=256):
    """The standard VOC colormap: the bits of the index, interleaved into r, g, b.

    Bit j of the index (read three bits at a time) sets bit 7-k of r, g, b in turn,
    which is the devkit's `labelcolormap.m`.
    """
    index = np.arange(size)
    colours = np.zeros((size, 3), dtype=np.int64)
    for shift in range(8):
        for channel in range(3):
            bit = (index >> (3 * shift + channel)) & 1
            colours[:, channel] |= bit << (7 - shift)
    return colours.astype(np.uint8)


VOC_PALETTE = _voc_colormap()
VOC_PALETTE.flags.writeable = False


# In a BadFileError's problem when skip_bad was on and the bad samples left too few good
# ones: command lines then add no hint on how to leave bad samples out (research.cli).
ALREADY_SKIPPED = "bad samples already left out"


class BadFileError(ValueError):
    """A data file that cannot be used; the message is ``"<path>: <problem>"``.

    Attributes: `path` (the file), `kind` (a short tag such as "missing", "truncated",
    "mask_values", used to group problems in reports), `problem` (the sentence).
    """

    def __init__(self, path, kind, problem):
        self.path = os.fspath(path)
        self.kind = kind
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):
        return type(self), (self.path, self.kind, self.problem)


# ---------------------------------------------------------------- colours <-> indices

def index_to_rgb(mask, palette=VOC_PALETTE):
    """Colours a mask of class indices with the VOC palette (or another [256, 3] one).

    Args:
      mask: integer array [..., H, W] with values in 0..255.
      palette: uint8 [256, 3], the colour of each index (a dataset's
        `research.data.datasets` palette).
    Returns:
      uint8 array [..., H, W, 3].
    """
    mask = np.asarray(mask)
    if not np.issubdtype(mask.dtype, np.integer):
        raise TypeError(f"index_to_rgb needs an integer mask, got dtype {mask.dtype}")
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise ValueError(f"index_to_rgb: values must be in 0..255, got {mask.min()}..{mask.max()}")
    return np.asarray(palette, dtype=np.uint8)[mask]


def _pack_rgb(rgb):
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


# Packed colour -> index for the colours masks may contain (classes and the boundary
# colour). A dense table of 2^24 entries would cost 16 MB; a sorted array + searchsorted
# is exact and fast enough.
_VALID_INDICES = np.array(list(range(NUM_CLASSES)) + [IGNORE_LABEL], dtype=np.uint8)
_PACKED = _pack_rgb(VOC_PALETTE[_VALID_INDICES])
_SORT = np.argsort(_PACKED)
_PACKED_SORTED = _PACKED[_SORT]
_INDEX_SORTED = _VALID_INDICES[_SORT]


def rgb_to_index(rgb):
    """Turns a VOC-coloured mask back into class indices (the inverse of `index_to_rgb`).

    Args:
      rgb: uint8 array [..., H, W, 3] whose colours are VOC class colours (0-20) or the
        boundary colour (224, 224, 192).
    Returns:
      uint8 array [..., H, W] with values 0..20 and 255.
    Raises:
      ValueError: naming each colour that is not in the palette and its pixel count.
    """
    rgb = np.asarray(rgb)
    if rgb.shape[-1:] != (3,):
        raise ValueError(f"rgb_to_index needs [..., 3] colours, got shape {rgb.shape}")
    packed = _pack_rgb(rgb)
    position = np.searchsorted(_PACKED_SORTED, packed).clip(0, len(_PACKED_SORTED) - 1)
    known = _PACKED_SORTED[position] == packed
    if not known.all():
        colours, counts = np.unique(packed[~known], return_counts=True)
        listed = ", ".join(f"({c >> 16}, {(c >> 8) & 255}, {c & 255}) x {n}"
                           for c, n in zip(colours[:10], counts[:10]))
        more = f" and {len(colours) - 10} more" if len(colours) > 10 else ""
        raise ValueError(f"{len(colours)} colour(s) not in the VOC palette, on "
                         f"{int(counts.sum())} pixel(s): {listed}{more}")
    return _INDEX_SORTED[position]


# ---------------------------------------------------------------- layout and splits

def voc_root_in(root):
    """The ``root/VOCdevkit/VOC2012`` folder (where a dataset in VOC layout lives)."""
    return os.path.join(os.fspath(root), "VOCdevkit", "VOC2012")


def image_path(voc_root, image_id):
    """Path of the JPEG photo of `image_id`."""
    return os.path.join(os.fspath(voc_root), "JPEGImages", image_id + ".jpg")


def mask_path(voc_root, image_id, subset=None):
    """Path of the palettized PNG mask of `image_id` as `subset` reads it: train_aug's
    masks are in SegmentationClassAug/, every other subset's (and subset None's) in
    SegmentationClass/."""
    folder = AUG_MASK_FOLDER if subset == "train_aug" else "SegmentationClass"
    return os.path.join(os.fspath(voc_root), folder, image_id + ".png")


def split_file(voc_root, name):
    """Path of a split list, `name` in {"train", "val", "trainval", "train_aug"}."""
    return os.path.join(os.fspath(voc_root), "ImageSets", "Segmentation", name + ".txt")


def voc_root_below(path):
    """The VOC root just below `path`, when `path` is a folder above one, else None.

    A dataset folder given one level too high is the usual slip: the folder that holds
    VOCdevkit/ (what download_voc.py's --data-dir was given), or VOCdevkit/ itself.
    `path` counts as a VOC root, and None is returned, when it has ImageSets/Segmentation/.

    Returns:
      `path`/VOCdevkit/VOC2012 or `path`/VOC2012 (the first that has
      ImageSets/Segmentation/), or None.
    """
    path = os.fspath(path)
    if os.path.isdir(os.path.join(path, "ImageSets", "Segmentation")):
        return None
    for candidate in (voc_root_in(path), os.path.join(path, "VOC2012")):
        if os.path.isdir(os.path.join(candidate, "ImageSets", "Segmentation")):
            return candidate
    return None


def check_voc_root(voc_root):
    """Raises FileNotFoundError when `voc_root` does not exist, or is a folder above a
    VOC root (the message then says "did you mean <that root>?"). A folder that is
    neither passes: its missing split lists are named when they are read.

    We hint rather than silently use the folder below: `voc_root` is written into a
    run's config.json and compared on resume, so it should be the path really read.
    """
    voc_root = os.fspath(voc_root)
    if not os.path.isdir(voc_root):
        raise FileNotFoundError(f"VOC root {voc_root} does not exist (expected the "
                                f".../VOCdevkit/VOC2012 folder)")
    below = voc_root_below(voc_root)
    if below is not None:
        raise FileNotFoundError(f"{voc_root} is not a VOC root (it has no ImageSets/Segmentation/ "
                                f"folder); did you mean {below}?")


def id_problem(image_id):
    """Why `image_id` (str) cannot name an image's and a mask's files (a slash, a
    backslash, a NUL, "." or ".."), or None when it can."""
    if any(c in image_id for c in "/\\\0") or image_id in (".", ".."):
        return "is not a file name (ids name the image and mask files)"
    return None


def read_id_list(path):
    """Reads one split list: ids in file order, blank lines and outer spaces dropped.

    Ids may contain inner spaces or any Unicode (they are file names). Raises
    FileNotFoundError naming a missing file and ValueError naming the file for
    duplicated ids or text that is not UTF-8.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"split list {path} does not exist")
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    ids, first_line = [], {}
    duplicates = []
    for line_number, line in enumerate(lines, start=1):
        image_id = line.strip()
        if not image_id:
            continue
        problem = id_problem(image_id)
        if problem:
            raise ValueError(f"{path}: line {line_number}: {image_id!r} {problem}")
        if image_id in first_line:
            duplicates.append(f"{image_id!r} (lines {first_line[image_id]} and {line_number})")
            continue
        first_line[image_id] = line_number
        ids.append(image_id)
    if duplicates:
        raise ValueError(f"{path}: duplicate ids: {', '.join(duplicates[:10])}"
                         + (f" and {len(duplicates) - 10} more" if len(duplicates) > 10 else ""))
    return ids


def hash_order(ids, split_seed):
    """`ids` in an order fixed by `split_seed` (the shuffle behind the val/test halves)."""
    # sha256 of (seed, id) is the same on every platform and numpy/Python version,
    # unlike random.shuffle or a numpy Generator (whose streams may change).
    def key(image_id):
        return hashlib.sha256(f"{split_seed}\x00{image_id}".encode("utf-8")).hexdigest()
    return sorted(ids, key=lambda image_id: (key(image_id), image_id))


def read_split(voc_root, subset, split_seed=0):
    """The ids of a subset, as a list of str.

    Subsets: "train" (train.txt); "val" and "test", the two halves of val.txt after a
    shuffle fixed by `split_seed` (val gets the first len // 2; they are disjoint and
    together are val.txt); "trainval" (trainval.txt, or train + val when it is absent);
    "train_aug" (train_aug.txt: VOC train + SBD minus VOC val, made by
    scripts/prepare_sbd.py; its masks are in SegmentationClassAug/, see `mask_path`).

    Raises:
      ValueError: unknown subset; duplicate ids within a list or between train and val;
        an id of val.txt in a train subset (`TRAIN_SUBSETS`).
      FileNotFoundError: missing `voc_root` or split list, naming the path; a
        `voc_root` given one level too high (`check_voc_root`).
    """
    if subset not in SUBSETS:
        raise ValueError(f"unknown subset {subset!r}; valid subsets: {', '.join(SUBSETS)}")
    voc_root = os.fspath(voc_root)
    check_voc_root(voc_root)
    if subset in TRAIN_SUBSETS:
        path = split_file(voc_root, subset)
        if subset == "train_aug" and not os.path.isfile(path):
            raise FileNotFoundError(f"split list {path} does not exist; scripts/prepare_sbd.py "
                                    f"makes it (and SegmentationClassAug/) from SBD")
        ids = read_id_list(path)
        check_no_val_ids(voc_root, path, ids)
        return ids
    if subset in ("val", "test"):
        shuffled = hash_order(read_id_list(split_file(voc_root, "val")), split_seed)
        half = len(shuffled) // 2
        return shuffled[:half] if subset == "val" else shuffled[half:]
    if os.path.isfile(split_file(voc_root, "trainval")):
        return read_id_list(split_file(voc_root, "trainval"))
    train = read_id_list(split_file(voc_root, "train"))
    val = read_id_list(split_file(voc_root, "val"))
    both = set(train) & set(val)
    if both:
        raise ValueError(f"{split_file(voc_root, 'train')} and {split_file(voc_root, 'val')} "
                         f"share {len(both)} id(s), e.g. {sorted(both)[:5]}")
    return train + val


def check_no_val_ids(voc_root, path, ids):
    """Raises ValueError when a train list (`path`, its `ids`) holds ids of val.txt.

    Every id of val.txt is evaluated on (val and test are its halves), so one in a train
    list is a leak, never allowed. Nothing to check when val.txt does not exist.
    """
    val_file = split_file(voc_root, "val")
    if not os.path.isfile(val_file):
        return
    leaked = sorted(set(ids) & set(read_id_list(val_file)))
    if leaked:
        raise ValueError(f"{path}: {len(leaked)} id(s) of {val_file} are in this train list, "
                         f"e.g. {leaked[:5]}; training on them would leak evaluation images "
                         f"into training (remove them from the list)")


# ---------------------------------------------------------------- checked file reads

def open_checked(path, max_pixels, allowed_formats):
    """Opens an image lazily (header only) after checking it exists, is not empty,
    is an image of an allowed format (PIL format names) and is not too large.

    Returns the open PIL image (use it in a `with`); raises `BadFileError`."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        raise BadFileError(path, "missing", "file does not exist") from None
    if size == 0:
        raise BadFileError(path, "empty", "file is empty (0 bytes)")
    try:
        image = Image.open(path)
    except Image.DecompressionBombError as e:
        raise BadFileError(path, "too_large", f"refused, too many pixels ({e})") from None
    except Exception as e:  # PIL raises UnidentifiedImageError, SyntaxError, OSError...
        try:
            with open(path, "rb") as f:
                head = f.read(8)
        except OSError:     # unreadable (permissions): the message below says why
            head = b""
        if "runcated" in str(e):
            raise BadFileError(path, "truncated", f"file is truncated (its header is cut "
                                                  f"short after {size} bytes): {e}") from None
        raise BadFileError(path, "not_an_image",
                           f"not a readable image (starts with {head!r}): {e}") from None
    if image.format not in allowed_formats:
        image.close()
        raise BadFileError(path, "wrong_format",
                           f"is a {image.format} file; expected {' or '.join(allowed_formats)}")
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise BadFileError(path, "too_large",
                           f"refused: {width}x{height} = {width * height} pixels is more than "
                           f"the limit of {max_pixels} (decompression-bomb guard)")
    return image


def load_checked(image, path):
    """Decodes the pixel data, turning PIL's errors into `BadFileError`."""
    try:
        image.load()
    except OSError as e:
        kind = "truncated" if "truncated" in str(e) else "corrupt"
        raise BadFileError(path, kind, f"cannot decode the pixel data ({kind}): {e}") from None
    except Exception as e:  # zlib errors, SyntaxError("broken PNG file") ...
        raise BadFileError(path, "corrupt", f"cannot decode the pixel data (corrupt): {e}") from None


def image_size(path, max_pixels=DEFAULT_MAX_PIXELS):
    """(width, height) of an image from its header, with the checks of `read_image`'s open."""
    with open_checked(path, max_pixels, ("JPEG", "MPO", "PNG")) as image:
        return image.size


def read_image(path, max_pixels=DEFAULT_MAX_PIXELS):
    """Reads a JPEG or PNG photo as RGB.

    Grayscale, palette, CMYK and 16-bit images are converted to RGB; an alpha channel
    is dropped (as `tf.io.decode_png(channels=3)` does). EXIF orientation is NOT
    applied: masks are aligned with the stored pixels.

    Args:
      path: file path (str or os.PathLike).
      max_pixels: refuse images with more pixels (read from the header, before decoding).
    Returns:
      uint8 array [H, W, 3].
    Raises:
      BadFileError: missing, empty, not an image, truncated/corrupt, too large.
    """
    path = os.fspath(path)
    with open_checked(path, max_pixels, ("JPEG", "MPO", "PNG")) as image:
        load_checked(image, path)
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            # PIL's convert("RGB") clips 16-bit values at 255 instead of scaling them.
            gray = np.asarray(image, dtype=np.float64) / 257.0
            gray = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
            return np.repeat(gray[:, :, None], 3, axis=2)
        if image.mode == "RGB":
            return np.asarray(image, dtype=np.uint8)
        try:
            rgb = image.convert("RGB")
        except Exception as e:
            raise BadFileError(path, "unsupported_mode",
                               f"cannot convert colour mode {image.mode} to RGB: {e}") from None
        return np.asarray(rgb, dtype=np.uint8)


def read_mask(path, expected_size=None, max_pixels=DEFAULT_MAX_PIXELS):
    """Reads a VOC mask (palettized PNG) as class indices, checking it thoroughly.

    Args:
      path: the PNG.
      expected_size: (width, height) of its photo, or None to skip the size check.
      max_pixels: refuse larger masks before decoding.
    Returns:
      uint8 array [H, W] with values 0..20 and 255.
    Raises:
      BadFileError: missing/empty/not a PNG/truncated; not palettized (RGB masks are
        named as such); 16-bit or other modes; a palette that differs from the VOC
        palette on the indices used; values that are neither a class nor 255; a size
        that differs from `expected_size`.
    """
    path = os.fspath(path)
    with open_checked(path, max_pixels, ("PNG",)) as image:
        check_mask_size(path, image.size, expected_size)
        if image.mode != "P":
            raise BadFileError(path, "mask_mode", _mode_problem(image.mode))
        load_checked(image, path)
        mask = np.asarray(image, dtype=np.uint8)
        palette = np.asarray(image.getpalette("RGB") or [], dtype=np.uint8).reshape(-1, 3)
    counts = np.bincount(mask.ravel(), minlength=256)   # one pass; no sort (np.unique)
    check_mask_values(path, counts)
    _check_palette(path, np.flatnonzero(counts), palette)
    return mask


def _mode_problem(mode):
    if mode in ("RGB", "RGBA"):
        return (f"mask is an {mode} image, not a palettized (mode P) PNG; convert its colours "
                f"with research.data.voc.rgb_to_index and save the indices with VOC_PALETTE")
    if mode.startswith("I"):
        return f"mask is a 16/32-bit image (mode {mode}); VOC masks are 8-bit palettized PNGs"
    return f"mask has colour mode {mode}; VOC masks are 8-bit palettized PNGs (mode P)"


def check_mask_size(path, size, expected_size):
    """Raises BadFileError (kind "size_mismatch") when a mask's (width, height) `size`
    differs from its photo's `expected_size` (None: nothing to compare)."""
    if expected_size is not None and tuple(size) != tuple(expected_size):
        raise BadFileError(path, "size_mismatch",
                           f"mask is {size[0]}x{size[1]} (WxH) but its image "
                           f"is {expected_size[0]}x{expected_size[1]}; hint: was one of them "
                           f"resized, cropped or rotated without the other?")


def check_mask_values(path, counts, num_classes=NUM_CLASSES, ignore_label=IGNORE_LABEL):
    """Raises BadFileError (kind "mask_values") naming the values of a mask that are
    neither a class index nor the ignore label, with the likely cause as a hint
    (`research.data.labels.value_hint`).

    Args:
      path: the mask file (named in the message).
      counts: int [256], the pixel count of each value.
      num_classes, ignore_label: what the values may be (VOC's by default).
    """
    from research.data import labels    # labels imports this module

    problem = labels.values_problem(counts, num_classes, ignore_label)
    if problem:
        raise BadFileError(path, "mask_values", problem)


def _check_palette(path, used, palette):
    if used.size and used.max() >= len(palette):
        raise BadFileError(path, "mask_palette",
                           f"palette has {len(palette)} colours but index {used.max()} is used")
    wrong = [int(i) for i in used if not np.array_equal(palette[i], VOC_PALETTE[i])]
    if wrong:
        i = wrong[0]
        raise BadFileError(path, "mask_palette",
                           f"palette is not the VOC palette: index {i} is "
                           f"{tuple(int(v) for v in palette[i])}, VOC has "
                           f"{tuple(int(v) for v in VOC_PALETTE[i])} ({len(wrong)} used "
                           f"index(es) differ)")


def read_sample(image_file, mask_file, max_pixels=DEFAULT_MAX_PIXELS):
    """Reads and checks one (photo, mask) pair.

    The sizes are compared from the headers before either file is decoded.
    Returns (image uint8 [H, W, 3], mask uint8 [H, W]); raises `BadFileError`.
    """
    size = image_size(image_file, max_pixels)
    mask = read_mask(mask_file, expected_size=size, max_pixels=max_pixels)
    image = read_image(image_file, max_pixels)
    return image, mask


def mask_to_png(mask, palette=VOC_PALETTE):
    """A palettized PIL image (mode "P") of class indices uint8 [H, W]; `palette`
    uint8 [256, 3] (VOC's by default) only decides how it looks."""
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    image = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.tobytes())
    image.putpalette(np.ascontiguousarray(palette, dtype=np.uint8).tobytes())
    return image


def write_mask(path, mask, palette=VOC_PALETTE):
    """Writes class indices (uint8 [H, W]) atomically as a palettized PNG (VOC palette
    unless `palette`, uint8 [256, 3], is given)."""
    with atomic_path(path) as tmp:
        mask_to_png(mask, palette).save(tmp, format="PNG")
