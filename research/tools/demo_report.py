"""Writes the `make demo` report: training curve, test metrics against a majority baseline.

    python scripts/demo_report.py --workdir runs/demo [--started-at EPOCH_SECONDS] [--json [PATH]]

Reads WORKDIR/train_log.csv and WORKDIR/eval/metrics.json (written by research.train
and research.evaluate) and writes WORKDIR/REPORT.md; with --json also the numbers with
their provenance (research/results.py), for `make docs`. The baseline is what predicting
every pixel as the test set's most frequent class scores: a model that learned nothing
useful scores about that.

`main` is the command line of scripts/demo_report.py.
"""
import argparse
import os
import time

import numpy as np

from research import cli, provenance, results
from research.config import DEEPLAB_MODELS, Config, config_from_dict, network_of
from research.data.voc import CLASS_NAMES
from research.fileio import atomic_write_text, read_json
from research.training import schedules


def majority_baseline(confusion):
    """Metrics of predicting the most frequent true class everywhere.

    Args:
      confusion: int [C, C], rows = true class, columns = predicted class.
    Returns:
      dict with class (index), pixel_accuracy, mean_iou (over classes in the labels).
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    true_counts = confusion.sum(axis=1)
    majority = int(np.argmax(true_counts))
    total = true_counts.sum()
    present = true_counts > 0
    # Predicting `majority` everywhere: its IoU is n_majority / total, every other
    # labelled class has IoU 0 (no true positives, non-zero union).
    iou = np.where(np.arange(len(true_counts)) == majority, true_counts[majority] / total, 0.0)
    # Mean accuracy (recall averaged over labelled classes): 1 for `majority`, 0 elsewhere.
    return {"class": majority, "pixel_accuracy": true_counts[majority] / total,
            "mean_accuracy": 1.0 / present.sum(), "mean_iou": float(iou[present].mean())}


def class_names(num_classes):
    """VOC's class names for a 21-class run, else the indices as strings."""
    return list(CLASS_NAMES) if num_classes == len(CLASS_NAMES) else [str(i) for i in range(num_classes)]


# What the report reads from eval/metrics.json (written by research.evaluate).
METRICS_KEYS = ("confusion_matrix", "model", "num_images", "pixel_accuracy", "mean_accuracy", "mean_iou")


def read_metrics(path):
    """eval/metrics.json as a dict; ValueError naming the file when it is not JSON or
    lacks a key the report reads (`METRICS_KEYS`)."""
    metrics = read_json(path)
    missing = [k for k in METRICS_KEYS if not isinstance(metrics, dict) or k not in metrics]
    if missing:
        raise ValueError(f"{path}: lacks {', '.join(missing)} (write it with research.evaluate)")
    return metrics


def read_config(path):
    """The "config" dict of a run's config.json, or None when the run has none."""
    if not os.path.exists(path):
        return None
    saved = read_json(path)
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        raise ValueError(f'{path}: no "config" object (written by research.train)')
    return saved["config"]


def recipe_text(config):
    """One sentence naming the run's recipe (from its config.json "config" dict).

    Fields the dict lacks (a run written before the field existed) read as the Config
    default, so the defaults live in research/config.py only.
    """
    config = {**Config().to_dict(), **config}
    steps = config["total_steps"] or config["epochs"] * (config["steps_per_epoch"] or 0) or "all"
    optimizer = config["optimizer"]
    if optimizer == "sgd":
        optimizer += f" (momentum {config['momentum']:g})"
    augmentation = (f"scale {config['scale_range'][0]:g}-{config['scale_range'][1]:g} + crop"
                    if config["scale_range"] else "crop-or-resize")
    stride = f"output stride {config['output_stride']}"
    if config["eval_output_stride"] not in (None, config["output_stride"]):
        stride += f" (evaluated at {config['eval_output_stride']})"
    if config["model"] in DEEPLAB_MODELS and config["head"] == "aspp":
        rates = ", ".join(str(r) for r in config["aspp_rates"])
        stride += f", ASPP rates ({rates}) x {config['aspp_filters']} channels"
    return (f"Recipe: {optimizer}, {schedules.schedule_text(config, steps)}, weight decay "
            f"{config['weight_decay']:g}, batch {config['batch_size']}, input "
            f"{config['input_size'][0]}x{config['input_size'][1]}, {augmentation}, {stride}, BatchNorm "
            f"momentum {config['bn_momentum']}, deterministic {str(config['deterministic']).lower()}.")


def metrics_class_names(metrics):
    """The class names of an evaluation's metrics.json in class order: its "class_names"
    (the dataset's), else VOC's for 21 classes, else the indices. (Not the keys of its
    per-class tables: the file is written with sorted keys.)"""
    num_classes = len(metrics["confusion_matrix"])
    names = list(metrics.get("class_names") or ())
    if len(names) == num_classes:
        return names
    return class_names(num_classes)


