"""Fréchet distance between Gaussians fitted to features (the FID machinery).

The Fréchet Inception Distance (FID; Heusel et al., 2017) is the Fréchet
(Wasserstein-2) distance between two Gaussians fitted to the features of real
and generated images,

    d^2 = ||mu_1 - mu_2||^2 + Tr(C_1 + C_2 - 2 (C_1 C_2)^{1/2}),

computed in float64 with NumPy / SciPy. The feature statistics are streamed:
`FrechetInceptionDistance` keeps a running (shifted) sum and sum of outer
products in float64, so memory does not grow with the number of images.

Despite its name, `FrechetInceptionDistance` works with any feature
extractor: a callable or a Keras model that maps a batch of channels-last
images in `[-1, 1]` to `(batch, features)`. With
`keras_gcm.metrics.inception.fid_inception_v3` it computes the standard FID;
with the features of a small classifier it gives a Fréchet distance for data
sets where Inception features make no sense (e.g. 8x8 digits).

Reference statistics are stored as `.npz` files with the keys `mu` and
`sigma`, the format of `pytorch-fid` and of the original TTUR statistics
(`fid_stats_cifar10_train.npz`), so precomputed Inception statistics from
those tools load directly with `load_statistics`.
"""

import os
import warnings

import keras
import numpy as np
import scipy.linalg

__all__ = [
    "FrechetInceptionDistance",
    "compute_statistics",
    "frechet_distance",
    "load_statistics",
    "save_statistics",
]


def _validate_statistics(mu, cov, name):
    mu = np.asarray(mu, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    if mu.ndim != 1:
        raise ValueError(
            f"`{name}` mean must be a vector of shape (features,); "
            f"received shape {mu.shape}."
        )
    if cov.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(
            f"`{name}` covariance must have shape (features, features) = "
            f"{(mu.shape[0], mu.shape[0])} to match its mean; received "
            f"shape {cov.shape}."
        )
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(cov))):
        raise ValueError(f"`{name}` statistics contain NaN or infinite values.")
    return mu, cov


