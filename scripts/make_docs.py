"""Regenerates the generated tables and references of README.md and docs/ (`make docs`).

    python scripts/make_docs.py            # rewrite the pages whose generated blocks changed
    python scripts/make_docs.py --check    # change nothing; exit 1 naming the pages that would change

Reads saved artifacts only (benchmarks/baselines/, benchmarks/results/) and the code's
Config dataclass and argument parsers: it measures nothing. research/docs says how.
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when a page differs from what would be generated")
    parser.add_argument("--root", default=None, help="the checkout to regenerate (default: this script's)")
    args = parser.parse_args(argv)
    root = args.root or REPO
    sys.path.insert(0, root)
    from research.docs import generate

    try:
        changed = generate.regenerate(root, write=not args.check)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.check and changed:
        print(f"out of date (run `make docs`): {', '.join(changed)}", file=sys.stderr)
        return 1
    print(f"{'would change' if args.check else 'rewrote'}: {', '.join(changed) or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
