"""Checks a dataset (Pascal VOC, or your own in the folder layout) and reports every problem.

    python -m research.data.validate ROOT [--subset train ...]

ROOT is a VOC root (``.../VOCdevkit/VOC2012``) or a folder dataset's root (the folder
holding classes.json, `research.data.folder`); which one is told by classes.json.

Problems (exit status 1), grouped by kind, each naming its file:
- the folder: missing; a VOC root given one level too high ("did you mean
  .../VOCdevkit/VOC2012?"); a bad classes.json;
- split lists: missing, unreadable, duplicate ids; the same id in a train list and an
  evaluation list (a leak); VOC's trainval.txt, when present, not train + val;
- samples (every listed id, or those of `--subset`): an id without files; photos and
  masks read by the checked readers the pipeline uses: sizes match, mask values are
  classes or the ignore label (with the likely cause as a hint: 0/255 binary masks,
  Cityscapes labelIds, 1-based labels, smoothed masks), colour masks, VOC's palette,
  truncation. VOC's train_aug masks are read from SegmentationClassAug/.
Warnings (reported, exit status 0): classes that never appear in the train split (their
IoU is undefined), a train split whose pixels are mostly the ignore label
(`research.data.labels.split_warnings`).
"""
import argparse
import collections
import concurrent.futures
import dataclasses
import os
import sys

import numpy as np

from research import cli
from research.data import datasets, folder, labels, voc
from research.progress import ProgressBar

_LISTS = ("train", "val", "trainval", "train_aug")
_OPTIONAL_LISTS = ("trainval", "train_aug")   # read_split falls back / prepare_sbd.py makes it
_FOLDER_LISTS = ("train", "val", "test")
_FOLDER_OPTIONAL_LISTS = ("test",)


@dataclasses.dataclass
class Problem:
    """One problem: `kind` (e.g. "missing", "mask_values", "split_overlap"), the file it is
    about, and the full message (which starts with the path)."""
    kind: str
    path: str
    message: str


@dataclasses.dataclass
class ValidationReport:
    """What `validate_voc` or `validate_folder` found.

    root: the dataset's folder; layout: "VOC" or "folder"; class_names: C names;
    split_sizes: ids per list and per derived subset (val and test halves);
    samples_checked: ids whose files were read; class_pixels: int64 [C] labelled pixels
    per class over the good samples; ignore_pixels: pixels with the ignore label;
    train_class_pixels, train_ignore_pixels: the same over the train list's samples;
    problems: `Problem`s (the dataset is not ok); warnings: str (it is).
    """
    root: str
    layout: str = "VOC"
    class_names: tuple = voc.CLASS_NAMES
    ignore_label: int = voc.IGNORE_LABEL
    split_sizes: dict = dataclasses.field(default_factory=dict)
    samples_checked: int = 0
    class_pixels: np.ndarray = None
    ignore_pixels: int = 0
    train_class_pixels: np.ndarray = None
    train_ignore_pixels: int = 0
    problems: list = dataclasses.field(default_factory=list)
    warnings: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        for name in ("class_pixels", "train_class_pixels"):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(len(self.class_names), np.int64))

    @property
    def ok(self):
        """True when no problem was found (warnings allowed)."""
        return not self.problems

    def by_kind(self):
        """dict kind -> list of `Problem`, kinds in order of first appearance."""
        grouped = collections.defaultdict(list)
        for problem in self.problems:
            grouped[problem.kind].append(problem)
        return dict(grouped)

    def class_frequencies(self):
        """float64 [C]: each class's share of the labelled (non-ignore) pixels."""
        total = self.class_pixels.sum()
        return self.class_pixels / total if total else np.zeros(len(self.class_names))

    def format(self, max_per_kind=20):
        """The report as text (counts, class pixel shares, problems by kind, warnings)."""
        sizes = ", ".join(f"{name} {count}" for name, count in self.split_sizes.items())
        lines = [f"{self.layout} dataset {self.root}",
                 f"  split sizes: {sizes or 'none readable'}",
                 f"  samples checked: {self.samples_checked}, problems: {len(self.problems)}"]
        labelled = int(self.class_pixels.sum())
        if labelled:
            ignore = self.ignore_pixels / (labelled + self.ignore_pixels)
            lines.append(f"  class pixel frequencies (of labelled pixels; the ignore label "
                         f"{self.ignore_label} is {ignore:.1%} of all):")
            shares = [f"{name[:12]:>12s} {share:6.2%}" for name, share
                      in zip(self.class_names, self.class_frequencies())]
            lines += ["   " + "".join(shares[i:i + 5]) for i in range(0, len(shares), 5)]
        for kind, problems in self.by_kind().items():
            lines.append(f"  {kind} ({len(problems)}):")
            lines += [f"    {p.message}" for p in problems[:max_per_kind]]
            if len(problems) > max_per_kind:
                lines.append(f"    ... and {len(problems) - max_per_kind} more")
        lines += [f"  warning: {warning}" for warning in self.warnings]
        return "\n".join(lines)


