"""DeepLab v3+ through the project's machinery: the training step, a training run, the
SavedModel export and every TFLite mode (int8 fully quantized, as DeepLab v3).

The architecture itself: tests/research/models/test_deeplab_v3.py; built from a config and
rebuilt at another output stride: tests/research/test_build.py.
"""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.research.test_train import _step_pieces, _tiny_batch

MOBILE = dict(backbone="mobilenet_v2", backbone_blocks=(1,) * 7, backbone_width=8)


@pytest.mark.parametrize("changes", [
    dict(),
    dict(output_stride=8, head="light", bn_policy="frozen", batchnorm="keras", atrous="keras", **MOBILE),
], ids=["resnet50-os16", "mobilenet_v2-os8-light-frozen"])
def test_v3_plus_trains_with_the_project_train_step(smoke_config, changes):
    config = smoke_config.replace(model="deeplab_v3_plus", aspp_filters=16, learning_rate=3e-3, **changes)
    images, labels = _tiny_batch()
    model, _, step = _step_pieces(config)
    decoder = [v for v in model.trainable_variables if v.path.startswith("decoder_")]
    assert len(decoder) == (3 if changes else 9)  # three convs (+ gamma, beta unless frozen)
    before = [v.numpy().copy() for v in decoder]
    losses = [float(step(images, labels)[0]) for _ in range(4)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    assert all(not np.array_equal(v.numpy(), b) for v, b in zip(decoder, before, strict=True))


@pytest.fixture(scope="module")
def trained_run(smoke_config, tmp_path_factory):
    """A smoke-sized MobileNetV2 DeepLab v3+ trained 30 steps on the embedded dataset, as
    test_export_tflite's run (a random network's logits are too flat to judge int8 by)."""
    from research import train as train_lib

    config = smoke_config.replace(
        name="smoke_v3plus", model="deeplab_v3_plus", aspp_filters=16, input_size=(64, 64),
        resize_to_before_crop=(72, 72), epochs=3, steps_per_epoch=10, bn_momentum=0.5,
        batch_size=4, **MOBILE)
    workdir = str(tmp_path_factory.mktemp("v3plus_run"))
    keras.utils.set_random_seed(0)
    train_lib.train_and_evaluate(config, workdir)
    return workdir, config


@pytest.mark.slow  # a training run and three TFLite conversions
def test_v3_plus_exports_a_saved_model_and_every_tflite_mode(trained_run):
    from research import export as export_lib
    from research import export_tflite as et

    workdir, config = trained_run
    model, _ = export_lib.load_export(os.path.join(workdir, "export"))
    assert model.name == "deeplab_v3_plus"
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    saved_model = tf.saved_model.load(os.path.join(workdir, "export", "saved_model"))  # kept: serve
    served = saved_model.serve(tf.constant(images))                                 # uses its variables
    np.testing.assert_array_equal(served["masks"].numpy(),
                                  export_lib.predict_masks(model, images, config.input_size).numpy())
    # One of the dataset's photographs as the file's uint8 frame (noise is out of what the
    # barely trained model has seen, where int8 rounding flips near-tie pixels).
    folder = os.path.join(config.voc_root, "JPEGImages")
    photo = Image.open(os.path.join(folder, sorted(os.listdir(folder))[0])).convert("RGB")
    frame = np.asarray(photo.resize(config.input_size[::-1]))
    logits = model(frame[None].astype("float32")).numpy()[0]
    keras_mask = np.argmax(logits, axis=-1)
    # A 30-step smoke model has many near-tie logits, which float16 and int8 rounding flip
    # (seen: 0.995-0.997 and 0.834-0.918 of all pixels agree). float32 and float16 are
    # compared on every pixel, int8 on the pixels whose two best classes lie at least 2% of
    # the logits' range apart (about half of them; seen: 0.990 agree there).
    top_two = np.sort(logits, axis=-1)[..., -2:]
    decided = top_two[..., 1] - top_two[..., 0] > 0.02 * (logits.max() - logits.min())
    assert decided.mean() > 0.2
    every = np.ones_like(decided)
    bound = {"none": (0.999, every), "float16": (0.98, every), "int8": (0.95, decided)}
    sizes = {}
    for mode, (least, pixels) in bound.items():
        # int8: `convert` raises if any op between the input cast and the outputs is not int8.
        path = et.export_tflite(workdir, mode, calibration_images=8)
        sizes[mode] = os.path.getsize(path)
        mask = et.TFLiteModel(path, num_threads=1).run(frame)["mask"]
        agreement = float((mask == keras_mask)[pixels].mean())
        assert agreement >= least, f"{mode}: {agreement:.4f} of the compared pixels agree"
    assert sizes["int8"] < sizes["float16"] < sizes["none"]