def report_text(workdir, history, metrics, baseline, wall_seconds, config=None):
    """REPORT.md's Markdown: the recipe, the test metrics against the majority-class
    baseline, the training at a glance and the per-epoch table."""
    names = metrics_class_names(metrics)
    model = metrics["model"]
    training = results.training_summary(history)
    lines = [
        f"# Demo report: {os.path.basename(os.path.abspath(workdir))}",
        "",
        f"Test subset: {metrics['num_images']} images; model: {model.get('source')} "
        f"(step {model.get('step')}).",
        "",
        "| | pixel accuracy | mean accuracy | mean IoU |",
        "|---|---|---|---|",
        f"| this model | {metrics['pixel_accuracy']:.4f} | {metrics['mean_accuracy']:.4f} | {metrics['mean_iou']:.4f} |",
        f"| majority class everywhere ({names[baseline['class']]}) "
        f"| {baseline['pixel_accuracy']:.4f} | {baseline['mean_accuracy']:.4f} | {baseline['mean_iou']:.4f} |",
        "",
        f"Training: {training['epochs']} epochs, {training['steps']} steps, {training['seconds']:.0f} s "
        f"({training['images_per_second_last_epoch']:.1f} images/s in the last epoch); "
        f"best val mean IoU {training['best_val_mean_iou']:.4f} at epoch {training['best_epoch']}.",
    ]
    if config:
        lines.append(recipe_text(config))
    if wall_seconds is not None:
        lines.append(f"Wall time of the whole demo (data, training, evaluation): {wall_seconds / 60:.1f} min.")
    lines += ["", "| epoch | step | loss | val loss | val mean IoU | learning rate (last step) |",
              "|---|---|---|---|---|---|"]
    for row in history:
        lines.append(f"| {row['epoch']} | {row['step']} | {float(row['loss']):.4f} | {float(row['val_loss']):.4f} | "
                     f"{float(row['val_mean_iou']):.4f} | {float(row['learning_rate']):.3g} |")
    lines += ["", "Pictures: eval/samples.png (image | truth | prediction | errors), eval/hardest.png, "
              "eval/confusion.png; per-class table: eval/per_class.csv.", ""]
    return "\n".join(lines)


def main(argv=None):
    """Returns the exit status (1 with one line on stderr when the run is missing or unfinished)."""
    parser = argparse.ArgumentParser(description="Write the demo's REPORT.md from a trained and evaluated run.")
    parser.add_argument("--workdir", required=True, help="a trained run evaluated with --subset test")
    parser.add_argument("--started-at", type=float, default=None,
                        help="Unix time the demo started, for the wall time")
    results.add_json_argument(parser, "demo")
    args = parser.parse_args(argv)
    wall = time.time() - args.started_at if args.started_at else None
    command = provenance.command_line("python scripts/demo_report.py", argv)
    return cli.run_main(lambda: write_report(args.workdir, wall, args.json, command))


def write_report(workdir, wall_seconds=None, json_path=None, command=None):
    """Writes WORKDIR/REPORT.md (`report_text`) and prints it; with `json_path`, also the
    numbers with their provenance (`command` made them), for `make docs`.

    Raises FileNotFoundError or ValueError naming the file when the run is not trained
    and evaluated yet (no train_log.csv or eval/metrics.json, no finished epoch).
    """
    log_path = os.path.join(workdir, "train_log.csv")
    metrics_path = os.path.join(workdir, "eval", "metrics.json")
    try:
        history = results.read_train_log(log_path, as_numbers=False)
        if not history:
            raise ValueError(f"{log_path}: no finished epoch yet (header only)")
        metrics = read_metrics(metrics_path)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{e.filename}: not found (train with research.train and evaluate with "
                                "research.evaluate --subset test first)") from None
    baseline = majority_baseline(metrics["confusion_matrix"])
    config_path = os.path.join(workdir, "config.json")
    config = read_config(config_path)
    text = report_text(workdir, history, metrics, baseline, wall_seconds, config)
    atomic_write_text(os.path.join(workdir, "REPORT.md"), text)
    print(text)
    print(f"report: {os.path.join(workdir, 'REPORT.md')}")
    if json_path:
        majority_name = metrics_class_names(metrics)[baseline["class"]]
        network = network_of(config_from_dict(config, source=config_path)) if config else None
        saved = results.demo_results((config or {}).get("name", "custom"), history, metrics, baseline,
                                     majority_name, wall_seconds, network)
        print(f"result: {results.write_results(json_path, saved, command)}")
