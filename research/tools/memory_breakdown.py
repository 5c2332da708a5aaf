"""Where a DeepLab v3 training step's memory goes, measured.

    python scripts/memory_breakdown.py [--batches 2 8] [--steps 4] [--out FILE]
        [--experiments step forward gradients loss_reference atrous_keras bn_frozen
                       bn_frozen_autodiff onednn_off onednn_cache_off system_allocator
                       one_malloc_arena xla]
        [--source DIR --label before]

DeepLab v3, ResNet-50, output stride 16, float32, 384 x 384, the `deeplabv3_voc` recipe
(Adam) with random weights, one fixed random batch (no input pipeline). Every experiment
runs in a fresh process (this script with --worker), which builds the model and the
optimizer, runs the step once (tracing it), restarts the memory marks
(research/memory.py) and runs --steps more steps. Experiments:

  step            research.train.make_train_step, the project's defaults, at each --batches
  forward         the forward pass and the loss only (training mode), largest batch
  gradients       forward, loss and gradients, no optimizer update
  loss_reference  the step with loss_impl="reference" (the plain twin of the fused loss)
  atrous_keras    the step with atrous="keras" (Keras' dilated Conv2D)
  bn_frozen       the step with bn_policy="frozen" (BatchNorm at its moving statistics,
                  scale and offset not trained: the small-batch fine-tuning policy)
  bn_frozen_autodiff  bn_frozen with autodiff's BatchNorm gradient instead of
                  kernels.batchnorm.frozen_batch_norm's (which keeps no BatchNorm input)
  onednn_off      the step with TF_ENABLE_ONEDNN_OPTS=0 (TF's plain CPU allocator: no
                  allocator statistics, peak RSS only)
  onednn_cache_off  the step with ONEDNN_PRIMITIVE_CACHE_CAPACITY=0: what oneDNN's cache
                  of compiled convolutions and matmuls holds
  one_malloc_arena  the step with MALLOC_ARENA_MAX=1: glibc's malloc keeps one arena
                  instead of one per thread (up to 8 per core), so freed small blocks
                  are shared by every thread
  system_allocator  the step with TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1: malloc instead of
                  oneDNN's pool (which never returns memory; no allocator statistics)
  xla             the step compiled by XLA (jit_compile=true; its own buffer plan)

Each reports the process's peak RSS over the steps alone (VmHWM), each step's seconds,
TF's allocator peak per step and what stays allocated after a step (weights, optimizer
slots), the resident memory by kind at the end (/proc/self/smaps: code pages, heap, the
allocator's large mappings, other), the bytes of weights and optimizer slots, and, for
`step`, the activations the backward keeps, from the traced graph: each forward tensor a
gradient op reads, by what reads it (BatchNorm gradient: the BatchNorm inputs; ReLU
gradient: the ReLU outputs; ...); at the largest batch also what is alive at the
allocator's peak, from one more step run under TensorFlow's profiler. Results go to FILE (default benchmarks/results/<machine id>/memory.json)
under "runs" -> --label (default "current") -> "runs" -> run name, each run with its
provenance; runs and labels already in the file are kept unless measured again (so
`--experiments xla` adds one run). `--source DIR` measures another checkout's `research` and
`kernels` (e.g. an older commit's, for a before/after), reading memory with this
checkout's research/memory.py.

`main` is the command line of scripts/memory_breakdown.py.
"""
import argparse
import collections
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIZE = 384
GiB = 2 ** 30
EXPERIMENTS = ("step", "forward", "gradients", "loss_reference", "atrous_keras", "bn_frozen",
               "bn_frozen_autodiff", "onednn_off", "onednn_cache_off", "system_allocator", "one_malloc_arena", "xla")
# Experiments that differ from the step only in the worker's environment (read by oneDNN
# and TensorFlow as they start, so they cannot be set from inside the worker).
ENVIRONMENT_EXPERIMENTS = {
    "onednn_cache_off": {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "0"},
    "system_allocator": {"TF_ONEDNN_USE_SYSTEM_ALLOCATOR": "1"},
    "one_malloc_arena": {"MALLOC_ARENA_MAX": "1"},   # glibc reads it at the first malloc
}

