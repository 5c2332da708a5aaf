"""The embedded dataset: VOC layout, validity, determinism, re-runs, the script."""
import filecmp
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from research.data import synthetic, voc
from research.data.validate import validate_voc
from research.tools import show_batch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "scripts", "make_synthetic_voc.py")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return str(root), synthetic.make_synthetic_voc(str(root), 6, 3, seed=5, progress=False)


def _all_files(voc_root):
    return sorted(os.path.relpath(os.path.join(d, f), voc_root)
                  for d, _, files in os.walk(voc_root) for f in files)


def test_layout_splits_and_validity(dataset):
    _, voc_root = dataset
    train = voc.read_id_list(voc.split_file(voc_root, "train"))
    val = voc.read_id_list(voc.split_file(voc_root, "val"))   # val.txt (read_split("val") is half)
    assert len(train) == 6 and len(val) == 3 and not set(train) & set(val)
    assert sorted(train + val) == [f"2012_{i:06d}" for i in range(1, 10)]
    assert voc.read_split(voc_root, "trainval") == sorted(train + val)
    report = validate_voc(voc_root, progress=False)
    assert report.ok, report.format()
    assert report.ignore_pixels > 0


def test_images_vary_in_size_and_masks_are_palettized_with_outline_bands(dataset):
    _, voc_root = dataset
    sizes = set()
    for image_id in voc.read_split(voc_root, "trainval"):
        photo = Image.open(voc.image_path(voc_root, image_id))
        mask_file = Image.open(voc.mask_path(voc_root, image_id))
        assert photo.format == "JPEG" and photo.mode == "RGB"
        assert mask_file.format == "PNG" and mask_file.mode == "P"
        width, height = photo.size
        assert 200 <= width <= 500 and 200 <= height <= 500 and width != height
        sizes.add(photo.size)
        mask = np.asarray(mask_file)
        objects = (mask > 0) & (mask < 255)
        assert objects.any() and (mask == 255).any()
        # every object pixel next to background is inside the band: objects never touch 0
        assert not (objects[:, 1:] & (mask[:, :-1] == 0)).any()
        assert not (objects[1:, :] & (mask[:-1, :] == 0)).any()
    assert len(sizes) > 5


def test_class_plan_uses_every_class_with_distinct_classes_per_image():
    plan = synthetic.plan_classes(12, seed=3)
    assert all(1 <= len(classes) <= 4 and len(set(classes)) == len(classes) for classes in plan)
    assert {c for classes in plan for c in classes} == set(range(1, 21))
    assert plan == synthetic.plan_classes(12, seed=3) != synthetic.plan_classes(12, seed=4)


def test_render_sample_paints_the_planned_classes():
    rng = np.random.default_rng(0)
    for classes in ([1, 2, 3, 4], [5, 6, 7], [8, 9, 10, 11], [12, 13, 14], [15, 16, 17], [18, 19, 20]):
        image, mask = synthetic.render_sample(classes, rng)
        assert image.dtype == np.uint8 and image.shape == mask.shape + (3,)
        present = set(np.unique(mask)) - {0, 255}
        assert present <= set(classes) and len(present) >= len(classes) - 1  # one may hide


def test_same_arguments_give_the_same_bytes(dataset, tmp_path):
    _, voc_root = dataset
    again = synthetic.make_synthetic_voc(str(tmp_path), 6, 3, seed=5, progress=False)
    files = _all_files(voc_root)
    assert files == _all_files(again)
    match, mismatch, errors = filecmp.cmpfiles(voc_root, again, files, shallow=False)
    assert not mismatch and not errors and len(match) == len(files)
    other = synthetic.make_synthetic_voc(str(tmp_path / "other"), 6, 3, seed=6, progress=False)
    assert not filecmp.cmp(voc.image_path(voc_root, "2012_000001"), voc.image_path(other, "2012_000001"), shallow=False)


def test_rendering_over_several_processes_gives_the_same_bytes(dataset, tmp_path, monkeypatch):
    _, voc_root = dataset
    monkeypatch.setattr(synthetic, "PARALLEL_FROM", 1)      # 9 samples: over a process pool
    monkeypatch.setattr(synthetic.os, "cpu_count", lambda: 2)
    parallel = synthetic.make_synthetic_voc(str(tmp_path), 6, 3, seed=5, progress=False)
    files = _all_files(voc_root)
    assert files == _all_files(parallel)
    match, mismatch, errors = filecmp.cmpfiles(voc_root, parallel, files, shallow=False)
    assert not mismatch and not errors and len(match) == len(files)


