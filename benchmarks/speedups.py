"""Speed-up floors, measured fast against baseline in one run: no saved baseline needed.

Machines differ and are noisy, so absolute times saved on one machine say little on
another; a ratio measured in one run on the same machine does. `main` (the command line
of scripts/check_speedups.py) runs the benchmarks that hold each pair (pytest-benchmark,
`--benchmark-json`), divides the baseline's minimum time per step by the fast one's,
prints a table, writes the ratios as JSON (`write_results`) and fails when a ratio is
below its floor.

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
baselines themselves get 4-5x faster (see MEASURED).

`--degrade atrous=keras` (or loss=reference) runs the fast sides with that one optimization
removed, to show that its floors catch the loss: atrous=keras takes the atrous kernel out
of atrous_r18 (Keras against Keras) and out of the custom train step (train_defaults and
train_forced); loss=reference takes the fused loss out of `loss` and of the train step (the
train step's floors do not catch this one: the loss is a small part of a step).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The custom loop runs with the project's defaults: oneDNN on, XLA off on a CPU
# (research/runtime.py); the baselines run with TF's and Keras' defaults.
CUSTOM = "benchmarks/bench_train_step.py::test_train_step[deeplab_v3-custom-onednn_on-xla_off{}]"
FIT = "benchmarks/bench_train_step.py::test_train_step[deeplab_v3-fit-onednn_{}]"
ATROUS = "benchmarks/bench_atrous.py::test_atrous[onednn_{}-r18-{}]"
CONFUSION = "benchmarks/bench_confusion.py::test_confusion[{}, plain]"
LOSS = "benchmarks/bench_losses.py::test_loss[{}-plain]"
NAMES = ("atrous_r18", "atrous_r18_forced", "confusion", "loss", "train_defaults", "train_forced")

# The floors. Each is FLOOR_FRACTION of the LOWEST ratio measured for its check on any
# CPU kind (minimum times per step, one run each): well below what healthy code gives on
# a slow minute of a shared VM, far above what the code gives without the optimization
# the check is about (`--degrade`). Keys: (check, the baseline's oneDNN setting), None
# for the checks whose two sides run in one process with the same setting. Add a
# measurement to its list and the floor follows.
#   AMD: 2-core AMD EPYC Zen 3 (AVX2; TF leaves oneDNN off), machine id vm-AMD-EPYC-2cpu
#   Intel: 2-core Intel Xeon (AVX-512 VNNI; TF turns oneDNN on)
# Sources: this script's runs (three in a row on each kind; the latest is saved in
# benchmarks/results/<machine>/speedups.json), `make bench` (the saved run of
# vm-AMD-EPYC-2cpu) and `pytest benchmarks/... -s` re-measurements. Train vs fit lists only runs
# that time `fit` as STEPS_PER_CALL steps in one call (the earlier one-call-per-step
# timing gave AMD 7.27x off / 1.71-1.77x on, Intel 8.94x / 2.23x).
FLOOR_FRACTION = 0.7
MEASURED = {
    ("atrous_r18", "off"): {"AMD": [59.5, 71.41], "Intel": [85.0, 177.73, 189.40, 187.27]},
    ("atrous_r18", "on"): {"AMD": [12.6, 14.42], "Intel": [21.67, 22.17, 21.22]},
    ("confusion", None): {"AMD": [13.9, 13.29, 10.85], "Intel": [10.98, 10.81, 11.50, 10.58]},
    ("loss", None): {"AMD": [3.28, 1.75, 2.63], "Intel": [1.73, 2.37, 2.06, 2.11]},
    ("train", "off"): {"AMD": [5.67, 5.47, 5.30, 4.77, 4.64], "Intel": [13.83, 14.05, 14.76]},
    ("train", "on"): {"AMD": [2.24, 2.17, 2.12, 2.09, 1.89], "Intel": [2.25, 2.35, 2.12]},
}

# --degrade NAME: {check kind: what replaces the fast side}. The train step's degraded
# cases are bench_train_step's "one optimization off" cases (a suffix of CUSTOM's id).
DEGRADES = {
    "atrous=keras": {"train": "-atrous_keras", "atrous_r18": "keras"},
    "loss=reference": {"train": "-loss_reference", "loss": "reference"},
}

# The user's own oneDNN setting, read before anything imports `research`, which sets the
# project's default (on) in this process's environment.
USER_ONEDNN = os.environ.get("TF_ENABLE_ONEDNN_OPTS")


def floor_of(key, measured=None):
    """FLOOR_FRACTION of the lowest ratio in `measured[key]`, rounded down to 0.01."""
    ratios = [r for values in (measured or MEASURED)[key].values() for r in values]
    return math.floor(100 * FLOOR_FRACTION * min(ratios)) / 100


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


def checks(tf_default_onednn, user_onednn=USER_ONEDNN, degrade=None):
    """{name: (baseline node id, fast node id, floor, setting text, baseline oneDNN "on"/"off")}
    for this machine; with `degrade` (a DEGRADES key) the fast sides it names are replaced."""
    swap = DEGRADES[degrade] if degrade else {}
    default = "on" if tf_default_onednn else "off"
    forced = "off" if tf_default_onednn else "on"
    if user_onednn is None:
        in_process, in_process_setting = f"TF's default here (oneDNN {default})", default
    else:
        in_process = f"yours: TF_ENABLE_ONEDNN_OPTS={user_onednn}"
        in_process_setting = "off" if user_onednn.strip().lower() in ("0", "false") else "on"
    table = {
        "confusion": (CONFUSION.format("reference (book)"), CONFUSION.format(swap.get("confusion", "fast")),
                      floor_of(("confusion", None)), in_process, in_process_setting),
        "loss": (LOSS.format("reference"), LOSS.format(swap.get("loss", "fused")), floor_of(("loss", None)),
                 in_process, in_process_setting),
    }
    for suffix, setting, how in (("", default, "TF's default here"), ("_forced", forced, "forced")):
        table["atrous_r18" + suffix] = (ATROUS.format(setting, "keras"),
                                        ATROUS.format(setting, swap.get("atrous_r18", "fast")),
                                        floor_of(("atrous_r18", setting)), f"oneDNN {setting}, {how}", setting)
        table["train_forced" if suffix else "train_defaults"] = (
            FIT.format(setting), CUSTOM.format(swap.get("train", "")), floor_of(("train", setting)),
            f"fit with oneDNN {setting}, {how}", setting)
    return table


def seconds_per_step(report):
    """{node id: minimum seconds per step} from a pytest-benchmark JSON report (a dict)."""
    from research.docs import bench_tables   # after USER_ONEDNN is read (see above)

    return {bench["fullname"]: bench_tables.seconds(bench) for bench in report.get("benchmarks", [])}


def run_benchmarks(node_ids, json_path):
    """Runs the given benchmark node ids once; returns ({node id: minimum seconds per step}
    of those that ran, pytest's exit status)."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               f"--benchmark-json={json_path}", *node_ids]
    print("$ " + " ".join(command[2:]), flush=True)
    result = subprocess.run(command, cwd=REPO, env=benchmark_environment(os.environ, USER_ONEDNN))
    try:
        with open(json_path, encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, ValueError):
        report = {}
    return seconds_per_step(report), result.returncode


def evaluate(seconds, table, names):
    """{name: the JSON record of a check} for the chosen checks. A check whose benchmarks
    did not both run has ratio None and did not pass."""
    results = {}
    for name in names:
        baseline, fast, floor, _, setting = table[name]
        base_s, fast_s = seconds.get(baseline), seconds.get(fast)
        ratio = base_s / fast_s if base_s and fast_s else None
        results[name] = {"ratio": ratio, "floor": floor, "passed": ratio is not None and ratio >= floor,
                         "fast_seconds": fast_s, "baseline_seconds": base_s, "onednn_baseline": setting}
    return results


def format_table(results, table):
    """The printed table: one line per check."""
    lines = [f"{'check':18s} {'setting':34s} {'baseline s':>11s} {'fast s':>9s} {'speed-up':>9s} {'floor':>6s}"]
    for name, r in results.items():
        if r["ratio"] is None:
            lines.append(f"{name:18s} {table[name][3]:34s} {'not measured: a benchmark failed':>40s}")
            continue
        lines.append(f"{name:18s} {table[name][3]:34s} {r['baseline_seconds']:11.4f} {r['fast_seconds']:9.4f} "
                     f"{r['ratio']:8.2f}x {r['floor']:5.2f}x  {'ok' if r['passed'] else 'BELOW FLOOR'}")
    return "\n".join(lines)


def json_path_for(degrade=None):
    """benchmarks/results/<machine>/speedups.json (a degraded run: speedups-degrade-<name>.json,
    so it never replaces the real measurement)."""
    from research import results

    return results.results_path("speedups" if not degrade else f"speedups-degrade-{degrade.replace('=', '-')}")


def tf_default_onednn():
    """Whether TensorFlow turns oneDNN on by itself on this machine (asked of a fresh process)."""
    from research.runtime import tensorflow_default_onednn

    return tensorflow_default_onednn()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(NAMES), help=f"comma-separated checks among {', '.join(NAMES)}")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="where to write the measured ratios (default "
                             "benchmarks/results/<machine id>/speedups.json)")
    parser.add_argument("--degrade", default=None, choices=sorted(DEGRADES),
                        help="run the fast side without this optimization, to show its floors catch "
                             "it (writes speedups-degrade-<name>.json unless --json)")
    args = parser.parse_args(argv)
    args.names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in args.names if n not in NAMES]
    if unknown:
        parser.error(f"unknown checks: {', '.join(unknown)}")
    return args


