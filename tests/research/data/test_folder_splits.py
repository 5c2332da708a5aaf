"""research.data.folder_splits: split lists and classes.json for one's own photos and masks."""
import json
import os

import pytest

from research.data import folder, folder_splits, validate
from tests.research.data import folder_files


def photos_and_masks(root, count=10, num_classes=3):
    """images/<id>.png or .jpg and masks/<id>.png for ids s00..s<count-1>; no lists, no classes.json."""
    for index in range(count):
        image, mask = folder_files.sample(num_classes, seed=index)
        folder_files.write_sample(root, f"s{index:02d}", image, mask,
                                  image_format="JPEG" if index % 2 else "PNG")
    return sorted(f"s{index:02d}" for index in range(count))


def lists(root):
    return {split: open(os.path.join(root, "splits", split + ".txt")).read().split()
            for split in folder_splits.SPLITS if os.path.exists(os.path.join(root, "splits", split + ".txt"))}


def test_writes_lists_and_classes_a_folder_dataset_reads_and_validates(tmp_path, capsys):
    ids = photos_and_masks(tmp_path)
    assert folder_splits.main([str(tmp_path), "--classes", "background, road,obstacle",
                               "--val-fraction", "0.2", "--test-fraction", "0.1"]) == 0
    written = lists(tmp_path)
    assert [len(written[s]) for s in ("train", "val", "test")] == [7, 2, 1]
    assert sorted(sum(written.values(), [])) == ids                        # each id once
    assert all(written[s] == sorted(written[s]) for s in written)
    with open(folder.classes_file(tmp_path)) as f:
        assert json.load(f) == {"names": ["background", "road", "obstacle"], "ignore_label": 255}
    dataset = folder.FolderDataset(tmp_path)
    assert dataset.split("train") == written["train"] and dataset.split("test") == written["test"]
    report = validate.validate(str(tmp_path), progress=False)
    assert report.ok, report.format()
    assert "train 7, val 2, test 1 ids" in capsys.readouterr().out


def test_the_same_seed_gives_the_same_lists_and_another_seed_others(tmp_path):
    ids = [f"id{i:03d}" for i in range(50)]
    first = folder_splits.split_ids(ids, 0.2, seed=3)
    assert first == folder_splits.split_ids(ids, 0.2, seed=3)
    assert first["val"] != folder_splits.split_ids(ids, 0.2, seed=4)["val"]
    assert (len(first["train"]), len(first["val"]), first["test"]) == (40, 10, [])
    # Without a test list val and test are val.txt's halves: val.txt gets 2 ids at least.
    assert [len(folder_splits.split_ids(ids[:n], 0.2)["val"]) for n in (3, 7, 10, 20)] == [2, 2, 2, 4]
    assert len(folder_splits.split_ids(ids[:5], 0.1, 0.2)["val"]) == 1     # a test list: 1 is enough


@pytest.mark.parametrize("val,test", [(0.0, 0.0), (1.0, 0.0), (0.5, 0.5), (0.2, -0.1)])
def test_fractions_out_of_range_are_refused(val, test):
    with pytest.raises(ValueError, match="--val-fraction must be"):
        folder_splits.split_ids(["a", "b", "c"], val, test)


def test_too_few_ids_for_a_training_image_are_refused():
    with pytest.raises(ValueError, match="leave no training image"):
        folder_splits.split_ids(["a", "b"], 0.4, 0.4)


