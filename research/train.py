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
augmentation depend only on (seed, epoch), so the loop rebuilds the data epoch stored
in the loop state and skips the batches of it it already trained on).

Several workers (`distribute="multi_worker"`, TF_CONFIG; `python -m research.launch`):
each trains on its slice of every global batch; only the chief writes the files above
(the others take part in checkpoint saves through temporary folders); see
`distribute_batches`, `CheckpointFiles` and the README's Distribution section.
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


def all_finite(tensors):
    """Scalar bool tensor: every element of every tensor is finite (not NaN/Inf)."""
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in tensors])


def agree_on_overflow(finite, grads):
    """`(finite, grads)` agreed by all replicas, for Keras' LossScaleOptimizer.

    Under tf.distribute that optimizer decides whether to skip the step (and lower the
    scale) from the FIRST replica's gradients, before the gradients are summed (its
    comment assumes they were summed already): an overflow on another replica alone was
    summed into the weights (reproduced: NaN weights). Every replica learns whether any
    replica overflowed and, if one did, turns its first gradient into NaN, so the step is
    skipped on all of them alike (call in a replica context; one scalar all-reduce).

    Args:
      finite: scalar bool, this replica's gradients are all finite.
      grads: this replica's list of gradient tensors.
    Returns:
      scalar bool (no replica overflowed) and the gradients, the first poisoned if one did.
    """
    # float32, as the loss normalizers' all-reduce that every strategy here already runs
    # (TF keeps the int32 tensors of GPU ops in host memory: not worth the doubt on GPU).
    overflowed = tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, tf.cast(tf.logical_not(finite), tf.float32)) > 0
    poison = tf.where(overflowed, tf.constant(float("nan"), grads[0].dtype), tf.zeros([], grads[0].dtype))
    return tf.logical_not(overflowed), [grads[0] + poison] + list(grads[1:])


def average_over_replicas(variables):
    """Sets each (mirrored) variable, on every replica, to the mean of its replicas'
    copies: one all-reduce of the list. Call in replica context."""
    context = tf.distribute.get_replica_context()
    means = context.all_reduce(tf.distribute.ReduceOp.MEAN, [v.value for v in variables])
    for variable, mean in zip(variables, means):
        variable.assign(mean)


def checks_gradients(step, epoch_step, steps_per_epoch, config, loss_scaling):
    """Whether global step `step` (1-based, about to run) checks its gradients are finite.

    The NaN guard's rule (measured cost: see the README's Training section): the loss
    is checked every step (the loop reads it anyway); the gradients only on log steps
    and on steps whose end saves a checkpoint (mid-epoch or epoch end), where a
    non-finite gradient is then named as the cause. A non-finite gradient between
    checks shows up in a later loss, and at the latest in the check of all weights
    before every checkpoint and export, so no non-finite weight is ever saved. Under
    mixed_float16 every step checks: the skipped-step count needs it (the
    LossScaleOptimizer checks them anyway).
    """
    return (loss_scaling or itstime(step, config.log_every_steps)
            or itstime(step, config.checkpoint_every_steps) or epoch_step == steps_per_epoch)


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
    # Data position: the data epoch of the last batch trained on and how many batches of
    # that epoch were trained on. None (checkpoints of older versions): derived from
    # `step`, which is right only when every data epoch has num_train // batch_size
    # batches (not with skip_bad, where bad samples shorten them).
    data_epoch: int = None
    data_batches: int = None
    workers: int = None           # processes that trained the run (None: one, older versions)
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


