"""Writes the embedded synthetic dataset in Pascal VOC layout, validates it, prints a summary.

    python scripts/make_synthetic_voc.py --root data/synthetic --num-train 960 --num-val 240 --seed 0

The dataset lands in ROOT/VOCdevkit/VOC2012 (use that folder as --voc-root elsewhere).
Re-running with the same arguments does nothing; see research.data.synthetic.
"""
import argparse
import sys

from research.data.synthetic import make_synthetic_voc
from research.data.validate import validate_voc


def main(argv=None):
    """Returns the exit status: 0 when the written dataset validates, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="folder to hold VOCdevkit/VOC2012")
    parser.add_argument("--num-train", type=int, default=960, help="images in train.txt (default 960, as make demo)")
    parser.add_argument("--num-val", type=int, default=240, help="images in val.txt (default 240: 120 val + 120 test)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a synthetic dataset made with other arguments")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        voc_root = make_synthetic_voc(args.root, args.num_train, args.num_val, args.seed,
                                      overwrite=args.overwrite, progress=not args.no_progress)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    report = validate_voc(voc_root, progress=not args.no_progress)
    print(report.format())
    if not report.ok:
        print(f"FAILED: the generated dataset has {len(report.problems)} problem(s)")
        return 1
    print(f"OK: --voc-root {voc_root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