# Which backward op reads a kept forward tensor names its category; the first that
# applies wins (a ReLU output is also the next convolution's input). Then by the op that
# made it (KEPT_BY_MAKER), then "other".
KEPT_BY_READER = (
    (("FusedBatchNormGradV3", "FusedBatchNormGrad", "FusedBatchNormGradV2"), "BatchNorm inputs"),
    (("ReluGrad",), "ReLU outputs"),
    (("MaxPoolGrad",), "max-pool input and output"),
    (("Conv2DBackpropFilter", "Conv2DBackpropInput", "MatMul"), "other convolution inputs"),
)
KEPT_BY_MAKER = {"SparseSoftmaxCrossEntropyWithLogits": "loss: softmax minus one-hot"}


# ----------------------------------------------------------------------------------------
# Pure helpers (tested)

def rss_by_kind(smaps_text, large=128 * 2 ** 20):
    """Resident bytes by kind from /proc/<pid>/smaps text: {"code_and_files", "heap",
    "large_anonymous", "other_anonymous"}.

    "large_anonymous": anonymous mappings of at least `large` bytes: with oneDNN on, TF's
    allocator pool (its regions are large mmaps that the kernel merges into one mapping);
    malloc's per-thread arenas are 64 MiB reservations and stay below it.
    """
    kinds = dict.fromkeys(("code_and_files", "heap", "large_anonymous", "other_anonymous"), 0)
    size = name = None
    for line in smaps_text.splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and not fields[0].endswith(":"):  # a mapping's header
            low, high = (int(v, 16) for v in fields[0].split("-"))
            size, name = high - low, (fields[5] if len(fields) > 5 else "")
        elif fields[:1] == ["Rss:"] and size is not None:
            if name == "[heap]":
                kind = "heap"
            elif name.startswith("/"):
                kind = "code_and_files"
            else:
                kind = "large_anonymous" if size >= large else "other_anonymous"
            kinds[kind] += int(fields[1]) * 1024
    return kinds


def kept_categories(kept):
    """{category: bytes} of kept tensors [(bytes, {reader op types}, maker op type)]
    (see KEPT_BY_READER), largest first."""
    totals = collections.Counter()
    for size, readers, maker in kept:
        category = next((name for types, name in KEPT_BY_READER if readers & set(types)),
                        KEPT_BY_MAKER.get(maker, "other"))
        totals[category] += size
    return dict(totals.most_common())


def allocator_figures(run):
    """(largest allocator peak of the steps, bytes allocated after a step) of a worker
    result, each None where TF kept no statistics: without oneDNN TF has none, and with
    TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1 oneDNN's allocator reports zeros (a step of a built
    model never holds 0 bytes)."""
    peaks = [p for p in run["allocator_step_peaks"] if p]
    return (max(peaks) if peaks else None), (run["allocator_current_bytes"] or None)


def summarize(runs):
    """The breakdown of the largest-batch `step` run and the other runs' differences to it
    (bytes), from the worker results {name: result}."""
    steps = sorted((r["settings"]["batch"], name) for name, r in runs.items()
                   if r["settings"]["mode"] == "step" and r["settings"].get("variant") is None)
    if not steps:
        return {}
    batch, name = steps[-1]
    main = runs[name]
    peak, after = allocator_figures(main)
    kept = main.get("kept_for_backward", {})
    summary = {"of": name, "peak_rss_bytes": main["peak_rss_bytes"], "rss_by_kind": main["rss_by_kind"],
               "imported_rss_bytes": main["imported_rss_bytes"],
               "weights_bytes": main["weights_bytes"], "optimizer_slot_bytes": main["optimizer_slot_bytes"],
               "allocator_peak_bytes": peak, "allocator_after_step_bytes": after}
    if peak is not None and kept:
        summary["kept_for_backward_bytes"] = kept["total_bytes"]
        summary["transient_at_peak_bytes"] = peak - after - kept["total_bytes"]
    if len(steps) > 1:
        small = runs[steps[0][1]]
        summary["per_image_peak_rss_bytes"] = (main["peak_rss_bytes"] - small["peak_rss_bytes"]) / (batch - steps[0][0])
    summary["differences"] = {other: r["peak_rss_bytes"] - main["peak_rss_bytes"] for other, r in runs.items()
                              if other != name and r["settings"]["batch"] == batch}
    return summary


