"""Converters into the folder layout: Cityscapes (labelIds -> trainIds), ADE20K (0 -> 255,
1..150 -> 0..149) and a VOC tree, each on a tiny tree written in the dataset's real layout."""
import os

import numpy as np
import pytest
from PIL import Image

from research.data import ade20k, cityscapes, datasets, folder, folder_writer, pipeline, validate, voc


def save(path, array, format="PNG"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path, format=format)


def photo(seed, height=16, width=32):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# ---------------------------------------------------------------- Cityscapes

# labelIds and the trainIds they must become (official table: road 7 -> 0, sidewalk 8 -> 1,
# building 11 -> 2, car 26 -> 13, bicycle 33 -> 18; unlabeled 0, ground 6, parking 9 -> 255).
LABEL_IDS = np.array([7, 8, 11, 26, 33, 0, 6, 9], np.uint8)
TRAIN_IDS = np.array([0, 1, 2, 13, 18, 255, 255, 255], np.uint8)


def write_cityscapes(root):
    """leftImg8bit/{train,val}/<city>/<x>_leftImg8bit.png + gtFine/.../<x>_gtFine_labelIds.png."""
    files = {}
    for n, (split, city, frame) in enumerate([("train", "aachen", "000000_000019"), ("train", "bochum", "000001_000002"),
                                              ("val", "frankfurt", "000000_000294")]):
        stem = f"{city}_{frame}"
        label_ids = np.tile(LABEL_IDS, (16, 4))                  # 16 x 32, every test value
        save(os.path.join(root, "leftImg8bit", split, city, stem + "_leftImg8bit.png"), photo(n))
        save(os.path.join(root, "gtFine", split, city, stem + "_gtFine_labelIds.png"), label_ids)
        save(os.path.join(root, "gtFine", split, city, stem + "_gtFine_color.png"), photo(9))  # ignored
        files[stem] = (split, os.path.join(root, "leftImg8bit", split, city, stem + "_leftImg8bit.png"))
    return files


def test_cityscapes_label_ids_become_the_19_train_ids(tmp_path):
    np.testing.assert_array_equal(cityscapes.to_train_ids(LABEL_IDS), TRAIN_IDS)
    assert len(cityscapes.CLASS_NAMES) == 19 and cityscapes.CLASS_NAMES[13] == "car"
    assert (cityscapes.LABEL_TO_TRAIN[34:] == 255).all()


def test_prepare_cityscapes_writes_a_folder_dataset(tmp_path):
    files = write_cityscapes(str(tmp_path / "cs"))
    out = str(tmp_path / "out")
    result = cityscapes.prepare_cityscapes(str(tmp_path / "cs"), out, progress=False)
    assert result.split_sizes == {"train": 2, "val": 1} and result.converted == 3
    data = folder.FolderDataset(out)
    assert data.class_names == cityscapes.CLASS_NAMES and data.ignore_label == 255
    np.testing.assert_array_equal(data.palette[[0, 13, 18]], [[128, 64, 128], [0, 0, 142], [119, 11, 32]])
    assert data.split("train") == ["aachen_000000_000019", "bochum_000001_000002"]
    for stem, (split, source) in files.items():
        image, mask = data.read_sample(data.image_path(stem), data.mask_path(stem))
        np.testing.assert_array_equal(mask, np.tile(TRAIN_IDS, (16, 4)))
        with open(source, "rb") as a, open(data.image_path(stem), "rb") as b:
            assert a.read() == b.read()                          # photos copied unchanged
    assert validate.validate(out, progress=False).ok
    # A rerun keeps what is there.
    assert cityscapes.prepare_cityscapes(str(tmp_path / "cs"), out, progress=False).kept == 3
    assert "wrote the folder dataset" in folder_writer.summary(result)


def test_cityscapes_bad_files_and_roots(tmp_path):
    root = str(tmp_path / "cs")
    write_cityscapes(root)
    os.remove(os.path.join(root, "gtFine", "val", "frankfurt", "frankfurt_000000_000294_gtFine_labelIds.png"))
    with pytest.raises(folder_writer.ConversionError, match=r"(?s)1 sample\(s\) could not be converted .*"
                                                            r"frankfurt_000000_000294_gtFine_labelIds.png"):
        cityscapes.prepare_cityscapes(root, str(tmp_path / "out"), progress=False)
    assert not os.path.exists(str(tmp_path / "out" / "splits" / "train.txt"))   # nothing listed
    result = cityscapes.prepare_cityscapes(root, str(tmp_path / "out"), skip_bad=True, progress=False)
    assert result.split_sizes == {"train": 2, "val": 0} and len(result.skipped) == 1
    with pytest.raises(FileNotFoundError, match="leftImg8bit: no leftImg8bit/ folder"):
        cityscapes.find_samples(str(tmp_path / "cs" / "leftImg8bit"))


