"""The sliding window's command-line options and default stride, without TensorFlow.

`research.predict` parses its arguments before it imports TensorFlow (seconds), so
`--help` and argument errors answer at once; `research.sliding_window` runs the windows.
"""
import argparse
import math


def positive_int(text):
    """argparse type: an integer of at least 1 (a window or stride side)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text}")
    return value


def add_window_arguments(parser, mode_default):
    """Adds --mode whole|slide, --window H W and --stride H W to an argparse parser
    (research.evaluate, research.predict); `mode_default` says what no --mode means."""
    parser.add_argument("--mode", default=None, choices=("whole", "slide"),
                        help=f"whole: each image resized to the model's input size; slide: overlapping "
                             f"windows over the image at its own size, logits averaged (default: "
                             f"{mode_default})")
    parser.add_argument("--window", type=positive_int, nargs=2, default=None, metavar=("H", "W"),
                        help="slide: the window's height and width (default: the model's input size)")
    parser.add_argument("--stride", type=positive_int, nargs=2, default=None, metavar=("H", "W"),
                        help="slide: pixels between windows, at most the window (default: 2/3 of the window)")


def default_stride(window):
    """(h, w) stride used when none is given: 2/3 of the window, rounded up (769 -> 513,
    the reference Cityscapes setting; 512 -> 342), so neighbouring windows overlap."""
    return tuple(max(1, math.ceil(2 * side / 3)) for side in window)
