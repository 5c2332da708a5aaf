"""Kill-and-resume chaos run: SIGKILL smoke training runs at random moments, resume them,
and check that nothing was lost.

    python scripts/chaos_resume.py --runs 20 --seed 0 [--max-kills 3] [--workers 1] [--workdir-root DIR] [--keep]

The command line of `research.reliability.chaos.run_chaos`; that module's doc says what a
run does and checks. Prints a line per run and a summary, writes
WORKDIR_ROOT/chaos_summary.json, and exits 1 if any run failed.
"""
import argparse
import os
import sys
import tempfile

from research import cli
from research.reliability import chaos


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="number of killed-and-resumed runs (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seeds every kill plan (default 0)")
    parser.add_argument("--max-kills", type=int, default=3, help="kills planned per run: 1..this (default 3)")
    parser.add_argument("--workdir-root", default=None,
                        help="folder for the data, the reference and the runs (default: a new temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep every run's workdir (default: only failed ones)")
    parser.add_argument("--workers", type=int, default=1,
                        help="local workers per launch (MultiWorkerMirroredStrategy; default 1: one process)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    root = os.path.abspath(args.workdir_root or tempfile.mkdtemp(prefix="chaos_resume_"))

    def work():
        summary = chaos.run_chaos(root, args.runs, args.seed, args.max_kills, args.workers, args.keep,
                                  out=lambda line: print(line, flush=True))
        return 0 if summary["ok"] == summary["runs"] else 1

    return cli.run_main(work)


if __name__ == "__main__":
    sys.exit(main())
