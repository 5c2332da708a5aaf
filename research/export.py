"""Exporting a trained model so it can be used outside this codebase.

`export_model` writes, atomically, into `export_dir`:
  model.keras     the Keras model (needs this project's custom layers to load)
  saved_model/    a TensorFlow SavedModel whose `serve` signature takes uint8 RGB images
                  [B, H, W, 3] of ANY size and returns {"masks": uint8 [B, H, W]} class
                  indices (and "logits"), with resizing and preprocessing inside, so
                  plain `tf.saved_model.load(path).serve(images)` works with no project
                  import
  export.json     the config, the input size it was trained at, the class names and
                  colours of its dataset, and why it was exported

`predict_masks` is the same computation in-process (research/predict.py uses it), so
exported and in-process predictions agree.

Reading back: `load_export` (an export folder), and for a whole run `read_run_config`
(its config.json), `saved_precision` (the dtype policy it trained in) and `load_model`
(its export, else its latest checkpoint), which research.evaluate and
research.export_tflite both use.
"""
import dataclasses
import glob
import json
import os

import numpy as np
import tensorflow as tf
import keras

from research import build
from research import config as config_lib
from research.data import datasets, voc
from research.faults import kill_point
from research.fileio import atomic_directory, atomic_path, atomic_write_json


def predict_logits(model, images, input_size):
    """Logits at the images' own size: resize to `input_size`, run, resize back.

    Args:
      model: float32 [B,h,w,3] in [0,255] -> float32 logits [B,h,w,C].
      images: uint8 or float [B, H, W, 3] RGB, values in [0, 255].
      input_size: (h, w) the model was trained at.
    Returns:
      float32 [B, H, W, C] logits (bilinear resize of the model's logits).
    """
    images = tf.convert_to_tensor(images)
    size = tf.shape(images)[1:3]
    resized = tf.image.resize(tf.cast(images, tf.float32), input_size, method="bilinear")
    logits = tf.cast(model(resized, training=False), tf.float32)
    return tf.image.resize(logits, size, method="bilinear")


def predict_masks(model, images, input_size):
    """uint8 class-index masks [B, H, W] for uint8 images [B, H, W, 3] of any size."""
    return tf.cast(tf.argmax(predict_logits(model, images, input_size), axis=-1), tf.uint8)


# What `export_model` writes into an export folder, each atomically.
EXPORT_NAMES = ("model.keras", "saved_model", "export.json")


def export_model(model, export_dir, config, info=None):
    """Writes model.keras, saved_model/ and export.json into `export_dir` atomically.

    Args:
      model: the trained Keras model.
      export_dir: folder to (re)write; a previous export stays whole until replaced.
      config: the run's `Config` (input size, classes); saved in export.json.
      info: dict of extra facts (epoch, step, monitored value).
    """
    input_size = tuple(int(s) for s in config.input_size)
    os.makedirs(export_dir, exist_ok=True)
    with atomic_path(os.path.join(export_dir, "model.keras")) as tmp:
        model.save(tmp)
    kill_point("export")

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")], autograph=False)
    def serve(images):
        logits = predict_logits(model, images, input_size)
        return {"masks": tf.cast(tf.argmax(logits, axis=-1), tf.uint8), "logits": logits}

    with atomic_directory(os.path.join(export_dir, "saved_model")) as tmp:
        write_serving_saved_model(model, serve, tmp)
    data = datasets.dataset_of(config)
    atomic_write_json(os.path.join(export_dir, "export.json"), {
        "input_size": list(input_size), "num_classes": config.num_classes,
        "ignore_label": config.ignore_label, "class_names": list(data.class_names),
        "palette": data.palette[:len(data.class_names)].tolist(),
        "config": config.to_dict(), "info": info or {},
        "serving": "tf.saved_model.load(saved_model).serve(uint8 [B,H,W,3]) -> "
                   "{'masks': uint8 [B,H,W], 'logits': float32 [B,H,W,C]}",
    })


