"""Train-step throughput: the custom tf.function loop against plain Keras `fit`.

DeepLab v3 (OS16) at the book's 384 x 384 input, batch 2 (the default step also at
batch 8, the recipe's), float32, one fixed batch from the embedded dataset's training
pipeline, the same initial weights (seeded; each worker reports a checksum and the test
checks they agree). Cases:

  custom  research.training.steps.make_train_step: AtrousConv2D, fused loss, XLA on/off, and
          with op determinism (`deterministic=true`) to show its cost
  fit     research.fit_baseline: dilated Conv2D, reference loss as a Keras loss,
          Keras metrics, `model.fit` with Keras' jit_compile="auto" (off on CPU), fed
          by a tf.data dataset repeating the batch (without the autotuning thread)

each with oneDNN off and on (TF's own default depends on the CPU: the table's speed-ups
are against `fit` with TF's default on the machine it runs on); the custom loop also with one
optimization switched off at a time (reference loss, Conv2D atrous, Keras BatchNorm,
autodiff instead of the hand-written atrous backward) so the gain of each shows (under
XLA the fused BatchNorm runs Keras' ops, so batchnorm_keras changes nothing there); U-Net
custom vs fit. `TF_ENABLE_ONEDNN_OPTS` is read when TensorFlow is
imported, so every setting runs in its own worker process (this file with --worker),
which builds the step, runs it once (tracing/compiling, untimed) and then STEPS_PER_CALL
steps per request: for `fit` inside ONE `model.fit(steps_per_epoch=STEPS_PER_CALL)`
call, as a user's epoch runs (one `fit` call per step would time Keras' per-call
set-up with every step); for the custom loop as research.train runs them (a host sync
per step for the NaN guard). pytest-benchmark times the requests (the pipe costs well
under 1 ms); tables and ratios use the minimum over rounds divided by STEPS_PER_CALL
(`extra_info["steps_per_call"]`). Items are images.

Memory: every case also reports its worker's peak RSS over the timed steps alone
(the step on a fixed batch, no input pipeline; the mark restarts after the build and the
first, tracing step), the "peak GiB" column, and TF's allocator peak where TF keeps one
(oneDNN on); see `_memory_info` and research/memory.py. Where it goes:
scripts/memory_breakdown.py.

Achieved compute: every worker also reports the training FLOPs of one step, counted
analytically from the model's layers (see `training_flops`), and the FLOP/s of a large
dense 3x3 convolution measured in the same process, so the table shows what fraction
of this machine's reachable peak the step gets. The VM's speed drifts by up to 1.6x
over minutes (one `make bench` read 97-156 GFLOP/s from a probe taken once per case),
so the probe runs once after the build and again, untimed, before every timed round;
the fraction divides the best step by the best probe of the same case
(`extra_info["dense_conv_probes"]` keeps them all).

    pytest benchmarks/bench_train_step.py -s     # about 30 minutes on 2 idle cores
"""
import json
import os
import sys
import time

import numpy as np
import pytest

from benchmarks.support import WorkerProcess, bench_case, record_items_per_second

SIZE = 384
BATCH = 2
STEPS_PER_CALL = 3
DENSE_CONV = (4, 32, 32, 256)  # [B, H, W, C] -> 256 filters, 3x3: the reachable-peak probe


# ----------------------------------------------------------------------------------------
# FLOPs, counted from the model (used in the worker)

