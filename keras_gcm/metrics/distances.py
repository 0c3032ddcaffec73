"""Sample-based distances between distributions (NumPy, float64).

Two distances for comparing generated samples with fresh ground-truth samples:

- `energy_distance`: the (squared-type) energy distance
  `2 E||X - Y|| - E||X - X'|| - E||Y - Y'||`, zero exactly when the two
  distributions are equal; computed in blocks so that large sample sets never
  need a full pairwise-distance matrix.
- `sliced_wasserstein2`: the sliced Wasserstein-2 distance, the root mean
  square over random unit directions of the exact 1-D Wasserstein-2 distance
  between the projected samples.

Both accept samples of any trailing shape (images are flattened) and need no
Keras backend.
"""

import numpy as np


def _as_samples(array, arg_name, min_samples=1):
    """Converts samples to a finite float64 matrix of shape (num, dim)."""
    values = np.asarray(array)
    if values.dtype == object or not (
        np.issubdtype(values.dtype, np.number) or values.dtype == bool
    ):
        raise ValueError(
            f"`{arg_name}` must be a numeric array. "
            f"Received an array of dtype {values.dtype}."
        )
    if np.iscomplexobj(values):
        raise ValueError(f"`{arg_name}` must be real, got complex values.")
    values = values.astype(np.float64)
    if values.ndim == 0:
        raise ValueError(
            f"`{arg_name}` must hold samples along its first axis, shape "
            f"(num_samples,) or (num_samples, ...). Received a scalar."
        )
    if values.ndim == 1:
        values = values[:, None]
    else:
        values = values.reshape(values.shape[0], int(np.prod(values.shape[1:])))
    if values.shape[0] < min_samples:
        raise ValueError(
            f"`{arg_name}` needs at least {min_samples} samples. "
            f"Received shape {np.shape(array)}."
        )
    if values.shape[1] == 0:
        raise ValueError(
            f"`{arg_name}` has samples of size 0. Received shape "
            f"{np.shape(array)}."
        )
    if not np.all(np.isfinite(values)):
        raise ValueError(f"`{arg_name}` contains NaN or infinite values.")
    return values


def _check_same_dim(x, y):
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            "`x` and `y` must have samples of the same size after flattening "
            f"the trailing axes. Received {x.shape[1]} and {y.shape[1]} "
            "features."
        )


