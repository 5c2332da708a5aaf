"""Where does a training step's time go? Traces a few steps and prints the top ops by self time.

    python scripts/profile_train.py --config demo --workdir runs/profile-demo [--set k=v ...] \\
        [--warmup 3] [--steps 5] [--top 10]

Trains one short epoch of `--warmup` + `--steps` steps with `research.train`'s own loop
(the very step users train with), tracing the last `--steps` with the TensorFlow
profiler into WORKDIR/tensorboard (open its Profile tab for the full timeline). Then
it reads the trace (`plugins/profile/<run>/*.xplane.pb`, an XSpace protobuf) and
prints the op types that took the most self time over the traced steps, with the
step time. All op types go to WORKDIR/profile_ops.csv.

Self time: on each trace line (a thread), events nest in time. An op's self time is
its duration minus the durations of the TF ops nested inside it on the same line
(e.g. the ops a function-call op runs inline); anything else inside it (allocator or
thread-pool markers) counts as the op's own time. Only ops that start inside a traced
step are counted. Percentages are of the total self time of all those ops; ops run on
several threads at once, so that total can exceed the steps' wall time (the ratio is
printed as "threads busy").

Under XLA (jit_compile) the compiled step shows as one `_XlaRun` op: XLA:CPU's fused
kernels are not traced one by one.

`main` is the command line of scripts/profile_train.py.
"""
import argparse
import collections
import csv
import glob
import io
import logging
import os
import re

from research import cli
from research import config as config_lib
from research import configs
from research.fileio import atomic_write_text

STEP_EVENT = "train"   # the name research.train gives each step's profiler Trace
_OP_TYPE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

OpTotal = collections.namedtuple("OpTotal", "op_type self_ps count example")


# ---------------------------------------------------------------------------------
# Reading an XSpace trace.
# ---------------------------------------------------------------------------------
def load_xspace(path):
    """Parses an `*.xplane.pb` file into an XSpace message."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2  # where TF 2.21 ships the proto

    space = xplane_pb2.XSpace()
    try:
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
    except OSError as error:
        raise FileNotFoundError(f"cannot read trace {path}: {error}") from None
    except Exception as error:  # protobuf's DecodeError
        raise ValueError(f"{path} is not an XSpace trace: {error}") from None
    return space


def op_type(name, display_name):
    """The TF op type of a trace event, or None when the event is not a TF op.

    TF names op events "<op name>:<op type>" and sets the display name to the type,
    e.g. "model/conv1/Conv2D:_MklNativeFusedConv2D". Other events ("ExecutorState::Process",
    "EagerLocalExecute: Identity", "Iterator::Prefetch") do not match.
    """
    if display_name and name.endswith(":" + display_name) and "::" not in name \
            and _OP_TYPE.fullmatch(display_name) and len(name) > len(display_name) + 1:
        return display_name
    return None


def _events(plane, line):
    """(start_ps, end_ps, name, display_name, stats) of each event on a line, absolute times."""
    origin = line.timestamp_ns * 1000
    stat_names = {key: stat.name for key, stat in plane.stat_metadata.items()}
    for event in line.events:
        meta = plane.event_metadata[event.metadata_id]
        start = origin + event.offset_ps
        stats = {stat_names.get(s.metadata_id): s for s in event.stats}
        yield start, start + event.duration_ps, meta.name, meta.display_name, stats


def step_windows(space):
    """[(start_ps, end_ps, step_num)] of the traced training steps, in time order."""
    windows = []
    for plane in space.planes:
        for line in plane.lines:
            for start, end, name, _, stats in _events(plane, line):
                if name == STEP_EVENT and "step_num" in stats:
                    windows.append((start, end, stats["step_num"].int64_value))
    return sorted(windows)


def op_self_times(space, windows):
    """{op type: OpTotal} of self time over ops that start inside one of `windows`.

    Args:
      space: an XSpace.
      windows: [(start_ps, end_ps, ...)] from `step_windows`.
    """
    totals = {}
    for plane in space.planes:
        for line in plane.lines:
            # Longest first at equal starts, so an enclosing event precedes what it holds.
            events = sorted(_events(plane, line), key=lambda e: (e[0], -(e[1] - e[0])))
            stack = []   # [start, end, op_type or None, name, nested op time]
            for start, end, name, display_name, _ in events:
                while stack and stack[-1][1] <= start:
                    _close(stack.pop(), windows, totals)
                kind = op_type(name, display_name)
                if kind:
                    parent = next((e for e in reversed(stack) if e[2]), None)  # nearest enclosing op
                    if parent is not None:
                        parent[4] += end - start
                stack.append([start, end, kind, name, 0])
            while stack:
                _close(stack.pop(), windows, totals)
    return totals


def _close(entry, windows, totals):
    start, end, kind, name, nested = entry
    if not kind or not any(w[0] <= start < w[1] for w in windows):
        return
    previous = totals.get(kind, OpTotal(kind, 0, 0, name))
    totals[kind] = OpTotal(kind, previous.self_ps + max(end - start - nested, 0), previous.count + 1,
                           previous.example)


# ---------------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------------
def summarize_trace(path):
    """{"steps", "step_ms", "op_ms", "ops": [OpTotal by self time, largest first]} of a trace."""
    space = load_xspace(path)
    windows = step_windows(space)
    if not windows:
        raise ValueError(f"{path}: no '{STEP_EVENT}' step events in the trace (was a step traced?)")
    ops = sorted(op_self_times(space, windows).values(), key=lambda o: -o.self_ps)
    return {"steps": [w[2] for w in windows], "step_ms": sum(w[1] - w[0] for w in windows) / 1e9,
            "op_ms": sum(o.self_ps for o in ops) / 1e9, "ops": ops}


def _shorten(text, width):
    return text if len(text) <= width else "..." + text[-(width - 3):]


def format_table(summary, top=10):
    """The printed report: step time, then rank, op type, self ms, % of op time, count, example."""
    steps, step_ms, op_ms = summary["steps"], summary["step_ms"], summary["op_ms"]
    lines = [f"traced steps {steps[0]}-{steps[-1]} ({len(steps)}): total step time {step_ms:.1f} ms, "
             f"{step_ms / len(steps):.1f} ms per step; op self time {op_ms:.1f} ms "
             f"(threads busy {op_ms / max(step_ms, 1e-9):.2f}x the step time)",
             "",
             f"{'rank':>4}  {'op type':<40} {'self ms':>10} {'% op time':>9} {'count':>6}  example op"]
    for rank, op in enumerate(summary["ops"][:top], start=1):
        share = 100.0 * op.self_ps / (op_ms * 1e9) if op_ms > 0 else 0.0
        lines.append(f"{rank:>4}  {op.op_type:<40} {op.self_ps / 1e9:>10.2f} {share:>8.1f}% {op.count:>6}  "
                     f"{_shorten(op.example, 70)}")
    return "\n".join(lines)


def write_ops_csv(path, summary):
    """All op types, largest self time first (op_type, self_ms, percent, count, example), atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["op_type", "self_ms", "percent_of_op_time", "count", "example"])
    for op in summary["ops"]:
        writer.writerow([op.op_type, f"{op.self_ps / 1e9:.4f}",
                         f"{100.0 * op.self_ps / (summary['op_ms'] * 1e9):.3f}", op.count, op.example])
    atomic_write_text(path, buffer.getvalue())


