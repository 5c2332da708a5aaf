"""research.data.validate on clean and broken datasets, VOC and folder layouts."""
import os

import numpy as np
import pytest

from research.data import validate, voc
from tests.research.data import folder_files, voc_files


def test_clean_dataset_passes_and_counts_pixels(tmp_path):
    samples = voc_files.make_tiny_voc(str(tmp_path), ["a", "b", "c"], ["d", "e"])
    report = validate.validate_voc(tmp_path, progress=False)
    assert report.ok, report.format()
    assert report.samples_checked == 5
    assert report.split_sizes == {"train": 3, "val": 2, "val half": 1, "test half": 1}
    masks = np.stack([mask for _, mask in samples.values()])
    expected = np.bincount(masks.ravel(), minlength=256)
    np.testing.assert_array_equal(report.class_pixels, expected[:voc.NUM_CLASSES])
    assert report.ignore_pixels == expected[255]
    assert "samples checked: 5, problems: 0" in report.format()


def test_every_broken_file_is_reported_by_kind_and_path(tmp_path):
    ids = [f"bad {name}" for name in voc_files.BROKEN]     # ids with spaces, too
    voc_files.make_tiny_voc(str(tmp_path), ids + ["good_ü"], ["v"])
    for image_id, (breaker, _, _, _) in zip(ids, voc_files.BROKEN.values(), strict=True):
        breaker(str(tmp_path), image_id)
    report = validate.validate_voc(tmp_path, progress=False)
    found = {(p.kind, p.path) for p in report.problems}
    expected = {(kind, path_of(str(tmp_path), image_id))
                for image_id, (_, path_of, kind, _) in zip(ids, voc_files.BROKEN.values(), strict=True)}
    assert found == expected
    assert report.samples_checked == len(ids) + 2
    text = report.format()
    for image_id, (_, path_of, kind, phrase) in zip(ids, voc_files.BROKEN.values(), strict=True):
        assert f"{kind} (" in text and phrase in text and path_of(str(tmp_path), image_id) in text


def test_split_list_problems(tmp_path):
    root = str(tmp_path)
    voc_files.make_tiny_voc(root, ["a", "b"], ["b", "c"])
    voc_files.write_split(root, "trainval", ["a", "b", "x"])
    report = validate.validate_voc(root, progress=False)
    kinds = {p.kind: p for p in report.problems}
    assert "split_overlap" in kinds and "1 id(s) are also in train.txt" in kinds["split_overlap"].message
    assert "split_mismatch" in kinds and "1 id(s) missing (e.g. ['c'])" in kinds["split_mismatch"].message
    # x is listed in trainval.txt but has no files
    assert ("missing", voc.image_path(root, "x")) in {(p.kind, p.path) for p in report.problems}


def test_missing_and_duplicated_lists(tmp_path):
    root = str(tmp_path)
    voc_files.make_tiny_voc(root, ["a", "a"], ["c"])
    (tmp_path / "ImageSets" / "Segmentation" / "val.txt").unlink()
    report = validate.validate_voc(root, progress=False)
    messages = [p.message for p in report.problems if p.kind == "split_list"]
    assert any("train.txt: duplicate ids" in m for m in messages)
    assert any("val.txt does not exist" in m for m in messages)


def test_missing_root_is_a_problem_not_a_crash(tmp_path):
    report = validate.validate_voc(tmp_path / "nope", progress=False)
    assert [p.kind for p in report.problems] == ["missing_root"]


def test_subset_selection_and_unknown_subset(tmp_path):
    voc_files.make_tiny_voc(str(tmp_path), ["a", "b", "c"], ["d", "e"])
    voc_files.BROKEN["mask_values"][0](str(tmp_path), "a")
    assert validate.validate_voc(tmp_path, subsets=["val"], progress=False).ok
    report = validate.validate_voc(tmp_path, subsets=["train"], progress=False)
    assert report.samples_checked == 3 and not report.ok
    with pytest.raises(ValueError, match="unknown subset"):
        validate.validate_voc(tmp_path, subsets=["bogus"], progress=False)


