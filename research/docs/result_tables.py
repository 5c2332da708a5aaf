"""Tables from the saved result files, `benchmarks/results/<machine>/<name>.json`.

The files and their schemas are research/results.py's; each table sits under its
file's provenance line. A name with no saved file gives one line saying which command
saves it.
"""
import glob
import os

from research import results as results_lib
from research.docs import tables
from research.tools import memory_breakdown

COMMANDS = {
    "demo": "make demo DEMO_REPORT_FLAGS=--json",
    "tflite": "python scripts/tflite_report.py --resnet-run runs/demo --json",
    "ablation": ("python scripts/ablate.py --base demo --axes loss,model,seed --steps 400 "
                 "--set input_size=[64,64] --set resize_to_before_crop=[64,64] "
                 "--set backbone_blocks=[1,1,1,1] --json"),
    "speedups": "python scripts/check_speedups.py",
    "models": "python -m research.models --json",
    "memory": "python scripts/memory_breakdown.py",
    "compare_accumulation": "python scripts/compare_runs.py runs/demo runs/demo_b4x2 --name accumulation --json",
    "compare_decoder": "python scripts/compare_runs.py runs/demo runs/demo_v3plus --name decoder --json",
}


def saved_results(root, name):
    """[(machine, results dict)] of every machine's `<name>.json`, by machine."""
    pattern = os.path.join(root, results_lib.RESULTS_DIR, "*", f"{name}.json")
    return [(os.path.basename(os.path.dirname(path)), results_lib.read_results(path))
            for path in sorted(glob.glob(pattern))]


def per_machine(root, name, what, render):
    """One section per machine that saved `<name>.json`: provenance line and `render(results)`."""
    found = saved_results(root, name)
    if not found:
        return tables.missing(what, COMMANDS[name], f"{results_lib.RESULTS_DIR}/<machine>/{name}.json")
    return tables.join_sections(tables.with_provenance(results["provenance"], render(results))
                                for _, results in found)


def demo_table(results):
    """The demo schema's results (research/results.py) as the demo-result table."""
    test, majority, training = results["test"], results["majority_class"], results["training"]
    wall = results.get("wall_seconds")
    rows = [
        [f"`{results['config']}` ({results['model']['source']}, step {results['model']['step']})",
         test["images"], tables.number(test["pixel_accuracy"], 4), tables.number(test["mean_accuracy"], 4),
         f"**{tables.number(test['mean_iou'], 4)}**",
         f"{training['steps']:,} steps in {tables.number(training['seconds'] / 60, 1)} min "
         f"({tables.number(training['images_per_second_last_epoch'], 1)} images/s at the end)",
         tables.number(wall / 60 if wall else None, 1, " min")],
        [f"majority class everywhere ({majority['name']})", test["images"],
         tables.number(majority["pixel_accuracy"], 4), tables.number(majority["mean_accuracy"], 4),
         tables.number(majority["mean_iou"], 4), "-", "-"],
    ]
    return tables.table(["model", "test images", "pixel accuracy", "mean accuracy", "mean IoU", "training",
                         "whole `make demo`"], rows)


def tflite_accuracy_table(results):
    """The tflite schema's accuracy rows as a table: size, test mean IoU, agreement with Keras."""
    rows = [[r["model"], r["file"], tables.number(r["file_bytes"] / 1e6 if r["file_bytes"] else None),
             tables.number(r["test_mean_iou"], 4), tables.number(r["vs_keras_points"], suffix=" points"),
             tables.number(100 * r["agreement_same_frame"], suffix="%"),
             tables.number(100 * r["agreement_float_resize"], suffix="%")]
            for r in results["accuracy"]]
    return tables.table(["model", "file", "file MB", "test mean IoU", "vs Keras",
                         "photo pixels = Keras, same uint8 frame", "= Keras, float resize"], rows)


def ablation_table(results):
    """The ablation schema: its base sentence, noise floor and per-cell table."""
    floor = results.get("noise_floor")
    lines = [results["base"]]
    if floor:
        lines.append(f"Noise floor: the base with {floor['runs']} seeds ends between {floor['low']:.4f} "
                     f"and {floor['high']:.4f} final val mean IoU (spread {floor['high'] - floor['low']:.4f}); "
                     "smaller differences between cells are not evidence.")
    rows = [[r["axis"], r["cell"], f"`{r['overrides']}`", tables.number(r.get("final_val_mean_iou"), 4),
             f"{tables.number(r.get('best_val_mean_iou'), 4)} ({r.get('best_step', '-')})",
             tables.number(r.get("images_per_second"), 1), r["status"].split(":")[0]]
            for r in results["rows"]]
    lines.append(tables.table(["axis", "cell", "overrides", "final val mean IoU", "best (step)", "images/s",
                               "status"], rows))
    return "\n\n".join(lines)


