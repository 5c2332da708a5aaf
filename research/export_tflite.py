"""Exporting a trained run for devices: a TensorFlow Lite (LiteRT) flatbuffer, and running it.

    python -m research.export_tflite --workdir runs/demo_mobile [--quantize int8]
        [--input-size 257 257] [--out FILE] [--calibration-images 100] [--logits]

The file takes ONE uint8 RGB frame `image` [1, H, W, 3] (H, W fixed at export: the run's
input size or --input-size) and returns `mask`, uint8 [1, H, W] class indices (the argmax
is inside the model, so a device needs no post-processing), and with --logits also
`logits` [1, H, W, C] float32. The uint8 -> float cast and the model's own preprocessing
are inside the file too. Default output: WORKDIR/export/model_<quantize>_<H>x<W>.tflite,
written atomically.

Quantization (`--quantize`):
  none     float32 weights and activations
  float16  float16 weights, computed in float32 (half the file)
  dynamic  int8 weights, float activations (quarter of the file)
  int8     full-integer: int8 weights AND activations, with ranges calibrated on
           `--calibration-images` train images read through the project's pipeline
           (resized to the export size, no augmentation). Every op between the input
           cast and the outputs must run in int8; one that does not is an error naming it.

The model converted is the run's model rebuilt with Keras' dilated `Conv2D` in place of
`kernels.AtrousConv2D` (same weights, copied by layer name): TFLite has a native dilated
CONV_2D, while the training kernel's sum of shifted 1x1 convolutions would become dozens of
slices and pads.

Running a file (`TFLiteModel`, the LiteRT interpreter of the `ai-edge-litert` package with
its default XNNPACK delegate) on images of any size mirrors `research.export.predict_logits`:
the image is resized bilinearly to the file's input size (then rounded to uint8, as a
camera frame is), and the logits resized back to the image's size before the argmax. A file
without logits can only give its mask, which is resized back by nearest neighbour.
`research.predict --model FILE.tflite` and `research.evaluate --tflite FILE.tflite` use it.
"""
import argparse
import logging
import os
import re
import sys
import tempfile
import warnings

import numpy as np

from research import cli

log = logging.getLogger("research")

QUANTIZE_MODES = ("none", "float16", "dynamic", "int8")
# Ops allowed to see float tensors in an int8 file: the input's uint8 -> float cast and
# the (de)quantization at the ends (the float logits output).
_INT8_BOUNDARY_OPS = frozenset({"CAST", "QUANTIZE", "DEQUANTIZE", "DELEGATE"})


class TFLiteExportError(RuntimeError):
    """An op of the model does not convert to TFLite or does not quantize to int8.

    The message names the op (TFLite's or TensorFlow's name) and the Keras layer it comes
    from, when the converter's location information holds one.
    """


# ---------------------------------------------------------------------------------
# The model to convert.
# ---------------------------------------------------------------------------------
def device_model(model, config):
    """The run's model rebuilt for conversion: Keras' dilated Conv2D, same weights.

    Args:
      model: the trained Keras model (float32 [B,H,W,3] in [0,255] -> logits).
      config: its run's `Config`.
    Returns:
      A float32 Keras model computing the same logits (to float32 rounding).
    """
    from research import build

    rebuilt = build.build_model(config.replace(atrous="keras", batchnorm="keras"), pretrained=False)
    for layer in model.layers:
        if layer.weights:
            rebuilt.get_layer(layer.name).set_weights(layer.get_weights())
    return rebuilt


def full_size_model(backbone, num_classes=21):
    """The full-size DeepLab v3 of a backbone, random weights, as converted (Keras' Conv2D).

    ResNet-50 with ASPP, or MobileNetV2 (width 1.0) with the light head; output stride 16.
    For latency measurements (benchmarks/bench_tflite.py, scripts/tflite_report.py): a
    network's speed does not depend on its weights.
    """
    from research.models import deeplab_v3
    from research.models.mobilenet_v2 import MOBILENET_V2_BLOCKS

    if backbone == "mobilenet_v2":
        return deeplab_v3(num_classes, backbone=backbone, blocks_per_stage=MOBILENET_V2_BLOCKS,
                          width=32, head="light", atrous="keras")
    return deeplab_v3(num_classes, atrous="keras")


