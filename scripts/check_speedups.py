"""Speed-up floors, measured fast against baseline in one run: no saved baseline needed.

Machines differ and are noisy, so absolute times saved on one machine say little on
another; a ratio measured in one run on the same machine does. This runs the
benchmarks that hold each pair (pytest-benchmark, `--benchmark-json`), divides the
baseline's mean time by the fast one's, and fails when a ratio is below its floor.

    python scripts/check_speedups.py                    # all checks, ~15 min on 2 cores
    python scripts/check_speedups.py --only loss,confusion

Floors (the project's targets on a 2-core CPU):
  atrous_r18      AtrousConv2D vs Keras Conv2D(dilation 18), oneDNN off (TF defaults)  >= 10x
  confusion       kernels.confusion_matrix vs the book's boolean-mask path                >= 10x
  loss            fused CE + dice vs the reference, forward + backward                     >= 2x
  train_defaults  custom loop (project defaults) vs Keras fit under TF defaults            >= 5x
  train_onednn    custom loop (project defaults) vs Keras fit with oneDNN on               >= 1.5x
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The custom loop runs with the project's defaults: oneDNN on, XLA off on such a CPU
# (research/runtime.py); the baselines run with TF's and Keras' defaults.
CUSTOM = "benchmarks/bench_train_step.py::test_train_step[deeplab_v3-custom-onednn_on-xla_off]"
CHECKS = {
    "atrous_r18": ("benchmarks/bench_atrous.py::test_atrous[onednn_off-r18-keras]",
                   "benchmarks/bench_atrous.py::test_atrous[onednn_off-r18-fast]", 10.0),
    "confusion": ("benchmarks/bench_confusion.py::test_confusion[reference (book), plain]",
                  "benchmarks/bench_confusion.py::test_confusion[fast, plain]", 10.0),
    "loss": ("benchmarks/bench_losses.py::test_loss[reference-plain]",
             "benchmarks/bench_losses.py::test_loss[fused-plain]", 2.0),
    "train_defaults": ("benchmarks/bench_train_step.py::test_train_step[deeplab_v3-fit-onednn_off]",
                       CUSTOM, 5.0),
    "train_onednn": ("benchmarks/bench_train_step.py::test_train_step[deeplab_v3-fit-onednn_on]",
                     CUSTOM, 1.5),
}


def run_benchmarks(node_ids, json_path):
    """Runs the given benchmark node ids once; returns {node id: mean seconds}."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               f"--benchmark-json={json_path}", *node_ids]
    print("$ " + " ".join(command[2:]), flush=True)
    result = subprocess.run(command, cwd=REPO)
    if result.returncode != 0:
        raise SystemExit(f"benchmarks failed (exit {result.returncode})")
    with open(json_path) as f:
        report = json.load(f)
    return {bench["fullname"]: bench["stats"]["mean"] for bench in report["benchmarks"]}


def ratios(means, names):
    """[(name, baseline s, fast s, ratio, floor, ok)] for the chosen checks."""
    rows = []
    for name in names:
        baseline, fast, floor = CHECKS[name]
        ratio = means[baseline] / means[fast]
        rows.append((name, means[baseline], means[fast], ratio, floor, ratio >= floor))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(CHECKS),
                        help=f"comma-separated checks among {', '.join(CHECKS)}")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        parser.error(f"unknown checks: {', '.join(unknown)}")
    node_ids = sorted({node for n in names for node in CHECKS[n][:2]})
    with tempfile.TemporaryDirectory() as folder:
        means = run_benchmarks(node_ids, os.path.join(folder, "bench.json"))
    rows = ratios(means, names)
    print(f"\n{'check':16s} {'baseline s':>11s} {'fast s':>9s} {'speed-up':>9s} {'floor':>6s}")
    for name, base, fast, ratio, floor, ok in rows:
        print(f"{name:16s} {base:11.4f} {fast:9.4f} {ratio:8.2f}x {floor:5.1f}x  {'ok' if ok else 'BELOW FLOOR'}")
    failed = [row[0] for row in rows if not row[5]]
    if failed:
        print(f"\nbelow floor: {', '.join(failed)}")
        return 1
    print("\nall speed-ups at or above their floors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
