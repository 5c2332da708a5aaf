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


def _run_with_bench_train_step(code):
    """Runs `code` in a fresh Python with `bench_train_step` imported; returns the JSON it
    prints last. Run apart: bench_train_step imports benchmarks/conftest.py as the
    top-level `conftest`, which the test session's own conftest would shadow."""
    prelude = 'import json, sys\nsys.path.insert(0, "benchmarks")\nimport bench_train_step\n'
    done = subprocess.run([sys.executable, "-c", prelude + code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_train_step_cases_are_settings_that_training_runs():
    from research import runtime

    cases = _run_with_bench_train_step("print(json.dumps(bench_train_step.CASES))")
    custom = [case for case in cases if case["trainer"] == "custom"]
    assert any(case.get("deterministic") for case in custom)
    for case in custom:
        deterministic = bool(case.get("deterministic"))
        # Raises ValueError for a combination training refuses (XLA + determinism on CPU).
        use_xla, _ = runtime.resolve_jit_compile(case["xla"], "cpu", "float32", 1, deterministic)
        if deterministic:  # the cost of determinism on what `auto` picks under it
            assert use_xla == runtime.resolve_jit_compile("auto", "cpu", "float32", 1,
                                                          deterministic=True)[0], case


# The FLOP count behind the benchmark's "% of the dense-conv probe" (issue 13's goal).
_COUNT_FLOPS = """
import keras
from kernels import AtrousConv2D

images = keras.Input((None, None, 3))
x = keras.layers.Conv2D(8, 3, padding="same", name="dense3x3")(images)      # 16x16 out
x = keras.layers.Conv2D(4, 1, strides=2, name="strided1x1")(x)              # 8x8 out
x = AtrousConv2D(4, 3, dilation_rate=2, use_bias=False, name="atrous")(x)  # 8x8 out
x = keras.layers.BatchNormalization(name="bn")(x)                           # not counted
model = keras.Model(images, x)
probe = bench_train_step.make_dense_conv_probe(repeats=1)
print(json.dumps({"flops": bench_train_step.training_flops(model, 16, 2), "probe": probe()}))
"""


def test_training_flops_counts_each_conv_and_the_probe_measures():
    result = _run_with_bench_train_step(_COUNT_FLOPS)
    forward = 2 * 16 * 16 * 9 * 3 * 8 + 2 * 8 * 8 * 1 * 8 * 4 + 2 * 8 * 8 * 9 * 4 * 4  # per image
    assert result["flops"] == 3 * forward * 2   # forward + two backward passes, batch 2
    assert 1e8 < result["probe"] < 1e14         # FLOP/s: a real machine's, not 0 or inf
