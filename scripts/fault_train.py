"""Test-only entry point: `python -m research.train` with a SIGKILL planted at a kill point.

    python scripts/fault_train.py --kill-at POINT:N -- <research.train arguments>

Installs a `research.faults.hook` that SIGKILLs this process the N-th time training
passes `kill_point(POINT)` (points: step, checkpoint, atomic_replace, export; see
research/faults.py), then runs `research.train.main` with the remaining arguments. Used
by scripts/chaos_resume.py and the kill tests; the product itself never installs a hook.
"""
import argparse
import os
import signal
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def sigkill_at(point, count):
    """A hook that SIGKILLs this process at the `count`-th pass of kill point `point`."""
    passes = {"n": 0}

    def hook(name):
        if name != point:
            return
        passes["n"] += 1
        if passes["n"] >= count:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kill-at", required=True, metavar="POINT:N",
                        help="SIGKILL at the N-th pass of kill point POINT (N default 1)")
    parser.add_argument("train_args", nargs=argparse.REMAINDER,
                        help="-- then the research.train arguments")
    args = parser.parse_args(argv)
    point, _, count = args.kill_at.partition(":")
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args

    import research  # noqa: F401  (the project's runtime defaults, before TensorFlow)
    from research import faults, train

    faults.hook = sigkill_at(point, int(count or 1))
    return train.main(train_args)


if __name__ == "__main__":
    sys.exit(main())
