"""research.cli.run_main: how every command line ends (one line and a status, or a traceback)."""
import pytest
import tensorflow as tf

from research import cli
from research.data import voc


def _raise(error):
    def work():
        raise error
    return work


class OwnError(RuntimeError):
    pass


class Stopped(Exception):
    pass


def test_the_work_gives_the_status():
    assert cli.run_main(lambda: None) == 0
    assert cli.run_main(lambda: 3) == 3


@pytest.mark.parametrize("error", [ValueError("data/x.json: not valid JSON"),
                                   FileNotFoundError("data/x.json: not found"),
                                   PermissionError("data/x.json: permission denied")])
def test_a_known_error_is_one_line_and_status_1(capsys, error):
    assert cli.run_main(_raise(error)) == 1
    assert capsys.readouterr().err == f"error: {error}\n"


def test_a_commands_own_errors_and_resumable_stops(capsys):
    assert cli.run_main(_raise(OwnError("op X in layer y")), errors=(OwnError,)) == 1
    assert capsys.readouterr().err == "error: op X in layer y\n"
    assert cli.run_main(_raise(Stopped("stopped at step 5")), interrupted=(Stopped,)) == 130
    assert capsys.readouterr().err == "interrupted: stopped at step 5\n"


def test_anything_else_keeps_its_traceback():
    with pytest.raises(OwnError):
        cli.run_main(_raise(OwnError("a bug")))
    with pytest.raises(KeyError):
        cli.run_main(_raise(KeyError("a bug")))


def test_a_bad_sample_that_stopped_a_pipeline_is_named_with_the_hint(capsys):
    # What iterating a tf.data pipeline raises for a bad file without skip_bad: the line
    # "BadFileError: <file>: <problem>" inside TensorFlow's long message.
    message = ("Traceback (most recent call last):\n  ...\nresearch.data.voc.BadFileError: "
               "data/JPEGImages/a.jpg: not a JPEG (truncated)\n\n\t [[{{node PyFunc}}]]")
    error = tf.errors.InvalidArgumentError(None, None, message)
    assert cli.run_main(_raise(error), bad_file_hint=cli.SKIP_BAD_SET) == 1
    assert capsys.readouterr().err == (
        "error: data/JPEGImages/a.jpg: not a JPEG (truncated) (--set skip_bad=true leaves bad samples out)\n")
    other = tf.errors.InvalidArgumentError(None, None, "Incompatible shapes: [2] vs. [3]")
    with pytest.raises(tf.errors.InvalidArgumentError):
        cli.run_main(_raise(other))
    # Read outside a pipeline (evaluation at full resolution), the same line and hint.
    bad = voc.BadFileError("data/JPEGImages/b.jpg", "too_large", "refused, too many pixels")
    assert cli.run_main(_raise(bad), bad_file_hint=cli.SKIP_BAD_RUN) == 1
    assert capsys.readouterr().err == (
        "error: data/JPEGImages/b.jpg: refused, too many pixels (--skip-bad leaves bad samples out)\n")
