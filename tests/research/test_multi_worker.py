"""Multi-worker training: 2 workers of MultiWorkerMirroredStrategy on localhost
equal one process on the same global batch; a SIGKILLed worker makes the other fail
fast and a relaunch finishes equal to the uninterrupted run; exact data position on
resume with skip_bad; evaluating a checkpoint needs no pretrained file.

Workers are real processes on free ports, started and supervised by research.launch's
functions (as the launcher and the chaos run do): every wait is bounded and every child
has ended when they return. The runs compared here train with plain SGD
(research.reliability.fault_train --sgd; in-process the same function):
one process and two workers sum in different orders, and Adam's first update,
lr * g / (|g| + eps), turns the round-off of a near-zero gradient into a weight change
of up to lr, where SGD's stays round-off.
"""
import os
import signal
import socket
import sys

import numpy as np
import pytest
import tensorflow as tf

from research import build, launch
from research import config as config_lib
from research import evaluate as evaluate_lib
from research import export as export_lib
from research import train as train_lib
from research.fileio import atomic_write_json
from research.models import PretrainedWeightsError
from research.models import weights as weights_module
from research.reliability.fault_train import sgd_optimizer
from tests.helpers import assert_rows_equal, checkpoint_values, read_csv

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAULT_TRAIN = (sys.executable, "-m", "research.reliability.fault_train")
# The smoke config at 32 px, 2 epochs of 3 steps of a global batch of 4 (2 per worker;
# a data epoch of the 8 train images is 2 batches), checkpoints every 2 steps. SGD at
# 1e-4: with batch 2 and lr 1e-3 this tiny network amplifies round-off about tenfold
# per step (BatchNorm over a few values per channel), so reduction order alone moved
# epoch 2's loss by 0.7 % (measured; epoch 1 agreed within 1e-4).
SETS = ("epochs=2", "steps_per_epoch=3", "checkpoint_every_steps=2", "tensorboard_images=0",
        "batch_size=4", "eval_batch_size=4", "learning_rate=1e-4")
RUN_TIMEOUT = 600          # a whole 2-worker run, on a busy 2-core machine
# A hang guard, not a speed goal: how long the launcher waits, after one worker failed,
# for the other to exit by itself (it notices through TF's 10 s coordination heartbeat)
# before stopping it, which fails the test.
FAIL_FAST_BOUND = 60


def _train_args(workdir, voc_root):
    args = ["--config", "smoke", "--workdir", workdir, "--set", f"voc_root={voc_root}",
            "--set", "distribute=multi_worker"]
    for item in SETS:
        args += ["--set", item]
    return args


def run_workers(workdir, voc_root, kill_at=None, timeout=RUN_TIMEOUT):
    """Two workers; `kill_at` (worker, "point:n") SIGKILLs that worker at a kill point.

    Returns (workers, failed index or None). Fails when a worker had to be stopped: still running FAIL_FAST_BOUND s after the other
    failed (a hang), or after `timeout`.
    """
    commands = []
    for index in range(2):
        kill = ["--kill-at", kill_at[1]] if kill_at and kill_at[0] == index else []
        commands.append([*FAULT_TRAIN, "--sgd", *kill, "--"] + _train_args(workdir, voc_root))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    workers = launch.start_workers(commands, env=env, cwd=REPO)
    messages = []
    try:
        failed = launch.supervise(workers, fail_grace=FAIL_FAST_BOUND, stop_grace=5.0, timeout=timeout,
                                  report=messages.append)
    finally:
        launch.stop_workers(workers, grace=0.0)
    assert not any(w.stopped_by_launcher for w in workers), "; ".join(messages) + "\n" + _output(workers)
    return workers, failed


def _output(workers):
    return "\n".join(f"[worker {w.index}] {line}" for w in workers for line in w.tail)


def _files(workdir):
    """Relative paths of every file, TensorBoard event files counted per folder."""
    found = []
    for folder, _, files in os.walk(workdir):
        for name in files:
            path = os.path.relpath(os.path.join(folder, name), workdir)
            found.append(os.path.dirname(path) + "/<events>" if "tfevents" in name else path)
    return sorted(found)


@pytest.fixture(scope="module")
def two_worker_run(synthetic_voc_root, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("mw") / "run")
    workers, failed = run_workers(workdir, synthetic_voc_root)
    assert failed is None, _output(workers)
    return workdir


