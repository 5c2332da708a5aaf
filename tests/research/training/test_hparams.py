"""HParams: each run's settings and final metrics, readable with TensorBoard's reader."""
import os

import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from research.config import Config
from research.configs import smoke
from research.training import hparams


def test_a_run_shows_its_main_fields_and_what_differs_from_its_named_config():
    config = smoke.get_config().replace(learning_rate=0.5, skip_bad=True, ema_decay=0.9)
    values = hparams.run_hparams(config, hparams.named_config_of(config))
    assert values["learning_rate"] == 0.5 and values["skip_bad"] is True
    assert values["ema_decay"] == "0.9" and values["input_size"] == "[32, 32]"   # optional, tuple: text
    assert set(hparams.MAIN_FIELDS) <= set(values)
    assert "log_every_steps" not in values                     # same as smoke's: left out
    # An ablation's axes show for every run, also where a run keeps the named config's value.
    assert hparams.run_hparams(config, hparams.named_config_of(config), ["ce_weight"])["ce_weight"] == 1.0
    assert hparams.named_config_of(Config(name="custom")) is None
    assert hparams.named_config_of(Config(name="smoke ablation loss-ce")).name == "smoke"
    assert hparams.named_config_of(Config(name="smokey")) is None


def test_session_and_final_metrics_are_readable_with_tensorboards_reader(tmp_path):
    logdir = str(tmp_path)
    config = smoke.get_config().replace(batch_size=4)
    hparams.write_session(logdir, config, trial_id="cell")
    hparams.write_final_metrics(logdir, {"val_mean_iou": 0.25, "val_pixel_accuracy": 0.5, "val_loss": 1.5},
                                best=1.25, step=7)
    session = hparams.read_session(logdir)
    assert session["batch_size"] == 4 and session["model"] == "deeplab_v3"
    events = event_accumulator.EventAccumulator(logdir, size_guidance={event_accumulator.TENSORS: 0})
    events.Reload()
    finals = {tag: events.Tensors(tag)[-1] for tag in hparams.FINAL_METRICS}
    assert float(tf.make_ndarray(finals["final/val_mean_iou"].tensor_proto)) == 0.25
    assert finals["final/best_monitored"].step == 7
    assert hparams.read_session(str(tmp_path / "none")) == {}


def test_experiment_lists_every_value_the_runs_take(tmp_path):
    runs = [smoke.get_config().replace(batch_size=b) for b in (2, 4)]
    hparams.write_experiment(str(tmp_path), runs)
    events = event_accumulator.EventAccumulator(str(tmp_path))
    events.Reload()
    from tensorboard.plugins.hparams import metadata
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.EXPERIMENT_TAG]
    experiment = metadata.parse_experiment_plugin_data(content)
    batch = next(h for h in experiment.hparam_infos if h.name == "batch_size")
    assert sorted(v.number_value for v in batch.domain_discrete.values) == [2, 4]
    assert [m.name.tag for m in experiment.metric_infos] == list(hparams.FINAL_METRICS)


def test_a_rewritten_session_or_experiment_replaces_the_first(tmp_path):
    # TensorBoard keeps the first session it reads in a folder: a resumed run that changed
    # its epochs, or a grid rerun with another axis, must leave only the new one. The
    # folder is named like an ablation cell whose value has glob characters.
    logdir = str(tmp_path / "input_size-[96,96]")
    config = smoke.get_config()
    hparams.write_session(logdir, config.replace(epochs=1), trial_id="/runs/a")
    hparams.write_final_metrics(logdir, {"val_mean_iou": 0.25}, best=0.25, step=3)
    hparams.write_session(logdir, config.replace(epochs=5), trial_id="/runs/a")
    assert hparams.read_session(logdir)["epochs"] == 5
    assert len([name for name in os.listdir(logdir) if name.endswith(hparams.SESSION_SUFFIX)]) == 1
    assert "final/val_mean_iou" in _tags(logdir)               # other events are kept
    hparams.write_experiment(logdir, [config], extra_fields=["ce_weight"])
    hparams.write_experiment(logdir, [config], extra_fields=["ce_weight", "bn_momentum"])
    assert "bn_momentum" in _experiment_hparams(logdir)


def _tags(logdir):
    events = event_accumulator.EventAccumulator(logdir, size_guidance={event_accumulator.TENSORS: 0})
    events.Reload()
    return set(events.Tags()["tensors"])


def _experiment_hparams(logdir):
    from tensorboard.plugins.hparams import metadata

    events = event_accumulator.EventAccumulator(logdir)
    events.Reload()
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.EXPERIMENT_TAG]
    return {h.name for h in metadata.parse_experiment_plugin_data(content).hparam_infos}


def test_a_resume_without_the_grids_axes_keeps_showing_them(tmp_path):
    # An ablation cell resumed by `python -m research.train` (no hparam_fields) keeps the
    # axes its grid showed; a changed field shows too.
    from research.training.outputs import RunOutputs

    config = smoke.get_config()
    RunOutputs(config, str(tmp_path), is_chief=True, hparam_fields=["ce_weight"]).write_hparams()
    RunOutputs(config.replace(epochs=7), str(tmp_path), is_chief=True).write_hparams()
    session = hparams.read_session(str(tmp_path / "tensorboard"))
    assert session["ce_weight"] == 1.0 and session["epochs"] == 7
