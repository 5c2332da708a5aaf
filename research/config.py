"""Run configuration: one flat dataclass, plain-Python named configs, JSON files, overrides.

A config is data. Named configs are Python functions in `research/configs/` returning a
`Config` (`deeplabv3_voc`, `unet_voc`, `demo`, `smoke`; `research.configs.load_config`
loads one by name or a file); a config FILE is JSON and is never executed. `--set key=value` overrides parse the value as JSON when possible
(`--set batch_size=4`, `--set input_size=[128,128]`, `--set weights=null`) and fall
back to the raw string (`--set model=unet`), then check it against the field's type.

This module does not import TensorFlow: the command lines read the config before
TensorFlow is imported (oneDNN is decided at import time).
"""
import dataclasses
import json
import math
import typing

from research.training.loop_state import CSV_COLUMNS


@dataclasses.dataclass
class Config:
    """Every setting of a training run. Defaults are the book's DeepLab v3 recipe on VOC."""

    name: str = "custom"                       # the run's label in logs, reports and exports

    # --- Data ---------------------------------------------------------------
    dataset: str = "voc"                       # "voc" (read from voc_root) or "folder" (your own data
                                               # in the folder layout at data_root: research/data/folder.py)
    voc_root: str = "data/VOCdevkit/VOC2012"  # the folder holding JPEGImages/, SegmentationClass/
    data_root: typing.Optional[str] = None     # dataset "folder": the folder holding classes.json, images/,
                                               # masks/, splits/ (num_classes must match classes.json)
    train_subset: str = "train"                # "train" (train.txt) or "train_aug" (+SBD: prepare_sbd.py)
    num_classes: int = 21                      # classes predicted, background included (VOC: 21)
    ignore_label: int = 255                    # mask value left out of the loss and the metrics
    input_size: tuple = (384, 384)             # (height, width) the model trains on
    resize_to_before_crop: typing.Optional[tuple] = (444, 444)  # (h, w) resize before the random
                                               # crop; None: scale from each image's own size
    augmentation: bool = True                  # training: random crop, flip, colour jitter
    scale_range: typing.Optional[tuple] = None # (low, high): random scale, pad, crop (recipe of the
                                               # papers) instead of the book's crop-or-resize
    batch_size: int = 8                        # global batch, split across replicas (with
                                               # accumulate_steps k: each of k micro-batches)
    eval_batch_size: int = 8                   # global batch of val/test evaluation
    split_seed: int = 0                        # val/test halves of val.txt
    skip_bad: bool = False                     # log and skip unreadable samples

    # --- Model --------------------------------------------------------------
    model: str = "deeplab_v3"                  # "deeplab_v3", "deeplab_v3_plus" (decoder over
                                               # stride-4 features) or "unet"
    output_stride: int = 16                    # DeepLab only: 16 or 8
    weights: typing.Optional[str] = "imagenet" # None, "imagenet" or a path to ResNet-50 weights
    backbone_blocks: tuple = (3, 4, 6, 3)      # ResNet-50; smaller for smoke tests
    backbone_width: int = 64                   # channels of the first conv (ResNet-50: 64)
    backbone: str = "resnet50"                 # DeepLab: "resnet50" or "mobilenet_v2" (7 stages:
                                               # blocks (1,2,3,4,3,3,1), width 32 = alpha 1.0)
    head: str = "aspp"                         # DeepLab: "aspp" or "light" (1x1 + image pooling)
    aspp_rates: tuple = (6, 12, 18)            # ASPP atrous rates at output stride 16 (doubled at 8):
                                               # the paper's, for ~513 px crops; scale for small inputs
    aspp_filters: int = 256                    # channels of each ASPP branch, the projection and
                                               # the v3+ decoder's 3x3 convs
    atrous: str = "kernels"                    # "kernels" (fast AtrousConv2D) or "keras" (Conv2D)
    bn_momentum: float = 0.99                  # BatchNorm moving averages; 0.9 for short runs
    batchnorm: str = "fused"                   # "fused" (kernels.FusedBatchNormalization) or "keras"
    bn_policy: str = "sync"                    # "sync": batch statistics over all replicas and
                                               # workers (one device: plain training mode);
                                               # "train": each replica's own slice; "frozen":
                                               # moving statistics, none updated, gamma/beta fixed
    eval_output_stride: typing.Optional[int] = None  # DeepLab: evaluate at 8 what trained at 16
                                               # (same weights, model rebuilt); None: output_stride

    # --- Loss ---------------------------------------------------------------
    loss_impl: str = "fused"                   # "fused" (kernels.ce_dice_loss) or "reference"
    ce_weight: float = 1.0                     # weight of the cross-entropy term
    dice_weight: float = 1.0                   # weight of the dice term (0: plain cross-entropy)
    class_weighted: bool = True                # weight a pixel by 1 - its class's share of its image
    dice_smooth: float = 1.0                   # added to the dice ratio's numerator and denominator

    # --- Optimisation -------------------------------------------------------
    optimizer: str = "adam"                    # "adam" or "sgd" (with `momentum`)
    momentum: float = 0.9                      # SGD only
    weight_decay: float = 0.0                  # L2 on conv/dense kernels (not BN, not biases)
    learning_rate: float = 1e-4                # the base (peak) learning rate
    accumulate_steps: int = 1                  # micro-batches of batch_size per optimizer update:
                                               # one update sees batch_size * accumulate_steps images;
                                               # a step (steps_per_epoch, total_steps, logs) is an update
    ema_decay: typing.Optional[float] = None   # exponential moving average of the weights (e.g.
                                               # 0.999): evaluation, export and TFLite use it; None: off
    optimizer_impl: str = "fused"              # "fused" (kernels.FusedAdam/FusedSGD: one TF kernel
                                               # per variable) or "keras" (Keras' own classes)
    lr_schedule: str = "plateau"               # "plateau" (the book's), "poly" or "cosine", per step
    poly_power: float = 0.9                    # poly: lr * (1 - step / total_steps) ** poly_power
    warmup_steps: int = 0                      # linear warmup from base/warmup_steps to base
    total_steps: typing.Optional[int] = None   # poly/cosine horizon; None: epochs * steps_per_epoch
    epochs: int = 25                           # training epochs (val after each)
    steps_per_epoch: typing.Optional[int] = None  # None: one pass over the train split
    eval_steps: typing.Optional[int] = None       # None: the whole val split
    monitor: str = "val_loss"                  # a column of train_log.csv
    monitor_mode: str = "auto"                 # "min", "max", or "auto" (min for losses)
    plateau_patience: int = 3                  # epochs without improvement before LR x factor
    plateau_factor: float = 0.1                # plateau: multiplies the learning rate
    min_learning_rate: float = 1e-8            # plateau: the learning rate's floor
    early_stop_patience: int = 6               # epochs without improvement before stopping

    # --- Runtime ------------------------------------------------------------
    precision: str = "auto"                    # "auto", "float32", "mixed_float16", "mixed_bfloat16"
    jit_compile: typing.Union[bool, str] = "auto"  # True, False or "auto" (by device, measured)
    distribute: str = "default"                # "default", "mirrored" or "multi_worker"
    seed: int = 0                              # initial weights, data order and augmentation
    deterministic: bool = False                # bit-identical reruns (op determinism; a little slower)
    checkpoint_every_steps: int = 500          # also at each epoch end
    keep_checkpoints: int = 3                  # newest checkpoints kept in checkpoints/
    log_every_steps: int = 20                  # TensorBoard scalars and progress metrics
    tensorboard_images: int = 3                # predicted masks written per epoch
    nan_policy: str = "stop"                   # "stop", or "restore" (last checkpoint, lower LR)
    nan_lr_factor: float = 0.5                 # nan_policy "restore": multiplies the learning rate
    max_nan_restores: int = 3                  # nan_policy "restore": restores before the run stops
    profile_steps: typing.Optional[tuple] = None  # (first, last) global steps to trace
    export_best: bool = True                   # export the best model by `monitor` to export/
    final_eval_full_resolution: bool = False   # at the end: val at each image's own size (eval_val/)
    eval_mode: str = "whole"                   # research.evaluate's default: "whole" (each image resized to
                                               # input_size) or "slide" (overlapping windows at each image's
                                               # own size, logits averaged: research/sliding_window.py)
    eval_window: typing.Optional[tuple] = None # slide: (h, w) of a window; None: input_size
    eval_stride: typing.Optional[tuple] = None # slide: (h, w) between windows; None: 2/3 of the window

    def replace(self, **changes):
        """Returns a copy with `changes` applied and checked."""
        return check_config(dataclasses.replace(self, **changes))

    def to_dict(self):
        """{field: value} of every field (tuples kept; config.json holds this)."""
        return dataclasses.asdict(self)


