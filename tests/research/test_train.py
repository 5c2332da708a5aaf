"""The custom training loop: end to end on the embedded dataset, and each machinery piece.

Runs use the `smoke` config: a reduced ResNet (one block per stage, width 8), 32 px
inputs, a few steps per epoch, so every test here takes seconds.
"""
import glob
import json
import logging
import math
import os
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf
import keras

import kernels
from tests.helpers import graph_ancestors, read_csv, sigterm_during
from research import build
from research import configs
from research import export as export_lib
from research import train as train_lib
from research.training import hparams
from research.training.checkpoints import remove_leftovers


def event_tags(folder):
    """{tag: number of events} over every TensorBoard event file below `folder`."""
    tags = {}
    for path in glob.glob(os.path.join(folder, "**", "events.out.tfevents.*"), recursive=True):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags[value.tag] = tags.get(value.tag, 0) + 1
    return tags


def _resume_config(config):
    # Forces a learning-rate drop after every epoch (val_loss "improving" upwards rarely
    # happens), so the LR state has something to carry across a kill.
    return config.replace(epochs=3, steps_per_epoch=3, monitor="val_loss", monitor_mode="max",
                          plateau_patience=1, early_stop_patience=10, checkpoint_every_steps=100,
                          profile_steps=(1, 2))


@pytest.fixture(scope="module")
def straight_run(synthetic_voc_root, tmp_path_factory):
    """One uninterrupted smoke run: (config, workdir, result), shared by several tests;
    result["heap_releases"]: the steps after which the loop gave malloc's free pages back."""
    config = _resume_config(configs.load_config("smoke").replace(voc_root=synthetic_voc_root))
    workdir = str(tmp_path_factory.mktemp("straight") / "run")
    releases, release = [], train_lib.memory.release_free_heap

    def counted_release():
        releases.append(True)
        return release()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_lib.memory, "release_free_heap", counted_release)
        result = train_lib.train_and_evaluate(config, workdir)
    return config, workdir, dict(result, heap_releases=len(releases))


def test_smoke_run_end_to_end(straight_run):
    config, workdir, result = straight_run
    assert result["step"] == config.epochs * config.steps_per_epoch
    assert result["heap_releases"] == config.epochs  # after each epoch's first step (tracing)
    rows = read_csv(os.path.join(workdir, "train_log.csv"))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert list(rows[0]) == list(train_lib.CSV_COLUMNS)
    for row in rows:
        for name in ("loss", "val_loss", "mean_iou", "val_mean_iou", "val_pixel_accuracy"):
            assert math.isfinite(float(row[name])), name
        assert 0.0 <= float(row["val_pixel_accuracy"]) <= 1.0
        assert float(row["images_per_second"]) > 0
    saved = json.load(open(os.path.join(workdir, "config.json")))
    assert saved["config"]["name"] == "smoke"
    assert saved["runtime"]["jit_compile"] is False and saved["runtime"]["precision"] == "float32"
    assert "enabled" in saved["runtime"]["onednn"]
    assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith(f"ckpt-{result['step']}")
    for name in ("model.keras", "export.json", "saved_model/saved_model.pb"):
        assert os.path.exists(os.path.join(workdir, "export", name)), name

    train_tags = event_tags(os.path.join(workdir, "tensorboard", "train"))
    val_tags = event_tags(os.path.join(workdir, "tensorboard", "val"))
    for tag in ("step/loss", "step/learning_rate", "step/images_per_second", "epoch/loss", "epoch/mean_iou"):
        assert tag in train_tags, tag
    assert val_tags["epoch/mean_iou"] == 3
    assert any(tag.startswith("predictions") for tag in val_tags)
    log_text = open(os.path.join(workdir, "train.log")).read()
    assert "runtime:" in log_text and "epoch 3:" in log_text
    # TensorBoard's HParams tab: the run's settings and final metrics (tensorboard/).
    session = hparams.read_session(os.path.join(workdir, "tensorboard"))
    assert session["lr_schedule"] == config.lr_schedule and session["epochs"] == 3
    final = event_tags(os.path.join(workdir, "tensorboard"))
    assert set(hparams.FINAL_METRICS) <= set(final)


