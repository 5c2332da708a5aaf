"""Adam and SGD with momentum, each variable updated by ONE fused TF kernel.

Reference twins: `keras.optimizers.Adam` and `keras.optimizers.SGD`. Keras 3 writes an
update as about ten elementwise ops per variable (Adam: Sub, Mul, Square, Sqrt, RealDiv,
AssignAdd, AssignSub...), each a pass over the variable; TensorFlow's training kernels
(`ResourceApplyAdam`, `ResourceApplyKerasMomentum`) do the whole update in one pass, on
CPU, GPU and under XLA.

`FusedAdam` and `FusedSGD` subclass the Keras classes and replace only `update_step`,
so everything else is Keras': the same slot variables with the same names and
checkpoint paths (a checkpoint of either twin loads into the other), `apply`,
`learning_rate` (assignable), `iterations`, `build`, weight decay, gradient clipping,
EMA, `LossScaleOptimizer` wrapping and tf.distribute (Keras calls `update_step` inside
`strategy.extended.update`, once per device copy of the variable).

The formulas are Keras 3's, term for term (the kernels' own code in TF's
core/kernels/training_ops.cc, `ApplyAdamNonCuda` and `ApplyKerasMomentum`):

  Adam, step t = iterations + 1:
    m <- m + (g - m) * (1 - beta_1)
    v <- v + (g^2 - v) * (1 - beta_2)
    alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
    w <- w - alpha * m / (sqrt(v) + epsilon)        # epsilon outside the sqrt, as Keras
  SGD, momentum > 0, nesterov False:
    velocity <- momentum * velocity - lr * g
    w <- w + velocity
  (SGD without momentum is a single AssignSub in Keras already: left as Keras does it.)

The one difference is where `1 - beta` is rounded: Keras computes it in float64 and
casts to float32, the kernel subtracts in float32 from the float32 beta. For beta_1 =
0.9 the two differ by 2.4e-7 relative; for beta_2 = 0.999 the kernel's 1 - 0.999f is
0.00099998713 against Keras' 0.001 (1.3e-5 relative, and no float32 beta_2 gives a
closer complement), so sqrt(v) differs by up to 6.5e-6 relative and each Adam step
moves a weight by at most ~6.5e-6 x lr more or less than Keras does (lr 1e-4: 7e-10).
Measured: 10 steps at lr 1e-2 on unit-scale weights agree to 1e-6 relative
(tests/kernels/test_optimizers.py). SGD with momentum has no such constant: it agrees
to round-off.
"""
import tensorflow as tf
import keras


def _handle(variable):
    """The resource handle of a Keras or TF variable (this device's copy inside
    `strategy.extended.update`, where Keras calls `update_step`)."""
    if isinstance(variable, keras.Variable):
        variable = variable.value
    return variable.handle


def _dense_gradient(gradient, variable):
    """The gradient in the variable's dtype; None when it is sparse (tf.IndexedSlices),
    for which the caller keeps Keras' own update."""
    if isinstance(gradient, tf.IndexedSlices):
        return None
    return tf.cast(gradient, variable.dtype)


class FusedAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` (same arguments, variables and results) whose update of
    each variable is one `ResourceApplyAdam` kernel. `amsgrad=True` is refused: TF has
    no fused kernel for it (use keras.optimizers.Adam)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.amsgrad:
            raise ValueError("FusedAdam has no amsgrad variant (TF has no fused kernel for it); "
                             "use keras.optimizers.Adam(amsgrad=True) (optimizer_impl=\"keras\")")

    def update_step(self, gradient, variable, learning_rate):
        """One Adam update of `variable` (any float dtype; gradient cast to it)."""
        grad = _dense_gradient(gradient, variable)
        if grad is None:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        local_step = tf.cast(self.iterations + 1, dtype)
        # The same power ops as Keras' Adam (not a running product), so alpha is
        # bit-identical; TF dedupes these scalars across variables in the graph.
        beta_1_power = tf.pow(tf.cast(self.beta_1, dtype), local_step)
        beta_2_power = tf.pow(tf.cast(self.beta_2, dtype), local_step)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(self._momentums[index]),
            v=_handle(self._velocities[index]),
            beta1_power=beta_1_power, beta2_power=beta_2_power,
            lr=tf.cast(learning_rate, dtype), beta1=tf.cast(self.beta_1, dtype),
            beta2=tf.cast(self.beta_2, dtype), epsilon=tf.cast(self.epsilon, dtype),
            grad=grad, use_locking=False, use_nesterov=False)


class FusedSGD(keras.optimizers.SGD):
    """`keras.optimizers.SGD` (same arguments, variables and results) whose momentum
    update of each variable is one `ResourceApplyKerasMomentum` kernel (Nesterov too:
    the kernel's use_nesterov computes Keras' nesterov rule)."""

    def update_step(self, gradient, variable, learning_rate):
        """One SGD update of `variable` (any float dtype; gradient cast to it)."""
        grad = _dense_gradient(gradient, variable)
        if grad is None or self.momentum == 0:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=_handle(variable), accum=_handle(self.momentums[self._get_variable_index(variable)]),
            lr=tf.cast(learning_rate, dtype), grad=grad, momentum=tf.cast(self.momentum, dtype),
            use_locking=False, use_nesterov=self.nesterov)
