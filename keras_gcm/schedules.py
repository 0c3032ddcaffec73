"""Time-step discretisation h(t) and time conditioning c(t) (section 3.2).

A discretisation step maps a time `t` to the gap `h(t) = t - r` between the
student time `t` and the teacher time `r` (appendix C.3, Eq. 26-36). Every
step function is a stateless `keras.layers.Layer`: call it on a tensor of
times to get `h(t)`.

The default `epsilon` of every step except `ExponentialStep` is chosen so that
the integral of `h` over [0, 1] equals the baseline's `0.005 / 3`
(appendix C.3); `ExponentialStep` keeps the paper's default
`h(t) = 0.005 exp(-3.5 t)` (Eq. 36).

A time conditioning maps `t` to the network's time input `c(t)` (Eq. 9,
Table 7c).
"""

import math

import keras
from keras import ops

# Integral of the baseline h(t) = 0.005 (1 - t)^2 over [0, 1] (appendix C.3).
BASELINE_INTEGRAL = 0.005 / 3.0


def _register(cls):
    return keras.saving.register_keras_serializable(package="keras_gcm")(cls)


class DiscretizationStep(keras.layers.Layer):
    """Base class of the discretisation functions `h(t)` (appendix C.3).

    Subclasses implement `h(t, epsilon)`. Calling the layer evaluates `h` at
    `t` with the layer's `epsilon`, or with an explicit `epsilon` (used by
    `EpsilonHalvingCurriculum`).

    Args:
        epsilon: float, the scale of the step function.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    A new discretisation only defines `h`; it then works everywhere a step
    does (`ConsistencyModel(step=...)`, a preset, the curriculum):

    >>> class SquareRootStep(keras_gcm.schedules.DiscretizationStep):
    ...     def h(self, t, epsilon):
    ...         return epsilon * keras.ops.sqrt(1.0 - t)
    >>> t = keras.ops.convert_to_tensor([0.0, 0.75])
    >>> print(keras.ops.convert_to_numpy(SquareRootStep(epsilon=0.0025)(t)).round(6))
    [0.0025  0.00125]
    """

    #: Equation number of the function in the paper's appendix C.3.
    equation = None

    def __init__(self, epsilon, **kwargs):
        super().__init__(**kwargs)
        if not epsilon > 0:
            raise ValueError(
                f"`epsilon` must be positive. Received: epsilon={epsilon}"
            )
        self.epsilon = float(epsilon)

    def h(self, t, epsilon):
        raise NotImplementedError

    def call(self, t, epsilon=None):
        t = ops.convert_to_tensor(t, dtype=self.compute_dtype)
        eps = self.epsilon if epsilon is None else epsilon
        return self.h(t, eps)

    def get_config(self):
        config = super().get_config()
        config.update({"epsilon": self.epsilon})
        return config


@_register
class ConstantStep(DiscretizationStep):
    """Constant step `h(t) = epsilon` (Eq. 26), the naive baseline (Table 2 A).

    Args:
        epsilon: float, the step. The default `0.005 / 3` matches the
            baseline integral.

    Example:

    >>> h = keras_gcm.schedules.ConstantStep()
    >>> t = keras.ops.convert_to_tensor([0.1, 0.9])
    >>> print(keras.ops.convert_to_numpy(h(t)).round(6))
    [0.001667 0.001667]
    """

    equation = 26

    def __init__(self, epsilon=BASELINE_INTEGRAL, **kwargs):
        super().__init__(epsilon, **kwargs)

    def h(self, t, epsilon):
        return ops.zeros_like(t) + epsilon


@_register
class LinearDecreasingStep(DiscretizationStep):
    """Linearly decreasing step `h(t) = epsilon (1 - t)` (Eq. 30).

    Args:
        epsilon: float; the default `0.01 / 3` matches the baseline integral.

    Example:

    >>> h = keras_gcm.schedules.LinearDecreasingStep()
    >>> t = keras.ops.convert_to_tensor([0.0, 0.5])
    >>> print(keras.ops.convert_to_numpy(h(t)).round(6))
    [0.003333 0.001667]
    """

    equation = 30

    def __init__(self, epsilon=2.0 * BASELINE_INTEGRAL, **kwargs):
        super().__init__(epsilon, **kwargs)

    def h(self, t, epsilon):
        return epsilon * (1.0 - t)


