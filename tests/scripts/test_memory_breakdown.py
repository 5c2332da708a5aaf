"""scripts/memory_breakdown.py (research.tools.memory_breakdown): its smaps reading,
kept-tensor categories, summary and runs."""
import pytest

from research.tools import memory_breakdown as breakdown

MiB = 2 ** 20

SMAPS = """\
55d0c0000000-55d0c0400000 r-xp 00000000 08:01 123   /usr/lib/libtensorflow_cc.so.2
Size:               4096 kB
Rss:                3000 kB
55d0c1000000-55d0c3000000 rw-p 00000000 00:00 0     [heap]
Size:              32768 kB
Rss:               20000 kB
7f0000000000-7f0100000000 rw-p 00000000 00:00 0
Size:            4194304 kB
Rss:             3000000 kB
7f0200000000-7f0204000000 rw-p 00000000 00:00 0
Size:              65536 kB
Rss:                1000 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0     [stack]
Size:                132 kB
Rss:                  40 kB
"""


def test_rss_by_kind_reads_smaps():
    assert breakdown.rss_by_kind(SMAPS) == {
        "code_and_files": 3000 * 1024, "heap": 20000 * 1024,
        "large_anonymous": 3000000 * 1024,  # the 4 GiB mapping: an allocator pool
        "other_anonymous": (1000 + 40) * 1024}  # a 64 MiB arena is not "large"; the stack


def test_rss_by_kind_of_this_process():
    with open("/proc/self/smaps") as f:
        kinds = breakdown.rss_by_kind(f.read())
    assert kinds["code_and_files"] > MiB and sum(kinds.values()) > 10 * MiB


def test_kept_tensors_are_named_by_their_first_reader_then_maker():
    kept = [(100, {"FusedBatchNormGradV3"}, "BiasAdd"),
            (10, {"ReluGrad", "Conv2DBackpropFilter"}, "Relu"),        # ReLU first, once
            (5, {"Conv2DBackpropFilter"}, "Pad"),
            (7, {"Mul"}, "SparseSoftmaxCrossEntropyWithLogits"),
            (1, {"Mul"}, "Cast")]
    assert breakdown.kept_categories(kept) == {
        "BatchNorm inputs": 100, "ReLU outputs": 10, "loss: softmax minus one-hot": 7,
        "other convolution inputs": 5, "other": 1}


def test_backward_reads_lists_the_forward_tensors_the_gradient_keeps():
    import tensorflow as tf

    w = tf.Variable(2.0)

    def loss_and_sources(x):
        return tf.reduce_sum(tf.nn.relu(x * w) * x), [w]

    reads = breakdown.backward_reads(loss_and_sources, tf.TensorSpec([3]))
    by_type = {t.op.type: readers for t, readers in reads if t.dtype == tf.float32}
    assert "ReluGrad" in by_type["Relu"]      # ReLU's gradient reads its output
    assert "Mul" in by_type["Placeholder"]    # d(x*w)/dw reads the input x (the only float input)
    assert "Sum" not in by_type               # the forward's reduction is not kept


def test_backward_reads_name_a_buffer_read_through_identities_once():
    import tensorflow as tf

    w = tf.Variable(2.0)

    def loss_and_sources(x):
        r = tf.nn.relu(x * w)
        return tf.reduce_sum(tf.identity(r) * tf.identity_n([r, x])[0]), [w]

    reads = breakdown.backward_reads(loss_and_sources, tf.TensorSpec([3]))
    types = [t.op.type for t, _ in reads if t.dtype == tf.float32]
    assert types.count("Relu") == 1 and not {"Identity", "IdentityN"} & set(types)


def _allocation(seconds, op, shape, requested, allocated=None):
    return {"timeOffsetPs": str(int(seconds * 1e12)), "activityMetadata": {
        "tfOpName": op, "tensorShape": shape, "requestedBytes": str(requested),
        "allocationBytes": str(allocated or requested)}}