# ---------------------------------------------------------------------------------
# Several workers (tf.distribute.MultiWorkerMirroredStrategy): the input of each,
# agreement between them, checkpoints by TF's multi-worker protocol.
# ---------------------------------------------------------------------------------
def distribute_batches(strategy, role, make_global_dataset, global_batch):
    """Each replica's part of every global batch of `make_global_dataset()`.

    One worker: `experimental_distribute_dataset` splits each global batch across the
    local replicas. Several workers: every worker builds the same deterministic global
    batches (order and augmentation depend only on (seed, epoch)) and keeps its own
    consecutive slice of each, rows [i * B/N, (i + 1) * B/N) for worker i of N, so the
    workers' batches at a step are together exactly the batch one process trains on
    (no auto-sharding: TF's DATA policy would hand out whole batches). Each worker
    reads and augments the whole global batch: input work is N times one process's.

    Args:
      strategy: the tf.distribute strategy; role: this process's `runtime.WorkerRole`.
      make_global_dataset: () -> tf.data.Dataset of tuples of tensors [B, ...].
      global_batch: B, divisible by the number of replicas when there are workers.
    Returns:
      a distributed dataset of the same tuples, per replica.
    """
    if role.count == 1:
        return strategy.experimental_distribute_dataset(make_global_dataset())
    if global_batch % strategy.num_replicas_in_sync:
        raise ValueError(f"batch {global_batch} cannot be split evenly over "
                         f"{strategy.num_replicas_in_sync} replicas of {role.count} workers")

    def worker_dataset(context):
        per_worker = global_batch // context.num_input_pipelines
        per_replica = context.get_per_replica_batch_size(global_batch)
        first = context.input_pipeline_id * per_worker
        dataset = make_global_dataset().map(
            lambda *parts: tuple(part[first:first + per_worker] for part in parts))
        if per_replica != per_worker:   # several local replicas: consecutive slices
            dataset = dataset.unbatch().batch(per_replica, drop_remainder=True)
        return dataset

    return strategy.distribute_datasets_from_function(worker_dataset)


def make_worker_gather(strategy, role):
    """`fn(int) -> list of int`: every replica's value (one per replica, in replica order).

    A collective with several workers: every worker must call it at the same point.
    One worker: `[value]`.
    """
    if role.count == 1:
        return lambda value: [int(value)]

    def replica_value(value):
        return tf.distribute.get_replica_context().all_gather(value[None], axis=0)

    @tf.function
    def gather(value):
        return strategy.run(replica_value, args=(value,))

    return lambda value: [int(v) for v in
                          strategy.experimental_local_results(gather(tf.constant(value, tf.int64)))[0]]


class CheckpointFiles:
    """tf.train.CheckpointManager of `directory`, under TF's multi-worker save protocol.

    Every worker calls `save` (saving reads variables, such as the confusion matrices,
    that are summed across workers: a collective). The chief writes `directory`; every
    other worker writes into its own `worker<i>_temp/` inside it, removed at once, so
    one shared workdir (NFS, GCS) or a folder per worker both work. `latest_checkpoint`
    is always the chief's, which every worker restores from.
    """

    def __init__(self, checkpoint, directory, max_to_keep, role):
        self.directory = directory
        self.role = role
        self._checkpoint = checkpoint
        self._manager = (tf.train.CheckpointManager(checkpoint, directory, max_to_keep=max_to_keep)
                         if role.is_chief else None)

    @staticmethod
    def temp_dir(directory, role):
        """Where non-chief worker `role.index` writes its copy (removed after each save)."""
        return os.path.join(directory, f"worker{role.index}_temp")

    @property
    def latest_checkpoint(self):
        """Path prefix of the chief's latest checkpoint, or None."""
        return tf.train.latest_checkpoint(self.directory)

    def save(self, checkpoint_number):
        """Writes checkpoint `checkpoint_number` (every worker must call this together)."""
        if self._manager is not None:
            prefix = os.path.join(self.directory, f"ckpt-{checkpoint_number}")
            if os.path.exists(prefix + ".index"):
                return self._replace(prefix, checkpoint_number)
            return self._manager.save(checkpoint_number=checkpoint_number)
        temp = self.temp_dir(self.directory, self.role)
        try:
            tf.train.CheckpointManager(self._checkpoint, temp, max_to_keep=1).save(
                checkpoint_number=checkpoint_number)
        finally:
            shutil.rmtree(temp, ignore_errors=True)
        return None

    @staticmethod
    def kept_dir(prefix):
        """Where `_replace` keeps a copy of checkpoint `prefix` while rewriting it."""
        return prefix + "_kept"

    def _replace(self, prefix, number):
        """Writes checkpoint `number` over the existing `prefix` (ckpt-N) without a moment
        in which the latest checkpoint is unreadable.

        A run stopped at an epoch's last step (ckpt-N) that resumes saves that epoch's end
        at the same step. TF rewrites ckpt-N's data file and then its index in place, so a
        kill in between would leave the latest checkpoint unreadable. First a copy of the
        old ckpt-N is named the latest (an atomic write of the index), then ckpt-N is
        rewritten, named and the copy removed. When a killed replace left that copy as the
        latest, ckpt-N may be half-written: the copy stays the latest until the new one is
        whole.
        """
        kept_dir = self.kept_dir(prefix)
        kept = os.path.join(kept_dir, os.path.basename(prefix))
        if self.latest_checkpoint != kept:
            shutil.rmtree(kept_dir, ignore_errors=True)
            os.makedirs(kept_dir)
            for path in tf.io.gfile.glob(prefix + ".*"):
                shutil.copyfile(path, os.path.join(kept_dir, os.path.basename(path)))
            tf.compat.v1.train.update_checkpoint_state(   # atomic write of the index
                self.directory, os.path.relpath(kept, self.directory),
                [os.path.relpath(p, self.directory) for p in self._manager.checkpoints]
                + [os.path.relpath(kept, self.directory)])
        path = self._manager.save(checkpoint_number=number)
        shutil.rmtree(kept_dir, ignore_errors=True)
        return path


