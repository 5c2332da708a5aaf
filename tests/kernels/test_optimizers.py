"""FusedAdam / FusedSGD against their Keras twins: 10 steps, wrappers, checkpoints, replicas."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from kernels.optimizers import FusedAdam, FusedSGD
from tests.kernels._modes import MODES, assert_close, in_mode

SHAPES = [(3, 3, 4, 5), (5,), (), (7, 2)]
STEPS = 10


def _variables(seed=0):
    rng = np.random.default_rng(seed)
    return [tf.Variable(rng.normal(size=s).astype("float32"), name=f"w{i}") for i, s in enumerate(SHAPES)]


def _gradients(step):
    """Fixed gradients for step `step`, mixing magnitudes from 1e-6 to 10 and zeros."""
    rng = np.random.default_rng(100 + step)
    grads = []
    for s in SHAPES:
        g = rng.normal(size=s) * 10.0 ** rng.integers(-6, 2, size=s)
        grads.append(tf.constant(np.where(rng.uniform(size=s) < 0.1, 0.0, g), tf.float32))
    return grads


def _run(optimizer, variables, mode, steps=STEPS, scale=1.0):
    optimizer.build(variables)
    apply = in_mode(lambda grads: optimizer.apply(grads, variables), mode)
    for step in range(steps):
        if step == 5:
            optimizer.learning_rate.assign(float(optimizer.learning_rate) * 0.5)  # as the LR schedule does
        apply([g * scale for g in _gradients(step)])
    return [v.numpy() for v in variables]


def _assert_same_weights(got, want, rtol=1e-6):
    for g, w in zip(got, want, strict=True):
        assert_close(g, w, rtol)


PAIRS = {
    "adam": (lambda: FusedAdam(learning_rate=1e-2), lambda: keras.optimizers.Adam(learning_rate=1e-2)),
    "adam-options": (lambda: FusedAdam(3e-3, beta_1=0.8, beta_2=0.95, epsilon=1e-4),
                     lambda: keras.optimizers.Adam(3e-3, beta_1=0.8, beta_2=0.95, epsilon=1e-4)),
    "sgd-momentum": (lambda: FusedSGD(learning_rate=0.05, momentum=0.9),
                     lambda: keras.optimizers.SGD(learning_rate=0.05, momentum=0.9)),
    "sgd-nesterov": (lambda: FusedSGD(learning_rate=0.05, momentum=0.9, nesterov=True),
                     lambda: keras.optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True)),
    "sgd-plain": (lambda: FusedSGD(learning_rate=0.05), lambda: keras.optimizers.SGD(learning_rate=0.05)),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_ten_steps_match_keras(pair, mode):
    fused, reference = PAIRS[pair]
    want = _run(reference(), _variables(), "eager")
    _assert_same_weights(_run(fused(), _variables(), mode), want)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pair", ["adam", "sgd-momentum"])
def test_under_loss_scale_optimizer(pair, mode):
    # Gradients arrive multiplied by the loss scale (2^15): the wrapper unscales them,
    # and a step with an Inf gradient is skipped (scale halved) by both alike.
    fused, reference = PAIRS[pair]
    results = []
    for make in (fused, reference):
        optimizer = keras.optimizers.LossScaleOptimizer(make())
        variables = _variables()
        optimizer.build(variables)
        weights = _run(optimizer, variables, mode, scale=float(optimizer.dynamic_scale))
        bad = [tf.fill(tf.shape(v), np.inf) for v in variables]
        in_mode(lambda grads: optimizer.apply(grads, variables), mode)(bad)
        assert float(optimizer.dynamic_scale) == 2.0 ** 14
        _assert_same_weights([v.numpy() for v in variables], weights, rtol=0)  # skipped
        results.append(weights)
    _assert_same_weights(*results)


def test_slot_variables_are_keras_own():
    # The same variables in the same order (what checkpoints and Keras' weight files
    # follow); only the optimizer's own name prefix differs (fused_adam/ against adam/).
    for fused, reference in PAIRS.values():
        a, b = fused(), reference()
        a.build(_variables())
        b.build(_variables())
        names = [[v.path.split("/", 1)[1] for v in o.variables] for o in (a, b)]
        assert names[0] == names[1] and len(names[0]) > 1


@pytest.mark.parametrize("pair", ["adam", "sgd-momentum"])
@pytest.mark.parametrize("direction", ["fused->keras", "keras->fused"])
def test_checkpoints_load_across_the_twins(pair, direction, tmp_path):
    fused, reference = PAIRS[pair]
    first, second = (fused, reference) if direction == "fused->keras" else (reference, fused)
    variables, optimizer = _variables(), first()
    _run(optimizer, variables, "function", steps=3)
    path = tf.train.Checkpoint(optimizer=optimizer, weights=variables).save(str(tmp_path / "ckpt"))

    loaded_vars, loaded = _variables(seed=1), second()
    loaded.build(loaded_vars)
    tf.train.Checkpoint(optimizer=loaded, weights=loaded_vars).restore(path).assert_consumed()
    assert int(loaded.iterations) == 3
    _assert_same_weights([v.numpy() for v in loaded.variables], [v.numpy() for v in optimizer.variables], 0)
    # Both continue identically from the loaded state.
    for opt, vs in ((optimizer, variables), (loaded, loaded_vars)):
        for step in range(3, 6):
            opt.apply(_gradients(step), vs)
    _assert_same_weights([v.numpy() for v in loaded_vars], [v.numpy() for v in variables])


def test_amsgrad_is_refused():
    with pytest.raises(ValueError, match="amsgrad"):
        FusedAdam(amsgrad=True)


def test_sparse_gradients_use_keras_update():
    fused, reference = PAIRS["adam"]
    results = []
    for make in (fused, reference):
        variables, optimizer = _variables(), make()
        optimizer.build(variables)
        grads = _gradients(0)
        grads[3] = tf.IndexedSlices(grads[3][:2], tf.constant([0, 4]), tf.constant([7, 2]))
        optimizer.apply(grads, variables)
        results.append([v.numpy() for v in variables])
    _assert_same_weights(*results)
