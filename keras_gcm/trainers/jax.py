"""JAX train step: stateless, jit-compiled by Keras with donated state."""

import keras
import jax


def global_rng_state():
    return None


def set_global_rng_state(state):
    del state


def jvp(fn, primals, tangents):
    """Forward-mode `(fn(*primals), J tangents)` (`keras.ops.jvp`)."""
    return keras.ops.jvp(fn, primals, tangents)


def compile_inference(fn):
    """jit-compiles `fn(values, *inputs)`; `values` carries the variables."""
    return jax.jit(fn)


class ConsistencyTrainer:
    """JAX `train_step`: gradient of the consistency loss, optimizer, EMA."""

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

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (_, (loss, aux, non_trainable)), grads = grad_fn(trainable, non_trainable)
        trainable, optimizer_vars = self.optimizer.stateless_apply(
            optimizer_vars, grads, trainable
        )
        non_trainable = self._stateless_ema_update(trainable, non_trainable)

        mapping = list(zip(self.metrics_variables, metrics_vars))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            logs = self._update_trackers(loss, aux)
        metrics_vars = [_current(scope, v) for v in self.metrics_variables]
        return logs, (trainable, non_trainable, optimizer_vars, metrics_vars)


def _current(scope, variable):
    value = scope.get_current_value(variable)
    return variable.value if value is None else value
