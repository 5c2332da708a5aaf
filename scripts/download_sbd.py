"""Downloads SBD (the Semantic Boundaries Dataset, benchmark.tgz), checks its MD5 and
extracts it safely.

    python scripts/download_sbd.py --data-dir data
    python scripts/prepare_sbd.py --sbd-root data/benchmark_RELEASE --voc-root data/VOCdevkit/VOC2012

Result: DATA_DIR/benchmark_RELEASE (the sbd_root prepare_sbd.py takes); about 1.4 GB.
The same resumable, MD5-checked, member-checked download and extraction as
download_voc.py (research/data/download.py; `download.SBD` is the release); an extracted
dataset, or a verified archive, is not fetched again.
"""
import sys

from research.data import download


def main(argv=None):
    return download.command_line(download.SBD, argv)


if __name__ == "__main__":
    sys.exit(main())
