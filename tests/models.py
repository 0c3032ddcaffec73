"""Small models shared by the tests."""

import numpy as np
import keras

from keras_gcm import ConsistencyModel
from keras_gcm.networks import MLP


def make_model(vu=False, dropout=0.0, data_dim=2, seed=0, randomize=True, **kwargs):
    """A built ConsistencyModel on a tiny MLP with random (non-zero) weights."""
    net = MLP(hidden_units=32, num_blocks=2, embedding_dim=16, time_inputs=2 if vu else 1,
              dropout=dropout, seed=seed)
    model = ConsistencyModel(net, seed=seed, **kwargs)
    model.build((None, data_dim))
    if randomize:
        randomize_weights(net, seed)
    return model


def randomize_weights(layer, seed=0, scale=0.3):
    rng = np.random.default_rng(seed)
    for v in layer.trainable_variables:
        v.assign(scale * rng.standard_normal(v.shape).astype("float32"))


def explicit_draws(batch, data_dim=2, vu=False, seed=0):
    """Fixed (x, z, t, s) for deterministic loss evaluations."""
    rng = np.random.default_rng(seed)
    x = (0.5 * rng.standard_normal((batch, data_dim))).astype("float32")
    z = rng.standard_normal((batch, data_dim)).astype("float32")
    t0, tT = 0.006, 0.994
    if vu:
        s = (t0 + (tT - t0) * rng.uniform(0, 0.5, batch)).astype("float32")
    else:
        s = np.full(batch, t0, "float32")
    t = (s + (tT - s) * rng.uniform(0.05, 1.0, batch)).astype("float32")
    return x, z, t, s
