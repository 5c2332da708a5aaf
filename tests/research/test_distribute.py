"""tf.distribute: two replicas compute exactly what one device computes on the global batch,
under mixed_float16 an overflow on any one replica skips the step on all, and the BatchNorm
policies "sync" and "train" differ as they should.

The loss normalizers (valid-pixel count, class-weight sum) are all-reduced, each
replica returns its share of the loss, gradients are summed by the optimizer, and
BatchNorm statistics are synchronized (bn_policy "sync", the default). Two logical CPU
devices must be configured before TensorFlow initializes, so the comparison runs in a
fresh subprocess.
"""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent("""
    import json, os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import research  # the project's runtime defaults, as in every entry point
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import kernels
    from research import build, configs, train

    config = configs.load_config("smoke")
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    images[:2] *= 0.2        # replica 0's half darker: its batch statistics differ from the global ones
    labels = rng.integers(0, 21, (4, 32, 32)).astype("int32")
    labels[0, :8] = 255      # ignored pixels, unevenly spread over the replicas
    labels[3] = 255          # an image with no valid pixel at all

    def one_step(strategy, config=config):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = build.build_model(config, "float32", strategy.num_replicas_in_sync)
            # SGD: the update is linear in the gradient, so weights compare tightly
            # (Adam's first step is lr * sign(g), which round-off can flip for g ~ 0).
            optimizer = keras.optimizers.SGD(learning_rate=0.1)
            optimizer.build(model.trainable_variables)
            confusion = kernels.StreamingConfusionMatrix(21)
        step = train.make_train_step(model, optimizer, strategy, config, confusion,
                                     use_xla=False, loss_scaling=False)
        # conv1_bn's input before the step: the same in every run with these images.
        conv1 = keras.Model(model.input, model.get_layer("conv1_conv").output)(images)
        data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
        batch = next(iter(strategy.experimental_distribute_dataset(data)))
        loss, finite = step(*batch)
        bn = model.get_layer("conv1_bn")
        return {"loss": float(loss), "finite": bool(finite),
                "replicas": strategy.num_replicas_in_sync,
                "confusion": confusion.result().numpy().tolist(),
                "weights": [w.numpy().ravel().tolist() for w in model.weights],
                "conv1": conv1.numpy().tolist(),
                # each replica's copy of conv1_bn's moving mean and variance
                "bn_copies": [[c.numpy().tolist() for c in strategy.experimental_local_results(v.value)]
                              for v in (bn.moving_mean, bn.moving_variance)]}

    one = one_step(tf.distribute.OneDeviceStrategy("/cpu:0"))
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])  # one: a second one's
    two = one_step(mirrored)                     # collective keys would collide with its own
    two_train = one_step(mirrored, config.replace(bn_policy="train"))

    # mixed_float16 with loss scaling, two replicas, the float16 gradients of one replica
    # overflow: a 1x1 conv whose kernel gradient sums input * scaled dlogits over the
    # pixels, finite for inputs in [0, 1], infinite for inputs of 1000 (forward finite).
    keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = mirrored
    overflow = {}
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
        step = train.make_train_step(model, optimizer, strategy, config, confusion,
                                     use_xla=False, loss_scaling=True)
        data = tf.data.Dataset.from_tensor_slices((small, labels)).batch(4)
        loss, finite = step(*next(iter(strategy.experimental_distribute_dataset(data))))
        overflow[str(bad)] = {
            "loss": float(loss), "finite": bool(finite), "scale": float(optimizer.dynamic_scale.numpy()),
            "weights_finite": all(bool(np.isfinite(w.numpy()).all()) for w in model.weights),
            "weights_unchanged": all(bool((w.numpy() == b).all()) for w, b in zip(model.weights, before))}
    print("RESULT" + json.dumps({"one": one, "two": two, "two_train": two_train, "overflow": overflow}))
""")


@pytest.fixture(scope="module")
def result():
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    line = [l for l in run.stdout.splitlines() if l.startswith("RESULT")]
    assert run.returncode == 0 and line, run.stderr[-3000:]
    return json.loads(line[0][len("RESULT"):])


def test_two_replicas_match_one_device(result):
    one, two = result["one"], result["two"]
    assert (one["replicas"], two["replicas"]) == (1, 2)
    assert one["finite"] and two["finite"]
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)
    assert two["confusion"] == one["confusion"]
    assert len(one["weights"]) == len(two["weights"])
    # Trainable weights after one step, and BatchNorm moving statistics (synchronized).
    for a, b in zip(one["weights"], two["weights"]):
        np.testing.assert_allclose(np.array(b), np.array(a), rtol=1e-4, atol=1e-6)


def test_an_overflow_on_any_one_replica_skips_the_step_on_all(result):
    """Keras' LossScaleOptimizer looks at the first replica's unsummed gradients only:
    without `train.agree_on_overflow`, replica 1's overflow reached the weights (NaN)."""
    overflow = result["overflow"]
    clean = overflow["None"]
    assert clean["finite"] and not clean["weights_unchanged"] and clean["scale"] == 2.0 ** 15
    for bad in ("0", "1"):
        step = overflow[bad]
        assert np.isfinite(step["loss"]), step                       # only the gradients overflow
        assert not step["finite"] and step["weights_finite"] and step["weights_unchanged"], (bad, step)
        assert step["scale"] == 2.0 ** 14, (bad, step)                # the scale halves, as on one device


def _moving_statistics_after_one_step(features, momentum=0.99):
    """conv1_bn's moving (mean, variance) after one step from Keras' initial (0, 1), when
    its batch statistics over axes 0-2 are computed on `features` (biased variance)."""
    return (1 - momentum) * features.mean((0, 1, 2)), momentum + (1 - momentum) * features.var((0, 1, 2))


def test_bn_policy_train_normalizes_each_replica_on_its_own_slice(result):
    train, sync = result["two_train"], result["two"]
    conv1 = np.array(train["conv1"], np.float64)
    np.testing.assert_allclose(np.array(sync["conv1"]), conv1, rtol=1e-6, atol=1e-6)
    # "sync": the global batch's statistics. "train": each replica's own half; its
    # moving statistics are then averaged over the replicas (so every copy is equal).
    halves = [_moving_statistics_after_one_step(conv1[:2]), _moving_statistics_after_one_step(conv1[2:])]
    expected = {"sync": _moving_statistics_after_one_step(conv1),
                "train": tuple(np.mean([half[i] for half in halves], axis=0) for i in (0, 1))}
    for policy, run in (("train", train), ("sync", sync)):
        for copies, want in zip(run["bn_copies"], expected[policy]):
            assert copies[0] == copies[1], policy            # both replicas hold the same copy
            np.testing.assert_allclose(np.array(copies[0]), want, rtol=1e-5, atol=1e-7, err_msg=policy)
    # Equal halves: the mean of the halves' means is the global mean, but the halves'
    # variances leave out the spread between the halves (law of total variance).
    np.testing.assert_allclose(expected["train"][0], expected["sync"][0], rtol=1e-6, atol=1e-9)
    spread = expected["sync"][1] - expected["train"][1]
    assert spread.min() > 0 and spread.max() > 1e-4, spread  # 1e-4: 100x the rounding below
    np.testing.assert_allclose(np.array(sync["bn_copies"][1][0]) - np.array(train["bn_copies"][1][0]),
                               spread, atol=1e-6)
    # The normalization differed, so the gradients and the updated weights differ too.
    assert any(not np.allclose(np.array(a), np.array(b), rtol=1e-3, atol=1e-5)
               for a, b in zip(train["weights"], sync["weights"]))

