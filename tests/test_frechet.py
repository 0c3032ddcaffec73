"""Tests of the Fréchet distance and the streamed feature statistics."""

import numpy as np
import pytest
import scipy.linalg

import keras

from keras_gcm.metrics.frechet import (
    FrechetInceptionDistance,
    compute_statistics,
    frechet_distance,
    load_statistics,
    save_statistics,
)


def _random_spd(rng, dim, scale=1.0):
    a = rng.standard_normal((dim, dim + 3))
    return scale * (a @ a.T) / dim + 1e-3 * np.eye(dim)


def _reference_frechet(mu1, cov1, mu2, cov2):
    """Symmetric form: Tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2), via eigh."""

    def psd_sqrt(m):
        w, v = np.linalg.eigh(m)
        return (v * np.sqrt(np.clip(w, 0, None))) @ v.T

    root1 = psd_sqrt(cov1)
    cross = psd_sqrt(root1 @ cov2 @ root1)
    diff = mu1 - mu2
    return diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(cross)


# --------------------------------------------------------------------------
# frechet_distance
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [1, 5, 64])
def test_frechet_distance_matches_symmetric_reference(dim):
    rng = np.random.default_rng(dim)
    mu1, mu2 = rng.standard_normal(dim), rng.standard_normal(dim) + 0.5
    cov1, cov2 = _random_spd(rng, dim), _random_spd(rng, dim, scale=3.0)
    expected = _reference_frechet(mu1, cov1, mu2, cov2)
    got = frechet_distance(mu1, cov1, mu2, cov2)
    assert isinstance(got, float)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-10)
    # A distance between Gaussians: symmetric in its arguments.
    np.testing.assert_allclose(
        frechet_distance(mu2, cov2, mu1, cov1), got, rtol=1e-9
    )


def test_frechet_distance_matches_scipy_formula():
    rng = np.random.default_rng(3)
    dim = 20
    mu1, mu2 = rng.standard_normal(dim), rng.standard_normal(dim)
    cov1, cov2 = _random_spd(rng, dim), _random_spd(rng, dim)
    root1 = scipy.linalg.sqrtm(cov1).real
    expected = (
        np.sum((mu1 - mu2) ** 2)
        + np.trace(cov1 + cov2)
        - 2 * np.trace(scipy.linalg.sqrtm(root1 @ cov2 @ root1).real)
    )
    np.testing.assert_allclose(
        frechet_distance(mu1, cov1, mu2, cov2), expected, rtol=1e-9
    )


def test_frechet_distance_is_zero_for_identical_statistics():
    rng = np.random.default_rng(0)
    mu, cov = rng.standard_normal(32), _random_spd(rng, 32, scale=10.0)
    distance = frechet_distance(mu, cov, mu.copy(), cov.copy())
    assert abs(distance) < 1e-8 * np.trace(cov)


def test_frechet_distance_closed_form_for_diagonal_covariances():
    # Commuting covariances: d^2 = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.1, 4.0, 16), rng.uniform(0.1, 4.0, 16)
    mu1, mu2 = rng.standard_normal(16), rng.standard_normal(16)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    np.testing.assert_allclose(
        frechet_distance(mu1, np.diag(a), mu2, np.diag(b)), expected, rtol=1e-10
    )
    # The docstring example: 3 * 1^2 + 3 * (2 - 1)^2.
    assert frechet_distance(np.zeros(3), np.eye(3), np.ones(3), 4 * np.eye(3)) == (
        pytest.approx(6.0, rel=1e-12)
    )


def test_frechet_distance_rank_deficient_covariances_are_finite():
    # Fewer samples than features: singular covariances (as with small
    # sample counts and 2048-d features).
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((6, 12)), rng.standard_normal((6, 12)) + 1.0
    mu1, cov1 = x.mean(0), np.cov(x, rowvar=False)
    mu2, cov2 = y.mean(0), np.cov(y, rowvar=False)
    with np.errstate(all="ignore"):
        got = frechet_distance(mu1, cov1, mu2, cov2)
    assert np.isfinite(got)
    np.testing.assert_allclose(
        got, _reference_frechet(mu1, cov1, mu2, cov2), rtol=1e-4
    )


def test_frechet_distance_rejects_non_psd_covariances():
    # cov1 @ cov2 = -I: its square root is i * I, not a covariance.
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), -np.eye(3))


@pytest.mark.parametrize(
    "mu1, cov1, mu2, cov2, message",
    [
        (np.zeros((3, 1)), np.eye(3), np.zeros(3), np.eye(3), "vector"),
        (np.zeros(3), np.eye(4), np.zeros(3), np.eye(3), r"\(features, features\)"),
        (
            np.zeros(3), np.ones((3, 2)), np.zeros(3), np.eye(3),
            r"\(features, features\)",
        ),
        (np.zeros(3), np.eye(3), np.zeros(4), np.eye(4), "same number of features"),
        (np.full(3, np.nan), np.eye(3), np.zeros(3), np.eye(3), "NaN"),
    ],
)
def test_frechet_distance_bad_shapes_raise(mu1, cov1, mu2, cov2, message):
    with pytest.raises(ValueError, match=message):
        frechet_distance(mu1, cov1, mu2, cov2)


