"""Tables from the saved pytest-benchmark runs, `benchmarks/baselines/<machine>/<python>/*.json`.

For each block, each machine's latest saved run that measured all of that block's
benchmark file gives its table, under its provenance line (`make bench` saves a run;
pytest-benchmark numbers the files, so the highest number is the latest). A run of some
cases only, such as `make bench BENCH_FLAGS='-k loss'`, gives the tables of the files it
measured whole and leaves the others at the run before it; its saved machine_info names
the files it measured in part (benchmarks/conftest.py). Where a machine has only such
runs of a file, the latest of them gives the table.
Every time is the MINIMUM over rounds (benchmarks/conftest.py says why), per step where a
call runs several steps.
"""
import glob
import os

from research import results as results_lib
from research.docs import tables
from research.fileio import read_json

SAVE_COMMAND = "make bench"


def saved_runs(root, file_name):
    """[(machine, python folder, path, run dict)], by machine: each machine's latest saved
    run that measured all of benchmarks/<file_name>, else its latest that measured part."""
    runs = []
    pattern = os.path.join(root, results_lib.BASELINES_DIR, "*", "*")
    for folder in sorted(p for p in glob.glob(pattern) if os.path.isdir(p)):
        chosen = None   # (path, run): the latest whole run, else the latest partial one
        for path in sorted(glob.glob(os.path.join(folder, "*.json")), reverse=True):
            run = read_json(path)
            if not benchmarks_of(run, file_name):
                continue
            chosen = chosen or (path, run)
            if file_name not in run.get("machine_info", {}).get("partial_files", []):
                chosen = (path, run)
                break
        if chosen:
            runs.append((os.path.basename(os.path.dirname(folder)), os.path.basename(folder), *chosen))
    return runs


def run_provenance(machine, run):
    """The provenance block of a saved run (older runs did not record TF or the command)."""
    info, commit = run.get("machine_info", {}), run.get("commit_info", {})
    commit_id = (commit.get("id") or "unknown")[:7] + ("+dirty" if commit.get("dirty") else "")
    return {"machine": machine, "tensorflow": info.get("tensorflow", "(not recorded)"),
            "commit": commit_id, "date": run.get("datetime", "unknown"),
            "command": info.get("command", SAVE_COMMAND)}


def seconds(bench):
    """Minimum seconds per step (per call when a call is one step)."""
    return bench["stats"]["min"] / bench.get("extra_info", {}).get("steps_per_call", 1)


def items_per_second(bench):
    """Items (images) per second at the minimum time, or None when the case counts none."""
    per_call = bench.get("extra_info", {}).get("items_per_call")
    return per_call / bench["stats"]["min"] if per_call else None


def benchmarks_of(run, file_name):
    """The run's benchmarks of benchmarks/<file_name>, in run order."""
    return [b for b in run["benchmarks"] if b["fullname"].startswith(f"benchmarks/{file_name}::")]


def per_machine(root, file_name, render):
    """One section per machine with a run of benchmarks/<file_name> (its latest): its provenance
    line and `render(benchmarks)`; one line saying how to save a run when none does."""
    sections = []
    for machine, _, _, run in saved_runs(root, file_name):
        sections.append(tables.with_provenance(run_provenance(machine, run), render(benchmarks_of(run, file_name))))
    if not sections:
        return tables.missing(f"benchmark run with {file_name}", SAVE_COMMAND,
                              f"{results_lib.BASELINES_DIR}/<machine>/")
    return tables.join_sections(sections)


# ---------------------------------------------------------------------------------
# The train step.
# ---------------------------------------------------------------------------------
# One optimization off, or (bn_policy) another BatchNorm policy than the default.
SWITCHED_OFF = ("loss", "atrous", "batchnorm", "atrous_backward", "bn_policy")


def case_changes(case):
    """What a train-step case changes from the project's step: its optimizations switched
    off and op determinism, as readable words (empty for the project's own step)."""
    extras = [f"{k} {case[k]}" for k in SWITCHED_OFF if k in case]
    return extras + (["deterministic"] if case.get("deterministic") else [])