@_register
class QuadraticDecreasingStep(DiscretizationStep):
    """Quadratically decreasing step `h(t) = epsilon (1 - t)^2` (Eq. 31).

    The limit of IMM's discretisation for small epsilon and the paper's
    reference for the equal-integral normalisation (appendix C.2-C.3).

    Args:
        epsilon: float; default 0.005.

    Example:

    >>> h = keras_gcm.schedules.QuadraticDecreasingStep()
    >>> t = keras.ops.convert_to_tensor([0.0, 0.5])
    >>> print(keras.ops.convert_to_numpy(h(t)).round(6))
    [0.005   0.00125]
    """

    equation = 31

    def __init__(self, epsilon=0.005, **kwargs):
        super().__init__(epsilon, **kwargs)

    def h(self, t, epsilon):
        return epsilon * ops.square(1.0 - t)


@_register
class CubicDecreasingStep(DiscretizationStep):
    """Cubically decreasing step `h(t) = epsilon (1 - t)^3` (Eq. 32).

    Args:
        epsilon: float; the default `0.02 / 3` matches the baseline integral.

    Example:

    >>> h = keras_gcm.schedules.CubicDecreasingStep()
    >>> t = keras.ops.convert_to_tensor([0.0])
    >>> print(keras.ops.convert_to_numpy(h(t)).round(6))
    [0.006667]
    """

    equation = 32

    def __init__(self, epsilon=4.0 * BASELINE_INTEGRAL, **kwargs):
        super().__init__(epsilon, **kwargs)

    def h(self, t, epsilon):
        return epsilon * (1.0 - t) ** 3


@_register
class QuadraticIncreasingStep(DiscretizationStep):
    """Quadratically increasing step `h(t) = epsilon t^2` (Eq. 33).

    Args:
        epsilon: float; default 0.005 matches the baseline integral.

    Example:

    >>> h = keras_gcm.schedules.QuadraticIncreasingStep()
    >>> t = keras.ops.convert_to_tensor([1.0])
    >>> print(keras.ops.convert_to_numpy(h(t)).round(6))
    [0.005]
    """

    equation = 33

    def __init__(self, epsilon=0.005, **kwargs):
        super().__init__(epsilon, **kwargs)

    def h(self, t, epsilon):
        return epsilon * ops.square(t)


@_register
class QuadraticConcaveStep(DiscretizationStep):
    """Concave quadratic step `h(t) = epsilon t (1 - t)` (Eq. 34).

    Args:
        epsilon: float; default 0.01 matches the baseline integral.

    Example:

    >>> h = keras_gcm.schedules.QuadraticConcaveStep()
    >>> t = keras.ops.convert_to_tensor([0.5])
    >>> print(keras.ops.convert_to_numpy(h(t)).round(6))
    [0.0025]
    """

    equation = 34

    def __init__(self, epsilon=0.01, **kwargs):
        super().__init__(epsilon, **kwargs)

    def h(self, t, epsilon):
        return epsilon * t * (1.0 - t)


@_register
class QuadraticConvexStep(DiscretizationStep):
    """Convex quadratic step `h(t) = epsilon (0.5 - t)^2` (Eq. 35).

    Note that `h(0.5) = 0`: the student and teacher times coincide there,
    which the loss handles by giving such samples zero weight.

    Args:
        epsilon: float; default 0.02 matches the baseline integral.

    Example:

    >>> h = keras_gcm.schedules.QuadraticConvexStep()
    >>> t = keras.ops.convert_to_tensor([0.0])
    >>> print(keras.ops.convert_to_numpy(h(t)).round(6))
    [0.005]
    """

    equation = 35

    def __init__(self, epsilon=0.02, **kwargs):
        super().__init__(epsilon, **kwargs)

    def h(self, t, epsilon):
        return epsilon * ops.square(0.5 - t)


@_register
class ExponentialStep(DiscretizationStep):
    """Exponentially decreasing step `h(t) = epsilon exp(-mu t)` (Eq. 8, Eq. 36).

    The paper's choice (Proposition 3: minimising the accumulated global
    error gives an exponentially decaying step). The default
    `epsilon = 0.005` is the paper's default, not the equal-integral value.

    Args:
        epsilon: float, step at t = 0. Default 0.005.
        mu: float, decay rate. Default 3.5.

    Example:

    >>> h = keras_gcm.schedules.ExponentialStep(epsilon=0.005, mu=3.5)
    >>> t = keras.ops.convert_to_tensor([0.0, 1.0])
    >>> print(keras.ops.convert_to_numpy(h(t)).round(6))
    [0.005    0.000151]
    """

    equation = 36

    def __init__(self, epsilon=0.005, mu=3.5, **kwargs):
        super().__init__(epsilon, **kwargs)
        if not mu > 0:
            raise ValueError(f"`mu` must be positive. Received: mu={mu}")
        self.mu = float(mu)

    def h(self, t, epsilon):
        return epsilon * ops.exp(-self.mu * t)

    def get_config(self):
        config = super().get_config()
        config.update({"mu": self.mu})
        return config


