"""Saved results: measured numbers as JSON with their provenance, for `make docs`.

A producer saves `{"provenance": {...}, ...its numbers...}` (research/provenance.py says
what the block holds) to `benchmarks/results/<machine>/<name>.json` when given `--json`
(or to the PATH given after it); research/docs/result_tables.py turns each file into a
table. The schemas, by name and producer:

demo (`python scripts/demo_report.py --workdir runs/demo --json`; `make demo
DEMO_REPORT_FLAGS=--json`), built by `demo_results`:
    {"config": "demo", "network": {field: value} (research.config.network_of) or null,
     "model": {"source", "step"},
     "test": {"images", "pixel_accuracy", "mean_accuracy", "mean_iou"},
     "majority_class": {"name", "pixel_accuracy", "mean_accuracy", "mean_iou"},
     "training": {"epochs", "steps", "seconds", "images_per_second_last_epoch",
                  "best_val_mean_iou", "best_epoch"},
     "wall_seconds": float or null}
tflite (`python scripts/tflite_report.py --json`), built by `tflite_results`:
    {"latency": [{"backbone", "size", "mode", "file_bytes", "ms_per_frame_1_thread",
                  "ms_per_frame_2_threads"}],
     "accuracy": [{"model", "file", "file_bytes" (null for the Keras model), "test_mean_iou",
                   "vs_keras_points", "agreement_same_frame", "agreement_float_resize"}]}
ablation (`python scripts/ablate.py ... --json`), built by `ablation_results`:
    {"base": "<a sentence>", "noise_floor": {"low", "high", "runs"} or null,
     "rows": [ablation.csv's rows: {"cell", "axis", "overrides", "steps", "final_val_mean_iou",
              "best_val_mean_iou", "best_step", "final_val_loss", "final_val_pixel_accuracy",
              "images_per_second", "wall_seconds", "status"}]}
speedups (`python scripts/check_speedups.py`):
    {"checks": {name: {"ratio", "floor", "passed", "fast_seconds", "baseline_seconds",
                       "onednn_baseline"}}}
models (`python -m research.models --json`):
    {"rows": [{"config", "model", "backbone", "head", "output_stride", "input_size": [h, w],
               "network": {field: value} (research.config.network_of), "parameters", "trainable", "non_trainable", "gflops", ...}]}
compare_<name> (`python scripts/compare_runs.py RUN RUN ... --name NAME --json`), built by
research.tools.compare_runs.compare:
    {"budget_seconds": the shortest run's training seconds,
     "runs": [{"run" (the workdir's name, with as many parent folders as tell it from the
               others'), "config" (its config's name), "network" (research.config.network_of),
               "model", "backbone",
               "batch" ("<batch_size> x <accumulate_steps>"), "bn_policy", "epochs", "steps",
               "train_seconds", "final_val_mean_iou", "best_val_mean_iou",
               "test_mean_iou" (null without eval/metrics.json),
               "at_budget": {"epoch", "seconds", "val_mean_iou"} or null}]}

Standard library only.
"""
import csv
import json
import os

from research import provenance as provenance_lib
from research.fileio import atomic_write_json, read_json

RESULTS_DIR = os.path.join("benchmarks", "results")
BASELINES_DIR = os.path.join("benchmarks", "baselines")


def results_path(name, machine=None, root=provenance_lib.REPO):
    """`ROOT/benchmarks/results/<machine>/<name>.json`, this machine's by default."""
    return os.path.join(root, RESULTS_DIR, machine or provenance_lib.machine_id(), f"{name}.json")


def add_json_argument(parser, name):
    """Adds `--json [PATH]` to an argparse parser: save the results with their provenance
    to PATH or, given alone, to benchmarks/results/<machine>/<name>.json."""
    parser.add_argument("--json", nargs="?", const=results_path(name), default=None, metavar="PATH",
                        help=f"also save the numbers with their provenance as JSON to PATH (alone: "
                             f"{RESULTS_DIR}/<machine>/{name}.json, which `make docs` reads)")