# Fields that may differ when a run resumes (they change how a run is observed or how
# long it runs, not what it computes). Not eval_steps: the val_* values it changes drive
# the plateau schedule, early stopping and the best export, each compared with values
# measured before the resume. Not bn_policy: "frozen" changes the trainable variables
# (the optimizer's slots in the checkpoint) and every policy what a step computes.
RESUMABLE_FIELDS = frozenset({
    "epochs", "early_stop_patience", "checkpoint_every_steps", "keep_checkpoints",
    "log_every_steps", "tensorboard_images", "profile_steps", "skip_bad", "name",
    "nan_policy", "max_nan_restores", "export_best",
    # Same update to round-off and the same checkpoint variables (kernels/optimizers.py).
    "optimizer_impl",
    "final_eval_full_resolution", "eval_output_stride", "eval_mode", "eval_window", "eval_stride",
})

DEEPLAB_MODELS = ("deeplab_v3", "deeplab_v3_plus")
BN_POLICIES = ("sync", "train", "frozen")
# The fields that make a network what it is (its weights' shapes and its computation per
# image), by model family: results record them so that a figure can be matched to a
# config's network as it is today.
DEEPLAB_NETWORK = ("model", "backbone", "head", "output_stride", "backbone_blocks", "backbone_width",
                   "aspp_rates", "aspp_filters", "num_classes")
