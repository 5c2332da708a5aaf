"""Predicting segmentation masks for any images with an exported model.

    python -m research.predict --model runs/demo --out masks/ [--overlay] [--skip-bad]
        [--mode whole|slide] [--window H W] [--stride H W] photo.jpg more_photos/ ...

`--model` is an export folder (model.keras + export.json, see research/export.py), a
run's workdir (its export/ is used), or a `.tflite` file of research/export_tflite.py (run
by the LiteRT interpreter: the image resized to the file's input size, its logits resized
back, or its mask by nearest neighbour when the file has no logits). Folders are walked recursively for .jpg, .jpeg and
.png files (any letter case), in sorted order.

For each image, `OUT/<name>.png` is a palettized PNG (mode "P", pixel value = class
index; the colours of the model's dataset as its export.json records them, VOC's for
older exports and .tflite files) at the image's displayed size; with `--overlay` also
`OUT/<name>_overlay.png`, the photo with the predicted colours blended in. Every file
is written atomically. `<name>` is the file's stem; when stems collide (`a.jpg` and
`a.png`, or the same name in two folders) the extension is appended (`a_jpg`, `a_png`)
and then a counter (`a_jpg-2`), so no output overwrites another.

Images: JPEG or PNG in any colour mode (RGB, grayscale, RGBA, CMYK, palette, 16-bit) are
converted to RGB as training reads them (`research.data.voc.read_image`; alpha is
dropped). A JPEG's EXIF orientation IS applied: the mask matches the image as viewers
display it (e.g. a portrait phone photo stored sideways gets a portrait mask). Masks
of the training data are aligned with the stored pixels instead, so there the
orientation is not applied.

Predictions are `research.export.predict_masks`, the same computation as the exported
SavedModel's `serve` endpoint; with `--mode slide [--window H W] [--stride H W]`,
overlapping windows at the image's own size instead (`research.sliding_window`, for
images much larger than the model's input). Images are batched by displayed size (up to
`--batch-size` images and about `PIXELS_PER_BATCH` pixels per batch, since logits are
computed at full size: 21 float32 per pixel, so one 64 MP image needs about 5.4 GB;
lower `--max-pixels` on small machines).

Bad inputs: every image's header is read first. An image larger than `--max-pixels` is
refused from its header, before decoding (decompression bombs; PIL's own
DecompressionBombError is caught too); missing, empty, truncated, non-image and
unsupported files are reported with the file's path and the problem. Without
`--skip-bad` the run stops at bad files (header problems are all listed before anything
is predicted); with `--skip-bad` they are skipped and the rest are written. Either way
the exit status is 1 when any image failed, and the count is printed.
"""
import argparse
import collections
import logging
import os
import sys
import warnings

import numpy as np
from PIL import Image

from research import cli, window_options
from research.data import voc
from research.fileio import atomic_path
from research.progress import ProgressBar

log = logging.getLogger("research")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
PIXELS_PER_BATCH = 4_000_000  # bounds the full-size logits of one batch (~340 MB)
EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the transpose that shows the stored pixels as displayed
# (the table of PIL.ImageOps.exif_transpose).
ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


# ---------------------------------------------------------------------------------
# Inputs: files, names, headers, pixels.
# ---------------------------------------------------------------------------------
def find_images(paths):
    """Image files named by `paths` (files, or folders walked recursively).

    Files given explicitly are kept whatever their extension (a bad one is reported
    later); in folders only .jpg/.jpeg/.png (case-insensitive) are taken. Duplicates
    (the same file reached twice) are dropped. Returns a list of str paths in order:
    arguments in the order given, each folder's files sorted.
    """
    found, seen = [], set()

    def add(path):
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            found.append(path)

    for path in map(os.fspath, paths):
        if os.path.isdir(path):
            for folder, subfolders, files in os.walk(path):
                subfolders.sort()
                for name in sorted(files):
                    if name.lower().endswith(IMAGE_EXTENSIONS):
                        add(os.path.join(folder, name))
        else:
            add(path)
    return found