def _check_role(strategy, role):
    """The TF_CONFIG role read before TensorFlow started agrees with the strategy's."""
    if strategy.extended.should_checkpoint != role.is_chief:
        raise ValueError(f"TF_CONFIG makes this process worker {role.index} of {role.count}, but "
                         f"the strategy says chief={strategy.extended.should_checkpoint}")


def _check_same_start(state, role, worker_gather, checkpoint):
    """Every worker restored the same checkpoint, written by as many workers as now.

    Raises ValueError (on every worker alike) otherwise: resuming needs every worker to
    see the chief's checkpoints/ folder, and the same worker count (another count
    would only change round-off, but a resumed run must equal the uninterrupted one).
    """
    steps = worker_gather(state.step if checkpoint else -1)
    if len(set(steps)) > 1:
        raise ValueError(
            f"the workers start from different checkpoints (steps {steps}, -1: none): "
            "every worker must read the chief's checkpoints/ folder (one shared workdir), or "
            "copy it to every worker's workdir before resuming")
    saved = state.workers or 1
    if checkpoint and saved != role.count:
        raise ValueError(
            f"{checkpoint} was trained by {saved} worker(s), this launch has {role.count}: a "
            f"run resumes with the worker count it started with (launch {saved} worker(s), "
            "or start a new --workdir)")


def _keep_sums_on_chief(strategy, confusion, path):
    """After a restore with several replicas, puts the saved confusion counts back exactly.

    The checkpoint holds the sum over replicas; TF restores an ON_READ/SUM variable by
    dividing it among the replicas, which truncates odd integer counts (a count lost per
    odd cell). Re-read the saved sum and give it whole to the chief's first replica,
    zeros to every other copy, so the next read (their sum) is the saved value.
    """
    if strategy.num_replicas_in_sync == 1:
        return
    total = tf.train.load_checkpoint(path).get_tensor("train_confusion/total/.ATTRIBUTES/VARIABLE_VALUE")
    chief = strategy.extended.should_checkpoint
    for index, local in enumerate(strategy.experimental_local_results(confusion.total)):
        local.assign(total if chief and index == 0 else tf.zeros_like(local))


