"""Training: a hand-written tf.function loop with XLA, mixed precision and tf.distribute.

`train_and_evaluate(config, workdir)` does the work; `python -m research.train` is a
thin shell over it. What the book gets from Keras callbacks is written into the loop:
LR on plateau, early stopping, a CSV log, TensorBoard, checkpoints with resume, the
best model exported, a NaN guard and profiling.

The loop reads as a list of named steps over explicit state (`_train`): set up the
runtime, the input and the train state; restore or start the `LoopState`; then until
the run is finished, `train_one_step` or, when the epoch's steps are done,
`end_of_epoch`; `finish`. The pieces live in `research.training`.

A run's working directory:
  config.json      the config and the runtime choices (device, oneDNN, XLA, precision)
  train.log        the log of every run that used this workdir
  train_log.csv    one row per finished epoch (rewritten atomically from the checkpoint)
  checkpoints/     model, optimizer, metric and loop state (research.training.checkpoints)
  tensorboard/     train/ and val/ scalars, predicted masks, profiler traces
  export/          the best model by `config.monitor` (research/export.py)

Resuming: when `workdir` holds a checkpoint the run continues from it (same step,
learning rate, plateau and early-stop state, same data order: every epoch's order and
augmentation depend only on (seed, epoch), so the loop rebuilds the data epoch stored
in the loop state and skips the batches of it it already trained on).

Several workers (`distribute="multi_worker"`, TF_CONFIG; `python -m research.launch`):
each trains on its slice of every global batch; only the chief writes the files above
(the others take part in checkpoint saves through temporary folders); see
`research.training.distributed`, `research.training.checkpoints` and docs/distributed.md.
"""
import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import signal
import sys
import time

import tensorflow as tf
import keras

import kernels
from research import build
from research import cli
from research import config as config_lib
from research import configs
from research import export as export_lib
from research import memory
from research import runtime
from research.data import datasets, pipeline
from research.faults import kill_point
from research.progress import ProgressBar
from research.training import schedules
from research.training.checkpoints import CheckpointFiles, Checkpointer, checkpoint_step, remove_leftovers
from research.training.distributed import batch_epoch, check_role, distribute_batches, make_worker_gather
from research.training.ema import averaged_weights, start_averages
from research.training.loop_state import (
    CSV_COLUMNS, METRIC_NAMES, LoopState, checks_gradients, close_epoch, data_position, epoch_done,
    epoch_row, is_multiple_of, mid_epoch_save_due, record_step, run_finished, running_loss)
from research.training.outputs import RunOutputs, StepProfiler
from research.training.steps import make_eval_step, make_train_step, run_evaluation

log = logging.getLogger("research")


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM stopped the run after a checkpoint was written."""


class NonFiniteLossError(FloatingPointError):
    """The loss or the gradients became NaN/Inf; the last good checkpoint was kept."""


# ---------------------------------------------------------------------------------
# Signals: Ctrl-C and SIGTERM finish the step, write a checkpoint, then stop.
# ---------------------------------------------------------------------------------
class StopRequest:
    """Records SIGINT/SIGTERM instead of dying mid-write; the loop polls `.signal`."""

    def __init__(self):
        self.signal = None
        self._previous = {}

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signal = signum
        log.warning("received %s: stopping after this step and writing a checkpoint",
                    signal.Signals(signum).name)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _signal_name(signum):
    return signal.Signals(signum).name if signum else "a signal to another worker"


def _add_log_file(workdir):
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)  # train.log gets INFO even when the console shows less
    handler = logging.FileHandler(os.path.join(workdir, "train.log"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    return handler


def _precision_of_the_run(workdir, resolved, device):
    """The dtype policy a resumed run with precision "auto" keeps: its config.json's.

    "auto" is mixed_float16 on a GPU and float32 on a CPU, and the two write different
    checkpoints (mixed_float16's optimizer is a LossScaleOptimizer, with variables of its
    own): a run moved to the other device kind resumes in the precision it was started
    in (with a warning) instead of failing to restore. `resolved`: what "auto" gives on
    this `device` ("gpu" or "cpu").
    """
    saved = export_lib.saved_precision(workdir)
    if saved == resolved or saved not in ("float32", "mixed_float16", "mixed_bfloat16"):
        return resolved
    log.warning("precision auto is %s on this %s, but the run's checkpoints were written in %s: "
                "resuming in %s", resolved, device, saved, saved)
    return saved


def _refuse_another_config(workdir, config, differences, holds, remedy):
    """Raises ValueError when WORKDIR/config.json differs from `config` in fields that
    `differences(saved, config)` names (`research.config.resume_differences` for a
    checkpoint to continue, `restart_differences` for results a fresh start replaces);
    `holds` says what the workdir holds, `remedy` what the same config would do."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return
    saved = config_lib.load_config_file(path)
    names = differences(saved, config)
    if names:
        details = ", ".join(f"{k}: {getattr(saved, k)!r} -> {getattr(config, k)!r}" for k in names)
        raise ValueError(f"{workdir} holds {holds} of a different config ({details}); "
                         f"use a new --workdir, or the same config to {remedy}")


