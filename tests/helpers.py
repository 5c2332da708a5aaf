"""Small helpers shared by test modules."""
import csv


def read_csv(path):
    """The rows of a CSV file with a header, as dicts of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def command_line_errors(caplog, capsys):
    """The errors a command line reported, each without its "error: " prefix: the lines
    research.cli.run_main prints to stderr, and ERROR records of the `research` logger
    (the training command line logs its errors). Reads (and so clears) captured stderr."""
    import logging

    printed = [line[len("error: "):] for line in capsys.readouterr().err.splitlines()
               if line.startswith("error: ")]
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name == "research"]
    return logged + printed


def sigterm_during(monkeypatch, train_lib, epoch, count):
    """Makes research.train send itself SIGTERM after step `count` of epoch `epoch`
    (1-based), from the progress bar the loop updates after each step. Returns a function
    that undoes it (before the run is resumed)."""
    import os
    import signal

    original_update = train_lib.ProgressBar.update

    def update(self, steps=1, **values):
        original_update(self, steps, **values)
        if self.count == count and self.desc.startswith(f"epoch {epoch}/"):
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(train_lib.ProgressBar, "update", update)
    return lambda: monkeypatch.setattr(train_lib.ProgressBar, "update", original_update)
