"""research.evaluate: metrics against independent computations, full resolution, TTA,
the hardest images, the pictures, model loading from an export or a checkpoint, CLI.

Most tests use tiny hand-made Keras models (a 1x1 convolution is mirror-symmetric, so
flipping commutes with it; a constant model predicts background everywhere, so every
expected colour and loss is known). The DeepLab tests use the smoke config's reduced
backbone with random weights.
"""
import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf
import keras
from PIL import Image

import kernels
from tests.helpers import read_csv
from research import config as config_lib
from research import evaluate as evaluate_lib
from research import export as export_lib
from research import build
from research import visualize
from research.data import voc
from research.fileio import atomic_write_json

C = 21
PERSON = 15


# ---------------------------------------------------------------- helpers

def pointwise_model(seed=0):
    """A 1x1 convolution on x / 255: mirror-symmetric, predictions vary with colour."""
    images = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255.0)(images)
    logits = keras.layers.Conv2D(C, 1, kernel_initializer=keras.initializers.RandomNormal(0, 3, seed=seed),
                                 bias_initializer=keras.initializers.RandomNormal(0, 1, seed=seed + 1))(x)
    return keras.Model(images, logits)


def asymmetric_model(seed=0):
    """A 1x3 convolution with a random kernel: mirroring does not commute with it."""
    images = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255.0)(images)
    logits = keras.layers.Conv2D(C, (1, 3), padding="same",
                                 kernel_initializer=keras.initializers.RandomNormal(0, 3, seed=seed))(x)
    return keras.Model(images, logits)


def constant_model(index=0, logit=10.0):
    """Predicts class `index` everywhere with logit `logit` (the others 0)."""
    images = keras.Input((None, None, 3))
    bias = np.zeros(C, "float32")
    bias[index] = logit
    logits = keras.layers.Conv2D(C, 1, kernel_initializer="zeros",
                                 bias_initializer=keras.initializers.Constant(bias))(images)
    return keras.Model(images, logits)


def write_run(workdir, model, config, step=5):
    """A run folder as train.py leaves it: config.json and export/{model.keras,export.json}."""
    os.makedirs(os.path.join(workdir, "export"), exist_ok=True)
    atomic_write_json(os.path.join(workdir, "config.json"), {"config": config.to_dict(), "runtime": {}})
    model.save(os.path.join(workdir, "export", "model.keras"))
    atomic_write_json(os.path.join(workdir, "export", "export.json"),
                      {"input_size": list(config.input_size), "num_classes": C, "info": {"step": step}})
    return str(workdir)


def confusion_np(labels, predictions):
    labels, predictions = np.asarray(labels).ravel(), np.asarray(predictions).ravel()
    keep = labels != 255
    return np.bincount(labels[keep].astype(np.int64) * C + predictions[keep],
                       minlength=C * C).reshape(C, C)


def independent_confusion(model, voc_root, size, full_resolution=False):
    """The test subset's confusion matrix, computed here from the raw files.

    Eval size: image resized bilinearly and mask by nearest neighbour to `size` (what the
    pipeline does), model run on it. Full resolution: the model runs at `size` and its
    logits are resized back to the original mask's size.
    """
    total = np.zeros((C, C), np.int64)
    for image_id in voc.read_split(voc_root, "test"):
        image, mask = voc.read_sample(voc.image_path(voc_root, image_id), voc.mask_path(voc_root, image_id))
        x = tf.image.resize(image[None].astype("float32"), size, method="bilinear")
        logits = model(x)
        if full_resolution:
            logits, label = tf.image.resize(logits, mask.shape, method="bilinear"), mask
        else:
            label = tf.image.resize(mask[None, ..., None], size, method="nearest")[0, ..., 0].numpy()
        total += confusion_np(label, np.argmax(np.asarray(logits)[0], axis=-1))
    return total


def expected_metrics(confusion):
    """Pixel accuracy, mean accuracy, mean IoU and frequency-weighted IoU, by hand."""
    m = confusion.astype(np.float64)
    tp, rows, cols = np.diag(m), m.sum(1), m.sum(0)
    union = rows + cols - tp
    iou = tp[union > 0] / union[union > 0]
    return {"pixel_accuracy": tp.sum() / m.sum(),
            "mean_accuracy": np.mean(tp[rows > 0] / rows[rows > 0]),
            "mean_iou": np.mean(iou),
            "frequency_weighted_iou": np.sum(rows[union > 0] * iou) / m.sum()}


@pytest.fixture(scope="module")
def pointwise_run(tmp_path_factory, smoke_config):
    return write_run(tmp_path_factory.mktemp("pointwise"), pointwise_model(), smoke_config)


