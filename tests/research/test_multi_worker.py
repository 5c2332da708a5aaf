"""Multi-worker training (issue 12): 2 workers of MultiWorkerMirroredStrategy on localhost
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
from research.reliability.fault_train import sgd_optimizer
from tests.helpers import read_csv

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
FAIL_FAST_BOUND = 60       # s from a SIGKILL to the other's exit (README: measured 1.1-18.2 s; TF heartbeat 10 s)


def _train_args(workdir, voc_root):
    args = ["--config", "smoke", "--workdir", workdir, "--set", f"voc_root={voc_root}",
            "--set", "distribute=multi_worker"]
    for item in SETS:
        args += ["--set", item]
    return args


def run_workers(workdir, voc_root, kill_at=None, timeout=RUN_TIMEOUT):
    """Two workers; `kill_at` (worker, "point:n") SIGKILLs that worker at a kill point.

    Returns (workers, failed index or None, seconds from the first exit to the last).
    Fails when a worker had to be stopped: still running FAIL_FAST_BOUND s after the other
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
    exits = [w.exited_at for w in workers]
    return workers, failed, max(exits) - min(exits)


def _output(workers):
    return "\n".join(f"[worker {w.index}] {line}" for w in workers for line in w.tail)


def _checkpoint_values(workdir):
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith("model/")}


def _files(workdir):
    """Relative paths of every file, TensorBoard event files counted per folder."""
    found = []
    for folder, _, files in os.walk(workdir):
        for name in files:
            path = os.path.relpath(os.path.join(folder, name), workdir)
            found.append(os.path.dirname(path) + "/<events>" if "tfevents" in name else path)
    return sorted(found)


def _assert_rows_equal(rows, expected, rel=1e-4):
    assert [(r["epoch"], r["step"]) for r in rows] == [(r["epoch"], r["step"]) for r in expected]
    for got, want in zip(rows, expected):
        for name in ("loss", "val_loss", "learning_rate") + train_lib.METRIC_NAMES + tuple(
                "val_" + m for m in train_lib.METRIC_NAMES):
            assert float(got[name]) == pytest.approx(float(want[name]), rel=rel, abs=1e-7), name


@pytest.fixture(scope="module")
def two_worker_run(synthetic_voc_root, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("mw") / "run")
    workers, failed, _ = run_workers(workdir, synthetic_voc_root)
    assert failed is None, _output(workers)
    return workdir


def test_two_workers_equal_one_process(two_worker_run, smoke_config, tmp_path, monkeypatch):
    monkeypatch.setattr(build, "make_optimizer", sgd_optimizer)
    config = config_lib.apply_overrides(smoke_config, list(SETS))
    single = str(tmp_path / "single")
    train_lib.train_and_evaluate(config, single)
    _assert_rows_equal(read_csv(os.path.join(two_worker_run, "train_log.csv")),
                       read_csv(os.path.join(single, "train_log.csv")))
    ours, theirs = _checkpoint_values(two_worker_run), _checkpoint_values(single)
    assert sorted(ours) == sorted(theirs)
    for name, value in theirs.items():
        np.testing.assert_allclose(ours[name], value, rtol=1e-5, atol=1e-5, err_msg=name)
    # One CSV, one export, one TensorBoard log per split, nothing from the other worker.
    assert _files(two_worker_run) == _files(single)
    log_text = open(os.path.join(two_worker_run, "train.log")).read()
    assert log_text.count("runtime:") == 1 and '"workers": 2' in log_text


def test_a_killed_worker_stops_the_other_and_a_relaunch_finishes_equal(two_worker_run, synthetic_voc_root,
                                                                       tmp_path):
    workdir = str(tmp_path / "killed")
    # Worker 1 dies after its 5th optimizer step (epoch 2, mid-epoch; last checkpoint: 4).
    workers, failed, spread = run_workers(workdir, synthetic_voc_root, kill_at=(1, "step:5"))
    assert workers[1].process.returncode == -signal.SIGKILL, _output(workers)
    assert workers[0].process.returncode not in (0, None), _output(workers)
    assert not workers[0].stopped_by_launcher, _output(workers)
    assert spread < FAIL_FAST_BOUND, _output(workers)
    assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith("ckpt-4")

    workers, failed, _ = run_workers(workdir, synthetic_voc_root)
    assert failed is None, _output(workers)
    assert any("resumed from" in line and "ckpt-4: step 4" in line for line in workers[0].tail) or \
        "ckpt-4: step 4" in open(os.path.join(workdir, "train.log")).read()
    _assert_rows_equal(read_csv(os.path.join(workdir, "train_log.csv")),
                       read_csv(os.path.join(two_worker_run, "train_log.csv")))
    ours, reference = _checkpoint_values(workdir), _checkpoint_values(two_worker_run)
    for name, value in reference.items():
        np.testing.assert_allclose(ours[name], value, rtol=1e-5, atol=1e-5, err_msg=name)
    assert not any("_temp" in path for path in _files(workdir))


