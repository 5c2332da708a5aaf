"""Kill-and-resume chaos run: SIGKILL smoke training runs at random moments, resume them,
and check that nothing was lost. `run_chaos` is the whole run (scripts/chaos_resume.py is
its command line); tests/research/test_reliability.py uses the pieces.

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
     point:P:N       launched through research.reliability.fault_train --kill-at P:N (a test-only
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
Every launch, one process or several, runs under research.launch.supervise: bounded
waits, and no process outlives its launch.

Prints a line per run and a summary ("N/N runs resumed correctly, K kills total"),
writes WORKDIR_ROOT/chaos_summary.json. A run's workdir is deleted once verified unless
`keep` (failed ones are always kept). Each launch is a new Python process (TensorFlow
import and tracing): about 15-20 s on 2 CPU cores.
"""
import dataclasses
import os
import random
import re
import shutil
import signal
import sys
import threading
import time

from research import launch as launch_lib
from research.fileio import atomic_write_json
from research.reliability.verify import (Reference, VerificationError, check_finished, check_interrupted,
                                         require)

# Children run `python -m research...` from the checkout holding this package, so they
# import the same code as this process.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

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
# Multi-worker mode: kinds drawn, and the bound on the survivors' exit after a kill.
CLUSTER_KIND_WEIGHTS = {"point:step": 0.3, "point:checkpoint": 0.2, "point:atomic_replace": 0.1,
                        "point:export": 0.05, "timer": 0.35}
CHIEF_ONLY_POINTS = ("atomic_replace", "export")
FAIL_FAST_SECONDS = 60.0   # measured 1.1-18.2 s (12 kills, 2 workers, 2 cores); TF heartbeat 10 s


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
        """The signal this kill sends: SIGTERM, SIGINT, or SIGKILL for every other kind."""
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
        """Whether the launch ended by SIGKILL."""
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
        """The launch's last `count` output lines, as one text."""
        return "\n".join(self.lines[-count:])


def train_command(workdir, voc_root, sets=CHAOS_SETS, kill=None):
    """`python -m research.train ...`, or through research.reliability.fault_train for a kill point."""
    args = ["--config", "smoke", "--workdir", workdir, "--set", f"voc_root={voc_root}"]
    for item in sets:
        args += ["--set", item]
    if kill is not None and kill.kind == "point":
        return [sys.executable, "-m", "research.reliability.fault_train",
                "--kill-at", f"{kill.point}:{kill.count}", "--"] + args
    return [sys.executable, "-m", "research.train"] + args


class _Progress:
    """Watches the chief's output for its first progress line (the anchor of timer kills)."""

    def __init__(self, start):
        self.start = start
        self.lines = []
        self.seen = threading.Event()
        self.seconds = None     # from the launch's start to the first progress line

    def on_line(self, index, line):
        if index != 0:
            return
        self.lines.append(line)
        if not self.seen.is_set() and PROGRESS_LINE.match(line):
            self.seconds = time.monotonic() - self.start
            self.seen.set()

    def wait(self, process, deadline):
        """Until the first progress line, the process's exit, or `deadline`."""
        while not self.seen.wait(0.05) and process.poll() is None and time.monotonic() < deadline:
            pass


def _send_timed(kill, process, progress, deadline):
    """Sends `kill.signum` `kill.delay` s after the first progress line (after the start for
    "setup_timer"), unless the process ended first; returns whether it was sent."""
    if kill.kind != "setup_timer":
        progress.wait(process, deadline)
    anchor = time.monotonic()
    while process.poll() is None and time.monotonic() - anchor < kill.delay:
        time.sleep(0.01)
    if process.poll() is not None:
        return False
    process.send_signal(kill.signum)
    return True


def launch(workdir, voc_root, kill=None, sets=CHAOS_SETS, timeout=None, workers=1):
    """One launch of research.train, applying `kill` (a `Kill` or None): one process, or
    `workers` local workers of MultiWorkerMirroredStrategy (kill on worker `kill.worker`).

    Returns a `Launch` of the chief's output (every line; the other workers' last lines
    first) whose returncode is -SIGKILL when a planned SIGKILL landed, else the chief's
    status (or the first failure's). Raises VerificationError when the launch outlives
    `timeout` (default 600 s, 900 s for several workers), or when a worker is still
    running FAIL_FAST_SECONDS after another failed (a hang); no process outlives the call.
    """
    timeout = timeout or (600 if workers == 1 else 900)
    if workers > 1:
        sets = tuple(sets) + ("distribute=multi_worker",)
    target = None if kill is None else (kill.worker or 0)
    commands = [train_command(workdir, voc_root, sets, kill if index == target else None)
                for index in range(workers)]
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start = time.monotonic()
    progress = _Progress(start)
    if workers == 1:
        cluster = [launch_lib.Worker(0, commands[0], None, env=env, cwd=REPO, on_line=progress.on_line)]
    else:
        cluster = launch_lib.start_workers(commands, env=env, cwd=REPO, on_line=progress.on_line)
    messages, sent = [], False
    try:
        if kill is not None and kill.kind != "point":
            sent = _send_timed(kill, cluster[target].process, progress, start + timeout)
        launch_lib.supervise(cluster, fail_grace=FAIL_FAST_SECONDS, stop_grace=5.0,
                             timeout=max(1.0, timeout - (time.monotonic() - start)), report=messages.append)
    finally:
        launch_lib.stop_workers([w for w in cluster if w.process.poll() is None], grace=0.0)
    others = [f"[worker {w.index}] {line}" for w in cluster[1:] for line in w.tail]
    require(not any(w.stopped_by_launcher for w in cluster),
            f"the launch had to be stopped ({'; '.join(messages)}; a hang after a failure, or "
            f"longer than {timeout:.0f} s):\n" + "\n".join(others + progress.lines[-15:]))
    return _launch_result(kill, target, cluster, time.monotonic() - start, others + progress.lines, sent,
                          progress.seconds)


