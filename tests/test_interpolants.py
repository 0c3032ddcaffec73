import numpy as np
import pytest

from keras_gcm.interpolants import OTFlow
from tests.helpers import roundtrip, to_numpy


def test_ot_flow_coefficients_and_preconditioning():
    flow = OTFlow(sigma_data=0.5)
    t = np.linspace(0.0, 1.0, 11).astype("float32")
    np.testing.assert_allclose(to_numpy(flow.alpha(t)), 1 - t)
    np.testing.assert_allclose(to_numpy(flow.sigma(t)), t)
    np.testing.assert_allclose(to_numpy(flow.d_alpha(t)), -np.ones_like(t))
    np.testing.assert_allclose(to_numpy(flow.d_sigma(t)), np.ones_like(t))
    # Section 3.1: c_in = 1 / (sigma_d sqrt(alpha^2 + sigma^2)), c_out = sigma_d sqrt(2).
    np.testing.assert_allclose(
        to_numpy(flow.c_in(t)), 1 / (0.5 * np.sqrt((1 - t) ** 2 + t**2)), rtol=1e-6
    )
    np.testing.assert_allclose(to_numpy(flow.c_out(t)), 0.5 * np.sqrt(2.0) * np.ones_like(t), rtol=1e-6)


def test_interpolation_velocity_and_unit_variance():
    rng = np.random.default_rng(0)
    flow = OTFlow(0.5)
    x = (0.5 * rng.standard_normal((20000, 3))).astype("float32")
    z = rng.standard_normal((20000, 3)).astype("float32")
    t = rng.uniform(0, 1, 20000).astype("float32")
    x_t, u_t = (to_numpy(v) for v in flow(x, z, t))
    np.testing.assert_allclose(x_t, (1 - t)[:, None] * x + t[:, None] * z, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(u_t, z - x, rtol=1e-5, atol=1e-6)
    # c_in(t) x_t has unit variance when data and noise both have std sigma_d
    # (the EDM convention behind the section 3.1 preconditioning).
    t_fixed = np.full(20000, 0.3, "float32")
    x_t = to_numpy(flow.interpolate(x, 0.5 * z, t_fixed))
    scaled = to_numpy(flow.c_in(t_fixed))[:, None] * x_t
    assert abs(scaled.std() - 1.0) < 0.02


def test_config_roundtrip_and_validation():
    flow = roundtrip(OTFlow(sigma_data=0.7))
    assert flow.sigma_data == 0.7
    with pytest.raises(ValueError, match="sigma_data"):
        OTFlow(sigma_data=0.0)
