"""Confusion matrix, 8 x 384 x 384 labels, 21 classes: fast (bincount) vs the book's path.

The book's path is `tf.math.confusion_matrix` on boolean-masked pixels
(`kernels.reference_confusion_matrix`); a boolean mask has a data-dependent shape, so it
does not compile under XLA and only runs plain. Items are pixels.
"""
import numpy as np
import pytest
import tensorflow as tf

from benchmarks.support import bench_case, record_items_per_second
from kernels import confusion_matrix, reference_confusion_matrix

SHAPE = (8, 384, 384)
NUM_CLASSES = 21
GROUP = "confusion 8x384x384 C=21"


@pytest.fixture(scope="module")
def pixels():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, NUM_CLASSES, SHAPE)
    labels[rng.random(SHAPE) < 0.1] = 255  # VOC-like share of ignored border pixels
    predictions = rng.integers(0, NUM_CLASSES, SHAPE)
    return tf.constant(labels, tf.int32), tf.constant(predictions, tf.int32)


CASES = {
    "reference (book), plain": (reference_confusion_matrix, False),
    "fast, plain": (confusion_matrix, False),
    "fast, XLA": (confusion_matrix, True),
}


@pytest.mark.parametrize("case", [bench_case(name, id=name, baseline=name.startswith("reference"))
                                  for name in CASES])
def test_confusion(benchmark, pixels, comparison_table, case):
    fn, xla = CASES[case]
    step = tf.function(lambda l, p: fn(l, p, NUM_CLASSES), jit_compile=xla, autograph=False)
    expected = reference_confusion_matrix(*pixels, NUM_CLASSES)
    np.testing.assert_array_equal(step(*pixels), expected)  # also the warm-up trace
    benchmark.group = GROUP
    benchmark.pedantic(lambda: step(*pixels).numpy(), rounds=15, warmup_rounds=2)
    if benchmark.disabled:  # --benchmark-disable: ran once as a smoke test, no stats
        return
    rate = record_items_per_second(benchmark, int(np.prod(SHAPE)))
    comparison_table.append((GROUP, case, benchmark.stats.stats.min, rate, case.startswith("reference")))
