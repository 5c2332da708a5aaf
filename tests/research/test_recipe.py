"""The reference recipe's pieces: optimizer, weight decay, per-step LR schedules (exact on
resume), scale jitter, evaluation at another output stride, and deterministic runs.

Everything runs the `smoke` config on the tiny embedded dataset. Op determinism is
process-wide, so the determinism test trains in child processes.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import keras

import kernels
from tests.helpers import read_csv, sigterm_during
from research import build
from research.training import schedules
from research import config as config_lib
from research import configs
from research import evaluate as evaluate_lib
from research import train as train_lib
from research.configs import deeplabv3_voc_aug
from research.data import pipeline

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIME_COLUMNS = ("images_per_second", "epoch_seconds")


# ---------------------------------------------------------------- config fields

def test_recipe_fields_are_checked():
    config = configs.load_config("smoke")
    for bad in (dict(optimizer="rmsprop"), dict(lr_schedule="step"), dict(eval_output_stride=4),
                dict(scale_range=(2.0, 0.5)), dict(scale_range=(0.5,)), dict(weight_decay=-1.0),
                dict(warmup_steps=-1), dict(total_steps=0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            config.replace(**bad)
    parsed = config_lib.apply_overrides(config, ["optimizer=sgd", "scale_range=[0.5,2]", "deterministic=true",
                                                 "lr_schedule=poly", "eval_output_stride=8"])
    assert parsed.scale_range == (0.5, 2.0) and parsed.deterministic and parsed.optimizer == "sgd"


def test_reference_recipe_config():
    config = configs.load_config("deeplabv3_voc_aug")
    assert (config.train_subset, config.optimizer, config.lr_schedule) == ("train_aug", "sgd", "poly")
    assert config.weight_decay == 1e-4 and config.momentum == 0.9 and config.poly_power == 0.9
    assert (config.output_stride, config.eval_output_stride, config.scale_range) == (16, 8, (0.5, 2.0))
    assert config.epochs * config.steps_per_epoch == 30000 and config.final_eval_full_resolution
    assert "NOT measured here" in deeplabv3_voc_aug.__doc__ and "77.2" in deeplabv3_voc_aug.__doc__


def test_changing_epochs_changes_a_poly_schedule_so_it_is_not_a_resume():
    poly = configs.load_config("smoke").replace(lr_schedule="poly")
    assert config_lib.resume_differences(poly, poly.replace(epochs=5)) == ["epochs"]
    assert config_lib.resume_differences(poly.replace(total_steps=9), poly.replace(total_steps=9, epochs=5)) == []
    plateau = configs.load_config("smoke")
    assert config_lib.resume_differences(plateau, plateau.replace(epochs=5)) == []


# ---------------------------------------------------------------- schedules and optimizer

def test_make_optimizer_choices():
    config = configs.load_config("smoke")
    sgd = build.make_optimizer(config.replace(optimizer="sgd", momentum=0.8, learning_rate=0.5), "float32")
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.momentum == 0.8
    assert float(sgd.learning_rate) == 0.5
    assert isinstance(build.make_optimizer(config, "float32"), keras.optimizers.Adam)
    wrapped = build.make_optimizer(config.replace(optimizer="sgd"), "mixed_float16")
    assert isinstance(wrapped, keras.optimizers.LossScaleOptimizer)


def _batch(size=32, batch=2):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    labels = rng.integers(0, 3, (batch, size, size)).astype("int32")
    return tf.constant(images), tf.constant(labels)


def test_weight_decay_applies_to_kernels_only(smoke_config):
    """One plain SGD step (lr 1, no momentum) with and without decay from the same
    weights: the difference is -wd * w on conv/dense kernels and 0 on BN and biases."""
    config = smoke_config.replace(optimizer="sgd", momentum=0.0, learning_rate=1.0)
    keras.utils.set_random_seed(0)
    model = build.build_model(config)
    optimizer = build.make_optimizer(config, "float32")
    optimizer.build(model.trainable_variables)
    images, labels = _batch()
    start = [v.numpy() for v in model.trainable_variables]
    non_trainable = [v.numpy() for v in model.non_trainable_variables]
    after = {}
    for decay in (0.0, 0.01):
        for v, value in zip(model.trainable_variables, start, strict=True):
            v.assign(value)
        for v, value in zip(model.non_trainable_variables, non_trainable, strict=True):
            v.assign(value)
        confusion = kernels.StreamingConfusionMatrix(config.num_classes)
        step = train_lib.make_train_step(model, optimizer, tf.distribute.get_strategy(),
                                         config.replace(weight_decay=decay), confusion, False, False)
        step(images, labels)
        after[decay] = [v.numpy() for v in model.trainable_variables]
    decayed = build.decayed_variables(model)
    assert any(decayed) and not all(decayed)
    for v, w0, plain, with_decay, is_kernel in zip(model.trainable_variables, start, after[0.0], after[0.01],
                                                   decayed, strict=True):
        expected = -0.01 * w0 if is_kernel else np.zeros_like(w0)
        np.testing.assert_allclose(with_decay - plain, expected, atol=1e-6, err_msg=v.path)
        assert is_kernel == v.path.endswith("/kernel"), v.path


# ---------------------------------------------------------------- scale jitter

def _dataset(voc_root, **kwargs):
    args = dict(augmentation=True, shuffle=True, seed=3, epochs=1, drop_remainder=True,
                scale_range=(0.5, 2.0))
    args.update(kwargs)
    return pipeline.make_dataset(voc_root, "train", 4, (48, 40), **args)


def test_scale_jitter_shapes_and_reproducible_per_seed_and_epoch(synthetic_voc_root):
    first = [(x.numpy(), y.numpy()) for x, y in _dataset(synthetic_voc_root, epochs=2)]
    again = [(x.numpy(), y.numpy()) for x, y in _dataset(synthetic_voc_root, epochs=2)]
    resumed = [(x.numpy(), y.numpy()) for x, y in _dataset(synthetic_voc_root, start_epoch=1)]
    assert len(first) == 4 and first[0][0].shape == (4, 48, 40, 3) and first[0][1].shape == (4, 48, 40)
    for (a, b), (c, d) in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    for (a, b), (c, d) in zip(first[2:], resumed, strict=True):   # epoch 1 rebuilt on its own
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    other = [x.numpy() for x, _ in _dataset(synthetic_voc_root, seed=4)]
    assert not np.array_equal(other[0], first[0][0])


def test_scale_jitter_pads_image_with_mean_and_mask_with_ignore(synthetic_voc_root):
    # Scale 0.25 of a 16 px base leaves a 4 px image in a 48 x 40 window: mostly padding.
    images, labels = next(iter(_dataset(synthetic_voc_root, scale_range=(0.25, 0.25),
                                        resize_to_before_crop=(16, 16))))
    labels = labels.numpy()
    assert (labels == pipeline.IGNORE_LABEL).mean() > 0.9
    assert (labels[:, :4, :4] != pipeline.IGNORE_LABEL).any()
    # Padding, before colour jitter, is the mean; the jitter moves it a little.
    corner = images.numpy()[:, -8:, -8:]
    assert np.abs(corner.mean(axis=(0, 1, 2)) - np.array(pipeline.PAD_RGB_MEAN)).max() < 40


def test_scale_range_needs_no_resize_before_crop(synthetic_voc_root):
    images, _ = next(iter(_dataset(synthetic_voc_root, resize_to_before_crop=None)))
    assert images.shape == (4, 48, 40, 3)
    with pytest.raises(ValueError, match="scale_range"):
        _dataset(synthetic_voc_root, scale_range=(2.0, 1.0))


# ---------------------------------------------------------------- output stride at evaluation

def test_model_rebuilt_at_output_stride_8_keeps_every_weight(smoke_config):
    keras.utils.set_random_seed(0)
    model = build.build_model(smoke_config)
    rebuilt = build.build_model_at_output_stride(model, smoke_config, 8)
    assert rebuilt is not model
    assert build.build_model_at_output_stride(model, smoke_config, 16) is model
    for a, b in zip(model.weights, rebuilt.weights, strict=True):
        assert a.path == b.path
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    images, _ = _batch(size=64, batch=1)
    assert rebuilt(images).shape == model(images).shape == (1, 64, 64, smoke_config.num_classes)


# ---------------------------------------------------------------- the loop: resume, final evaluation

def _recipe_config(smoke_config):
    return smoke_config.replace(
        optimizer="sgd", momentum=0.9, weight_decay=1e-4, learning_rate=0.02, lr_schedule="poly",
        warmup_steps=4, scale_range=(0.5, 2.0), epochs=3, steps_per_epoch=3, checkpoint_every_steps=100,
        tensorboard_images=0, export_best=False, early_stop_patience=10)


@pytest.fixture(scope="module")
def recipe_run(smoke_config, tmp_path_factory):
    config = _recipe_config(smoke_config)
    workdir = str(tmp_path_factory.mktemp("recipe") / "run")
    return config, workdir, train_lib.train_and_evaluate(config, workdir)


@pytest.mark.slow
def test_poly_warmup_rates_per_step_in_the_log(recipe_run):
    config, _, result = recipe_run
    rows = result["history"]
    # The log's learning rate is the last step's of each epoch (steps 2, 5, 8).
    expected = [schedules.learning_rate_at(config, s, 9, float(np.float32(config.learning_rate))) for s in (2, 5, 8)]
    assert [r["learning_rate"] for r in rows] == pytest.approx(expected, rel=1e-6)
    assert rows[0]["learning_rate"] < config.learning_rate  # still warming up at step 2


@pytest.mark.slow
def test_final_full_resolution_evaluation_at_output_stride_8(smoke_config, tmp_path):
    config = smoke_config.replace(epochs=1, steps_per_epoch=2, tensorboard_images=0, eval_output_stride=8,
                                  final_eval_full_resolution=True)
    workdir = str(tmp_path / "run")
    result = train_lib.train_and_evaluate(config, workdir)
    assert set(result["final_eval"]) == set(evaluate_lib.METRIC_NAMES)
    metrics = evaluate_lib.evaluate(workdir, subset="val", out_dir=str(tmp_path / "again"), full_resolution=True,
                                    samples=0, hardest=0)
    assert metrics["model"]["output_stride"] == 8 and metrics["options"]["full_resolution"]
    assert metrics["mean_iou"] == pytest.approx(result["final_eval"]["mean_iou"])
    assert os.path.isfile(os.path.join(workdir, "eval_val", "metrics.json"))


# ---------------------------------------------------------------- determinism

DETERMINISTIC_PAIR = """
import sys
import keras
from research import config as config_lib, configs, train
config = config_lib.apply_overrides(configs.load_config("smoke"), sys.argv[3:])
for workdir in sys.argv[1:3]:
    keras.backend.clear_session()   # Keras' layer-name counters: as in a fresh process
    train.train_and_evaluate(config, workdir)
