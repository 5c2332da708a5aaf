"""What the NaN guard costs per train step: the gradient check and the per-step host sync.

research/train.py checks the loss every step (one host sync: `float(loss)`), the
gradients only on log and checkpoint steps, and every saved variable before each save
(`checks_gradients`). This measures each piece, at the demo config's size (slim
DeepLab v3, 128 px, batch 8) and the benchmark size (DeepLab v3 R50, 384 px, batch 2),
float32, with the project's runtime defaults, in one process:

  unguarded    STEPS steps, gradients unchecked, one sync at the end
  loss_sync    + float(loss) after every step (the loop's per-step check)
  grads_check  + is_finite over every gradient inside every step (the old rule)
  grads_alone  is_finite over tensors of the gradients' sizes (the trainable weights)
               alone: the old rule's cost per step, without the steps' noise around it
  weights      one check of every float variable a checkpoint holds (per save)

Each call runs STEPS steps (one check for grads_alone and weights); tables use the
minimum over rounds, per step or check. On a busy machine the step cases drift by more
than the checks cost: read the checks' own rows against `unguarded`.

    pytest benchmarks/bench_nan_guard.py -s        # about 10 minutes on 2 idle cores
"""
import time

import numpy as np
import pytest

from benchmarks.support import bench_case, record_items_per_second

STEPS = 4
SIZES = {"demo-128px": ("demo", 128, 8), "deeplab-384px": ("deeplabv3_voc", 384, 2)}
CASES = ("unguarded", "loss_sync", "grads_check", "grads_alone", "weights")
CHECKS = ("grads_alone", "weights")  # one check per call; the other cases run STEPS steps


@pytest.fixture(scope="module")
def steps():
    """{size id: (train_step, {check case: tf.function}, images, labels)}, built on first use."""
    return {}


def _build(size_id):
    import keras
    import tensorflow as tf
    import kernels
    from research import build, configs, runtime
    from research.training.steps import all_finite, make_train_step

    name, size, batch = SIZES[size_id]
    config = configs.load_config(name).replace(weights=None, batch_size=batch, input_size=(size, size),
                                                  precision="float32")
    keras.utils.set_random_seed(0)
    model = build.build_model(config)
    optimizer = build.make_optimizer(config, "float32")
    optimizer.build(model.trainable_variables)
    confusion = kernels.StreamingConfusionMatrix(config.num_classes)
    use_xla, _ = runtime.resolve_jit_compile(config.jit_compile, "cpu", "float32", 1)
    step = make_train_step(model, optimizer, tf.distribute.get_strategy(), config, confusion,
                           use_xla, loss_scaling=False)
    saved = [v for v in model.weights + optimizer.variables if "float" in str(v.dtype)]
    checks = {"weights": tf.function(lambda: all_finite(saved)),
              "grads_alone": tf.function(lambda: all_finite(model.trainable_variables))}
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 255, (batch, size, size, 3)).astype("float32"))
    labels = tf.constant(rng.integers(0, config.num_classes, (batch, size, size)).astype("int32"))
    for flag in (False, True):  # trace and warm both branches
        float(step(images, labels, tf.constant(flag))[0])
    for check in checks.values():
        bool(check())
    return step, checks, images, labels


def _runner(case, step, checks, images, labels):
    import tensorflow as tf

    check = tf.constant(case == "grads_check")
    if case in CHECKS:
        return lambda: bool(checks[case]())
    if case == "unguarded":
        def run():
            for _ in range(STEPS):
                loss, _ = step(images, labels, check)
            float(loss)
        return run

    def run():
        for _ in range(STEPS):
            float(step(images, labels, check)[0])
    return run


@pytest.mark.parametrize("size_id,case", [
    bench_case(s, c, id=f"{s}-{c}", baseline=c == "unguarded") for s in SIZES for c in CASES])
def test_nan_guard(benchmark, steps, comparison_table, size_id, case):
    if size_id not in steps:
        steps[size_id] = _build(size_id)
    run = _runner(case, *steps[size_id])
    benchmark.group = f"nan guard {size_id}"
    benchmark.pedantic(run, rounds=3, warmup_rounds=1, iterations=1)
    if benchmark.disabled:
        return
    per_call = 1 if case in CHECKS else STEPS
    benchmark.extra_info["steps_per_call"] = per_call
    record_items_per_second(benchmark, per_call)
    comparison_table.append((benchmark.group, case, benchmark.stats.stats.min / per_call,
                             per_call / benchmark.stats.stats.min, case == "unguarded"))
