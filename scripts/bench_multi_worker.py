"""Training images/s of N local workers (MultiWorkerMirroredStrategy) against one process.

    python scripts/bench_multi_worker.py [--workers 2] [--config demo] [--steps 10] [--root DIR]

Trains the same config, same global batch, twice from scratch on the embedded dataset
(written into --root once): as one `python -m research.train` process and as
`python -m research.launch --workers N`. Each run has 2 epochs of --steps steps
(no export, no TensorBoard pictures, 1 val batch); the number is epoch 2's
images_per_second from train_log.csv (epoch 1 includes tracing). Prints both and the
ratio, naming the machine (scripts/machine_id.py). On a 2-core machine expect no
speed-up: the workers share the cores and every worker decodes the whole global batch.
"""
import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def images_per_second(workdir):
    with open(os.path.join(workdir, "train_log.csv"), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return float(rows[-1]["images_per_second"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="local workers to compare with one process")
    parser.add_argument("--config", default="demo", help="a named config or a .json file (default demo)")
    parser.add_argument("--steps", type=int, default=10, help="steps per epoch (2 epochs)")
    parser.add_argument("--root", default=None, help="folder for data and runs (default: a temp folder)")
    args = parser.parse_args(argv)
    from research import cli

    return cli.run_main(lambda: compare(args))


def compare(args):
    """Trains both ways and prints images/s; returns the exit status (1 when a run failed)."""
    root = os.path.abspath(args.root or tempfile.mkdtemp(prefix="bench_mw_"))
    from research.data.synthetic import make_synthetic_voc

    data = os.path.join(root, "data")
    voc_root = os.path.join(data, "VOCdevkit", "VOC2012")
    if not os.path.isdir(voc_root):
        make_synthetic_voc(data, num_train=64, num_val=16, seed=0, progress=False)
    train_args = ["--config", args.config, "--set", f"voc_root={voc_root}", "--set", "epochs=2",
                  "--set", f"steps_per_epoch={args.steps}", "--set", "eval_steps=1",
                  "--set", "export_best=false", "--set", "tensorboard_images=0"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    results = {}
    for name, command in (
            ("1 process", [sys.executable, "-m", "research.train"]),
            (f"{args.workers} workers", [sys.executable, "-m", "research.launch", "--workers",
                                         str(args.workers), "--"])):
        workdir = os.path.join(root, name.replace(" ", "_"))
        shutil.rmtree(workdir, ignore_errors=True)
        run = subprocess.run(command + train_args + ["--workdir", workdir], cwd=REPO, env=env,
                             capture_output=True, text=True)
        if run.returncode != 0:
            print(f"{name}: failed (exit {run.returncode}):\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
            return 1
        results[name] = images_per_second(workdir)
    from research.provenance import machine_id

    machine = machine_id()
    one, many = results.values()
    print(f"machine: {machine}; config {args.config}, global batch as configured, "
          f"epoch 2 of {args.steps} steps")
    for name, value in results.items():
        print(f"  {name}: {value:.2f} images/s")
    print(f"  ratio {args.workers} workers / 1 process: {many / one:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
