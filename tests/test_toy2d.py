"""Tests for `keras_gcm.data.toy2d` (NumPy only; backend-independent)."""

import numpy as np
import pytest

from keras_gcm.data.toy2d import TOY2D_NAMES
from keras_gcm.data.toy2d import toy2d

N = 4000


def _wrap(angle, period=2.0 * np.pi):
    """Wraps angles to [-period / 2, period / 2)."""
    return (angle + period / 2) % period - period / 2


@pytest.mark.parametrize("name", TOY2D_NAMES)
def test_shape_dtype_and_scale(name):
    points = toy2d(name, N, seed=0)
    assert points.shape == (N, 2)
    assert points.dtype == np.float32
    assert np.all(np.isfinite(points))
    # sigma_data = 0.5: every coordinate's std in a band around it, data
    # roughly centred and roughly inside [-1, 1]^2.
    std = points.std(axis=0)
    assert np.all(std > 0.3) and np.all(std < 0.65), std
    assert np.all(np.abs(points.mean(axis=0)) < 0.2)
    assert np.mean(np.abs(points) > 1.0) < 0.05
    assert np.max(np.abs(points)) < 1.6


@pytest.mark.parametrize("name", TOY2D_NAMES)
def test_determinism_and_seed_dependence(name):
    np.testing.assert_array_equal(
        toy2d(name, 100, seed=3), toy2d(name, 100, seed=3)
    )
    assert not np.allclose(toy2d(name, 100, seed=3), toy2d(name, 100, seed=4))
    assert not np.allclose(toy2d(name, 100), toy2d(name, 100))
    assert toy2d(name, 1, seed=0).shape == (1, 2)


def test_names_cover_the_required_sets():
    assert set(TOY2D_NAMES) >= {
        "checkerboard",
        "eight_gaussians",
        "two_moons",
        "swiss_roll",
        "rings",
        "pinwheel",
    }


def test_checkerboard_fills_only_black_cells_uniformly():
    points = toy2d("checkerboard", N, seed=1).astype(np.float64)
    assert np.all(np.abs(points) <= 1.0)
    column = np.clip(np.floor((points[:, 0] + 1.0) / 0.5), 0, 3).astype(int)
    row = np.clip(np.floor((points[:, 1] + 1.0) / 0.5), 0, 3).astype(int)
    assert np.all((column + row) % 2 == 0)
    counts = np.bincount(4 * column + row, minlength=16)
    black = counts[
        [4 * i + j for i in range(4) for j in range(4) if (i + j) % 2 == 0]
    ]
    assert black.sum() == N
    np.testing.assert_allclose(black, N / 8, rtol=0.2)
    # Uniform within the cells: uniform marginals on [-1, 1], std 1/sqrt(3).
    np.testing.assert_allclose(points.std(axis=0), 1 / np.sqrt(3), rtol=0.05)


def test_eight_gaussians_cluster_around_eight_centres():
    points = toy2d("eight_gaussians", N, seed=2).astype(np.float64)
    radius, std = 0.7, 0.05  # as documented
    angles = 2 * np.pi * np.arange(8) / 8
    centres = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    distances = np.linalg.norm(points[:, None, :] - centres[None], axis=-1)
    nearest = distances.argmin(axis=1)
    assert np.max(distances.min(axis=1)) < 6 * std
    np.testing.assert_allclose(
        np.bincount(nearest, minlength=8), N / 8, rtol=0.2
    )
    # Within-cluster spread is the configured std in each coordinate.
    residuals = points - centres[nearest]
    np.testing.assert_allclose(residuals.std(axis=0), std, rtol=0.1)
    # Per-coordinate std sqrt(radius^2 / 2 + std^2) = 0.497 (sigma_data).
    np.testing.assert_allclose(
        points.std(axis=0), np.sqrt(radius**2 / 2 + std**2), rtol=0.05
    )


def _distance_to_arc(points, centre, radius, lower_half):
    """Distance from points to the upper or lower half of a circle."""
    offset = points - centre
    r = np.linalg.norm(offset, axis=1)
    on_side = offset[:, 1] <= 0 if lower_half else offset[:, 1] >= 0
    ends = np.array([centre + [radius, 0.0], centre - [radius, 0.0]])
    to_ends = np.linalg.norm(points[:, None, :] - ends[None], axis=-1).min(
        axis=1
    )
    return np.where(on_side, np.abs(r - radius), to_ends)


