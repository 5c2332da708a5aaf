"""Converts SBD's masks for VOC and writes the augmented train list train_aug.txt.

    python scripts/prepare_sbd.py --sbd-root data/benchmark_RELEASE --voc-root data/VOCdevkit/VOC2012

Writes VOC_ROOT/SegmentationClassAug/<id>.png (VOC's own mask where it has one, else
SBD's GTcls.Segmentation) and VOC_ROOT/ImageSets/Segmentation/train_aug.txt =
(SBD train + SBD val + VOC train) minus VOC val, sorted; prints its size and warns
when it is not the 10,582 of the real data. Rerunning skips the masks already written.
Then train with `--set train_subset=train_aug`. research/data/sbd.py has the details
(its `main` is this command line).
"""
import sys

from research.data.sbd import main

if __name__ == "__main__":
    sys.exit(main())
