"""Backend-neutral test utilities."""

import numpy as np
import keras


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def loss_and_grads(variables, fn):
    """Value of the scalar `fn()` and its gradients w.r.t. `variables`, as numpy.

    This is the only backend-specific code of the tests: each backend's own
    autodiff, so that gradient identities are checked on the real thing.
    """
    backend = keras.backend.backend()
    variables = list(variables)
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = fn()
        grads = tape.gradient(loss, variables)
    elif backend == "torch":
        for v in variables:
            v.value.grad = None
        loss = fn()
        loss.backward()
        grads = [v.value.grad for v in variables]
    else:
        import jax

        def pure(values):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return fn()

        loss, grads = jax.value_and_grad(pure)([v.value for v in variables])
    return float(to_numpy(loss)), [to_numpy(g) for g in grads]


def roundtrip(obj):
    """Serialises and deserialises a Keras object through its config."""
    config = keras.saving.serialize_keras_object(obj)
    return keras.saving.deserialize_keras_object(config)
