"""The exponential moving average (EMA) of the weights, and swapping it in for evaluation.

With `config.ema_decay` set, the optimizer keeps, beside every trainable variable w, an
average a <- decay * a + (1 - decay) * w after every update (Keras' `use_ema`; the first
update sets a = w). The averages are optimizer variables, so every checkpoint holds them
and a resumed run continues them exactly. Training always continues from the trained
weights; evaluation, the best export (and so TFLite) and the TensorBoard pictures use the
averages (`averaged_weights`).
"""
import contextlib

import keras


def moving_averages(optimizer):
    """The optimizer's list of averages (aligned with the trained variables), or None
    when EMA is off. Looks through a LossScaleOptimizer to the optimizer it wraps."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    if not getattr(inner, "use_ema", False):
        return None
    # Keras keeps them in a private attribute (keras/src/optimizers/base_optimizer.py),
    # built with the optimizer; its public `finalize_variable_values` overwrites the
    # weights for good, which a run that trains on cannot use.
    return inner._model_variables_moving_average


def start_averages(model, optimizer):
    """Sets every average to the weight it follows (once, after `optimizer.build`).

    Keras creates the averages as zeros and overwrites them at the first APPLIED update;
    under mixed_float16 the first updates can be skipped (overflow), and an evaluation or
    export before one is applied would otherwise use all-zero weights.
    """
    averages = moving_averages(optimizer)
    for variable, average in zip(model.trainable_variables, averages or ()):
        average.assign(variable)


@contextlib.contextmanager
def averaged_weights(model, optimizer):
    """Within the block, `model`'s trainable variables hold their moving averages; after
    it, the trained values again (exactly: they are copied aside). No-op without EMA.

    Call where every worker runs the same code (assignments to distributed variables).
    """
    averages = moving_averages(optimizer)
    if averages is None:
        yield
        return
    variables = model.trainable_variables
    trained = [keras.ops.convert_to_numpy(v) for v in variables]
    for variable, average in zip(variables, averages):
        variable.assign(average)
    try:
        yield
    finally:
        for variable, value in zip(variables, trained):
            variable.assign(value)
