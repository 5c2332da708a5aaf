"""Fixtures for the model tests: tiny model settings, a weights file, a dtype policy.

Most tests use reduced models (`TINY`: one block per stage, width 8): building a real
ResNet-50 costs a few seconds on 2 cores, so only the tests about the real architecture
and its pretrained weights build one.
"""
import h5py
import keras
import numpy as np
import pytest

from kernels import AtrousConv2D

# A reduced backbone keeps the naming scheme: conv{2..5}_block1_*, 8..256 channels.
TINY = dict(blocks_per_stage=(1, 1, 1, 1), width=8)


def atrous_rates(model):
    """{layer name: dilation rate} of the model's AtrousConv2D layers."""
    return {layer.name: layer.dilation_rate for layer in model.layers
            if isinstance(layer, AtrousConv2D)}


def random_images(*shape, seed=0):
    """float32 RGB images in [0, 255], the data pipeline's contract."""
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")


class ImagenetStyleWeights:
    """A seeded keras.applications.ResNet50(include_top=False) saved to files.

    Attributes:
      reference: the Keras model; every variable random, BatchNorm gamma, beta, moving
        mean and moving variance included (zeros and ones would hide a missed copy).
      keras3_path: its weights in Keras 3 `.weights.h5` format.
      legacy_path: the same in Keras' legacy weights-only `.h5` layout (as the
        distributed ImageNet file).
    """

    def __init__(self, folder):
        keras.utils.set_random_seed(1234)
        self.reference = keras.applications.ResNet50(
            include_top=False, weights=None, input_shape=(None, None, 3))
        rng = np.random.default_rng(1234)
        for variable in self.reference.weights:
            if variable.path.endswith(("moving_variance", "gamma")):
                value = rng.uniform(0.5, 1.5, variable.shape)
            else:
                value = rng.normal(0.0, 0.05, variable.shape)
            variable.assign(value.astype("float32"))
        self.keras3_path = str(folder / "resnet50_notop.weights.h5")
        self.reference.save_weights(self.keras3_path)
        # Keras 3 reads this layout but has no public writer for it: its private one. Keras
        # is pinned (setup.cfg), so a release without it fails here, loudly, rather than
        # skipping the only test of the layout the ImageNet file comes in.
        from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

        self.legacy_path = str(folder / "resnet50_notop_legacy.h5")
        with h5py.File(self.legacy_path, "w") as file:
            save_weights_to_hdf5_group(file, self.reference)


@pytest.fixture(scope="session")
def imagenet_style_weights(tmp_path_factory):
    return ImagenetStyleWeights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(params=["mixed_float16", "mixed_bfloat16"])
def mixed_policy(request):
    """Sets a global mixed-precision policy for one test and restores the previous one."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(request.param)
    try:
        yield request.param
    finally:
        keras.config.set_dtype_policy(previous)
