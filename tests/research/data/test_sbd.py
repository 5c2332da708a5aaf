"""research.data.sbd and its command line (scripts/prepare_sbd.py) on a tiny SBD tree;
train_aug everywhere."""
import os

import numpy as np
import pytest

from research.data import pipeline, sbd, validate, voc
from research.fileio import atomic_path
from tests.research.data import sbd_files, voc_files
from tests.research.data.sbd_files import BROKEN_MAT, HEIGHT, WIDTH, TRAIN_AUG


@pytest.fixture
def world(tmp_path):
    return sbd_files.make_tiny_world(tmp_path)


@pytest.fixture
def prepared(world):
    voc_root, sbd_root, masks = world
    sbd.prepare_train_aug(sbd_root, voc_root, progress=False, log=lambda line: None)
    return world


# ---------------------------------------------------------------- reading .mat masks

def test_read_sbd_mask_returns_exact_indices(tmp_path):
    mask = np.random.default_rng(0).integers(0, 21, (HEIGHT, WIDTH)).astype(np.uint8)
    mask[0, :4] = voc.IGNORE_LABEL                       # 255 is accepted (the ignore label)
    path = str(tmp_path / "x.mat")
    sbd_files.write_mat(path, mask)
    got = sbd.read_sbd_mask(path, expected_size=(WIDTH, HEIGHT))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, mask)
    # whole numbers in another dtype (MATLAB double), uncompressed: the same labels
    sbd_files.write_mat(path, mask.astype(np.float64), compress=False)
    np.testing.assert_array_equal(sbd.read_sbd_mask(path), mask)


@pytest.mark.parametrize("name", sorted(BROKEN_MAT))
def test_bad_mat_files_get_named_errors(tmp_path, name):
    breaker, kind, phrase = BROKEN_MAT[name]
    path = str(tmp_path / "2008_000123.mat")
    sbd_files.write_mat(path, np.zeros((HEIGHT, WIDTH), np.uint8))
    breaker(path)
    with pytest.raises(voc.BadFileError) as error:
        sbd.read_sbd_mask(path, expected_size=(WIDTH, HEIGHT))
    assert error.value.path == path and error.value.kind == kind
    assert str(error.value).startswith(path + ": ") and phrase in str(error.value)


def test_dataset_dir_takes_either_folder_and_hints_one_level_too_high(world, tmp_path):
    _, sbd_root, _ = world
    dataset = os.path.join(sbd_root, "dataset")
    assert sbd.dataset_dir(sbd_root) == dataset and sbd.dataset_dir(dataset) == dataset
    with pytest.raises(FileNotFoundError, match=f"did you mean {sbd_root}\\?"):
        sbd.dataset_dir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no dataset/cls/ folder"):
        sbd.dataset_dir(tmp_path / "VOCdevkit")


# ---------------------------------------------------------------- prepare_train_aug

def test_train_aug_ids():
    assert sbd.train_aug_ids(["a", "e", "f"], ["c", "g"], ["a", "b"], ["c", "d"]) == TRAIN_AUG


def test_prepare_writes_masks_and_the_list(world):
    voc_root, sbd_root, sbd_masks = world
    lines = []
    result = sbd.prepare_train_aug(sbd_root, voc_root, progress=False, log=lines.append)
    assert result.ids == TRAIN_AUG and (result.from_voc, result.from_sbd, result.already_done) == (2, 3, 0)
    assert voc.read_id_list(voc.split_file(voc_root, "train_aug")) == TRAIN_AUG
    for image_id in TRAIN_AUG:
        written = voc.read_mask(voc.mask_path(voc_root, image_id, "train_aug"))
        if image_id in sbd_files.VOC_TRAIN:     # VOC's own mask wins: it has the 255 band
            np.testing.assert_array_equal(written, voc.read_mask(voc.mask_path(voc_root, image_id)))
            assert (written == voc.IGNORE_LABEL).any()
        else:
            np.testing.assert_array_equal(written, sbd_masks[image_id])
    assert "train_aug: 5 ids" in lines[0]
    assert "not the 10,582" in lines[1]
    # nothing of a VOC val id, nothing left behind
    assert sorted(os.listdir(os.path.join(voc_root, voc.AUG_MASK_FOLDER))) == [i + ".png" for i in TRAIN_AUG]


def test_prepare_is_resumable_after_a_kill(world, monkeypatch):
    voc_root, sbd_root, _ = world
    aug = os.path.join(voc_root, voc.AUG_MASK_FOLDER)
    real_write = voc.write_mask

    def die_on_e(path, mask):
        if os.path.basename(path) == "e.png":
            with atomic_path(path):             # killed in the middle of a write
                raise KeyboardInterrupt
        real_write(path, mask)

    monkeypatch.setattr(voc, "write_mask", die_on_e)
    with pytest.raises(KeyboardInterrupt):
        sbd.prepare_train_aug(sbd_root, voc_root, progress=False, log=lambda line: None)
    assert not os.path.exists(voc.split_file(voc_root, "train_aug"))   # no list of missing masks
    assert not os.path.exists(voc.mask_path(voc_root, "e", "train_aug"))
    voc_files.write_bytes(os.path.join(aug, ".e.x1y2z3.tmp.png"), b"half a png")   # a SIGKILL's leftover
    monkeypatch.setattr(voc, "write_mask", real_write)
    result = sbd.prepare_train_aug(sbd_root, voc_root, progress=False, log=lambda line: None)
    # the masks begun before the kill are whole; the rest are made now, e among them
    assert result.ids == TRAIN_AUG and result.from_sbd >= 1
    assert result.already_done + result.from_voc + result.from_sbd == 5
    assert sorted(os.listdir(aug)) == [i + ".png" for i in TRAIN_AUG]
    again = sbd.prepare_train_aug(sbd_root, voc_root, progress=False, log=lambda line: None)
    assert again.already_done == 5 and again.from_voc + again.from_sbd == 0


