"""Downloads SBD (the Semantic Boundaries Dataset, benchmark.tgz), checks its MD5 and
extracts it safely.

    python scripts/download_sbd.py --data-dir data
    python scripts/prepare_sbd.py --sbd-root data/benchmark_RELEASE --voc-root data/VOCdevkit/VOC2012

Result: DATA_DIR/benchmark_RELEASE (the sbd_root prepare_sbd.py takes); about 1.4 GB.
The same resumable, MD5-checked, member-checked download and extraction as
download_voc.py (research/data/download.py); an extracted dataset, or a verified
archive, is not fetched again.
"""
import sys

from research.data import download

DEFAULT_URL = ("http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/"
               "semantic_contours/benchmark.tgz")
DEFAULT_MD5 = "82b4d87ceb2ed10f6038a1cba92111cb"

SBD = download.Release(
    title="SBD", url=DEFAULT_URL, md5=DEFAULT_MD5, folder="benchmark_RELEASE",
    required=("dataset/cls", "dataset/train.txt", "dataset/val.txt"),
    staging_prefix=".sbd-extract-")


def is_extracted(data_dir):
    """True when DATA_DIR/benchmark_RELEASE has dataset/cls/ and SBD's split lists."""
    return SBD.is_extracted(data_dir)


def main(argv=None):
    """Returns the exit status: 0 on success, 1 with a one-line reason on stderr."""
    return download.command_line(
        SBD, __doc__.split("\n\n")[0].replace("\n", " "), argv=argv,
        next_steps=lambda sbd_root: (f"next: python scripts/prepare_sbd.py --sbd-root {sbd_root} "
                                     f"--voc-root VOC_ROOT (the .../VOCdevkit/VOC2012 folder)"))


if __name__ == "__main__":
    sys.exit(main())
