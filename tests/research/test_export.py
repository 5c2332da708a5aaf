"""The export round trip: the SavedModel works in plain TensorFlow with no project code,
and model.keras reloads with identical outputs.

The model is the smoke config's DeepLab v3 (reduced backbone, random weights), which
holds every custom layer (Preprocessing, ResizeLike, kernels.AtrousConv2D).
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import keras

from research import configs
from research import export as export_lib
from research import build

# Run in a fresh interpreter: loads the SavedModel, serves every images_*.npy, saves the
# outputs, and fails if any project module was imported along the way.
PLAIN_TF_SCRIPT = textwrap.dedent("""
    import glob, os, sys
    import numpy as np
    import tensorflow as tf

    folder = sys.argv[1]
    served = tf.saved_model.load(os.path.join(folder, "export", "saved_model"))
    for path in sorted(glob.glob(os.path.join(folder, "images_*.npy"))):
        out = served.serve(tf.constant(np.load(path)))
        np.save(path.replace("images_", "masks_"), out["masks"].numpy())
        np.save(path.replace("images_", "logits_"), out["logits"].numpy())
    project = sorted(m for m in sys.modules if m.split(".")[0] in ("research", "kernels"))
    if project:
        sys.exit("project modules were imported: " + ", ".join(project))
""")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    config = configs.load_config("smoke")
    keras.utils.set_random_seed(1)
    model = build.build_model(config)
    folder = tmp_path_factory.mktemp("export_run")
    export_lib.export_model(model, str(folder / "export"), config, {"epoch": 2, "step": 6})
    return folder, model, tuple(config.input_size)


def images_of_sizes():
    rng = np.random.default_rng(0)
    return {"37x53": rng.integers(0, 256, (1, 37, 53, 3), dtype=np.uint8),
            "64x64": rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8),
            "32x32": rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)}


def test_saved_model_serves_in_plain_tensorflow_like_the_model(exported):
    folder, model, input_size = exported
    images = images_of_sizes()
    for name, batch in images.items():
        np.save(folder / f"images_{name}.npy", batch)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", PLAIN_TF_SCRIPT, str(folder)], cwd=str(folder),
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for name, batch in images.items():
        masks = np.load(folder / f"masks_{name}.npy")
        assert masks.dtype == np.uint8 and masks.shape == batch.shape[:3], name
        np.testing.assert_array_equal(masks, export_lib.predict_masks(model, batch, input_size).numpy(),
                                      err_msg=name)
        np.testing.assert_allclose(np.load(folder / f"logits_{name}.npy"),
                                   export_lib.predict_logits(model, batch, input_size).numpy(),
                                   rtol=1e-4, atol=1e-4, err_msg=name)


def test_saved_model_holds_no_gradient_functions(exported):
    # Serving never differentiates; tracing the custom gradients (atrous convolutions,
    # fused BatchNorm) would only lengthen every export.
    from tensorflow.core.protobuf import saved_model_pb2

    folder, _, _ = exported
    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(folder, "export", "saved_model", "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    library = saved.meta_graphs[0].graph_def.library
    assert library.function and not library.registered_gradients


def test_keras_file_reloads_with_identical_outputs(exported):
    folder, model, input_size = exported
    reloaded = keras.saving.load_model(str(folder / "export" / "model.keras"))
    assert [l.__class__.__name__ for l in reloaded.layers] == [l.__class__.__name__ for l in model.layers]
    for name, batch in images_of_sizes().items():
        np.testing.assert_array_equal(np.asarray(reloaded(batch.astype("float32"))),
                                      np.asarray(model(batch.astype("float32"))), err_msg=name)
        np.testing.assert_array_equal(export_lib.predict_masks(reloaded, batch, input_size).numpy(),
                                      export_lib.predict_masks(model, batch, input_size).numpy())


def test_export_json_describes_the_model(exported):
    folder, _, input_size = exported
    facts = json.load(open(folder / "export" / "export.json"))
    assert tuple(facts["input_size"]) == input_size and facts["num_classes"] == 21
    assert facts["info"] == {"epoch": 2, "step": 6}
    assert facts["config"]["name"] == "smoke"
    leftovers = [n for n in os.listdir(folder / "export") if n.startswith(".")]
    assert not leftovers  # no temporary files or folders left behind