def representative_images(config, input_size, count):
    """`count` train images through the pipeline (no augmentation), uint8 [1, h, w, 3] each.

    The calibration set of int8 quantization: the same decoding and bilinear resize as
    evaluation, rounded to uint8 as the file's input is. Bad files are left out when the
    run's config (or --skip-bad) says skip_bad, as in its evaluation; otherwise the first one raises
    tf.errors.InvalidArgumentError (`pipeline.bad_file_message` reads its file and problem).
    """
    from research.data import datasets, pipeline

    data = datasets.dataset_of(config)
    dataset = pipeline.make_dataset(data, "train", 1, tuple(input_size),
                                    augmentation=False, shuffle=False, epochs=1,
                                    skip_bad=config.skip_bad, split_seed=config.split_seed)
    images = [np.clip(np.rint(images.numpy()), 0, 255).astype(np.uint8)
              for images, _ in dataset.take(count)]
    if not images:
        raise ValueError(f"{data.root}: no train images to calibrate int8 quantization with")
    return images


# ---------------------------------------------------------------------------------
# Conversion.
# ---------------------------------------------------------------------------------
def convert(model, input_size, quantize="none", logits=False, calibration=None):
    """Converts a Keras segmentation model to a TFLite flatbuffer (bytes).

    Args:
      model: float32 [B,h,w,3] in [0,255] -> float32 logits [B,h,w,C] (use `device_model`).
      input_size: (H, W) of the file's input.
      quantize: one of QUANTIZE_MODES.
      logits: also output the logits.
      calibration: for "int8", a list of uint8 [1, H, W, 3] images.
    Returns:
      bytes of a .tflite file: input "image" uint8 [1,H,W,3]; outputs "mask" uint8
      [1,H,W] (and "logits" float32 [1,H,W,C]).
    Raises:
      TFLiteExportError: an op does not convert, or (int8) does not quantize; names it.
      ValueError: unknown mode; int8 without calibration images.
    """
    import tensorflow as tf

    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}; got {quantize!r}")
    if quantize == "int8" and not calibration:
        raise ValueError("int8 quantization needs calibration images")
    height, width = (int(s) for s in input_size)

    @tf.function(input_signature=[tf.TensorSpec([1, height, width, 3], tf.uint8, name="image")], autograph=False)
    def serve(image):
        scores = model(tf.cast(image, tf.float32), training=False)
        # The argmax inside the file: a device gets class indices, not 21 planes.
        outputs = {"mask": tf.cast(tf.argmax(scores, axis=-1, output_type=tf.int32), tf.uint8)}
        if logits:
            outputs["logits"] = tf.cast(scores, tf.float32)
        return outputs

    # Through a SavedModel, as Keras' own LiteRT export does: the converter then freezes
    # Keras 3's variables (from a concrete function they stay resource variables).
    with tempfile.TemporaryDirectory() as saved_model:
        _write_archive(model, serve, saved_model)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":
            converter.representative_dataset = lambda: ({"image": image} for image in calibration)
        try:
            with warnings.catch_warnings():
                # TF's int8 calibrator runs the model with its own tf.lite.Interpreter, which
                # warns "deprecated, use the LiteRT interpreter": the project already does
                # (see _interpreter); the warning would only send a user looking for a problem.
                warnings.filterwarnings("ignore", message=r".*tf\.lite\.Interpreter is deprecated")
                flatbuffer = converter.convert()
        except Exception as error:  # ConverterError and friends: say which op and layer
            raise TFLiteExportError(_conversion_message(error, model, quantize)) from None
    if quantize == "int8":
        check_fully_quantized(flatbuffer, model)
    return flatbuffer


def _write_archive(model, serve, path):
    """A SavedModel at `path` of Keras' ExportArchive: `model` tracked, `serve` its
    endpoint, saved without gradient functions (`research.export.serving_save_options`)."""
    import keras

    from research.export import serving_save_options

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", serve)
    archive.write_out(path, verbose=False, options=serving_save_options())