# ---------------------------------------------------------------------------------
# Tracing.
# ---------------------------------------------------------------------------------
def trace_folders(workdir):
    """The profiler's run folders under WORKDIR/tensorboard/plugins/profile."""
    return set(glob.glob(os.path.join(glob.escape(workdir), "tensorboard", "plugins", "profile", "*")))


def profile_config(config, warmup, steps):
    """`config` changed to one epoch of warmup + steps steps, tracing the last `steps`.

    Evaluation is cut to one batch and nothing is exported: only the trace matters.
    """
    if warmup < 1 or steps < 1:
        raise ValueError(f"--warmup and --steps must be at least 1; got {warmup} and {steps}")
    # Step 0 traces and compiles the tf.function; warm-up keeps that out of the trace.
    return config.replace(epochs=1, steps_per_epoch=warmup + steps, profile_steps=(warmup, warmup + steps - 1),
                          eval_steps=1, export_best=False, tensorboard_images=0,
                          checkpoint_every_steps=warmup + steps + 1)


def run_profile(config, workdir):
    """Trains `config` in a fresh `workdir` and returns the path of the trace it wrote."""
    from research import train  # imports TensorFlow

    before = trace_folders(workdir)
    train.train_and_evaluate(config, workdir, resume=False)
    new = sorted(trace_folders(workdir) - before)
    traces = glob.glob(os.path.join(glob.escape(new[-1]), "*.xplane.pb")) if new else []
    if not traces:
        raise ValueError(f"no profiler trace was written under {os.path.join(workdir, 'tensorboard')}")
    return traces[0]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Trace a few training steps after warm-up with the TensorFlow profiler and "
                    "print the most expensive ops by self time.")
    parser.add_argument("--config", required=True, help="a named config (demo, smoke, ...) or a .json file")
    parser.add_argument("--workdir", required=True,
                        help="a new run folder: the trace goes to WORKDIR/tensorboard (refused if it "
                             "already holds a checkpoint)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field (value parsed as JSON), repeatable")
    parser.add_argument("--warmup", type=int, default=3, help="steps before tracing starts (default 3)")
    parser.add_argument("--steps", type=int, default=5, help="steps traced (default 5)")
    parser.add_argument("--top", type=int, default=10, help="op types printed (default 10)")
    return parser.parse_args(argv)


def main(argv=None):
    """Returns the exit status."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return cli.run_main(lambda: profile(args.config, args.overrides, args.workdir, args.warmup, args.steps,
                                        args.top), bad_file_hint=cli.SKIP_BAD_SET)


def profile(config_name, overrides, workdir, warmup, steps, top):
    """Traces `steps` training steps after `warmup` (module doc); prints the `top` op
    types and writes WORKDIR/profile_ops.csv."""
    config = config_lib.apply_overrides(configs.load_config(config_name), overrides)
    trace = run_profile(profile_config(config, warmup, steps), workdir)
    summary = summarize_trace(trace)
    csv_path = os.path.join(workdir, "profile_ops.csv")
    write_ops_csv(csv_path, summary)
    print(f"\ntrace: {trace}\n")
    print(format_table(summary, top))
    print(f"\nall {len(summary['ops'])} op types: {csv_path}; timeline: tensorboard --logdir "
          f"{os.path.join(workdir, 'tensorboard')} (Profile tab)")
