"""A pretrained EDM denoiser as a flow-matching network `F(x_in, c(t))`.

EDM / EDM2 diffusion models predict a denoised image `D(y, sigma)` of
`y = x + sigma z` (the variance-exploding, sigma parametrisation) through
their preconditioning

    D(y, sigma) = c_skip y + c_out F_edm(c_in y, c_noise, labels),
    c_skip = sd^2 / (sigma^2 + sd^2),  c_out = sigma sd / sqrt(sigma^2 + sd^2),
    c_in = 1 / sqrt(sigma^2 + sd^2),   c_noise = ln(sigma) / 4,

(EDM Table 1, EDM2's `Precond`; `sd` is EDM's sigma_data, 0.5). A
`keras_gcm.ConsistencyModel` predicts a velocity in the flow-matching
parametrisation of the OT interpolant `x_t = (1 - t) x + t z` (section 3.1):
`f = c_out(t) F(c_in(t) x_t, c(t))`. The change of variables is exact:

    y = x_t / (1 - t) = x + sigma z,   sigma = t / (1 - t),
    E[z | x_t] = (y - D) / sigma,      E[x | x_t] = D,
    v(x_t, t) = E[z - x | x_t] = (x_t - D(x_t / (1 - t), t / (1 - t))) / t.

`EDMDenoiserVelocity` computes `v` from the EDM network and returns
`v / c_out(t)`, recovering `t` from the conditioned time `c(t)` the
consistency model passes and `x_t` from `c_in(t) x_t`, so that the model's
`f` *is* the diffusion model's velocity: a consistency model initialised
from it starts at the pretrained diffusion model's probability-flow ODE
(the paper's ImageNet-64 fine-tuning, appendix G.2).
"""

import math

import keras
import numpy as np
from keras import ops

from keras_gcm import interpolants
from keras_gcm import schedules


def _inverse_conditioning(conditioning, c):
    """`t` from `c(t)` for the library's invertible time conditionings."""
    c = ops.cast(c, "float32")
    if isinstance(conditioning, schedules.IdentityTime):
        return c
    if isinstance(conditioning, schedules.LinearTime):
        return c / conditioning.scale
    if isinstance(conditioning, schedules.ExponentialTime):
        return ops.log1p(conditioning.mu * c) / conditioning.mu
    if isinstance(conditioning, schedules.LogSigmaTime):
        ratio = ops.exp(c / conditioning.scale) / conditioning.sigma_data
        return ops.arctan(ratio) * (2.0 / math.pi)
    raise TypeError(
        "EDMDenoiserVelocity inverts the time conditioning c(t) to recover t; "
        "it supports IdentityTime, LinearTime, ExponentialTime and "
        f"LogSigmaTime. Received {type(conditioning).__name__}: pass the "
        "consistency model's `conditioning` if it is one of these."
    )