def training_flops(model, input_size, batch):
    """FLOPs of one training step: 3 x the forward pass of every conv/dense layer.

    Forward FLOPs of a convolution are 2 * H_out * W_out * KH * KW * C_in * C_out per
    image (a multiply and an add per weight per output position; a dilated conv counts
    its nine taps, as a dense conv with holes does). The backward pass costs about twice
    the forward pass (gradients for the input and for the weights), hence x3. Element-
    wise layers (BatchNorm, ReLU, resize, softmax) are left out: they are memory-bound
    and a few percent of the FLOPs. The model is rebuilt with a static input size so
    every layer's output shape is known.
    """
    import keras

    sized = keras.Model.from_config(_with_input_size(model.get_config(), input_size))
    forward = 0
    for layer in sized.layers:
        weights = getattr(layer, "kernel", None)
        if weights is None:
            continue
        kernel = tuple(weights.shape)
        out_h, out_w = layer.output.shape[1:3]
        if len(kernel) == 4:                      # conv: [KH, KW, Cin, Cout]
            forward += 2 * out_h * out_w * int(np.prod(kernel))
    return 3 * forward * batch


def _with_input_size(config, input_size):
    config = json.loads(json.dumps(config))
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer":
            layer["config"]["batch_shape"] = [None, input_size, input_size, 3]
    return config


def make_dense_conv_probe(repeats=5):
    """A function returning the FLOP/s of a dense 3x3 conv [4, 32, 32, 256] -> 256,
    forward + backward, best of `repeats` runs (about 0.1 s each on 2 cores). Traced
    once; call it whenever the machine's reachable peak is wanted."""
    import tensorflow as tf

    x = tf.random.stateless_normal(DENSE_CONV, seed=[0, 1])
    kernel = tf.Variable(tf.random.stateless_normal([3, 3, DENSE_CONV[3], 256], seed=[0, 2]))
    flops = 3 * 2 * DENSE_CONV[0] * DENSE_CONV[1] * DENSE_CONV[2] * 9 * DENSE_CONV[3] * 256

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.nn.conv2d(x, kernel, 1, "SAME")
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [x, kernel])

    step()[0].numpy()

    def probe():
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()[0].numpy()
            times.append(time.perf_counter() - start)
        return flops / min(times)

    return probe


# ----------------------------------------------------------------------------------------
# Worker side (its own process; imports TensorFlow with the oneDNN setting it was given)

def _case_config(case):
    """The project config a case measures (random weights, float32, its batch and size)."""
    from research import configs

    batch, size = case.get("batch", BATCH), case.get("size", SIZE)
    return configs.load_config(case.get("config", "deeplabv3_voc")).replace(
        model=case["model"], weights=None, batch_size=batch, precision="float32",
        input_size=(size, size), loss_impl=case.get("loss", "fused"),
        atrous=case.get("atrous", "kernels"), batchnorm=case.get("batchnorm", "fused"),
        bn_policy=case.get("bn_policy", "sync"))


def _fit_runner(config, images, labels):
    """(model, run(steps)): Keras `fit` on the fixed batch, repeated."""
    import tensorflow as tf
    from research import fit_baseline
    from research.data import pipeline

    model = fit_baseline.build_compiled_model(config)
    # Without tf.data's autotuning thread, as the project's own pipelines run
    # (pipeline.without_autotune_thread): `fit` deletes its iterator at the end of
    # every call, and the deletion waits out that thread's current sleep, which
    # doubles over a run. Measured (vm-AMD-EPYC-2cpu, oneDNN on, 4 calls of 3 steps
    # each way): 2 of 4 calls spent 3.8 and 6.0 s after their last step with the
    # thread, none over 0.01 s without; the steps themselves took the same. That
    # wait, not Keras, made `fit`'s times cluster at 5.11 s and 10.24 s.
    dataset = pipeline.without_autotune_thread(tf.data.Dataset.from_tensors((images, labels)).repeat())

    def run(steps):
        model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)

    return model, run


