"""ImageNet backbone weights: find the file, then copy it into a model by layer name.

`weights` arguments of the model builders are `None`, `"imagenet"` or a path to a weights
file of `keras.applications.ResNet50(include_top=False)` (backbone "resnet50") or
`keras.applications.MobileNetV2(include_top=False)` (width 1.0; backbone "mobilenet_v2"),
in Keras' legacy `.h5` format (as distributed) or Keras 3's `.weights.h5`. Every problem with them raises
`PretrainedWeightsError` with a message that names the file, before any model is built
where possible.
"""
import contextlib
import os
import socket

import h5py
import keras

from research.models.layers import Preprocessing
from research.models.mobilenet_v2 import MOBILENET_V2_BLOCKS, MOBILENET_V2_WIDTH
from research.models.resnet import RESNET50_BLOCKS, RESNET50_WIDTH

RESNET50_NOTOP_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
RESNET50_NOTOP_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/"
                      "resnet/" + RESNET50_NOTOP_FILE)
# The md5 Keras checks for this file (keras/src/applications/resnet.py WEIGHTS_HASHES).
RESNET50_NOTOP_MD5 = "4d473c1dd8becc155b73f8504c6f6626"
MOBILENET_V2_NOTOP_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
MOBILENET_V2_NOTOP_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/"
                          "mobilenet_v2/" + MOBILENET_V2_NOTOP_FILE)
