"""The compiled steps: one optimizer update, and one evaluation batch.

Each is a tf.function over a tf.distribute strategy; on one device the per-replica work
is compiled by XLA when the runtime chose it (`runtime.resolve_jit_compile`).

Every tf.function of the project is traced with `autograph=False`: its control flow on
tensors is written as tf.cond and Python loops over static counts, so AutoGraph's source
rewriting would only add time to every trace. It cost about 3 s of each training
process's start (the `smoke` config: 18-19 s against 21-22 s per launch on
vm-AMD-EPYC-2cpu), paid again by every launch and every test that traces a step.
"""
import tensorflow as tf

import kernels
from research import build
from research.training.distributed import agree_on_overflow, average_over_replicas


def all_finite(tensors):
    """Scalar bool tensor: every element of every tensor is finite (not NaN/Inf)."""
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in tensors])


def global_normalizers(labels, config, num_replicas):
    """The loss normalizers (valid-pixel count, class-weight sums) of the GLOBAL batch.

    Call in a replica context. Each replica counts its own labels; with several replicas
    the counts are summed across all of them (one all-reduce), so each replica's loss is
    its share of the loss one device computes on the global batch (the CE divides by the
    valid-pixel count and dice is a ratio of sums: neither is a mean of per-replica
    values).

    Args: labels int [B, H, W] (this replica's); config: the run's Config; num_replicas:
    replicas in sync. Returns float32 [3]: `kernels.loss_normalizers`' (M, S, R).
    """
    local = kernels.loss_normalizers(labels, config.num_classes, config.ignore_label,
                                     class_weighted=config.class_weighted)
    if num_replicas == 1:
        return local
    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, local)


def weight_decay_for(config, model, num_replicas):
    """`fn(grads, scale) -> grads` adding coupled L2 weight decay (identity when off).

    g += wd * w on conv/dense kernels (`build.decayed_variables`), the gradient of
    wd/2 * ||w||^2 (PyTorch SGD's weight_decay, as mmsegmentation uses it; TF Model
    Garden's wd * tf.nn.l2_loss(w)). Added to the gradients rather than the loss so the
    logged loss stays the data loss. Each replica adds 1/N of it (the optimizer sums
    replicas' gradients); `scale` is the loss scale, since the LossScaleOptimizer
    unscales every gradient.
    """
    if not config.weight_decay:
        return lambda grads, scale: grads
    variables = model.trainable_variables
    decayed = build.decayed_variables(model)
    factor = config.weight_decay / num_replicas

    def add_weight_decay(grads, scale):
        return [g + tf.cast(factor * scale, g.dtype) * tf.cast(v, g.dtype) if d else g
                for g, v, d in zip(grads, variables, decayed)]

    return add_weight_decay


def micro_batches_of(tensor, count):
    """[count, B / count, ...]: `tensor` [B, ...] cut into `count` consecutive micro-batches."""
    rest = [d if d is not None else s for d, s in zip(tensor.shape[1:], tf.unstack(tf.shape(tensor)[1:]))]
    return tf.reshape(tensor, [count, -1] + rest)


def accumulate_gradients(forward_backward, images, labels, normalizers, micro_batches):
    """(loss, grads): `forward_backward(images, labels, normalizers) -> (loss, grads)` summed
    over `micro_batches` consecutive micro-batches of `images` [B, H, W, 3] and `labels`
    [B, H, W], run one after another. `normalizers` [3] (M, S, R) are the whole batch's."""
    images, labels = micro_batches_of(images, micro_batches), micro_batches_of(labels, micro_batches)
    # [M, S, R] -> [M, S, R * k]: each micro-batch's share of the constant dice term.
    normalizers = normalizers * tf.constant([1.0, 1.0, float(micro_batches)])
    loss, grads = tf.constant(0.0), None
    for i in range(micro_batches):
        # The next micro-batch starts when the last one's gradients exist, so its
        # activations are freed first (this is what bounds the memory).
        with tf.control_dependencies(grads or []):
            micro_images = tf.identity(images[i])
        micro_loss, micro_grads = forward_backward(micro_images, labels[i], normalizers)
        loss += micro_loss
        grads = micro_grads if grads is None else [g + m for g, m in zip(grads, micro_grads)]
    return loss, grads


def check_finite_gradients(grads, check_gradients, loss_scaling, num_replicas):
    """(finite: scalar bool tensor, grads) of one replica's step.

    Skipping is the LossScaleOptimizer's job under mixed_float16: the gradients are always
    checked, and with several replicas all agree on an overflow. In float32 a non-finite
    gradient stops the run on the host (see `checks_gradients`), checked only when
    `check_gradients` (a scalar bool tensor) is true; all weights are checked before any
    checkpoint is saved.
    """
    if loss_scaling:
        finite = all_finite(grads)
        if num_replicas > 1:
            finite, grads = agree_on_overflow(finite, grads)
        return finite, grads
    return tf.cond(check_gradients, lambda: all_finite(grads), lambda: tf.constant(True)), grads


def predictions_then_loss(logits, labels, loss_fn, **loss_kwargs):
    """(predictions int32 [B, H, W], loss_fn(labels, logits, **loss_kwargs)) of logits
    [B, H, W, C]: the argmax runs before the loss.

    Why the order: then the loss reads the logits last, and the fused loss's softmax
    (`SparseSoftmaxCrossEntropyWithLogits`) writes its gradient into their buffer instead
    of a new one, at the moment the whole forward is alive ([B, H, W, C] float32: 94.5 MiB
    at 384 px, batch 8, 21 classes). Left to itself the executor often ran the argmax
    after the loss.
    """
    predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
    with tf.control_dependencies([predictions]):
        return predictions, loss_fn(labels, logits, **loss_kwargs)