def _layer_of(text, model):
    """The name of the model layer that an op's location or tensor name points into."""
    found = [layer.name for layer in model.layers
             if re.search(r"(^|[/;\"'(])" + re.escape(layer.name) + r"(_\d+)?/", text)]
    return max(found, key=len) if found else None


def _conversion_message(error, model, quantize):
    """"op X in layer Y: ..." for each op the converter reported."""
    problems = []
    for item in getattr(error, "errors", None) or []:
        op = getattr(getattr(item, "operator", None), "name", "") or ""
        location = str(getattr(item, "location", ""))
        text = getattr(item, "error_message", "") or ""
        op = op or (re.findall(r"'((?:tf|tfl)\.\w+)'", text) or ["?"])[0]
        layer = _layer_of(location + " " + text, model)
        problems.append(f"op {op} in layer {layer or '(not found in the location)'}: {text.strip()}")
    if not problems:  # no structured errors: the ops from the message text
        text = str(error)
        ops = sorted(set(re.findall(r"'((?:tf|tfl)\.\w+)'", text))) or ["?"]
        layer = _layer_of(text, model)
        first_line = text.strip().splitlines()[0][:500] if text.strip() else type(error).__name__
        problems.append(f"op {', '.join(ops)} in layer {layer or '(not found in the message)'}: "
                        f"{first_line}")
    return f"TFLite conversion ({quantize}) failed: " + "; ".join(problems)


def _ops(interpreter):
    """[(op name, [tensor details of inputs and outputs])] of an allocated interpreter."""
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    # _get_ops_details is the interpreter's only op listing (TF's own analyzer uses it).
    return [(op["op_name"], [tensors[i] for i in list(op["inputs"]) + list(op["outputs"]) if i in tensors],
             [tensors[i] for i in op["outputs"] if i in tensors])
            for op in interpreter._get_ops_details()]


def check_fully_quantized(flatbuffer, model=None):
    """Raises TFLiteExportError naming every op (and its layer) that computes in float.

    Ops between the input's cast and the outputs must take and give integer tensors;
    CAST, QUANTIZE and DEQUANTIZE (the ends) may see float32.
    """
    interpreter = _interpreter(flatbuffer, "<converted model>", num_threads=1, delegate=False)
    problems = []
    for name, tensors, outputs in _ops(interpreter):
        if name in _INT8_BOUNDARY_OPS:
            continue
        if any(t["dtype"] in (np.float32, np.float16) for t in tensors):
            where = outputs[0]["name"] if outputs else "?"
            layer = _layer_of(where, model) if model is not None else None
            problem = f"op {name} in layer {layer}" if layer else f"op {name} (tensor {where})"
            if problem not in problems:
                problems.append(problem)
    if problems:
        raise TFLiteExportError("int8 quantization left these ops in float (no int8 kernel, or "
                                "not quantizable): " + "; ".join(problems))