UNET_NETWORK = ("model", "backbone", "backbone_blocks", "backbone_width", "num_classes")


def network_of(config):
    """{field: value} of the fields that make `config`'s network (`DEEPLAB_NETWORK` or
    `UNET_NETWORK`), tuples as lists: what a results file records, as JSON."""
    fields = DEEPLAB_NETWORK if config.model in DEEPLAB_MODELS else UNET_NETWORK
    return {name: list(value) if isinstance(value, (list, tuple)) else value
            for name in fields for value in [getattr(config, name)]}

_CHOICES = {
    "dataset": ("voc", "folder"),
    "eval_mode": ("whole", "slide"),
    "model": DEEPLAB_MODELS + ("unet",),
    "train_subset": ("train", "train_aug"),
    "backbone": ("resnet50", "mobilenet_v2"),
    "head": ("aspp", "light"),
    "atrous": ("kernels", "keras"),
    "batchnorm": ("fused", "keras"),
    "bn_policy": BN_POLICIES,
    "loss_impl": ("fused", "reference"),
    "optimizer_impl": ("fused", "keras"),
    "monitor_mode": ("auto", "min", "max"),
    "precision": ("auto", "float32", "mixed_float16", "mixed_bfloat16"),
    "distribute": ("default", "mirrored", "multi_worker"),
    "nan_policy": ("stop", "restore"),
    "optimizer": ("adam", "sgd"),
    "lr_schedule": ("plateau", "poly", "cosine"),
}


def _field_types():
    return typing.get_type_hints(Config)


def _coerce(name, value, annotation):
    """Converts a JSON-ish value to the field's type, or raises ValueError."""
    optional = typing.get_origin(annotation) is typing.Union and type(None) in typing.get_args(annotation)
    if value is None:
        if optional:
            return None
        raise ValueError(f"{name} may not be null")
    base = annotation
    if optional:
        base = next(a for a in typing.get_args(annotation) if a is not type(None))
    if name == "jit_compile":
        if value in (True, False, "auto"):
            return value
        raise ValueError("jit_compile must be true, false or \"auto\"")
    if base is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name} must be a list, got {value!r}")
        return tuple(value)
    if base is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{name} must be true or false, got {value!r}")
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        return value
    if base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number, got {value!r}")
        return float(value)
    if base is str:
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {value!r}")
        return value
    return value


def check_config(config):
    """Validates field types and choices; returns `config` with values coerced."""
    types = _field_types()
    values = {}
    for field in dataclasses.fields(config):
        values[field.name] = _coerce(field.name, getattr(config, field.name), types[field.name])
    for name, choices in _CHOICES.items():
        if values[name] not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}; got {values[name]!r}")
    _check_model_fields(values)
    _check_schedule_fields(values)
    _check_size_fields(values)
    _check_data_fields(values)
    return Config(**values)