def make_train_step(model, optimizer, strategy, config, confusion, use_xla, loss_scaling):
    """A tf.function `(images, labels, check_gradients=True) -> (loss, grads_finite)`:
    one optimizer update.

    `images` float32 [B, H, W, 3], `labels` int [B, H, W] are distributed batches of
    B = config.batch_size * config.accumulate_steps images; `check_gradients` a scalar bool
    tensor: when false (float32 only) the gradients are not checked and grads_finite is True.

    Each replica computes the loss normalisers of its labels (valid-pixel count and
    class-weight sum), all-reduces them, and returns its SHARE of the global loss, so
    the shares (and the gradients, which the optimizer sums across replicas) add up to
    exactly the single-device loss on the global batch.

    Gradient accumulation (accumulate_steps k > 1): each replica cuts its part of the batch
    into k micro-batches and runs them one after another, summing their gradients, then
    applies one update. The normalizers are those of the whole batch, so every
    micro-batch's loss is its share and the sum is the loss of the whole batch: k
    micro-batches of b equal one batch of k * b, dice included, when BatchNorm does not
    train (bn_policy "frozen"); training-mode BatchNorm normalizes each micro-batch by its
    own statistics. Only one micro-batch's activations are alive at a time.
    """
    loss_fn, loss_kwargs = build.loss_function(config)
    variables = model.trainable_variables
    num_replicas = strategy.num_replicas_in_sync
    micro_batches = config.accumulate_steps
    add_weight_decay = weight_decay_for(config, model, num_replicas)
    moving_statistics = build.moving_statistics_to_average(model, config, num_replicas)

    def forward_backward(images, labels, normalizers):
        """Loss share and (loss-scaled) gradients of one batch; counts its predictions."""
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            predictions, loss = predictions_then_loss(logits, labels, loss_fn, normalizers=normalizers,
                                                      **loss_kwargs)
            scaled = optimizer.scale_loss(loss) if loss_scaling else loss
        confusion.update(labels, predictions)
        return loss, tape.gradient(scaled, variables)

    def replica_step(images, labels, check_gradients):
        normalizers = global_normalizers(labels, config, num_replicas)
        if micro_batches == 1:
            loss, grads = forward_backward(images, labels, normalizers)
        else:
            loss, grads = accumulate_gradients(forward_backward, images, labels, normalizers, micro_batches)
        grads = add_weight_decay(grads, optimizer.dynamic_scale if loss_scaling else 1.0)
        finite, grads = check_finite_gradients(grads, check_gradients, loss_scaling, num_replicas)
        optimizer.apply(grads, variables)
        if moving_statistics:  # bn_policy "train", several replicas: one all-reduce
            average_over_replicas(moving_statistics)
        return loss, tf.cast(tf.logical_not(finite), tf.int32)

    if num_replicas == 1:
        # One device: XLA compiles the whole step, optimizer update included. With
        # several replicas the step holds collectives (loss normalizers, synchronized
        # BatchNorm, gradient sums) that can be neither nested in an inner tf.function
        # nor compiled: runtime.resolve_jit_compile turns XLA off there.
        replica_step = tf.function(replica_step, jit_compile=use_xla, autograph=False)

    @tf.function(autograph=False)
    def train_step(images, labels, check_gradients=True):
        check_gradients = tf.convert_to_tensor(check_gradients, tf.bool)
        loss, nonfinite = strategy.run(replica_step, args=(images, labels, check_gradients))
        nonfinite = strategy.reduce(tf.distribute.ReduceOp.SUM, nonfinite, axis=None)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None), tf.equal(nonfinite, 0)

    return train_step


def make_eval_step(model, strategy, config, confusion, use_xla):
    """A tf.function `(images float32 [B, H, W, 3], labels int32 [B, H, W]) -> loss`
    (float32 scalar, the global batch's) that also adds the batch's predictions to
    `confusion` (a `kernels.StreamingConfusionMatrix`)."""
    loss_fn, loss_kwargs = build.loss_function(config)
    num_replicas = strategy.num_replicas_in_sync

    def replica_eval(images, labels):
        normalizers = global_normalizers(labels, config, num_replicas)
        logits = model(images, training=False)
        loss = loss_fn(labels, logits, normalizers=normalizers, **loss_kwargs)
        confusion.update(labels, tf.argmax(logits, axis=-1, output_type=tf.int32))
        return loss

    if num_replicas == 1:
        replica_eval = tf.function(replica_eval, jit_compile=use_xla, autograph=False)

    @tf.function(autograph=False)
    def eval_step(images, labels):
        loss = strategy.run(replica_eval, args=(images, labels))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)

    return eval_step


def run_evaluation(eval_step, dataset, confusion, steps=None):
    """Mean batch loss and metrics over `dataset` (a distributed dataset)."""
    confusion.reset()
    total, batches = 0.0, 0
    for images, labels in dataset:
        total += float(eval_step(images, labels))  # host sync per batch: fine for eval
        batches += 1
        if steps and batches >= steps:
            break
    metrics = kernels.segmentation_metrics(confusion.result().numpy())
    return (total / batches if batches else float("nan")), metrics