def output_names(paths, overlay=False):
    """A distinct output stem for each input path (see the module doc).

    Args:
      paths: input file paths.
      overlay: whether `<name>_overlay.png` files are written too (they must not
        collide with another input's mask either).
    Returns:
      list of str stems, one per path. Comparison is case-insensitive, so the outputs
      are distinct on case-insensitive file systems as well.
    """
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    counts = collections.Counter(s.casefold() for s in stems)
    taken, names = set(), []
    for path, stem in zip(paths, stems):
        base = stem
        if counts[stem.casefold()] > 1:
            extension = os.path.splitext(path)[1].lstrip(".")
            base = f"{stem}_{extension}" if extension else stem
        name, k = base, 1
        while True:
            files = {name.casefold()} | ({f"{name}_overlay".casefold()} if overlay else set())
            if not files & taken:
                break
            k += 1
            name = f"{base}-{k}"
        taken |= files
        names.append(name)
    return names


def _orientation(path):
    """The EXIF orientation (1-8) of an image file; 1 when it has none or it is unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                value = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # a broken EXIF block must not stop a readable image
        return 1
    return value if value in ORIENTATION_TRANSPOSE else 1


def probe(path, max_pixels=voc.DEFAULT_MAX_PIXELS):
    """Reads an image's header: its displayed size and EXIF orientation.

    Args:
      path: an image file.
      max_pixels: refuse larger images (from the header, before any decoding).
    Returns:
      ((height, width) as displayed, orientation 1-8).
    Raises:
      voc.BadFileError: missing, empty, not a JPEG/PNG, or too many pixels.
    """
    with warnings.catch_warnings():
        # PIL warns above its own limit; ours is checked (and reported) instead.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        width, height = voc.image_size(path, max_pixels)
    orientation = _orientation(path)
    return ((width, height) if orientation >= 5 else (height, width)), orientation


def read_display_image(path, orientation, max_pixels=voc.DEFAULT_MAX_PIXELS):
    """The image as displayed: uint8 [H, W, 3] RGB, EXIF orientation applied.

    Any colour mode is converted as `research.data.voc.read_image` does (the reader
    training uses); raises voc.BadFileError for truncated or corrupt data.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        rgb = voc.read_image(path, max_pixels)
    if orientation in ORIENTATION_TRANSPOSE:
        rgb = np.asarray(Image.fromarray(rgb).transpose(ORIENTATION_TRANSPOSE[orientation]))
    return rgb


# ---------------------------------------------------------------------------------
# Model.
# ---------------------------------------------------------------------------------
def load_predictor(model_dir, mode="whole", window=None, stride=None):
    """Loads an exported model; returns `masks_fn(uint8 [B,H,W,3]) -> uint8 [B,H,W]`.

    mode "whole": `research.export.predict_masks` in a tf.function traced once for any
    batch and image size, like the SavedModel's `serve`. mode "slide": the argmax of
    `research.sliding_window`'s averaged window logits at each image's own size
    (`window` default: the export's input size; `stride` default: 2/3 of the window).
    A `.tflite` path gives `research.export_tflite.TFLiteModel(path).masks` (whole only).
    """
    if os.fspath(model_dir).lower().endswith(".tflite"):
        if mode == "slide":
            raise ValueError("--mode slide is not available for a .tflite file (it runs at one size)")
        from research.export_tflite import TFLiteModel

        return TFLiteModel(model_dir).masks
    import tensorflow as tf

    from research import export as export_lib

    model, facts = export_lib.load_export(export_lib.find_export(model_dir))
    input_size = facts["input_size"]
    if mode == "slide":
        from research import sliding_window

        slide = sliding_window.make_slide_predictor(model, window or input_size, stride)
        return lambda images: np.argmax(slide(images), axis=-1).astype(np.uint8)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)], autograph=False)
    def masks_fn(images):
        return export_lib.predict_masks(model, images, input_size)

    return lambda images: masks_fn(images).numpy()


