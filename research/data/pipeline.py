"""The tf.data input pipeline: a dataset folder -> batches of (images, labels).

One pipeline for every layout: the dataset (`research.data.datasets`: Pascal VOC, or your
own data in the folder layout) gives the ids, the file paths and the checked reader;
everything after reading is the same.

    ids (dataset.split) -> read + check + decode (PIL, in tf.numpy_function) -> decoded cache
      -> per epoch: order from (seed, epoch) -> resize | random crop -> flip -> colour jitter
      -> fixed shapes -> batch -> (all epochs) prefetch

Outputs: images float32 [B, H, W, 3] in [0, 255] (raw pixel scale: each model does its own
preprocessing), labels int32 [B, h, w] with 255 = ignore.

Reproducible epochs. Epoch e's order is a permutation of the whole subset drawn from
(seed, e), and every random choice for a sample comes from stateless random ops seeded by
(seed, e, sample index). Nothing depends on TF's global seed, on parallelism or on what
ran before, so a resumed run rebuilds epoch e exactly with ``start_epoch=e`` and skips the
batches it has already trained on with ``.skip(k)``. Batches never straddle epochs.

Why the decoded cache is a Python-side store and not ``Dataset.cache()``: a full-subset
shuffle needs random access to the decoded samples (tf.data's cache has none inside a
pipeline), and ``Dataset.shuffle(seed=...)`` also depends on ``tf.random.set_seed``
(its seed pair is (global seed, op seed)), which would tie the epoch order to whatever
the training script seeds. The store holds uint8 arrays decoded once, before any random
op, and serves every epoch; memory is about (H * W * 4) bytes per sample (VOC trainval:
about 2.2 GB).

Decoding choice, measured in tf.data with AUTOTUNE on the embedded dataset (80-200 JPEG
+ PNG pairs, 200-500 px; 2 shared, busy cores, so each figure is the range of the medians
of four separate runs of interleaved rounds; benchmarks/bench_pipeline.py re-measures):
  masks:  TF decode_png + colour->index table 287-769/s (and no checks);
          PIL in numpy_function with every check 349-630/s.
  images: tf.io.decode_jpeg 678-1445/s; PIL in numpy_function 325-693/s.
  pairs:  PIL for both, checked (chosen) 192-299/s; TF image + PIL mask 263-435/s.
We read both files with PIL (the dataset's read_sample, research.data.voc.read_sample for
VOC) in one numpy_function:
TF's image decoder would cut the first epoch's decoding time by 13-31 %, but a truncated
JPEG then fails inside TF with a message that does not name the file (and skip_bad
could not skip it); PIL gives one checked reader shared with the validator, and the
cache means each sample is decoded once per run. The whole pipeline (training
configuration, 384 px, batch 8) gives 125-166 images/s with the cache warm, while a
DeepLab v3 training step at that size consumes about 1.5 images/s on a 2-core CPU (the
step times in docs/small_batches.md).
"""
import dataclasses
import logging
import math
import threading
from collections import Counter

import numpy as np
import tensorflow as tf

from research.data import datasets, voc

log = logging.getLogger(__name__)

# Labels of padding elements and the value `ignore`-aware losses and metrics skip.
IGNORE_LABEL = voc.IGNORE_LABEL

# What scale jitter pads images with: the ImageNet RGB mean, the usual stand-in for the
# dataset mean (VOC's own is within a few levels of it). After the model's
# preprocessing the padding is then about zero, i.e. "no signal".
PAD_RGB_MEAN = (123.68, 116.779, 103.939)


def dataset_size(voc_root, subset, split_seed=0):
    """Number of ids in a subset (for steps per epoch). `voc_root`: a VOC root path or a
    dataset (`research.data.datasets.dataset_of(config)`); see its `split`."""
    return len(datasets.as_dataset(voc_root).split(subset, split_seed))


def bad_file_message(error):
    """The ``"<file>: <problem>"`` of a bad sample that stopped a pipeline, or None.

    Without skip_bad, a bad file surfaces while iterating as a tf.errors.InvalidArgumentError
    whose long message (TF's iterator path, a Python traceback) holds the line
    ``BadFileError: <file>: <problem>``; command lines print just that line.
    """
    text = getattr(error, "message", None) or str(error)
    marker = "BadFileError: "
    if marker not in text:
        return None
    return text.split(marker, 1)[1].splitlines()[0].strip()


