"""Every train-step benchmark case is a setting training itself would run.

`make bench` once died in the case "deterministic, oneDNN off, XLA on": training turns
XLA off under op determinism on CPU (`runtime.resolve_jit_compile`), the benchmark did
not, and the first step failed with UnimplementedError. This checks each case against
the rule without running a step.
"""
from benchmarks import bench_train_step
from research import runtime


def test_train_step_cases_are_settings_that_training_runs():
    custom = [case for case in bench_train_step.CASES if case["trainer"] == "custom"]
    assert any(case.get("deterministic") for case in custom)
    for case in custom:
        deterministic = bool(case.get("deterministic"))
        # Raises ValueError for a combination training refuses (XLA + determinism on CPU).
        use_xla, _ = runtime.resolve_jit_compile(case["xla"], "cpu", "float32", 1, deterministic)
        if deterministic:  # the cost of determinism on what `auto` picks under it
            assert use_xla == runtime.resolve_jit_compile("auto", "cpu", "float32", 1,
                                                          deterministic=True)[0], case


def test_training_flops_counts_each_conv_and_the_probe_measures():
    """The FLOP count behind the benchmark's "% of the dense-conv probe"."""
    import keras

    from kernels import AtrousConv2D

    images = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="dense3x3")(images)      # 16x16 out
    x = keras.layers.Conv2D(4, 1, strides=2, name="strided1x1")(x)              # 8x8 out
    x = AtrousConv2D(4, 3, dilation_rate=2, use_bias=False, name="atrous")(x)  # 8x8 out
    x = keras.layers.BatchNormalization(name="bn")(x)                           # not counted
    model = keras.Model(images, x)
    forward = 2 * 16 * 16 * 9 * 3 * 8 + 2 * 8 * 8 * 1 * 8 * 4 + 2 * 8 * 8 * 9 * 4 * 4  # per image
    assert bench_train_step.training_flops(model, 16, 2) == 3 * forward * 2   # forward + two backward passes
    probe = bench_train_step.make_dense_conv_probe(repeats=1)()
    assert 1e8 < probe < 1e14         # FLOP/s: a real machine's, not 0 or inf
