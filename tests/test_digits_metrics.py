"""Tests of the digits quality metrics (keras_gcm/metrics/digits.py)."""

import warnings

import keras
import numpy as np
import pytest
import scipy.linalg
from scipy import ndimage
from scipy.spatial.distance import cdist

from keras_gcm.data.images import digits
from keras_gcm.metrics import digits as digits_metrics


@pytest.fixture(scope="module")
def data():
    train = digits("train")
    rng = np.random.RandomState(0)
    real = train[:300]
    return {
        "train": train,
        "heldout": digits("heldout"),
        "real": real,
        "blurred": np.stack(
            [ndimage.gaussian_filter(image[..., 0], 1.0) for image in real]
        )[..., None],
        "noised": np.clip(real + rng.normal(0.0, 0.5, real.shape), -1.0, 1.0),
        "noise": rng.uniform(-1.0, 1.0, real.shape),
    }


def test_classifier_heldout_accuracy_above_95_percent():
    x, y = digits("heldout", labels=True)
    classifier = digits_metrics.digits_classifier()
    assert classifier.accuracy(x, y) > 0.95
    assert classifier.num_features == 64
    assert digits_metrics.digits_classifier() is classifier  # fitted once


def test_numpy_forward_pass_matches_sklearn():
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x, y = digits("train", labels=True)
    x = x[:400].reshape(400, -1).astype(np.float64)
    mlp = MLPClassifier(hidden_layer_sizes=(16, 8), random_state=0, max_iter=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(x, y[:400])
    classifier = digits_metrics.DigitsClassifier.from_sklearn(mlp)
    images = x.reshape(400, 8, 8, 1)
    np.testing.assert_allclose(
        classifier.predict_proba(images), mlp.predict_proba(x), rtol=1e-10, atol=1e-12
    )
    np.testing.assert_array_equal(classifier.predict(images), mlp.predict(x))
    # Features: the last hidden layer, relu(relu(x W0 + b0) W1 + b1).
    hidden = np.maximum(x @ mlp.coefs_[0] + mlp.intercepts_[0], 0.0)
    hidden = np.maximum(hidden @ mlp.coefs_[1] + mlp.intercepts_[1], 0.0)
    np.testing.assert_allclose(classifier.features(images), hidden, rtol=1e-12)


def _reference_frechet(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # dead ReLU units make c1 @ c2 singular
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(c1 @ c2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2 - 2.0 * root))


def test_fdd_is_the_frechet_formula_in_classifier_features(data):
    features = digits_metrics.digits_features
    expected = _reference_frechet(features(data["real"]), features(data["heldout"]))
    value = digits_metrics.frechet_digits_distance(data["real"])
    assert value == pytest.approx(expected, rel=1e-6)
    # A distance: zero to itself, symmetric in its two sets.
    assert digits_metrics.frechet_digits_distance(
        data["heldout"], reference=data["heldout"]
    ) == pytest.approx(0.0, abs=1e-6)
    assert digits_metrics.frechet_digits_distance(
        data["heldout"], reference="train"
    ) == pytest.approx(digits_metrics.frechet_digits_distance(data["train"]), rel=1e-6)


def test_pixel_energy_distance_is_the_u_statistic(data):
    x = data["real"].reshape(300, -1).astype(np.float64)
    y = data["heldout"].reshape(300, -1).astype(np.float64)
    n = 300
    expected = (
        2.0 * cdist(x, y).mean()
        - cdist(x, x).sum() / (n * (n - 1))
        - cdist(y, y).sum() / (n * (n - 1))
    )
    value = digits_metrics.pixel_energy_distance(data["real"])
    assert value == pytest.approx(expected, rel=1e-9)
    assert digits_metrics.pixel_energy_distance(
        data["heldout"], reference="train"
    ) == pytest.approx(digits_metrics.pixel_energy_distance(data["train"]), rel=1e-9)


@pytest.mark.parametrize(
    "metric",
    [digits_metrics.frechet_digits_distance, digits_metrics.pixel_energy_distance],
)
def test_metrics_order_real_degraded_noise(data, metric):
    real = metric(data["real"])
    blurred = metric(data["blurred"])
    noised = metric(data["noised"])
    noise = metric(data["noise"])
    assert real < 0.1 * noise
    for degraded in (blurred, noised):
        assert 2.0 * real < degraded < 0.5 * noise
    # The whole train split is closer still than 300 of its images (less
    # estimator noise), and far below noise.
    assert metric(data["train"]) < 0.02 * noise


def test_metrics_are_deterministic_and_quality_reports_both(data):
    first = digits_metrics.digits_quality(data["noised"])
    second = digits_metrics.digits_quality(data["noised"])
    assert first == second
    assert first == {
        "frechet_digits_distance": digits_metrics.frechet_digits_distance(data["noised"]),
        "pixel_energy_distance": digits_metrics.pixel_energy_distance(data["noised"]),
    }
    # Backend tensors and (N, 8, 8) arrays give the same numbers.
    tensor = keras.ops.convert_to_tensor(data["noised"].astype("float32"))
    as_float32 = digits_metrics.digits_quality(data["noised"].astype("float32"))
    assert digits_metrics.digits_quality(tensor) == as_float32
    assert digits_metrics.digits_quality(data["noised"][..., 0]) == first


def test_generated_images_are_clipped_to_the_data_range(data):
    overshoot = 1.5 * data["real"]
    clipped = np.clip(overshoot, -1.0, 1.0)
    assert digits_metrics.digits_quality(overshoot) == digits_metrics.digits_quality(
        clipped
    )


def test_disk_cache_round_trip(tmp_path, data):
    classifier = digits_metrics.digits_classifier(cache_dir=tmp_path)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1
    loaded = digits_metrics.DigitsClassifier.load(files[0])
    np.testing.assert_array_equal(
        loaded.features(data["real"]), classifier.features(data["real"])
    )
    np.testing.assert_array_equal(
        classifier.features(data["real"]),
        digits_metrics.digits_classifier().features(data["real"]),
    )
    value = digits_metrics.frechet_digits_distance(data["real"], classifier=loaded)
    assert value == digits_metrics.frechet_digits_distance(data["real"])


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((10, 28, 28, 1)), r"\(N, 8, 8, 1\).*\(10, 28, 28, 1\)"),
        (np.zeros((10, 8, 8, 3)), r"8x8 grayscale.*\(10, 8, 8, 3\)"),
        (np.zeros((10, 64)), r"got shape \(10, 64\)"),
        (np.zeros((1, 8, 8, 1)), "at least 2 images"),
        (np.full((10, 8, 8, 1), np.nan), "NaN"),
        (np.full((10, 8, 8, 1), 16.0), r"x / 8 - 1"),
    ],
)
def test_bad_inputs_raise(images, message):
    with pytest.raises(ValueError, match=message):
        digits_metrics.frechet_digits_distance(images)
    with pytest.raises(ValueError, match=message):
        digits_metrics.pixel_energy_distance(images)


def test_unknown_reference_raises(data):
    with pytest.raises(ValueError, match="Unknown reference"):
        digits_metrics.digits_quality(data["real"], reference="validation")
    with pytest.raises(ValueError, match="reference"):
        digits_metrics.frechet_digits_distance(data["real"], reference=np.zeros((5, 4)))