def peak_allocations(profile, top=8):
    """What is alive at a profiled step's allocator peak, from TensorFlow's memory
    profile (the profiler's "memory_profile" tool, parsed JSON).

    Each tensor alive at the peak is on one of three sides: made before the step
    ("before": the weights, optimizer slots and other tensors the profile did not see
    allocated), in the forward pass ("forward": what the backward keeps, and the
    forward's last outputs), or in the backward ("backward": gradients being formed and
    their temporaries). The backward starts at the first allocation by a `gradient_tape/`
    op that the profile lists (alive at the peak or in its sampled timeline): every
    forward op precedes the loss, which precedes every gradient op. (Hand-written
    gradients' ops lie outside `gradient_tape/`; were one to run before the first listed
    autodiff op, its tensors would count as forward.)

    Returns {"peak_bytes", "peak_seconds" (after the profile's first allocation),
    "backward_start_seconds", "by_side": {side: pool bytes}, "largest": {"forward": [...],
    "backward": [...]}} for the allocator with the highest peak; "largest" lists each
    side's `top` largest tensors as {"op", "shape", "bytes" (the tensor's)}.
    """
    allocators = profile.get("memoryProfilePerAllocator", {}).values()
    if not allocators:  # on CPU only oneDNN's pool traces its allocations
        raise ValueError("the memory profile has no allocator (is oneDNN on?)")
    memory = max(allocators, key=_peak_in_use)
    snapshots = memory["memoryProfileSnapshots"]  # the allocations alive at the peak
    listed = snapshots + memory.get("sampledTimelineSnapshots", [])
    start = min((int(s["timeOffsetPs"]) for s in listed), default=0)
    backward_start = min((int(s["timeOffsetPs"]) for s in listed
                          if "gradient_tape/" in s["activityMetadata"]["tfOpName"]), default=None)
    alive, by_side = {"forward": [], "backward": []}, collections.Counter()
    for entry in memory["activeAllocations"]:
        index, count = int(entry["snapshotIndex"]), int(entry.get("numOccurrences", 1))
        if index < 0:
            meta, side = memory["specialAllocations"][int(entry["specialIndex"])], "before"
        else:
            meta = snapshots[index]["activityMetadata"]
            side = ("backward" if backward_start is not None
                    and int(snapshots[index]["timeOffsetPs"]) >= backward_start else "forward")
        by_side[side] += int(meta["allocationBytes"]) * count
        if side != "before":
            op = re.sub(r"^(Stateful)?PartitionedCall/", "", meta["tfOpName"])
            # Keras scopes a model's second call as `deeplab_v3_1/conv1_bn_1/`: drop the
            # suffix (a layer whose own name ends in `_1` loses it too).
            alive[side] += [{"op": re.sub(r"_1(?=/)", "", op), "shape": meta["tensorShape"],
                             "bytes": int(meta["requestedBytes"])}] * count
    peak_time = int(memory["profileSummary"].get("peakStatsTimePs") or start)
    return {"peak_bytes": _peak_in_use(memory), "peak_seconds": (peak_time - start) / 1e12,
            "backward_start_seconds": None if backward_start is None else (backward_start - start) / 1e12,
            "by_side": dict(by_side),
            "largest": {side: sorted(rows, key=lambda a: -a["bytes"])[:top] for side, rows in alive.items()}}


def _peak_in_use(allocator):
    """An allocator's peak bytes in use, from its memory profile summary."""
    return int(allocator["profileSummary"].get("peakStats", {}).get("peakBytesInUse") or 0)


def profile_memory(run, logdir):
    """Runs `run()` once under TensorFlow's profiler (trace in `logdir`, replaced) and
    returns its parsed memory profile (see `peak_allocations`)."""
    import glob
    import shutil

    import tensorflow as tf
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin

    shutil.rmtree(logdir, ignore_errors=True)
    tf.profiler.experimental.start(logdir)
    try:
        run()
    finally:
        tf.profiler.experimental.stop()
    traces = glob.glob(os.path.join(glob.escape(logdir), "**", "*.xplane.pb"), recursive=True)
    if not traces:
        raise RuntimeError(f"{logdir}: the profiler wrote no trace")
    data, ok = _pywrap_profiler_plugin.xspace_to_tools_data(traces, "memory_profile")
    if not ok:
        raise RuntimeError(f"{logdir}: no memory profile from the trace ({data!r:.200})")
    return json.loads(data)


