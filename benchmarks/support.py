"""Helpers the benchmarks import: parametrized cases, items/s, worker processes.

pytest-benchmark's `ops` is calls per second; what we care about is items per second
(images, pixels), so every benchmark records it in `extra_info` via
`record_items_per_second`. Every derived number (items/s, tables, ratios, and
`make bench-check`) uses the MINIMUM time over rounds: noise on a shared machine only
ever adds time, so the minimum is the best estimate of what the code costs.

Importable as `benchmarks.support` (from the repository root) by the benchmarks and by
tests; benchmarks/conftest.py keeps only pytest fixtures.
"""
import json
import os
import select
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench_case(*values, id, baseline=False):
    """One parametrized benchmark case; `baseline=True` marks the comparison side.

    Baselines (Keras layers and `fit`, the book's formulations, the plain `reference_*`
    twins) are measured for the speed-up ratios; `make bench-check` leaves them out
    (`-m "not baseline"`), because a slower Keras or TF op is not a regression of this
    project's code, and Keras `fit`'s step time here is too erratic to hold to 25%.
    """
    return pytest.param(*values, id=id, marks=[pytest.mark.baseline] if baseline else [])


def record_items_per_second(benchmark, items_per_call):
    """Stores items/s (from the minimum call time) in the benchmark's extra_info; returns it."""
    fastest = benchmark.stats.stats.min
    rate = items_per_call / fastest if fastest > 0 else float("nan")
    benchmark.extra_info["items_per_call"] = items_per_call
    benchmark.extra_info["items_per_s"] = rate
    return rate


def comparison_lines(rows):
    """The comparison table's lines for `comparison_table` rows (see there)."""
    baselines = {row[0]: row[2] for row in rows if row[4]}
    memory = any(len(row) > 5 and row[5] is not None for row in rows)
    lines = ["", f"{'group':38s} {'case':30s} {'s/call':>9s} {'items/s':>12s} {'speed-up':>9s}"
             + (f" {'peak GiB':>9s}" if memory else "")]
    for group, case, seconds, items_per_s, *rest in rows:
        base = baselines.get(group)
        speedup = f"{base / seconds:8.2f}x" if base and seconds else "        -"
        line = f"{group:38s} {case:30s} {seconds:9.4f} {items_per_s:12.4g} {speedup}"
        if memory:
            peak = rest[1] if len(rest) > 1 else None
            line += f" {peak / 2 ** 30:9.2f}" if peak is not None else f" {'-':>9s}"
        lines.append(line)
    return lines


class WorkerProcess:
    """A benchmark's worker: `python -m MODULE --worker` with its own oneDNN setting.

    TF_ENABLE_ONEDNN_OPTS is read when TensorFlow is imported, so a setting needs its
    own process. The worker reads one JSON request per line on stdin and answers one
    JSON line on stdout; the pipe costs well under a millisecond, so pytest-benchmark
    can time `request` calls that run one step each.
    """

    def __init__(self, module, onednn):
        env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=str(int(onednn)), TF_CPP_MIN_LOG_LEVEL="2")
        self.name = module
        # From the repository root, where `-m benchmarks.<name>` finds this package.
        self.process = subprocess.Popen([sys.executable, "-m", module, "--worker"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)

    def request(self, message, timeout=None):
        """Sends one request (a JSON-able dict); returns the worker's reply (a dict).

        `timeout` seconds (None: no bound, for benchmarks of slow settings) bound the wait
        for the reply; past it the worker is killed and TimeoutError raised.
        """
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        # One reply line per request, read whole: nothing is left in the pipe's buffer
        # between requests, so select on the descriptor sees every reply.
        if timeout is not None and not select.select([self.process.stdout], [], [], timeout)[0]:
            self.kill()
            raise TimeoutError(f"{self.name} worker: no reply to {message.get('op')!r} in {timeout} s")
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} worker died (exit {self.process.wait()})")
        return json.loads(line)

    def kill(self):
        """Kills the worker and reaps it."""
        self.process.kill()
        self.process.wait()

    def close(self):
        """Ends the worker: closing its stdin makes it exit; killed if it has not in 120 s."""
        self.process.stdin.close()
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
