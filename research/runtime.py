"""Where and how a run executes: oneDNN, precision, XLA and tf.distribute, chosen per device.

`set_onednn_default()` must run before TensorFlow is imported (TF reads
TF_ENABLE_ONEDNN_OPTS once, at import). `research/__init__.py` calls it, so every
`python -m research.*` entry point gets the project's default unless the user set
the variable. The other functions run after the import.

The defaults come from the project's own train-step benchmark
(benchmarks/bench_train_step.py); see the README's results table.
"""
import logging
import os
import sys

log = logging.getLogger("research")

# Measured with benchmarks/bench_train_step.py (DeepLab v3, 384 px, batch 2, float32,
# 2-core Zen 3 without AVX-512): see the README. TF itself turns oneDNN on only for
# CPUs with AVX-512 VNNI/BF16, AVX-VNNI or AMX.
ONEDNN_DEFAULT = "1"
_ONEDNN_SOURCE = {"source": "unset"}


def set_onednn_default():
    """Sets TF_ENABLE_ONEDNN_OPTS to the project default unless the user set it.

    Does nothing (and says so in `onednn_state`) when TensorFlow is already imported,
    because TF would ignore the change.
    """
    if "TF_ENABLE_ONEDNN_OPTS" in os.environ:
        _ONEDNN_SOURCE["source"] = "user environment"
    elif "tensorflow" in sys.modules:
        _ONEDNN_SOURCE["source"] = "TensorFlow default (imported before research)"
    else:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = ONEDNN_DEFAULT
        _ONEDNN_SOURCE["source"] = "project default"


def onednn_state():
    """{"enabled": bool, "source": str}: whether TF's CPU kernels use oneDNN, and why."""
    from tensorflow.python.util import _pywrap_util_port  # private, but the only exact answer

    return {"enabled": bool(_pywrap_util_port.IsMklEnabled()), "source": _ONEDNN_SOURCE["source"],
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS")}


def device_kind():
    """"gpu" when TensorFlow sees a GPU, else "cpu"."""
    import tensorflow as tf

    return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"


def resolve_precision(precision, device):
    """The Keras dtype policy name for a config value ("auto": GPU fp16, CPU fp32).

    On CPUs without native bf16, mixed precision measured 3x (fp16) to 11x (bf16)
    slower than float32, hence float32 there.
    """
    if precision != "auto":
        return precision
    return "mixed_float16" if device == "gpu" else "float32"


def resolve_jit_compile(jit_compile, device, precision, num_replicas, onednn_enabled):
    """(use_xla, reason) for the train/eval steps.

    - "auto": on GPU, XLA on. On CPU, XLA off when oneDNN is on (XLA:CPU does not
      use oneDNN's convolutions and measured slower); on when oneDNN is off.
    - Off under multi-replica tf.distribute, whatever the config says (as Keras'
      "auto" does): the replica step holds collectives (loss normalizers, synchronized
      BatchNorm, gradient sums) that XLA cannot compile there.
    - mixed_bfloat16 with XLA on CPU fails inside XLA in TF 2.21 ("Seen floating
      point types of different precisions in %ReluGrad"): fall back to no XLA.
    """
    if num_replicas > 1:
        if jit_compile is True:
            log.warning("XLA is not supported with %d tf.distribute replicas: running without it",
                        num_replicas)
        return False, "off under multi-replica tf.distribute"
    if jit_compile == "auto":
        if device == "gpu":
            use, reason = True, "auto: GPU"
        elif onednn_enabled:
            use, reason = False, "auto: CPU with oneDNN (XLA:CPU bypasses oneDNN convolutions)"
        else:
            use, reason = True, "auto: CPU without oneDNN"
    else:
        use, reason = bool(jit_compile), "config"
    if use and device == "cpu" and precision == "mixed_bfloat16":
        log.warning("mixed_bfloat16 with XLA fails on CPU in TF 2.21 (ReluGrad of mixed "
                    "precisions): running without XLA")
        use, reason = False, "fallback: mixed_bfloat16 + XLA unsupported on CPU"
    return use, reason


def make_strategy(name):
    """A tf.distribute strategy for the config value "default", "mirrored" or "multi_worker"."""
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        # Reads the cluster from TF_CONFIG; every worker runs the same command.
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown distribute setting {name!r}")


def enable_determinism(seed):
    """Makes this process's training bit-reproducible (config `deterministic=true`).

    Seeds Python, NumPy and TF (`keras.utils.set_random_seed`: weight initialisation)
    and turns on `tf.config.experimental.enable_op_determinism()`, which makes ops pick
    deterministic algorithms (or raise UnimplementedError where they have none) and
    forces tf.data's `deterministic` options on. The input pipeline's own randomness is
    already stateless and seeded by (seed, epoch, sample); its decoding
    `numpy_function`s are declared stateless, because op determinism runs a map with a
    stateful op, and every map and prefetch of that pipeline, serially.

    Same machine, same thread counts, same software: two runs then give the same
    train_log.csv (but its time columns) and the same weights. It is process-wide and
    cannot be turned off again.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