# ---------------------------------------------------------------------------------
# Running a file.
# ---------------------------------------------------------------------------------
def _interpreter(model, path, num_threads=None, delegate=True):
    """A LiteRT interpreter, allocated; ValueError naming `path` if it is not a model."""
    from ai_edge_litert import interpreter as litert

    kind = (litert.OpResolverType.AUTO if delegate
            else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    source = dict(model_content=model) if isinstance(model, (bytes, bytearray)) else dict(model_path=model)
    try:
        interpreter = litert.Interpreter(**source, num_threads=num_threads,
                                         experimental_op_resolver_type=kind)
        interpreter.allocate_tensors()
    except Exception as error:  # the runtime raises ValueError/RuntimeError with C++ text
        raise ValueError(f"{path}: not a readable TFLite model (corrupt or truncated?): "
                         f"{type(error).__name__}: {str(error).strip()[:300]}") from None
    return interpreter


def device_frame(image, input_size):
    """What a file is fed for one image: uint8 [h, w, 3] at the file's `input_size`.

    A bilinear resize (as `research.export.predict_logits` resizes for a Keras model),
    rounded to uint8 because the file's input is uint8, as a camera frame is. The rounding
    is the one difference from the Keras path: measured on a smoke-sized model trained for
    16 steps, 1.1% of a photograph's pixels changed class from it alone (the float32 file
    gave the Keras model's logits to 4e-5 on the same frame, the same mask everywhere).

    Args:
      image: uint8 or float [H, W, 3] RGB in [0, 255].
      input_size: (h, w).
    Returns: uint8 [h, w, 3].
    """
    import tensorflow as tf

    if tuple(image.shape[:2]) != tuple(input_size):
        image = tf.image.resize(tf.cast(image, tf.float32), input_size, method="bilinear").numpy()
    return np.clip(np.rint(np.asarray(image, np.float32)), 0, 255).astype(np.uint8)


class TFLiteModel:
    """A .tflite file written by `export_tflite`, run by the LiteRT interpreter.

    Args:
      path: the .tflite file.
      num_threads: interpreter threads (None: the runtime's default).

    Attributes:
      input_size: (H, W) of the file's input.
      has_logits: whether the file outputs logits.
      num_classes: C when it does, else None.

    Raises:
      ValueError: the file is missing, corrupt or truncated, or not a segmentation export
        (input uint8 [1,H,W,3], output "mask"), naming the file.

    Example:
    >>> model = TFLiteModel("runs/demo_mobile/export/model_int8_128x128.tflite", num_threads=2)
    >>> mask = model.run(frame)["mask"]  # frame uint8 [128, 128, 3] -> uint8 [128, 128]
    """

    def __init__(self, path, num_threads=None):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise ValueError(f"{self.path}: no such .tflite file")
        self.interpreter = _interpreter(self.path, self.path, num_threads)
        signatures = self.interpreter.get_signature_list()
        problem = None
        if len(signatures) != 1:
            problem = f"{len(signatures)} signatures, expected 1"
        else:
            key, spec = next(iter(signatures.items()))
            if spec["inputs"] != ["image"] or "mask" not in spec["outputs"]:
                problem = f"signature {spec}, expected input 'image' and output 'mask'"
        if problem is None:
            self.runner = self.interpreter.get_signature_runner(key)
            image = self.runner.get_input_details()["image"]
            if image["dtype"] != np.uint8 or len(image["shape"]) != 4 or image["shape"][0] != 1 \
                    or image["shape"][3] != 3:
                problem = f"input {image['dtype'].__name__} {list(image['shape'])}, expected uint8 [1,H,W,3]"
        if problem:
            raise ValueError(f"{self.path}: not a segmentation model of research.export_tflite ({problem})")
        self.input_size = (int(image["shape"][1]), int(image["shape"][2]))
        outputs = self.runner.get_output_details()
        self.has_logits = "logits" in outputs
        self.num_classes = int(outputs["logits"]["shape"][-1]) if self.has_logits else None

    def run(self, frame):
        """One frame at the input size: uint8 [H, W, 3] -> {"mask": uint8 [H, W], "logits"?}."""
        outputs = self.runner(image=np.asarray(frame, np.uint8)[None])
        return {name: value[0] for name, value in outputs.items()}

    def scores(self, images):
        """Per image at its own size: float32 logits [B, H, W, C] (files with logits) or
        uint8 masks [B, H, W] (files without), computed as `research.export.predict_logits`
        computes with a Keras model, from `device_frame`s. images: uint8 or float
        [B, H, W, 3] RGB in [0, 255]."""
        import tensorflow as tf

        results = []
        for image in np.asarray(images):
            size = image.shape[:2]
            out = self.run(device_frame(image, self.input_size))
            if self.has_logits:
                logits = out["logits"].astype(np.float32)
                if tuple(size) != self.input_size:
                    logits = tf.image.resize(logits, size, method="bilinear").numpy()
                results.append(logits)
            else:
                mask = out["mask"]
                if tuple(size) != self.input_size:
                    mask = tf.image.resize(mask[..., None], size, method="nearest").numpy()[..., 0]
                results.append(mask.astype(np.uint8))
        return np.stack(results)

    def masks(self, images):
        """uint8 [B, H, W] class indices for images [B, H, W, 3] of any size."""
        scores = self.scores(images)
        return np.argmax(scores, axis=-1).astype(np.uint8) if self.has_logits else scores


# ---------------------------------------------------------------------------------
# The whole export.
# ---------------------------------------------------------------------------------
def default_output(workdir, quantize, input_size):
    """WORKDIR/export/model_<quantize>_<H>x<W>.tflite."""
    return os.path.join(workdir, "export", f"model_{quantize}_{input_size[0]}x{input_size[1]}.tflite")


def export_tflite(workdir, quantize="none", input_size=None, out=None, calibration_images=100,
                  logits=False, source="auto", voc_root=None, data_root=None, skip_bad=False):
    """Converts a run's model (export or latest checkpoint) to a .tflite file.

    Args:
      workdir: the run's folder (config.json plus export/ or checkpoints/).
      quantize: one of QUANTIZE_MODES.
      input_size: (H, W) of the file; default the run's input size.
      out: the file to write (atomically); default `default_output`.
      calibration_images: train images that calibrate int8.
      logits: also output the logits.
      source: "auto", "export" or "checkpoint" (`research.export.load_model`).
      voc_root: a VOC run's calibration data; default the run config's.
      data_root: where the run's dataset (VOC or folder) is now; default the config's.
      skip_bad: leave bad calibration images out also when the run's config does not.
    Returns:
      the path written (str).
    """
    from research import export
    from research.fileio import atomic_write_bytes

    config = export.read_run_config(workdir, voc_root, data_root, skip_bad)
    loaded = export.load_model(workdir, config, source)
    size = tuple(int(s) for s in (input_size or loaded.input_size))
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"input size must be two positive integers; got {input_size!r}")
    calibration = None
    if quantize == "int8":
        calibration = representative_images(config, size, calibration_images)
    flatbuffer = convert(device_model(loaded.model, config), size, quantize, logits, calibration)
    path = os.fspath(out or default_output(workdir, quantize, size))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_bytes(path, flatbuffer)
    return path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m research.export_tflite",
        description="Export a trained run as a TensorFlow Lite file: uint8 RGB [1,H,W,3] in, "
                    "uint8 class indices [1,H,W] out (argmax inside), optionally the logits.")
    parser.add_argument("--workdir", required=True, help="the run's folder (config.json, export/ or checkpoints/)")
    parser.add_argument("--quantize", default="none", choices=QUANTIZE_MODES,
                        help="none (float32), float16 (weights), dynamic (int8 weights) or int8 "
                             "(full integer, calibrated); default none")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="the file's fixed input size; default the run's input size")
    parser.add_argument("--out", default=None,
                        help="output file; default WORKDIR/export/model_<quantize>_<H>x<W>.tflite")
    parser.add_argument("--calibration-images", type=int, default=100,
                        help="train images that calibrate int8 quantization (default 100)")
    parser.add_argument("--logits", action="store_true", help="also output the logits [1,H,W,C]")
    parser.add_argument("--source", default="auto", choices=("auto", "export", "checkpoint"),
                        help="the run's export/model.keras, its latest checkpoint, or auto")
    parser.add_argument("--data-root", default=None,
                        help="where the run's dataset (calibration images) is now: its VOC2012 folder or "
                             "folder dataset's root; default the run config's")
    parser.add_argument("--voc-root", default=None, help="a VOC run's calibration data (as --data-root)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave bad calibration images out; default: as the run's config says")
    args = parser.parse_args(argv)
    if args.calibration_images < 1:
        parser.error("--calibration-images must be positive")
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    def work():
        path = export_tflite(args.workdir, args.quantize, args.input_size, args.out,
                             args.calibration_images, args.logits, args.source, args.voc_root,
                             args.data_root, args.skip_bad)
        print(f"wrote {path} ({os.path.getsize(path):,} bytes, {args.quantize})")

    return cli.run_main(work, errors=(TFLiteExportError,), bad_file_hint=cli.SKIP_BAD_RUN)


if __name__ == "__main__":
    sys.exit(main())
