"""bn_policy="frozen" under the project's training step, with both BatchNorm implementations:
moving statistics used and never updated, gamma and beta never trained (not by the
optimizer, not by weight decay), no training-mode or gradient fused op (the fused layer's
frozen path, kernels.batchnorm.frozen_batch_norm); and a frozen
run's checkpoint and export load and convert like any other.

"sync" and "train" with several replicas: tests/research/test_distribute.py (two logical
CPUs need their own process); how each policy is built: tests/research/test_build.py.
"""
import os

import keras
import numpy as np
import pytest

from kernels import FusedBatchNormalization
from research.models.layers import batchnorm_layers
from tests.research.test_train import _step_pieces, _tiny_batch


def _step_nodes(step, images, labels):
    """Every NodeDef of the traced train step (nested functions included)."""
    graph = step.get_concrete_function(images, labels).graph.as_graph_def()
    return list(graph.node) + [node for function in graph.library.function for node in function.node_def]


def fused_batch_norm_modes(step, images, labels):
    """`is_training` of every FusedBatchNormV3 op the traced train step runs: the fused
    kernel's training or inference path."""
    return [node.attr["is_training"].b for node in _step_nodes(step, images, labels) if node.op == "FusedBatchNormV3"]


def batchnorm_values(model):
    """{variable path: value} of every BatchNorm variable (gamma, beta, moving statistics)."""
    return {w.path: w.numpy().copy() for layer in batchnorm_layers(model) for w in layer.weights}


@pytest.mark.parametrize("impl", ["fused", "keras"])
def test_frozen_batchnorm_stays_bit_identical_while_the_rest_trains(smoke_config, impl):
    # Weight decay on and a large learning rate: either would move gamma at once if the
    # optimizer or the decay saw it.
    config = smoke_config.replace(bn_policy="frozen", batchnorm=impl, weight_decay=0.1, learning_rate=1e-2)
    images, labels = _tiny_batch()
    model, optimizer, step = _step_pieces(config)
    layer_class = FusedBatchNormalization if impl == "fused" else keras.layers.BatchNormalization
    assert all(type(layer) is layer_class and not layer.trainable for layer in batchnorm_layers(model))
    trainable = {v.path for v in model.trainable_variables}
    assert not any(path.endswith(("gamma", "beta")) for path in trainable)
    # Keras' initial BatchNorm values (gamma 1, beta 0, mean 0, variance 1) would hide a
    # missed update of the same value: give every BatchNorm variable its own.
    rng = np.random.default_rng(0)
    for layer in batchnorm_layers(model):
        for w in layer.weights:
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
    bn_before = batchnorm_values(model)
    others_before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    # training=True normalizes with the moving statistics, as inference does.
    np.testing.assert_allclose(np.asarray(model(images, training=True)), np.asarray(model(images)),
                               rtol=1e-5, atol=1e-5)
    losses = [float(step(images, labels)[0]) for _ in range(3)]
    assert all(np.isfinite(losses)), losses
    for path, value in batchnorm_values(model).items():
        np.testing.assert_array_equal(value, bn_before[path], err_msg=path)
    after = {v.path: v.numpy() for v in model.trainable_variables}
    kernels = [path for path in others_before if path.endswith("kernel")]
    assert kernels and all(not np.array_equal(after[path], others_before[path]) for path in kernels)
    if impl == "fused":
        # kernels.batchnorm.frozen_batch_norm ran, once per layer: no training-mode fused op,
        # and no fused gradient op (which would keep every BatchNorm input for the backward).
        nodes = _step_nodes(step, images, labels)
        scopes = {node.name.split("/frozen_batch_norm/")[0] for node in nodes if "/frozen_batch_norm/" in node.name}
        assert len(scopes) == len(batchnorm_layers(model)), scopes
        assert not any(fused_batch_norm_modes(step, images, labels))
        assert not [node for node in nodes if node.op.startswith("FusedBatchNormGrad")]


def test_trainable_batchnorm_runs_the_fused_kernels_training_path(smoke_config):
    # The other side of the check above (traced, not run): without "frozen" the same step
    # runs the fused kernel's training path.
    images, labels = _tiny_batch()
    _, _, step = _step_pieces(smoke_config)
    modes = fused_batch_norm_modes(step, images, labels)
    assert modes and all(modes)


@pytest.mark.slow  # a training run, an export and a TFLite conversion
def test_a_frozen_run_checkpoints_exports_and_converts_like_any_other(smoke_config, tmp_path):
    from research import evaluate as evaluate_lib
    from research import export as export_lib
    from research import export_tflite as et
    from research import train as train_lib

    config = smoke_config.replace(bn_policy="frozen", epochs=1, steps_per_epoch=2)
    workdir = str(tmp_path / "frozen")
    keras.utils.set_random_seed(0)
    train_lib.train_and_evaluate(config, workdir)
    model, _ = export_lib.load_export(os.path.join(workdir, "export"))
    assert all(not layer.trainable for layer in batchnorm_layers(model))    # .keras keeps it
    report = evaluate_lib.evaluate(workdir, subset="val", source="checkpoint", samples=0, hardest=0,
                                   out_dir=str(tmp_path / "eval"))
    assert 0.0 <= report["mean_iou"] <= 1.0
    path = et.export_tflite(workdir, "float16", logits=True)
    tflite = et.TFLiteModel(path)
    assert tflite.input_size == tuple(config.input_size) and tflite.has_logits
