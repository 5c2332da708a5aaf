"""SBD (the Semantic Boundaries Dataset) and the augmented train list `train_aug`.

SBD (Hariharan et al., "Semantic contours from inverse detectors", ICCV 2011) labels
11,355 VOC 2011 photos with the 21 VOC classes. Its release (benchmark.tgz, extracted by
scripts/download_sbd.py to DATA/benchmark_RELEASE, the `sbd_root`)::

    sbd_root/dataset/cls/<id>.mat      GTcls.Segmentation: class indices 0-20, [H, W]
    sbd_root/dataset/img/<id>.jpg      the photos (also in VOC 2012's JPEGImages/)
    sbd_root/dataset/{train,val}.txt   SBD's own split: 8,498 + 2,857 ids

`prepare_train_aug` turns it into what every published VOC number trains on, inside a
VOC 2012 root (`research.data.voc`):

    voc_root/SegmentationClassAug/<id>.png    a palettized mask for every train_aug id:
        VOC's own SegmentationClass/ mask when the id has one (it has the 255 band around
        objects that VOC's evaluation ignores; SBD's masks have none), else SBD's, converted
    voc_root/ImageSets/Segmentation/train_aug.txt
        (SBD train + SBD val + VOC train) minus VOC val, sorted: 10,582 ids on the real data

Mask values: SBD's masks hold 0-20. A .mat mask may also hold 255, the ignore label, as
VOC's PNG masks do (someone's own annotation may mark unclear pixels with it); any other
value is refused. Every problem with a .mat file raises `voc.BadFileError` ("<file>:
<problem>", with a kind: missing, empty, truncated, not_a_mat, mat_format, mat_key,
mask_shape, mask_dtype, mask_values, size_mismatch), as bad PNGs do.

Resumable: each mask is written atomically, and a mask already in SegmentationClassAug/
is kept (a rerun skips it; `python -m research.data.validate` re-checks them all);
train_aug.txt is written last, so a list never names a mask that is not there yet.

`main` is the command line of scripts/prepare_sbd.py.
"""
import argparse
import concurrent.futures
import dataclasses
import os
import re
import struct

import numpy as np
import scipy.io

from research import cli
from research.data import voc
from research.fileio import atomic_write_text
from research.progress import ProgressBar

# train_aug's size on the real data (SBD release + VOC 2012 trainval).
EXPECTED_TRAIN_AUG = 10_582

# What an interrupted atomic write (research.fileio.atomic_path) leaves in
# SegmentationClassAug/: a hidden ".<id>.<random>.tmp.png".
_LEFTOVER = re.compile(r"^\..+\.tmp\.png$")


def dataset_dir(sbd_root):
    """SBD's `dataset/` folder (holding cls/, train.txt, val.txt) of an SBD root.

    `sbd_root` is the benchmark_RELEASE folder; its dataset/ folder itself is taken too.
    Raises FileNotFoundError naming what is missing, and saying "did you mean
    SBD_ROOT/benchmark_RELEASE?" for the folder download_sbd.py was given.
    """
    sbd_root = os.fspath(sbd_root)
    for candidate in (os.path.join(sbd_root, "dataset"), sbd_root):
        if os.path.isdir(os.path.join(candidate, "cls")):
            return candidate
    below = os.path.join(sbd_root, "benchmark_RELEASE")
    if os.path.isdir(os.path.join(below, "dataset", "cls")):
        raise FileNotFoundError(f"{sbd_root} is not an SBD root (no dataset/cls/ folder); "
                                f"did you mean {below}?")
    raise FileNotFoundError(f"{sbd_root} is not an SBD root: it has no dataset/cls/ folder "
                            f"(expected the benchmark_RELEASE folder that "
                            f"scripts/download_sbd.py extracts)")


def cls_path(dataset, image_id):
    """Path of the class mask .mat of `image_id` in SBD's `dataset/` folder."""
    return os.path.join(os.fspath(dataset), "cls", image_id + ".mat")


# ---------------------------------------------------------------- reading a .mat mask

