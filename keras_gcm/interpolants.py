"""Interpolants between data (t = 0) and noise (t = 1).

The paper builds every model on the optimal-transport flow-matching
interpolant (section 3.1):

    x_t = alpha(t) x + sigma(t) z,   alpha(t) = 1 - t,   sigma(t) = t,

with EDM-style input / output preconditioning of the network.
"""

import keras
from keras import ops

#: Readings of the noise scale (section 3.1): `z ~ N(0, sigma_d^2 I)` or `N(0, I)`.
NOISE_SCALES = ("sigma_data", "unit")


@keras.saving.register_keras_serializable(package="keras_gcm")
class OTFlow(keras.layers.Layer):
    """Optimal-transport flow-matching interpolant with EDM preconditioning.

    `alpha(t) = 1 - t` and `sigma(t) = t` (section 3.1), so the velocity
    target of Eq. 2 is `u_t = alpha'(t) x + sigma'(t) z = z - x`. The network
    preconditioning of section 3.1 keeps its inputs and outputs at unit
    variance:

        c_in(t)  = 1 / (sigma_d sqrt(alpha(t)^2 + sigma(t)^2))
        c_out(t) = sigma_d sqrt(alpha'(t)^2 + sigma'(t)^2)

    These give unit variance only when the noise has the data's scale,
    `z ~ N(0, sigma_d^2 I)` (as IMM's code draws it): then `x_t` has std
    `sigma_d sqrt(alpha^2 + sigma^2)` and `u_t` std `sigma_d sqrt(2)` for data
    of std `sigma_d`. With `z ~ N(0, I)` and `sigma_d = 0.5` the network input
    has std up to 2 and `u_t / c_out` std 1.58. `noise_scale` chooses the
    reading (see the docs page "Choices the paper leaves open"); the model's
    training noise and every sampler's prior follow it through `noise_std`.

    Args:
        sigma_data: float, standard deviation of the data (`sigma_d`, 0.5 in
            the paper).
        noise_scale: `"sigma_data"` (default: `z ~ N(0, sigma_d^2 I)`, the
            reading under which section 3.1's preconditioning gives unit
            variance) or `"unit"` (`z ~ N(0, I)`, the library's behaviour
            before this option).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> flow = keras_gcm.interpolants.OTFlow(sigma_data=0.5)
    >>> t = keras.ops.convert_to_tensor([0.25])
    >>> float(flow.alpha(t)[0]), float(flow.sigma(t)[0])
    (0.75, 0.25)
    """

    def __init__(self, sigma_data=0.5, noise_scale="sigma_data", **kwargs):
        super().__init__(**kwargs)
        if not sigma_data > 0:
            raise ValueError(f"`sigma_data` must be positive. Received: {sigma_data}")
        if noise_scale not in NOISE_SCALES:
            raise ValueError(
                f"`noise_scale` must be one of {NOISE_SCALES}. Received: {noise_scale!r}"
            )
        self.sigma_data = float(sigma_data)
        self.noise_scale = noise_scale

    @property
    def noise_std(self):
        """Standard deviation of the noise z: `sigma_d` or 1 (`noise_scale`).

        The model draws `z = noise_std * eps` with `eps ~ N(0, I)`; the
        samplers start from `sigma(tT) * noise_std * eps`.
        """
        return self.sigma_data if self.noise_scale == "sigma_data" else 1.0

    def alpha(self, t):
        """Data coefficient `alpha(t) = 1 - t`."""
        return 1.0 - t

    def sigma(self, t):
        """Noise coefficient `sigma(t) = t`."""
        return t

    def d_alpha(self, t):
        """Time derivative `alpha'(t) = -1`."""
        return ops.full_like(t, -1.0)

    def d_sigma(self, t):
        """Time derivative `sigma'(t) = 1`."""
        return ops.ones_like(t)

    def c_in(self, t):
        """Input scaling `1 / (sigma_d sqrt(alpha^2 + sigma^2))` (section 3.1)."""
        a, s = self.alpha(t), self.sigma(t)
        return 1.0 / (self.sigma_data * ops.sqrt(a * a + s * s))

    def c_out(self, t):
        """Output scaling `sigma_d sqrt(alpha'^2 + sigma'^2)` (section 3.1)."""
        da, ds = self.d_alpha(t), self.d_sigma(t)
        return self.sigma_data * ops.sqrt(da * da + ds * ds)

    def interpolate(self, x, z, t):
        """Noised sample `x_t = alpha(t) x + sigma(t) z`; `t` is per example."""
        t = _expand_like(t, x)
        return self.alpha(t) * x + self.sigma(t) * z

    def velocity(self, x, z, t):
        """Conditional velocity `u_t = alpha'(t) x + sigma'(t) z` (Eq. 2)."""
        t = _expand_like(t, x)
        return self.d_alpha(t) * x + self.d_sigma(t) * z

    def call(self, x, z, t):
        """Returns `(x_t, u_t)` for data `x`, noise `z` and times `t` of shape (B,)."""
        return self.interpolate(x, z, t), self.velocity(x, z, t)

    def get_config(self):
        config = super().get_config()
        config.update({"sigma_data": self.sigma_data, "noise_scale": self.noise_scale})
        return config


def _expand_like(t, x):
    """Reshapes per-example times (B,) so they broadcast against `x`."""
    t = ops.convert_to_tensor(t)
    rank = len(x.shape)
    return ops.reshape(t, (-1,) + (1,) * (rank - 1))
