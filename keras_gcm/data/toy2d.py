"""Two-dimensional toy distributions for quick consistency-model experiments.

Every distribution is scaled so that its samples lie roughly in [-1, 1]^2 with
a per-coordinate standard deviation near 0.5, the `sigma_data` the model's
preconditioning assumes. The scaling of each data set (in the units of the
returned samples):

- `checkerboard`: uniform on the 8 "black" cells of a 4 x 4 board on
  [-1, 1]^2 (cell (i, j), i the column and j the row from the lower left, is
  occupied when i + j is even). Per-coordinate std 1/sqrt(3) = 0.577
  (uniform marginals).
- `eight_gaussians`: 8 equally likely Gaussians of std 0.05 centred on the
  circle of radius 0.7 at angles 2 pi k / 8. Per-coordinate std
  sqrt(0.7^2 / 2 + 0.05^2) = 0.497.
- `two_moons`: scikit-learn's two interleaved half circles (upper
  `(cos t, sin t)`, lower `(1 - cos t, 1/2 - sin t)`, `t ~ U[0, pi]`, noise
  std 0.1), shifted by their mean (0.5, 0.25) and scaled by 2/3 (shape kept).
  Per-coordinate std 0.58 (x) and 0.34 (y).
- `swiss_roll`: the Archimedean spiral `t (cos t, sin t)`,
  `t ~ U[1.5 pi, 4.5 pi]`, noise std 0.3, scaled by 1 / (4.5 pi) so the
  outer end has radius 1 (not re-centred: mean about (0.14, 0)).
  Per-coordinate std about 0.48.
- `rings`: 4 concentric circles of radii 0.25, 0.5, 0.75, 1.0, equally
  likely, uniform angle, radial noise std 0.02. Per-coordinate std 0.48.
- `pinwheel`: 5 arms; radius `1 + 0.3 z`, tangential noise 0.1, rotated to
  `2 pi k / 5 + 0.25 exp(radius)`, all scaled by 0.65. Per-coordinate std
  about 0.48.
"""

import numpy as np

TOY2D_NAMES = (
    "checkerboard",
    "eight_gaussians",
    "two_moons",
    "swiss_roll",
    "rings",
    "pinwheel",
)
"""Names accepted by `toy2d`.

Example:

>>> "two_moons" in TOY2D_NAMES
True
"""

# Constants of the constructions (see the module docstring).
EIGHT_GAUSSIANS_RADIUS = 0.7
EIGHT_GAUSSIANS_STD = 0.05
TWO_MOONS_NOISE = 0.1
TWO_MOONS_SCALE = 2.0 / 3.0
TWO_MOONS_CENTRE = (0.5, 0.25)
SWISS_ROLL_NOISE = 0.3
SWISS_ROLL_SCALE = 1.0 / (4.5 * np.pi)
RINGS_RADII = (0.25, 0.5, 0.75, 1.0)
RINGS_NOISE = 0.02
PINWHEEL_ARMS = 5
PINWHEEL_RADIAL_STD = 0.3
PINWHEEL_TANGENTIAL_STD = 0.1
PINWHEEL_RATE = 0.25
PINWHEEL_SCALE = 0.65


def _checkerboard(rng, n):
    # Pick one of the 8 black cells (i + j even) of the 4 x 4 board, then a
    # uniform point inside it. Cells have width 0.5; cell (i, j) spans
    # [-1 + 0.5 i, -0.5 + 0.5 i] x [-1 + 0.5 j, -0.5 + 0.5 j].
    column = rng.integers(0, 4, size=n)
    row = 2 * rng.integers(0, 2, size=n) + (column % 2)
    offsets = rng.uniform(0.0, 0.5, size=(n, 2))
    return np.stack([-1.0 + 0.5 * column, -1.0 + 0.5 * row], axis=1) + offsets


def _eight_gaussians(rng, n):
    angles = 2.0 * np.pi * rng.integers(0, 8, size=n) / 8.0
    centres = EIGHT_GAUSSIANS_RADIUS * np.stack(
        [np.cos(angles), np.sin(angles)], axis=1
    )
    return centres + EIGHT_GAUSSIANS_STD * rng.normal(size=(n, 2))