def _batch_epoch(strategy, batch_epochs):
    """The data epoch of a (distributed) batch from `with_epoch` (host sync point)."""
    return int(strategy.experimental_local_results(batch_epochs)[0][0])


def _signal_name(signum):
    return signal.Signals(signum).name if signum else "a signal to another worker"


# ---------------------------------------------------------------------------------
# Update step and eval step.
# ---------------------------------------------------------------------------------
def make_train_step(model, optimizer, strategy, config, confusion, use_xla, loss_scaling):
    """A tf.function `(images, labels, check_gradients=True) -> (loss, grads_finite)`.

    `images`, `labels` are distributed batches; `check_gradients` a scalar bool tensor:
    when false (float32 only) the gradients are not checked and grads_finite is True.

    Each replica computes the loss normalisers of its labels (valid-pixel count and
    class-weight sum), all-reduces them, and returns its SHARE of the global loss, so
    the shares (and the gradients, which the optimizer sums across replicas) add up to
    exactly the single-device loss on the global batch.
    """
    loss_fn, loss_kwargs = build.loss_function(config)
    variables = model.trainable_variables
    num_replicas = strategy.num_replicas_in_sync
    decayed = build.decayed_variables(model) if config.weight_decay else [False] * len(variables)
    moving_statistics = build.moving_statistics_to_average(model, config, num_replicas)

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
        predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
        return loss, grads, predictions

    def replica_step(images, labels, check_gradients):
        loss, grads, predictions = forward_backward(images, labels, normalizers_for(labels))
        # Skipping is the LossScaleOptimizer's job under mixed_float16. In float32 a
        # non-finite gradient stops the run on the host (see `checks_gradients`), and
        # all weights are checked before any checkpoint is saved.
        if loss_scaling:
            finite = all_finite(grads)
            if num_replicas > 1:
                finite, grads = agree_on_overflow(finite, grads)
        else:
            finite = tf.cond(check_gradients, lambda: all_finite(grads), lambda: tf.constant(True))
        optimizer.apply(grads, variables)
        if moving_statistics:  # bn_policy "train", several replicas
            average_over_replicas(moving_statistics)
        confusion.update(labels, predictions)
        return loss, tf.cast(tf.logical_not(finite), tf.int32)

    if num_replicas == 1:
        # One device: XLA compiles the whole step, optimizer update included. With
        # several replicas the step holds collectives (loss normalizers, synchronized
        # BatchNorm, gradient sums) that can be neither nested in an inner tf.function
        # nor compiled: runtime.resolve_jit_compile turns XLA off there.
        replica_step = tf.function(replica_step, jit_compile=use_xla)

    @tf.function
    def train_step(images, labels, check_gradients=True):
        check_gradients = tf.convert_to_tensor(check_gradients, tf.bool)
        loss, nonfinite = strategy.run(replica_step, args=(images, labels, check_gradients))
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


def _precision_of_the_run(workdir, resolved, device):
    """The dtype policy a resumed run with precision "auto" keeps: its config.json's.

    "auto" is mixed_float16 on a GPU and float32 on a CPU, and the two write different
    checkpoints (mixed_float16's optimizer is a LossScaleOptimizer, with variables of its
    own): a run moved to the other device kind resumes in the precision it was started
    in (with a warning) instead of failing to restore. `resolved`: what "auto" gives on
    this `device` ("gpu" or "cpu").
    """
    try:
        with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
            saved = json.load(f).get("runtime", {}).get("precision")
    except (OSError, ValueError, AttributeError):
        return resolved
    if saved == resolved or saved not in ("float32", "mixed_float16", "mixed_bfloat16"):
        return resolved
    log.warning("precision auto is %s on this %s, but the run's checkpoints were written in %s: "
                "resuming in %s", resolved, device, saved, saved)
    return saved


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
    # Only the chief writes what a user reads and cleans up; another worker removes
    # only its own checkpoint temp folder, if a kill left it.
    role = runtime.worker_role(config.distribute)
    if not role.is_chief:
        shutil.rmtree(CheckpointFiles.temp_dir(ckpt_dir, role), ignore_errors=True)
        return _train(config, workdir, ckpt_dir, mode, role)
    log_handler = _add_log_file(workdir)
    try:
        _remove_leftovers(workdir, ckpt_dir)
        return _train(config, workdir, ckpt_dir, mode, role)
    finally:
        log.removeHandler(log_handler)
        log_handler.close()


