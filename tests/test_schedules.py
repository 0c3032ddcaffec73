import math

import numpy as np
import pytest
from scipy.integrate import quad

from keras_gcm import schedules as S
from tests.helpers import roundtrip, to_numpy

BASELINE = 0.005 / 3


def _edm(t, eps):  # Eq. 27 with A = -eps, rho = 7, sigma_d = 0.5
    sig = 0.5 * np.tan(np.pi * t / 2)
    return 2 / np.pi * np.arctan((sig ** (1 / 7) + eps) ** 7 / 0.5) - t


def _ect(t, eps):  # Eq. 28
    tan = np.tan(np.pi * t / 2)
    return t - 2 / np.pi * np.arctan(tan * (1 - eps * (1 + 8 / (1 + np.exp(0.5 * tan)))))


# (layer, appendix-C formula in numpy)
FORMULAS = [
    (S.ConstantStep, lambda t, e: e + 0 * t),                        # Eq. 26
    (S.LinearDecreasingStep, lambda t, e: e * (1 - t)),              # Eq. 30
    (S.QuadraticDecreasingStep, lambda t, e: e * (1 - t) ** 2),      # Eq. 31
    (S.CubicDecreasingStep, lambda t, e: e * (1 - t) ** 3),          # Eq. 32
    (S.QuadraticIncreasingStep, lambda t, e: e * t**2),              # Eq. 33
    (S.QuadraticConcaveStep, lambda t, e: e * t * (1 - t)),          # Eq. 34
    (S.QuadraticConvexStep, lambda t, e: e * (0.5 - t) ** 2),        # Eq. 35
    (S.ExponentialStep, lambda t, e: e * np.exp(-3.5 * t)),          # Eq. 36
    (S.EDMStep, _edm),                                               # Eq. 27
    (S.ECTStep, _ect),                                               # Eq. 28
    (S.IMMStep, lambda t, e: e * (1 - t) ** 2 / (1 - e * (1 - t))),  # Eq. 29
]


@pytest.mark.parametrize("cls,formula", FORMULAS, ids=[c.__name__ for c, _ in FORMULAS])
def test_step_matches_appendix_c_formula(cls, formula):
    layer = cls()
    t = np.linspace(0.006, 0.994, 41).astype("float32")
    expected = formula(t.astype("float64"), layer.epsilon)
    got = to_numpy(layer(t))
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=2e-7)
    assert np.all(got >= 0)
    # An explicit epsilon replaces the default (used by the curriculum).
    np.testing.assert_allclose(
        to_numpy(layer(t, epsilon=2 * layer.epsilon)),
        formula(t.astype("float64"), 2 * layer.epsilon), rtol=5e-3, atol=2e-7,
    )
    assert layer.equation is not None


@pytest.mark.parametrize("cls,formula", FORMULAS, ids=[c.__name__ for c, _ in FORMULAS])
def test_default_epsilon_gives_the_baseline_integral(cls, formula):
    layer = cls()
    integral = quad(lambda t: formula(t, layer.epsilon), 0.0, 1.0, limit=200)[0]
    if cls is S.ExponentialStep:
        # The paper's default 0.005 exp(-3.5 t) keeps eps = 0.005 (appendix C.3).
        assert layer.epsilon == 0.005 and layer.mu == 3.5
        assert integral == pytest.approx(0.005 * (1 - math.exp(-3.5)) / 3.5, rel=1e-9)
    else:
        assert integral == pytest.approx(BASELINE, rel=1e-6)


def test_edm_step_is_bell_shaped_and_matches_num_steps():
    t = np.linspace(0.0, 1.0, 201).astype("float32")
    h = to_numpy(S.EDMStep()(t))
    peak = int(np.argmax(h))
    assert 40 < peak < 160
    assert np.all(np.diff(h[: peak - 2]) > 0) and np.all(np.diff(h[peak + 2:]) < 0)
    n = 18
    layer = S.EDMStep.from_num_steps(n)
    # sigma_i of Eq. 23 mapped by Eq. 24: h(t_i) = t_{i-1} - t_i, the forward gap.
    i = np.arange(n)
    sig = (80 ** (1 / 7) + i / (n - 1) * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    ts = 2 / np.pi * np.arctan(sig / 0.5)
    np.testing.assert_allclose(to_numpy(layer(ts[1:].astype("float32"))), ts[:-1] - ts[1:], rtol=1e-3)


def test_exponential_conditioning_makes_the_perceived_step_constant():
    # Eq. 9: c'(t) h(t) is constant for h = eps exp(-mu t), c = (exp(mu t) - 1)/mu.
    step, cond = S.ExponentialStep(0.005, 3.5), S.ExponentialTime(3.5)
    t = np.linspace(0.05, 0.99, 30).astype("float32")
    gap = to_numpy(cond(t)) - to_numpy(cond(t - to_numpy(step(t))))
    # Constant up to the O(mu h / 2) error of the continuous limit.
    np.testing.assert_allclose(gap, 0.005, rtol=1e-2)
    # c(t) / t -> 1 as t -> 0 (appendix C.4).
    assert to_numpy(cond(np.float32([1e-4])))[0] / 1e-4 == pytest.approx(1.0, abs=1e-3)


def test_time_conditionings():
    t = np.linspace(0, 1, 11).astype("float32")
    np.testing.assert_allclose(to_numpy(S.IdentityTime()(t)), t)
    np.testing.assert_allclose(to_numpy(S.LinearTime(1000)(t)), 1000 * t, rtol=1e-6)
    np.testing.assert_allclose(to_numpy(S.ExponentialTime(3.5)(t)), np.expm1(3.5 * t) / 3.5, rtol=1e-6)


def test_curriculum_halves_epsilon_down_to_the_final_value():
    # floor=True (the previous default): never below the step's epsilon.
    cur = S.EpsilonHalvingCurriculum(initial_epsilon=0.5, halve_every=100, floor=True)
    steps = [0, 99, 100, 250, 10_000]
    got = [float(to_numpy(cur.epsilon(s, 0.005))) for s in steps]
    assert got == pytest.approx([0.5, 0.5, 0.25, 0.125, 0.005])
    # Default (appendix G.1): keeps halving, 0.5 / 2^100 at step 10_000.
    plain = S.EpsilonHalvingCurriculum(initial_epsilon=0.5, halve_every=100)
    got = [float(to_numpy(plain.epsilon(s, 0.005))) for s in steps]
    assert got == pytest.approx([0.5, 0.5, 0.25, 0.125, 0.5 * 0.5 ** 100])


@pytest.mark.parametrize(
    "layer",
    [c() for c, _ in FORMULAS]
    + [S.ExponentialStep(0.01, 2.0), S.LinearTime(10), S.ExponentialTime(2.0),
       S.IdentityTime(), S.EpsilonHalvingCurriculum(0.3, 7)],
    ids=lambda layer: type(layer).__name__,
)
def test_config_roundtrip(layer):
    copy = roundtrip(layer)
    assert type(copy) is type(layer)
    assert copy.get_config() == layer.get_config()


def test_invalid_arguments():
    with pytest.raises(ValueError, match="epsilon"):
        S.ConstantStep(epsilon=0.0)
    with pytest.raises(ValueError, match="mu"):
        S.ExponentialStep(mu=-1.0)
    with pytest.raises(ValueError, match="halve_every"):
        S.EpsilonHalvingCurriculum(0.5, 0)
