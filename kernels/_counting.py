"""Counting indices into a fixed number of bins, eagerly, in tf.function and under XLA.

Shared by the confusion matrix (bins = label*C + prediction) and the loss (bins =
image*C + label). Callers map every pixel that must not be counted to the index
`size` (one extra bin that is sliced off), never to a negative index: negative inputs
are unsafe in TF 2.21's bincount kernels (tensorflow#117960).
"""
import tensorflow as tf


def count_bins(indices, size, dtype=tf.int64):
    """Histogram of `indices` over bins [0, size]; returns the first `size` bins.

    Args:
      indices: int32 tensor of any shape, values in [0, size]; `size` means "drop".
      size: number of bins kept (Python int, or scalar int32 tensor if only known at
        run time; under XLA it must be known at compile time, which shapes are).
      dtype: tf.int64 or tf.float32, the count dtype.
    Returns:
      Tensor [size] of dtype: counts[k] = number of entries equal to k.
    """
    # DenseBincount with a size known to the compiler works eagerly, in graphs and
    # under XLA (tf.math.bincount does not compile: its output size depends on the
    # data). Empty `weights` means "count"; the weights' dtype is the output dtype.
    # Measured at 1.18 M indices into 442 bins (2-core Zen 3): DenseBincount 4-6 ms,
    # unsorted_segment_sum of ones 5-7 ms plain; under XLA both about 5 ms.
    flat = tf.reshape(indices, [-1])
    counts = tf.raw_ops.DenseBincount(input=flat, size=size + 1,
                                      weights=tf.zeros([0], dtype), binary_output=False)
    return counts[:size]