def speedups_table(results):
    """The speedups schema: each check's measured ratio against its floor."""
    def onednn(value):  # "on"/"off", or a bool
        return value if isinstance(value, str) else ("on" if value else "off")

    rows = [[f"`{name}`", f"oneDNN {onednn(c['onednn_baseline'])}",
             tables.number(c["baseline_seconds"], 4), tables.number(c["fast_seconds"], 4),
             tables.number(c["ratio"], suffix="x"), tables.number(c["floor"], 1, "x"),
             "ok" if c["passed"] else "**below floor**"]
            for name, c in sorted(results["checks"].items())]
    return tables.table(["check", "baseline runs with", "baseline s", "fast s", "speed-up", "floor", ""], rows)


GIB = 2 ** 30
MEMORY_RUNS = {      # memory_breakdown's experiments, in the order and words of the table
    "step_batch2": "the step, batch 2", "step_batch4": "the step, batch 4", "step_batch8": "the step, batch 8",
    "forward": "forward pass and loss only, batch 8", "gradients": "forward, loss and gradients, no update, batch 8",
    "loss_reference": "`loss_impl=\"reference\"`, batch 8", "atrous_keras": "`atrous=\"keras\"`, batch 8",
    "bn_frozen": "`bn_policy=\"frozen\"`, batch 8",
    "bn_frozen_autodiff": "`bn_policy=\"frozen\"`, autodiff's BatchNorm gradient (keeps the inputs), batch 8",
    "onednn_off": "oneDNN off (no allocator statistics), batch 8",
    "onednn_cache_off": "oneDNN's primitive cache off (`ONEDNN_PRIMITIVE_CACHE_CAPACITY=0`), batch 8",
    "system_allocator": "malloc instead of oneDNN's pool (`TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1`, no allocator statistics), batch 8",
    "one_malloc_arena": "one malloc arena (`MALLOC_ARENA_MAX=1`), batch 8",
    "xla": "`jit_compile=true`, batch 8",
}


def _gib(value):
    return tables.number(value / GIB if value is not None else None, 2)


def memory_runs_table(results):
    """Peak memory of each measured run (memory_breakdown's "current" measurement)."""
    runs = results["runs"]["current"]["runs"]
    rows = []
    for name, words in MEMORY_RUNS.items():
        if name in runs:
            run = runs[name]
            peak, _ = memory_breakdown.allocator_figures(run)
            seconds = run.get("step_seconds")
            rows.append([words, _gib(run["peak_rss_bytes"]), _gib(peak),
                         tables.number(min(seconds) if seconds else None, 2)])
    return tables.table(["DeepLab v3 R50, 384 px, the step alone", "peak RSS of the steps (GiB)",
                         "TF allocator peak (GiB)", "fastest step (s)"], rows)


def memory_breakdown_table(results):
    """Where the step's memory goes at its largest measured batch."""
    summary = results["runs"]["current"]["summary"]
    run = results["runs"]["current"]["runs"][summary["of"]]
    kept = run["kept_for_backward"]["by_reader"]
    kinds = summary["rss_by_kind"]
    rows = [["resident: TensorFlow's and Python's code (file-backed pages)", _gib(kinds["code_and_files"])],
            ["resident: heap (graphs, kernels, Python objects, small tensors)", _gib(kinds["heap"])],
            ["resident: other anonymous memory (stacks, malloc arenas)", _gib(kinds["other_anonymous"])],
            ["resident: TF's allocator pool (tensors of 256 KB or more)", _gib(kinds["large_anonymous"])],
            ["in the pool: weights (BatchNorm statistics included)", _gib(summary["weights_bytes"])],
            ["in the pool: optimizer slots (Adam's m and v)", _gib(summary["optimizer_slot_bytes"])],
            ["in the pool: activations kept for the backward", _gib(summary["kept_for_backward_bytes"])]]
    rows += [[f"- {reader}", _gib(size)] for reader, size in sorted(kept.items(), key=lambda kv: -kv[1])]
    rows.append(["in the pool: transient at the peak (gradients being formed)", _gib(summary["transient_at_peak_bytes"])])
    return tables.table([f"part ({MEMORY_RUNS[summary['of']]})", "GiB"], rows)


