"""Speed-up floors, measured fast against baseline in one run: no saved baseline needed.

    python scripts/check_speedups.py                    # all checks, ~20 min on 2 cores
    python scripts/check_speedups.py --only loss,confusion
    python scripts/check_speedups.py --degrade atrous=keras --only atrous_r18,train_defaults

The command line of benchmarks/speedups.py, whose doc lists the checks; the floors and the
measurements behind them are its MEASURED table. Writes the measured ratios to
benchmarks/results/<machine id>/speedups.json (--json PATH to change) and exits 1 when a
ratio is below its floor.
"""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)     # benchmarks/ is imported from the repository root

from benchmarks import speedups  # noqa: E402  (reads TF_ENABLE_ONEDNN_OPTS before `research` sets it)


def main(argv=None):
    return speedups.main(argv)


if __name__ == "__main__":
    sys.exit(main())
