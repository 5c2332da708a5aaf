"""research.data.pipeline.make_dataset on tiny datasets in VOC layout."""
import logging

import numpy as np
import pytest
import tensorflow as tf

from research import cli
from research.data import pipeline, voc
from tests.research.data import voc_files

TRAIN_IDS = [f"2012_{i:06d}" for i in range(1, 8)]        # 7: batches of 2 leave one over
VAL_IDS = ["2012_100001", "2012_100002", "2012_100003", "2012_100004"]
AUGMENT = dict(augmentation=True, resize_to_before_crop=(44, 60), shuffle=True)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(voc_root, {id: (image, mask)}): 7 train and 4 val samples of 40 x 56 px."""
    root = str(tmp_path_factory.mktemp("tiny_voc"))
    return root, voc_files.make_tiny_voc(root, TRAIN_IDS, VAL_IDS, seed=0)


def _batches(dataset):
    return [(images.numpy(), labels.numpy()) for images, labels in dataset]


def _concat(batches):
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def test_shapes_dtypes_and_values(tiny):
    root, samples = tiny
    dataset = pipeline.make_dataset(root, "train", 2, (32, 40), drop_remainder=True)
    images_spec, labels_spec = dataset.element_spec
    assert images_spec.shape == (2, 32, 40, 3) and images_spec.dtype == tf.float32
    assert labels_spec.shape == (2, 32, 40) and labels_spec.dtype == tf.int32
    batches = _batches(dataset)
    assert len(batches) == 3 == dataset.cardinality()
    images, labels = _concat(batches)
    assert 0 <= images.min() and images.max() <= 255 and images.max() > 200   # raw pixel scale
    assert set(np.unique(labels)) <= set(range(21)) | {255}
    assert (labels == 255).any() and ((labels > 0) & (labels < 255)).any()


def test_labels_resized_to_output_size_keep_exact_values(tiny):
    root, samples = tiny
    dataset = pipeline.make_dataset(root, "val", 4, 40, output_size=(20, 28))
    images, labels = _concat(_batches(dataset))
    assert images.shape == (2, 40, 40, 3) and labels.shape == (2, 20, 28)
    # nearest resize by exactly 1/2: label[r, c] is the source pixel (2r + 1, 2c + 1)
    val = voc.read_split(root, "val")[:2]
    for label, image_id in zip(labels, val, strict=True):
        np.testing.assert_array_equal(label, samples[image_id][1][1::2, 1::2])


def test_full_resolution_labels_equal_the_masks(tiny):
    root, samples = tiny
    images, labels = _concat(_batches(pipeline.make_dataset(root, "train", 3, (40, 56))))
    for image, label, image_id in zip(images, labels, TRAIN_IDS, strict=True):
        np.testing.assert_array_equal(label, samples[image_id][1])
        assert np.abs(image - samples[image_id][0]).max() <= 8      # JPEG quality 95


def test_augmented_images_and_labels_stay_aligned(tiny):
    """Object pixels are bright and background dark in every photo; a crop window or a
    flip applied differently to photo and mask would put labels on the wrong side."""
    root, _ = tiny
    dataset = pipeline.make_dataset(root, "train", 7, (32, 40), epochs=4, seed=1, **AUGMENT)
    images, labels = _concat(_batches(dataset))
    brightness = images.mean(axis=-1)
    objects = (labels > 0) & (labels < 255)
    assert objects.sum() > 1000 and (labels == 0).sum() > 1000
    assert brightness[objects].min() > 127.5 > brightness[labels == 0].max()
    # the photos really were jittered: background levels moved away from 20
    assert np.abs(brightness[labels == 0] - voc_files.DARK).max() > 5


def test_crop_takes_the_same_window_from_photo_and_mask():
    height, width = 24, 30
    rows, cols = np.mgrid[0:height, 0:width]
    image = tf.constant(np.stack([rows, cols, np.zeros_like(rows)], -1), tf.float32)
    mask = tf.constant(((rows * width + cols) % 251)[:, :, None], tf.uint8)
    crops = 0
    for i in range(20):
        out_image, out_mask = pipeline.random_crop_or_resize(
            image, mask, tf.constant([7, i], tf.int64), (16, 20), (height, width))
        out_image, out_mask = out_image.numpy(), out_mask.numpy()[:, :, 0]
        assert out_image.shape == (16, 20, 3) and out_mask.shape == (16, 20)
        if np.array_equal(out_image, np.rint(out_image)):   # the crop branch: exact pixels
            crops += 1
            top, left = int(out_image[0, 0, 0]), int(out_image[0, 0, 1])
            np.testing.assert_array_equal(out_image[:, :, 0], rows[top:top + 16, left:left + 20])
            np.testing.assert_array_equal(out_image[:, :, 1], cols[top:top + 16, left:left + 20])
            np.testing.assert_array_equal(out_mask, ((rows * width + cols) % 251)[top:top + 16, left:left + 20])
        else:                                               # the resize branch
            nearest_rows = ((np.arange(16) + 0.5) * height / 16).astype(int)
            nearest_cols = ((np.arange(20) + 0.5) * width / 20).astype(int)
            np.testing.assert_array_equal(out_mask, (mask.numpy()[:, :, 0])[np.ix_(nearest_rows, nearest_cols)])
    assert 0 < crops < 20


def test_flip_moves_photo_and_mask_together():
    cols = np.tile(np.arange(10), (4, 1))
    image = tf.constant(np.repeat(cols[:, :, None], 3, axis=2), tf.float32)
    mask = tf.constant(cols[:, :, None], tf.uint8)
    flips = 0
    for i in range(16):
        out_image, out_mask = pipeline.random_flip(image, mask, tf.constant([3, i], tf.int64))
        np.testing.assert_array_equal(out_image.numpy()[:, :, 0], out_mask.numpy()[:, :, 0])
        flips += int(out_mask.numpy()[0, 0, 0] == 9)
    assert 0 < flips < 16


def test_colour_jitter_is_clipped_and_seeded():
    image = tf.constant(np.random.default_rng(0).uniform(0, 255, (8, 8, 3)), tf.float32)
    first = pipeline.random_color_jitter(image, tf.constant([1, 2], tf.int64)).numpy()
    assert 0 <= first.min() and first.max() <= 255 and not np.allclose(first, image.numpy())
    np.testing.assert_array_equal(first, pipeline.random_color_jitter(image, tf.constant([1, 2], tf.int64)).numpy())
    assert not np.allclose(first, pipeline.random_color_jitter(image, tf.constant([1, 3], tf.int64)).numpy())


def test_epochs_are_fixed_by_seed_and_epoch_and_differ_between_epochs(tiny):
    root, _ = tiny
    make = lambda **kw: _batches(pipeline.make_dataset(root, "train", 7, (32, 40), **AUGMENT, **kw))
    first = make(seed=4, epochs=2)
    again = make(seed=4, epochs=2, num_parallel_calls=1)
    for (a_images, a_labels), (b_images, b_labels) in zip(first, again, strict=True):
        np.testing.assert_array_equal(a_images, b_images)
        np.testing.assert_array_equal(a_labels, b_labels)
    assert not np.array_equal(first[0][0], first[1][0])             # epoch 0 != epoch 1
    assert not np.array_equal(first[0][0], make(seed=5, epochs=1)[0][0])


def test_each_epoch_is_a_new_permutation_of_the_whole_subset(tiny):
    root, samples = tiny
    dataset = pipeline.make_dataset(root, "train", 7, (40, 56), shuffle=True, seed=0, epochs=6)
    masks = {samples[i][1].tobytes(): n for n, i in enumerate(TRAIN_IDS)}
    orders = [[masks[label.astype(np.uint8).tobytes()] for label in labels] for _, labels in _batches(dataset)]
    assert all(sorted(order) == list(range(7)) for order in orders)
    assert len({tuple(order) for order in orders}) >= 4   # (two of 5040 orders may repeat)
    assert {order[0] for order in orders} - {0, 1, 2}                  # not a small-buffer shuffle


def test_resume_gives_the_tail_of_a_fresh_run(tiny):
    """start_epoch=e plus .skip(k) rebuilds exactly the batches a fresh run yields after
    k batches of epoch e, whatever the global seed or parallelism."""
    root, _ = tiny
    kwargs = dict(seed=9, **AUGMENT)
    fresh = _batches(pipeline.make_dataset(root, "train", 2, (32, 40), epochs=3, **kwargs))
    assert len(fresh) == 12                                    # 4 batches per epoch, last of 1
    tf.random.set_seed(1234)
    resumed = _batches(pipeline.make_dataset(root, "train", 2, (32, 40), start_epoch=1, epochs=2,
                                             num_parallel_calls=1, **kwargs).skip(3))
    assert len(resumed) == 5
    for (a_images, a_labels), (b_images, b_labels) in zip(fresh[7:], resumed, strict=True):
        np.testing.assert_array_equal(a_images, b_images)
        np.testing.assert_array_equal(a_labels, b_labels)
    assert [len(b[0]) for b in fresh] == [2, 2, 2, 1] * 3       # batches never straddle epochs


def test_forever(tiny):
    root, _ = tiny
    dataset = pipeline.make_dataset(root, "val", 2, 16, epochs=None, start_epoch=5)
    assert len(_batches(dataset.take(7))) == 7


def test_pipelines_run_without_the_autotune_thread(tiny):
    # Deleting an iterator waits for that thread's sleep (up to 60 s in TF 2.21): see
    # pipeline.without_autotune_thread.
    root, _ = tiny
    for dataset in (pipeline.make_dataset(root, "train", 2, 16, epochs=None, **AUGMENT),
                    pipeline.make_dataset(root, "val", 2, 16),
                    pipeline.make_decoded_dataset(root, "val")):
        assert dataset.options().autotune.enabled is False
    assert len(_batches(pipeline.make_dataset(root, "train", 2, 16, epochs=None).take(5))) == 5


def test_pad_final_batch_completes_the_last_batch_with_ignored_padding(tiny):
    root, _ = tiny
    dataset = pipeline.make_dataset(root, "train", 3, (32, 40), pad_final_batch=True, epochs=2)
    assert dataset.element_spec[0].shape == (3, 32, 40, 3)
    batches = _batches(dataset)
    assert len(batches) == 6 and all(len(images) == 3 for images, _ in batches)
    last_images, last_labels = batches[2]
    assert (last_labels[1:] == 255).all() and (last_images[1:] == 0).all()
    assert (last_labels[0] != 255).any()
    exact = pipeline.make_dataset(root, "val", 2, 16, pad_final_batch=True)   # 2 of 4: no padding
    assert all((labels != 255).any(axis=(1, 2)).all() for _, labels in _batches(exact))
    dropped = pipeline.make_dataset(root, "train", 3, (32, 40), drop_remainder=True)
    assert [len(images) for images, _ in _batches(dropped)] == [3, 3]


def test_decoded_samples_are_cached_across_epochs(tiny, monkeypatch):
    root, _ = tiny
    calls = []
    real_read_sample = voc.read_sample

    def counting_read_sample(*args, **kwargs):
        calls.append(args[0])
        return real_read_sample(*args, **kwargs)

    monkeypatch.setattr(voc, "read_sample", counting_read_sample)
    _batches(pipeline.make_dataset(root, "train", 2, 16, epochs=3, shuffle=True))
    assert sorted(calls) == sorted(voc.image_path(root, i) for i in TRAIN_IDS)
    calls.clear()
    _batches(pipeline.make_dataset(root, "train", 2, 16, epochs=3, cache=False))
    assert len(calls) == 3 * len(TRAIN_IDS)


def test_argument_errors(tiny, tmp_path):
    root, _ = tiny
    with pytest.raises(ValueError, match="augmentation=True needs resize_to_before_crop"):
        pipeline.make_dataset(root, "train", 2, 32, augmentation=True)
    with pytest.raises(ValueError, match=r"resize_to_before_crop \(30, 60\) is smaller than input_size \(32, 32\)"):
        pipeline.make_dataset(root, "train", 2, 32, augmentation=True, resize_to_before_crop=(30, 60))
    with pytest.raises(ValueError, match="unknown subset 'tain'"):
        pipeline.make_dataset(root, "tain", 2, 32)
    with pytest.raises(ValueError, match="not both"):
        pipeline.make_dataset(root, "train", 2, 32, drop_remainder=True, pad_final_batch=True)
    with pytest.raises(FileNotFoundError, match="missing_root"):
        pipeline.make_dataset(str(tmp_path / "missing_root"), "train", 2, 32)
    with pytest.raises(FileNotFoundError, match=r"val\.txt"):
        voc_files.write_split(str(tmp_path), "train", ["a"])
        pipeline.make_dataset(str(tmp_path), "val", 2, 32)


def test_dataset_size(tiny):
    root, _ = tiny
    assert pipeline.dataset_size(root, "train") == 7
    assert pipeline.dataset_size(root, "val") + pipeline.dataset_size(root, "test") == 4
    assert pipeline.dataset_size(root, "trainval") == 11


def test_samples_of_different_sizes_cannot_be_batched_raw(tmp_path):
    rng = np.random.default_rng(0)
    for image_id, (height, width) in (("a", (40, 56)), ("b", (32, 48))):
        voc_files.write_sample(str(tmp_path), image_id, *voc_files.good_sample(rng, height, width))
    voc_files.write_split(str(tmp_path), "train", ["a", "b"])
    raw = pipeline.make_decoded_dataset(str(tmp_path), "train")
    assert [tuple(image.shape) for image, _ in raw] == [(40, 56, 3), (32, 48, 3)]
    with pytest.raises(tf.errors.InvalidArgumentError, match="Cannot (batch tensors|add tensor to the batch)"):
        list(raw.batch(2))
    assert len(_batches(pipeline.make_dataset(str(tmp_path), "train", 2, 32))) == 1   # resized: fine


# ---------------------------------------------------------------- bad input

def _voc_with_broken(root, names, good_ids=("good 1", "good_ü")):
    ids = [f"bad {name}" for name in names]
    voc_files.make_tiny_voc(root, list(good_ids) + ids, ["v"])
    for image_id, name in zip(ids, names, strict=True):
        voc_files.BROKEN[name][0](root, image_id)
    return ids


@pytest.mark.parametrize("name", sorted(voc_files.BROKEN))
def test_bad_sample_raises_an_error_naming_the_file(tmp_path, name):
    root = str(tmp_path)
    [image_id] = _voc_with_broken(root, [name])
    _, path_of, _, phrase = voc_files.BROKEN[name]
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        _batches(pipeline.make_dataset(root, "train", 2, 16))
    assert f"BadFileError: {path_of(root, image_id)}: " in error.value.message
    assert phrase in error.value.message


def test_skip_bad_leaves_out_and_counts_bad_samples(tmp_path, caplog):
    root = str(tmp_path)
    names = sorted(voc_files.BROKEN)
    ids = _voc_with_broken(root, names)
    skipped = pipeline.SkippedSamples()
    with caplog.at_level(logging.WARNING, logger="research.data.pipeline"):
        batches = _batches(pipeline.make_dataset(root, "train", 2, 16, epochs=2, shuffle=True,
                                                 skip_bad=True, skipped=skipped))
    assert sum(len(images) for images, _ in batches) == 2 * 2        # the two good samples, twice
    assert skipped.count == len(names)
    assert set(skipped.problems) == {voc_files.BROKEN[n][1](root, i) for n, i in zip(names, ids, strict=True)}
    assert dict(skipped.per_epoch) == {0: len(names), 1: len(names)}
    epoch_reports = [r.getMessage() for r in caplog.records if "bad sample(s) of" in r.getMessage()]
    assert len(epoch_reports) == 2 and f"skipped {len(names)} bad sample(s) of {len(names) + 2}" in epoch_reports[0]
    file_reports = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipping bad sample")]
    assert len(file_reports) == len(names)                              # each file logged once


@pytest.mark.parametrize("good_ids,settings,phrase", [
    (("good 1", "good_ü"), dict(batch_size=3, drop_remainder=True), "leave 2 good sample(s), fewer than one batch needs (3)"),
    ((), dict(batch_size=2), "leave 0 good sample(s), fewer than one batch needs (1)"),
    ((), dict(batch_size=2, pad_final_batch=True), "leave 0 good sample(s)")])
def test_skip_bad_with_too_few_good_samples_for_a_batch_stops_naming_a_file(tmp_path, good_ids, settings, phrase,
                                                                            capsys):
    # Endless epochs that never give a batch would otherwise loop for ever.
    root = str(tmp_path)
    names = sorted(voc_files.BROKEN)
    ids = _voc_with_broken(root, names, good_ids=good_ids)
    dataset = pipeline.make_dataset(root, "train", input_size=16, epochs=None, shuffle=True, skip_bad=True,
                                    **settings)
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        next(iter(dataset))
    message = pipeline.bad_file_message(error.value)
    assert any(message.startswith(voc_files.BROKEN[n][1](root, i) + ": ") for n, i in zip(names, ids, strict=True))
    assert phrase in message and "python -m research.data.validate" in message
    assert message.startswith(min(voc_files.BROKEN[n][1](root, i) for n, i in zip(names, ids, strict=True)))
    # Skipping led here: the command line adds no "--skip-bad ..." hint.
    assert cli.run_main(lambda: next(iter(dataset)), bad_file_hint=cli.SKIP_BAD_RUN) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "leaves bad samples out" not in err


def test_unusual_but_valid_photos_and_names_pass_through(tmp_path):
    root = str(tmp_path)
    ids = [f"photo {name} ü猫" for name in voc_files.UNUSUAL_PHOTOS]
    voc_files.make_tiny_voc(root, ids, ["v"])
    expected = {}
    for image_id, writer in zip(ids, voc_files.UNUSUAL_PHOTOS.values(), strict=True):
        expected[image_id] = writer(voc.image_path(root, image_id), voc_files.smooth_rgb())
    for image_id, (image, _) in zip(ids, pipeline.make_decoded_dataset(root, "train"), strict=True):
        reference, tolerance = expected[image_id]
        assert image.shape == (40, 56, 3)
        assert np.abs(image.numpy().astype(int) - reference.astype(int)).max() <= tolerance
    images, _ = _concat(_batches(pipeline.make_dataset(root, "train", 8, (40, 56))))
    assert images.shape == (len(ids), 40, 56, 3)


def test_decompression_bomb_guard_in_the_pipeline(tiny):
    root, _ = tiny
    with pytest.raises(tf.errors.InvalidArgumentError, match="decompression-bomb guard"):
        _batches(pipeline.make_dataset(root, "val", 2, 16, max_pixels=1000))
