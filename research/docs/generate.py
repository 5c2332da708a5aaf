"""`make docs`: regenerate every generated block of README.md and docs/*.md.

`BLOCKS` maps a block's name to the function that writes its Markdown from the
repository at `root`. Measured tables read saved artifacts only (benchmarks/baselines/,
benchmarks/results/); nothing here runs a model or times anything. To add a table: write
its function, name it here, and put the name's markers where the table belongs.
"""
import glob
import os

from research.docs import bench_tables, cli_reference, config_reference, markers, result_tables, zoo

BLOCKS = {
    # References, from the code.
    "config-fields": lambda root: config_reference.fields_table(),
    "named-configs": lambda root: config_reference.named_configs_table(),
    "command-lines": cli_reference.reference,
    # Saved pytest-benchmark runs (make bench), one table per machine.
    "bench-train-step": bench_tables.block("bench_train_step.py", bench_tables.train_step_table),
    "bench-train-step-summary": bench_tables.block("bench_train_step.py", bench_tables.train_step_summary),
    "bench-atrous": bench_tables.block("bench_atrous.py", bench_tables.atrous_table),
    "bench-loss": bench_tables.block("bench_losses.py", bench_tables.loss_table),
    "bench-confusion": bench_tables.block("bench_confusion.py", bench_tables.confusion_table),
    "bench-batchnorm": bench_tables.block("bench_batchnorm.py", bench_tables.batchnorm_table),
    "bench-nan-guard": bench_tables.block("bench_nan_guard.py", bench_tables.nan_guard_table),
    "bench-pipeline": bench_tables.block("bench_pipeline.py", bench_tables.pipeline_table),
    "bench-tflite": bench_tables.block("bench_tflite.py", bench_tables.tflite_table),
    # Saved results (benchmarks/results/<machine>/<name>.json).
    "demo-result": result_tables.block("demo", "`make demo` result", result_tables.demo_table),
    "tflite-accuracy": result_tables.block("tflite", "TFLite report", result_tables.tflite_accuracy_table),
    "ablation": result_tables.block("ablation", "ablation", result_tables.ablation_table),
    "speedups": result_tables.block("speedups", "speed-up check", result_tables.speedups_table),
    "memory-runs": result_tables.block("memory", "memory breakdown", result_tables.memory_runs_table),
    "memory-breakdown": result_tables.block("memory", "memory breakdown", result_tables.memory_breakdown_table),
    "memory-peak": result_tables.block("memory", "memory breakdown", result_tables.memory_peak_table),
    "models": result_tables.block("models", "model summary", result_tables.models_table,
                                  machine_independent=True),
    "compare-accumulation": result_tables.block("compare_accumulation", "comparison of accumulation runs",
                                                result_tables.comparison_table),
    "compare-decoder": result_tables.block("compare_decoder", "comparison of DeepLab v3+ and v3",
                                           result_tables.comparison_table),
    # Every named config with the figures measured of its network (docs/model_zoo.md).
    "model-zoo": zoo.model_zoo,
}


def pages(root):
    """README.md and every docs/**/*.md, as paths relative to `root`."""
    found = ["README.md"] if os.path.isfile(os.path.join(root, "README.md")) else []
    found += sorted(os.path.relpath(p, root)
                    for p in glob.glob(os.path.join(root, "docs", "**", "*.md"), recursive=True))
    return found


def render(root, page, text):
    """`text` of `page` with its generated blocks filled from the repository at `root`."""
    def block(name):
        if name not in BLOCKS:
            raise ValueError(f"{page}: unknown generated block {name!r} (known: {', '.join(sorted(BLOCKS))})")
        return BLOCKS[name](root)
    return markers.fill(text, block, source=page)


def regenerate(root, write=True):
    """Fills every page's blocks; returns the pages whose text changed (written when `write`)."""
    from research.fileio import atomic_write_text

    changed = []
    for page in pages(root):
        path = os.path.join(root, page)
        with open(path, encoding="utf-8") as f:
            old = f.read()
        new = render(root, page, old)
        if new != old:
            changed.append(page)
            if write:
                atomic_write_text(path, new)
    return changed