@_register
class EDMStep(DiscretizationStep):
    """EDM's discretisation mapped to flow-matching time (Eq. 27).

    `h(t) = 2/pi arctan(((sigma_d tan(pi t / 2))^(1/rho) + epsilon)^rho / sigma_d) - t`,

    i.e. Eq. 27 with `A = -epsilon`: the gap between `t` and the neighbouring
    EDM noise level (Eq. 23) after mapping sigma to t with Eq. 24. Here
    `epsilon = (sigma_max^(1/rho) - sigma_min^(1/rho)) / (N - 1)` is the
    decrement of `sigma^(1/rho)` per EDM step; the default 0.00105528
    (N of about 1383) matches the baseline integral. The function is
    bell-shaped (Fig. 7a).

    Args:
        epsilon: float, `-A` of Eq. 27.
        rho: float, EDM's rho (7).
        sigma_data: float, `sigma_d` of Eq. 24 (0.5).

    Example:

    >>> h = keras_gcm.schedules.EDMStep()
    >>> t = keras.ops.convert_to_tensor([0.5])
    >>> print(keras.ops.convert_to_numpy(h(t)).round(6))
    [0.002594]
    """

    equation = 27

    def __init__(self, epsilon=0.0010552779833536724, rho=7.0, sigma_data=0.5, **kwargs):
        super().__init__(epsilon, **kwargs)
        self.rho = float(rho)
        self.sigma_data = float(sigma_data)

    @classmethod
    def from_num_steps(cls, num_steps, sigma_min=0.002, sigma_max=80.0, rho=7.0, **kwargs):
        """EDM step with `N` discretisation steps between sigma_min and sigma_max (Eq. 23)."""
        if num_steps < 2:
            raise ValueError(f"`num_steps` must be >= 2. Received: {num_steps}")
        eps = (sigma_max ** (1.0 / rho) - sigma_min ** (1.0 / rho)) / (num_steps - 1)
        return cls(epsilon=eps, rho=rho, **kwargs)

    def h(self, t, epsilon):
        half_pi = 0.5 * math.pi
        sigma = self.sigma_data * ops.tan(half_pi * ops.clip(t, 0.0, 1.0))
        root = ops.power(ops.maximum(sigma, 0.0), 1.0 / self.rho) + epsilon
        sigma_next = ops.power(root, self.rho)
        return ops.arctan(sigma_next / self.sigma_data) / half_pi - t

    def get_config(self):
        config = super().get_config()
        config.update({"rho": self.rho, "sigma_data": self.sigma_data})
        return config


@_register
class ECTStep(DiscretizationStep):
    """ECT's discretisation mapped to flow-matching time (Eq. 28).

    `h(t) = t - 2/pi arctan(tan(pi t / 2) (1 - epsilon (1 + k / (1 + exp(b tan(pi t / 2))))))`

    with `k = 8` and `b = 0.5` as printed in Eq. 28 (ECT's `b = 1` applied
    to `sigma_t = sigma_d tan(pi t / 2)`). The default epsilon 0.00217164
    matches the baseline integral.

    Args:
        epsilon: float.
        k: float, ECT's k (8).
        b: float, coefficient of `tan(pi t / 2)` in the exponent (0.5).

    Example:

    >>> h = keras_gcm.schedules.ECTStep()
    >>> t = keras.ops.convert_to_tensor([0.5])
    >>> print(keras.ops.convert_to_numpy(h(t)).round(6))
    [0.002791]
    """

    equation = 28

    def __init__(self, epsilon=0.0021716394085552326, k=8.0, b=0.5, **kwargs):
        super().__init__(epsilon, **kwargs)
        self.k = float(k)
        self.b = float(b)

    def h(self, t, epsilon):
        half_pi = 0.5 * math.pi
        tan = ops.tan(half_pi * ops.clip(t, 0.0, 1.0))
        # k / (1 + exp(b tan)) written with a sigmoid so it cannot overflow.
        shrink = epsilon * (1.0 + self.k * ops.sigmoid(-self.b * tan))
        return t - ops.arctan(tan * (1.0 - shrink)) / half_pi

    def get_config(self):
        config = super().get_config()
        config.update({"k": self.k, "b": self.b})
        return config