def _mat_v5_truncated(path, size):
    """True when a MAT v5 file ends before its last data element does.

    After the 128-byte header come elements, each an 8-byte tag (type, byte count)
    and its data (padded to 8 bytes unless compressed); a "small" element packs type,
    count and up to 4 data bytes into the tag itself.
    """
    with open(path, "rb") as f:
        header = f.read(128)
        if len(header) < 128:
            return True
        endian = "<" if header[126:128] == b"IM" else ">"
        offset = 128
        while offset < size:
            f.seek(offset)
            tag = f.read(8)
            if len(tag) < 8:
                return True
            kind, count = struct.unpack(endian + "II", tag)
            if kind >> 16:
                offset += 8
                continue
            offset += 8 + count + (0 if kind == 15 else -count % 8)   # 15: miCOMPRESSED
        return offset > size


def _load_mat(path):
    """scipy.io.loadmat of the GTcls variable, its errors turned into BadFileError."""
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        raise voc.BadFileError(path, "missing", "file does not exist") from None
    if size == 0:
        raise voc.BadFileError(path, "empty", "file is empty (0 bytes)")
    try:
        return scipy.io.loadmat(path, variable_names=["GTcls"])
    except NotImplementedError as e:   # scipy reads v4-v7.2; v7.3 files are HDF5
        raise voc.BadFileError(path, "mat_format", f"cannot read this MAT format ({e}); save it "
                                               f"with MATLAB's -v7 option") from None
    except Exception as e:   # scipy raises ValueError, OSError, IndexError, MatReadError...
        with open(path, "rb") as f:
            head = f.read(8)
        if not head.startswith(b"MATLAB"):
            raise voc.BadFileError(path, "not_a_mat", f"not a MAT file (starts with {head!r}): {e}") from None
        if _mat_v5_truncated(path, size):
            raise voc.BadFileError(path, "truncated", f"file is truncated (its data is cut short "
                                                  f"after {size} bytes): {e}") from None
        raise voc.BadFileError(path, "corrupt", f"cannot read the MAT file (corrupt): {e}") from None


def _segmentation(path, contents):
    """GTcls.Segmentation from loadmat's dict, or BadFileError (kind mat_key)."""
    if "GTcls" not in contents:
        names = [name for name, _, _ in scipy.io.whosmat(path)]
        raise voc.BadFileError(path, "mat_key", f"has no GTcls variable (it has: "
                                            f"{', '.join(names) or 'none'})")
    gtcls = contents["GTcls"]
    fields = gtcls.dtype.names or ()
    if "Segmentation" not in fields or gtcls.size != 1:
        what = f"fields: {', '.join(fields)}" if fields else f"a {gtcls.dtype} array, not a struct"
        raise voc.BadFileError(path, "mat_key", f"GTcls has no Segmentation field ({what})")
    return np.asarray(gtcls.reshape(-1)[0]["Segmentation"])


def _labels(path, values):
    """Checked class indices uint8 [H, W] from the stored array (any numeric dtype)."""
    if values.ndim != 2 or 0 in values.shape:
        raise voc.BadFileError(path, "mask_shape", f"GTcls.Segmentation has shape {values.shape}; "
                                               f"expected a 2-D [H, W] array")
    if values.dtype == bool or not (np.issubdtype(values.dtype, np.integer)
                                    or np.issubdtype(values.dtype, np.floating)):
        raise voc.BadFileError(path, "mask_dtype", f"GTcls.Segmentation has dtype {values.dtype}; "
                                               f"expected integer class indices")
    if np.issubdtype(values.dtype, np.floating) and not (np.isfinite(values).all()
                                                        and (values == np.rint(values)).all()):
        raise voc.BadFileError(path, "mask_dtype", "GTcls.Segmentation holds values that are not "
                                               "whole numbers (class indices are integers)")
    outside = (values < 0) | (values > 255)
    if outside.any():
        found = np.unique(values[outside])
        raise voc.BadFileError(path, "mask_values",
                           f"values {', '.join(str(v) for v in found[:10])} on {int(outside.sum())} "
                           f"pixel(s) are neither a class index (0-{voc.NUM_CLASSES - 1}) nor "
                           f"{voc.IGNORE_LABEL}")
    labels = values.astype(np.uint8)
    voc.check_mask_values(path, np.bincount(labels.ravel(), minlength=256))
    return labels



