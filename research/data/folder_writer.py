"""Writing a folder dataset (`research.data.folder`) from another dataset's files.

The machinery the converters share (`research.data.cityscapes`, `research.data.ade20k`,
`voc_to_folder` below). A converter lists its samples as `Sample(split, image_id,
image_file, mask_file)` and gives `convert_mask(mask_file) -> uint8 [H, W]` class
indices (unlabelled pixels = the ignore label); `write_folder_dataset` then

  copies each image unchanged (bytes, extension kept) to OUT/images/<id>.<ext>,
  writes each converted mask, checked (size = its image's, values = classes or the
  ignore label), as a palettized PNG to OUT/masks/<id>.png,
  and last OUT/splits/<split>.txt (sorted ids) and OUT/classes.json.

Resumable: every file is written atomically and a sample whose image and mask are
already in OUT is kept, so a rerun after an interruption does only what is left; the
split lists and classes.json come last, so they never name a sample without files.
Bad source files are collected (`voc.BadFileError`, naming the file): without skip_bad
nothing is listed and `ConversionError` names them; with skip_bad their ids are left
out of the lists.
"""
import argparse
import concurrent.futures
import dataclasses
import os
import shutil

import numpy as np

from research import cli
from research.data import folder, voc
from research.fileio import atomic_path, atomic_write_json, atomic_write_text
from research.progress import ProgressBar


@dataclasses.dataclass(frozen=True)
class Sample:
    """One sample to convert: the split it goes to, its id (the output file stem) and
    its source image and mask files."""
    split: str
    image_id: str
    image_file: str
    mask_file: str


class ConversionError(Exception):
    """Source files that could not be converted; `problems` maps file -> message."""

    def __init__(self, problems):
        self.problems = dict(problems)
        listed = "\n  ".join(list(self.problems.values())[:10])
        more = f"\n  ... and {len(self.problems) - 10} more" if len(self.problems) > 10 else ""
        super().__init__(f"{len(self.problems)} sample(s) could not be converted (no split list "
                         f"was written; --skip-bad leaves them out):\n  {listed}{more}")


@dataclasses.dataclass
class ConversionResult:
    """What `write_folder_dataset` did: `out`, `split_sizes` (ids listed per split),
    `converted` (samples written now), `kept` (found complete from an earlier run),
    `skipped` (file -> message, left out with skip_bad)."""
    out: str
    split_sizes: dict
    converted: int
    kept: int
    skipped: dict


def read_8bit_mask(path, what):
    """A source dataset's 8-bit single-channel (or palettized) label PNG as uint8 [H, W]
    raw values; raises `voc.BadFileError` (missing, not a PNG, another colour mode:
    e.g. a colour visualisation given instead; `what` names the expected file)."""
    path = os.fspath(path)
    with voc.open_checked(path, voc.DEFAULT_MAX_PIXELS, ("PNG",)) as image:
        if image.mode not in ("L", "P"):
            raise voc.BadFileError(path, "mask_mode", f"mask has colour mode {image.mode}; {what} "
                                                      f"are 8-bit single-channel PNGs")
        voc.load_checked(image, path)
        return np.asarray(image, dtype=np.uint8)


def _check_ids(samples):
    seen = {}
    for sample in samples:
        if sample.image_id in seen:
            raise ValueError(f"id {sample.image_id!r} comes twice ({seen[sample.image_id]} and "
                             f"{sample.image_file}); ids name the output files and must be distinct")
        if any(c in sample.image_id for c in "/\\\0") or not sample.image_id.strip():
            raise ValueError(f"{sample.image_file}: {sample.image_id!r} is not a file name")
        seen[sample.image_id] = sample.image_file


def _targets(out, sample):
    extension = os.path.splitext(sample.image_file)[1].lower()
    return (os.path.join(out, folder.IMAGE_FOLDER, sample.image_id + extension),
            os.path.join(out, folder.MASK_FOLDER, sample.image_id + ".png"))


def _convert_one(out, sample, classes, convert_mask):
    """Writes one sample; returns "kept", "converted" or the `voc.BadFileError`."""
    image_target, mask_target = _targets(out, sample)
    if os.path.isfile(image_target) and os.path.isfile(mask_target):
        return "kept"
    try:
        # Decoded whole, not only its header: a truncated photo is refused here, not later
        # in training (the photo is copied as it is).
        size = voc.read_image(sample.image_file).shape[1::-1]
        mask = np.asarray(convert_mask(sample.mask_file))
        voc.check_mask_size(sample.mask_file, (mask.shape[1], mask.shape[0]), size)
        voc.check_mask_values(sample.mask_file, np.bincount(mask.ravel(), minlength=256),
                              len(classes.names), classes.ignore_label)
    except voc.BadFileError as error:
        return error
    voc.write_mask(mask_target, mask, classes.palette())
    with atomic_path(image_target) as tmp:   # the image last: both present = complete
        shutil.copyfile(sample.image_file, tmp)
    return "converted"


