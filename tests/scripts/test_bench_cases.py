"""Every train-step benchmark case is a setting training itself would run.

`make bench` once died in the case "deterministic, oneDNN off, XLA on": training turns
XLA off under op determinism on CPU (`runtime.resolve_jit_compile`), the benchmark did
not, and the first step failed with UnimplementedError. This checks each case against
the rule without running a step, and the plumbing of each case's peak memory (the fields,
the table column, and at tiny size a worker's readings).
"""
import numpy as np
import pytest

from benchmarks import bench_train_step, support
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
    assert 0 < probe < float("inf")   # FLOP/s measured, not 0 or inf (no speed asserted)


def test_train_step_cases_keep_their_ids_and_measure_the_recipe_batch():
    cases = [[c, bench_train_step._case_id(c)] for c in bench_train_step.CASES]
    ids = [case_id for _, case_id in cases]
    assert len(set(ids)) == len(ids)
    # Batch-2 ids are what saved baselines compare against: no batch part in them.
    assert not [case_id for case, case_id in cases if "batch" not in case and "-batch_" in case_id]
    larger = [[case, case_id] for case, case_id in cases if case.get("batch", 2) != 2]
    assert larger == [[dict(model="deeplab_v3", trainer="custom", onednn=True, xla=False, batch=8),
                       "deeplab_v3-custom-onednn_on-xla_off-batch_8"],
                      [dict(model="deeplab_v3", trainer="custom", onednn=True, xla=False, batch=8,
                            bn_policy="frozen"),
                       "deeplab_v3-custom-onednn_on-xla_off-bn_policy_frozen-batch_8"]]


def test_memory_fields_and_the_table_column():
    built = {"peak_rss_bytes": 9, "allocator_peak_bytes": 5, "allocator_current_bytes": 1}
    runs = [{"peak_rss_bytes": 6, "allocator_peak_bytes": 3, "allocator_current_bytes": 2},
            {"peak_rss_bytes": 7, "allocator_peak_bytes": 4, "allocator_current_bytes": 2}]
    with_peak = [("g", "a", 2.0, 1.0, True, 3 * 2 ** 30), ("g", "b", 1.0, 2.0, False)]
    # The steps' peak is the largest over the run replies; the build's is kept apart.
    assert bench_train_step._memory_info(built, runs) == {
        "peak_rss_bytes": 7, "build_peak_rss_bytes": 9, "allocator_peak_bytes": 4, "allocator_current_bytes": 2}
    header, first, second = support.comparison_lines(with_peak)[1:]
    assert header.split()[-2:] == ["peak", "GiB"]
    assert first.split()[-1] == "3.00" and second.split()[-2:] == ["2.00x", "-"]
    without = support.comparison_lines([row[:5] for row in with_peak])
    assert "peak" not in without[1] and without[3].split()[-1] == "2.00x"


@pytest.mark.slow
def test_worker_reports_its_peak_memory(tmp_path):
    # The worker's plumbing at tiny size: the `smoke` network at 32 px, one step.
    rng = np.random.default_rng(0)
    batch_file = str(tmp_path / "batch.npz")
    np.savez(batch_file, images=rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32"),
             labels=rng.integers(0, 21, (2, 32, 32)).astype("int32"))
    case = dict(model="deeplab_v3", trainer="custom", onednn=True, xla=False, config="smoke", size=32)
    worker = support.WorkerProcess("benchmarks.bench_train_step", onednn=True)
    try:
        built = worker.request({"op": "build", "case": case, "batch_file": batch_file}, timeout=300)
        run = worker.request({"op": "run", "steps": 1}, timeout=300)
    finally:
        worker.close()
    assert built["peak_rss_bytes"] > 200 * 2 ** 20  # bytes: TensorFlow alone is more
    # oneDNN on: TF's allocator counts the weights and slots; its pool is resident.
    assert 0 < run["allocator_current_bytes"] <= run["allocator_peak_bytes"] < run["peak_rss_bytes"]


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["fit", "custom"])
def test_both_trainers_build_and_step_at_a_tiny_size(tmp_path, trainer):
    # Each case's build, in this process: the `smoke` network at 32 px, one step.
    rng = np.random.default_rng(0)
    batch_file = str(tmp_path / "batch.npz")
    np.savez(batch_file, images=rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32"),
             labels=rng.integers(0, 21, (2, 32, 32)).astype("int32"))
    case = dict(model="deeplab_v3", trainer=trainer, onednn=True, xla=False, config="smoke", size=32)
    run, probe, facts = bench_train_step._build(case, batch_file)
    run(1)
    assert facts["flops_per_step"] > 0 and facts["weights_checksum"] > 0 and probe() > 0


def test_every_nan_guard_case_runs_at_a_tiny_size(monkeypatch):
    """bench_nan_guard builds its step from the training modules; a helper that moves
    (all_finite once did) must break this test, not a 30-minute `make bench`."""
    from benchmarks import bench_nan_guard

    monkeypatch.setitem(bench_nan_guard.SIZES, "tiny", ("smoke", 32, 2))
    built = bench_nan_guard._build("tiny")
    for case in bench_nan_guard.CASES:
        # The step cases return nothing; the checks say whether the clean weights are finite.
        result = bench_nan_guard._runner(case, *built)()
        assert result is (True if case in bench_nan_guard.CHECKS else None), case