def _sqrtm(matrix):
    """`scipy.linalg.sqrtm` with its singular-matrix warning silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        return scipy.linalg.sqrtm(matrix)


def frechet_distance(mu1, cov1, mu2, cov2, eps=1e-6):
    """Squared Fréchet (Wasserstein-2) distance between two Gaussians.

    `d^2 = ||mu1 - mu2||^2 + Tr(cov1) + Tr(cov2) - 2 Tr((cov1 cov2)^{1/2})`
    (Dowson & Landau, 1982; the FID of Heusel et al., 2017), in float64.

    The matrix square root is `scipy.linalg.sqrtm` of `cov1 @ cov2`, with the
    standard FID handling of numerical trouble (as in `pytorch-fid`): if the
    square root is not finite (a singular product, e.g. fewer samples than
    features), `eps` is added to both diagonals and it is recomputed; a
    complex result whose diagonal has imaginary parts below `1e-3` is
    rounded to its real part, a larger imaginary part is an error.

    Args:
        mu1: array of shape `(features,)`, mean of the first Gaussian.
        cov1: array of shape `(features, features)`, its covariance.
        mu2: array of shape `(features,)`, mean of the second Gaussian.
        cov2: array of shape `(features, features)`, its covariance.
        eps: float, diagonal offset used when the product is singular.

    Returns:
        The squared distance as a Python float (the value reported as FID).

    Example:

    >>> mu, cov = np.zeros(3), np.eye(3)
    >>> keras_gcm.metrics.frechet_distance(mu, cov, mu + 1.0, 4.0 * cov)  # 3 * 1 + 3 * (2 - 1)^2
    6.0
    """
    mu1, cov1 = _validate_statistics(mu1, cov1, "mu1/cov1")
    mu2, cov2 = _validate_statistics(mu2, cov2, "mu2/cov2")
    if mu1.shape != mu2.shape:
        raise ValueError(
            "Both Gaussians must have the same number of features; received "
            f"means of shape {mu1.shape} and {mu2.shape}."
        )

    diff = mu1 - mu2
    covmean = _sqrtm(cov1 @ cov2)
    if not np.all(np.isfinite(covmean)):
        warnings.warn(
            "The product of the covariances is singular; adding "
            f"{eps} to their diagonals to compute its square root.",
            stacklevel=2,
        )
        offset = np.eye(cov1.shape[0]) * eps
        covmean = _sqrtm((cov1 + offset) @ (cov2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0.0, atol=1e-3):
            raise ValueError(
                "The square root of cov1 @ cov2 has a large imaginary "
                f"component (max |imag| = {np.max(np.abs(covmean.imag)):.3g}); "
                "the covariances are probably not positive semi-definite."
            )
        covmean = covmean.real

    return float(
        diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * np.trace(covmean)
    )


def save_statistics(path, mu, cov):
    """Saves Gaussian feature statistics to an `.npz` file.

    The file holds the keys `mu` and `sigma` (the `pytorch-fid` / TTUR
    format), in float64.

    Args:
        path: file path (`.npz` is appended by NumPy if missing).
        mu: array of shape `(features,)`.
        cov: array of shape `(features, features)`.

    Example:

    >>> keras_gcm.metrics.save_statistics("cifar10_train_fid.npz", mu, cov)  # doctest: +SKIP
    """
    mu, cov = _validate_statistics(mu, cov, "statistics")
    np.savez(path, mu=mu, sigma=cov)


def load_statistics(path):
    """Loads Gaussian feature statistics from an `.npz` file.

    Accepts files written by `save_statistics` and `pytorch-fid` / TTUR
    statistics files (keys `mu` and `sigma`; `cov` is accepted for
    `sigma`).

    Args:
        path: path of the `.npz` file.

    Returns:
        A tuple `(mu, cov)` of float64 arrays.

    Example:

    >>> mu, cov = keras_gcm.metrics.load_statistics("cifar10_train_fid.npz")  # doctest: +SKIP
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No statistics file at {path!r}.")
    with np.load(path) as data:
        keys = set(data.files)
        if "mu" not in keys or not ({"sigma", "cov"} & keys):
            raise ValueError(
                f"{path!r} must contain the arrays `mu` and `sigma` (or "
                f"`cov`); it contains {sorted(keys)}."
            )
        mu = data["mu"]
        cov = data["sigma"] if "sigma" in keys else data["cov"]
    return _validate_statistics(mu, cov, path)


def _as_reference(reference_stats):
    if isinstance(reference_stats, (str, os.PathLike)):
        return load_statistics(reference_stats)
    if isinstance(reference_stats, (tuple, list)) and len(reference_stats) == 2:
        return _validate_statistics(*reference_stats, "reference_stats")
    raise ValueError(
        "`reference_stats` must be a `(mu, cov)` pair or the path of an "
        f"`.npz` statistics file; received {type(reference_stats).__name__}."
    )


def _first_element(batch):
    """Images of a batch that may be `(images, labels)` or a dict."""
    if isinstance(batch, dict):
        for key in ("images", "image", "x"):
            if key in batch:
                return batch[key]
        raise ValueError(
            "A dict batch must hold its images under 'images', 'image' or "
            f"'x'; it has keys {sorted(batch)}."
        )
    if isinstance(batch, (tuple, list)):
        return batch[0]
    return batch


def quantize_to_uint8_levels(images, value_range=(-1.0, 1.0)):
    """Clips images to `value_range` and rounds them to its 256 uint8 levels.

    `low + round((clip(x) - low) / (high - low) * 255) * (high - low) / 255`,
    in float32: what saving samples as uint8 PNGs and reading them back
    gives (the step before the Inception network in EDM, the TTUR code and
    pytorch-fid). Rounding is half-to-even, like `np.round`.

    Args:
        images: array-like of any shape.
        value_range: `(low, high)` of the pixel values.

    Returns:
        A float32 numpy array of the same shape.

    Example:

    >>> x = np.array([-1.0, -0.999, 0.0, 0.5, 1.2])
    >>> print(keras_gcm.metrics.quantize_to_uint8_levels(x) * 127.5 + 127.5)
    [  0.   0. 128. 191. 255.]
    """
    low, high = (float(v) for v in value_range)
    x = np.asarray(keras.ops.convert_to_numpy(images), np.float64)
    levels = np.round((np.clip(x, low, high) - low) * (255.0 / (high - low)))
    return (low + levels * ((high - low) / 255.0)).astype(np.float32)


