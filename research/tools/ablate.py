"""Ablation grid: train a base config and one-change variants of it for the same step budget.

    python scripts/ablate.py --base demo --axes loss,model,seed --steps 400 \\
        --set input_size=[64,64] --set resize_to_before_crop=[74,74] \\
        --set backbone_blocks=[1,1,1,1] --out runs/ablation

Axes are varied one at a time from the base config (not the cartesian product). The named
axes' cells are listed in `AXES` below (`--axes loss,model,...`); `--axis FIELD=V1,V2,...`
(repeatable, values parsed like `--set`) makes any config field an axis too. The `seed`
axis (not in the default set) trains the base again with other seeds: the spread it
shows is the noise any other difference must beat. A cell the base config refuses (an
invalid value, or XLA in a deterministic grid on CPU) stops the grid before anything
trains, naming every such cell. A cell whose config equals the base's
(e.g. "CE + dice, class-weighted" when the base trains with that loss) is not trained
again: it shares the base's run, `OUT/cells/base`. Every other cell trains in
`OUT/cells/<axis>-<cell>` (`run_folder`: no brackets, nothing a path or glob reads) with
`research.train.train_and_evaluate`, so a killed ablation resumes: finished cells are
skipped and a partly trained cell continues from its checkpoint.

Determinism: cells run with `deterministic=true` (research.runtime.enable_determinism)
unless `--no-deterministic`, so rerunning a cell gives the same numbers and a cell
differs from the base only by its override.

Budget: each cell trains exactly `--steps` steps in `--evals` epochs of steps/evals
steps, and is evaluated on val after each. Early stopping and the plateau LR schedule
are switched off (a fixed budget under the base's learning-rate schedule, which a poly
or cosine base runs over the budget; the loss cells would otherwise schedule on val
losses that are not comparable), and the best model is not exported. `--set` overrides apply after the budget and before the cell's own changes.

Outputs (written atomically, rewritten after every cell):
  OUT/ablation.csv  one row per cell: results at the end of the budget and at the best eval
  OUT/ablation.md   the same as a markdown table, grouped by axis
  OUT/ablation.png  val mean IoU against step, one line per run
  OUT/tensorboard/  the grid for TensorBoard's HParams tab: `tensorboard --logdir OUT` lists
                    every run (OUT/cells/<run>/tensorboard holds its settings and final
                    metrics) to compare, filter and plot
With --json [PATH], also the table with its provenance (research/results.py), for `make docs`.

`main` is the command line of scripts/ablate.py.
"""
import argparse
import csv
import dataclasses
import io
import json
import logging
import math
import os
import re
import sys
import time

from research import cli
from research import config as config_lib
from research import configs
from research import provenance, results
from research.fileio import atomic_write_json, atomic_write_text, read_json
from research.progress import format_seconds
from research.training import schedules

