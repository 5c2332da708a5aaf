"""The README's quick start: `make demo`, then the predict command on a photo of one's own.

The fast tests check that the README's commands parse and that `make demo` runs what the
README says; the slow one runs the quick start's commands in order at smoke size and
predicts a mask for a photo the project did not make.
"""
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from research import config as config_lib
from research import configs
from research import predict

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def quick_start_commands():
    """The commands of the README's "Quick start" code blocks, in order."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    start = text.index("## Quick start\n")
    section = text[start:text.index("\n## ", start + 1)]
    return [line.strip() for block in re.findall(r"```\n(.*?)```", section, re.S)
            for line in block.splitlines() if line.strip()]


def demo_recipe():
    """The shell lines of the Makefile's demo target."""
    with open(os.path.join(REPO, "Makefile"), encoding="utf-8") as f:
        makefile = f.read()
    return re.search(r"^demo:.*?\n((?:\t.*\n)+)", makefile, re.M).group(1)


def test_the_quick_start_is_make_demo_then_predict():
    make, predict_line = quick_start_commands()
    assert make == "make demo"
    args = predict.parse_args(shlex.split(predict_line)[3:])
    assert predict_line.startswith("python -m research.predict ")
    assert args.model == "runs/demo" and args.inputs == ["my_photo.jpg"] and args.out == "masks/"


def test_make_demo_trains_evaluates_and_reports_what_the_readme_says():
    recipe = demo_recipe()
    steps = ["scripts/make_synthetic_voc.py --root $(DEMO_DATA) --num-train 960 --num-val 240",
             "-m research.train --config demo --workdir $(DEMO_RUN)",
             "-m research.evaluate --workdir $(DEMO_RUN) --subset test",
             "scripts/demo_report.py --workdir $(DEMO_RUN)"]
    positions = [recipe.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions), recipe
    assert re.search(r"^DEMO_RUN \?= runs/demo$", open(os.path.join(REPO, "Makefile")).read(), re.M)


def test_the_demo_config_exports_its_model_for_predict():
    demo = configs.load_config("demo")
    assert demo.export_best and demo.deterministic and demo.monitor == "val_mean_iou"


def natural_photo(path, width=240, height=180, seed=7):
    """A photo-like JPEG the project's data generator did not draw: a sky gradient, a sun,
    hills with grass noise, a tree, sensor noise, saved as a camera would (JPEG, EXIF-free)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    sky = np.stack([110 + 60 * y / height, 160 + 50 * y / height, 235 - 20 * y / height], axis=-1)
    image = sky + 40 * (np.hypot(x - 0.8 * width, y - 0.2 * height) < 14)[..., None]
    horizon = 0.6 * height + 12 * np.sin(x / 23.0) + 6 * np.sin(x / 7.0)
    grass = np.stack([60 + 30 * rng.random((height, width)), 120 + 50 * rng.random((height, width)),
                      40 + 20 * rng.random((height, width))], axis=-1)
    image = np.where((y > horizon)[..., None], grass, image)
    trunk = (abs(x - 0.3 * width) < 4) & (y > horizon - 40) & (y < horizon + 5)
    crown = np.hypot(x - 0.3 * width, y - (horizon - 48)) < 20
    image = np.where(trunk[..., None], [90, 60, 30], image)
    image = np.where(crown[..., None], [40, 100 + 40 * rng.random(), 35], image)
    image += rng.normal(0, 4, image.shape)
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path, quality=88)
    return path


SMOKE_SETS = ["epochs=1", "steps_per_epoch=2", "eval_steps=1", "batch_size=2", "eval_batch_size=2",
              "input_size=[32,32]", "resize_to_before_crop=[32,32]", "backbone_blocks=[1,1,1,1]",
              "backbone_width=8", "aspp_filters=16", "warmup_steps=1", "log_every_steps=1"]


@pytest.mark.slow   # five processes, a (tiny) training run
def test_the_quick_start_runs_in_order_and_predicts_a_photo(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")

    def run(command):
        result = subprocess.run([sys.executable, *command[1:]] if command[0] == "python" else command,
                                cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        return result.stdout

    data, workdir = str(tmp_path / "data"), str(tmp_path / "runs" / "demo")
    voc_root = os.path.join(data, "VOCdevkit", "VOC2012")
    # `make demo`, at smoke size: the same commands (test_make_demo_... checks the recipe).
    run(["python", "scripts/make_synthetic_voc.py", "--root", data, "--num-train", "8", "--num-val", "4",
         "--no-progress"])
    run(["python", "-m", "research.train", "--config", "demo", "--workdir", workdir,
         "--set", f"voc_root={voc_root}", *[a for s in SMOKE_SETS for a in ("--set", s)]])
    run(["python", "-m", "research.evaluate", "--workdir", workdir, "--subset", "test", "--samples", "1",
         "--hardest", "1"])
    report = run(["python", "scripts/demo_report.py", "--workdir", workdir, "--json",
                  str(tmp_path / "demo.json")])
    assert "# Demo report" in report and os.path.isfile(os.path.join(workdir, "REPORT.md"))
    assert os.path.isfile(os.path.join(workdir, "export", "model.keras"))
    # The README's predict command, on a photo the project did not make.
    photo = natural_photo(str(tmp_path / "my_photo.jpg"))
    masks = str(tmp_path / "masks")
    command = [{"runs/demo": workdir, "my_photo.jpg": photo, "masks/": masks}.get(a, a)
               for a in shlex.split(quick_start_commands()[1])]
    assert "wrote 1 mask(s)" in run(command)
    with Image.open(os.path.join(masks, "my_photo.png")) as mask:
        assert mask.mode == "P" and mask.size == (240, 180)
        assert np.asarray(mask).max() <= 20
    assert os.path.isfile(os.path.join(masks, "my_photo_overlay.png"))
    # The saved result, for `make docs`.
    from research import results

    saved = results.read_results(str(tmp_path / "demo.json"))
    assert saved["config"] == "demo" and saved["model"]["source"] == "export" and saved["test"]["images"] == 2
    # docs/evaluation.md: the SavedModel needs no project code.
    import tensorflow as tf

    model = tf.saved_model.load(os.path.join(workdir, "export", "saved_model"))   # kept: it owns the weights
    served = model.serve(tf.constant(np.asarray(Image.open(photo).convert("RGB"))[None]))
    assert served["masks"].shape == (1, 180, 240) and served["masks"].dtype == tf.uint8
