import numpy as np
import pytest
from scipy import integrate, stats

import keras
from keras_gcm import time_sampling as T
from tests.helpers import roundtrip, to_numpy

N = 100_000


def _sine_cdf(q, a, b):  # appendix E.1, F_sine
    c = np.cos
    return (c(np.pi / 2 * b) - c(np.pi / 2 * ((a - b) * q + b))) / (c(np.pi / 2 * b) - c(np.pi / 2 * a))


def _sine_pdf(q, a, b):  # Eq. 15
    return np.pi * (a - b) / (2 * (np.cos(np.pi / 2 * b) - np.cos(np.pi / 2 * a))) * np.sin(
        np.pi / 2 * (a * q + b * (1 - q)))


def _cosh_cdf(q, a, b):  # appendix E.1, F_cosh
    return (np.sinh((a - b) * q + b) - np.sinh(b)) / (np.sinh(a) - np.sinh(b))


def _cosh_pdf(q, a, b):  # Eq. 16
    return (a - b) / (np.sinh(a) - np.sinh(b)) * np.cosh(a * q + b * (1 - q))


def _up_pdf(q, nu):  # Eq. 17, by numerical integration
    return nu * integrate.quad(lambda tau: (1 - q / tau) ** (nu - 1) / tau, q, 1, limit=200)[0]


def _up_cdf(q, nu):  # P(u * x <= q), x ~ Beta(1, nu): q + int_q^1 (1 - (1 - q/u)^nu) du
    return q + integrate.quad(lambda u: 1 - (1 - q / u) ** nu, q, 1, limit=200)[0]


DISTS = [
    (T.UniformTime(seed=1), lambda q: q, lambda q: np.ones_like(q)),
    (T.SineTime(1.0, 0.01, seed=2), lambda q: _sine_cdf(q, 1.0, 0.01), lambda q: _sine_pdf(q, 1.0, 0.01)),
    (T.SineTime(1.0, 0.1, seed=3), lambda q: _sine_cdf(q, 1.0, 0.1), lambda q: _sine_pdf(q, 1.0, 0.1)),
    (T.CoshTime(1.5, 0.0, seed=4), lambda q: _cosh_cdf(q, 1.5, 0.0), lambda q: _cosh_pdf(q, 1.5, 0.0)),
    (T.UniformPowerTime(4.0, seed=5), np.vectorize(lambda q: _up_cdf(q, 4.0)), np.vectorize(lambda q: _up_pdf(q, 4.0))),
    (T.UniformPowerTime(2.5, seed=6), np.vectorize(lambda q: _up_cdf(q, 2.5)), np.vectorize(lambda q: _up_pdf(q, 2.5))),
]
IDS = ["uniform", "sine_0.01", "sine_0.1", "cosh", "upower_4", "upower_2.5"]


@pytest.mark.parametrize("dist,cdf,pdf", DISTS, ids=IDS)
def test_samples_pass_a_ks_test_against_the_analytic_cdf(dist, cdf, pdf):
    q = to_numpy(dist.sample((N,)))
    assert q.shape == (N,) and np.all(q > 0) and np.all(q < 1)
    if isinstance(dist, T.UniformPowerTime):
        # Tabulate the quadrature CDF once and interpolate (100k quad calls are slow).
        grid = np.concatenate([np.geomspace(1e-12, 1e-3, 200), np.linspace(1e-3, 1, 2000)])
        table = cdf(grid)
        result = stats.kstest(q, lambda v: np.interp(v, grid, table))
    else:
        result = stats.kstest(q, cdf)
    assert result.pvalue > 1e-3, result


