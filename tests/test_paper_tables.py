"""Tables 7e, 7h, 10, 11 and Fig. 7f as presets, and the weightings and time
distributions they need (IMM's, MeanFlow's, FACM's and ECT's)."""

import math

import numpy as np
import pytest
from scipy import special, stats

import keras
from keras import ops

from keras_gcm import presets
from keras_gcm import time_sampling as T
from keras_gcm import weighting as W
from tests.helpers import roundtrip, to_numpy

N = 100_000


def _logit_normal_cdf(q, mean, std):
    return special.ndtr((special.logit(q) - mean) / std)


def _logit_normal_pdf(q, mean, std):
    return stats.norm.pdf((special.logit(q) - mean) / std) / (std * q * (1 - q))


def _arctan_cdf(q, mean, std, scale):
    return special.ndtr((np.log(scale * np.tan(np.pi * q / 2)) - mean) / std)


def _arctan_pdf(q, mean, std, scale):
    z = (np.log(scale * np.tan(np.pi * q / 2)) - mean) / std
    return stats.norm.pdf(z) * np.pi / (std * np.sin(np.pi * q))


DISTS = [
    (T.LogitNormalTime(-2.0, 2.0, seed=1), lambda q: _logit_normal_cdf(q, -2.0, 2.0),
     lambda q: _logit_normal_pdf(q, -2.0, 2.0)),
    (T.LogitNormalTime(-0.4, 1.0, seed=2), lambda q: _logit_normal_cdf(q, -0.4, 1.0),
     lambda q: _logit_normal_pdf(q, -0.4, 1.0)),
    (T.ArctanLogNormalTime(-0.8, 1.6, seed=3), lambda q: _arctan_cdf(q, -0.8, 1.6, 1.0),
     lambda q: _arctan_pdf(q, -0.8, 1.6, 1.0)),
    (T.ArctanLogNormalTime(-1.1, 2.0, scale=0.5, seed=4),
     lambda q: _arctan_cdf(q, -1.1, 2.0, 0.5), lambda q: _arctan_pdf(q, -1.1, 2.0, 0.5)),
]
IDS = ["logitnormal_meanflow_cifar", "logitnormal_meanflow_imagenet", "arctan_facm", "arctan_ect"]


@pytest.mark.parametrize("dist,cdf,pdf", DISTS, ids=IDS)
def test_samples_pass_a_ks_test_against_the_analytic_cdf(dist, cdf, pdf):
    q = to_numpy(dist.sample((N,))).astype("float64")
    assert np.all(q > 0) and np.all(q < 1)
    assert stats.kstest(q, cdf).pvalue > 1e-3


@pytest.mark.parametrize("dist,cdf,pdf", DISTS, ids=IDS)
def test_pdf_cdf_icdf_are_consistent(dist, cdf, pdf):
    q = np.linspace(0.01, 0.99, 41).astype("float32")
    np.testing.assert_allclose(to_numpy(dist.cdf(q)), cdf(q.astype("float64")), rtol=1e-4,
                               atol=2e-6)
    np.testing.assert_allclose(to_numpy(dist.pdf(q)), pdf(q.astype("float64")), rtol=1e-3,
                               atol=1e-5)
    u = to_numpy(dist.cdf(q))
    ok = (u > 1e-3) & (u < 1 - 1e-3)
    np.testing.assert_allclose(to_numpy(dist.icdf(u[ok])), q[ok], rtol=2e-3, atol=1e-5)
    grid = np.concatenate([np.geomspace(1e-9, 1e-3, 2000), np.linspace(1e-3, 1 - 1e-3, 200_000),
                           1 - np.geomspace(1e-3, 1e-9, 2000)])
    total = np.trapezoid(to_numpy(dist.pdf(grid.astype("float32"))).astype("float64"), grid)
    assert total == pytest.approx(1.0, abs=2e-3)
    assert roundtrip(dist).get_config() == dist.get_config()


