"""How every command line ends: a known error is one line on stderr and an exit status.

    def main(argv=None):
        args = parse_args(argv)
        return cli.run_main(lambda: run(args), bad_file_hint="--skip-bad leaves bad files out")

A user can act on "error: data/x.png: not a PNG" at once; a traceback around it only hides
it. What counts as known: `KNOWN_ERRORS` (bad values, missing or unwritable files), the
command's own error classes, and a bad sample (a `research.data.voc.BadFileError`, also
when it stopped a tf.data pipeline: TensorFlow then raises an InvalidArgumentError whose
long message holds the file and the problem), reported with the command's hint on how
to leave bad samples out. Anything else is a bug and keeps its traceback.

This module does not import TensorFlow: scripts that never need it stay quick.
"""
import sys

# ValueError: a bad value (config, argument, file contents); OSError: a file that is
# missing, exists already, or cannot be read or written. Messages name the file.
KNOWN_ERRORS = (ValueError, OSError)
ERROR_STATUS = 1
INTERRUPTED_STATUS = 130     # as a shell reports a Ctrl-C (128 + SIGINT)
# `bad_file_hint`s: how to leave bad samples out, for a new run and for a finished one.
SKIP_BAD_SET = "--set skip_bad=true leaves bad samples out"
SKIP_BAD_RUN = "--skip-bad leaves bad samples out"


def _skipped_already(message):
    """Whether a bad-sample message comes with skip_bad on (`voc.ALREADY_SKIPPED`: too few
    good samples were left), where a hint on how to skip would mislead."""
    voc = sys.modules.get("research.data.voc")
    return voc is not None and voc.ALREADY_SKIPPED in message


def bad_file_message(error):
    """"<file>: <problem>" when `error` is a bad sample: a `research.data.voc.BadFileError`,
    or TensorFlow's report of one that stopped a pipeline (research.data.pipeline's
    `bad_file_message` reads it); else None."""
    voc = sys.modules.get("research.data.voc")    # such errors exist only once it is imported
    if voc is not None and isinstance(error, voc.BadFileError):
        return str(error)
    tf = sys.modules.get("tensorflow")
    if tf is None or not isinstance(error, tf.errors.InvalidArgumentError):
        return None
    from research.data import pipeline

    return pipeline.bad_file_message(error)


def run_main(work, errors=(), interrupted=(), bad_file_hint=None):
    """Runs a command line's work; returns its exit status.

    Args:
      work: function of no arguments doing the work; returns the exit status (None: 0).
      errors: more exception classes to report as errors, besides KNOWN_ERRORS.
      interrupted: exception classes meaning "stopped as asked, resumable": printed as
        "interrupted: <message>", exit INTERRUPTED_STATUS.
      bad_file_hint: appended in parentheses to a bad sample's line (`bad_file_message`),
        e.g. how to leave bad samples out.
    Returns:
      the status of `work`; ERROR_STATUS after printing "error: <message>" to stderr for
      a known error. Other exceptions propagate with their traceback.
    """
    try:
        status = work()
    except BaseException as error:
        if isinstance(error, tuple(interrupted)):
            print(f"interrupted: {error}", file=sys.stderr, flush=True)
            return INTERRUPTED_STATUS
        message = bad_file_message(error)
        if message is not None:
            hint = f" ({bad_file_hint})" if bad_file_hint and not _skipped_already(message) else ""
            print(f"error: {message}{hint}", file=sys.stderr, flush=True)
            return ERROR_STATUS
        if isinstance(error, KNOWN_ERRORS + tuple(errors)):
            print(f"error: {error}", file=sys.stderr, flush=True)
            return ERROR_STATUS
        raise
    return 0 if status is None else status
