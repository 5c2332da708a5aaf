"""Class-weighted cross-entropy + dice loss for semantic segmentation: reference, then fused.

Definition (it fixes the book's listings 8.13-8.16, which average over all pixels and
count ignored pixels as class 0). Inputs: labels int [B, H, W] (any int dtype), logits
[B, H, W, C] (float32, float16 or bfloat16); everything is computed in float32.

- valid pixel i: v_i = 1 if 0 <= label_i < C and label_i != ignore_label, else 0.
  Ignored pixels are excluded from every sum and count.
- per-image class weights: for image b, N_b = valid pixels of b, n_bc = those of class
  c, w[b, c] = (N_b - n_bc) / N_b; pixel i gets w_i = w[b(i), label_i]. An image with
  no valid pixel contributes nothing. With class_weighted=False, w_i = 1.
- p = softmax(logits), y_i = label_i.
  CEsum = sum_i v_i w_i (-log p_{i, y_i}),    M = sum_i v_i,
  I = sum_i v_i w_i p_{i, y_i},               S = sum_i v_i w_i.
  The dice union sum_i v_i w_i sum_c (onehot_ic + p_ic) is 2S, since softmax sums to 1.
- loss = ce_weight * CEsum / M + dice_weight * (1 - (2I + smooth) / (2S + smooth)),
  with CEsum / M := 0 when M = 0 (an all-ignored batch gives loss 0 and gradient 0).

Distribution: the CE term is normalised by M and dice is a ratio of sums, so neither is
a mean of per-replica values. `loss_normalizers(labels)` gives this replica's
[M_r, S_r, 1]; the training loop sums it across replicas into [M, S, R] and passes it
as `normalizers=`. The loss then returns this replica's share

    L_r = ce_weight * CEsum_r / M + dice_weight * (1/R - (2 I_r + smooth/R) / (2S + smooth)),

so sum_r L_r is the single-device loss on the global batch, and so are the summed
gradients. With normalizers=None the local batch's [M_r, S_r, 1] is used.
"""
import tensorflow as tf

from kernels._counting import class_ids, count_bins


# ----------------------------------------------------------------------------------------
# Shared pieces: validity and class weights (no gradient flows through either)

def _valid_labels(labels, num_classes, ignore_label):
    """(valid bool [B,H,W], labels clamped to 0 where invalid as int32 [B,H,W]).

    The clamp matters: sparse ops raise on CPU for labels outside [0, C).
    """
    ids, valid = class_ids(labels, num_classes, ignore_label)
    return valid, tf.where(valid, ids, 0)


def _pixel_weights(valid, safe_labels, num_classes, class_weighted):
    """w_i * v_i as float32 [B, H, W] (see the module docstring), by per-image bincount."""
    if not class_weighted:
        return tf.cast(valid, tf.float32)
    batch = tf.shape(safe_labels)[0]
    image = tf.range(batch)[:, None, None]
    # Bin image*C + label; invalid pixels go to the extra bin B*C, which has weight 0.
    bins = tf.where(valid, image * num_classes + safe_labels, batch * num_classes)
    counts = tf.reshape(count_bins(bins, batch * num_classes, tf.float32), [batch, num_classes])
    per_image = tf.reduce_sum(counts, axis=1, keepdims=True)
    weights = tf.math.divide_no_nan(per_image - counts, per_image)
    table = tf.concat([tf.reshape(weights, [-1]), [0.0]], axis=0)
    return tf.gather(table, bins)


def loss_normalizers(labels, num_classes, ignore_label=255, class_weighted=True):
    """This replica's [M, S, 1] for `ce_dice_loss(..., normalizers=)`; sum it across replicas.

    Args:
      labels: int tensor [B, H, W] (any int dtype).
      num_classes: C, a Python int.
      ignore_label: label value excluded from the loss (as is anything outside [0, C)).
      class_weighted: as in `ce_dice_loss`.
    Returns:
      float32 [3] = [M, S, 1.0]: M = number of valid pixels, S = sum of their class
      weights w_i, and a replica count of 1 (so the all-reduced sum counts replicas).
    """
    valid, safe = _valid_labels(labels, num_classes, ignore_label)
    return _local_normalizers(valid, _pixel_weights(valid, safe, num_classes, class_weighted))


def _local_normalizers(valid, weights):
    """[M, S, 1] of this batch from the valid mask and the pixel weights."""
    return tf.stack([tf.reduce_sum(tf.cast(valid, tf.float32)), tf.reduce_sum(weights), 1.0])


def _combine(ce_sum, intersection, normalizers, smooth, ce_weight, dice_weight):
    """loss share from the local sums and the (global) normalizers [M, S, R]."""
    m, s, r = tf.unstack(tf.stop_gradient(normalizers))
    ce = tf.math.divide_no_nan(ce_sum, m)
    dice = 1.0 / r - (2.0 * intersection + smooth / r) / (2.0 * s + smooth)
    return ce_weight * ce + dice_weight * dice