# ---------------------------------------------------------------- split lists

def _read_lists(paths, optional, report):
    """Reads the split lists `paths` (name -> file); unreadable ones become problems,
    missing `optional` ones are skipped. Returns name -> ids."""
    lists = {}
    for name, path in paths.items():
        if name in optional and not os.path.exists(path):
            continue
        try:
            lists[name] = voc.read_id_list(path)
        except (OSError, ValueError) as error:
            report.problems.append(Problem("split_list", path, str(error)))
            continue
        report.split_sizes[name] = len(lists[name])
        if not lists[name]:
            report.problems.append(Problem("split_list", path, f"{path}: lists no ids"))
    return lists


def _check_overlaps(lists, paths, train_names, evaluation_names, report):
    """An id in a train list and an evaluation list (a leak) is a problem of the latter."""
    for train in train_names:
        for other in evaluation_names:
            if train in lists and other in lists:
                shared = sorted(set(lists[train]) & set(lists[other]))
                if shared:
                    report.problems.append(Problem(
                        "split_overlap", paths[other],
                        f"{paths[other]}: {len(shared)} id(s) are also in {os.path.basename(paths[train])}, "
                        f"e.g. {shared[:5]}"))


def _check_voc_trainval(voc_root, lists, report):
    train, val, trainval = lists.get("train"), lists.get("val"), lists.get("trainval")
    if train is None or val is None or trainval is None:
        return
    missing = sorted((set(train) | set(val)) - set(trainval))
    extra = sorted(set(trainval) - set(train) - set(val))
    if missing or extra:
        path = voc.split_file(voc_root, "trainval")
        report.problems.append(Problem(
            "split_mismatch", path, f"{path}: is not train + val: {len(missing)} id(s) "
                                    f"missing (e.g. {missing[:5]}), {len(extra)} extra "
                                    f"(e.g. {extra[:5]})"))


def _halves(source, lists, paths, report, split_seed):
    """Without a test list, val and test are the halves of the val list: one id leaves val
    empty, which training refuses (a warning: evaluating the test half alone still works)."""
    if "val" in lists and "test" not in lists:
        report.split_sizes["val half"] = len(source.split("val", split_seed))
        report.split_sizes["test half"] = len(source.split("test", split_seed))
        if len(lists["val"]) == 1:
            report.warnings.append(f"{paths['val']}: 1 id; val and test are its two halves (there is "
                                   f"no test list), so val is empty and training, which evaluates on "
                                   f"val, refuses it: add ids or a test list")


# ---------------------------------------------------------------- samples

def _samples(source, lists, subsets, split_seed):
    """[(id, subset whose mask to read, is in the train split)], each (photo, mask) pair
    once, in list order: every listed id, or the ids of `subsets`."""
    if subsets is None:
        wanted = [(image_id, name) for name, ids in lists.items() for image_id in ids]
    else:
        wanted = []
        for subset in subsets:
            if subset not in source.subsets:
                raise ValueError(f"unknown subset {subset!r}; valid subsets: {', '.join(source.subsets)}")
            try:
                wanted += [(image_id, subset) for image_id in source.split(subset, split_seed)]
            except (OSError, ValueError):
                pass    # an unreadable list: already a problem in the report
    unique = {}
    for image_id, subset in wanted:   # the mask path names both the id and the mask folder
        unique.setdefault(source.mask_path(image_id, subset), (image_id, subset, subset == "train"))
    return list(unique.values())


def _check_sample(source, image_id, subset, max_pixels):
    try:
        _, mask = source.read_sample(source.image_path(image_id), source.mask_path(image_id, subset),
                                     max_pixels)
    except voc.BadFileError as error:
        return error
    return np.bincount(mask.ravel(), minlength=256)


def _check_samples(source, samples, report, progress, max_pixels):
    """Reads every sample, adding problems and pixel counts (train samples also to the
    train counts), then the train split's warnings."""
    num_classes = len(report.class_names)
    bar = ProgressBar(total=len(samples), desc="validate", unit="img") if progress else None
    # PIL releases the GIL while decoding, so threads check files in parallel.
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = pool.map(lambda sample: _check_sample(source, sample[0], sample[1], max_pixels), samples)
        for (_, _, is_train), result in zip(samples, results):
            report.samples_checked += 1
            if isinstance(result, voc.BadFileError):
                report.problems.append(Problem(result.kind, result.path, str(result)))
            else:
                # The reader hands the ignore label on as 255, whatever the files hold.
                report.class_pixels += result[:num_classes]
                report.ignore_pixels += int(result[voc.IGNORE_LABEL])
                if is_train:
                    report.train_class_pixels += result[:num_classes]
                    report.train_ignore_pixels += int(result[voc.IGNORE_LABEL])
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    report.warnings += labels.split_warnings(report.train_class_pixels, report.train_ignore_pixels,
                                             report.class_names, report.ignore_label)


# ---------------------------------------------------------------- the two layouts

