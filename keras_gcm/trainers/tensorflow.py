"""TensorFlow train step: GradientTape inside Keras' tf.function.

Under `tf.distribute` (e.g. `MirroredStrategy`) Keras runs `train_step` once
per replica on that replica's slice of the global batch, and every replica
holds its own copy of each variable. Three things keep N replicas equal to
one device on the same global batch:

* **Loss and gradient.** The consistency loss uses Keras' `"sum_over_batch_size"`
  reduction, which divides each replica's batch mean by N; the optimizer sums
  the replicas' gradients, so the update is the gradient of the global batch
  mean. MMD groups are consecutive rows of a replica's slice (the local batch
  must divide into groups: global batch a multiple of N x M), so no group
  straddles two replicas and the replicas' losses average to the global loss.
* **Noise and times** (`draw_for_replica`). The seed-generator states are
  mirrored: drawing from them naively would give every replica the *same*
  noise. Instead every replica draws the global batch's noise and times from
  the shared state and keeps its own rows, so replicas draw different noise,
  the draws equal those of one device on the global batch, and the states
  advance identically on all replicas.
* **Dropout** (`replica_dropout_seeds`). The network's dropout seed states
  are folded with the replica id for the duration of the step (the student
  and teacher passes still share one mask per example), then advanced as if
  unfolded, so masks differ across replicas and the states stay in sync.
  (Dropout masks under N replicas are therefore different draws than on one
  device: statistically the same training, not bitwise.)

EMA weights, the EMA counter and the seed states are mirrored variables
with aggregation NONE: each replica assigns its own copy with values that
are identical on every replica (computed from the synchronised weights and
states), so the copies stay equal.
"""

import contextlib

import keras
import tensorflow as tf
from keras.src import tree
from keras.src.losses.loss import unscale_loss_for_distribution

from keras_gcm import distribute as gcm_distribute

# Marks the run-time MMD batch-size check's message (tf.data without
# drop_remainder), which fit turns into a ValueError.
MMD_BATCH_MESSAGE = "[keras_gcm: MMD batch]"

# Keras casts int64 seed states into int32 with this modulus (XLA needs int32).
_SEED_MODULUS = 2**31 - 2


def global_rng_state():
    return None


def set_global_rng_state(state):
    del state


def jvp(fn, primals, tangents):
    """Forward-mode `(fn(*primals), J tangents)` (`keras.ops.jvp`)."""
    return keras.ops.jvp(fn, primals, tangents)


def compile_inference(fn, jit_compile=True):
    """Wraps `fn(values, *inputs)` in a `tf.function` (graph mode, as Keras'
    `predict` runs; `jit_compile` is read by the torch backend only)."""
    return tf.function(fn, reduce_retracing=True)


def replica_context():
    """`(replica_id, num_replicas, context)` inside a `tf.distribute` replica
    of a strategy with more than one replica; None otherwise."""
    context = tf.distribute.get_replica_context()
    if context is None:  # cross-replica context
        return None
    count = context.num_replicas_in_sync
    if count == 1:
        return None
    return context.replica_id_in_sync_group, count, context


def _replica_rows(batch_size):
    """Where this replica's rows lie in the global batch.

    Returns None without replicas, else `(start, total, batch_size)`: this
    replica's first row, the global batch size and this replica's batch size
    (int32 tensors). The replicas' sizes are gathered (one tiny collective)
    because a global batch need not split equally: a final partial batch
    gives replicas different sizes, even static ones, and the slices must
    tile the global batch.
    """
    replica = replica_context()
    if replica is None:
        return None
    index, _, context = replica
    batch_size = tf.cast(batch_size, tf.int32)
    sizes = context.all_gather(
        tf.reshape(tf.cast(batch_size, tf.float32), (1,)), axis=0
    )
    sizes = tf.cast(sizes, tf.int32)
    return tf.reduce_sum(sizes[:index]), tf.reduce_sum(sizes), batch_size

def export_defaults(format, input_signature):
    """Extra `keras.Model.export` arguments of the generator export: none here."""
    del format, input_signature
    return {}


def draw_for_replica(draw, batch_size):
    """This replica's rows of `draw(global_batch_size)`.

    `draw(n)` draws the random values (noise, times) of `n` examples from the
    model's seed generators, a tensor or a tuple of tensors with `n` rows.
    With one replica it is `draw(batch_size)`. Inside a `tf.distribute`
    replica it draws for the whole global batch (the same values on every
    replica: the seed states are mirrored) and returns the rows of this
    replica's slice, so that replicas get different draws, equal to the draws
    of one device on the global batch.

    Args:
        draw: callable `n -> tensor(s) with n rows`.
        batch_size: this replica's batch size (int, or a scalar tensor when
            the batch dimension is dynamic).

    Returns:
        The output of `draw` restricted to this replica's rows.
    """
    rows = _replica_rows(batch_size)
    if rows is None:
        return draw(batch_size)
    static = batch_size if isinstance(batch_size, int) else None
    start, total, batch_size = rows

    def own_rows(values):
        values = values[start:start + batch_size]
        if static is not None:  # keep the static batch size of this replica
            values = tf.ensure_shape(values, (static,) + tuple(values.shape[1:]))
        return values

    return tree.map_structure(own_rows, draw(total))