def write_serving_saved_model(model, serve, path):
    """Writes a SavedModel at `path`: `model`'s variables and `serve` (a tf.function with
    an input_signature that calls `model`) as its "serve" and "serving_default" signatures.

    A plain tf.Module, not Keras' ExportArchive: the archive also traces and saves every
    layer's own functions, which doubled the file and the time (the smoke model on
    vm-AMD-EPYC-2cpu: 19 MB in 5.5 s against 9.8 MB in 2.6 s), and training exports at
    every improving epoch. (research.export_tflite keeps the archive: its int8 calibration
    cannot read this module's variables.) Saved with `serving_save_options`.
    """
    serving = tf.Module()
    serving.model_variables = list(model.variables)   # tracked, so saved beside the graph
    serving.serve = serve
    signature = serve.get_concrete_function()
    tf.saved_model.save(serving, path, signatures={"serve": signature, "serving_default": signature},
                        options=serving_save_options())


def serving_save_options():
    """tf.saved_model.SaveOptions of every SavedModel the project writes for serving or
    conversion (this module's export, research.export_tflite's archive): without the
    gradient functions of the custom-gradient ops inside (the atrous convolutions, the
    fused BatchNorm). Serving and the TFLite converter never differentiate, and tracing
    them took a fifth of an export (the smoke model's on vm-AMD-EPYC-2cpu: 2.9-3.7 s
    against 3.8-4.4 s) and a quarter of a conversion (the smoke MobileNetV2's: 5.7 s
    against 7.8 s, the flatbuffer byte-identical)."""
    return tf.saved_model.SaveOptions(experimental_custom_gradients=False)


# ---------------------------------------------------------------------------------
# Reading an export (the other half of export_model).
# ---------------------------------------------------------------------------------
def find_export(model_dir):
    """The export folder for `--model`: the folder itself or its `export/` subfolder."""
    for folder in (model_dir, os.path.join(model_dir, "export")):
        if os.path.isfile(os.path.join(folder, "export.json")) and \
                os.path.isfile(os.path.join(folder, "model.keras")):
            return folder
    raise FileNotFoundError(f"{model_dir}: no model.keras + export.json here or in its export/ "
                            "(pass an export folder or a run's workdir)")


def classes_of(facts):
    """(class names, palette uint8 [256, 3]) of an export.json dict: what it records, or
    for an export written before it recorded them, VOC's names (21 classes, else
    "class i") and colours."""
    palette = voc.VOC_PALETTE.copy()
    colours = facts.get("palette")
    if colours:
        palette[:len(colours)] = np.asarray(colours, dtype=np.uint8).reshape(-1, 3)
    names = facts.get("class_names")
    if not names:
        count = int(facts.get("num_classes") or voc.NUM_CLASSES)
        names = voc.CLASS_NAMES if count == voc.NUM_CLASSES else [f"class {i}" for i in range(count)]
    return tuple(names), palette