def _launch_result(kill, target, cluster, seconds, lines, sent, first_progress):
    """The `Launch` of finished workers `cluster` (`target`: the index `kill` was aimed at)."""
    codes = [w.process.returncode for w in cluster]
    # Landed: the target was SIGKILLed (the others failed fast, or had already finished).
    landed = kill is not None and codes[target] == -signal.SIGKILL
    failures = [code for code in codes if code != 0]
    returncode = -signal.SIGKILL if landed else (codes[0] or (failures[0] if failures else 0))
    survivors_exit = None
    if landed and len(cluster) > 1:
        survivors_exit = round(max(w.exited_at for w in cluster) - cluster[target].exited_at, 2)
    return Launch(kill, returncode, seconds, lines, sent, first_progress, survivors_exit)


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
        """Adds a launch's timings (setup, and steps of a finished run) to the windows."""
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
            require(windows is not None, f"{kill}: a fraction of the window needs `windows`")
            windows.delay(kill)
        result = launch(workdir, voc_root, kill, sets=sets, workers=workers)
        if windows is not None:
            windows.record(result)
        launches.append(result)
        if result.returncode == 0:
            return launches
        allowed = {-signal.SIGKILL, 130} if kill is not None else set()
        require(result.returncode in allowed,
                f"launch {len(launches)} ({kill or 'clean'}) exited {result.returncode}:\n{result.tail()}")
        require(result.returncode != 130 or kill.kind in ("sigterm", "sigint"),
                "exit 130 without a polite signal")
        check_interrupted(workdir, result)
        require(max_launches is None or len(launches) < max_launches,
                f"still not finished after {len(launches)} launches")


def run_reference(root, voc_root, workers=1):
    """The uninterrupted reference run in ROOT/reference; returns (its workdir, its `Launch`)."""
    workdir = os.path.join(root, "reference")
    if os.path.exists(workdir):
        shutil.rmtree(workdir)
    result = launch(workdir, voc_root, workers=workers)
    require(result.returncode == 0, f"the reference run failed:\n{result.tail()}")
    return workdir, result


def prepare_data(root):
    """The embedded dataset of the chaos runs in ROOT/data (8 train, 6 val); returns its voc_root."""
    from research.data.synthetic import make_synthetic_voc

    return make_synthetic_voc(os.path.join(root, "data"), num_train=8, num_val=6, seed=0, progress=False)


# ---------------------------------------------------------------------------------
# The chaos run.
# ---------------------------------------------------------------------------------
def run_one(run, plan, root, voc_root, reference, windows, workers=1, keep=False):
    """Run `run` of a chaos run: a fresh workdir, `plan` applied, relaunched until done,
    then checked against `reference`. Returns its record (a JSON-able dict)."""
    workdir = os.path.join(root, f"run_{run:03d}")
    if os.path.exists(workdir):
        shutil.rmtree(workdir)
    run_start = time.monotonic()
    record = {"run": run, "workdir": workdir}
    launches = []
    try:
        launches = resume_until_done(workdir, voc_root, plan, max_launches=len(plan) + 3,
                                     windows=windows, workers=workers)
        record.update(verdict="ok", **check_finished(workdir, reference))
    except VerificationError as e:
        record.update(verdict="FAILED", reason=str(e))
    except Exception as e:  # noqa: BLE001 - a crash of a check is a failed run too
        record.update(verdict="FAILED", reason=f"{type(e).__name__}: {e}")
    record["plan"] = [str(k) for k in plan]   # timer delays as applied, in seconds
    landed = [r for r in launches if r.landed]
    record.update(kills=[str(r.kill) for r in landed if r.killed],
                  stops=[str(r.kill) for r in landed if not r.killed],
                  kill_kinds=[r.kill.label for r in landed],
                  missed=[str(r.kill) for r in launches if r.kill is not None and not r.landed],
                  launches=len(launches), seconds=round(time.monotonic() - run_start, 1),
                  returncodes=[r.returncode for r in launches],
                  survivors_exit_seconds=[r.survivors_exit_seconds for r in launches
                                          if r.survivors_exit_seconds is not None])
    if record["verdict"] == "ok" and not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return record


