"""The bad-input corpus: one folder holding every kind of bad file the project must survive,
among good files it must not lose, laid out so that every entry point can be pointed at it.

    corpus = build_corpus(folder)

    folder/voc/VOCdevkit/VOC2012    a dataset in VOC layout (make_dataset, validate_voc,
                                    research.evaluate): train.txt and val.txt list good
                                    ids and bad ids mixed
    folder/photos/                  a plain folder of images (research.predict)

The broken files come from `tests.research.data.voc_files.BROKEN` (one damaged sample per
entry: truncated JPEG and PNG, zero-byte files, a text file named .jpg, a non-VOC palette,
an RGB mask, a 16-bit mask, a mask of the wrong size, 30000 x 30000 header bombs, ...); the
unusual but valid photos from `voc_files.UNUSUAL_PHOTOS` (grayscale, CMYK, RGBA, palette,
16-bit, EXIF-rotated). Ids and file names carry spaces and non-ASCII characters.

Defined outcome of each file (what tests/research/test_reliability.py checks):
- a bad sample: every entry point names the damaged file and the problem
  (`voc.BadFileError`: path, kind, phrase); skipping entry points leave exactly it out;
- a good sample or photo: read (converted to RGB when it is not RGB), never lost;
- a non-image file in the photos folder: ignored by research.predict's folder walk.
"""
import dataclasses
import os

import numpy as np
from PIL import Image

from research.data import voc
from tests.research.data import voc_files

HEIGHT, WIDTH = 40, 56       # every VOC-layout sample (the masks are this size)


@dataclasses.dataclass
class BadSample:
    """A sample whose `path` (photo or mask) must be reported with `kind` and `phrase`."""
    image_id: str
    subset: str               # the split list naming it: "train" or "val"
    breaker: str              # the voc_files.BROKEN entry that damaged it
    path: str
    kind: str
    phrase: str


@dataclasses.dataclass
class GoodSample:
    """A sample that must load: `image` the RGB the reader must return (within
    `tolerance`), `mask` the class indices."""
    image_id: str
    subset: str
    image: np.ndarray
    mask: np.ndarray
    tolerance: int


@dataclasses.dataclass
class GoodPhoto:
    """A photo research.predict must turn into a mask of `displayed` RGB's size."""
    name: str
    displayed: np.ndarray     # uint8 [H, W, 3] as a viewer shows it (EXIF applied)


@dataclasses.dataclass
class Corpus:
    root: str
    voc_root: str
    photos: str
    good: list                # [GoodSample]
    bad: list                 # [BadSample]
    good_photos: list         # [GoodPhoto]
    bad_photos: dict          # file name -> phrase its error message must hold
    ignored_photos: list      # file names research.predict's folder walk must skip

    def good_in(self, subset):
        return [s for s in self.good if s.subset == subset]

    def bad_in(self, subset):
        return [s for s in self.bad if s.subset == subset]

    def files(self):
        """Every file of the corpus (relative paths)."""
        return sorted(os.path.relpath(os.path.join(folder, name), self.root)
                      for folder, _, names in os.walk(self.root) for name in names)

    def kinds(self):
        """The distinct kinds of file: bad kinds (by breaker), unusual photo kinds, names."""
        return sorted({f"bad sample: {s.breaker}" for s in self.bad}
                      | {f"bad photo: {name}" for name in self.bad_photos}
                      | {f"good sample: {s.image_id}" for s in self.good if s.image_id.startswith("photo ")}
                      | {"good photo: " + p.name for p in self.good_photos})


def _noise(height, width, seed):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _build_voc(voc_root):
    rng = np.random.default_rng(0)
    good, bad = [], []
    train, val = [], []

    def add_good(image_id, subset, writer=None):
        image, mask = voc_files.good_sample(rng, HEIGHT, WIDTH)
        voc_files.write_sample(voc_root, image_id, image, mask)
        if writer is None:  # the plain JPEG write_sample made: what PIL decodes of it
            expected, tolerance = np.asarray(Image.open(voc.image_path(voc_root, image_id)).convert("RGB")), 0
        else:
            expected, tolerance = writer(voc.image_path(voc_root, image_id), image)
        good.append(GoodSample(image_id, subset, expected, mask, tolerance))
        (train if subset == "train" else val).append(image_id)

    def add_bad(image_id, subset, breaker):
        image, mask = voc_files.good_sample(rng, HEIGHT, WIDTH)
        voc_files.write_sample(voc_root, image_id, image, mask)
        damage, path_of, kind, phrase = voc_files.BROKEN[breaker]
        damage(voc_root, image_id)
        bad.append(BadSample(image_id, subset, breaker, path_of(voc_root, image_id), kind, phrase))
        (train if subset == "train" else val).append(image_id)

    # Good and bad ids alternate, so a reader that stops or shifts at a bad file shows it.
    breakers = sorted(voc_files.BROKEN)
    plain = ["good 1", "good with  inner spaces", "gööd ünïcødé 猫 2", "good 4"]
    unusual = [(f"photo {name}", writer) for name, writer in sorted(voc_files.UNUSUAL_PHOTOS.items())]
    goods = [(image_id, None) for image_id in plain] + unusual
    for i, breaker in enumerate(breakers):
        if i < len(goods):
            add_good(goods[i][0], "train", goods[i][1])
        add_bad(f"bad {breaker} ü", "train", breaker)
    for image_id, writer in goods[len(breakers):]:
        add_good(image_id, "train", writer)
    # val.txt: two good and two bad, so evaluate's val/test halves both hold some.
    add_good("val good a", "val")
    add_bad("val bad text_as_jpeg", "val", "text_as_jpeg")
    add_good("val gøød b", "val")
    add_bad("val bad truncated_png", "val", "truncated_png")
    voc_files.write_split(voc_root, "train", train)
    voc_files.write_split(voc_root, "val", val)
    return good, bad