def write_folder_dataset(out, samples, classes, convert_mask, skip_bad=False, progress=True):
    """Converts `samples` into a folder dataset at `out` (module doc).

    Args:
      out: the folder dataset's root (created if missing).
      samples: iterable of `Sample`; ids must be distinct.
      classes: `folder.Classes` written to classes.json (names, ignore label, palette).
      convert_mask: mask file -> uint8 [H, W] class indices; raises `voc.BadFileError`.
      skip_bad: leave samples with bad files out of the split lists instead of failing.
      progress: show a progress bar on stderr.
    Returns:
      `ConversionResult`.
    Raises:
      ConversionError: bad source files (without skip_bad), after every sample was tried.
      ValueError: repeated ids.
    """
    out = os.fspath(out)
    samples = list(samples)
    _check_ids(samples)
    for name in (folder.IMAGE_FOLDER, folder.MASK_FOLDER, folder.SPLIT_FOLDER):
        os.makedirs(os.path.join(out, name), exist_ok=True)
    outcomes = {}
    bar = ProgressBar(total=len(samples), desc="convert", unit="img") if progress else None
    # PIL releases the GIL while decoding and encoding, so threads convert in parallel.
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for sample, outcome in zip(samples, pool.map(
                lambda s: _convert_one(out, s, classes, convert_mask), samples)):
            outcomes[sample] = outcome
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    bad = {s: o for s, o in outcomes.items() if isinstance(o, voc.BadFileError)}
    if bad and not skip_bad:
        raise ConversionError({error.path: str(error) for error in bad.values()})
    split_ids = {}
    for sample in samples:
        split_ids.setdefault(sample.split, [])
        if sample not in bad:
            split_ids[sample.split].append(sample.image_id)
    for split, ids in split_ids.items():
        atomic_write_text(os.path.join(out, folder.SPLIT_FOLDER, split + ".txt"),
                          "".join(f"{i}\n" for i in sorted(ids)))
    atomic_write_json(folder.classes_file(out), classes.to_json())
    counts = list(outcomes.values())
    return ConversionResult(out, {split: len(ids) for split, ids in split_ids.items()},
                            counts.count("converted"), counts.count("kept"),
                            {error.path: str(error) for error in bad.values()})


def voc_to_folder(voc_root, out, skip_bad=False, progress=False):
    """A VOC tree (e.g. `research.data.synthetic.make_synthetic_voc`'s) as a folder dataset.

    train.txt and val.txt become splits/train.txt and splits/val.txt (no test.txt, so
    val and test are the halves of val.txt exactly as for VOC); the 21 VOC class names
    and colours go to classes.json (ignore label 255); photos are copied, masks
    re-written with the VOC palette.

    Returns `ConversionResult`; raises as `write_folder_dataset`, FileNotFoundError for
    a missing VOC root or split list.
    """
    voc.check_voc_root(voc_root)
    samples = [Sample(split, image_id, voc.image_path(voc_root, image_id), voc.mask_path(voc_root, image_id))
               for split in ("train", "val")
               for image_id in voc.read_id_list(voc.split_file(voc_root, split))]
    classes = folder.Classes(voc.CLASS_NAMES, voc.IGNORE_LABEL, voc.VOC_PALETTE[:voc.NUM_CLASSES])
    return write_folder_dataset(out, samples, classes, voc.read_mask, skip_bad, progress)


def summary(result):
    """The lines a converter prints: split sizes, what was written, skipped files, and
    the validator command."""
    sizes = ", ".join(f"{split} {count}" for split, count in result.split_sizes.items())
    lines = [f"wrote the folder dataset {result.out}: {sizes} ({result.converted} converted, "
             f"{result.kept} already there)"]
    if result.skipped:
        lines.append(f"left out {len(result.skipped)} bad sample(s):")
        lines += [f"  {message}" for message in result.skipped.values()]
    lines.append(f"check it with: python -m research.data.validate {result.out}")
    return "\n".join(lines)


def converter_main(argv, doc, root_flag, root_help, prepare):
    """The command line of a converter script (scripts/prepare_cityscapes.py, ...):
    `root_flag ROOT --out OUT [--skip-bad] [--no-progress]`, then
    `prepare(root, out, skip_bad=, progress=)`; prints `summary`. Returns the exit status:
    0 on success, 1 with the reason on stderr."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument(root_flag, dest="source_root", metavar="ROOT", required=True, help=root_help)
    parser.add_argument("--out", required=True, help="the folder dataset to write")
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave samples with a bad photo or mask out of the split lists (named) "
                             "instead of stopping")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    def work():
        print(summary(prepare(args.source_root, args.out, skip_bad=args.skip_bad, progress=not args.no_progress)))

    return cli.run_main(work, errors=(ConversionError,))
