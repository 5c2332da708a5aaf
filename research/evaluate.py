"""Evaluating a trained run: metrics over a whole subset, pictures, and the hardest images.

    python -m research.evaluate --workdir runs/demo [--subset test] [--data-root PATH]
        [--batch-size N] [--full-resolution] [--mode whole|slide] [--window H W] [--stride H W]
        [--flip] [--scales 0.75,1,1.25] [--samples 8] [--hardest 8] [--seed 0]
        [--source auto|export|checkpoint] [--out DIR] [--tflite FILE.tflite]

`evaluate(workdir, ...)` does the work; the command line is a thin shell over it.

The model: `WORKDIR/export/model.keras` (the best model by the run's monitor) when it
exists, else the latest checkpoint in `WORKDIR/checkpoints` (`source="export"` or
`"checkpoint"` forces one). Which one, its step and the export facts go into
metrics.json. `--tflite FILE` scores a file of research/export_tflite.py instead (same
data, streams and confusion-matrix kernel; outputs in `WORKDIR/eval_tflite_<stem>`).
The config comes from `WORKDIR/config.json`, and with it the dataset
(`research.data.datasets.dataset_of`: VOC, or a folder dataset with its class names and
colours); `--data-root` says where the run's data is now (`--voc-root`, for VOC runs,
too).

Two ways to score (both accumulate one int64 confusion matrix over every image):
- default: at the pipeline's evaluation size (`make_dataset` without augmentation;
  images resized bilinearly and labels by nearest neighbour to `config.input_size`),
  batched, the final batch padded with all-ignore labels.
- `full_resolution=True`: each image at its ORIGINAL size against its ORIGINAL mask
  (what VOC papers report), one image at a time from the raw files; the model runs
  at the input size and its logits are resized back (`research.export.predict_logits`,
  the exported model's computation).

Two ways to run the model (`mode`; default the run config's `eval_mode`):
- "whole": as above, each image resized to the input size;
- "slide": overlapping `window`s (default the config's `eval_window`, else the input
  size) every `stride` pixels (default `eval_stride`, else 2/3 of the window) over the
  image at its own size, logits averaged per pixel (`research.sliding_window`); it
  implies full resolution.

Test-time augmentation (`tta_logits`): `flip` averages the logits of the image and of
its mirror image (mirrored back); `scales` averages runs at several multiples of the
input size, each on the grid of sizes where the model's strided features align with
training (`scaled_size`; with "slide", multiples of the image's own size, the model
always running at the window), each resized to the scoring size.
Logits, not probabilities, are averaged.

Outputs, in `WORKDIR/eval/` for the test subset and `WORKDIR/eval_<subset>/` for the
others (so evaluating val never overwrites the test results), or `--out`. The folder is
written beside its old version and replaces it whole, so its files always come from one
evaluation (a second run with other options replaces them; use --out to keep both):
  metrics.json    pixel_accuracy, mean_accuracy, mean_iou, frequency_weighted_iou,
                  per-class IoU, the confusion matrix, num_images, subset, the model
                  source and step, the options used
  per_class.csv   index, class, iou, accuracy, pixels (labelled pixels of the class)
  per_image.csv   id, loss, pixel_accuracy, mean_iou for every image, in subset order
  confusion.png   the row-normalised confusion matrix as a heat map
  samples.png     `samples` random images (seeded): image | truth | prediction | errors
  hardest.png/csv the `hardest` images with the highest loss (see `image_loss`); from a
                  .tflite file that gives masks (no loss), the lowest mean IoU
"""
import argparse
import csv
import dataclasses
import heapq
import io
import logging
import math
import os
import sys

import numpy as np
import tensorflow as tf

import kernels
from research import build
from research import cli
from research import config as config_lib
from research import export as export_lib
from research import sliding_window
from research import visualize, window_options
from research.data import datasets, pipeline, voc
from research.fileio import (atomic_directory, atomic_write_json, atomic_write_text,
                            refuse_file_in_place_of_folder)
from research.progress import ProgressBar

log = logging.getLogger("research")

METRIC_NAMES = ("pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou")


