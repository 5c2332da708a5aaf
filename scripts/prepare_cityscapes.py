"""Converts Cityscapes (fine annotations) into a folder dataset of the 19 training classes.

    python scripts/prepare_cityscapes.py --cityscapes-root data/cityscapes --out data/cityscapes_folder

CITYSCAPES_ROOT holds leftImg8bit/ and gtFine/ (leftImg8bit_trainvaltest.zip and
gtFine_trainvaltest.zip extracted into one folder). Writes OUT/images/, OUT/masks/
(trainIds: the 19 classes 0-18, every other label 255), OUT/splits/{train,val}.txt and
OUT/classes.json; a rerun keeps the samples already written. Then train with
`--config deeplabv3_cityscapes --set data_root=OUT`. research/data/cityscapes.py has
the details.
"""
import argparse
import sys

from research.data import cityscapes, folder_writer


def main(argv=None):
    """Returns the exit status: 0 on success, 1 with the reason on stderr."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cityscapes-root", required=True, help="the folder holding leftImg8bit/ and gtFine/")
    parser.add_argument("--out", required=True, help="the folder dataset to write")
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave samples with a bad photo or mask out of the split lists (named) "
                             "instead of stopping")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        result = cityscapes.prepare_cityscapes(args.cityscapes_root, args.out, skip_bad=args.skip_bad,
                                               progress=not args.no_progress)
    except (folder_writer.ConversionError, FileNotFoundError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(folder_writer.summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
