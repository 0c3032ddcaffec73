"""Time distributions and joint (t, s) samplers (sections 3.3-3.4, appendix E).

Unit-interval distributions (`UniformTime`, `SineTime`, `CoshTime`,
`UniformPowerTime`) live on [0, 1] and expose `pdf`, `cdf`, `icdf` and
`sample`. Joint samplers map them to the training interval [t0, tT]:

* `ConstantUpperLimit` (CU): `s = t0`, `t = t0 + (tT - t0) q`.
* `VariableUpperLimit` (VU): `s = t0 + (tT - t0) q_s`, then
  `t = s + (tT - s) q_t` (appendix E.2's s-then-t order; IMM's t-then-s order
  is an option).

Both return `(t, s)` and the conditional density `p(t | s)` on [s, tT] that
turns the loss weight `w(t)` into the importance weight `w(t) / p(t | s)`
(section 3.3).

Unit-interval variates are drawn in the *open* interval (0, 1): a draw of
exactly 0 would put `t` on `s` and make the loss 0/0.
"""

import math

import numpy as np
import keras
from keras import ops

#: Readings of the VU importance density (section 3.3): `p(t | s)` or `p_q(q)`.
IMPORTANCE_DENSITIES = ("conditional", "unit")

# Smallest unit variate used; float32 keeps 1 - _TINY < 1.
_TINY = 1e-7


def _register(cls):
    return keras.saving.register_keras_serializable(package="keras_gcm")(cls)


def open_unit_interval(u):
    """Clips uniform variates from [0, 1) into the open interval (0, 1).

    A draw of exactly 0 would put `t` on `s` and make the loss 0/0; the clip
    keeps every variate in `[1e-7, 1 - 1e-7]`.

    Args:
        u: a tensor of uniform variates.

    Returns:
        The clipped tensor.

    Example:

    >>> u = keras.ops.convert_to_tensor([0.0, 0.5])
    >>> print(keras.ops.convert_to_numpy(keras_gcm.time_sampling.open_unit_interval(u)))
    [1.e-07 5.e-01]
    """
    return ops.clip(u, _TINY, 1.0 - _TINY)