# ---------------------------------------------------------------------------------
# Model loading (a run's Keras model: research.export.load_model).
# ---------------------------------------------------------------------------------
def load_tflite(path, config, flip=False, scales=(1.0,)):
    """A `research.export.LoadedModel` whose model is a `research.export_tflite.TFLiteModel`
    of `path`.

    Raises ValueError naming the file when it is not a readable export, or when flip or
    scales are asked for (the file runs at one size).
    """
    from research.export_tflite import TFLiteModel

    if flip or tuple(scales) != (1.0,):
        raise ValueError("--flip and --scales are not available with --tflite (the file runs at one size)")
    model = TFLiteModel(path)
    if model.num_classes not in (None, config.num_classes):
        raise ValueError(f"{path}: {model.num_classes} classes, the run has {config.num_classes}")
    return export_lib.LoadedModel(model, model.input_size,
                                  {"source": "tflite", "path": os.fspath(path), "step": None,
                                   "logits": model.has_logits})


# ---------------------------------------------------------------------------------
# Test-time augmentation.
# ---------------------------------------------------------------------------------
def parse_scales(text):
    """"0.75,1,1.25" -> (0.75, 1.0, 1.25); raises ValueError for non-positive values."""
    try:
        scales = tuple(float(s) for s in str(text).split(",") if s.strip())
    except ValueError:
        raise ValueError(f"--scales must be comma-separated numbers, got {text!r}") from None
    if not scales or any(not s > 0 for s in scales):
        raise ValueError(f"--scales must be positive numbers, got {text!r}")
    return scales


def scaled_size(input_size, scale, stride=1):
    """The size a test-time `scale` runs the model at: per side, the size nearest
    `scale * side` that differs from `side` by a multiple of `stride`, at least 1 pixel.

    With `stride` the model's feature stride, every scale's features lie on the grid the
    model was trained on: a side of 16k runs at multiples of 16, DeepLab's 513 (16k + 1)
    at 257, 385, 641, ... as in DeepLab's own multi-scale evaluation. Off that grid the
    strided features are misaligned: measured on the smoke model (trained at 32 px, output
    stride 16), 24 px alone dropped test mIoU from 0.12 to 0.03 and 40 px to 0.06, while
    48 px kept 0.12. stride=1: plain rounding. Ties round up.

    >>> scaled_size((513, 384), 0.5, 16)  # -> (257, 192)
    """
    sizes = []
    for side in input_size:
        steps = math.floor((side * scale - side) / stride + 0.5)
        smallest = side % stride or stride
        sizes.append(max(smallest, side + steps * stride))
    return tuple(sizes)


def feature_stride(config):
    """How much the config's model downsamples: DeepLab's output stride, U-Net's 32."""
    return config.output_stride if config.model in config_lib.DEEPLAB_MODELS else 32


def check_scales(input_size, scales, stride):
    """The run sizes [(h, w), ...] of `scales` (`scaled_size` on the stride's grid), logging
    each scale whose size moved off `scale * input_size` to reach the grid."""
    sizes = [scaled_size(input_size, s, stride) for s in scales]
    for scale, size in zip(scales, sizes):
        exact = scaled_size(input_size, scale)
        if size != exact:
            log.info("scale %g runs the model at %dx%d, the size nearest %dx%d on the grid of its "
                     "training size %dx%d (a multiple of its stride %d away), where its features align",
                     scale, size[0], size[1], exact[0], exact[1], input_size[0], input_size[1], stride)
    return sizes


def tta_logits(model, images, input_size, flip=False, scales=(1.0,), feature_stride=1):
    """Logits at the images' own size, averaged over test-time augmentations.

    For each scale s the images are resized to s x `input_size`, run through the model,
    and the logits resized back to the images' size (`research.export.predict_logits`);
    with `flip` the mirror image is run too and its logits mirrored back. The result
    is the mean of those logits. With flip=False and scales=(1,) this IS
    `predict_logits(model, images, input_size)`, the exported model's computation.

    Args:
      model: float32 [B,h,w,3] in [0,255] -> logits [B,h,w,C].
      images: uint8 or float [B, H, W, 3] RGB in [0, 255].
      input_size: (h, w) the model was trained at.
      flip: also run the horizontal mirror images.
      scales: multiples of `input_size` to run at.
      feature_stride: the model's stride: each scale runs at `scaled_size` on its grid
        (1: at round(scale * input_size)).
    Returns:
      float32 [B, H, W, C].
    """
    images = tf.cast(tf.convert_to_tensor(images), tf.float32)
    total, count = 0.0, 0
    for scale in scales:
        size = scaled_size(input_size, scale, feature_stride)
        total += export_lib.predict_logits(model, images, size)
        count += 1
        if flip:
            mirrored = export_lib.predict_logits(model, images[:, :, ::-1], size)
            total += mirrored[:, :, ::-1]
            count += 1
    return total / count


