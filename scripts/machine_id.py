"""Prints a file-name-safe id of this machine for per-machine benchmark baselines.

pytest-benchmark's own machine id holds only the OS and Python version, so saved runs
from different machines would mix; `make bench` and `make bench-check` keep them in
benchmarks/baselines/<this id>/, and measured results go to benchmarks/results/<this id>/.
The id is the host name, CPU model and core count (e.g. vm-AMD-EPYC-2cpu).

Runs with any Python 3 (the Makefile calls it before the project is installed).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from research.provenance import benchmark_folder, machine_id  # noqa: E402,F401


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmark-folder", action="store_true",
                        help="print instead the subfolder pytest-benchmark saves runs of this Python in "
                             "(the only one --benchmark-compare reads), e.g. Linux-CPython-3.11-64bit")
    args = parser.parse_args(argv)
    print(benchmark_folder() if args.benchmark_folder else machine_id())
    return 0


if __name__ == "__main__":
    sys.exit(main())
