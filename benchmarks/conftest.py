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
