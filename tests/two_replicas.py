"""Every check that needs two tf.distribute replicas, run in ONE child process.

Two logical CPU devices must be configured before TensorFlow initializes, so these
checks cannot run in the test process: `python -m tests.two_replicas FILE` runs them all
and pickles their results to FILE (the weights of five models: a JSON line of them was
263 MB, 16 s to write and read); the `two_replica_results` fixture (tests/conftest.py)
starts it once per session, and each test module asserts on its own part:

  optimizers     kernels.FusedAdam / FusedSGD against Keras' under MirroredStrategy
  confusion      kernels.StreamingConfusionMatrix sums its replicas
  train_step     research's train step: 2 replicas = 1 device (loss, confusion, weights,
                 synchronized BatchNorm), bn_policy "train", an overflow on one replica
  accumulation   2 replicas x 2 micro-batches = 1 device x 1 batch (frozen BatchNorm)
"""
import os
import pickle
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import research  # noqa: E402,F401  (the project's runtime defaults, as in every entry point)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

import kernels  # noqa: E402
from kernels.optimizers import FusedAdam, FusedSGD  # noqa: E402
from research import build, configs  # noqa: E402
from research.training.steps import make_train_step  # noqa: E402

rng = np.random.default_rng(0)
IMAGES = rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
IMAGES[:2] *= 0.2        # replica 0's half darker: its batch statistics differ from the global ones
LABELS = rng.integers(0, 21, (4, 32, 32)).astype("int32")
LABELS[0, :8] = 255      # ignored pixels, unevenly spread over the replicas
LABELS[3] = 255          # an image with no valid pixel at all


def first_batch(strategy, *arrays, batch=4):
    data = tf.data.Dataset.from_tensor_slices(arrays).batch(batch)
    return next(iter(strategy.experimental_distribute_dataset(data)))


# ----------------------------------------------------------------------------- kernels
def optimizer_results(strategy):
    """Each optimizer's weight after 4 steps, per replica copy."""
    def run(make):
        with strategy.scope():
            w = tf.Variable(np.linspace(-1, 1, 12, dtype="float32").reshape(3, 4))
            optimizer = make()
            optimizer.build([w])

        @tf.function
        def step(x):
            def replica(x):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_sum(tf.sin(w * x))
                optimizer.apply(tape.gradient(loss, [w]), [w])
            strategy.run(replica, args=(x,))

        data = strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensor_slices(np.arange(1, 9, dtype="float32")).batch(2))
        for x in data:
            step(x)
        return [v.numpy().tolist() for v in strategy.experimental_local_results(w)]

    return {"fused_adam": run(lambda: FusedAdam(0.01)), "keras_adam": run(lambda: keras.optimizers.Adam(0.01)),
            "fused_sgd": run(lambda: FusedSGD(0.05, momentum=0.9)),
            "keras_sgd": run(lambda: keras.optimizers.SGD(0.05, momentum=0.9))}


CONFUSION_LABELS = [[0, 0, 1, 255], [1, 2, 2, 0], [2, 2, 0, 1], [0, 1, 2, 7]]
CONFUSION_PREDICTIONS = [[0, 1, 1, 0], [1, 2, 0, 0], [2, 1, 0, 1], [0, 1, 2, 2]]


def confusion_results(strategy):
    """The streaming confusion matrix's copies, its read-out, and after a reset."""
    with strategy.scope():
        stream = kernels.StreamingConfusionMatrix(3)

    @tf.function
    def step(labels, predictions):
        strategy.run(stream.update, args=(labels, predictions))

    step(*first_batch(strategy, tf.constant(CONFUSION_LABELS), tf.constant(CONFUSION_PREDICTIONS)))
    local = [v.numpy().tolist() for v in strategy.experimental_local_results(stream.total)]
    total = stream.result().numpy().tolist()
    stream.reset()
    return {"replicas": strategy.num_replicas_in_sync, "local": local, "total": total,
            "after_reset": stream.result().numpy().tolist()}


