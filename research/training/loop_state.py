"""The loop's bookkeeping: what the Python side must remember across a kill.

`LoopState` is stored as JSON inside every checkpoint, so it is saved atomically with the
weights; the functions below are the only places that change it. Pure Python (no
TensorFlow): the rules here are tested without building a model.
"""
import dataclasses
import json

import numpy as np

from research.training import schedules

METRIC_NAMES = ("pixel_accuracy", "mean_accuracy", "mean_iou")
CSV_COLUMNS = (
    ("epoch", "step", "loss") + METRIC_NAMES
    + ("val_loss",) + tuple("val_" + m for m in METRIC_NAMES)
    + ("learning_rate", "images_per_second", "epoch_seconds", "skipped_steps")
)


@dataclasses.dataclass
class LoopState:
    """The loop's bookkeeping, saved as JSON in every checkpoint: steps and epochs done,
    train_log.csv's rows, the monitored best and the schedules' waits, the running
    epoch's sums and the data position. Changed only by the functions below, so a resumed
    run continues exactly where the checkpoint was written."""
    step: int = 0                 # optimizer steps taken (global)
    epoch: int = 0                # epochs finished
    history: list = dataclasses.field(default_factory=list)  # rows of train_log.csv
    best: float = None            # best monitored value so far
    best_epoch: int = None
    plateau_wait: int = 0         # epochs since improvement, for LR on plateau
    early_stop_wait: int = 0      # epochs since improvement, for early stopping
    stopped_early: bool = False
    nan_restores: int = 0
    skipped_steps: int = 0        # mixed_float16 steps skipped on overflow, whole run
    epoch_loss_sum: float = 0.0   # the running epoch, so a mid-epoch resume loses nothing
    epoch_steps: int = 0
    epoch_seconds: float = 0.0
    epoch_skipped: int = 0
    # Data position: the data epoch of the last batch trained on and how many batches of
    # that epoch were trained on. None (checkpoints of older versions): derived from
    # `step`, which is right only when every data epoch has num_train // batch_size
    # batches (not with skip_bad, where bad samples shorten them).
    data_epoch: int = None
    data_batches: int = None
    workers: int = None           # processes that trained the run (None: one, older versions)
    base_learning_rate: float = None  # after plateau drops and NaN restores (None: the config's)

    def to_json(self):
        """The state as one JSON text (the checkpoint holds it)."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text):
        """The state `to_json` wrote."""
        return cls(**json.loads(text))


def as_float32(value):
    """`value` rounded to float32, as the optimizer's learning-rate variable holds it."""
    return float(np.float32(value))


def is_multiple_of(step, every):
    """True when `step` is a multiple of `every`; `every` falsy (0 or None) means never."""
    return bool(every) and step % every == 0


def run_finished(state, config):
    """Whether the run has trained all its epochs or stopped early."""
    return state.epoch >= config.epochs or state.stopped_early


def epoch_done(state, steps_per_epoch):
    """Whether every step of the running epoch has been trained."""
    return state.epoch_steps >= steps_per_epoch


def mid_epoch_save_due(state, config, steps_per_epoch):
    """Whether the step just taken ends with a checkpoint inside the epoch (the epoch's
    end always saves one of its own)."""
    return is_multiple_of(state.step, config.checkpoint_every_steps) and state.epoch_steps < steps_per_epoch


def checks_gradients(state, steps_per_epoch, config, loss_scaling):
    """Whether the step about to run (global step `state.step + 1`) checks its gradients.

    The NaN guard's rule (measured cost: docs/training.md, "The NaN guard"): the loss is
    checked every step (the loop reads it anyway); the gradients only on log steps and on
    steps whose end saves a checkpoint (mid-epoch or epoch end), where a non-finite
    gradient is then named as the cause. A non-finite gradient between checks shows up in
    a later loss, and at the latest in the check of all weights before every checkpoint
    and export, so no non-finite weight is ever saved. Under mixed_float16 every step
    checks: the skipped-step count needs it (the LossScaleOptimizer checks them anyway).
    """
    step, epoch_step = state.step + 1, state.epoch_steps + 1
    return (loss_scaling or is_multiple_of(step, config.log_every_steps)
            or is_multiple_of(step, config.checkpoint_every_steps) or epoch_step == steps_per_epoch)


def data_position(state, batches_per_data_epoch):
    """(data epoch, batches of it already trained on) where a resumed run continues."""
    if state.data_epoch is None:
        return divmod(state.step, batches_per_data_epoch)
    return state.data_epoch, state.data_batches


def advance_data_position(state, batch_epoch):
    """Notes that one more batch, of data epoch `batch_epoch`, was trained on."""
    if state.data_epoch is None:
        raise ValueError("advance_data_position needs a known data position (data_position first)")
    if batch_epoch == state.data_epoch:
        state.data_batches += 1
    else:
        state.data_epoch, state.data_batches = batch_epoch, 1


def record_step(state, loss, batch_epoch, skipped, epoch_seconds):
    """Counts one trained step: its loss, its batch's data epoch, whether mixed precision
    skipped it (overflow), and the running epoch's seconds so far."""
    if skipped:
        state.skipped_steps += 1
        state.epoch_skipped += 1
    state.step += 1
    advance_data_position(state, batch_epoch)
    state.epoch_steps += 1
    state.epoch_loss_sum += loss
    state.epoch_seconds = epoch_seconds


def running_loss(state):
    """The running epoch's mean step loss (NaN before its first step)."""
    return state.epoch_loss_sum / state.epoch_steps if state.epoch_steps else float("nan")


def epoch_row(state, train_metrics, val_loss, val_metrics, learning_rate, batch_size):
    """The train_log.csv row of the epoch just trained (`state` not yet advanced)."""
    row = {"epoch": state.epoch + 1, "step": state.step,
           "loss": state.epoch_loss_sum / max(state.epoch_steps, 1),
           "val_loss": val_loss, "learning_rate": learning_rate,
           "images_per_second": state.epoch_steps * batch_size / max(state.epoch_seconds, 1e-9),
           "epoch_seconds": state.epoch_seconds, "skipped_steps": state.epoch_skipped}
    for name in METRIC_NAMES:
        row[name] = train_metrics[name]
        row["val_" + name] = val_metrics[name]
    return row


def close_epoch(state, row, config, mode):
    """Ends the epoch `row` describes: history, schedules (plateau LR, early stop), and
    the running-epoch counters reset. Returns whether the epoch is the best so far."""
    state.epoch += 1
    new_base, is_best = schedules.update_schedules(
        state, row[config.monitor], config, mode, state.base_learning_rate)
    state.base_learning_rate = as_float32(new_base)   # the value the variable holds
    state.history.append(row)
    state.epoch_loss_sum, state.epoch_steps = 0.0, 0
    state.epoch_seconds, state.epoch_skipped = 0.0, 0
    return is_best
