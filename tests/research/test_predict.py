"""research.predict: every image mode, EXIF orientation, output format and names, bad inputs.

The model is a 1x1 convolution with random weights (predictions vary with colour, so a
mask shows whether the right pixels, in the right orientation, were used); expected
masks are computed here with `research.export.predict_masks` on images decoded by PIL.
"""
import os

import numpy as np
import pytest
import keras
from PIL import Image

from research import export as export_lib
from research import predict as predict_lib
from research import build
from research import configs
from research.data import voc
from research.fileio import atomic_write_json
from tests.research.data.voc_files import png_header_only

C = 21


def save_export(folder, model, input_size=(32, 32)):
    os.makedirs(folder, exist_ok=True)
    model.save(os.path.join(folder, "model.keras"))
    atomic_write_json(os.path.join(folder, "export.json"), {"input_size": list(input_size), "num_classes": C})
    return str(folder)


@pytest.fixture(scope="module")
def pointwise_export(tmp_path_factory):
    images = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255.0)(images)
    logits = keras.layers.Conv2D(C, 1, kernel_initializer=keras.initializers.RandomNormal(0, 3, seed=0),
                                 bias_initializer=keras.initializers.RandomNormal(0, 1, seed=1))(x)
    model = keras.Model(images, logits)
    return save_export(tmp_path_factory.mktemp("pointwise") / "export", model), model


def expected_mask(model, rgb):
    return export_lib.predict_masks(model, rgb[None], (32, 32)).numpy()[0]


def read_output(path):
    image = Image.open(path)
    assert image.mode == "P"
    assert image.getpalette()[:768] == voc.VOC_PALETTE.ravel().tolist()
    return np.asarray(image)


