"""Learning-rate schedules, LR on plateau and early stopping: pure Python, no TensorFlow.

Every step's learning rate is a function of the step and of the base rate the loop keeps
in its checkpointed state, so a resumed run continues every schedule exactly.
"""
import logging
import math

log = logging.getLogger("research")


def schedule_steps(config, steps_per_epoch):
    """The poly/cosine horizon: `total_steps`, or the whole run (epochs * steps_per_epoch)."""
    return config.total_steps or config.epochs * steps_per_epoch


def schedule_text(config, steps):
    """The schedule in words, e.g. "learning rate 0.007 with schedule poly (power 0.9),
    50 warmup steps over 400 steps"; `config` a Config or its dict, `steps` the horizon
    (a number, or a word such as "all")."""
    get = config.get if isinstance(config, dict) else lambda name: getattr(config, name)
    schedule = get("lr_schedule")
    if schedule == "poly":
        schedule = f"poly (power {get('poly_power'):g})"
    warmup = get("warmup_steps")
    return (f"learning rate {get('learning_rate'):g} with schedule {schedule}"
            f"{f', {warmup} warmup steps' if warmup else ''} over {steps} steps")


def learning_rate_at(config, step, total_steps, base=None):
    """The learning rate of optimizer step `step` (0-based), a Python float.

      base: config.learning_rate, or what LR-on-plateau and NaN restores lowered it to
      warmup: step < warmup_steps -> base * (step + 1) / warmup_steps
      "plateau": base (the loop lowers `base` after epochs without improvement)
      "poly":    base * (1 - t / total) ** poly_power, t = min(step, total)
      "cosine":  base * (1 + cos(pi * t / total)) / 2
    Warmup multiplies the decayed value (the first steps of a poly run are barely decayed).
    """
    rate = config.learning_rate if base is None else base
    if config.warmup_steps and step < config.warmup_steps:
        rate *= (step + 1) / config.warmup_steps
    progress = min(step, total_steps) / total_steps
    if config.lr_schedule == "poly":
        rate *= (1.0 - progress) ** config.poly_power
    elif config.lr_schedule == "cosine":
        rate *= 0.5 * (1.0 + math.cos(math.pi * progress))
    return rate


def improved(value, best, mode):
    """Whether `value` beats `best` ("min" or "max"); NaN never improves."""
    if value is None or math.isnan(value):
        return False
    if best is None:
        return True
    return value < best if mode == "min" else value > best


def update_schedules(state, value, config, mode, learning_rate):
    """Plateau LR (lr_schedule "plateau" only) and early stopping after an epoch, as
    Keras' ReduceLROnPlateau and EarlyStopping callbacks do.

    Args:
      state: the LoopState after the epoch (`state.epoch` counts it); its waits, best
        value and stop flag are updated in place.
      value: the epoch's monitored value (`config.monitor`); mode: "min" or "max".
      learning_rate: the base learning rate before this epoch.
    Returns:
      (new base learning rate, whether this epoch is the best so far).
    """
    is_best = improved(value, state.best, mode)
    if is_best:
        state.best, state.best_epoch = value, state.epoch
        state.plateau_wait = state.early_stop_wait = 0
        return learning_rate, True
    state.plateau_wait += 1
    state.early_stop_wait += 1
    # Only the "plateau" schedule lowers the rate; poly and cosine follow the step alone.
    if config.lr_schedule == "plateau" and state.plateau_wait >= config.plateau_patience:
        new_lr = max(learning_rate * config.plateau_factor, config.min_learning_rate)
        if new_lr < learning_rate:
            log.info("epoch %d: %s did not improve for %d epochs: learning rate %.3g -> %.3g",
                     state.epoch, config.monitor, state.plateau_wait, learning_rate, new_lr)
        learning_rate = new_lr
        state.plateau_wait = 0
    if state.early_stop_wait >= config.early_stop_patience:
        log.info("epoch %d: %s did not improve for %d epochs: early stop (best %.5g at epoch %d)",
                 state.epoch, config.monitor, state.early_stop_wait, state.best, state.best_epoch)
        state.stopped_early = True
    return learning_rate, False