def validate_voc(voc_root, subsets=None, split_seed=0, progress=True, max_pixels=voc.DEFAULT_MAX_PIXELS):
    """Checks a dataset in VOC layout; never raises for problems in the data.

    Args:
      voc_root: the ``.../VOCdevkit/VOC2012`` folder.
      subsets: names from `voc.SUBSETS` whose samples to check (default: every listed id;
        an id in train_aug.txt and another list is checked with both of its masks).
      split_seed: the val/test split whose sizes are reported.
      progress: show a progress bar on stderr.
      max_pixels: decompression-bomb guard per file.
    Returns:
      `ValidationReport`.
    """
    voc_root = os.fspath(voc_root)
    report = ValidationReport(voc_root)
    if not os.path.isdir(voc_root):
        report.problems.append(Problem("missing_root", voc_root, f"{voc_root}: VOC root does not exist"))
        return report
    try:
        voc.check_voc_root(voc_root)
    except FileNotFoundError as error:      # one level too high: the hint, not 3 missing lists
        report.problems.append(Problem("wrong_root", voc_root, str(error)))
        return report
    source = datasets.VocDataset(voc_root)
    paths = {name: voc.split_file(voc_root, name) for name in _LISTS}
    lists = _read_lists(paths, _OPTIONAL_LISTS, report)
    _check_overlaps(lists, paths, voc.TRAIN_SUBSETS, ("val",), report)
    _check_voc_trainval(voc_root, lists, report)
    _halves(source, lists, paths, report, split_seed)
    _check_samples(source, _samples(source, lists, subsets, split_seed), report, progress, max_pixels)
    return report


def validate_folder(root, subsets=None, split_seed=0, progress=True, max_pixels=voc.DEFAULT_MAX_PIXELS):
    """Checks a folder dataset (`research.data.folder`); never raises for problems in the data.

    Args:
      root: the folder holding classes.json, images/, masks/, splits/.
      subsets: names from `folder.SUBSETS` whose samples to check (default: every listed id).
      split_seed, progress, max_pixels: as `validate_voc`.
    Returns:
      `ValidationReport`.
    """
    root = os.fspath(root)
    try:
        source = folder.FolderDataset(root)
    except FileNotFoundError as error:
        kind = "missing_root" if not os.path.isdir(root) else "wrong_root"
        report = ValidationReport(root, layout="folder")
        report.problems.append(Problem(kind, root, str(error)))
        return report
    except ValueError as error:
        report = ValidationReport(root, layout="folder")
        report.problems.append(Problem("classes", folder.classes_file(root), str(error)))
        return report
    report = ValidationReport(root, layout="folder", class_names=source.class_names,
                              ignore_label=source.ignore_label)
    paths = {name: source.split_file(name) for name in _FOLDER_LISTS}
    lists = _read_lists(paths, _FOLDER_OPTIONAL_LISTS, report)
    _check_overlaps(lists, paths, ("train",), ("val", "test"), report)
    _check_overlaps(lists, paths, ("val",), ("test",), report)
    _halves(source, lists, paths, report, split_seed)
    _check_samples(source, _samples(source, lists, subsets, split_seed), report, progress, max_pixels)
    return report


def validate(root, subsets=None, split_seed=0, progress=True, max_pixels=voc.DEFAULT_MAX_PIXELS):
    """`validate_folder` when `root` is a folder dataset, else `validate_voc`.

    A folder dataset is a root with classes.json, or one laid out like it (images/,
    masks/ or splits/ and no VOC ImageSets/): the folder checks then say that
    classes.json is missing, instead of VOC's checks reporting VOC's lists as missing.
    """
    def exists(name):
        return os.path.exists(os.path.join(root, name))

    folder_like = (any(exists(name) for name in ("images", "masks", "splits"))
                   and not exists("ImageSets"))
    check = validate_folder if exists(folder.CLASSES_FILE) or folder_like else validate_voc
    return check(root, subsets, split_seed, progress, max_pixels)


def main(argv=None):
    """Command line: prints the report; returns the exit status (1 when there are problems)."""
    parser = argparse.ArgumentParser(
        prog="python -m research.data.validate",
        description="Check a dataset: Pascal VOC layout, or a folder dataset (classes.json, "
                    "images/, masks/, splits/): split lists, images, masks and their labels.")
    parser.add_argument("root", help="the .../VOCdevkit/VOC2012 folder (given the folder above it, the "
                                     "report says which one was meant), or a folder dataset's root")
    parser.add_argument("--subset", action="append", choices=sorted(set(voc.SUBSETS) | set(folder.SUBSETS)),
                        help="check only this subset's samples (repeatable; default: all listed ids)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the val/test split (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    def work():
        report = validate(args.root, args.subset, args.split_seed, progress=not args.no_progress)
        print(report.format())
        warned = f" ({len(report.warnings)} warning(s))" if report.warnings else ""
        print(f"OK{warned}" if report.ok else f"FAILED: {len(report.problems)} problem(s){warned}")
        return 0 if report.ok else 1

    return cli.run_main(work)


if __name__ == "__main__":
    sys.exit(main())
