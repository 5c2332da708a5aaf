"""Prints a file-name-safe id of this machine for per-machine benchmark baselines.

pytest-benchmark's own machine id holds only the OS and Python version, so saved runs
from different machines would mix; `make bench` and `make bench-check` keep them in
benchmarks/baselines/<this id>/. The id is the host name, CPU model and core count
(e.g. vm-AMD-EPYC-2cpu).

`--benchmark-folder` prints instead the subfolder pytest-benchmark saves runs of this
Python in (and the only one `--benchmark-compare` reads), e.g. Linux-CPython-3.11-64bit.
"""
import os
import platform
import re
import sys


def machine_id():
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1] for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    raw = f"{platform.node()}-{model.strip() or platform.machine()}-{os.cpu_count()}cpu"
    return re.sub(r"[^A-Za-z0-9]+", "-", raw).strip("-")


def benchmark_folder():
    """pytest-benchmark's machine folder for the running Python (its get_machine_id)."""
    major, minor = platform.python_version_tuple()[:2]
    bits = "64" if sys.maxsize > 2 ** 32 else "32"
    return f"{platform.system()}-{platform.python_implementation()}-{major}.{minor}-{bits}bit"


if __name__ == "__main__":
    print(benchmark_folder() if sys.argv[1:] == ["--benchmark-folder"] else machine_id())
