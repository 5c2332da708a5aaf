"""A folder dataset (converted from the embedded VOC data, with its own class names and
colours) in every command: evaluate (whole and slide), predict, the pictures, TensorBoard's
strip, int8 calibration, and training's reader refusing a bad mask in one line.

The fast tests use a 1x1-convolution model (a pixel's prediction depends on its colour
alone, so a sliding window must give exactly the prediction at full size); the slow ones
train the smoke config on the folder dataset through the command lines.
"""
import json
import logging
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.helpers import command_line_errors
from research import config as config_lib
from research import configs
from research import evaluate as evaluate_lib
from research import export as export_lib
from research import export_tflite, predict as predict_lib, train as train_lib, visualize
from research.data import datasets, folder_writer, pipeline, voc
from research.fileio import atomic_write_json
from research.training.outputs import prediction_strip
from tests.research.data import folder_files
from tests.research.test_evaluate import confusion_np, pointwise_model

NAMES = ("floor",) + voc.CLASS_NAMES[1:]
COLOURS = [[i, 255 - i, 7 * i] for i in range(21)]


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory, synthetic_voc_root):
    """The embedded VOC data as a folder dataset, renamed class 0 and its own colours."""
    root = str(tmp_path_factory.mktemp("own") / "data")
    folder_writer.voc_to_folder(synthetic_voc_root, root)
    atomic_write_json(os.path.join(root, "classes.json"), {"names": list(NAMES), "palette": COLOURS})
    return root


@pytest.fixture(scope="module")
def folder_config(folder_root):
    return config_lib.apply_overrides(configs.load_config("smoke"),
                                      ['dataset="folder"', f"data_root={folder_root}"])


@pytest.fixture(scope="module")
def run(tmp_path_factory, folder_config):
    """A run folder as training leaves it: config.json and export/ (export_model)."""
    workdir = str(tmp_path_factory.mktemp("own_run"))
    model = pointwise_model()
    atomic_write_json(os.path.join(workdir, "config.json"), {"config": folder_config.to_dict(), "runtime": {}})
    export_lib.export_model(model, os.path.join(workdir, "export"), folder_config, {"step": 1})
    return workdir, model


def full_size_confusion(model, folder_root, subset):
    """The subset's confusion matrix with the model run on each whole image at its own size."""
    data = datasets.open_root(folder_root)
    total = 0
    for image_id in data.split(subset):
        image, mask = data.read_sample(data.image_path(image_id), data.mask_path(image_id))
        logits = np.asarray(model(image[None].astype("float32")))[0]
        total = total + confusion_np(mask, np.argmax(logits, axis=-1))
    return total


def test_export_records_the_dataset_classes(run):
    workdir, _ = run
    facts = json.load(open(os.path.join(workdir, "export", "export.json")))
    assert facts["class_names"] == list(NAMES) and facts["palette"] == COLOURS
    names, palette = export_lib.classes_of(facts)
    assert names == NAMES and palette[:21].tolist() == COLOURS
    old_names, old_palette = export_lib.classes_of({"num_classes": 21})   # an export before this
    assert old_names == voc.CLASS_NAMES and old_palette is not voc.VOC_PALETTE
    np.testing.assert_array_equal(old_palette, voc.VOC_PALETTE)


