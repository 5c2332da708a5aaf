"""Speed-up floors, measured fast against baseline in one run: no saved baseline needed.

Machines differ and are noisy, so absolute times saved on one machine say little on
another; a ratio measured in one run on the same machine does. This runs the
benchmarks that hold each pair (pytest-benchmark, `--benchmark-json`), divides the
baseline's minimum time per step by the fast one's, and fails when a ratio is below
its floor.

    python scripts/check_speedups.py                    # all checks, ~20 min on 2 cores
    python scripts/check_speedups.py --only loss,confusion

"TF's default" is what TensorFlow itself does on the machine the script runs on: it
turns oneDNN on for CPUs with AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX and leaves it off
otherwise; the script asks TF (research.runtime.tensorflow_default_onednn). Checks:
  atrous_r18         AtrousConv2D vs Keras Conv2D(dilation 18), oneDNN as TF's default here
  atrous_r18_forced  the same with oneDNN forced to the other setting
  confusion          kernels.confusion_matrix vs the book's boolean-mask path
  loss               fused CE + dice vs the reference, forward + backward
  train_defaults     custom loop (project defaults) vs Keras fit with TF's default here
  train_forced       the same against fit with oneDNN forced to the other setting
Floors depend on the baseline's oneDNN setting, not on the CPU: with oneDNN on, TF runs
Keras' dilated convolutions natively instead of through space-to-batch, so the Keras
baselines themselves get 4-5x faster (see FLOORS).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# The custom loop runs with the project's defaults: oneDNN on, XLA off on a CPU
# (research/runtime.py); the baselines run with TF's and Keras' defaults.
CUSTOM = "benchmarks/bench_train_step.py::test_train_step[deeplab_v3-custom-onednn_on-xla_off]"
FIT = "benchmarks/bench_train_step.py::test_train_step[deeplab_v3-fit-onednn_{}]"
ATROUS = "benchmarks/bench_atrous.py::test_atrous[onednn_{}-r18-{}]"

# Floors, measured (one run each) on 2-core AMD EPYC Zen 3 (AVX2; TF leaves oneDNN off)
# and 2-core Intel Xeon (AVX-512 VNNI; TF turns it on), November 2026:
#   atrous_r18, oneDNN off: AMD 59.5x, Intel 85.0x   -> 10x
#   atrous_r18, oneDNN on:  AMD 12.6x (make bench), Intel not measured -> 5x
#   confusion:  AMD 13.9x, Intel 11.0x               -> 10x
#   loss:       AMD 3.28x, Intel 1.73x               -> 1.5x (the reference's separate ops
#               gain more from AVX-512 than the fused loss's one pass; not profiled)
#   train vs fit, oneDNN off: AMD 7.27x, Intel 8.94x -> 5x
#   train vs fit, oneDNN on:  AMD 1.71x, Intel 2.23x -> 1.5x
# (fit was timed one call per step then; now STEPS_PER_CALL steps per fit call.)
FLOORS = {"atrous_r18": {"off": 10.0, "on": 5.0}, "confusion": 10.0, "loss": 1.5,
          "train": {"off": 5.0, "on": 1.5}}
NAMES = ("atrous_r18", "atrous_r18_forced", "confusion", "loss", "train_defaults", "train_forced")
# The user's own oneDNN setting, read before main() imports `research`, which sets the
# project's default (on) in this process's environment.
USER_ONEDNN = os.environ.get("TF_ENABLE_ONEDNN_OPTS")


def benchmark_environment(environ, user_onednn=USER_ONEDNN):
    """The benchmark process's environment: `environ` with TF_ENABLE_ONEDNN_OPTS as the
    user started this script (unset: TF's default). The confusion and loss benchmarks
    run inside that process; inheriting the project's "1" ran them with oneDNN on where
    TF's default is off. (The atrous and train cases set it per worker process.)"""
    env = dict(environ)
    if user_onednn is None:
        env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    else:
        env["TF_ENABLE_ONEDNN_OPTS"] = user_onednn
    return env


def checks(tf_default_onednn, user_onednn=USER_ONEDNN):
    """{name: (baseline node id, fast node id, floor, setting)} for this machine."""
    default = "on" if tf_default_onednn else "off"
    forced = "off" if tf_default_onednn else "on"
    in_process = (f"TF's default here (oneDNN {default})" if user_onednn is None
                  else f"yours: TF_ENABLE_ONEDNN_OPTS={user_onednn}")
    table = {
        "confusion": ("benchmarks/bench_confusion.py::test_confusion[reference (book), plain]",
                      "benchmarks/bench_confusion.py::test_confusion[fast, plain]", FLOORS["confusion"],
                      in_process),
        "loss": ("benchmarks/bench_losses.py::test_loss[reference-plain]",
                 "benchmarks/bench_losses.py::test_loss[fused-plain]", FLOORS["loss"], in_process),
    }
    for suffix, setting, how in (("", default, "TF's default here"), ("_forced", forced, "forced")):
        table["atrous_r18" + suffix] = (ATROUS.format(setting, "keras"), ATROUS.format(setting, "fast"),
                                        FLOORS["atrous_r18"][setting], f"oneDNN {setting}, {how}")
        table["train_defaults" if not suffix else "train_forced"] = (
            FIT.format(setting), CUSTOM, FLOORS["train"][setting], f"fit with oneDNN {setting}, {how}")
    return table


def run_benchmarks(node_ids, json_path):
    """Runs the given benchmark node ids once; returns {node id: minimum seconds per step}."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               f"--benchmark-json={json_path}", *node_ids]
    print("$ " + " ".join(command[2:]), flush=True)
    result = subprocess.run(command, cwd=REPO, env=benchmark_environment(os.environ))
    if result.returncode != 0:
        raise SystemExit(f"benchmarks failed (exit {result.returncode})")
    with open(json_path) as f:
        report = json.load(f)
    return {bench["fullname"]: bench["stats"]["min"] / bench["extra_info"].get("steps_per_call", 1)
            for bench in report["benchmarks"]}


def ratios(seconds, table, names):
    """[(name, setting, baseline s, fast s, ratio, floor, ok)] for the chosen checks."""
    rows = []
    for name in names:
        baseline, fast, floor, setting = table[name]
        ratio = seconds[baseline] / seconds[fast]
        rows.append((name, setting, seconds[baseline], seconds[fast], ratio, floor, ratio >= floor))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(NAMES), help=f"comma-separated checks among {', '.join(NAMES)}")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        parser.error(f"unknown checks: {', '.join(unknown)}")
    from research.runtime import tensorflow_default_onednn

    tf_default = tensorflow_default_onednn()
    print(f"TensorFlow's own default on this machine: oneDNN {'on' if tf_default else 'off'}", flush=True)
    table = checks(tf_default)
    node_ids = sorted({node for n in names for node in table[n][:2]})
    with tempfile.TemporaryDirectory() as folder:
        seconds = run_benchmarks(node_ids, os.path.join(folder, "bench.json"))
    rows = ratios(seconds, table, names)
    print(f"\n{'check':18s} {'setting':34s} {'baseline s':>11s} {'fast s':>9s} {'speed-up':>9s} {'floor':>6s}")
    for name, setting, base, fast, ratio, floor, ok in rows:
        print(f"{name:18s} {setting:34s} {base:11.4f} {fast:9.4f} {ratio:8.2f}x {floor:5.1f}x  "
              f"{'ok' if ok else 'BELOW FLOOR'}")
    failed = [row[0] for row in rows if not row[6]]
    if failed:
        print(f"\nbelow floor: {', '.join(failed)}")
        return 1
    print("\nall speed-ups at or above their floors (minimum times per step)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