class FrechetInceptionDistance:
    """Streams feature statistics of images and compares them (FID).

    Despite the name, any feature extractor works: a Keras model or a
    callable mapping a batch of channels-last images in `[-1, 1]` to
    `(batch, features)`. Keras models are run with `predict_on_batch`
    (compiled); other callables are called directly.

    The statistics are accumulated in float64 as a shifted sum and a
    shifted sum of outer products (the shift is the mean of the first batch,
    which keeps the covariance accurate when the features have a large
    mean), so memory is `O(features^2)` whatever the number of images:

        mu = k + S1 / n,    cov = (S2 - S1 S1^T / n) / (n - 1),

    with `S1 = sum (f - k)`, `S2 = sum (f - k)(f - k)^T`, i.e. exactly
    `np.mean(f, 0)` and `np.cov(f, rowvar=False)` of all features.

    Args:
        feature_extractor: Keras model or callable, images -> `(B, F)`.
        value_range: `(low, high)` of valid pixel values, checked on every
            batch with a tolerance of 0.1 % of the range (clip samples to
            it), or `None` to skip the check. Defaults to `(-1.0, 1.0)`.
        quantize: bool (default True): clip every batch to `value_range` and
            round it to the 256 levels of uint8 pixels before the feature
            extractor, as the reference implementations do (EDM and the TTUR
            code save samples as uint8 PNGs first; pytorch-fid reads uint8
            files). Images that are already uint8 levels (`x / 127.5 - 1`)
            are unchanged. Needs a `value_range`; False feeds the values as
            they are.

    Example:

    >>> fid = keras_gcm.metrics.FrechetInceptionDistance(lambda x: np.reshape(x, (len(x), -1)))
    >>> fid.update(np.random.uniform(-1, 1, (64, 2, 2, 1)))
    >>> fid.update(np.random.uniform(-1, 1, (36, 2, 2, 1)))
    >>> mu, cov = fid.statistics()
    >>> fid.num_samples, mu.shape, cov.shape
    (100, (4,), (4, 4))

    The FID of generated samples against CIFAR-10 reference statistics
    (see `keras_gcm.metrics.inception` for the whole recipe):

    >>> inception = keras_gcm.metrics.fid_inception_v3("pt_inception-2015-12-05-6726825d.pth")
    ... # doctest: +SKIP
    >>> fid = keras_gcm.metrics.FrechetInceptionDistance(inception)  # doctest: +SKIP
    >>> fid.update_from_dataset(samples, max_images=50000)  # doctest: +SKIP
    >>> fid.result("cifar10_train_fid.npz")  # doctest: +SKIP
    """

    def __init__(self, feature_extractor, value_range=(-1.0, 1.0), quantize=True):
        if not callable(feature_extractor):
            raise ValueError(
                "`feature_extractor` must be a Keras model or a callable; "
                f"received {type(feature_extractor).__name__}."
            )
        if value_range is not None:
            low, high = value_range
            if not low < high:
                raise ValueError(
                    f"`value_range` must be (low, high) with low < high; "
                    f"received {value_range}."
                )
        if quantize and value_range is None:
            raise ValueError(
                "`quantize=True` rounds images to the uint8 levels of `value_range`; "
                "give a `value_range` (e.g. (-1.0, 1.0)) or pass `quantize=False`."
            )
        self.feature_extractor = feature_extractor
        self.value_range = value_range
        self.quantize = bool(quantize)
        self.reset()

    def reset(self):
        """Forgets all accumulated statistics."""
        self.num_samples = 0
        self._shift = None
        self._sum = None
        self._sum_outer = None

    @property
    def num_features(self):
        """Feature dimension, or `None` before the first update."""
        return None if self._shift is None else self._shift.shape[0]

    def extract_features(self, images):
        """Runs the extractor on one batch and returns float64 features."""
        if isinstance(self.feature_extractor, keras.Model):
            features = self.feature_extractor.predict_on_batch(images)
        else:
            features = self.feature_extractor(images)
        return np.asarray(keras.ops.convert_to_numpy(features), np.float64)

    def _check_images(self, images):
        shape = tuple(images.shape)
        if len(shape) < 2:
            raise ValueError(
                "`images` must be a batch with a leading batch axis, e.g. "
                f"(batch, height, width, channels); received shape {shape}."
            )
        if self.value_range is not None and shape[0]:
            low, high = self.value_range
            tolerance = 1e-3 * (high - low)
            if isinstance(images, np.ndarray):
                lowest, highest = float(images.min()), float(images.max())
            else:
                lowest = float(keras.ops.convert_to_numpy(keras.ops.min(images)))
                highest = float(keras.ops.convert_to_numpy(keras.ops.max(images)))
            if lowest < low - tolerance or highest > high + tolerance:
                raise ValueError(
                    f"Image values must lie in {self.value_range}; this batch "
                    f"spans [{lowest:.4g}, {highest:.4g}]. Clip generated "
                    "samples first (e.g. `np.clip(x, -1, 1)`) or rescale "
                    "uint8 images with `x / 127.5 - 1`."
                )
        return shape[0]

    def update_features(self, features):
        """Adds a batch of precomputed features of shape `(B, F)`."""
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2:
            raise ValueError(
                "Features must have shape (batch, features); received shape "
                f"{features.shape}. A feature extractor must return one "
                "feature vector per image (pool spatial maps first)."
            )
        if not np.all(np.isfinite(features)):
            raise ValueError("Features contain NaN or infinite values.")
        if features.shape[0] == 0:
            return
        if self._shift is None:
            self._shift = features.mean(axis=0)
            dim = features.shape[1]
            self._sum = np.zeros(dim, np.float64)
            self._sum_outer = np.zeros((dim, dim), np.float64)
        elif features.shape[1] != self._shift.shape[0]:
            raise ValueError(
                f"Features have {features.shape[1]} dimensions but earlier "
                f"batches had {self._shift.shape[0]}."
            )
        centred = features - self._shift
        self._sum += centred.sum(axis=0)
        self._sum_outer += centred.T @ centred
        self.num_samples += features.shape[0]

    def update(self, images):
        """Extracts the features of one batch of images and accumulates them.

        Args:
            images: batch of channels-last images in `value_range`.
        """
        if not hasattr(images, "shape"):
            images = np.asarray(images)
        batch = self._check_images(images)
        if self.quantize:
            images = quantize_to_uint8_levels(images, self.value_range)
        features = self.extract_features(images)
        if features.ndim != 2 or features.shape[0] != batch:
            raise ValueError(
                "The feature extractor must map a batch of "
                f"{batch} images to an array of shape ({batch}, features); "
                f"it returned shape {features.shape}."
            )
        self.update_features(features)

    def update_from_dataset(
        self, dataset, batch_size=250, max_images=None, progress=True
    ):
        """Accumulates the features of every image of a data set.

        Args:
            dataset: a NumPy array / tensor of images `(N, H, W, C)` (split
                into batches of `batch_size`), a `tf.data.Dataset` (of
                single images, which are batched, or of batches), or any
                iterable of batches. Batches may be `(images, labels)` tuples
                or dicts with an `"image"` key.
            batch_size: int, batch size used to split arrays and unbatched
                `tf.data` data sets.
            max_images: optional int, stop after this many images (e.g.
                50000 for the standard FID).
            progress: bool, show a `keras.utils.Progbar`.

        Returns:
            The number of images added.
        """
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1; received {batch_size}.")
        if max_images is not None and max_images < 1:
            raise ValueError(f"`max_images` must be >= 1; received {max_images}.")
        batches, total = self._iterate_batches(dataset, batch_size)
        if max_images is not None:
            total = max_images if total is None else min(total, max_images)
        progbar = keras.utils.Progbar(total, unit_name="image") if progress else None
        added = 0
        for batch in batches:
            images = _first_element(batch)
            if max_images is not None and added + len(images) > max_images:
                images = images[: max_images - added]
            self.update(images)
            added += len(images)
            if progbar is not None:
                progbar.update(added)
            if max_images is not None and added >= max_images:
                break
        if progbar is not None and total is None:
            progbar.update(added, finalize=True)
        return added

    @staticmethod
    def _iterate_batches(dataset, batch_size):
        if hasattr(dataset, "element_spec") and hasattr(dataset, "batch"):
            # A tf.data.Dataset: batch it if its elements are single images.
            spec = _first_element(dataset.element_spec)
            if spec.shape.rank == 3:
                dataset = dataset.batch(batch_size)
            return dataset.as_numpy_iterator(), None
        if hasattr(dataset, "shape") and hasattr(dataset, "__getitem__"):
            count = int(dataset.shape[0])
            batches = (
                dataset[start : start + batch_size]
                for start in range(0, count, batch_size)
            )
            return batches, count
        if hasattr(dataset, "__iter__"):
            return iter(dataset), None
        raise ValueError(
            "`dataset` must be an array of images, a tf.data.Dataset or an "
            f"iterable of batches; received {type(dataset).__name__}."
        )

    def statistics(self):
        """Returns `(mu, cov)` of all features seen, in float64.

        `cov` is the unbiased sample covariance (`np.cov`, divisor `n - 1`).
        """
        if self.num_samples < 2:
            raise ValueError(
                "At least 2 images are needed for a covariance; "
                f"{self.num_samples} have been added."
            )
        n = self.num_samples
        mean_offset = self._sum / n
        mu = self._shift + mean_offset
        cov = (self._sum_outer - n * np.outer(mean_offset, mean_offset)) / (n - 1)
        cov = 0.5 * (cov + cov.T)
        return mu, cov

    def result(self, reference_stats):
        """Fréchet distance between the accumulated and reference statistics.

        Args:
            reference_stats: `(mu, cov)` pair or path of an `.npz` file
                (see `load_statistics`).

        Returns:
            The squared Fréchet distance (the FID with Inception features).
        """
        ref_mu, ref_cov = _as_reference(reference_stats)
        mu, cov = self.statistics()
        if mu.shape != ref_mu.shape:
            raise ValueError(
                f"The reference statistics have {ref_mu.shape[0]} features "
                f"but the extractor produces {mu.shape[0]}."
            )
        return frechet_distance(mu, cov, ref_mu, ref_cov)


