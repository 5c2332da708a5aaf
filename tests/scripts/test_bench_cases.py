"""Every train-step benchmark case is a setting training itself would run.

`make bench` once died in the case "deterministic, oneDNN off, XLA on": training turns
XLA off under op determinism on CPU (`runtime.resolve_jit_compile`), the benchmark did
not, and the first step failed with UnimplementedError. This checks each case against
the rule without running a step.
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Run apart: bench_train_step imports benchmarks/conftest.py as the top-level `conftest`.
_LIST_CASES = """
import json, sys
sys.path.insert(0, "benchmarks")
import bench_train_step
print(json.dumps(bench_train_step.CASES))
"""


def test_train_step_cases_are_settings_that_training_runs():
    from research import runtime

    done = subprocess.run([sys.executable, "-c", _LIST_CASES], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    cases = json.loads(done.stdout.strip().splitlines()[-1])
    custom = [case for case in cases if case["trainer"] == "custom"]
    assert any(case.get("deterministic") for case in custom)
    for case in custom:
        deterministic = bool(case.get("deterministic"))
        # Raises ValueError for a combination training refuses (XLA + determinism on CPU).
        use_xla, _ = runtime.resolve_jit_compile(case["xla"], "cpu", "float32", 1, deterministic)
        if deterministic:  # the cost of determinism on what `auto` picks under it
            assert use_xla == runtime.resolve_jit_compile("auto", "cpu", "float32", 1,
                                                          deterministic=True)[0], case