# --------------------------------------------------------------------------
# Streaming statistics
# --------------------------------------------------------------------------


class _LinearFeatures:
    """A feature extractor: flatten, project, and add a large offset."""

    def __init__(self, pixels, features, offset=1000.0, seed=0):
        rng = np.random.default_rng(seed)
        self.weight = rng.standard_normal((pixels, features))
        self.offset = offset + rng.standard_normal(features)

    def __call__(self, images):
        images = np.asarray(images, np.float64)
        return images.reshape(len(images), -1) @ self.weight + self.offset


def _images(n, seed=0, size=4):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, (n, size, size, 3))


def test_streamed_statistics_equal_numpy_over_all_features():
    images = _images(1003)
    extractor = _LinearFeatures(4 * 4 * 3, 10)
    fid = FrechetInceptionDistance(extractor, quantize=False)
    # Uneven batches, many of them.
    rng = np.random.default_rng(5)
    start = 0
    while start < len(images):
        size = int(rng.integers(1, 40))
        fid.update(images[start : start + size])
        start += size
    mu, cov = fid.statistics()
    features = extractor(images)
    assert fid.num_samples == len(images)
    np.testing.assert_allclose(mu, features.mean(0), rtol=0, atol=1e-10)
    np.testing.assert_allclose(cov, np.cov(features, rowvar=False), rtol=0, atol=1e-10)
    assert mu.dtype == np.float64 and cov.dtype == np.float64


def test_compute_statistics_from_array_and_iterables():
    images = _images(257, seed=1)
    labels = np.arange(len(images))
    extractor = _LinearFeatures(4 * 4 * 3, 6, seed=1)
    features = extractor(images)
    expected_mu, expected_cov = features.mean(0), np.cov(features, rowvar=False)

    mu, cov = compute_statistics(extractor, images, batch_size=50, progress=False, quantize=False)
    np.testing.assert_allclose(mu, expected_mu, atol=1e-10)
    np.testing.assert_allclose(cov, expected_cov, atol=1e-10)

    batches = (
        (images[i : i + 64], labels[i : i + 64]) for i in range(0, 257, 64)
    )
    mu, cov = compute_statistics(extractor, batches, progress=False, quantize=False)
    np.testing.assert_allclose(mu, expected_mu, atol=1e-10)
    np.testing.assert_allclose(cov, expected_cov, atol=1e-10)

    dict_batches = [{"image": images[i : i + 100]} for i in range(0, 257, 100)]
    mu, cov = compute_statistics(extractor, dict_batches, progress=False, quantize=False)
    np.testing.assert_allclose(cov, expected_cov, atol=1e-10)


def test_update_from_tf_data_dataset_of_single_images():
    tf = pytest.importorskip("tensorflow")
    images = _images(90, seed=2).astype("float32")
    extractor = _LinearFeatures(4 * 4 * 3, 5, seed=2)
    dataset = tf.data.Dataset.from_tensor_slices((images, np.zeros(90)))
    fid = FrechetInceptionDistance(extractor, quantize=False)
    added = fid.update_from_dataset(dataset, batch_size=32, progress=False)
    assert added == 90
    features = extractor(images)
    mu, cov = fid.statistics()
    np.testing.assert_allclose(mu, features.mean(0), atol=1e-10)
    np.testing.assert_allclose(cov, np.cov(features, rowvar=False), atol=1e-10)


def test_max_images_progress_and_reset(capsys):
    images = _images(100, seed=3)
    extractor = _LinearFeatures(4 * 4 * 3, 4, seed=3)
    fid = FrechetInceptionDistance(extractor, quantize=False)
    added = fid.update_from_dataset(images, batch_size=30, max_images=75)
    assert added == 75 and fid.num_samples == 75
    assert "75/75" in capsys.readouterr().out
    features = extractor(images[:75])
    np.testing.assert_allclose(
        fid.statistics()[1], np.cov(features, rowvar=False), atol=1e-10
    )
    fid.reset()
    assert fid.num_samples == 0 and fid.num_features is None
    with pytest.raises(ValueError, match="At least 2 images"):
        fid.statistics()


def test_keras_model_extractor_all_backends():
    # A Keras model runs through `predict_on_batch` on every backend.
    inputs = keras.Input((4, 4, 3))
    outputs = keras.layers.Dense(7)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    images = _images(70, seed=4).astype("float32")
    fid = FrechetInceptionDistance(model, quantize=False)
    fid.update_from_dataset(images, batch_size=16, progress=False)
    features = keras.ops.convert_to_numpy(model(images)).astype(np.float64)
    mu, cov = fid.statistics()
    np.testing.assert_allclose(mu, features.mean(0), atol=1e-5)
    np.testing.assert_allclose(cov, np.cov(features, rowvar=False), atol=1e-5)


