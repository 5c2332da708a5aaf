"""Checking what a killed training run left behind, and how a resumed run ended.

Reads a run's files strictly (train_log.csv with the exact header and no torn or
duplicated row; a checkpoint's loop state, learning rate and variables) and checks them:
`check_interrupted` after a kill or a clean stop, `check_consistent_finish` for a finished
run on its own (the plateau and early-stop rules replayed over the logged values), and
`check_finished` against an uninterrupted `Reference` run. A failed check raises
`VerificationError` saying what was lost or corrupted. research.reliability.chaos and
tests/research/test_reliability.py use these; TensorFlow is imported only by the
functions that read checkpoints.
"""
import csv
import dataclasses
import io
import json
import math
import os
import re
import signal

from research.training.loop_state import CSV_COLUMNS  # pure Python: no TensorFlow

STOPPED_LINE = re.compile(r"stopped by (SIG\w+) at step (\d+); checkpoint (\S+)")
RELATIVE_TOLERANCE = 1e-3
CSV_EXACT = ("epoch", "step", "learning_rate", "skipped_steps")
CSV_TIMING = ("images_per_second", "epoch_seconds")     # differ between any two runs
STALE = re.compile(r"(^\..*\.tmp(\..*)?$)|(\.old-)|(_temp)")


class VerificationError(AssertionError):
    """A resumed run lost or corrupted something; the message says what."""


def require(condition, message):
    """Raises VerificationError(message) unless `condition`."""
    if not condition:
        raise VerificationError(message)


# ---------------------------------------------------------------------------------
# Reading a run's state.
# ---------------------------------------------------------------------------------
def read_train_log(path):
    """Strictly parses train_log.csv: the exact header, then one complete row per finished
    epoch, epochs 1..k in order, every value a number. Returns the rows as dicts of
    floats (epoch and step as ints)."""
    columns = CSV_COLUMNS
    with open(path, "rb") as f:
        data = f.read()
    require(data.endswith(b"\n"), f"{path}: does not end with a newline (torn write)")
    text = data.decode("utf-8")
    records = list(csv.reader(io.StringIO(text, newline="")))
    require(records and records[0] == list(columns),
            f"{path}: header is {records[0] if records else None}, expected {list(columns)}")
    rows = []
    for number, record in enumerate(records[1:], start=2):
        require(len(record) == len(columns),
                f"{path}: line {number} has {len(record)} fields, expected {len(columns)} (torn row)")
        row = {}
        for name, value in zip(columns, record):
            try:
                row[name] = int(value) if name in ("epoch", "step", "skipped_steps") else float(value)
            except ValueError:
                raise VerificationError(f"{path}: line {number}: {name} = {value!r} is not a number") from None
        rows.append(row)
    epochs = [row["epoch"] for row in rows]
    require(epochs == list(range(1, len(rows) + 1)),
            f"{path}: epochs are {epochs}, expected 1..{len(rows)} once each (duplicated or missing rows)")
    return rows


def latest_checkpoint(workdir):
    """Path prefix of WORKDIR/checkpoints' latest checkpoint, or None."""
    import tensorflow as tf
    return tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))


def read_checkpoint(path):
    """{"loop_state": dict, "learning_rate": float, "shapes": {name: shape}, "finite": bool}."""
    import numpy as np
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(path)
    except Exception as e:  # noqa: BLE001 - any failure to read is the finding
        raise VerificationError(f"{path}: cannot be read ({type(e).__name__}: {e})") from None
    shapes = reader.get_variable_to_shape_map()
    finite = True
    for name in shapes:
        value = reader.get_tensor(name)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            finite = False
    state = json.loads(reader.get_tensor("loop_state/.ATTRIBUTES/VARIABLE_VALUE").decode())
    return {"loop_state": state, "learning_rate": float(reader.get_tensor(
                "optimizer/_learning_rate/.ATTRIBUTES/VARIABLE_VALUE")),
            "shapes": {k: list(v) for k, v in shapes.items()}, "finite": finite}


