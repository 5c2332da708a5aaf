"""Writes the `make demo` report: training curve, test metrics against a majority baseline.

    python scripts/demo_report.py --workdir runs/demo [--started-at EPOCH_SECONDS]

The command line of research.tools.demo_report (writes WORKDIR/REPORT.md).
"""
import sys

from research.tools.demo_report import main

if __name__ == "__main__":
    sys.exit(main())
