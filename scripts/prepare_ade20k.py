"""Converts ADE20K (SceneParsing, ADEChallengeData2016) into a folder dataset of 150 classes.

    python scripts/prepare_ade20k.py --ade-root data/ADEChallengeData2016 --out data/ade20k_folder

ADE_ROOT holds images/ and annotations/ (ADEChallengeData2016.zip extracted). Writes
OUT/images/, OUT/masks/ (0 "other" -> 255, the ignore label; 1..150 -> 0..149),
OUT/splits/{train,val}.txt and OUT/classes.json; a rerun keeps the samples already
written. Then train with `--config deeplabv3_ade20k --set data_root=OUT`.
research/data/ade20k.py has the details.
"""
import sys

from research.data import ade20k, folder_writer


def main(argv=None):
    """Returns the exit status: 0 on success, 1 with the reason on stderr."""
    return folder_writer.converter_main(argv, __doc__, "--ade-root",
                                        "the ADEChallengeData2016 folder (images/, annotations/)",
                                        ade20k.prepare_ade20k)


if __name__ == "__main__":
    sys.exit(main())