def stale_files(workdir):
    """Leftovers of interrupted writes (harmless, never read): temporary files and folders
    of atomic writes, and checkpoint files the `checkpoints/checkpoint` index does not list
    (a kill after TF wrote them, before the index named them)."""
    import tensorflow as tf

    found = []
    for folder, subfolders, files in os.walk(workdir):
        for name in subfolders + files:
            if STALE.search(name):
                found.append(os.path.relpath(os.path.join(folder, name), workdir))
    ckpt_dir = os.path.join(workdir, "checkpoints")
    state = tf.train.get_checkpoint_state(ckpt_dir)
    listed = {os.path.basename(p) for p in (state.all_model_checkpoint_paths if state else [])}
    for name in sorted(os.listdir(ckpt_dir)) if os.path.isdir(ckpt_dir) else []:
        prefix = name.split(".", 1)[0]
        if re.fullmatch(r"ckpt-\d+", prefix) and prefix not in listed:
            found.append(os.path.join("checkpoints", name))
    return sorted(found)


def _same_row(got, expected, what):
    """Rows agree: exactly on epoch/step/learning rate, within 1e-3 on losses and metrics."""
    worst = 0.0
    for name, value in expected.items():
        if name in CSV_TIMING:
            continue
        if name in CSV_EXACT:
            require(got[name] == value, f"{what}: {name} is {got[name]!r}, expected {value!r}")
            continue
        deviation = abs(got[name] - value) / max(abs(value), 1e-6)
        require(math.isclose(got[name], value, rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-9),
                f"{what}: {name} is {got[name]!r}, expected {value!r}")
        worst = max(worst, deviation)
    return worst


# ---------------------------------------------------------------------------------
# Checks.
# ---------------------------------------------------------------------------------
def check_interrupted(workdir, launch_result=None):
    """The state a kill (or a clean stop) left behind is consistent. Returns a dict of facts."""
    facts = {"csv_rows": None, "checkpoint": None}
    csv_path = os.path.join(workdir, "train_log.csv")
    rows = read_train_log(csv_path) if os.path.exists(csv_path) else None
    path = latest_checkpoint(workdir)
    if path is None:
        require(not rows, f"{csv_path} has {len(rows or [])} rows but there is no checkpoint")
    else:
        state = read_checkpoint(path)["loop_state"]
        facts["checkpoint"] = os.path.basename(path)
        history = state["history"]
        if rows is not None:
            require(len(rows) in (len(history), len(history) - 1),
                    f"{csv_path} has {len(rows)} rows; the checkpoint {path} has {len(history)} epochs")
            for got, expected in zip(rows, history):
                _same_row(got, expected, f"{csv_path} epoch {got['epoch']} vs {path}")
    facts["csv_rows"] = None if rows is None else len(rows)
    if launch_result is not None and launch_result.returncode == 130:
        stopped = [m for m in map(STOPPED_LINE.search, launch_result.lines) if m]
        require(stopped, "exit 130 without a 'stopped by SIG... at step N' line:\n" + launch_result.tail())
        name, step, checkpoint = stopped[-1].groups()
        require(name == signal.Signals(launch_result.kill.signum).name,
                f"stopped by {name}, but {launch_result.kill.kind} was sent")
        require(path is not None and path.endswith(f"ckpt-{step}") and checkpoint == path,
                f"stopped at step {step} but the latest checkpoint is {path}")
        require(state["step"] == int(step),   # `state`: read above (path is not None here)
                f"{path}: loop state step is not {step}")
        facts["stopped_at_step"] = int(step)
    return facts