def _check_model_fields(values):
    """Raises ValueError for a network the model builders cannot make (backbone, strides, ASPP)."""
    stages = 7 if values["backbone"] == "mobilenet_v2" else 4
    if len(values["backbone_blocks"]) != stages:
        raise ValueError(f"backbone_blocks needs {stages} values for backbone {values['backbone']} "
                         f"(full network: {(1, 2, 3, 4, 3, 3, 1) if stages == 7 else (3, 4, 6, 3)}); "
                         f"got {values['backbone_blocks']!r}")
    if values["backbone"] != "resnet50" and values["model"] not in DEEPLAB_MODELS:
        raise ValueError(f"backbone {values['backbone']} is for models {', '.join(DEEPLAB_MODELS)} only")
    if values["output_stride"] not in (8, 16):
        raise ValueError(f"output_stride must be 8 or 16; got {values['output_stride']}")
    if values["eval_output_stride"] not in (None, 8, 16):
        raise ValueError(f"eval_output_stride must be null, 8 or 16; got {values['eval_output_stride']}")
    if values["aspp_filters"] < 1:
        raise ValueError(f"aspp_filters must be positive; got {values['aspp_filters']}")
    rates = values["aspp_rates"]
    if not rates or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in rates):
        raise ValueError(f"aspp_rates must be a list of positive integers; got {rates!r}")


def _check_schedule_fields(values):
    """Raises ValueError for a bad optimizer, schedule, step count or EMA field."""
    # `not x >= 0` rather than `x < 0`: NaN (JSON and --set accept it) fails every comparison.
    for name in ("weight_decay", "warmup_steps", "momentum", "poly_power", "min_learning_rate",
                 "tensorboard_images", "max_nan_restores", "plateau_patience", "early_stop_patience"):
        if not (isinstance(values[name], (int, float)) and values[name] >= 0 and math.isfinite(values[name])):
            raise ValueError(f"{name} must be a number >= 0; got {values[name]!r}")
    if not (isinstance(values["learning_rate"], (int, float)) and 0 < values["learning_rate"] < math.inf):
        raise ValueError(f"learning_rate must be a positive number; got {values['learning_rate']!r}")
    for name in ("plateau_factor", "nan_lr_factor"):    # multiply the learning rate: lower it
        if not (isinstance(values[name], (int, float)) and 0 < values[name] <= 1):
            raise ValueError(f"{name} must be in (0, 1]; got {values[name]!r}")
    for name in ("steps_per_epoch", "eval_steps"):
        value = values[name]
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            raise ValueError(f"{name} must be a positive integer or null; got {value!r}")
    if values["total_steps"] is not None and values["total_steps"] <= 0:
        raise ValueError(f"total_steps must be positive or null; got {values['total_steps']}")
    ema = values["ema_decay"]
    if ema is not None and not 0 < ema < 1:
        raise ValueError(f"ema_decay must be null (off) or in (0, 1); got {ema!r}")
    for name in ("batch_size", "eval_batch_size", "epochs", "checkpoint_every_steps", "accumulate_steps",
                 "keep_checkpoints", "log_every_steps", "num_classes"):
        if values[name] <= 0:
            raise ValueError(f"{name} must be positive; got {values[name]}")


def _check_size_fields(values):
    """Raises ValueError for a bad image size, window, scale range or profiled step range."""
    scale_range = values["scale_range"]
    if scale_range is not None and (len(scale_range) != 2 or not all(isinstance(s, (int, float)) for s in scale_range)
                                    or not 0 < scale_range[0] <= scale_range[1]):
        raise ValueError(f"scale_range must be [low, high] with 0 < low <= high; got {scale_range!r}")
    for name in ("input_size", "resize_to_before_crop", "eval_window", "eval_stride"):
        size = values[name]
        if size is not None and (len(size) != 2 or any(not isinstance(s, int) or isinstance(s, bool)
                                                       or s <= 0 for s in size)):
            raise ValueError(f"{name} must be two positive integers (height, width); got {size!r}")
    if values["augmentation"] and scale_range is None:
        # The pipeline's random crop (research/data/pipeline.py) cuts input_size out of an
        # image resized to resize_to_before_crop; without a scale range that is the only size.
        before = values["resize_to_before_crop"]
        if before is None:
            raise ValueError("augmentation=true without scale_range needs resize_to_before_crop "
                             "(the size to resize to before a random crop of input_size)")
        if any(b < i for b, i in zip(before, values["input_size"])):
            raise ValueError(f"resize_to_before_crop {list(before)} is smaller than input_size "
                             f"{list(values['input_size'])}: the crop must fit in both sides")
    steps = values["profile_steps"]
    if steps is not None and (len(steps) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in steps)
                              or not 0 <= steps[0] <= steps[1]):
        raise ValueError(f"profile_steps must be [first, last], integers with 0 <= first <= last; got {steps!r}")