# ---------------------------------------------------------------------------------
# The grid: axis -> [(cell name, config overrides)]. Each cell changes the base config
# in these fields only (a function of the base config where they depend on it). Edit
# here to add a cell; `--axis FIELD=V1,V2` adds an axis without editing.
# ---------------------------------------------------------------------------------
AXES = {
    "loss": [
        ("ce", dict(ce_weight=1.0, dice_weight=0.0, class_weighted=False)),
        ("ce-weighted", dict(ce_weight=1.0, dice_weight=0.0, class_weighted=True)),
        ("dice", dict(ce_weight=0.0, dice_weight=1.0, class_weighted=False)),
        ("dice-weighted", dict(ce_weight=0.0, dice_weight=1.0, class_weighted=True)),
        ("ce+dice", dict(ce_weight=1.0, dice_weight=1.0, class_weighted=False)),
        ("ce+dice-weighted", dict(ce_weight=1.0, dice_weight=1.0, class_weighted=True)),
    ],
    "model": [
        ("deeplab-os16", dict(model="deeplab_v3", output_stride=16)),
        ("deeplab-os8", dict(model="deeplab_v3", output_stride=8)),
        ("unet", dict(model="unet")),
    ],
    "xla": [
        ("off", dict(jit_compile=False)),
        ("on", dict(jit_compile=True)),
    ],
    # Mixed precision measured 3x (fp16) to 11x (bf16) slower than float32 on CPUs
    # without native bf16; mixed_bfloat16 with XLA falls back to no XLA on CPU.
    "precision": [
        ("float32", dict(precision="float32")),
        ("mixed_float16", dict(precision="mixed_float16")),
        ("mixed_bfloat16", dict(precision="mixed_bfloat16")),
    ],
    # Small batches: the same images per update as the base, in 2 or 4 micro-batches
    # (research/training/steps.py); what changes is BatchNorm's statistics per micro-batch.
    "accumulate": [
        ("1", lambda base: same_update_batch(base, 1)),
        ("2", lambda base: same_update_batch(base, 2)),
        ("4", lambda base: same_update_batch(base, 4)),
    ],
    "bn_policy": [
        ("sync", dict(bn_policy="sync")),
        ("train", dict(bn_policy="train")),
        ("frozen", dict(bn_policy="frozen")),
    ],
    "ema": [
        ("off", dict(ema_decay=None)),
        ("0.99", dict(ema_decay=0.99)),
        ("0.999", dict(ema_decay=0.999)),
    ],
    "decoder": [
        ("v3", dict(model="deeplab_v3")),
        ("v3+", dict(model="deeplab_v3_plus")),
    ],
    # Not an ablation but its noise floor: the base cell with other seeds (weights
    # and data order). A difference between cells smaller than this one is noise.
    "seed": [
        ("0", dict(seed=0)),
        ("1", dict(seed=1)),
        ("2", dict(seed=2)),
    ],
}
BASE_RUN = "base"