def _earlier_results(workdir):
    """What of an earlier run's results `workdir` holds: "train_log.csv" when it has rows,
    "export/" when it exists (a run killed before its first epoch leaves neither)."""
    found = []
    log_file = os.path.join(workdir, "train_log.csv")
    if os.path.isfile(log_file):
        with open(log_file, encoding="utf-8") as f:
            if sum(1 for line in f if line.strip()) > 1:
                found.append("train_log.csv")
    if os.path.isdir(os.path.join(workdir, "export")):
        found.append("export/")
    return found


# ---------------------------------------------------------------------------------
# Runtime: device, precision, strategy, XLA, and the checkpoint the run resumes.
# ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Runtime:
    """The choices a run makes about where and how it computes, fixed for the run."""
    device: str               # "gpu" or "cpu"
    precision: str            # the Keras dtype policy
    strategy: object          # the tf.distribute strategy
    role: runtime.WorkerRole  # this process's place among the workers
    use_xla: bool
    resume_from: str          # the checkpoint the run resumes, or None
    worker_gather: object     # fn(int) -> every replica's value (a collective)
    info: dict                # what config.json records under "runtime"

    @property
    def loss_scaling(self):
        """Whether the loss is scaled (mixed_float16 only: bfloat16 has float32's range)."""
        return self.precision == "mixed_float16"


