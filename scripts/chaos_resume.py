"""Kill-and-resume chaos run: SIGKILL smoke training runs at random moments, resume them,
and check that nothing was lost.

    python scripts/chaos_resume.py --runs 20 --seed 0 [--max-kills 3] [--workers 1] [--workdir-root DIR] [--keep]

What it does:
1. writes a small embedded dataset (research.data.synthetic, 8 train / 6 val) into the
   workdir root, once;
2. trains one uninterrupted REFERENCE run of the chaos config (`CHAOS_SETS`: the smoke
   model, 4 epochs of 3 steps, a checkpoint every 2 steps, val_loss monitored upwards so
   the learning rate drops after every epoch from the second and early stopping ends the
   run after epoch 3: learning-rate, plateau and early-stop state all change);
3. for each run: a fresh workdir, a seeded random plan of 1 to --max-kills kills, each
   applied to one launch of `python -m research.train`, relaunching after every kill
   until a launch exits 0 (a last clean launch after the plan). Kill kinds:
     point:P:N       launched through scripts/fault_train.py --kill-at P:N (a test-only
                     entry that installs research.faults.hook), SIGKILL at the N-th pass
                     of research.faults point P: "step" (after an optimizer step), "checkpoint" (checkpoint
                     files written, CSV not yet), "atomic_replace" (a temp file written,
                     not yet renamed: config.json, train_log.csv, model.keras,
                     export.json), "export" (model.keras written, SavedModel not yet);
     timer:S         SIGKILL from this script S seconds after the launch printed its first
                     progress line (lands anywhere: inside a step, inside TF's own
                     checkpoint writing, the evaluation, the export);
     setup_timer:S   SIGKILL S seconds after the launch started (imports, restore);
     sigterm:S, sigint:S   the polite signals, S seconds after the first progress line:
                     the launch must exit 130 with a checkpoint at the step it stopped
                     (or 0 when the run had already finished its last step).
   The plan draws a timer as a fraction of a window; S is that fraction of what recent
   launches on this machine took (`Windows`: the median of the last few), so timers keep
   landing while the machine's load changes. Points and fractions are seeded; the
   moment a timer lands is not (it is a time).
   A planned kill that does not land (the launch finished first) is counted as missed.
4. after every killed launch: train_log.csv (if any) parses with the exact header, has
   epochs 1..k in order with no torn or duplicated row, and equals the first k rows of
   the latest checkpoint's history, which is k or k + 1 epochs long; the latest
   checkpoint loads;
5. after the last launch: exit 0; the latest checkpoint ends the run (step = epochs x
   steps, or stopped early), restores into a freshly built model (every model variable
   matched), holds finite values, and its learning rate, best value and epoch, plateau
   and early-stop waits and stop flag are what the rules give for the logged monitored
   values (`check_consistent_finish`) AND what the reference ended with (same variables,
   step, epoch); train_log.csv equals the checkpoint's history and the reference's rows
   (same epochs, steps, learning rates; losses and metrics within a relative 1e-3);
   export/ is complete (model.keras loads, SavedModel present) with the reference's
   export facts; no temporary file or folder of an interrupted write is left (each
   launch removes those of the launches killed before it).

--workers N (N > 1): every launch is N local workers of MultiWorkerMirroredStrategy
(research.launch's functions: free ports, TF_CONFIG per worker), the reference too.
Each planned kill SIGKILLs one seeded random worker: at a kill point (step and
checkpoint on any worker; atomic_replace and export happen on the chief only) or by a
timer. The other workers must then exit non-zero on their own within
FAIL_FAST_SECONDS (a hang fails the run), and the relaunch continues as above.

Prints a line per run and a summary ("N/N runs resumed correctly, K kills total"),
writes WORKDIR_ROOT/chaos_summary.json, and exits 1 if any run failed. A run's workdir
is deleted once verified unless --keep (failed ones are always kept). Each launch is a
new Python process (TensorFlow import and tracing): about 15-20 s on 2 CPU cores.
"""
import argparse
import csv
import dataclasses
import io
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# The chaos config: the named "smoke" config with these overrides.
CHAOS_SETS = (
    "epochs=4", "steps_per_epoch=3", "checkpoint_every_steps=2", "monitor=val_loss",
    "monitor_mode=max", "plateau_patience=1", "early_stop_patience=2",
)
# How often each kill point is passed in one uninterrupted launch of the chaos config
# (the upper end of the count drawn for it).
POINT_PASSES = {"step": 9, "checkpoint": 6, "atomic_replace": 10, "export": 1}
KIND_WEIGHTS = {"point:step": 0.15, "point:checkpoint": 0.15, "point:atomic_replace": 0.2,
                "point:export": 0.1, "timer": 0.3, "setup_timer": 0.04, "sigterm": 0.03,
                "sigint": 0.03}
