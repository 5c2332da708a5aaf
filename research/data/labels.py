"""What a mask may hold, and hints that name the classic labelling mistakes.

A mask's pixel is a class index 0..C-1 or the dataset's ignore label (not scored). The
mistakes that end in a mean IoU of 0 or NaN in other projects' issue trackers, and the
hints given for them here:

- a two-class mask saved as 0/255: with ignore label 255 the foreground is silently
  ignored (every image is "all background"); with another ignore label 255 is refused;
- colour (RGB) masks read as if they held indices;
- Cityscapes `labelIds` (0-33) used where the 19 `trainIds` belong;
- ADE20K's labels, counted from 1 with 0 = "other", used as 0-based classes;
- masks resized with smoothing or saved as JPEG: values between the classes.

numpy only (the validator and the converters import it cheaply).
"""
import numpy as np

COLOUR_MASK_HINT = ("colour masks: give a palette in classes.json (one [r, g, b] per class) so that "
                    "their colours are read as classes, or convert them to class indices (an 8-bit "
                    "PNG whose pixel value is the class index)")
BINARY_MASK_HINT = ("masks hold 0/255: a binary mask saved as 0/255? Save the foreground as 1 "
                    "(pixel value = class index)")
# Share of the ignore label above which a split is reported: VOC's outlines are 5-8 %.
MOSTLY_IGNORED = 0.5


def _listed(values, limit=10):
    text = ", ".join(str(int(v)) for v in values[:limit])
    return text + (f" and {len(values) - limit} more" if len(values) > limit else "")


def value_hint(present, bad, num_classes, ignore_label):
    """The likely cause of values that are neither a class nor the ignore label.

    Args:
      present: sorted int array, every value the mask holds.
      bad: sorted int array, the values that are neither a class index nor `ignore_label`
        (not empty).
      num_classes, ignore_label: what the values may be.
    Returns:
      str, a sentence starting "hint: ".
    """
    present, bad = np.asarray(present), np.asarray(bad)
    if set(present.tolist()) <= {0, 255} and 255 in bad:
        return "hint: " + BINARY_MASK_HINT
    if num_classes == 19 and bad.max() <= 33:
        return ("hint: Cityscapes labelIds (0-33) instead of the 19 trainIds? "
                "scripts/prepare_cityscapes.py converts them")
    if bad.tolist() == [num_classes]:
        return (f"hint: labels counted from 1 (as ADE20K's, where 0 means \"other\")? Shift them to "
                f"0-{num_classes - 1} and mark unlabelled pixels with the ignore label "
                f"(scripts/prepare_ade20k.py does this for ADE20K)")
    if len(present) > 2 * num_classes + 2:
        return (f"hint: {len(present)} distinct values: a mask resized with smoothing (bilinear) or "
                f"saved as JPEG? Save masks as PNG and resize them by nearest neighbour")
    return (f"hint: the dataset has {num_classes} classes (0-{num_classes - 1}); is a class missing "
            f"from its class list, or are these masks of another labelling?")


def values_problem(counts, num_classes, ignore_label):
    """The problem sentence for a mask's values, or None when every value is allowed.

    Args:
      counts: int [256], the pixel count of each value in the mask.
      num_classes: C; values 0..C-1 are classes.
      ignore_label: the one other value allowed.
    Returns:
      None, or "values 7 on 12 pixel(s) are neither a class index (0-2) nor the ignore
      label 255; hint: ...".
    """
    counts = np.asarray(counts)
    outside = counts.copy()
    outside[:num_classes] = 0
    outside[ignore_label] = 0
    bad = np.flatnonzero(outside)
    if not bad.size:
        return None
    return (f"values {_listed(bad)} on {int(outside.sum())} pixel(s) are neither a class index "
            f"(0-{num_classes - 1}) nor the ignore label {ignore_label}; "
            + value_hint(np.flatnonzero(counts), bad, num_classes, ignore_label))


def split_warnings(class_pixels, ignore_pixels, class_names, ignore_label, split="train"):
    """Warnings about a split's labels as a whole (each file may be fine on its own).

    Args:
      class_pixels: int [C], labelled pixels per class over the split's masks.
      ignore_pixels: int, pixels with the ignore label.
      class_names: C names.
      ignore_label: the ignore value as stored in the masks.
      split: its name, for the messages.
    Returns:
      list of str: classes that never appear (their IoU is undefined, NaN, and left out
      of the mean IoU), and a split whose pixels are mostly the ignore label; the
      binary-mask hint when both point at masks saved as 0/255.
    """
    class_pixels = np.asarray(class_pixels, dtype=np.int64)
    total = int(class_pixels.sum()) + int(ignore_pixels)
    if total == 0:
        return []
    ignored = ignore_pixels / total
    absent = np.flatnonzero(class_pixels == 0)
    # 0/255 masks: only class 0 is labelled at all (the foreground went to the ignore value).
    binary = (ignore_label == 255 and ignored >= 0.1 and class_pixels[0] > 0
              and not class_pixels[1:].any())
    hint = f"; hint: {BINARY_MASK_HINT}" if binary else ""
    warnings = []
    if absent.size:
        names = ", ".join(f"{i} ({class_names[i]})" for i in absent[:10])
        more = f" and {absent.size - 10} more" if absent.size > 10 else ""
        warnings.append(f"{absent.size} class(es) never appear in the {split} split: {names}{more}; "
                        f"the model cannot learn them, and their IoU will be undefined (or 0 where they are predicted){hint}")
    if ignored > MOSTLY_IGNORED:
        warnings.append(f"{ignored:.0%} of the {split} split's pixels are the ignore label "
                        f"{ignore_label}: most labelled pixels are ignored (never trained on or "
                        f"scored){hint}")
    return warnings