def test_profiler_traces_requested_steps(straight_run):
    _, workdir, _ = straight_run
    traces = glob.glob(os.path.join(workdir, "tensorboard", "plugins", "profile", "*", "*.xplane.pb"))
    assert traces, "no profiler trace written"


def _tiny_batch(size=32, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    labels = np.zeros((batch, size, size), "int32")
    labels[:, :, size // 2:] = 1           # left/right halves: an easy, learnable split
    images[:, :, size // 2:, 0] = 255.0
    labels[:, :2] = 255                    # a boundary band the loss must ignore
    return tf.constant(images), tf.constant(labels)


def _step_pieces(config, precision="float32", use_xla=False, seed=0):
    keras.utils.set_random_seed(seed)
    strategy = tf.distribute.get_strategy()
    model = build.build_model(config, precision)
    optimizer = build.make_optimizer(config, precision)
    optimizer.build(model.trainable_variables)
    confusion = kernels.StreamingConfusionMatrix(config.num_classes, config.ignore_label)
    step = train_lib.make_train_step(model, optimizer, strategy, config, confusion, use_xla,
                                     loss_scaling=precision == "mixed_float16")
    return model, optimizer, step


def test_loss_decreases_on_a_fixed_batch(smoke_config):
    images, labels = _tiny_batch()
    model, _, step = _step_pieces(smoke_config.replace(learning_rate=3e-3))
    losses = [float(step(images, labels)[0]) for _ in range(25)]
    assert losses[-1] < 0.6 * losses[0], losses


def test_the_loss_reads_the_logits_after_the_predictions(smoke_config):
    # The argmax for the training confusion matrix runs before the loss's softmax, which
    # can then write its gradient into the logits' buffer (one logits-sized tensor less at
    # the step's memory peak, docs/small_batches.md): its input must wait for the argmax.
    images, labels = _tiny_batch()
    _, _, step = _step_pieces(smoke_config)
    graph = step.get_concrete_function(images, labels).graph
    # One replica: the replica step is a tf.function of its own, called by this one.
    graphs = [graph] + [f.graph for f in graph._functions.values() if hasattr(f, "graph")]
    softmax = [op for g in graphs for op in g.get_operations() if op.type == "SparseSoftmaxCrossEntropyWithLogits"]
    assert len(softmax) == 1
    assert any(op.type == "ArgMax" for op in graph_ancestors(softmax[0]).values())


@pytest.mark.slow
def test_xla_and_the_fused_optimizer_train_like_their_twins(smoke_config):
    # The project's step with XLA against the same step without, and the fused optimizer
    # against Keras' without XLA: three builds (the XLA compile is most of this test's
    # time). Keras' optimizer under XLA is Keras' own; the fused one's update matches
    # Keras' eagerly, in tf.function and under XLA in tests/kernels/test_optimizers.py.
    # Same initial weights and batch in every build.
    images, labels = _tiny_batch()
    losses = {}
    for impl, use_xla in (("fused", False), ("fused", True), ("keras", False)):
        _, optimizer, step = _step_pieces(smoke_config.replace(optimizer_impl=impl), use_xla=use_xla)
        assert isinstance(optimizer, kernels.FusedAdam) == (impl == "fused")
        losses[impl, use_xla] = [float(step(images, labels)[0]) for _ in range(4)]
    # XLA on and off: the first loss agrees tightly; the second (after one Adam update,
    # which amplifies round-off in near-zero gradients) closely.
    assert losses["fused", True][0] == pytest.approx(losses["fused", False][0], rel=1e-5)
    assert losses["fused", True][1] == pytest.approx(losses["fused", False][1], rel=1e-3)
    # The whole step with either optimizer. Weights are not compared: gradients that are
    # round-off (the bias of a conv before BatchNorm) differ between any two runs on a
    # threaded CPU, and Adam turns them into full +-lr steps. The losses follow each other.
    assert losses["fused", False][0] == pytest.approx(losses["keras", False][0], rel=1e-5)
    assert losses["fused", False] == pytest.approx(losses["keras", False], rel=1e-3)


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_steps_run_on_cpu(smoke_config, precision):
    images, labels = _tiny_batch()
    model, optimizer, step = _step_pieces(smoke_config, precision=precision)
    assert model(images[:1]).dtype == tf.float32  # float32 logits under a mixed policy
    assert any(layer.compute_dtype != "float32" for layer in model.layers)
    loss, finite = step(images, labels)
    assert math.isfinite(float(loss))
    if precision == "mixed_float16":
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        assert float(optimizer.dynamic_scale) > 1.0
    else:
        assert not isinstance(optimizer, keras.optimizers.LossScaleOptimizer)


def test_bfloat16_with_xla_on_cpu_falls_back(caplog):
    use, reason = train_lib.runtime.resolve_jit_compile(True, "cpu", "mixed_bfloat16", 1)
    assert use is False and "fallback" in reason
    assert "mixed_bfloat16 with XLA fails on CPU" in caplog.text
    assert train_lib.runtime.resolve_jit_compile("auto", "gpu", "mixed_float16", 1)[0] is True
    assert train_lib.runtime.resolve_jit_compile("auto", "gpu", "mixed_float16", 2)[0] is False
    assert train_lib.runtime.resolve_jit_compile(True, "gpu", "mixed_float16", 2)[0] is False


def test_loss_scale_skips_overflowing_steps(smoke_config, tmp_path):
    # float16 gradients overflow when the initial loss scale is absurd: the optimizer
    # skips those steps (weights unchanged), halves the scale, and the loop counts them.
    images, labels = _tiny_batch()
    model, optimizer, step = _step_pieces(smoke_config, precision="mixed_float16")
    optimizer.dynamic_scale.assign(2.0 ** 60)
    before = [w.numpy().copy() for w in model.trainable_weights]
    loss, finite = step(images, labels)
    assert not bool(finite) and math.isfinite(float(loss))
    assert float(optimizer.dynamic_scale) == 2.0 ** 59
    for a, w in zip(before, model.trainable_weights, strict=True):
        np.testing.assert_array_equal(a, w.numpy())


def test_a_workdir_whose_path_is_a_glob_pattern_is_refused_before_anything_is_written(smoke_config, tmp_path):
    # TensorFlow would find no checkpoint in it, so a rerun would start from scratch.
    workdir = tmp_path / "lr-[1e-3]"
    with pytest.raises(ValueError, match=r"lr-\[1e-3\]: a run folder's path must not hold \[ \]"):
        train_lib.train_and_evaluate(smoke_config, str(workdir))
    assert not workdir.exists()


def test_results_without_a_checkpoint_are_kept_from_a_different_config(straight_run, tmp_path):
    config, finished, _ = straight_run
    workdir = str(tmp_path / "copy")
    shutil.copytree(finished, workdir, ignore=shutil.ignore_patterns("checkpoints"))
    kept = {name: open(os.path.join(workdir, name), "rb").read()
            for name in ("train_log.csv", os.path.join("export", "export.json"), "config.json")}
    with pytest.raises(ValueError, match=r"holds the results \(train_log.csv, export/\) but no checkpoint "
                                         r"of a different config \(seed: 0 -> 5\)"):
        train_lib.train_and_evaluate(config.replace(seed=5), workdir)
    with pytest.raises(ValueError, match=r"early_stop_patience: 10 -> 3"):     # one a resume may change
        train_lib.train_and_evaluate(config.replace(early_stop_patience=3), workdir)
    assert kept == {name: open(os.path.join(workdir, name), "rb").read() for name in kept}


def test_a_damaged_latest_checkpoint_is_named_with_the_others_beside_it(straight_run, tmp_path):
    config, finished, _ = straight_run
    workdir = str(tmp_path / "copy")
    shutil.copytree(finished, workdir)
    latest = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
    [data] = glob.glob(latest + ".data-*")
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
    pattern = rf"{re.escape(latest)}: the checkpoint cannot be read \(.*\): damaged or incomplete files; the other"
    with pytest.raises(ValueError, match=pattern):
        train_lib.train_and_evaluate(config, workdir)
    with pytest.raises(ValueError, match=pattern):
        export_lib.load_model(workdir, export_lib.read_run_config(workdir), source="checkpoint")


@pytest.mark.slow
def test_interrupt_then_resume_continues_exactly(straight_run, tmp_path, monkeypatch):
    config, _, reference = straight_run
    config = config.replace(export_best=False)    # the export is test_smoke_run_end_to_end's
    workdir = str(tmp_path / "interrupted")
    # At epoch 2's last step (global step 6), before its evaluation: the resumed run first
    # ends epoch 2 and saves ckpt-6 again (CheckpointFiles._replace). A stop mid-epoch is
    # tested in tests/research/test_reliability.py's kill chain.
    undo = sigterm_during(monkeypatch, train_lib, epoch=2, count=3)
    with pytest.raises(train_lib.TrainingInterrupted, match="SIGTERM at step 6"):
        train_lib.train_and_evaluate(config, workdir)
    assert len(read_csv(os.path.join(workdir, "train_log.csv"))) == 1
    assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith("ckpt-6")
    undo()

    resumed = train_lib.train_and_evaluate(config, workdir)
    assert resumed["step"] == reference["step"] == 9
    rows, expected = resumed["history"], reference["history"]
    assert [r["step"] for r in rows] == [3, 6, 9]
    assert [r["learning_rate"] for r in rows] == [r["learning_rate"] for r in expected]
    assert rows[-1]["learning_rate"] < config.learning_rate
    for a, b in zip(rows, expected, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-3)
    csv_rows = read_csv(os.path.join(workdir, "train_log.csv"))
    assert [int(r["epoch"]) for r in csv_rows] == [1, 2, 3]
    assert not glob.glob(os.path.join(workdir, "checkpoints", "*_kept"))   # the replace finished
    # Early-stop state survived: the best value and epoch equal the uninterrupted run's.
    assert resumed["best"] == pytest.approx(reference["best"], rel=1e-3)
    assert resumed["best_epoch"] == reference["best_epoch"]

    # The finished workdir refuses a different config and a non-resuming start...
    with pytest.raises(ValueError, match="learning_rate"):
        train_lib.train_and_evaluate(config.replace(learning_rate=0.5), workdir)
    with pytest.raises(FileExistsError):
        train_lib.train_and_evaluate(config, workdir, resume=False)
    # ...and more epochs is a legitimate resume.
    extended = train_lib.train_and_evaluate(config.replace(epochs=4), workdir)
    assert [r["epoch"] for r in extended["history"]] == [1, 2, 3, 4]
    assert extended["history"][:3] == rows
    # The HParams tab shows the settings the run finished with.
    assert hparams.read_session(os.path.join(workdir, "tensorboard"))["epochs"] == 4


@pytest.mark.slow
def test_auto_precision_resumes_in_the_precision_the_run_started_in(smoke_config, tmp_path, monkeypatch, caplog):
    # Started where "auto" is mixed_float16 (a GPU, simulated), resumed on this CPU, where
    # it is float32: the LossScaleOptimizer checkpoint restores only into mixed_float16.
    # With ema_decay the averages live in the optimizer, whose checkpoint structure
    # depends on the precision: evaluation must restore it in the run's precision too.
    config = smoke_config.replace(precision="auto", epochs=1, steps_per_epoch=1, eval_steps=1,
                                  tensorboard_images=0, export_best=False, ema_decay=0.9)
    workdir = str(tmp_path / "run")
    monkeypatch.setattr(train_lib.runtime, "device_kind", lambda: "gpu")
    assert train_lib.train_and_evaluate(config, workdir)["runtime"]["precision"] == "mixed_float16"
    monkeypatch.undo()
    with caplog.at_level(logging.WARNING):   # restores the checkpoint; the run is already complete
        resumed = train_lib.train_and_evaluate(config, workdir)
    assert resumed["runtime"]["precision"] == "mixed_float16" and resumed["step"] == 1
    assert "precision auto is float32 on this cpu, but the run's checkpoints were written in " \
        "mixed_float16: resuming in mixed_float16" in caplog.text
    with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
        assert json.load(f)["runtime"]["precision"] == "mixed_float16"
    # Evaluation restores that checkpoint (a LossScaleOptimizer's) in the same precision.
    loaded = export_lib.load_model(workdir, export_lib.read_run_config(workdir), source="checkpoint")
    assert loaded.source["step"] == 1
    # A new run in another folder resolves auto on this device as usual.
    assert train_lib._precision_of_the_run(str(tmp_path / "new"), "float32", "cpu") == "float32"


def _small_model(extra_layer):
    """A 1x1 convolution, with a weightless layer before it or not (other layer positions)."""
    images = keras.Input((None, None, 3))
    x = keras.layers.Identity()(images) if extra_layer else images
    return keras.Model(images, keras.layers.Conv2D(2, 1)(x))


def test_resuming_a_checkpoint_of_other_layers_names_the_file_and_the_layer_counts(tmp_path):
    # Checkpoints key weights by layer position: one more layer moves every later one.
    directory = str(tmp_path / "checkpoints")
    role = train_lib.runtime.WorkerRole()
    saved = train_lib.CheckpointFiles(tf.train.Checkpoint(model=_small_model(False)), directory, 3, role).save(1)
    files = train_lib.CheckpointFiles(tf.train.Checkpoint(model=_small_model(True)), directory, 3, role)
    with pytest.raises(ValueError, match=rf"{re.escape(saved)}: does not match the model of this run "
                                         r"\(the checkpoint's model has 2 layers, this one 3"):
        files.restore(saved)
    files = train_lib.CheckpointFiles(tf.train.Checkpoint(model=_small_model(False)), directory, 3, role)
    files.restore(saved)


def test_rewriting_a_checkpoint_number_keeps_a_readable_latest_at_every_moment(tmp_path, monkeypatch):
    # A run stopped at an epoch's last step resumes and saves that epoch's end at the same
    # step: ckpt-N is written again. Killed while TF rewrites it, the latest must still be
    # a whole checkpoint: the old state, which the next launch resumes from.
    directory = str(tmp_path / "checkpoints")
    value = tf.Variable(1.0)
    checkpoint = tf.train.Checkpoint(value=value)
    files = train_lib.CheckpointFiles(checkpoint, directory, max_to_keep=3, role=train_lib.runtime.WorkerRole())
    files.save(3)
    files.save(5)
    value.assign(2.0)

    def killed(self, checkpoint_number=None, **kwargs):   # dies inside TF's write of ckpt-5
        with open(os.path.join(directory, "ckpt-5.index"), "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt

    real_save = tf.train.CheckpointManager.save
    monkeypatch.setattr(tf.train.CheckpointManager, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        files.save(5)
    monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)
    latest = tf.train.latest_checkpoint(directory)
    assert latest == os.path.join(directory, "ckpt-5_kept", "ckpt-5")
    tf.train.Checkpoint(value=value).restore(latest).assert_consumed()
    assert float(value) == 1.0                       # the state before the rewrite, whole

    # The next launch: leftovers keep that copy (it is the latest), the rewrite completes.
    remove_leftovers(str(tmp_path), directory, tf.train.latest_checkpoint(directory))
    assert os.path.isdir(os.path.join(directory, "ckpt-5_kept"))
    files = train_lib.CheckpointFiles(checkpoint, directory, max_to_keep=3, role=train_lib.runtime.WorkerRole())
    value.assign(3.0)
    assert files.save(5) == os.path.join(directory, "ckpt-5")
    assert tf.train.latest_checkpoint(directory) == os.path.join(directory, "ckpt-5")
    assert not os.path.exists(os.path.join(directory, "ckpt-5_kept"))
    value.assign(0.0)
    tf.train.Checkpoint(value=value).restore(os.path.join(directory, "ckpt-5")).assert_consumed()
    assert float(value) == 3.0
    assert tf.train.get_checkpoint_state(directory).all_model_checkpoint_paths[-1].endswith("ckpt-5")
    # A stale copy (killed after the rewrite was named) is a leftover.
    os.makedirs(os.path.join(directory, "ckpt-5_kept"))
    remove_leftovers(str(tmp_path), directory, tf.train.latest_checkpoint(directory))
    assert not os.path.exists(os.path.join(directory, "ckpt-5_kept"))


def poison_after_step(monkeypatch, global_step):
    """Makes the loss NaN for exactly one call: the first one after `global_step`.

    The flag is raised from the progress bar (which the loop updates after each
    step) and lowered by the loss function once used, so a restored run continues.
    """
    flag = tf.Variable(0, trainable=False)
    real_loss_function = build.loss_function

    def loss_function(config):
        fn, kwargs = real_loss_function(config)

        def poisoned(labels, logits, normalizers=None, **kw):
            loss = fn(labels, logits, normalizers=normalizers, **kw)
            use = flag > 0
            with tf.control_dependencies([use]):
                flag.assign(0)
            return tf.where(use, tf.constant(float("nan")), loss)

        return poisoned, kwargs

    real_update = train_lib.ProgressBar.update
    steps = {"n": 0}

    def update(self, n=1, **values):
        real_update(self, n, **values)
        steps["n"] += n
        if steps["n"] == global_step:
            flag.assign(1)

    monkeypatch.setattr(build, "loss_function", loss_function)
    monkeypatch.setattr(train_lib.ProgressBar, "update", update)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(smoke_config, tmp_path, monkeypatch):
    config = smoke_config.replace(epochs=3, checkpoint_every_steps=2, export_best=False)
    poison_after_step(monkeypatch, 4)
    workdir = str(tmp_path / "run")
    with pytest.raises(train_lib.NonFiniteLossError, match=r"loss nan at step 5 \(epoch 2\).*ckpt-4"):
        train_lib.train_and_evaluate(config, workdir)
    checkpoint = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
    assert checkpoint.endswith("ckpt-4")
    reader = tf.train.load_checkpoint(checkpoint)
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            assert np.all(np.isfinite(value)), name
    assert len(read_csv(os.path.join(workdir, "train_log.csv"))) == 1


def poison_weight_after_step(monkeypatch, global_step):
    """Sets a BatchNorm moving mean to NaN once, at the end of `global_step`.

    Training normalizes with batch statistics, so the loss and the gradients stay
    finite: only the check of all weights before a save can see it.
    """
    models = []
    real_build_model, real_update = build.build_model, train_lib.ProgressBar.update
    steps = {"n": 0}

    def build_model(*args, **kwargs):
        models.append(real_build_model(*args, **kwargs))
        return models[-1]

    def update(self, n=1, **values):
        real_update(self, n, **values)
        steps["n"] += n
        if steps["n"] == global_step:
            variable = next(w for w in models[-1].weights if "moving_mean" in w.path)
            variable.assign(np.full(variable.shape, np.nan, "float32"))

    monkeypatch.setattr(build, "build_model", build_model)
    monkeypatch.setattr(train_lib.ProgressBar, "update", update)


def assert_checkpoint_finite(checkpoint):
    reader = tf.train.load_checkpoint(checkpoint)
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            assert np.all(np.isfinite(value)), name


@pytest.mark.slow
@pytest.mark.parametrize("global_step", [4, 3], ids=["mid-epoch", "epoch-end"])
def test_nonfinite_weights_are_never_saved(smoke_config, tmp_path, monkeypatch, global_step):
    # Steps 2 and 4 save mid-epoch (checkpoint_every_steps 2), step 3 ends epoch 1.
    config = smoke_config.replace(epochs=3, checkpoint_every_steps=2, export_best=True)
    poison_weight_after_step(monkeypatch, global_step)
    workdir = str(tmp_path / "run")
    with pytest.raises(train_lib.NonFiniteLossError, match=f"non-finite weights .*{global_step}"):
        train_lib.train_and_evaluate(config, workdir)
    checkpoint = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
    assert checkpoint.endswith("ckpt-3" if global_step == 4 else "ckpt-2")
    assert_checkpoint_finite(checkpoint)
    exported = os.path.join(workdir, "export", "model.keras")
    # Epoch 1's export (before the NaN) when poisoned at step 4; none when at its end.
    assert (global_step == 4) == os.path.exists(exported)


@pytest.mark.slow
def test_nan_policy_restore_restores_twice_with_a_lower_learning_rate_each_time(smoke_config, tmp_path,
                                                                                 monkeypatch):
    """One run, two restores: a NaN loss at step 5 (back to ckpt-4), then a non-finite
    weight seen before step 8's checkpoint (back to ckpt-6, epoch 2's end); the base
    learning rate halves each time and the run finishes with only finite checkpoints."""
    config = smoke_config.replace(epochs=3, checkpoint_every_steps=2, nan_policy="restore", nan_lr_factor=0.5,
                                  export_best=False)
    poison_after_step(monkeypatch, 4)           # progress-bar updates: 4 -> step 5's loss
    poison_weight_after_step(monkeypatch, 7)    # update 7 is step 7 again (after the restore to 4)
    result = train_lib.train_and_evaluate(config, str(tmp_path / "run"))
    assert result["step"] == config.epochs * config.steps_per_epoch
    assert result["history"][-1]["learning_rate"] == pytest.approx(config.learning_rate * 0.25)
    log_text = open(tmp_path / "run" / "train.log").read()
    assert "loss nan at step 5" in log_text and "restore 1 of 3" in log_text
    assert "non-finite weights at step 8" in log_text and "restore 2 of 3" in log_text
    assert_checkpoint_finite(tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")))


def test_a_nan_restore_needs_the_same_checkpoint_on_every_worker():
    """recover decides alike on every worker: with a worker that sees no checkpoint, or
    another one, all stop (NonFiniteLossError) instead of some restoring."""
    import types

    config = configs.load_config("smoke").replace(nan_policy="restore")

    def run_seeing(steps):
        return types.SimpleNamespace(
            config=config, checkpointer=types.SimpleNamespace(latest="/w/checkpoints/ckpt-4"),
            runtime=types.SimpleNamespace(worker_gather=lambda value: steps))

    for steps in ([4, -1], [4, 2]):
        with pytest.raises(train_lib.NonFiniteLossError) as error:
            train_lib.recover(run_seeing(steps), train_lib.LoopState(), "loss nan at step 5")
        assert f"the workers see checkpoints {steps}" in str(error.value)
    with pytest.raises(train_lib.NonFiniteLossError, match="no checkpoint to restore. Last good"):
        train_lib.recover(run_seeing([-1]), train_lib.LoopState(), "loss nan at step 1")


def test_a_nan_restore_of_the_same_checkpoint_again_lowers_the_rate_again():
    """The NaN came back before a newer checkpoint: restoring that checkpoint again must
    not give its own rate times the factor once more (the same steps, the same NaN)."""
    import types

    config = configs.load_config("smoke").replace(nan_policy="restore", nan_lr_factor=0.5, learning_rate=1e-3)
    run = types.SimpleNamespace(
        config=config, learning_rate=types.SimpleNamespace(forget=lambda: None),
        checkpointer=types.SimpleNamespace(latest="/w/checkpoints/ckpt-1",
                                           restore=lambda path: train_lib.LoopState(step=1)),  # the config's rate
        runtime=types.SimpleNamespace(worker_gather=lambda value: [value]))
    state = train_lib.LoopState(step=2, base_learning_rate=1e-3)
    rates = []
    for _ in range(config.max_nan_restores):
        state = train_lib.recover(run, state, "loss nan at step 2")
        rates.append(state.base_learning_rate)
    assert rates == pytest.approx([5e-4, 2.5e-4, 1.25e-4])
    with pytest.raises(train_lib.NonFiniteLossError, match="stopped. Last good checkpoint"):
        train_lib.recover(run, state, "loss nan at step 2")


def test_profile_steps_must_be_step_numbers(capsys):
    with pytest.raises(SystemExit) as exit_code:
        train_lib.parse_args(["--config", "smoke", "--workdir", "w", "--profile_steps", "5-10"])
    assert exit_code.value.code == 2 and "expected FIRST,LAST (two step numbers); got '5-10'" in capsys.readouterr().err
    assert train_lib.parse_args(["--config", "smoke", "--workdir", "w", "--profile_steps", "3"]).profile_steps == [3, 3]


def test_train_step_checks_gradients_when_asked(smoke_config, monkeypatch):
    real_loss_function = build.loss_function

    def loss_function(config):
        fn, kwargs = real_loss_function(config)

        @tf.custom_gradient
        def nan_gradient(loss):
            return loss, lambda upstream: upstream * float("nan")

        return (lambda labels, logits, **kw: nan_gradient(fn(labels, logits, **kw))), kwargs

    monkeypatch.setattr(build, "loss_function", loss_function)
    _, _, step = _step_pieces(smoke_config)
    images, labels = _tiny_batch()
    loss, finite = step(images, labels, tf.constant(True))
    assert math.isfinite(float(loss)) and not bool(finite)
    assert bool(step(images, labels, tf.constant(False))[1])  # unchecked: reported finite


def test_command_line_help_and_bad_config(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_lib.main(["--help"])
    assert exit_info.value.code == 0
    assert "--workdir" in capsys.readouterr().out
    assert train_lib.main(["--config", "nope", "--workdir", "/tmp/unused"]) == 1