@pytest.fixture(scope="module")
def deeplab(smoke_config):
    keras.utils.set_random_seed(0)
    return build.build_model(smoke_config)


# ---------------------------------------------------------------- metrics

def test_metrics_match_an_independent_confusion_matrix(pointwise_run, smoke_config, capsys):
    result = evaluate_lib.evaluate(pointwise_run, samples=2, hardest=2)
    out = os.path.join(pointwise_run, "eval")
    assert result["output_dir"] == out
    metrics = json.load(open(os.path.join(out, "metrics.json")))

    model = keras.saving.load_model(os.path.join(pointwise_run, "export", "model.keras"))
    expected = independent_confusion(model, smoke_config.voc_root, (32, 32))
    assert expected.sum() > 0 and np.count_nonzero(expected.sum(0)) >= 2  # varied predictions
    np.testing.assert_array_equal(np.array(metrics["confusion_matrix"]), expected)
    for name, value in expected_metrics(expected).items():
        assert metrics[name] == pytest.approx(value, rel=1e-9), name
    assert metrics["num_images"] == len(voc.read_split(smoke_config.voc_root, "test")) == 3
    assert metrics["subset"] == "test"
    assert metrics["model"]["source"] == "export" and metrics["model"]["step"] == 5
    assert metrics["options"] == {**metrics["options"], "full_resolution": False, "flip": False,
                                  "scales": [1.0], "input_size": [32, 32]}

    rows = read_csv(os.path.join(out, "per_class.csv"))
    assert list(rows[0]) == ["index", "class", "iou", "accuracy", "pixels"]
    assert [r["class"] for r in rows] == list(voc.CLASS_NAMES) == metrics["class_names"]   # class order
    assert [int(r["pixels"]) for r in rows] == expected.sum(1).tolist()
    for r in rows:
        iou = metrics["per_class_iou"][r["class"]]
        assert (r["iou"] == "") if iou is None else float(r["iou"]) == pytest.approx(iou, abs=1e-6)
    assert len(read_csv(os.path.join(out, "per_image.csv"))) == 3
    for name in ("confusion.png", "samples.png", "hardest.png", "hardest.csv"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    heat = np.asarray(Image.open(os.path.join(out, "confusion.png")))
    assert heat.shape == visualize.HeatmapLayout.for_names(voc.CLASS_NAMES).size + (3,)
    printed = capsys.readouterr().out
    assert "mean_iou" in printed and "diningtable" in printed


def test_full_resolution_scores_each_image_at_its_original_size(pointwise_run, smoke_config):
    ids = voc.read_split(smoke_config.voc_root, "test")
    sizes = {voc.image_size(voc.image_path(smoke_config.voc_root, i)) for i in ids}
    assert len(sizes) > 1  # the images differ in size

    metrics = evaluate_lib.evaluate(pointwise_run, full_resolution=True, samples=2, hardest=2)
    model = keras.saving.load_model(os.path.join(pointwise_run, "export", "model.keras"))
    expected = independent_confusion(model, smoke_config.voc_root, (32, 32), full_resolution=True)
    np.testing.assert_array_equal(np.array(metrics["confusion_matrix"]), expected)
    valid = sum(int(np.sum(voc.read_mask(voc.mask_path(smoke_config.voc_root, i)) != 255)) for i in ids)
    assert np.sum(metrics["confusion_matrix"]) == valid  # every original pixel, no more
    assert metrics["options"]["full_resolution"] is True
    assert metrics["mean_iou"] == pytest.approx(expected_metrics(expected)["mean_iou"], rel=1e-9)


# ---------------------------------------------------------------- test-time augmentation

def test_flip_is_a_no_op_for_a_mirror_symmetric_model(pointwise_run):
    model = keras.saving.load_model(os.path.join(pointwise_run, "export", "model.keras"))
    images = np.random.default_rng(0).uniform(0, 255, (2, 20, 28, 3)).astype("float32")
    plain = evaluate_lib.tta_logits(model, images, (32, 32))
    flipped = evaluate_lib.tta_logits(model, images, (32, 32), flip=True)
    np.testing.assert_allclose(flipped.numpy(), plain.numpy(), atol=1e-4)

    with_flip = evaluate_lib.evaluate(pointwise_run, flip=True, samples=0, hardest=0)
    without = evaluate_lib.evaluate(pointwise_run, samples=0, hardest=0)
    assert with_flip["confusion_matrix"] == without["confusion_matrix"]
    assert with_flip["options"]["flip"] is True and without["options"]["flip"] is False


def test_flip_averages_with_the_mirrored_prediction_of_a_non_symmetric_model():
    model = asymmetric_model()
    images = np.random.default_rng(1).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    plain = np.asarray(model(images))
    mirrored = np.asarray(model(images[:, :, ::-1]))[:, :, ::-1]
    flipped = evaluate_lib.tta_logits(model, images, (32, 32), flip=True).numpy()
    np.testing.assert_allclose(flipped, (plain + mirrored) / 2, atol=1e-5)
    assert np.abs(flipped - plain).max() > 0.1


def test_multi_scale_averages_the_runs_resized_to_the_image(pointwise_run, caplog):
    model = asymmetric_model()
    images = np.random.default_rng(2).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    runs = [export_lib.predict_logits(model, images, size).numpy() for size in ((16, 16), (32, 32), (48, 48))]
    averaged = evaluate_lib.tta_logits(model, images, (32, 32), scales=(0.5, 1, 1.5)).numpy()
    np.testing.assert_allclose(averaged, np.mean(runs, axis=0), atol=1e-5)
    assert np.abs(averaged - runs[1]).max() > 0.01

    caplog.set_level(logging.INFO, logger=evaluate_lib.log.name)
    metrics = evaluate_lib.evaluate(pointwise_run, scales=(0.5, 1, 1.25), flip=True, samples=0, hardest=0)
    assert metrics["options"]["scales"] == [0.5, 1.0, 1.25] and metrics["options"]["flip"] is True
    # Trained at 32 px, output stride 16: 0.5 is on the grid (16 px); 1.25 (40 px) is not
    # and runs at the nearest size that is (48 px), which is said.
    assert metrics["options"]["run_sizes"] == [[16, 16], [32, 32], [48, 48]]
    moved = [r.getMessage() for r in caplog.records if "on the grid of its training size" in r.getMessage()]
    assert moved == ["scale 1.25 runs the model at 48x48, the size nearest 40x40 on the grid of its training "
                     "size 32x32 (a multiple of its stride 16 away), where its features align"]
    assert 0.0 <= metrics["mean_iou"] <= 1.0


def test_scales_run_on_the_grid_of_the_training_size():
    sides = lambda size, stride: [evaluate_lib.scaled_size(size, s, stride)[0]
                                  for s in (0.5, 0.75, 1, 1.25, 1.5, 1.75)]
    assert sides((513, 513), 16) == [257, 385, 513, 641, 769, 897]   # 16k + 1, as DeepLab's
    assert sides((384, 384), 16) == [192, 288, 384, 480, 576, 672]   # exact: multiples already
    assert sides((513, 513), 1) == [257, 385, 513, 641, 770, 898]    # stride 1: plain rounding (ties up)
    assert evaluate_lib.scaled_size((96, 72), 0.5, 16) == (48, 40)   # 36 -> 40 = 72 - 2 * 16
    assert evaluate_lib.scaled_size((32, 17), 0.1, 16) == (16, 1)    # never below the grid's first size
    assert evaluate_lib.scaled_size((32, 32), 0.75, 16) == (32, 32)  # a tie (24 between 16 and 32) rounds up


def test_an_out_that_holds_something_else_is_refused_before_scoring(pointwise_run, tmp_path, monkeypatch):
    monkeypatch.setattr(evaluate_lib.datasets, "dataset_of", lambda config: pytest.fail("scored"))
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt exists and is not a folder"):
        evaluate_lib.evaluate(pointwise_run, out_dir=str(notes))
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="is not an evaluation folder"):
        evaluate_lib.evaluate(pointwise_run, out_dir=str(tmp_path / "photos"))
    assert notes.read_text() == "mine" and os.listdir(tmp_path / "photos") == ["a.jpg"]