PROGRESS_LINE = re.compile(r"^epoch \d+/\d+ \| \[")
STOPPED_LINE = re.compile(r"stopped by (SIG\w+) at step (\d+); checkpoint (\S+)")
RELATIVE_TOLERANCE = 1e-3
CSV_EXACT = ("epoch", "step", "learning_rate", "skipped_steps")
CSV_TIMING = ("images_per_second", "epoch_seconds")     # differ between any two runs
STALE = re.compile(r"(^\..*\.tmp(\..*)?$)|(\.old-)|(_temp)")
FAULT_TRAIN = os.path.join(REPO, "scripts", "fault_train.py")
# Multi-worker mode: kinds drawn, and the bound on the survivors' exit after a kill.
CLUSTER_KIND_WEIGHTS = {"point:step": 0.3, "point:checkpoint": 0.2, "point:atomic_replace": 0.1,
                        "point:export": 0.05, "timer": 0.35}
CHIEF_ONLY_POINTS = ("atomic_replace", "export")
FAIL_FAST_SECONDS = 60.0   # measured 1.1-18.2 s (12 kills, 2 workers, 2 cores); TF heartbeat 10 s


class VerificationError(AssertionError):
    """A resumed run lost or corrupted something; the message says what."""


def _require(condition, message):
    if not condition:
        raise VerificationError(message)


# ---------------------------------------------------------------------------------
# Launching training processes.
# ---------------------------------------------------------------------------------
@dataclasses.dataclass
class Kill:
    """One planned interruption of one launch (see the module doc for the kinds)."""
    kind: str                 # "point", "timer", "setup_timer", "sigterm", "sigint"
    point: str = None         # for "point"
    count: int = None         # for "point"
    delay: float = None       # seconds, for the others (or set from `fraction` at launch)
    fraction: float = None    # of the current window (`Windows`), drawn by the plan
    worker: int = None        # multi-worker mode: the worker killed

    def __str__(self):
        where = "" if self.worker is None else f"@w{self.worker}"
        if self.kind == "point":
            return f"{self.point}:{self.count}{where}"
        if self.delay is None:
            return f"{self.kind}:{self.fraction:.2f}w{where}"
        return f"{self.kind}:{self.delay:.2f}s{where}"

    @property
    def label(self):
        """The kind for the summary: the point's name, or the timer/signal kind."""
        return self.point if self.kind == "point" else self.kind

    @property
    def signum(self):
        return {"sigterm": signal.SIGTERM, "sigint": signal.SIGINT}.get(self.kind, signal.SIGKILL)


@dataclasses.dataclass
class Launch:
    """What one training process did."""
    kill: Kill
    returncode: int
    seconds: float
    lines: list
    signal_sent: bool = False
    first_progress_seconds: float = None
    # Several workers: seconds from the killed worker's death to the last survivor's exit.
    survivors_exit_seconds: float = None

    @property
    def killed(self):
        return self.returncode == -signal.SIGKILL

    @property
    def landed(self):
        """Whether the planned interruption happened (the launch did not just finish)."""
        if self.kill is None:
            return False
        if self.kill.kind in ("sigterm", "sigint"):
            return self.returncode == 130
        return self.killed

    def tail(self, count=15):
        return "\n".join(self.lines[-count:])