def is_default_case(case):
    """Whether a train-step case is the project's default step on a CPU: the custom loop,
    oneDNN on, XLA off, nothing switched off (at any batch)."""
    return (case.get("trainer") == "custom" and bool(case.get("onednn")) and not case.get("xla")
            and not case_changes(case))


def train_step_batch(bench):
    """The batch of a saved train-step benchmark: recorded in extra_info (older runs: in
    the case, which names it only where it is not the default, or from items per step)."""
    info = bench["extra_info"]
    return (info.get("batch") or info.get("case", {}).get("batch")
            or info["items_per_call"] // info.get("steps_per_call", 1))


def describe_train_case(case):
    """A readable label for a train-step case dict (bench_train_step.CASES); a case names
    its batch only where it is not the benchmark's default, and so does the label."""
    trainer = "custom loop" if case["trainer"] == "custom" else "Keras `fit`"
    parts = [f"{case['model']} {trainer}", f"oneDNN {'on' if case['onednn'] else 'off'}"]
    if case["trainer"] == "custom":
        parts.append(f"XLA {'on' if case['xla'] else 'off'}")
    if "batch" in case:
        parts.append(f"batch {case['batch']}")
    extras = case_changes(case)
    label = ", ".join(parts) + ("; " + ", ".join(extras) if extras else "")
    return f"**{label} (project default on CPU)**" if is_default_case(case) else label


def train_step_table(found):
    """Rows per case: s/step, images/s, the ratio to `fit` (same model and batch) with
    oneDNN off and on, achieved GFLOP/s and its share of the dense-conv probe, and the
    worker's peak memory over the timed steps (runs that recorded it)."""
    fits = {(b["extra_info"]["case"]["model"], train_step_batch(b), b["extra_info"]["case"]["onednn"]): seconds(b)
            for b in found if b["extra_info"]["case"]["trainer"] == "fit"}
    rows = []
    for bench in found:
        info, step = bench["extra_info"], seconds(bench)
        case = info["case"]
        ratios = [fits.get((case["model"], train_step_batch(bench), onednn)) for onednn in (False, True)]
        flops, memory = info.get("achieved_flops_per_s"), info.get("peak_rss_bytes")
        rows.append([describe_train_case(case), tables.number(step), tables.number(items_per_second(bench), 3)]
                    + [tables.number(r / step, suffix="x") if r else "-" for r in ratios]
                    + [tables.number(flops / 1e9 if flops else None, 1),
                       tables.number(100 * info["fraction_of_dense_conv"], 0, "%")
                       if "fraction_of_dense_conv" in info else "-",
                       tables.number(memory / 2 ** 30 if memory else None)])
    return tables.table(["case", "s/step", "images/s", "vs `fit` oneDNN off", "vs `fit` oneDNN on",
                         "GFLOP/s", "of the dense-conv probe", "peak memory (GiB)"], rows)


def train_step_summary(found):
    """One row: the project's default custom step against `fit` (DeepLab v3)."""
    by_id = {b["param"]: seconds(b) for b in found}
    custom = by_id.get("deeplab_v3-custom-onednn_on-xla_off")
    fits = [by_id.get(f"deeplab_v3-fit-onednn_{s}") for s in ("off", "on")]
    if custom is None:
        return "The saved run has no default train-step case."
    row = [tables.number(custom)] + [tables.number(f) for f in fits] + [
        tables.number(f / custom, suffix="x") if f else "-" for f in fits]
    return tables.table(["custom loop s/step", "`fit` oneDNN off", "`fit` oneDNN on", "vs `fit` oneDNN off",
                         "vs `fit` oneDNN on"], [row])


# ---------------------------------------------------------------------------------
# Kernels and other groups: fast cases against a baseline case of the same group.
# ---------------------------------------------------------------------------------
def comparison_table(found, is_baseline=None, baseline_name="baseline"):
    """Rows per case: group, case, minimum seconds, items/s and (with `is_baseline(param)`)
    the speed-up over that group's baseline case."""
    baselines = {b["group"]: seconds(b) for b in found if is_baseline and is_baseline(b["param"])}
    header = ["group", "case", "s (min)", "items/s"]
    if is_baseline:
        header.append(f"speed-up vs {baseline_name}")
    rows = []
    for bench in found:
        row = [bench["group"] or bench["name"], f"`{bench['param'] or bench['name']}`",
               tables.number(seconds(bench), 4), tables.number(items_per_second(bench), 1)]
        if is_baseline:
            base = baselines.get(bench["group"])
            row.append(tables.number(base / seconds(bench), suffix="x") if base else "-")
        rows.append(row)
    return tables.table(header, rows)


def atrous_table(found):
    """A table of bench_atrous.py's cases against Keras' dilated Conv2D (`found`: the run's benchmarks of that file)."""
    return comparison_table(found, lambda p: p.endswith("-keras"), "Keras dilated `Conv2D`")


def loss_table(found):
    """A table of bench_losses.py's cases against the reference loss (`found`: the run's benchmarks of that file)."""
    return comparison_table(found, lambda p: p == "reference-plain", "`reference_ce_dice_loss`")


def confusion_table(found):
    """A table of bench_confusion.py's cases against the reference confusion matrix (`found`: the run's benchmarks of that file)."""
    return comparison_table(found, lambda p: p.startswith("reference"), "the book's per-class masks")


def batchnorm_table(found):
    """A table of bench_batchnorm.py's cases against Keras' BatchNormalization (`found`: the run's benchmarks of that file)."""
    return comparison_table(found, lambda p: p.startswith("keras"), "Keras `BatchNormalization`")


def nan_guard_table(found):
    """Rows per case: ms per step (or per check) and that as a share of the unguarded step."""
    unguarded = {b["group"]: seconds(b) for b in found if b["param"].endswith("-unguarded")}
    rows = []
    for bench in found:
        base = unguarded.get(bench["group"])
        rows.append([bench["group"], f"`{bench['param']}`", tables.number(1000 * seconds(bench), 1),
                     tables.number(100 * seconds(bench) / base, 1, "%") if base else "-"])
    return tables.table(["group", "case", "ms per step or check (min)", "of the unguarded step"], rows)


def pipeline_table(found):
    """Pipeline images/s, and the decoders compared (extra_info of test_decode_alternatives)."""
    rows = []
    for bench in found:
        info = bench["extra_info"]
        if bench["name"] == "test_decode_alternatives":
            rows += [[f"decode: {k}", tables.number(v, 0)] for k, v in sorted(info.items())
                     if k not in ("items_per_s", "items_per_call")]
        else:
            rows.append([bench["name"].replace("test_", ""), tables.number(items_per_second(bench), 0)])
    return tables.table(["case", "files or images/s"], rows)


def tflite_table(found):
    """Rows per (backbone, size, mode): file size and minimum ms per frame, 1 and 2 threads."""
    cells = {}
    for bench in found:
        p = bench["params"]
        key = (p["backbone"], p["size"], p["mode"])
        cells.setdefault(key, {"bytes": bench["extra_info"].get("file_bytes")})[p["threads"]] = seconds(bench)
    rows = [[backbone, f"{size}x{size}", mode, tables.number(c["bytes"] / 1e6 if c["bytes"] else None, 1),
             tables.number(1000 * c[1] if 1 in c else None, 1), tables.number(1000 * c[2] if 2 in c else None, 1)]
            for (backbone, size, mode), c in cells.items()]
    return tables.table(["backbone (random weights, OS16)", "size", "mode", "file MB", "ms/frame 1 thread",
                         "ms/frame 2 threads"], rows)


def block(file_name, render):
    """A block function `(root) -> markdown` for benchmarks/<file_name> rendered by `render`."""
    return lambda root: per_machine(root, file_name, render)