def noise(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# ---------------------------------------------------------------- image modes

def test_every_image_mode_gives_a_palettized_mask_at_the_displayed_size(tmp_path, pointwise_export):
    export_dir, model = pointwise_export
    folder = tmp_path / "in"
    folder.mkdir()
    expected = {}

    rgb = noise(37, 53)
    Image.fromarray(rgb).save(folder / "rgb photo é.jpg", quality=95)
    expected["rgb photo é"] = np.asarray(Image.open(folder / "rgb photo é.jpg").convert("RGB"))

    gray = noise(20, 30, 1)[..., 0]
    Image.fromarray(gray, "L").save(folder / "gray.png")
    expected["gray"] = np.repeat(gray[..., None], 3, axis=2)

    rgba = np.concatenate([noise(25, 25, 2), np.full((25, 25, 1), 7, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    expected["rgba"] = rgba[..., :3]  # alpha dropped, as training reads PNGs

    Image.fromarray(noise(30, 20, 3)).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    expected["cmyk"] = np.asarray(Image.open(folder / "cmyk.jpg").convert("RGB"))
    assert Image.open(folder / "cmyk.jpg").mode == "CMYK"

    Image.fromarray(noise(24, 36, 4)).quantize(16).save(folder / "palette.png")
    expected["palette"] = np.asarray(Image.open(folder / "palette.png").convert("RGB"))

    # Stored 24 rows x 40 columns; orientation 6 = "rotate 90 degrees clockwise to display".
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(noise(24, 40, 5)).save(folder / "rotated.jpg", quality=95, exif=exif)
    stored = np.asarray(Image.open(folder / "rotated.jpg").convert("RGB"))
    expected["rotated"] = np.rot90(stored, k=-1)  # displayed: 40 rows x 24 columns

    result = predict_lib.predict(export_dir, [str(folder)], str(tmp_path / "out"), batch_size=4)
    assert not result["failed"] and len(result["written"]) == 6
    for name, image in expected.items():
        mask = read_output(tmp_path / "out" / f"{name}.png")
        assert mask.shape == image.shape[:2], name
        np.testing.assert_array_equal(mask, expected_mask(model, image), err_msg=name)
    assert len(np.unique(read_output(tmp_path / "out" / "rotated.png"))) > 1


def test_overlay_and_a_run_workdir_as_model(tmp_path, pointwise_export):
    export_dir, model = pointwise_export
    image = noise(32, 48, 6)
    Image.fromarray(image).save(tmp_path / "photo.png")
    workdir = os.path.dirname(export_dir)  # the folder holding export/
    assert predict_lib.main(["--model", workdir, "--out", str(tmp_path / "out"), "--overlay",
                             str(tmp_path / "photo.png")]) == 0
    mask = read_output(tmp_path / "out" / "photo.png")
    blended = np.asarray(Image.open(tmp_path / "out" / "photo_overlay.png"))
    assert blended.shape == image.shape
    background = mask == 0
    assert background.any() and (~background).any()
    np.testing.assert_array_equal(blended[background], image[background])
    assert not np.array_equal(blended[~background], image[~background])


def test_deeplab_export_with_custom_layers(tmp_path, synthetic_voc_root):
    config = configs.load_config("smoke")
    model = build.build_model(config)
    export_dir = save_export(tmp_path / "export", model)
    image = noise(45, 29, 7)
    Image.fromarray(image).save(tmp_path / "x.png")
    result = predict_lib.predict(export_dir, [str(tmp_path / "x.png")], str(tmp_path / "out"))
    assert list(result["written"]) == [str(tmp_path / "x.png")]
    np.testing.assert_array_equal(read_output(tmp_path / "out" / "x.png"),
                                  export_lib.predict_masks(model, image[None], (32, 32)).numpy()[0])


# ---------------------------------------------------------------- inputs and names

def test_folders_are_walked_for_images_case_insensitively(tmp_path):
    for name in ("b.JPG", "a.Jpeg", "c.PNG", "notes.txt", "sub/d.png", "sub/e.gif"):
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"")
    found = predict_lib.find_images([str(tmp_path), str(tmp_path / "c.PNG")])
    assert [os.path.relpath(p, tmp_path) for p in found] == ["a.Jpeg", "b.JPG", "c.PNG", "sub/d.png"]


def test_output_names_never_collide():
    paths = ["x/a.jpg", "x/a.png", "y/a.jpg", "x/b.jpg", "x/b_overlay.png", "x/B.png"]
    names = predict_lib.output_names(paths, overlay=True)
    assert names[:3] == ["a_jpg", "a_png", "a_jpg-2"]
    files = [n.casefold() + suffix for n in names for suffix in (".png", "_overlay.png")]
    assert len(set(files)) == len(files)
    assert predict_lib.output_names(["p/one.jpg", "q/two.png"]) == ["one", "two"]


def test_same_stem_inputs_get_distinct_outputs(tmp_path, pointwise_export):
    export_dir, model = pointwise_export
    Image.fromarray(noise(16, 16, 8)).save(tmp_path / "a.jpg")
    Image.fromarray(noise(16, 16, 9)).save(tmp_path / "a.png")
    result = predict_lib.predict(export_dir, [str(tmp_path)], str(tmp_path.parent / (tmp_path.name + "_out")))
    assert sorted(os.listdir(tmp_path.parent / (tmp_path.name + "_out"))) == ["a_jpg.png", "a_png.png"]
    png_mask = read_output(tmp_path.parent / (tmp_path.name + "_out") / "a_png.png")
    np.testing.assert_array_equal(png_mask, expected_mask(model, noise(16, 16, 9)))
    assert len(result["written"]) == 2


def test_masks_never_replace_or_join_the_inputs(tmp_path, pointwise_export, capsys):
    export_dir, _ = pointwise_export
    photos = tmp_path / "photos"
    (photos / "cam1").mkdir(parents=True)
    Image.fromarray(noise(16, 16, 8)).save(photos / "a.png")
    Image.fromarray(noise(16, 16, 9)).save(photos / "cam1" / "a.png")
    kept = {p: p.read_bytes() for p in (photos / "a.png", photos / "cam1" / "a.png")}
    for out in (photos, photos / "cam1", photos / "new"):           # the folder, inside it
        assert predict_lib.main(["--model", export_dir, "--out", str(out) + "/", str(photos)]) == 1
        assert "is or lies inside the input folder" in capsys.readouterr().err
    (tmp_path / "linked").mkdir()
    os.symlink(photos / "a.png", tmp_path / "linked" / "a.png")       # a link to a photo
    for given in (tmp_path / "linked" / "a.png", photos / "cam1" / "a.png"):
        assert predict_lib.main(["--model", export_dir, "--out", str(given.parent), str(given)]) == 1
        assert "a.png: an output of --out" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in kept} == kept
    assert not (photos / "new").exists()


# ---------------------------------------------------------------- bad inputs

@pytest.fixture
def bad_folder(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(noise(20, 20)).save(folder / "good.png")
    Image.fromarray(noise(64, 64)).save(folder / "truncated.jpg", quality=95)
    data = (folder / "truncated.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[:len(data) // 2])
    (folder / "text.jpg").write_text("this is not a JPEG")
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "bomb.png").write_bytes(png_header_only(100_000, 100_000))   # PIL refuses it itself
    (folder / "huge.png").write_bytes(png_header_only(10_000, 8_000))      # over our 64 MP limit
    return folder


def test_bad_files_are_reported_and_the_rest_written_with_skip_bad(bad_folder, tmp_path, pointwise_export, capsys):
    out = tmp_path / "out"
    code = predict_lib.main(["--model", pointwise_export[0], "--out", str(out), "--skip-bad", str(bad_folder)])
    assert code == 1
    assert os.listdir(out) == ["good.png"]
    err = capsys.readouterr().err
    assert "5 image(s) failed" in err
    for name, problem in (("truncated.jpg", "truncated"), ("text.jpg", "not a readable image"),
                          ("zero.jpg", "empty"), ("bomb.png", "too many pixels"),
                          ("huge.png", "80000000 pixels is more than the limit")):
        line = next(l for l in err.splitlines() if name in l)
        assert problem in line, line


def test_bad_headers_stop_the_run_before_anything_is_written(bad_folder, tmp_path, pointwise_export, capsys):
    out = tmp_path / "out"
    assert predict_lib.main(["--model", pointwise_export[0], "--out", str(out), str(bad_folder)]) == 1
    assert not out.exists() or os.listdir(out) == []
    assert "--skip-bad" in capsys.readouterr().err


def test_max_pixels_is_checked_from_the_header(tmp_path, pointwise_export):
    Image.fromarray(noise(40, 50)).save(tmp_path / "a.png")
    result = predict_lib.predict(pointwise_export[0], [str(tmp_path / "a.png")], str(tmp_path / "out"),
                                 max_pixels=1999, skip_bad=True)
    assert "2000 pixels is more than the limit of 1999" in result["failed"][str(tmp_path / "a.png")]
    assert not result["written"]


def test_missing_model_or_input(tmp_path, pointwise_export, capsys):
    assert predict_lib.main(["--model", str(tmp_path), "--out", str(tmp_path / "o"), "x.jpg"]) == 1
    assert "model.keras" in capsys.readouterr().err
    assert predict_lib.main(["--model", pointwise_export[0], "--out", str(tmp_path / "o"), "--skip-bad",
                             str(tmp_path / "nope.jpg")]) == 1
    assert "does not exist" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "export.json").write_text('{"input_size": [32, 32]}')
    (broken / "model.keras").write_bytes(open(os.path.join(pointwise_export[0], "model.keras"), "rb").read()[:500])
    Image.fromarray(noise(8, 8)).save(tmp_path / "p.png")
    assert predict_lib.main(["--model", str(broken), "--out", str(tmp_path / "o"), str(tmp_path / "p.png")]) == 1
    assert "model.keras: cannot load the model" in capsys.readouterr().err
    (broken / "export.json").write_text("{not json")
    assert predict_lib.main(["--model", str(broken), "--out", str(tmp_path / "o"), str(tmp_path / "p.png")]) == 1
    assert "export.json: cannot read the export facts" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert predict_lib.main(["--model", pointwise_export[0], "--out", str(tmp_path / "o"),
                             str(tmp_path / "empty")]) == 1
    assert "no .jpg/.jpeg/.png images" in capsys.readouterr().err


def test_parsing_the_command_line_imports_no_tensorflow():
    # --help and argument errors answer before TensorFlow's seconds of import: a fresh
    # interpreter parses a full command line, window options included.
    import subprocess
    import sys

    code = ("import sys; from research import predict; "
            "predict.parse_args(['a.jpg', '--model', 'm', '--out', 'o', '--mode', 'slide', '--window', '8', '8']); "
            "print('tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"
