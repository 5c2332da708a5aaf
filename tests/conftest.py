"""Shared test set-up: quiet TensorFlow logs and the --run-slow switch."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Imported before anything imports TensorFlow, so the tests run with the project's
# runtime defaults (oneDNN), exactly as the command lines do.
import research  # noqa: F401

import pickle
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run tests marked @pytest.mark.slow (make test-all)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        run_slow_modules_first(items)
        return
    skip_slow = pytest.mark.skip(reason="slow: in make test-all (--run-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


def run_slow_modules_first(items):
    """Puts the modules that hold slow tests first, in place, each module's tests kept in
    order. `make test-all` hands whole modules to its xdist workers in this order
    (`--dist loadfile --no-loadscope-reorder`): the minute-long process-level modules
    start first and the many short ones fill the end. xdist's own order (most tests
    first) left the heavy modules with few tests for last, one worker running them
    alone after the other had finished."""
    slow_modules = {item.nodeid.split("::")[0] for item in items if "slow" in item.keywords}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in slow_modules)


@pytest.fixture(scope="session")
def synthetic_voc_root(tmp_path_factory):
    """voc_root (the .../VOC2012 folder) of a small embedded dataset: 8 train, 6 val images."""
    from research.data.synthetic import make_synthetic_voc

    root = tmp_path_factory.mktemp("synthetic_voc")
    make_synthetic_voc(str(root), num_train=8, num_val=6, seed=0)
    return os.path.join(str(root), "VOCdevkit", "VOC2012")


@pytest.fixture(scope="session")
def smoke_config(synthetic_voc_root):
    """The `smoke` config (reduced ResNet, 32 px, a few steps) on the embedded test dataset."""
    from research import configs

    return configs.load_config("smoke").replace(voc_root=synthetic_voc_root)


@pytest.fixture(scope="session")
def two_replica_results(tmp_path_factory):
    """{check: results} of every two-replica check (tests/two_replicas.py), computed once
    per session in one child process (two logical CPUs must exist before TF starts)."""
    out = tmp_path_factory.mktemp("two_replicas") / "results.pickle"
    done = subprocess.run([sys.executable, "-m", "tests.two_replicas", str(out)], cwd=REPO, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0 and out.exists(), done.stderr[-3000:]
    with open(out, "rb") as f:
        return pickle.load(f)
