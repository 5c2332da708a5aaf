"""Downloads Pascal VOC 2012 trainval, checks its MD5 and extracts it safely.

    python scripts/download_voc.py --data-dir data

Result: DATA_DIR/VOCdevkit/VOC2012 (the voc_root the rest of the project takes).
The download is resumable (DATA_DIR/<name>.tar.part), used only when its MD5 matches,
and extracted member-checked through a staging folder (research/data/download.py says
exactly how; `download.VOC_2012` is the release); an extracted dataset, or a verified
tar, is not fetched again.
"""
import sys

from research.data import download


def main(argv=None):
    return download.command_line(download.VOC_2012, argv)


if __name__ == "__main__":
    sys.exit(main())
