"""research.data.voc: palette, colour <-> index, splits, checked reads."""
import os

import numpy as np
import pytest
from PIL import Image

from research.data import voc
from tests.research.data import voc_files


# ---------------------------------------------------------------- palette and colours

def test_palette_is_the_voc_colormap():
    assert voc.VOC_PALETTE.shape == (256, 3) and voc.VOC_PALETTE.dtype == np.uint8
    assert tuple(voc.VOC_PALETTE[0]) == (0, 0, 0)
    assert tuple(voc.VOC_PALETTE[1]) == (128, 0, 0)        # aeroplane
    assert tuple(voc.VOC_PALETTE[2]) == (0, 128, 0)        # bicycle
    assert tuple(voc.VOC_PALETTE[15]) == (192, 128, 128)   # person
    assert tuple(voc.VOC_PALETTE[20]) == (0, 64, 128)      # tvmonitor
    assert tuple(voc.VOC_PALETTE[255]) == (224, 224, 192)  # boundary
    assert len({tuple(c) for c in voc.VOC_PALETTE}) == 256


def test_class_names():
    assert len(voc.CLASS_NAMES) == voc.NUM_CLASSES == 21
    assert voc.CLASS_NAMES[0] == "background" and voc.CLASS_NAMES[15] == "person"
    assert voc.CLASS_NAMES[20] == "tvmonitor"


def test_rgb_index_round_trip_with_batch_dimensions():
    rng = np.random.default_rng(0)
    values = np.array(list(range(21)) + [255], np.uint8)
    mask = rng.choice(values, size=(2, 3, 17, 19)).astype(np.uint8)
    rgb = voc.index_to_rgb(mask)
    assert rgb.shape == (2, 3, 17, 19, 3) and rgb.dtype == np.uint8
    back = voc.rgb_to_index(rgb)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, mask)


def test_rgb_to_index_names_unknown_colours_and_counts():
    rgb = voc.index_to_rgb(np.zeros((4, 4), np.uint8))
    rgb[0, :3] = (1, 2, 3)
    rgb[3, 3] = (128, 0, 1)
    with pytest.raises(ValueError) as error:
        voc.rgb_to_index(rgb)
    message = str(error.value)
    assert "2 colour(s)" in message and "4 pixel(s)" in message
    assert "(1, 2, 3) x 3" in message and "(128, 0, 1) x 1" in message


# ---------------------------------------------------------------- splits

def _lists(voc_root, train, val, trainval=None):
    voc_files.write_split(voc_root, "train", train)
    voc_files.write_split(voc_root, "val", val)
    if trainval is not None:
        voc_files.write_split(voc_root, "trainval", trainval)


def test_val_and_test_are_disjoint_halves_in_a_stable_order(tmp_path):
    val_ids = [f"2008_{i:06d}" for i in range(101)]
    _lists(str(tmp_path), ["a"], val_ids)
    val = voc.read_split(tmp_path, "val")
    test = voc.read_split(tmp_path, "test")
    assert len(val) == 50 and len(test) == 51
    assert not set(val) & set(test) and sorted(val + test) == sorted(val_ids)
    assert val != sorted(val)                        # really shuffled
    assert voc.read_split(tmp_path, "val") == val    # deterministic
    # The order depends on the ids only, not on their order in the file ...
    _lists(str(tmp_path), ["a"], val_ids[::-1])
    assert voc.read_split(tmp_path, "val") == val
    # ... and is pinned, so it cannot drift between platforms or library versions.
    assert val[:3] == sorted(val_ids, key=lambda i: voc.hashlib.sha256(f"0\x00{i}".encode()).hexdigest())[:3]
    other = voc.read_split(tmp_path, "val", split_seed=1)
    assert set(other) != set(val)


def test_train_and_trainval(tmp_path):
    _lists(str(tmp_path), ["b", "a"], ["c"])
    assert voc.read_split(tmp_path, "train") == ["b", "a"]
    assert voc.read_split(tmp_path, "trainval") == ["b", "a", "c"]
    voc_files.write_split(str(tmp_path), "trainval", ["a", "b", "c", "d"])
    assert voc.read_split(tmp_path, "trainval") == ["a", "b", "c", "d"]


def test_split_lists_tolerate_blank_lines_spaces_and_unicode(tmp_path):
    voc_files.write_bytes(voc.split_file(tmp_path, "train"),
                          "\ufeff  2007_000032 \n\n\tmy photo 1\r\nkatze_猫\n  \n".encode("utf-8"))
    assert voc.read_split(tmp_path, "train") == ["2007_000032", "my photo 1", "katze_猫"]