def test_unpaired_and_odd_files_are_refused_naming_them_before_anything_is_written(tmp_path, capsys):
    photos_and_masks(tmp_path, count=6)
    os.remove(tmp_path / "masks" / "s01.png")                                 # photo without mask
    os.remove(tmp_path / "images" / "s02.png")                                # mask without photo
    (tmp_path / "images" / "s03.png").write_bytes((tmp_path / "images" / "s04.png").read_bytes())  # s03 twice
    (tmp_path / "images" / "notes.txt").write_text("not a photo")
    (tmp_path / "masks" / "s05.jpg").write_bytes(b"")
    assert folder_splits.main([str(tmp_path), "--classes", "a,b,c"]) == 1
    err = capsys.readouterr().err
    for phrase in (os.path.join("images", "s01.jpg") + ": no mask", os.path.join("masks", "s02.png") + ": no photo",
                   "a second photo of id 's03'", os.path.join("images", "notes.txt") + ": not a photo",
                   os.path.join("masks", "s05.jpg") + ": not a mask", "--skip-unpaired"):
        assert phrase in err, phrase
    assert "Traceback" not in err
    assert not (tmp_path / "splits").exists() and not (tmp_path / "classes.json").exists()

    assert folder_splits.main([str(tmp_path), "--classes", "a,b,c", "--skip-unpaired"]) == 0
    assert sorted(sum(lists(tmp_path).values(), [])) == ["s00", "s04", "s05"]  # s03: which photo?
    assert "left out:" in capsys.readouterr().out


def test_existing_lists_are_kept_unless_overwrite_and_no_stale_test_list_stays(tmp_path, capsys):
    photos_and_masks(tmp_path)
    assert folder_splits.main([str(tmp_path), "--classes", "a,b,c", "--test-fraction", "0.2"]) == 0
    before = lists(tmp_path)
    assert folder_splits.main([str(tmp_path), "--seed", "5"]) == 1
    assert "exists already: --overwrite" in capsys.readouterr().err and lists(tmp_path) == before
    assert folder_splits.main([str(tmp_path), "--seed", "5", "--overwrite"]) == 0
    assert set(lists(tmp_path)) == {"train", "val"}                       # test.txt removed
    assert folder.FolderDataset(tmp_path).split("train") == lists(tmp_path)["train"]


def test_classes_must_be_given_once_and_agree_with_an_existing_file(tmp_path, capsys):
    photos_and_masks(tmp_path)
    assert folder_splits.main([str(tmp_path)]) == 1
    assert "classes.json does not exist: give the class names" in capsys.readouterr().err
    assert folder_splits.main([str(tmp_path), "--classes", "a,a,b"]) == 1
    assert "class names must be distinct" in capsys.readouterr().err
    assert folder_splits.main([str(tmp_path), "--classes", "a,b,c", "--ignore-label", "2"]) == 1
    assert '"ignore_label" must be an integer from 3' in capsys.readouterr().err
    assert not (tmp_path / "splits").exists()
    folder_files.write_json(str(folder.classes_file(tmp_path)), {"names": ["sky", "road", "car"]})
    assert folder_splits.main([str(tmp_path), "--classes", "a,b,c"]) == 1
    assert "differ from --classes" in capsys.readouterr().err
    assert folder_splits.main([str(tmp_path)]) == 0                        # the file is kept
    assert folder.read_classes(tmp_path).names == ("sky", "road", "car")


def test_ids_a_list_cannot_hold_and_missing_folders_are_named(tmp_path, capsys):
    assert folder_splits.main([str(tmp_path), "--classes", "a,b"]) == 1
    assert os.path.join(str(tmp_path), "images") + " does not exist" in capsys.readouterr().err
    image, mask = folder_files.sample(2, seed=0)
    for stem in ("s0 ", "back\\slash", "line\u2028break", "ok"):
        folder_files.write_sample(str(tmp_path), stem, image, mask)
    ids, problems = folder_splits.paired_ids(str(tmp_path))
    assert ids == ["ok"] and len(problems) == 3
    assert ["starts or ends with a space" in p for p in problems].count(True) == 1
    assert ["a line break, a slash or a backslash" in p for p in problems].count(True) == 2


def test_an_ignore_label_that_disagrees_with_classes_json_is_refused(tmp_path, capsys):
    photos_and_masks(tmp_path)
    assert folder_splits.main([str(tmp_path), "--classes", "a,b,c", "--ignore-label", "9"]) == 0
    assert folder.read_classes(tmp_path).ignore_label == 9
    assert folder_splits.main([str(tmp_path), "--ignore-label", "255", "--overwrite"]) == 1
    assert "its ignore_label 9 differs from --ignore-label 255" in capsys.readouterr().err
