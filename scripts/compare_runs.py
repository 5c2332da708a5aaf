"""Compares finished training runs at equal wall time, at their end and on test.

    python scripts/compare_runs.py runs/demo runs/demo_v3plus --name decoder --json

The command line of research.tools.compare_runs (its module doc says what is compared).
"""
import sys

from research.tools.compare_runs import main

if __name__ == "__main__":
    sys.exit(main())