# ---------------------------------------------------------------------------------
# Exact data position (one process).
# ---------------------------------------------------------------------------------
def _with_bad_samples(voc_root, folder):
    """A VOC root sharing `voc_root`'s files whose train list also names two unreadable samples."""
    from research.data import voc

    root = str(folder)
    os.makedirs(os.path.join(root, "ImageSets", "Segmentation"))
    os.makedirs(os.path.join(root, "JPEGImages"))
    os.symlink(os.path.join(voc_root, "SegmentationClass"), os.path.join(root, "SegmentationClass"))
    for name in os.listdir(os.path.join(voc_root, "JPEGImages")):
        os.symlink(os.path.join(voc_root, "JPEGImages", name), os.path.join(root, "JPEGImages", name))
    for name in ("broken_a", "broken_b"):
        with open(os.path.join(root, "JPEGImages", name + ".jpg"), "wb") as f:
            f.write(b"not a jpeg\n")
    for subset in ("train", "val"):
        ids = voc.read_id_list(voc.split_file(voc_root, subset))
        if subset == "train":
            ids = ids[:3] + ["broken_a"] + ids[3:6] + ["broken_b"] + ids[6:]
        with open(os.path.join(root, "ImageSets", "Segmentation", f"{subset}.txt"), "w") as f:
            f.write("".join(i + "\n" for i in ids))
    return root


def test_skip_bad_resume_equals_the_uninterrupted_run(smoke_config, tmp_path, monkeypatch):
    # 10 listed, 8 good: a data epoch has 4 batches of 2, not 10 // 2 = 5, so a position
    # derived from the step would be wrong after step 4.
    voc_root = _with_bad_samples(smoke_config.voc_root, tmp_path / "voc")
    config = smoke_config.replace(voc_root=voc_root, skip_bad=True, epochs=3, steps_per_epoch=3,
                                  checkpoint_every_steps=100, export_best=False, tensorboard_images=0)
    reference = train_lib.train_and_evaluate(config, str(tmp_path / "straight"))

    workdir = str(tmp_path / "interrupted")
    original_update = train_lib.ProgressBar.update

    def interrupt_at_step_5(self, steps=1, **values):   # data epoch 1, its first batch
        original_update(self, steps, **values)
        if self.count == 2 and self.desc.startswith("epoch 2/"):
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(train_lib.ProgressBar, "update", interrupt_at_step_5)
    with pytest.raises(train_lib.TrainingInterrupted, match="at step 5"):
        train_lib.train_and_evaluate(config, workdir)
    monkeypatch.setattr(train_lib.ProgressBar, "update", original_update)
    saved = train_lib.LoopState.from_json(tf.train.load_checkpoint(
        tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))).get_tensor(
        "loop_state/.ATTRIBUTES/VARIABLE_VALUE").decode())
    assert (saved.step, saved.data_epoch, saved.data_batches) == (5, 1, 1)

    resumed = train_lib.train_and_evaluate(config, workdir)
    assert resumed["step"] == reference["step"] == 9
    _assert_rows_equal(resumed["history"], reference["history"], rel=1e-5)
    ours, theirs = _checkpoint_values(workdir), _checkpoint_values(str(tmp_path / "straight"))
    for name, value in theirs.items():
        np.testing.assert_allclose(ours[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


# ---------------------------------------------------------------------------------
# No pretrained file needed to restore a checkpoint.
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("weights", ["imagenet", "/nonexistent/resnet50_notop.h5"])
def test_evaluate_from_a_checkpoint_needs_no_pretrained_file(smoke_config, tmp_path, monkeypatch, weights):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty_keras_home"))   # no cached ImageNet file
    config = smoke_config.replace(weights=weights)
    with pytest.raises(Exception, match="pretrained weights|weights file not found|not available"):
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