def test_parse_scales():
    assert evaluate_lib.parse_scales("0.75,1,1.25") == (0.75, 1.0, 1.25)
    for bad in ("", "0,1", "a,b", "-1"):
        with pytest.raises(ValueError, match="scales"):
            evaluate_lib.parse_scales(bad)


# ---------------------------------------------------------------- hardest images and pictures

@pytest.fixture(scope="module")
def tiny_voc(tmp_path_factory):
    """6 val images of 32 x 32 px; the 3 of the test subset are background with a
    bottom band of person covering 0 %, 6 % and 50 % of the pixels (in test order)."""
    root = str(tmp_path_factory.mktemp("tiny_voc"))
    ids = [f"img {i}" for i in range(6)]  # a space in every id
    os.makedirs(os.path.join(root, "ImageSets", "Segmentation"))
    with open(voc.split_file(root, "train"), "w") as f:
        f.write("train0\n")
    with open(voc.split_file(root, "val"), "w") as f:
        f.write("\n".join(ids) + "\n")
    rows_of_person = dict(zip(voc.read_split(root, "test"), (0, 2, 16)))
    for image_id in ["train0"] + ids:
        mask = np.zeros((32, 32), np.uint8)
        mask[32 - rows_of_person.get(image_id, 8):] = PERSON
        os.makedirs(os.path.dirname(voc.image_path(root, image_id)), exist_ok=True)
        Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(voc.image_path(root, image_id), quality=95)
        voc.write_mask(voc.mask_path(root, image_id), mask)
    return root


