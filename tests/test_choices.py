"""The choices the paper leaves open: each option's mathematics and round trip.

See the docs page "Choices the paper leaves open" and `benchmarks/choices.py`
for the measurements behind the defaults.
"""

import itertools
import math

import numpy as np
import pytest
from scipy.integrate import quad

import keras
from keras import ops

import keras_gcm
from keras_gcm import ConsistencyModel, interpolants, losses as L, samplers
from keras_gcm import schedules, time_sampling as TS, weighting
from tests.helpers import roundtrip, to_numpy

SIGMA_D = 0.5


class InputRecorder(keras.layers.Layer):
    """F(x, c) = 0 * x that records the std of every input x it sees (eager only)."""

    time_inputs = 1

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inputs_seen = []
        self.scale = self.add_weight(shape=(), initializer="zeros", name="scale")

    def call(self, x, c_t, training=None):
        try:
            self.inputs_seen.append(to_numpy(x))
        except Exception:  # symbolic build
            pass
        return x * self.scale


# ------------------------------------------------------------ 1. noise scale
@pytest.mark.parametrize("t", [0.006, 0.3, 0.5, 0.8, 0.994])
def test_default_noise_scale_gives_unit_variance_network_input_and_target(t):
    """Section 3.1: with z ~ N(0, sigma_d^2 I), c_in x_t and u_t / c_out have unit std."""
    net = InputRecorder()
    model = ConsistencyModel(net, seed=0, loss=L.ConsistencyLoss())
    assert model.interpolant.noise_scale == "sigma_data"
    n, dim = 4096, 8
    x = (SIGMA_D * np.random.default_rng(0).standard_normal((n, dim))).astype("float32")
    model.build((None, dim))
    net.inputs_seen.clear()
    model.compute_consistency_loss(x, training=False, t=np.full(n, t, "float32"))
    x_in = net.inputs_seen[0]  # the student's input c_in(t) x_t
    assert x_in.std() == pytest.approx(1.0, abs=0.03)
    flow = model.interpolant
    c_in = float(to_numpy(flow.c_in(ops.convert_to_tensor(t))))
    c_out = float(to_numpy(flow.c_out(ops.convert_to_tensor(t))))
    x_t = x_in / c_in
    z = (x_t - (1.0 - t) * x) / t
    assert z.std() == pytest.approx(SIGMA_D, rel=0.03)
    u_t = z - x
    assert (u_t / c_out).std() == pytest.approx(1.0, abs=0.03)


def test_unit_noise_scale_keeps_the_previous_behaviour():
    net = InputRecorder()
    flow = interpolants.OTFlow(noise_scale="unit")
    model = ConsistencyModel(net, interpolant=flow, seed=0, loss=L.ConsistencyLoss())
    n, t = 4096, 0.994
    x = (SIGMA_D * np.random.default_rng(0).standard_normal((n, 4))).astype("float32")
    model.build((None, 4))
    net.inputs_seen.clear()
    model.compute_consistency_loss(x, training=False, t=np.full(n, t, "float32"))
    # std of c_in x_t with z ~ N(0, I): sqrt(t^2 + (1-t)^2 sigma_d^2) / (sigma_d sqrt(t^2 + (1-t)^2))
    want = math.sqrt(t**2 + (1 - t) ** 2 * SIGMA_D**2) / (SIGMA_D * math.sqrt(t**2 + (1 - t) ** 2))
    assert net.inputs_seen[0].std() == pytest.approx(want, rel=0.03)
    assert want > 1.9


@pytest.mark.parametrize("noise_scale,std", [("sigma_data", SIGMA_D), ("unit", 1.0)])
def test_sampler_prior_follows_the_noise_scale(noise_scale, std):
    """With F = 0, g(x, tT, t0) = x: one-step samples are the prior sigma(tT) z."""
    flow = interpolants.OTFlow(noise_scale=noise_scale)
    model = ConsistencyModel(InputRecorder(), interpolant=flow, seed=0,
                             loss=L.ConsistencyLoss())
    model.build((None, 4))
    samples = samplers.one_step(model, 4000, seed=0)
    assert samples.std() == pytest.approx(0.994 * std, rel=0.03)
    direct = to_numpy(model(np.random.default_rng(1).standard_normal((4000, 4)).astype("float32")))
    assert direct.std() == pytest.approx(0.994 * std, rel=0.03)


