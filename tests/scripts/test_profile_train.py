"""scripts/profile_train.py (research.tools.profile_train): self time on a hand-made trace,
and a real traced smoke run."""
import csv
import os
import subprocess
import sys

import pytest
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from research.tools import profile_train as profile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "scripts", "profile_train.py")

US = 1_000_000  # picoseconds per microsecond: the hand-made times below are in microseconds


def make_space(lines):
    """An XSpace with one host plane; `lines` = [[(name, display_name, start_us, duration_us, step)]]."""
    space = xplane_pb2.XSpace()
    plane = space.planes.add(name="/host:CPU")
    plane.stat_metadata[1].id, plane.stat_metadata[1].name = 1, "step_num"
    ids = {}
    for number, events in enumerate(lines):
        line = plane.lines.add(id=number, name=f"thread {number}", timestamp_ns=1000)
        for name, display_name, start, duration, step in events:
            if name not in ids:
                ids[name] = len(ids) + 1
                meta = plane.event_metadata[ids[name]]
                meta.id, meta.name, meta.display_name = ids[name], name, display_name
            event = line.events.add(metadata_id=ids[name], offset_ps=start * US, duration_ps=duration * US)
            if step is not None:
                event.stats.add(metadata_id=1, int64_value=step)
    return space


def test_self_time_subtracts_nested_ops_only_inside_traced_steps():
    # thread 0: the step marker, 0-100 us and 200-300 us (steps 3 and 4).
    # thread 1:  0 ---------------- call:PartitionedCall ---------------- 60
    #              5 -- ExecutorState::Process (not an op) -------- 55
    #                10 -- conv:Conv2D -- 40    45 - add:AddV2 - 50
    #                   20 - alloc marker (not an op) - 30
    #            150 conv2:Conv2D 170  (between the steps: not counted)
    #            210 conv3:Conv2D 230
    space = make_space([
        [("train", "", 0, 100, 3), ("train", "", 200, 100, 4)],
        [("a/call:PartitionedCall", "PartitionedCall", 0, 60, None),
         ("ExecutorState::Process", "", 5, 50, None),
         ("a/conv:Conv2D", "Conv2D", 10, 30, None),
         ("MemoryAllocation", "", 20, 10, None),
         ("a/add:AddV2", "AddV2", 45, 5, None),
         ("b/conv2:Conv2D", "Conv2D", 150, 20, None),
         ("c/conv3:Conv2D", "Conv2D", 210, 20, None)],
    ])
    windows = profile.step_windows(space)
    assert [w[2] for w in windows] == [3, 4]
    totals = profile.op_self_times(space, windows)
    assert set(totals) == {"PartitionedCall", "Conv2D", "AddV2"}
    assert totals["PartitionedCall"].self_ps == (60 - 30 - 5) * US   # minus the two ops it runs
    assert totals["Conv2D"].self_ps == (30 + 20) * US                 # the allocation stays in
    assert totals["Conv2D"].count == 2 and totals["Conv2D"].example == "a/conv:Conv2D"
    assert totals["AddV2"].self_ps == 5 * US


@pytest.mark.parametrize("name, display_name, expected", [
    ("model/conv1/Conv2D:_MklNativeFusedConv2D", "_MklNativeFusedConv2D", "_MklNativeFusedConv2D"),
    ("ExecutorState::Process", "", None),
    ("EagerLocalExecute: Identity", "", None),
    ("Iterator::Root::Prefetch", "Iterator::Prefetch", None),
    (":Conv2D", "Conv2D", None),
])
def test_op_type_recognises_tf_op_events_only(name, display_name, expected):
    assert profile.op_type(name, display_name) == expected


@pytest.mark.slow
def test_smoke_run_traces_and_reports_conv_ops(synthetic_voc_root, tmp_path, capsys):
    workdir = tmp_path / "profile"
    status = profile.main(["--config", "smoke", "--workdir", str(workdir), "--set", f"voc_root={synthetic_voc_root}",
                           "--warmup", "1", "--steps", "2", "--top", "10"])
    out = capsys.readouterr().out
    assert status == 0, out
    traces = list((workdir / "tensorboard" / "plugins" / "profile").glob("*/*.xplane.pb"))
    assert len(traces) == 1
    assert "traced steps 1-2 (2)" in out
    table = [line.split() for line in out.splitlines() if line.strip()[:2].strip().isdigit()]
    assert [int(row[0]) for row in table] == list(range(1, 11))
    shares = [float(row[3].rstrip("%")) for row in table]
    assert all(s > 0 for s in shares) and sum(shares) <= 100.0 + 1e-6
    assert shares == sorted(shares, reverse=True)
    # The smoke model is a conv net: conv forward/backward ops (Conv2D, or oneDNN's
    # _MklNative*Conv2D*) must be among the top op types.
    assert any("Conv2D" in row[1] for row in table), out
    with open(workdir / "profile_ops.csv", newline="") as f:
        ops = list(csv.DictReader(f))
    assert sum(float(op["percent_of_op_time"]) for op in ops) == pytest.approx(100.0, abs=0.1)

    # the same workdir again: refused (it holds a checkpoint), with a clear message
    assert profile.main(["--config", "smoke", "--workdir", str(workdir),
                         "--set", f"voc_root={synthetic_voc_root}"]) == 1
    assert "already holds a checkpoint" in capsys.readouterr().err


def test_help():
    result = subprocess.run([sys.executable, SCRIPT, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--warmup" in result.stdout and "--top" in result.stdout