class SkippedSamples:
    """The bad samples a ``make_dataset(..., skip_bad=True)`` pipeline has left out.

    Pass one in (``skipped=SkippedSamples()``, one per pipeline) to read the counts while
    or after you iterate: ``skipped.per_epoch[e]`` once epoch e has been read through,
    ``skipped.count`` and ``skipped.problems`` at any time. The pipeline also logs each
    bad file when first met and, at the end of each epoch with bad samples, a warning
    with that epoch's count (logger "research.data.pipeline").

    Attributes:
      problems: dict file path -> message (each bad sample once).
      per_epoch: Counter epoch -> number of samples skipped in that epoch.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.problems = {}
        self.per_epoch = Counter()

    @property
    def count(self):
        """Number of distinct bad samples seen so far."""
        with self._lock:
            return len(self.problems)

    def first_path(self):
        """The first bad file in sorted order (the same whatever the threads' order), or None."""
        with self._lock:
            return min(self.problems, default=None)

    def record(self, epoch, error):
        """Notes that `error` (a voc.BadFileError) made the pipeline skip a sample in `epoch`."""
        with self._lock:
            first_time = error.path not in self.problems
            self.problems[error.path] = str(error)
            self.per_epoch[int(epoch)] += 1
        if first_time:
            log.warning("skipping bad sample: %s", error)


class _DecodedStore:
    """(image, mask) uint8 arrays by sample index, decoded on first use (the cache).

    Called from tf.numpy_function in parallel map threads; PIL releases the GIL while
    decoding, so decodes run in parallel.
    """

    def __init__(self, dataset, subset, ids, cache, skip_bad, skipped, max_pixels, min_good=1):
        self.read_sample = dataset.read_sample
        self.min_good = min_good    # good samples an epoch needs for one batch
        self.image_files = [dataset.image_path(i) for i in ids]
        self.mask_files = [dataset.mask_path(i, subset) for i in ids]
        self.cache = cache
        self.skip_bad = skip_bad
        self.skipped = skipped
        self.max_pixels = max_pixels
        self._decoded = {}

    def fetch(self, index, epoch):
        """-> (ok bool, image uint8 [H, W, 3], mask uint8 [H, W]); tiny zeros when not ok."""
        index = int(index)
        sample = self._decoded.get(index)
        if sample is None:
            try:
                sample = self.read_sample(self.image_files[index], self.mask_files[index],
                                          self.max_pixels)
            except voc.BadFileError as error:
                if not self.skip_bad:
                    raise
                sample = error
            if self.cache:
                self._decoded[index] = sample   # dict assignment is atomic under the GIL
        if isinstance(sample, voc.BadFileError):
            self.skipped.record(epoch, sample)
            return False, np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1), np.uint8)
        return True, sample[0], sample[1]

    def report(self, epoch, subset):
        """Logs the epoch's skip count (runs after the epoch's last sample was fetched).

        Raises voc.BadFileError (naming a bad file) when the bad samples leave fewer good
        ones than one batch needs: every epoch would then give no batch, and a pipeline
        of endless epochs would never yield one.
        """
        skipped = self.skipped.per_epoch.get(int(epoch), 0)
        if skipped:
            log.warning("epoch %d of %r: skipped %d bad sample(s) of %d; "
                        "see SkippedSamples.problems", epoch, subset.decode(), skipped,
                        len(self.image_files))
        good = len(self.image_files) - skipped
        if skipped and good < self.min_good:
            raise voc.BadFileError(
                self.skipped.first_path(), "too_few_good",
                f"this and the other {voc.ALREADY_SKIPPED} of subset {subset.decode()!r} "
                f"({skipped} of {len(self.image_files)}, listed above) leave {good} good "
                f"sample(s), fewer than one batch needs ({self.min_good}): fix or replace the "
                f"files (python -m research.data.validate lists them)")
        return np.int64(skipped)


# ---------------------------------------------------------------- augmentation (stateless)

def resize_pair(image, mask, size):
    """Resizes image (bilinear) and mask (nearest, so labels stay exact) to `size` (h, w).

    image float32 [H, W, 3], mask uint8 [H, W, 1] -> float32 [h, w, 3], uint8 [h, w, 1].
    """
    return (tf.image.resize(image, size, method="bilinear"),
            tf.image.resize(mask, size, method="nearest"))