def _remove_leftovers(workdir, ckpt_dir):
    """Deletes what a killed earlier run of this workdir left half-written (never read).

    Temporary files of its atomic writes (train_log.csv, config.json, the export), and
    checkpoint folders TF had not finished: it writes a checkpoint's files into
    `ckpt-N_temp/` and moves them out, then names them in the index, when whole; the
    `worker<i>_temp/` copies of killed non-chief workers, and a `ckpt-N_kept/` copy that
    is no longer the latest checkpoint (`CheckpointFiles`).
    """
    removed = remove_interrupted_writes(workdir, ["config.json", "train_log.csv"])
    removed += remove_interrupted_writes(os.path.join(workdir, "export"), export_lib.EXPORT_NAMES)
    if os.path.isdir(ckpt_dir):
        for entry in sorted(os.listdir(ckpt_dir)):
            leftover = re.fullmatch(r"ckpt-\d+_temp|worker\d+_temp", entry) or (
                re.fullmatch(r"ckpt-\d+_kept", entry)    # unless a killed replace left it the latest
                and os.path.dirname(tf.train.latest_checkpoint(ckpt_dir) or "") != os.path.join(ckpt_dir, entry))
            if leftover:
                shutil.rmtree(os.path.join(ckpt_dir, entry), ignore_errors=True)
                removed.append(os.path.join(ckpt_dir, entry))
    if removed:
        log.info("removed %d leftover(s) of interrupted writes: %s", len(removed),
                 ", ".join(os.path.relpath(p, workdir) for p in removed))