def train_command(workdir, voc_root, sets=CHAOS_SETS, kill=None):
    """`python -m research.train ...`, or through scripts/fault_train.py for a kill point."""
    args = ["--config", "smoke", "--workdir", workdir, "--set", f"voc_root={voc_root}"]
    for item in sets:
        args += ["--set", item]
    if kill is not None and kill.kind == "point":
        return [sys.executable, FAULT_TRAIN, "--kill-at", f"{kill.point}:{kill.count}", "--"] + args
    return [sys.executable, "-m", "research.train"] + args


def launch(workdir, voc_root, kill=None, sets=CHAOS_SETS, timeout=600):
    """Runs one `python -m research.train` launch, applying `kill` (a `Kill` or None).

    Returns a `Launch`. Raises VerificationError if the process outlives `timeout`.
    """
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    start = time.monotonic()
    process = subprocess.Popen(train_command(workdir, voc_root, sets, kill), cwd=REPO, env=env, text=True,
                               errors="replace", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    first_progress = threading.Event()
    marks = {}

    def read():
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if not first_progress.is_set() and PROGRESS_LINE.match(line):
                marks["progress"] = time.monotonic() - start
                first_progress.set()
        first_progress.set()  # the output ended: nothing more to wait for

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    sent = False
    try:
        if kill is not None and kill.kind != "point":
            if kill.kind != "setup_timer":
                first_progress.wait(timeout)
            anchor = time.monotonic()
            while process.poll() is None and time.monotonic() - anchor < kill.delay:
                time.sleep(0.01)
            if process.poll() is None:
                os.kill(process.pid, kill.signum)
                sent = True
        try:
            process.wait(timeout=max(1.0, timeout - (time.monotonic() - start)))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise VerificationError(f"training launch still running after {timeout} s:\n"
                                    + "\n".join(lines[-15:])) from None
    finally:
        if process.poll() is None:  # this script was interrupted: leave no orphan
            process.kill()
            process.wait()
        reader.join(timeout=10)
    return Launch(kill, process.returncode, time.monotonic() - start, lines, sent, marks.get("progress"))


def launch_cluster(workdir, voc_root, kill=None, sets=CHAOS_SETS, workers=2, timeout=900):
    """One launch of `workers` local workers (research.launch), applying `kill` to worker
    `kill.worker`. Returns a `Launch` of the chief's output whose returncode is -SIGKILL
    when the planned kill landed, else the chief's status.

    Raises VerificationError if the survivors of a kill do not all exit non-zero within
    FAIL_FAST_SECONDS, or if the launch outlives `timeout`.
    """
    from research import launch as launch_lib

    sets = tuple(sets) + ("distribute=multi_worker",)
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    first_progress = threading.Event()
    marks = {}
    start = time.monotonic()

    def on_line(index, line):
        if index == 0 and not first_progress.is_set() and PROGRESS_LINE.match(line):
            marks["progress"] = time.monotonic() - start
            first_progress.set()

    commands = [train_command(workdir, voc_root, sets, kill if kill is not None and kill.worker == i else None)
                for i in range(workers)]
    cluster = launch_lib.start_workers(commands, env=env, cwd=REPO, on_line=on_line)
    sent = False
    try:
        if kill is not None and kill.kind == "timer":
            first_progress.wait(timeout)
            anchor = time.monotonic()
            target = cluster[kill.worker].process
            while target.poll() is None and time.monotonic() - anchor < kill.delay:
                time.sleep(0.01)
            if target.poll() is None:
                target.send_signal(signal.SIGKILL)
                sent = True
        first_exit = died_at = None
        while any(w.process.poll() is None for w in cluster):
            now = time.monotonic()
            if died_at is None and kill is not None and cluster[kill.worker].process.poll() is not None:
                died_at = now
            if first_exit is None and any(w.process.poll() is not None for w in cluster):
                first_exit = now
            if first_exit is not None and any(w.process.returncode not in (None, 0) for w in cluster) \
                    and now - first_exit > FAIL_FAST_SECONDS:
                running = [w.index for w in cluster if w.process.poll() is None]
                raise VerificationError(
                    f"worker(s) {running} still running {FAIL_FAST_SECONDS:.0f} s after a worker died "
                    "(a hang):\n" + "\n".join(f"[worker {w.index}] {line}" for w in cluster
                                               for line in list(w.tail)[-8:]))
            if now - start > timeout:
                raise VerificationError(f"training launch still running after {timeout} s:\n"
                                        + "\n".join(cluster[0].tail))
            time.sleep(0.05)
        all_exited = time.monotonic()
    finally:
        launch_lib.stop_workers(cluster, grace=0.0)
    codes = [w.process.returncode for w in cluster]
    # Landed: the target was SIGKILLed (the others failed fast, or had already finished).
    landed = kill is not None and codes[kill.worker] == -signal.SIGKILL
    survivors_exit = round(all_exited - died_at, 2) if landed and died_at is not None else None
    failures = [code for code in codes if code != 0]
    returncode = -signal.SIGKILL if landed else (codes[0] or (failures[0] if failures else 0))
    lines = [f"[worker {w.index}] {line}" for w in cluster[1:] for line in w.tail] + list(cluster[0].tail)
    return Launch(kill, returncode, time.monotonic() - start, lines, sent, marks.get("progress"),
                  survivors_exit)


# ---------------------------------------------------------------------------------
# Reading a run's state.
# ---------------------------------------------------------------------------------
def csv_columns():
    from research.train import CSV_COLUMNS
    return CSV_COLUMNS


def read_train_log(path):
    """Strictly parses train_log.csv: the exact header, then one complete row per finished
    epoch, epochs 1..k in order, every value a number. Returns the rows as dicts of
    floats (epoch and step as ints)."""
    columns = csv_columns()
    with open(path, "rb") as f:
        data = f.read()
    _require(data.endswith(b"\n"), f"{path}: does not end with a newline (torn write)")
    text = data.decode("utf-8")
    records = list(csv.reader(io.StringIO(text, newline="")))
    _require(records and records[0] == list(columns),
             f"{path}: header is {records[0] if records else None}, expected {list(columns)}")
    rows = []
    for number, record in enumerate(records[1:], start=2):
        _require(len(record) == len(columns),
                 f"{path}: line {number} has {len(record)} fields, expected {len(columns)} (torn row)")
        row = {}
        for name, value in zip(columns, record):
            try:
                row[name] = int(value) if name in ("epoch", "step", "skipped_steps") else float(value)
            except ValueError:
                raise VerificationError(f"{path}: line {number}: {name} = {value!r} is not a number") from None
        rows.append(row)
    epochs = [row["epoch"] for row in rows]
    _require(epochs == list(range(1, len(rows) + 1)),
             f"{path}: epochs are {epochs}, expected 1..{len(rows)} once each (duplicated or missing rows)")
    return rows


def latest_checkpoint(workdir):
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
            _require(got[name] == value, f"{what}: {name} is {got[name]!r}, expected {value!r}")
            continue
        deviation = abs(got[name] - value) / max(abs(value), 1e-6)
        _require(math.isclose(got[name], value, rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-9),
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
        _require(not rows, f"{csv_path} has {len(rows or [])} rows but there is no checkpoint")
    else:
        state = read_checkpoint(path)["loop_state"]
        facts["checkpoint"] = os.path.basename(path)
        history = state["history"]
        if rows is not None:
            _require(len(rows) in (len(history), len(history) - 1),
                     f"{csv_path} has {len(rows)} rows; the checkpoint {path} has {len(history)} epochs")
            for got, expected in zip(rows, history):
                _same_row(got, expected, f"{csv_path} epoch {got['epoch']} vs {path}")
    facts["csv_rows"] = None if rows is None else len(rows)
    if launch_result is not None and launch_result.returncode == 130:
        stopped = [m for m in map(STOPPED_LINE.search, launch_result.lines) if m]
        _require(stopped, "exit 130 without a 'stopped by SIG... at step N' line:\n" + launch_result.tail())
        name, step, checkpoint = stopped[-1].groups()
        _require(name == signal.Signals(launch_result.kill.signum).name,
                 f"stopped by {name}, but {launch_result.kill.kind} was sent")
        _require(path is not None and path.endswith(f"ckpt-{step}") and checkpoint == path,
                 f"stopped at step {step} but the latest checkpoint is {path}")
        _require(read_checkpoint(path)["loop_state"]["step"] == int(step),
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
        path = latest_checkpoint(workdir)
        _require(path is not None, f"reference run {workdir} has no checkpoint")
        ckpt = read_checkpoint(path)
        export_json = os.path.join(workdir, "export", "export.json")
        info = None
        if os.path.exists(export_json):
            with open(export_json, encoding="utf-8") as f:
                info = json.load(f)["info"]
        return cls(read_train_log(os.path.join(workdir, "train_log.csv")), os.path.basename(path),
                   ckpt["loop_state"], ckpt["learning_rate"], ckpt["shapes"], info)

    def summary(self):
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
    from research import train as train_lib

    state = train_lib.LoopState()
    mode = config_lib.monitor_mode(config)
    learning_rate = float(np.float32(config.learning_rate))
    for row in rows:
        _require(row["learning_rate"] == learning_rate,
                 f"train_log.csv epoch {row['epoch']}: learning rate {row['learning_rate']!r}, the "
                 f"plateau rule gives {learning_rate!r}")
        state.epoch += 1
        new_rate, _ = train_lib.update_schedules(state, row[config.monitor], config, mode, learning_rate)
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
    _require(path is not None, f"{workdir}: no checkpoint after the run finished")
    ckpt = read_checkpoint(path)
    _require(ckpt["finite"], f"{path}: holds NaN/Inf values")
    state = ckpt["loop_state"]
    _require(state["epoch"] == config.epochs or state["stopped_early"],
             f"{path}: epoch {state['epoch']} of {config.epochs} and not stopped early: unfinished")
    _require(state["step"] == state["epoch"] * config.steps_per_epoch and state["epoch_steps"] == 0,
             f"{path}: step {state['step']} after {state['epoch']} epochs of {config.steps_per_epoch}")
    _require(path.endswith(f"ckpt-{state['step']}"), f"{path}: is not the checkpoint of step {state['step']}")
    if restore:
        _restore_into_model(workdir, path)
    rows = read_train_log(os.path.join(workdir, "train_log.csv"))
    _require(len(rows) == len(state["history"]) == state["epoch"],
             f"train_log.csv has {len(rows)} rows, the checkpoint {len(state['history'])} epochs")
    for got, want in zip(rows, state["history"]):
        _same_row(got, want, f"train_log.csv epoch {got['epoch']} vs {path}")
        _require(got["step"] == got["epoch"] * config.steps_per_epoch,
                 f"train_log.csv epoch {got['epoch']}: step {got['step']}")
    replayed, learning_rate = replay_schedules(rows, config)
    for name in ("best", "best_epoch", "plateau_wait", "early_stop_wait", "stopped_early"):
        _require(state[name] == getattr(replayed, name),
                 f"{path}: loop state {name} is {state[name]!r}, the rules give {getattr(replayed, name)!r}")
    _require(ckpt["learning_rate"] == learning_rate,
             f"{path}: learning rate {ckpt['learning_rate']!r}, the plateau rule gives {learning_rate!r}")
    return path, ckpt, rows


def check_finished(workdir, reference, restore=True):
    """The finished (resumed) run is consistent on its own (`check_consistent_finish`)
    and equals the reference. Returns a dict of facts."""
    path, ckpt, rows = check_consistent_finish(workdir, restore)
    _require(os.path.basename(path) == reference.checkpoint,
             f"latest checkpoint is {os.path.basename(path)}, expected {reference.checkpoint}")
    _require(ckpt["shapes"] == reference.shapes, f"{path}: its variables differ from the reference's")
    state, expected = ckpt["loop_state"], reference.state
    for name in ("step", "epoch", "best_epoch", "plateau_wait", "early_stop_wait", "stopped_early",
                 "epoch_steps", "nan_restores"):
        _require(state[name] == expected[name], f"{path}: loop state {name} is {state[name]!r}, "
                                                f"expected {expected[name]!r}")
    _require(math.isclose(state["best"], expected["best"], rel_tol=RELATIVE_TOLERANCE),
             f"{path}: best {state['best']!r}, expected {expected['best']!r}")
    _require(ckpt["learning_rate"] == reference.learning_rate,
             f"{path}: learning rate {ckpt['learning_rate']!r}, expected {reference.learning_rate!r}")
    _require(len(rows) == len(reference.rows),
             f"train_log.csv has {len(rows)} rows, the reference {len(reference.rows)}")
    worst = 0.0
    for got, want in zip(rows, reference.rows):
        worst = max(worst, _same_row(got, want, f"train_log.csv epoch {got['epoch']}"))

    export_dir = os.path.join(workdir, "export")
    if reference.export_info is None:
        _require(not os.path.exists(os.path.join(export_dir, "export.json")),
                 "an export exists but the reference has none")
    else:
        _check_export(export_dir, reference.export_info)
    stale = stale_files(workdir)
    # The last launch started clean and removed what earlier killed launches left
    # half-written (research.train._remove_leftovers); checkpoint files that the index
    # does not list may stay (the next save of that step overwrites them).
    leftovers = [p for p in stale if STALE.search(os.path.basename(p))]
    _require(not leftovers, f"leftovers of interrupted writes were not removed: {', '.join(leftovers)}")
    return {"max_relative_deviation": worst, "stale": stale}


def _restore_into_model(workdir, path):
    import keras

    from research import export

    config = export.read_run_config(workdir)
    try:
        loaded = export.load_model(workdir, config, source="checkpoint")
    except (ValueError, FileNotFoundError) as e:
        raise VerificationError(f"{path}: does not restore into the model: {e}") from None
    _require(loaded.source["path"] == path, f"restored {loaded.source['path']}, expected {path}")
    keras.backend.clear_session()


def _check_export(export_dir, expected_info):
    import keras

    from research import export

    for name in ("model.keras", "export.json", os.path.join("saved_model", "saved_model.pb")):
        _require(os.path.isfile(os.path.join(export_dir, name)), f"{export_dir}/{name} is missing")
    try:
        _, facts = export.load_export(export_dir)
    except ValueError as e:
        raise VerificationError(f"export does not load: {e}") from None
    info = facts.get("info", {})
    for name, value in expected_info.items():
        same = (math.isclose(info.get(name), value, rel_tol=RELATIVE_TOLERANCE)
                if isinstance(value, float) else info.get(name) == value)
        _require(same, f"{export_dir}/export.json info {name} is {info.get(name)!r}, expected {value!r}")
    keras.backend.clear_session()


# ---------------------------------------------------------------------------------
# Plans and runs.
# ---------------------------------------------------------------------------------
class Windows:
    """How long launches take on this machine now, for timer kills (the load changes).

    `train`: seconds from a launch's first progress line to its exit; `setup`: from its
    start to its first progress line. Each is the median of the last few completed
    launches (resumed ones included, which have less left to do), starting from the
    reference run's.
    """

    def __init__(self, reference_launch, keep=6):
        self.train, self.setup = [], []
        self.keep = keep
        self.record(reference_launch)

    def record(self, result):
        if result.first_progress_seconds is not None:
            self.setup = (self.setup + [result.first_progress_seconds])[-self.keep:]
            if result.returncode == 0:
                self.train = (self.train + [result.seconds - result.first_progress_seconds])[-self.keep:]

    @staticmethod
    def _median(values):
        values = sorted(values)
        return values[len(values) // 2] if values else 10.0

    def delay(self, kill):
        """Sets and returns `kill.delay` from its fraction of the current window."""
        window = self._median(self.setup if kill.kind == "setup_timer" else self.train)
        kill.delay = kill.fraction * 0.9 * window   # a resumed launch has less left to do
        return kill.delay


def random_kill(rng, workers=1):
    """One random `Kill`: a kill point and pass count, or a timer/signal with a fraction
    of the window (turned into seconds by `Windows.delay` when it is launched). With
    several workers: a point or a timer, in a random worker (the chief for points only
    the chief passes)."""
    kinds, weights = zip(*(KIND_WEIGHTS if workers == 1 else CLUSTER_KIND_WEIGHTS).items())
    kind = rng.choices(kinds, weights)[0]
    worker = rng.randrange(workers) if workers > 1 else None
    if kind.startswith("point:"):
        point = kind.split(":", 1)[1]
        if worker is not None and point in CHIEF_ONLY_POINTS:
            worker = 0
        return Kill("point", point=point, count=rng.randint(1, POINT_PASSES[point]), worker=worker)
    return Kill(kind, fraction=rng.random(), worker=worker)


def random_plan(seed, run, max_kills, workers=1):
    """The seeded plan of run `run`: 1..max_kills `Kill`s."""
    rng = random.Random(f"chaos:{seed}:{run}" + (f":workers{workers}" if workers > 1 else ""))
    return [random_kill(rng, workers) for _ in range(rng.randint(1, max_kills))]


def launch_any(workdir, voc_root, kill=None, sets=CHAOS_SETS, workers=1):
    """`launch` (one process) or `launch_cluster` (several workers)."""
    if workers > 1:
        return launch_cluster(workdir, voc_root, kill, sets=sets, workers=workers)
    return launch(workdir, voc_root, kill, sets=sets)


def resume_until_done(workdir, voc_root, plan, max_launches=None, windows=None, sets=CHAOS_SETS,
                      workers=1):
    """Applies `plan` (one kill per launch), then launches cleanly until a launch exits 0.

    `windows` (a `Windows`) turns timer fractions into delays and learns from each launch.
    Checks the state after every interrupted launch. Returns the list of `Launch`es.
    """
    launches = []
    queue = list(plan) + [None]
    while True:
        kill = queue.pop(0) if queue else None
        if kill is not None and kill.delay is None and kill.fraction is not None:
            _require(windows is not None, f"{kill}: a fraction of the window needs `windows`")
            windows.delay(kill)
        result = launch_any(workdir, voc_root, kill, sets=sets, workers=workers)
        if windows is not None:
            windows.record(result)
        launches.append(result)
        if result.returncode == 0:
            return launches
        allowed = {-signal.SIGKILL, 130} if kill is not None else set()
        _require(result.returncode in allowed,
                 f"launch {len(launches)} ({kill or 'clean'}) exited {result.returncode}:\n{result.tail()}")
        _require(result.returncode != 130 or kill.kind in ("sigterm", "sigint"),
                 "exit 130 without a polite signal")
        check_interrupted(workdir, result)
        _require(max_launches is None or len(launches) < max_launches,
                 f"still not finished after {len(launches)} launches")


def run_reference(root, voc_root, workers=1):
    workdir = os.path.join(root, "reference")
    if os.path.exists(workdir):
        shutil.rmtree(workdir)
    result = launch_any(workdir, voc_root, workers=workers)
    _require(result.returncode == 0, f"the reference run failed:\n{result.tail()}")
    return workdir, result


def prepare_data(root):
    from research.data.synthetic import make_synthetic_voc
    return make_synthetic_voc(os.path.join(root, "data"), num_train=8, num_val=6, seed=0, progress=False)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="number of killed-and-resumed runs (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seeds every kill plan (default 0)")
    parser.add_argument("--max-kills", type=int, default=3, help="kills planned per run: 1..this (default 3)")
    parser.add_argument("--workdir-root", default=None,
                        help="folder for the data, the reference and the runs (default: a new temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep every run's workdir (default: only failed ones)")
    parser.add_argument("--workers", type=int, default=1,
                        help="local workers per launch (MultiWorkerMirroredStrategy; default 1: one process)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    started = time.monotonic()
    root = os.path.abspath(args.workdir_root or tempfile.mkdtemp(prefix="chaos_resume_"))
    os.makedirs(root, exist_ok=True)
    voc_root = prepare_data(root)
    print(f"chaos_resume: {args.runs} runs, seed {args.seed}, up to {args.max_kills} kills each, "
          f"{args.workers} worker(s) per launch, in {root}", flush=True)
    ref_dir, ref_launch = run_reference(root, voc_root, args.workers)
    reference = Reference.from_workdir(ref_dir)
    windows = Windows(ref_launch)
    print(f"reference ({ref_launch.seconds:.1f} s, first step at {ref_launch.first_progress_seconds:.1f} s): "
          f"{reference.summary()}", flush=True)

    results = []
    for run in range(args.runs):
        plan = random_plan(args.seed, run, args.max_kills, args.workers)
        workdir = os.path.join(root, f"run_{run:03d}")
        if os.path.exists(workdir):
            shutil.rmtree(workdir)
        run_start = time.monotonic()
        record = {"run": run, "workdir": workdir}
        launches = []
        try:
            launches = resume_until_done(workdir, voc_root, plan, max_launches=len(plan) + 3,
                                         windows=windows, workers=args.workers)
            facts = check_finished(workdir, reference)
            record.update(verdict="ok", **facts)
        except VerificationError as e:
            record.update(verdict="FAILED", reason=str(e))
        except Exception as e:  # noqa: BLE001 - a crash of a check is a failed run too
            record.update(verdict="FAILED", reason=f"{type(e).__name__}: {e}")
        record["plan"] = [str(k) for k in plan]   # timer delays as applied, in seconds
        landed = [r for r in launches if r.landed]
        kills = [str(r.kill) for r in landed if r.killed]
        stops = [str(r.kill) for r in landed if not r.killed]
        record.update(kills=kills, stops=stops, kill_kinds=[r.kill.label for r in landed],
                      missed=[str(r.kill) for r in launches if r.kill is not None and not r.landed],
                      launches=len(launches), seconds=round(time.monotonic() - run_start, 1),
                      returncodes=[r.returncode for r in launches],
                      survivors_exit_seconds=[r.survivors_exit_seconds for r in launches
                                              if r.survivors_exit_seconds is not None])
        results.append(record)
        stale = (f", {len(record.get('stale', []))} unlisted checkpoint file(s)"
                 if record.get("stale") else "")
        missed = f", missed {record['missed']}" if record["missed"] else ""
        stopped = f" + {len(stops)} clean stop(s) [{', '.join(stops)}]" if stops else ""
        print(f"run {run + 1:2d}/{args.runs}: plan [{', '.join(record['plan'])}] -> {len(kills)} kill(s) "
              f"[{', '.join(kills)}]{stopped}{missed}, {len(launches)} launches, {record['seconds']:.0f} s: "
              f"{record['verdict']}{stale}" + (f"\n    {record['reason']}" if record["verdict"] != "ok" else ""),
              flush=True)
        if record["verdict"] == "ok" and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    ok = sum(r["verdict"] == "ok" for r in results)
    kills = sum(len(r["kills"]) for r in results)
    stops = sum(len(r["stops"]) for r in results)
    by_kind = {}
    for r in results:
        for kind in r["kill_kinds"]:
            by_kind[kind] = by_kind.get(kind, 0) + 1
    wall = time.monotonic() - started
    summary_line = f"{ok}/{len(results)} runs resumed correctly, {kills} kills total"
    summary = {"summary": summary_line, "runs": len(results), "ok": ok, "kills": kills, "clean_stops": stops,
               "kills_by_kind": dict(sorted(by_kind.items())),
               "missed": sum(len(r["missed"]) for r in results),
               "launches": sum(r["launches"] for r in results),
               "seed": args.seed, "max_kills": args.max_kills, "wall_seconds": round(wall, 1),
               "workers": args.workers, "config": {"named": "smoke", "sets": list(CHAOS_SETS)},
               "reference": {"summary": reference.summary(), "seconds": round(ref_launch.seconds, 1)},
               "results": results}
    exits = [t for r in results for t in r["survivors_exit_seconds"]]
    summary["survivors_exit_seconds_max"] = max(exits) if exits else None
    path = os.path.join(root, "chaos_summary.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    print(f"interruptions by kind: {', '.join(f'{k} {v}' for k, v in summary['kills_by_kind'].items())} "
          f"({kills} SIGKILL, {stops} SIGTERM/SIGINT clean stops); {summary['missed']} planned "
          f"interruption(s) missed (the launch finished first)")
    if exits:
        print(f"after a worker's SIGKILL the other worker(s) exited within {min(exits):.1f}-{max(exits):.1f} s "
              f"(median {sorted(exits)[len(exits) // 2]:.1f} s, {len(exits)} kills; bound {FAIL_FAST_SECONDS:.0f} s)")
    print(f"{summary_line} ({summary['launches']} launches, {wall / 60:.1f} min); summary: {path}")
    return 0 if ok == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
