"""research.data.validate on clean and broken datasets."""
import numpy as np
import pytest

from research.data import validate, voc
from tests.research.data import voc_files


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
    for image_id, (breaker, _, _, _) in zip(ids, voc_files.BROKEN.values()):
        breaker(str(tmp_path), image_id)
    report = validate.validate_voc(tmp_path, progress=False)
    found = {(p.kind, p.path) for p in report.problems}
    expected = {(kind, path_of(str(tmp_path), image_id))
                for image_id, (_, path_of, kind, _) in zip(ids, voc_files.BROKEN.values())}
    assert found == expected
    assert report.samples_checked == len(ids) + 2
    text = report.format()
    for image_id, (_, path_of, kind, phrase) in zip(ids, voc_files.BROKEN.values()):
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