def palette_of_model(model_dir):
    """The class colours (uint8 [256, 3]) masks of `model_dir` are written with: those its
    export.json records (`research.export.classes_of`); VOC's for a .tflite file."""
    if os.fspath(model_dir).lower().endswith(".tflite"):
        return voc.VOC_PALETTE
    from research import export as export_lib

    return export_lib.classes_of(export_lib.read_facts(export_lib.find_export(model_dir)))[1]


# ---------------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------------
def _batches(items, batch_size):
    """Groups (index, size) items by size into batches of at most `batch_size` images
    and about PIXELS_PER_BATCH pixels (at least one image each)."""
    by_size = collections.defaultdict(list)
    for index, size in items:
        by_size[size].append(index)
    for size, indices in by_size.items():
        per_batch = max(1, min(batch_size, PIXELS_PER_BATCH // (size[0] * size[1])))
        for start in range(0, len(indices), per_batch):
            yield indices[start:start + per_batch]


def _read_headers(paths, max_pixels, failed):
    """{index: ((height, width), orientation)} of the readable headers; the others go to
    `failed` {path: message}."""
    headers = {}
    for index, path in enumerate(paths):
        try:
            headers[index] = probe(path, max_pixels)
        except voc.BadFileError as e:
            failed[path] = str(e)
            log.error("%s", e)
    return headers


def _path_forms(path):
    """A path as given (absolute) and with links resolved: both name the same file."""
    return {os.path.abspath(path), os.path.realpath(path)}


def _refuse_out_inside_inputs(inputs, out_dir):
    """Raises ValueError when `out_dir` is, or lies inside, an input folder."""
    out = _path_forms(out_dir)
    for path in map(os.fspath, inputs):
        if os.path.isdir(path) and any(o == f or o.startswith(f.rstrip(os.sep) + os.sep)
                                       for o in out for f in _path_forms(path)):
            raise ValueError(f"--out {out_dir} is or lies inside the input folder {path}: the masks "
                             f"could replace its photos and be read as photos next time; choose an "
                             f"--out outside the inputs")


def _refuse_outputs_over_inputs(paths, out_dir, names, overlay):
    """Raises ValueError when a mask or overlay (`names`, the outputs of the input files
    `paths`) would replace one of those inputs."""
    suffixes = (".png", "_overlay.png") if overlay else (".png",)
    outputs = {os.path.join(folder, name + suffix): path for path, name in zip(paths, names)
               for suffix in suffixes for folder in _path_forms(out_dir)}
    for path in paths:
        replaced = _path_forms(path) & set(outputs)
        if replaced:
            raise ValueError(f"{path}: an output of --out {out_dir} would replace this input "
                             f"(the mask of {outputs[replaced.pop()]}); choose another --out")


def _write_masks(out_dir, names, kept, images, masks, overlay, palette):
    """Writes each mask (and overlay); returns {index: mask file}."""
    from research import visualize

    written = {}
    for index, image, mask in zip(kept, images, masks):
        written[index] = os.path.join(out_dir, names[index] + ".png")
        voc.write_mask(written[index], mask, palette)
        if overlay:
            visualize.write_png(os.path.join(out_dir, names[index] + "_overlay.png"),
                                visualize.overlay(image, mask, palette=palette))
    return written


def predict(model_dir, inputs, out_dir, overlay=False, batch_size=8,
            max_pixels=voc.DEFAULT_MAX_PIXELS, skip_bad=False, predictor=None,
            mode="whole", window=None, stride=None):
    """Writes a mask (and optionally an overlay) for every image in `inputs`.

    Args:
      model_dir: an export folder, a run's workdir or a .tflite file.
      inputs: image files and/or folders.
      out_dir: where `<name>.png` (and `<name>_overlay.png`) go; created if missing.
      overlay: also write the photo blended with the predicted colours.
      batch_size: most images per model call.
      max_pixels: refuse images with more pixels (from the header).
      skip_bad: continue past bad images (else stop at them; see the module doc).
      predictor: optional `uint8 [B,H,W,3] -> uint8 [B,H,W]` (default: `load_predictor`);
        for tests.
      mode, window, stride: "whole" or "slide" with its (h, w) window and stride
        (`load_predictor`).
    Returns:
      dict: "written" {input path: mask path}, "failed" {input path: message},
      "stopped" (True when a bad image stopped the run).
    """
    if predictor is None and os.fspath(model_dir).lower().endswith(".tflite"):
        predictor = load_predictor(model_dir, mode)  # a corrupt file fails before any work
    palette = palette_of_model(model_dir)  # a wrong --model fails before any work
    _refuse_out_inside_inputs(inputs, out_dir)
    paths = find_images(inputs)
    names = output_names(paths, overlay)
    _refuse_outputs_over_inputs(paths, out_dir, names, overlay)
    written, failed = {}, {}
    headers = _read_headers(paths, max_pixels, failed)
    if not paths or (failed and not skip_bad):
        return {"written": written, "failed": failed, "stopped": bool(failed)}
    predictor = predictor or load_predictor(model_dir, mode, window, stride)
    os.makedirs(out_dir, exist_ok=True)
    bar = ProgressBar(len(headers), 1, desc="predict", unit="img")
    for batch in _batches(((i, headers[i][0]) for i in sorted(headers)), batch_size):
        images, kept = [], []
        for index in batch:
            try:
                images.append(read_display_image(paths[index], headers[index][1], max_pixels))
                kept.append(index)
            except voc.BadFileError as e:
                failed[paths[index]] = str(e)
                log.error("%s", e)
                if not skip_bad:
                    bar.close()
                    return {"written": written, "failed": failed, "stopped": True}
        if kept:
            masks = predictor(np.stack(images))
            for index, mask_file in _write_masks(out_dir, names, kept, images, masks, overlay, palette).items():
                written[paths[index]] = mask_file
        bar.update(len(batch))
    bar.close()
    return {"written": written, "failed": failed, "stopped": False}


# ---------------------------------------------------------------------------------
# Command line.
# ---------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m research.predict",
        description="Predict VOC segmentation masks (palettized PNGs at each image's displayed "
                    "size) with an exported model.")
    parser.add_argument("inputs", nargs="+", metavar="IMAGES_OR_FOLDERS",
                        help="image files, or folders walked for .jpg/.jpeg/.png")
    parser.add_argument("--model", required=True,
                        help="an export folder, a run's workdir, or a .tflite file (research.export_tflite)")
    parser.add_argument("--out", required=True, help="output folder for <name>.png masks")
    parser.add_argument("--overlay", action="store_true", help="also write <name>_overlay.png")
    parser.add_argument("--batch-size", type=int, default=8, help="most images per model call (default 8)")
    parser.add_argument("--max-pixels", type=int, default=voc.DEFAULT_MAX_PIXELS,
                        help=f"refuse images with more pixels, from the header "
                             f"(default {voc.DEFAULT_MAX_PIXELS:,})")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip unreadable or refused images and predict the rest "
                             "(default: stop at them); the exit status is 1 either way")
    window_options.add_window_arguments(parser, "whole")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.max_pixels < 1:
        parser.error("--batch-size and --max-pixels must be positive")
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    return cli.run_main(lambda: _predict_and_report(args))


def _predict_and_report(args):
    """`predict` with the command line's arguments; prints what happened; the exit status."""
    result = predict(args.model, args.inputs, args.out, overlay=args.overlay,
                     batch_size=args.batch_size, max_pixels=args.max_pixels,
                     skip_bad=args.skip_bad, mode=args.mode or "whole", window=args.window,
                     stride=args.stride)
    written, failed = result["written"], result["failed"]
    if not written and not failed:
        raise ValueError(f"no .jpg/.jpeg/.png images in {', '.join(args.inputs)}")
    print(f"wrote {len(written)} mask(s) to {args.out}")
    if failed:
        what = "stopped" if result["stopped"] else "skipped"
        print(f"{len(failed)} image(s) failed ({what}):", file=sys.stderr)
        for path, message in failed.items():
            print(f"  {message}", file=sys.stderr)
        if result["stopped"]:
            print("use --skip-bad to predict the other images", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