# ------------------------------------------------- 2. VU importance weighting
def _sine_vu(importance_density):
    return TS.VariableUpperLimit(TS.UniformPowerTime(4.0), TS.SineTime(), seed=0,
                                 importance_density=importance_density)


@pytest.mark.parametrize("importance_density", ["conditional", "unit"])
def test_vu_importance_weight_keeps_the_right_effective_weight(importance_density):
    """E_q[w(t) / density] over sine draws, per s: J's effective weight (unit) or
    the integral of w over [s, tT] (conditional, p(t | s))."""
    sampler = _sine_vu(importance_density)
    w = weighting.GammaWeight(1.0, 6.0)
    sine = sampler.t_dist
    tT = sampler.tT
    for s in (0.006, 0.2, 0.5):
        # Stratified draws u_i = (i + 1/2) / n through the inverse CDF: the
        # sample mean is E_q[.] without Monte Carlo noise, on every backend.
        u = ((np.arange(200_000) + 0.5) / 200_000).astype("float32")
        q = to_numpy(sine.icdf(ops.convert_to_tensor(u))).astype("float64")
        t = s + (tT - s) * q
        dens = to_numpy(sampler.density(ops.convert_to_tensor(t, "float32"),
                                        ops.convert_to_tensor(np.full_like(t, s), "float32")))
        ratio = to_numpy(w(ops.convert_to_tensor(t, "float32"))) / dens
        integral_q = quad(lambda u: (s + (tT - s) * u) * math.exp(-6 * (s + (tT - s) * u)), 0, 1)[0]
        want = integral_q if importance_density == "unit" else integral_q * (tT - s)
        assert ratio.mean() == pytest.approx(want, rel=2e-3)


def test_vu_importance_densities_differ_by_the_interval_width():
    t = ops.convert_to_tensor([0.5, 0.9], "float32")
    s = ops.convert_to_tensor([0.1, 0.3], "float32")
    cond = to_numpy(_sine_vu("conditional").density(t, s))
    unit = to_numpy(_sine_vu("unit").density(t, s))
    np.testing.assert_allclose(cond * (0.994 - to_numpy(s)), unit, rtol=1e-6)
    with pytest.raises(ValueError, match="importance_density"):
        _sine_vu("marginal")


