"""Quality metrics for generated 8x8 digits (the digits recipe's FID stand-in).

Inception features make no sense for 8x8 grayscale images, so the digits
recipe measures samples in two other spaces, both against the fixed held-out
split of `keras_gcm.data.images.digits` (300 real images never used for
training the generator nor the classifier):

- **Fréchet digits distance (FDD).** The Fréchet distance of FID,
  `||mu_g - mu_r||^2 + Tr(C_g + C_r - 2 (C_g C_r)^{1/2})`, between Gaussians
  fitted to the penultimate-layer activations (64 ReLU units) of a small MLP
  digit classifier. The classifier is trained once, with a fixed seed, on the
  1,497-image train split (scikit-learn `MLPClassifier`, hidden layers
  (128, 64)); its held-out accuracy is about 98%.
- **Pixel energy distance.** The energy distance between the generated and the
  held-out images as 64-dimensional pixel vectors.

Everything is numpy / scipy in float64, independent of the Keras backend and
deterministic: the classifier is fitted once per process (optionally cached on
disk as an `.npz` of its weights), and its features are computed with numpy
from the fitted weights. Generated images are clipped to `[-1, 1]` first, as
they would be when turned into pictures.
"""

import os
import threading
import warnings

import numpy as np

__all__ = [
    "DigitsClassifier",
    "digits_classifier",
    "digits_features",
    "digits_quality",
    "frechet_digits_distance",
    "pixel_energy_distance",
]

DIGITS_CLASSIFIER_HIDDEN = (128, 64)
DIGITS_CLASSIFIER_SEED = 0
DIGITS_CLASSIFIER_MAX_ITER = 500
_CACHE_FILE = "digits_classifier_mlp128x64_seed0_v1.npz"

_LOCK = threading.Lock()
_STATE = {}


class DigitsClassifier:
    """A fitted ReLU MLP digit classifier evaluated with numpy (float64).

    Layer `i` computes `h_{i+1} = relu(h_i @ weights[i] + biases[i])` on the
    flattened `[-1, 1]` image `h_0` (64 pixels); the last layer gives the
    logits (softmax for probabilities). The features are the activations of
    the last hidden (penultimate) layer.

    Args:
        weights: list of `(in, out)` float arrays, input layer first.
        biases: list of `(out,)` float arrays.

    Example:

    >>> classifier = keras_gcm.metrics.digits_classifier()
    >>> x, y = keras_gcm.data.digits("heldout", labels=True)
    >>> classifier.accuracy(x, y) > 0.95
    True
    """

    def __init__(self, weights, biases):
        weights = [np.asarray(w, np.float64) for w in weights]
        biases = [np.asarray(b, np.float64) for b in biases]
        if len(weights) < 2 or len(weights) != len(biases):
            raise ValueError(
                "A DigitsClassifier needs at least one hidden layer and one bias per "
                f"layer; got {len(weights)} weight and {len(biases)} bias arrays."
            )
        for index, (w, b) in enumerate(zip(weights, biases)):
            previous = 64 if index == 0 else weights[index - 1].shape[1]
            if w.ndim != 2 or w.shape[0] != previous or b.shape != (w.shape[1],):
                raise ValueError(
                    f"Layer {index}: expected weights ({previous}, out) and bias "
                    f"(out,); got {w.shape} and {b.shape}."
                )
        self.weights = weights
        self.biases = biases
        self._statistics_cache = {}

    @classmethod
    def from_sklearn(cls, mlp):
        """Builds the numpy classifier from a fitted ReLU `MLPClassifier`."""
        if getattr(mlp, "activation", None) != "relu":
            raise ValueError(
                f"Only ReLU MLPs are supported; got activation {mlp.activation!r}."
            )
        return cls(mlp.coefs_, mlp.intercepts_)

    @property
    def num_features(self):
        """Width of the penultimate layer."""
        return self.weights[-1].shape[0]

    def features(self, images):
        """Penultimate-layer ReLU activations, `(N, num_features)` float64."""
        hidden = _flatten_digits(images)
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            hidden = np.maximum(hidden @ w + b, 0.0)
        return hidden

    def logits(self, images):
        """Output-layer logits, `(N, 10)` float64."""
        return self.features(images) @ self.weights[-1] + self.biases[-1]

    def predict_proba(self, images):
        """Softmax class probabilities, `(N, 10)` float64."""
        logits = self.logits(images)
        logits = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, images):
        """Predicted class ids, `(N,)` int64."""
        return np.argmax(self.logits(images), axis=1)

    def accuracy(self, images, labels):
        """Fraction of `images` classified as `labels`."""
        labels = np.asarray(labels).reshape(-1)
        predictions = self.predict(images)
        if labels.shape != predictions.shape:
            raise ValueError(
                f"Got {predictions.shape[0]} images but {labels.shape[0]} labels."
            )
        return float(np.mean(predictions == labels))

    def save(self, path):
        """Saves the weights to an `.npz` file (no pickle)."""
        arrays = {f"w{i}": w for i, w in enumerate(self.weights)}
        arrays.update({f"b{i}": b for i, b in enumerate(self.biases)})
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path):
        """Loads weights written by `save`."""
        with np.load(path, allow_pickle=False) as data:
            count = sum(1 for key in data.files if key.startswith("w"))
            weights = [data[f"w{i}"] for i in range(count)]
            biases = [data[f"b{i}"] for i in range(count)]
        return cls(weights, biases)


