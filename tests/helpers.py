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


def checkpoint_values(workdir, prefixes=("model/",)):
    """{name: value} of the latest checkpoint's variables under `prefixes` ("model/": the
    weights and BatchNorm statistics; "optimizer/": slots, iterations, EMA averages)."""
    import os

    import tensorflow as tf

    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith(tuple(prefixes))}


def assert_rows_equal(rows, expected, rel=1e-4):
    """train_log.csv rows (dicts, strings or floats) equal to `expected` within `rel`."""
    import pytest

    from research.training.loop_state import METRIC_NAMES

    assert [(int(r["epoch"]), int(r["step"])) for r in rows] == [(int(r["epoch"]), int(r["step"])) for r in expected]
    for got, want in zip(rows, expected, strict=True):
        for name in ("loss", "val_loss", "learning_rate") + METRIC_NAMES + tuple("val_" + m for m in METRIC_NAMES):
            assert float(got[name]) == pytest.approx(float(want[name]), rel=rel, abs=1e-7), name


def voc_with_bad_samples(voc_root, folder):
    """A VOC root sharing `voc_root`'s files whose train list also names two unreadable
    samples (10 listed, 8 good for the embedded test dataset's train split)."""
    import os

    from research.data import voc

    root = str(folder)
    os.makedirs(os.path.join(root, "ImageSets", "Segmentation"))
    os.makedirs(os.path.join(root, "JPEGImages"))
    os.symlink(os.path.join(voc_root, "SegmentationClass"), os.path.join(root, "SegmentationClass"))
    for name in os.listdir(os.path.join(voc_root, "JPEGImages")):
        os.symlink(os.path.join(voc_root, "JPEGImages", name), os.path.join(root, "JPEGImages", name))
    for name in ("broken_a", "broken_b"):
        with open(os.path.join(root, "JPEGImages", name + ".jpg"), "wb") as f:
            f.write(b"not a jpeg\n")
    for subset in ("train", "val"):
        ids = voc.read_id_list(voc.split_file(voc_root, subset))
        if subset == "train":
            ids = ids[:3] + ["broken_a"] + ids[3:6] + ["broken_b"] + ids[6:]
        with open(os.path.join(root, "ImageSets", "Segmentation", f"{subset}.txt"), "w") as f:
            f.write("".join(i + "\n" for i in ids))
    return root


def graph_ancestors(op):
    """{name: op} of every op a traced graph's `op` depends on, through data and control
    edges (itself included)."""
    seen, stack = {}, [op]
    while stack:
        op = stack.pop()
        if op.name not in seen:
            seen[op.name] = op
            stack += [t.op for t in op.inputs] + list(op.control_inputs)
    return seen