def test_result_equals_frechet_distance_of_statistics(tmp_path):
    extractor = _LinearFeatures(4 * 4 * 3, 8, seed=5)
    fid = FrechetInceptionDistance(extractor, quantize=False)
    fid.update(_images(200, seed=6))
    reference = compute_statistics(
        extractor, _images(300, seed=7) * 0.5, progress=False
    )
    mu, cov = fid.statistics()
    expected = _reference_frechet(mu, cov, *reference)
    np.testing.assert_allclose(fid.result(reference), expected, rtol=1e-8)
    path = tmp_path / "reference.npz"
    save_statistics(path, *reference)
    np.testing.assert_allclose(fid.result(path), expected, rtol=1e-8)
    np.testing.assert_allclose(fid.result(str(path)), expected, rtol=1e-8)


def test_save_and_load_statistics_round_trip(tmp_path):
    rng = np.random.default_rng(8)
    mu, cov = rng.standard_normal(9), _random_spd(rng, 9)
    save_statistics(tmp_path / "stats.npz", mu, cov)
    loaded_mu, loaded_cov = load_statistics(tmp_path / "stats.npz")
    np.testing.assert_array_equal(loaded_mu, mu)
    np.testing.assert_array_equal(loaded_cov, cov)
    # pytorch-fid / TTUR files use the keys `mu` and `sigma`.
    with np.load(tmp_path / "stats.npz") as data:
        assert set(data.files) == {"mu", "sigma"}
    np.savez(tmp_path / "bad.npz", mean=mu)
    with pytest.raises(ValueError, match="`mu` and `sigma`"):
        load_statistics(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError):
        load_statistics(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match=r"\(features, features\)"):
        save_statistics(tmp_path / "x.npz", mu, cov[:3])


def test_streaming_errors_are_clear():
    extractor = _LinearFeatures(4 * 4 * 3, 4)
    fid = FrechetInceptionDistance(extractor, quantize=False)
    with pytest.raises(ValueError, match=r"must lie in \(-1.0, 1.0\)"):
        fid.update(_images(4) * 2.0)
    with pytest.raises(ValueError, match="leading batch axis"):
        fid.update(np.zeros(5))
    bad_rank = FrechetInceptionDistance(lambda x: np.zeros((len(x), 4, 1)))
    with pytest.raises(ValueError, match=r"shape \(3, features\)"):
        bad_rank.update(_images(3))
    bad_batch = FrechetInceptionDistance(lambda x: np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"shape \(3, features\)"):
        bad_batch.update(_images(3))
    fid.update(_images(3))
    with pytest.raises(ValueError, match="earlier batches had 4"):
        fid.update_features(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="NaN"):
        fid.update_features(np.full((2, 4), np.nan))
    with pytest.raises(ValueError, match="batch_size"):
        fid.update_from_dataset(_images(3), batch_size=0)
    with pytest.raises(ValueError, match="reference_stats"):
        fid.result(np.zeros(4))
    fid.update(_images(3, seed=1))
    with pytest.raises(ValueError, match="reference statistics have 3"):
        fid.result((np.zeros(3), np.eye(3)))
    with pytest.raises(ValueError, match="callable"):
        FrechetInceptionDistance("inception")


# ------------------------------------------------------ uint8 quantisation
def test_samples_are_rounded_to_uint8_levels_before_the_extractor():
    from keras_gcm.metrics import quantize_to_uint8_levels

    seen = []

    def extractor(x):
        seen.append(np.array(x))
        return np.reshape(x, (len(x), -1))

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (64, 2, 2, 1)).astype(np.float64)
    levels = pixels / 127.5 - 1.0
    # Less than half a level off, and slightly outside [-1, 1] at the ends.
    jitter = rng.uniform(-0.45, 0.45, pixels.shape) / 127.5
    fid = FrechetInceptionDistance(extractor)
    fid.update(np.clip(levels + jitter, -1.0005, 1.0005))
    np.testing.assert_allclose(seen[-1] * 127.5 + 127.5, pixels, atol=1e-4)
    exact = FrechetInceptionDistance(extractor)
    exact.update(levels)
    np.testing.assert_array_equal(seen[-1], seen[-2])  # uint8 levels are kept as they are
    for quantized, reference in zip(fid.statistics(), exact.statistics()):
        np.testing.assert_allclose(quantized, reference, atol=1e-12)
    np.testing.assert_array_equal(quantize_to_uint8_levels(levels), levels.astype(np.float32))
    raw = FrechetInceptionDistance(extractor, quantize=False)
    raw.update(levels + jitter)
    assert not np.allclose(raw.statistics()[0], exact.statistics()[0], atol=1e-6)
    with pytest.raises(ValueError, match="quantize=False"):
        FrechetInceptionDistance(extractor, value_range=None)
