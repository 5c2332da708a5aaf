"""Input pipeline speed on the embedded dataset (64 train images, 200-500 px).

- test_pipeline_warm: the training configuration (resize 444, random crop 384, flip,
  colour jitter, batch 8) once the decoded cache is full: images/s of one epoch.
- test_pipeline_cold: the same, first epoch of a fresh pipeline (decoding included).
- test_decode_alternatives: the ways to read masks and photos in tf.data with AUTOTUNE,
  run interleaved (one pass of each per round) so a busy shared CPU hits them alike;
  the per-variant medians go to extra_info. research/data/pipeline.py quotes them.
"""
import statistics
import time

import numpy as np
import pytest
import tensorflow as tf

from benchmarks.support import record_items_per_second
from research.data import voc
from research.data.pipeline import make_dataset

BATCH = 8
TRAINING = dict(resize_to_before_crop=444, augmentation=True, shuffle=True)


@pytest.fixture(scope="session")
def voc_root(bench_voc_root):
    return bench_voc_root


def _epoch(iterator, batches):
    count = 0
    for _ in range(batches):
        count += len(next(iterator)[0])
    return count


def test_pipeline_warm(benchmark, voc_root):
    batches = 64 // BATCH
    iterator = iter(make_dataset(voc_root, "train", BATCH, 384, epochs=None, **TRAINING))
    _epoch(iterator, batches)                    # fills the decoded cache
    benchmark.pedantic(_epoch, args=(iterator, batches), rounds=4, warmup_rounds=1)
    rate = record_items_per_second(benchmark, 64)
    print(f"\npipeline, cache warm: {rate:.1f} images/s")


def test_pipeline_cold(benchmark, voc_root):
    def first_epoch():
        return _epoch(iter(make_dataset(voc_root, "train", BATCH, 384, **TRAINING)), 64 // BATCH)

    benchmark.pedantic(first_epoch, rounds=2, warmup_rounds=0)
    rate = record_items_per_second(benchmark, 64)
    print(f"\npipeline, first epoch (decoding): {rate:.1f} images/s")


# ---------------------------------------------------------------- decoding alternatives

def _mask_by_tf_hash():
    """decode_png expands the palette to RGB; map packed colours back through a table."""
    valid = list(range(voc.NUM_CLASSES)) + [voc.IGNORE_LABEL]
    colours = voc.VOC_PALETTE[valid].astype(np.int32)
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(colours[:, 0] * 65536 + colours[:, 1] * 256 + colours[:, 2]),
        tf.constant(valid, tf.int32)), default_value=-1)

    def read(image_file, mask_file):
        rgb = tf.cast(tf.io.decode_png(tf.io.read_file(mask_file), channels=3), tf.int32)
        return table.lookup(rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2])
    return read


def _mask_by_pil(image_file, mask_file):
    return tf.numpy_function(lambda path: voc.read_mask(path.decode()), [mask_file], tf.uint8)


def _image_by_tf(image_file, mask_file):
    return tf.io.decode_jpeg(tf.io.read_file(image_file), channels=3)


def _image_by_pil(image_file, mask_file):
    return tf.numpy_function(lambda path: voc.read_image(path.decode()), [image_file], tf.uint8)


def _pair_by_pil(image_file, mask_file):
    """What the pipeline does: one checked read of both files."""
    return tf.numpy_function(lambda a, b: voc.read_sample(a.decode(), b.decode()),
                             [image_file, mask_file], [tf.uint8, tf.uint8])


def _pair_by_tf_image_and_pil_mask(image_file, mask_file):
    return _image_by_tf(image_file, mask_file), _mask_by_pil(image_file, mask_file)


def _files_per_second(read, files):
    dataset = tf.data.Dataset.from_tensor_slices(files).map(
        read, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    start = time.perf_counter()
    count = sum(1 for _ in dataset)
    return count / (time.perf_counter() - start)


def test_decode_alternatives(benchmark, voc_root):
    ids = voc.read_split(voc_root, "trainval")
    files = ([voc.image_path(voc_root, i) for i in ids], [voc.mask_path(voc_root, i) for i in ids])
    variants = {
        "mask: TF decode_png + colour table": _mask_by_tf_hash(),
        "mask: PIL in numpy_function (checked)": _mask_by_pil,
        "image: TF decode_jpeg": _image_by_tf,
        "image: PIL in numpy_function": _image_by_pil,
        "pair: PIL both, checked (chosen)": _pair_by_pil,
        "pair: TF image + PIL mask": _pair_by_tf_image_and_pil_mask,
    }
    rates = {name: [] for name in variants}

    def one_round():
        for name, read in variants.items():
            rates[name].append(_files_per_second(read, files))

    benchmark.pedantic(one_round, rounds=4, warmup_rounds=1)
    print()
    for name, values in rates.items():
        median = statistics.median(values[1:])          # the first is the warm-up round
        benchmark.extra_info[name] = median
        print(f"{name:40s} {median:7.0f} files/s")
    benchmark.extra_info["items_per_s"] = benchmark.extra_info["pair: PIL both, checked (chosen)"]