def test_hardest_ranks_the_highest_real_loss_first(tmp_path, tiny_voc, smoke_config):
    config = smoke_config.replace(voc_root=tiny_voc)
    workdir = write_run(tmp_path / "run", constant_model(0), config)
    evaluate_lib.evaluate(workdir, samples=3, hardest=3)
    rows = read_csv(os.path.join(workdir, "eval", "hardest.csv"))
    test_ids = voc.read_split(tiny_voc, "test")
    # Half person ranks first, then 2 rows of person, then none (its loss is 0).
    assert [r["id"] for r in rows] == test_ids[::-1]
    assert [int(r["rank"]) for r in rows] == [1, 2, 3]
    losses = [float(r["loss"]) for r in rows]
    assert losses[0] > 2 * losses[1] > 0 and losses[2] == pytest.approx(0, abs=1e-6)
    assert [float(r["pixel_accuracy"]) for r in rows] == pytest.approx([0.5, 30 / 32, 1.0])
    # Each loss is the training loss of that image alone.
    _, kwargs = build.loss_function(config)
    label = np.zeros((1, 32, 32), np.int32)
    label[:, 16:] = PERSON
    logits = constant_model(0)(np.zeros((1, 32, 32, 3), "float32"))
    assert losses[0] == pytest.approx(float(kernels.reference_ce_dice_loss(label, logits, **kwargs)), rel=1e-5)
    # The book's score (sum of p * onehot) would rank the all-background image FIRST.


def test_samples_png_shows_truth_prediction_and_errors(tmp_path, tiny_voc, smoke_config):
    config = smoke_config.replace(voc_root=tiny_voc)
    workdir = write_run(tmp_path / "run", constant_model(0), config)
    evaluate_lib.evaluate(workdir, samples=3, hardest=1)
    grid = np.asarray(Image.open(os.path.join(workdir, "eval", "samples.png")).convert("RGB"))
    layout = visualize.GridLayout(rows=3, cell_height=192, cell_width=192)
    assert grid.shape[1] == layout.width and grid.shape[0] > layout.cells_bottom
    # All 3 test images are sampled, in test order; the last one is half person.
    top, _, bottom, _ = layout.cell_box(2, 0)
    lower = top + 3 * 192 // 4

    def pixel(column, y):
        _, left, _, right = layout.cell_box(2, column)
        return tuple(int(c) for c in grid[y, (left + right) // 2])

    assert pixel(1, top + 10) == (0, 0, 0) and pixel(1, lower) == tuple(voc.VOC_PALETTE[PERSON])
    assert pixel(2, lower) == (0, 0, 0)                       # predicted background
    assert pixel(3, lower) == visualize.ERROR_COLOUR          # wrong: red
    assert all(abs(v - 51) <= 2 for v in pixel(3, top + 10))  # right: grey 128 dimmed to 40 %
    hardest = np.asarray(Image.open(os.path.join(workdir, "eval", "hardest.png")))
    assert hardest.shape[1] == layout.width


# ---------------------------------------------------------------- model sources

def test_checkpoint_is_used_when_there_is_no_export(tmp_path, deeplab, smoke_config):
    workdir = str(tmp_path / "run")
    atomic_write_json(os.path.join(workdir, "config.json"), {"config": smoke_config.to_dict(), "runtime": {}})
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=deeplab),
                                         os.path.join(workdir, "checkpoints"), max_to_keep=1)
    manager.save(checkpoint_number=7)
    from_checkpoint = evaluate_lib.evaluate(workdir, samples=0, hardest=0)
    assert from_checkpoint["model"]["source"] == "checkpoint" and from_checkpoint["model"]["step"] == 7

    write_run(workdir, deeplab, smoke_config, step=3)
    from_export = evaluate_lib.evaluate(workdir, samples=0, hardest=0, scales=(1,))
    assert from_export["model"]["source"] == "export" and from_export["model"]["step"] == 3
    assert from_export["confusion_matrix"] == from_checkpoint["confusion_matrix"]
    expected = independent_confusion(deeplab, smoke_config.voc_root, (32, 32))
    np.testing.assert_array_equal(np.array(from_export["confusion_matrix"]), expected)
    forced = evaluate_lib.evaluate(workdir, samples=0, hardest=0, source="checkpoint",
                                   scales=(0.75, 1, 1.25), flip=True)
    assert forced["model"]["source"] == "checkpoint"


