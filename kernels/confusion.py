"""Confusion matrix and segmentation metrics: reference, then fast; a streaming accumulator.

Convention: rows = true class, columns = predicted class, counts int64. A pixel is
counted only if its label is in [0, C) and is not `ignore_label`, and its prediction is
in [0, C). (Predictions come from an argmax, so they are always in range; an
out-of-range one is dropped rather than folded into another cell, which it would be if
it reached `label * C + prediction` unchecked.)
"""
import numpy as np
import tensorflow as tf

from kernels._counting import class_ids, count_bins


# ----------------------------------------------------------------------------------------
# Reference

def reference_confusion_matrix(labels, predictions, num_classes, ignore_label=255):
    """`tf.math.confusion_matrix` on the boolean-masked pixels (the book's path; no XLA).

    Args and result as in `confusion_matrix`.
    """
    labels = tf.reshape(tf.cast(labels, tf.int64), [-1])
    predictions = tf.reshape(tf.cast(predictions, tf.int64), [-1])
    keep = ((labels >= 0) & (labels < num_classes) & (labels != ignore_label)
            & (predictions >= 0) & (predictions < num_classes))
    return tf.math.confusion_matrix(tf.boolean_mask(labels, keep),
                                    tf.boolean_mask(predictions, keep),
                                    num_classes=num_classes, dtype=tf.int64)


# ----------------------------------------------------------------------------------------
# Fast version

def confusion_matrix(labels, predictions, num_classes, ignore_label=255):
    """Confusion matrix by one bincount of label * C + prediction.

    Args:
      labels: int tensor of any shape (any int dtype), the true classes.
      predictions: int tensor of labels' shape, the predicted classes.
      num_classes: C, a Python int.
      ignore_label: label value not counted (nor is any label or prediction outside [0, C)).
    Returns:
      int64 [C, C]: m[t, p] = number of counted pixels with label t and prediction p.
      Works eagerly, in tf.function and under jit_compile=True (no boolean mask, so
      every shape is static).
    """
    labels, keep_labels = class_ids(labels, num_classes, ignore_label)
    predictions, keep_predictions = class_ids(predictions, num_classes)
    cells = num_classes * num_classes
    # Uncounted pixels go to the extra bin C*C, never to a negative index.
    bins = tf.where(keep_labels & keep_predictions, labels * num_classes + predictions, cells)
    counts = count_bins(bins, cells, tf.int64)
    return tf.reshape(counts, [num_classes, num_classes])


# ----------------------------------------------------------------------------------------
# Metrics (host side)

def _ratio(numerator, denominator):
    """numerator / denominator elementwise, NaN where denominator == 0, no warnings."""
    out = np.full(np.shape(numerator), np.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _mean_present(values):
    """Mean over the non-NaN entries as a Python float (NaN if there are none)."""
    present = values[~np.isnan(values)]
    return float(present.mean()) if present.size else float("nan")


def segmentation_metrics(confusion):
    """Summary metrics of a confusion matrix (rows = true, columns = predicted).

    A host-side summary: a tensor argument is copied to the host (a sync point).

    Args:
      confusion: [C, C] counts, numpy array or tensor, any numeric dtype.
    Returns:
      dict, computed in float64 (tp = diagonal, t = row sums, p = column sums):
      per_class_iou: [C] tp / (t + p - tp); per_class_accuracy: [C] tp / t; NaN where
        the denominator is 0 (the class is absent from labels, and for IoU from
        predictions too).
      pixel_accuracy: sum(tp) / sum(t).
      mean_iou, mean_accuracy: means over the classes whose denominator is non-zero.
      frequency_weighted_iou: sum_c (t_c / sum(t)) * iou_c over those classes.
    """
    m = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(m)
    true_count = m.sum(axis=1)
    union = true_count + m.sum(axis=0) - tp
    iou = _ratio(tp, union)
    accuracy = _ratio(tp, true_count)
    total = true_count.sum()
    present = ~np.isnan(iou)
    return {
        "pixel_accuracy": float(tp.sum() / total) if total else float("nan"),
        "mean_accuracy": _mean_present(accuracy),
        "mean_iou": _mean_present(iou),
        "frequency_weighted_iou": (float((true_count[present] * iou[present]).sum() / total)
                                   if total else float("nan")),
        "per_class_iou": iou,
        "per_class_accuracy": accuracy,
    }


# ----------------------------------------------------------------------------------------
# Streaming accumulator

class StreamingConfusionMatrix(tf.Module):
    """A confusion matrix summed over batches (and over replicas under tf.distribute).

    Holds an int64 [C, C] `tf.Variable` (int64, so no cell saturates or rounds the way
    Keras' float32 `MeanIoU` does above 2^24). Create it inside `strategy.scope()` to
    use it under tf.distribute: the variable is ON_READ / SUM, so each replica updates
    its own copy and `result()` (read in cross-replica context) is their sum.

    Args:
      num_classes: C.
      ignore_label: label not counted (see `confusion_matrix`).
      name: the module's name.

    Example:
      >>> cm = StreamingConfusionMatrix(21)
      >>> cm.update(labels, tf.argmax(logits, -1))   # inside a (jit-compiled) step too
      >>> cm.metrics()["mean_iou"]                   # host sync point
    """

    def __init__(self, num_classes, ignore_label=255, name="confusion"):
        super().__init__(name=name)
        self.num_classes = int(num_classes)
        self.ignore_label = ignore_label
        self.total = tf.Variable(
            tf.zeros([self.num_classes, self.num_classes], tf.int64), trainable=False,
            name="total", synchronization=tf.VariableSynchronization.ON_READ,
            aggregation=tf.VariableAggregation.SUM)

    def update(self, labels, predictions):
        """Adds the batch's confusion matrix; returns the assign op (usable in tf.function/XLA)."""
        return self.total.assign_add(
            confusion_matrix(labels, predictions, self.num_classes, self.ignore_label))

    def result(self):
        """int64 [C, C], summed over updates (and replicas)."""
        return tf.convert_to_tensor(self.total)

    def reset(self):
        """Zeroes the counts (on every replica's copy)."""
        self.total.assign(tf.zeros_like(self.total))

    def metrics(self):
        """`segmentation_metrics(self.result())`: a host sync point."""
        return segmentation_metrics(self.result().numpy())
