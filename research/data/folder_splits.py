"""Start a folder dataset from your own photos and masks: the split lists and classes.json.

    python -m research.data.folder_splits data/mine --classes background,road,obstacle \
        --val-fraction 0.2 [--test-fraction 0.1] [--seed 0]

reads ROOT/images/<id>.jpg|.jpeg|.png and ROOT/masks/<id>.png (an id is the file stem),
pairs them by id, shuffles the ids with `seed` and writes

  ROOT/splits/train.txt, val.txt and, with a test fraction, test.txt (sorted ids);
  ROOT/classes.json from --classes (and --ignore-label), when it does not exist yet.

Refused, naming the files, before anything is written: a photo without a mask or a mask
without a photo (--skip-unpaired leaves them out), two photos of one id (a.jpg and
a.png), an id that a split list cannot hold (leading or trailing spaces), split lists
that exist already (--overwrite replaces them), --classes that disagree with an existing
classes.json, and fractions that leave a split empty. Every file is written atomically,
the split lists first and classes.json last. The result is what `research.data.folder`
reads; `python -m research.data.validate ROOT` then checks every photo and mask.

numpy only (no TensorFlow).
"""
import argparse
import os
import sys

import numpy as np

from research import cli
from research.data import folder, voc
from research.fileio import atomic_write_json, atomic_write_text

SPLITS = ("train", "val", "test")


def paired_ids(root):
    """The ids that have both a photo and a mask, and the files that do not pair up.

    Args:
      root: the folder dataset's root (images/ and masks/ inside).
    Returns:
      (ids: sorted list of str, problems: list of "<file>: <problem>" str).
    Raises:
      FileNotFoundError: images/ or masks/ is missing.
    """
    listings = {}
    for name in (folder.IMAGE_FOLDER, folder.MASK_FOLDER):
        path = os.path.join(root, name)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"{path} does not exist: a folder dataset keeps its photos in "
                                    f"{folder.IMAGE_FOLDER}/ and its masks in {folder.MASK_FOLDER}/")
        listings[name] = sorted(f for f in os.listdir(path) if not f.startswith("."))
    problems, photos, ambiguous = [], {}, set()
    for name in listings[folder.IMAGE_FOLDER]:
        stem, extension = os.path.splitext(name)
        path = os.path.join(root, folder.IMAGE_FOLDER, name)
        if extension not in folder.IMAGE_EXTENSIONS:
            problems.append(f"{path}: not a photo (a photo is <id>{', <id>'.join(folder.IMAGE_EXTENSIONS)})")
        elif stem in photos:
            problems.append(f"{path}: a second photo of id {stem!r} (beside {photos[stem]}): keep one")
            ambiguous.add(stem)
        else:
            photos[stem] = path
    masks = {}
    for name in listings[folder.MASK_FOLDER]:
        stem, extension = os.path.splitext(name)
        path = os.path.join(root, folder.MASK_FOLDER, name)
        if extension != ".png":
            problems.append(f"{path}: not a mask (a mask is <id>.png)")
        else:
            masks[stem] = path
    for stem in sorted(set(photos) - set(masks)):
        problems.append(f"{photos[stem]}: no mask (expected {os.path.join(root, folder.MASK_FOLDER, stem + '.png')})")
    for stem in sorted(set(masks) - set(photos)):
        problems.append(f"{masks[stem]}: no photo (expected {os.path.join(root, folder.IMAGE_FOLDER, stem)}.jpg, "
                        f".jpeg or .png)")
    ids = []
    for stem in sorted((set(photos) & set(masks)) - ambiguous):
        problem = _unlistable(stem)
        if problem:
            problems.append(f"{photos[stem]}: its id {stem!r} {problem}, which a split list (one id "
                            f"per line, UTF-8) cannot hold: rename the photo and its mask")
        else:
            ids.append(stem)
    return ids, problems


def _unlistable(stem):
    """Why a split list cannot hold id `stem` (the rules of `voc.read_id_list`), or None."""
    if stem != stem.strip():
        return "starts or ends with a space"
    if len(stem.splitlines()) != 1 or voc.id_problem(stem):
        return "holds a line break, a slash or a backslash"
    try:
        stem.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    return None


def split_ids(ids, val_fraction, test_fraction=0.0, seed=0):
    """Shuffles `ids` with `seed` and cuts them into train, val and (optionally) test.

    Args:
      ids: list of str.
      val_fraction: share of the ids for val, in (0, 1).
      test_fraction: share for test, in [0, 1); 0 writes no test list (then the val and
        test subsets are the two halves of val.txt, which so gets 2 ids at least).
      seed: the shuffle's seed: the same ids and seed give the same lists.
    Returns:
      {"train": [...], "val": [...], "test": [...]} (sorted ids; "test" empty for 0).
    Raises:
      ValueError: a fraction out of range, or a split left empty.
    """
    if not 0 < val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(f"--val-fraction must be in (0, 1), --test-fraction in [0, 1) and their sum "
                         f"below 1 (the rest trains); got {val_fraction} and {test_fraction}")
    shuffled = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    num_val = max(1 if test_fraction else 2, round(len(ids) * val_fraction))
    num_test = max(1, round(len(ids) * test_fraction)) if test_fraction else 0
    if len(ids) - num_val - num_test < 1:
        raise ValueError(f"{len(ids)} paired photo(s) and mask(s) leave no training image after "
                         f"{num_val} val and {num_test} test image(s)")
    return {"train": sorted(shuffled[num_val + num_test:]), "val": sorted(shuffled[:num_val]),
            "test": sorted(shuffled[num_val:num_val + num_test])}


