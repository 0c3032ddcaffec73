"""Mixed precision: a bfloat16 network, float32 loss mathematics."""

import warnings

import numpy as np
import pytest

import keras

import keras_gcm
from keras_gcm import losses, samplers, schedules
from keras_gcm.networks import MLP
from tests.helpers import to_numpy


@pytest.fixture
def mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_network_runs_in_bfloat16_and_the_loss_in_float32(mixed_bfloat16):
    net = MLP(hidden_units=32, num_blocks=1)
    model = keras_gcm.ConsistencyModel(net, seed=0)
    model.build((None, 2))
    assert net.compute_dtype == "bfloat16"
    assert all(v.dtype == "float32" for v in model.ema_weights)
    x = keras_gcm.data.toy2d("two_moons", 16, seed=0)
    out = net(x, np.full(16, 0.5, "float32"))
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    f = model.f(x, np.full(16, 0.5, "float32"), np.full(16, 0.006, "float32"))
    assert keras.backend.standardize_dtype(f.dtype) == "float32"
    loss, aux = model.compute_consistency_loss(x)
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    # The teacher time r = t - h(t) must keep its float32 resolution (h ~ 1e-4).
    assert 1e-4 < float(to_numpy(aux["mean_h"])) < 5e-3


def test_small_epsilon_with_a_bfloat16_network_warns(mixed_bfloat16):
    # bf16 outputs carry ~3 digits: (f_t - f_r) / h with h ~ 0.005 is rounding noise.
    with pytest.warns(UserWarning, match="dominated by rounding"):
        keras_gcm.ConsistencyModel(MLP(hidden_units=8, num_blocks=1)).build((None, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keras_gcm.ConsistencyModel(
            MLP(hidden_units=8, num_blocks=1), step=schedules.ExponentialStep(0.05, 3.5)
        ).build((None, 2))
        keras_gcm.ConsistencyModel(
            MLP(hidden_units=8, num_blocks=1), jvp="analytic", loss=losses.ConsistencyLoss()
        ).build((None, 2))


def test_bfloat16_training_still_learns(mixed_bfloat16):
    """With the epsilon the warning asks for (the paper's eps = 0.005 diverges in bf16)."""
    data = keras_gcm.data.toy2d("eight_gaussians", 16384, seed=0)
    reference = keras_gcm.data.toy2d("eight_gaussians", 2000, seed=1)
    model = keras_gcm.ConsistencyModel(MLP(hidden_units=128, num_blocks=3), ema_decay=0.99,
                                       step=schedules.ExponentialStep(0.05, 3.5), seed=0)
    model.compile(optimizer=keras_gcm.optimizers.RAdam(2e-3))
    model.build((None, 2))
    before = keras_gcm.metrics.energy_distance(samplers.one_step(model, 2000, seed=0), reference)
    model.fit(data, batch_size=256, epochs=10, verbose=0)
    after = keras_gcm.metrics.energy_distance(samplers.one_step(model, 2000, seed=0), reference)
    print(f"bf16 energy distance: untrained {before:.4f}, 1-step {after:.4f}")
    assert after < 0.25 * before