def random_crop_or_resize(image, mask, seed, input_size, resize_to_before_crop):
    """With probability 1/2: resize to `resize_to_before_crop` and cut a random
    `input_size` window (the same window from image and mask); else resize to `input_size`.

    Args:
      image: float32 [H, W, 3]; mask: uint8 [H, W, 1]; seed: int [2] (stateless seed).
      input_size, resize_to_before_crop: (h, w) pairs of Python ints, the second >= the first.
    Returns:
      float32 [h, w, 3], uint8 [h, w, 1].
    """
    coin_seed, row_seed, column_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    height, width = input_size

    def crop():
        big_image, big_mask = resize_pair(image, mask, resize_to_before_crop)
        top = tf.random.stateless_uniform([], row_seed, 0, resize_to_before_crop[0] - height + 1, tf.int32)
        left = tf.random.stateless_uniform([], column_seed, 0, resize_to_before_crop[1] - width + 1, tf.int32)
        return (big_image[top:top + height, left:left + width],
                big_mask[top:top + height, left:left + width])

    return tf.cond(tf.random.stateless_uniform([], coin_seed) < 0.5, crop,
                   lambda: resize_pair(image, mask, input_size))


def random_scale_pad_crop(image, mask, seed, input_size, scale_range, base_size=None):
    """The papers' augmentation: scale by s ~ U(scale_range), pad, cut a random window.

    The image (first resized to `base_size` when given, else at its own size) is
    resized by a random factor s (image bilinear, mask nearest), padded at the bottom
    and right up to at least `input_size` (image with `PAD_RGB_MEAN`, mask with the
    ignore label, so padding is never scored), and an `input_size` window is cut at a
    random position, the same for image and mask.

    Args:
      image: float32 [H, W, 3]; mask: uint8 [H, W, 1]; seed: int [2] (stateless seed).
      input_size: (h, w) Python ints; scale_range: (low, high) floats;
      base_size: (h, w) Python ints or None.
    Returns:
      float32 [h, w, 3], uint8 [h, w, 1].
    """
    scale_seed, row_seed, column_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    if base_size is not None:
        image, mask = resize_pair(image, mask, base_size)
    height, width = input_size
    scale = tf.random.stateless_uniform([], scale_seed, scale_range[0], scale_range[1])
    size = tf.cast(tf.shape(image)[:2], tf.float32) * scale
    image, mask = resize_pair(image, mask, tf.maximum(tf.cast(tf.round(size), tf.int32), 1))
    pad_rows = tf.maximum(height - tf.shape(image)[0], 0)
    pad_columns = tf.maximum(width - tf.shape(image)[1], 0)
    paddings = [[0, pad_rows], [0, pad_columns], [0, 0]]
    # Pad each channel with its mean: subtract, zero-pad, add back.
    mean = tf.constant(PAD_RGB_MEAN, tf.float32)
    image = tf.pad(image - mean, paddings) + mean
    mask = tf.pad(mask, paddings, constant_values=IGNORE_LABEL)
    top = tf.random.stateless_uniform([], row_seed, 0, tf.shape(image)[0] - height + 1, tf.int32)
    left = tf.random.stateless_uniform([], column_seed, 0, tf.shape(image)[1] - width + 1, tf.int32)
    return (image[top:top + height, left:left + width],
            mask[top:top + height, left:left + width])


def random_flip(image, mask, seed):
    """Flips image [H, W, 3] and mask [H, W, 1] left-right together, with probability 1/2."""
    flip = tf.random.stateless_uniform([], seed) < 0.5
    return tf.cond(flip, lambda: (tf.reverse(image, [1]), tf.reverse(mask, [1])),
                   lambda: (image, mask))


def random_color_jitter(image, seed):
    """Random hue (max delta 0.1), brightness (0.1) and contrast (0.8-1.2) of an image.

    image: float32 [H, W, 3] in [0, 255]; the jitter works on the [0, 1] scale, and the
    result is clipped and scaled back to [0, 255].
    """
    hue_seed, brightness_seed, contrast_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    x = image / 255.0
    x = tf.image.stateless_random_hue(x, 0.1, hue_seed)
    x = tf.image.stateless_random_brightness(x, 0.1, brightness_seed)
    x = tf.image.stateless_random_contrast(x, 0.8, 1.2, contrast_seed)
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


# ---------------------------------------------------------------- the dataset

def _pair(size, name):
    if isinstance(size, (int, np.integer)):
        size = (size, size)
    size = tuple(int(v) for v in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"{name} must be a positive int or (height, width), got {size}")
    return size


