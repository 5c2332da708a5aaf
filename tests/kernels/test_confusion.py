"""Confusion matrix, segmentation metrics and the streaming accumulator."""
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from kernels import (StreamingConfusionMatrix, confusion_matrix, reference_confusion_matrix,
                     segmentation_metrics)
from tests.kernels._modes import MODES, in_mode

# A hand-worked case, C = 3. The last two pixels are not counted (255 = ignore, 7 is
# outside [0, 3)).
#   labels      = [0, 0, 0, 1, 1, 2, 2, 255, 7]
#   predictions = [0, 0, 1, 1, 2, 2, 0,   1, 2]
# Confusion matrix (rows = true, columns = predicted):
#            pred 0  pred 1  pred 2   | true count t
#   true 0      2       1       0     |   3
#   true 1      0       1       1     |   2
#   true 2      1       0       1     |   2
#   pred count  3       2       2       total 7
# tp = [2, 1, 1]; union = t + p - tp = [4, 3, 3]
# IoU = [2/4, 1/3, 1/3], mean IoU = (1/2 + 2/3) / 3 = 7/18
# accuracy = tp / t = [2/3, 1/2, 1/2], mean accuracy = (2/3 + 1) / 3 = 5/9
# pixel accuracy = 4/7
# frequency-weighted IoU = (3 * 1/2 + 2 * 1/3 + 2 * 1/3) / 7 = 17/42
HAND_LABELS = [0, 0, 0, 1, 1, 2, 2, 255, 7]
HAND_PREDICTIONS = [0, 0, 1, 1, 2, 2, 0, 1, 2]
HAND_MATRIX = [[2, 1, 0], [0, 1, 1], [1, 0, 1]]


@pytest.mark.parametrize("mode", MODES)
def test_hand_worked_matrix(mode):
    labels = tf.reshape(tf.constant(HAND_LABELS), [3, 3])  # any shape works
    predictions = tf.reshape(tf.constant(HAND_PREDICTIONS), [3, 3])
    got = in_mode(lambda l, p: confusion_matrix(l, p, 3), mode)(labels, predictions)
    assert got.dtype == tf.int64
    np.testing.assert_array_equal(got, HAND_MATRIX)
    np.testing.assert_array_equal(reference_confusion_matrix(labels, predictions, 3), HAND_MATRIX)


def test_hand_worked_metrics():
    metrics = segmentation_metrics(np.array(HAND_MATRIX))
    np.testing.assert_allclose(metrics["per_class_iou"], [1 / 2, 1 / 3, 1 / 3])
    np.testing.assert_allclose(metrics["per_class_accuracy"], [2 / 3, 1 / 2, 1 / 2])
    assert metrics["mean_iou"] == pytest.approx(7 / 18)
    assert metrics["mean_accuracy"] == pytest.approx(5 / 9)
    assert metrics["pixel_accuracy"] == pytest.approx(4 / 7)
    assert metrics["frequency_weighted_iou"] == pytest.approx(17 / 42)
    assert all(type(metrics[k]) is float
               for k in ("mean_iou", "mean_accuracy", "pixel_accuracy", "frequency_weighted_iou"))
    assert metrics["per_class_iou"].dtype == np.float64


def test_absent_classes_are_nan_and_left_out_of_the_means():
    # C = 4. Class 3 never appears in the labels; it is predicted once (for a class-0
    # pixel), so its accuracy is NaN (t = 0) but its IoU is 0 / 1 = 0. Class 2 appears
    # nowhere: both NaN.
    #            pred 0  pred 1  pred 2  pred 3
    #   true 0      1       0       0       1
    #   true 1      0       2       0       0
    #   true 2      0       0       0       0
    #   true 3      0       0       0       0
    # IoU = [1/2, 1, NaN, 0] -> mean 1/2; accuracy = [1/2, 1, NaN, NaN] -> mean 3/4
    # FWIoU = (2 * 1/2 + 2 * 1) / 4 = 3/4
    matrix = confusion_matrix([0, 0, 1, 1], [0, 3, 1, 1], 4)
    np.testing.assert_array_equal(matrix, [[1, 0, 0, 1], [0, 2, 0, 0], [0] * 4, [0] * 4])
    metrics = segmentation_metrics(matrix)  # a tensor is accepted too
    np.testing.assert_array_equal(metrics["per_class_iou"], [0.5, 1.0, np.nan, 0.0])
    np.testing.assert_array_equal(metrics["per_class_accuracy"], [0.5, 1.0, np.nan, np.nan])
    assert metrics["mean_iou"] == pytest.approx(0.5)
    assert metrics["mean_accuracy"] == pytest.approx(0.75)
    assert metrics["frequency_weighted_iou"] == pytest.approx(0.75)