def _check_positive_int(value, arg_name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(
            f"`{arg_name}` must be a positive integer. Received: {value!r}"
        )
    if value < 1:
        raise ValueError(
            f"`{arg_name}` must be a positive integer. Received: {value!r}"
        )


# Up to this many features, distances are formed from coordinate differences
# (exact, and faster than a thin matrix product); above it from the expansion
# |a|^2 + |b|^2 - 2 a.b, which uses the matrix product.
_DIRECT_MAX_FEATURES = 4


def _block_distance_sum(a, b, a_sq, b_sq, zero_diagonal=False):
    """Sum of Euclidean distances between the rows of `a` and `b`."""
    if a.shape[1] <= _DIRECT_MAX_FEATURES:
        sq = np.subtract.outer(a[:, 0], b[:, 0])
        sq *= sq
        for k in range(1, a.shape[1]):
            diff = np.subtract.outer(a[:, k], b[:, k])
            diff *= diff
            sq += diff
    else:
        sq = a @ (-2.0 * b.T)
        sq += a_sq[:, None]
        sq += b_sq[None, :]
        np.maximum(sq, 0.0, out=sq)
        if zero_diagonal:
            np.fill_diagonal(sq, 0.0)
    return float(np.sqrt(sq, out=sq).sum())


def _pairwise_distance_sum(a, b, chunk_size):
    """Sum over all pairs (i, j) of ||a_i - b_j||, in square blocks."""
    a_sq = np.einsum("ij,ij->i", a, a)
    b_sq = np.einsum("ij,ij->i", b, b)
    total = 0.0
    for i in range(0, len(a), chunk_size):
        for j in range(0, len(b), chunk_size):
            total += _block_distance_sum(
                a[i : i + chunk_size],
                b[j : j + chunk_size],
                a_sq[i : i + chunk_size],
                b_sq[j : j + chunk_size],
            )
    return total


def _within_distance_sum(a, chunk_size):
    """Sum over ordered pairs i != j of ||a_i - a_j|| (upper blocks only)."""
    a_sq = np.einsum("ij,ij->i", a, a)
    total = 0.0
    for i in range(0, len(a), chunk_size):
        for j in range(i, len(a), chunk_size):
            block = _block_distance_sum(
                a[i : i + chunk_size],
                a[j : j + chunk_size],
                a_sq[i : i + chunk_size],
                a_sq[j : j + chunk_size],
                zero_diagonal=i == j,
            )
            # A diagonal block holds both (i, j) and (j, i); an off-diagonal
            # block stands for itself and its mirror image.
            total += block if i == j else 2.0 * block
    return total


def energy_distance(x, y, chunk_size=1024, unbiased=True):
    """Energy distance `2 E||X-Y|| - E||X-X'|| - E||Y-Y'||` between samples.

    The energy distance (Szekely & Rizzo) of two distributions with finite
    first moments is non-negative and zero only when they are equal. This
    returns the squared-type quantity itself (no square root), estimated from
    samples `x` (n of them) and `y` (m of them):

    `D = 2 / (n m) sum_ij ||x_i - y_j||
         - 1 / (n (n - 1)) sum_{i != i'} ||x_i - x_i'||
         - 1 / (m (m - 1)) sum_{j != j'} ||y_j - y_j'||`.

    With `unbiased=True` (default) the within-set terms are U-statistics, so
    `D` is an unbiased estimate of the population energy distance: its
    expectation is 0 for two samples of the same distribution, and it can
    come out slightly negative then. With `unbiased=False` they are
    V-statistics (divide by `n^2`, `m^2`), the energy distance of the two
    empirical distributions, which is always >= 0.

    Relation to `scipy.stats.energy_distance(u, v)` for 1-D samples: scipy
    returns `sqrt(2 int (F_n - G_m)^2 dt)`, the square root of the
    V-statistic form, so `scipy ** 2 == energy_distance(u, v,
    unbiased=False)` and `energy_distance(u, v) == scipy ** 2 - A / n - B / m`
    with `A`, `B` the U-statistic means of `|x - x'|` and `|y - y'|`.

    The pairwise distances are summed in blocks of at most
    `chunk_size x chunk_size` (within-set terms over the upper blocks only),
    so 20,000 x 20,000 points need a few tens of MB, not a full matrix.
    Up to 4 features the distances come from coordinate differences
    (exact); above, from `|a|^2 + |b|^2 - 2 a.b` on data centred at the
    pooled mean (a matrix product, fast for images).

    Args:
        x: Array of shape `(n, ...)`: n samples; trailing axes (e.g. an
            image's height, width, channels) are flattened. A 1-D array is n
            scalar samples. Needs `n >= 2`.
        y: Array of shape `(m, ...)` with the same number of features after
            flattening, `m >= 2`.
        chunk_size: Positive int, the block size of the pairwise sums.
            Defaults to `1024` (an 8 MB float64 block).
        unbiased: Bool, U-statistics (default) or V-statistics for the
            within-set terms.

    Returns:
        The energy distance estimate, a Python float.

    Raises:
        ValueError: If the inputs are not numeric, have fewer than 2 samples,
            differ in their number of features, or contain NaN/inf; or if
            `chunk_size` is not a positive integer.

    Example:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(size=(2000, 2))
    >>> b = rng.normal(size=(2000, 2))
    >>> abs(keras_gcm.metrics.energy_distance(a, b)) < 0.01
    True
    >>> keras_gcm.metrics.energy_distance(a, b + 1.0) > 0.5
    True
    """
    _check_positive_int(chunk_size, "chunk_size")
    x = _as_samples(x, "x", min_samples=2)
    y = _as_samples(y, "y", min_samples=2)
    _check_same_dim(x, y)
    n, m = len(x), len(y)
    # Centre on the pooled mean: distances are unchanged, and the
    # |a|^2 + |b|^2 - 2 a.b expansion loses less to cancellation.
    centre = (x.sum(axis=0) + y.sum(axis=0)) / (n + m)
    x = x - centre
    y = y - centre
    cross = _pairwise_distance_sum(x, y, chunk_size) / (n * m)
    if unbiased:
        within_x = _within_distance_sum(x, chunk_size) / (n * (n - 1))
        within_y = _within_distance_sum(y, chunk_size) / (m * (m - 1))
    else:
        within_x = _within_distance_sum(x, chunk_size) / (n * n)
        within_y = _within_distance_sum(y, chunk_size) / (m * m)
    return 2.0 * cross - within_x - within_y


def _quantile_grid(n, m):
    """Breakpoints and interval masses of two empirical quantile functions.

    The quantile function of n equally weighted points is constant on the
    intervals ((k - 1) / n, k / n]; merging the breakpoints of both sample
    sizes gives intervals on which both are constant.

    Returns:
        `(index_x, index_y, weights)`: for each merged interval, the
        0-based order statistic of each sample in use there, and the
        interval's length (the weights sum to 1).
    """
    if n == m:
        index = np.arange(n)
        return index, index, np.full(n, 1.0 / n)
    # i / n and j / m are correctly rounded, so equal fractions give equal
    # floats and `unique` merges them.
    breaks = np.unique(
        np.concatenate([np.arange(1, n + 1) / n, np.arange(1, m + 1) / m])
    )
    lower = np.concatenate([[0.0], breaks[:-1]])
    middle = 0.5 * (lower + breaks)
    index_x = np.minimum(np.floor(middle * n).astype(np.int64), n - 1)
    index_y = np.minimum(np.floor(middle * m).astype(np.int64), m - 1)
    return index_x, index_y, breaks - lower


def sliced_wasserstein2(x, y, num_projections=256, seed=0):
    """Sliced Wasserstein-2 distance between two sets of samples.

    `SW2(X, Y) = sqrt(E_theta[W2^2(<theta, X>, <theta, Y>)])`, with `theta`
    uniform on the unit sphere, estimated with `num_projections` random
    directions (fixed by `seed`, so repeated calls compare like with like).
    Each 1-D `W2` is exact: `W2^2 = int_0^1 (F^-1(u) - G^-1(u))^2 du` between
    the empirical quantile functions, which for `n == m` is the mean squared
    difference of the sorted projections and for `n != m` is evaluated
    exactly on the merged grid of both quantile functions' breakpoints
    `{i / n} U {j / m}`.

    For two Gaussians with the same isotropic covariance whose means differ
    by a vector `mu` in `d` dimensions, every projection is a shift by
    `<theta, mu>`, so `SW2^2 = E[<theta, mu>^2] = |mu|^2 / d`. In 1-D
    (`d = 1`) the directions are +-1 and `SW2` is exactly `W2`.

    Args:
        x: Array of shape `(n, ...)`: n samples; trailing axes are flattened.
            A 1-D array is n scalar samples.
        y: Array of shape `(m, ...)` with the same number of features after
            flattening.
        num_projections: Positive int, the number of random directions.
            Defaults to `256`.
        seed: Int or `None`, seed of the random directions. Defaults to `0`.

    Returns:
        The sliced Wasserstein-2 distance, a Python float.

    Raises:
        ValueError: If the inputs are not numeric, are empty, differ in their
            number of features, or contain NaN/inf; or if `num_projections`
            is not a positive integer.

    Example:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(size=(4000, 2))
    >>> b = rng.normal(size=(3000, 2)) + np.array([2.0, 0.0])
    >>> # |mu| / sqrt(d) = 2 / sqrt(2)
    >>> round(keras_gcm.metrics.sliced_wasserstein2(a, b, num_projections=1024), 1)
    1.4
    """
    _check_positive_int(num_projections, "num_projections")
    x = _as_samples(x, "x")
    y = _as_samples(y, "y")
    _check_same_dim(x, y)
    dim = x.shape[1]
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(dim, num_projections))
    norms = np.linalg.norm(directions, axis=0)
    while np.any(norms == 0.0):  # measure-zero event; redraw those columns
        bad = norms == 0.0
        directions[:, bad] = rng.normal(size=(dim, int(bad.sum())))
        norms = np.linalg.norm(directions, axis=0)
    directions /= norms
    index_x, index_y, weights = _quantile_grid(len(x), len(y))
    # Projections in groups, to bound memory for large image sets.
    group = max(1, min(num_projections, 2**22 // max(len(x), len(y))))
    total = 0.0
    for start in range(0, num_projections, group):
        theta = directions[:, start : start + group]
        proj_x = np.sort(x @ theta, axis=0)[index_x]
        proj_y = np.sort(y @ theta, axis=0)[index_y]
        total += float(weights @ np.square(proj_x - proj_y).sum(axis=1))
    return float(np.sqrt(total / num_projections))
