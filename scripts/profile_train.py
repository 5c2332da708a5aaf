"""Where does a training step's time go? Traces a few steps and prints the top ops by self time.

    python scripts/profile_train.py --config demo --workdir runs/profile-demo [--set k=v ...] \\
        [--warmup 3] [--steps 5] [--top 10]

The command line of research.tools.profile_train (its module doc: what is traced and how
self time is counted).
"""
import sys

from research.tools.profile_train import main

if __name__ == "__main__":
    sys.exit(main())
