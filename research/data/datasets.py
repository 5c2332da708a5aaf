"""One reader, two layouts: the dataset a config reads, whatever its folder layout.

    source = dataset_of(config)          # VocDataset or folder.FolderDataset
    ids = source.split("train")
    image, mask = source.read_sample(source.image_path(ids[0]), source.mask_path(ids[0], "train"))

Both layouts answer the same questions, so the tf.data pipeline, evaluation, the
validator and the pictures have one code path:

    kind            "voc" or "folder"
    root            the dataset's folder (voc_root, or data_root)
    class_names     tuple of C names; num_classes = C
    palette         uint8 [256, 3]: the colour of each class index (pictures, mask PNGs)
    ignore_label    the ignore value as stored in the mask files (the reader hands it on as 255)
    subsets         the subset names `split` accepts
    check_root()    FileNotFoundError unless the folder is this kind of dataset
    split(subset, split_seed=0)           -> [id, ...]
    image_path(id), mask_path(id, subset) -> file paths
    read_sample(image_file, mask_file, max_pixels) -> (uint8 [H, W, 3], uint8 [H, W]),
                    checked; raises research.data.voc.BadFileError naming the file

numpy + PIL only (no TensorFlow).
"""
import os

from research.data import folder, voc


class VocDataset:
    """Pascal VOC 2012 (`research.data.voc`) in the interface of the module doc."""
    kind = "voc"
    class_names = voc.CLASS_NAMES
    num_classes = voc.NUM_CLASSES
    palette = voc.VOC_PALETTE
    ignore_label = voc.IGNORE_LABEL
    subsets = voc.SUBSETS

    def __init__(self, voc_root):
        self.root = os.fspath(voc_root)

    def __repr__(self):
        return f"VocDataset({self.root!r})"

    def check_root(self):
        """`voc.check_voc_root`: missing, or one level too high ("did you mean ...?")."""
        voc.check_voc_root(self.root)

    def split(self, subset, split_seed=0):
        """`voc.read_split`."""
        return voc.read_split(self.root, subset, split_seed)

    def image_path(self, image_id):
        """JPEGImages/<id>.jpg under the dataset root."""
        return voc.image_path(self.root, image_id)

    def mask_path(self, image_id, subset=None):
        """The id's mask as `subset` reads it: SegmentationClassAug/<id>.png for
        train_aug, else SegmentationClass/<id>.png."""
        return voc.mask_path(self.root, image_id, subset)

    def read_sample(self, image_file, mask_file, max_pixels=voc.DEFAULT_MAX_PIXELS):
        """`voc.read_sample`."""
        return voc.read_sample(image_file, mask_file, max_pixels)


def dataset_of(config):
    """The dataset a `research.config.Config` reads: VOC at `voc_root`, or the folder
    dataset at `data_root` (config.dataset "folder").

    Raises:
      FileNotFoundError: a folder dataset without classes.json (for VOC, a missing root is
        reported when it is read, as before).
      ValueError: a folder dataset whose classes.json lists another number of classes
        than config.num_classes (naming the file and both numbers), or a bad classes.json.
    """
    if config.dataset == "voc":
        return VocDataset(config.voc_root)
    dataset = folder.FolderDataset(config.data_root)
    if dataset.num_classes != config.num_classes:
        raise ValueError(f"{folder.classes_file(dataset.root)}: lists {dataset.num_classes} classes "
                         f"but the config's num_classes is {config.num_classes}; a folder dataset's "
                         f"classes come from its classes.json (set num_classes={dataset.num_classes}, "
                         f"or fix the file)")
    return dataset


def as_dataset(source):
    """`source` itself when it is a dataset (has `read_sample`), else a VOC root path
    (what `research.data.pipeline.make_dataset` always took) as a `VocDataset`."""
    if hasattr(source, "read_sample"):
        return source
    return VocDataset(source)


def open_root(path):
    """The dataset at `path`, by its layout: a folder dataset when `path` holds
    classes.json, else VOC (for command lines that take a path, not a config)."""
    if os.path.isfile(folder.classes_file(path)):
        return folder.FolderDataset(path)
    return VocDataset(path)