def _build_photos(folder):
    os.makedirs(folder, exist_ok=True)
    good = []

    def save(name, image, **options):
        image.save(os.path.join(folder, name), **options)
        return np.asarray(Image.open(os.path.join(folder, name)).convert("RGB"))

    good.append(GoodPhoto("plain.jpg", save("plain.jpg", Image.fromarray(_noise(30, 44, 1)), quality=95)))
    good.append(GoodPhoto("name with spaces.jpg",
                          save("name with spaces.jpg", Image.fromarray(_noise(21, 33, 2)), quality=95)))
    good.append(GoodPhoto("ünïcødé 猫.png", save("ünïcødé 猫.png", Image.fromarray(_noise(17, 19, 3)))))
    gray = _noise(26, 30, 4)[..., 0]
    save("grayscale.jpg", Image.fromarray(gray, "L"), quality=95)
    good.append(GoodPhoto("grayscale.jpg", np.asarray(Image.open(os.path.join(folder, "grayscale.jpg")))[..., None]
                          .repeat(3, axis=2)))
    good.append(GoodPhoto("cmyk.jpg", save("cmyk.jpg", Image.fromarray(_noise(28, 20, 5)).convert("CMYK"),
                                           quality=95)))
    assert Image.open(os.path.join(folder, "cmyk.jpg")).mode == "CMYK"
    rgba = np.concatenate([_noise(25, 27, 6), np.full((25, 27, 1), 9, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(os.path.join(folder, "rgba.png"))
    good.append(GoodPhoto("rgba.png", rgba[..., :3]))           # alpha dropped
    good.append(GoodPhoto("palette.png", save("palette.png", Image.fromarray(_noise(18, 24, 7)).quantize(16))))
    gray16 = (_noise(16, 22, 8)[..., 0].astype(np.uint16) * 257)
    Image.fromarray(gray16).save(os.path.join(folder, "gray16.png"))
    good.append(GoodPhoto("gray16.png", (gray16 // 257).astype(np.uint8)[..., None].repeat(3, axis=2)))
    # Stored 24 rows x 40 columns; EXIF orientation 6: displayed 40 rows x 24 columns.
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = save("exif rotated.jpg", Image.fromarray(_noise(24, 40, 9)), quality=95, exif=exif)
    good.append(GoodPhoto("exif rotated.jpg", np.rot90(stored, k=-1)))

    bad = {}

    def write(name, data, phrase):
        voc_files.write_bytes(os.path.join(folder, name), data)
        bad[name] = phrase

    whole = voc_files.jpeg_bytes(Image.fromarray(_noise(64, 64, 10)))
    write("truncated.jpg", whole[:len(whole) // 2], "truncated")
    whole = voc_files.png_bytes(Image.fromarray(_noise(64, 64, 11)))
    write("truncated.png", whole[:len(whole) // 2], "truncated")
    write("zero bytes.jpg", b"", "empty (0 bytes)")
    write("really text.jpg", b"this is a text file, not a picture\n", "not a readable image")
    write("bomb 30000x30000.png", voc_files.png_header_only(30000, 30000), "too many pixels")
    write("bomb 30000x30000.jpg", voc_files.jpeg_header_claiming(30000, 30000), "too many pixels")
    ignored = ["notes.txt"]
    voc_files.write_bytes(os.path.join(folder, "notes.txt"), b"not an image extension: not walked\n")
    return good, bad, ignored


def build_corpus(folder):
    """Writes the corpus into `folder` (created); returns its `Corpus` description."""
    folder = os.fspath(folder)
    voc_root = voc.voc_root_in(os.path.join(folder, "voc"))
    good, bad = _build_voc(voc_root)
    photos = os.path.join(folder, "photos")
    good_photos, bad_photos, ignored = _build_photos(photos)
    return Corpus(folder, voc_root, photos, good, bad, good_photos, bad_photos, ignored)