def test_rerun_is_a_no_op_and_other_arguments_are_refused(tmp_path):
    voc_root = synthetic.make_synthetic_voc(str(tmp_path), 2, 1, seed=0, progress=False)
    manifest = os.path.join(voc_root, synthetic.MANIFEST_NAME)
    before = os.stat(manifest).st_mtime_ns, os.stat(voc.image_path(voc_root, "2012_000001")).st_ino
    assert synthetic.make_synthetic_voc(str(tmp_path), 2, 1, seed=0, progress=False) == voc_root
    assert (os.stat(manifest).st_mtime_ns, os.stat(voc.image_path(voc_root, "2012_000001")).st_ino) == before
    with pytest.raises(ValueError, match="overwrite"):
        synthetic.make_synthetic_voc(str(tmp_path), 3, 1, seed=0, progress=False)
    synthetic.make_synthetic_voc(str(tmp_path), 3, 1, seed=0, overwrite=True, progress=False)
    with open(manifest) as f:
        assert json.load(f)["num_train"] == 3


def test_incomplete_dataset_is_regenerated(tmp_path):
    voc_root = synthetic.make_synthetic_voc(str(tmp_path), 2, 1, seed=0, progress=False)
    os.remove(voc.mask_path(voc_root, "2012_000002"))          # a damaged dataset
    synthetic.make_synthetic_voc(str(tmp_path), 2, 1, seed=0, progress=False)
    assert os.path.isfile(voc.mask_path(voc_root, "2012_000002"))
    os.remove(os.path.join(voc_root, synthetic.MANIFEST_NAME))   # no manifest: partial
    leftover = tmp_path / "VOCdevkit" / ".VOC2012.abc.tmp"       # a killed run's folder
    leftover.mkdir()
    synthetic.make_synthetic_voc(str(tmp_path), 2, 1, seed=0, progress=False)
    assert os.path.isfile(os.path.join(voc_root, synthetic.MANIFEST_NAME)) and not leftover.exists()


def test_refuses_to_overwrite_what_looks_like_real_voc(tmp_path):
    os.makedirs(os.path.join(voc.voc_root_in(tmp_path), "Annotations"))
    with pytest.raises(ValueError, match="real VOC release"):
        synthetic.make_synthetic_voc(str(tmp_path), 2, 1, seed=0, progress=False)


def test_script_writes_validates_and_summarises(tmp_path, capsys):
    main = synthetic.main                     # scripts/make_synthetic_voc.py's command line
    status = main(["--root", str(tmp_path), "--num-train", "3", "--num-val", "2",
                   "--seed", "1", "--no-progress"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "split sizes: train 3, val 2, trainval 5" in out
    assert "class pixel frequencies" in out and "background" in out
    assert main(["--root", str(tmp_path), "--num-train", "4", "--num-val", "2", "--no-progress"]) == 1
    assert "overwrite" in capsys.readouterr().err


def test_script_help():
    result = subprocess.run([sys.executable, SCRIPT, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--num-train" in result.stdout and "--seed" in result.stdout


def test_demo_flow_show_batch_draws_a_batch(dataset, tmp_path, capsys):
    """`make demo`: the synthetic dataset, then scripts/show_batch.py on it."""
    _, voc_root = dataset
    out = tmp_path / "demo" / "batch.png"
    main = show_batch.main                    # scripts/show_batch.py's command line
    assert main(["--voc-root", voc_root, "--out", str(out), "--batch-size", "4",
                 "--input-size", "64", "--warm-batches", "1"]) == 0
    printed = capsys.readouterr().out
    assert "split sizes: train 6, val 1, test 2" in printed and "images/s (cache warm)" in printed
    picture = np.asarray(Image.open(out))
    # 2 rows of 2 (image | mask) pairs of 64 px with 4 px gaps, then the legend
    assert picture.shape[1] == 2 * (2 * 64 + 4) + 3 * 4 and picture.shape[0] > 2 * 68 + 4
    mask_panel = picture[4:68, 4 + 64 + 4:4 + 128 + 4].reshape(-1, 3)
    assert {tuple(c) for c in mask_panel} <= {tuple(c) for c in voc.VOC_PALETTE}


def test_show_batch_draws_as_a_config_trains(dataset, tmp_path, capsys):
    """`make demo` draws the demo config's batch: the config's size, resize, scale range and batch."""
    _, voc_root = dataset
    out = tmp_path / "batch.png"
    assert show_batch.main(["--config", "demo", "--voc-root", voc_root, "--out", str(out), "--batch-size", "4",
                            "--warm-batches", "1"]) == 0
    assert ("pipeline (train, batch 4, input 128x128, resize 128x128, scale 0.9-1.25 + crop, flip, "
            "colour jitter)") in capsys.readouterr().out
    assert np.asarray(Image.open(out)).shape[1] == 2 * (2 * 128 + 4) + 3 * 4
    assert show_batch.main(["--out", str(out)]) == 1
    assert "give --config" in capsys.readouterr().err