PEAK_SIDES = {"before": "made before the step (weights, optimizer slots, ...)",
              "forward": "made in the forward (nearly all kept for the backward)",
              "backward": "made in the backward (gradients being formed, their temporaries)"}


def memory_peak_table(results):
    """What is alive at the allocator peak of the largest batch's step (profiled)."""
    summary = results["runs"]["current"]["summary"]
    peak = results["runs"]["current"]["runs"][summary["of"]].get("alive_at_peak")
    if not peak:
        return "Not measured (this measurement has no profiled step)."
    sides = tables.table(["at the peak, by when it was made", "GiB"],
                         [[words, _gib(peak["by_side"].get(side, 0))] for side, words in PEAK_SIDES.items()])
    largest = "\n\n".join(
        f"The largest tensors {words} then:\n\n" + tables.table(
            ["tensor (the op that made it)", "shape", "MiB"],
            [[f"`{row['op']}`", f"`{row['shape']}`", tables.number(row["bytes"] / 2 ** 20, 1)]
             for row in peak["largest"][side]])
        for side, words in (("backward", "made in the backward"), ("forward", "kept from the forward")))
    when = (f"The peak, {_gib(peak['peak_bytes'])} GiB in the pool, comes {peak['peak_seconds']:.2f} s into a "
            f"profiled step ({MEMORY_RUNS[summary['of']]})")
    if peak.get("backward_start_seconds") is not None:
        when += f", {peak['peak_seconds'] - peak['backward_start_seconds']:.2f} s after its backward began"
    return f"{when}.\n\n{sides}\n\n{largest}"


def models_table(results):
    """The models schema's rows as a table: network, parameters and GFLOPs per config."""
    rows = [[f"`{r['config']}`", r["model"], r["backbone"], r.get("head") or "-", r.get("output_stride") or "-",
             "x".join(str(s) for s in r["input_size"]), f"{r['parameters']:,}", f"{r['non_trainable']:,}",
             tables.number(r["gflops"], 2),
             f"{tables.number(r['gflops_eval'], 2)} (OS{r['eval_output_stride']})" if r.get("gflops_eval") else "-"]
            for r in results["rows"]]
    return tables.table(["config", "model", "backbone", "head", "output stride", "input", "parameters",
                         "of which not trainable", "GFLOPs per image",
                         "at the evaluation output stride"], rows)


def comparison_table(results):
    """scripts/compare_runs.py's comparison: the budget, then one row per run."""
    rows = []
    for r in results["runs"]:
        reached = r.get("at_budget")
        rows.append([f"`{r['run']}`", f"`{r['config']}`", r["model"], r["backbone"], r["batch"], r["bn_policy"],
                     r["epochs"], f"{r['steps']:,}", tables.number(r["train_seconds"], 0),
                     f"{reached['val_mean_iou']:.4f} (epoch {reached['epoch']})" if reached else "-",
                     tables.number(r["final_val_mean_iou"], 4), tables.number(r["best_val_mean_iou"], 4),
                     tables.number(r.get("test_mean_iou"), 4)])
    budget = (f"Equal training time: {results['budget_seconds']:,.0f} s, the shortest run's (evaluation "
              "not counted); each run's val mean IoU at the last epoch it finished within it.")
    return budget + "\n\n" + tables.table(
        ["run", "config", "model", "backbone", "batch x accumulate_steps", "bn_policy", "epochs", "steps",
         "training s", "val mean IoU at equal time", "final val mean IoU", "best val mean IoU",
         "test mean IoU"], rows)


def newest_results(root, name):
    """(machine, results) of the newest saved `<name>.json` of any machine by its
    provenance date, or None when no machine saved one."""
    found = saved_results(root, name)
    return max(found, key=lambda item: str(item[1]["provenance"]["date"])) if found else None


def newest(root, name, what, render):
    """The newest saved `<name>.json` of any machine (for numbers that do not depend on the
    machine, such as parameter counts), under its provenance line."""
    found = newest_results(root, name)
    if not found:
        return tables.missing(what, COMMANDS[name], f"{results_lib.RESULTS_DIR}/<machine>/{name}.json")
    results = found[1]
    return tables.with_provenance(results["provenance"], render(results))


def block(name, what, render, machine_independent=False):
    """A block function `(root) -> markdown` for the results saved as `<name>.json`."""
    if machine_independent:
        return lambda root: newest(root, name, what, render)
    return lambda root: per_machine(root, name, what, render)
