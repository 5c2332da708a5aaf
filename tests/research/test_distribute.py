"""tf.distribute (every check with two replicas: kernels and training): two replicas compute exactly what one device computes on the global batch
(also with gradient accumulation), under mixed_float16 an overflow on any one replica skips
the step on all, and the BatchNorm policies "sync" and "train" differ as they should.

The loss normalizers (valid-pixel count, class-weight sum) are all-reduced, each
replica returns its share of the loss, gradients are summed by the optimizer, and
BatchNorm statistics are synchronized (bn_policy "sync", the default). Two logical CPU
devices must be configured before TensorFlow initializes, so the runs happen in one
child process for the whole session (tests/two_replicas.py).
"""
import numpy as np
import pytest

from tests.kernels._modes import assert_close
from tests.kernels.test_confusion import _numpy_confusion


@pytest.fixture(scope="module")
def result(two_replica_results):
    return two_replica_results["train_step"]


@pytest.mark.slow
def test_two_replicas_match_one_device(result):
    one, two = result["one"], result["two"]
    assert (one["replicas"], two["replicas"]) == (1, 2)
    assert one["finite"] and two["finite"]
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)
    assert two["confusion"] == one["confusion"]
    assert len(one["weights"]) == len(two["weights"])
    # Trainable weights after one step, and BatchNorm moving statistics (synchronized).
    for a, b in zip(one["weights"], two["weights"], strict=True):
        np.testing.assert_allclose(np.array(b), np.array(a), rtol=1e-4, atol=1e-6)


@pytest.mark.slow
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


@pytest.mark.slow
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
        for copies, want in zip(run["bn_copies"], expected[policy], strict=True):
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
               for a, b in zip(train["weights"], sync["weights"], strict=True))



@pytest.mark.slow
def test_micro_batches_on_two_replicas_equal_one_batch_on_one_device(two_replica_results):
    """accumulate_steps 2 on 2 replicas (micro-batches of 1 image each) against batch 4 on
    one device, two updates, frozen BatchNorm: the same losses and weights."""
    one, two = two_replica_results["accumulation"]["one"], two_replica_results["accumulation"]["two"]
    assert (one["replicas"], two["replicas"]) == (1, 2) and one["finite"] and two["finite"]
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-5)
    assert one["losses"][1] != one["losses"][0]
    assert two["confusion"] == one["confusion"]
    for a, b in zip(one["weights"], two["weights"], strict=True):
        np.testing.assert_allclose(np.array(b), np.array(a), rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- the kernels under MirroredStrategy
@pytest.mark.slow
def test_two_replicas_match_keras(two_replica_results):
    # Two logical CPUs must exist before TF initializes: tests/two_replicas.py's child process.
    result = two_replica_results["optimizers"]
    for kind in ("adam", "sgd"):
        fused, reference = np.array(result["fused_" + kind]), np.array(result["keras_" + kind])
        np.testing.assert_array_equal(fused[0], fused[1])  # mirrored copies stay identical
        assert not np.allclose(reference[0], np.linspace(-1, 1, 12).reshape(3, 4))  # it trained
        assert_close(fused, reference, 1e-6)


@pytest.mark.slow
def test_streaming_sums_replicas_under_mirrored_strategy(two_replica_results):
    # Logical devices must exist before TF initialises: tests/two_replicas.py's child process.
    result = two_replica_results["confusion"]
    labels = np.array([[0, 0, 1, 255], [1, 2, 2, 0], [2, 2, 0, 1], [0, 1, 2, 7]])
    predictions = np.array([[0, 1, 1, 0], [1, 2, 0, 0], [2, 1, 0, 1], [0, 1, 2, 2]])
    expected = _numpy_confusion(labels, predictions, 3)
    assert result["replicas"] == 2
    # Each replica saw half of the batch; the read-out sums them.
    np.testing.assert_array_equal(result["local"][0], _numpy_confusion(labels[:2], predictions[:2], 3))
    np.testing.assert_array_equal(result["local"][1], _numpy_confusion(labels[2:], predictions[2:], 3))
    np.testing.assert_array_equal(result["total"], expected)
    np.testing.assert_array_equal(result["after_reset"], np.zeros([3, 3]))
