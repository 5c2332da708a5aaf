"""Where and how a run executes: oneDNN, precision, XLA and tf.distribute, chosen per device.

`set_onednn_default()` must run before TensorFlow is imported (TF reads
TF_ENABLE_ONEDNN_OPTS once, at import). `research/__init__.py` calls it, so every
`python -m research.*` entry point gets the project's default unless the user set
the variable. The other functions run after the import.

The defaults come from the project's own train-step benchmark
(benchmarks/bench_train_step.py); docs/training.md states them as rules, and
docs/benchmarks.md has the train-step table behind them.
"""
import dataclasses
import json
import logging
import os
import re
import shutil
import subprocess
import sys

log = logging.getLogger("research")

# Measured with benchmarks/bench_train_step.py (DeepLab v3, 384 px, batch 2, float32,
# 2-core Zen 3 without AVX-512): docs/benchmarks.md. TF itself turns oneDNN on only for
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


def tensorflow_default_onednn():
    """Whether TensorFlow itself turns oneDNN on on this CPU (TF_ENABLE_ONEDNN_OPTS unset).

    TF decides at import, by CPU features (AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX on
    Linux), so a fresh process without the variable and without `research` is asked.
    """
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    code = "from tensorflow.python.util import _pywrap_util_port as p; print('ONEDNN', int(p.IsMklEnabled()))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300, check=True)
    return re.search(r"ONEDNN (\d)", done.stdout).group(1) == "1"


def nvidia_smi_gpus(output):
    """The GPU lines of `nvidia-smi -L` output ("GPU 0: NVIDIA H200 (UUID: ...)"), as a list."""
    return [line.strip() for line in (output or "").splitlines() if re.match(r"\s*GPU \d+:", line)]


def nvidia_smi_output():
    """`nvidia-smi -L`'s output, or "" when there is no nvidia-smi or it fails (no driver)."""
    if shutil.which("nvidia-smi") is None:
        return ""
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""


def install_extras(nvidia_smi_text=None):
    """The pip extras `make install` installs: "dev,gpu" when nvidia-smi lists a GPU, else "dev".

    `tensorflow==2.21.*` alone has no CUDA libraries: with an NVIDIA GPU it would
    silently train on the CPU; the gpu extra is `tensorflow[and-cuda]`. Called by the
    Makefile before TensorFlow is installed (imports nothing heavy).
    """
    if nvidia_smi_text is None:
        nvidia_smi_text = nvidia_smi_output()
    return "dev,gpu" if nvidia_smi_gpus(nvidia_smi_text) else "dev"


def unused_gpu_warning(nvidia_smi_text, tensorflow_gpus):
    """The warning to log when nvidia-smi lists GPUs but TensorFlow sees none, else None.

    Args:
      nvidia_smi_text: `nvidia-smi -L`'s output ("" without nvidia-smi).
      tensorflow_gpus: the number of GPUs TensorFlow lists.
    """
    gpus = nvidia_smi_gpus(nvidia_smi_text)
    if not gpus or tensorflow_gpus:
        return None
    return (f"nvidia-smi lists {len(gpus)} GPU(s) ({gpus[0]}{', ...' if len(gpus) > 1 else ''}) but "
            "TensorFlow sees none, so this run trains on the CPU. TensorFlow's CUDA libraries come "
            "with the project's gpu extra: pip install -e '.[gpu]' (tensorflow[and-cuda]); "
            "`make install` picks it when nvidia-smi finds a GPU")


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