def _to_numpy(x):
    from keras_gcm.data.images import _to_numpy as convert

    return convert(x)


def _flatten_digits(images):
    """(N, 8, 8, 1) or (N, 8, 8) images -> (N, 64) float64, validated."""
    return _prepare_digits(images, "images", min_count=1, clip=False).reshape(-1, 64)


def _prepare_digits(images, name, min_count=2, clip=True):
    x = np.asarray(_to_numpy(images))
    if x.ndim == 4 and x.shape[1:] == (8, 8, 1):
        x = x[..., 0]
    if x.ndim != 3 or x.shape[1:] != (8, 8):
        raise ValueError(
            f"`{name}` must be 8x8 grayscale digits of shape (N, 8, 8, 1) or "
            f"(N, 8, 8); got shape {tuple(x.shape)}."
        )
    if x.shape[0] < min_count:
        raise ValueError(
            f"`{name}` needs at least {min_count} images (a covariance needs 2; "
            f"a few hundred give a stable estimate); got {x.shape[0]}."
        )
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"`{name}` must be numeric; got dtype {x.dtype}.")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError(
            f"`{name}` has {int(np.size(x) - np.isfinite(x).sum())} NaN or inf "
            "values (did the sampler diverge?)."
        )
    if x.min() >= 0.0 and x.max() > 2.0:
        raise ValueError(
            f"`{name}` looks unscaled: values in [{x.min():g}, {x.max():g}], but "
            "digits must be in [-1, 1]. Scale load_digits values (0..16) with "
            "x / 8 - 1, or [0, 255] images with x / 127.5 - 1."
        )
    if clip:
        x = np.clip(x, -1.0, 1.0)
    return x


def _single_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _fit_classifier():
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from keras_gcm.data.images import digits

    x, y = digits("train", labels=True)
    mlp = MLPClassifier(
        hidden_layer_sizes=DIGITS_CLASSIFIER_HIDDEN,
        random_state=DIGITS_CLASSIFIER_SEED,
        max_iter=DIGITS_CLASSIFIER_MAX_ITER,
    )
    # One BLAS thread: faster for this small problem (multi-threaded OpenBLAS
    # is 10x slower on a loaded 2-core machine) and independent of the
    # machine's core count.
    with warnings.catch_warnings(), _single_blas_thread():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(x.reshape(x.shape[0], -1).astype(np.float64), y)
    return DigitsClassifier.from_sklearn(mlp)


def digits_classifier(cache_dir=None):
    """The fixed digit classifier whose features the FDD uses.

    Fitted once per process: scikit-learn `MLPClassifier(hidden_layer_sizes=
    (128, 64), random_state=0, max_iter=500)` (ReLU, Adam, scikit-learn's
    defaults otherwise) on the flattened `[-1, 1]` images of the 1,497-image
    digits train split; about one second on a CPU. With `cache_dir`, the
    fitted weights are also stored there as an `.npz` and read back by later
    processes, so that every run uses bit-identical features.

    Args:
        cache_dir: optional directory for the weights file.

    Returns:
        A `DigitsClassifier` (held-out accuracy about 0.98).

    Example:

    >>> classifier = keras_gcm.metrics.digits_classifier()
    >>> classifier.num_features
    64
    """
    with _LOCK:
        if cache_dir is not None:
            path = os.path.join(os.fspath(cache_dir), _CACHE_FILE)
            key = ("classifier", os.path.abspath(path))
            if key not in _STATE:
                if os.path.isfile(path):
                    _STATE[key] = DigitsClassifier.load(path)
                else:
                    classifier = _STATE.get("classifier") or _fit_classifier()
                    os.makedirs(os.fspath(cache_dir), exist_ok=True)
                    temporary = f"{path}.{os.getpid()}.tmp.npz"
                    classifier.save(temporary)
                    os.replace(temporary, path)
                    _STATE[key] = classifier
            return _STATE[key]
        if "classifier" not in _STATE:
            _STATE["classifier"] = _fit_classifier()
        return _STATE["classifier"]


def digits_features(images, classifier=None):
    """Classifier features of digits, `(N, 64)` float64 (images clipped to [-1, 1]).

    Args:
        images: `(N, 8, 8, 1)` or `(N, 8, 8)` images in `[-1, 1]`.
        classifier: a `DigitsClassifier` (default: `digits_classifier()`).

    Returns:
        The penultimate-layer activations.

    Example:

    >>> keras_gcm.metrics.digits_features(keras_gcm.data.digits("heldout")).shape
    (300, 64)
    """
    x = _prepare_digits(images, "images", min_count=1)
    classifier = classifier or digits_classifier()
    return classifier.features(x)


