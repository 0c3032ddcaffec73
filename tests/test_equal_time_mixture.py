"""The s = t mixture sampler (appendix G.2) and the flow-matching limit of the loss."""

import math

import numpy as np
import pytest
from scipy import integrate, special, stats

import keras_gcm
from keras_gcm import time_sampling as T
from tests.helpers import roundtrip, to_numpy

N = 100_000
T0, TT = 0.006, 0.994


def _sine_cdf(q, a=1.0, b=0.01):
    c = np.cos
    return (c(np.pi / 2 * b) - c(np.pi / 2 * ((a - b) * q + b))) / (c(np.pi / 2 * b) - c(np.pi / 2 * a))


def test_mixture_parts_pass_ks_tests():
    sampler = T.EqualTimeMixture(probability=0.75, seed=0)
    t, s = (to_numpy(v).astype("float64") for v in sampler.sample(N))
    equal = s == t
    # The share of s = t pairs is Binomial(N, 0.75): within 5 standard deviations.
    assert abs(equal.mean() - 0.75) < 5 * math.sqrt(0.75 * 0.25 / N)
    # s = t part: logit((t - t0) / (tT - t0)) ~ N(-0.4, 1) (MeanFlow's lognorm(-0.4, 1)).
    q = (t[equal] - T0) / (TT - T0)
    assert stats.kstest(special.logit(q), stats.norm(-0.4, 1.0).cdf).pvalue > 1e-3
    # s < t part: the VU sampler, nu = 1: s uniform-power(1), (t - s)/(tT - s) sine.
    s_other, t_other = s[~equal], t[~equal]
    assert np.all(s_other < t_other)
    q_t = (t_other - s_other) / (TT - s_other)
    assert stats.kstest(q_t, _sine_cdf).pvalue > 1e-3
    q_s = (s_other - T0) / (TT - T0)
    up_cdf = lambda v: v - v * np.log(np.clip(v, 1e-300, None))  # nu = 1: q (1 - log q)
    assert stats.kstest(q_s, up_cdf).pvalue > 1e-3
    assert np.all((t >= T0) & (t <= TT))


def test_density_of_both_parts():
    sampler = T.EqualTimeMixture(probability=0.5, equal_time_importance=True, seed=1)
    t = np.linspace(0.01, 0.99, 7).astype("float32")
    uniform = T.EqualTimeMixture(probability=0.5, seed=1)  # the default
    np.testing.assert_allclose(to_numpy(uniform.density(t, t)), 1 / (TT - T0), rtol=1e-6)
    # s = t: the logit-normal density on [t0, tT]; it integrates to 1.
    q = (t.astype("float64") - T0) / (TT - T0)
    expected = stats.norm(-0.4, 1.0).pdf(special.logit(q)) / (q * (1 - q)) / (TT - T0)
    np.testing.assert_allclose(to_numpy(sampler.density(t, t)), expected, rtol=1e-4)
    grid = np.linspace(T0, TT, 200_001)
    values = to_numpy(sampler.equal_time_density(grid.astype("float32"))).astype("float64")
    assert abs(integrate.trapezoid(values, grid) - 1.0) < 1e-3
    # s < t: the base (VU) sampler's conditional density.
    s = (t * 0.5).astype("float32")
    np.testing.assert_allclose(to_numpy(sampler.density(t, s)),
                               to_numpy(sampler.base.density(t, s)), rtol=1e-6)


def test_probability_limits_config_and_errors():
    always = T.EqualTimeMixture(probability=1.0, seed=0)
    t, s = (to_numpy(v) for v in always.sample(1000))
    assert np.all(t == s)
    never = T.EqualTimeMixture(probability=0.0, seed=0)
    t, s = (to_numpy(v) for v in never.sample(1000))
    assert np.all(s < t)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"probability.*\[0, 1\]"):
            T.EqualTimeMixture(probability=bad)
    with pytest.raises(TypeError, match="JointTimeSampler"):
        T.EqualTimeMixture(base=T.UniformTime())
    sampler = T.EqualTimeMixture(T.VariableUpperLimit(T.UniformPowerTime(2.0)),
                                 probability=0.3, mean=0.1, std=0.5, seed=3)
    clone = roundtrip(sampler)
    assert clone.probability == 0.3 and clone.std == 0.5 and clone.base.s_dist.nu == 2.0
    assert clone.equal_time_importance is False
    assert clone.variable_upper_limit


def _vu_model(jvp="finite_difference", loss=None):
    network = keras_gcm.networks.MLP(hidden_units=32, num_blocks=1, embedding_dim=16,
                                     time_inputs=2)
    model = keras_gcm.ConsistencyModel(
        network, time_sampler=T.EqualTimeMixture(seed=0),
        loss=keras_gcm.losses.ConsistencyLoss() if loss is None else loss,
        importance_weighting=False, jvp=jvp, seed=0)
    model.build((None, 2))
    return model


# The imagenet256 presets' loss, TimeAwareMMD(group_size=2, sigma=0.1), only with
# finite differences (the model rejects jvp="analytic" for MMD groups > 1).
@pytest.mark.parametrize("jvp, make_loss", [
    ("finite_difference", None),
    ("analytic", None),
    ("finite_difference", lambda: keras_gcm.losses.TimeAwareMMD(group_size=2, sigma=0.1)),
], ids=["consistency-finite_difference", "consistency-analytic", "mmd2-finite_difference"])
def test_loss_at_s_equal_t_is_the_flow_matching_loss(jvp, make_loss):
    model = _vu_model(jvp, None if make_loss is None else make_loss())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 2)).astype("float32")
    z = rng.standard_normal((64, 2)).astype("float32")
    t = rng.uniform(0.05, 0.2, 64).astype("float32")
    loss, _ = model.compute_consistency_loss(x, training=False, z=z, t=t, s=t)
    x_t = (1 - t[:, None]) * x + t[:, None] * z
    f_t = to_numpy(model.f(x_t, t, t))
    w = to_numpy(model.weighting.w(t))
    expected = np.mean(w * np.linalg.norm(f_t - (z - x), axis=1))
    assert expected > 1e-3
    # Finite differences: at s = t, r = t, so the Eq. 40 terms (particle or MMD rows)
    # get the scale 1/(t - r) = 0 and the model adds the flow-matching loss of these
    # pairs instead. Analytic: Eq. 6 at s = t is ||f_t - u_t|| itself.
    np.testing.assert_allclose(float(to_numpy(loss)), expected, rtol=1e-5)
    if model.consistency_loss.group_size > 1:
        # No continuity check for MMD: as s -> t its rows do not tend to the
        # flow-matching loss (the self-term is halved, 1/(2M) with M = 2, and the
        # kernel-weighted cross terms between the group's samples, O(t - r) each,
        # stay O(1) after the 1/(t - r) scale); the limit holds only at s = t itself.
        return
    # ... and the limit s -> t of the consistency loss (Eq. 40 with r = s).
    delta = 2e-4  # below h(t) = 0.005 exp(-3.5 t) on [0.05, 0.2]
    near, _ = model.compute_consistency_loss(x, training=False, z=z, t=t, s=t - delta)
    np.testing.assert_allclose(float(to_numpy(near)), expected, rtol=2e-2)
