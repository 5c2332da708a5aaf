"""scripts/ablate.py (research.tools.ablate): the grid, the budget, skipping and resuming runs,
the table and chart.

One real training run (the smoke config, 2 steps); everything else uses a stand-in
trainer that writes a train_log.csv, so the grid logic is checked in milliseconds.
"""
import csv
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.helpers import read_csv
from research import config as config_lib
from research import plots
from research.fileio import atomic_write_json
from research.tools import ablate
from research.training import hparams

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "scripts", "ablate.py")

# The smoke config trains CE + dice, class-weighted, DeepLab v3 OS16, float32, no XLA, seed 0,
# one micro-batch, synchronized BatchNorm, no EMA: these cells are the base run itself.
SMOKE_BASE_CELLS = {"loss-ce+dice-weighted", "model-deeplab-os16", "precision-float32", "seed-0",
                    "accumulate-1", "bn_policy-sync", "ema-off", "decoder-v3"}
DETERMINISTIC_AXES = [axis for axis in ablate.AXES if axis != "xla"]   # XLA: --no-deterministic on CPU


def test_cells_change_one_axis_from_the_base_within_the_budget(smoke_config):
    base, cells = ablate.make_cells(smoke_config, DETERMINISTIC_AXES, steps=6, evals=3, overrides=["batch_size=4"])
    assert len(cells) == sum(len(ablate.AXES[axis]) for axis in DETERMINISTIC_AXES) == 26
    assert {c.name for c in cells if c.run == ablate.BASE_RUN} == SMOKE_BASE_CELLS
    assert len(ablate.unique_runs(cells)) == 26 - len(SMOKE_BASE_CELLS) + 1
    assert list(ablate.unique_runs(cells))[0] == ablate.BASE_RUN
    for config in [base] + [c.config for c in cells]:
        assert config.epochs * config.steps_per_epoch == 6 and config.epochs == 3
        assert config.early_stop_patience > config.epochs and config.plateau_patience > config.epochs
        assert config.batch_size * config.accumulate_steps == 4 and not config.export_best
        assert config.deterministic  # cells are bit-reproducible by default
    fields = base.to_dict()
    for cell in cells:
        changed = {k for k, v in cell.config.to_dict().items() if v != fields[k] and k != "name"}
        assert changed <= set(cell.overrides), cell.name
        assert all(getattr(cell.config, k) == v for k, v in cell.overrides.items()), cell.name
        assert bool(changed) == (cell.run != ablate.BASE_RUN), cell.name
    accumulate = {c.name: (c.config.batch_size, c.config.accumulate_steps) for c in cells if c.axis == "accumulate"}
    assert accumulate == {"accumulate-1": (4, 1), "accumulate-2": (2, 2), "accumulate-4": (1, 4)}


def test_any_field_is_an_axis_with_values_parsed_like_set(smoke_config):
    assert ablate.field_axis("input_size=[64,64],[96,96]") == (
        "input_size", [("[64,64]", {"input_size": [64, 64]}), ("[96,96]", {"input_size": [96, 96]})])
    base, cells = ablate.make_cells(smoke_config, [], 4, 2, field_axes=["learning_rate=1e-3,0.01", "model=unet"])
    assert [(c.name, c.run) for c in cells] == [("learning_rate-1e-3", ablate.BASE_RUN),
                                                ("learning_rate-0.01", "learning_rate-0.01"),
                                                ("model-unet", "model-unet")]
    assert cells[1].config.learning_rate == 0.01 and cells[2].config.model == "unet"
    for text, phrase in (("learning_rate", "not FIELD=V1,V2"), ("speed=1,2", "unknown config field 'speed'")):
        with pytest.raises(ValueError, match=phrase):
            ablate.field_axis(text)


def test_run_folders_hold_nothing_a_path_or_glob_pattern_reads(smoke_config):
    # TensorFlow finds checkpoints by glob: a cell in "input_size-[96,96]" would never resume.
    base, cells = ablate.make_cells(smoke_config, [], 4, 2,
                                    field_axes=["resize_to_before_crop=[48,48]", "weights=/w/r50 notop.h5"])
    assert [c.run for c in cells] == ["resize_to_before_crop-48,48", "weights-_w_r50_notop.h5"]
    assert cells[0].name == "resize_to_before_crop-[48,48]"
    with pytest.raises(ValueError, match="would share the folder cells/weights-a_b.h5"):
        ablate.make_cells(smoke_config, [], 4, 2, field_axes=['weights=a b.h5,a_b.h5'])


