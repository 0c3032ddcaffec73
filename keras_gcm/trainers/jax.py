"""JAX train step: stateless, jit-compiled by Keras with donated state.

Under a `keras.distribution` (e.g. `DataParallel`) Keras jit-compiles this
same step with the state's shardings as `out_shardings` and feeds batches
sharded along their first axis. The step is one SPMD program with a global
view: the noise, times and dropout masks are drawn for the global batch
from the replicated seed states, the MMD groups are the global batch's
groups (a group may straddle two devices: XLA moves the data), and the loss
is the global batch mean. N devices therefore give the same loss and update
as one device on the same global batch; the returned seed states, EMA
weights and EMA counter keep their replicated layout.
"""

import keras
import jax

from keras_gcm import distribute as gcm_distribute


def global_rng_state():
    return None


def set_global_rng_state(state):
    del state


def jvp(fn, primals, tangents):
    """Forward-mode `(fn(*primals), J tangents)` (`keras.ops.jvp`)."""
    return keras.ops.jvp(fn, primals, tangents)

def export_defaults(format, input_signature):
    """Extra `keras.Model.export` arguments of the generator export: none here."""
    del format, input_signature
    return {}


def draw_for_replica(draw, batch_size):
    """`draw(batch_size)`: under JAX the step already sees the global batch."""
    return draw(batch_size)


def compile_inference(fn, jit_compile=True):
    """jit-compiles `fn(values, *inputs)`; `values` carries the variables.

    Always compiled (`jit_compile` is read by the torch backend only).
    """
    return jax.jit(fn)


class ConsistencyTrainer:
    """JAX `train_step`: gradient of the consistency loss, optimizer, EMA."""

    def fit(self, *args, **kwargs):
        """Checks that array batches split evenly over a distribution's devices."""
        distribution = keras.distribution.distribution()
        processes = gcm_distribute.process_count()
        if processes > 1:
            # Several processes: every process gets the global arrays and
            # keeps its rows; Keras assembles the global batch.
            shards = processes
            if distribution is not None:
                mesh = distribution.device_mesh
                shards = mesh.shape[mesh.axis_names.index(distribution.batch_dim_name)]
            kwargs = gcm_distribute.process_fit_arguments(
                args, kwargs, shards,
                f"the {processes} processes split every global batch over "
                f"{shards} devices",
            )
            args = ()
            if distribution is not None and hasattr(kwargs.get("x"), "shape"):
                # The arrays are this process's rows already: no auto-sharding.
                previous = distribution.auto_shard_dataset
                distribution.auto_shard_dataset = False
                try:
                    return super().fit(**kwargs)
                finally:
                    distribution.auto_shard_dataset = previous
        if distribution is not None and processes == 1:
            mesh = distribution.device_mesh
            shards = mesh.shape[mesh.axis_names.index(distribution.batch_dim_name)]
            if shards > 1:
                gcm_distribute.check_replica_batches(
                    kwargs.get("x", args[0] if args else None),
                    kwargs.get("batch_size"), shards,
                    f"the distribution splits every batch over {shards} devices",
                )
        return super().fit(*args, **kwargs)

    def train_step(self, state, data):
        trainable, non_trainable, optimizer_vars, metrics_vars = state
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        optimizer_mapping = list(zip(self.optimizer.variables, optimizer_vars))

        def loss_fn(trainable, non_trainable):
            mapping = (
                list(zip(self.trainable_variables, trainable))
                + list(zip(self.non_trainable_variables, non_trainable))
                + optimizer_mapping
            )
            with keras.StatelessScope(state_mapping=mapping) as scope:
                loss, aux = self.compute_consistency_loss(
                    x, training=True, class_labels=y
                )
                scaled = self.optimizer.scale_loss(loss)
            new_non_trainable = [
                _current(scope, v) for v in self.non_trainable_variables
            ]
            return scaled, (loss, aux, new_non_trainable)

        old_state = (trainable, non_trainable, optimizer_vars)
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (_, (loss, aux, non_trainable)), grads = grad_fn(trainable, non_trainable)
        trainable, optimizer_vars = self.optimizer.stateless_apply(
            optimizer_vars, grads, trainable
        )
        non_trainable = self._stateless_ema_update(trainable, non_trainable)
        # A non-finite step keeps the previous weights, moments and EMA.
        trainable, non_trainable, optimizer_vars, finite = (
            self._stateless_skip_non_finite(
                loss, grads, old_state, (trainable, non_trainable, optimizer_vars)
            )
        )

        mapping = list(zip(self.metrics_variables, metrics_vars))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            logs = self._update_trackers(loss, aux, finite)
        metrics_vars = [_current(scope, v) for v in self.metrics_variables]
        index = {id(v): i for i, v in enumerate(self.non_trainable_variables)}
        logs = self._skip_logs(
            logs, [non_trainable[index[id(c)]] for c in self._skip_counters()]
        )
        return logs, (trainable, non_trainable, optimizer_vars, metrics_vars)

    def test_step(self, state, data):
        """`evaluate`: the loss on fixed draws (`compute_evaluation_loss`), no gradient."""
        trainable, non_trainable, metrics_vars = state
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        mapping = (
            list(zip(self.trainable_variables, trainable))
            + list(zip(self.non_trainable_variables, non_trainable))
            + list(zip(self.metrics_variables, metrics_vars))
        )
        with keras.StatelessScope(state_mapping=mapping) as scope:
            loss, aux = self.compute_evaluation_loss(x, class_labels=y)
            logs = self._update_trackers(loss, aux)
        metrics_vars = [_current(scope, v) for v in self.metrics_variables]
        return logs, (trainable, non_trainable, metrics_vars)


def _current(scope, variable):
    value = scope.get_current_value(variable)
    return variable.value if value is None else value
