"""A resumed run equals the uninterrupted one: one pair of runs that covers what a resume
must carry (the full tier; the loop's bookkeeping is tested without TensorFlow in
test_loop_state.py).

The config combines everything whose state lives across steps: SGD with momentum and
weight decay, a poly schedule with warmup (the stop falls after the warmup), random
scale jitter, `skip_bad` (10 listed, 8 readable train samples: a data epoch has fewer
batches than the split's length says, so the data position must be stored, not derived
from the step), gradient accumulation (the stop arrives while a step's micro-batches
run: the step ends whole, a checkpoint never holds part of an accumulation) and an EMA
of the weights (checkpointed with the optimizer).
"""
import os
import signal

import numpy as np
import pytest
import tensorflow as tf

from research import train as train_lib
from research.training.loop_state import LoopState
from tests.helpers import assert_rows_equal, checkpoint_values, voc_with_bad_samples


def resume_config(smoke_config, voc_root):
    return smoke_config.replace(
        voc_root=voc_root, skip_bad=True, optimizer="sgd", momentum=0.9, weight_decay=1e-4,
        learning_rate=0.02, lr_schedule="poly", warmup_steps=2, scale_range=(0.5, 2.0),
        accumulate_steps=2, ema_decay=0.5, epochs=3, steps_per_epoch=2, checkpoint_every_steps=100,
        tensorboard_images=0, export_best=False, early_stop_patience=10)


def stop_during_step(monkeypatch, step):
    """SIGTERM to this process as the loop calls the train step for global step `step`
    (before its micro-batches run; the handler only records it). Returns the undo."""
    real_make_train_step = train_lib.make_train_step
    calls = []

    def make_signalling_step(*args, **kwargs):
        train_step = real_make_train_step(*args, **kwargs)

        def signalling_step(*step_args):
            calls.append(1)
            if len(calls) == step:
                os.kill(os.getpid(), signal.SIGTERM)
            return train_step(*step_args)
        return signalling_step

    monkeypatch.setattr(train_lib, "make_train_step", make_signalling_step)
    return lambda: monkeypatch.setattr(train_lib, "make_train_step", real_make_train_step)


@pytest.mark.slow
def test_a_resumed_run_equals_the_uninterrupted_one(smoke_config, tmp_path, monkeypatch):
    config = resume_config(smoke_config, voc_with_bad_samples(smoke_config.voc_root, tmp_path / "voc"))
    reference = train_lib.train_and_evaluate(config, str(tmp_path / "straight"))
    assert [r["step"] for r in reference["history"]] == [2, 4, 6]

    workdir = str(tmp_path / "interrupted")
    undo = stop_during_step(monkeypatch, 3)    # epoch 2's first step: after the warmup
    with pytest.raises(train_lib.TrainingInterrupted, match="at step 3"):
        train_lib.train_and_evaluate(config, workdir)
    undo()
    saved = LoopState.from_json(tf.train.load_checkpoint(
        tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))).get_tensor(
        "loop_state/.ATTRIBUTES/VARIABLE_VALUE").decode())
    # 8 good samples, 4 per step: data epoch 0 had 2 steps, step 3 was data epoch 1's first.
    assert (saved.step, saved.epoch_steps, saved.data_epoch, saved.data_batches) == (3, 1, 1, 1)

    resumed = train_lib.train_and_evaluate(config, workdir)
    assert resumed["step"] == reference["step"] == 6
    assert_rows_equal(resumed["history"], reference["history"], rel=1e-5)
    prefixes = ("model/", "optimizer/")      # weights, momentum slots, EMA averages, iterations
    ours, theirs = checkpoint_values(workdir, prefixes), checkpoint_values(str(tmp_path / "straight"), prefixes)
    assert set(ours) == set(theirs)
    for name, value in theirs.items():
        np.testing.assert_allclose(ours[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
