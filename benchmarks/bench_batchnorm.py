"""BatchNorm, training forward + backward: kernels.FusedBatchNormalization vs Keras'.

At [2, 96, 96, 256], a ResNet-50 conv2-stage output in DeepLab v3 at 384 px, batch 2
(conv1's [2, 192, 192, 64] has as many elements). One step: the layer called with
training=True, then gradients. "training": batch statistics, moving-statistics update,
gradients for the input, gamma and beta. "frozen" (trainable=False, the frozen BatchNorm
policy): moving statistics, the gradient for the input only. float32, no XLA (under
XLA the fused layer runs Keras' ops: see kernels/batchnorm.py). Items are images.
oneDNN as this process has it (TF's default for this CPU; the group name says which):
run with TF_ENABLE_ONEDNN_OPTS=0 or 1 set to measure the other setting.

    pytest benchmarks/bench_batchnorm.py -s
    TF_ENABLE_ONEDNN_OPTS=1 pytest benchmarks/bench_batchnorm.py -s
"""
import keras
import pytest
import tensorflow as tf
from tensorflow.python.util import _pywrap_util_port

from benchmarks.support import bench_case, record_items_per_second
from kernels import FusedBatchNormalization

SHAPE = (2, 96, 96, 256)
LAYERS = {"fused": FusedBatchNormalization, "keras": keras.layers.BatchNormalization}


@pytest.mark.parametrize("frozen", [False, True], ids=["training", "frozen"])
@pytest.mark.parametrize("name", [bench_case(n, id=n, baseline=n == "keras") for n in LAYERS])
def test_batchnorm(benchmark, comparison_table, name, frozen):
    layer = LAYERS[name](momentum=0.9, epsilon=1.001e-5)
    layer.build(SHAPE)
    layer.trainable = not frozen  # frozen: moving statistics, gradient for the input only
    x = tf.random.stateless_normal(SHAPE, seed=[1, 2]) * 3.0 + 1.0

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [x] + layer.trainable_variables)

    step()[0].numpy()  # trace outside the timing
    onednn = "on" if _pywrap_util_port.IsMklEnabled() else "off"
    group = f"batchnorm {'frozen' if frozen else 'training'} fwd+bwd {list(SHAPE)} oneDNN {onednn}"
    benchmark.group = group
    benchmark.extra_info["onednn"] = onednn == "on"
    benchmark.pedantic(lambda: step()[0].numpy(), rounds=10, warmup_rounds=2)
    if benchmark.disabled:
        return
    rate = record_items_per_second(benchmark, SHAPE[0])
    comparison_table.append((group, name, benchmark.stats.stats.min, rate, name == "keras"))