@_register
class IMMStep(DiscretizationStep):
    """IMM's discretisation, constant decrement in `eta = sigma / alpha` (Eq. 29).

    `h(t) = epsilon (1 - t)^2 / (1 - epsilon (1 - t))`. The default epsilon
    0.00498132 matches the baseline integral (IMM uses about 0.00488 on
    CIFAR-10).

    Args:
        epsilon: float.

    Example:

    >>> h = keras_gcm.schedules.IMMStep()
    >>> t = keras.ops.convert_to_tensor([0.0])
    >>> print(keras.ops.convert_to_numpy(h(t)).round(6))
    [0.005006]
    """

    equation = 29

    def __init__(self, epsilon=0.004981315401149367, **kwargs):
        super().__init__(epsilon, **kwargs)

    def h(self, t, epsilon):
        one_minus = 1.0 - t
        return epsilon * ops.square(one_minus) / (1.0 - epsilon * one_minus)


@_register
class EpsilonHalvingCurriculum(keras.layers.Layer):
    """Discretisation curriculum: epsilon starts large and halves (appendix G.1).

    At training step `n` the step function is evaluated with
    `epsilon_n = initial_epsilon * 0.5 ** floor(n / halve_every)`. Appendix
    G.1 says exactly this: start at 0.5 and halve every 50K iterations, so
    the paper's 400K-step run ends at 0.5 / 2^7 = 0.0039 (350K-400K), below
    the step function's own 0.005. With `floor=True` (the library's
    behaviour before this option) epsilon never goes below the step
    function's epsilon: `max(epsilon, ...)`.

    With `factor` other than 0.5 the epsilon is multiplied by `factor`
    instead of halved (ECT's ImageNet-64 curriculum: `1 / 4^(stage + 1)`,
    i.e. 0.25 times 0.25 every 25K iterations).

    Args:
        initial_epsilon: float, epsilon at step 0.
        halve_every: int, number of optimizer steps between halvings.
        floor: bool, stop halving at the step function's epsilon (default
            False, appendix G.1).
        factor: float in (0, 1), the multiplier applied every `halve_every`
            steps (0.5: halving).

    Example:

    >>> curriculum = keras_gcm.schedules.EpsilonHalvingCurriculum(0.5, 50_000)
    >>> float(curriculum.epsilon(120_000, final_epsilon=0.005))
    0.125
    >>> float(curriculum.epsilon(399_999, final_epsilon=0.005))  # 0.5 / 2**7
    0.00390625
    """

    def __init__(self, initial_epsilon=0.5, halve_every=50_000, factor=0.5, floor=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.floor = bool(floor)
        if not 0.0 < float(factor) < 1.0:
            raise ValueError(f"`factor` must be in (0, 1). Received: {factor}")
        self.factor = float(factor)
        if not initial_epsilon > 0:
            raise ValueError(f"`initial_epsilon` must be positive. Received: {initial_epsilon}")
        if int(halve_every) < 1:
            raise ValueError(f"`halve_every` must be >= 1. Received: {halve_every}")
        self.initial_epsilon = float(initial_epsilon)
        self.halve_every = int(halve_every)

    def epsilon(self, step, final_epsilon):
        """Epsilon in effect at optimizer step `step`."""
        step = ops.cast(step, "float32")
        halvings = ops.floor(step / float(self.halve_every))
        eps = self.initial_epsilon * ops.power(self.factor, halvings)
        return ops.maximum(eps, final_epsilon) if self.floor else eps

    def call(self, step, final_epsilon):
        return self.epsilon(step, final_epsilon)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"initial_epsilon": self.initial_epsilon, "halve_every": self.halve_every,
             "floor": self.floor,
             "factor": self.factor}
        )
        return config


class TimeConditioning(keras.layers.Layer):
    """Base class of the time conditionings `c(t)` fed to the network (Eq. 9).

    Subclasses implement `c(t)`; calling the layer evaluates it.

    Example:

    >>> class SquareTime(keras_gcm.schedules.TimeConditioning):
    ...     def c(self, t):
    ...         return t * t
    >>> t = keras.ops.convert_to_tensor([0.5])
    >>> print(keras.ops.convert_to_numpy(SquareTime()(t)).round(6))
    [0.25]
    """

    def c(self, t):
        raise NotImplementedError

    def call(self, t):
        return self.c(ops.convert_to_tensor(t, dtype=self.compute_dtype))