@pytest.mark.slow
def test_two_workers_equal_one_process(two_worker_run, smoke_config, tmp_path, monkeypatch):
    monkeypatch.setattr(build, "make_optimizer", sgd_optimizer)
    config = config_lib.apply_overrides(smoke_config, list(SETS))
    single = str(tmp_path / "single")
    train_lib.train_and_evaluate(config, single)
    assert_rows_equal(read_csv(os.path.join(two_worker_run, "train_log.csv")),
                       read_csv(os.path.join(single, "train_log.csv")))
    ours, theirs = checkpoint_values(two_worker_run), checkpoint_values(single)
    assert sorted(ours) == sorted(theirs)
    for name, value in theirs.items():
        np.testing.assert_allclose(ours[name], value, rtol=1e-5, atol=1e-5, err_msg=name)
    # One CSV, one export, one TensorBoard log per split, nothing from the other worker.
    assert _files(two_worker_run) == _files(single)
    log_text = open(os.path.join(two_worker_run, "train.log")).read()
    assert log_text.count("runtime:") == 1 and '"workers": 2' in log_text


@pytest.mark.slow
def test_a_killed_worker_stops_the_other_and_a_relaunch_finishes_equal(two_worker_run, synthetic_voc_root,
                                                                       tmp_path):
    workdir = str(tmp_path / "killed")
    # Worker 1 dies after its 5th optimizer step (epoch 2, mid-epoch; last checkpoint: 4).
    workers, failed = run_workers(workdir, synthetic_voc_root, kill_at=(1, "step:5"))
    assert workers[1].process.returncode == -signal.SIGKILL, _output(workers)
    assert workers[0].process.returncode not in (0, None), _output(workers)
    assert not workers[0].stopped_by_launcher, _output(workers)
    assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith("ckpt-4")

    workers, failed = run_workers(workdir, synthetic_voc_root)
    assert failed is None, _output(workers)
    assert any("resumed from" in line and "ckpt-4: step 4" in line for line in workers[0].tail) or \
        "ckpt-4: step 4" in open(os.path.join(workdir, "train.log")).read()
    assert_rows_equal(read_csv(os.path.join(workdir, "train_log.csv")),
                       read_csv(os.path.join(two_worker_run, "train_log.csv")))
    ours, reference = checkpoint_values(workdir), checkpoint_values(two_worker_run)
    for name, value in reference.items():
        np.testing.assert_allclose(ours[name], value, rtol=1e-5, atol=1e-5, err_msg=name)
    assert not any("_temp" in path for path in _files(workdir))


# ---------------------------------------------------------------------------------
# Exact data position (one process).
# ---------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------
# No pretrained file needed to restore a checkpoint.
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("weights,missing", [("imagenet", "are not available"),
                                             ("/nonexistent/resnet50_notop.h5", "weights file not found")])
def test_evaluate_from_a_checkpoint_needs_no_pretrained_file(smoke_config, tmp_path, monkeypatch, weights, missing):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty_keras_home"))   # no cached ImageNet file
    with socket.socket() as probe:  # an origin that refuses at once: no download either
        probe.bind(("127.0.0.1", 0))
        monkeypatch.setattr(weights_module, "RESNET50_NOTOP_URL",
                            f"http://127.0.0.1:{probe.getsockname()[1]}/resnet50_notop.h5")
    # The full ResNet-50 (pretrained weights need it), at the smoke run's 32 px.
    config = smoke_config.replace(weights=weights, backbone_blocks=(3, 4, 6, 3), backbone_width=64)
    with pytest.raises(PretrainedWeightsError, match=missing):
        build.build_model(config)                                   # a fresh start does need it
    model = build.build_model(config, pretrained=False)
    assert model.get_layer("preprocessing").mode == "caffe"        # what those weights imply
    workdir = str(tmp_path / "run")
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model), os.path.join(workdir, "checkpoints"),
                               max_to_keep=1).save(checkpoint_number=3)
    atomic_write_json(os.path.join(workdir, "config.json"), {"config": config.to_dict(), "runtime": {}})
    result = evaluate_lib.evaluate(workdir, subset="val", samples=0, hardest=0, source="checkpoint")
    assert result["num_images"] > 0
    loaded = export_lib.load_model(workdir, export_lib.read_run_config(workdir), source="checkpoint")
    images = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(loaded.model(images).numpy(), model(images).numpy(), rtol=1e-6, atol=1e-6)
