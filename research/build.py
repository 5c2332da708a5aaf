"""What a config builds: the model, the optimizer and the loss, in one place.

`research.train`, `research.evaluate`, `research.fit_baseline`, the benchmarks and the
scripts all build through these functions, so a config means the same network, update
rule and objective everywhere.
"""
import contextlib

import keras

import kernels
from research.models import deeplab_v3, unet


@contextlib.contextmanager
def dtype_policy(name):
    """Sets Keras' global dtype policy while layers are built, then restores it."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_model(config, precision="float32", num_replicas=1, pretrained=True):
    """The config's model: float32 [B,H,W,3] images in [0,255] -> float32 logits [B,H,W,C].

    With several tf.distribute replicas, BatchNorm statistics are synchronized across
    them, so N replicas compute what one device computes on the global batch.
    `pretrained=False` builds the same network (the preprocessing its `config.weights`
    imply included) without reading the pretrained file: for a model whose every
    weight comes from a checkpoint next (resume, evaluation), so a config naming
    "imagenet" or an .h5 file that is gone needs neither the download nor the file.
    """
    weights = config.weights if pretrained else None
    preprocessing = None if pretrained else ("caffe" if config.weights else "unit")
    common = dict(num_classes=config.num_classes, input_shape=(None, None, 3), weights=weights,
                  preprocessing=preprocessing,
                  blocks_per_stage=tuple(config.backbone_blocks), width=config.backbone_width,
                  bn_momentum=config.bn_momentum, sync_batchnorm=num_replicas > 1,
                  bn_impl=config.batchnorm)
    with dtype_policy(precision):
        if config.model == "deeplab_v3":
            return deeplab_v3(output_stride=config.output_stride, atrous=config.atrous,
                              backbone=config.backbone, head=config.head, **common)
        return unet(**common)


def make_optimizer(config, precision):
    """Adam; wrapped in a dynamic LossScaleOptimizer for mixed_float16.

    `config.optimizer_impl` "fused": kernels.FusedAdam / FusedSGD (one TF kernel per
    variable, same variables and checkpoints); "keras": Keras' own classes.
    """
    fused = config.optimizer_impl == "fused"
    # `sgd` is the class an `optimizer: "sgd"` config field would pick (same switch).
    adam, sgd = ((kernels.FusedAdam, kernels.FusedSGD) if fused
                 else (keras.optimizers.Adam, keras.optimizers.SGD))
    optimizer = adam(learning_rate=config.learning_rate)
    if precision == "mixed_float16":
        # Scales the loss up so float16 gradients do not underflow; unscales before the
        # update, skips steps whose gradients overflowed and halves the scale then.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def loss_function(config):
    """(fn, kwargs): `fn(labels, logits, normalizers=..., **kwargs)` -> float32 scalar."""
    fn = kernels.ce_dice_loss if config.loss_impl == "fused" else kernels.reference_ce_dice_loss
    kwargs = dict(num_classes=config.num_classes, ignore_label=config.ignore_label,
                  smooth=config.dice_smooth, ce_weight=config.ce_weight,
                  dice_weight=config.dice_weight, class_weighted=config.class_weighted)
    return fn, kwargs