def make_predictor(model, input_size, flip=False, scales=(1.0,), mode="whole", window=None, stride=None,
                   feature_stride=1):
    """`images float32 [B,H,W,3] -> logits float32 [B,H,W,C]`.

    mode "whole": a tf.function of `tta_logits` (scales on the `feature_stride` grid),
    traced once for every image size (the signature leaves B, H, W open). mode "slide":
    `sliding_window.make_slide_predictor` with `window` (default `input_size`) and
    `stride` (default 2/3 of the window).
    """
    if mode == "slide":
        return sliding_window.make_slide_predictor(model, window or input_size, stride, flip, scales)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)], autograph=False)
    def predict(images):
        return tta_logits(model, images, input_size, flip, scales, feature_stride)
    return predict


# ---------------------------------------------------------------------------------
# Per-image scores.
# ---------------------------------------------------------------------------------
def image_loss(label, logits, config):
    """The training loss of ONE image: `kernels.reference_ce_dice_loss` on it alone.

    This is exercise 6 done right: the book ranks images by the sum of products of the
    predicted and true masks, which grows with the object's size and with confidence
    in the RIGHT class, so the "hardest" images it finds are the easiest large ones.
    The real loss is high where the model is wrong.

    Args:
      label: integer [H, W] (255 = ignore).
      logits: float32 [H, W, C].
      config: the run's `Config` (loss weights, class weighting, dice smoothing).
    Returns:
      Python float; NaN when the image has no scored pixel.
    """
    label = np.asarray(label).astype(np.int32)
    valid = (label != config.ignore_label) & (label < config.num_classes)
    if not valid.any():
        return float("nan")
    _, kwargs = build.loss_function(config)
    loss = kernels.reference_ce_dice_loss(tf.constant(label[None]),
                                          tf.convert_to_tensor(logits)[None], **kwargs)
    return float(loss)


def confusion_of(label, prediction, config):
    """int64 [C, C] confusion matrix of one image (`kernels.confusion_matrix`)."""
    matrix = kernels.confusion_matrix(tf.constant(np.asarray(label).astype(np.int32)),
                                      tf.constant(np.asarray(prediction).astype(np.int32)),
                                      config.num_classes, ignore_label=config.ignore_label)
    return np.asarray(matrix).astype(np.int64)


@dataclasses.dataclass
class ImageResult:
    """One scored image: its id, scores, and (only when kept for a picture) pixels."""
    position: int
    image_id: str
    loss: float
    pixel_accuracy: float
    mean_iou: float
    image: np.ndarray = None       # uint8 [H, W, 3]
    label: np.ndarray = None       # uint8 [H, W]
    prediction: np.ndarray = None  # uint8 [H, W]

    def caption(self):
        """The image's id and scores, as the sample pictures label it."""
        loss = "" if np.isnan(self.loss) else f"   loss {self.loss:.3f}"  # masks give no loss
        return (f"{self.image_id}{loss}   pixel acc {self.pixel_accuracy:.3f}"
                f"   mean IoU {self.mean_iou:.3f}")


def hardness(result):
    """How hard an image was, as a sort key (larger: harder): its loss; without one (a
    .tflite file that gives masks, not logits, scores no loss) its mean IoU, lower being
    harder; an image without a scored pixel ranks last. Ties keep the earlier image."""
    if not np.isnan(result.loss):  # +inf (a diverged model) is the hardest, not unscored
        return (1, result.loss, -result.position)
    if np.isfinite(result.mean_iou):
        return (0, 1.0 - result.mean_iou, -result.position)
    return (-1, 0.0, -result.position)