def same_update_batch(base, micro_batches):
    """Changes that train the base's images per update in `micro_batches` micro-batches.

    Raises ValueError (the cell is refused) when they do not divide evenly."""
    images = base.batch_size * base.accumulate_steps
    if images % micro_batches:
        raise ValueError(f"{images} images per update cannot be cut into {micro_batches} equal micro-batches")
    return dict(batch_size=images // micro_batches, accumulate_steps=micro_batches)
CSV_FIELDS = ("cell", "axis", "run", "overrides", "steps", "final_val_mean_iou", "best_val_mean_iou",
              "best_step", "final_val_loss", "final_val_pixel_accuracy", "images_per_second",
              "wall_seconds", "status")


class GridInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped a run after its checkpoint: the same command resumes."""


@dataclasses.dataclass
class Cell:
    """One cell of the grid: an axis value applied to the base config."""
    axis: str
    name: str          # "<axis>-<value>", e.g. "loss-dice"
    overrides: dict    # the fields this cell sets
    config: config_lib.Config
    run: str           # its folder under OUT/cells: BASE_RUN when the config equals the base's


def budget_changes(steps, evals):
    """Config changes that make a run train exactly `steps` steps, evaluating `evals` times."""
    if steps <= 0 or evals <= 0:
        raise ValueError(f"--steps and --evals must be positive; got {steps} and {evals}")
    if steps % evals:
        raise ValueError(f"--steps {steps} is not a multiple of --evals {evals}: every cell must train "
                         f"exactly --steps steps in --evals equal epochs (try --steps "
                         f"{steps - steps % evals or evals})")
    # Patience beyond the last epoch: no early stop and no LR drop within the budget.
    return dict(epochs=evals, steps_per_epoch=steps // evals, early_stop_patience=evals + 1,
                plateau_patience=evals + 1, export_best=False)


def resolve_auto(config):
    """`config` with precision and jit_compile "auto" replaced by what this machine runs.

    So that a cell saying `jit_compile=false` is recognised as the base run when the
    base's "auto" means off here, and the table says what actually ran. Only for the
    single-device ("default") strategy; with other strategies "auto" is left as is.
    Raises ValueError for a combination this machine refuses (XLA with determinism on CPU).
    """
    if config.distribute != "default":
        return config
    from research import runtime  # imports TensorFlow

    device = runtime.device_kind()
    precision = runtime.resolve_precision(config.precision, device)
    use_xla, _ = runtime.resolve_jit_compile(config.jit_compile, device, precision, 1,
                                             deterministic=config.deterministic)
    return config.replace(precision=precision, jit_compile=use_xla)


def check_trainable(config):
    """Raises ValueError, as training would at its start, when one step's images
    (batch_size x accumulate_steps) outnumber the train split's listed samples."""
    from research.data import datasets

    listed = len(datasets.dataset_of(config).split(config.train_subset, split_seed=config.split_seed))
    if config.batch_size * config.accumulate_steps > listed:
        raise ValueError(f"one step's {config.batch_size * config.accumulate_steps} images (batch_size x "
                         f"accumulate_steps) outnumber the {listed} listed in the {config.train_subset} split")


def _same_run(a, b):
    """Whether two configs train the same thing (their names may differ)."""
    return a.replace(name="") == b.replace(name="")


def field_axis(text):
    """(axis name, [(cell name, changes)]) of a `--axis FIELD=V1,V2,...` option: the field
    and its values, each parsed like `--set` (JSON where it parses, else the text)."""
    field, sep, values = text.partition("=")
    field = field.strip()
    if not sep or not field or not values.strip():
        raise ValueError(f"--axis {text!r} is not FIELD=V1,V2,...")
    if field not in {f.name for f in dataclasses.fields(config_lib.Config)}:
        raise ValueError(f"--axis {text!r}: unknown config field {field!r}")
    cells = []
    for raw in _split_values(values):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        cells.append((raw, {field: value}))
    return field, cells


def _split_values(text):
    """`text` split at the commas outside brackets ("[1,2],[3,4]" -> two values)."""
    values, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            values.append(current.strip())
            current = ""
        else:
            current += char
    return [v for v in values + [current.strip()] if v]


def make_cells(base, axes, steps, evals, overrides=(), deterministic=True, field_axes=()):
    """The base config and the grid's cells for the chosen axes.

    Args:
      base: a `research.config.Config`.
      axes: names from `AXES`, in the order to run them.
      steps, evals: the budget (see `budget_changes`).
      overrides: `key=value` strings applied to every cell, after the budget.
      deterministic: every cell runs with `deterministic=true` (bit-reproducible), so
        a cell differs from the base only by its override and not by thread-timing
        noise; the seed axis then shows the true seed-to-seed spread.
      field_axes: `--axis FIELD=V1,V2` texts (`field_axis`), after the named axes.
    Returns:
      (base_config, [Cell]): the budgeted base config (precision and XLA resolved) and
      the cells in run order.
    Raises:
      ValueError: an unknown axis, or cells the base config refuses (every one named,
        with its reason), before anything trains.
    """
    unknown = [a for a in axes if a not in AXES]
    if unknown or not (axes or field_axes):
        raise ValueError(f"unknown axes {', '.join(unknown) or '(none given)'}: choose from {', '.join(AXES)}, "
                         "or give --axis FIELD=V1,V2")
    base = config_lib.apply_overrides(base.replace(**budget_changes(steps, evals), deterministic=deterministic),
                                      overrides)
    base = resolve_auto(base)
    grid = [(axis, AXES[axis]) for axis in axes] + [field_axis(text) for text in field_axes]
    cells, refused = [], []
    for axis, values in grid:
        for value, changes in values:
            name = f"{axis}-{value}"
            try:
                changes = changes(base) if callable(changes) else dict(changes)
                config = resolve_auto(base.replace(**changes))
                check_trainable(config)
            except (ValueError, TypeError) as error:
                refused.append(f"{name}: {error}")
                continue
            run = BASE_RUN if _same_run(config, base) else run_folder(name)
            cells.append(Cell(axis, name, changes, config.replace(name=f"{base.name} ablation {run}"), run))
    if refused:
        raise ValueError("the base config refuses these cells (nothing was trained):\n  " + "\n  ".join(refused))
    _check_distinct_folders(cells)
    return base, cells


def run_folder(cell_name):
    """The folder name of a cell's run: its name without brackets, braces and quotes, and
    with any other character that a path or a glob pattern would read ("/", "*", "?",
    spaces, ...) as "_" ("input_size-[96,96]" -> "input_size-96,96"). TensorFlow finds a
    checkpoint by glob, so "[96,96]" in a path would match no file and a cell never resume."""
    kept = re.sub(r"[\[\]{}\"']", "", cell_name)
    return re.sub(r"[^A-Za-z0-9._,=+-]", "_", kept)


def _check_distinct_folders(cells):
    """Refuses two different cells whose run folders would be one ("a b" and "a_b")."""
    names = {}
    for cell in cells:
        other = names.setdefault(cell.run, cell.name)
        if other != cell.name and cell.run != BASE_RUN:
            raise ValueError(f"cells {other!r} and {cell.name!r} would share the folder cells/{cell.run}: "
                             "give one of them another value spelling")


def unique_runs(cells):
    """{run name: config}: the base run first (the reference), then in grid order."""
    runs = {}
    for cell in sorted(cells, key=lambda c: c.run != BASE_RUN):
        runs.setdefault(cell.run, cell.config)
    return runs


# ---------------------------------------------------------------------------------
# Running one cell.
# ---------------------------------------------------------------------------------
def read_history(workdir):
    """Rows of WORKDIR/train_log.csv with numbers as floats ([] when there is none)."""
    path = os.path.join(workdir, "train_log.csv")
    return results.read_train_log(path) if os.path.exists(path) else []


def is_finished(workdir, config):
    """True when the run in `workdir` trained all of `config`'s epochs with this config.

    Raises ValueError when `workdir` holds a run of a different config (another
    --steps, --set or base): it would not be resumed, and must not be reported.
    """
    saved_path = os.path.join(workdir, "config.json")
    if not os.path.exists(saved_path):
        return False
    saved = config_lib.load_config_file(saved_path)
    if not _same_run(saved, config):
        differences = [k for k, v in saved.to_dict().items() if k != "name" and v != getattr(config, k)]
        raise ValueError(f"{workdir} holds a run of a different config ({', '.join(differences)} differ); "
                         f"use another --out, or delete that folder to train it again")
    return len(read_history(workdir)) >= config.epochs


def _wall_file(workdir):
    return os.path.join(workdir, "ablation_wall.json")


def read_wall_seconds(workdir):
    """Seconds spent in train_and_evaluate for this run so far (over resumed sessions), or
    None before its first. Raises ValueError naming the file when it is damaged."""
    path = _wall_file(workdir)
    try:
        saved = read_json(path)
    except FileNotFoundError:
        return None
    try:
        return float(saved["wall_seconds"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: no number under \"wall_seconds\" ({error!r})") from None


def train_cell(config, workdir, hparam_fields=()):
    """Trains (or resumes) one run; returns its status. Adds its wall time to the workdir.
    `hparam_fields`: the grid's axes, shown for every run in TensorBoard's HParams tab.

    A run whose loss becomes NaN/Inf, or that fails with a ValueError once it runs (its
    data, say), is reported as failed with the reason, and the grid goes on. (Configs the
    machine refuses outright never get here: `make_cells` refuses them up front.)
    """
    from research import train  # imports TensorFlow: only when something is trained

    status = "resumed" if os.path.exists(os.path.join(workdir, "train_log.csv")) else "trained"
    start = time.perf_counter()
    try:
        train.train_and_evaluate(config, workdir, hparam_fields=hparam_fields)
    except (train.NonFiniteLossError, ValueError) as error:
        status = f"failed: {error}"
        print(f"  {status}", flush=True)
    except train.TrainingInterrupted as error:
        raise GridInterrupted(f"{error}; run the same command to resume") from None
    finally:
        # Also on Ctrl-C (TrainingInterrupted), so a resumed run's time adds up.
        atomic_write_json(_wall_file(workdir),
                          {"wall_seconds": (read_wall_seconds(workdir) or 0.0) + time.perf_counter() - start})
    return status


def summarize(cell, history, wall_seconds, status):
    """The ablation.csv row of a cell from its run's train_log.csv rows."""
    row = {"cell": cell.name, "axis": cell.axis, "run": cell.run,
           "overrides": " ".join(f"{k}={json.dumps(v)}" for k, v in cell.overrides.items()),
           "steps": cell.config.epochs * cell.config.steps_per_epoch,
           "wall_seconds": wall_seconds, "status": status}
    if not history:
        return row
    last = history[-1]
    best = max(history, key=lambda r: r["val_mean_iou"] if math.isfinite(r["val_mean_iou"]) else -1)
    # Throughput after the first epoch when there is one: the first holds tf.function
    # tracing (and XLA compilation), which would swamp a short budget's numbers.
    first = history[0] if len(history) > 1 else {"step": 0.0}
    timed = history[1:] or history
    seconds = sum(r["epoch_seconds"] for r in timed)
    images = (last["step"] - first["step"]) * cell.config.batch_size * cell.config.accumulate_steps
    row.update(final_val_mean_iou=last["val_mean_iou"], best_val_mean_iou=best["val_mean_iou"],
               best_step=int(best["step"]), final_val_loss=last["val_loss"],
               final_val_pixel_accuracy=last["val_pixel_accuracy"], steps=int(last["step"]),
               images_per_second=images / seconds if seconds > 0 else float("nan"))
    return row


# ---------------------------------------------------------------------------------
# Outputs.
# ---------------------------------------------------------------------------------
def _number(value, digits):
    return f"{value:.{digits}f}" if isinstance(value, float) and math.isfinite(value) else "-"


def write_csv(path, rows):
    """ablation.csv: one row per cell (CSV_FIELDS), written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())


def markdown_table(rows, header_lines=()):
    """The rows as a markdown table, grouped by axis in `AXES` order."""
    order = {axis: i for i, axis in enumerate(AXES)}
    rows = sorted(rows, key=lambda r: order.get(r["axis"], len(order)))  # stable: field axes last, in order
    lines = list(header_lines) + [
        "| axis | cell | overrides | final val mIoU | best val mIoU (step) | final val loss "
        "| final val pixel acc. | images/s | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        name = row["cell"] + (" (base)" if row["run"] == BASE_RUN else "")
        if row["status"].startswith("failed"):   # the reason's first line, as short as a cell allows
            reason = next(iter(row["status"].partition(":")[2].strip().splitlines()), "")
            reason = reason if len(reason) <= 90 else reason[:87] + "..."
            name += f" (failed: {reason.replace('|', '/')})" if reason else " (failed)"
        best = (f"{_number(row['best_val_mean_iou'], 4)} ({row['best_step']})"
                if "best_step" in row else "-")
        lines.append(
            f"| {row['axis']} | {name} | {row['overrides'].replace('|', '/')} "
            f"| {_number(row.get('final_val_mean_iou'), 4)} | {best} "
            f"| {_number(row.get('final_val_loss'), 4)} | {_number(row.get('final_val_pixel_accuracy'), 4)} "
            f"| {_number(row.get('images_per_second'), 1)} | {_number(row.get('wall_seconds'), 0)} |")
    return "\n".join(lines) + "\n"


def describe_base(base):
    """A sentence naming what the base run trains: model, data size, loss, runtime, budget."""
    every = base.steps_per_epoch
    model = base.model + (f" (output stride {base.output_stride})" if base.model == "deeplab_v3" else "")
    return (f"Base: config `{base.name}` with model {model}, backbone blocks {list(base.backbone_blocks)} "
            f"width {base.backbone_width}, weights {base.weights or 'none (from scratch)'}, BatchNorm "
            f"momentum {base.bn_momentum}, input {base.input_size[0]}x{base.input_size[1]}, batch "
            f"{base.batch_size}, ce_weight {base.ce_weight}, dice_weight {base.dice_weight}, class_weighted "
            f"{str(base.class_weighted).lower()}, precision {base.precision}, XLA "
            f"{'on' if base.jit_compile else 'off'}. Each cell trains {base.epochs * every} steps, "
            f"{schedules.schedule_text(base, schedules.schedule_steps(base, every))}, and is "
            f"evaluated on val every {every} steps.")


def seed_spread(rows):
    """(low, high, count) of the final val mean IoU over the seed axis' runs, or None."""
    values = [r["final_val_mean_iou"] for r in rows
              if r["axis"] == "seed" and math.isfinite(r.get("final_val_mean_iou", math.nan))]
    return (min(values), max(values), len(values)) if len(values) > 1 else None


def write_experiment(out, configs_of_runs, axes):
    """OUT/tensorboard: the grid's hparams (every value the runs take, the `axes` fields
    included) and metric columns for TensorBoard's HParams tab; each run writes its own
    settings (the axes too) and final metrics."""
    from research.training import hparams  # imports TensorFlow

    hparams.write_experiment(os.path.join(out, "tensorboard"), list(configs_of_runs), axes)


def write_outputs(out, rows, histories, base, command):
    """Writes ablation.csv, ablation.md and ablation.png in `out` (each atomically)."""
    from research.plots import line_chart
    from research.visualize import write_png

    write_csv(os.path.join(out, "ablation.csv"), rows)
    header = ["# Ablation", "", f"Command: `{command}`", "", describe_base(base), ""]
    spread = seed_spread(rows)
    if spread:
        low, high, count = spread
        header += [f"Noise floor: the base with {count} seeds ends between {low:.4f} and {high:.4f} "
                   f"final val mean IoU (spread {high - low:.4f}); smaller differences between cells "
                   "are not evidence.", ""]
    header += [
        "val loss is each cell's own training loss: compare it only between cells with the "
        "same loss. images/s is training throughput after the first evaluation (which "
        "includes tracing and compilation); wall s includes everything.",
        "",
    ]
    atomic_write_text(os.path.join(out, "ablation.md"), markdown_table(rows, header))
    series = [(run, [r["step"] for r in history], [r["val_mean_iou"] for r in history])
              for run, history in histories.items() if history]
    if series:
        picture = line_chart(series, title=f"val mean IoU against step ({base.epochs * base.steps_per_epoch} "
                                           "steps per cell)",
                             x_label="step", y_label="val mean IoU", width=960, height=560)
        write_png(os.path.join(out, "ablation.png"), picture)


# ---------------------------------------------------------------------------------
# The grid.
# ---------------------------------------------------------------------------------
def run_grid(base, cells, out, command="", train=train_cell):
    """Trains every run of `cells` not finished yet, writing the outputs after each.

    Args:
      base, cells: from `make_cells`.
      out: the output folder; run folders go to OUT/cells/<run>.
      command: the command line, quoted in ablation.md.
      train: `(config, workdir, hparam_fields=...) -> status` (`train_cell`; tests pass a
        stand-in).
    Returns:
      the ablation.csv rows. Prints which run is training and an ETA for the grid
      (from the seconds per step of the runs this invocation has trained so far).
    """
    runs = unique_runs(cells)
    steps = base.epochs * base.steps_per_epoch
    axes = sorted({field for cell in cells for field in cell.overrides})
    # Before anything is written: a folder holding another grid's runs is refused here.
    finished = {run: is_finished(os.path.join(out, "cells", run), config) for run, config in runs.items()}
    write_experiment(out, runs.values(), axes)
    statuses, histories = {}, {}
    trained_steps, trained_seconds = 0, 0.0

    def rows():
        return [summarize(c, histories.get(c.run, []), read_wall_seconds(os.path.join(out, "cells", c.run)),
                          statuses.get(c.run, "not run")) for c in cells]

    for index, (run, config) in enumerate(runs.items(), start=1):
        workdir = os.path.join(out, "cells", run)
        shared = [c.name for c in cells if c.run == run and c.name != run]
        names = f" (= {', '.join(shared)})" if shared else ""
        if finished[run]:
            statuses[run] = "done before"
            print(f"[{index}/{len(runs)}] {run}{names}: finished earlier, skipped", flush=True)
        else:
            remaining = sum(1 for r in list(runs)[index - 1:] if not finished[r])
            eta = (format_seconds(remaining * steps * trained_seconds / trained_steps)
                   if trained_steps else "after the first run")
            print(f"[{index}/{len(runs)}] {run}{names}: {steps} steps; grid ETA {eta}", flush=True)
            done_before = len(read_history(workdir)) * config.steps_per_epoch
            start = time.perf_counter()
            statuses[run] = train(config, workdir, hparam_fields=axes)
            trained_steps += steps - done_before
            trained_seconds += time.perf_counter() - start
        histories[run] = read_history(workdir)
        write_outputs(out, rows(), histories, base, command)  # after each run: partial tables
    return rows()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Train a base config and one-change variants of it (loss, model, XLA, "
                    "precision) for a fixed step budget; write a table and a chart.")
    parser.add_argument("--base", default="demo", help="named config or .json file (default demo)")
    parser.add_argument("--axes", default="loss,model,precision",
                        help=f"comma-separated subset of {','.join(AXES)} (default: "
                             "loss,model,precision; add seed for a noise reference; xla needs "
                             "--no-deterministic on CPU); empty with --axis")
    parser.add_argument("--axis", dest="field_axes", action="append", default=[], metavar="FIELD=V1,V2",
                        help="make any config field an axis, values parsed like --set "
                             "(e.g. --axis learning_rate=1e-3,1e-4 --axis input_size=[64,64],[96,96]); "
                             "repeatable, after the named axes")
    parser.add_argument("--steps", type=int, default=100, help="training steps per cell (default 100)")
    parser.add_argument("--evals", type=int, default=5,
                        help="val evaluations per cell, evenly spaced; --steps must be a multiple (default 5)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field for every cell (value parsed as JSON), repeatable")
    parser.add_argument("--out", default="runs/ablation", help="output folder (default runs/ablation)")
    parser.add_argument("--no-deterministic", dest="deterministic", action="store_false",
                        help="run cells without op determinism (a little faster; reruns then differ "
                             "by thread-timing noise)")
    results.add_json_argument(parser, "ablation")
    return parser.parse_args(argv)


def main(argv=None):
    """Returns the exit status."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    command = provenance.command_line("python scripts/ablate.py", argv)

    def work():
        base, cells = make_cells(configs.load_config(args.base), [a for a in args.axes.split(",") if a],
                                 args.steps, args.evals, args.overrides, args.deterministic, args.field_axes)
        rows = run_grid(base, cells, args.out, command)
        print(f"wrote {os.path.join(args.out, 'ablation.csv')}, ablation.md and ablation.png "
              f"({len(rows)} cells, {len(unique_runs(cells))} runs)")
        if args.json:
            saved = results.ablation_results(rows, describe_base(base), seed_spread(rows))
            print(f"result: {results.write_results(args.json, saved, command)}")

    return cli.run_main(work, interrupted=(GridInterrupted,), bad_file_hint=cli.SKIP_BAD_SET)
