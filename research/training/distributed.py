"""Training across tf.distribute replicas and workers: input, agreement, restored sums.

One process with several replicas (MirroredStrategy) or several worker processes
(MultiWorkerMirroredStrategy, TF_CONFIG; `python -m research.launch`): each replica trains
on its slice of every global batch, and these helpers keep the workers in step.
"""
import tensorflow as tf


def agree_on_overflow(finite, grads):
    """`(finite, grads)` agreed by all replicas, for Keras' LossScaleOptimizer.

    Under tf.distribute that optimizer decides whether to skip the step (and lower the
    scale) from the FIRST replica's gradients, before the gradients are summed (its
    comment assumes they were summed already): an overflow on another replica alone was
    summed into the weights (reproduced: NaN weights). Every replica learns whether any
    replica overflowed and, if one did, turns its first gradient into NaN, so the step is
    skipped on all of them alike (call in a replica context; one scalar all-reduce).

    Args:
      finite: scalar bool, this replica's gradients are all finite.
      grads: this replica's list of gradient tensors.
    Returns:
      scalar bool (no replica overflowed) and the gradients, the first poisoned if one did.
    """
    # float32, as the loss normalizers' all-reduce that every strategy here already runs
    # (TF keeps the int32 tensors of GPU ops in host memory: not worth the doubt on GPU).
    overflowed = tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, tf.cast(tf.logical_not(finite), tf.float32)) > 0
    poison = tf.where(overflowed, tf.constant(float("nan"), grads[0].dtype), tf.zeros([], grads[0].dtype))
    return tf.logical_not(overflowed), [grads[0] + poison] + list(grads[1:])


def average_over_replicas(variables):
    """Sets each (mirrored) variable, on every replica, to the mean of its replicas'
    copies: one all-reduce of the list. Call in replica context."""
    context = tf.distribute.get_replica_context()
    means = context.all_reduce(tf.distribute.ReduceOp.MEAN, [v.value for v in variables])
    for variable, mean in zip(variables, means):
        variable.assign(mean)


def distribute_batches(strategy, role, make_global_dataset, global_batch):
    """Each replica's part of every global batch of `make_global_dataset()`.

    One worker: `experimental_distribute_dataset` splits each global batch across the
    local replicas. Several workers: every worker builds the same deterministic global
    batches (order and augmentation depend only on (seed, epoch)) and keeps its own
    consecutive slice of each, rows [i * B/N, (i + 1) * B/N) for worker i of N, so the
    workers' batches at a step are together exactly the batch one process trains on
    (no auto-sharding: TF's DATA policy would hand out whole batches). Each worker
    reads and augments the whole global batch: input work is N times one process's.

    Args:
      strategy: the tf.distribute strategy; role: this process's `runtime.WorkerRole`.
      make_global_dataset: () -> tf.data.Dataset of tuples of tensors [B, ...].
      global_batch: B, divisible by the number of replicas when there are workers.
    Returns:
      a distributed dataset of the same tuples, per replica.
    """
    if role.count == 1:
        return strategy.experimental_distribute_dataset(make_global_dataset())
    if global_batch % strategy.num_replicas_in_sync:
        raise ValueError(f"batch {global_batch} cannot be split evenly over "
                         f"{strategy.num_replicas_in_sync} replicas of {role.count} workers")

    def worker_dataset(context):
        per_worker = global_batch // context.num_input_pipelines
        per_replica = context.get_per_replica_batch_size(global_batch)
        first = context.input_pipeline_id * per_worker
        dataset = make_global_dataset().map(
            lambda *parts: tuple(part[first:first + per_worker] for part in parts))
        if per_replica != per_worker:   # several local replicas: consecutive slices
            dataset = dataset.unbatch().batch(per_replica, drop_remainder=True)
        return dataset

    return strategy.distribute_datasets_from_function(worker_dataset)


def make_worker_gather(strategy, role):
    """`fn(int) -> list of int`: every replica's value (one per replica, in replica order).

    A collective with several workers: every worker must call it at the same point.
    One worker: `[value]`.
    """
    if role.count == 1:
        return lambda value: [int(value)]

    def replica_value(value):
        return tf.distribute.get_replica_context().all_gather(value[None], axis=0)

    @tf.function(autograph=False)
    def gather(value):
        return strategy.run(replica_value, args=(value,))

    return lambda value: [int(v) for v in
                          strategy.experimental_local_results(gather(tf.constant(value, tf.int64)))[0]]


def check_role(strategy, role):
    """The TF_CONFIG role read before TensorFlow started agrees with the strategy's."""
    if strategy.extended.should_checkpoint != role.is_chief:
        raise ValueError(f"TF_CONFIG makes this process worker {role.index} of {role.count}, but "
                         f"the strategy says chief={strategy.extended.should_checkpoint}")


def check_same_start(state, role, worker_gather, checkpoint):
    """Every worker restored the same checkpoint, written by as many workers as now.

    Raises ValueError (on every worker alike) otherwise: resuming needs every worker to
    see the chief's checkpoints/ folder, and the same worker count (another count
    would only change round-off, but a resumed run must equal the uninterrupted one).
    """
    steps = worker_gather(state.step if checkpoint else -1)
    if len(set(steps)) > 1:
        raise ValueError(
            f"the workers start from different checkpoints (steps {steps}, -1: none): "
            "every worker must read the chief's checkpoints/ folder (one shared workdir), or "
            "copy it to every worker's workdir before resuming")
    saved = state.workers or 1
    if checkpoint and saved != role.count:
        raise ValueError(
            f"{checkpoint} was trained by {saved} worker(s), this launch has {role.count}: a "
            f"run resumes with the worker count it started with (launch {saved} worker(s), "
            "or start a new --workdir)")


def keep_sums_on_chief(strategy, confusion, path):
    """After a restore with several replicas, puts the saved confusion counts back exactly.

    The checkpoint holds the sum over replicas; TF restores an ON_READ/SUM variable by
    dividing it among the replicas, which truncates odd integer counts (a count lost per
    odd cell). Re-read the saved sum and give it whole to the chief's first replica,
    zeros to every other copy, so the next read (their sum) is the saved value.
    """
    if strategy.num_replicas_in_sync == 1:
        return
    total = tf.train.load_checkpoint(path).get_tensor("train_confusion/total/.ATTRIBUTES/VARIABLE_VALUE")
    chief = strategy.extended.should_checkpoint
    for index, local in enumerate(strategy.experimental_local_results(confusion.total)):
        local.assign(total if chief and index == 0 else tf.zeros_like(local))


def batch_epoch(strategy, batch_epochs):
    """The data epoch of a (distributed) batch from `with_epoch` (host sync point)."""
    return int(strategy.experimental_local_results(batch_epochs)[0][0])