# ----------------------------------------------------------------------------------------
# Reference

def reference_ce_dice_loss(labels, logits, num_classes, ignore_label=255, smooth=1.0, *,
                           ce_weight=1.0, dice_weight=1.0, class_weighted=True,
                           normalizers=None):
    """Plain CE + dice loss (one-hot, separate softmax and log-softmax, autodiff gradient).

    Args and result as in `ce_dice_loss`; this version is written to be obviously right.
    """
    labels = tf.cast(labels, tf.int64)
    valid = (labels >= 0) & (labels < num_classes) & (labels != ignore_label)
    v = tf.cast(valid, tf.float32)
    onehot = tf.one_hot(tf.where(valid, labels, 0), num_classes, dtype=tf.float32) * v[..., None]
    logits = tf.cast(logits, tf.float32)
    if class_weighted:
        n_bc = tf.reduce_sum(onehot, axis=[1, 2])                      # [B, C]
        n_b = tf.reduce_sum(n_bc, axis=1, keepdims=True)               # [B, 1]
        w_bc = tf.math.divide_no_nan(n_b - n_bc, n_b)
        w = tf.reduce_sum(onehot * w_bc[:, None, None, :], axis=-1)    # [B, H, W]
    else:
        w = v
    ce_sum = tf.reduce_sum(w * -tf.reduce_sum(onehot * tf.nn.log_softmax(logits), axis=-1))
    intersection = tf.reduce_sum(w[..., None] * onehot * tf.nn.softmax(logits))
    if normalizers is None:
        normalizers = tf.stack([tf.reduce_sum(v), tf.reduce_sum(w), 1.0])
    return _combine(ce_sum, intersection, normalizers, smooth, ce_weight, dice_weight)


# ----------------------------------------------------------------------------------------
# Fused version

def ce_dice_loss(labels, logits, num_classes, ignore_label=255, smooth=1.0, *,
                 ce_weight=1.0, dice_weight=1.0, class_weighted=True, normalizers=None):
    """Class-weighted CE + dice loss (definition in the module docstring), fused.

    One fused softmax pass (`SparseSoftmaxCrossEntropyWithLogits` returns -log p_y and
    p - onehot together), per-image class counts by bincount, and the analytic gradient
    d loss / d z_ic = a_i (p_ic - onehot_ic), a_i = v_i w_i (ce_weight / M +
    dice_weight * 2 p_{i,y_i} / (2S + smooth)). Works eagerly, in tf.function and under
    jit_compile=True.

    Args:
      labels: int tensor [B, H, W], any int dtype; ignore_label and anything outside
        [0, C) is ignored.
      logits: float32/float16/bfloat16 tensor [B, H, W, C].
      num_classes: C, a Python int.
      ignore_label: label value excluded from the loss.
      smooth: dice smoothing constant.
      ce_weight, dice_weight: weights of the two terms.
      class_weighted: per-image class weights w (True) or w = 1 (False).
      normalizers: None, or float32 [3] = [M, S, R] summed across replicas (see
        `loss_normalizers`); then the result is this replica's share. No gradient.
    Returns:
      float32 scalar.
    """
    valid, safe = _valid_labels(labels, num_classes, ignore_label)
    weights = _pixel_weights(valid, safe, num_classes, class_weighted)
    if normalizers is None:
        normalizers = _local_normalizers(valid, weights)
    logits32 = tf.cast(logits, tf.float32)  # autodiff casts the gradient back to logits' dtype
    return _fused_loss(logits32, safe, weights, tf.stop_gradient(normalizers),
                       float(smooth), float(ce_weight), float(dice_weight))


def _fused_loss(logits, safe_labels, weights, normalizers, smooth, ce_weight, dice_weight):
    """The loss as a function of float32 logits, with the analytic gradient."""

    @tf.custom_gradient
    def loss_of(z):
        # One pass over [N, C]: nll_i = -log p_{i,y_i} and dnll = p - onehot (the op
        # computes both; we keep dnll for the backward pass instead of a second softmax).
        nll, dnll = tf.raw_ops.SparseSoftmaxCrossEntropyWithLogits(
            features=tf.reshape(z, [-1, tf.shape(z)[-1]]), labels=tf.reshape(safe_labels, [-1]))
        w = tf.reshape(weights, [-1])
        p_true = tf.exp(-nll)
        loss = _combine(tf.reduce_sum(w * nll), tf.reduce_sum(w * p_true), normalizers,
                        smooth, ce_weight, dice_weight)

        def grad(upstream):
            m, s, _ = tf.unstack(normalizers)
            a = w * (tf.math.divide_no_nan(ce_weight, m) + dice_weight * 2.0 * p_true / (2.0 * s + smooth))
            return tf.reshape((upstream * a)[:, None] * dnll, tf.shape(z))

        return loss, grad

    return loss_of(logits)