def _checked_classes(root, names, ignore_label):
    """The Classes to write (None: classes.json exists and agrees with `names` and
    `ignore_label`, where given)."""
    path = folder.classes_file(root)
    if os.path.exists(path):
        existing = folder.read_classes(root)
        if names is not None and tuple(names) != existing.names:
            raise ValueError(f"{path}: its names {list(existing.names)} differ from --classes "
                             f"{list(names)}: edit the file, or leave --classes out to keep it")
        if ignore_label is not None and ignore_label != existing.ignore_label:
            raise ValueError(f"{path}: its ignore_label {existing.ignore_label} differs from "
                             f"--ignore-label {ignore_label}: edit the file, or leave the flag out")
        return None
    if names is None:
        raise ValueError(f"{path} does not exist: give the class names, in index order, with "
                         f"--classes (e.g. --classes background,road,obstacle)")
    return folder.checked_classes(path, list(names),
                                  voc.IGNORE_LABEL if ignore_label is None else ignore_label)


def write_splits(root, splits, names=None, ignore_label=None, overwrite=False):
    """Writes ROOT/splits/<split>.txt and, when it does not exist, ROOT/classes.json.

    Args:
      root: the folder dataset's root.
      splits: {"train": [...], "val": [...], "test": [...]} from `split_ids`.
      names: class names in index order, or None to keep an existing classes.json.
      ignore_label: the mask value that is never trained on or scored (default 255 for a
        new classes.json; an existing file's must equal it when given).
      overwrite: replace existing split lists (a test.txt the new split has none of is
        removed, so no stale list remains).
    Raises:
      FileExistsError: split lists exist and overwrite is False.
      ValueError: names that disagree with classes.json, or bad names or ignore label.
    """
    classes = _checked_classes(root, names, ignore_label)
    paths = {split: os.path.join(root, folder.SPLIT_FOLDER, split + ".txt") for split in SPLITS}
    existing = [path for path in paths.values() if os.path.exists(path)]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists already: --overwrite replaces the split lists")
    os.makedirs(os.path.join(root, folder.SPLIT_FOLDER), exist_ok=True)
    texts = {split: "".join(f"{i}\n" for i in ids) for split, ids in splits.items() if ids}
    for split in SPLITS:
        if split in texts:
            atomic_write_text(paths[split], texts[split])
        elif os.path.exists(paths[split]):
            os.remove(paths[split])
    if classes is not None:
        atomic_write_json(folder.classes_file(root), classes.to_json())


def main(argv=None):
    """Command line: writes the lists and prints how many ids each holds; exit status 0."""
    parser = argparse.ArgumentParser(
        prog="python -m research.data.folder_splits",
        description="Start a folder dataset from images/ and masks/: write splits/train.txt, "
                    "val.txt (and test.txt) from a seeded shuffle of the paired ids, and "
                    "classes.json from --classes.")
    parser.add_argument("root", help="the folder dataset's root, holding images/<id>.jpg and masks/<id>.png")
    parser.add_argument("--classes", type=lambda text: [n.strip() for n in text.split(",")],
                        help="class names in index order, comma-separated (mask value i is the i-th); "
                             "needed when ROOT/classes.json does not exist")
    parser.add_argument("--ignore-label", type=int, default=None,
                        help="the mask value never trained on or scored, written with --classes (default 255)")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="share of the ids for val (default 0.2)")
    parser.add_argument("--test-fraction", type=float, default=0.0,
                        help="share of the ids for test (default 0: no test.txt; val and test are then "
                             "the two halves of val.txt)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffle (default 0)")
    parser.add_argument("--skip-unpaired", action="store_true",
                        help="leave photos without masks and masks without photos out instead of refusing")
    parser.add_argument("--overwrite", action="store_true", help="replace existing split lists")
    args = parser.parse_args(argv)

    def work():
        ids, problems = paired_ids(args.root)
        if problems and not args.skip_unpaired:
            shown = "\n  ".join(problems[:20])
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            raise ValueError(f"{len(problems)} file(s) do not pair up (--skip-unpaired leaves "
                             f"them out):\n  {shown}{more}")
        for problem in problems:
            print(f"left out: {problem}")
        if not ids:
            raise ValueError(f"{args.root}: no photo has a mask")
        splits = split_ids(ids, args.val_fraction, args.test_fraction, args.seed)
        write_splits(args.root, splits, args.classes, args.ignore_label, args.overwrite)
        counts = ", ".join(f"{split} {len(splits[split])}" for split in SPLITS if splits[split])
        print(f"{os.path.join(args.root, folder.SPLIT_FOLDER)}: {counts} ids; "
              f"next: python -m research.data.validate {args.root}")
        return 0

    return cli.run_main(work)


if __name__ == "__main__":
    sys.exit(main())