def write_results(path, results, command):
    """Writes `{"provenance": ..., **results}` as JSON to `path`, atomically; returns `path`."""
    atomic_write_json(path, {"provenance": provenance_lib.provenance(command), **results})
    return path


def read_results(path):
    """Reads a results file; raises ValueError naming the file when it is not JSON or its
    provenance block lacks a key."""
    data = read_json(path)
    block = data.get("provenance") if isinstance(data, dict) else None
    missing = [k for k in provenance_lib.PROVENANCE_KEYS if not isinstance(block, dict) or k not in block]
    if missing:
        raise ValueError(f"{path}: the provenance block lacks {', '.join(missing)} "
                         "(save results with research.results.write_results)")
    return data


def read_train_log(path, as_numbers=True):
    """The rows of a run's train_log.csv (one dict per epoch, keyed by column).

    Every value must be a number: with `as_numbers` the rows hold floats, else the
    strings as written (for printing them back). Raises FileNotFoundError when the file
    is missing and ValueError naming the file when a value is not a number or a row is
    short.
    """
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not a UTF-8 text file ({error.reason} at byte {error.start})") from None
    numbers = []
    for line, row in enumerate(rows, start=2):
        try:
            numbers.append({k: float(v) for k, v in row.items()})
        except (TypeError, ValueError) as error:  # a short row holds None
            raise ValueError(f"{path}: line {line} is not a row of numbers ({error})") from None
    return numbers if as_numbers else rows


def training_summary(history):
    """A run's training at a glance from its train_log.csv rows (dicts of strings, one
    per epoch): {"epochs", "steps", "seconds" (of training), "images_per_second_last_epoch",
    "best_val_mean_iou", "best_epoch"}. Raises ValueError when there is no epoch."""
    if not history:
        raise ValueError("the run's train_log.csv has no epoch")
    best = max(history, key=lambda r: float(r["val_mean_iou"]))
    return {"epochs": len(history), "steps": int(history[-1]["step"]),
            "seconds": sum(float(r["epoch_seconds"]) for r in history),
            "images_per_second_last_epoch": float(history[-1]["images_per_second"]),
            "best_val_mean_iou": float(best["val_mean_iou"]), "best_epoch": int(best["epoch"])}


def demo_results(config_name, history, metrics, majority, majority_name, wall_seconds, network=None):
    """The `demo` schema from a run's train_log.csv rows (dicts of strings), its
    eval/metrics.json, the majority-class baseline and its network
    (`research.config.network_of`, None when unknown) (scripts/demo_report.py)."""
    return {
        "config": config_name, "network": network,
        "model": {"source": metrics["model"].get("source"), "step": metrics["model"].get("step")},
        "test": {"images": metrics["num_images"],
                 **{k: metrics[k] for k in ("pixel_accuracy", "mean_accuracy", "mean_iou")}},
        "majority_class": {"name": majority_name,
                           **{k: majority[k] for k in ("pixel_accuracy", "mean_accuracy", "mean_iou")}},
        "training": training_summary(history),
        "wall_seconds": wall_seconds,
    }


def tflite_results(latency, accuracy):
    """The `tflite` schema from scripts/tflite_report.py's row tuples:
    latency (backbone, size, mode, bytes, ms 1 thread, ms 2 threads) and accuracy (model,
    file, bytes or None, test mIoU, points vs Keras, same-frame and float-resize agreement)."""
    return {
        "latency": [dict(zip(("backbone", "size", "mode", "file_bytes", "ms_per_frame_1_thread",
                              "ms_per_frame_2_threads"), row)) for row in latency],
        "accuracy": [dict(zip(("model", "file", "file_bytes", "test_mean_iou", "vs_keras_points",
                               "agreement_same_frame", "agreement_float_resize"), row)) for row in accuracy],
    }


def ablation_results(rows, base_sentence, spread):
    """The `ablation` schema from ablation.csv's rows, the base's description and the seed
    spread `(low, high, runs)` or None (scripts/ablate.py)."""
    floor = None if spread is None else dict(zip(("low", "high", "runs"), spread))
    return {"base": base_sentence, "noise_floor": floor, "rows": [dict(r) for r in rows]}