def test_a_truncated_photo_is_refused_and_stray_files_are_passed_over(tmp_path):
    root = str(tmp_path / "cs")
    files = write_cityscapes(root)
    with open(os.path.join(root, "leftImg8bit", "train", ".DS_Store"), "wb") as f:   # not a city folder
        f.write(b"\0")
    split, path = files["bochum_000001_000002"]
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:len(data) * 6 // 10])                     # the header reads, the pixels do not
    with pytest.raises(folder_writer.ConversionError, match="bochum_000001_000002_leftImg8bit.png"):
        cityscapes.prepare_cityscapes(root, str(tmp_path / "out"), progress=False)


# ---------------------------------------------------------------- ADE20K

def test_ade20k_labels_shift_and_other_becomes_ignore(tmp_path):
    np.testing.assert_array_equal(ade20k.shift_labels(np.array([0, 1, 2, 150], np.uint8)), [255, 0, 1, 149])
    assert len(ade20k.CLASS_NAMES) == 150 and ade20k.CLASS_NAMES[:3] == ("wall", "building", "sky")


def write_ade(root, values=(0, 1, 150)):
    for n, (split, stem) in enumerate([("training", "ADE_train_00000001"), ("training", "ADE_train_00000002"),
                                       ("validation", "ADE_val_00000001")]):
        save(os.path.join(root, "images", split, stem + ".jpg"), photo(n), format="JPEG")
        save(os.path.join(root, "annotations", split, stem + ".png"), np.resize(np.array(values, np.uint8), (16, 32)))


def test_prepare_ade20k_writes_a_folder_dataset(tmp_path):
    root = str(tmp_path / "ADEChallengeData2016")
    write_ade(root)
    out = str(tmp_path / "out")
    result = ade20k.prepare_ade20k(root, out, progress=False)
    assert result.split_sizes == {"train": 2, "val": 1}
    data = folder.FolderDataset(out)
    assert data.num_classes == 150 and data.class_names[149] == "flag"
    mask = data.read_sample(data.image_path("ADE_val_00000001"), data.mask_path("ADE_val_00000001"))[1]
    np.testing.assert_array_equal(mask, np.resize(np.array([255, 0, 149], np.uint8), (16, 32)))
    assert data.image_path("ADE_train_00000001").endswith(".jpg")
    with pytest.raises(FileNotFoundError, match=r"did you mean .*ADEChallengeData2016\?"):
        ade20k.prepare_ade20k(str(tmp_path), str(tmp_path / "other"), progress=False)


def test_ade20k_values_above_150_are_refused(tmp_path):
    root = str(tmp_path / "ade")
    write_ade(root, values=(0, 151))
    with pytest.raises(folder_writer.ConversionError, match="values 151 are not ADE20K SceneParsing labels"):
        ade20k.prepare_ade20k(root, str(tmp_path / "out"), progress=False)


# ---------------------------------------------------------------- a VOC tree

def test_a_voc_tree_as_a_folder_dataset_gives_the_same_batches(tmp_path, synthetic_voc_root):
    out = str(tmp_path / "folder")
    folder_writer.voc_to_folder(synthetic_voc_root, out)
    data = datasets.open_root(out)
    assert data.kind == "folder" and data.class_names == voc.CLASS_NAMES
    for subset in ("train", "val", "test"):
        assert data.split(subset) == voc.read_split(synthetic_voc_root, subset)

    def batches(source):
        return list(pipeline.make_dataset(source, "train", 4, 32, augmentation=True, resize_to_before_crop=40,
                                          shuffle=True, seed=3, epochs=1))

    # One reader, two layouts: the same pixels, augmentation and order.
    for (x, y), (x2, y2) in zip(batches(synthetic_voc_root), batches(data), strict=True):
        np.testing.assert_array_equal(x.numpy(), x2.numpy())
        np.testing.assert_array_equal(y.numpy(), y2.numpy())
    assert pipeline.dataset_size(data, "val") == pipeline.dataset_size(synthetic_voc_root, "val")


def test_the_converters_command_line(tmp_path, capsys):
    write_cityscapes(str(tmp_path / "cs"))
    arguments = ["--cityscapes-root", str(tmp_path / "cs"), "--out", str(tmp_path / "out"), "--no-progress"]
    assert folder_writer.converter_main(arguments, "doc", "--cityscapes-root", "root",
                                        cityscapes.prepare_cityscapes) == 0
    out = capsys.readouterr().out
    assert "train 2, val 1 (3 converted, 0 already there)" in out
    assert f"python -m research.data.validate {tmp_path / 'out'}" in out
    arguments[1] = str(tmp_path / "nothing")
    assert folder_writer.converter_main(arguments, "doc", "--cityscapes-root", "root",
                                        cityscapes.prepare_cityscapes) == 1
    assert capsys.readouterr().err.startswith("error: ")
