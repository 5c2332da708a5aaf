"""Checking that training survives being killed: the pieces behind scripts/chaos_resume.py,
scripts/fault_train.py and tests/research/test_reliability.py.

- `verify`: reads a run's files strictly and checks what a kill left behind and how a
  resumed run ended (`VerificationError` says what was lost).
- `chaos`: kill plans, launches of training processes (one, or several workers, under
  research.launch's supervision), resuming until done, and the seeded chaos run.
- `fault_train`: research.train's command line with a SIGKILL planted at a kill point of
  research.faults, or with plain SGD; the launches of `chaos` and the tests run it.

A package of its own because none of it is part of training: the product never imports
it; it drives the product from outside, as a user's crash would.
"""
