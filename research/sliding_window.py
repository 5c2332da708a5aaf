"""Sliding-window inference: logits for images larger than the model's input.

Whole-image inference (`research.export.predict_logits`) resizes every image to the
input size the model was trained at, which blurs the small objects of a 2048 x 1024
Cityscapes frame. A sliding window runs the model at its own scale instead:

1. the image is padded at the bottom and right to at least the window size with the
   mean colour `research.data.pipeline.PAD_RGB_MEAN`, the colour the pipeline's scale
   jitter pads with in training (about zero after an ImageNet backbone's preprocessing;
   about 0.45 after the "unit" scaling of a model trained from scratch);
2. windows of `window` (h, w) pixels start every `stride` pixels, the last row and
   column of windows flush with the padded image's edge (so every pixel is covered and
   no window needs more padding): `window_starts`;
3. each window runs through the model at the window size (no resizing), several
   windows per call;
4. each pixel's logits are the mean over the windows that cover it; the result is
   cropped back to the image.

`slide_tta_logits` composes this with test-time augmentation: for each scale s the
image is resized to s x its own size, slid over, and the logits resized back; with
flip the mirror image is slid over too and its logits mirrored back; the mean of all
is returned (as `research.evaluate.tta_logits` does for whole images).

The arithmetic is in numpy on the host, the model in one tf.function per window size.
"""
import math

import numpy as np
import tensorflow as tf

from research.data.pipeline import PAD_RGB_MEAN
from research.window_options import default_stride

WINDOWS_PER_CALL = 4   # model calls take this many windows (bounds their activation memory)


def window_starts(size, window, stride):
    """Start offsets of the windows along one axis.

    Args:
      size: pixels along the axis, at least `window`.
      window, stride: the window's length and the step between windows (stride <= window).
    Returns:
      sorted list of int: 0, stride, 2 * stride, ..., and size - window last.
    """
    if size < window:
        raise ValueError(f"window_starts: size {size} is smaller than the window {window} (pad first)")
    count = max(math.ceil((size - window) / stride), 0) + 1
    return sorted({min(i * stride, size - window) for i in range(count)})


def window_model(model, window):
    """A tf.function `float32 [N, h, w, 3] -> float32 [N, h, w, C]` of `model` at `window`
    (h, w), traced once for any N."""
    @tf.function(input_signature=[tf.TensorSpec([None, window[0], window[1], 3], tf.float32)], autograph=False)
    def run(windows):
        return tf.cast(model(windows, training=False), tf.float32)
    return run


def slide_logits(run_windows, image, window, stride, windows_per_call=WINDOWS_PER_CALL):
    """The mean logits of overlapping windows (module doc) of ONE image.

    Args:
      run_windows: float32 [N, h, w, 3] in [0, 255] -> logits [N, h, w, C]
        (`window_model`).
      image: [H, W, 3] RGB in [0, 255] (any real dtype; numpy or tensor).
      window, stride: (h, w) pairs of ints, stride <= window.
      windows_per_call: windows per `run_windows` call.
    Returns:
      float32 [H, W, C] numpy.
    """
    image = np.asarray(image, dtype=np.float32)
    height, width = image.shape[:2]
    padded_h, padded_w = max(height, window[0]), max(width, window[1])
    padded = np.empty((padded_h, padded_w, 3), np.float32)
    padded[...] = np.asarray(PAD_RGB_MEAN, np.float32)
    padded[:height, :width] = image
    boxes = [(top, left) for top in window_starts(padded_h, window[0], stride[0])
             for left in window_starts(padded_w, window[1], stride[1])]
    total, count = None, np.zeros((padded_h, padded_w, 1), np.float32)
    for first in range(0, len(boxes), windows_per_call):
        chunk = boxes[first:first + windows_per_call]
        crops = np.stack([padded[t:t + window[0], l:l + window[1]] for t, l in chunk])
        logits = np.asarray(run_windows(tf.constant(crops)))
        if total is None:
            total = np.zeros((padded_h, padded_w, logits.shape[-1]), np.float32)
        for (top, left), window_logits in zip(chunk, logits):
            total[top:top + window[0], left:left + window[1]] += window_logits
            count[top:top + window[0], left:left + window[1]] += 1.0
    return (total / count)[:height, :width]


def _resize(array, size):
    return tf.image.resize(tf.constant(array[None]), size, method="bilinear")[0].numpy()


def slide_tta_logits(run_windows, image, window, stride, flip=False, scales=(1.0,)):
    """`slide_logits` averaged over test-time augmentations (module doc).

    Args:
      run_windows, window, stride: as `slide_logits`.
      image: [H, W, 3] in [0, 255].
      flip: also slide over the mirror image (its logits mirrored back).
      scales: multiples of the image's own size to slide over.
    Returns:
      float32 [H, W, C] numpy; with flip=False and scales=(1,) exactly `slide_logits`.
    """
    image = np.asarray(image, dtype=np.float32)
    size = image.shape[:2]
    total, runs = 0.0, 0
    for scale in scales:
        scaled_size = tuple(max(1, int(round(s * scale))) for s in size)
        scaled = image if scaled_size == size else _resize(image, scaled_size)
        for mirrored in ((False, True) if flip else (False,)):
            logits = slide_logits(run_windows, scaled[:, ::-1] if mirrored else scaled, window, stride)
            if mirrored:
                logits = logits[:, ::-1]
            total = total + (logits if scaled_size == size else _resize(logits, size))
            runs += 1
    return total / runs


def make_slide_predictor(model, window, stride=None, flip=False, scales=(1.0,)):
    """`predict(images [B, H, W, 3] in [0, 255]) -> float32 [B, H, W, C] numpy`: each
    image by `slide_tta_logits` (stride None: `default_stride(window)`)."""
    window = tuple(int(v) for v in window)
    if len(window) != 2 or min(window) < 1:
        raise ValueError(f"the window must be two positive integers (height, width); got {list(window)}")
    stride = tuple(int(v) for v in (stride or default_stride(window)))
    if len(stride) != 2 or min(stride) < 1:
        raise ValueError(f"the stride must be two positive integers (height, width); got {list(stride)}")
    if any(s > w for s, w in zip(stride, window)):
        raise ValueError(f"stride {list(stride)} is larger than the window {list(window)}: pixels "
                         f"between windows would never be predicted")
    run_windows = window_model(model, window)

    def predict(images):
        return np.stack([slide_tta_logits(run_windows, image, window, stride, flip, scales)
                         for image in np.asarray(images)])
    return predict