def _check_arguments(batch_size, input_size, resize_to_before_crop, augmentation,
                     drop_remainder, pad_final_batch, epochs, start_epoch, scale_range=None):
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if scale_range is not None:
        if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range}")
    elif augmentation:
        if resize_to_before_crop is None:
            raise ValueError("augmentation=True needs resize_to_before_crop (the size to "
                             "resize to before a random crop of input_size)")
        before = _pair(resize_to_before_crop, "resize_to_before_crop")
        if before[0] < input_size[0] or before[1] < input_size[1]:
            raise ValueError(f"resize_to_before_crop {before} is smaller than input_size "
                             f"{input_size}; it must be at least as large in both sides")
    if drop_remainder and pad_final_batch:
        raise ValueError("choose drop_remainder or pad_final_batch, not both")
    if epochs is not None and int(epochs) < 0:
        raise ValueError(f"epochs must be None (forever) or >= 0, got {epochs}")
    if int(start_epoch) < 0:
        raise ValueError(f"start_epoch must be >= 0, got {start_epoch}")


def _is_ok(ok, image, label):
    return ok


def _without_flag(ok, image, label):
    return image, label


def _epoch_key(seed, epoch):
    return tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])


def make_dataset(voc_root, subset, batch_size, input_size, *, resize_to_before_crop=None,
                 output_size=None, augmentation=False, shuffle=False, seed=0, start_epoch=0,
                 epochs=1, cache=True, drop_remainder=False, pad_final_batch=False,
                 deterministic=True, skip_bad=False, split_seed=0,
                 num_parallel_calls=tf.data.AUTOTUNE, skipped=None,
                 max_pixels=voc.DEFAULT_MAX_PIXELS, scale_range=None, with_epoch=False):
    """A tf.data pipeline of (images, labels) batches from a dataset.

    Args:
      voc_root: the dataset: a VOC root path (the ``.../VOCdevkit/VOC2012`` folder) or a
        dataset object (`research.data.datasets.dataset_of(config)`, e.g. a folder dataset).
      subset: a name of the dataset's `subsets` (VOC: "train", "val", "test", "trainval",
        "train_aug"; see `voc.read_split` and `research.data.folder`). A train subset
        holding an evaluation id is refused (ValueError).
      batch_size: samples per batch.
      input_size: (h, w) (or an int) of the images.
      resize_to_before_crop: (h, w) to resize to before a random crop (needed, and at
        least input_size, when augmentation is on without scale_range).
      output_size: (h, w) of the labels (nearest resize), default input_size.
      augmentation: random crop-or-resize, horizontal flip, hue/brightness/contrast.
      shuffle: a new order of the whole subset each epoch.
      seed: int; with the epoch number it fixes order and augmentation.
      start_epoch, epochs: yield epochs start_epoch .. start_epoch + epochs - 1
        (epochs=None: forever).
      cache: keep decoded samples in memory for later epochs.
      drop_remainder: drop each epoch's last partial batch.
      pad_final_batch: complete each epoch's last partial batch with padding samples
        (image zeros, label all 255), so every batch has batch_size samples (fixed shapes
        for XLA). Losses and metrics that ignore 255 ignore the padding.
      deterministic: keep the order under parallel map (False may be a little faster).
      skip_bad: log and leave out bad samples instead of raising; their count is in
        `skipped` (see `SkippedSamples`). The number of batches then depends on the data,
        so the dataset's cardinality is unknown.
      split_seed: the val/test halves of val.txt.
      num_parallel_calls: map parallelism.
      skipped: a `SkippedSamples` to collect bad samples into (skip_bad=True).
      max_pixels: decompression-bomb guard for each file.
      scale_range: (low, high): with augmentation, `random_scale_pad_crop` (from the
        `resize_to_before_crop` size when given, else from the image's own size)
        replaces the crop-or-resize step; flip and colour jitter follow as before.
      with_epoch: also yield each batch's epoch number, int64 [B] (every element the
        same: batches never straddle epochs), so a consumer knows its data position
        even when skip_bad makes epochs shorter (research.train's resume).

    Returns:
      tf.data.Dataset of (images float32 [B, H, W, 3] in [0, 255],
      labels int32 [B, h, w], 255 = ignore), plus epochs int64 [B] with `with_epoch`.
      B is static with drop_remainder or pad_final_batch.

    Raises:
      ValueError: bad arguments (e.g. augmentation without resize_to_before_crop),
        unknown subset or an empty one, evaluation ids in a train subset.
        FileNotFoundError: missing root or split list, or a root given one level too high.
      While iterating (skip_bad=False): tf.errors.InvalidArgumentError whose message
      contains "BadFileError: <file>: <problem>".
    """
    input_size = _pair(input_size, "input_size")
    label_size = _pair(output_size, "output_size") if output_size is not None else input_size
    _check_arguments(batch_size, input_size, resize_to_before_crop, augmentation,
                     drop_remainder, pad_final_batch, epochs, start_epoch, scale_range)
    plan = _Plan(int(batch_size), input_size, label_size, int(seed), bool(shuffle), bool(skip_bad),
                 bool(drop_remainder), bool(pad_final_batch), bool(with_epoch), deterministic,
                 num_parallel_calls)
    source = datasets.as_dataset(voc_root)
    ids = source.split(subset, split_seed)
    if not ids:
        halves = (" (without a test list, val and test are the two halves of the val list, "
                  "which then needs 2 ids or more)" if subset in ("val", "test") else "")
        raise ValueError(f"subset {subset!r} of {source.root} has no ids{halves}")
    skipped = skipped if skipped is not None else SkippedSamples()
    store = _DecodedStore(source, subset, ids, cache, skip_bad, skipped, max_pixels,
                          min_good=plan.batch_size if plan.drop_remainder else 1)
    prepare = _sample_preparer(store, plan, augmentation, resize_to_before_crop, scale_range)
    if epochs is None:
        epoch_numbers = tf.data.Dataset.counter(start_epoch)
    else:
        epoch_numbers = tf.data.Dataset.range(start_epoch, start_epoch + epochs)
    dataset = epoch_numbers.flat_map(lambda epoch: _epoch_batches(plan, store, prepare, subset, epoch))
    if not skip_bad and epochs is not None:
        per_epoch = (len(ids) // plan.batch_size if drop_remainder
                     else math.ceil(len(ids) / plan.batch_size))
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(per_epoch * epochs))
    return without_autotune_thread(dataset.prefetch(tf.data.AUTOTUNE))


