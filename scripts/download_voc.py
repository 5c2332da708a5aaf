"""Downloads Pascal VOC 2012 trainval, checks its MD5 and extracts it safely.

    python scripts/download_voc.py --data-dir data

Result: DATA_DIR/VOCdevkit/VOC2012 (the voc_root the rest of the project takes).
The download is resumable (DATA_DIR/<name>.tar.part), used only when its MD5 matches,
and extracted member-checked through a staging folder (research/data/download.py says
exactly how); an extracted dataset, or a verified tar, is not fetched again.
"""
import sys

from research.data import download

DEFAULT_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
DEFAULT_MD5 = "6cd6e144f989b92b3379bac3b3de84fd"
STAGING_PREFIX = ".voc-extract-"

VOC_2012 = download.Release(
    title="VOC 2012", url=DEFAULT_URL, md5=DEFAULT_MD5, folder="VOCdevkit/VOC2012",
    required=("ImageSets/Segmentation/train.txt", "ImageSets/Segmentation/val.txt",
              "JPEGImages", "SegmentationClass"),
    staging_prefix=STAGING_PREFIX)


def is_extracted(data_dir):
    """True when DATA_DIR/VOCdevkit/VOC2012 has the split lists and both image folders."""
    return VOC_2012.is_extracted(data_dir)


def safe_extract(tar_path, data_dir, progress=True):
    """Extracts the VOC tar so that DATA_DIR/VOCdevkit/VOC2012 appears at once and
    complete; returns that voc_root (see `download.safe_extract`)."""
    return download.safe_extract(tar_path, data_dir, VOC_2012.folder, STAGING_PREFIX, progress)


def fetch_voc(data_dir, url=DEFAULT_URL, md5=DEFAULT_MD5, timeout=60, progress=True, log=print):
    """Makes sure DATA_DIR/VOCdevkit/VOC2012 exists; returns it. Raises DownloadError or
    UnsafeArchiveError."""
    return download.fetch(VOC_2012, data_dir, url, md5, timeout, progress, log)


def main(argv=None):
    """Returns the exit status: 0 on success, 1 with a one-line reason on stderr."""
    return download.command_line(
        VOC_2012, __doc__.split("\n\n")[0], argv=argv,
        next_steps=lambda voc_root: f"check it with: python -m research.data.validate {voc_root}")


if __name__ == "__main__":
    sys.exit(main())