# ----------------------------------------------------------------------------------------
# Worker side (its own process)

def _memory_module():
    """This checkout's research/memory.py, also when `research` comes from --source."""
    spec = importlib.util.spec_from_file_location("_memory", os.path.join(ROOT, "research", "memory.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build(settings):
    """(model, optimizer, config, images, labels) for the settings, seeded."""
    import keras
    import numpy as np
    import tensorflow as tf
    from research import build
    from research import configs

    batch = settings["batch"]
    config = configs.load_config("deeplabv3_voc").replace(
        weights=None, batch_size=batch, precision="float32", input_size=(SIZE, SIZE),
        loss_impl=settings.get("loss", "fused"), atrous=settings.get("atrous", "kernels"),
        bn_policy=settings.get("bn_policy", "sync"))
    if settings.get("variant") == "bn_frozen_autodiff":
        # The frozen layers' inference op differentiated by autodiff (FusedBatchNormGradV3,
        # which reads each layer's input), as the layer was before frozen_batch_norm.
        from kernels import batchnorm
        batchnorm.frozen_batch_norm = batchnorm.fused_batch_norm_inference
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 255, (batch, SIZE, SIZE, 3)).astype("float32"))
    labels = rng.integers(0, config.num_classes, (batch, SIZE, SIZE)).astype("int32")
    labels[:, :16] = config.ignore_label  # some ignored pixels, as VOC's borders
    model = build.build_model(config)
    optimizer = build.make_optimizer(config, "float32")
    optimizer.build(model.trainable_variables)
    return model, optimizer, config, images, tf.constant(labels)


def _loss_and_gradients(model, config, images, labels, gradients):
    """A tf.function: the training-mode forward and loss (and its gradients, summed to a
    scalar so that none is returned)."""
    import kernels
    import tensorflow as tf
    from research import build

    loss_fn, loss_kwargs = build.loss_function(config)
    normalizers = kernels.loss_normalizers(labels, config.num_classes, config.ignore_label)

    @tf.function(autograph=False)
    def run():
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(images, training=True), normalizers=normalizers, **loss_kwargs)
        if not gradients:
            return loss
        grads = tape.gradient(loss, model.trainable_variables)
        return loss + tf.add_n([tf.reduce_sum(g[..., :1]) for g in grads]) * 0.0

    return run


def _step(settings, model, optimizer, config, images, labels):
    """A no-argument function running one step of the settings' mode and waiting for it."""
    import kernels
    import tensorflow as tf
    from research import runtime, train

    if settings["mode"] != "step":
        run = _loss_and_gradients(model, config, images, labels, settings["mode"] == "gradients")
        return lambda: float(run())
    use_xla, _ = runtime.resolve_jit_compile(settings.get("xla", "auto"), "cpu", "float32", 1)
    confusion = kernels.StreamingConfusionMatrix(config.num_classes)
    step = train.make_train_step(model, optimizer, tf.distribute.get_strategy(), config, confusion,
                                 use_xla=use_xla, loss_scaling=False)
    return lambda: float(step(images, labels)[0])


def backward_reads(loss_and_sources, *inputs, watch=False):
    """[(forward tensor, {op types of the backward ops that read it})]: what the backward
    of a traced forward keeps alive.

    `loss_and_sources(*inputs)` runs the forward and returns (loss, the sources to
    differentiate it by); it is traced in a tf.function under a GradientTape (which also
    watches the float `inputs` when `watch`, so that they can be sources), and the traced
    graph is split where the forward ends: every tensor made before that point and read
    by an op after it is kept until that op runs (named by `buffer_source`). Inputs (Placeholder), constants and
    variable reads are included; filter them by `tensor.op.type` as needed. `inputs`:
    tensors or tf.TensorSpec.
    """
    import tensorflow as tf

    marker = {}

    @tf.function(autograph=False)
    def traced(*inputs):
        with tf.GradientTape() as tape:
            if watch:
                tape.watch([x for x in inputs if x.dtype.is_floating])
            loss, sources = loss_and_sources(*inputs)
        marker["forward_ops"] = len(tf.compat.v1.get_default_graph().get_operations())
        return tape.gradient(loss, sources)

    operations = traced.get_concrete_function(*inputs).graph.get_operations()
    forward = set(operations[:marker["forward_ops"]])
    readers = collections.defaultdict(set)
    for op in operations[marker["forward_ops"]:]:
        for tensor in op.inputs:
            if tensor.op in forward:
                readers[buffer_source(tensor).ref()].add(op.type)
    return [(ref.deref(), types) for ref, types in readers.items()]