def test_the_accumulate_axis_keeps_the_images_per_update_or_is_refused(smoke_config):
    _, cells = ablate.make_cells(smoke_config, ["accumulate"], 4, 2, overrides=["batch_size=2", "accumulate_steps=2"])
    assert {c.name: (c.config.batch_size, c.config.accumulate_steps, c.run) for c in cells} == {
        "accumulate-1": (4, 1, "accumulate-1"), "accumulate-2": (2, 2, ablate.BASE_RUN),
        "accumulate-4": (1, 4, "accumulate-4")}
    with pytest.raises(ValueError, match="accumulate-4: 6 images per update cannot be cut into 4 equal"):
        ablate.make_cells(smoke_config, ["accumulate"], 4, 2, overrides=["batch_size=6"])


def test_cells_the_base_refuses_stop_the_grid_before_anything_trains(smoke_config):
    # XLA in a deterministic grid on CPU, and a value check_config refuses: both named at once.
    with pytest.raises(ValueError, match="refuses these cells") as raised:
        ablate.make_cells(smoke_config, ["xla"], 4, 2, field_axes=["output_stride=16,4"])
    message = str(raised.value)
    assert "xla-on: deterministic=true cannot run with jit_compile=true" in message
    assert "output_stride-4: output_stride must be 8 or 16" in message
    assert "xla-off" not in message and "output_stride-16" not in message
    # A step larger than the train split (8 images here) fails training at once: refused up front.
    with pytest.raises(ValueError, match=r"accumulate_steps-8: one step's 16 images .* outnumber the 8 listed"):
        ablate.make_cells(smoke_config, [], 4, 2, field_axes=["accumulate_steps=1,8"])
    # A crop larger than the resized image, an unknown monitored column: training refused
    # them at its start, after the earlier cells had trained.
    with pytest.raises(ValueError, match="refuses these cells") as raised:
        ablate.make_cells(smoke_config, [], 4, 2, field_axes=["input_size=[32,32],[48,48]",
                                                               "monitor=val_mean_iou,val_miou"])
    message = str(raised.value)
    assert "input_size-[48,48]: resize_to_before_crop [40, 40] is smaller than input_size" in message
    assert "monitor-val_miou: monitor 'val_miou' is not a train_log.csv column" in message
    assert "input_size-[32,32]" not in message and "monitor-val_mean_iou:" not in message


def test_no_deterministic_turns_determinism_off(smoke_config):
    base, cells = ablate.make_cells(smoke_config, ["seed"], steps=4, evals=2, deterministic=False)
    assert not base.deterministic and not any(c.config.deterministic for c in cells)


def test_cell_overrides_win_over_set_and_auto_is_resolved(smoke_config):
    base, cells = ablate.make_cells(smoke_config.replace(jit_compile="auto", precision="auto"), ["model", "xla"],
                                    steps=4, evals=2, overrides=["model=unet"], deterministic=False)
    assert base.model == "unet" and base.precision == "float32" and base.jit_compile in (True, False)
    runs = {c.name: c for c in cells}
    assert runs["model-unet"].run == ablate.BASE_RUN
    assert runs["model-deeplab-os8"].config.model == "deeplab_v3"
    # "auto" resolved: exactly one of the two XLA cells is the base run
    assert sorted(c.run == ablate.BASE_RUN for c in cells if c.axis == "xla") == [False, True]


@pytest.mark.parametrize("steps, evals, axes, phrase", [
    (10, 3, ["loss"], "not a multiple"),
    (0, 1, ["loss"], "positive"),
    (6, 3, ["loss", "optimizer"], "unknown axes optimizer"),
])
def test_bad_budget_or_axis_is_a_clear_error(smoke_config, steps, evals, axes, phrase):
    with pytest.raises(ValueError, match=phrase):
        ablate.make_cells(smoke_config, axes, steps, evals)


def fake_trainer(calls, ious):
    """Writes config.json and a train_log.csv as research.train would (val mIoU from `ious`)."""
    def train(config, workdir, hparam_fields=()):
        calls.append(os.path.basename(workdir))
        os.makedirs(workdir, exist_ok=True)
        atomic_write_json(os.path.join(workdir, "config.json"), {"config": config.to_dict(), "runtime": {}})
        iou = ious[os.path.basename(workdir)]
        with open(os.path.join(workdir, "train_log.csv"), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["epoch", "step", "val_mean_iou", "val_loss",
                                                   "val_pixel_accuracy", "epoch_seconds"])
            writer.writeheader()
            for epoch in range(1, config.epochs + 1):
                writer.writerow({"epoch": epoch, "step": epoch * config.steps_per_epoch,
                                 "val_mean_iou": iou * epoch / config.epochs, "val_loss": 1.0 / epoch,
                                 "val_pixel_accuracy": 0.5, "epoch_seconds": 10.0 if epoch == 1 else 2.0})
        return "trained"
    return train


