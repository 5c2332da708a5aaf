"""Run a computation eagerly, in tf.function and under XLA, and compare values + gradients."""
import numpy as np
import tensorflow as tf

MODES = ("eager", "function", "xla")


def in_mode(fn, mode):
    """fn itself, wrapped in tf.function, or in tf.function(jit_compile=True)."""
    if mode == "eager":
        return fn
    return tf.function(fn, jit_compile=(mode == "xla"), autograph=False)


def value_and_grads(fn, *args):
    """(fn(*args), [d sum(fn * probe) / d arg for each float arg]) with a fixed probe.

    The probe is a fixed pseudo-random cotangent, so every output element's gradient
    path is checked (a plain sum would hide errors that cancel). It is built from integer
    ops so it is bit-identical in every mode (XLA's sin differs from the eager one).
    """
    args = [tf.convert_to_tensor(a) for a in args]
    with tf.GradientTape() as tape:
        for a in args:
            if a.dtype.is_floating:
                tape.watch(a)
        out = fn(*args)
        probe = tf.cast(tf.math.floormod(tf.range(tf.size(out)) * 7 + 3, 11) - 5, out.dtype) / 5
        scalar = tf.reduce_sum(tf.cast(out * tf.reshape(probe, tf.shape(out)), tf.float32))
    floats = [a for a in args if a.dtype.is_floating]
    return out, tape.gradient(scalar, floats)


def assert_close(actual, expected, rtol, atol=0.0):
    """Relative comparison in float64 (scaled by the expected tensor's largest magnitude)."""
    actual = np.asarray(tf.cast(actual, tf.float64))
    expected = np.asarray(tf.cast(expected, tf.float64))
    assert actual.shape == expected.shape
    scale = max(np.abs(expected).max(initial=0.0), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale + atol)


def assert_same_value_and_grads(fast, reference, args, mode, rtol=1e-5, atol=0.0, grad_rtol=None):
    """fast (run in mode) and reference (run eagerly) agree in value and gradients.

    grad_rtol (default rtol) allows for gradients returned in a low-precision dtype,
    where one rounding step of a float32 difference is already ~1e-3 (fp16) / 8e-3 (bf16).
    """
    want, want_grads = value_and_grads(reference, *args)
    got, got_grads = in_mode(lambda *a: value_and_grads(fast, *a), mode)(*args)
    assert got.dtype == want.dtype
    assert_close(got, want, rtol, atol)
    for g, w in zip(got_grads, want_grads, strict=True):
        assert g.dtype == w.dtype
        assert_close(g, w, rtol if grad_rtol is None else grad_rtol, atol)
