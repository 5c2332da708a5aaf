"""Shared benchmark helpers.

pytest-benchmark's `ops` is calls per second; what we care about is items per second
(images, pixels), so every benchmark records it in `extra_info` via `throughput`.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest


def record_items_per_second(benchmark, items_per_call):
    """Stores items/s (from the mean call time) in the benchmark's extra_info; returns it."""
    mean = benchmark.stats.stats.mean
    rate = items_per_call / mean if mean > 0 else float("nan")
    benchmark.extra_info["items_per_call"] = items_per_call
    benchmark.extra_info["items_per_s"] = rate
    return rate


@pytest.fixture(scope="module")
def comparison_table(request):
    """A list to append (group, case, seconds_per_call, items_per_s, is_baseline) rows to.

    At the end of the module the rows are printed as one table, with each case's
    speed-up over its group's baseline (pytest-benchmark's own table has no items/s).
    """
    rows = []
    yield rows
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not rows:
        return
    baselines = {group: seconds for group, _, seconds, _, is_base in rows if is_base}
    lines = ["", f"{'group':38s} {'case':30s} {'s/call':>9s} {'items/s':>12s} {'speed-up':>9s}"]
    for group, case, seconds, items_per_s, _ in rows:
        base = baselines.get(group)
        speedup = f"{base / seconds:8.2f}x" if base and seconds else "        -"
        lines.append(f"{group:38s} {case:30s} {seconds:9.4f} {items_per_s:12.4g} {speedup}")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():  # teardown output is captured otherwise
        for line in lines:
            reporter.write_line(line)
