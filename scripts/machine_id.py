"""Prints a file-name-safe id of this machine for per-machine benchmark baselines.

pytest-benchmark's own machine id holds only the OS and Python version, so saved runs
from different machines would mix; `make bench` and `make bench-check` keep them in
benchmarks/baselines/<this id>/. The id is the host name, CPU model and core count
(e.g. vm-AMD-EPYC-2cpu).
"""
import os
import platform
import re


def machine_id():
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1] for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    raw = f"{platform.node()}-{model.strip() or platform.machine()}-{os.cpu_count()}cpu"
    return re.sub(r"[^A-Za-z0-9]+", "-", raw).strip("-")


if __name__ == "__main__":
    print(machine_id())