@dataclasses.dataclass
class Reference:
    """What the uninterrupted run ended with."""
    rows: list
    checkpoint: str           # its file name, e.g. "ckpt-9"
    state: dict               # loop state
    learning_rate: float
    shapes: dict
    export_info: dict

    @classmethod
    def from_workdir(cls, workdir):
        """The Reference of a finished run in `workdir`: its latest checkpoint's loop state,
        variables and learning rate, its train_log.csv and its export's info."""
        path = latest_checkpoint(workdir)
        require(path is not None, f"reference run {workdir} has no checkpoint")
        ckpt = read_checkpoint(path)
        export_json = os.path.join(workdir, "export", "export.json")
        info = None
        if os.path.exists(export_json):
            with open(export_json, encoding="utf-8") as f:
                info = json.load(f)["info"]
        return cls(read_train_log(os.path.join(workdir, "train_log.csv")), os.path.basename(path),
                   ckpt["loop_state"], ckpt["learning_rate"], ckpt["shapes"], info)

    def summary(self):
        """One line: the reference run's steps, epochs, early stop and learning rates."""
        s = self.state
        lrs = ", ".join(f"{r['learning_rate']:.3g}" for r in self.rows)
        return (f"step {s['step']}, {len(self.rows)} epochs (stopped early: {s['stopped_early']}), "
                f"learning rates {lrs} -> {self.learning_rate:.3g}, best val_loss {s['best']:.5g} "
                f"at epoch {s['best_epoch']}, plateau wait {s['plateau_wait']}, early-stop wait "
                f"{s['early_stop_wait']}")


def replay_schedules(rows, config):
    """Replays research.train's plateau and early-stop rules over the epoch rows.

    Returns (LoopState, learning rate after the last epoch) as an uninterrupted run with
    these monitored values ends. Checks on the way that each row's learning rate is the
    one the rules give (a resume that lost the plateau state would show here). The
    learning rate lives in a float32 variable, so each new value is rounded to float32.
    """
    import numpy as np

    from research import config as config_lib
    from research.training import schedules
    from research.training.loop_state import LoopState

    state = LoopState()
    mode = config_lib.monitor_mode(config)
    learning_rate = float(np.float32(config.learning_rate))
    for row in rows:
        require(row["learning_rate"] == learning_rate,
                f"train_log.csv epoch {row['epoch']}: learning rate {row['learning_rate']!r}, the "
                f"plateau rule gives {learning_rate!r}")
        state.epoch += 1
        new_rate, _ = schedules.update_schedules(state, row[config.monitor], config, mode, learning_rate)
        if new_rate != learning_rate:
            learning_rate = float(np.float32(new_rate))
    return state, learning_rate


def check_consistent_finish(workdir, restore=True):
    """Checks a finished run on its own (no reference): the latest checkpoint is finite,
    restores into the model and ends the run (last epoch, or stopped early, at step
    epochs x steps_per_epoch); train_log.csv equals its history; the learning rate, best
    value and epoch, plateau and early-stop waits and stop flag are what the rules give
    for the logged monitored values. Returns (checkpoint path, its contents, rows)."""
    from research import config as config_lib

    config = config_lib.load_config_file(os.path.join(workdir, "config.json"))
    path = latest_checkpoint(workdir)
    require(path is not None, f"{workdir}: no checkpoint after the run finished")
    ckpt = read_checkpoint(path)
    require(ckpt["finite"], f"{path}: holds NaN/Inf values")
    state = ckpt["loop_state"]
    require(state["epoch"] == config.epochs or state["stopped_early"],
            f"{path}: epoch {state['epoch']} of {config.epochs} and not stopped early: unfinished")
    require(state["step"] == state["epoch"] * config.steps_per_epoch and state["epoch_steps"] == 0,
            f"{path}: step {state['step']} after {state['epoch']} epochs of {config.steps_per_epoch}")
    require(path.endswith(f"ckpt-{state['step']}"), f"{path}: is not the checkpoint of step {state['step']}")
    if restore:
        _restore_into_model(workdir, path)
    rows = read_train_log(os.path.join(workdir, "train_log.csv"))
    require(len(rows) == len(state["history"]) == state["epoch"],
            f"train_log.csv has {len(rows)} rows, the checkpoint {len(state['history'])} epochs")
    for got, want in zip(rows, state["history"]):
        _same_row(got, want, f"train_log.csv epoch {got['epoch']} vs {path}")
        require(got["step"] == got["epoch"] * config.steps_per_epoch,
                f"train_log.csv epoch {got['epoch']}: step {got['step']}")
    replayed, learning_rate = replay_schedules(rows, config)
    for name in ("best", "best_epoch", "plateau_wait", "early_stop_wait", "stopped_early"):
        require(state[name] == getattr(replayed, name),
                f"{path}: loop state {name} is {state[name]!r}, the rules give {getattr(replayed, name)!r}")
    require(ckpt["learning_rate"] == learning_rate,
            f"{path}: learning rate {ckpt['learning_rate']!r}, the plateau rule gives {learning_rate!r}")
    return path, ckpt, rows


