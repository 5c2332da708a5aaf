"""Measures the table behind `kernels.atrous`'s "auto" rule on this machine.

Forward + backward (gradients for input and kernel) of a 3x3 atrous convolution at
[4, 24, 24, 2048] -> 256 (DeepLab v3's ASPP at 384 px), for each formulation and rate,
with oneDNN off and on (each in its own process: TF reads TF_ENABLE_ONEDNN_OPTS at
import) and with and without XLA. Prints seconds of CPU time per call (min over
--repeats) with one intra-op thread: on a shared machine CPU time is the stable
measure, and two threads scale all formulations alike (within ~10%, measured on the
AMD machine). "native" runs only where it has a CPU gradient (oneDNN on, or XLA).

    python scripts/atrous_rule_table.py                 # about 10 minutes on an idle core
    python scripts/atrous_rule_table.py --rates 6 12 --onednn 1
"""
import argparse
import json
import os
import subprocess
import sys
import time

SHAPE = (4, 24, 24, 2048)
FILTERS = 256
FORMULATIONS = ("native", "gemm", "rows", "taps")


def _worker(rates, repeats, formulations):
    """Runs in a child process: one JSON line per (xla, formulation, rate)."""
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from kernels import atrous

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    onednn = bool(_pywrap_util_port.IsMklEnabled())
    x = tf.random.stateless_normal(SHAPE, seed=[1, 2])
    kernel = tf.random.stateless_normal([3, 3, SHAPE[-1], FILTERS], seed=[3, 4]) * 0.01
    for xla in (False, True):
        for formulation in formulations:
            if formulation == "native" and not (onednn or xla):
                continue  # no CPU gradient for dilations > 1
            for rate in rates:
                @tf.function(jit_compile=xla)
                def step(x, kernel, rate=rate, formulation=formulation):
                    with tf.GradientTape() as tape:
                        tape.watch([x, kernel])
                        y = atrous.atrous_conv2d(x, kernel, rate, formulation)
                        loss = tf.reduce_sum(y * y)
                    return tape.gradient(loss, [x, kernel])

                step(x, kernel)[0].numpy()  # trace / compile, untimed
                seconds = []
                for _ in range(repeats):
                    start = time.process_time()
                    step(x, kernel)[0].numpy()
                    seconds.append(time.process_time() - start)
                print(json.dumps(dict(onednn=onednn, xla=xla, formulation=formulation,
                                      rate=rate, cpu_seconds=min(seconds))), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[2, 6, 12, 18], help="atrous rates measured")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per cell (the minimum is kept)")
    parser.add_argument("--formulations", nargs="+", choices=FORMULATIONS, default=list(FORMULATIONS),
                        help="the kernels.atrous formulations compared (default all)")
    parser.add_argument("--onednn", choices=("0", "1", "both"), default="both",
                        help="TF_ENABLE_ONEDNN_OPTS settings to measure (default both)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.rates, args.repeats, args.formulations)
        return 0
    from research import cli

    return cli.run_main(lambda: measure(args))


def measure(args):
    """Runs one worker per oneDNN setting and prints the table."""
    from research.provenance import machine_id

    rows = []
    for onednn in ("0", "1") if args.onednn == "both" else (args.onednn,):
        env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn, TF_CPP_MIN_LOG_LEVEL="2")
        command = [sys.executable, os.path.abspath(__file__), "--worker", "--repeats",
                   str(args.repeats), "--rates", *map(str, args.rates),
                   "--formulations", *args.formulations]
        with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as worker:
            for line in worker.stdout:  # one case per line, echoed as it comes
                if line.startswith("{"):
                    rows.append(json.loads(line))
                    print(line.strip(), file=sys.stderr, flush=True)
        if worker.returncode:
            sys.exit(f"worker with TF_ENABLE_ONEDNN_OPTS={onednn} failed (exit {worker.returncode})")
    print(f"{machine_id()}: {SHAPE} -> {FILTERS}, 3x3, forward + backward, CPU seconds "
          f"(1 intra-op thread, min of {args.repeats})")
    print(f"{'':26s}" + "".join(f"{'r=' + str(r):>7s}" for r in args.rates))
    for onednn in (False, True):
        for xla in (False, True):
            for formulation in FORMULATIONS:
                cells = {r["rate"]: r["cpu_seconds"] for r in rows if (r["onednn"], r["xla"],
                         r["formulation"]) == (onednn, xla, formulation)}
                if cells:
                    label = f"{'XLA, ' if xla else ''}oneDNN {'on' if onednn else 'off'} {formulation}"
                    print(f"{label:26s}" + "".join(f"{cells[r]:7.2f}" for r in args.rates))


if __name__ == "__main__":
    sys.exit(main())
