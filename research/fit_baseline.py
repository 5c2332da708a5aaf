"""The book's recipe with plain Keras `compile`/`fit`: the baseline the benchmarks beat.

Same data pipeline and model-building code (research/build.py) as research/train.py, so a benchmark
compares only the training machinery. What differs, on purpose:
  - dilated `keras.layers.Conv2D` instead of `kernels.AtrousConv2D` (config atrous="keras");
  - Keras' BatchNormalization instead of `kernels.FusedBatchNormalization` (batchnorm="keras");
  - the book's loss and metrics as Keras 3 objects, written correctly (ignored pixels
    excluded, exact confusion-matrix metrics accumulated in int64), with the plain
    `kernels.reference_*` functions underneath;
  - TensorFlow's and Keras' defaults: `jit_compile="auto"` (off on CPU), oneDNN as
    TensorFlow decides unless the caller sets TF_ENABLE_ONEDNN_OPTS;
  - ReduceLROnPlateau, EarlyStopping and CSVLogger callbacks.

    python -m research.fit_baseline --config demo --workdir runs/fit_demo
"""
import argparse
import logging
import os
import sys

import tensorflow as tf
import keras

import kernels
from research import cli
from research import config as config_lib
from research import configs
from research.data import datasets, pipeline
from research.build import build_model

log = logging.getLogger("research")


class CeDiceLoss(keras.losses.Loss):
    """Class-weighted cross-entropy + dice (kernels.reference_ce_dice_loss) as a Keras loss."""

    def __init__(self, num_classes, ignore_label=255, smooth=1.0, name="ce_dice_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes, self.ignore_label, self.smooth = num_classes, ignore_label, smooth

    def call(self, y_true, y_pred):
        """y_true int [B, H, W] (ignore_label = no class), y_pred float logits [B, H, W, C]
        -> float32 scalar, the batch's loss."""
        # A scalar for the whole batch: Keras' "sum_over_batch_size" leaves it unchanged.
        return kernels.reference_ce_dice_loss(y_true, y_pred, self.num_classes,
                                              ignore_label=self.ignore_label, smooth=self.smooth)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "ignore_label": self.ignore_label, "smooth": self.smooth}


class ConfusionMatrixMetric(keras.metrics.Metric):
    """Accumulates an exact int64 confusion matrix; subclasses turn it into one number.

    The book's metrics average per-batch values (and smooth with +1), which biases
    them; these are exact over everything seen since the last reset.
    """

    def __init__(self, num_classes, ignore_label=255, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes, self.ignore_label = num_classes, ignore_label
        self.confusion = self.add_variable(shape=(num_classes, num_classes), initializer="zeros",
                                           dtype="int64", aggregation="sum", name="confusion")

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Adds a batch: y_true int [B, H, W] (ignore_label pixels not counted), y_pred float
        logits or scores [B, H, W, C] (their argmax is the prediction); sample_weight unused."""
        predictions = tf.argmax(y_pred, axis=-1, output_type=tf.int32)
        counts = kernels.reference_confusion_matrix(y_true, predictions, self.num_classes,
                                                    ignore_label=self.ignore_label)
        self.confusion.assign_add(tf.cast(counts, tf.int64))

    def _parts(self):
        confusion = tf.cast(self.confusion, tf.float64)
        true_positives = tf.linalg.diag_part(confusion)
        return confusion, true_positives, tf.reduce_sum(confusion, axis=1), tf.reduce_sum(confusion, axis=0)

    def reset_state(self):
        self.confusion.assign(tf.zeros_like(self.confusion))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "ignore_label": self.ignore_label}


def _mean_over_present(numerator, denominator):
    present = denominator > 0
    ratios = tf.math.divide_no_nan(numerator, denominator)
    return tf.cast(tf.reduce_sum(tf.where(present, ratios, 0.0))
                   / tf.maximum(tf.reduce_sum(tf.cast(present, tf.float64)), 1.0), tf.float32)


class PixelAccuracy(ConfusionMatrixMetric):
    """Correct valid pixels / valid pixels."""

    def __init__(self, num_classes, ignore_label=255, name="pixel_accuracy", **kwargs):
        super().__init__(num_classes, ignore_label, name=name, **kwargs)

    def result(self):
        confusion, true_positives, _, _ = self._parts()
        return tf.cast(tf.math.divide_no_nan(tf.reduce_sum(true_positives), tf.reduce_sum(confusion)), tf.float32)


class MeanAccuracy(ConfusionMatrixMetric):
    """Mean over classes present in the labels of per-class recall."""

    def __init__(self, num_classes, ignore_label=255, name="mean_accuracy", **kwargs):
        super().__init__(num_classes, ignore_label, name=name, **kwargs)

    def result(self):
        _, true_positives, rows, _ = self._parts()
        return _mean_over_present(true_positives, rows)


class MeanIoU(ConfusionMatrixMetric):
    """Mean over classes present in labels or predictions of TP / (TP + FP + FN)."""

    def __init__(self, num_classes, ignore_label=255, name="mean_iou", **kwargs):
        super().__init__(num_classes, ignore_label, name=name, **kwargs)

    def result(self):
        _, true_positives, rows, columns = self._parts()
        return _mean_over_present(true_positives, rows + columns - true_positives)


def build_compiled_model(config):
    """The config's model with dilated Conv2D and Keras' BatchNormalization, compiled with the
    book's loss, metrics and Adam."""
    model = build_model(config.replace(atrous="keras", batchnorm="keras"))
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss=CeDiceLoss(config.num_classes, config.ignore_label, config.dice_smooth),
        metrics=[MeanIoU(config.num_classes, config.ignore_label),
                 MeanAccuracy(config.num_classes, config.ignore_label),
                 PixelAccuracy(config.num_classes, config.ignore_label)])
    return model


