"""Checks a dataset in VOC layout and reports every problem, grouped by kind.

    python -m research.data.validate data/synthetic/VOCdevkit/VOC2012 [--subset train ...]

Checks: the folder is a VOC root (given the folder above one, it says "did you mean
.../VOCdevkit/VOC2012?"); the split lists exist, parse (no duplicates) and are sane
(train and train_aug.txt, when present, hold no id of val.txt; trainval.txt, when
present, equal to train + val); every listed id has a photo and a mask that decode (the
same checked readers the pipeline uses: sizes match, mask values are classes or 255,
palette is VOC's, no truncation); train_aug's masks are read from SegmentationClassAug/.
Exit status 1 when there are problems, 0 otherwise.
"""
import argparse
import collections
import concurrent.futures
import dataclasses
import os
import sys

import numpy as np

from research import cli
from research.data import voc
from research.progress import ProgressBar

_LISTS = ("train", "val", "trainval", "train_aug")
_OPTIONAL_LISTS = ("trainval", "train_aug")   # read_split falls back / prepare_sbd.py makes it


@dataclasses.dataclass
class Problem:
    """One problem: `kind` (e.g. "missing", "mask_values", "split_overlap"), the file it is
    about, and the full message (which starts with the path)."""
    kind: str
    path: str
    message: str


@dataclasses.dataclass
class ValidationReport:
    """What `validate_voc` found.

    split_sizes: ids per list (train, val, trainval) and per derived subset (val and test
    halves); samples_checked: ids whose files were read; class_pixels: int64 [21] labelled
    pixels per class over the good samples; ignore_pixels: pixels labelled 255.
    """
    voc_root: str
    split_sizes: dict = dataclasses.field(default_factory=dict)
    samples_checked: int = 0
    class_pixels: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(voc.NUM_CLASSES, np.int64))
    ignore_pixels: int = 0
    problems: list = dataclasses.field(default_factory=list)

    @property
    def ok(self):
        return not self.problems

    def by_kind(self):
        """dict kind -> list of `Problem`, kinds in order of first appearance."""
        grouped = collections.defaultdict(list)
        for problem in self.problems:
            grouped[problem.kind].append(problem)
        return dict(grouped)

    def class_frequencies(self):
        """float64 [21]: each class's share of the labelled (non-255) pixels."""
        total = self.class_pixels.sum()
        return self.class_pixels / total if total else np.zeros(voc.NUM_CLASSES)

    def format(self, max_per_kind=20):
        """The report as text (counts, class pixel shares, problems by kind)."""
        sizes = ", ".join(f"{name} {count}" for name, count in self.split_sizes.items())
        lines = [f"VOC dataset {self.voc_root}",
                 f"  split sizes: {sizes or 'none readable'}",
                 f"  samples checked: {self.samples_checked}, problems: {len(self.problems)}"]
        labelled = int(self.class_pixels.sum())
        if labelled:
            ignore = self.ignore_pixels / (labelled + self.ignore_pixels)
            lines.append(f"  class pixel frequencies (of labelled pixels; 255 is {ignore:.1%} of all):")
            shares = [f"{name:>12s} {share:6.2%}" for name, share
                      in zip(voc.CLASS_NAMES, self.class_frequencies())]
            lines += ["   " + "".join(shares[i:i + 5]) for i in range(0, len(shares), 5)]
        for kind, problems in self.by_kind().items():
            lines.append(f"  {kind} ({len(problems)}):")
            lines += [f"    {p.message}" for p in problems[:max_per_kind]]
            if len(problems) > max_per_kind:
                lines.append(f"    ... and {len(problems) - max_per_kind} more")
        return "\n".join(lines)


def _read_lists(voc_root, report):
    """Reads the split lists; unreadable ones become problems. Returns name -> ids."""
    lists = {}
    for name in _LISTS:
        path = voc.split_file(voc_root, name)
        if name in _OPTIONAL_LISTS and not os.path.exists(path):
            continue
        try:
            lists[name] = voc.read_id_list(path)
        except (OSError, ValueError) as error:
            report.problems.append(Problem("split_list", path, str(error)))
            continue
        report.split_sizes[name] = len(lists[name])
    return lists


