"""TensorFlow train step: GradientTape inside Keras' tf.function."""

import keras
import tensorflow as tf
from keras.src.losses.loss import unscale_loss_for_distribution


def global_rng_state():
    return None


def set_global_rng_state(state):
    del state


def jvp(fn, primals, tangents):
    """Forward-mode `(fn(*primals), J tangents)` (`keras.ops.jvp`)."""
    return keras.ops.jvp(fn, primals, tangents)


def compile_inference(fn):
    """Wraps `fn(values, *inputs)` in a `tf.function`."""
    return tf.function(fn, reduce_retracing=True)


class ConsistencyTrainer:
    """TensorFlow `train_step`: gradient of the consistency loss, optimizer, EMA."""

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        group = self.consistency_loss.group_size
        if group > 1 and x.shape[0] is None:
            # The batch size is only known at run time (tf.data without
            # drop_remainder): check the MMD grouping there.
            tf.debugging.assert_equal(
                tf.shape(x)[0] % group, 0,
                message=f"The batch size must be divisible by the MMD group "
                f"size {group}; use drop_remainder=True or a batch size "
                f"that is a multiple of {group}.",
            )
        with tf.GradientTape() as tape:
            loss, aux = self.compute_consistency_loss(x, training=True, class_labels=y)
            scaled = self.optimizer.scale_loss(loss)
        weights = self.trainable_variables
        grads = tape.gradient(scaled, weights)
        self.optimizer.apply(grads, weights)
        self._ema_update()
        return self._update_trackers(unscale_loss_for_distribution(loss), aux)
