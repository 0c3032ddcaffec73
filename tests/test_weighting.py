import numpy as np
import pytest

from keras_gcm.weighting import ConstantWeight, GammaWeight
from tests.helpers import roundtrip, to_numpy


def test_gamma_weight_is_eq14_and_peaks_at_gamma_over_lambda():
    t = np.linspace(0.0, 1.0, 101).astype("float32")
    w = to_numpy(GammaWeight(1.0, 6.0)(t))
    np.testing.assert_allclose(w, t * np.exp(-6 * t), rtol=1e-5, atol=1e-8)
    assert t[np.argmax(w)] == pytest.approx(1 / 6, abs=0.01)
    np.testing.assert_allclose(to_numpy(GammaWeight(0.2, 3.0)(t[1:])), t[1:] ** 0.2 * np.exp(-3 * t[1:]), rtol=1e-5)
    np.testing.assert_array_equal(to_numpy(ConstantWeight()(t)), np.ones_like(t))


def test_config_and_validation():
    weight = GammaWeight(0.5, 2.0)
    assert roundtrip(weight).get_config() == weight.get_config()
    with pytest.raises(ValueError, match="gamma"):
        GammaWeight(gamma=-1.0)