def test_evaluate_whole_and_slide_on_a_folder_dataset(run, folder_root, synthetic_voc_root, tmp_path):
    workdir, model = run
    whole = evaluate_lib.evaluate(workdir, samples=1, hardest=1, out_dir=str(tmp_path / "whole"))
    assert list(whole["per_class_iou"]) == list(NAMES)
    assert whole["options"]["dataset"] == "folder" and whole["options"]["mode"] == "whole"
    # The same data read as VOC scores the same.
    voc_run = str(tmp_path / "voc_run")
    os.makedirs(voc_run)
    voc_config = configs.load_config("smoke").replace(voc_root=synthetic_voc_root)
    atomic_write_json(os.path.join(voc_run, "config.json"), {"config": voc_config.to_dict(), "runtime": {}})
    shutil.copytree(os.path.join(workdir, "export"), os.path.join(voc_run, "export"))
    assert evaluate_lib.evaluate(voc_run, samples=0, hardest=0)["confusion_matrix"] == whole["confusion_matrix"]
    # Slide: windows over each image at its own size; a 1x1 model gives exactly its full-size prediction.
    slide = evaluate_lib.evaluate(workdir, mode="slide", window=(64, 64), stride=(48, 48), samples=1, hardest=0,
                                  out_dir=str(tmp_path / "slide"))
    assert slide["options"]["full_resolution"] and slide["options"]["window"] == [64, 64]
    np.testing.assert_array_equal(slide["confusion_matrix"], full_size_confusion(model, folder_root, "test"))
    assert os.path.isfile(tmp_path / "slide" / "samples.png")


def test_the_run_config_chooses_slide_and_data_root_moves_the_data(run, folder_root, tmp_path):
    workdir, model = run
    config = export_lib.read_run_config(workdir)
    moved = str(tmp_path / "moved")
    shutil.copytree(folder_root, moved)
    slide_run = str(tmp_path / "slide_run")
    shutil.copytree(os.path.join(workdir, "export"), os.path.join(slide_run, "export"))
    slide_config = config.replace(eval_mode="slide", eval_window=(64, 64), data_root="/nowhere")
    atomic_write_json(os.path.join(slide_run, "config.json"), {"config": slide_config.to_dict(), "runtime": {}})
    result = evaluate_lib.evaluate(slide_run, subset="val", data_root=moved, samples=0, hardest=0)
    assert result["options"]["mode"] == "slide" and result["options"]["stride"] == [43, 43]
    assert result["options"]["data_root"] == moved
    # The config's window and stride are a pair; a .tflite file is scored whole.
    assert evaluate_lib._inference_mode(slide_config.replace(eval_stride=(50, 50)), None, (16, 16), None,
                                        None) == ("slide", (16, 16), None)
    assert evaluate_lib._inference_mode(slide_config, None, None, None, "f.tflite") == ("whole", None, None)
    np.testing.assert_array_equal(result["confusion_matrix"], full_size_confusion(model, moved, "val"))
    with pytest.raises(ValueError, match="trained on a folder dataset .* --data-root, not --voc-root"):
        export_lib.read_run_config(workdir, voc_root=moved)


def test_predict_writes_masks_in_the_dataset_colours_whole_and_slide(run, folder_root, tmp_path):
    workdir, model = run
    data = datasets.open_root(folder_root)
    image_id = data.split("test")[0]
    image = voc.read_image(data.image_path(image_id))
    for mode, expected in (("whole", export_lib.predict_masks(model, image[None], (32, 32)).numpy()[0]),
                           ("slide", np.argmax(np.asarray(model(image[None].astype("float32")))[0], axis=-1))):
        out = str(tmp_path / mode)
        result = predict_lib.predict(workdir, [data.image_path(image_id)], out, overlay=True, mode=mode,
                                     window=(64, 64) if mode == "slide" else None)
        written = Image.open(result["written"][data.image_path(image_id)])
        assert written.mode == "P" and written.getpalette()[:63] == [v for c in COLOURS for v in c]
        np.testing.assert_array_equal(np.asarray(written), expected, err_msg=mode)
    assert predict_lib.main(["--model", workdir, "--out", str(tmp_path / "cli"), "--mode", "slide",
                             "--window", "64", "64", "--stride", "70", "70", data.image_path(image_id)]) == 1


def test_pictures_and_tensorboard_strip_use_the_dataset_colours(run, folder_config):
    _, model = run
    palette = datasets.dataset_of(folder_config).palette
    labels = np.array([[[0, 1], [2, 255]]], np.int32)
    strip = prediction_strip(model, np.zeros((1, 2, 2, 3), np.float32), labels, 1, palette)
    np.testing.assert_array_equal(strip[0, :, 2:4], palette[labels[0]])
    blended = visualize.overlay(np.zeros((2, 2, 3), np.uint8), np.array([[0, 1], [1, 0]]), alpha=1.0,
                                palette=palette)
    np.testing.assert_array_equal(blended[0, 1], COLOURS[1])
    np.testing.assert_array_equal(blended[1, 1], COLOURS[0])    # class 0 is not black here: blended too
    key = visualize.legend([1], class_names=NAMES, palette=palette)
    assert (key == np.array(COLOURS[1], np.uint8)).all(axis=-1).any()