@pytest.mark.parametrize("dist,cdf,pdf", DISTS, ids=IDS)
def test_cdf_pdf_icdf_match_the_paper(dist, cdf, pdf):
    q = np.concatenate([np.geomspace(1e-6, 1e-2, 9), np.linspace(0.02, 0.98, 25)]).astype("float32")
    np.testing.assert_allclose(to_numpy(dist.cdf(q)), cdf(q.astype("float64")), rtol=2e-4, atol=2e-6)
    np.testing.assert_allclose(to_numpy(dist.pdf(q)), pdf(q.astype("float64")), rtol=2e-4, atol=1e-5)
    # icdf(cdf(q)) = q wherever float32 resolves the CDF (the uniform-power
    # CDF is flat near 1: 1 - F(0.98) is about 1e-7 for nu = 4).
    ok = 1.0 - cdf(q.astype("float64")) > 1e-4
    np.testing.assert_allclose(to_numpy(dist.icdf(dist.cdf(q[ok]))), q[ok], rtol=2e-3, atol=1e-6)
    # the pdf integrates to 1 (in log space near the uniform-power singularity at 0)
    total = integrate.quad(lambda v: float(to_numpy(dist.pdf(np.float32([v])))[0]), 0, 1,
                           points=[1e-6, 1e-3, 1e-1], limit=200)[0]
    assert total == pytest.approx(1.0, abs=2e-3)


def test_uniform_power_density_matches_eq17_including_non_integer_nu():
    for nu in (1.0, 2.0, 3.7, 4.0, 8.0):
        dist = T.UniformPowerTime(nu)
        for q in (1e-7, 1e-4, 0.01, 0.2, 0.5, 0.9, 0.999):
            assert float(to_numpy(dist.pdf(np.float32([q])))[0]) == pytest.approx(_up_pdf(q, nu), rel=1e-4)
    # nu = 1: the product of two uniforms, p(q) = -log q.
    np.testing.assert_allclose(to_numpy(T.UniformPowerTime(1.0).pdf(np.float32([0.1, 0.5]))),
                               -np.log([0.1, 0.5]), rtol=1e-5)


def test_sine_inverse_cdf_is_accurate_near_zero():
    # Eq. 41 evaluated naively in float32 loses all digits for small u.
    dist = T.SineTime(1.0, 0.01)
    u = np.float32([1e-7, 1e-6, 1e-5])
    q = to_numpy(dist.icdf(u)).astype("float64")
    np.testing.assert_allclose(_sine_cdf(q, 1.0, 0.01), u, rtol=1e-3)


def test_forced_zero_and_one_draws_stay_inside_the_open_interval(monkeypatch):
    def zeros(shape, minval=0.0, maxval=1.0, seed=None, dtype=None):
        return keras.ops.zeros(shape, dtype or "float32")

    def ones(shape, minval=0.0, maxval=1.0, seed=None, dtype=None):
        return keras.ops.ones(shape, dtype or "float32")

    for fake in (zeros, ones):
        monkeypatch.setattr(T.keras.random, "uniform", fake)
        for sampler in (T.ConstantUpperLimit(T.SineTime()),
                        T.VariableUpperLimit(T.UniformPowerTime(4), T.SineTime())):
            t, s = (to_numpy(v) for v in sampler.sample(16))
            assert np.all(t > s), (fake.__name__, t, s)
            assert np.all(t <= sampler.tT) and np.all(s >= sampler.t0)
            assert np.all(np.isfinite(to_numpy(sampler.density(t, s))))


def test_cu_sampler_and_its_conditional_density():
    sampler = T.ConstantUpperLimit(T.SineTime(), seed=0)
    t, s = (to_numpy(v) for v in sampler.sample(N))
    assert np.all(s == np.float32(0.006))
    q = (t - 0.006) / (0.994 - 0.006)
    assert stats.kstest(q, lambda v: _sine_cdf(v, 1.0, 0.01)).pvalue > 1e-3
    dens = to_numpy(sampler.density(t[:100], s[:100]))
    np.testing.assert_allclose(dens, _sine_pdf(q[:100], 1.0, 0.01) / 0.988, rtol=1e-3)