def test_peak_allocations_sorts_what_is_alive_by_side():
    snapshots = [_allocation(1.0, "StatefulPartitionedCall/deeplab_v3_1/conv1_bn_1/FusedBatchNormV3", "[8,192,192,64]", 72),
                 _allocation(2.0, "StatefulPartitionedCall/gradient_tape/deeplab_v3_1/aspp_pool_avg_1/Tile", "[8,24,24,2048]", 36, 40),
                 _allocation(2.5, "StatefulPartitionedCall/Pad_47", "[192,24,2048]", 39),     # a custom gradient's op
                 _allocation(0.5, "StatefulPartitionedCall/deeplab_v3_1/pool1_pool_1/MaxPool", "[8,96,96,64]", 18)]
    profile = {"memoryProfilePerAllocator": {
        "cpu": {"profileSummary": {"peakStats": {"peakBytesInUse": "10"}},
                "memoryProfileSnapshots": [], "activeAllocations": [], "specialAllocations": []},
        "mklcpu": {"profileSummary": {"peakStats": {"peakBytesInUse": "700"}, "peakStatsTimePs": str(int(2.5e12))},
                   "memoryProfileSnapshots": snapshots,
                   "specialAllocations": [{"tfOpName": "unused preallocated device memory", "tensorShape": "unknown",
                                           "requestedBytes": "500", "allocationBytes": "500"}],
                   "activeAllocations": [{"snapshotIndex": "-1", "specialIndex": "0"},
                                         {"snapshotIndex": "0", "specialIndex": "-1"},
                                         {"snapshotIndex": "1", "specialIndex": "-1"},
                                         {"snapshotIndex": "2", "specialIndex": "-1"},
                                         {"snapshotIndex": "3", "specialIndex": "-1", "numOccurrences": "2"}]}}}
    peak = breakdown.peak_allocations(profile, top=2)
    assert peak["peak_bytes"] == 700 and peak["peak_seconds"] == 2.0 and peak["backward_start_seconds"] == 1.5
    assert peak["by_side"] == {"before": 500, "forward": 72 + 2 * 18, "backward": 40 + 39}
    assert peak["largest"] == {
        "forward": [{"op": "deeplab_v3/conv1_bn/FusedBatchNormV3", "shape": "[8,192,192,64]", "bytes": 72},
                    {"op": "deeplab_v3/pool1_pool/MaxPool", "shape": "[8,96,96,64]", "bytes": 18}],
        "backward": [{"op": "Pad_47", "shape": "[192,24,2048]", "bytes": 39},
                     {"op": "gradient_tape/deeplab_v3/aspp_pool_avg/Tile", "shape": "[8,24,24,2048]", "bytes": 36}]}


@pytest.mark.slow
def test_profile_memory_of_a_real_step(tmp_path):
    import tensorflow as tf

    # Tensors of 1 MB and more: oneDNN's pool (whose allocations the profile sees) holds them.
    w = tf.Variable(tf.ones([512, 512]))
    x = tf.ones([2048, 512])

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.nn.relu(x @ w) ** 2)
        w.assign_sub(1e-6 * tape.gradient(loss, w))
        return loss

    step()
    peak = breakdown.peak_allocations(breakdown.profile_memory(step, str(tmp_path / "trace")))
    assert peak["peak_bytes"] > 0 and peak["largest"]["forward"] + peak["largest"]["backward"]


def _result(batch, rss, mode="step", variant=None, kept=None):
    settings = dict(batch=batch, mode=mode, steps=2, onednn=True)
    if variant:
        settings["variant"] = variant
    result = {"settings": settings, "peak_rss_bytes": rss, "rss_by_kind": {}, "imported_rss_bytes": 1,
              "weights_bytes": 2, "optimizer_slot_bytes": 4, "allocator_step_peaks": [90, 100],
              "allocator_current_bytes": 10}
    if kept:
        result["kept_for_backward"] = {"total_bytes": kept}
    return result


def test_summary_of_the_largest_batch_step():
    runs = {"step_batch2": _result(2, 300, kept=20), "step_batch8": _result(8, 900, kept=60),
            "forward": _result(8, 500, mode="forward"), "loss_reference": _result(8, 950, variant="loss_reference")}
    summary = breakdown.summarize(runs)
    assert summary["of"] == "step_batch8" and summary["peak_rss_bytes"] == 900
    assert summary["allocator_peak_bytes"] == 100 and summary["kept_for_backward_bytes"] == 60
    assert summary["transient_at_peak_bytes"] == 100 - 10 - 60
    assert summary["per_image_peak_rss_bytes"] == 100
    assert summary["differences"] == {"forward": -400, "loss_reference": 50}


