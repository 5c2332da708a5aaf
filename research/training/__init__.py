"""The pieces `research.train` runs a training loop from, one concern per module.

Pure Python (no TensorFlow; tested without it):
  loop_state   LoopState: the step bookkeeping a checkpoint carries, and its updates
  schedules    the learning rate of every step; LR on plateau and early stopping
TensorFlow:
  distributed  input and agreement across tf.distribute replicas and workers
  steps        the compiled train and eval steps
  checkpoints  checkpoint files under TF's multi-worker protocol; save and restore
  outputs      everything the chief writes for users: config.json, CSV, TensorBoard,
               export, profiler traces
"""