def test_grid_outputs_shared_base_rows_and_chart(smoke_config, tmp_path):
    base, cells = ablate.make_cells(smoke_config.replace(batch_size=2), ["model", "loss", "seed"], steps=9, evals=3)
    ious = {run: 0.1 + 0.05 * i for i, run in enumerate(ablate.unique_runs(cells))}
    calls = []
    rows = ablate.run_grid(base, cells, str(tmp_path), "python scripts/ablate.py ...",
                           train=fake_trainer(calls, ious))
    assert calls == list(ablate.unique_runs(cells))            # each run trained once, base first
    table = read_csv(tmp_path / "ablation.csv")
    assert [r["cell"] for r in table] == [c.name for c in cells] == [r["cell"] for r in rows]
    by_cell = {r["cell"]: r for r in table}
    base_row = by_cell["model-deeplab-os16"]
    assert base_row["run"] == by_cell["loss-ce+dice-weighted"]["run"] == ablate.BASE_RUN
    assert base_row["final_val_mean_iou"] == by_cell["loss-ce+dice-weighted"]["final_val_mean_iou"]
    unet = by_cell["model-unet"]
    assert float(unet["final_val_mean_iou"]) == pytest.approx(ious["model-unet"])
    assert int(unet["best_step"]) == int(unet["steps"]) == 9
    # images/s from epochs 2 and 3 only: 6 steps x 2 images in 4 s
    assert float(unet["images_per_second"]) == pytest.approx(3.0)
    accumulated = ablate.Cell("accumulate", "accumulate-2", {}, base.replace(batch_size=1, accumulate_steps=2), "x")
    history = ablate.read_history(str(tmp_path / "cells" / "model-unet"))
    assert ablate.summarize(accumulated, history, 1.0, "trained")["images_per_second"] == pytest.approx(3.0)
    assert unet["overrides"] == 'model="unet"'

    markdown = (tmp_path / "ablation.md").read_text()
    table_lines = [line for line in markdown.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [line.split("|")[1].strip() for line in table_lines] == ["loss"] * 6 + ["model"] * 3 + ["seed"] * 3
    seeds = sorted(ious[run] for run in ("base", "seed-1", "seed-2"))
    assert f"between {seeds[0]:.4f} and {seeds[-1]:.4f} final val mean IoU" in markdown
    assert "| ce+dice-weighted (base)" not in markdown and "loss-ce+dice-weighted (base)" in markdown
    assert "python scripts/ablate.py ..." in markdown

    picture = np.asarray(Image.open(tmp_path / "ablation.png").convert("RGB"))
    assert picture.shape == (560, 960, 3)
    runs = list(ablate.unique_runs(cells))
    histories = {run: ablate.read_history(str(tmp_path / "cells" / run)) for run in runs}
    series = [(run, [r["step"] for r in h], [r["val_mean_iou"] for r in h]) for run, h in histories.items()]
    layout = plots.chart_layout(series, width=960, height=560)
    for index, run in enumerate(runs[:3]):
        column, row = layout.to_pixel(9, ious[run])              # each run's last point
        patch = picture[row - 1:row + 2, column - 1:column + 2].reshape(-1, 3)
        assert (patch == plots.PALETTE[index]).all(axis=1).any(), run


def test_finished_runs_are_skipped_and_another_config_is_refused(smoke_config, tmp_path):
    base, cells = ablate.make_cells(smoke_config, ["model"], steps=4, evals=2)
    calls = []
    train = fake_trainer(calls, {run: 0.2 for run in ablate.unique_runs(cells)})
    ablate.run_grid(base, cells, str(tmp_path), train=train)
    os.remove(tmp_path / "cells" / "model-unet" / "train_log.csv")   # as if killed before its first eval
    calls.clear()
    rows = ablate.run_grid(base, cells, str(tmp_path), train=train)
    assert calls == ["model-unet"]
    assert {r["run"]: r["status"] for r in rows}[ablate.BASE_RUN] == "done before"

    other_base, other_cells = ablate.make_cells(smoke_config, ["model"], steps=6, evals=2)
    experiment = sorted(os.listdir(tmp_path / "tensorboard"))
    with pytest.raises(ValueError, match="different config.*steps_per_epoch"):
        ablate.run_grid(other_base, other_cells, str(tmp_path), train=train)
    assert sorted(os.listdir(tmp_path / "tensorboard")) == experiment   # refused before writing


@pytest.mark.slow
def test_real_run_then_skip_then_resume(smoke_config, tmp_path, monkeypatch, capsys):
    """One real smoke run through main(); the re-run skips it; a truncated log is resumed."""
    voc_root = smoke_config.voc_root
    only_base = [("ce+dice-weighted", dict(ce_weight=1.0, dice_weight=1.0, class_weighted=True))]
    monkeypatch.setitem(ablate.AXES, "loss", only_base)
    argv = ["--base", "smoke", "--axes", "loss", "--steps", "2", "--evals", "2", "--out", str(tmp_path),
            "--set", f"voc_root={json.dumps(voc_root)}", "--set", "eval_steps=1", "--set", "tensorboard_images=0",
            "--no-deterministic"]  # op determinism is process-wide: keep it out of the test process
    assert ablate.main(argv) == 0
    workdir = tmp_path / "cells" / ablate.BASE_RUN
    log = read_csv(workdir / "train_log.csv")
    assert [int(r["step"]) for r in log] == [1, 2]
    row, = read_csv(tmp_path / "ablation.csv")
    assert row["status"] == "trained" and int(row["steps"]) == 2
    assert 0.0 <= float(row["final_val_mean_iou"]) <= 1.0 and float(row["wall_seconds"]) > 0
    assert (tmp_path / "ablation.png").stat().st_size > 0
    assert "[1/1] base" in capsys.readouterr().out
    # TensorBoard's HParams tab: the run's settings (read back with TensorBoard's reader)
    # and the grid's description at OUT/tensorboard.
    session = hparams.read_session(str(workdir / "tensorboard"))
    assert session["steps_per_epoch"] == session["eval_steps"] == "1" and session["model"] == "deeplab_v3"  # optional: text
    assert glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))

    assert ablate.main(argv) == 0
    assert read_csv(tmp_path / "ablation.csv")[0]["status"] == "done before"

    with open(workdir / "train_log.csv") as f:
        header, first, _ = f.read().splitlines()
    (workdir / "train_log.csv").write_text(f"{header}\n{first}\n")   # as if killed before the last eval
    assert ablate.main(argv) == 0
    row, = read_csv(tmp_path / "ablation.csv")
    assert row["status"] == "resumed" and [int(r["step"]) for r in read_csv(workdir / "train_log.csv")] == [1, 2]


