"""Atrous 3x3 conv, forward + backward at [4, 24, 24, 2048] -> 256: fast vs Keras Conv2D.

For r in 1, 2, 6, 12, 18, each with oneDNN off (TF's default on AVX2 CPUs) and on (TF's
default with AVX-512 VNNI).
`TF_ENABLE_ONEDNN_OPTS` is read when TensorFlow is imported, so each setting runs in a
worker process (this file run as `python -m benchmarks.bench_atrous --worker`) that builds the
cases and runs one call per request; pytest-benchmark times the requests (the pipe
costs well under a millisecond; a call takes 0.2-30 s). Fast and Keras for one rate run
one after the other in the same worker. Items are images. Slow: Keras r=18 with oneDNN
off takes 18-30 s a call, so the slow cases get one timed round.

    pytest benchmarks/bench_atrous.py            # about 2-3 minutes on 2 idle cores
"""
import json
import sys
import time

import pytest

from benchmarks.support import WorkerProcess, bench_case, record_items_per_second

SHAPE = (4, 24, 24, 2048)
FILTERS = 256
RATES = (1, 2, 6, 12, 18)
SLOW_CALL_S = 3.0  # calls slower than this get one timed round instead of three


# ----------------------------------------------------------------------------------------
# Worker side (its own process; imports TensorFlow with the oneDNN setting it was given)

def _build_step(case, rate):
    """A tf.function running forward + backward (w.r.t. input and weights) of one case."""
    import keras
    import tensorflow as tf
    from kernels import AtrousConv2D

    if case == "keras":
        layer = keras.layers.Conv2D(FILTERS, 3, dilation_rate=rate, padding="same")
    else:
        layer = AtrousConv2D(FILTERS, 3, dilation_rate=rate)
    layer.build(SHAPE)
    x = tf.random.stateless_normal(SHAPE, seed=[1, 2])

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [x] + layer.trainable_variables)

    return lambda: step()[0].numpy()  # .numpy(): wait for the result


def _worker():
    """Answers JSON requests on stdin: {"op": "build"|"run", "case", "rate"}."""
    from tensorflow.python.util import _pywrap_util_port
    from kernels import atrous
    import tensorflow as tf

    steps = {}
    for line in sys.stdin:
        request = json.loads(line)
        key = (request["case"], request["rate"])
        if request["op"] == "build":
            steps.clear()  # one case at a time
            steps[key] = _build_step(*key)
        start = time.perf_counter()
        steps[key]()
        reply = {"seconds": time.perf_counter() - start}
        if request["op"] == "build":
            reply["onednn"] = bool(_pywrap_util_port.IsMklEnabled())
            reply["auto_choice"] = atrous._choose(
                tf.zeros([1, SHAPE[1], SHAPE[2], 1]), tf.zeros([3, 3, 1, 1]), request["rate"])
        print(json.dumps(reply), flush=True)


# ----------------------------------------------------------------------------------------
# pytest side

@pytest.fixture(scope="module")
def workers():
    """workers(onednn) -> that setting's Worker, started on first use; one at a time."""
    started = {}

    def get(onednn):
        if onednn not in started:
            for other in started.values():  # an idle worker still holds memory: stop it
                other.close()
            started.clear()
            started[onednn] = WorkerProcess("benchmarks.bench_atrous", onednn)
        return started[onednn]

    yield get
    for worker in started.values():
        worker.close()


CASES = [(onednn, rate, case) for onednn in (False, True) for rate in RATES
         for case in ("keras", "fast")]


@pytest.mark.parametrize("onednn,rate,case", [
    bench_case(o, r, c, id=f"onednn_{'on' if o else 'off'}-r{r}-{c}", baseline=c == "keras")
    for o, r, c in CASES])
def test_atrous(benchmark, workers, comparison_table, onednn, rate, case):
    worker = workers(onednn)
    built = worker.request({"op": "build", "case": case, "rate": rate})  # trace + first call, untimed
    assert built["onednn"] == onednn, "TF_ENABLE_ONEDNN_OPTS did not take effect"
    group = f"atrous fwd+bwd oneDNN {'on' if onednn else 'off'} r={rate}"
    benchmark.group = group
    benchmark.extra_info.update(onednn=onednn, rate=rate, auto_choice=built["auto_choice"])
    rounds = 1 if built["seconds"] > SLOW_CALL_S else 3
    inner = []
    benchmark.pedantic(lambda: inner.append(worker.request({"op": "run", "case": case, "rate": rate})["seconds"]),
                       rounds=rounds, warmup_rounds=0, iterations=1)
    if benchmark.disabled:
        return
    benchmark.extra_info["worker_seconds"] = inner
    rate_items = record_items_per_second(benchmark, SHAPE[0])
    name = "Keras Conv2D" if case == "keras" else f"AtrousConv2D ({built['auto_choice']})"
    comparison_table.append((group, name, benchmark.stats.stats.min, rate_items, case == "keras"))


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    _worker()
