"""Checkpoints: what one holds, TF's multi-worker save protocol, restore and leftovers.

A checkpoint holds the model, the optimizer (slots, loss scale), the train confusion
counts and the loop's bookkeeping (`LoopState` as JSON), so a resumed run continues
exactly: same step, learning rate, schedules' waits and data position. TF writes a
checkpoint's files first and its `checkpoint` index last, atomically, so a kill at any
moment leaves the previous checkpoint usable.
"""
import glob
import logging
import os
import re
import shutil

import tensorflow as tf

from research import export as export_lib
from research.faults import kill_point
from research.fileio import remove_interrupted_writes
from research.training.distributed import check_same_start, keep_sums_on_chief
from research.training.loop_state import LoopState, as_float32
from research.training.steps import all_finite

log = logging.getLogger("research")


class CheckpointFiles:
    """tf.train.CheckpointManager of `directory`, under TF's multi-worker save protocol.

    Every worker calls `save` (saving reads variables, such as the confusion matrices,
    that are summed across workers: a collective). The chief writes `directory`; every
    other worker writes into its own `worker<i>_temp/` inside it, removed at once, so
    saving works with one shared workdir (NFS, GCS) or a folder per worker. Restoring (a
    resume, a NaN restore) reads `latest_checkpoint` on every worker, so it needs the
    chief's checkpoints on each: one shared workdir, or a copy of the chief's folder; the
    workers check that they agree before they restore.
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

    def restore(self, path):
        """Restores checkpoint `path` (every object it holds must match).

        Raises ValueError naming the checkpoint when its files cannot be read
        (`research.export.restore_checkpoint`) or do not fit the model.
        """
        status = export_lib.restore_checkpoint(self._checkpoint, path)
        try:
            status.assert_existing_objects_matched()
        except AssertionError as e:
            raise export_lib.model_mismatch(path, self._checkpoint.model, "this run", e) from None

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
            for path in glob.glob(glob.escape(prefix) + ".*"):  # the prefix is a literal path
                shutil.copyfile(path, os.path.join(kept_dir, os.path.basename(path)))
            tf.compat.v1.train.update_checkpoint_state(   # atomic write of the index
                self.directory, os.path.relpath(kept, self.directory),
                [os.path.relpath(p, self.directory) for p in self._manager.checkpoints]
                + [os.path.relpath(kept, self.directory)])
        path = self._manager.save(checkpoint_number=number)
        shutil.rmtree(kept_dir, ignore_errors=True)
        return path


def checkpoint_step(path):
    """The step number of checkpoint `path` (".../ckpt-N"), or -1 for None."""
    if not path:
        return -1
    number = os.path.basename(path).rsplit("-", 1)[-1]
    return int(number) if number.isdigit() else -1


class Checkpointer:
    """The run's checkpoints: restore the latest, save, and check what would be saved.

    Args:
      train_state: the run's `TrainState` (model, optimizer, train confusion).
      runtime: the run's `Runtime` (strategy, worker role, the checkpoint it resumes).
      config: the run's Config; ckpt_dir: WORKDIR/checkpoints.
    """

    def __init__(self, train_state, runtime, config, ckpt_dir):
        self._runtime = runtime
        self._config = config
        self._optimizer = train_state.optimizer
        self._confusion = train_state.train_confusion
        # Outside the strategy's scope: it would broadcast the initial value from the
        # chief with a collective that has no string kernel. Every worker holds the same text.
        self._loop_state_text = tf.Variable(LoopState().to_json(), dtype=tf.string, trainable=False)
        checkpoint = tf.train.Checkpoint(model=train_state.model, optimizer=train_state.optimizer,
                                         loop_state=self._loop_state_text,
                                         train_confusion=train_state.train_confusion)
        self.files = CheckpointFiles(checkpoint, ckpt_dir, config.keep_checkpoints, runtime.role)
        # Every float variable a checkpoint or export holds: weights, BatchNorm statistics,
        # optimizer slots (and the loss scale). One pass, before every save and export.
        saved_floats = [v for v in train_state.model.weights + train_state.optimizer.variables
                        if "float" in str(v.dtype)]
        self._weights_finite = tf.function(lambda: all_finite(saved_floats), autograph=False)

    @property
    def latest(self):
        """Path prefix of the chief's latest checkpoint, or None (reads the folder)."""
        return self.files.latest_checkpoint

    def initial_state(self):
        """The LoopState the run starts from: the resumed checkpoint's, or a new one.

        Every worker must call this together: they check they start alike.
        """
        runtime = self._runtime
        if runtime.resume_from:
            state = self.restore(runtime.resume_from)
            log.info("resumed from %s: step %d, epoch %d, learning rate %.3g", runtime.resume_from,
                     state.step, state.epoch, float(self._optimizer.learning_rate.numpy()))
        else:
            state = LoopState(workers=runtime.role.count,
                              base_learning_rate=as_float32(self._config.learning_rate))
            self._confusion.reset()
        check_same_start(state, runtime.role, runtime.worker_gather, runtime.resume_from)
        return state

    def restore(self, path):
        """Restores checkpoint `path` into the model and optimizer; returns its LoopState."""
        self.files.restore(path)
        keep_sums_on_chief(self._runtime.strategy, self._confusion, path)
        restored = LoopState.from_json(self._loop_state_text.numpy().decode())
        if restored.base_learning_rate is None:  # a checkpoint from before per-step schedules
            restored.base_learning_rate = float(self._optimizer.learning_rate.numpy())
        return restored

    def save(self, state):
        """Writes checkpoint number `state.step` holding `state` (every worker together)."""
        self._loop_state_text.assign(state.to_json())
        self.files.save(checkpoint_number=state.step)
        kill_point("checkpoint")

    def weights_finite(self):
        """Whether every float variable a checkpoint would hold is finite (host sync)."""
        return bool(self._weights_finite())


def remove_leftovers(workdir, ckpt_dir, latest):
    """Deletes what a killed earlier run of this workdir left half-written (never read).

    `latest`: the checkpoint the run resumes (tf.train.latest_checkpoint), or None.

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
                and os.path.dirname(latest or "") != os.path.join(ckpt_dir, entry))
            if leftover:
                shutil.rmtree(os.path.join(ckpt_dir, entry), ignore_errors=True)
                removed.append(os.path.join(ckpt_dir, entry))
    if removed:
        log.info("removed %d leftover(s) of interrupted writes: %s", len(removed),
                 ", ".join(os.path.relpath(p, workdir) for p in removed))