def _check_lists(voc_root, lists, report, split_seed):
    train, val = lists.get("train"), lists.get("val")
    for name in voc.TRAIN_SUBSETS:      # a val id in a train list: a leak
        if name in lists and val is not None:
            shared = sorted(set(lists[name]) & set(val))
            if shared:
                path = voc.split_file(voc_root, "val")
                report.problems.append(Problem(
                    "split_overlap", path, f"{path}: {len(shared)} id(s) are also in {name}.txt, "
                                           f"e.g. {shared[:5]}"))
    if train is not None and val is not None:
        if "trainval" in lists:
            missing = sorted((set(train) | set(val)) - set(lists["trainval"]))
            extra = sorted(set(lists["trainval"]) - set(train) - set(val))
            if missing or extra:
                path = voc.split_file(voc_root, "trainval")
                report.problems.append(Problem(
                    "split_mismatch", path, f"{path}: is not train + val: {len(missing)} id(s) "
                                            f"missing (e.g. {missing[:5]}), {len(extra)} extra "
                                            f"(e.g. {extra[:5]})"))
    if val is not None:
        report.split_sizes["val half"] = len(voc.read_split(voc_root, "val", split_seed))
        report.split_sizes["test half"] = len(voc.read_split(voc_root, "test", split_seed))


def _check_sample(voc_root, image_id, subset, max_pixels):
    try:
        _, mask = voc.read_sample(voc.image_path(voc_root, image_id),
                                  voc.mask_path(voc_root, image_id, subset), max_pixels)
    except voc.BadFileError as error:
        return error
    return np.bincount(mask.ravel(), minlength=256)


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
    lists = _read_lists(voc_root, report)
    _check_lists(voc_root, lists, report, split_seed)
    # (id, the subset whose mask folder to read): train_aug's masks are elsewhere.
    if subsets is None:
        samples = [(image_id, name) for name in _LISTS for image_id in lists.get(name, [])]
    else:
        samples = []
        for subset in subsets:
            if subset not in voc.SUBSETS:
                raise ValueError(f"unknown subset {subset!r}; valid subsets: {', '.join(voc.SUBSETS)}")
            try:
                samples += [(image_id, subset) for image_id in voc.read_split(voc_root, subset, split_seed)]
            except (OSError, ValueError):
                pass    # an unreadable list: already a problem in the report
    # each (photo, mask) pair once, in list order (the mask path names both)
    samples = list({voc.mask_path(voc_root, image_id, subset): (image_id, subset)
                    for image_id, subset in samples}.values())
    bar = ProgressBar(total=len(samples), desc="validate", unit="img") if progress else None
    # PIL releases the GIL while decoding, so threads check files in parallel.
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for result in pool.map(lambda sample: _check_sample(voc_root, *sample, max_pixels), samples):
            report.samples_checked += 1
            if isinstance(result, voc.BadFileError):
                report.problems.append(Problem(result.kind, result.path, str(result)))
            else:
                report.class_pixels += result[:voc.NUM_CLASSES]
                report.ignore_pixels += int(result[voc.IGNORE_LABEL])
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    return report


def main(argv=None):
    """Command line: prints the report; returns the exit status (1 when there are problems)."""
    parser = argparse.ArgumentParser(
        prog="python -m research.data.validate",
        description="Check a dataset in Pascal VOC layout (split lists, photos, palettized masks).")
    parser.add_argument("voc_root", help="the .../VOCdevkit/VOC2012 folder (given the folder above "
                                         "it, the report says which one was meant)")
    parser.add_argument("--subset", action="append", choices=voc.SUBSETS,
                        help="check only this subset's samples (repeatable; default: all listed ids)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the val/test split (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    def work():
        report = validate_voc(args.voc_root, args.subset, args.split_seed, progress=not args.no_progress)
        print(report.format())
        print("OK" if report.ok else f"FAILED: {len(report.problems)} problem(s)")
        return 0 if report.ok else 1

    return cli.run_main(work)


if __name__ == "__main__":
    sys.exit(main())
