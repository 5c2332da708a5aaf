"""Training: a hand-written tf.function loop with XLA, mixed precision and tf.distribute.

`train_and_evaluate(config, workdir)` does the work; `python -m research.train` is a
thin shell over it. What the book gets from Keras callbacks is written into the loop:
LR on plateau, early stopping, a CSV log, TensorBoard, checkpoints with resume, the
best model exported, a NaN guard and profiling.

A run's working directory:
  config.json      the config and the runtime choices (device, oneDNN, XLA, precision)
  train.log        the log of every run that used this workdir
  train_log.csv    one row per finished epoch (rewritten atomically from the checkpoint)
  checkpoints/     tf.train.CheckpointManager: model, optimizer, metric and loop state
  tensorboard/     train/ and val/ scalars, predicted masks, profiler traces
  export/          the best model by `config.monitor` (research/export.py)

Resuming: when `workdir` holds a checkpoint the run continues from it (same step,
learning rate, plateau and early-stop state, same data order: every epoch's order and
augmentation depend only on (seed, epoch), so the loop rebuilds the epoch and skips
the batches it already trained on).
"""
import argparse
import csv
import dataclasses
import io
import json
import logging
import math
import os
import re
import shutil
import signal
import sys
import time

import numpy as np
import tensorflow as tf
import keras

import kernels
from research import build
from research import config as config_lib
from research import export as export_lib
from research import runtime
from research.data import pipeline, voc
from research.faults import kill_point
from research.fileio import atomic_write_json, atomic_write_text, remove_interrupted_writes
from research.progress import ProgressBar

log = logging.getLogger("research")

METRIC_NAMES = ("pixel_accuracy", "mean_accuracy", "mean_iou")
CSV_COLUMNS = (
    ("epoch", "step", "loss") + METRIC_NAMES
    + ("val_loss",) + tuple("val_" + m for m in METRIC_NAMES)
    + ("learning_rate", "images_per_second", "epoch_seconds", "skipped_steps")
)


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM stopped the run after a checkpoint was written."""


class NonFiniteLossError(FloatingPointError):
    """The loss or the gradients became NaN/Inf; the last good checkpoint was kept."""


def itstime(step, every):
    """True every `every` steps (big_vision's helper); `every` falsy means never."""
    return bool(every) and step % every == 0


# ---------------------------------------------------------------------------------
# Loop state: everything the Python side must remember across a kill, stored as JSON
# inside the checkpoint so that it is saved atomically together with the weights.
# ---------------------------------------------------------------------------------
@dataclasses.dataclass
class LoopState:
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
    base_learning_rate: float = None  # after plateau drops and NaN restores (None: the config's)

    def to_json(self):
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text):
        return cls(**json.loads(text))


def improved(value, best, mode):
    """Whether `value` beats `best` ("min" or "max"); NaN never improves."""
    if value is None or math.isnan(value):
        return False
    if best is None:
        return True
    return value < best if mode == "min" else value > best


def update_schedules(state, value, config, mode, learning_rate):
    """Plateau LR (lr_schedule "plateau" only) and early stopping after an epoch, as
    Keras' callbacks do.

    Returns (new_learning_rate, is_best). Mutates the waits, best and stop flag.
    """
    is_best = improved(value, state.best, mode)
    if is_best:
        state.best, state.best_epoch = value, state.epoch
        state.plateau_wait = state.early_stop_wait = 0
        return learning_rate, True
    state.plateau_wait += 1
    state.early_stop_wait += 1
    # Only the "plateau" schedule lowers the rate; poly and cosine follow the step alone.
    if config.lr_schedule == "plateau" and state.plateau_wait >= config.plateau_patience:
        new_lr = max(learning_rate * config.plateau_factor, config.min_learning_rate)
        if new_lr < learning_rate:
            log.info("epoch %d: %s did not improve for %d epochs: learning rate %.3g -> %.3g",
                     state.epoch, config.monitor, state.plateau_wait, learning_rate, new_lr)
        learning_rate = new_lr
        state.plateau_wait = 0
    if state.early_stop_wait >= config.early_stop_patience:
        log.info("epoch %d: %s did not improve for %d epochs: early stop (best %.5g at epoch %d)",
                 state.epoch, config.monitor, state.early_stop_wait, state.best, state.best_epoch)
        state.stopped_early = True
    return learning_rate, False


