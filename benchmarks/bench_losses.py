"""CE + dice loss, forward + backward on [8, 384, 384, 21] logits: fused vs reference vs book.

Each plain and under XLA. Items are pixels. `book_ce_dice_loss` is the book's
formulation (listings 8.13-8.16) and lives here only, as a baseline: it is not the
project's loss (see kernels/losses.py for the definition it fixes).
"""
import numpy as np
import pytest
import tensorflow as tf

from benchmarks.support import bench_case, record_items_per_second
from kernels import ce_dice_loss, reference_ce_dice_loss

SHAPE = (8, 384, 384)
NUM_CLASSES = 21
GROUP = "ce+dice fwd+bwd [8,384,384,21]"


def book_ce_dice_loss(labels, logits, num_classes, smooth=1.0):
    """The book's class-weighted CE + dice (listings 8.13-8.16), for comparison only.

    As in the book: per-image class weights from one-hot counts over ALL pixels, CE and
    dice averaged over all pixels, and ignored pixels (255) effectively counted as class
    0. The book's one-hot of 255 is all-zero and its sparse CE raises on CPU for 255, so
    labels outside [0, C) are clamped to 0 first, which is what the listings intend.
    """
    labels = tf.where((labels >= 0) & (labels < num_classes), labels, 0)
    onehot = tf.one_hot(labels, num_classes)
    pixels = tf.cast(tf.reduce_prod(tf.shape(labels)[1:]), tf.float32)
    class_weights = (pixels - tf.reduce_sum(onehot, axis=[1, 2])) / pixels      # [B, C]
    weights = tf.reduce_sum(onehot * class_weights[:, None, None, :], axis=-1)  # [B, H, W]
    ce = tf.nn.softmax_cross_entropy_with_logits(onehot, logits)
    probs = tf.nn.softmax(logits)
    intersection = tf.reduce_sum(weights[..., None] * onehot * probs)
    union = tf.reduce_sum(weights[..., None] * (onehot + probs))
    dice = 1.0 - (2.0 * intersection + smooth) / (union + smooth)
    return tf.reduce_mean(weights * ce) + dice


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, NUM_CLASSES, SHAPE)
    labels[rng.random(SHAPE) < 0.1] = 255
    logits = rng.normal(size=SHAPE + (NUM_CLASSES,)).astype(np.float32)
    return tf.constant(labels, tf.int32), tf.constant(logits)


LOSSES = {"fused": ce_dice_loss, "reference": reference_ce_dice_loss, "book": book_ce_dice_loss}
CASES = [(name, xla) for name in LOSSES for xla in (False, True)]


def _value_and_grad(loss_fn, labels, logits):
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = loss_fn(labels, logits, NUM_CLASSES)
    return loss, tape.gradient(loss, logits)


@pytest.mark.parametrize("name,xla", [
    bench_case(n, x, id=f"{n}-{'xla' if x else 'plain'}", baseline=n != "fused") for n, x in CASES])
def test_loss(benchmark, batch, comparison_table, name, xla):
    labels, logits = batch
    step = tf.function(lambda l, z: _value_and_grad(LOSSES[name], l, z), jit_compile=xla,
                       autograph=False)
    step(labels, logits)  # trace (and compile) outside the timing
    benchmark.group = GROUP
    benchmark.pedantic(lambda: step(labels, logits)[0].numpy(), rounds=5, warmup_rounds=1)
    if benchmark.disabled:  # --benchmark-disable: ran once as a smoke test, no stats
        return
    rate = record_items_per_second(benchmark, int(np.prod(SHAPE)))
    case = f"{name}, {'XLA' if xla else 'plain'}"
    comparison_table.append((GROUP, case, benchmark.stats.stats.min, rate, case == "reference, plain"))