def test_two_moons_points_lie_on_two_arcs_with_expected_means():
    points = toy2d("two_moons", N, seed=3).astype(np.float64)
    # As documented: noise std 0.1, shift by (0.5, 0.25), scale by 2/3.
    scale = 2.0 / 3.0
    shift = np.array([0.5, 0.25])
    noise = 0.1 * scale
    # Unit half circles (upper centred at (0, 0), lower at (1, 1/2)) after
    # the documented centring and scaling.
    upper_centre = scale * (np.array([0.0, 0.0]) - shift)
    lower_centre = scale * (np.array([1.0, 0.5]) - shift)
    d_upper = _distance_to_arc(points, upper_centre, scale, lower_half=False)
    d_lower = _distance_to_arc(points, lower_centre, scale, lower_half=True)
    distance = np.minimum(d_upper, d_lower)
    assert np.max(distance) < 5 * noise
    # Mean distance to the curve ~ E|N(0, noise^2)| = noise sqrt(2 / pi).
    np.testing.assert_allclose(
        distance.mean(), noise * np.sqrt(2 / np.pi), rtol=0.15
    )
    # Two equal clusters; the mean of a half circle of radius 1 is 2/pi
    # from its centre along its symmetry axis.
    on_upper = d_upper < d_lower
    np.testing.assert_allclose(on_upper.mean(), 0.5, atol=0.03)
    expected_upper = scale * (np.array([0.0, 2 / np.pi]) - shift)
    expected_lower = scale * (np.array([1.0, 0.5 - 2 / np.pi]) - shift)
    np.testing.assert_allclose(
        points[on_upper].mean(axis=0), expected_upper, atol=0.03
    )
    np.testing.assert_allclose(
        points[~on_upper].mean(axis=0), expected_lower, atol=0.03
    )


def test_swiss_roll_radius_grows_with_angle():
    points = toy2d("swiss_roll", N, seed=4).astype(np.float64)
    scale = 1.0 / (4.5 * np.pi)  # as documented
    radius = np.linalg.norm(points, axis=1) / scale  # back to units of t
    angle = np.arctan2(points[:, 1], points[:, 0])
    # Archimedean spiral r = t at angle t (mod 2 pi): r - angle is a multiple
    # of 2 pi up to the noise (std 0.3 in units of t).
    residual = _wrap(radius - angle)
    assert np.median(np.abs(residual)) < 0.35
    assert np.mean(np.abs(residual) < 1.2) > 0.99
    # A spiral: unwrapping the angle by the turn count gives r ~ t with
    # t in [1.5 pi, 4.5 pi], one to one (radius increasing with angle).
    turns = np.round((radius - angle) / (2 * np.pi))
    unwrapped = angle + 2 * np.pi * turns
    assert np.corrcoef(unwrapped, radius)[0, 1] > 0.99
    assert (
        1.5 * np.pi - 1.0 < unwrapped.min()
        and unwrapped.max() < 4.5 * np.pi + 1.0
    )


def test_rings_points_lie_on_four_circles():
    points = toy2d("rings", N, seed=5).astype(np.float64)
    radii = np.array([0.25, 0.5, 0.75, 1.0])  # as documented
    radius = np.linalg.norm(points, axis=1)
    gaps = np.abs(radius[:, None] - radii[None])
    nearest = gaps.argmin(axis=1)
    assert np.max(gaps.min(axis=1)) < 6 * 0.02
    np.testing.assert_allclose(
        np.bincount(nearest, minlength=4), N / 4, rtol=0.15
    )
    # Uniform angles: the mean direction on each ring is near zero.
    for k in range(4):
        unit = points[nearest == k] / radius[nearest == k, None]
        assert np.linalg.norm(unit.mean(axis=0)) < 0.1


def test_pinwheel_points_follow_five_spiral_arms():
    points = toy2d("pinwheel", N, seed=6).astype(np.float64)
    scale, arms, rate = 0.65, 5, 0.25  # as documented
    radius = np.linalg.norm(points, axis=1) / scale
    angle = np.arctan2(points[:, 1], points[:, 0])
    # Arm k sits at angle 2 pi k / 5 + rate * exp(radius).
    twist = angle - rate * np.exp(radius)
    residual = _wrap(twist, period=2 * np.pi / arms)
    assert np.median(np.abs(residual)) < 0.1
    assert np.mean(np.abs(residual) < 0.3) > 0.95
    arm = (
        np.round(_wrap(twist - residual) / (2 * np.pi / arms)).astype(int)
        % arms
    )
    np.testing.assert_allclose(
        np.bincount(arm, minlength=arms), N / arms, rtol=0.15
    )


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="checkerboard.*two_moons"):
        toy2d("moons", 10)
    with pytest.raises(ValueError, match="Valid names"):
        toy2d(None, 10)
    for bad_n in (0, -5, 2.5, True, "10"):
        with pytest.raises(ValueError, match="positive integer"):
            toy2d("rings", bad_n)
