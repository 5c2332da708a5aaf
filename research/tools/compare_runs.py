"""Compares finished training runs: at equal wall time, at their end, and on test.

    python scripts/compare_runs.py runs/demo runs/demo_v3plus --name decoder --json

For each run (a workdir of research.train, evaluated with research.evaluate --subset test
when its test numbers are wanted): its config, model, epochs, steps and training seconds,
the final and best val mean IoU, the test mean IoU (eval/metrics.json), and the val mean
IoU it had reached at the BUDGET: the training seconds of the shortest run, so a slower
model is judged on what it learned in the same time (the last epoch that ended within the
budget; the clock is train_log.csv's epoch_seconds, which leaves out evaluation). With
--json the comparison is saved with its provenance (research/results.py), for `make docs`.

`main` is the command line of scripts/compare_runs.py.
"""
import argparse
import os

from research import cli, provenance, results
from research import config as config_lib
from research.fileio import read_json


def read_run(workdir):
    """(Config, train_log.csv rows with floats, test metrics dict or None) of a run.

    Raises FileNotFoundError / ValueError naming the file when the run has no finished epoch.
    """
    config_path, log_path = os.path.join(workdir, "config.json"), os.path.join(workdir, "train_log.csv")
    try:
        # Through the config loader: a run of an older version gets today's defaults.
        config = config_lib.load_config_file(config_path)
        history = results.read_train_log(log_path)
    except FileNotFoundError as e:
        missing = e.filename or config_path    # the config loader's error names no filename
        raise FileNotFoundError(f"{missing}: not found (train the run with research.train first)") from None
    if not history:
        raise ValueError(f"{log_path}: no finished epoch yet")
    metrics_path = os.path.join(workdir, "eval", "metrics.json")
    metrics = read_json(metrics_path) if os.path.isfile(metrics_path) else None
    return config, history, metrics


def at_budget(history, budget_seconds):
    """{"epoch", "seconds", "val_mean_iou"} of the last epoch whose cumulative training
    seconds are within `budget_seconds` (None when even the first epoch took longer)."""
    elapsed, reached = 0.0, None
    for row in history:
        elapsed += row["epoch_seconds"]
        if elapsed > budget_seconds * (1 + 1e-9):
            break
        reached = {"epoch": int(row["epoch"]), "seconds": elapsed, "val_mean_iou": row["val_mean_iou"]}
    return reached


def run_names(workdirs):
    """A name per run folder: the last path components, as few as tell every folder from
    the others, the same number for all (runs/a/demo, runs/b/demo, runs/b/other ->
    a/demo, b/demo, b/other). The same folder twice keeps one name (it is one run)."""
    parts = [os.path.abspath(w).split(os.sep) for w in workdirs]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        folders = {}
        for name, path in zip(names, parts, strict=True):
            folders.setdefault(name, set()).add(tuple(path))
        if all(len(paths) == 1 for paths in folders.values()):
            return names
    return names


def compare(workdirs):
    """The `comparison` results (research/results.py) of the runs in `workdirs`."""
    runs = [(workdir, *read_run(workdir)) for workdir in workdirs]
    budget = min(sum(r["epoch_seconds"] for r in history) for _, _, history, _ in runs)
    rows = []
    for name, (workdir, config, history, metrics) in zip(run_names(workdirs), runs, strict=True):
        rows.append({
            "run": name, "config": config.name, "network": config_lib.network_of(config),
            "model": config.model, "backbone": config.backbone,
            "batch": f"{config.batch_size} x {config.accumulate_steps}",
            "bn_policy": config.bn_policy, "epochs": len(history),
            "steps": int(history[-1]["step"]), "train_seconds": sum(r["epoch_seconds"] for r in history),
            "final_val_mean_iou": history[-1]["val_mean_iou"],
            "best_val_mean_iou": max(r["val_mean_iou"] for r in history),
            "test_mean_iou": metrics["mean_iou"] if metrics else None,
            "at_budget": at_budget(history, budget)})
    return {"budget_seconds": budget, "runs": rows}


def format_table(comparison):
    """The comparison as a Markdown table."""
    lines = [f"Budget: {comparison['budget_seconds']:.0f} s of training (the shortest run's).", "",
             "| run | model | batch | epochs | train s | val mIoU at the budget (epoch) | final val mIoU "
             "| test mIoU |", "|---|---|---|---|---|---|---|---|"]
    for r in comparison["runs"]:
        reached = r["at_budget"]
        budget = f"{reached['val_mean_iou']:.4f} ({reached['epoch']})" if reached else "-"
        test = f"{r['test_mean_iou']:.4f}" if r["test_mean_iou"] is not None else "-"
        lines.append(f"| {r['run']} | {r['model']} | {r['batch']} | {r['epochs']} | {r['train_seconds']:.0f} "
                     f"| {budget} | {r['final_val_mean_iou']:.4f} | {test} |")
    return "\n".join(lines)


def main(argv=None):
    """Returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="WORKDIR", help="finished runs of research.train")
    parser.add_argument("--name", default="runs",
                        help="what is compared; --json alone saves to benchmarks/results/<machine>/"
                             "compare_<name>.json (default: runs)")
    parser.add_argument("--json", nargs="?", const=True, default=None, metavar="PATH",
                        help="also save the comparison with its provenance (default path: see --name)")
    args = parser.parse_args(argv)

    def work():
        comparison = compare(args.runs)
        print(format_table(comparison))
        if args.json:
            path = results.results_path(f"compare_{args.name}") if args.json is True else args.json
            command = provenance.command_line("python scripts/compare_runs.py", argv)
            print(f"result: {results.write_results(path, comparison, command)}")

    return cli.run_main(work)