def _custom_runner(case, config, images, labels):
    """(model, run(steps)): the project's train step on the fixed batch."""
    import tensorflow as tf
    import kernels
    from research import build, runtime
    from research.training.steps import make_train_step

    model = build.build_model(config)
    optimizer = build.make_optimizer(config, "float32")
    optimizer.build(model.trainable_variables)
    confusion = kernels.StreamingConfusionMatrix(config.num_classes)
    # As training checks it: a combination training refuses is a ValueError saying why.
    use_xla, _ = runtime.resolve_jit_compile(case["xla"], "cpu", "float32", 1,
                                             bool(case.get("deterministic")))
    step = make_train_step(model, optimizer, tf.distribute.get_strategy(), config,
                           confusion, use_xla=use_xla, loss_scaling=False)

    def run(steps):
        for _ in range(steps):
            float(step(images, labels)[0])  # float(): waits for the step, as the loop does

    return model, run


def _build(case, batch_file):
    """Builds one case's step; returns (run_steps, dense_conv_probe, facts)."""
    import keras
    import tensorflow as tf
    import kernels
    from research import runtime

    data = np.load(batch_file)
    images, labels = tf.constant(data["images"]), tf.constant(data["labels"])
    config = _case_config(case)
    if case.get("atrous_backward") == "autodiff":
        # The atrous taps without their hand-written gradient: autodiff through the same
        # forward ops (what kernels/atrous.py did before it had one).
        atrous = kernels.atrous
        atrous._taps_conv = lambda x, kernel, rate, cut_rows, cut_cols: atrous._tap_sum(
            x, kernel, *atrous._tap_groups(x, kernel.shape, rate, cut_rows, cut_cols))
    keras.utils.set_random_seed(0)
    if case.get("deterministic"):
        runtime.enable_determinism(0)  # what `--set deterministic=true` does, before the build
    if case["trainer"] == "fit":
        model, run = _fit_runner(config, images, labels)
    else:
        model, run = _custom_runner(case, config, images, labels)
    checksum = float(sum(np.sum(np.abs(w)) for w in model.get_weights()))
    probe = make_dense_conv_probe()
    facts = {"onednn": runtime.onednn_state()["enabled"], "weights_checksum": checksum,
             "flops_per_step": training_flops(model, config.input_size[0], config.batch_size),
             "dense_conv_flops_per_s": probe()}
    return run, probe, facts


def _memory_reply(restart):
    """The worker's memory (bytes): its peak RSS and TF's allocator peak and current
    bytes (None without oneDNN, see research/memory.py). With `restart` both peaks
    restart afterwards: after the build request (imports, model, tracing and the first
    step), the replies then hold the peak of the timed steps alone."""
    from research import memory

    stats = memory.allocator_stats()
    reply = {"peak_rss_bytes": memory.peak_rss_bytes(),
             "allocator_peak_bytes": stats and stats["peak"],
             "allocator_current_bytes": stats and stats["current"]}
    if restart:
        memory.reset_peak_rss()
        memory.reset_allocator_peak()
    return reply


def _worker():
    """Answers JSON requests on stdin: {"op": "build", "case", "batch_file"} (builds, runs
    one step) | {"op": "run", "steps": N} (N steps) | {"op": "probe"} (the dense-conv
    probe alone: {"dense_conv_flops_per_s"}). Build and run replies also hold
    `_memory_reply`'s fields."""
    import research  # noqa: F401  (the project's runtime defaults, as the command lines)

    run = probe = None
    for line in sys.stdin:
        request = json.loads(line)
        reply = {}
        if request["op"] == "probe":
            print(json.dumps({"dense_conv_flops_per_s": probe()}), flush=True)
            continue
        if request["op"] == "build":
            run, probe, reply = _build(request["case"], request["batch_file"])
        start = time.perf_counter()
        run(request.get("steps", 1))
        reply["seconds"] = time.perf_counter() - start
        reply.update(_memory_reply(restart=request["op"] == "build"))
        print(json.dumps(reply), flush=True)


# ----------------------------------------------------------------------------------------
# pytest side

