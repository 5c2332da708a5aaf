"""Where a measured number comes from: the machine, the software, the commit, the command.

Every saved artifact of measured numbers carries one `provenance` block (research/results.py
writes them), and every table `make docs` generates from one prints it as one line:

    {"machine": "vm-AMD-EPYC-2cpu", "tensorflow": "2.21.0", "commit": "a6d7783",
     "date": "2026-11-29T17:50:06+00:00",
     "command": "python scripts/demo_report.py --workdir runs/demo --json"}

Standard library only: scripts/machine_id.py runs this before the project is installed.
"""
import datetime
import importlib.metadata
import os
import platform
import re
import shlex
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROVENANCE_KEYS = ("machine", "tensorflow", "commit", "date", "command")


def machine_id():
    """A file-name-safe id of this machine: host name, CPU model, core count.

    pytest-benchmark's own machine id holds only the OS and Python version, so saved runs
    of different machines would mix; e.g. "vm-AMD-EPYC-2cpu".
    """
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1] for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    raw = f"{platform.node()}-{model.strip() or platform.machine()}-{os.cpu_count()}cpu"
    return re.sub(r"[^A-Za-z0-9]+", "-", raw).strip("-")


def benchmark_folder():
    """pytest-benchmark's machine folder for the running Python (its get_machine_id),
    e.g. "Linux-CPython-3.11-64bit": the only subfolder `--benchmark-compare` reads."""
    major, minor = platform.python_version_tuple()[:2]
    bits = "64" if sys.maxsize > 2 ** 32 else "32"
    return f"{platform.system()}-{platform.python_implementation()}-{major}.{minor}-{bits}bit"


def tensorflow_version():
    """The installed TensorFlow's version, read from its metadata (TensorFlow is not imported)."""
    for name in ("tensorflow", "tensorflow-cpu", "tf-nightly"):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "not installed"


def git_commit(root=REPO):
    """The checkout's short commit id, with "+dirty" when tracked files differ from it;
    "unknown" outside a git checkout."""
    def git(*args):
        return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                              timeout=30, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "--short=7", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def command_line(program, argv=None):
    """The command as a user types it: `program` (e.g. "python scripts/ablate.py") and its
    arguments (`argv`, or this process's when None), shell-quoted."""
    return " ".join([program, *(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))])


def provenance(command, root=REPO):
    """The provenance block of a measurement made now by `command` (a string)."""
    return {"machine": machine_id(), "tensorflow": tensorflow_version(), "commit": git_commit(root),
            "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
            "command": command}


def provenance_line(block):
    """One Markdown line naming where a table's numbers come from."""
    date = str(block["date"]).replace("T", " ")[:16]
    return (f"Measured on `{block['machine']}`, TensorFlow {block['tensorflow']}, commit "
            f"{block['commit']}, {date} UTC, by `{block['command']}`.")

