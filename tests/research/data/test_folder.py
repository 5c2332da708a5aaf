"""research.data.folder and research.data.datasets: classes.json, masks, splits, the one
interface VOC and folder datasets share, and `dataset_of(config)`."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from research import config as config_lib
from research import configs
from research.data import datasets, folder, voc
from tests.research.data import folder_files, voc_files


def dataset(tmp_path, **kwargs):
    samples = folder_files.make_folder_dataset(str(tmp_path), **kwargs)
    return folder.FolderDataset(str(tmp_path)), samples


# ---------------------------------------------------------------- classes.json

def test_classes_json_names_ignore_label_and_palette(tmp_path):
    data, _ = dataset(tmp_path, ignore_label=200, palette=[[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    assert data.class_names == ("background", "thing", "other") and data.num_classes == 3
    assert data.ignore_label == 200 and data.kind == "folder"
    np.testing.assert_array_equal(data.palette[:3], [[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    np.testing.assert_array_equal(data.palette[3:], voc.VOC_PALETTE[3:])   # 255 keeps VOC's outline colour
    plain, _ = dataset(tmp_path / "plain")
    assert plain.ignore_label == 255
    np.testing.assert_array_equal(plain.palette, voc.VOC_PALETTE)


@pytest.mark.parametrize("classes, phrase", [
    ({"names": []}, "non-empty list of class names"),
    ({"names": ["a", "a"]}, "repeated: ['a']"),
    ({"names": ["a", "b"], "ignore_label": 1}, "from 2 (the number of classes"),
    ({"names": ["a", "b"], "palette": [[0, 0, 0]]}, "list of 2 [r, g, b] colours"),
    ({"names": ["a", "b"], "palette": [[0, 0, 0], [0, 0, 0]]}, "must be distinct"),
    ({"names": ["a"], "pallete": []}, "unknown key(s) 'pallete'"),
])
def test_a_bad_classes_json_is_refused_naming_the_file(tmp_path, classes, phrase):
    folder_files.write_json(str(tmp_path / "classes.json"), classes)
    with pytest.raises(ValueError) as error:
        folder.read_classes(tmp_path)
    assert str(error.value).startswith(str(tmp_path / "classes.json") + ":") and phrase in str(error.value)


def test_a_root_without_classes_json_says_what_it_is(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        folder.FolderDataset(tmp_path / "nope")
    voc_files.make_tiny_voc(str(tmp_path / "voc"), ["a"], ["b"])
    with pytest.raises(FileNotFoundError, match="is a Pascal VOC dataset"):
        folder.FolderDataset(tmp_path / "voc")
    folder_files.make_folder_dataset(str(tmp_path / "above" / "mine"))
    with pytest.raises(FileNotFoundError, match=r"classes.json does not exist.*did you mean .*mine\?"):
        folder.FolderDataset(tmp_path / "above")


# ---------------------------------------------------------------- masks

def test_index_masks_in_every_mode_read_as_class_indices(tmp_path):
    data, samples = dataset(tmp_path)
    image, mask = samples["a"]
    for mode in ("L", "P"):
        folder_files.write_sample(str(tmp_path), "a", image, mask, mask_mode=mode)
        got_image, got_mask = data.read_sample(data.image_path("a"), data.mask_path("a"))
        np.testing.assert_array_equal(got_mask, mask)
        np.testing.assert_array_equal(got_image, image)
    Image.fromarray(mask > 0).save(data.mask_path("a"))          # a 1-bit PNG: 0/1
    np.testing.assert_array_equal(data.read_sample(data.image_path("a"), data.mask_path("a"))[1], mask > 0)


def test_the_ignore_label_is_handed_on_as_255(tmp_path):
    data, samples = dataset(tmp_path, ignore_label=9)
    image, mask = samples["a"]
    mask = mask.copy()
    mask[0, :5] = 9
    folder_files.write_sample(str(tmp_path), "a", image, mask)
    got = data.read_sample(data.image_path("a"), data.mask_path("a"))[1]
    assert (got[0, :5] == 255).all() and (got[1:] == mask[1:]).all()


def test_a_value_outside_the_classes_is_refused_naming_file_and_value(tmp_path):
    data, samples = dataset(tmp_path)
    image, mask = samples["b"]
    mask = mask.copy()
    mask[:2, :3] = 7
    folder_files.write_sample(str(tmp_path), "b", image, mask)
    with pytest.raises(voc.BadFileError) as error:
        data.read_sample(data.image_path("b"), data.mask_path("b"))
    message = str(error.value)
    assert error.value.kind == "mask_values" and "\n" not in message
    assert message.startswith(data.mask_path("b") + ": values 7 on 6 pixel(s) are neither a class index "
                                                     "(0-2) nor the ignore label 255; hint:")


def test_colour_masks_need_a_palette_and_are_read_through_it(tmp_path):
    colours = [[0, 0, 0], [200, 0, 0], [0, 200, 0]]
    data, samples = dataset(tmp_path, palette=colours)
    image, mask = samples["a"]
    rgb = np.asarray(colours, np.uint8)[mask]
    Image.fromarray(rgb).save(data.mask_path("a"))
    np.testing.assert_array_equal(data.read_sample(data.image_path("a"), data.mask_path("a"))[1], mask)
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(data.mask_path("a"))
    with pytest.raises(voc.BadFileError, match=r"colours \(1, 2, 3\) on 1 pixel\(s\) are not in the palette"
                                               r".*hint: was the mask resized with smoothing\? .* index mask"):
        data.read_sample(data.image_path("a"), data.mask_path("a"))
    plain, _ = dataset(tmp_path / "plain")
    Image.fromarray(rgb).save(plain.mask_path("a"))
    with pytest.raises(voc.BadFileError) as error:
        plain.read_sample(plain.image_path("a"), plain.mask_path("a"))
    assert error.value.kind == "mask_mode"
    assert "RGB colour image; hint: colour masks: give a palette in classes.json" in str(error.value)


def test_other_mask_problems_name_the_file(tmp_path):
    data, samples = dataset(tmp_path)
    image, mask = samples["a"]
    folder_files.write_sample(str(tmp_path), "a", image, mask[:, :-2])
    with pytest.raises(voc.BadFileError, match="mask is 30x24 .* image is 32x24; hint: was one of them resized"):
        data.read_sample(data.image_path("a"), data.mask_path("a"))
    Image.fromarray(mask.astype(np.uint16) * 300).save(data.mask_path("a"))
    with pytest.raises(voc.BadFileError, match="16/32-bit"):
        data.read_sample(data.image_path("a"), data.mask_path("a"))


# ---------------------------------------------------------------- ids, splits, files

def test_image_files_are_found_by_extension_and_a_missing_one_is_named(tmp_path):
    data, samples = dataset(tmp_path)
    folder_files.write_sample(str(tmp_path), "j", *samples["a"], image_format="JPEG")
    assert data.image_path("a").endswith(os.path.join("images", "a.png"))
    assert data.image_path("j").endswith(os.path.join("images", "j.jpg"))
    with pytest.raises(voc.BadFileError) as error:
        data.read_sample(data.image_path("x"), data.mask_path("x"))
    assert error.value.kind == "missing" and "listed in a split but has no image" in str(error.value)
    # A JPEG mask (or an id listed with its extension) is named with what to do instead.
    os.remove(data.mask_path("j"))
    Image.fromarray(samples["a"][1]).save(os.path.join(str(tmp_path), "masks", "j.jpg"))
    with pytest.raises(voc.BadFileError, match=r"masks/j.png: file does not exist; hint: found j.jpg: masks "
                                               r"must be PNG files named <id>.png"):
        data.read_sample(data.image_path("j"), data.mask_path("j"))


def test_splits_val_and_test_lists_or_halves_of_val(tmp_path):
    data, _ = dataset(tmp_path, val=("d", "e", "f", "g"))
    assert data.split("train") == ["a", "b", "c"]
    # Without test.txt: the halves of val.txt, exactly as VOC splits its val.txt.
    expected = voc.hash_order(["d", "e", "f", "g"], 3)
    assert data.split("val", 3) == expected[:2] and data.split("test", 3) == expected[2:]
    assert data.split("trainval") == ["a", "b", "c", "d", "e", "f", "g"]
    with_test, _ = dataset(tmp_path / "t", test=("h",))
    assert with_test.split("val") == ["d", "e"] and with_test.split("test") == ["h"]
    with pytest.raises(ValueError, match="train_aug is VOC's"):
        data.split("train_aug")


def test_an_id_in_train_and_an_evaluation_list_is_refused(tmp_path):
    data, _ = dataset(tmp_path, train=("a", "b"), val=("b", "c"))
    with pytest.raises(ValueError) as error:
        data.split("train")
    assert str(error.value).startswith(data.split_file("train") + ": 1 id(s) are also in "
                                       + data.split_file("val") + ", e.g. ['b']")
    with_test, _ = dataset(tmp_path / "t", train=("a", "b"), val=("c",), test=("a",))
    with pytest.raises(ValueError, match=r"test.txt, e.g. \['a'\]"):
        with_test.split("train")


# ---------------------------------------------------------------- one interface

def test_voc_and_folder_datasets_answer_the_same_questions(tmp_path, synthetic_voc_root):
    voc_data = datasets.VocDataset(synthetic_voc_root)
    assert voc_data.kind == "voc" and voc_data.num_classes == 21 and voc_data.palette is voc.VOC_PALETTE
    image_id = voc_data.split("train")[0]
    image, mask = voc_data.read_sample(voc_data.image_path(image_id), voc_data.mask_path(image_id, "train"))
    expected = voc.read_sample(voc.image_path(synthetic_voc_root, image_id), voc.mask_path(synthetic_voc_root, image_id))
    np.testing.assert_array_equal(mask, expected[1])
    assert datasets.open_root(synthetic_voc_root).kind == "voc"
    folder_files.make_folder_dataset(str(tmp_path))
    assert datasets.open_root(str(tmp_path)).kind == "folder"
    assert datasets.as_dataset(synthetic_voc_root).root == synthetic_voc_root
    assert datasets.as_dataset(voc_data) is voc_data


def test_dataset_of_a_config_and_num_classes_from_classes_json(tmp_path):
    folder_files.make_folder_dataset(str(tmp_path))
    smoke = configs.load_config("smoke")
    assert datasets.dataset_of(smoke).kind == "voc"
    # Switching to a folder dataset with --set takes its class count along ...
    config = config_lib.apply_overrides(smoke, ['dataset="folder"', f"data_root={tmp_path}"])
    assert config.num_classes == 3 and datasets.dataset_of(config).num_classes == 3
    # ... and a config that says otherwise is refused, naming the file and both numbers.
    wrong = config_lib.apply_overrides(smoke, ["dataset=folder", f"data_root={tmp_path}", "num_classes=5"])
    with pytest.raises(ValueError) as error:
        datasets.dataset_of(wrong)
    assert str(error.value).startswith(f"{tmp_path / 'classes.json'}: lists 3 classes but the config's "
                                       f"num_classes is 5")
    # A JSON config file for a folder dataset need not repeat the class count either.
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"dataset": "folder", "data_root": str(tmp_path)}))
    assert config_lib.load_config_file(str(path)).num_classes == 3
