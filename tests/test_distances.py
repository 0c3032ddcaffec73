"""Tests for `keras_gcm.metrics.distances` (NumPy only; backend-independent)."""

import numpy as np
import pytest
import scipy.stats

from keras_gcm.metrics.distances import energy_distance
from keras_gcm.metrics.distances import sliced_wasserstein2


def _brute_force_energy(x, y, unbiased=True):
    """O(n^2) reference: explicit pairwise differences, no blocking."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    n, m = len(x), len(y)
    dxy = np.linalg.norm(x[:, None, :] - y[None, :, :], axis=-1)
    dxx = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=-1)
    dyy = np.linalg.norm(y[:, None, :] - y[None, :, :], axis=-1)
    if unbiased:
        return (
            2 * dxy.mean()
            - dxx.sum() / (n * (n - 1))
            - dyy.sum() / (m * (m - 1))
        )
    return 2 * dxy.mean() - dxx.mean() - dyy.mean()


# ----------------------------------------------------------------------------
# Energy distance.


def test_energy_distance_matches_scipy_in_1d():
    # scipy.stats.energy_distance(u, v) = sqrt(2 int (F_n - G_m)^2), and
    # 2 int (F_n - G_m)^2 = 2 E|X-Y| - E|X-X'| - E|Y-Y'| under the empirical
    # distributions (V-statistics, i = i' pairs included with weight 1/n^2).
    # Writing S_xx = sum_{i != i'} |x_i - x_i'| and A = S_xx / (n (n - 1)):
    # S_xx / n^2 = A (n - 1) / n = A - A / n, hence
    #   ours (U-statistics) = scipy^2 - A / n - B / m.
    rng = np.random.default_rng(0)
    u = rng.normal(size=137)
    v = 1.5 * rng.normal(size=91) + 0.4
    scipy_value = scipy.stats.energy_distance(u, v)
    np.testing.assert_allclose(
        energy_distance(u, v, unbiased=False), scipy_value**2, rtol=1e-10
    )
    mean_xx = np.abs(u[:, None] - u[None, :]).sum() / (137 * 136)
    mean_yy = np.abs(v[:, None] - v[None, :]).sum() / (91 * 90)
    np.testing.assert_allclose(
        energy_distance(u, v),
        scipy_value**2 - mean_xx / 137 - mean_yy / 91,
        rtol=1e-10,
    )
    # 1-D input and an explicit (n, 1) column are the same samples.
    np.testing.assert_allclose(
        energy_distance(u[:, None], v[:, None]), energy_distance(u, v)
    )


@pytest.mark.parametrize("dim", [2, 7])  # both distance code paths
@pytest.mark.parametrize("chunk_size", [1, 13, 1024])
def test_energy_distance_matches_brute_force(dim, chunk_size):
    rng = np.random.default_rng(dim)
    x = rng.normal(size=(70, dim)) + 3.0  # off-centre: tests the centring
    y = rng.standard_t(df=3, size=(53, dim))
    for unbiased in (True, False):
        np.testing.assert_allclose(
            energy_distance(x, y, chunk_size=chunk_size, unbiased=unbiased),
            _brute_force_energy(x, y, unbiased=unbiased),
            rtol=1e-10,
        )


def test_energy_distance_flattens_images():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(20, 4, 4, 3))
    y = rng.uniform(size=(25, 4, 4, 3)) ** 2
    np.testing.assert_allclose(
        energy_distance(x, y, chunk_size=8),
        _brute_force_energy(x.reshape(20, -1), y.reshape(25, -1)),
        rtol=1e-10,
    )


def test_energy_distance_same_vs_shifted_distribution():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3000, 2))
    y = rng.normal(size=(3000, 2))
    same = energy_distance(x, y)
    # Population value for N(0, I) vs N(mu, I) with |mu| = 0.5 in 2-D is
    # 2 E|Z + mu| - 2 E|Z| with Z ~ N(0, 2I): 0.1095 (Monte-Carlo, 4e6).
    shifted = energy_distance(x, y + np.array([0.5, 0.0]))
    assert abs(same) < 0.005
    np.testing.assert_allclose(shifted, 0.1095, rtol=0.25)
    assert shifted > 20 * abs(same)
    # Identical samples: 2 E||X-Y|| (V) - E(U) - E(U) is negative, zero with V.
    assert energy_distance(x[:200], x[:200], unbiased=False) == pytest.approx(
        0.0, abs=1e-12
    )


def test_energy_distance_is_symmetric_and_translation_invariant():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 3))
    y = rng.exponential(size=(60, 3))
    d_xy = energy_distance(x, y, chunk_size=16)
    np.testing.assert_allclose(d_xy, energy_distance(y, x, chunk_size=16))
    shift = np.array([10.0, -4.0, 2.5])
    np.testing.assert_allclose(
        d_xy, energy_distance(x + shift, y + shift), rtol=1e-10
    )
    # Scaling both samples by c scales the energy distance by c.
    np.testing.assert_allclose(
        energy_distance(2.0 * x, 2.0 * y), 2.0 * d_xy, rtol=1e-10
    )


# ----------------------------------------------------------------------------
# Sliced Wasserstein-2.


def test_sliced_wasserstein2_is_exact_w2_in_1d():
    rng = np.random.default_rng(4)
    u = rng.normal(size=500)
    v = rng.gamma(2.0, size=500)
    expected = np.sqrt(np.mean((np.sort(u) - np.sort(v)) ** 2))
    np.testing.assert_allclose(
        sliced_wasserstein2(u, v, num_projections=3), expected, rtol=1e-12
    )


def test_sliced_wasserstein2_unequal_sizes_by_replication():
    # With n = 6 and m = 4, repeating every x 2 times and every y 3 times
    # gives equal-size samples (12 each) with the same empirical
    # distributions, whose W2 is the sorted-samples formula.
    rng = np.random.default_rng(5)
    u = rng.normal(size=6)
    v = rng.normal(size=4) + 0.7
    expected = np.sqrt(
        np.mean((np.sort(np.repeat(u, 2)) - np.sort(np.repeat(v, 3))) ** 2)
    )
    np.testing.assert_allclose(sliced_wasserstein2(u, v), expected, rtol=1e-12)
    # Coprime sizes (7 and 5 -> 35) in 3-D, compared direction by direction
    # through the same seed.
    x = rng.normal(size=(7, 3))
    y = rng.normal(size=(5, 3))
    np.testing.assert_allclose(
        sliced_wasserstein2(x, y, num_projections=16, seed=9),
        sliced_wasserstein2(
            np.repeat(x, 5, axis=0),
            np.repeat(y, 7, axis=0),
            num_projections=16,
            seed=9,
        ),
        rtol=1e-12,
    )


@pytest.mark.parametrize("dim", [2, 5])
def test_sliced_wasserstein2_gaussian_mean_shift_closed_form(dim):
    # N(0, I) vs N(mu, I): each projection is a shift by <theta, mu>, so
    # SW2^2 = E[<theta, mu>^2] = |mu|^2 / d.
    rng = np.random.default_rng(6)
    mu = rng.normal(size=dim)
    mu *= 2.0 / np.linalg.norm(mu)
    x = rng.normal(size=(4000, dim))
    y = rng.normal(size=(3000, dim)) + mu
    got = sliced_wasserstein2(x, y, num_projections=4096)
    expected = np.sqrt(4.0 / dim)
    np.testing.assert_allclose(got, expected, rtol=0.03)


def test_sliced_wasserstein2_properties():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 4))
    y = rng.uniform(size=(200, 4))
    np.testing.assert_allclose(
        sliced_wasserstein2(x, y, seed=3), sliced_wasserstein2(y, x, seed=3)
    )
    assert sliced_wasserstein2(x, x) == 0.0
    # Deterministic for a seed, different for another seed.
    assert sliced_wasserstein2(x, y, seed=3) == sliced_wasserstein2(
        x, y, seed=3
    )
    assert sliced_wasserstein2(x, y, seed=3) != sliced_wasserstein2(
        x, y, seed=4
    )
    # Same samples of one distribution: small; shifted: much larger.
    a = rng.normal(size=(2000, 2))
    b = rng.normal(size=(2000, 2))
    assert sliced_wasserstein2(a, b) < 0.1
    assert sliced_wasserstein2(a, b + 1.0) > 0.8


# ----------------------------------------------------------------------------
# Input validation.


@pytest.mark.parametrize("fn", [energy_distance, sliced_wasserstein2])
def test_invalid_inputs_raise(fn):
    good = np.zeros((5, 2))
    with pytest.raises(ValueError, match="same size"):
        fn(good, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        fn(good, np.array([[0.0, np.nan]] * 5))
    with pytest.raises(ValueError, match="NaN or infinite"):
        fn(np.array([[np.inf, 0.0]] * 5), good)
    with pytest.raises(ValueError, match="scalar"):
        fn(np.float64(1.0), good)
    with pytest.raises(ValueError, match="at least"):
        fn(np.zeros((0, 2)), good)
    with pytest.raises(ValueError, match="numeric"):
        fn(np.array([["a", "b"]] * 5), good)


def test_invalid_arguments_raise():
    x = np.zeros((5, 2))
    with pytest.raises(ValueError, match="at least 2"):
        energy_distance(np.zeros((1, 2)), x)
    with pytest.raises(ValueError, match="chunk_size"):
        energy_distance(x, x, chunk_size=0)
    with pytest.raises(ValueError, match="chunk_size"):
        energy_distance(x, x, chunk_size=2.5)
    with pytest.raises(ValueError, match="num_projections"):
        sliced_wasserstein2(x, x, num_projections=0)