def test_a_checkpoint_of_another_model_is_refused(tmp_path, smoke_config):
    workdir = str(tmp_path / "run")
    atomic_write_json(os.path.join(workdir, "config.json"), {"config": smoke_config.to_dict(), "runtime": {}})
    tf.train.Checkpoint(model=pointwise_model()).save(os.path.join(workdir, "checkpoints", "ckpt"))
    with pytest.raises(ValueError, match=r"does not match the model .* \(the checkpoint's model has 3 layers, this one \d+"):
        evaluate_lib.evaluate(workdir)
    with pytest.raises(FileNotFoundError, match="no exported model"):
        evaluate_lib.evaluate(workdir, source="export")


# ---------------------------------------------------------------- command line

def test_command_line(pointwise_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate_lib.main(["--help"])
    assert exit_info.value.code == 0
    assert "--full-resolution" in capsys.readouterr().out

    assert evaluate_lib.main(["--workdir", pointwise_run, "--subset", "val", "--flip",
                              "--scales", "0.75,1", "--samples", "1", "--hardest", "1"]) == 0
    metrics = json.load(open(os.path.join(pointwise_run, "eval_val", "metrics.json")))
    assert metrics["subset"] == "val" and metrics["options"]["scales"] == [0.75, 1.0]
    assert evaluate_lib.main(["--workdir", str(tmp_path / "missing")]) == 1

    # --out: a fresh folder is fine; a folder holding other things is never replaced.
    assert evaluate_lib.main(["--workdir", pointwise_run, "--samples", "0", "--hardest", "0",
                              "--out", str(tmp_path / "flipless")]) == 0
    assert sorted(os.listdir(tmp_path / "flipless")) == ["confusion.png", "metrics.json",
                                                         "per_class.csv", "per_image.csv"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert evaluate_lib.main(["--workdir", pointwise_run, "--out", str(tmp_path / "mine")]) == 1
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_without_losses_the_hardest_are_the_lowest_mean_iou():
    # A .tflite file that gives masks scores no loss: rank by mean IoU, lowest first;
    # an image without a scored pixel (no loss, no IoU) last.
    nan = float("nan")
    scores = [(nan, 0.6), (nan, 0.2), (nan, nan), (nan, 0.9), (nan, 0.4)]
    keeper = evaluate_lib.Keeper(num_images=len(scores), samples=0, hardest=4, seed=0)
    for position, (loss, iou) in enumerate(scores):
        keeper.offer(evaluate_lib.ImageResult(position, f"id{position}", loss, 0.5, iou), None, None, None)
    assert [r.image_id for r in keeper.hardest()] == ["id1", "id4", "id0", "id3"]
    # With losses, the loss decides (an image without a scored pixel still ranks last).
    keeper = evaluate_lib.Keeper(num_images=3, samples=0, hardest=3, seed=0)
    for position, (loss, iou) in enumerate([(0.5, 0.1), (nan, nan), (2.0, 0.9)]):
        keeper.offer(evaluate_lib.ImageResult(position, f"id{position}", loss, 0.5, iou), None, None, None)
    assert [r.image_id for r in keeper.hardest()] == ["id2", "id0", "id1"]


def test_an_infinite_loss_is_the_hardest_and_a_missing_loss_is_not_captioned():
    # A diverged (or float16-overflowed) model's +inf loss ranks above every finite loss.
    nan, inf = float("nan"), float("inf")
    keeper = evaluate_lib.Keeper(num_images=3, samples=0, hardest=3, seed=0)
    for position, (loss, iou) in enumerate([(0.5, 0.1), (inf, 0.9), (2.0, 0.3)]):
        keeper.offer(evaluate_lib.ImageResult(position, f"id{position}", loss, 0.5, iou), None, None, None)
    assert [r.image_id for r in keeper.hardest()] == ["id1", "id2", "id0"]
    assert "loss" not in evaluate_lib.ImageResult(0, "a", nan, 0.5, 0.25).caption()
    assert "loss 0.500" in evaluate_lib.ImageResult(0, "a", 0.5, 0.5, 0.25).caption()