def _train(config, workdir, ckpt_dir, mode, role=runtime.WorkerRole()):
    # ------------------------------------------------------------------ Runtime ---
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        runtime.enable_determinism(config.seed)
    device = runtime.device_kind()
    gpu_warning = runtime.unused_gpu_warning(runtime.nvidia_smi_output(),
                                             len(tf.config.list_physical_devices("GPU")))
    if gpu_warning:
        log.warning("%s", gpu_warning)
    precision = runtime.resolve_precision(config.precision, device)
    if config.precision == "auto" and tf.train.latest_checkpoint(ckpt_dir) is not None:
        precision = _precision_of_the_run(workdir, precision, device)
    strategy = runtime.make_strategy(config.distribute)
    _check_role(strategy, role)
    onednn = runtime.onednn_state()
    use_xla, xla_reason = runtime.resolve_jit_compile(
        config.jit_compile, device, precision, strategy.num_replicas_in_sync,
        deterministic=config.deterministic)
    runtime_info = {
        "device": device, "num_replicas": strategy.num_replicas_in_sync,
        "precision": precision, "jit_compile": use_xla, "jit_compile_reason": xla_reason,
        "onednn": onednn, "tensorflow": tf.__version__, "keras": keras.__version__,
        "deterministic": config.deterministic,
    }
    if role.count > 1:
        runtime_info["workers"] = role.count
    log.info("runtime: %s", json.dumps(runtime_info))
    if role.is_chief:
        atomic_write_json(os.path.join(workdir, "config.json"),
                          {"config": config.to_dict(), "runtime": runtime_info})

    # ----------------------------------------------------------- Input pipeline ---
    num_train = pipeline.dataset_size(config.voc_root, config.train_subset, split_seed=config.split_seed)
    batches_per_data_epoch = num_train // config.batch_size
    if batches_per_data_epoch == 0:
        raise ValueError(f"{config.voc_root}: the {config.train_subset} split has {num_train} images, "
                         f"fewer than batch_size {config.batch_size}")
    steps_per_epoch = config.steps_per_epoch or batches_per_data_epoch

    def train_batches(state):
        # Every data epoch's order and augmentation depend only on (seed, epoch):
        # rebuild the epoch we stopped in and skip what was already trained on. Each
        # batch carries its data epoch, so the loop state knows the position exactly.
        data_epoch, offset = data_position(state, batches_per_data_epoch)
        state.data_epoch, state.data_batches = data_epoch, offset

        def global_batches():
            dataset = pipeline.make_dataset(
                config.voc_root, config.train_subset, config.batch_size, tuple(config.input_size),
                resize_to_before_crop=config.resize_to_before_crop, augmentation=config.augmentation,
                shuffle=True, seed=config.seed, start_epoch=data_epoch, epochs=None,
                drop_remainder=True, skip_bad=config.skip_bad, split_seed=config.split_seed,
                scale_range=config.scale_range, with_epoch=True)
            return dataset.skip(offset) if offset else dataset

        return iter(distribute_batches(strategy, role, global_batches, config.batch_size))

    def val_batches():
        dataset = pipeline.make_dataset(
            config.voc_root, "val", config.eval_batch_size, tuple(config.input_size),
            epochs=1, pad_final_batch=True, skip_bad=config.skip_bad, split_seed=config.split_seed)
        return dataset.take(config.eval_steps) if config.eval_steps else dataset

    # Validation runs on every worker, each on its slice of every val batch: the
    # confusion matrix and the loss normalizers are summed over all of them, so each
    # val image counts once (padding samples are all ignore_label).
    val_distributed = distribute_batches(strategy, role, val_batches, config.eval_batch_size)

    # ---------------------------------------------------------- Model and state ---
    # A checkpoint replaces every weight: do not read (or download) pretrained ones.
    resuming = tf.train.latest_checkpoint(ckpt_dir) is not None
    with strategy.scope():
        model = build.build_model(config, precision, strategy.num_replicas_in_sync,
                                  pretrained=not resuming)
        optimizer = build.make_optimizer(config, precision)
        optimizer.build(model.trainable_variables)  # slots exist before a restore
        train_confusion = kernels.StreamingConfusionMatrix(config.num_classes, config.ignore_label,
                                                           name="train_confusion")
        val_confusion = kernels.StreamingConfusionMatrix(config.num_classes, config.ignore_label,
                                                         name="val_confusion")
    # Outside the scope: the strategy would broadcast its initial value from the chief
    # with a collective that has no string kernel. Every worker holds the same text.
    loop_state_text = tf.Variable(LoopState().to_json(), dtype=tf.string, trainable=False)
    loss_scaling = precision == "mixed_float16"
    train_step = make_train_step(model, optimizer, strategy, config, train_confusion, use_xla, loss_scaling)
    eval_step = make_eval_step(model, strategy, config, val_confusion, use_xla)

    # --------------------------------------------------------- Load checkpoint ---
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, loop_state=loop_state_text,
                                     train_confusion=train_confusion)
    manager = CheckpointFiles(checkpoint, ckpt_dir, config.keep_checkpoints, role)
    worker_gather = make_worker_gather(strategy, role)

    def restore_latest():
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        _keep_sums_on_chief(strategy, train_confusion, manager.latest_checkpoint)
        restored = LoopState.from_json(loop_state_text.numpy().decode())
        if restored.base_learning_rate is None:  # a checkpoint from before per-step schedules
            restored.base_learning_rate = float(optimizer.learning_rate.numpy())
        return restored

    # Every float variable a checkpoint or export holds: weights, BatchNorm statistics,
    # optimizer slots (and the loss scale). One pass, before every save and export.
    saved_floats = [v for v in model.weights + optimizer.variables if "float" in str(v.dtype)]
    weights_finite = tf.function(lambda: all_finite(saved_floats))

    def recover(message):
        """After a NaN/Inf: the state of the last good checkpoint, restored with a lower
        base learning rate (nan_policy "restore"), or NonFiniteLossError."""
        if (config.nan_policy == "restore" and manager.latest_checkpoint
                and state.nan_restores < config.max_nan_restores):
            restores = state.nan_restores + 1
            restored = restore_latest()
            restored.nan_restores = restores
            applied["rate"] = None  # the restore rewrote the learning-rate variable
            restored.base_learning_rate *= config.nan_lr_factor
            log.warning("%s: restored %s, base learning rate -> %.3g (restore %d of %d)",
                        message, manager.latest_checkpoint, restored.base_learning_rate, restores,
                        config.max_nan_restores)
            return restored
        raise NonFiniteLossError(f"{message}; stopped. Last good checkpoint: {manager.latest_checkpoint}")

    state = LoopState(workers=role.count, base_learning_rate=float(np.float32(config.learning_rate)))
    if manager.latest_checkpoint:
        state = restore_latest()
        log.info("resumed from %s: step %d, epoch %d, learning rate %.3g",
                 manager.latest_checkpoint, state.step, state.epoch, float(optimizer.learning_rate.numpy()))
    else:
        train_confusion.reset()
    _check_same_start(state, role, worker_gather, manager.latest_checkpoint)

    def save_checkpoint():
        # TF writes the checkpoint files first and updates the `checkpoint` index file
        # atomically last, so a kill at any moment leaves the previous one usable.
        loop_state_text.assign(state.to_json())
        manager.save(checkpoint_number=state.step)
        kill_point("checkpoint")
        if role.is_chief:
            write_csv_log(os.path.join(workdir, "train_log.csv"), state.history)

    if role.is_chief:
        write_csv_log(os.path.join(workdir, "train_log.csv"), state.history)  # as of the checkpoint
    writers = {split: (tf.summary.create_file_writer(os.path.join(workdir, "tensorboard", split))
                       if role.is_chief else tf.summary.create_noop_writer())
               for split in ("train", "val")}
    tb_images = None
    if config.tensorboard_images and role.is_chief:
        tb_images = next(iter(val_batches().unbatch().batch(config.tensorboard_images).take(1)))

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
    check_flags = {flag: tf.constant(flag) for flag in (False, True)}

    def resume_epoch(restored):
        """(batches, progress bar, epoch clock) continuing from a restored loop state."""
        bar = ProgressBar(steps_per_epoch, config.batch_size, unit="img", initial=restored.epoch_steps,
                          desc=f"epoch {restored.epoch + 1}/{config.epochs}")
        return train_batches(restored), bar, time.perf_counter() - restored.epoch_seconds

    batches = train_batches(state)
    with StopRequest() as stop:
        while state.epoch < config.epochs and not state.stopped_early:
            bar = ProgressBar(steps_per_epoch, config.batch_size, unit="img", initial=state.epoch_steps,
                              desc=f"epoch {state.epoch + 1}/{config.epochs}")
            epoch_start = time.perf_counter() - state.epoch_seconds
            while state.epoch_steps < steps_per_epoch:
                check = checks_gradients(state.step + 1, state.epoch_steps + 1, steps_per_epoch,
                                         config, loss_scaling)
                if (config.profile_steps and state.step == config.profile_steps[0] and not profiling
                        and role.is_chief):
                    tf.profiler.experimental.start(os.path.join(workdir, "tensorboard"))
                    profiling = True
                images, labels, batch_epochs = next(batches)
                set_learning_rate()
                with tf.profiler.experimental.Trace("train", step_num=state.step, _r=1):
                    loss, finite = train_step(images, labels, check_flags[check])
                    loss = float(loss)  # host sync point: the NaN guard needs the value
                finite = bool(finite)
                if profiling and state.step >= config.profile_steps[1]:
                    tf.profiler.experimental.stop()
                    profiling = False
                    log.info("profiler trace of steps %s written to %s", config.profile_steps,
                             os.path.join(workdir, "tensorboard"))
                if not math.isfinite(loss) or (not finite and not loss_scaling):
                    what = f"loss {loss}" if not math.isfinite(loss) else "non-finite gradients"
                    state = recover(f"{what} at step {state.step + 1} (epoch {state.epoch + 1})")
                    batches, bar, epoch_start = resume_epoch(state)
                    continue
                if loss_scaling and not finite:
                    state.skipped_steps += 1
                    state.epoch_skipped += 1
                kill_point("step")
                state.step += 1
                advance_data_position(state, _batch_epoch(strategy, batch_epochs))
                state.epoch_steps += 1
                state.epoch_loss_sum += loss
                state.epoch_seconds = time.perf_counter() - epoch_start
                values = {"loss": state.epoch_loss_sum / state.epoch_steps}
                if itstime(state.step, config.log_every_steps):
                    values["mIoU"] = kernels.segmentation_metrics(train_confusion.result().numpy())["mean_iou"]
                    with writers["train"].as_default(step=state.step):
                        tf.summary.scalar("step/loss", loss)
                        tf.summary.scalar("step/learning_rate", float(optimizer.learning_rate.numpy()))
                        tf.summary.scalar("step/images_per_second", bar.items_per_second)
                        if loss_scaling:
                            tf.summary.scalar("step/loss_scale", float(optimizer.dynamic_scale.numpy()))
                bar.update(1, **values)
                # Every worker stops at the same step, whichever got the signal.
                stopping = any(worker_gather(int(stop.signal or 0)))
                saving = stopping or (itstime(state.step, config.checkpoint_every_steps)
                                      and state.epoch_steps < steps_per_epoch)
                if saving and not bool(weights_finite()):
                    state = recover(f"non-finite weights at step {state.step} (epoch {state.epoch + 1}), "
                                    "before a checkpoint")
                    batches, bar, epoch_start = resume_epoch(state)
                    continue
                if stopping:
                    save_checkpoint()
                    bar.close()
                    raise TrainingInterrupted(
                        f"stopped by {_signal_name(stop.signal)} at step {state.step}; "
                        f"checkpoint {manager.latest_checkpoint}")
                if itstime(state.step, config.checkpoint_every_steps) and state.epoch_steps < steps_per_epoch:
                    save_checkpoint()
            bar.close()
            if not bool(weights_finite()):  # the epoch's export and checkpoint come next
                state = recover(f"non-finite weights at the end of epoch {state.epoch + 1} "
                                f"(step {state.step})")
                batches = train_batches(state)  # the loop above makes the bar and clock
                continue

            # ------------------------------------------------------ End of epoch ---
            train_metrics = kernels.segmentation_metrics(train_confusion.result().numpy())
            val_loss, val_metrics = run_evaluation(eval_step, val_distributed, val_confusion)
            learning_rate = float(optimizer.learning_rate.numpy())
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
            if is_best and config.export_best and role.is_chief:
                export_lib.export_model(model, os.path.join(workdir, "export"), config,
                                        {"epoch": state.epoch, "step": state.step,
                                         config.monitor: row[config.monitor]})
            state.epoch_loss_sum, state.epoch_steps = 0.0, 0
            state.epoch_seconds, state.epoch_skipped = 0.0, 0
            train_confusion.reset()
            save_checkpoint()
            for writer in writers.values():
                writer.flush()
    # The input pipeline's threads end here, timed: its release waited for up to a minute
    # before research.data.pipeline turned tf.data's autotuning thread off.
    release_start = time.perf_counter()
    del batches
    release_seconds = time.perf_counter() - release_start
    if release_seconds > 1.0:
        log.info("input pipeline released in %.1f s", release_seconds)
    if profiling:
        tf.profiler.experimental.stop()
    result = {"history": state.history, "best": state.best, "best_epoch": state.best_epoch,
              "step": state.step, "stopped_early": state.stopped_early, "runtime": runtime_info}
    if config.final_eval_full_resolution and role.is_chief:
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
