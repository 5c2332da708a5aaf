"""Gradient accumulation (k micro-batches of b = one batch of k*b) and the EMA of weights."""
import os

import numpy as np
import pytest
import tensorflow as tf
import keras

import kernels
from research import build
from research import export as export_lib
from research import train as train_lib
from research.training.ema import averaged_weights, moving_averages, start_averages
from research.training.steps import make_train_step
from tests.helpers import checkpoint_values


def fixed_batch():
    """4 images and labels, some pixels ignored and one image with no valid pixel."""
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 21, (4, 32, 32)).astype("int32")
    labels[0, :8] = 255
    labels[3] = 255
    return tf.constant(images), tf.constant(labels)


def train_two_steps(config, batch_size, accumulate_steps):
    """(losses, every weight, train confusion) after two updates on `fixed_batch`."""
    config = config.replace(batch_size=batch_size, accumulate_steps=accumulate_steps)
    keras.utils.set_random_seed(0)
    model = build.build_model(config, "float32")
    optimizer = build.make_optimizer(config, "float32")
    optimizer.build(model.trainable_variables)
    confusion = kernels.StreamingConfusionMatrix(config.num_classes)
    step = make_train_step(model, optimizer, tf.distribute.get_strategy(), config, confusion,
                           use_xla=False, loss_scaling=False)
    images, labels = fixed_batch()
    losses = [float(step(images, labels)[0]) for _ in range(2)]
    return losses, [w.numpy() for w in model.weights], confusion.result().numpy(), optimizer


@pytest.mark.parametrize("loss_impl", ["fused", pytest.param("reference", marks=pytest.mark.slow)])
def test_micro_batches_equal_one_batch_when_batchnorm_is_frozen(smoke_config, loss_impl):
    # CE + dice, class weights, ignored pixels: one batch of 4 against 2 x 2 and 4 x 1.
    config = smoke_config.replace(bn_policy="frozen", optimizer="sgd", momentum=0.9, learning_rate=0.5,
                                  loss_impl=loss_impl, ce_weight=1.0, dice_weight=1.0)
    losses, weights, confusion, _ = train_two_steps(config, 4, 1)
    for batch_size, k in ((2, 2), (1, 4)):
        got_losses, got_weights, got_confusion, _ = train_two_steps(config, batch_size, k)
        np.testing.assert_allclose(got_losses, losses, rtol=1e-5)
        assert losses[1] != losses[0]                     # the first update changed the weights
        for got, want in zip(got_weights, weights, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(got_confusion, confusion)


@pytest.mark.slow
def test_training_batchnorm_normalizes_each_micro_batch_by_itself(smoke_config):
    config = smoke_config.replace(bn_policy="train", optimizer="sgd", learning_rate=0.5)
    whole, micro = train_two_steps(config, 4, 1), train_two_steps(config, 2, 2)
    # Same first loss (weights not yet changed, loss normalizers of the whole batch)...
    assert micro[0][0] == pytest.approx(whole[0][0], rel=0.05)
    # ...but different updates: each micro-batch has batch statistics of its own.
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(micro[1], whole[1], strict=True)) > 1e-4


def test_before_any_applied_update_the_averages_are_the_weights(smoke_config):
    # Keras creates the averages as zeros; under mixed_float16 the first updates can be
    # skipped, and an evaluation or export then would use an all-zero network.
    config = smoke_config.replace(ema_decay=0.9)
    model = build.build_model(config, "float32")
    optimizer = build.make_optimizer(config, "float32")
    optimizer.build(model.trainable_variables)
    assert not any(np.any(a.numpy()) for a in moving_averages(optimizer))
    start_averages(model, optimizer)
    for variable, average in zip(model.trainable_variables, moving_averages(optimizer), strict=True):
        np.testing.assert_array_equal(average.numpy(), variable.numpy())


def test_ema_keeps_the_average_of_the_weights(smoke_config):
    config = smoke_config.replace(optimizer="sgd", learning_rate=0.5, ema_decay=0.75)
    keras.utils.set_random_seed(0)
    model = build.build_model(config, "float32")
    optimizer = build.make_optimizer(config, "float32")
    optimizer.build(model.trainable_variables)
    step = make_train_step(model, optimizer, tf.distribute.get_strategy(), config,
                           kernels.StreamingConfusionMatrix(21), use_xla=False, loss_scaling=False)
    images, labels = fixed_batch()
    seen = []
    for _ in range(2):
        step(images[:2], labels[:2])
        seen.append([v.numpy() for v in model.trainable_variables])
    averages = moving_averages(optimizer)
    for first, second, average in zip(*seen, averages, strict=True):   # the first update sets a = w
        np.testing.assert_allclose(average.numpy(), 0.75 * first + 0.25 * second, rtol=1e-6, atol=1e-7)
    with averaged_weights(model, optimizer):
        for variable, average in zip(model.trainable_variables, averages, strict=True):
            np.testing.assert_array_equal(variable.numpy(), average.numpy())
    for variable, trained in zip(model.trainable_variables, seen[1], strict=True):
        np.testing.assert_array_equal(variable.numpy(), trained)
    assert moving_averages(build.make_optimizer(smoke_config, "float32")) is None


@pytest.fixture(scope="module")
def accumulating_run(smoke_config, tmp_path_factory):
    """(config, workdir, result): 2 epochs of 2 steps, each one update of 2 micro-batches
    of 2 images (accumulate_steps 2), with an EMA of the weights."""
    config = smoke_config.replace(accumulate_steps=2, ema_decay=0.5, steps_per_epoch=None,
                                  checkpoint_every_steps=100)
    workdir = str(tmp_path_factory.mktemp("accumulate") / "straight")
    return config, workdir, train_lib.train_and_evaluate(config, workdir)


@pytest.mark.slow
def test_a_step_is_one_update_of_the_accumulated_batch(accumulating_run):
    config, workdir, result = accumulating_run
    # 8 train images, batch_size 2, accumulate_steps 2: 4 images per step, 2 steps per epoch.
    assert [r["step"] for r in result["history"]] == [2, 4]
    iterations = {n: v for n, v in checkpoint_values(workdir, ("optimizer/",)).items() if "iteration" in n}
    assert [int(v) for v in iterations.values()] == [4], list(iterations)   # optimizer updates


@pytest.mark.slow
def test_the_export_holds_the_averaged_weights(accumulating_run):
    config, workdir, _ = accumulating_run
    exported, info = export_lib.load_export(os.path.join(workdir, "export"))
    # The checkpoint of the exported (best) epoch's step, restored: its averages are the
    # export's weights, and differ from the trained weights it also holds.
    model = build.build_model(config, "float32", pretrained=False)
    optimizer = build.make_optimizer(config, "float32")
    optimizer.build(model.trainable_variables)
    path = os.path.join(workdir, "checkpoints", f"ckpt-{info['info']['step']}")
    tf.train.Checkpoint(model=model, optimizer=optimizer).restore(path).expect_partial()
    averages = moving_averages(optimizer)
    assert len(averages) == len(exported.trainable_variables) == len(model.trainable_variables)
    for average, weight, trained in zip(averages, exported.trainable_variables, model.trainable_variables, strict=True):
        np.testing.assert_array_equal(weight.numpy(), average.numpy())
    assert any(not np.array_equal(a.numpy(), t.numpy()) for a, t in zip(averages, model.trainable_variables, strict=True))
