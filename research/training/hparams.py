"""TensorBoard's HParams dashboard for training runs: each run's settings and final metrics.

Every run writes, into WORKDIR/tensorboard/, an HParams session: the config fields that
differ from its named config plus the main ones (`MAIN_FIELDS`), and at the end its final
metrics as scalars under `final/`. Pointing TensorBoard at a folder of runs (an ablation's
parent folder, or runs/) then lists them side by side in the HParams tab, to compare,
filter and plot. `write_experiment` adds the experiment's description (every hparam's
values and the metrics) to such a parent folder.
"""
import dataclasses
import os
import typing

import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

# Shown for every run, whether or not they differ from the named config.
MAIN_FIELDS = ("model", "backbone", "input_size", "batch_size", "accumulate_steps", "optimizer",
               "learning_rate", "lr_schedule", "epochs", "bn_policy", "ema_decay", "loss_impl", "seed")
# The final metrics each run writes (tags under the run's tensorboard/ folder).
FINAL_METRICS = ("final/val_mean_iou", "final/val_pixel_accuracy", "final/val_loss", "final/best_monitored")


def hparam_value(config_class, name, value):
    """`value` of field `name` as the HParams plugin holds it: bool, int, float or str.

    A field that may be null or a tuple, or is typed bool/str/int alike ("auto"), is
    always text, so every run gives one field the same type (the dashboard's columns
    and filters need one type per hparam).
    """
    annotation = typing.get_type_hints(config_class)[name]
    if annotation in (bool, int, float, str):
        return value
    return str(list(value) if isinstance(value, tuple) else value)


def run_hparams(config, named=None, extra_fields=()):
    """{field: value} of `config` for the dashboard: MAIN_FIELDS, `extra_fields` (an
    ablation's axes, so every run of a grid shows them) and every field that differs from
    `named` (the config it was made from, or None)."""
    fields = [f.name for f in dataclasses.fields(config)]
    shown = set(MAIN_FIELDS) | set(extra_fields)
    if named is not None:
        shown |= {name for name in fields if getattr(config, name) != getattr(named, name)}
    return {name: hparam_value(type(config), name, getattr(config, name)) for name in fields if name in shown}


def named_config_of(config):
    """The named config `config` was made from, or None (a custom or file config): the one
    whose name `config.name` is, or starts with followed by a space (an ablation's cells
    are named "<base> ablation <cell>")."""
    from research.configs import NAMED_CONFIGS

    for name, make in NAMED_CONFIGS.items():
        if config.name == name or config.name.startswith(name + " "):
            return make()
    return None


# The event files of a session and of an experiment description carry these suffixes, so
# that a rewrite can remove the one it replaces.
SESSION_SUFFIX = ".hparams_session"
EXPERIMENT_SUFFIX = ".hparams_experiment"


def _write_replacing(logdir, suffix, write):
    """Runs `write()` into a new event file in `logdir` named with `suffix`, then removes
    the older files with that suffix. TensorBoard keeps the first session (or experiment)
    it reads in a folder, so a rewritten one must be the only one there. Until the old
    file is removed both exist: a kill in between keeps the old settings, not none."""
    # Listed, not globbed: the folder's path is a literal, not a pattern.
    older = ([os.path.join(logdir, name) for name in tf.io.gfile.listdir(logdir) if name.endswith(suffix)]
             if tf.io.gfile.isdir(logdir) else [])
    writer = tf.summary.create_file_writer(logdir, filename_suffix=suffix)
    with writer.as_default():
        write()
    writer.close()
    for path in older:
        tf.io.gfile.remove(path)


def write_session(logdir, config, trial_id, extra_fields=()):
    """Writes the run's HParams session (its settings, `run_hparams`) into `logdir`,
    replacing one written before (a resumed run may change its epochs or patience).

    `trial_id` names the run in the dashboard's table; TensorBoard averages the metrics of
    sessions that share one, so it must differ between runs (the workdir's path)."""
    _write_replacing(logdir, SESSION_SUFFIX, lambda: hp.hparams(
        run_hparams(config, named_config_of(config), extra_fields), trial_id=trial_id))


def write_final_metrics(logdir, last_row, best, step):
    """Writes the run's final metrics (the last epoch's val metrics, the best monitored
    value) as scalars under final/ in `logdir`, at global step `step`."""
    values = {"final/val_mean_iou": last_row.get("val_mean_iou"),
              "final/val_pixel_accuracy": last_row.get("val_pixel_accuracy"),
              "final/val_loss": last_row.get("val_loss"), "final/best_monitored": best}
    with tf.summary.create_file_writer(logdir).as_default(step=step):
        for tag, value in values.items():
            if value is not None:
                tf.summary.scalar(tag, float(value))


def write_experiment(logdir, configs, extra_fields=(), metrics=FINAL_METRICS):
    """Describes an experiment (a parent folder of runs) for the HParams tab: every
    hparam the runs write, with every value they take, and the metric columns; replaces
    the description written before (a grid rerun with more axes).

    Args:
      logdir: the parent folder; configs: the runs' Configs; extra_fields: as in
        `run_hparams`; metrics: scalar tags.
    """
    values = {}
    for config in configs:
        for name, value in run_hparams(config, named_config_of(config), extra_fields).items():
            values.setdefault(name, set()).add(value)
    hparams = [hp.HParam(name, hp.Discrete(sorted(found, key=str))) for name, found in sorted(values.items())]
    _write_replacing(logdir, EXPERIMENT_SUFFIX, lambda: hp.hparams_config(
        hparams=hparams, metrics=[hp.Metric(tag) for tag in metrics]))


def read_session(logdir):
    """{hparam: value} of the HParams session in `logdir`, read back with TensorBoard's
    own event reader (as its dashboard does); {} when there is none."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.plugins.hparams import metadata

    if not os.path.isdir(logdir):
        return {}
    events = event_accumulator.EventAccumulator(logdir, size_guidance={event_accumulator.TENSORS: 0})
    events.Reload()
    try:
        content = events.PluginTagToContent(metadata.PLUGIN_NAME).get(metadata.SESSION_START_INFO_TAG)
    except KeyError:   # no HParams data in the folder yet (a run's first start)
        return {}
    if content is None:
        return {}
    info = metadata.parse_session_start_info_plugin_data(content)
    return {name: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
            for name, value in info.hparams.items()}