def _case_id(case):
    parts = [case["model"], case["trainer"], "onednn_" + ("on" if case["onednn"] else "off")]
    if case["trainer"] == "custom":
        parts.append("xla_" + ("on" if case["xla"] else "off"))
    parts += [f"{k}_{case[k]}" for k in ("loss", "atrous", "batchnorm", "atrous_backward", "bn_policy")
              if k in case]
    if case.get("batch", BATCH) != BATCH:
        parts.append(f"batch_{case['batch']}")
    if case.get("deterministic"):
        parts.append("deterministic")
    return "-".join(parts)


def _cases():
    cases = []
    for onednn in (False, True):
        cases.append(dict(model="deeplab_v3", trainer="fit", onednn=onednn))
        for xla in (False, True):
            cases.append(dict(model="deeplab_v3", trainer="custom", onednn=onednn, xla=xla))
        # One optimization off at a time (XLA on/off is covered above): with oneDNN on
        # without XLA (the CPU default), with oneDNN off under XLA, so each gain also shows
        # on the XLA path (what a GPU and `--set jit_compile=true` run).
        cases.append(dict(model="deeplab_v3", trainer="custom", onednn=onednn, xla=not onednn,
                          loss="reference"))
        cases.append(dict(model="deeplab_v3", trainer="custom", onednn=onednn, xla=not onednn,
                          atrous="keras"))
        cases.append(dict(model="deeplab_v3", trainer="custom", onednn=onednn, xla=not onednn,
                          batchnorm="keras"))
        cases.append(dict(model="deeplab_v3", trainer="custom", onednn=onednn, xla=not onednn,
                          atrous_backward="autodiff"))
        # The cost of `--set deterministic=true` (op determinism) on the default step, with
        # the XLA setting training then picks: off on CPU, where XLA has no deterministic
        # MaxPool gradient (`runtime.resolve_jit_compile`; XLA on fails at the first step).
        cases.append(dict(model="deeplab_v3", trainer="custom", onednn=onednn, xla=False,
                          deterministic=True))
    # Memory at the batch the recipe trains at (deeplabv3_voc: 8), on the default step
    # (oneDNN on, XLA off on CPU); every case reports its peak memory.
    cases.append(dict(model="deeplab_v3", trainer="custom", onednn=True, xla=False, batch=8))
    # ... and with BatchNorm frozen, the small-batch fine-tuning policy, which keeps no
    # BatchNorm input for the backward (kernels.batchnorm.frozen_batch_norm).
    cases.append(dict(model="deeplab_v3", trainer="custom", onednn=True, xla=False, batch=8,
                      bn_policy="frozen"))
    for onednn in (False, True):
        cases.append(dict(model="unet", trainer="fit", onednn=onednn))
        cases.append(dict(model="unet", trainer="custom", onednn=onednn, xla=not onednn))
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def batch_file(bench_voc_root, tmp_path_factory):
    """`batch_file(batch)`: the path of one training batch of that size (384 px crops of
    the embedded dataset) saved for the workers; made once per size."""
    from research.data.pipeline import make_dataset

    folder, paths = tmp_path_factory.mktemp("train_step"), {}

    def path_for(batch):
        if batch not in paths:
            dataset = make_dataset(bench_voc_root, "train", batch, SIZE, resize_to_before_crop=444,
                                   augmentation=True, shuffle=True, seed=0, drop_remainder=True)
            images, labels = next(iter(dataset))
            paths[batch] = str(folder / f"batch{batch}.npz")
            np.savez(paths[batch], images=images.numpy(), labels=labels.numpy())
        return paths[batch]

    return path_for


@pytest.fixture(scope="module")
def checksums():
    return {}


@pytest.mark.parametrize("case", [
    bench_case(c, id=_case_id(c), baseline=c["trainer"] == "fit" or c.get("atrous") == "keras"
               or c.get("batchnorm") == "keras")
    for c in CASES])
