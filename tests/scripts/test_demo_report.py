"""scripts/demo_report.py (research.tools.demo_report): the recipe line and the schedule
table of REPORT.md."""
import json
import os

from research import configs
from research.tools import demo_report as report


def test_report_shows_the_runs_schedule():
    config = configs.load_config("smoke").replace(
        lr_schedule="poly", warmup_steps=50, epochs=8, steps_per_epoch=100, scale_range=(0.75, 1.5),
        deterministic=True).to_dict()
    line = report.recipe_text(config)
    assert "schedule poly (power 0.9), 50 warmup steps over 800 steps" in line
    assert "scale 0.75-1.5 + crop" in line and "deterministic true" in line
    sgd = configs.load_config("deeplabv3_voc_aug").to_dict()
    assert "sgd (momentum 0.9)" in report.recipe_text(sgd) and "(evaluated at 8)" in report.recipe_text(sgd)
    assert "ASPP rates (6, 12, 18) x 256 channels" in report.recipe_text(sgd)
    assert "ASPP rates (1, 3, 4) x 128 channels" in report.recipe_text(configs.load_config("demo").to_dict())
    assert "ASPP" not in report.recipe_text(configs.load_config("demo_mobile").to_dict())   # light head
    # A run written before later fields existed: they read as Config's defaults.
    old_run = {k: v for k, v in configs.load_config("demo").to_dict().items()
               if k not in ("aspp_rates", "aspp_filters", "head", "optimizer", "lr_schedule")}
    assert "adam, learning rate" in report.recipe_text(old_run)
    assert "schedule plateau" in report.recipe_text(old_run)
    assert "ASPP rates (6, 12, 18) x 256 channels" in report.recipe_text(old_run)
    history = [{"epoch": "1", "step": "100", "loss": "1.5", "val_loss": "1.2", "val_mean_iou": "0.3",
                "learning_rate": "0.0018", "epoch_seconds": "30", "images_per_second": "26"}]
    metrics = {"confusion_matrix": [[5, 1], [1, 3]], "model": {"source": "export", "step": 100},
               "num_images": 2, "pixel_accuracy": 0.8, "mean_accuracy": 0.7, "mean_iou": 0.6}
    baseline = report.majority_baseline(metrics["confusion_matrix"])
    text = report.report_text("runs/demo", history, metrics, baseline, 60.0, config)
    assert "| 1 | 100 | 1.5000 | 1.2000 | 0.3000 | 0.0018 |" in text and "Recipe: adam" in text
    assert "| majority class everywhere (0) |" in text        # no per-class names: indices


def test_report_names_the_classes_of_the_runs_dataset():
    # metrics.json's per-class tables are written with sorted keys: "class_names" holds the order.
    metrics = {"confusion_matrix": [[1, 0], [0, 5]], "class_names": ["toy", "floor"],
               "per_class_iou": {"floor": 0.9, "toy": 0.5}}
    assert report.metrics_class_names(metrics) == ["toy", "floor"]
    assert report.metrics_class_names({"confusion_matrix": [[0] * 21] * 21})[15] == "person"    # VOC, older runs


def test_missing_or_unfinished_run_is_one_line_naming_the_file(tmp_path, capsys):
    workdir = str(tmp_path)
    assert report.main(["--workdir", workdir]) == 1
    assert capsys.readouterr().err.strip() == (
        f"error: {os.path.join(workdir, 'train_log.csv')}: not found (train with research.train and "
        "evaluate with research.evaluate --subset test first)")
    (tmp_path / "train_log.csv").write_text("epoch,step,loss\n")       # killed before epoch 1 ended
    os.makedirs(tmp_path / "eval")
    (tmp_path / "eval" / "metrics.json").write_text("{}")
    assert report.main(["--workdir", workdir]) == 1
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'train_log.csv'}: no finished epoch yet (header only)"
    assert not (tmp_path / "REPORT.md").exists()


def test_damaged_metrics_or_config_is_named(tmp_path, capsys):
    (tmp_path / "train_log.csv").write_text(
        "epoch,step,loss,val_loss,val_mean_iou,learning_rate,epoch_seconds,images_per_second\n"
        "1,10,0.5,0.6,0.3,0.001,4.0,20.0\n")
    os.makedirs(tmp_path / "eval")
    metrics = tmp_path / "eval" / "metrics.json"
    metrics.write_text('{"mean_iou": 0.3}')                             # no confusion matrix
    assert report.main(["--workdir", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"error: {metrics}: lacks confusion_matrix, model, num_images, pixel_accuracy, mean_accuracy "
        "(write it with research.evaluate)")
    metrics.write_text(json.dumps({"confusion_matrix": [[3, 1], [0, 2]], "model": {"source": "export"},
                                   "num_images": 1, "pixel_accuracy": 0.8, "mean_accuracy": 0.8,
                                   "mean_iou": 0.6}))
    (tmp_path / "config.json").write_text("{not json")
    assert report.main(["--workdir", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'config.json'}: not valid JSON")
    (tmp_path / "config.json").write_text(json.dumps({"config": {"name": "demo"}}))
    assert report.main(["--workdir", str(tmp_path)]) == 0
    assert (tmp_path / "REPORT.md").exists()
