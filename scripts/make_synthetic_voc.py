"""Writes the embedded synthetic dataset in Pascal VOC layout, validates it, prints a summary.

    python scripts/make_synthetic_voc.py --root data/synthetic --num-train 960 --num-val 240 --seed 0

The dataset lands in ROOT/VOCdevkit/VOC2012 (use that folder as --voc-root elsewhere).
Re-running with the same arguments does nothing; see research.data.synthetic (its `main`
is this command line).
"""
import sys

from research.data.synthetic import main

if __name__ == "__main__":
    sys.exit(main())