def test_split_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="unknown subset 'training'.*train, val, test, trainval"):
        voc.read_split(tmp_path, "training")
    missing_root = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        voc.read_split(missing_root, "train")
    with pytest.raises(FileNotFoundError, match=r"train\.txt"):
        voc.read_split(tmp_path, "train")
    voc_files.write_split(str(tmp_path), "train", ["a", "b", "a"])
    with pytest.raises(ValueError, match=r"train\.txt: duplicate ids: 'a' \(lines 1 and 3\)"):
        voc.read_split(tmp_path, "train")
    voc_files.write_split(str(tmp_path), "train", ["a", "../../etc/passwd"])
    with pytest.raises(ValueError, match=r"train\.txt: line 2: '../../etc/passwd' is not a file name"):
        voc.read_split(tmp_path, "train")
    _lists(str(tmp_path), ["a", "b"], ["b", "c"])
    with pytest.raises(ValueError, match="share 1 id"):
        voc.read_split(tmp_path, "trainval")


# ---------------------------------------------------------------- checked reads

def test_read_mask_returns_exact_indices_including_255(tmp_path):
    mask = np.array([[0, 1, 2, 255], [20, 15, 255, 0]], np.uint8)
    path = tmp_path / "m.png"
    voc.write_mask(path, mask)
    got = voc.read_mask(path, expected_size=(4, 2))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, mask)
    assert Image.open(path).mode == "P"


@pytest.mark.parametrize("name", sorted(voc_files.BROKEN))
def test_read_sample_names_the_broken_file(tmp_path, name):
    breaker, path_of, kind, phrase = voc_files.BROKEN[name]
    image, mask = voc_files.good_sample(np.random.default_rng(0))
    voc_files.write_sample(str(tmp_path), "x", image, mask)
    breaker(str(tmp_path), "x")
    with pytest.raises(voc.BadFileError) as error:
        voc.read_sample(voc.image_path(tmp_path, "x"), voc.mask_path(tmp_path, "x"))
    assert error.value.path == path_of(str(tmp_path), "x")
    assert error.value.kind == kind
    assert str(error.value).startswith(path_of(str(tmp_path), "x") + ": ")
    assert phrase in str(error.value)


def test_rgb_mask_error_suggests_rgb_to_index(tmp_path):
    image, mask = voc_files.good_sample(np.random.default_rng(0))
    voc_files.write_sample(str(tmp_path), "x", image, mask)
    voc_files.BROKEN["rgb_mask"][0](str(tmp_path), "x")
    with pytest.raises(voc.BadFileError, match="rgb_to_index"):
        voc.read_mask(voc.mask_path(tmp_path, "x"))


@pytest.mark.parametrize("name", sorted(voc_files.UNUSUAL_PHOTOS))
def test_unusual_photos_are_converted_to_rgb(tmp_path, name):
    rgb = voc_files.smooth_rgb()
    path = str(tmp_path / "photo.jpg")
    expected, tolerance = voc_files.UNUSUAL_PHOTOS[name](path, rgb)
    got = voc.read_image(path)
    assert got.shape == rgb.shape and got.dtype == np.uint8
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= tolerance


def test_decompression_bomb_guard_reads_only_the_header(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(path)
    with pytest.raises(voc.BadFileError, match="60000 pixels is more than the limit of 50000") as error:
        voc.read_image(path, max_pixels=50_000)
    assert error.value.kind == "too_large"
    assert voc.read_image(path, max_pixels=60_000).shape == (200, 300, 3)


def test_mask_must_be_png(tmp_path):
    path = tmp_path / "m.png"
    Image.new("RGB", (8, 8)).save(path, format="JPEG")
    with pytest.raises(voc.BadFileError, match="is a JPEG file; expected PNG"):
        voc.read_mask(path)


def test_paths_follow_the_voc_layout(tmp_path):
    root = voc.voc_root_in(tmp_path)
    assert root == os.path.join(str(tmp_path), "VOCdevkit", "VOC2012")
    assert voc.image_path(root, "2007_000032").endswith(os.path.join("VOC2012", "JPEGImages", "2007_000032.jpg"))
    assert voc.mask_path(root, "a b").endswith(os.path.join("SegmentationClass", "a b.png"))
    assert voc.split_file(root, "val").endswith(os.path.join("ImageSets", "Segmentation", "val.txt"))
