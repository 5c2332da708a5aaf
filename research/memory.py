"""This process's memory: peak resident set size, and TensorFlow's allocator statistics.

Peak RSS is the kernel's high-water mark of the process's resident memory (VmHWM in
/proc/self/status on Linux): what the machine must hold for the run, TensorFlow's code
pages, Python and the heap of graph and kernel objects included, not only tensors. It is
read from /proc rather than `getrusage(...).ru_maxrss` (the same number) because /proc's
mark can be reset: `reset_peak_rss` restarts it from the current RSS (writing "5" to
/proc/self/clear_refs, Linux >= 4.0), so the peak of one phase, e.g. training steps after
the model was built and the step traced, can be read on its own. Without /proc (macOS)
`peak_rss_bytes` falls back to ru_maxrss and cannot be reset.

TensorFlow's allocator statistics (`allocator_stats`) count the bytes of live tensors.
On CPU, TF 2.21 keeps them only in oneDNN's allocator (a best-fit-with-coalescing pool,
the default whenever oneDNN is on, which the project turns on: research/runtime.py);
without oneDNN TF raises for CPU:0 and this returns None. That pool keeps what it once
held (it never returns memory to the system), so a step's peak RSS is its allocator peak
plus a fixed part: TF's code, the heap and Python.
"""
import re
import resource
import sys

_STATUS = "/proc/self/status"


def _status_bytes(field):
    """A "kB" field of /proc/self/status (VmRSS, VmHWM, ...) in bytes; None without /proc."""
    try:
        with open(_STATUS) as f:
            match = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


def rss_bytes():
    """This process's resident set size now, in bytes (None where /proc is missing)."""
    return _status_bytes("VmRSS")


def peak_rss_bytes():
    """This process's peak resident set size in bytes (int): since the process started,
    or since the last successful `reset_peak_rss`.

    VmHWM from /proc/self/status; without /proc, getrusage's ru_maxrss (kilobytes on
    Linux, bytes on macOS).
    """
    peak = _status_bytes("VmHWM")
    if peak is not None:
        return peak
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


def reset_peak_rss():
    """Restarts the peak RSS mark from the current RSS; True if it could (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def allocator_stats(device="CPU:0"):
    """{"current": bytes, "peak": bytes} of TensorFlow's allocator on `device`, or None
    where TF keeps no statistics (CPU without oneDNN). `peak` counts since the last
    `reset_allocator_peak` (or the first allocation)."""
    import tensorflow as tf

    try:
        info = tf.config.experimental.get_memory_info(device)
    except ValueError:  # "Allocator stats not available for device 'CPU:0'"
        return None
    return {"current": int(info["current"]), "peak": int(info["peak"])}


def reset_allocator_peak(device="CPU:0"):
    """Restarts the allocator's peak from its current bytes; False where TF cannot."""
    import tensorflow as tf

    try:
        tf.config.experimental.reset_memory_stats(device)
    except ValueError:
        return False
    return True


def release_free_heap():
    """Returns the free pages of malloc's heap and arenas to the system; True if it could.

    Why: tracing a tf.function builds and drops large graphs (Python objects, GraphDefs,
    the optimizer's rewrites), and glibc's malloc keeps the freed blocks resident for
    reuse; only the top of the main heap is ever given back on its own. `malloc_trim(0)`
    (glibc >= 2.8) gives back every free page of every arena: measured after tracing the
    DeepLab v3 training step, about 0.1 GiB of the heap and the threads' arenas (see
    scripts/memory_breakdown.py). It takes milliseconds and changes no live object, so
    the training loop calls it after an epoch's first step (the process's first traces
    the step; a later epoch's follows the traced evaluation). False without glibc.
    """
    import ctypes

    try:
        # The symbols already loaded into this process (libc's among them): no library
        # search, which on Linux would start `ldconfig` at every call.
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl)
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
    return True
