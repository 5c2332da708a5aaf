"""Draws one batch of the training pipeline and measures the pipeline's speed.

    python scripts/show_batch.py --voc-root data/synthetic/VOCdevkit/VOC2012 --out runs/demo/batch.png

The command line of research.tools.show_batch (its module doc says what is drawn and
printed).
"""
import sys

from research.tools.show_batch import main

if __name__ == "__main__":
    sys.exit(main())