def check_finished(workdir, reference, restore=True):
    """The finished (resumed) run is consistent on its own (`check_consistent_finish`)
    and equals the reference. Returns a dict of facts."""
    path, ckpt, rows = check_consistent_finish(workdir, restore)
    require(os.path.basename(path) == reference.checkpoint,
            f"latest checkpoint is {os.path.basename(path)}, expected {reference.checkpoint}")
    require(ckpt["shapes"] == reference.shapes, f"{path}: its variables differ from the reference's")
    state, expected = ckpt["loop_state"], reference.state
    for name in ("step", "epoch", "best_epoch", "plateau_wait", "early_stop_wait", "stopped_early",
                 "epoch_steps", "nan_restores"):
        require(state[name] == expected[name], f"{path}: loop state {name} is {state[name]!r}, "
                                                f"expected {expected[name]!r}")
    require(math.isclose(state["best"], expected["best"], rel_tol=RELATIVE_TOLERANCE),
            f"{path}: best {state['best']!r}, expected {expected['best']!r}")
    require(ckpt["learning_rate"] == reference.learning_rate,
            f"{path}: learning rate {ckpt['learning_rate']!r}, expected {reference.learning_rate!r}")
    require(len(rows) == len(reference.rows),
            f"train_log.csv has {len(rows)} rows, the reference {len(reference.rows)}")
    worst = 0.0
    for got, want in zip(rows, reference.rows):
        worst = max(worst, _same_row(got, want, f"train_log.csv epoch {got['epoch']}"))

    export_dir = os.path.join(workdir, "export")
    if reference.export_info is None:
        require(not os.path.exists(os.path.join(export_dir, "export.json")),
                "an export exists but the reference has none")
    else:
        _check_export(export_dir, reference.export_info)
    stale = stale_files(workdir)
    # The last launch started clean and removed what earlier killed launches left
    # half-written (research.training.checkpoints.remove_leftovers); checkpoint files that the index
    # does not list may stay (the next save of that step overwrites them).
    leftovers = [p for p in stale if STALE.search(os.path.basename(p))]
    require(not leftovers, f"leftovers of interrupted writes were not removed: {', '.join(leftovers)}")
    return {"max_relative_deviation": worst, "stale": stale}


def _restore_into_model(workdir, path):
    import keras

    from research import export

    config = export.read_run_config(workdir)
    try:
        loaded = export.load_model(workdir, config, source="checkpoint")
    except (ValueError, FileNotFoundError) as e:
        raise VerificationError(f"{path}: does not restore into the model: {e}") from None
    require(loaded.source["path"] == path, f"restored {loaded.source['path']}, expected {path}")
    keras.backend.clear_session()


def _check_export(export_dir, expected_info):
    import keras

    from research import export

    for name in ("model.keras", "export.json", os.path.join("saved_model", "saved_model.pb")):
        require(os.path.isfile(os.path.join(export_dir, name)), f"{export_dir}/{name} is missing")
    try:
        _, facts = export.load_export(export_dir)
    except ValueError as e:
        raise VerificationError(f"export does not load: {e}") from None
    info = facts.get("info", {})
    for name, value in expected_info.items():
        same = (math.isclose(info.get(name), value, rel_tol=RELATIVE_TOLERANCE)
                if isinstance(value, float) else info.get(name) == value)
        require(same, f"{export_dir}/export.json info {name} is {info.get(name)!r}, expected {value!r}")
    keras.backend.clear_session()