def _two_moons(rng, n):
    # Upper moon (cos t, sin t), lower moon (1 - cos t, 1/2 - sin t),
    # t ~ U[0, pi], each point on either with probability 1/2.
    t = rng.uniform(0.0, np.pi, size=n)
    lower = rng.integers(0, 2, size=n).astype(bool)
    x = np.where(lower, 1.0 - np.cos(t), np.cos(t))
    y = np.where(lower, 0.5 - np.sin(t), np.sin(t))
    points = np.stack([x, y], axis=1) + TWO_MOONS_NOISE * rng.normal(
        size=(n, 2)
    )
    return TWO_MOONS_SCALE * (points - np.array(TWO_MOONS_CENTRE))


def _swiss_roll(rng, n):
    t = 1.5 * np.pi * (1.0 + 2.0 * rng.uniform(size=n))
    points = t[:, None] * np.stack([np.cos(t), np.sin(t)], axis=1)
    points += SWISS_ROLL_NOISE * rng.normal(size=(n, 2))
    return SWISS_ROLL_SCALE * points


def _rings(rng, n):
    radii = np.asarray(RINGS_RADII)[rng.integers(0, len(RINGS_RADII), size=n)]
    radii = radii + RINGS_NOISE * rng.normal(size=n)
    angles = rng.uniform(0.0, 2.0 * np.pi, size=n)
    return radii[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _pinwheel(rng, n):
    arm = rng.integers(0, PINWHEEL_ARMS, size=n)
    radial = 1.0 + PINWHEEL_RADIAL_STD * rng.normal(size=n)
    tangential = PINWHEEL_TANGENTIAL_STD * rng.normal(size=n)
    angles = 2.0 * np.pi * arm / PINWHEEL_ARMS + PINWHEEL_RATE * np.exp(radial)
    cos, sin = np.cos(angles), np.sin(angles)
    points = np.stack(
        [cos * radial - sin * tangential, sin * radial + cos * tangential],
        axis=1,
    )
    return PINWHEEL_SCALE * points


_SAMPLERS = {
    "checkerboard": _checkerboard,
    "eight_gaussians": _eight_gaussians,
    "two_moons": _two_moons,
    "swiss_roll": _swiss_roll,
    "rings": _rings,
    "pinwheel": _pinwheel,
}


def toy2d(name, n, seed=None):
    """Draws `n` samples of a named two-dimensional toy distribution.

    All distributions are scaled to lie roughly in [-1, 1]^2 with a
    per-coordinate standard deviation near 0.5, the data scale
    (`sigma_data = 0.5`) the consistency model's preconditioning assumes;
    the module docstring lists each construction and its scaling.

    Args:
        name: One of `TOY2D_NAMES`: `"checkerboard"`, `"eight_gaussians"`,
            `"two_moons"`, `"swiss_roll"`, `"rings"`, `"pinwheel"`.
        n: Positive int, the number of samples.
        seed: Int, `numpy.random.Generator`-compatible seed, or `None` for
            fresh randomness. The same seed gives the same samples.

    Returns:
        A float32 NumPy array of shape `(n, 2)`.

    Raises:
        ValueError: If `name` is unknown (the message lists the valid names)
            or `n` is not a positive integer.

    Example:

    >>> points = keras_gcm.data.toy2d("eight_gaussians", 1000, seed=0)
    >>> points.shape, points.dtype
    ((1000, 2), dtype('float32'))
    >>> bool(abs(points.std() - 0.5) < 0.05)
    True
    """
    if not isinstance(name, str) or name not in _SAMPLERS:
        raise ValueError(
            f"Unknown toy distribution {name!r}. Valid names: "
            f"{', '.join(TOY2D_NAMES)}."
        )
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(
            f"`n` must be a positive integer (the number of samples). "
            f"Received: n={n!r}"
        )
    rng = np.random.default_rng(seed)
    return _SAMPLERS[name](rng, int(n)).astype(np.float32)
