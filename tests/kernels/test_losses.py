"""ce_dice_loss: a hand-worked value, agreement with the reference, distribution shares."""
import math

import numpy as np
import pytest
import tensorflow as tf

from kernels import ce_dice_loss, loss_normalizers, reference_ce_dice_loss
from tests.kernels._modes import MODES, assert_close, in_mode, assert_same_value_and_grads, value_and_grads

C = 5


def _batch(seed=0, ignored=(255, 21, 254, -1), shape=(3, 6, 7)):
    """Labels with ignored pixels of several kinds (image 2 wholly ignored), and logits."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, C, shape)
    if ignored:
        labels[0, :2] = ignored[0]
        labels[1, 0, :4] = ignored[1 % len(ignored)]
        labels[1, 1, :2] = ignored[2 % len(ignored)]
        labels[2] = ignored[-1]
    logits = rng.normal(size=shape + (C,)) * 3.0
    return tf.constant(labels, tf.int32), tf.constant(logits, tf.float32)


def _loss_pair(**kwargs):
    return (lambda z, labels: ce_dice_loss(labels, z, C, **kwargs),
            lambda z, labels: reference_ce_dice_loss(labels, z, C, **kwargs))


def test_hand_worked_example():
    # One image, C = 2, four pixels:
    #   a: label 0, logits [ln 3, 0]  -> p = [3/4, 1/4]
    #   b: label 0, logits [0, 0]     -> p = [1/2, 1/2]
    #   c: label 1, logits [0, ln 3]  -> p = [1/4, 3/4]
    #   d: label 255 (ignored), logits [5, -5]
    # Valid N = 3 (n_0 = 2, n_1 = 1): w_0 = (3-2)/3 = 1/3, w_1 = (3-1)/3 = 2/3.
    # CEsum = 1/3 ln(4/3) + 1/3 ln 2 + 2/3 ln(4/3) = ln(4/3) + ln(2)/3;  M = 3.
    # I = 1/3 * 3/4 + 1/3 * 1/2 + 2/3 * 3/4 = 11/12;  S = 1/3 + 1/3 + 2/3 = 4/3.
    # dice = 1 - (2 * 11/12 + 1) / (2 * 4/3 + 1) = 1 - (17/6) / (11/3) = 5/22.
    # loss = (ln(4/3) + ln(2)/3) / 3 + 5/22 = 0.400183...
    ln3 = math.log(3.0)
    labels = tf.constant([[[0, 0, 1, 255]]])
    logits = tf.constant([[[[ln3, 0.0], [0.0, 0.0], [0.0, ln3], [5.0, -5.0]]]])
    expected = (math.log(4 / 3) + math.log(2) / 3) / 3 + 5 / 22
    for fn in (ce_dice_loss, reference_ce_dice_loss):
        assert float(fn(labels, logits, 2)) == pytest.approx(expected, rel=1e-6)
    # Unweighted (w = 1): CE = (2 ln(4/3) + ln 2) / 3, I = 2, S = 3, dice = 1 - 5/7.
    expected = (2 * math.log(4 / 3) + math.log(2)) / 3 + 2 / 7
    assert float(ce_dice_loss(labels, logits, 2, class_weighted=False)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("options", [
    {}, {"class_weighted": False}, {"ce_weight": 0.0}, {"dice_weight": 0.0},
    {"smooth": 0.5, "ce_weight": 0.3, "dice_weight": 2.0},
], ids=["default", "unweighted", "dice-only", "ce-only", "weights"])
def test_matches_reference(options, mode):
    labels, logits = _batch()
    fast, reference = _loss_pair(**options)
    assert_same_value_and_grads(lambda z: fast(z, labels), lambda z: reference(z, labels),
                                [logits], mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("options", [{}, {"class_weighted": False, "smooth": 0.5}],
                         ids=["default", "unweighted"])
def test_matches_reference_with_given_normalizers(options, mode):
    # The training step's form: normalizers of a larger (global or accumulated) batch,
    # here this batch's scaled per component, so that they differ from the ones the loss
    # would compute itself.
    labels, logits = _batch()
    weighted = options.get("class_weighted", True)
    normalizers = loss_normalizers(labels, C, class_weighted=weighted) * tf.constant([2.0, 1.5, 3.0])
    fast, reference = _loss_pair(normalizers=normalizers, **options)
    assert_same_value_and_grads(lambda z: fast(z, labels), lambda z: reference(z, labels),
                                [logits], mode)


@pytest.mark.parametrize("label_dtype", [tf.uint8, tf.int64])
def test_label_dtypes(label_dtype):
    labels, logits = _batch(ignored=(255, 21, 254))
    want = reference_ce_dice_loss(labels, logits, C)
    assert float(ce_dice_loss(tf.cast(labels, label_dtype), logits, C)) == pytest.approx(float(want), rel=1e-6)


def test_no_ignored_pixels():
    labels, logits = _batch(ignored=())
    fast, reference = _loss_pair()
    assert_same_value_and_grads(lambda z: fast(z, labels), lambda z: reference(z, labels),
                                [logits], "eager")


def test_ignore_label_inside_the_class_range_is_ignored():
    labels, logits = _batch()
    want = reference_ce_dice_loss(tf.where(labels == 3, 255, labels), logits, C)
    assert float(ce_dice_loss(labels, logits, C, ignore_label=3)) == pytest.approx(float(want), rel=1e-6)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
@pytest.mark.parametrize("mode", MODES)
def test_low_precision_logits(dtype, mode):
    # Both compute in float32 from the same rounded logits, so the values still agree to
    # 1e-5; the gradients come back in the logits' dtype, so allow one rounding step.
    labels, logits = _batch()
    fast, reference = _loss_pair()
    assert_same_value_and_grads(lambda z: fast(z, labels), lambda z: reference(z, labels),
                                [tf.cast(logits, dtype)], mode,
                                grad_rtol=2e-3 if dtype == tf.float16 else 1.6e-2)


@pytest.mark.parametrize("mode", MODES)
def test_all_ignored_batch_is_zero_with_zero_gradient(mode):
    labels = tf.constant([[[255, 21], [254, -3]]])
    logits = tf.constant(np.random.default_rng(1).normal(size=(1, 2, 2, C)), tf.float32)
    value, (grad,) = in_mode(lambda z: value_and_grads(lambda z: ce_dice_loss(labels, z, C), z), mode)(logits)
    assert float(value) == 0.0
    assert np.all(np.asarray(grad) == 0.0)
    assert float(reference_ce_dice_loss(labels, logits, C)) == 0.0


def test_normalizers():
    labels, _ = _batch()
    m, s, r = loss_normalizers(labels, C).numpy()
    valid = (labels.numpy() >= 0) & (labels.numpy() < C)
    assert (m, r) == (valid.sum(), 1.0)
    assert loss_normalizers(labels, C, class_weighted=False).numpy()[1] == valid.sum()
    # S by hand: per image, sum over classes of n_c * (N - n_c) / N.
    expected_s = 0.0
    for image, ok in zip(labels.numpy(), valid, strict=True):
        n = np.bincount(image[ok], minlength=C).astype(float)
        expected_s += (n * (n.sum() - n)).sum() / n.sum() if n.sum() else 0.0
    assert s == pytest.approx(expected_s, rel=1e-6)


@pytest.mark.parametrize("options", [{}, {"class_weighted": False, "smooth": 0.1}])
@pytest.mark.parametrize("fn", [ce_dice_loss, reference_ce_dice_loss], ids=["fused", "reference"])
def test_replica_shares_sum_to_the_global_loss(fn, options):
    # Two "replicas" get one half of the batch each; the all-reduce is a plain sum here.
    labels, logits = _batch(shape=(4, 6, 7))
    halves = [(labels[:2], logits[:2]), (labels[2:], logits[2:])]
    weighted = options.get("class_weighted", True)
    normalizers = sum(loss_normalizers(lab, C, class_weighted=weighted) for lab, _ in halves)
    assert normalizers.numpy()[2] == 2.0
    want, (want_grad,) = value_and_grads(lambda z: fn(labels, z, C, **options), logits)
    shares = [value_and_grads(lambda z: fn(lab, z, C, normalizers=normalizers, **options), z)
              for lab, z in halves]
    assert float(shares[0][0] + shares[1][0]) == pytest.approx(float(want), rel=1e-6)
    assert_close(tf.concat([shares[0][1][0], shares[1][1][0]], axis=0), want_grad, 1e-6)


def test_normalizers_carry_no_gradient():
    labels, logits = _batch()
    normalizers = tf.Variable(loss_normalizers(labels, C))
    with tf.GradientTape() as tape:
        loss = ce_dice_loss(labels, logits, C, normalizers=normalizers)
    assert tape.gradient(loss, normalizers) is None


@pytest.mark.parametrize("jit_compile", [False, True])
def test_unknown_shapes_at_trace_time(jit_compile):
    labels, logits = _batch()
    traced = tf.function(lambda l, z: value_and_grads(lambda z: ce_dice_loss(l, z, C), z),
                         jit_compile=jit_compile, input_signature=[
                             tf.TensorSpec([None, None, None], tf.int32),
                             tf.TensorSpec([None, None, None, C], tf.float32)])
    got, (got_grad,) = traced(labels, logits)
    want, (want_grad,) = value_and_grads(lambda z: reference_ce_dice_loss(labels, z, C), logits)
    assert float(got) == pytest.approx(float(want), rel=1e-5)
    assert_close(got_grad, want_grad, 1e-5)
