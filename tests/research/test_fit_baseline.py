"""The plain Keras compile/fit baseline: its loss and metric objects, and a few fit steps."""
import csv
import os

import numpy as np
import pytest
import tensorflow as tf

import kernels
from research import configs
from research import fit_baseline


def test_metric_objects_match_kernel_metrics():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (2, 8, 8)).astype("int32")
    labels[0, :2] = 255
    logits = rng.normal(size=(2, 8, 8, 4)).astype("float32")
    expected = kernels.segmentation_metrics(
        kernels.confusion_matrix(labels, np.argmax(logits, -1), 4).numpy())
    for cls, name in ((fit_baseline.PixelAccuracy, "pixel_accuracy"),
                      (fit_baseline.MeanAccuracy, "mean_accuracy"),
                      (fit_baseline.MeanIoU, "mean_iou")):
        metric = cls(4)
        metric.update_state(labels[:1], logits[:1])   # accumulates exactly over batches
        metric.update_state(labels[1:], logits[1:])
        assert float(metric.result()) == pytest.approx(expected[name], rel=1e-6), name
        metric.reset_state()
        assert float(metric.result()) == 0.0


def test_loss_object_is_the_reference_loss():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, (2, 6, 6)).astype("int32")
    labels[1, 0] = 255
    logits = rng.normal(size=(2, 6, 6, 3)).astype("float32")
    loss = fit_baseline.CeDiceLoss(3)(labels, logits)
    assert float(loss) == pytest.approx(float(kernels.reference_ce_dice_loss(labels, logits, 3)), rel=1e-6)


@pytest.mark.slow
def test_fit_runs_a_few_steps(synthetic_voc_root, tmp_path):
    config = configs.load_config("smoke").replace(
        voc_root=synthetic_voc_root, epochs=2, steps_per_epoch=2, eval_steps=1)
    history = fit_baseline.fit(config, str(tmp_path))
    assert len(history.history["loss"]) == 2
    for key in ("loss", "mean_iou", "mean_accuracy", "pixel_accuracy", "val_loss", "val_mean_iou"):
        assert np.all(np.isfinite(history.history[key])), key
    with open(tmp_path / "fit_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0", "1"] and "val_mean_iou" in rows[0]
    model = history.model
    atrous_layers = [l for l in model.layers if "atrous" in l.name and l.name.endswith("_conv")]
    assert atrous_layers and all(type(l).__name__ == "Conv2D" for l in atrous_layers)
