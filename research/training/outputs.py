"""Everything a training run writes for its user, and only on the chief.

Multi-worker rule: every worker runs the same loop, but only the chief (task 0, or the
only process) writes what a user reads: config.json, train_log.csv, TensorBoard events and
profiler traces, and the best model's export. `RunOutputs` on another worker writes nothing,
so the loop calls it unconditionally. Checkpoints follow their own protocol
(`research.training.checkpoints`).
"""
import csv
import io
import logging
import os

import numpy as np
import tensorflow as tf

from research import export as export_lib
from research.data import voc
from research.fileio import atomic_write_json, atomic_write_text
from research.training import hparams
from research.training.loop_state import CSV_COLUMNS, METRIC_NAMES

log = logging.getLogger("research")


def write_csv_log(path, history):
    """Rewrites train_log.csv from the history atomically (never torn, never duplicated)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow(row)
    atomic_write_text(path, buffer.getvalue())


def prediction_strip(model, images, labels, count, palette=voc.VOC_PALETTE):
    """uint8 [count, H, 3W, 3]: image | true mask | predicted mask, in the dataset's colours
    (`palette` uint8 [256, 3]).

    Args: images float32 [B, H, W, 3] in [0, 255]; labels int [B, H, W]; count <= B.
    """
    images, labels = images[:count], labels[:count]
    logits = model(images, training=False)
    predicted = np.argmax(np.asarray(logits), axis=-1)
    pictures = np.clip(np.asarray(images), 0, 255).astype(np.uint8)
    truth = voc.index_to_rgb(np.asarray(labels).astype(np.uint8), palette)
    guess = voc.index_to_rgb(predicted.astype(np.uint8), palette)
    return np.concatenate([pictures, truth, guess], axis=2)


class RunOutputs:
    """config.json, train_log.csv, TensorBoard and the export of one run (chief only).

    Args:
      config: the run's Config; workdir: the run's folder; is_chief: whether to write.
      hparam_fields: config fields the HParams session shows besides its usual ones.
    """

    def __init__(self, config, workdir, is_chief, hparam_fields=()):
        self.config, self.workdir, self.is_chief = config, workdir, is_chief
        self.hparam_fields = tuple(hparam_fields)
        self._writers = {split: (tf.summary.create_file_writer(os.path.join(workdir, "tensorboard", split))
                                 if is_chief else tf.summary.create_noop_writer())
                         for split in ("train", "val")}

    def write_run_config(self, runtime_info):
        """config.json: the config and the runtime choices this run made."""
        if self.is_chief:
            atomic_write_json(os.path.join(self.workdir, "config.json"),
                              {"config": self.config.to_dict(), "runtime": runtime_info})

    def write_hparams(self):
        """The run's HParams session (its settings) in WORKDIR/tensorboard/, rewritten at
        every start: a resume may change fields such as epochs. The fields the earlier
        session showed stay shown, so an ablation cell resumed by `research.train` alone
        keeps its grid's axes."""
        if self.is_chief:
            logdir = os.path.join(self.workdir, "tensorboard")
            shown = self.hparam_fields + tuple(name for name in hparams.read_session(logdir)
                                               if name not in self.hparam_fields)
            hparams.write_session(logdir, self.config, trial_id=os.path.abspath(self.workdir), extra_fields=shown)

    def write_final_metrics(self, state):
        """The run's final metrics for the HParams tab (last epoch's val, best monitored)."""
        if self.is_chief and state.history:
            hparams.write_final_metrics(os.path.join(self.workdir, "tensorboard"), state.history[-1],
                                        state.best, state.step)

    def write_csv(self, history):
        """train_log.csv as of `history` (the rows a checkpoint holds)."""
        if self.is_chief:
            write_csv_log(os.path.join(self.workdir, "train_log.csv"), history)

    def log_step(self, step, values):
        """Step scalars (`values`: name -> float) under TensorBoard's train/step/."""
        with self._writers["train"].as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(f"step/{name}", value)

    def log_epoch(self, row, step, model, tb_images=None, palette=voc.VOC_PALETTE):
        """An epoch's train and val scalars, and the prediction pictures of `tb_images`
        ((images, labels) of a few val samples) when given, in `palette`'s colours."""
        for split, prefix in (("train", ""), ("val", "val_")):
            with self._writers[split].as_default(step=step):
                tf.summary.scalar("epoch/loss", row[prefix + "loss"])
                for name in METRIC_NAMES:
                    tf.summary.scalar(f"epoch/{name}", row[prefix + name])
        with self._writers["train"].as_default(step=step):
            tf.summary.scalar("epoch/learning_rate", row["learning_rate"])
            tf.summary.scalar("epoch/images_per_second", row["images_per_second"])
        if tb_images is not None and self.is_chief:
            count = self.config.tensorboard_images
            with self._writers["val"].as_default(step=step):
                tf.summary.image("predictions (image | truth | predicted)",
                                 prediction_strip(model, *tb_images, count, palette), max_outputs=count)

    def export_best(self, model, info):
        """Exports `model` as the run's best to WORKDIR/export (when config.export_best)."""
        if self.is_chief and self.config.export_best:
            export_lib.export_model(model, os.path.join(self.workdir, "export"), self.config, info)

    def flush(self):
        """Writes the TensorBoard events buffered so far."""
        for writer in self._writers.values():
            writer.flush()


class StepProfiler:
    """Traces global steps `config.profile_steps` = (first, last) with TensorBoard's
    profiler, on the chief, into WORKDIR/tensorboard. A context manager: the trace stops
    on any exit, a signal or a non-finite loss included.

    Use: `with profiler.step(step): ...` around each step (step = steps taken before it).
    """

    def __init__(self, config, workdir, is_chief):
        self._steps = config.profile_steps if is_chief else None
        self._logdir = os.path.join(workdir, "tensorboard")
        self._tracing = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._stop()

    def step(self, step):
        """The context of the step that starts after `step` steps: starts the trace at the
        first profiled step; the trace of every step is named by its number."""
        if self._steps and step == self._steps[0] and not self._tracing:
            tf.profiler.experimental.start(self._logdir)
            self._tracing = True
        return tf.profiler.experimental.Trace("train", step_num=step, _r=1)

    def after_step(self, step):
        """Stops the trace once step number `step` (as passed to `step`) was the last."""
        if self._tracing and step >= self._steps[1]:
            self._stop()
            log.info("profiler trace of steps %s written to %s", self._steps, self._logdir)

    def _stop(self):
        if self._tracing:
            tf.profiler.experimental.stop()
            self._tracing = False
