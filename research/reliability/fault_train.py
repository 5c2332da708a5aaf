"""Test-only entry point: `python -m research.train` with a SIGKILL planted at a kill point.

    python -m research.reliability.fault_train [--kill-at POINT:N] [--sgd] -- <research.train arguments>
    python scripts/fault_train.py ...               (the same command line)

--kill-at installs a `research.faults.hook` that SIGKILLs this process the N-th time
training passes `kill_point(POINT)` (points: step, checkpoint, atomic_replace, export;
see research/faults.py). --sgd trains with plain SGD instead of Adam (`sgd_optimizer`):
for comparing runs whose sums are reduced in different orders (1 process against 2
workers), because Adam's first update, lr * g / (|g| + eps), turns the round-off of a
near-zero gradient into a change of up to lr, while SGD's update is linear in g. Then
runs `research.train.main` with the remaining arguments. Used by
research.reliability.chaos and the tests; the product itself never installs a hook.
"""
import argparse
import os
import signal
import sys


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


def sgd_optimizer(config, precision):
    """`research.build.make_optimizer`'s stand-in: SGD at the config's learning rate."""
    import keras

    return keras.optimizers.SGD(learning_rate=config.learning_rate)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kill-at", default=None, metavar="POINT:N",
                        help="SIGKILL at the N-th pass of kill point POINT (N default 1)")
    parser.add_argument("--sgd", action="store_true", help="train with plain SGD instead of Adam")
    parser.add_argument("train_args", nargs=argparse.REMAINDER,
                        help="-- then the research.train arguments")
    args = parser.parse_args(argv)
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args

    import research  # noqa: F401  (the project's runtime defaults, before TensorFlow)
    from research import build, faults, train

    if args.kill_at:
        point, _, count = args.kill_at.partition(":")
        faults.hook = sigkill_at(point, int(count or 1))
    if args.sgd:
        build.make_optimizer = sgd_optimizer
    return train.main(train_args)


if __name__ == "__main__":
    sys.exit(main())