# ----------------------------------------------------------------------------- training
def one_step(strategy, config, images=IMAGES, labels=LABELS, steps=1):
    """The train step on (images, labels): loss, weights, confusion, BatchNorm copies."""
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build.build_model(config, "float32", strategy.num_replicas_in_sync)
        # SGD: the update is linear in the gradient, so weights compare tightly
        # (Adam's first step is lr * sign(g), which round-off can flip for g ~ 0).
        optimizer = keras.optimizers.SGD(learning_rate=0.1)
        optimizer.build(model.trainable_variables)
        confusion = kernels.StreamingConfusionMatrix(21)
    step = make_train_step(model, optimizer, strategy, config, confusion, use_xla=False, loss_scaling=False)
    # conv1_bn's input before the step: the same in every run with these images.
    conv1 = keras.Model(model.input, model.get_layer("conv1_conv").output)(images)
    batch = first_batch(strategy, images, labels, batch=len(images))
    losses = []
    for _ in range(steps):
        loss, finite = step(*batch)
        losses.append(float(loss))
    bn = model.get_layer("conv1_bn")
    return {"loss": losses[0], "losses": losses, "finite": bool(finite),
            "replicas": strategy.num_replicas_in_sync,
            "confusion": confusion.result().numpy().tolist(),
            "weights": [w.numpy().ravel() for w in model.weights],
            "conv1": conv1.numpy().tolist(),
            # each replica's copy of conv1_bn's moving mean and variance
            "bn_copies": [[c.numpy().tolist() for c in strategy.experimental_local_results(v.value)]
                          for v in (bn.moving_mean, bn.moving_variance)]}


def overflow_results(strategy, config):
    """mixed_float16 with loss scaling, the float16 gradients of one replica overflow: a
    1x1 conv whose kernel gradient sums input * scaled dlogits over the pixels, finite for
    inputs in [0, 1], infinite for inputs of 1000 (the forward pass stays finite)."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    overflow = {}
    try:
        for bad in (None, 0, 1):
            small = rng.uniform(0, 1, (4, 32, 32, 3)).astype("float32")
            if bad is not None:
                small[2 * bad:2 * bad + 2] = 1e3         # replica `bad`'s half of the batch
            keras.utils.set_random_seed(0)
            with strategy.scope():
                inputs = keras.Input((32, 32, 3))
                logits = keras.layers.Activation("linear", dtype="float32")(keras.layers.Conv2D(21, 1)(inputs))
                model = keras.Model(inputs, logits)
                optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(learning_rate=0.1))
                optimizer.build(model.trainable_variables)
                confusion = kernels.StreamingConfusionMatrix(21)
            before = [w.numpy() for w in model.weights]
            step = make_train_step(model, optimizer, strategy, config, confusion, use_xla=False, loss_scaling=True)
            loss, finite = step(*first_batch(strategy, small, LABELS))
            overflow[str(bad)] = {
                "loss": float(loss), "finite": bool(finite), "scale": float(optimizer.dynamic_scale.numpy()),
                "weights_finite": all(bool(np.isfinite(w.numpy()).all()) for w in model.weights),
                "weights_unchanged": all(bool((w.numpy() == b).all()) for w, b in zip(model.weights, before, strict=True))}
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return overflow


def main(out_path):
    one_device = tf.distribute.OneDeviceStrategy("/cpu:0")
    # One MirroredStrategy for every check: a second one's collective keys would collide.
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    smoke = configs.load_config("smoke")
    frozen = smoke.replace(bn_policy="frozen")
    results = {
        "optimizers": optimizer_results(mirrored),
        "confusion": confusion_results(mirrored),
        "train_step": {"one": one_step(one_device, smoke), "two": one_step(mirrored, smoke),
                       "two_train": one_step(mirrored, smoke.replace(bn_policy="train")),
                       "overflow": overflow_results(mirrored, smoke)},
        # The same 4 images and 2 updates: one device, one batch of 4, against two replicas
        # each cutting its 2 images into 2 micro-batches of 1.
        "accumulation": {"one": one_step(one_device, frozen.replace(batch_size=4), steps=2),
                         "two": one_step(mirrored, frozen.replace(batch_size=2, accumulate_steps=2), steps=2)},
    }
    with open(out_path, "wb") as f:
        pickle.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1])