def write_csv_log(path, history):
    """Rewrites train_log.csv from the history atomically (never torn, never duplicated)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow(row)
    atomic_write_text(path, buffer.getvalue())


# ---------------------------------------------------------------------------------
# Update step and eval step.
# ---------------------------------------------------------------------------------
def make_train_step(model, optimizer, strategy, config, confusion, use_xla, loss_scaling):
    """A tf.function `(images, labels) -> (loss, all_grads_finite)` for distributed batches.

    Each replica computes the loss normalisers of its labels (valid-pixel count and
    class-weight sum), all-reduces them, and returns its SHARE of the global loss, so
    the shares (and the gradients, which the optimizer sums across replicas) add up to
    exactly the single-device loss on the global batch.
    """
    loss_fn, loss_kwargs = build.loss_function(config)
    variables = model.trainable_variables
    num_replicas = strategy.num_replicas_in_sync
    decayed = build.decayed_variables(model) if config.weight_decay else [False] * len(variables)

    def add_weight_decay(grads, scale):
        # Coupled L2: g += wd * w on conv/dense kernels, the gradient of
        # wd/2 * ||w||^2 (PyTorch SGD's weight_decay, as mmsegmentation uses it; TF Model
        # Garden's wd * tf.nn.l2_loss(w)). Added to the gradients rather than the loss so
        # the logged loss stays the data loss. Each replica adds 1/N of it (the optimizer
        # sums replicas' gradients); `scale` is the loss scale, since the
        # LossScaleOptimizer unscales every gradient.
        factor = config.weight_decay / num_replicas
        return [g + tf.cast(factor * scale, g.dtype) * tf.cast(v, g.dtype) if d else g
                for g, v, d in zip(grads, variables, decayed)]

    def normalizers_for(labels):
        local = kernels.loss_normalizers(labels, config.num_classes, config.ignore_label,
                                         class_weighted=config.class_weighted)
        if num_replicas == 1:
            return local
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, local)

    def forward_backward(images, labels, normalizers):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = loss_fn(labels, logits, normalizers=normalizers, **loss_kwargs)
            scaled = optimizer.scale_loss(loss) if loss_scaling else loss
        grads = tape.gradient(scaled, variables)
        if config.weight_decay:
            grads = add_weight_decay(grads, optimizer.dynamic_scale if loss_scaling else 1.0)
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
        return loss, grads, finite, predictions

    def replica_step(images, labels):
        loss, grads, finite, predictions = forward_backward(images, labels, normalizers_for(labels))
        # Skipping is the LossScaleOptimizer's job under mixed_float16. In float32 a
        # non-finite gradient stops the run on the host before any checkpoint is saved,
        # so saved weights are always finite.
        optimizer.apply(grads, variables)
        confusion.update(labels, predictions)
        return loss, tf.cast(tf.logical_not(finite), tf.int32)

    if num_replicas == 1:
        # One device: XLA compiles the whole step, optimizer update included. With
        # several replicas the step holds collectives (loss normalizers, synchronized
        # BatchNorm, gradient sums) that can be neither nested in an inner tf.function
        # nor compiled: runtime.resolve_jit_compile turns XLA off there.
        replica_step = tf.function(replica_step, jit_compile=use_xla)

    @tf.function
    def train_step(images, labels):
        loss, nonfinite = strategy.run(replica_step, args=(images, labels))
        nonfinite = strategy.reduce(tf.distribute.ReduceOp.SUM, nonfinite, axis=None)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None), tf.equal(nonfinite, 0)

    return train_step


def make_eval_step(model, strategy, config, confusion, use_xla):
    """A tf.function `(images, labels) -> loss` that also updates `confusion`."""
    loss_fn, loss_kwargs = build.loss_function(config)
    num_replicas = strategy.num_replicas_in_sync

    def replica_eval(images, labels):
        local = kernels.loss_normalizers(labels, config.num_classes, config.ignore_label,
                                         class_weighted=config.class_weighted)
        if num_replicas > 1:
            local = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, local)
        logits = model(images, training=False)
        loss = loss_fn(labels, logits, normalizers=local, **loss_kwargs)
        confusion.update(labels, tf.argmax(logits, axis=-1, output_type=tf.int32))
        return loss

    if num_replicas == 1:
        replica_eval = tf.function(replica_eval, jit_compile=use_xla)

    @tf.function
    def eval_step(images, labels):
        loss = strategy.run(replica_eval, args=(images, labels))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)

    return eval_step


def run_evaluation(eval_step, dataset, confusion, steps=None):
    """Mean batch loss and metrics over `dataset` (a distributed dataset)."""
    confusion.reset()
    total, batches = 0.0, 0
    for images, labels in dataset:
        total += float(eval_step(images, labels))  # host sync per batch: fine for eval
        batches += 1
        if steps and batches >= steps:
            break
    metrics = kernels.segmentation_metrics(confusion.result().numpy())
    return (total / batches if batches else float("nan")), metrics


# ---------------------------------------------------------------------------------
# TensorBoard pictures.
# ---------------------------------------------------------------------------------
def prediction_strip(model, images, labels, count):
    """uint8 [count, H, 3W, 3]: image | true mask | predicted mask, in VOC colours."""
    images, labels = images[:count], labels[:count]
    logits = model(images, training=False)
    predicted = np.argmax(np.asarray(logits), axis=-1)
    pictures = np.clip(np.asarray(images), 0, 255).astype(np.uint8)
    truth = voc.index_to_rgb(np.asarray(labels).astype(np.uint8))
    guess = voc.index_to_rgb(predicted.astype(np.uint8))
    return np.concatenate([pictures, truth, guess], axis=2)


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


def _add_log_file(workdir):
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)  # train.log gets INFO even when the console shows less
    handler = logging.FileHandler(os.path.join(workdir, "train.log"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    return handler


def _check_resumable(workdir, config):
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return
    saved = config_lib.load_config_file(path)
    differences = config_lib.resume_differences(saved, config)
    if differences:
        details = ", ".join(f"{k}: {getattr(saved, k)!r} -> {getattr(config, k)!r}" for k in differences)
        raise ValueError(f"{workdir} holds a checkpoint of a different config ({details}); "
                         "use a new --workdir, or the same config to resume")


# ---------------------------------------------------------------------------------
# The whole run.
# ---------------------------------------------------------------------------------
def train_and_evaluate(config, workdir, resume=True):
    """Trains `config` in `workdir`, evaluating on val after every epoch.

    Args:
      config: a `research.config.Config`.
      workdir: the run's folder (created if missing). A checkpoint there is resumed.
      resume: False refuses to touch a workdir that already holds a checkpoint.
    Returns:
      dict with "history" (rows of train_log.csv), "best" and "best_epoch" (the
      monitored value), "step", "stopped_early" and "runtime" (device choices).
    Raises:
      TrainingInterrupted: SIGINT/SIGTERM (a checkpoint was written first).
      NonFiniteLossError: NaN/Inf loss with nan_policy "stop" (or restores used up).
    """
    config = config_lib.check_config(config)
    os.makedirs(workdir, exist_ok=True)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    has_checkpoint = tf.train.latest_checkpoint(ckpt_dir) is not None
    if has_checkpoint and not resume:
        raise FileExistsError(f"{workdir} already holds a checkpoint; resume it or use a new --workdir")
    if has_checkpoint:
        _check_resumable(workdir, config)
    mode = config_lib.monitor_mode(config)
    if config.monitor not in CSV_COLUMNS:
        raise ValueError(f"monitor {config.monitor!r} is not a train_log.csv column: {', '.join(CSV_COLUMNS)}")
    log_handler = _add_log_file(workdir)
    try:
        _remove_leftovers(workdir, ckpt_dir)
        return _train(config, workdir, ckpt_dir, mode)
    finally:
        log.removeHandler(log_handler)
        log_handler.close()


def _remove_leftovers(workdir, ckpt_dir):
    """Deletes what a killed earlier run of this workdir left half-written (never read).

    Temporary files of its atomic writes (train_log.csv, config.json, the export), and
    checkpoint folders TF had not finished: it writes a checkpoint's files into
    `ckpt-N_temp/` and moves them out, then names them in the index, when whole.
    """
    removed = remove_interrupted_writes(workdir, ["config.json", "train_log.csv"])
    removed += remove_interrupted_writes(os.path.join(workdir, "export"), export_lib.EXPORT_NAMES)
    if os.path.isdir(ckpt_dir):
        for entry in sorted(os.listdir(ckpt_dir)):
            if re.fullmatch(r"ckpt-\d+_temp", entry):
                shutil.rmtree(os.path.join(ckpt_dir, entry), ignore_errors=True)
                removed.append(os.path.join(ckpt_dir, entry))
    if removed:
        log.info("removed %d leftover(s) of interrupted writes: %s", len(removed),
                 ", ".join(os.path.relpath(p, workdir) for p in removed))


def _train(config, workdir, ckpt_dir, mode):
    # ------------------------------------------------------------------ Runtime ---
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        runtime.enable_determinism(config.seed)
    device = runtime.device_kind()
    precision = runtime.resolve_precision(config.precision, device)
    strategy = runtime.make_strategy(config.distribute)
    onednn = runtime.onednn_state()
    use_xla, xla_reason = runtime.resolve_jit_compile(
        config.jit_compile, device, precision, strategy.num_replicas_in_sync, onednn["enabled"])
    runtime_info = {
        "device": device, "num_replicas": strategy.num_replicas_in_sync,
        "precision": precision, "jit_compile": use_xla, "jit_compile_reason": xla_reason,
        "onednn": onednn, "tensorflow": tf.__version__, "keras": keras.__version__,
        "deterministic": config.deterministic,
    }
    log.info("runtime: %s", json.dumps(runtime_info))
    atomic_write_json(os.path.join(workdir, "config.json"),
                      {"config": config.to_dict(), "runtime": runtime_info})

    # ----------------------------------------------------------- Input pipeline ---
    num_train = pipeline.dataset_size(config.voc_root, "train", split_seed=config.split_seed)
    batches_per_data_epoch = num_train // config.batch_size
    if batches_per_data_epoch == 0:
        raise ValueError(f"{config.voc_root}: the train split has {num_train} images, "
                         f"fewer than batch_size {config.batch_size}")
    steps_per_epoch = config.steps_per_epoch or batches_per_data_epoch

    def train_batches(start_step):
        # Every data epoch's order and augmentation depend only on (seed, epoch):
        # rebuild the epoch we stopped in and skip what was already trained on.
        data_epoch, offset = divmod(start_step, batches_per_data_epoch)
        dataset = pipeline.make_dataset(
            config.voc_root, "train", config.batch_size, tuple(config.input_size),
            resize_to_before_crop=config.resize_to_before_crop, augmentation=config.augmentation,
            shuffle=True, seed=config.seed, start_epoch=data_epoch, epochs=None,
            drop_remainder=True, skip_bad=config.skip_bad, split_seed=config.split_seed,
            scale_range=config.scale_range)
        if offset:
            dataset = dataset.skip(offset)
        return iter(strategy.experimental_distribute_dataset(dataset))

    val_dataset = pipeline.make_dataset(
        config.voc_root, "val", config.eval_batch_size, tuple(config.input_size),
        epochs=1, pad_final_batch=True, skip_bad=config.skip_bad, split_seed=config.split_seed)
    if config.eval_steps:
        val_dataset = val_dataset.take(config.eval_steps)
    val_distributed = strategy.experimental_distribute_dataset(val_dataset)

    # ---------------------------------------------------------- Model and state ---
    with strategy.scope():
        model = build.build_model(config, precision, strategy.num_replicas_in_sync)
        optimizer = build.make_optimizer(config, precision)
        optimizer.build(model.trainable_variables)  # slots exist before a restore
        train_confusion = kernels.StreamingConfusionMatrix(config.num_classes, config.ignore_label,
                                                           name="train_confusion")
        val_confusion = kernels.StreamingConfusionMatrix(config.num_classes, config.ignore_label,
                                                         name="val_confusion")
        loop_state_text = tf.Variable(LoopState().to_json(), dtype=tf.string, trainable=False)
    loss_scaling = precision == "mixed_float16"
    train_step = make_train_step(model, optimizer, strategy, config, train_confusion, use_xla, loss_scaling)
    eval_step = make_eval_step(model, strategy, config, val_confusion, use_xla)

    # --------------------------------------------------------- Load checkpoint ---
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, loop_state=loop_state_text,
                                     train_confusion=train_confusion)
    manager = tf.train.CheckpointManager(checkpoint, ckpt_dir, max_to_keep=config.keep_checkpoints)

    def restore_latest():
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        restored = LoopState.from_json(loop_state_text.numpy().decode())
        if restored.base_learning_rate is None:  # a checkpoint from before per-step schedules
            restored.base_learning_rate = float(optimizer.learning_rate)
        return restored

    state = LoopState(base_learning_rate=float(np.float32(config.learning_rate)))
    if manager.latest_checkpoint:
        state = restore_latest()
        log.info("resumed from %s: step %d, epoch %d, learning rate %.3g",
                 manager.latest_checkpoint, state.step, state.epoch, float(optimizer.learning_rate))
    else:
        train_confusion.reset()

    def save_checkpoint():
        # TF writes the checkpoint files first and updates the `checkpoint` index file
        # atomically last, so a kill at any moment leaves the previous one usable.
        loop_state_text.assign(state.to_json())
        manager.save(checkpoint_number=state.step)
        kill_point("checkpoint")
        write_csv_log(os.path.join(workdir, "train_log.csv"), state.history)

    write_csv_log(os.path.join(workdir, "train_log.csv"), state.history)  # as of the checkpoint
    writers = {split: tf.summary.create_file_writer(os.path.join(workdir, "tensorboard", split))
               for split in ("train", "val")}
    tb_images = None
    if config.tensorboard_images:
        tb_images = next(iter(val_dataset.unbatch().batch(config.tensorboard_images).take(1)))

    # -------------------------------------------------------------- Train loop ---
    schedule_steps = build.schedule_steps(config, steps_per_epoch)

    def set_learning_rate():
        # Every step's LR comes from the step and the loop state alone (exact on resume).
        rate = build.learning_rate_at(config, state.step, schedule_steps, state.base_learning_rate)
        if rate != applied["rate"]:
            optimizer.learning_rate.assign(rate)
            applied["rate"] = rate

    applied = {"rate": None}
    profiling = False
    batches = train_batches(state.step)
    with StopRequest() as stop:
        while state.epoch < config.epochs and not state.stopped_early:
            bar = ProgressBar(steps_per_epoch, config.batch_size, unit="img", initial=state.epoch_steps,
                              desc=f"epoch {state.epoch + 1}/{config.epochs}")
            epoch_start = time.perf_counter() - state.epoch_seconds
            while state.epoch_steps < steps_per_epoch:
                if config.profile_steps and state.step == config.profile_steps[0] and not profiling:
                    tf.profiler.experimental.start(os.path.join(workdir, "tensorboard"))
                    profiling = True
                images, labels = next(batches)
                set_learning_rate()
                with tf.profiler.experimental.Trace("train", step_num=state.step, _r=1):
                    loss, finite = train_step(images, labels)
                    loss = float(loss)  # host sync point: the NaN guard needs the value
                finite = bool(finite)
                if profiling and state.step >= config.profile_steps[1]:
                    tf.profiler.experimental.stop()
                    profiling = False
                    log.info("profiler trace of steps %s written to %s", config.profile_steps,
                             os.path.join(workdir, "tensorboard"))
                if not math.isfinite(loss) or (not finite and not loss_scaling):
                    what = f"loss {loss}" if not math.isfinite(loss) else "non-finite gradients"
                    message = f"{what} at step {state.step + 1} (epoch {state.epoch + 1})"
                    if (config.nan_policy == "restore" and manager.latest_checkpoint
                            and state.nan_restores < config.max_nan_restores):
                        restores = state.nan_restores + 1
                        state = restore_latest()
                        state.nan_restores = restores
                        applied["rate"] = None  # the restore rewrote the variable
                        state.base_learning_rate *= config.nan_lr_factor
                        log.warning("%s: restored %s, base learning rate -> %.3g (restore %d of %d)",
                                    message, manager.latest_checkpoint, state.base_learning_rate, restores,
                                    config.max_nan_restores)
                        batches = train_batches(state.step)
                        bar = ProgressBar(steps_per_epoch, config.batch_size, unit="img",
                                          initial=state.epoch_steps, desc=bar.desc)
                        epoch_start = time.perf_counter() - state.epoch_seconds
                        continue
                    raise NonFiniteLossError(
                        f"{message}; stopped. Last good checkpoint: {manager.latest_checkpoint}")
                if loss_scaling and not finite:
                    state.skipped_steps += 1
                    state.epoch_skipped += 1
                kill_point("step")
                state.step += 1
                state.epoch_steps += 1
                state.epoch_loss_sum += loss
                state.epoch_seconds = time.perf_counter() - epoch_start
                values = {"loss": state.epoch_loss_sum / state.epoch_steps}
                if itstime(state.step, config.log_every_steps):
                    values["mIoU"] = kernels.segmentation_metrics(train_confusion.result().numpy())["mean_iou"]
                    with writers["train"].as_default(step=state.step):
                        tf.summary.scalar("step/loss", loss)
                        tf.summary.scalar("step/learning_rate", float(optimizer.learning_rate))
                        tf.summary.scalar("step/images_per_second", bar.items_per_second)
                        if loss_scaling:
                            tf.summary.scalar("step/loss_scale", float(optimizer.dynamic_scale))
                bar.update(1, **values)
                if stop.signal is not None:
                    save_checkpoint()
                    bar.close()
                    raise TrainingInterrupted(
                        f"stopped by {signal.Signals(stop.signal).name} at step {state.step}; "
                        f"checkpoint {manager.latest_checkpoint}")
                if itstime(state.step, config.checkpoint_every_steps) and state.epoch_steps < steps_per_epoch:
                    save_checkpoint()
            bar.close()

            # ------------------------------------------------------ End of epoch ---
            train_metrics = kernels.segmentation_metrics(train_confusion.result().numpy())
            val_loss, val_metrics = run_evaluation(eval_step, val_distributed, val_confusion)
            learning_rate = float(optimizer.learning_rate)
            row = {"epoch": state.epoch + 1, "step": state.step,
                   "loss": state.epoch_loss_sum / max(state.epoch_steps, 1),
                   "val_loss": val_loss, "learning_rate": learning_rate,
                   "images_per_second": state.epoch_steps * config.batch_size / max(state.epoch_seconds, 1e-9),
                   "epoch_seconds": state.epoch_seconds, "skipped_steps": state.epoch_skipped}
            for name in METRIC_NAMES:
                row[name] = train_metrics[name]
                row["val_" + name] = val_metrics[name]
            state.epoch += 1
            base = state.base_learning_rate
            new_base, is_best = update_schedules(state, row[config.monitor], config, mode, base)
            # The variable is float32: keep the value it holds (as before per-step schedules).
            state.base_learning_rate = float(np.float32(new_base))
            set_learning_rate()  # the checkpoint holds the next step's rate
            state.history.append(row)
            log.info("epoch %d: %s", state.epoch, ", ".join(
                f"{k} {row[k]:.4g}" for k in CSV_COLUMNS[2:] if isinstance(row[k], float)))
            for split, prefix in (("train", ""), ("val", "val_")):
                with writers[split].as_default(step=state.step):
                    tf.summary.scalar("epoch/loss", row[prefix + "loss"])
                    for name in METRIC_NAMES:
                        tf.summary.scalar(f"epoch/{name}", row[prefix + name])
            with writers["train"].as_default(step=state.step):
                tf.summary.scalar("epoch/learning_rate", learning_rate)
                tf.summary.scalar("epoch/images_per_second", row["images_per_second"])
            if tb_images is not None:
                with writers["val"].as_default(step=state.step):
                    tf.summary.image("predictions (image | truth | predicted)",
                                     prediction_strip(model, *tb_images, config.tensorboard_images),
                                     max_outputs=config.tensorboard_images)
            if is_best and config.export_best:
                export_lib.export_model(model, os.path.join(workdir, "export"), config,
                                        {"epoch": state.epoch, "step": state.step,
                                         config.monitor: row[config.monitor]})
            state.epoch_loss_sum, state.epoch_steps = 0.0, 0
            state.epoch_seconds, state.epoch_skipped = 0.0, 0
            train_confusion.reset()
            save_checkpoint()
            for writer in writers.values():
                writer.flush()
    if profiling:
        tf.profiler.experimental.stop()
    result = {"history": state.history, "best": state.best, "best_epoch": state.best_epoch,
              "step": state.step, "stopped_early": state.stopped_early, "runtime": runtime_info}
    if config.final_eval_full_resolution:
        # What papers report: val at each image's own size, by the exported best model (or
        # the last checkpoint), at eval_output_stride; written to WORKDIR/eval_val/.
        from research import evaluate as evaluate_lib

        final = evaluate_lib.evaluate(workdir, subset="val", full_resolution=True)
        result["final_eval"] = {k: final[k] for k in evaluate_lib.METRIC_NAMES}
        log.info("val at full resolution: %s", ", ".join(f"{k} {v:.4f}" for k, v in result["final_eval"].items()))
    return result


# ---------------------------------------------------------------------------------
# Command line.
# ---------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m research.train",
        description="Train a segmentation model with the custom tf.function loop.")
    parser.add_argument("--config", required=True,
                        help="a named config (deeplabv3_voc, unet_voc, demo, smoke) or a .json file")
    parser.add_argument("--workdir", required=True, help="the run's folder; a checkpoint there is resumed")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field (value parsed as JSON), repeatable")
    parser.add_argument("--profile_steps", default=None, metavar="FIRST,LAST",
                        help="trace these global steps with the TensorBoard profiler "
                             "(shorthand for --set profile_steps=[FIRST,LAST])")
    parser.add_argument("--no-resume", dest="resume", action="store_false",
                        help="refuse to run if the workdir already holds a checkpoint")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    overrides = list(args.overrides)
    if args.profile_steps:
        first, _, last = args.profile_steps.partition(",")
        overrides.append(f"profile_steps=[{int(first)},{int(last or first)}]")
    try:
        config = config_lib.apply_overrides(config_lib.load_config(args.config), overrides)
        result = train_and_evaluate(config, args.workdir, resume=args.resume)
    except TrainingInterrupted as e:
        log.warning("%s", e)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, NonFiniteLossError) as e:
        log.error("%s", e)
        return 1
    except tf.errors.InvalidArgumentError as e:
        message = pipeline.bad_file_message(e)
        if message is None:
            raise
        log.error("%s (--set skip_bad=true leaves bad samples out)", message)
        return 1
    if result["history"]:
        last = result["history"][-1]
        log.info("done: %d epochs, step %d; val mean IoU %.4f, best %s %.5g at epoch %s",
                 len(result["history"]), result["step"], last["val_mean_iou"], config.monitor,
                 result["best"], result["best_epoch"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