def resolve_jit_compile(jit_compile, device, precision, num_replicas, deterministic=False):
    """(use_xla, reason) for the train/eval steps.

    - "auto": on GPU, XLA on. On CPU, XLA off, with oneDNN on or off: it measured
      slower in both (numbers at the rule below).
    - Off under multi-replica tf.distribute, whatever the config says (as Keras'
      "auto" does): the replica step holds collectives (loss normalizers, synchronized
      BatchNorm, gradient sums) that XLA cannot compile there.
    - mixed_bfloat16 with XLA on CPU fails inside XLA in TF 2.21 ("Seen floating
      point types of different precisions in %ReluGrad"): fall back to no XLA.
    - `deterministic` on CPU: XLA:CPU has no deterministic MaxPool gradient (op
      determinism makes the first step fail with UnimplementedError), so "auto" is off
      and an explicit `jit_compile=true` is a ValueError saying so.

    Raises:
      ValueError: jit_compile=true with deterministic=true on CPU.
    """
    if num_replicas > 1:
        if jit_compile is True:
            log.warning("XLA is not supported with %d tf.distribute replicas: running without it",
                        num_replicas)
        return False, "off under multi-replica tf.distribute"
    if deterministic and device == "cpu":
        if jit_compile is True:
            raise ValueError("deterministic=true cannot run with jit_compile=true on CPU: XLA:CPU has "
                             "no deterministic MaxPool gradient; use jit_compile=false or \"auto\"")
        return False, "off: deterministic on CPU (no deterministic XLA MaxPool gradient)"
    if jit_compile == "auto":
        if device == "gpu":
            use, reason = True, "auto: GPU"
        else:
            # XLA:CPU compiles its own convolutions (bypassing oneDNN's), and the project's
            # kernels (atrous taps with a hand-written backward, fused BatchNorm, FusedAdam)
            # leave it little to fuse. Measured slower on both CPU kinds: vm-AMD-EPYC-2cpu,
            # bench_train_step (DeepLab v3, 384 px, batch 2, s/step XLA off vs on): oneDNN
            # on 2.61 vs 3.83 and 2.37 vs 3.48, oneDNN off 2.96 vs 4.80 and 2.67 vs 3.81;
            # vm-Intel-R-Xeon-R-Processor-2cpu (oneDNN on, TF's default there),
            # scripts/memory_breakdown.py at batch 8: 5.1 vs 12.3 s.
            use, reason = False, "auto: CPU (XLA:CPU measured slower, with and without oneDNN)"
    else:
        use, reason = bool(jit_compile), "config"
    if use and device == "cpu" and precision == "mixed_bfloat16":
        log.warning("mixed_bfloat16 with XLA fails on CPU in TF 2.21 (ReluGrad of mixed "
                    "precisions): running without XLA")
        use, reason = False, "fallback: mixed_bfloat16 + XLA unsupported on CPU"
    return use, reason


@dataclasses.dataclass(frozen=True)
class WorkerRole:
    """This process's place in a multi-worker cluster (index 0 is the chief).

    `index` counts the cluster's "chief" task (if any) first, then its "worker" tasks in
    order, as TF numbers them for MultiWorkerMirroredStrategy; `count` is how many
    processes train together. A single process is `WorkerRole(0, 1)`.
    """
    index: int = 0
    count: int = 1

    @property
    def is_chief(self):
        """Whether this process writes what a user reads (config, logs, CSV, export)."""
        return self.index == 0


def worker_role(distribute, environ=None):
    """This process's `WorkerRole` for a config's `distribute` value, read from TF_CONFIG.

    Pure Python (TensorFlow need not be imported). Only "multi_worker" reads TF_CONFIG;
    without TF_CONFIG a multi_worker run is one process.

    Raises:
      ValueError: TF_CONFIG is not JSON, or names a task that is not in its cluster.
    """
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG")
    if distribute != "multi_worker" or not text:
        return WorkerRole()
    try:
        tf_config = json.loads(text)
        cluster, task = tf_config.get("cluster", {}), tf_config.get("task", {})
        chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
        kind, index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"TF_CONFIG is not a valid cluster description ({e}): {text}") from None
    tasks = {"chief": chiefs, "worker": workers}
    if kind not in tasks or not 0 <= index < len(tasks[kind]):
        raise ValueError(f"TF_CONFIG: task {kind} {index} is not in its cluster: {text}")
    return WorkerRole(index + (len(chiefs) if kind == "worker" else 0), len(chiefs) + len(workers))


def make_strategy(name):
    """A tf.distribute strategy for the config value "default", "mirrored" or "multi_worker".

    "multi_worker" is TF's MultiWorkerMirroredStrategy with the cluster from TF_CONFIG
    (every worker runs the same command). A worker that dies is noticed by TF's
    coordination service: its heartbeats stop, the service aborts the collectives of
    every other worker after its heartbeat timeout (10 s in TF 2.21; measured 3-12 s
    to the others' error exit on localhost), so survivors fail instead of hanging. No
    collective timeout is set: a worker may wait at a collective for as long as the
    chief exports or evaluates alone.
    """
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
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

