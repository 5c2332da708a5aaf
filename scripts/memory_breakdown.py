"""Where a DeepLab v3 training step's memory goes, measured.

    python scripts/memory_breakdown.py [--batches 2 8] [--steps 4] [--out FILE]
        [--experiments step forward gradients loss_reference atrous_keras onednn_off xla]
        [--source DIR --label before]

The command line of research.tools.memory_breakdown (its module doc: the experiments, what
each reports, where the results go).
"""
import sys

from research.tools.memory_breakdown import main

if __name__ == "__main__":
    sys.exit(main())