def read_facts(folder):
    """An export folder's export.json as a dict, "input_size" as an (h, w) tuple.

    Raises ValueError naming the file when it cannot be read (missing, truncated, not
    JSON, no input_size).
    """
    facts_file = os.path.join(folder, "export.json")
    try:
        with open(facts_file, encoding="utf-8") as f:
            facts = json.load(f)
        facts["input_size"] = tuple(int(s) for s in facts["input_size"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{facts_file}: cannot read the export facts ({type(e).__name__}: {e})") from None
    return facts


def load_export(folder):
    """Loads an export folder's model.keras and export.json.

    Returns (Keras model, the export.json dict with "input_size" as an (h, w) tuple).
    Raises ValueError naming the file when either cannot be read (missing, truncated,
    not JSON, no input_size, not a Keras file).
    """
    import research.models  # noqa: F401  (registers the custom layers for loading)

    facts = read_facts(folder)
    keras_file = os.path.join(folder, "model.keras")
    try:
        model = keras.saving.load_model(keras_file, compile=False)
    except Exception as e:  # zip, h5 and deserialization errors of every kind
        raise ValueError(f"{keras_file}: cannot load the model ({type(e).__name__}: {e})") from None
    return model, facts


# ---------------------------------------------------------------------------------
# Reading a run: its config and its model (the export, else the latest checkpoint).
# ---------------------------------------------------------------------------------
@dataclasses.dataclass
class LoadedModel:
    """A run's model: `model` maps float32 [B,H,W,3] in [0,255] to logits [B,H,W,C];
    `input_size` (h, w) is what it was trained at; `source` describes where it came from
    (research.evaluate writes it to metrics.json)."""
    model: keras.Model
    input_size: tuple
    source: dict


def read_run_config(workdir, voc_root=None, data_root=None, skip_bad=False):
    """The `Config` saved in `WORKDIR/config.json`, with where its data is now replaced.

    Args:
      workdir: the run's folder.
      voc_root: a VOC run's voc_root (ValueError for a run on a folder dataset).
      data_root: where the run's dataset is now, whatever its kind: replaces data_root
        for a folder dataset, voc_root for VOC.
      skip_bad: True leaves bad samples out also when the run did not (its config's
        skip_bad otherwise).
    """
    config = config_lib.load_config_file(os.path.join(workdir, "config.json"))
    if voc_root:
        if config.dataset != "voc":
            raise ValueError(f"{workdir} was trained on a folder dataset ({config.data_root}); "
                             f"say where it is with --data-root, not --voc-root")
        config = config.replace(voc_root=os.fspath(voc_root))
    if data_root:
        field = "voc_root" if config.dataset == "voc" else "data_root"
        config = config.replace(**{field: os.fspath(data_root)})
    if skip_bad:
        config = config.replace(skip_bad=True)
    return config


def load_model(workdir, config, source="auto"):
    """Loads the run's exported model, or else its latest checkpoint.

    Args:
      workdir: the run's folder.
      config: the run's `Config` (to rebuild the model for a checkpoint).
      source: "auto" (export if present, else checkpoint), "export" or "checkpoint".
    Returns:
      `LoadedModel`.
    Raises:
      FileNotFoundError: the requested (or any) model is missing, naming the paths.
      ValueError: the checkpoint does not fit the config's model.
    """
    if source not in ("auto", "export", "checkpoint"):
        raise ValueError(f'source must be "auto", "export" or "checkpoint"; got {source!r}')
    export_dir = os.path.join(workdir, "export")
    keras_file = os.path.join(export_dir, "model.keras")
    if source in ("auto", "export") and os.path.isfile(keras_file):
        model, facts = load_export(export_dir)
        info = facts.get("info", {})
        return LoadedModel(model, facts["input_size"],
                           {"source": "export", "path": keras_file, "step": info.get("step"),
                            "export_info": info})
    if source == "export":
        raise FileNotFoundError(f"{keras_file} does not exist (no exported model in {workdir})")

    checkpoint_dir = os.path.join(workdir, "checkpoints")
    path = tf.train.latest_checkpoint(checkpoint_dir)
    if path is None:
        raise FileNotFoundError(f"{workdir}: neither {keras_file} nor a checkpoint in {checkpoint_dir}")
    model = restore_model(path, config, f"{workdir}/config.json", saved_precision(workdir) or "float32")
    step = int(path.rsplit("-", 1)[1]) if path.rsplit("-", 1)[-1].isdigit() else None
    return LoadedModel(model, tuple(config.input_size),
                       {"source": "checkpoint", "path": path, "step": step,
                        "weights": "moving average" if config.ema_decay else "trained"})


def saved_precision(workdir):
    """The dtype policy a run's config.json records under "runtime" (what it trained
    in), or None when the file is missing, unreadable or silent on it."""
    try:
        with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
            return json.load(f).get("runtime", {}).get("precision") or None
    except (OSError, ValueError, AttributeError):
        return None


# What reading a damaged checkpoint raises: TensorFlow's errors (DataLoss, NotFound, ...)
# and, for a truncated data file, the reader's IndexError ("Read less bytes than requested").
# Not ValueError: that is a checkpoint of another model (shapes), said as such elsewhere.
_CHECKPOINT_READ_ERRORS = (tf.errors.OpError, IndexError)


def restore_checkpoint(checkpoint, path):
    """`checkpoint.restore(path)` (a tf.train.Checkpoint; returns its status), raising a
    ValueError that names `path` when the files cannot be read (`_unreadable_checkpoint`)."""
    try:
        return checkpoint.restore(path)
    except _CHECKPOINT_READ_ERRORS as error:
        raise _unreadable_checkpoint(path, error) from None


def _unreadable_checkpoint(path, error):
    """A ValueError naming checkpoint `path`, the reader's complaint, and the other
    checkpoints beside it (the user may move the damaged one's files away to use them)."""
    first_line = (getattr(error, "message", None) or str(error)).strip().splitlines()[0][:300]
    folder = os.path.dirname(path)
    indexes = glob.glob(os.path.join(glob.escape(folder), "ckpt-*.index"))
    others = sorted({os.path.basename(f).split(".")[0] for f in indexes} - {os.path.basename(path)})
    hint = (f"; the other checkpoints there: {', '.join(others)} (move {os.path.basename(path)}.* away "
            f"and edit {os.path.join(folder, 'checkpoint')} to name one)" if others else "")
    return ValueError(f"{path}: the checkpoint cannot be read ({type(error).__name__}: {first_line}): "
                      f"damaged or incomplete files{hint}")


def checkpoint_model_layer_count(path):
    """How many layers (Keras operations) the model in checkpoint `path` holds, read from
    its object graph; None when it holds no Keras functional model."""
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(tf.train.load_checkpoint(path).get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    node = graph.nodes[0]
    for name in ("model", "_operations"):
        child = [c.node_id for c in node.children if c.local_name == name]
        if not child:
            return None
        node = graph.nodes[child[0]]
    return len(node.children)


def model_mismatch(path, model, what, error):
    """A ValueError: checkpoint `path` does not fit `model` (`what` names the model),
    with the checkpoint's complaint and, when the layer counts differ, both counts.

    Why the counts: checkpoints key a layer's weights by its position in the model
    (`model/_operations/<i>/...`), so a model with layers added or removed (another
    config, or a version of the code with other layers) cannot read them.
    """
    detail = str(error) if len(str(error)) < 400 else str(error)[:400] + "..."
    saved = checkpoint_model_layer_count(path)
    layers = len(getattr(model, "_operations", ()))
    hint = (f" (the checkpoint's model has {saved} layers, this one {layers}: another config, or "
            f"a checkpoint from a version with other layers, see CHANGELOG.md)"
            if saved is not None and saved != layers else "")
    return ValueError(f"{path}: does not match the model of {what}{hint}: {detail}")


def restore_model(path, config, config_name, precision="float32"):
    """The config's model with the weights of checkpoint `path`: the moving averages
    when the run kept them (`ema_decay`), as its evaluation and export use. `precision`:
    the run's dtype policy (the optimizer's structure in the checkpoint depends on it).

    Raises ValueError naming `path` and `config_name` when they do not fit together.
    """
    from research.training.ema import moving_averages

    # Every weight comes from the checkpoint: never read (or download) the pretrained file.
    model = build.build_model(config, pretrained=False)
    objects = {"model": model}
    if config.ema_decay:   # the averages live in the optimizer; the loop state is not needed
        objects["optimizer"] = optimizer = build.make_optimizer(config, precision)
        optimizer.build(model.trainable_variables)
    status = restore_checkpoint(tf.train.Checkpoint(**objects), path).expect_partial()
    try:
        # Every variable of the rebuilt model (and the averages) must come from the
        # checkpoint: a silent partial restore would evaluate random weights.
        status.assert_existing_objects_matched()
    except AssertionError as e:
        raise model_mismatch(path, model, config_name, e) from None
    if config.ema_decay:
        for variable, average in zip(model.trainable_variables, moving_averages(optimizer)):
            variable.assign(average)
    return model
