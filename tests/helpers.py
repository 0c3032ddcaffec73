"""Backend-neutral test utilities."""

import importlib.util
import os

import numpy as np
import keras

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def fid_files(directory):
    """Random FID Inception weights (`.npz`) and reference statistics, in `directory`.

    The weights are those tests/test_inception.py regenerates from the seed
    recipe of tests/fixtures/inception_fid_random.npz. The reference is a
    point mass (`sigma = 0`): `cov @ sigma` is then exactly zero, so each
    FID's 2048 x 2048 `sqrtm` takes seconds instead of minutes on 2 cores.

    Returns:
        `(weights_path, reference_path)`.
    """
    from keras_gcm.metrics import save_statistics

    spec = importlib.util.spec_from_file_location(
        "make_inception_fixture", os.path.join(_ROOT, "tools", "make_inception_fixture.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    with np.load(os.path.join(_ROOT, "tests", "fixtures", "inception_fid_random.npz")) as f:
        keys, shapes = tool.recipe_from_fixture(f)
        seed = int(f["weight_seed"])
    weights = os.path.join(directory, "inception.npz")
    np.savez(weights, **tool.random_state_dict(keys, shapes, seed))
    reference = os.path.join(directory, "reference.npz")
    save_statistics(reference, np.full(2048, 0.1), np.zeros((2048, 2048)))
    return weights, reference