# ---------------------------------------------------- 3. particle-loss form
def _near_tT_batch(n=256, dim=3072, seed=0):
    """Images-sized samples near tT, where Eq. 40 loses float32 precision."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.95, 0.994, n)
    h = 0.005 * np.exp(-3.5 * t)
    r, s = t - h, np.full(n, 0.006)
    x = 0.5 * rng.standard_normal((n, dim))
    z = 0.5 * rng.standard_normal((n, dim))
    x_t = (1 - t)[:, None] * x + t[:, None] * z
    u_t = z - x
    x_r = x_t - h[:, None] * u_t
    f_t = u_t + 0.3 * rng.standard_normal((n, dim))
    f_r = f_t + 1e-3 * rng.standard_normal((n, dim))
    return x_t, x_r, u_t, f_t, f_r, t, r, s


def _per_sample(form, arrays, dtype):
    x_t, x_r, u_t, f_t, f_r, t, r, s = (ops.convert_to_tensor(a, dtype) for a in arrays)
    loss = L.ConsistencyLoss(form=form, dtype=dtype)
    y_pred, target, scale = loss.terms(x_t, x_r, u_t, f_t, f_r, t, r, s)
    return to_numpy(loss.call({"target": target}, y_pred) * scale).astype("float64")


def test_default_particle_form_is_eq39_and_keeps_float32_precision():
    assert L.ConsistencyLoss().form == "eq39"
    assert keras_gcm.presets.get("cu_a_baseline")["loss"] == ["ConsistencyLoss", {"form": "eq39"}]
    # The values a float32 model holds; the reference is their common value
    # (Eq. 39 = Eq. 40) computed in float64.
    arrays = [a.astype("float32").astype("float64") for a in _near_tT_batch()]
    x_t, x_r, u_t, f_t, f_r, t, r, s = arrays
    ref = np.linalg.norm(u_t - f_t + ((s - r) / (t - r))[:, None] * (f_t - f_r), axis=1)
    err39 = np.abs(_per_sample("eq39", arrays, "float32") / ref - 1).max()
    err40 = np.abs(_per_sample("eq40", arrays, "float32") / ref - 1).max()
    assert err39 < 2e-6
    assert err40 > 10 * err39  # the reason G.1 implements Eq. 39
    # Eq. 40 has the same value in float64 (numpy: JAX has no float64 by default).
    x_r_exact = x_t + (r - t)[:, None] * u_t
    eq40 = np.linalg.norm(
        x_t + (r - t)[:, None] * f_t + (s - r)[:, None] * f_t
        - (x_r_exact + (s - r)[:, None] * f_r), axis=1) / (t - r)
    np.testing.assert_allclose(eq40, ref, rtol=1e-7)


# ------------------------------------------------------- 4. MMD kernel times
def _eq45_double_loop(a, b, t, r, s, c, m, sigma):
    """Eq. 44-45 with the teacher points at their teacher times r."""
    def kappa(u, v, j, k):
        return math.exp(-(abs(u[j] - v[k]) + abs(s[j] - s[k])) / sigma)

    total, groups = 0.0, len(a) // m
    for g in range(groups):
        idx = range(g * m, (g + 1) * m)
        acc = 0.0
        for j, k in itertools.product(idx, idx):
            acc += c[j] * (2 * np.linalg.norm(a[j] - b[k]) * kappa(t, r, j, k)
                           - np.linalg.norm(a[j] - a[k]) * kappa(t, t, j, k)
                           - np.linalg.norm(b[j] - b[k]) * kappa(r, r, j, k))
        total += acc / (2 * m * m)
    return total / groups


@pytest.mark.parametrize("m,sigma", [(2, 0.1), (4, 0.05)])
def test_mmd_with_teacher_times_equals_a_double_loop_over_eq45(m, sigma):
    rng = np.random.default_rng(0)
    n = 16
    a = rng.standard_normal((n, 3)).astype("float32")
    b = (a + 0.5 * rng.standard_normal((n, 3))).astype("float32")
    t = rng.uniform(0.1, 0.9, n).astype("float32")
    s = (t * rng.uniform(0, 0.5, n)).astype("float32")
    r = np.maximum(t - rng.uniform(0.0, 0.05, n), s).astype("float32")
    w = rng.uniform(0.5, 2.0, n).astype("float32")
    y_true = {"target": b, "t": t, "s": s, "r": r}
    got = float(to_numpy(L.TimeAwareMMD(m, sigma, kernel_times="r")(y_true, a, sample_weight=w)))
    want = _eq45_double_loop(a.astype("float64"), b.astype("float64"), t, r, s, w, m, sigma)
    assert got == pytest.approx(want, rel=1e-5)
    # With r = t both readings agree; with r != t they differ.
    same = dict(y_true, r=t)
    assert float(to_numpy(L.TimeAwareMMD(m, sigma, kernel_times="r")(same, a, sample_weight=w))) == \
        pytest.approx(float(to_numpy(L.TimeAwareMMD(m, sigma, kernel_times="t")(same, a,
                                                                                sample_weight=w))),
                      rel=1e-6)
    assert float(to_numpy(L.TimeAwareMMD(m, sigma, kernel_times="t")(y_true, a, sample_weight=w))) \
        != pytest.approx(got, rel=1e-4)
    with pytest.raises(ValueError, match="kernel_times"):
        L.TimeAwareMMD(m, sigma, kernel_times="s")
    # Default: Eq. 44 (teacher points at r); without r the teacher times are t.
    assert L.TimeAwareMMD(m, sigma).kernel_times == "r"
    no_r = {"target": b, "t": t, "s": s}
    assert float(to_numpy(L.TimeAwareMMD(m, sigma)(no_r, a, sample_weight=w))) == pytest.approx(
        float(to_numpy(L.TimeAwareMMD(m, sigma, kernel_times="t")(y_true, a, sample_weight=w))),
        rel=1e-6)


def test_model_passes_teacher_times_to_the_mmd():
    from tests.models import explicit_draws, make_model

    x, z, t, s = explicit_draws(8)
    a = make_model(loss=L.TimeAwareMMD(4, 0.05, kernel_times="r"))
    b = make_model(loss=L.TimeAwareMMD(4, 0.05, kernel_times="t"))
    la = float(to_numpy(a.compute_consistency_loss(x, False, z, t, s)[0]))
    lb = float(to_numpy(b.compute_consistency_loss(x, False, z, t, s)[0]))
    assert np.isfinite(la) and la != pytest.approx(lb, rel=1e-7)


# ----------------------------------------------------- 5. the curriculum
def test_curriculum_halves_without_a_floor_as_appendix_g1():
    c = schedules.EpsilonHalvingCurriculum(0.5, 50_000)
    eps = [float(to_numpy(c.epsilon(n, 0.005))) for n in (0, 49_999, 50_000, 349_999, 350_000,
                                                           399_999)]
    assert eps == pytest.approx([0.5, 0.5, 0.25, 0.0078125, 0.00390625, 0.00390625])
    floored = schedules.EpsilonHalvingCurriculum(0.5, 50_000, floor=True)
    assert float(to_numpy(floored.epsilon(399_999, 0.005))) == pytest.approx(0.005)
    assert float(to_numpy(floored.epsilon(100_000, 0.005))) == pytest.approx(0.125)


def test_docstring_numbers():
    c1 = float(to_numpy(schedules.ExponentialTime(3.5)(ops.convert_to_tensor([1.0])))[0])
    assert c1 == pytest.approx(9.1758, abs=1e-4)
    pdf = to_numpy(TS.SineTime(1.0, 0.01).pdf(ops.convert_to_tensor([0.0, 1.0])))
    np.testing.assert_allclose(pdf, [0.02443, 1.5553], atol=1e-4)
    assert "9.1758" in schedules.ExponentialTime.__doc__
    assert "0.02443, 1.5553" in TS.SineTime.__doc__


# ----------------------------------------------------------- round trips
def test_every_option_round_trips_through_get_config():
    objects = [
        interpolants.OTFlow(noise_scale="unit"),
        TS.VariableUpperLimit(importance_density="unit"),
        L.TimeAwareMMD(2, 0.1, kernel_times="r"),
        L.ConsistencyLoss(form="eq40"),
        schedules.EpsilonHalvingCurriculum(0.5, 100, floor=True),
    ]
    for obj in objects:
        back = roundtrip(obj)
        assert back.get_config() == obj.get_config()
    with pytest.raises(ValueError, match="noise_scale"):
        interpolants.OTFlow(noise_scale="data")
    net = keras_gcm.networks.MLP(hidden_units=8, num_blocks=1, time_inputs=2)
    model = ConsistencyModel(
        net, interpolant=interpolants.OTFlow(noise_scale="unit"),
        time_sampler=TS.VariableUpperLimit(importance_density="unit"),
        loss=L.TimeAwareMMD(2, 0.1, kernel_times="r"),
        curriculum=schedules.EpsilonHalvingCurriculum(floor=True),
    )
    back = ConsistencyModel.from_config(model.get_config())
    assert back.interpolant.noise_scale == "unit"
    assert back.time_sampler.importance_density == "unit"
    assert back.consistency_loss.kernel_times == "r"
    assert back.curriculum.floor is True