@keras.saving.register_keras_serializable(package="keras_gcm")
class EDMDenoiserVelocity(keras.Model):
    """Wraps an EDM-preconditioned network into a flow-matching velocity network.

    Called as the consistency model calls its network, `F(x_in, c_t)` with
    `x_in = c_in(t) x_t` and `c_t = c(t)`, it returns

        F = v(x_t, t) / c_out(t),   v = (x_t - D(x_t / (1 - t), t / (1 - t))) / t,

    where `D` is the EDM denoiser built from `network` with EDM's
    preconditioning (module docstring), so that the consistency model's
    `f = c_out(t) F(...)` equals the velocity derived from the denoiser
    (the exact change of variables `sigma = t / (1 - t)`,
    `y = x_t / (1 - t)`). `interpolant` and `conditioning` must be the
    consistency model's own (the defaults are `ConsistencyModel`'s).

    Everything except the wrapped network runs in float32. Times are
    clipped to `[t_min, 1 - t_min]` so that `sigma` stays finite.

    Args:
        network: the raw EDM network `F_edm(x, c_noise, class_labels=...)`,
            e.g. a `keras_gcm.networks.EDM2UNet` with loaded EDM2 weights
            (`load_edm2_checkpoint`). Its `label_dim`, `img_resolution`,
            `in_channels` and `input_range` are forwarded.
        sigma_data: float, the EDM model's sigma_data (EDM2: 0.5).
        interpolant: the consistency model's `OTFlow` (default
            `OTFlow(0.5)`).
        conditioning: the consistency model's time conditioning (default
            `ExponentialTime(3.5)`); must be invertible (IdentityTime,
            LinearTime, ExponentialTime, LogSigmaTime).
        t_min: float, the clipping of t.
        **kwargs: standard `keras.Model` arguments.

    Example:

    >>> edm = keras_gcm.networks.EDM2UNet(
    ...     img_resolution=8, in_channels=1, model_channels=16,
    ...     channel_mult=[1], num_blocks=1, attn_resolutions=[], channels_per_head=16, seed=0)
    >>> net = keras_gcm.networks.EDMDenoiserVelocity(edm)
    >>> model = keras_gcm.ConsistencyModel(net)
    >>> tuple(net(keras.ops.zeros((2, 8, 8, 1)), keras.ops.ones((2,))).shape)
    (2, 8, 8, 1)
    """

    def __init__(
        self,
        network,
        sigma_data=0.5,
        interpolant=None,
        conditioning=None,
        t_min=1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._convert_input_args = False
        if isinstance(network, dict):
            network = keras.saving.deserialize_keras_object(network)
        if isinstance(interpolant, dict):
            interpolant = keras.saving.deserialize_keras_object(interpolant)
        if isinstance(conditioning, dict):
            conditioning = keras.saving.deserialize_keras_object(conditioning)
        if not sigma_data > 0:
            raise ValueError(f"`sigma_data` must be positive. Received: {sigma_data}")
        if getattr(network, "time_inputs", 1) != 1:
            raise ValueError(
                "EDMDenoiserVelocity wraps a one-time-input EDM network "
                "(`time_inputs=1`): a diffusion model takes one noise level."
            )
        self.network = network
        self.sigma_data = float(sigma_data)
        self.interpolant = interpolant if interpolant is not None else interpolants.OTFlow(0.5)
        self.conditioning = (
            conditioning if conditioning is not None else schedules.ExponentialTime(3.5)
        )
        _inverse_conditioning(self.conditioning, np.zeros((1,), "float32"))
        self.t_min = float(t_min)
        self.time_inputs = 1
        for name in ("label_dim", "img_resolution", "in_channels", "input_range"):
            if hasattr(network, name):
                setattr(self, name, getattr(network, name))
        self.label_dim = int(getattr(network, "label_dim", 0))

    def build(self, input_shape=None):
        if not self.network.built:
            self.network.build(input_shape)
        self.built = True

    def __call__(self, x, c_t, c_s=None, class_labels=None, **kwargs):
        def as_tensor(value):
            if value is None or isinstance(value, keras.KerasTensor) or ops.is_tensor(value):
                return value
            return ops.convert_to_tensor(np.asarray(value))

        return super().__call__(
            as_tensor(x), as_tensor(c_t), as_tensor(c_s), as_tensor(class_labels), **kwargs
        )

    def denoise(self, y, sigma, class_labels=None, training=None):
        """EDM's denoiser `D(y, sigma) = c_skip y + c_out F_edm(c_in y, ln(sigma) / 4)`.

        Args:
            y: `(B, H, W, C)` noisy images `x + sigma z`.
            sigma: `(B,)` noise levels.
            class_labels: optional labels for the network.
            training: bool.

        Returns:
            `(B, H, W, C)` float32 denoised images.
        """
        y = ops.cast(y, "float32")
        sigma = ops.cast(sigma, "float32")
        s = ops.reshape(sigma, (-1, 1, 1, 1))
        sd2 = self.sigma_data**2
        c_skip = sd2 / (s * s + sd2)
        c_out = s * self.sigma_data / ops.sqrt(s * s + sd2)
        c_in = 1.0 / ops.sqrt(s * s + sd2)
        c_noise = ops.log(sigma) / 4.0
        kwargs = {"training": training}
        if class_labels is not None:
            kwargs["class_labels"] = class_labels
        out = self.network(c_in * y, c_noise, **kwargs)
        return c_skip * y + c_out * ops.cast(out, "float32")

    def velocity(self, x_t, t, class_labels=None, training=None):
        """The flow-matching velocity `(x_t - D(x_t / (1 - t), t / (1 - t))) / t`."""
        x_t = ops.cast(x_t, "float32")
        t = ops.clip(ops.cast(t, "float32"), self.t_min, 1.0 - self.t_min)
        te = ops.reshape(t, (-1, 1, 1, 1))
        denoised = self.denoise(x_t / (1.0 - te), t / (1.0 - t), class_labels, training)
        return (x_t - denoised) / te

    def call(self, x, c_t, c_s=None, class_labels=None, training=None):
        """`F(c_in(t) x_t, c(t)) = v(x_t, t) / c_out(t)` (see the class docstring)."""
        if c_s is not None:
            raise ValueError(
                "EDMDenoiserVelocity takes one time input (a CU consistency "
                "model); it received `c_s`."
            )
        t = ops.clip(
            _inverse_conditioning(self.conditioning, c_t), self.t_min, 1.0 - self.t_min
        )
        te = ops.reshape(t, (-1, 1, 1, 1))
        x_t = ops.cast(x, "float32") / self.interpolant.c_in(te)
        v = self.velocity(x_t, t, class_labels, training)
        return v / self.interpolant.c_out(te)

    def compute_output_spec(self, x, c_t, c_s=None, class_labels=None, training=None):
        return keras.KerasTensor(tuple(x.shape), dtype="float32")

    def get_config(self):
        ser = keras.saving.serialize_keras_object
        config = super().get_config()
        config.update(
            {
                "network": ser(self.network),
                "sigma_data": self.sigma_data,
                "interpolant": ser(self.interpolant),
                "conditioning": ser(self.conditioning),
                "t_min": self.t_min,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