def test_sorted_pair_times_are_the_order_statistics_with_their_density():
    sampler = T.SortedPairTimes(T.LogitNormalTime(-2.0, 2.0), seed=0)
    t, s = (to_numpy(v).astype("float64") for v in sampler.sample(40_000))
    assert np.all(s <= t) and s.min() >= 0.006 and t.max() <= 0.994
    q_t, q_s = (t - 0.006) / 0.988, (s - 0.006) / 0.988
    # max of two i.i.d. draws: F_max = F^2; min: 1 - (1 - F)^2.
    f = lambda q: _logit_normal_cdf(q, -2.0, 2.0)  # noqa: E731
    assert stats.kstest(q_t, lambda v: f(v) ** 2).pvalue > 1e-3
    assert stats.kstest(q_s, lambda v: 1 - (1 - f(v)) ** 2).pvalue > 1e-3
    # p(t | s) integrates to 1 over [s, tT].
    for s0 in (0.006, 0.05, 0.3):
        grid = np.linspace(s0, 0.994, 100_001)
        dens = sampler.density(grid.astype("float32"), np.full(grid.shape, s0, "float32"))
        total = np.trapezoid(to_numpy(dens).astype("float64"), grid)
        assert total == pytest.approx(1.0, abs=3e-3)
    back = roundtrip(sampler)
    assert back.get_config() == sampler.get_config() and back.variable_upper_limit


def test_imm_and_facm_weightings():
    t = np.array([0.1, 0.5, 0.9], "float32")
    a, b = 1.0, 4.0
    log_snr = 2 * np.log((1 - t) / t)
    want = 0.5 * special.expit(b - log_snr) * 2 / (t * (1 - t)) * (1 - t) ** a / (
        (1 - t) ** 2 + t ** 2)
    got = to_numpy(W.IMMWeight(a, b)(ops.convert_to_tensor(t)))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(W.SineWeight()(ops.convert_to_tensor(t))),
                               np.sin(np.pi * t / 2), rtol=1e-6)
    for w in (W.IMMWeight(2.0, 5.0), W.SineWeight()):
        assert roundtrip(w).get_config() == w.get_config()


def _changed(a, b):
    da, db = presets.get(a), presets.get(b)
    da.pop("description"), db.pop("description")
    return {k for k in set(da) | set(db) if da.get(k) != db.get(k)}


def test_table_7e_rows_change_weighting_and_time_sampling_only():
    for name, base in (("t7e_imm", "vu_k"), ("t7e_meanflow", "vu_k"), ("t7e_facm", "cu_e")):
        assert _changed(base, name) <= {"weighting", "time_sampler", "importance_weighting"}
        assert presets.time_inputs(name) == presets.time_inputs(base)
        assert presets.paper_fid(name) is not None
    assert presets.paper_fid("t7e_imm") == (3.63, 2.37)
    assert presets.components("t7e_meanflow")["time_sampler"].t_dist.mean == -2.0


def test_fig_7f_table_7h_10_11():
    assert [presets.components(f"f7f_nu{nu:g}")["time_sampler"].s_dist.nu
            for nu in presets.FIG_7F_NUS] == list(presets.FIG_7F_NUS)
    assert presets.network_kind("t7h_ncsnpp") == "ncsnpp"
    assert presets.network_kind("gcm_vu") == "ddpmpp"
    assert "network" not in presets.components("t7h_ncsnpp")
    assert presets.paper_fid("t7h_ncsnpp") == (2.94, 2.22)
    assert [presets.paper_fid(f"t10_{r}") for r in "dmkl"] == [
        (3.02, 2.24), (2.94, 2.15), (2.91, 2.15), (2.86, 2.11)]
    # Table 11 removes / replaces one group of ECT's modules per row.
    assert _changed("t11_a_ect", "t11_b") == {"curriculum"}
    assert _changed("t11_b", "t11_c") == {"step"}
    assert _changed("t11_c", "t11_d") == {"conditioning"}
    assert _changed("t11_d", "t11_e") == {"weighting", "time_sampler", "importance_weighting"}
    assert _changed("t11_e", "t11_f") == {"loss"}
    a = presets.components("t11_a_ect")
    assert type(a["step"]).__name__ == "ECTStep" and a["curriculum"].initial_epsilon == 0.5
    assert a["time_sampler"].t_dist.mean == -1.1 and a["time_sampler"].t_dist.scale == 0.5