class Keeper:
    """Keeps the pixels of the images the pictures need and nothing else, so that
    memory stays small on a subset of any size: the seeded random sample (positions
    chosen up front) and the `hardest` images seen so far (a min-heap on `hardness`)."""

    def __init__(self, num_images, samples, hardest, seed):
        rng = np.random.default_rng(seed)
        self.sample_positions = set(rng.choice(num_images, size=min(samples, num_images),
                                               replace=False).tolist())
        self.samples = {}
        self.hardest_count = hardest
        self._heap = []

    def offer(self, result, image, label, prediction):
        """Considers one scored image; attaches its pixels to `result` if it is kept."""
        keep = result.position in self.sample_positions
        if self.hardest_count > 0:
            key = hardness(result)
            entry = (key, result.position, result)
            if len(self._heap) < self.hardest_count:
                heapq.heappush(self._heap, entry)
                keep = True
            elif key > self._heap[0][0]:
                evicted = heapq.heapreplace(self._heap, entry)[2]
                if evicted.position not in self.sample_positions:
                    evicted.image = evicted.label = evicted.prediction = None
                keep = True
        if keep:
            result.image, result.label, result.prediction = image, label, prediction
        if result.position in self.sample_positions:
            self.samples[result.position] = result

    def hardest(self):
        """The kept hardest results, hardest first (`hardness`)."""
        return [entry[2] for entry in sorted(self._heap, key=lambda e: e[0], reverse=True)]

    def sample(self):
        """The sampled results, in subset order."""
        return [self.samples[p] for p in sorted(self.samples)]


# ---------------------------------------------------------------------------------
# Image streams: (position, image uint8 [H,W,3], label uint8 [H,W], logits [H,W,C]).
# `position` counts the images of the subset; `names()`, called once the stream is
# exhausted, returns the list of ids that positions index.
# ---------------------------------------------------------------------------------
def _eval_size_stream(config, data, subset, ids, predict, batch_size):
    """Batches of the pipeline at the evaluation size; padding elements are dropped.

    Returns (generator, names). With `skip_bad`, left-out samples shift the positions,
    so ids are resolved only at the end, once every skipped file is known.
    """
    skipped = pipeline.SkippedSamples()
    dataset = pipeline.make_dataset(
        data, subset, batch_size, tuple(config.input_size), augmentation=False,
        shuffle=False, epochs=1, pad_final_batch=True, skip_bad=config.skip_bad,
        split_seed=config.split_seed, skipped=skipped)

    def generate():
        position = 0
        for images, labels in dataset:
            logits = np.asarray(predict(images))  # host sync per batch: fine for evaluation
            pictures = np.clip(np.rint(images.numpy()), 0, 255).astype(np.uint8)
            labels = labels.numpy().astype(np.uint8)
            for i in range(len(pictures)):
                # Padding comes after every real sample, so by then `skipped` is complete.
                if position < len(ids) - skipped.count:
                    yield position, pictures[i], labels[i], logits[i]
                position += 1

    def names():
        bad = set(skipped.problems)
        return [i for i in ids if data.image_path(i) not in bad and data.mask_path(i, subset) not in bad]

    return generate(), names


def _full_resolution_stream(config, data, subset, ids, predict):
    """One image at a time at its original size, read and checked by the dataset's reader."""
    def generate():
        for position, image_id in enumerate(ids):
            try:
                image, mask = data.read_sample(data.image_path(image_id), data.mask_path(image_id, subset))
            except voc.BadFileError as e:
                if not config.skip_bad:
                    raise
                log.warning("skipped: %s", e)
                continue
            yield position, image, mask, np.asarray(predict(tf.constant(image[None], tf.float32)))[0]

    return generate(), lambda: ids


# ---------------------------------------------------------------------------------
# Outputs.
# ---------------------------------------------------------------------------------
def output_dir(workdir, subset):
    """`WORKDIR/eval` for the test subset, `WORKDIR/eval_<subset>` for the others."""
    return os.path.join(workdir, "eval" if subset == "test" else f"eval_{subset}")


