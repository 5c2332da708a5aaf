"""Tiny datasets in VOC layout for tests, and a catalogue of broken files.

A good sample is a gray photo whose brightness encodes its mask: background pixels are
dark (20), object pixels bright (235), and a 2 px band of 255 covers every outline (so
bilinear resizing, which blends pixels across an edge, never mixes the two under a
labelled pixel). Objects sit off-centre, so a flip or a crop applied to the photo but
not to the mask (or vice versa) shows as labelled pixels of the wrong brightness.
"""
import io
import os
import struct
import zlib

import numpy as np
from PIL import Image

from research.data import voc

DARK, BRIGHT = 20, 235


def good_sample(rng, height=40, width=56):
    """(image uint8 [H, W, 3], mask uint8 [H, W]) with 1-2 rectangles and a 255 band."""
    mask = np.zeros((height, width), np.uint8)
    for cls in rng.choice(np.arange(1, voc.NUM_CLASSES), size=int(rng.integers(1, 3)), replace=False):
        h, w = int(rng.integers(10, height // 2)), int(rng.integers(10, width // 2))
        top, left = int(rng.integers(2, height - h - 2)), int(rng.integers(2, width // 2 - 2))
        mask[top:top + h, left:left + w] = cls
    image = np.where(mask[:, :, None] > 0, BRIGHT, DARK).astype(np.uint8).repeat(3, axis=2)
    padded = np.pad(mask, 2, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (5, 5))
    band = windows.max(axis=(2, 3)) != windows.min(axis=(2, 3))
    mask[band] = voc.IGNORE_LABEL
    return image, mask


def png_bytes(image, **save_options):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **save_options)
    return buffer.getvalue()


def jpeg_bytes(image, quality=95):
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def png_header_only(width, height):
    """A PNG whose header declares width x height RGB pixels (and holds no pixel data):
    a decompression bomb as a reader sees it before decoding."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))


def jpeg_header_claiming(width, height):
    """A real baseline JPEG whose frame header (SOF0) is patched to declare width x height."""
    data = bytearray(jpeg_bytes(Image.fromarray(np.zeros((8, 8, 3), np.uint8))))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)   # after marker, length, precision
    return bytes(data)


def write_bytes(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def write_sample(voc_root, image_id, image, mask):
    """Writes a lossless-looking photo (JPEG quality 95) and a palettized mask."""
    write_bytes(voc.image_path(voc_root, image_id), jpeg_bytes(Image.fromarray(image)))
    write_bytes(voc.mask_path(voc_root, image_id), png_bytes(voc.mask_to_png(mask)))


def write_split(voc_root, name, ids):
    write_bytes(voc.split_file(voc_root, name), "".join(i + "\n" for i in ids).encode("utf-8"))


def make_tiny_voc(voc_root, train_ids, val_ids, seed=0, height=40, width=56):
    """Writes good samples and train/val lists (no trainval.txt); returns {id: (image, mask)}."""
    rng = np.random.default_rng(seed)
    samples = {}
    for image_id in list(train_ids) + list(val_ids):
        samples[image_id] = good_sample(rng, height, width)
        write_sample(voc_root, image_id, *samples[image_id])
    write_split(voc_root, "train", train_ids)
    write_split(voc_root, "val", val_ids)
    return samples


# ---------------------------------------------------------------- broken files
# Each entry: name -> (breaker, which file is named, kind, phrase expected in the message).
# A breaker takes (voc_root, image_id) of a good sample and damages it.

def _noise_png_mask(rng, height=40, width=56):
    return rng.integers(0, voc.NUM_CLASSES, (height, width)).astype(np.uint8)


def _truncate(path, fraction):
    with open(path, "rb") as f:
        data = f.read()
    write_bytes(path, data[:int(len(data) * fraction)])


def _truncated_jpeg(voc_root, image_id):
    noise = np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    path = voc.image_path(voc_root, image_id)
    write_bytes(path, jpeg_bytes(Image.fromarray(noise)))
    _truncate(path, 0.6)


def _truncated_png(voc_root, image_id):
    path = voc.mask_path(voc_root, image_id)
    write_bytes(path, png_bytes(voc.mask_to_png(_noise_png_mask(np.random.default_rng(2)))))
    _truncate(path, 0.6)


def _mask_of_other_size(voc_root, image_id):
    write_bytes(voc.mask_path(voc_root, image_id), png_bytes(voc.mask_to_png(np.zeros((40, 50), np.uint8))))


def _mask_with_bad_values(voc_root, image_id):
    mask = np.zeros((40, 56), np.uint8)
    mask[:5, :5], mask[-5:, -5:] = 21, 100
    write_bytes(voc.mask_path(voc_root, image_id), png_bytes(voc.mask_to_png(mask)))


def _rgb_mask(voc_root, image_id):
    mask = np.zeros((40, 56), np.uint8)
    mask[10:20, 10:20] = 15
    write_bytes(voc.mask_path(voc_root, image_id), png_bytes(Image.fromarray(voc.index_to_rgb(mask))))


def _mask_16bit(voc_root, image_id):
    mask = np.zeros((40, 56), np.uint16)
    mask[10:20, 10:20] = 15
    write_bytes(voc.mask_path(voc_root, image_id), png_bytes(Image.fromarray(mask)))
    assert Image.open(voc.mask_path(voc_root, image_id)).mode.startswith("I")


def _mask_gray_palette(voc_root, image_id):
    mask = np.zeros((40, 56), np.uint8)
    mask[10:20, 10:20] = 15
    image = Image.frombytes("P", (56, 40), mask.tobytes())
    image.putpalette(bytes(v for i in range(256) for v in (i, i, i)))
    write_bytes(voc.mask_path(voc_root, image_id), png_bytes(image))


def _header_bomb_jpeg(voc_root, image_id):
    write_bytes(voc.image_path(voc_root, image_id), jpeg_header_claiming(30000, 30000))


def _header_bomb_png(voc_root, image_id):
    write_bytes(voc.mask_path(voc_root, image_id), png_header_only(30000, 30000))


def _remove(path_of):
    return lambda voc_root, image_id: os.remove(path_of(voc_root, image_id))


def _overwrite(path_of, data):
    return lambda voc_root, image_id: write_bytes(path_of(voc_root, image_id), data)


BROKEN = {
    "missing_jpeg": (_remove(voc.image_path), voc.image_path, "missing", "does not exist"),
    "missing_png": (_remove(voc.mask_path), voc.mask_path, "missing", "does not exist"),
    "truncated_jpeg": (_truncated_jpeg, voc.image_path, "truncated", "truncated"),
    "truncated_png": (_truncated_png, voc.mask_path, "truncated", "truncated"),
    "empty_jpeg": (_overwrite(voc.image_path, b""), voc.image_path, "empty", "empty (0 bytes)"),
    "empty_png": (_overwrite(voc.mask_path, b""), voc.mask_path, "empty", "empty (0 bytes)"),
    "text_as_jpeg": (_overwrite(voc.image_path, b"this is not a picture\n"), voc.image_path,
                     "not_an_image", "not a readable image"),
    "mask_size_differs": (_mask_of_other_size, voc.mask_path, "size_mismatch", "mask is 50x40 (WxH) but its image is 56x40"),
    "mask_values": (_mask_with_bad_values, voc.mask_path, "mask_values", "values 21, 100"),
    "rgb_mask": (_rgb_mask, voc.mask_path, "mask_mode", "RGB image, not a palettized"),
    "mask_16bit": (_mask_16bit, voc.mask_path, "mask_mode", "16/32-bit"),
    "mask_palette": (_mask_gray_palette, voc.mask_path, "mask_palette", "not the VOC palette"),
    # 30000 x 30000 declared in the header (900 MP): refused before any pixel is decoded.
    "bomb_jpeg": (_header_bomb_jpeg, voc.image_path, "too_large", "too many pixels"),
    "bomb_png": (_header_bomb_png, voc.mask_path, "too_large", "too many pixels"),
}


# ---------------------------------------------------------------- unusual but valid photos
# Each entry: name -> writer(path, rgb uint8 [H, W, 3]) -> the RGB the reader must return
# (within `tolerance` of it, JPEG being lossy).

def _gray_jpeg(path, rgb):
    gray = Image.fromarray(rgb).convert("L")
    write_bytes(path, jpeg_bytes(gray))
    return np.asarray(Image.open(path).convert("L"))[:, :, None].repeat(3, axis=2), 0


def _cmyk_jpeg(path, rgb):
    write_bytes(path, jpeg_bytes(Image.fromarray(rgb).convert("CMYK"), quality=100))
    assert Image.open(path).mode == "CMYK"
    return rgb, 12


def _rgba_png(path, rgb):
    alpha = np.full(rgb.shape[:2] + (1,), 128, np.uint8)
    write_bytes(path, png_bytes(Image.fromarray(np.concatenate([rgb, alpha], axis=2))))
    return rgb, 0


def _palette_png(path, rgb):
    paletted = Image.fromarray(rgb).quantize(colors=16)
    write_bytes(path, png_bytes(paletted))
    return np.asarray(paletted.convert("RGB")), 0


def _gray16_png(path, rgb):
    gray8 = np.asarray(Image.fromarray(rgb).convert("L"))
    write_bytes(path, png_bytes(Image.fromarray(gray8.astype(np.uint16) * 257)))
    return gray8[:, :, None].repeat(3, axis=2), 0


def _exif_rotated_jpeg(path, rgb):
    # Orientation 6 ("rotate 90 degrees clockwise to display"): training reads the STORED
    # pixels, which the mask is aligned with; only research.predict applies the rotation.
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=95, exif=exif)
    write_bytes(path, buffer.getvalue())
    assert Image.open(path).getexif()[0x0112] == 6
    return np.asarray(Image.open(path).convert("RGB")), 0


UNUSUAL_PHOTOS = {
    "grayscale_jpeg": _gray_jpeg,
    "cmyk_jpeg": _cmyk_jpeg,
    "rgba_png_named_jpg": _rgba_png,
    "palette_png_named_jpg": _palette_png,
    "gray16_png_named_jpg": _gray16_png,
    "exif_rotated_jpeg": _exif_rotated_jpeg,
}


def smooth_rgb(height=40, width=56):
    """A smooth colourful picture (compresses well, so JPEG round trips stay close)."""
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 128)], axis=2).astype(np.uint8)