def test_empty_matrix_gives_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = segmentation_metrics(np.zeros([3, 3], np.int64))
    assert all(np.isnan(metrics[k]) for k in ("mean_iou", "pixel_accuracy", "frequency_weighted_iou"))
    assert np.isnan(metrics["per_class_iou"]).all()


@pytest.mark.parametrize("mode", MODES)
def test_out_of_range_predictions_are_dropped(mode):
    # Label 1 with prediction 3 would land in cell (2, 0) as 1*C + 3 if unchecked; -1 relies
    # on the fast path's unsigned cast, so it is checked compiled too.
    got = in_mode(lambda l, p: confusion_matrix(l, p, 3), mode)(tf.constant([1, 1, 0, 2]),
                                                                 tf.constant([3, -1, 0, 2]))
    np.testing.assert_array_equal(got, [[1, 0, 0], [0, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(reference_confusion_matrix([1, 1, 0, 2], [3, -1, 0, 2], 3), got)


def _random_pixels(seed, num_classes, shape=(2, 17, 13)):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, shape)
    labels[rng.random(shape) < 0.15] = 255
    labels[rng.random(shape) < 0.05] = num_classes + 3
    predictions = rng.integers(0, num_classes, shape)
    return labels, predictions


def _numpy_confusion(labels, predictions, num_classes):
    keep = (labels >= 0) & (labels < num_classes)
    expected = np.zeros([num_classes, num_classes], np.int64)
    np.add.at(expected, (labels[keep], predictions[keep]), 1)
    return expected


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("label_dtype", [np.uint8, np.int32, np.int64])
def test_matches_numpy_on_random_inputs(label_dtype, mode):
    labels, predictions = _random_pixels(0, 6)
    expected = _numpy_confusion(labels, predictions, 6)
    labels = tf.constant(labels.astype(label_dtype))
    fast = in_mode(lambda l, p: confusion_matrix(l, p, 6), mode)(labels, tf.constant(predictions))
    np.testing.assert_array_equal(fast, expected)
    np.testing.assert_array_equal(reference_confusion_matrix(labels, predictions, 6), expected)


def test_mean_iou_matches_keras():
    # Keras' MeanIoU also leaves classes with a zero denominator out of its mean, but
    # adds an epsilon to every denominator; on inputs where every class appears the
    # two agree to float32 precision.
    labels, predictions = _random_pixels(1, 5)
    assert set(np.unique(labels[labels < 5])) == set(range(5))
    keras_iou = keras.metrics.MeanIoU(num_classes=5, ignore_class=255)
    keep = labels < 5  # Keras' ignore_class handles 255 only; drop the others for it
    keras_iou.update_state(labels[keep], predictions[keep])
    ours = segmentation_metrics(confusion_matrix(labels, predictions, 5))["mean_iou"]
    assert ours == pytest.approx(float(keras_iou.result()), rel=1e-5)


# ----------------------------------------------------------------------------------------
# Streaming accumulator

def test_streaming_accumulates_in_a_jit_compiled_step():
    stream = StreamingConfusionMatrix(3)
    step = tf.function(stream.update, jit_compile=True)
    labels = tf.constant(HAND_LABELS)
    predictions = tf.constant(HAND_PREDICTIONS)
    step(labels, predictions)
    step(labels, predictions)
    np.testing.assert_array_equal(stream.result(), 2 * np.array(HAND_MATRIX))
    assert stream.metrics()["mean_iou"] == pytest.approx(7 / 18)
    stream.reset()
    np.testing.assert_array_equal(stream.result(), np.zeros([3, 3]))


def test_streaming_counts_in_int64_beyond_2_to_the_31():
    stream = StreamingConfusionMatrix(2)
    assert stream.result().dtype == tf.int64
    big = 2**31 + 5  # as if ~2^31 pixels had been counted already
    stream.total.assign([[big, 0], [0, 0]])
    stream.update(tf.zeros([3], tf.int32), tf.zeros([3], tf.int32))
    assert int(stream.result()[0, 0]) == big + 3
    # float32 (Keras MeanIoU's accumulator) could not even hold big + 1:
    assert np.float32(big) + np.float32(1) == np.float32(big)


def test_unknown_shape_at_trace_time():
    traced = tf.function(lambda l, p: confusion_matrix(l, p, 3), input_signature=[
        tf.TensorSpec(None, tf.int32), tf.TensorSpec(None, tf.int32)])
    np.testing.assert_array_equal(traced(HAND_LABELS, HAND_PREDICTIONS), HAND_MATRIX)
