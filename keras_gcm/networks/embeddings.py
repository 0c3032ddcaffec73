"""Noise-level embeddings shared by the networks (EDM's PositionalEmbedding
and FourierEmbedding)."""

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="keras_gcm")
class PositionalEmbedding(keras.layers.Layer):
    """Sinusoidal embedding of a scalar per example (DDPM++ / ADM).

    With `n = num_channels // 2` frequencies
    `w_i = (1 / max_positions) ** (i / (n - endpoint))`, returns
    `[sin(x w), cos(x w)]` (the order EDM's SongUNet uses after its sin/cos
    swap). Always computed in float32.

    Args:
        num_channels: int, even embedding size.
        max_positions: float, the slowest period.
        endpoint: bool, whether the last frequency is `1 / max_positions`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> emb = keras_gcm.networks.PositionalEmbedding(8, endpoint=True)
    >>> tuple(emb(keras.ops.zeros((3,))).shape)
    (3, 8)
    """

    def __init__(self, num_channels, max_positions=10000, endpoint=False, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if num_channels < 2 or num_channels % 2:
            raise ValueError(
                "PositionalEmbedding: `num_channels` must be even and >= 2. "
                f"Received: {num_channels}"
            )
        self.num_channels = int(num_channels)
        self.max_positions = float(max_positions)
        self.endpoint = bool(endpoint)
        half = self.num_channels // 2
        denominator = half - (1 if self.endpoint else 0)
        exponents = np.arange(half, dtype=np.float64) / max(denominator, 1)
        self.frequencies = (1.0 / self.max_positions) ** exponents

    def call(self, x):
        x = ops.cast(x, "float32")
        freqs = ops.convert_to_tensor(self.frequencies.astype("float32"))
        args = x[:, None] * freqs[None, :]
        return ops.concatenate([ops.sin(args), ops.cos(args)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_channels)

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        config.update(
            {
                "num_channels": self.num_channels,
                "max_positions": self.max_positions,
                "endpoint": self.endpoint,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_gcm")
class FourierEmbedding(keras.layers.Layer):
    """Random Fourier features of a scalar per example (NCSN++).

    Returns `[sin(2 pi x w), cos(2 pi x w)]` with fixed frequencies
    `w ~ N(0, scale^2)` (`num_channels // 2` of them). The frequencies are
    drawn from `seed` and kept in a non-trainable weight `frequencies` (EDM
    keeps them in a non-parameter buffer, `freqs`): a layer rebuilt from its
    config draws the same ones, and frequencies loaded from elsewhere (e.g.
    an EDM checkpoint, `keras_gcm.networks.load_edm_state_dict`) are saved
    and restored with the weights. Always computed in float32.

    Args:
        num_channels: int, even embedding size.
        scale: float, standard deviation of the frequencies.
        seed: int, seed of the frequencies.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> emb = keras_gcm.networks.FourierEmbedding(8, seed=0)
    >>> tuple(emb(keras.ops.zeros((3,))).shape)
    (3, 8)
    """

    def __init__(self, num_channels, scale=16.0, seed=0, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if num_channels < 2 or num_channels % 2:
            raise ValueError(
                "FourierEmbedding: `num_channels` must be even and >= 2. "
                f"Received: {num_channels}"
            )
        self.num_channels = int(num_channels)
        self.scale = float(scale)
        self.seed = int(seed)
        rng = np.random.default_rng(self.seed)
        initial = rng.standard_normal(self.num_channels // 2) * self.scale
        self.frequencies = self.add_weight(
            shape=(self.num_channels // 2,),
            initializer=keras.initializers.Constant(initial.astype("float32")),
            trainable=False,
            dtype="float32",
            name="frequencies",
        )

    def call(self, x):
        x = ops.cast(x, "float32")
        freqs = ops.cast(self.frequencies, "float32") * (2.0 * np.pi)
        args = x[:, None] * freqs[None, :]
        return ops.concatenate([ops.sin(args), ops.cos(args)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_channels)

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        config.update(
            {
                "num_channels": self.num_channels,
                "scale": self.scale,
                "seed": self.seed,
            }
        )
        return config