def compute_statistics(
    feature_extractor, images_or_dataset, batch_size=250, progress=True,
    max_images=None, quantize=True,
):
    """Feature mean and covariance of a set of images, streamed in batches.

    Args:
        feature_extractor: Keras model or callable, images in `[-1, 1]`
            `(B, H, W, C)` -> features `(B, F)`.
        images_or_dataset: array of images, `tf.data.Dataset` or iterable of
            batches (see `FrechetInceptionDistance.update_from_dataset`).
        batch_size: int, batch size for arrays and unbatched data sets.
        progress: bool, show a `keras.utils.Progbar`.
        max_images: optional int, use at most this many images.
        quantize: bool, round to uint8 levels first (see
            `FrechetInceptionDistance`; uint8 data sets are unchanged by it).

    Returns:
        A tuple `(mu, cov)` of float64 arrays of shapes `(F,)`, `(F, F)`.

    Example:

    >>> extractor = lambda x: x.reshape(len(x), -1)
    >>> images = np.random.uniform(-1, 1, (100, 4, 4, 1))
    >>> mu, cov = keras_gcm.metrics.compute_statistics(extractor, images, batch_size=32,
    ...                              progress=False)
    >>> mu.shape, cov.shape
    ((16,), (16, 16))
    """
    fid = FrechetInceptionDistance(feature_extractor, quantize=quantize)
    fid.update_from_dataset(
        images_or_dataset,
        batch_size=batch_size,
        max_images=max_images,
        progress=progress,
    )
    return fid.statistics()