def test_command_line_exit_status(tmp_path, capsys):
    voc_files.make_tiny_voc(str(tmp_path), ["a"], ["b"])
    assert validate.main([str(tmp_path), "--no-progress"]) == 0
    assert "OK" in capsys.readouterr().out
    voc_files.BROKEN["rgb_mask"][0](str(tmp_path), "b")
    assert validate.main([str(tmp_path), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "FAILED: 1 problem(s)" in out and voc.mask_path(str(tmp_path), "b") in out


# ---------------------------------------------------------------- folder datasets

def test_a_clean_folder_dataset_passes(tmp_path, capsys):
    samples = folder_files.make_folder_dataset(str(tmp_path))
    report = validate.validate(str(tmp_path), progress=False)
    assert report.ok and report.layout == "folder" and not report.warnings, report.format()
    assert report.split_sizes == {"train": 3, "val": 2, "val half": 1, "test half": 1}
    masks = np.concatenate([mask.ravel() for _, mask in samples.values()])
    np.testing.assert_array_equal(report.class_pixels, np.bincount(masks, minlength=3))
    assert validate.main([str(tmp_path), "--no-progress"]) == 0
    assert "folder dataset" in capsys.readouterr().out


def test_lists_that_leave_a_subset_empty_are_problems(tmp_path):
    # What training would refuse: no training ids, or one val id for two halves.
    root = str(tmp_path)
    folder_files.make_folder_dataset(root, train=("a", "b"), val=("c",))
    folder_files.write_split(root, "train", [])
    splits = os.path.join(root, "splits")
    report = validate.validate(root, progress=False)
    assert [(p.path, p.message) for p in report.problems] == [
        (os.path.join(splits, "train.txt"), os.path.join(splits, "train.txt") + ": lists no ids")]
    assert [w for w in report.warnings if w.startswith(os.path.join(splits, "val.txt") + ": 1 id; val and test "
                                                       "are its two halves")]


def test_a_folder_dataset_without_classes_json_is_told_so(tmp_path):
    folder_files.make_folder_dataset(str(tmp_path))
    os.remove(tmp_path / "classes.json")
    report = validate.validate(str(tmp_path), progress=False)
    assert not report.ok and report.layout == "folder"
    assert "classes.json does not exist" in report.format() and "ImageSets" not in report.format()


def test_a_value_outside_the_classes_fails_with_one_line_naming_file_and_value(tmp_path, capsys):
    samples = folder_files.make_folder_dataset(str(tmp_path))
    image, mask = samples["b"]
    mask = mask.copy()
    mask[0, 0] = 7
    folder_files.write_sample(str(tmp_path), "b", image, mask)
    assert validate.main([str(tmp_path), "--no-progress"]) == 1
    lines = capsys.readouterr().out.splitlines()
    mask_file = os.path.join(str(tmp_path), "masks", "b.png")
    [line] = [line for line in lines if mask_file in line]
    assert "values 7 on 1 pixel(s) are neither a class index (0-2)" in line and "hint:" in line
    assert "FAILED: 1 problem(s)" in lines[-1]


def test_binary_masks_saved_as_0_255_get_the_warning(tmp_path, capsys):
    root = str(tmp_path)
    folder_files.make_folder_dataset(root, names=("background", "object"), train=("a", "b"), val=("c", "d"))
    for image_id in ("a", "b", "c", "d"):
        mask = np.zeros((24, 32), np.uint8)
        mask[:, 8:] = 255                   # the object, saved as 255 instead of 1
        folder_files.write_sample(root, image_id, np.zeros((24, 32, 3), np.uint8), mask)
    assert validate.main([root, "--no-progress"]) == 0      # each file is valid on its own
    out = capsys.readouterr().out
    assert "warning: 1 class(es) never appear in the train split: 1 (object)" in out
    assert "most labelled pixels are ignored" in out and "a binary mask saved as 0/255?" in out
    assert out.splitlines()[-1] == "OK (2 warning(s))"


def test_folder_split_and_file_problems(tmp_path):
    root = str(tmp_path)
    folder_files.make_folder_dataset(root, train=("a", "b"), val=("b", "c"))
    folder_files.write_split(root, "test", ["c", "ghost"])
    report = validate.validate_folder(root, progress=False)
    problems = {(p.kind, p.path) for p in report.problems}
    splits = os.path.join(root, "splits")
    assert ("split_overlap", os.path.join(splits, "val.txt")) in problems        # b: train and val
    assert ("split_overlap", os.path.join(splits, "test.txt")) in problems       # c: val and test
    assert ("missing", os.path.join(root, "images", "ghost.jpg")) in problems    # listed, no files
    folder_files.write_json(os.path.join(root, "classes.json"), {"names": ["x"], "ignore_label": 0})
    assert [p.kind for p in validate.validate_folder(root, progress=False).problems] == ["classes"]
    assert [p.kind for p in validate.validate(str(tmp_path / "none"), progress=False).problems] == ["missing_root"]