def buffer_source(tensor):
    """The tensor whose buffer a traced `tensor` is: itself, or what an `Identity` or
    `IdentityN` op passed on (they hand their input's buffer over without a copy;
    `tf.custom_gradient` and `kernels.BranchLink` make them), so that a buffer read
    through several names counts once."""
    while tensor.op.type in ("Identity", "IdentityN"):
        tensor = tensor.op.inputs[tensor.value_index]
    return tensor


def kept_for_backward(model, config, images, labels):
    """{"total_bytes", "by_reader": {category: bytes}, "unknown_shape": count}: the
    activations the backward of the training-mode forward and loss keeps (each tensor
    once; see KEPT_BY_READER and `backward_reads`); the batch itself, constants and
    variable reads are not counted. Tensors of unknown static shape are counted apart:
    BatchNorm's reserve spaces, a few KB each."""
    from research import build

    loss_fn, loss_kwargs = build.loss_function(config)

    def loss_and_sources(images, labels):
        loss = loss_fn(labels, model(images, training=True), **loss_kwargs)
        return loss, model.trainable_variables

    reads = [(t, r) for t, r in backward_reads(loss_and_sources, images, labels)
             if t.op.type not in ("Const", "ReadVariableOp", "Placeholder", "Shape")]
    known = [(t, r) for t, r in reads if t.shape.is_fully_defined()]
    kept = [(t.shape.num_elements() * t.dtype.size, r, t.op.type) for t, r in known]
    return {"total_bytes": sum(size for size, _, _ in kept), "by_reader": kept_categories(kept),
            "unknown_shape": len(reads) - len(known)}