@contextlib.contextmanager
def replica_dropout_seeds(seed_generators):
    """Decorrelates the dropout masks of `tf.distribute` replicas.

    Inside a replica (more than one in sync), each seed state is replaced by
    `fold_in(state, replica_id)` on entry; on exit it is set to the original
    state advanced by as many draws as were taken, so the states stay equal
    on all replicas. Without replicas it does nothing.

    Args:
        seed_generators: the `keras.random.SeedGenerator`s of the network's
            dropout layers.
    """
    replica = replica_context()
    if replica is None or not seed_generators:
        yield
        return
    index = tf.cast(replica[0], tf.int32)
    saved = []
    for generator in seed_generators:
        state = tf.identity(generator.state.value)
        seed = tf.cast(tf.math.floormod(state, _SEED_MODULUS), tf.int32)
        folded = tf.cast(
            tf.random.experimental.stateless_fold_in(seed, index), state.dtype
        )
        generator.state.assign(folded)
        saved.append((state, folded))
    yield
    for generator, (state, folded) in zip(seed_generators, saved):
        generator.state.assign(state + (generator.state.value - folded))


def _unequal_share_correction(x):
    """`N b / B` for a replica holding b of the B rows of a global batch over
    N replicas; None without replicas.

    Keras divides each replica's batch-mean loss by N; with unequal shares (a
    final partial batch) this factor makes the replicas' losses sum to the
    global batch mean. With equal shares it is exactly 1.
    """
    rows = _replica_rows(tf.shape(x)[0])
    if rows is None:
        return None
    _, total, local = rows
    count = replica_context()[1]
    return tf.math.divide_no_nan(
        tf.cast(count * local, tf.float32), tf.cast(total, tf.float32)
    )