def make_datasets(config):
    """(train, val, steps_per_epoch): the same pipeline as the custom loop, repeated."""
    data = datasets.dataset_of(config)
    num_train = pipeline.dataset_size(data, config.train_subset, split_seed=config.split_seed)
    steps = config.steps_per_epoch or num_train // config.batch_size
    train = pipeline.make_dataset(
        data, config.train_subset, config.batch_size, tuple(config.input_size),
        resize_to_before_crop=config.resize_to_before_crop, augmentation=config.augmentation,
        shuffle=True, seed=config.seed, epochs=None, drop_remainder=True, split_seed=config.split_seed)
    val = pipeline.make_dataset(data, "val", config.eval_batch_size, tuple(config.input_size),
                                epochs=1, split_seed=config.split_seed)
    if config.eval_steps:
        val = val.take(config.eval_steps)
    return train, val, steps


def fit(config, workdir):
    """Trains with `model.fit` and the book's callbacks; returns the Keras History."""
    os.makedirs(workdir, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    train, val, steps = make_datasets(config)
    model = build_compiled_model(config)
    mode = config_lib.monitor_mode(config)
    callbacks = [
        keras.callbacks.ReduceLROnPlateau(monitor=config.monitor, factor=config.plateau_factor,
                                          patience=config.plateau_patience, mode=mode,
                                          min_lr=config.min_learning_rate),
        keras.callbacks.EarlyStopping(monitor=config.monitor, patience=config.early_stop_patience, mode=mode),
        keras.callbacks.CSVLogger(os.path.join(workdir, "fit_log.csv")),
    ]
    # shuffle=False: the pipeline shuffles; Keras cannot shuffle a Dataset (it warns).
    return model.fit(train, steps_per_epoch=steps, validation_data=val, epochs=config.epochs,
                     callbacks=callbacks, verbose=2, shuffle=False)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m research.fit_baseline",
                                     description="Train with plain Keras compile/fit (the benchmark baseline).")
    parser.add_argument("--config", required=True, help="a named config or a .json file")
    parser.add_argument("--workdir", required=True, help="the run's folder (train_log.csv, checkpoints)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field (value parsed as JSON), repeatable")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    def work():
        fit(config_lib.apply_overrides(configs.load_config(args.config), args.overrides), args.workdir)

    return cli.run_main(work, bad_file_hint=cli.SKIP_BAD_SET)


if __name__ == "__main__":
    sys.exit(main())
