"""A seam for the kill-and-resume tests: named points where a test may act.

Product code calls `kill_point("point")` at moments worth interrupting; in normal runs
`hook` is None and the call does nothing else (nothing is read from the environment,
so no setting of a user's can kill their run). Tests and scripts/chaos_resume.py
install a callable in a training process through research.reliability.fault_train, e.g.
one that SIGKILLs the process the n-th time a point is passed, exactly like a power cut.

Points: "step" (after an optimizer step), "checkpoint" (after the checkpoint files,
before the CSV log), "atomic_replace" (a temporary file written and synced, not yet
renamed into place), "export" (model.keras written, SavedModel not yet).
"""

hook = None   # a callable(point: str), installed by tests only


def kill_point(point):
    """Calls the installed `hook` with `point`; does nothing when none is installed."""
    if hook is not None:
        hook(point)
