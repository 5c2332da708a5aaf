"""A seam for the kill-and-resume tests: SIGKILL this process at a named point.

With RESEARCH_KILL_AT="point:n" in the environment, the n-th time the code passes
`kill_point("point")` the process kills itself with SIGKILL — no cleanup, no
flush, exactly like a power cut or the OOM killer. Without the variable (always,
outside tests) `kill_point` is a dictionary lookup and nothing else.

Points: "step" (after an optimizer step), "checkpoint" (after the checkpoint files,
before the CSV log), "atomic_replace" (a temporary file written and synced, not yet
renamed into place), "export" (model.keras written, SavedModel not yet).
"""
import os
import signal

_counts = {}


def kill_point(point):
    """SIGKILLs the process if RESEARCH_KILL_AT names `point` and its count is reached."""
    spec = os.environ.get("RESEARCH_KILL_AT")
    if not spec:
        return
    name, _, count = spec.partition(":")
    if name != point:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
