"""scripts/compare_runs.py (research.tools.compare_runs): runs at equal wall time."""
import csv
import json
import os

import pytest

from research import results
from research.tools import compare_runs


def fake_run(folder, name, model, epoch_seconds, ious, test_iou=None):
    """A workdir as research.train and research.evaluate leave it (the columns compared)."""
    os.makedirs(os.path.join(folder, "eval"), exist_ok=True)
    config = {"name": name, "model": model, "backbone": "resnet50", "batch_size": 8, "accumulate_steps": 1,
              "bn_policy": "sync"}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"config": config, "runtime": {}}, f)
    with open(os.path.join(folder, "train_log.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", "step", "val_mean_iou", "epoch_seconds"])
        writer.writeheader()
        for epoch, (seconds, iou) in enumerate(zip(epoch_seconds, ious), start=1):
            writer.writerow({"epoch": epoch, "step": 10 * epoch, "val_mean_iou": iou, "epoch_seconds": seconds})
    if test_iou is not None:
        with open(os.path.join(folder, "eval", "metrics.json"), "w") as f:
            json.dump({"mean_iou": test_iou}, f)
    return folder


def test_the_slower_run_is_judged_at_the_faster_runs_time(tmp_path):
    fast = fake_run(str(tmp_path / "v3"), "demo", "deeplab_v3", [10, 10, 10], [0.2, 0.3, 0.4], 0.41)
    slow = fake_run(str(tmp_path / "v3plus"), "demo_v3plus", "deeplab_v3_plus", [14, 14, 14], [0.25, 0.45, 0.5])
    comparison = compare_runs.compare([fast, slow])
    assert comparison["budget_seconds"] == 30
    v3, plus = comparison["runs"]
    assert v3["at_budget"] == {"epoch": 3, "seconds": 30, "val_mean_iou": 0.4} and v3["test_mean_iou"] == 0.41
    assert plus["at_budget"] == {"epoch": 2, "seconds": 28, "val_mean_iou": 0.45}   # epoch 3 ends at 42 s
    assert plus["final_val_mean_iou"] == plus["best_val_mean_iou"] == 0.5 and plus["test_mean_iou"] is None
    assert "| v3plus | deeplab_v3_plus | 8 x 1 | 3 | 42 | 0.4500 (2) | 0.5000 | - |" in compare_runs.format_table(comparison)


def test_saved_with_provenance_and_missing_runs_are_named(tmp_path, capsys):
    run = fake_run(str(tmp_path / "a"), "demo", "deeplab_v3", [5], [0.1])
    out = tmp_path / "compare.json"
    assert compare_runs.main([run, run, "--json", str(out)]) == 0
    saved = results.read_results(str(out))
    assert saved["provenance"]["command"].startswith("python scripts/compare_runs.py") and len(saved["runs"]) == 2
    assert compare_runs.main([str(tmp_path / "missing")]) == 1
    assert "missing/config.json: not found" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no finished epoch"):
        compare_runs.compare([fake_run(str(tmp_path / "empty"), "demo", "deeplab_v3", [], [])])


def test_damaged_run_files_are_named(tmp_path, capsys):
    run = fake_run(str(tmp_path / "a"), "demo", "deeplab_v3", [5, 6], [0.1, 0.2], 0.3)
    metrics = os.path.join(run, "eval", "metrics.json")
    with open(metrics, "w") as f:
        f.write('{"mean_iou": 0.')                               # cut short
    assert compare_runs.main([run]) == 1
    assert capsys.readouterr().err.startswith(f"error: {metrics}: not valid JSON")
    os.remove(metrics)
    log = os.path.join(run, "train_log.csv")
    with open(log, "a") as f:
        f.write("3,30,abc,7\n")
    assert compare_runs.main([run]) == 1
    assert capsys.readouterr().err.startswith(f"error: {log}: line 4 is not a row of numbers")
    with open(log, "wb") as f:
        f.write(b"epoch,step\n\xff\xfe,1\n")                      # not UTF-8
    assert compare_runs.main([run]) == 1
    assert capsys.readouterr().err.startswith(f"error: {log}: not a UTF-8 text file")


def test_runs_with_the_same_folder_name_are_told_apart():
    assert compare_runs.run_names(["runs/demo", "runs/demo_b4x2"]) == ["demo", "demo_b4x2"]
    assert compare_runs.run_names(["x/abl1/cells/base", "y/abl1/cells/base", "x/abl1/cells/seed-1"]) == \
        ["x/abl1/cells/base", "y/abl1/cells/base", "x/abl1/cells/seed-1"]
    assert compare_runs.run_names(["a/demo", "b/demo/"]) == ["a/demo", "b/demo"]
    assert compare_runs.run_names(["runs/demo", "runs/./demo"]) == ["demo", "demo"]     # one run twice