def read_sbd_mask(path, expected_size=None):
    """Reads an SBD class mask (`GTcls.Segmentation` of a .mat file), checked.

    Args:
      path: the .mat file (MATLAB v5-v7.2, as the SBD release has).
      expected_size: (width, height) of its photo, or None to skip the size check.
    Returns:
      uint8 array [H, W] with values 0..20 (and 255, when the file has it).
    Raises:
      voc.BadFileError: missing, empty, not a MAT file, truncated or corrupt, a v7.3
        (HDF5) file, no GTcls.Segmentation, not a 2-D array of whole numbers, values
        other than 0-20 and 255, a size other than `expected_size`.
    """
    path = os.fspath(path)
    labels = _labels(path, _segmentation(path, _load_mat(path)))
    voc.check_mask_size(path, (labels.shape[1], labels.shape[0]), expected_size)
    return labels


# ---------------------------------------------------------------- train_aug

def train_aug_ids(sbd_train, sbd_val, voc_train, voc_val):
    """(SBD train + SBD val + VOC train) minus VOC val, sorted (lists of str ids)."""
    return sorted((set(sbd_train) | set(sbd_val) | set(voc_train)) - set(voc_val))


class PrepareError(Exception):
    """Some train_aug masks could not be made; `problems` maps each file to its message."""

    def __init__(self, problems):
        self.problems = problems
        listed = "\n  ".join(list(problems.values())[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        super().__init__(f"{len(problems)} train_aug mask(s) could not be made (train_aug.txt "
                         f"not written; rerun after fixing them, or pass skip_bad to leave "
                         f"them out):\n  {listed}{more}")


@dataclasses.dataclass
class PrepareResult:
    """What `prepare_train_aug` did.

    ids: train_aug's ids as written to train_aug.txt; from_voc / from_sbd: masks
    written this run from VOC's SegmentationClass/ / SBD's .mat files; already_done:
    masks a previous run had written; skipped: file -> message of the ids left out
    (skip_bad only).
    """
    ids: list
    from_voc: int = 0
    from_sbd: int = 0
    already_done: int = 0
    skipped: dict = dataclasses.field(default_factory=dict)


def _make_mask(voc_root, dataset, image_id, from_voc):
    """Writes SegmentationClassAug/<id>.png unless it exists; returns where it came from
    ("done", "voc" or "sbd") or the BadFileError."""
    target = voc.mask_path(voc_root, image_id, "train_aug")
    if os.path.exists(target):
        return "done"
    try:
        size = voc.image_size(voc.image_path(voc_root, image_id))
        if from_voc:
            mask = voc.read_mask(voc.mask_path(voc_root, image_id), expected_size=size)
        else:
            mask = read_sbd_mask(cls_path(dataset, image_id), expected_size=size)
    except voc.BadFileError as error:
        return error
    voc.write_mask(target, mask)
    return "voc" if from_voc else "sbd"


def _remove_leftovers(folder):
    """Removes the temporaries of mask writes a killed run left in `folder` (only this
    module writes there, one process at a time)."""
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if _LEFTOVER.match(name):
                os.remove(os.path.join(folder, name))


def _make_masks(voc_root, dataset, ids, voc_masks, progress):
    """Writes the mask of every id (`_make_mask`), several files at a time.

    Returns (PrepareResult with the ids made and the counts by source, {id: BadFileError}
    of the ids whose photo or mask is bad)."""
    result = PrepareResult(ids=[])
    bad = {}
    bar = ProgressBar(total=len(ids), desc="train_aug masks", unit="mask") if progress else None
    # PIL and zlib release the GIL while decoding and encoding: threads overlap files.
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
    try:
        outcomes = pool.map(lambda i: _make_mask(voc_root, dataset, i, i in voc_masks), ids)
        for image_id, outcome in zip(ids, outcomes):
            if isinstance(outcome, voc.BadFileError):
                bad[image_id] = outcome
            else:
                result.ids.append(image_id)
                if outcome == "done":
                    result.already_done += 1
                elif outcome == "voc":
                    result.from_voc += 1
                else:
                    result.from_sbd += 1
            if bar:
                bar.update(1)
    finally:    # on Ctrl-C, stop at once: what is written is whole (atomic), the rest waits
        pool.shutdown(wait=True, cancel_futures=True)
    if bar:
        bar.close()
    return result, bad


def prepare_train_aug(sbd_root, voc_root, skip_bad=False, progress=True, log=print):
    """Writes SegmentationClassAug/ and train_aug.txt into `voc_root` (module doc).

    Args:
      sbd_root: SBD's benchmark_RELEASE folder (or its dataset/ folder).
      voc_root: the VOC 2012 root (.../VOCdevkit/VOC2012), with train.txt and val.txt.
      skip_bad: leave ids whose photo or mask is bad out of train_aug.txt (named in the
        result and logged) instead of raising PrepareError.
      progress: show a progress bar.
      log: function(str) for the summary lines.
    Returns:
      `PrepareResult`.
    Raises:
      FileNotFoundError: a root or split list is missing (with a hint for a root given
        one level too high). PrepareError: bad files (without skip_bad).
    """
    voc_root = os.fspath(voc_root)
    voc.check_voc_root(voc_root)
    dataset = dataset_dir(sbd_root)
    voc_train = voc.read_id_list(voc.split_file(voc_root, "train"))
    voc_val = voc.read_id_list(voc.split_file(voc_root, "val"))
    ids = train_aug_ids(voc.read_id_list(os.path.join(dataset, "train.txt")),
                        voc.read_id_list(os.path.join(dataset, "val.txt")), voc_train, voc_val)
    # VOC's own mask wins (the 255 band); an id of VOC train must have one.
    voc_masks = set(voc_train) | {i for i in ids if os.path.exists(voc.mask_path(voc_root, i))}
    _remove_leftovers(os.path.join(voc_root, voc.AUG_MASK_FOLDER))
    result, bad = _make_masks(voc_root, dataset, ids, voc_masks, progress)
    problems = {error.path: str(error) for error in bad.values()}
    if problems and not skip_bad:
        raise PrepareError(problems)
    for message in problems.values():
        log(f"warning: left out of train_aug: {message}")
    result.skipped = problems
    atomic_write_text(voc.split_file(voc_root, "train_aug"), "".join(i + "\n" for i in result.ids))
    log(f"train_aug: {len(result.ids)} ids in {voc.split_file(voc_root, 'train_aug')} "
        f"(masks: {result.from_voc} from VOC, {result.from_sbd} from SBD, "
        f"{result.already_done} already there)")
    if len(result.ids) != EXPECTED_TRAIN_AUG:
        log(f"warning: train_aug has {len(result.ids)} ids, not the {EXPECTED_TRAIN_AUG:,} of the "
            f"real SBD release + VOC 2012 trainval (fine for other data; with the real data, "
            f"one of them is incomplete)")
    return result


def main(argv=None):
    """scripts/prepare_sbd.py's command line; returns the exit status (0, or 1 with the
    reason on stderr)."""
    parser = argparse.ArgumentParser(
        description="Converts SBD's masks for VOC and writes the augmented train list train_aug.txt.")
    parser.add_argument("--sbd-root", required=True,
                        help="SBD's benchmark_RELEASE folder (download_sbd.py puts it in DATA_DIR)")
    parser.add_argument("--voc-root", required=True, help="the .../VOCdevkit/VOC2012 folder")
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave ids with a bad photo or mask out of train_aug.txt (named) "
                             "instead of stopping")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    def work():
        prepare_train_aug(args.sbd_root, args.voc_root, skip_bad=args.skip_bad, progress=not args.no_progress)
        print(f"check it with: python -m research.data.validate {args.voc_root} --subset train_aug")

    return cli.run_main(work, errors=(PrepareError,))
