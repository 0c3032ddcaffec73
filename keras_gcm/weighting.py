"""Loss weighting functions w(t) (section 3.3)."""

import keras
from keras import ops


class LossWeighting(keras.layers.Layer):
    """Base class of the loss weightings `w(t)`; call it on a tensor of times.

    Subclasses implement `w(t)`.

    Example:

    >>> class LinearWeight(keras_gcm.weighting.LossWeighting):
    ...     def w(self, t):
    ...         return 1.0 - t
    >>> t = keras.ops.convert_to_tensor([0.25])
    >>> print(keras.ops.convert_to_numpy(LinearWeight()(t)).round(6))
    [0.75]
    """

    def w(self, t):
        raise NotImplementedError

    def call(self, t):
        return self.w(ops.convert_to_tensor(t, dtype=self.compute_dtype))


@keras.saving.register_keras_serializable(package="keras_gcm")
class ConstantWeight(LossWeighting):
    """Constant weighting `w(t) = 1` (the baseline, Table 2 A).

    Example:

    >>> t = keras.ops.convert_to_tensor([0.2, 0.9])
    >>> print(keras.ops.convert_to_numpy(keras_gcm.weighting.ConstantWeight()(t)).round(6))
    [1. 1.]
    """

    def w(self, t):
        return ops.ones_like(t)


@keras.saving.register_keras_serializable(package="keras_gcm")
class GammaWeight(LossWeighting):
    """Gamma weighting `w(t) = t^gamma exp(-lam t)` (Eq. 14).

    Approximates the flow-matching-loss-weighted ELBO weighting
    `||E_DM|| w_DM(t)` of Eq. 13 (Fig. 1), which aligns the consistency
    loss's gradient magnitude with that of an ELBO-weighted diffusion model.

    Args:
        gamma: float, power of t (1 on CIFAR-10).
        lam: float, exponential rate lambda (6 on CIFAR-10).

    Example:

    >>> w = keras_gcm.weighting.GammaWeight(gamma=1.0, lam=6.0)
    >>> t = keras.ops.convert_to_tensor([0.5])
    >>> print(keras.ops.convert_to_numpy(w(t)).round(6))  # 0.5 * exp(-3) = 0.0249
    [0.024894]
    """

    def __init__(self, gamma=1.0, lam=6.0, **kwargs):
        super().__init__(**kwargs)
        if gamma < 0:
            raise ValueError(f"`gamma` must be >= 0. Received: gamma={gamma}")
        self.gamma = float(gamma)
        self.lam = float(lam)

    def w(self, t):
        return ops.power(t, self.gamma) * ops.exp(-self.lam * t)

    def get_config(self):
        config = super().get_config()
        config.update({"gamma": self.gamma, "lam": self.lam})
        return config