def _per_worker_fit_arguments(strategy, args, kwargs, multiple, reason):
    """`fit`'s arguments under several workers: arrays become a
    `distribute_datasets_from_function` dataset in which every worker reads
    its own rows of every global batch (`keras_gcm.distribute.process_shard`)."""
    bound = dict(zip(("x", "y", "batch_size"), args))
    bound.update(kwargs)
    x = bound.get("x")
    if not (hasattr(x, "shape") and not hasattr(x, "element_spec")
            and not isinstance(x, (dict, list, tuple))):
        return bound
    global_batch = int(bound.get("batch_size") or 32)
    count = len(x)
    bound = gcm_distribute.process_fit_arguments((), bound, multiple, reason)
    local_x, local_y = bound.pop("x"), bound.pop("y", None)
    bound.pop("batch_size", None)
    shuffle = bound.pop("shuffle", True)
    seed = gcm_distribute.process_index()

    def dataset_fn(context):
        rows = local_x if local_y is None else (local_x, local_y)
        dataset = tf.data.Dataset.from_tensor_slices(rows)
        if shuffle:
            dataset = dataset.shuffle(len(local_x), seed=seed, reshuffle_each_iteration=True)
        return dataset.batch(context.get_per_replica_batch_size(global_batch))

    bound["x"] = strategy.distribute_datasets_from_function(dataset_fn)
    if bound.get("steps_per_epoch") is None:
        bound["steps_per_epoch"] = -(-count // global_batch)
    return bound


def _scalar_logs(function):
    """Several workers: Keras reduces each scalar log with `axis=0` into a
    1-element vector; the wrapped `function` gives `fit` / `evaluate`
    (History, callbacks) scalars, as with one worker."""
    if function is None or gcm_distribute.process_count() == 1:
        return function
    if getattr(function, "_keras_gcm_scalar_logs", False):
        return function

    def scalar(value):
        if isinstance(value, tf.Tensor) and value.shape.rank == 1 and value.shape[0] == 1:
            return tf.reshape(value, ())
        return value

    def wrapped(*args, **kwargs):
        return tree.map_structure(scalar, function(*args, **kwargs))

    wrapped._keras_gcm_scalar_logs = True
    return wrapped


class ConsistencyTrainer:
    """TensorFlow `train_step`: gradient of the consistency loss, optimizer, EMA."""

    def fit(self, *args, **kwargs):
        """Checks that array batches split into MMD groups on every replica."""
        replicas = self.distribute_strategy.num_replicas_in_sync
        group = self.consistency_loss.group_size
        if gcm_distribute.process_count() > 1:
            # Several workers: each reads its own rows (a per-worker dataset).
            kwargs = _per_worker_fit_arguments(
                self.distribute_strategy, args, kwargs, replicas * group,
                f"the {gcm_distribute.process_count()} processes (workers) hold "
                f"{replicas} replicas; each trains on its slice of the batch, and "
                f"that slice must divide into MMD groups of {group}",
            )
            args = ()
        if replicas > 1 and group > 1:
            gcm_distribute.check_replica_batches(
                kwargs.get("x", args[0] if args else None),
                kwargs.get("batch_size"), replicas * group,
                f"under tf.distribute each of the {replicas} replicas trains on "
                f"its slice of the batch, and that slice must divide into MMD "
                f"groups of {group}",
            )
        try:
            return super().fit(*args, **kwargs)
        except tf.errors.InvalidArgumentError as error:
            # The run-time MMD batch check above: the same ValueError as the
            # other backends give.
            if MMD_BATCH_MESSAGE not in str(error.message):
                raise
            text = str(error.message).split(MMD_BATCH_MESSAGE, 1)[1]
            raise ValueError(text.split("\n")[0].strip()) from None
        except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError,
                tf.errors.CancelledError) as error:
            # A collective timed out (`initialize`'s timeout) or was aborted:
            # another worker stopped.
            if gcm_distribute.process_count() == 1:
                raise
            raise gcm_distribute.peer_failure_error(
                str(error.message).split("\n")[0]) from error

    def make_train_function(self, force=False):
        super().make_train_function(force)
        self.train_function = _scalar_logs(self.train_function)
        return self.train_function

    def make_test_function(self, force=False):
        super().make_test_function(force)
        self.test_function = _scalar_logs(self.test_function)
        return self.test_function

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        group = self.consistency_loss.group_size
        replica = replica_context()
        replicas = 1 if replica is None else replica[1]
        where = (
            f" Under tf.distribute with {replicas} replicas this is each "
            f"replica's share: use a global batch size that is a multiple of "
            f"{replicas} x {group} = {replicas * group}."
            if replicas > 1 else ""
        )
        if replicas > 1 and group > 1 and x.shape[0] is not None and x.shape[0] % group:
            # (On one device compute_consistency_loss reports it.)
            raise ValueError(
                f"The batch size ({x.shape[0]}) must be divisible by the MMD "
                f"group size ({group}).{where}"
            )
        if group > 1 and x.shape[0] is None:
            # The batch size is only known at run time (tf.data without
            # drop_remainder): check the MMD grouping there, before the loss
            # runs (x depends on the check, so no reshape error comes first).
            check = tf.debugging.assert_equal(
                tf.shape(x)[0] % group, 0,
                message=f"{MMD_BATCH_MESSAGE} The batch size must be divisible "
                f"by the MMD group size ({group}): choose a batch size that is "
                f"a multiple of {group} (and drop the remainder of a tf.data "
                f"pipeline: .batch(n, drop_remainder=True)).{where}",
            )
            with tf.control_dependencies([check]):
                x = tf.identity(x)
        saved = self._save_guarded_state()
        with tf.GradientTape() as tape:
            with replica_dropout_seeds(self._dropout_seed_generators()):
                loss, aux = self.compute_consistency_loss(
                    x, training=True, class_labels=y
                )
            # Under tf.distribute the loss is already divided by the number of
            # replicas ("sum_over_batch_size"): the summed gradients are those
            # of the global batch mean when the replicas hold equal shares.
            share = _unequal_share_correction(x)
            if share is not None:
                loss = loss * share
            scaled = self.optimizer.scale_loss(loss)
        weights = self.trainable_variables
        grads = tape.gradient(scaled, weights)
        self.optimizer.apply(grads, weights)
        self._ema_update()
        # A non-finite step keeps the previous weights, moments and EMA.
        finite = self._skip_non_finite(loss, grads, saved)
        logs = self._update_trackers(unscale_loss_for_distribution(loss), aux, finite)
        logs = self._skip_logs(logs, [c.value for c in self._skip_counters()])
        if gcm_distribute.process_count() > 1:
            # Keras reduces logs over workers with reduce(MEAN, axis=0), which
            # needs a batch axis: give each scalar one (the result is a scalar).
            logs = {k: tf.reshape(v, (1,)) for k, v in logs.items()}
        return logs

    def _all_replicas_finite(self, finite):
        """Under tf.distribute a step is skipped on every replica if any
        replica's loss is non-finite (the weights stay in sync)."""
        replica = replica_context()
        if replica is None:
            return finite
        bad = replica[2].all_reduce(
            tf.distribute.ReduceOp.SUM, tf.cast(tf.logical_not(finite), tf.float32)
        )
        return tf.equal(bad, 0.0)

    def test_step(self, data):
        """`evaluate`: the loss on fixed draws (`compute_evaluation_loss`), no gradient."""
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        loss, aux = self.compute_evaluation_loss(x, class_labels=y)
        return self._update_trackers(unscale_loss_for_distribution(loss), aux)