def test_train_step(benchmark, case, batch_file, checksums, comparison_table, tf_default_onednn):
    worker = WorkerProcess("benchmarks.bench_train_step", onednn=case["onednn"])
    try:
        batch = case.get("batch", BATCH)
        built = worker.request({"op": "build", "case": case, "batch_file": batch_file(batch)})
        assert built["onednn"] == case["onednn"], "TF_ENABLE_ONEDNN_OPTS did not take effect"
        # Same model, same initial weights in every process (Conv2D and AtrousConv2D too).
        first = checksums.setdefault(case["model"], built["weights_checksum"])
        assert built["weights_checksum"] == pytest.approx(first, rel=1e-6)
        benchmark.group = f"train step {case['model']} {SIZE}px batch {batch}"
        replies, probes = [], [built["dense_conv_flops_per_s"]]
        # The build request already ran (and traced) one step: no warm-up round. Before
        # each round, untimed (pytest-benchmark's setup), the machine's peak right then.
        rounds = 2 if built["seconds"] > 60 else 3
        request = {"op": "run", "steps": STEPS_PER_CALL}
        benchmark.pedantic(lambda: replies.append(worker.request(request)),
                           setup=lambda: probes.append(
                               worker.request({"op": "probe"})["dense_conv_flops_per_s"]),
                           rounds=rounds, warmup_rounds=0, iterations=1)
    finally:
        worker.close()
    if benchmark.disabled:
        return
    images_per_s = record_items_per_second(benchmark, batch * STEPS_PER_CALL)
    memory = _memory_info(built, replies)
    step_seconds = benchmark.stats.stats.min / STEPS_PER_CALL
    achieved = built["flops_per_step"] / step_seconds
    peak = max(probes)  # best step against best probe: both the machine's fastest phase
    benchmark.extra_info.update(
        case=case, worker_seconds=[reply["seconds"] for reply in replies], batch=batch,
        steps_per_call=STEPS_PER_CALL, seconds_per_step=step_seconds, **memory,
        first_call_seconds=built["seconds"], flops_per_step=built["flops_per_step"],
        achieved_flops_per_s=achieved, dense_conv_flops_per_s=peak, dense_conv_probes=probes,
        fraction_of_dense_conv=achieved / peak)
    baseline = case["trainer"] == "fit" and case["onednn"] == tf_default_onednn  # vs fit, TF's default
    comparison_table.append((benchmark.group, _case_id(case)[len(case["model"]) + 1:],
                             step_seconds, images_per_s, baseline, memory["peak_rss_bytes"]))
    print(f"\n{_case_id(case)}: {step_seconds:.2f} s/step, {images_per_s:.3f} images/s, "
          f"{achieved / 1e9:.1f} GFLOP/s = {100 * achieved / peak:.0f}% of a dense 3x3 conv "
          f"({peak / 1e9:.1f} GFLOP/s, probes {min(probes) / 1e9:.0f}-{peak / 1e9:.0f}); "
          f"{built['flops_per_step'] / 1e9:.0f} GFLOP per step; peak memory of the steps "
          f"{memory['peak_rss_bytes'] / 2 ** 30:.2f} GiB (process with build and tracing "
          f"{memory['build_peak_rss_bytes'] / 2 ** 30:.2f} GiB)")


def _memory_info(built, replies):
    """The memory fields of a case's extra_info (bytes) from its worker's replies.

    peak_rss_bytes: the worker's peak RSS over the timed steps alone (the mark restarts
    after the build request: imports, model, tracing and the first step), what the
    table shows; build_peak_rss_bytes: the process's peak through the build request;
    allocator_peak_bytes / allocator_current_bytes: TF's allocator, the most live tensor
    bytes during the steps and those left after them (weights, optimizer slots), None
    where TF keeps no statistics (oneDNN off).
    """
    last = replies[-1]  # the peaks accumulate over the run requests
    return {"peak_rss_bytes": max(reply["peak_rss_bytes"] for reply in replies),
            "build_peak_rss_bytes": built["peak_rss_bytes"],
            "allocator_peak_bytes": last["allocator_peak_bytes"],
            "allocator_current_bytes": last["allocator_current_bytes"]}


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    _worker()
