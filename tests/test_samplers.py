import numpy as np
import pytest

from keras_gcm import samplers
from tests.helpers import to_numpy
from tests.models import make_model


def _manual_g(model, x, t, s, use_ema=False):
    b = np.full(len(x), t, "float32"), np.full(len(x), s, "float32")
    values = model.network_values(use_ema=use_ema)
    return to_numpy(model.g(x, b[0], b[1], values=values))


def test_one_step_is_g_from_tT_to_t0():
    model = make_model()
    out = samplers.one_step(model, 5, seed=0, use_ema=False)
    # The prior is sigma(tT) z with z ~ N(0, noise_std^2 I) (OTFlow noise_scale).
    z = samplers._noise(0, 0, 5, (2,), 1)[0] * model.interpolant.noise_std
    want = _manual_g(model, 0.994 * z, 0.994, 0.006)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


def test_restart_and_pushforward_follow_their_definitions():
    cu = make_model()
    z0, z1 = samplers._noise(1, 0, 6, (2,), 2) * cu.interpolant.noise_std
    x0 = _manual_g(cu, 0.994 * z0, 0.994, 0.006)
    want = _manual_g(cu, 0.4 * x0 + 0.6 * z1, 0.6, 0.006)
    np.testing.assert_allclose(samplers.restart(cu, 6, (0.994, 0.6), seed=1, use_ema=False),
                               want, rtol=1e-5, atol=1e-6)
    vu = make_model(vu=True)
    z = samplers._noise(2, 0, 6, (2,), 1)[0] * vu.interpolant.noise_std
    x = _manual_g(vu, 0.994 * z, 0.994, 0.6)
    want = _manual_g(vu, x, 0.6, 0.006)
    np.testing.assert_allclose(samplers.pushforward(vu, 6, (0.994, 0.6, 0.006), seed=2, use_ema=False),
                               want, rtol=1e-5, atol=1e-6)
    # The paper's two-step sampler picks restart for CU, pushforward for VU.
    np.testing.assert_allclose(samplers.two_step(vu, 6, seed=2, use_ema=False), want, rtol=1e-5, atol=1e-6)


def test_batching_and_seeds():
    model = make_model()
    a = samplers.restart(model, 600, seed=3, batch_size=7)
    b = samplers.restart(model, 600, seed=3, batch_size=600)
    assert a.shape == (600, 2)
    # The noise of sample i depends on (seed, i) only, not on the batching.
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    noise = samplers._noise(3, 250, 20, (2,), 2)
    np.testing.assert_array_equal(noise, np.concatenate(
        [samplers._noise(3, 250, 6, (2,), 2), samplers._noise(3, 256, 14, (2,), 2)], axis=1))
    np.testing.assert_array_equal(samplers.one_step(model, 9, seed=4), samplers.one_step(model, 9, seed=4))
    assert not np.allclose(samplers.one_step(model, 9, seed=4), samplers.one_step(model, 9, seed=5))


def test_ema_weights_are_used_once_trained():
    import keras_gcm

    model = make_model(ema_decay=0.5, ema_warmup=False)
    assert not model.ema_initialized
    # Before any update the EMA falls back to the raw weights.
    np.testing.assert_array_equal(samplers.one_step(model, 4, seed=0),
                                  samplers.one_step(model, 4, seed=0, use_ema=False))
    model.compile(optimizer=keras_gcm.optimizers.RAdam(1e-2))
    x = keras_gcm.data.toy2d("two_moons", 128, seed=0)
    model.fit(x, batch_size=32, epochs=1, verbose=0)
    ema = samplers.one_step(model, 4, seed=0)
    raw = samplers.one_step(model, 4, seed=0, use_ema=False)
    assert not np.allclose(ema, raw)
    model.copy_ema_to_network()
    np.testing.assert_allclose(samplers.one_step(model, 4, seed=0, use_ema=False), ema, rtol=1e-6)


def test_bad_sampler_arguments():
    model = make_model()
    with pytest.raises(ValueError, match="decreasing"):
        samplers.restart(model, 4, times=(0.6, 0.994))
    with pytest.raises(ValueError, match=r"\[t0, tT\]"):
        samplers.restart(model, 4, times=(1.5, 0.6))
    with pytest.raises(ValueError, match="num_samples"):
        samplers.one_step(model, 0)
    with pytest.raises(ValueError, match="VU model"):
        samplers.pushforward(model, 4)
    unbuilt = make_model.__globals__["ConsistencyModel"](make_model().network.__class__())
    with pytest.raises(ValueError, match="not built"):
        samplers.one_step(unbuilt, 4)
