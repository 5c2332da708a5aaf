"""Benchmark fixtures (the helpers the benchmarks import are in benchmarks/support.py).

`comparison_table` prints each module's items/s and speed-up table; `tf_default_onednn`
and `bench_voc_root` are shared set-up.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from benchmarks.support import comparison_lines


_DESELECTED_FILES = pytest.StashKey[set]()


def pytest_deselected(items):
    """Notes the benchmark files some of whose cases `-k` or `-m` left out."""
    if items:
        files = items[0].config.stash.setdefault(_DESELECTED_FILES, set())
        files.update(os.path.basename(str(item.path)) for item in items)


def partial_files(config):
    """Benchmark files (names, sorted) that this run measured only in part: some cases
    deselected (`-k`, `-m`) or single cases named (`file.py::case`)."""
    named = {os.path.basename(arg.split("::")[0]) for arg in config.invocation_params.args if "::" in arg}
    return sorted(config.stash.get(_DESELECTED_FILES, set()) | named)


def pytest_benchmark_update_machine_info(config, machine_info):
    """Adds what a saved run's provenance line needs (`make docs`, research/docs): the
    project's machine id, the TensorFlow version and the command that made the run, and
    the files it measured only in part (the docs' tables skip such a run for those files)."""
    from research.provenance import command_line, machine_id, tensorflow_version

    machine_info["machine_id"] = machine_id()
    machine_info["tensorflow"] = tensorflow_version()
    machine_info["command"] = command_line("python -m pytest", config.invocation_params.args)
    machine_info["partial_files"] = partial_files(config)


@pytest.fixture(scope="module")
def comparison_table(request):
    """A list to append (group, case, seconds_per_call, items_per_s, is_baseline) rows to,
    or (..., is_baseline, peak_bytes): a case's peak memory (bytes, or None).

    At the end of the module the rows are printed as one table, with each case's
    speed-up over its group's baseline (pytest-benchmark's own table has no items/s),
    and a "peak GiB" column when any row has a peak.
    """
    rows = []
    yield rows
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not rows:
        return
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():  # teardown output is captured otherwise
        for line in comparison_lines(rows):
            reporter.write_line(line)


@pytest.fixture(scope="session")
def tf_default_onednn():
    """Whether TensorFlow itself turns oneDNN on on this machine (asked of a fresh process):
    what "TF's default" means in the tables."""
    from research.runtime import tensorflow_default_onednn

    return tensorflow_default_onednn()


@pytest.fixture(scope="session")
def bench_voc_root(tmp_path_factory):
    """voc_root of an embedded dataset for benchmarks: 64 train, 16 val images (200-500 px)."""
    from research.data.synthetic import make_synthetic_voc

    return make_synthetic_voc(str(tmp_path_factory.mktemp("bench_voc")), 64, 16, seed=0, progress=False)
