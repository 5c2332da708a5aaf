"""Converts Cityscapes (fine annotations) into a folder dataset of the 19 training classes.

    python scripts/prepare_cityscapes.py --cityscapes-root data/cityscapes --out data/cityscapes_folder

CITYSCAPES_ROOT holds leftImg8bit/ and gtFine/ (leftImg8bit_trainvaltest.zip and
gtFine_trainvaltest.zip extracted into one folder). Writes OUT/images/, OUT/masks/
(trainIds: the 19 classes 0-18, every other label 255), OUT/splits/{train,val}.txt and
OUT/classes.json; a rerun keeps the samples already written. Then train with
`--config deeplabv3_cityscapes --set data_root=OUT`. research/data/cityscapes.py has
the details.
"""
import sys

from research.data import cityscapes, folder_writer


def main(argv=None):
    """Returns the exit status: 0 on success, 1 with the reason on stderr."""
    return folder_writer.converter_main(argv, __doc__, "--cityscapes-root",
                                        "the folder holding leftImg8bit/ and gtFine/",
                                        cityscapes.prepare_cityscapes)


if __name__ == "__main__":
    sys.exit(main())