def setup_runtime(config, role, resume_from, workdir):
    """Seeds, device, precision, strategy and XLA for `config`; logs the choices."""
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        runtime.enable_determinism(config.seed)
    device = runtime.device_kind()
    gpu_warning = runtime.unused_gpu_warning(runtime.nvidia_smi_output(),
                                             len(tf.config.list_physical_devices("GPU")))
    if gpu_warning:
        log.warning("%s", gpu_warning)
    precision = runtime.resolve_precision(config.precision, device)
    if config.precision == "auto" and resume_from:
        precision = _precision_of_the_run(workdir, precision, device)
    strategy = runtime.make_strategy(config.distribute)
    check_role(strategy, role)
    use_xla, xla_reason = runtime.resolve_jit_compile(
        config.jit_compile, device, precision, strategy.num_replicas_in_sync,
        deterministic=config.deterministic)
    info = {"device": device, "num_replicas": strategy.num_replicas_in_sync,
            "precision": precision, "jit_compile": use_xla, "jit_compile_reason": xla_reason,
            "onednn": runtime.onednn_state(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "deterministic": config.deterministic}
    if role.count > 1:
        info["workers"] = role.count
    log.info("runtime: %s", json.dumps(info))
    return Runtime(device, precision, strategy, role, use_xla, resume_from,
                   make_worker_gather(strategy, role), info)


# ---------------------------------------------------------------------------------
# Input pipeline.
# ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Input:
    """The run's data: train batches from any data position, the val set, TB samples."""
    steps_per_epoch: int
    batches_per_data_epoch: int   # full batches in one pass over the train split
    train_batches: object         # fn(data_epoch, offset) -> iterator of distributed batches
    val: object                   # distributed val dataset (every worker its slice)
    tb_images: tuple              # (images, labels) for the TensorBoard pictures, or None
    palette: object               # uint8 [256, 3]: the dataset's class colours


def make_input(config, rt):
    """The run's `Input`. Every train epoch's order and augmentation depend only on
    (seed, epoch), so the batches can restart at any data position; each batch carries
    its data epoch, so the loop state knows the position exactly."""
    update_batch = config.batch_size * config.accumulate_steps   # the images of one step
    if config.accumulate_steps > 1 and config.batch_size % rt.strategy.num_replicas_in_sync:
        raise ValueError(f"batch_size {config.batch_size} cannot be split evenly over "
                         f"{rt.strategy.num_replicas_in_sync} replicas for gradient accumulation")
    dataset = datasets.dataset_of(config)
    num_train = pipeline.dataset_size(dataset, config.train_subset, split_seed=config.split_seed)
    batches_per_data_epoch = num_train // update_batch
    if batches_per_data_epoch == 0:
        raise ValueError(f"{dataset.root}: the {config.train_subset} split has {num_train} images, "
                         f"fewer than one step's {update_batch} (batch_size x accumulate_steps)")

    def train_batches(data_epoch, offset):
        def global_batches():
            batches = pipeline.make_dataset(
                dataset, config.train_subset, update_batch, tuple(config.input_size),
                resize_to_before_crop=config.resize_to_before_crop, augmentation=config.augmentation,
                shuffle=True, seed=config.seed, start_epoch=data_epoch, epochs=None,
                drop_remainder=True, skip_bad=config.skip_bad, split_seed=config.split_seed,
                scale_range=config.scale_range, with_epoch=True)
            return batches.skip(offset) if offset else batches

        return iter(distribute_batches(rt.strategy, rt.role, global_batches, update_batch))

    def val_batches():
        batches = pipeline.make_dataset(
            dataset, "val", config.eval_batch_size, tuple(config.input_size),
            epochs=1, pad_final_batch=True, skip_bad=config.skip_bad, split_seed=config.split_seed)
        return batches.take(config.eval_steps) if config.eval_steps else batches

    # Validation runs on every worker, each on its slice of every val batch: the
    # confusion matrix and the loss normalizers are summed over all of them, so each
    # val image counts once (padding samples are all ignore_label).
    val = distribute_batches(rt.strategy, rt.role, val_batches, config.eval_batch_size)
    tb_images = None
    if config.tensorboard_images and rt.role.is_chief:
        tb_images = next(iter(val_batches().unbatch().batch(config.tensorboard_images).take(1)))
    return Input(config.steps_per_epoch or batches_per_data_epoch, batches_per_data_epoch,
                 train_batches, val, tb_images, dataset.palette)


# ---------------------------------------------------------------------------------
# Train state: model, optimizer, metrics, compiled steps; the learning rate.
# ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TrainState:
    """What the steps compute with: built once, restored from checkpoints in place."""
    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    train_confusion: kernels.StreamingConfusionMatrix
    val_confusion: kernels.StreamingConfusionMatrix
    train_step: object    # tf.function (images, labels, check_gradients) -> (loss, finite)
    eval_step: object     # tf.function (images, labels) -> loss
    check_flags: dict     # {False, True} -> the constant tensors train_step takes


def create_train_state(config, rt):
    """Builds the model (pretrained weights unless a checkpoint replaces them all), the
    optimizer with its slots (so a restore finds them), the metrics and the steps."""
    with rt.strategy.scope():
        model = build.build_model(config, rt.precision, rt.strategy.num_replicas_in_sync,
                                  pretrained=not rt.resume_from)
        optimizer = build.make_optimizer(config, rt.precision)
        optimizer.build(model.trainable_variables)
        start_averages(model, optimizer)   # EMA (ema_decay): replaced by a checkpoint's on resume
        confusions = [kernels.StreamingConfusionMatrix(config.num_classes, config.ignore_label, name=name)
                      for name in ("train_confusion", "val_confusion")]
    train_step = make_train_step(model, optimizer, rt.strategy, config, confusions[0], rt.use_xla,
                                 rt.loss_scaling)
    eval_step = make_eval_step(model, rt.strategy, config, confusions[1], rt.use_xla)
    return TrainState(model, optimizer, *confusions, train_step, eval_step,
                      {flag: tf.constant(flag) for flag in (False, True)})


class LearningRate:
    """Sets the optimizer's learning rate for every step from the step and the loop state
    alone (`schedules.learning_rate_at`: exact on resume), writing the variable only when
    the value changes."""

    def __init__(self, config, optimizer, steps_per_epoch):
        self._config, self._optimizer = config, optimizer
        self._horizon = schedules.schedule_steps(config, steps_per_epoch)
        self._applied = None

    def apply(self, state):
        """Sets the rate of the step `state` is about to take."""
        rate = schedules.learning_rate_at(self._config, state.step, self._horizon, state.base_learning_rate)
        if rate != self._applied:
            self._optimizer.learning_rate.assign(rate)
            self._applied = rate

    def forget(self):
        """A restore rewrote the variable: the next `apply` writes it whatever its value."""
        self._applied = None

    def current(self):
        """The rate the variable holds (host sync)."""
        return float(self._optimizer.learning_rate.numpy())


# ---------------------------------------------------------------------------------
# The loop's named steps. `Run` holds what is fixed for the run; `LoopState` (the
# checkpointed bookkeeping) and `Cursor` (where the loop is) are passed explicitly.
# ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Run:
    """What stays fixed for one training run: its config, device choices, data, model
    and optimizer, checkpoint files, learning rate, outputs, stop request and profiler.
    The loop's steps read it; what changes is in `LoopState` and `Cursor`."""
    config: config_lib.Config
    mode: str                 # "min" or "max" for config.monitor
    runtime: Runtime
    input: Input
    train: TrainState
    checkpointer: Checkpointer
    learning_rate: LearningRate
    outputs: RunOutputs
    stop: StopRequest
    profiler: StepProfiler


@dataclasses.dataclass
class Cursor:
    """Where the loop is: the train batches from the state's data position, and the
    running epoch's progress bar and clock (made at the epoch's first step)."""
    batches: object
    bar: ProgressBar = None
    started: float = None


def open_cursor(run, state):
    """A cursor at `state`'s data position (the start, a resume or a NaN restore)."""
    data_epoch, offset = data_position(state, run.input.batches_per_data_epoch)
    state.data_epoch, state.data_batches = data_epoch, offset
    return Cursor(run.input.train_batches(data_epoch, offset))


def start_epoch_progress(run, state, cursor):
    """The running epoch's bar and clock, continuing from what `state` has trained of it."""
    config = run.config
    cursor.bar = ProgressBar(run.input.steps_per_epoch, config.batch_size * config.accumulate_steps,
                             unit="img", initial=state.epoch_steps, desc=f"epoch {state.epoch + 1}/{config.epochs}")
    cursor.started = time.perf_counter() - state.epoch_seconds


def close_epoch_progress(cursor):
    """Ends the running epoch's progress bar, if one is shown."""
    if cursor.bar is not None:
        cursor.bar.close()
        cursor.bar = None


def save_checkpoint(run, state):
    """A checkpoint of `state` (every worker), then train_log.csv as of it (the chief)."""
    run.checkpointer.save(state)
    run.outputs.write_csv(state.history)


def recover(run, state, message):
    """After a NaN/Inf: the LoopState of the last good checkpoint, restored with a lower
    base learning rate (nan_policy "restore"); raises NonFiniteLossError otherwise.

    Every worker calls this together (the loss and the finite flags are reduced over all
    of them) and decides alike: all restore the same checkpoint, or all stop.
    """
    config, latest = run.config, run.checkpointer.latest
    if config.nan_policy != "restore" or state.nan_restores >= config.max_nan_restores:
        raise NonFiniteLossError(f"{message}; stopped. Last good checkpoint: {latest}")
    steps = run.runtime.worker_gather(checkpoint_step(latest))   # a collective with several workers
    if min(steps) < 0 or len(set(steps)) > 1:
        seen = f" (the workers see checkpoints {steps}, -1: none; each must read the chief's " \
               "checkpoints/ folder to restore)" if len(steps) > 1 else ""
        raise NonFiniteLossError(f"{message}; stopped: no checkpoint to restore{seen}. "
                                 f"Last good checkpoint: {latest}")
    restored = run.checkpointer.restore(latest)
    restored.nan_restores = state.nan_restores + 1
    # From the lower of the checkpoint's rate and the running one: when the NaN comes back
    # before a newer checkpoint, the same checkpoint is restored again, and its rate
    # alone would give the same rate, the same steps and the same NaN.
    rates = [config.learning_rate if rate is None else rate      # None: the config's rate
             for rate in (restored.base_learning_rate, state.base_learning_rate)]
    restored.base_learning_rate = min(rates) * config.nan_lr_factor
    run.learning_rate.forget()
    log.warning("%s: restored %s, base learning rate -> %.3g (restore %d of %d)", message, latest,
                restored.base_learning_rate, restored.nan_restores, config.max_nan_restores)
    return restored


def restart_after_nan(run, state, cursor, message):
    """`recover`, then a new cursor at the restored data position."""
    close_epoch_progress(cursor)
    restored = recover(run, state, message)
    return restored, open_cursor(run, restored)


def train_one_step(run, state, cursor):
    """One optimizer step and its bookkeeping. Returns (state, cursor): new ones after a
    NaN restore. Raises TrainingInterrupted after a signal (a checkpoint written first)."""
    rt, train = run.runtime, run.train
    first_of_epoch = cursor.bar is None
    if first_of_epoch:
        start_epoch_progress(run, state, cursor)
    check = checks_gradients(state, run.input.steps_per_epoch, run.config, rt.loss_scaling)
    trace = run.profiler.step(state.step)
    images, labels, batch_epochs = next(cursor.batches)
    run.learning_rate.apply(state)
    with trace:
        loss, finite = train.train_step(images, labels, train.check_flags[check])
        loss = float(loss)  # host sync point: the NaN guard needs the value
    finite = bool(finite)
    if first_of_epoch:  # after the tracing of this step or of the evaluation before it
        memory.release_free_heap()
    run.profiler.after_step(state.step)
    if not math.isfinite(loss) or (not finite and not rt.loss_scaling):
        what = f"loss {loss}" if not math.isfinite(loss) else "non-finite gradients"
        return restart_after_nan(run, state, cursor, f"{what} at step {state.step + 1} (epoch {state.epoch + 1})")
    kill_point("step")
    record_step(state, loss, batch_epoch(rt.strategy, batch_epochs), skipped=not finite,
                epoch_seconds=time.perf_counter() - cursor.started)
    report_step(run, state, cursor, loss)
    return stop_or_save(run, state, cursor)


def report_step(run, state, cursor, loss):
    """The progress bar; on log steps the train mIoU and TensorBoard's step scalars."""
    values = {"loss": running_loss(state)}
    if is_multiple_of(state.step, run.config.log_every_steps):
        train = run.train
        values["mIoU"] = kernels.segmentation_metrics(train.train_confusion.result().numpy())["mean_iou"]
        scalars = {"loss": loss, "learning_rate": run.learning_rate.current(),
                   "images_per_second": cursor.bar.items_per_second}
        if run.runtime.loss_scaling:
            scalars["loss_scale"] = float(train.optimizer.dynamic_scale.numpy())
        run.outputs.log_step(state.step, scalars)
    cursor.bar.update(1, **values)


def stop_or_save(run, state, cursor):
    """After a step: stop on a signal to any worker, or save when a checkpoint is due,
    never saving a non-finite weight. Returns (state, cursor)."""
    # Every worker stops at the same step, whichever got the signal (a collective).
    stopping = any(run.runtime.worker_gather(int(run.stop.signal or 0)))
    saving = stopping or mid_epoch_save_due(state, run.config, run.input.steps_per_epoch)
    if saving and not run.checkpointer.weights_finite():
        return restart_after_nan(run, state, cursor, f"non-finite weights at step {state.step} "
                                 f"(epoch {state.epoch + 1}), before a checkpoint")
    if saving:
        save_checkpoint(run, state)
    if stopping:
        close_epoch_progress(cursor)
        raise TrainingInterrupted(f"stopped by {_signal_name(run.stop.signal)} at step {state.step}; "
                                  f"checkpoint {run.checkpointer.latest}")
    return state, cursor


def end_of_epoch(run, state, cursor):
    """Evaluates on val, logs the epoch's row, runs the schedules, exports the best model
    and saves the epoch's checkpoint. Returns (state, cursor)."""
    config, train = run.config, run.train
    close_epoch_progress(cursor)
    if not run.checkpointer.weights_finite():  # the epoch's export and checkpoint come next
        return restart_after_nan(run, state, cursor, f"non-finite weights at the end of epoch "
                                 f"{state.epoch + 1} (step {state.step})")
    train_metrics = kernels.segmentation_metrics(train.train_confusion.result().numpy())
    with averaged_weights(train.model, train.optimizer):   # the EMA weights, when kept
        val_loss, val_metrics = run_evaluation(train.eval_step, run.input.val, train.val_confusion)
        row = epoch_row(state, train_metrics, val_loss, val_metrics, run.learning_rate.current(),
                        config.batch_size * config.accumulate_steps)
        is_best = close_epoch(state, row, config, run.mode)
        run.outputs.log_epoch(row, state.step, train.model, run.input.tb_images, run.input.palette)
        if is_best:
            run.outputs.export_best(train.model, {"epoch": state.epoch, "step": state.step,
                                                  config.monitor: row[config.monitor]})
    run.learning_rate.apply(state)  # the checkpoint holds the next step's rate
    log.info("epoch %d: %s", state.epoch, ", ".join(
        f"{k} {row[k]:.4g}" for k in CSV_COLUMNS[2:] if isinstance(row[k], float)))
    train.train_confusion.reset()
    save_checkpoint(run, state)
    run.outputs.flush()
    return state, cursor


def release_input(cursor):
    """Ends the input pipeline's threads (timed: before research.data.pipeline turned
    tf.data's autotuning thread off, their release waited for up to a minute)."""
    started = time.perf_counter()
    cursor.batches = None
    seconds = time.perf_counter() - started
    if seconds > 1.0:
        log.info("input pipeline released in %.1f s", seconds)


def finish(run, state, workdir):
    """The run's result; on the chief, the optional full-resolution val evaluation."""
    run.outputs.write_final_metrics(state)
    result = {"history": state.history, "best": state.best, "best_epoch": state.best_epoch,
              "step": state.step, "stopped_early": state.stopped_early, "runtime": run.runtime.info}
    if run.config.final_eval_full_resolution and run.runtime.role.is_chief:
        # What papers report: val at each image's own size, by the exported best model (or
        # the last checkpoint), at eval_output_stride; written to WORKDIR/eval_val/.
        from research import evaluate as evaluate_lib

        final = evaluate_lib.evaluate(workdir, subset="val", full_resolution=True)
        result["final_eval"] = {k: final[k] for k in evaluate_lib.METRIC_NAMES}
        log.info("val at full resolution: %s", ", ".join(f"{k} {v:.4f}" for k, v in result["final_eval"].items()))
    return result


def _train(config, workdir, role, resume_from, hparam_fields):
    rt = setup_runtime(config, role, resume_from, workdir)
    outputs = RunOutputs(config, workdir, role.is_chief, hparam_fields)
    outputs.write_run_config(rt.info)
    data = make_input(config, rt)
    train = create_train_state(config, rt)
    checkpointer = Checkpointer(train, rt, config, os.path.join(workdir, "checkpoints"))
    state = checkpointer.initial_state()
    outputs.write_csv(state.history)  # as of the checkpoint
    outputs.write_hparams()
    learning_rate = LearningRate(config, train.optimizer, data.steps_per_epoch)
    with StopRequest() as stop, StepProfiler(config, workdir, role.is_chief) as profiler:
        run = Run(config, config_lib.monitor_mode(config), rt, data, train, checkpointer,
                  learning_rate, outputs, stop, profiler)
        cursor = open_cursor(run, state)
        while not run_finished(state, config):
            if epoch_done(state, data.steps_per_epoch):
                state, cursor = end_of_epoch(run, state, cursor)
            else:
                state, cursor = train_one_step(run, state, cursor)
        release_input(cursor)
    return finish(run, state, workdir)


# ---------------------------------------------------------------------------------
# The whole run.
# ---------------------------------------------------------------------------------
def train_and_evaluate(config, workdir, resume=True, hparam_fields=()):
    """Trains `config` in `workdir`, evaluating on val after every epoch.

    Args:
      config: a `research.config.Config`.
      workdir: the run's folder (created if missing). A checkpoint there is resumed.
      resume: False refuses to touch a workdir that already holds a checkpoint.
      hparam_fields: config fields TensorBoard's HParams tab shows for this run besides
        the usual ones (research.training.hparams): an ablation's axes.
    Returns:
      dict with "history" (rows of train_log.csv), "best" and "best_epoch" (the
      monitored value), "step", "stopped_early" and "runtime" (device choices).
    Raises:
      TrainingInterrupted: SIGINT/SIGTERM (a checkpoint was written first).
      NonFiniteLossError: NaN/Inf loss with nan_policy "stop" (or restores used up).
    """
    config = config_lib.check_config(config)   # the monitor among CSV_COLUMNS included
    _refuse_glob_characters(workdir)
    os.makedirs(workdir, exist_ok=True)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    resume_from = tf.train.latest_checkpoint(ckpt_dir)  # the run's one look-up
    if resume_from and not resume:
        raise FileExistsError(f"{workdir} already holds a checkpoint; resume it or use a new --workdir")
    results = None if resume_from else _earlier_results(workdir)
    if resume_from:
        _refuse_another_config(workdir, config, config_lib.resume_differences, "a checkpoint", "resume")
    elif results:
        # No checkpoint, but results a start from scratch would replace: only a rerun of
        # that same run may.
        _refuse_another_config(workdir, config, config_lib.restart_differences,
                               f"the results ({', '.join(results)}) but no checkpoint", "start it again")
    role = runtime.worker_role(config.distribute)
    with _workdir_of(role, workdir, ckpt_dir, resume_from):
        return _train(config, workdir, role, resume_from, hparam_fields)


def _refuse_glob_characters(workdir):
    """Raises ValueError when the workdir's path holds [ ] * or ?: TensorFlow finds a
    checkpoint by matching its path as a glob pattern, so in such a folder it would find
    none, and a rerun would start again from scratch instead of resuming."""
    found = sorted(set("[]*?") & set(os.path.abspath(workdir)))
    if found:
        raise ValueError(f"{workdir}: a run folder's path must not hold {' '.join(found)} (TensorFlow reads "
                         "checkpoint paths as glob patterns and would never find this run's checkpoints "
                         "to resume); choose another --workdir")


@contextlib.contextmanager
def _workdir_of(role, workdir, ckpt_dir, resume_from):
    """The chief logs to WORKDIR/train.log and removes what a killed earlier run left
    half-written; another worker removes only its own checkpoint temp folder."""
    if not role.is_chief:
        shutil.rmtree(CheckpointFiles.temp_dir(ckpt_dir, role), ignore_errors=True)
        yield
        return
    handler = _add_log_file(workdir)
    try:
        remove_leftovers(workdir, ckpt_dir, resume_from)
        yield
    finally:
        log.removeHandler(handler)
        handler.close()


# ---------------------------------------------------------------------------------
# Command line.
# ---------------------------------------------------------------------------------
def step_range(text):
    """argparse type of --profile_steps: "FIRST,LAST" or "STEP" -> [first, last]."""
    first, _, last = text.partition(",")
    try:
        return [int(first), int(last or first)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FIRST,LAST (two step numbers); got {text!r}") from None


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m research.train",
        description="Train a segmentation model with the custom tf.function loop.")
    parser.add_argument("--config", required=True,
                        help="a named config (research/configs/, e.g. demo, smoke, deeplabv3_voc) or a .json file")
    parser.add_argument("--workdir", required=True, help="the run's folder; a checkpoint there is resumed")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field (value parsed as JSON), repeatable")
    parser.add_argument("--profile_steps", default=None, metavar="FIRST,LAST", type=step_range,
                        help="trace these global steps with the TensorBoard profiler "
                             "(shorthand for --set profile_steps=[FIRST,LAST])")
    parser.add_argument("--no-resume", dest="resume", action="store_false",
                        help="refuse to run if the workdir already holds a checkpoint")
    return parser.parse_args(argv)


def main(argv=None):
    """Command-line entry point: the exit status (0, 1 with one error line on stderr, or 130
    when a signal stopped the run after a checkpoint)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    overrides = list(args.overrides)
    if args.profile_steps:
        overrides.append(f"profile_steps={json.dumps(args.profile_steps)}")

    def work():
        config = config_lib.apply_overrides(configs.load_config(args.config), overrides)
        result = train_and_evaluate(config, args.workdir, resume=args.resume)
        if result["history"]:
            last = result["history"][-1]
            log.info("done: %d epochs, step %d; val mean IoU %.4f, best %s %.5g at epoch %s",
                     len(result["history"]), result["step"], last["val_mean_iou"], config.monitor,
                     result["best"], result["best_epoch"])

    return cli.run_main(work, errors=(NonFiniteLossError,), interrupted=(TrainingInterrupted,),
                        bad_file_hint=cli.SKIP_BAD_SET)


if __name__ == "__main__":
    sys.exit(main())