DOWNLOAD_TIMEOUT_S = 10.0
BACKBONES = ("resnet50", "mobilenet_v2")


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights are unavailable (no cached file, no network), missing or unreadable.

    The message says which file was wanted and where to put it.

    Example:
    >>> try:
    ...     deeplab_v3(weights="imagenet")
    ... except PretrainedWeightsError as error:
    ...     print(error)  # names resnet50_..._notop.h5 and the Keras cache folder
    """


def resolve_resnet50_weights(weights, blocks_per_stage=RESNET50_BLOCKS,
                             width=RESNET50_WIDTH):
    """Checks a builder's `weights` argument and returns the weights file to load, or None.

    Cheap (no model is built), so builders call it first and fail fast.

    Args:
      weights: None, "imagenet" or a path (str or os.PathLike) to a weights file of
        `keras.applications.ResNet50(include_top=False)`.
      blocks_per_stage, width: the backbone's; pretrained weights need ResNet-50's
        (3, 4, 6, 3) and 64.

    Returns:
      None for `weights=None`, else the path (str) of an existing HDF5 file.

    Raises:
      ValueError: weights asked for a reduced backbone.
      PretrainedWeightsError: "imagenet" neither cached nor downloadable; a path that is
        missing or not an HDF5 file.

    Example:
    >>> resolve_resnet50_weights(None)  # -> None
    >>> resolve_resnet50_weights("/data/resnet50_notop.weights.h5")  # -> that path
    """
    return resolve_weights(weights, "resnet50", blocks_per_stage, width)


def resolve_weights(weights, backbone, blocks_per_stage, width):
    """`resolve_resnet50_weights` for either backbone ("resnet50" or "mobilenet_v2").

    MobileNetV2 weights need the full network: blocks (1, 2, 3, 4, 3, 3, 1), width 32
    (Keras' width multiplier 1.0, the file named by MOBILENET_V2_NOTOP_FILE).
    """
    if weights is None:
        return None
    if backbone == "resnet50":
        full, keras_name = (RESNET50_BLOCKS, RESNET50_WIDTH), "ResNet50"
    elif backbone == "mobilenet_v2":
        full, keras_name = (MOBILENET_V2_BLOCKS, MOBILENET_V2_WIDTH), "MobileNetV2"
    else:
        raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}; got {backbone!r}")
    if (tuple(blocks_per_stage), width) != full:
        raise ValueError(
            f"pretrained weights ({weights!r}) need the full {keras_name} backbone "
            f"(blocks_per_stage={full[0]}, width={full[1]}); got "
            f"blocks_per_stage={tuple(blocks_per_stage)}, width={width}. Use weights=None "
            "for reduced models.")
    if isinstance(weights, str) and weights == "imagenet":
        if backbone == "resnet50":  # module globals read now: tests point them elsewhere
            return _imagenet_file("ResNet-50", RESNET50_NOTOP_FILE, RESNET50_NOTOP_URL,
                                  RESNET50_NOTOP_MD5)
        # Keras keeps no hash for the MobileNetV2 files (keras/src/applications/mobilenet_v2.py).
        return _imagenet_file("MobileNetV2", MOBILENET_V2_NOTOP_FILE, MOBILENET_V2_NOTOP_URL, None)
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise PretrainedWeightsError(
            f"weights file not found: {path}. Expected a weights file of "
            f"keras.applications.{keras_name}(include_top=False) (.h5 or .weights.h5).")
    if not h5py.is_hdf5(path):
        raise PretrainedWeightsError(
            f"weights file {path} is not an HDF5 file (corrupt or wrong file?). Expected "
            f"a weights file of keras.applications.{keras_name}(include_top=False).")
    return path


def load_resnet50_weights(model, weights_file):
    """Copies every ResNet-50 layer's weights from `weights_file` into `model` by name.

    The file is read into a `keras.applications.ResNet50(include_top=False)` (so both
    Keras' legacy `.h5` and Keras 3 `.weights.h5` work, exactly as Keras reads them),
    then each of its layers with weights (convolution kernels and biases, BatchNorm
    gamma, beta, moving mean and moving variance) is copied into the `model` layer of
    the same name. Dilation does not change weight shapes, so this works for any
    output stride. Costs one ResNet-50 build (a few seconds on a CPU).

    Args:
      model: a Keras model containing a full-depth `research.models.resnet.resnet50`.
      weights_file: path from `resolve_resnet50_weights`.

    Raises:
      PretrainedWeightsError: the file cannot be read as ResNet-50 weights.
      ValueError: `model` lacks a ResNet-50 layer or has different weight shapes.

    Example:
    >>> model = deeplab_v3()  # random weights
    >>> load_resnet50_weights(model, "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
    """
    reference = keras.applications.ResNet50(
        include_top=False, weights=None, input_shape=(None, None, 3))
    _copy_by_name(reference, "ResNet50", model, weights_file)


def load_mobilenet_v2_weights(model, weights_file):
    """Copies MobileNetV2's weights from `weights_file` into `model` by layer name.

    As `load_resnet50_weights`, for `keras.applications.MobileNetV2(alpha=1.0,
    include_top=False)`; its last 1x1 convolution (Conv_1, Conv_1_bn), which the DeepLab
    backbone leaves out, is skipped.

    Raises:
      PretrainedWeightsError: the file cannot be read as MobileNetV2 weights.
      ValueError: `model` has different weight shapes.
    """
    reference = keras.applications.MobileNetV2(
        input_shape=(224, 224, 3), alpha=1.0, include_top=False, weights=None)
    _copy_by_name(reference, "MobileNetV2", model, weights_file, skip=("Conv_1", "Conv_1_bn"))


def _copy_by_name(reference, keras_name, model, weights_file, skip=()):
    """Loads `weights_file` into `reference`, then copies each of its layers into `model`."""
    try:
        reference.load_weights(weights_file)
    except Exception as error:  # h5py, Keras and OS errors alike: say which file.
        raise PretrainedWeightsError(
            f"could not load {weights_file} as weights of "
            f"keras.applications.{keras_name}(include_top=False): {error}") from None
    for layer in reference.layers:
        values = layer.get_weights()
        if values and layer.name not in skip:
            model.get_layer(layer.name).set_weights(values)


def _keras_home():
    """Keras' cache folder, read now (Keras reads KERAS_HOME once, at import)."""
    if "KERAS_HOME" in os.environ:
        return os.environ["KERAS_HOME"]
    home = os.path.expanduser("~")
    return os.path.join(home if os.access(home, os.W_OK) else "/tmp", ".keras")


def _imagenet_file(what, file_name, url, md5):
    """The cached ImageNet no-top file, downloading it if possible; else a clear error."""
    cache_dir = _keras_home()
    models_dir = os.path.join(cache_dir, "models")
    cached = os.path.join(models_dir, file_name)
    if os.path.isfile(cached):
        return cached
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            return keras.utils.get_file(file_name, url, cache_subdir="models",
                                        cache_dir=cache_dir, file_hash=md5)
    except Exception as error:  # urllib, socket and hash errors: the cause goes in the text.
        raise PretrainedWeightsError(
            f"ImageNet weights for {what} are not available: {file_name} is "
            f"not in {models_dir} and downloading it from {url} failed "
            f"({error}). Download that URL on a machine with network access and put the "
            f"file at {cached} (or set KERAS_HOME to a folder whose models/ subfolder "
            "holds it), or pass weights='/path/to/" + file_name + "'.") from None


@contextlib.contextmanager
def _socket_timeout(seconds):
    # keras.utils.get_file (urlretrieve) takes no timeout: without one, an unreachable
    # host would hang the builder. This is process-global, so restore it at once.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def pretrained_preprocessing(backbone):
    """The input scaling the backbone's ImageNet weights were trained with: "caffe"
    (BGR, mean subtracted) for ResNet-50, "tf" ([-1, 1]) for MobileNetV2."""
    return "caffe" if backbone == "resnet50" else "tf"


def image_input(input_shape, weights, preprocessing, blocks_per_stage, width, backbone="resnet50"):
    """The model's image input and the preprocessing its backbone weights expect.

    Args:
      input_shape: (H, W, 3); None for sizes fixed at call time.
      weights, blocks_per_stage, width, backbone: as `resolve_weights`.
      preprocessing: "caffe", "tf", "unit", or None = with pretrained weights what they
        were trained with ("caffe" for ResNet-50, "tf" for MobileNetV2), else "unit".
    Returns:
      (images, preprocessed, weights_file): the float32 Keras input "images" in
      [0, 255], its preprocessed tensor, and the weights file to load afterwards
      (None for random initialization).
    """
    weights_file = resolve_weights(weights, backbone, blocks_per_stage, width)
    if preprocessing is None:
        preprocessing = pretrained_preprocessing(backbone) if weights_file else "unit"
    images = keras.Input(input_shape, dtype="float32", name="images")
    return images, Preprocessing(preprocessing, name="preprocessing")(images), weights_file
