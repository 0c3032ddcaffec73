import itertools

import numpy as np
import pytest

import keras
from keras import ops

from keras_gcm import losses as L
from keras_gcm import schedules
from tests.helpers import loss_and_grads, roundtrip, to_numpy
from tests.models import explicit_draws, make_model


@pytest.mark.parametrize("vu", [False, True], ids=["cu", "vu"])
def test_eq5_eq39_eq40_have_the_same_gradient(vu):
    """Appendix D.1: the three forms differ in value but not in gradient."""
    x, z, t, s = explicit_draws(16, vu=vu)
    base = make_model(vu=vu)
    results = {}
    for form in L.FORMS:
        model = make_model(vu=vu, loss=L.ConsistencyLoss(form=form))
        for v, ref in zip(model.network.trainable_variables, base.network.trainable_variables):
            v.assign(ref.value)
        results[form] = loss_and_grads(
            model.network.trainable_variables,
            lambda m=model: m.compute_consistency_loss(x, training=False, z=z, t=t, s=s)[0],
        )
    (v40, g40), (v39, g39), (v5, g5) = results["eq40"], results["eq39"], results["eq5"]
    assert v40 == pytest.approx(v39, rel=1e-4)
    assert v5 != pytest.approx(v40, rel=1e-2)  # the values differ: 1/(t-s) vs 1/(t-r)
    assert max(np.abs(g).max() for g in g40) > 1e-3
    for a, b, c in zip(g40, g39, g5):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-5)
        np.testing.assert_allclose(a, c, rtol=2e-3, atol=1e-5)


def test_finite_difference_target_approaches_the_analytic_jvp_target():
    model = make_model()
    x, z, t, s = explicit_draws(64)
    x_t = ops.convert_to_tensor((1 - t)[:, None] * x + t[:, None] * z)
    u_t = ops.convert_to_tensor(z - x)
    t_k, s_k = ops.convert_to_tensor(t), ops.convert_to_tensor(s)

    def f(x_in, t_in):
        return model.f(x_in, t_in, s_k)

    _, dfdt = ops.jvp(f, (x_t, t_k), (u_t, ops.ones_like(t_k)))
    analytic = to_numpy(u_t + (s_k - t_k)[:, None] * dfdt)
    errors = []
    for h in (1e-2, 1e-3, 1e-4):
        r = t_k - h
        x_r = x_t + (r - t_k)[:, None] * u_t
        fd = u_t + (s_k - r)[:, None] * (f(x_t, t_k) - f(x_r, r)) / h
        errors.append(np.abs(to_numpy(fd) - analytic).max())
    # First order in h until float32 round-off (~1e-7 / h) takes over.
    assert errors[1] < 0.2 * errors[0], errors
    assert errors[2] < 0.5 * errors[1], errors
    assert errors[2] < 0.01 * np.abs(analytic).max(), errors


def test_continuous_time_loss_is_the_limit_of_the_discrete_loss():
    x, z, t, s = explicit_draws(32)
    common = dict(loss=L.ConsistencyLoss("eq39"), step=schedules.ConstantStep(1e-3))
    discrete = make_model(**common)
    analytic = make_model(jvp="analytic", **common)
    for v, ref in zip(analytic.network.trainable_variables, discrete.network.trainable_variables):
        v.assign(ref.value)
    ld = float(to_numpy(discrete.compute_consistency_loss(x, False, z, t, s)[0]))
    la = float(to_numpy(analytic.compute_consistency_loss(x, False, z, t, s)[0]))
    assert la == pytest.approx(ld, rel=2e-2)