@dataclasses.dataclass(frozen=True)
class _Plan:
    """The checked, fixed settings of one `make_dataset` pipeline."""
    batch_size: int
    input_size: tuple
    label_size: tuple
    seed: int
    shuffle: bool
    skip_bad: bool
    drop_remainder: bool
    pad_final_batch: bool
    with_epoch: bool
    deterministic: bool
    num_parallel_calls: int


def _sample_preparer(store, plan, augmentation, resize_to_before_crop, scale_range):
    """`prepare(index, epoch) -> (ok, image float32 [h, w, 3], label int32 [h', w'])`:
    one sample read from `store`, augmented (stateless, seeded by seed, epoch and index)
    or resized, at the plan's fixed shapes."""
    if scale_range is not None:
        scale_range = tuple(float(s) for s in scale_range)
    if augmentation and resize_to_before_crop is not None:
        resize_to_before_crop = _pair(resize_to_before_crop, "resize_to_before_crop")
    input_size, label_size = plan.input_size, plan.label_size

    def prepare(index, epoch):
        # stateful=False: fetch returns the same sample for the same index (decoding and
        # caching are invisible to the graph). A stateful op here would make
        # tf.config.experimental.enable_op_determinism() run this map, and every map and
        # prefetch of the pipeline, serially (see research.runtime.enable_determinism).
        ok, image, mask = tf.numpy_function(store.fetch, [index, epoch],
                                            [tf.bool, tf.uint8, tf.uint8], stateful=False)
        image = tf.ensure_shape(tf.cast(image, tf.float32), [None, None, 3])
        mask = tf.ensure_shape(mask, [None, None])[:, :, None]
        if augmentation:
            key = tf.random.experimental.stateless_fold_in(_epoch_key(plan.seed, epoch), index)
            crop_seed, flip_seed, colour_seed = tf.unstack(tf.random.experimental.stateless_split(key, 3))
            if scale_range is not None:
                image, mask = random_scale_pad_crop(image, mask, crop_seed, input_size, scale_range,
                                                    resize_to_before_crop)
            else:
                image, mask = random_crop_or_resize(image, mask, crop_seed, input_size, resize_to_before_crop)
            image, mask = random_flip(image, mask, flip_seed)
            image = random_color_jitter(image, colour_seed)
        else:
            image, mask = resize_pair(image, mask, input_size)
        if label_size != input_size:
            mask = tf.image.resize(mask, label_size, method="nearest")
        image = tf.ensure_shape(image, input_size + (3,))
        label = tf.ensure_shape(tf.cast(mask[:, :, 0], tf.int32), label_size)
        return ok, image, label

    return prepare


