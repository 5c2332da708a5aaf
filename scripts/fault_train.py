"""Test-only entry point: `python -m research.train` with a SIGKILL planted at a kill point.

    python scripts/fault_train.py [--kill-at POINT:N] [--sgd] -- <research.train arguments>

The command line of research.reliability.fault_train (`python -m
research.reliability.fault_train` is the same); its module doc says what each option does.
"""
import sys

from research.reliability.fault_train import main

if __name__ == "__main__":
    sys.exit(main())
