"""Converts SBD's masks for VOC and writes the augmented train list train_aug.txt.

    python scripts/prepare_sbd.py --sbd-root data/benchmark_RELEASE --voc-root data/VOCdevkit/VOC2012

Writes VOC_ROOT/SegmentationClassAug/<id>.png (VOC's own mask where it has one, else
SBD's GTcls.Segmentation) and VOC_ROOT/ImageSets/Segmentation/train_aug.txt =
(SBD train + SBD val + VOC train) minus VOC val, sorted; prints its size and warns
when it is not the 10,582 of the real data. Rerunning skips the masks already written.
Then train with `--set train_subset=train_aug`. research/data/sbd.py has the details.
"""
import argparse
import sys

from research.data import sbd


def main(argv=None):
    """Returns the exit status: 0 on success, 1 with the reason on stderr."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sbd-root", required=True,
                        help="SBD's benchmark_RELEASE folder (download_sbd.py puts it in DATA_DIR)")
    parser.add_argument("--voc-root", required=True, help="the .../VOCdevkit/VOC2012 folder")
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave ids with a bad photo or mask out of train_aug.txt (named) "
                             "instead of stopping")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        sbd.prepare_train_aug(args.sbd_root, args.voc_root, skip_bad=args.skip_bad,
                              progress=not args.no_progress)
    except (sbd.PrepareError, FileNotFoundError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"check it with: python -m research.data.validate {args.voc_root} --subset train_aug")
    return 0


if __name__ == "__main__":
    sys.exit(main())