def _random_points(batch, dim=3, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((batch, dim)).astype("float32")
    b = (a + 0.5 * rng.standard_normal((batch, dim))).astype("float32")
    t = rng.uniform(0.1, 0.9, batch).astype("float32")
    s = (t * rng.uniform(0, 0.5, batch)).astype("float32")
    w = rng.uniform(0.5, 2.0, batch).astype("float32")
    return a, b, t, s, w


def _eq46_double_loop(a, b, t, s, c, m, sigma):
    """Eq. 46 written as the paper writes it, with plain loops (DESIGN.md form)."""
    total, groups = 0.0, len(a) // m
    for g in range(groups):
        idx = range(g * m, (g + 1) * m)
        acc = 0.0
        for j, k in itertools.product(idx, idx):
            kappa = 1.0 if sigma is None else np.exp(-(abs(t[j] - t[k]) + abs(s[j] - s[k])) / sigma)
            acc += c[j] * kappa * (2 * np.linalg.norm(a[j] - b[k]) - np.linalg.norm(a[j] - a[k])
                                   - np.linalg.norm(b[j] - b[k]))
        total += acc / (2 * m * m)
    return total / groups


@pytest.mark.parametrize("m,sigma", [(2, 0.1), (4, 0.05), (4, None), (8, 1.0)])
def test_time_aware_mmd_equals_a_double_loop_over_eq46(m, sigma):
    a, b, t, s, w = _random_points(32)
    mmd = L.TimeAwareMMD(group_size=m, sigma=sigma)
    got = float(to_numpy(mmd({"target": b, "t": t, "s": s}, a, sample_weight=w)))
    want = _eq46_double_loop(a.astype("float64"), b.astype("float64"), t, s, w, m, sigma)
    assert got == pytest.approx(want, rel=1e-5)


def test_mmd_with_group_size_one_is_the_plain_loss():
    a, b, t, s, w = _random_points(16)
    y_true = {"target": b, "t": t, "s": s}
    plain = to_numpy(L.ConsistencyLoss()(y_true, a, sample_weight=w))
    mmd = to_numpy(L.TimeAwareMMD(group_size=1, sigma=0.05)(y_true, a, sample_weight=w))
    assert float(mmd) == pytest.approx(float(plain), rel=1e-6)
    np.testing.assert_allclose(
        float(plain), np.mean(w * np.linalg.norm(a - b, axis=1)), rtol=1e-6
    )


def test_mmd_with_infinite_sigma_and_shared_times_is_imms_energy_mmd():
    """Eq. 43 with the energy kernel k(x, y) = -||x - y|| (halved, see docstring)."""
    m = 4
    a, b, _, _, _ = _random_points(16)
    rng = np.random.default_rng(1)
    t = np.repeat(rng.uniform(0.1, 0.9, 4), m).astype("float32")
    s = np.repeat(rng.uniform(0.0, 0.05, 4), m).astype("float32")
    w = np.repeat(rng.uniform(0.5, 2.0, 4), m).astype("float32")
    y_true = {"target": b, "t": t, "s": s}
    got = float(to_numpy(L.TimeAwareMMD(m, sigma=None)(y_true, a, sample_weight=w)))
    # Shared times: the kernel weight is 1 whatever sigma is.
    shared = float(to_numpy(L.TimeAwareMMD(m, sigma=0.01)(y_true, a, sample_weight=w)))
    imm = 0.0
    for g in range(4):
        ag, bg = a[g * m:(g + 1) * m].astype("float64"), b[g * m:(g + 1) * m].astype("float64")
        k = lambda p, q: -np.linalg.norm(p[:, None] - q[None], axis=-1)  # noqa: E731
        imm += w[g * m] / m**2 * (k(ag, ag) + k(bg, bg) - 2 * k(ag, bg)).sum()
    imm /= 4
    assert got == pytest.approx(imm / 2, rel=1e-5)
    assert shared == pytest.approx(got, rel=1e-6)


def test_mmd_gradient_is_finite_at_coincident_points():
    # ||a_j - a_j|| = 0 on the diagonal: the safe norm keeps the gradient finite.
    model = make_model(loss=L.TimeAwareMMD(4, 0.05))
    x, z, t, s = explicit_draws(8)
    value, grads = loss_and_grads(
        model.network.trainable_variables,
        lambda: model.compute_consistency_loss(x, False, z, t, s)[0],
    )
    assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)


def test_model_with_mmd_group_one_equals_the_particle_model():
    x, z, t, s = explicit_draws(8)
    a = make_model(loss=L.ConsistencyLoss())
    la = float(to_numpy(a.compute_consistency_loss(x, False, z, t, s)[0]))
    # With the kernel at t for both points (or sigma = inf) a group of one is
    # the particle loss; with Eq. 44's teacher time r (the default) its one
    # student-teacher pair is weighted exp(-(t - r) / sigma).
    for loss in (L.TimeAwareMMD(1, 0.05, kernel_times="t"), L.TimeAwareMMD(1, None)):
        b = make_model(loss=loss)
        for v, ref in zip(b.network.trainable_variables, a.network.trainable_variables):
            v.assign(ref.value)
        lb = float(to_numpy(b.compute_consistency_loss(x, False, z, t, s)[0]))
        # The MMD's points are Eq. 40's, the particle default is Eq. 39: equal up
        # to Eq. 40's float32 rounding (about 1e-5 here, see test_choices.py).
        assert lb == pytest.approx(la, rel=1e-4)
    b = make_model(loss=L.TimeAwareMMD(1, 0.05))
    assert b.consistency_loss.kernel_times == "r"
    lb = float(to_numpy(b.compute_consistency_loss(x, False, z, t, s)[0]))
    r = np.maximum(t - to_numpy(a.step(t)), s)
    per_sample = [float(to_numpy(a.compute_consistency_loss(x[i:i + 1], False, z[i:i + 1],
                                                              t[i:i + 1], s[i:i + 1])[0]))
                  for i in range(len(x))]
    assert lb == pytest.approx(np.mean(np.exp(-(t - r) / 0.05) * per_sample), rel=1e-4)
    assert lb < la * np.exp(-(t - r).min() / 0.05) * 1.001  # strictly down-weighted


def test_zero_length_step_gets_zero_weight_not_nan():
    # t = s: r = s = t, so t - r = 0; the sample must not produce NaN.
    model = make_model(loss=L.ConsistencyLoss())
    x, z, _, s = explicit_draws(4)
    t = s.copy()
    value, grads = loss_and_grads(
        model.network.trainable_variables,
        lambda: model.compute_consistency_loss(x, False, z, t, s)[0],
    )
    assert value == 0.0 and all(np.all(np.isfinite(g)) for g in grads)


def test_loss_configs_roundtrip_and_validation():
    for loss in (L.ConsistencyLoss("eq5"), L.TimeAwareMMD(2, None, shared_time=True)):
        copy = roundtrip(loss)
        assert copy.get_config() == loss.get_config()
    with pytest.raises(ValueError, match="form"):
        L.ConsistencyLoss("eq41")
    with pytest.raises(ValueError, match="form"):
        L.TimeAwareMMD(form="eq39")
    with pytest.raises(ValueError, match="group_size"):
        L.TimeAwareMMD(group_size=0)