class TimeDistribution(keras.layers.Layer):
    """Base class of distributions on the unit interval [0, 1].

    Subclasses implement `pdf`, `cdf` and `icdf`; `sample` draws open-interval
    uniforms and maps them with `from_uniform` (the inverse CDF unless a
    subclass samples differently).

    Args:
        seed: int or None, seed of the layer's `keras.random.SeedGenerator`
            used when `sample` is called without a seed.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    A triangular density `p(q) = 2 q` needs `pdf`, `cdf` and `icdf`:

    >>> class TriangularTime(keras_gcm.time_sampling.TimeDistribution):
    ...     def pdf(self, q):
    ...         return 2.0 * q
    ...     def cdf(self, q):
    ...         return q * q
    ...     def icdf(self, u):
    ...         return keras.ops.sqrt(u)
    >>> q = TriangularTime(seed=0).sample((1000,))  # mean about 2/3
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    @property
    def num_uniforms(self):
        """How many independent uniforms `from_uniform` consumes per sample."""
        return 1

    def pdf(self, q):
        raise NotImplementedError

    def cdf(self, q):
        raise NotImplementedError

    def icdf(self, u):
        raise NotImplementedError

    def from_uniform(self, u):
        """Maps open-interval uniforms to samples; `u` has a trailing axis of
        size `num_uniforms` when that is larger than 1."""
        return self.icdf(u)

    def sample(self, shape, seed=None):
        """Draws samples of the given shape in the open interval (0, 1).

        Args:
            shape: tuple of ints.
            seed: None (use the layer's seed generator), an int, a
                `keras.random.SeedGenerator`, or a callable `shape -> float32
                uniforms in [0, 1)` that supplies the uniform variates (e.g.
                the backend-independent evaluation draws of
                `keras_gcm.portable_random`).

        Returns:
            A float32 tensor of `shape`.
        """
        seed = self.seed_generator if seed is None else seed
        shape = tuple(shape)
        if self.num_uniforms > 1:
            shape = shape + (self.num_uniforms,)
        if callable(seed) and not isinstance(seed, keras.random.SeedGenerator):
            u = seed(shape)
        else:
            u = keras.random.uniform(shape, 0.0, 1.0, seed=seed, dtype="float32")
        return self.from_uniform(open_unit_interval(u))

    def call(self, q):
        return self.pdf(q)

    def get_config(self):
        config = super().get_config()
        config.update({"seed": self.seed})
        return config


@_register
class UniformTime(TimeDistribution):
    """Uniform distribution on [0, 1] (the baseline's t-sampling).

    Example:

    >>> dist = keras_gcm.time_sampling.UniformTime(seed=0)
    >>> q = dist.sample((4,))
    """

    def pdf(self, q):
        return ops.ones_like(ops.convert_to_tensor(q, "float32"))

    def cdf(self, q):
        return ops.clip(ops.convert_to_tensor(q, "float32"), 0.0, 1.0)

    def icdf(self, u):
        return ops.convert_to_tensor(u, "float32")


@_register
class SineTime(TimeDistribution):
    """Sine distribution `p(q) ∝ sin(pi/2 (a q + b (1 - q)))` (Eq. 15).

    With `a > b` it puts more mass near q = 1 (high noise). Sampled by the
    inverse CDF of Eq. 41, evaluated through half-angle identities so that it
    stays accurate in float32 near q = 0.

    Args:
        a: float, shape parameter at q = 1 (default 1).
        b: float, shape parameter at q = 0 (default 0.01).
        seed: int or None.

    Example:

    >>> dist = keras_gcm.time_sampling.SineTime(a=1.0, b=0.01, seed=0)
    >>> q = dist.sample((1024,))
    >>> t = keras.ops.convert_to_tensor([0.0, 1.0])
    >>> print(keras.ops.convert_to_numpy(dist.pdf(t)).round(4))  # about [0.02443, 1.5553]
    [0.0244 1.5553]
    """

    def __init__(self, a=1.0, b=0.01, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        a, b = float(a), float(b)
        if a == b:
            raise ValueError(f"`a` and `b` must differ. Received: a={a}, b={b}")
        if not (0.0 < min(a, b) and max(a, b) < 2.0):
            raise ValueError(
                "The sine density must be positive on [0, 1]: need "
                f"0 < a, b < 2. Received: a={a}, b={b}"
            )
        self.a, self.b = a, b
        half = 0.5 * math.pi
        # sin^2(theta / 2) at q = 0 and q = 1, with theta = pi/2 (a q + b (1-q)).
        self._sb = math.sin(half * b / 2.0) ** 2
        self._sa = math.sin(half * a / 2.0) ** 2
        self._norm = half * (a - b) / (2.0 * (self._sa - self._sb))

    def _theta(self, q):
        return 0.5 * math.pi * (self.a * q + self.b * (1.0 - q))

    def pdf(self, q):
        q = ops.convert_to_tensor(q, "float32")
        return self._norm * ops.sin(self._theta(q))

    def cdf(self, q):
        q = ops.clip(ops.convert_to_tensor(q, "float32"), 0.0, 1.0)
        # cos(theta_b) - cos(theta) = 2 sin^2(theta/2) - 2 sin^2(theta_b/2).
        s = ops.square(ops.sin(0.5 * self._theta(q)))
        return (s - self._sb) / (self._sa - self._sb)

    def icdf(self, u):
        """Inverse CDF, Eq. 41 (rewritten with sin^2 of half angles)."""
        u = ops.convert_to_tensor(u, "float32")
        s = self._sb + u * (self._sa - self._sb)
        theta = 2.0 * ops.arcsin(ops.sqrt(ops.clip(s, 0.0, 1.0)))
        q = (theta / (0.5 * math.pi) - self.b) / (self.a - self.b)
        return ops.clip(q, 0.0, 1.0)

    def get_config(self):
        config = super().get_config()
        config.update({"a": self.a, "b": self.b})
        return config


@_register
class CoshTime(TimeDistribution):
    """Cosh distribution `p(q) ∝ cosh(a q + b (1 - q))` (Eq. 16).

    Sampled by the inverse CDF of Eq. 42.

    Args:
        a: float (default 1.5).
        b: float (default 0).
        seed: int or None.

    Example:

    >>> dist = keras_gcm.time_sampling.CoshTime(a=1.5, b=0.0, seed=0)
    >>> q = dist.sample((1024,))
    """

    def __init__(self, a=1.5, b=0.0, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        a, b = float(a), float(b)
        if a == b:
            raise ValueError(f"`a` and `b` must differ. Received: a={a}, b={b}")
        self.a, self.b = a, b
        self._sinh_a, self._sinh_b = math.sinh(a), math.sinh(b)

    def pdf(self, q):
        q = ops.convert_to_tensor(q, "float32")
        norm = (self.a - self.b) / (self._sinh_a - self._sinh_b)
        return norm * ops.cosh(self.a * q + self.b * (1.0 - q))

    def cdf(self, q):
        q = ops.clip(ops.convert_to_tensor(q, "float32"), 0.0, 1.0)
        x = (self.a - self.b) * q + self.b
        return (ops.sinh(x) - self._sinh_b) / (self._sinh_a - self._sinh_b)

    def icdf(self, u):
        """Inverse CDF, Eq. 42."""
        u = ops.convert_to_tensor(u, "float32")
        x = ops.arcsinh(self._sinh_b + u * (self._sinh_a - self._sinh_b))
        return ops.clip((x - self.b) / (self.a - self.b), 0.0, 1.0)

    def get_config(self):
        config = super().get_config()
        config.update({"a": self.a, "b": self.b})
        return config


# Gauss-Legendre rule on [0, 1] for the uniform-power integrals.
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(64)
_GL_NODES = (0.5 * (_GL_NODES + 1.0)).astype("float32")
_GL_WEIGHTS = (0.5 * _GL_WEIGHTS).astype("float32")


@_register
class UniformPowerTime(TimeDistribution):
    """Uniform-power distribution for the upper limit s (Eq. 17, appendix E.2).

    Sampled as `q = u (1 - (1 - v)^(1/nu))` with u, v uniform: the product of
    a uniform and a Beta(1, nu) variable. Its density (Eq. 17)

        p(q) = nu * integral_q^1 (1/tau) (1 - q/tau)^(nu - 1) dtau

    has a logarithmic singularity at q = 0. With `tau = q^(1-w)` it becomes
    `nu (-log q) integral_0^1 (1 - q^w)^(nu-1) dw`, and the CDF
    `q + (-log q) integral_0^1 (1 - (1 - q^w)^nu) q^(1-w) dw`; both are
    evaluated with a 64-point Gauss-Legendre rule. The inverse CDF bisects
    `log q`.

    Args:
        nu: float >= 1, the decay of the density (4 on CIFAR-10, Fig. 7f).
        seed: int or None.

    Example:

    >>> dist = keras_gcm.time_sampling.UniformPowerTime(nu=4, seed=0)
    >>> s = dist.sample((1024,))  # concentrated near 0
    """

    _ICDF_LOG_MIN = -40.0
    _ICDF_ITERATIONS = 48

    def __init__(self, nu=4.0, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        nu = float(nu)
        if nu < 1.0:
            raise ValueError(f"`nu` must be >= 1. Received: nu={nu}")
        self.nu = nu

    @property
    def num_uniforms(self):
        return 2

    def from_uniform(self, u):
        u = ops.convert_to_tensor(u, "float32")
        u1, v = u[..., 0], u[..., 1]
        beta = 1.0 - ops.power(1.0 - v, 1.0 / self.nu)
        return u1 * beta

    def _log_q_powers(self, q):
        q = ops.clip(ops.convert_to_tensor(q, "float32"), 1e-30, 1.0)
        log_q = ops.log(q)
        # q^w for every quadrature node w: shape q.shape + (64,).
        powers = ops.exp(ops.expand_dims(log_q, -1) * _GL_NODES)
        return q, log_q, powers

    def pdf(self, q):
        q_in = ops.convert_to_tensor(q, "float32")
        _, log_q, powers = self._log_q_powers(q_in)
        integrand = ops.power(ops.maximum(1.0 - powers, 0.0), self.nu - 1.0)
        integral = ops.sum(integrand * _GL_WEIGHTS, axis=-1)
        value = self.nu * (-log_q) * integral
        inside = ops.logical_and(q_in > 0.0, q_in <= 1.0)
        return ops.where(inside, value, ops.zeros_like(value))

    def cdf(self, q):
        q_in = ops.convert_to_tensor(q, "float32")
        q, log_q, powers = self._log_q_powers(q_in)
        one_minus = ops.power(ops.maximum(1.0 - powers, 0.0), self.nu)
        # q^(1 - w) = q / q^w.
        q_pow = ops.exp(ops.expand_dims(log_q, -1) * (1.0 - _GL_NODES))
        integral = ops.sum((1.0 - one_minus) * q_pow * _GL_WEIGHTS, axis=-1)
        value = q + (-log_q) * integral
        value = ops.where(q_in <= 0.0, ops.zeros_like(value), value)
        return ops.where(q_in >= 1.0, ops.ones_like(value), ops.clip(value, 0.0, 1.0))

    def icdf(self, u):
        u = ops.convert_to_tensor(u, "float32")
        lo = ops.full_like(u, self._ICDF_LOG_MIN)
        hi = ops.zeros_like(u)
        for _ in range(self._ICDF_ITERATIONS):
            mid = 0.5 * (lo + hi)
            below = self.cdf(ops.exp(mid)) < u
            lo = ops.where(below, mid, lo)
            hi = ops.where(below, hi, mid)
        return ops.exp(0.5 * (lo + hi))

    def get_config(self):
        config = super().get_config()
        config.update({"nu": self.nu})
        return config


class JointTimeSampler(keras.layers.Layer):
    """Base class of the joint (t, s) samplers on [t0, tT].

    Subclasses implement `_sample(n, seed)` (returning `(t, s)`) and
    `density(t, s)`; `ConstantUpperLimit` and `VariableUpperLimit` are the two
    the paper uses.

    Args:
        t0: float, data end of the training interval (0.006).
        tT: float, noise end of the training interval (0.994).
        seed: int or None, seed of the sampler's `SeedGenerator`.

    Example:

    >>> sampler = keras_gcm.time_sampling.ConstantUpperLimit(seed=0)  # a JointTimeSampler
    >>> t, s = sampler.sample(4, group_size=2)  # pairs share (t, s)
    """

    #: Whether the sampled upper limit s varies (VU) or is fixed at t0 (CU).
    variable_upper_limit = False

    def __init__(self, t0=0.006, tT=0.994, seed=None, **kwargs):
        super().__init__(**kwargs)
        t0, tT = float(t0), float(tT)
        if not 0.0 <= t0 < tT <= 1.0:
            raise ValueError(
                f"Need 0 <= t0 < tT <= 1. Received: t0={t0}, tT={tT}"
            )
        self.t0, self.tT = t0, tT
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def sample(self, batch_size, seed=None, group_size=1):
        """Draws `(t, s)`, each of shape (batch_size,).

        Args:
            batch_size: int.
            seed: None (the sampler's own generator), an int, a
                `SeedGenerator`, or a callable source of uniforms (see
                `TimeDistribution.sample`).
            group_size: int; with `group_size > 1` every group of
                `group_size` consecutive samples shares one (t, s) (the
                shared-time MMD of IMM, Table 7i).
        """
        if isinstance(batch_size, int) and batch_size % group_size:
            raise ValueError(
                f"batch size {batch_size} is not divisible by the group size "
                f"{group_size}."
            )
        seed = self.seed_generator if seed is None else seed
        t, s = self._sample(batch_size // group_size, seed)
        if group_size > 1:
            t = ops.repeat(t, group_size, axis=0)
            s = ops.repeat(s, group_size, axis=0)
        return t, s

    def _sample(self, n, seed):
        raise NotImplementedError

    def density(self, t, s):
        """Density `p(t | s)` of the sampled t on [s, tT] (importance weights)."""
        raise NotImplementedError

    def call(self, t, s):
        return self.density(t, s)

    def get_config(self):
        config = super().get_config()
        config.update({"t0": self.t0, "tT": self.tT, "seed": self.seed})
        return config


@_register
class ConstantUpperLimit(JointTimeSampler):
    """Constant-upper-limit (CU) times: `s = t0`, `t = t0 + (tT - t0) q`.

    Args:
        t_dist: a `TimeDistribution` for q on [0, 1] (uniform for the
            baseline, `SineTime()` for GCM).
        t0: float, default 0.006.
        tT: float, default 0.994.
        seed: int or None.

    Example:

    >>> sampler = keras_gcm.time_sampling.ConstantUpperLimit(
    ...     keras_gcm.time_sampling.SineTime(), seed=0)
    >>> t, s = sampler.sample(8)
    >>> p = sampler.density(t, s)  # p(t | s) on [s, tT]
    """

    variable_upper_limit = False

    def __init__(self, t_dist=None, t0=0.006, tT=0.994, seed=None, **kwargs):
        super().__init__(t0=t0, tT=tT, seed=seed, **kwargs)
        self.t_dist = _deserialize_dist(t_dist, UniformTime)

    def _sample(self, n, seed):
        q = self.t_dist.sample((n,), seed=seed)
        t = self.t0 + (self.tT - self.t0) * q
        s = ops.full_like(t, self.t0)
        return t, s

    def density(self, t, s):
        width = self.tT - s
        return self.t_dist.pdf((t - s) / width) / width

    def get_config(self):
        config = super().get_config()
        config.update({"t_dist": keras.saving.serialize_keras_object(self.t_dist)})
        return config


@_register
class VariableUpperLimit(JointTimeSampler):
    """Variable-upper-limit (VU) times (section 3.4, appendix E.2).

    With `order="s_first"` (the paper's): `s = t0 + (tT - t0) q_s` with
    `q_s ~ s_dist`, then `t = s + (tT - s) q_t` with `q_t ~ t_dist`, so the
    CU task is recovered as `s -> t0`, and `p(t | s) = p_t(q_t) / (tT - s)`.
    With `order="t_first"` (IMM's): `t = t0 + (tT - t0) q_t`, then
    `s = t0 + (t - t0) q_s`; the importance density is then the marginal
    `p_t(q_t) / (tT - t0)` of t.

    Importance weighting divides `w(t)` by `density(t, s)`. Section 3.3 can
    be read two ways under VU (`importance_density`):

    * `"unit"` (default; "sample with p, keep the effective weight"):
      `p_t(q_t)`, the density of `q = (t - s) / (tT - s)` on [0, 1], so that
      K keeps J's effective weight and changes only where t is drawn.
    * `"conditional"` (Table 1 read literally; the library's behaviour
      before this option): `p(t | s) = p_t(q_t) / (tT - s)`. Going from
      uniform sampling without importance weights (Table 3 J, effective
      weight `w(t) / (tT - s)`) to sine sampling with them (K) then also
      rescales every s by `tT - s`.

    `"unit"` gave better 2-step samples than `"conditional"` on rows K and L
    of both 2-D sets, beyond the seed spread (docs page "Choices the paper
    leaves open", `benchmarks/choices.py`).

    Args:
        s_dist: `TimeDistribution` for q_s (default `UniformPowerTime(nu=4)`).
        t_dist: `TimeDistribution` for q_t (default `UniformTime()`).
        order: "s_first" or "t_first".
        importance_density: "unit" (`p_q(q)`, default) or "conditional"
            (`p(t | s)`).
        t0: float, default 0.006.
        tT: float, default 0.994.
        seed: int or None.

    Example:

    >>> sampler = keras_gcm.time_sampling.VariableUpperLimit(
    ...     keras_gcm.time_sampling.UniformPowerTime(4),
    ...     keras_gcm.time_sampling.SineTime(), seed=0)
    >>> t, s = sampler.sample(8)  # t0 <= s < t <= tT
    """

    variable_upper_limit = True

    def __init__(self, s_dist=None, t_dist=None, order="s_first", t0=0.006, tT=0.994,
                 seed=None, importance_density="unit", **kwargs):
        super().__init__(t0=t0, tT=tT, seed=seed, **kwargs)
        if order not in ("s_first", "t_first"):
            raise ValueError(f"`order` must be 's_first' or 't_first'. Received: {order!r}")
        if importance_density not in IMPORTANCE_DENSITIES:
            raise ValueError(
                f"`importance_density` must be one of {IMPORTANCE_DENSITIES}. "
                f"Received: {importance_density!r}"
            )
        self.order = order
        self.importance_density = importance_density
        self.s_dist = _deserialize_dist(s_dist, lambda: UniformPowerTime(4.0))
        self.t_dist = _deserialize_dist(t_dist, UniformTime)

    def _sample(self, n, seed):
        q_s = self.s_dist.sample((n,), seed=seed)
        q_t = self.t_dist.sample((n,), seed=seed)
        if self.order == "s_first":
            s = self.t0 + (self.tT - self.t0) * q_s
            t = s + (self.tT - s) * q_t
        else:
            t = self.t0 + (self.tT - self.t0) * q_t
            s = self.t0 + (t - self.t0) * q_s
        return t, s

    def density(self, t, s):
        lower = s if self.order == "s_first" else self.t0
        width = self.tT - lower
        density = self.t_dist.pdf((t - lower) / width)
        if self.importance_density == "unit":
            return density
        return density / width

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "s_dist": keras.saving.serialize_keras_object(self.s_dist),
                "t_dist": keras.saving.serialize_keras_object(self.t_dist),
                "order": self.order,
                "importance_density": self.importance_density,
            }
        )
        return config


def _deserialize_dist(dist, default):
    if dist is None:
        return default()
    if isinstance(dist, dict):
        dist = keras.saving.deserialize_keras_object(dist)
    if not isinstance(dist, TimeDistribution):
        raise TypeError(
            f"Expected a keras_gcm TimeDistribution. Received: {dist!r}"
        )
    return dist


# ------------------------------------------------ Table 7e / Table 11 densities
def _normal_cdf(x):
    return 0.5 * (1.0 + ops.erf(x / math.sqrt(2.0)))


def _normal_icdf(u):
    return math.sqrt(2.0) * ops.erfinv(2.0 * u - 1.0)


def _normal_pdf(x):
    return ops.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


@_register
class LogitNormalTime(TimeDistribution):
    """Logit-normal distribution `q = sigmoid(n)`, `n ~ N(mean, std^2)` (Table 7e).

    MeanFlow's time sampler (Geng et al., 2025, "Mean Flows for One-step
    Generative Modeling", section 4: `lognorm(mean, std)`; CIFAR-10 uses
    (-2.0, 2.0), ImageNet (-0.4, 1.0)). It is also EDM's log-normal noise
    sampling `ln sigma ~ N(P_mean, P_std^2)` read in OT-flow time, since
    `t / (1 - t) = sigma` there.

        pdf(q) = phi((logit q - mean) / std) / (std q (1 - q)),
        cdf(q) = Phi((logit q - mean) / std).

    Args:
        mean: float, mean of the logit (default -2.0, MeanFlow's CIFAR-10).
        std: float > 0, its standard deviation (default 2.0).
        seed: int or None.

    Example:

    >>> dist = keras_gcm.time_sampling.LogitNormalTime(-0.4, 1.0, seed=0)
    >>> q = dist.sample((1024,))  # median sigmoid(-0.4) = 0.401
    """

    def __init__(self, mean=-2.0, std=2.0, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not std > 0:
            raise ValueError(f"`std` must be positive. Received: std={std}")
        self.mean, self.std = float(mean), float(std)

    def _z(self, q):
        q = ops.clip(ops.convert_to_tensor(q, "float32"), 1e-12, 1.0 - 1e-7)
        return q, (ops.log(q) - ops.log1p(-q) - self.mean) / self.std

    def pdf(self, q):
        q_in = ops.convert_to_tensor(q, "float32")
        q, z = self._z(q_in)
        value = _normal_pdf(z) / (self.std * q * (1.0 - q))
        inside = ops.logical_and(q_in > 0.0, q_in < 1.0)
        return ops.where(inside, value, ops.zeros_like(value))

    def cdf(self, q):
        q_in = ops.convert_to_tensor(q, "float32")
        value = _normal_cdf(self._z(q_in)[1])
        value = ops.where(q_in <= 0.0, ops.zeros_like(value), value)
        return ops.where(q_in >= 1.0, ops.ones_like(value), value)

    def icdf(self, u):
        u = ops.clip(ops.convert_to_tensor(u, "float32"), _TINY, 1.0 - _TINY)
        return ops.sigmoid(self.mean + self.std * _normal_icdf(u))

    def get_config(self):
        config = super().get_config()
        config.update({"mean": self.mean, "std": self.std})
        return config


@_register
class ArctanLogNormalTime(TimeDistribution):
    """`q = (2/pi) arctan(exp(n) / scale)`, `n ~ N(mean, std^2)` (Tables 7e, 11).

    A log-normal noise level `sigma = exp(n)` mapped to the paper's time by
    Eq. 24, `sigma = scale * tan(pi q / 2)`:

    * FACM (Peng et al., 2025, "Flow-Anchored Consistency Models"; sCM's
      sampler, Lu & Song, 2024): mean -0.8, std 1.6, scale 1 (defaults);
    * ECT (Geng et al., 2024) / EDM (Karras et al., 2022): `P_mean = -1.1`,
      `P_std = 2.0` with `scale = sigma_d = 0.5`.

        cdf(q) = Phi((ln(scale tan(pi q / 2)) - mean) / std),
        pdf(q) = phi(.) pi / (std sin(pi q)).

    Args:
        mean: float, mean of `ln sigma` (default -0.8).
        std: float > 0 (default 1.6).
        scale: float > 0, `sigma` at q = 1/2 (default 1).
        seed: int or None.

    Example:

    >>> dist = keras_gcm.time_sampling.ArctanLogNormalTime(-1.1, 2.0, scale=0.5, seed=0)
    >>> q = dist.sample((1024,))
    """

    def __init__(self, mean=-0.8, std=1.6, scale=1.0, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not std > 0:
            raise ValueError(f"`std` must be positive. Received: std={std}")
        if not scale > 0:
            raise ValueError(f"`scale` must be positive. Received: scale={scale}")
        self.mean, self.std, self.scale = float(mean), float(std), float(scale)

    def _z(self, q):
        q = ops.clip(ops.convert_to_tensor(q, "float32"), 1e-12, 1.0 - 1e-7)
        log_sigma = math.log(self.scale) + ops.log(ops.tan(0.5 * math.pi * q))
        return q, (log_sigma - self.mean) / self.std

    def pdf(self, q):
        q_in = ops.convert_to_tensor(q, "float32")
        q, z = self._z(q_in)
        value = _normal_pdf(z) * math.pi / (self.std * ops.sin(math.pi * q))
        inside = ops.logical_and(q_in > 0.0, q_in < 1.0)
        return ops.where(inside, value, ops.zeros_like(value))

    def cdf(self, q):
        q_in = ops.convert_to_tensor(q, "float32")
        value = _normal_cdf(self._z(q_in)[1])
        value = ops.where(q_in <= 0.0, ops.zeros_like(value), value)
        return ops.where(q_in >= 1.0, ops.ones_like(value), value)

    def icdf(self, u):
        u = ops.clip(ops.convert_to_tensor(u, "float32"), _TINY, 1.0 - _TINY)
        sigma = ops.exp(self.mean + self.std * _normal_icdf(u))
        return ops.arctan(sigma / self.scale) / (0.5 * math.pi)

    def get_config(self):
        config = super().get_config()
        config.update({"mean": self.mean, "std": self.std, "scale": self.scale})
        return config


@_register
class SortedPairTimes(JointTimeSampler):
    """MeanFlow's (t, s) pairs: two i.i.d. draws, `t` the larger (Table 7e).

    Geng et al. (2025) draw two times from one distribution and take the
    larger as the current time and the smaller as the end time; here `q_1,
    q_2 ~ t_dist`, `t = t0 + (tT - t0) max(q)`, `s = t0 + (tT - t0) min(q)`.
    (MeanFlow also sets `s = t` for a fraction of the pairs, a flow-matching
    task that a discrete consistency loss gives zero weight; it is left out.)
    The conditional density of t given s is
    `p(t | s) = p_q(q_t) / ((1 - F_q(q_s)) (tT - t0))`.

    Args:
        t_dist: `TimeDistribution` of both draws (default
            `LogitNormalTime(-2.0, 2.0)`, MeanFlow's CIFAR-10 sampler).
        t0, tT: floats, the training interval.
        seed: int or None.

    Example:

    >>> sampler = keras_gcm.time_sampling.SortedPairTimes(seed=0)
    >>> t, s = sampler.sample(8)  # t0 <= s <= t <= tT
    """

    variable_upper_limit = True

    def __init__(self, t_dist=None, t0=0.006, tT=0.994, seed=None, **kwargs):
        super().__init__(t0=t0, tT=tT, seed=seed, **kwargs)
        self.t_dist = _deserialize_dist(t_dist, lambda: LogitNormalTime(-2.0, 2.0))

    def _sample(self, n, seed):
        q = self.t_dist.sample((n, 2), seed=seed)
        width = self.tT - self.t0
        t = self.t0 + width * ops.max(q, axis=-1)
        s = self.t0 + width * ops.min(q, axis=-1)
        return t, s

    def density(self, t, s):
        width = self.tT - self.t0
        q_t = (t - self.t0) / width
        q_s = (s - self.t0) / width
        tail = ops.maximum(1.0 - self.t_dist.cdf(q_s), 1e-12)
        return self.t_dist.pdf(q_t) / (tail * width)

    def get_config(self):
        config = super().get_config()
        config.update({"t_dist": keras.saving.serialize_keras_object(self.t_dist)})
        return config


@_register
class EqualTimeMixture(JointTimeSampler):
    """The s = t mixture of the latent ImageNet-256 runs (appendix G.2).

    With probability `probability` a pair is `(t, t)` with
    `t = t0 + (tT - t0) sigmoid(mean + std n)`, `n ~ N(0, 1)` (MeanFlow's
    log-normal in logit space, `lognorm(-0.4, 1.0)`); otherwise it is drawn
    by `base` (the VU sampler). At `s = t` the consistency loss is the
    flow-matching loss `||f(x_t, t, t) - u_t||` (the `s -> t` limit of
    Eq. 39 / 40, which `ConsistencyModel` computes for these pairs), so the
    network learns the instantaneous velocity `f(x_t, t, t)` that MeanFlow's
    model guidance uses.

    `density(t, s)` is the density of each part, for importance weighting:
    `base.density` where `s < t`; where `s = t`, the logit-normal density of
    t on [t0, tT] with `equal_time_importance=True`, or the uniform density
    `1 / (tT - t0)` with `equal_time_importance=False` (the default), which
    keeps MeanFlow's logit-normal emphasis of mid-range t in the
    flow-matching part (MeanFlow does not importance-weight). Measured on
    digits (tiny DiT, 600 steps, seed 0, `benchmarks/guidance_digits.py`
    setting): dividing by the logit-normal density gave 1-step FDD 49.5
    against 30.7 without importance weighting, its weights reaching ~10^3
    at the ends of [t0, tT]. (Densities are not multiplied by the part's
    probability, so `probability` sets the balance of the two losses, as in
    MeanFlow.)

    Args:
        base: a `VariableUpperLimit` (default `VariableUpperLimit(
            UniformPowerTime(1), SineTime())`, the paper's nu = 1).
        probability: float in [0, 1], the probability of `s = t` (0.75 in
            the paper, MeanFlow's `1 - ratio_r_not_equal_t`).
        mean: float, mean of the logit of t (-0.4).
        std: float > 0, standard deviation of the logit of t (1.0).
        equal_time_importance: bool, importance-weight the s = t part by its
            logit-normal density (False: uniform density, see above).
        seed: int or None.

    Example:

    >>> sampler = keras_gcm.time_sampling.EqualTimeMixture(probability=0.75, seed=0)
    >>> t, s = sampler.sample(8)  # about 6 of the 8 pairs have s == t
    """

    variable_upper_limit = True

    def __init__(self, base=None, probability=0.75, mean=-0.4, std=1.0,
                 equal_time_importance=False, seed=None, **kwargs):
        if isinstance(base, dict):
            base = keras.saving.deserialize_keras_object(base)
        if base is None:
            base = VariableUpperLimit(UniformPowerTime(1.0), SineTime())
        if not isinstance(base, JointTimeSampler):
            raise TypeError(
                f"`base` must be a keras_gcm JointTimeSampler (e.g. VariableUpperLimit). "
                f"Received: {base!r}"
            )
        kwargs.setdefault("t0", base.t0)
        kwargs.setdefault("tT", base.tT)
        super().__init__(seed=seed, **kwargs)
        if (base.t0, base.tT) != (self.t0, self.tT):
            raise ValueError(
                f"`base` samples on [{base.t0}, {base.tT}] but the mixture on "
                f"[{self.t0}, {self.tT}]: give both the same t0 and tT."
            )
        probability = float(probability)
        if not 0.0 <= probability <= 1.0:
            raise ValueError(
                "`probability` (of the s = t pairs) must be in [0, 1], e.g. 0.75 as "
                f"in the paper. Received: probability={probability}"
            )
        if not float(std) > 0:
            raise ValueError(f"`std` must be positive. Received: std={std}")
        self.base = base
        self.probability = probability
        self.mean = float(mean)
        self.std = float(std)
        self.equal_time_importance = bool(equal_time_importance)

    @property
    def equal_time_probability(self):
        """Probability of an `s = t` pair (the model adds the flow-matching loss)."""
        return self.probability

    def _sample(self, n, seed):
        if isinstance(seed, int):
            # One int seed would give dependent draws below: make it a stream.
            seed = keras.random.SeedGenerator(seed)
        t_base, s_base = self.base._sample(n, seed)
        normal = keras.random.normal((n,), seed=seed, dtype="float32")
        q = ops.sigmoid(self.mean + self.std * normal)
        t_eq = self.t0 + (self.tT - self.t0) * q
        equal = keras.random.uniform((n,), seed=seed, dtype="float32") < self.probability
        t = ops.where(equal, t_eq, t_base)
        s = ops.where(equal, t_eq, s_base)
        return t, s

    def equal_time_density(self, t):
        """The logit-normal density of t on [t0, tT] (the `s = t` part)."""
        width = self.tT - self.t0
        q = ops.clip((ops.convert_to_tensor(t, "float32") - self.t0) / width, _TINY, 1.0 - _TINY)
        z = (ops.log(q) - ops.log1p(-q) - self.mean) / self.std
        pdf_q = ops.exp(-0.5 * z * z) / (self.std * math.sqrt(2.0 * math.pi) * q * (1.0 - q))
        return pdf_q / width

    def density(self, t, s):
        t = ops.convert_to_tensor(t, "float32")
        s = ops.convert_to_tensor(s, "float32")
        equal = s >= t
        # The base density at s = t may be undefined: evaluate it at a safe s.
        safe_s = ops.where(equal, ops.full_like(s, self.t0), s)
        if self.equal_time_importance:
            equal_density = self.equal_time_density(t)
        else:
            equal_density = ops.full_like(t, 1.0 / (self.tT - self.t0))
        return ops.where(equal, equal_density, self.base.density(t, safe_s))

    def get_config(self):
        config = super().get_config()
        config.update({
            "base": keras.saving.serialize_keras_object(self.base),
            "probability": self.probability,
            "mean": self.mean,
            "std": self.std,
            "equal_time_importance": self.equal_time_importance,
        })
        return config
