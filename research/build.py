"""What a config builds: the model, the optimizer and the loss, in one place.

`research.train`, `research.evaluate`, `research.fit_baseline`, the benchmarks and the
scripts all build through these functions, so a config means the same network, update
rule and objective everywhere.
"""
import contextlib

import keras

import kernels
from research.config import DEEPLAB_MODELS
from research.models import deeplab_v3, unet
from research.models.layers import batchnorm_layers, freeze_batchnorm
from research.models.weights import pretrained_preprocessing


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

    BatchNorm follows `config.bn_policy`: "sync" synchronizes the batch statistics over
    several tf.distribute replicas (so N replicas compute what one device computes on the
    global batch; one replica: plain training-mode BatchNorm, the fused kernel); "train"
    never synchronizes (each replica normalizes its own slice; the training step averages
    the moving statistics, `moving_statistics_to_average`); "frozen" freezes every
    BatchNorm layer (`layers.freeze_batchnorm`: moving statistics used and not updated,
    gamma and beta not trainable).
    `pretrained=False` builds the same network (the preprocessing its `config.weights`
    imply included) without reading the pretrained file: for a model whose every
    weight comes from a checkpoint next (resume, evaluation), so a config naming
    "imagenet" or an .h5 file that is gone needs neither the download nor the file.
    """
    weights = config.weights if pretrained else None
    # Without reading the file, the input scaling must still be the one those weights
    # imply (a preprocessing layer has no weights: a checkpoint cannot correct it).
    preprocessing = None if pretrained else (
        pretrained_preprocessing(config.backbone) if config.weights else "unit")
    common = dict(num_classes=config.num_classes, input_shape=(None, None, 3), weights=weights,
                  preprocessing=preprocessing,
                  blocks_per_stage=tuple(config.backbone_blocks), width=config.backbone_width,
                  bn_momentum=config.bn_momentum,
                  sync_batchnorm=config.bn_policy == "sync" and num_replicas > 1,
                  bn_impl=config.batchnorm)
    with dtype_policy(precision):
        if config.model in DEEPLAB_MODELS:
            model = deeplab_v3(output_stride=config.output_stride, atrous=config.atrous,
                               backbone=config.backbone, head=config.head,
                               aspp_rates=tuple(config.aspp_rates), aspp_filters=config.aspp_filters,
                               decoder=config.model == "deeplab_v3_plus", **common)
        else:
            model = unet(**common)
    if config.bn_policy == "frozen":
        freeze_batchnorm(model)
    return model


def moving_statistics_to_average(model, config, num_replicas):
    """The BatchNorm moving statistics the training step averages over the replicas.

    Only for `bn_policy="train"` with several replicas: each replica then updates its
    own copy of moving_mean and moving_variance from its own slice, and Keras 3 keeps
    the copies apart (the variables have no aggregation), so without this the replicas'
    statistics would drift apart, a checkpoint would keep the first replica's and an
    evaluation on N replicas would use N different ones. Averaged once per step, every
    copy holds the moving average of the replicas' mean batch statistics (what Keras 2
    gave on reading them). Returns a list of variables, empty where nothing is averaged.
    """
    if config.bn_policy != "train" or num_replicas == 1:
        return []
    return [v for layer in batchnorm_layers(model) for v in (layer.moving_mean, layer.moving_variance)]


def build_model_at_output_stride(model, config, output_stride):
    """`model`'s weights in the config's DeepLab (v3 or v3+) rebuilt at another output stride.

    Train at 16, evaluate at 8: the strides and dilations change, the weights do not
    (every 3x3 kernel is [3, 3, Cin, Cout] whatever its dilation, and the layer names
    are the same at both strides), so the weights copy layer by layer by name.
    Returns `model` itself when nothing changes (U-Net, or the same stride).
    """
    if config.model not in DEEPLAB_MODELS or output_stride in (None, config.output_stride):
        return model
    rebuilt = build_model(config.replace(output_stride=output_stride), pretrained=False)
    for layer in rebuilt.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return rebuilt


def make_optimizer(config, precision):
    """Adam or SGD with momentum (config.optimizer) at the config's base learning rate,
    keeping a moving average of the weights when `config.ema_decay` is set; wrapped in a
    dynamic LossScaleOptimizer for mixed_float16. The training loop sets
    the learning rate of every step (research.training.schedules); weight decay is added to the
    gradients there (`decayed_variables`), not here.

    `config.optimizer_impl` "fused": kernels.FusedAdam / FusedSGD (one TF kernel per
    variable, same variables and checkpoints); "keras": Keras' own classes.
    """
    fused = config.optimizer_impl == "fused"
    adam, sgd = ((kernels.FusedAdam, kernels.FusedSGD) if fused
                 else (keras.optimizers.Adam, keras.optimizers.SGD))
    # EMA of the weights (research/training/ema.py): averages kept by the optimizer.
    ema = dict(use_ema=True, ema_momentum=config.ema_decay) if config.ema_decay else {}
    if config.optimizer == "sgd":
        optimizer = sgd(learning_rate=config.learning_rate, momentum=config.momentum, **ema)
    else:
        optimizer = adam(learning_rate=config.learning_rate, **ema)
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


def decayed_variables(model):
    """The variables weight decay applies to: convolution and dense kernels only.

    Not BatchNorm's gamma/beta, not biases (the papers' recipe; decaying BN's scale
    fights the normalisation). Returns a list of bools aligned with
    `model.trainable_variables`.
    """
    return [v.path.rsplit("/", 1)[-1] == "kernel" for v in model.trainable_variables]