"""


def _train_twice_in_child(workdirs, voc_root):
    """Two smoke runs with deterministic=true, one after the other in ONE child process
    (op determinism is process-wide, so not in the test process); bounded."""
    # No export: the runs are compared by their logs and checkpoints, and a SavedModel
    # costs seconds per improving epoch.
    overrides = [f"voc_root={voc_root}", "deterministic=true", "tensorboard_images=0", "export_best=false",
                 "optimizer=sgd", "weight_decay=1e-4", "lr_schedule=poly", "warmup_steps=2",
                 "scale_range=[0.5,2.0]", "learning_rate=0.01"]
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", DETERMINISTIC_PAIR, *workdirs, *overrides], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_deterministic_runs_are_bit_identical(synthetic_voc_root, tmp_path):
    workdirs = [str(tmp_path / name) for name in ("first", "second")]
    _train_twice_in_child(workdirs, synthetic_voc_root)
    logs = [read_csv(os.path.join(w, "train_log.csv")) for w in workdirs]
    assert len(logs[0]) == 2
    for a, b in zip(*logs, strict=True):
        assert {k: v for k, v in a.items() if k not in TIME_COLUMNS} == \
               {k: v for k, v in b.items() if k not in TIME_COLUMNS}
    readers = [tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(w, "checkpoints")))
               for w in workdirs]
    names = sorted(readers[0].get_variable_to_shape_map())
    assert names == sorted(readers[1].get_variable_to_shape_map())
    weights = [n for n in names if "/kernel/" in n or "/gamma/" in n or "moving_mean" in n]
    assert weights
    for name in names:
        a, b = readers[0].get_tensor(name), readers[1].get_tensor(name)
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b, err_msg=name)
        elif "loop_state" not in name:
            assert a == b, name