def _feature_statistics(features):
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _reference_images(reference):
    if isinstance(reference, str):
        from keras_gcm.data.images import digits

        if reference not in ("heldout", "train", "test", "all"):
            raise ValueError(
                f"Unknown reference {reference!r}: expected 'heldout', 'train', "
                "'all' or an array of digits."
            )
        return digits(reference)
    return reference


def _reference_statistics(reference, classifier):
    """Feature (mean, covariance) of the reference; named splits are cached."""
    if isinstance(reference, str):
        cache = classifier._statistics_cache
        if reference not in cache:
            features = digits_features(_reference_images(reference), classifier)
            cache[reference] = _feature_statistics(features)
        return cache[reference]
    x = _prepare_digits(reference, "reference")
    return _feature_statistics(digits_features(x, classifier))


def frechet_digits_distance(images, reference="heldout", classifier=None):
    """Fréchet digits distance (FDD): FID's formula in digit-classifier features.

    `FDD = ||mu_g - mu_r||^2 + Tr(C_g + C_r - 2 (C_g C_r)^{1/2})`, with means
    and (unbiased, `np.cov`) covariances of the 64 penultimate-layer features
    of `digits_classifier()` for the generated images (g) and the reference
    (r). Against the held-out split, the 1,497 train digits score about 0.9,
    300 of them about 5, the same 300 blurred (Gaussian, sigma 1 pixel) about
    74, with N(0, 0.5^2) pixel noise about 19, and uniform noise about 300.
    The estimate is biased upwards for small N: compare models at equal N
    (a few hundred images or more).

    Args:
        images: generated `(N, 8, 8, 1)` or `(N, 8, 8)` digits in `[-1, 1]`
            (clipped to it), N >= 2.
        reference: `"heldout"` (default; the 300 held-out digits), `"train"`,
            `"all"`, or an array of reference digits.
        classifier: optional `DigitsClassifier` (default: the fixed one).

    Returns:
        The squared Fréchet distance, a Python float.

    Example:

    >>> keras_gcm.metrics.frechet_digits_distance(keras_gcm.data.digits("train")) < 10.0
    True
    """
    from keras_gcm.metrics.frechet import frechet_distance

    classifier = classifier or digits_classifier()
    x = _prepare_digits(images, "images")
    mu, cov = _feature_statistics(digits_features(x, classifier))
    ref_mu, ref_cov = _reference_statistics(reference, classifier)
    # The distance is >= 0; the matrix square root leaves ~1e-12 rounding.
    return max(0.0, float(frechet_distance(mu, cov, ref_mu, ref_cov)))


def pixel_energy_distance(images, reference="heldout"):
    """Energy distance between generated and reference digits in pixel space.

    The images are flattened to 64-dimensional vectors (clipped to `[-1, 1]`)
    and compared with `keras_gcm.metrics.distances.energy_distance`, the
    unbiased (U-statistic) estimate of `2 E||X - Y|| - E||X - X'|| - E||Y - Y'||`:
    about 0 for samples of the data distribution (it can be slightly
    negative), about 1.2 for blurred digits and 3.7 for uniform noise.

    Args:
        images: generated `(N, 8, 8, 1)` or `(N, 8, 8)` digits in `[-1, 1]`.
        reference: `"heldout"` (default), `"train"`, `"all"` or an array of
            reference digits.

    Returns:
        The energy distance, a Python float.

    Example:

    >>> keras_gcm.metrics.pixel_energy_distance(keras_gcm.data.digits("train")) < keras_gcm.metrics.pixel_energy_distance(
    ...     np.random.uniform(-1, 1, (300, 8, 8, 1)))
    True
    """
    from keras_gcm.metrics.distances import energy_distance

    x = _prepare_digits(images, "images").reshape(-1, 64)
    ref = _prepare_digits(_reference_images(reference), "reference").reshape(-1, 64)
    return float(energy_distance(x, ref))


def digits_quality(images, reference="heldout"):
    """Both digits metrics of `images` against `reference`.

    Args:
        images: generated `(N, 8, 8, 1)` or `(N, 8, 8)` digits in `[-1, 1]`.
        reference: `"heldout"` (default), `"train"`, `"all"` or an array.

    Returns:
        A dict `{"frechet_digits_distance": float, "pixel_energy_distance":
        float}` (lower is better for both).

    Example:

    >>> sorted(keras_gcm.metrics.digits_quality(keras_gcm.data.digits("train")))
    ['frechet_digits_distance', 'pixel_energy_distance']
    """
    return {
        "frechet_digits_distance": frechet_digits_distance(images, reference),
        "pixel_energy_distance": pixel_energy_distance(images, reference),
    }