def test_int8_calibration_reads_the_folder_dataset(folder_config):
    images = export_tflite.representative_images(folder_config, (24, 24), 3)
    assert len(images) == 3 and images[0].shape == (1, 24, 24, 3) and images[0].dtype == np.uint8


@pytest.fixture
def bad_folder(tmp_path):
    """A 3-class folder dataset whose mask b holds a 7."""
    root = str(tmp_path / "bad")
    samples = folder_files.make_folder_dataset(root, train=("a", "b", "c", "d"), val=("e", "f"))
    image, mask = samples["b"]
    mask = mask.copy()
    mask[0, 0] = 7
    folder_files.write_sample(root, "b", image, mask)
    return root


def test_training_reader_refuses_a_value_outside_the_classes(bad_folder, caplog):
    config = config_lib.apply_overrides(configs.load_config("smoke"), ["dataset=folder", f"data_root={bad_folder}"])
    data = datasets.dataset_of(config)
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        list(pipeline.make_dataset(data, "train", 2, 16))
    message = pipeline.bad_file_message(error.value)
    assert message.startswith(os.path.join(bad_folder, "masks", "b.png") + ": values 7 on 1 pixel(s)")
    # skip_bad leaves it out and logs it, as for VOC.
    skipped = pipeline.SkippedSamples()
    with caplog.at_level(logging.WARNING, logger="research.data.pipeline"):
        batches = list(pipeline.make_dataset(data, "train", 2, 16, skip_bad=True, skipped=skipped))
    assert sum(len(images) for images, _ in batches) == 3 and skipped.count == 1
    assert any("skipping bad sample" in r.message and "values 7" in r.message for r in caplog.records)


# ---------------------------------------------------------------- slow: the command lines

@pytest.mark.slow
def test_train_evaluate_and_predict_on_a_folder_dataset(folder_root, tmp_path, capsys):
    from research import train
    workdir = str(tmp_path / "run")
    assert train.main(["--config", "smoke", "--workdir", workdir, "--set", 'dataset="folder"',
                       "--set", f"data_root={folder_root}", "--set", "epochs=1"]) == 0
    saved = json.load(open(os.path.join(workdir, "config.json")))["config"]
    assert saved["dataset"] == "folder" and saved["num_classes"] == 21
    assert json.load(open(os.path.join(workdir, "export", "export.json")))["class_names"] == list(NAMES)
    assert evaluate_lib.main(["--workdir", workdir, "--samples", "1", "--hardest", "1"]) == 0
    assert evaluate_lib.main(["--workdir", workdir, "--mode", "slide", "--subset", "val", "--samples", "1"]) == 0
    assert json.load(open(os.path.join(workdir, "eval_val", "metrics.json")))["options"]["mode"] == "slide"
    image = os.path.join(folder_root, "images")
    assert predict_lib.main(["--model", workdir, "--out", str(tmp_path / "masks"), "--mode", "slide", image]) == 0


@pytest.mark.slow
def test_training_refuses_a_bad_mask_in_one_line(bad_folder, tmp_path, caplog, capsys):
    from research import train
    with caplog.at_level(logging.ERROR, logger="research"):
        assert train.main(["--config", "smoke", "--workdir", str(tmp_path / "run"), "--set", "dataset=folder",
                           "--set", f"data_root={bad_folder}", "--set", "input_size=[16,16]",
                           "--set", "resize_to_before_crop=[20,20]"]) == 1
    [error] = command_line_errors(caplog, capsys)
    assert error.startswith(os.path.join(bad_folder, "masks", "b.png") + ": values 7") and "\n" not in error