def _check_data_fields(values):
    """The dataset fields and the sliding window agree with each other, and the monitored
    value is a column of train_log.csv."""
    if values["monitor"] not in CSV_COLUMNS:
        raise ValueError(f"monitor {values['monitor']!r} is not a train_log.csv column: {', '.join(CSV_COLUMNS)}")
    if values["dataset"] == "folder":
        if not values["data_root"]:
            raise ValueError('dataset "folder" needs data_root (the folder holding classes.json, '
                             'images/, masks/, splits/)')
        if values["train_subset"] != "train":
            raise ValueError(f'train_subset {values["train_subset"]!r} is VOC\'s; a folder dataset '
                             f'trains on "train" (splits/train.txt)')
    elif values["data_root"] is not None:
        raise ValueError('data_root is read only with dataset "folder" (a VOC dataset is at voc_root)')
    window = values["eval_window"] or values["input_size"]
    stride = values["eval_stride"]
    if stride is not None and any(s > w for s, w in zip(stride, window)):
        raise ValueError(f"eval_stride {list(stride)} is larger than the window {list(window)}: "
                         f"pixels between windows would never be predicted")


def config_from_dict(data, source="config"):
    """Builds a checked Config from a dict; unknown keys raise, naming `source`."""
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{source}: unknown config keys: {', '.join(unknown)}")
    try:
        return check_config(Config(**data))
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None


def load_config_file(path):
    """Reads a JSON config file (data only: nothing in it is executed)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must hold a JSON object")
    if set(data) == {"config", "runtime"}:
        data = data["config"]  # a run's config.json: the config plus the runtime choices
    config = config_from_dict(data, source=path)
    # A folder dataset's classes.json says how many classes there are, unless the file does.
    return config if "num_classes" in data else with_folder_classes(config)


def apply_overrides(config, overrides):
    """Applies `key=value` strings (values parsed as JSON, else taken as strings).

    Switching to a folder dataset (`dataset` or `data_root` among the overrides, not
    `num_classes`) also takes its class count from DATA_ROOT/classes.json, so
    `--set dataset=folder --set data_root=ROOT` is all a run on your own data needs. A
    num_classes that says otherwise is refused when the dataset is opened
    (`research.data.datasets.dataset_of`), naming both numbers.
    """
    changes = {}
    known = {f.name for f in dataclasses.fields(Config)}
    for item in overrides or ():
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(f"override {item!r} is not key=value")
        if key not in known:
            raise ValueError(f"override {item!r}: unknown config key {key!r}")
        try:
            changes[key] = json.loads(raw)
        except json.JSONDecodeError:
            changes[key] = raw
    data = config.to_dict()
    data.update(changes)
    config = config_from_dict(data, source="--set")
    if {"dataset", "data_root"} & set(changes) and "num_classes" not in changes:
        config = with_folder_classes(config)
    return config


def with_folder_classes(config):
    """`config` with num_classes from DATA_ROOT/classes.json when it reads a folder
    dataset whose classes.json is readable; else `config` unchanged (opening the
    dataset then names the problem)."""
    if config.dataset != "folder":
        return config
    from research.data import folder    # numpy + PIL, no TensorFlow

    try:
        classes = folder.read_classes(config.data_root)
    except (OSError, ValueError):
        return config
    return config.replace(num_classes=len(classes.names))


def resume_differences(saved, current):
    """Names of fields that differ between two configs and may not change on resume."""
    a, b = saved.to_dict(), current.to_dict()
    differences = {k for k in a if a[k] != b[k] and k not in RESUMABLE_FIELDS}
    if a["epochs"] != b["epochs"] and saved.lr_schedule != "plateau" and saved.total_steps is None:
        differences.add("epochs")  # the poly/cosine horizon is epochs * steps_per_epoch
    return sorted(differences)


def restart_differences(saved, current):
    """Names of fields that differ between two configs, the name aside: what a start from
    scratch may not change over an earlier run's results (a resume may change more,
    `resume_differences`, since it continues that run)."""
    a, b = saved.to_dict(), current.to_dict()
    return sorted(k for k in a if a[k] != b[k] and k != "name")


def monitor_mode(config):
    """"min" or "max" for the monitored column (auto: min when it names a loss)."""
    if config.monitor_mode != "auto":
        return config.monitor_mode
    return "min" if "loss" in config.monitor else "max"