def main(argv=None):
    """The command line; returns the exit status (1 when a check is below its floor or
    did not run)."""
    from research import cli, provenance

    args = parse_args(argv)
    command = provenance.command_line("python scripts/check_speedups.py", argv)
    return cli.run_main(lambda: check(args.names, command, args.degrade, args.json))


def check(names, command, degrade=None, json_path=None):
    """Runs the checks `names`, prints the table, writes the ratios with their provenance
    (research/results.py; default `json_path_for`); returns 0 when every ratio is at or
    above its floor, else 1."""
    from research import results as results_lib

    tf_default = tf_default_onednn()
    print(f"TensorFlow's own default on this machine: oneDNN {'on' if tf_default else 'off'}", flush=True)
    if degrade:
        print(f"degraded: the fast sides run with {degrade}", flush=True)
    table = checks(tf_default, USER_ONEDNN, degrade)
    node_ids = sorted({node for name in names for node in table[name][:2]})
    with tempfile.TemporaryDirectory() as folder:
        seconds, status = run_benchmarks(node_ids, os.path.join(folder, "bench.json"))
    if status != 0:
        print(f"benchmarks failed (pytest exit {status}); checks without both times fail", flush=True)
    results = evaluate(seconds, table, names)
    print("\n" + format_table(results, table))
    saved = {"checks": results, **({"degrade": degrade} if degrade else {})}
    path = results_lib.write_results(json_path or json_path_for(degrade), saved, command)
    failed = [name for name, r in results.items() if not r["passed"]]
    print(f"\nratios written to {path}")
    if failed:
        print(f"below floor: {', '.join(failed)}")
        return 1
    print("all speed-ups at or above their floors (minimum times per step)")
    return 0