def test_experiment_settings():
    runs = breakdown.experiment_settings(["step", "onednn_off", "forward", "xla"], [2, 8], 3)
    assert list(runs) == ["step_batch2", "step_batch8", "onednn_off", "forward", "xla"]
    assert runs["step_batch2"] == dict(batch=2, mode="step", steps=3, onednn=True, kept=True, peak_profile=False)
    assert runs["step_batch8"]["peak_profile"] is True   # only the largest batch is profiled
    assert runs["onednn_off"]["onednn"] is False and runs["onednn_off"]["batch"] == 8
    assert runs["xla"]["xla"] is True and runs["xla"]["variant"] == "xla"
    frozen = breakdown.experiment_settings(["bn_frozen", "bn_frozen_autodiff"], [2, 8], 3)
    assert {name: (r["bn_policy"], r["variant"], r["batch"], r["kept"]) for name, r in frozen.items()} == {
        "bn_frozen": ("frozen", "bn_frozen", 8, True),
        "bn_frozen_autodiff": ("frozen", "bn_frozen_autodiff", 8, True)}
    environment = breakdown.experiment_settings(["onednn_cache_off", "system_allocator", "one_malloc_arena"],
                                                [2, 8], 3)
    assert environment["one_malloc_arena"]["env"] == {"MALLOC_ARENA_MAX": "1"}
    assert environment["onednn_cache_off"]["env"] == {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "0"}
    assert environment["system_allocator"]["env"] == {"TF_ONEDNN_USE_SYSTEM_ALLOCATOR": "1"}
    assert all(r["batch"] == 8 and r["onednn"] for r in environment.values())
    with pytest.raises(ValueError, match="unknown experiment 'fp16'"):
        breakdown.experiment_settings(["fp16"], [2], 1)


def test_allocator_figures_are_missing_where_tf_kept_no_statistics():
    counted = dict(_result(8, 3 * 2 ** 30), allocator_step_peaks=[5, 7, 6], allocator_current_bytes=2)
    assert breakdown.allocator_figures(counted) == (7, 2)
    onednn_off = dict(counted, allocator_step_peaks=[None, None], allocator_current_bytes=None)
    system_allocator = dict(counted, allocator_step_peaks=[0, 0], allocator_current_bytes=0)
    assert breakdown.allocator_figures(onednn_off) == breakdown.allocator_figures(system_allocator) == (None, None)
    assert breakdown.table({"system_allocator": system_allocator})[-1].endswith("| 3.00 | nan | nan | nan |")


def test_run_worker_starts_the_worker_with_the_experiments_environment(monkeypatch):
    started = {}

    def fake_run(command, env, **kwargs):
        started.update(command=command, env=env)
        return breakdown.subprocess.CompletedProcess(command, 0, stdout='noise\nRESULT {"peak_rss_bytes": 5}\n',
                                                     stderr="")

    monkeypatch.setattr(breakdown.subprocess, "run", fake_run)
    settings = breakdown.experiment_settings(["system_allocator"], [8], 1)["system_allocator"]
    assert breakdown.run_worker(settings, "/checkout") == {"peak_rss_bytes": 5}
    assert started["command"][2] == "--worker"
    assert started["env"]["TF_ONEDNN_USE_SYSTEM_ALLOCATOR"] == "1"
    assert started["env"]["TF_ENABLE_ONEDNN_OPTS"] == "1"
    assert started["env"]["PYTHONPATH"].split(breakdown.os.pathsep)[0] == "/checkout"


def test_table_shows_each_runs_fastest_step_where_it_was_timed():
    timed = dict(_result(8, 3 * 2 ** 30), step_seconds=[5.5, 5.25, 5.75])
    lines = breakdown.table({"bn_frozen": timed, "older": _result(8, 2 ** 30)})
    assert lines[0].endswith("| step s (min) |")
    assert lines[2] == "| bn_frozen | 8 | 3.00 | 0.00 | 0.00 | 5.25 |"
    assert lines[3].endswith("| nan |")