def run_line(record, runs):
    """The line printed for a finished run."""
    stale = f", {len(record['stale'])} unlisted checkpoint file(s)" if record.get("stale") else ""
    missed = f", missed {record['missed']}" if record["missed"] else ""
    stops = record["stops"]
    stopped = f" + {len(stops)} clean stop(s) [{', '.join(stops)}]" if stops else ""
    failure = f"\n    {record['reason']}" if record["verdict"] != "ok" else ""
    return (f"run {record['run'] + 1:2d}/{runs}: plan [{', '.join(record['plan'])}] -> "
            f"{len(record['kills'])} kill(s) [{', '.join(record['kills'])}]{stopped}{missed}, "
            f"{record['launches']} launches, {record['seconds']:.0f} s: {record['verdict']}{stale}{failure}")


def summarize(results, reference, reference_seconds, seed, max_kills, workers, wall):
    """The chaos_summary.json contents of finished runs."""
    ok = sum(r["verdict"] == "ok" for r in results)
    kills = sum(len(r["kills"]) for r in results)
    by_kind = {}
    for r in results:
        for kind in r["kill_kinds"]:
            by_kind[kind] = by_kind.get(kind, 0) + 1
    exits = [t for r in results for t in r["survivors_exit_seconds"]]
    return {"summary": f"{ok}/{len(results)} runs resumed correctly, {kills} kills total",
            "runs": len(results), "ok": ok, "kills": kills,
            "clean_stops": sum(len(r["stops"]) for r in results),
            "kills_by_kind": dict(sorted(by_kind.items())),
            "missed": sum(len(r["missed"]) for r in results),
            "launches": sum(r["launches"] for r in results),
            "seed": seed, "max_kills": max_kills, "wall_seconds": round(wall, 1),
            "workers": workers, "config": {"named": "smoke", "sets": list(CHAOS_SETS)},
            "reference": {"summary": reference.summary(), "seconds": round(reference_seconds, 1)},
            "results": results,
            "survivors_exit_seconds": exits,
            "survivors_exit_seconds_max": max(exits) if exits else None}


def summary_lines(summary, path):
    """The closing lines of a chaos run."""
    kinds = ", ".join(f"{k} {v}" for k, v in summary["kills_by_kind"].items())
    lines = [f"interruptions by kind: {kinds} ({summary['kills']} SIGKILL, {summary['clean_stops']} "
             f"SIGTERM/SIGINT clean stops); {summary['missed']} planned interruption(s) missed "
             "(the launch finished first)"]
    exits = sorted(summary["survivors_exit_seconds"])
    if exits:
        lines.append(f"after a worker's SIGKILL the other worker(s) exited within {exits[0]:.1f}-{exits[-1]:.1f} s "
                     f"(median {exits[len(exits) // 2]:.1f} s, {len(exits)} kills; bound {FAIL_FAST_SECONDS:.0f} s)")
    lines.append(f"{summary['summary']} ({summary['launches']} launches, {summary['wall_seconds'] / 60:.1f} min); "
                 f"summary: {path}")
    return lines


def run_chaos(root, runs=20, seed=0, max_kills=3, workers=1, keep=False, out=print):
    """The whole chaos run (module doc) in folder `root`; `out` gets each line printed.

    Returns the summary, also written (atomically) to ROOT/chaos_summary.json; every run
    passed when summary["ok"] == summary["runs"].
    """
    started = time.monotonic()
    os.makedirs(root, exist_ok=True)
    voc_root = prepare_data(root)
    out(f"chaos_resume: {runs} runs, seed {seed}, up to {max_kills} kills each, "
        f"{workers} worker(s) per launch, in {root}")
    ref_dir, ref_launch = run_reference(root, voc_root, workers)
    reference = Reference.from_workdir(ref_dir)
    windows = Windows(ref_launch)
    out(f"reference ({ref_launch.seconds:.1f} s, first step at {ref_launch.first_progress_seconds:.1f} s): "
        f"{reference.summary()}")
    results = []
    for run in range(runs):
        record = run_one(run, random_plan(seed, run, max_kills, workers), root, voc_root, reference,
                         windows, workers, keep)
        results.append(record)
        out(run_line(record, runs))
    summary = summarize(results, reference, ref_launch.seconds, seed, max_kills, workers,
                        time.monotonic() - started)
    path = os.path.join(root, "chaos_summary.json")
    atomic_write_json(path, summary)
    for line in summary_lines(summary, path):
        out(line)
    return summary