@_register
class IdentityTime(TimeConditioning):
    """Identity conditioning `c(t) = t` (the baseline, Table 7c).

    Example:

    >>> t = keras.ops.convert_to_tensor([0.3])
    >>> print(keras.ops.convert_to_numpy(keras_gcm.schedules.IdentityTime()(t)).round(6))
    [0.3]
    """

    def c(self, t):
        return t


@_register
class LinearTime(TimeConditioning):
    """Linear conditioning `c(t) = scale * t` (IMM's `1000 t`, Table 7c).

    Args:
        scale: float, default 1000.

    Example:

    >>> t = keras.ops.convert_to_tensor([0.3])
    >>> print(keras.ops.convert_to_numpy(keras_gcm.schedules.LinearTime(1000)(t)).round(3))
    [300.]
    """

    def __init__(self, scale=1000.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def c(self, t):
        return self.scale * t

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.scale})
        return config


@_register
class ExponentialTime(TimeConditioning):
    """Exponential conditioning `c(t) = (exp(mu t) - 1) / mu` (Eq. 9, appendix C.4).

    With `h(t) = epsilon exp(-mu t)` this makes the perceived step
    `c(t) - c(t - h(t))` constant, and `c(t) / t -> 1` as `t -> 0`. (Table 7c
    prints `e^{-3.5t}`; the derivation of appendix C.4 gives this form.)

    Args:
        mu: float, default 3.5 (match the `ExponentialStep`'s mu).

    Example:

    >>> t = keras.ops.convert_to_tensor([1.0])
    >>> c = keras_gcm.schedules.ExponentialTime(3.5)
    >>> print(keras.ops.convert_to_numpy(c(t)).round(3))  # (e^3.5 - 1) / 3.5 = 9.1758
    [9.176]
    """

    def __init__(self, mu=3.5, **kwargs):
        super().__init__(**kwargs)
        if not mu > 0:
            raise ValueError(f"`mu` must be positive. Received: mu={mu}")
        self.mu = float(mu)

    def c(self, t):
        return ops.expm1(self.mu * t) / self.mu

    def get_config(self):
        config = super().get_config()
        config.update({"mu": self.mu})
        return config


@_register
class LogSigmaTime(TimeConditioning):
    """EDM's / ECT's noise conditioning in flow-matching time (Table 7c, ECT).

    EDM (Karras et al., 2022, Table 1) and ECT feed the network
    `c_noise(sigma) = ln(sigma) / 4`. With the noise level of time `t` taken
    from Eq. 24, `sigma = sigma_d tan(pi t / 2)` (the mapping the paper uses
    to translate EDM's and ECT's discretisations, Eq. 27-28), this is

        c(t) = scale * ln(sigma_d * tan(pi t / 2)),   scale = 1/4.

    It diverges (to -inf) at t = 0 and to +inf at t = 1; on the training
    interval [0.006, 0.994] it spans about [-1.34, 0.99]. Times are clipped to
    `[1e-6, 1 - 1e-6]` so that the ends stay finite.

    Args:
        sigma_data: float, `sigma_d` of Eq. 24 (default 0.5).
        scale: float, the factor of the logarithm (EDM's 1/4).

    Example:

    >>> c = keras_gcm.schedules.LogSigmaTime()
    >>> t = keras.ops.convert_to_tensor([0.5])
    >>> print(keras.ops.convert_to_numpy(c(t)).round(6))  # ln(0.5) / 4 = -0.1733
    [-0.173287]
    """

    def __init__(self, sigma_data=0.5, scale=0.25, **kwargs):
        super().__init__(**kwargs)
        if not sigma_data > 0:
            raise ValueError(f"`sigma_data` must be positive. Received: {sigma_data}")
        if scale == 0:
            raise ValueError("`scale` must be non-zero.")
        self.sigma_data = float(sigma_data)
        self.scale = float(scale)

    def c(self, t):
        t = ops.clip(t, 1e-6, 1.0 - 1e-6)
        sigma = self.sigma_data * ops.tan(0.5 * math.pi * t)
        return self.scale * ops.log(sigma)

    def get_config(self):
        config = super().get_config()
        config.update({"sigma_data": self.sigma_data, "scale": self.scale})
        return config
