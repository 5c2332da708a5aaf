"""Tiny SBD trees for tests (scipy.io.savemat), and a catalogue of broken .mat files.

A tiny "world": VOC 2012 with train a, b and val c, d (photos and masks), and SBD with
train a, e, f and val c, g (class masks as .mat, photos in VOC's JPEGImages/ as the real
VOC 2012 has them), so train_aug = (a, e, f, c, g, a, b) - (c, d) = a, b, e, f, g: a and
b with VOC's masks, e, f, g with SBD's.
"""
import os

import numpy as np
import scipy.io

from research.data import sbd, voc
from tests.research.data import voc_files

VOC_TRAIN, VOC_VAL = ["a", "b"], ["c", "d"]
SBD_TRAIN, SBD_VAL = ["a", "e", "f"], ["c", "g"]
TRAIN_AUG = ["a", "b", "e", "f", "g"]
HEIGHT, WIDTH = 40, 56


def write_mat(path, segmentation, variable="GTcls", compress=True):
    """Writes `segmentation` as `variable`.Segmentation (a struct, as SBD's files are)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    contents = {"Segmentation": segmentation, "CategoriesPresent": np.unique(segmentation)}
    scipy.io.savemat(path, {variable: contents}, do_compression=compress)


def write_sbd_list(dataset, name, ids):
    voc_files.write_bytes(os.path.join(dataset, name + ".txt"), "".join(i + "\n" for i in ids).encode())


def make_tiny_world(root, seed=0):
    """Writes ROOT/VOCdevkit/VOC2012 and ROOT/benchmark_RELEASE (module doc).

    Returns (voc_root, sbd_root, sbd_masks): sbd_masks maps each SBD id to its
    class mask uint8 [H, W] (values 0-20, no 255 band, like SBD's).
    """
    root = os.fspath(root)
    voc_root = voc.voc_root_in(root)
    voc_files.make_tiny_voc(voc_root, VOC_TRAIN, VOC_VAL, seed=seed, height=HEIGHT, width=WIDTH)
    sbd_root = os.path.join(root, "benchmark_RELEASE")
    dataset = os.path.join(sbd_root, "dataset")
    rng = np.random.default_rng(seed + 1)
    sbd_masks = {}
    for image_id in SBD_TRAIN + SBD_VAL:
        image, mask = voc_files.good_sample(rng, HEIGHT, WIDTH)
        mask[mask == voc.IGNORE_LABEL] = 0          # SBD has no boundary band
        sbd_masks[image_id] = mask
        write_mat(sbd.cls_path(dataset, image_id), mask)
        if not os.path.exists(voc.image_path(voc_root, image_id)):
            voc_files.write_bytes(voc.image_path(voc_root, image_id),
                                  voc_files.jpeg_bytes(voc_files.Image.fromarray(image)))
    write_sbd_list(dataset, "train", SBD_TRAIN)
    write_sbd_list(dataset, "val", SBD_VAL)
    return voc_root, sbd_root, sbd_masks


# ---------------------------------------------------------------- broken .mat files
# name -> (writer(path), kind, phrase expected in the message). Each writes a bad file
# in place of a good HEIGHT x WIDTH mask.

def _good(path):
    write_mat(path, np.zeros((HEIGHT, WIDTH), np.uint8))


def _truncated(path):
    noise = np.random.default_rng(3).integers(0, 21, (HEIGHT, WIDTH)).astype(np.uint8)
    write_mat(path, noise)
    with open(path, "rb") as f:
        data = f.read()
    voc_files.write_bytes(path, data[:int(len(data) * 0.6)])


def _mask(values):
    return lambda path: write_mat(path, values)


def _bad_values():
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[:5, :5], mask[-5:, -5:] = 21, 100
    return mask


def _hdf5(path):
    # What MATLAB's -v7.3 writes: a text header, then an HDF5 file.
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    voc_files.write_bytes(path, header.ljust(116) + b"\0" * 8 + b"\x00\x02IM" + b"\0" * 384
                          + b"\x89HDF\r\n\x1a\n" + b"\0" * 64)


BROKEN_MAT = {
    "missing": (os.remove, "missing", "does not exist"),
    "empty": (lambda path: voc_files.write_bytes(path, b""), "empty", "empty (0 bytes)"),
    "truncated": (_truncated, "truncated", "truncated"),
    "text": (lambda path: voc_files.write_bytes(path, b"this is not a mat file\n" * 8),
             "not_a_mat", "not a MAT file"),
    "hdf5_v73": (_hdf5, "mat_format", "-v7 option"),
    "no_gtcls": (lambda path: write_mat(path, np.zeros((HEIGHT, WIDTH), np.uint8), variable="GTinst"),
                 "mat_key", "has no GTcls variable (it has: GTinst)"),
    "no_segmentation": (lambda path: scipy.io.savemat(path, {"GTcls": {"Boundaries": np.zeros(3)}}),
                        "mat_key", "GTcls has no Segmentation field (fields: Boundaries)"),
    "three_dimensional": (_mask(np.zeros((HEIGHT, WIDTH, 3), np.uint8)), "mask_shape", "expected a 2-D"),
    "fractions": (_mask(np.full((HEIGHT, WIDTH), 1.5)), "mask_dtype", "not whole numbers"),
    "values_above_20": (_mask(_bad_values()), "mask_values", "values 21, 100 on 50 pixel(s)"),
    "negative": (_mask(np.full((HEIGHT, WIDTH), -1, np.int16)), "mask_values", "values -1 on"),
    "other_size": (_mask(np.zeros((HEIGHT, WIDTH - 6), np.uint8)), "size_mismatch",
                   f"mask is {WIDTH - 6}x{HEIGHT} (WxH) but its image is {WIDTH}x{HEIGHT}"),
}