def test_prepare_names_bad_files_and_writes_no_list(world):
    voc_root, sbd_root, _ = world
    dataset = sbd.dataset_dir(sbd_root)
    BROKEN_MAT["values_above_20"][0](sbd.cls_path(dataset, "e"))
    BROKEN_MAT["truncated"][0](sbd.cls_path(dataset, "g"))
    with pytest.raises(sbd.PrepareError) as error:
        sbd.prepare_train_aug(sbd_root, voc_root, progress=False, log=lambda line: None)
    message = str(error.value)
    assert "2 train_aug mask(s)" in message and "train_aug.txt not written" in message
    assert sbd.cls_path(dataset, "e") + ": values 21, 100" in message
    assert sbd.cls_path(dataset, "g") + ": file is truncated" in message
    assert not os.path.exists(voc.split_file(voc_root, "train_aug"))
    lines = []
    result = sbd.prepare_train_aug(sbd_root, voc_root, skip_bad=True, progress=False, log=lines.append)
    assert result.ids == ["a", "b", "f"] and set(result.skipped) == {sbd.cls_path(dataset, i) for i in "eg"}
    assert voc.read_split(voc_root, "train_aug") == ["a", "b", "f"]
    assert sum("left out of train_aug" in line for line in lines) == 2


def test_command_line(world, capsys):
    voc_root, sbd_root, _ = world
    assert sbd.main(["--sbd-root", sbd_root, "--voc-root", voc_root, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "train_aug: 5 ids" in out and "warning: train_aug has 5 ids, not the 10,582" in out
    assert f"research.data.validate {voc_root} --subset train_aug" in out
    # the folder above each root: a hint, exit status 1, no traceback
    data = os.path.dirname(sbd_root)
    assert sbd.main(["--sbd-root", sbd_root, "--voc-root", data, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"did you mean {voc_root}?" in err and "Traceback" not in err
    assert sbd.main(["--sbd-root", data, "--voc-root", voc_root, "--no-progress"]) == 1
    assert f"did you mean {sbd_root}?" in capsys.readouterr().err


# ---------------------------------------------------------------- train_aug in the project

def test_make_dataset_reads_train_aug_masks(prepared):
    voc_root, _, sbd_masks = prepared
    assert pipeline.dataset_size(voc_root, "train_aug") == 5
    dataset = pipeline.make_dataset(voc_root, "train_aug", 5, (HEIGHT, WIDTH))
    _, labels = next(iter(dataset))
    for image_id, label in zip(TRAIN_AUG, labels.numpy(), strict=True):
        expected = (voc.read_mask(voc.mask_path(voc_root, image_id)) if image_id in sbd_files.VOC_TRAIN
                    else sbd_masks[image_id])
        np.testing.assert_array_equal(label, expected)


def test_a_val_id_in_a_train_list_is_an_error_never_a_leak(prepared):
    voc_root = prepared[0]
    voc_files.write_split(voc_root, "train_aug", TRAIN_AUG + ["c"])
    with pytest.raises(ValueError, match=r"train_aug\.txt: 1 id\(s\) of .*val\.txt are in this train list, "
                                         r"e\.g\. \['c'\]; training on them would leak"):
        pipeline.make_dataset(voc_root, "train_aug", 2, 32)
    report = validate.validate_voc(voc_root, progress=False)
    assert [p.message for p in report.problems if p.kind == "split_overlap"] == [
        f"{voc.split_file(voc_root, 'val')}: 1 id(s) are also in train_aug.txt, e.g. ['c']"]
    voc_files.write_split(voc_root, "train", ["a", "b", "d"])          # the same for train.txt
    with pytest.raises(ValueError, match=r"train\.txt: 1 id\(s\) of .* e\.g\. \['d'\]"):
        voc.read_split(voc_root, "train")


def test_missing_train_aug_says_how_to_make_it(world):
    with pytest.raises(FileNotFoundError, match=r"train_aug\.txt does not exist; scripts/prepare_sbd\.py"):
        voc.read_split(world[0], "train_aug")


def test_validator_checks_train_aug_with_its_own_masks(prepared, capsys):
    voc_root = prepared[0]
    report = validate.validate_voc(voc_root, progress=False)
    assert report.ok and report.split_sizes["train_aug"] == 5
    assert report.samples_checked == 4 + 5          # a, b checked with both of their masks
    voc_files.BROKEN["mask_values"][0](voc_root, "a")      # damages SegmentationClass/a.png only
    report = validate.validate_voc(voc_root, subsets=["train_aug"], progress=False)
    assert report.ok and report.samples_checked == 5
    voc_files.write_bytes(voc.mask_path(voc_root, "f", "train_aug"), b"")
    assert validate.main([voc_root, "--subset", "train_aug", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert f"{voc.mask_path(voc_root, 'f', 'train_aug')}: file is empty" in out
