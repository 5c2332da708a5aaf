"""research.data.labels: which values a mask may hold, and the hints for the classic mistakes."""
import numpy as np

from research.data import labels


def counts(values, pixels=1):
    return np.bincount(np.repeat(np.asarray(values), pixels), minlength=256)


def test_allowed_values_are_no_problem():
    assert labels.values_problem(counts([0, 1, 2, 255]), 3, 255) is None
    assert labels.values_problem(counts([0, 1, 200]), 3, 200) is None


def test_the_problem_names_the_values_and_their_pixels():
    problem = labels.values_problem(counts([0, 1, 7], pixels=4), 3, 255)
    assert problem.startswith("values 7 on 4 pixel(s) are neither a class index (0-2) nor the ignore "
                              "label 255; hint: the dataset has 3 classes (0-2)")


def test_hints_name_the_likely_cause():
    # a two-class mask saved as 0/255 with another ignore label
    assert "a binary mask saved as 0/255?" in labels.values_problem(counts([0, 255]), 2, 254)
    # Cityscapes labelIds where trainIds belong
    assert "Cityscapes labelIds" in labels.values_problem(counts([7, 8, 26, 33]), 19, 255)
    # ADE20K's 1-based labels used as 0-based classes
    assert "labels counted from 1" in labels.values_problem(counts(range(151)), 150, 255)
    # a mask resized with smoothing: values between the classes
    assert "resized with smoothing" in labels.values_problem(counts(range(40)), 3, 255)


def test_split_warnings_for_masks_saved_as_0_255():
    # Two classes, foreground saved as 255 (the ignore label): class 1 never appears
    # and most pixels are ignored.
    warnings = labels.split_warnings([400, 0], 600, ("background", "foreground"), 255)
    assert len(warnings) == 2
    assert warnings[0].startswith("1 class(es) never appear in the train split: 1 (foreground)")
    assert warnings[1].startswith("60% of the train split's pixels are the ignore label 255: most "
                                  "labelled pixels are ignored")
    assert all(labels.BINARY_MASK_HINT in w for w in warnings)


def test_no_warnings_for_a_healthy_split():
    assert labels.split_warnings([500, 300, 200], 50, ("a", "b", "c"), 255) == []
    assert labels.split_warnings([0, 0], 0, ("a", "b"), 255) == []      # nothing read: nothing to say
    # an absent class with few ignored pixels: no 0/255 hint
    [warning] = labels.split_warnings([500, 0, 200], 10, ("a", "b", "c"), 255)
    assert "never appear" in warning and "hint" not in warning
    # many void pixels and an absent class, but other classes labelled: not 0/255 masks
    [warning] = labels.split_warnings([500, 300, 0], 150, ("a", "b", "c"), 255)
    assert "never appear" in warning and "hint" not in warning
