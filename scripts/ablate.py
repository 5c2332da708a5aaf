"""Ablation grid: train a base config and one-change variants of it for the same step budget.

    python scripts/ablate.py --base demo --axes loss,model,seed --steps 400 \\
        --set input_size=[64,64] --set resize_to_before_crop=[74,74] \\
        --set backbone_blocks=[1,1,1,1] --out runs/ablation

The command line of research.tools.ablate (its module doc: the axes, the budget,
determinism, resuming and the outputs).
"""
import sys

from research.tools.ablate import main

if __name__ == "__main__":
    sys.exit(main())