def test_nice_ticks_are_round_and_cover_the_range():
    assert plots.nice_ticks(0.031, 0.118) == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1, 0.12])
    assert plots.nice_ticks(20, 100) == [20, 40, 60, 80, 100]
    ticks = plots.nice_ticks(0.5, 0.5)
    assert len(ticks) > 1 and ticks[0] < 0.5 < ticks[-1]


def test_help():
    result = subprocess.run([sys.executable, SCRIPT, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--steps" in result.stdout and "--axes" in result.stdout


def test_a_cell_that_cannot_run_here_is_reported_failed_and_the_grid_goes_on(tmp_path, monkeypatch):
    from research import train

    def refuse(config, workdir, hparam_fields=()):
        raise ValueError("deterministic=true cannot run with jit_compile=true on CPU")

    monkeypatch.setattr(train, "train_and_evaluate", refuse)
    status = ablate.train_cell(None, str(tmp_path))
    assert status == "failed: deterministic=true cannot run with jit_compile=true on CPU"
    assert ablate.read_wall_seconds(str(tmp_path)) is not None
    # ablation.md gives that reason, not "non-finite loss", which only a NaN run has
    row = {"axis": "xla", "cell": "xla-on", "run": "xla-on", "overrides": "jit_compile=true", "status": status}
    assert "| xla-on (failed: deterministic=true cannot run with jit_compile=true on CPU) |" in \
        ablate.markdown_table([row])
    row["status"] = "failed: "                      # an error without a message
    assert "| xla-on (failed) |" in ablate.markdown_table([row])


def test_a_damaged_wall_time_file_is_named(tmp_path):
    path = tmp_path / "ablation_wall.json"
    assert ablate.read_wall_seconds(str(tmp_path)) is None
    for text, phrase in (('{"wall_sec', "not valid JSON"), ('{"seconds": 3}', 'no number under "wall_seconds"')):
        path.write_text(text)
        with pytest.raises(ValueError, match=f"^{path}: {phrase}"):
            ablate.read_wall_seconds(str(tmp_path))
    path.write_text('{"wall_seconds": 3.5}')
    assert ablate.read_wall_seconds(str(tmp_path)) == 3.5
