"""The loop's bookkeeping and schedules, pure Python: no TensorFlow, no model."""
import subprocess
import sys

import pytest

from research.config import Config
from research.training import loop_state, schedules
from research.training.loop_state import LoopState


def test_bookkeeping_modules_do_not_import_tensorflow():
    code = ("import sys, research.training.loop_state, research.training.schedules; "
            "sys.exit('tensorflow' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_early_stopping_and_plateau_schedule():
    config = Config(plateau_patience=2, early_stop_patience=3, plateau_factor=0.5, min_learning_rate=0.2)
    state = LoopState()
    lr = 1.0
    trace = []
    for value in (5.0, 4.0, 4.5, 4.2, 4.1, 3.0, 3.5):
        state.epoch += 1
        lr, best = schedules.update_schedules(state, value, config, "min", lr)
        trace.append((lr, best, state.stopped_early))
        if state.stopped_early:
            break
    # improvements at 5.0, 4.0; then 4.5, 4.2 -> LR halves; 4.1 -> third miss: stop.
    assert trace == [(1.0, True, False), (1.0, True, False), (1.0, False, False),
                     (0.5, False, False), (0.5, False, True)]
    assert state.best == 4.0 and state.best_epoch == 2
    assert schedules.improved(float("nan"), 1.0, "min") is False


def test_learning_rate_schedules():
    poly = Config(lr_schedule="poly", learning_rate=0.1)
    assert schedules.learning_rate_at(poly, 0, 10) == pytest.approx(0.1)
    assert schedules.learning_rate_at(poly, 5, 10) == pytest.approx(0.1 * 0.5 ** 0.9)
    assert schedules.learning_rate_at(poly, 10, 10) == 0.0 and schedules.learning_rate_at(poly, 12, 10) == 0.0
    cosine = Config(lr_schedule="cosine", learning_rate=0.1)
    assert schedules.learning_rate_at(cosine, 5, 10) == pytest.approx(0.05)
    assert schedules.learning_rate_at(cosine, 10, 10) == pytest.approx(0.0)
    warm = Config(lr_schedule="poly", learning_rate=0.1, warmup_steps=4)
    assert [schedules.learning_rate_at(warm, s, 100) for s in range(3)] == pytest.approx(
        [0.1 * (s + 1) / 4 * (1 - s / 100) ** 0.9 for s in range(3)])
    assert schedules.learning_rate_at(warm, 4, 100) == pytest.approx(0.1 * 0.96 ** 0.9)
    plateau = Config(lr_schedule="plateau", learning_rate=0.1)
    assert schedules.learning_rate_at(plateau, 7, 10) == 0.1
    assert schedules.learning_rate_at(plateau, 7, 10, base=0.01) == 0.01
    assert schedules.schedule_steps(Config(epochs=4), 5) == 20
    assert schedules.schedule_steps(Config(total_steps=7), 5) == 7


def test_gradient_checks_on_log_and_checkpoint_steps():
    config = Config(log_every_steps=10, checkpoint_every_steps=4)
    checked = []
    for step in range(12):   # steps taken before the one about to run; 6 per epoch
        state = LoopState(step=step, epoch_steps=step % 6)
        if loop_state.checks_gradients(state, 6, config, loss_scaling=False):
            checked.append(step + 1)
    assert checked == [4, 6, 8, 10, 12]  # checkpoints 4, 8, 12; epoch ends 6, 12; log 10
    assert loop_state.checks_gradients(LoopState(), 6, config, loss_scaling=True)


def test_mid_epoch_saves_leave_the_epoch_end_to_its_own_checkpoint():
    config = Config(checkpoint_every_steps=3)
    due = [s for s in range(1, 13)
           if loop_state.mid_epoch_save_due(LoopState(step=s, epoch_steps=(s - 1) % 6 + 1), config, 6)]
    assert due == [3, 9]    # 6 and 12 end an epoch


def test_old_checkpoints_derive_the_data_position_from_the_step():
    old = LoopState.from_json('{"step": 7, "epoch": 2}')   # no data position fields
    assert old.data_epoch is None and old.workers is None
    assert loop_state.data_position(old, 3) == (2, 1)
    state = LoopState(step=7, data_epoch=1, data_batches=4)
    assert loop_state.data_position(state, 3) == (1, 4)
    loop_state.advance_data_position(state, 1)
    assert (state.data_epoch, state.data_batches) == (1, 5)
    loop_state.advance_data_position(state, 2)
    assert (state.data_epoch, state.data_batches) == (2, 1)
    with pytest.raises(ValueError, match="data position"):
        loop_state.advance_data_position(LoopState(), 0)


def test_a_step_and_an_epoch_are_counted_and_closed():
    config = Config(monitor="val_loss", plateau_patience=1, plateau_factor=0.5, lr_schedule="plateau")
    state = LoopState(data_epoch=0, data_batches=0, base_learning_rate=0.1)
    loop_state.record_step(state, 2.0, batch_epoch=0, skipped=False, epoch_seconds=1.0)
    loop_state.record_step(state, 4.0, batch_epoch=1, skipped=True, epoch_seconds=3.0)
    assert (state.step, state.epoch_steps, state.data_epoch, state.data_batches) == (2, 2, 1, 1)
    assert (state.skipped_steps, state.epoch_skipped) == (1, 1)
    assert loop_state.running_loss(state) == 3.0
    metrics = {"pixel_accuracy": 0.9, "mean_accuracy": 0.5, "mean_iou": 0.4}
    row = loop_state.epoch_row(state, metrics, 1.5, metrics, 0.1, batch_size=4)
    assert row["epoch"] == 1 and row["loss"] == 3.0 and row["images_per_second"] == pytest.approx(8 / 3)
    assert set(row) == set(loop_state.CSV_COLUMNS)
    assert loop_state.close_epoch(state, row, config, "min") is True       # the first epoch is the best
    assert (state.epoch, state.epoch_steps, state.epoch_loss_sum, state.epoch_skipped) == (1, 0, 0.0, 0)
    assert state.history == [row] and state.skipped_steps == 1
    worse = dict(row, val_loss=2.0)
    assert loop_state.close_epoch(state, worse, config, "min") is False     # plateau: halved, float32
    assert state.base_learning_rate == loop_state.as_float32(0.05)
    assert not loop_state.run_finished(state, Config(epochs=3)) and loop_state.run_finished(state, Config(epochs=2))