def test_vu_sampler_s_first_marginals_and_conditional():
    sampler = T.VariableUpperLimit(T.UniformPowerTime(4.0), T.SineTime(), seed=0,
                                   importance_density="conditional")
    t, s = (to_numpy(v).astype("float64") for v in sampler.sample(N))
    t0, tT = 0.006, 0.994
    assert np.all(s >= t0) and np.all(t > s) and np.all(t <= tT + 1e-7)
    grid = np.concatenate([np.geomspace(1e-12, 1e-3, 200), np.linspace(1e-3, 1, 2000)])
    table = np.vectorize(lambda v: _up_cdf(v, 4.0))(grid)
    assert stats.kstest((s - t0) / (tT - t0), lambda v: np.interp(v, grid, table)).pvalue > 1e-3
    # Given s, (t - s) / (tT - s) is sine-distributed and independent of s.
    q_t = (t - s) / (tT - s)
    assert stats.kstest(q_t, lambda v: _sine_cdf(v, 1.0, 0.01)).pvalue > 1e-3
    assert abs(stats.spearmanr(q_t, s).statistic) < 0.02
    dens = to_numpy(sampler.density(t[:50].astype("float32"), s[:50].astype("float32")))
    np.testing.assert_allclose(dens, _sine_pdf(q_t[:50], 1.0, 0.01) / (tT - s[:50]), rtol=2e-3)


def test_vu_sampler_t_first_order():
    sampler = T.VariableUpperLimit(T.UniformPowerTime(4.0), T.UniformTime(), order="t_first", seed=0,
                                   importance_density="conditional")
    t, s = (to_numpy(v).astype("float64") for v in sampler.sample(N))
    assert stats.kstest((t - 0.006) / 0.988, "uniform").pvalue > 1e-3
    assert np.all(s <= t) and np.all(s >= 0.006)
    np.testing.assert_allclose(to_numpy(sampler.density(t[:10].astype("float32"), s[:10].astype("float32"))),
                               1 / 0.988, rtol=1e-5)


def test_shared_time_groups():
    sampler = T.VariableUpperLimit(seed=0)
    t, s = (to_numpy(v) for v in sampler.sample(12, group_size=4))
    assert np.all(t.reshape(3, 4) == t.reshape(3, 4)[:, :1])
    assert np.all(s.reshape(3, 4) == s.reshape(3, 4)[:, :1])
    assert len(np.unique(t)) == 3
    with pytest.raises(ValueError, match="divisible"):
        sampler.sample(10, group_size=4)


def test_seeded_sampling_is_reproducible():
    a = to_numpy(T.SineTime(seed=7).sample((5,)))
    b = to_numpy(T.SineTime(seed=7).sample((5,)))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(to_numpy(T.SineTime().sample((5,), seed=3)),
                                  to_numpy(T.SineTime().sample((5,), seed=3)))


@pytest.mark.parametrize("layer", [
    T.UniformTime(), T.SineTime(1.0, 0.1, seed=3), T.CoshTime(1.5, 0.2), T.UniformPowerTime(3.0),
    T.ConstantUpperLimit(T.CoshTime(), t0=0.01, tT=0.99, seed=1),
    T.VariableUpperLimit(T.UniformPowerTime(2.0), T.SineTime(), order="t_first"),
], ids=lambda layer: type(layer).__name__)
def test_config_roundtrip(layer):
    copy = roundtrip(layer)
    assert type(copy) is type(layer)
    assert copy.get_config() == layer.get_config()


def test_invalid_arguments():
    with pytest.raises(ValueError, match="differ"):
        T.SineTime(1.0, 1.0)
    with pytest.raises(ValueError, match="positive"):
        T.SineTime(1.0, 0.0)
    with pytest.raises(ValueError, match="nu"):
        T.UniformPowerTime(0.5)
    with pytest.raises(ValueError, match="t0"):
        T.ConstantUpperLimit(t0=0.5, tT=0.4)
    with pytest.raises(ValueError, match="order"):
        T.VariableUpperLimit(order="random")