def _csv_text(header, rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _fmt(value):
    return "" if value is None or value != value else f"{value:.6f}"


def per_class_rows(confusion, metrics, class_names):
    """Rows (index, class, iou, accuracy, pixels) of per_class.csv; pixels = labelled."""
    pixels = np.asarray(confusion).sum(axis=1)
    return [(i, name, _fmt(metrics["per_class_iou"][i]), _fmt(metrics["per_class_accuracy"][i]),
             int(pixels[i])) for i, name in enumerate(class_names)]


def _show(value):
    return f"{value:.4f}" if value == value else "-"  # NaN: the class is absent


def format_table(metrics, confusion, class_names):
    """A readable text table of the per-class IoU/accuracy/pixels and the means."""
    pixels = np.asarray(confusion).sum(axis=1)
    width = max(len(n) for n in class_names)
    lines = [f"{'class':<{width}}  {'IoU':>7}  {'accuracy':>8}  {'pixels':>12}"]
    for i, name in enumerate(class_names):
        iou, acc = metrics["per_class_iou"][i], metrics["per_class_accuracy"][i]
        lines.append(f"{name:<{width}}  {_show(iou):>7}  {_show(acc):>8}  {int(pixels[i]):>12,}")
    lines.append("-" * len(lines[0]))
    for name in METRIC_NAMES:
        lines.append(f"{name:<24} {metrics[name]:.4f}")
    return "\n".join(lines)


def _write_grid(path, results, config, data, captions):
    picture = visualize.sample_grid(
        [r.image for r in results], [r.label for r in results], [r.prediction for r in results],
        captions=captions, ignore_label=config.ignore_label, class_names=data.class_names,
        palette=data.palette)
    visualize.write_png(path, picture)


def write_outputs(folder, report, confusion, per_image, keeper, config, data):
    """Writes metrics.json, the CSVs and the pictures into `folder` (module doc), with
    the class names and colours of `data` (`research.data.datasets`)."""
    metrics = kernels.segmentation_metrics(confusion)
    class_names = data.class_names
    atomic_write_json(os.path.join(folder, "metrics.json"), report)
    atomic_write_text(os.path.join(folder, "per_class.csv"), _csv_text(
        ("index", "class", "iou", "accuracy", "pixels"), per_class_rows(confusion, metrics, class_names)))
    atomic_write_text(os.path.join(folder, "per_image.csv"), _csv_text(
        ("id", "loss", "pixel_accuracy", "mean_iou"),
        [(r.image_id, _fmt(r.loss), _fmt(r.pixel_accuracy), _fmt(r.mean_iou)) for r in per_image]))
    visualize.write_png(os.path.join(folder, "confusion.png"),
                        visualize.confusion_heatmap(confusion, class_names))
    chosen = keeper.sample()
    if chosen:
        _write_grid(os.path.join(folder, "samples.png"), chosen, config, data, [r.caption() for r in chosen])
    worst = keeper.hardest()
    if worst:
        atomic_write_text(os.path.join(folder, "hardest.csv"), _csv_text(
            ("rank", "id", "loss", "pixel_accuracy", "mean_iou"),
            [(rank, r.image_id, _fmt(r.loss), _fmt(r.pixel_accuracy), _fmt(r.mean_iou))
             for rank, r in enumerate(worst, start=1)]))
        _write_grid(os.path.join(folder, "hardest.png"), worst, config, data,
                    [f"#{rank}  {r.caption()}" for rank, r in enumerate(worst, start=1)])


# ---------------------------------------------------------------------------------
# The whole evaluation.
# ---------------------------------------------------------------------------------
def score_subset(stream, names, num_images, config, keeper, desc):
    """Runs the stream: (int64 [C, C] confusion, [ImageResult] in subset order).

    Every image's confusion matrix (`kernels.confusion_matrix`) is summed in int64;
    `keeper` is offered every image for the pictures.
    """
    confusion = np.zeros((config.num_classes, config.num_classes), np.int64)
    per_image = []
    bar = ProgressBar(num_images, 1, desc=desc, unit="img")
    for position, image, label, logits in stream:
        if logits.ndim == 2:  # a .tflite file without logits gives its mask: no loss
            prediction, loss = logits.astype(np.uint8), float("nan")
        else:
            prediction = np.argmax(logits, axis=-1).astype(np.uint8)
            loss = image_loss(label, logits, config)
        matrix = confusion_of(label, prediction, config)
        confusion += matrix
        scores = kernels.segmentation_metrics(matrix)
        result = ImageResult(position, None, loss, scores["pixel_accuracy"], scores["mean_iou"])
        per_image.append(result)
        keeper.offer(result, image, label, prediction)
        bar.update(1, mIoU=kernels.segmentation_metrics(confusion)["mean_iou"])
    bar.close()
    scored_ids = names()
    for result in per_image:
        result.image_id = scored_ids[result.position]
    return confusion, per_image


@dataclasses.dataclass
class Inference:
    """How the model runs on each image: `mode` "whole" or "slide" (`window`, `stride`:
    (h, w) or None for the defaults), test-time augmentation (`flip`, `scales`), and
    whether images are scored at their own size (`full_resolution`; "slide" implies it)."""
    mode: str = "whole"
    window: tuple = None
    stride: tuple = None
    flip: bool = False
    scales: tuple = (1.0,)
    full_resolution: bool = False

    def __post_init__(self):
        if self.mode not in ("whole", "slide"):
            raise ValueError(f'mode must be "whole" or "slide"; got {self.mode!r}')
        self.scales = tuple(float(s) for s in self.scales)
        self.full_resolution = bool(self.full_resolution) or self.mode == "slide"
        for name in ("window", "stride"):
            if getattr(self, name) is not None:
                setattr(self, name, tuple(int(v) for v in getattr(self, name)))

    def resolved(self, input_size):
        """A copy with the window (`input_size` by default) and stride filled in."""
        if self.mode != "slide":
            return self
        window = self.window or tuple(input_size)
        return dataclasses.replace(self, window=window,
                                   stride=self.stride or window_options.default_stride(window))


def _output_folder(workdir, subset, out_dir, tflite):
    """The folder evaluate writes (module doc); refuses one that holds something else."""
    if tflite and out_dir is None:
        stem = os.path.splitext(os.path.basename(os.fspath(tflite)))[0]
        out_dir = os.path.join(workdir, f"eval_tflite_{stem}" if subset == "test"
                               else f"eval_tflite_{subset}_{stem}")
    out = os.fspath(out_dir or output_dir(workdir, subset))
    refuse_file_in_place_of_folder(out)   # before scoring, not when writing
    if os.path.isdir(out) and os.listdir(out) and not os.path.isfile(os.path.join(out, "metrics.json")):
        # The folder is replaced whole: never one that holds something else.
        raise ValueError(f"{out} exists and is not an evaluation folder (no metrics.json); "
                         "refusing to replace it")
    return out


def _inference_mode(config, mode, window, stride, tflite):
    """(mode, window, stride) of an evaluation: what was asked, else the run config's.

    The config's window and stride are a pair: a --window given alone takes its own
    default stride, not the config's. A .tflite file runs at one size, so it is scored
    whole unless --mode slide is asked for (then refused, saying why).
    """
    if mode is None and tflite:
        return "whole", None, None
    if window is not None:
        return mode or config.eval_mode, window, stride
    return mode or config.eval_mode, config.eval_window, stride or config.eval_stride


def _load_for_evaluation(workdir, config, source, tflite, inference):
    """(LoadedModel, config), rebuilt at eval_output_stride when the config says so."""
    if tflite:
        if inference.mode == "slide":
            raise ValueError("--mode slide is not available with --tflite (the file runs at one size)")
        loaded = load_tflite(tflite, config, inference.flip, inference.scales)
    else:
        loaded = export_lib.load_model(workdir, config, source)
    log.info("model: %s %s (step %s)", loaded.source["source"], loaded.source["path"],
             loaded.source.get("step"))
    if (not tflite and config.eval_output_stride not in (None, config.output_stride)
            and config.model in config_lib.DEEPLAB_MODELS):  # a .tflite file's output stride is fixed
        # Trained at one output stride, evaluated at another: same weights, rebuilt model.
        loaded.model = build.build_model_at_output_stride(loaded.model, config, config.eval_output_stride)
        loaded.source["output_stride"] = config.eval_output_stride
        config = config.replace(output_stride=config.eval_output_stride)
        log.info("evaluating at output stride %d", config.output_stride)
    return loaded, config


def _metrics_report(confusion, per_image, subset, loaded, config, data, inference, run_sizes, batch_size):
    """The contents of metrics.json."""
    metrics = kernels.segmentation_metrics(confusion)
    losses = np.array([r.loss for r in per_image], dtype=np.float64)
    return {
        **{name: float(metrics[name]) for name in METRIC_NAMES},
        # metrics.json is written with sorted keys: the class order is this list's.
        "class_names": list(data.class_names),
        "per_class_iou": dict(zip(data.class_names, map(float, metrics["per_class_iou"]))),
        "per_class_accuracy": dict(zip(data.class_names, map(float, metrics["per_class_accuracy"]))),
        "mean_image_loss": float(np.nanmean(losses)) if np.isfinite(losses).any() else None,
        "num_images": len(per_image),
        "subset": subset,
        "model": loaded.source,
        "options": {"full_resolution": inference.full_resolution, "flip": inference.flip,
                    "scales": list(inference.scales), "mode": inference.mode,
                    "window": list(inference.window) if inference.window else None,
                    "stride": list(inference.stride) if inference.stride else None,
                    "input_size": list(loaded.input_size),
                    "run_sizes": [list(size) for size in run_sizes],
                    "batch_size": 1 if inference.full_resolution else batch_size,
                    "dataset": config.dataset, "data_root": data.root,
                    "voc_root": config.voc_root, "split_seed": config.split_seed},
        "confusion_matrix": confusion.tolist(),
    }


def evaluate(workdir, subset="test", voc_root=None, batch_size=None, full_resolution=False,
             flip=False, scales=(1.0,), samples=8, hardest=8, seed=0, source="auto", out_dir=None,
             tflite=None, mode=None, window=None, stride=None, data_root=None, skip_bad=False):
    """Evaluates a run's model on a whole subset and writes the outputs (module doc).

    Args:
      workdir: the run's folder (config.json plus export/ or checkpoints/).
      subset: a subset of the run's dataset: "test", "val", "train", "trainval" (VOC also
        "train_aug"; `research.data.voc.read_split`, `research.data.folder`).
      voc_root: a VOC run's data folder; default: the run config's `voc_root`.
      batch_size: images per batch at the evaluation size; default `eval_batch_size`.
      full_resolution: score at each image's original size (module doc).
      flip, scales: test-time augmentation (`tta_logits`, `sliding_window.slide_tta_logits`).
      samples: images in samples.png (0: no picture).
      hardest: images in hardest.png / hardest.csv (0: none).
      seed: chooses the sampled images.
      source: "auto", "export" or "checkpoint" (`research.export.load_model`).
      out_dir: where the outputs go; default `output_dir(workdir, subset)`. The folder
        is replaced as a whole (`research.fileio.atomic_directory`), so its files always
        belong to one evaluation.
      tflite: a .tflite file of `research.export_tflite` to score instead of the run's
        Keras model (same data, streams and confusion matrix; its logits, or with a file
        without logits its mask, resized to the scoring size as `predict_logits` does;
        no flip, scales or slide). The default output folder is then
        `eval_tflite_<file stem>` (`eval_tflite_<subset>_<stem>` for other subsets than test).
      mode, window, stride: "whole" or "slide" and the slide's (h, w) window and stride
        (module doc); None: the run config's eval_mode, eval_window, eval_stride.
      data_root: where the run's dataset is now (VOC or folder); default the config's.
      skip_bad: leave bad samples out (logged, not scored) also when the run's config
        does not; default the config's skip_bad.
    Returns:
      dict: the contents of metrics.json, plus "output_dir".
    """
    out = _output_folder(workdir, subset, out_dir, tflite)
    config = export_lib.read_run_config(workdir, voc_root, data_root, skip_bad)
    data = datasets.dataset_of(config)
    data.check_root()       # before the model loads: a wrong folder fails fast
    inference = Inference(*_inference_mode(config, mode, window, stride, tflite), bool(flip), scales,
                          full_resolution)
    batch_size = int(batch_size or config.eval_batch_size)
    loaded, config = _load_for_evaluation(workdir, config, source, tflite, inference)
    inference = inference.resolved(loaded.input_size)
    ids = data.split(subset, split_seed=config.split_seed)
    if not ids:
        raise ValueError(f"{data.root}: subset {subset!r} is empty")
    grid = feature_stride(config)   # the scales' sizes: here, in run_sizes, and when run
    if inference.mode == "slide":
        run_sizes = [inference.window]
    else:
        run_sizes = check_scales(loaded.input_size, inference.scales, grid)
    if tflite:
        predict = loaded.model.scores
    else:
        predict = make_predictor(loaded.model, loaded.input_size, inference.flip, inference.scales,
                                 inference.mode, inference.window, inference.stride, grid)
    if inference.full_resolution:
        stream, names = _full_resolution_stream(config, data, subset, ids, predict)
    else:
        stream, names = _eval_size_stream(config, data, subset, ids, predict, batch_size)
    keeper = Keeper(len(ids), samples, hardest, seed)
    desc = f"evaluate {subset}" + (f" ({inference.mode}, full resolution)" if inference.full_resolution else "")
    confusion, per_image = score_subset(stream, names, len(ids), config, keeper, desc)
    if not per_image:
        raise ValueError(f"{data.root}: no image of subset {subset!r} could be scored")
    report = _metrics_report(confusion, per_image, subset, loaded, config, data, inference, run_sizes,
                             batch_size)
    with atomic_directory(out) as tmp:
        write_outputs(tmp, report, confusion, per_image, keeper, config, data)
    print(f"{subset}: {len(per_image)} images, model {loaded.source['source']} "
          f"(step {loaded.source.get('step')}), full_resolution={inference.full_resolution}, "
          f"mode={inference.mode}, flip={inference.flip}, scales={list(inference.scales)}")
    print(format_table(kernels.segmentation_metrics(confusion), confusion, data.class_names))
    print(f"written to {out}")
    return {**report, "output_dir": out}


# ---------------------------------------------------------------------------------
# Command line.
# ---------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m research.evaluate",
        description="Evaluate a trained run on a whole subset: metrics.json, per_class.csv, "
                    "per_image.csv, confusion.png, samples.png, hardest.png/csv in "
                    "WORKDIR/eval (test) or WORKDIR/eval_<subset>.")
    parser.add_argument("--workdir", required=True, help="the run's folder (config.json, export/ or checkpoints/)")
    parser.add_argument("--subset", default="test", choices=voc.SUBSETS, help="default: test")
    parser.add_argument("--data-root", default=None,
                        help="where the run's dataset is now (its VOC2012 folder, or its folder dataset's "
                             "root); default: the run config's")
    parser.add_argument("--voc-root", default=None, help="the VOC2012 folder of a VOC run (as --data-root)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the config's eval_batch_size")
    parser.add_argument("--full-resolution", action="store_true",
                        help="score each image at its original size against its original mask")
    window_options.add_window_arguments(parser, "the run config's eval_mode (whole unless set)")
    parser.add_argument("--flip", action="store_true", help="test-time augmentation: average with the mirror image")
    parser.add_argument("--scales", default="1", type=parse_scales,
                        help="test-time augmentation: comma-separated multiples of the input size "
                             "whose logits are averaged, e.g. 0.75,1,1.25 (default 1); each runs at the "
                             "nearest size on the grid of the input size plus multiples of the output stride")
    parser.add_argument("--samples", type=int, default=8, help="random images in samples.png (0: none)")
    parser.add_argument("--hardest", type=int, default=8,
                        help="hardest images in hardest.png/csv (0: none): highest loss, or lowest "
                             "mean IoU from a .tflite file that gives masks")
    parser.add_argument("--seed", type=int, default=0, help="chooses the sampled images")
    parser.add_argument("--out", default=None,
                        help="output folder (default WORKDIR/eval for test, WORKDIR/eval_<subset> otherwise); "
                             "replaced as a whole")
    parser.add_argument("--tflite", default=None,
                        help="score this .tflite file (research.export_tflite) instead of the run's "
                             "Keras model; outputs in WORKDIR/eval_tflite_<file stem>")
    parser.add_argument("--source", default="auto", choices=("auto", "export", "checkpoint"),
                        help="which model: export/model.keras, the latest checkpoint, or "
                             "auto (export if present; default)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave bad samples out (logged, not scored); default: as the run's config says")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    def work():
        evaluate(args.workdir, subset=args.subset, voc_root=args.voc_root, batch_size=args.batch_size,
                 full_resolution=args.full_resolution, flip=args.flip, scales=args.scales,
                 samples=args.samples, hardest=args.hardest, seed=args.seed, source=args.source,
                 out_dir=args.out, tflite=args.tflite, mode=args.mode, window=args.window,
                 stride=args.stride, data_root=args.data_root, skip_bad=args.skip_bad)

    return cli.run_main(work, bad_file_hint=cli.SKIP_BAD_RUN)


if __name__ == "__main__":
    sys.exit(main())