def _worker(settings):
    """Measures one experiment (see the module docstring); prints its result as JSON."""
    memory = _memory_module()
    import research  # noqa: F401  (the project's runtime defaults)
    import tensorflow as tf  # noqa: F401

    result = {"settings": settings, "imported_rss_bytes": memory.rss_bytes()}
    model, optimizer, config, images, labels = _build(settings)
    result["built_rss_bytes"] = memory.rss_bytes()
    result["weights_bytes"] = sum(int(w.numpy().nbytes) for w in model.weights)
    slots = [v for v in optimizer.variables if len(v.shape) > 0]  # not iterations or the rate
    result["optimizer_slot_bytes"] = sum(int(v.numpy().nbytes) for v in slots)
    run = _step(settings, model, optimizer, config, images, labels)
    run()  # traces the step and runs it once
    memory.release_free_heap()  # as the training loop does after its first step
    result["build_peak_rss_bytes"] = memory.peak_rss_bytes()
    memory.reset_peak_rss()
    peaks, seconds = [], []
    for _ in range(settings["steps"]):
        memory.reset_allocator_peak()
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
        stats = memory.allocator_stats()
        peaks.append(stats and stats["peak"])
    result["step_seconds"] = seconds
    stats = memory.allocator_stats()
    with open("/proc/self/smaps") as f:
        result.update(peak_rss_bytes=memory.peak_rss_bytes(), allocator_step_peaks=peaks,
                      allocator_current_bytes=stats and stats["current"], rss_by_kind=rss_by_kind(f.read()))
    if settings.get("kept"):
        result["kept_for_backward"] = kept_for_backward(model, config, images, labels)
    if settings.get("peak_profile"):  # one more step, profiled: after the measured ones
        with tempfile.TemporaryDirectory() as logdir:
            result["alive_at_peak"] = peak_allocations(profile_memory(run, logdir))
    print("RESULT " + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------------------
# Driver

def experiment_settings(names, batches, steps):
    """{run name: worker settings} for the named experiments."""
    largest = max(batches)
    runs = {}
    for name in names:
        base = dict(batch=largest, mode="step", steps=steps, onednn=True)
        if name == "step":
            runs.update({f"step_batch{b}": dict(base, batch=b, kept=True, peak_profile=b == largest)
                         for b in batches})
        elif name in ("forward", "gradients"):
            runs[name] = dict(base, mode=name)
        elif name == "loss_reference":
            runs[name] = dict(base, loss="reference", variant=name)
        elif name == "atrous_keras":
            runs[name] = dict(base, atrous="keras", variant=name)
        elif name in ("bn_frozen", "bn_frozen_autodiff"):
            runs[name] = dict(base, bn_policy="frozen", variant=name, kept=True)
        elif name == "onednn_off":
            runs[name] = dict(base, onednn=False, variant=name)
        elif name in ENVIRONMENT_EXPERIMENTS:
            runs[name] = dict(base, env=ENVIRONMENT_EXPERIMENTS[name], variant=name)
        elif name == "xla":
            runs[name] = dict(base, xla=True, variant=name)
        else:
            raise ValueError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    return runs


def run_worker(settings, source):
    """Runs one experiment's worker process; returns its result (a dict)."""
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=str(int(settings["onednn"])), TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p),
               **settings.get("env", {}))
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(settings)],
                          capture_output=True, text=True, env=env, cwd=source)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"worker {settings} failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def table(runs):
    """Markdown lines: each run's peak RSS of the steps and TF's allocator peak (GiB), and
    its fastest step (seconds; runs measured before steps were timed have none)."""
    lines = ["| run | batch | peak RSS, steps (GiB) | allocator peak (GiB) | after a step (GiB) | step s (min) |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in runs.items():
        peak, after = allocator_figures(r)
        seconds = r.get("step_seconds")
        lines.append(f"| {name} | {r['settings']['batch']} | {r['peak_rss_bytes'] / GiB:.2f} | "
                     f"{peak / GiB if peak is not None else float('nan'):.2f} | "
                     f"{after / GiB if after is not None else float('nan'):.2f} | "
                     f"{min(seconds) if seconds else float('nan'):.2f} |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[2, 8],
                        help="batch sizes of the `step` experiment (the others run at the largest)")
    parser.add_argument("--steps", type=int, default=4, help="steps measured after the traced first one")
    parser.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS), choices=EXPERIMENTS,
                        help="what to measure (the module doc says what each is)")
    parser.add_argument("--out", help="JSON file (default benchmarks/results/<machine id>/memory.json)")
    parser.add_argument("--source", default=None,
                        help="the checkout whose research/kernels to measure (default: this one)")
    parser.add_argument("--label", default="current", help="the key of this measurement in the file")
    args = parser.parse_args(argv)
    from research.fileio import atomic_write_json

    source = os.path.abspath(args.source or ROOT)
    from research import provenance as provenance_lib

    from research import results

    # The provenance of the checkout measured (its commit); the file is this checkout's.
    info = provenance_lib.provenance(provenance_lib.command_line("python scripts/memory_breakdown.py", argv),
                                     root=source)
    out = args.out or results.results_path("memory", info["machine"], root=ROOT)
    measured = {}
    if os.path.exists(out):
        measured = results.read_results(out).get("runs", {})
    runs = measured.get(args.label, {}).get("runs", {})
    for name, settings in experiment_settings(args.experiments, args.batches, args.steps).items():
        print(f"{name}: {json.dumps(settings)}", flush=True)
        runs[name] = dict(run_worker(settings, source), provenance=info)
    measured[args.label] = {"runs": runs, "summary": summarize(runs)}
    atomic_write_json(out, {"provenance": info, "what": __doc__.split("\n")[0], "runs": measured})
    print("\n".join(table(runs)))
    print(f"wrote {out}")


if __name__ == "__main__":
    # The experiments' worker processes run this file (run_worker), with `research` and
    # `kernels` from --source on PYTHONPATH; users run scripts/memory_breakdown.py.
    if sys.argv[1:2] == ["--worker"]:
        _worker(json.loads(sys.argv[2]))
