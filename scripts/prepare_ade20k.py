"""Converts ADE20K (SceneParsing, ADEChallengeData2016) into a folder dataset of 150 classes.

    python scripts/prepare_ade20k.py --ade-root data/ADEChallengeData2016 --out data/ade20k_folder

ADE_ROOT holds images/ and annotations/ (ADEChallengeData2016.zip extracted). Writes
OUT/images/, OUT/masks/ (0 "other" -> 255, the ignore label; 1..150 -> 0..149),
OUT/splits/{train,val}.txt and OUT/classes.json; a rerun keeps the samples already
written. Then train with `--config deeplabv3_ade20k --set data_root=OUT`.
research/data/ade20k.py has the details.
"""
import argparse
import sys

from research.data import ade20k, folder_writer


def main(argv=None):
    """Returns the exit status: 0 on success, 1 with the reason on stderr."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ade-root", required=True, help="the ADEChallengeData2016 folder (images/, annotations/)")
    parser.add_argument("--out", required=True, help="the folder dataset to write")
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave samples with a bad photo or annotation out of the split lists "
                             "(named) instead of stopping")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        result = ade20k.prepare_ade20k(args.ade_root, args.out, skip_bad=args.skip_bad,
                                       progress=not args.no_progress)
    except (folder_writer.ConversionError, FileNotFoundError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(folder_writer.summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