def _epoch_batches(plan, store, prepare, subset, epoch):
    """The batches of one epoch: its order, the prepared samples (bad ones filtered out
    with skip_bad, then the epoch's skip report), padding, batching."""
    num_samples = len(store.image_files)
    if plan.shuffle:
        order_seed = tf.random.experimental.stateless_fold_in(_epoch_key(plan.seed, epoch), -1)
        order = tf.random.experimental.stateless_shuffle(tf.range(num_samples, dtype=tf.int64), order_seed)
    else:
        order = tf.range(num_samples, dtype=tf.int64)
    samples = tf.data.Dataset.from_tensor_slices(order).map(
        lambda index: prepare(index, epoch), num_parallel_calls=plan.num_parallel_calls,
        deterministic=plan.deterministic)
    if plan.skip_bad:
        # The report element runs after every sample of the epoch has been fetched,
        # then is filtered out with the bad samples.
        # Stateless for the same reason as `prepare`: its output is used (by the
        # filter), so it runs; only its log line is a side effect.
        report = tf.data.Dataset.from_tensors(epoch).map(lambda e: (
            tf.numpy_function(store.report, [e, subset], tf.int64, stateful=False) < 0,
            tf.zeros(plan.input_size + (3,)), tf.zeros(plan.label_size, tf.int32)))
        samples = samples.concatenate(report).filter(_is_ok)
    samples = samples.map(_without_flag)
    if plan.pad_final_batch:
        padding = tf.data.Dataset.from_tensors((
            tf.zeros(plan.input_size + (3,), tf.float32),
            tf.fill(plan.label_size, tf.constant(IGNORE_LABEL, tf.int32))))
        samples = samples.concatenate(padding.repeat(plan.batch_size - 1))
    batches = samples.batch(plan.batch_size, drop_remainder=plan.drop_remainder or plan.pad_final_batch)
    if plan.with_epoch:
        # A vector, not a scalar, so tf.distribute can split it with the batch.
        batches = batches.map(lambda images, labels: (
            images, labels, tf.fill(tf.shape(labels)[:1], tf.cast(epoch, tf.int64))))
    return batches


def without_autotune_thread(dataset):
    """`dataset` without tf.data's autotuning thread (`Options.autotune.enabled=False`).

    Why: that thread re-tunes the pipeline after a sleep that doubles up to 60 s, and in
    TF 2.21 deleting the iterator waits for the sleep to end. Measured (vm-AMD-EPYC-2cpu,
    TF_CPP_VMODULE=model=2): at the end of a training run the thread, woken by the
    iterator's deletion, logged "Waiting for 8202 ms" and the release took 8.2 s; a
    `make demo` run once spent 58 s there, and every val iterator up to a few seconds.
    What the thread tuned here was one value, the map's parallelism, set to the core
    count, which is what AUTOTUNE gives without it; prefetch(AUTOTUNE) keeps growing its
    own buffer. Demo pipeline alone: 1,200 batches in 14.8 s without the thread, 15.7 s
    with it (machine shared with a test run); demo training, 3 interleaved pairs of
    300-step runs on the quiet machine: 51.1-55.5 images/s without it, 47.3-51.4 with it.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def make_decoded_dataset(voc_root, subset, *, split_seed=0, skip_bad=False, skipped=None,
                         max_pixels=voc.DEFAULT_MAX_PIXELS):
    """Samples at their own size, in split order, decoded and checked, not batched.

    For evaluation at full resolution and for looking at the data. Note that these
    cannot be batched as they are: VOC images differ in size (resize or crop first, as
    `make_dataset` does). `voc_root`: a VOC root path or a dataset (as `make_dataset`).

    Returns:
      tf.data.Dataset of (image uint8 [H, W, 3], label int32 [H, W]).
    """
    source = datasets.as_dataset(voc_root)
    ids = source.split(subset, split_seed)
    skipped = skipped if skipped is not None else SkippedSamples()
    store = _DecodedStore(source, subset, ids, False, skip_bad, skipped, max_pixels)

    def load(index):
        ok, image, mask = tf.numpy_function(store.fetch, [index, tf.constant(0, tf.int64)],
                                            [tf.bool, tf.uint8, tf.uint8], stateful=False)
        return ok, tf.ensure_shape(image, [None, None, 3]), tf.cast(tf.ensure_shape(mask, [None, None]), tf.int32)

    dataset = tf.data.Dataset.range(len(ids)).map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return without_autotune_thread(dataset.filter(_is_ok).map(_without_flag))
