"""EDM2's magnitude-preserving U-Net, channels-last Keras 3.

The architecture of Karras et al., "Analyzing and Improving the Training
Dynamics of Diffusion Models" (2024), `training/networks_edm2.py` (config G,
Figure 21): every convolution and fully-connected layer is a
magnitude-preserving `MPConv` with forced weight normalisation (Eq. 47, 66),
activations are the magnitude-preserving SiLU (Eq. 81), residual and
embedding sums the magnitude-preserving sum (Eq. 88), skip connections the
magnitude-preserving concatenation (Eq. 103), attention is cosine attention
(pixel-normalised q, k, v), the output has a learned gain initialised to
zero, and the class label enters through an MP linear layer.

"A Guide to Training Consistency Models" fine-tunes EDM2 ImageNet-64 models
into CU consistency models (Table 6a, appendix G.2). Use the network
directly as `F(x, c_t[, c_s])` (then `c_t` feeds EDM2's Fourier noise
embedding as EDM2 feeds `c_noise`), or wrap a pretrained one in
`keras_gcm.networks.EDMDenoiserVelocity` to turn its EDM denoiser into a
flow-matching velocity.

Channel layout is channels-last, `(batch, height, width, channels)`; the
weights are stored in Keras layout (`(kh, kw, in, out)` kernels, `(in, out)`
dense matrices) under EDM2's names (`enc_64x64_block0/conv_res0/weight` is
EDM2's `unet.enc.64x64_block0.conv_res0.weight`), see
`keras_gcm.networks.load_edm2_checkpoint`.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_gcm.networks.ddpmpp import fir_downsample_2d
from keras_gcm.networks.ddpmpp import fir_upsample_2d
from keras_gcm.validation import check_class_labels

# ---------------------------------------------------------------------------
# Magnitude-preserving operations.


def mp_normalize(x, axis=None, epsilon=1e-4):
    """EDM2's `normalize`: unit root-mean-square along `axis` (Eq. 66's norm).

    Returns `x / (epsilon + ||x|| / sqrt(n))`, the norm taken over `axis`
    (all axes but the first when None) in float32, `n` the number of entries
    it runs over.

    Args:
        x: tensor.
        axis: int, tuple of ints or None.
        epsilon: float.

    Returns:
        A tensor of x's shape and dtype.

    Example:

    >>> x = keras.ops.convert_to_tensor([[3.0, 4.0]])
    >>> keras.ops.convert_to_numpy(keras_gcm.networks.edm2.mp_normalize(x)).round(3)
    array([[0.849, 1.131]], dtype=float32)
    """
    if axis is None:
        axis = tuple(range(1, len(x.shape)))
    elif isinstance(axis, int):
        axis = (axis,)
    count = 1
    for a in axis:
        count *= int(x.shape[a])
    x32 = ops.cast(x, "float32")
    norm = ops.sqrt(ops.sum(ops.square(x32), axis=axis, keepdims=True))
    norm = epsilon + norm * (1.0 / math.sqrt(count))
    return x / ops.cast(norm, x.dtype)


def mp_silu(x):
    """Magnitude-preserving SiLU, `silu(x) / 0.596` (EDM2 Eq. 81).

    Example:

    >>> y = keras_gcm.networks.edm2.mp_silu(keras.ops.zeros((2,)))
    """
    return ops.silu(x) * (1.0 / 0.596)


def mp_sum(a, b, t=0.5):
    """Magnitude-preserving sum `((1 - t) a + t b) / sqrt((1 - t)^2 + t^2)` (Eq. 88).

    Example:

    >>> a, b = keras.ops.ones((2,)), keras.ops.zeros((2,))
    >>> float(keras_gcm.networks.edm2.mp_sum(a, b, 0.0)[0])
    1.0
    """
    return (a + (b - a) * t) * (1.0 / math.sqrt((1 - t) ** 2 + t**2))


def mp_concat(a, b, t=0.5):
    """Magnitude-preserving channel concatenation (EDM2 Eq. 103), channels-last.

    `[w_a a, w_b b]` with `w_a = C (1 - t) / sqrt(N_a)`,
    `w_b = C t / sqrt(N_b)`, `C = sqrt((N_a + N_b) / ((1 - t)^2 + t^2))`.

    Example:

    >>> y = keras_gcm.networks.edm2.mp_concat(keras.ops.ones((1, 2, 2, 3)),
    ...                                       keras.ops.ones((1, 2, 2, 5)))
    >>> tuple(y.shape)
    (1, 2, 2, 8)
    """
    na, nb = int(a.shape[-1]), int(b.shape[-1])
    c = math.sqrt((na + nb) / ((1 - t) ** 2 + t**2))
    wa = c / math.sqrt(na) * (1 - t)
    wb = c / math.sqrt(nb) * t
    return ops.concatenate([a * wa, b * wb], axis=-1)


# ---------------------------------------------------------------------------
# Layers.


@keras.saving.register_keras_serializable(package="keras_gcm")
class ForcedWeightNorm(keras.constraints.Constraint):
    """Forced weight normalisation (EDM2 Eq. 66) as a Keras weight constraint.

    Keras optimizers apply a variable's constraint after every update, so
    the stored weight is `normalize(w)` after each step: every output
    channel (the last axis) has unit root-mean-square over the other axes.
    EDM2 normalises the stored weight just before each training forward;
    with a normalised initial weight (as `MPConv` draws it) both give the
    same sequence of weights.

    Args:
        epsilon: float, EDM2's `normalize` epsilon.

    Example:

    >>> w = keras_gcm.networks.edm2.ForcedWeightNorm()(keras.ops.ones((3, 2)) * 5)
    """

    def __init__(self, epsilon=1e-4):
        self.epsilon = float(epsilon)

    def __call__(self, w):
        axes = tuple(range(len(w.shape) - 1))
        return mp_normalize(w, axis=axes, epsilon=self.epsilon)

    def get_config(self):
        return {"epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="keras_gcm")
class MPConv(keras.layers.Layer):
    """Magnitude-preserving convolution / dense layer (EDM2 Eq. 47, 66).

    The weight `w` (Keras layout: `(k, k, in, out)`, or `(in, out)` with
    `kernel_size=0`) is used as `normalize(w) * gain / sqrt(fan_in)`,
    `fan_in = k * k * in`, each output channel normalised to unit RMS; the
    stored weight is kept normalised by `ForcedWeightNorm` (forced weight
    normalisation). No bias. Convolutions use "same" padding.

    Args:
        in_channels: int, input channels (known up front, as in EDM2, so the
            weight shapes are known without building).
        filters: int, output channels.
        kernel_size: int, odd kernel size, or 0 for a fully-connected layer.
        seed: int or None, seed of the N(0, 1) initial draw.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> conv = keras_gcm.networks.edm2.MPConv(4, 8, 3, seed=0)
    >>> tuple(conv(keras.ops.ones((1, 5, 5, 4))).shape)
    (1, 5, 5, 8)
    """

    def __init__(self, in_channels, filters, kernel_size, seed=None, **kwargs):
        super().__init__(**kwargs)
        kernel_size = int(kernel_size)
        if kernel_size < 0 or (kernel_size > 0 and kernel_size % 2 == 0):
            raise ValueError(
                "MPConv: `kernel_size` must be 0 (dense) or odd. "
                f"Received: kernel_size={kernel_size}"
            )
        self.in_channels = int(in_channels)
        self.filters = int(filters)
        self.kernel_size = kernel_size
        self.seed = seed

    @property
    def weight_shape(self):
        """Keras-layout shape of the weight."""
        if self.kernel_size == 0:
            return (self.in_channels, self.filters)
        k = self.kernel_size
        return (k, k, self.in_channels, self.filters)

    @property
    def fan_in(self):
        return self.in_channels * max(self.kernel_size, 1) ** 2

    def build(self, input_shape=None):
        if input_shape is not None and input_shape[-1] != self.in_channels:
            raise ValueError(
                f"MPConv '{self.name}' expects {self.in_channels} input channels. "
                f"Received input shape {tuple(input_shape)}."
            )
        shape = self.weight_shape
        seed = self.seed

        def initializer(shape_, dtype=None):
            rng = np.random.default_rng(seed) if seed is not None else np.random
            values = rng.standard_normal(shape_)
            norm = np.sqrt(np.sum(values**2, axis=tuple(range(len(shape_) - 1)),
                                  keepdims=True))
            values = values / (1e-4 + norm / math.sqrt(self.fan_in))
            return ops.convert_to_tensor(values.astype("float32"), dtype=dtype)

        self.weight = self.add_weight(
            shape=shape,
            initializer=initializer,
            constraint=ForcedWeightNorm(),
            name="weight",
        )

    def kernel(self, gain=1.0):
        """The effective kernel `normalize(w) * gain / sqrt(fan_in)` (float32)."""
        w = ops.cast(self.weight, "float32")
        w = mp_normalize(w, axis=tuple(range(len(w.shape) - 1)))
        scale = 1.0 / math.sqrt(self.fan_in)
        if isinstance(gain, (int, float)):
            return w * (gain * scale)
        return w * (ops.cast(gain, "float32") * scale)

    def call(self, x, gain=1.0):
        w = ops.cast(self.kernel(gain), x.dtype)
        if self.kernel_size == 0:
            return ops.matmul(x, w)
        return ops.conv(x, w, strides=1, padding="same", data_format="channels_last")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "in_channels": self.in_channels,
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "seed": self.seed,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_gcm")
class MPFourier(keras.layers.Layer):
    """Magnitude-preserving Fourier features (EDM2 Eq. 75).

    `sqrt(2) cos(2 pi (f x + p))` with frequencies `f ~ N(0, bandwidth^2)`
    and phases `p ~ U(0, 1)` drawn once from `seed` (stored as
    non-trainable weights `freqs = 2 pi f`, `phases = 2 pi p`, EDM2's
    buffers, so a checkpoint can overwrite them). Float32.

    Args:
        num_channels: int, output features.
        bandwidth: float.
        seed: int, seed of the draw.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> emb = keras_gcm.networks.edm2.MPFourier(8, seed=0)
    >>> tuple(emb(keras.ops.ones((3,))).shape)
    (3, 8)
    """

    def __init__(self, num_channels, bandwidth=1.0, seed=0, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.num_channels = int(num_channels)
        self.bandwidth = float(bandwidth)
        self.seed = int(seed)

    def build(self, input_shape=None):
        rng = np.random.default_rng(self.seed)
        freqs = 2 * np.pi * rng.standard_normal(self.num_channels) * self.bandwidth
        phases = 2 * np.pi * rng.uniform(size=self.num_channels)
        self.freqs = self.add_weight(
            shape=(self.num_channels,),
            initializer=lambda shape, dtype=None: ops.convert_to_tensor(
                freqs.astype("float32")),
            trainable=False,
            name="freqs",
        )
        self.phases = self.add_weight(
            shape=(self.num_channels,),
            initializer=lambda shape, dtype=None: ops.convert_to_tensor(
                phases.astype("float32")),
            trainable=False,
            name="phases",
        )

    def call(self, x):
        y = ops.cast(x, "float32")[:, None] * self.freqs[None, :] + self.phases
        return ops.cos(y) * math.sqrt(2.0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_channels": self.num_channels,
                "bandwidth": self.bandwidth,
                "seed": self.seed,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_gcm")
class EDM2Block(keras.layers.Layer):
    """EDM2's U-Net block with optional cosine self-attention (Figure 21).

        x = resample(x); enc: x = pixel_norm(conv_skip(x))
        y = conv_res1(dropout(mp_silu(conv_res0(mp_silu(x)) * (1 + emb_linear(emb, emb_gain)))))
        dec: x = conv_skip(x);   x = mp_sum(x, y, res_balance)
        attention: q, k, v = pixel_norm(split(attn_qkv(x)))
                   x = mp_sum(x, attn_proj(softmax(q k^T / sqrt(d)) v), attn_balance)
        x = clip(x, -clip_act, clip_act)

    Args:
        in_channels: int.
        out_channels: int.
        emb_channels: int.
        flavor: "enc" or "dec".
        resample_mode: "keep", "up" or "down".
        resample_filter: list of FIR taps (EDM2: `[1, 1]`).
        attention: bool.
        channels_per_head: int.
        dropout: float, dropout before `conv_res1` in training.
        dropout_seed: int or None.
        res_balance: float, main (0) vs residual branch (1).
        attn_balance: float, main (0) vs attention (1).
        clip_act: float or None, clips the output activations.
        seed: int or None, seed of the weights' initial draws.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> block = keras_gcm.networks.edm2.EDM2Block(8, 16, 32, attention=True,
    ...                                           channels_per_head=8, seed=0)
    >>> tuple(block(keras.ops.ones((2, 4, 4, 8)), keras.ops.ones((2, 32))).shape)
    (2, 4, 4, 16)
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        emb_channels,
        flavor="enc",
        resample_mode="keep",
        resample_filter=(1, 1),
        attention=False,
        channels_per_head=64,
        dropout=0.0,
        dropout_seed=None,
        res_balance=0.3,
        attn_balance=0.3,
        clip_act=256.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if flavor not in ("enc", "dec"):
            raise ValueError(f"`flavor` must be 'enc' or 'dec'. Received: {flavor!r}")
        if resample_mode not in ("keep", "up", "down"):
            raise ValueError(
                "`resample_mode` must be 'keep', 'up' or 'down'. "
                f"Received: {resample_mode!r}"
            )
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.emb_channels = int(emb_channels)
        self.flavor = flavor
        self.resample_mode = resample_mode
        self.resample_filter = [float(v) for v in resample_filter]
        self.attention = bool(attention)
        self.channels_per_head = int(channels_per_head)
        self.num_heads = self.out_channels // self.channels_per_head if attention else 0
        if self.attention and (
            self.num_heads < 1 or self.out_channels % self.num_heads
        ):
            raise ValueError(
                f"EDM2Block: {self.out_channels} channels cannot be split into "
                f"heads of {self.channels_per_head} channels; choose "
                "`channels_per_head` dividing the block's channels."
            )
        self.dropout_rate = float(dropout)
        self.dropout_seed = None if dropout_seed is None else int(dropout_seed)
        self.res_balance = float(res_balance)
        self.attn_balance = float(attn_balance)
        self.clip_act = None if clip_act is None else float(clip_act)
        self.seed = seed

        policy = self.dtype_policy
        seeds = iter(range(6)) if seed is None else iter(range(seed, seed + 6))

        def conv(name, cin, cout, k):
            s = next(seeds)
            return MPConv(cin, cout, k, seed=None if seed is None else s,
                          dtype="float32" if k == 0 else policy, name=name)

        self.conv_res0 = conv(
            "conv_res0",
            self.out_channels if flavor == "enc" else self.in_channels,
            self.out_channels,
            3,
        )
        self.emb_linear = conv("emb_linear", self.emb_channels, self.out_channels, 0)
        self.conv_res1 = conv("conv_res1", self.out_channels, self.out_channels, 3)
        self.conv_skip = (
            conv("conv_skip", self.in_channels, self.out_channels, 1)
            if self.in_channels != self.out_channels
            else None
        )
        self.attn_qkv = self.attn_proj = None
        if self.num_heads:
            self.attn_qkv = conv("attn_qkv", self.out_channels, 3 * self.out_channels, 1)
            self.attn_proj = conv("attn_proj", self.out_channels, self.out_channels, 1)
        self.dropout = keras.layers.Dropout(
            self.dropout_rate, seed=self.dropout_seed, dtype=policy, name="dropout"
        )

    def mp_layers(self):
        """`(name, MPConv)` of the block's layers, in EDM2's order."""
        layers = [("conv_res0", self.conv_res0), ("emb_linear", self.emb_linear),
                  ("conv_res1", self.conv_res1), ("conv_skip", self.conv_skip),
                  ("attn_qkv", self.attn_qkv), ("attn_proj", self.attn_proj)]
        return [(n, layer) for n, layer in layers if layer is not None]

    def build(self, input_shape=None):
        if input_shape is not None and input_shape[-1] != self.in_channels:
            raise ValueError(
                f"EDM2Block '{self.name}' expects {self.in_channels} input "
                f"channels. Received input shape {tuple(input_shape)}."
            )
        self.emb_gain = self.add_weight(shape=(), initializer="zeros", name="emb_gain")
        for _, layer in self.mp_layers():
            layer.build()
        self.dropout.build(None)
        self.built = True

    def _resample(self, x):
        if self.resample_mode == "down":
            return fir_downsample_2d(x, self.resample_filter)
        if self.resample_mode == "up":
            return fir_upsample_2d(x, self.resample_filter)
        return x

    def _attend(self, x):
        height, width = x.shape[1], x.shape[2]
        heads = self.num_heads
        head_dim = self.out_channels // heads
        y = self.attn_qkv(x)
        # EDM2's channel order: (heads, head_dim, 3).
        y = ops.reshape(y, (-1, height * width, heads, head_dim, 3))
        y = mp_normalize(y, axis=3)
        q, k, v = y[..., 0], y[..., 1], y[..., 2]
        logits = ops.einsum(
            "bqhc,bkhc->bhqk",
            ops.cast(q, "float32"),
            ops.cast(k, "float32") * (1.0 / math.sqrt(head_dim)),
        )
        weights = ops.cast(ops.softmax(logits, axis=-1), v.dtype)
        y = ops.einsum("bhqk,bkhc->bqhc", weights, v)
        y = ops.reshape(y, (-1, height, width, self.out_channels))
        return self.attn_proj(y)

    def call(self, x, emb, training=None):
        x = self._resample(x)
        if self.flavor == "enc":
            if self.conv_skip is not None:
                x = self.conv_skip(x)
            x = mp_normalize(x, axis=-1)
        y = self.conv_res0(mp_silu(x))
        c = self.emb_linear(ops.cast(emb, "float32"), gain=self.emb_gain) + 1.0
        y = mp_silu(y * ops.cast(c, y.dtype)[:, None, None, :])
        y = self.dropout(y, training=training)
        y = self.conv_res1(y)
        if self.flavor == "dec" and self.conv_skip is not None:
            x = self.conv_skip(x)
        x = mp_sum(x, y, self.res_balance)
        if self.num_heads:
            x = mp_sum(x, self._attend(x), self.attn_balance)
        if self.clip_act is not None:
            x = ops.clip(x, -self.clip_act, self.clip_act)
        return x

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        if self.resample_mode == "down":
            height, width = height // 2, width // 2
        elif self.resample_mode == "up":
            height, width = height * 2, width * 2
        return (batch, height, width, self.out_channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "in_channels": self.in_channels,
                "out_channels": self.out_channels,
                "emb_channels": self.emb_channels,
                "flavor": self.flavor,
                "resample_mode": self.resample_mode,
                "resample_filter": list(self.resample_filter),
                "attention": self.attention,
                "channels_per_head": self.channels_per_head,
                "dropout": self.dropout_rate,
                "dropout_seed": self.dropout_seed,
                "res_balance": self.res_balance,
                "attn_balance": self.attn_balance,
                "clip_act": self.clip_act,
                "seed": self.seed,
            }
        )
        return config


# ---------------------------------------------------------------------------
# The network.

# EDM2's ImageNet-64 configurations (train_edm2.py, `edm2-img64-*`): base
# channels and dropout; channel_mult [1, 2, 3, 4], 3 blocks per resolution,
# attention at 16x16 and 8x8. Batch 2048 and the reference learning rate are
# training settings (see keras_gcm.presets).
EDM2_IMG64_CONFIGS = {
    "s": dict(model_channels=192, dropout=0.00),
    "m": dict(model_channels=256, dropout=0.10),
    "l": dict(model_channels=320, dropout=0.10),
    "xl": dict(model_channels=384, dropout=0.10),
}


@keras.saving.register_keras_serializable(package="keras_gcm")
class EDM2UNet(keras.Model):
    """EDM2's magnitude-preserving U-Net (config G), channels-last, Keras 3.

    Computes EDM2's `UNet(x, noise_labels, class_labels)` (Karras et al.,
    2024, Figure 21): a Fourier noise embedding (Eq. 75) through an MP
    linear layer, mp-summed (Eq. 88) with an MP linear embedding of
    `one_hot * sqrt(label_dim)`, then MP-SiLU (Eq. 81); an encoder that
    appends a constant-one channel, a 3x3 MP convolution and `num_blocks`
    `EDM2Block`s per resolution (a downsampling block between resolutions);
    a decoder of two blocks at the lowest resolution (the first with
    attention), an upsampling block between resolutions and `num_blocks + 1`
    blocks on the MP-concatenated (Eq. 103) encoder skips; a 3x3 MP output
    convolution with a learned gain initialised to zero (so the untrained
    network outputs exactly zero). Every weight is kept normalised by
    forced weight normalisation (Eq. 66).

    As a `keras_gcm` network it is called `F(x, c_t[, c_s])`: `c_t` feeds the
    Fourier embedding as EDM2's `c_noise`. With `time_inputs=2` (our
    extension for VU models) `c_s` has its own Fourier embedding and MP
    linear layer whose output is added to the `c_t` embedding with a learned
    gain initialised to zero, so a pretrained one-time network is unchanged
    at initialisation.

    Class labels: `(B,)` integer indices in `[0, label_dim)` or
    `(B, label_dim)` one-hot rows; the index `label_dim` (and
    `class_labels=None`) mean "no label" and give the zero vector, as EDM2
    feeds dropped labels.

    Parameter counts of EDM2's ImageNet-64 networks (1000 classes, the
    `unet` module's parameters; the Fourier frequencies and phases are
    buffers, non-trainable weights here): S 280,209,253, M 497,803,045,
    L 777,492,197, XL 1,119,276,709 (`EDM2UNet.img64_s` ... `img64_xl`).

    Args:
        img_resolution: int, input height and width.
        in_channels: int, image channels (the output has as many).
        label_dim: int, number of classes, 0 for unconditional.
        model_channels: int, base channel count.
        channel_mult: list of int, channel multipliers per resolution.
        channel_mult_noise: int or None, noise embedding size is
            `model_channels * this` (None: the first block's channels).
        channel_mult_emb: int or None, embedding size is
            `model_channels * this` (None: the largest block's channels).
        num_blocks: int, blocks per resolution.
        attn_resolutions: list of int, resolutions with self-attention.
        label_balance: float, noise (0) vs class embedding (1).
        concat_balance: float, skip (0) vs main path (1).
        dropout: float, dropout in the blocks.
        dropout_max_resolution: int or None, dropout only in the blocks at
            this resolution or lower (ECT's `dropout_res`: 16 for its
            ImageNet-64 fine-tuning); None: in every block (EDM2).
        res_balance: float, the blocks' main vs residual balance.
        attn_balance: float, the blocks' main vs attention balance.
        clip_act: float or None, clips every block's output.
        channels_per_head: int.
        resample_filter: list of FIR taps.
        time_inputs: 1 (`c_t`) or 2 (`c_t` and `c_s`).
        seed: int or None, seed of the initial weights, Fourier features and
            dropout masks (None: drawn from NumPy's global generator, then
            fixed in the config).
        input_range: `(low, high)` of the training images (default
            `(-1, 1)`); None turns `fit`'s range check off.
        **kwargs: standard `keras.Model` arguments.

    Example:

    >>> net = keras_gcm.networks.EDM2UNet(
    ...     img_resolution=8, in_channels=1, label_dim=3, model_channels=16,
    ...     channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4],
    ...     channels_per_head=16, seed=0)
    >>> x = keras.ops.zeros((2, 8, 8, 1))
    >>> tuple(net(x, keras.ops.ones((2,)), class_labels=keras.ops.array([0, 3])).shape)
    (2, 8, 8, 1)
    """

    def __init__(
        self,
        img_resolution,
        in_channels,
        label_dim=0,
        model_channels=192,
        channel_mult=(1, 2, 3, 4),
        channel_mult_noise=None,
        channel_mult_emb=None,
        num_blocks=3,
        attn_resolutions=(16, 8),
        label_balance=0.5,
        concat_balance=0.5,
        dropout=0.0,
        dropout_max_resolution=None,
        res_balance=0.3,
        attn_balance=0.3,
        clip_act=256.0,
        channels_per_head=64,
        resample_filter=(1, 1),
        time_inputs=1,
        seed=None,
        input_range=(-1.0, 1.0),
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._convert_input_args = False
        channel_mult = [int(m) for m in channel_mult]
        if not channel_mult or min(channel_mult) < 1:
            raise ValueError(
                "`channel_mult` must be a non-empty list of positive ints. "
                f"Received: {channel_mult}"
            )
        img_resolution = int(img_resolution)
        if img_resolution < 1 or img_resolution % (2 ** (len(channel_mult) - 1)):
            raise ValueError(
                f"`img_resolution` ({img_resolution}) must be divisible by "
                f"2**(len(channel_mult) - 1) = {2 ** (len(channel_mult) - 1)}."
            )
        if time_inputs not in (1, 2):
            raise ValueError(f"`time_inputs` must be 1 or 2. Received: {time_inputs!r}")
        if int(label_dim) < 0:
            raise ValueError(f"`label_dim` must be >= 0. Received: {label_dim}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: {dropout}")
        if seed is None:
            seed = int(np.random.randint(0, 2**30))
        self.img_resolution = img_resolution
        self.in_channels = int(in_channels)
        self.out_channels = self.in_channels
        self.label_dim = int(label_dim)
        self.model_channels = int(model_channels)
        self.channel_mult = channel_mult
        self.channel_mult_noise = channel_mult_noise
        self.channel_mult_emb = channel_mult_emb
        self.num_blocks = int(num_blocks)
        self.attn_resolutions = [int(r) for r in attn_resolutions]
        self.label_balance = float(label_balance)
        self.concat_balance = float(concat_balance)
        self.dropout_rate = float(dropout)
        self.dropout_max_resolution = (
            None if dropout_max_resolution is None else int(dropout_max_resolution)
        )
        self.res_balance = float(res_balance)
        self.attn_balance = float(attn_balance)
        self.clip_act = None if clip_act is None else float(clip_act)
        self.channels_per_head = int(channels_per_head)
        self.resample_filter = [float(v) for v in resample_filter]
        self.time_inputs = int(time_inputs)
        self.seed = int(seed)
        self.input_range = (
            None if input_range is None else tuple(float(v) for v in input_range)
        )

        cblock = [self.model_channels * m for m in channel_mult]
        cnoise = (
            self.model_channels * int(channel_mult_noise)
            if channel_mult_noise is not None else cblock[0]
        )
        cemb = (
            self.model_channels * int(channel_mult_emb)
            if channel_mult_emb is not None else max(cblock)
        )
        self.noise_channels, self.emb_channels = cnoise, cemb
        policy = self.dtype_policy
        counter = [0]

        def next_seed(n=1):
            counter[0] += n
            return self.seed + 7919 * counter[0]

        def dense(name, cin, cout):
            return MPConv(cin, cout, 0, seed=next_seed(), dtype="float32", name=name)

        self.emb_fourier = MPFourier(cnoise, seed=next_seed(), name="emb_fourier")
        self.emb_noise = dense("emb_noise", cnoise, cemb)
        self.emb_label = dense("emb_label", self.label_dim, cemb) if self.label_dim else None
        self.emb_fourier_s = self.emb_noise_s = None
        if self.time_inputs == 2:
            self.emb_fourier_s = MPFourier(cnoise, seed=next_seed(), name="emb_fourier_s")
            self.emb_noise_s = dense("emb_noise_s", cnoise, cemb)

        def block(name, cin, cout, **overrides):
            res = int(name.split("_")[1].split("x")[0])
            limit = self.dropout_max_resolution
            return EDM2Block(
                cin, cout, cemb,
                resample_filter=self.resample_filter,
                channels_per_head=self.channels_per_head,
                dropout=self.dropout_rate if limit is None or res <= limit else 0.0,
                dropout_seed=next_seed(),
                res_balance=self.res_balance,
                attn_balance=self.attn_balance,
                clip_act=self.clip_act,
                seed=next_seed(),
                dtype=policy,
                name=name,
                **overrides,
            )

        # Encoder (EDM2's `enc` ModuleDict order).
        enc = []
        cout = self.in_channels + 1
        for level, channels in enumerate(cblock):
            res = img_resolution >> level
            if level == 0:
                cin, cout = cout, channels
                enc.append(MPConv(cin, cout, 3, seed=next_seed(), dtype=policy,
                                  name=f"enc_{res}x{res}_conv"))
            else:
                enc.append(block(f"enc_{res}x{res}_down", cout, cout, flavor="enc",
                                 resample_mode="down"))
            for idx in range(self.num_blocks):
                cin, cout = cout, channels
                enc.append(block(f"enc_{res}x{res}_block{idx}", cin, cout, flavor="enc",
                                 attention=res in self.attn_resolutions))
        skips = [layer.filters if isinstance(layer, MPConv) else layer.out_channels
                 for layer in enc]
        # Decoder.
        dec = []
        for level, channels in reversed(list(enumerate(cblock))):
            res = img_resolution >> level
            if level == len(cblock) - 1:
                dec.append(block(f"dec_{res}x{res}_in0", cout, cout, flavor="dec",
                                 attention=True))
                dec.append(block(f"dec_{res}x{res}_in1", cout, cout, flavor="dec"))
            else:
                dec.append(block(f"dec_{res}x{res}_up", cout, cout, flavor="dec",
                                 resample_mode="up"))
            for idx in range(self.num_blocks + 1):
                cin, cout = cout + skips.pop(), channels
                dec.append(block(f"dec_{res}x{res}_block{idx}", cin, cout, flavor="dec",
                                 attention=res in self.attn_resolutions))
        self.enc_layers = enc
        self.dec_layers = dec
        self.out_conv = MPConv(cout, self.in_channels, 3, seed=next_seed(), dtype=policy,
                               name="out_conv")

    # -- factories ---------------------------------------------------------

    @classmethod
    def img64(cls, size="s", label_dim=1000, **overrides):
        """EDM2's ImageNet-64 network `edm2-img64-{size}`, size in s, m, l, xl.

        64x64x3, channels `[1, 2, 3, 4] * model_channels` (192 / 256 / 320 /
        384), 3 blocks per resolution, attention at 16 and 8, dropout 0 (S)
        or 0.1. Parameter counts with 1000 classes: S 280,209,253,
        M 497,803,045, L 777,492,197, XL 1,119,276,709.

        Example:

        >>> net = keras_gcm.networks.EDM2UNet.img64("s")
        >>> net.count_edm2_parameters()
        280209253
        """
        size = str(size).lower().replace("edm2-", "").replace("img64-", "")
        if size not in EDM2_IMG64_CONFIGS:
            raise ValueError(
                f"Unknown EDM2 ImageNet-64 size {size!r}: choose one of "
                f"{sorted(EDM2_IMG64_CONFIGS)}."
            )
        config = dict(
            img_resolution=64, in_channels=3, label_dim=label_dim,
            channel_mult=[1, 2, 3, 4], num_blocks=3, attn_resolutions=[16, 8],
        )
        config.update(EDM2_IMG64_CONFIGS[size])
        config.update(overrides)
        return cls(**config)

    @classmethod
    def img64_s(cls, **overrides):
        """EDM2-S for ImageNet-64 (280,209,253 parameters); see `img64`.

        Example:

        >>> keras_gcm.networks.EDM2UNet.img64_s().model_channels
        192
        """
        return cls.img64("s", **overrides)

    @classmethod
    def img64_m(cls, **overrides):
        """EDM2-M for ImageNet-64 (497,803,045 parameters); see `img64`.

        Example:

        >>> keras_gcm.networks.EDM2UNet.img64_m().model_channels
        256
        """
        return cls.img64("m", **overrides)

    @classmethod
    def img64_l(cls, **overrides):
        """EDM2-L for ImageNet-64 (777,492,197 parameters); see `img64`.

        Example:

        >>> keras_gcm.networks.EDM2UNet.img64_l().model_channels
        320
        """
        return cls.img64("l", **overrides)

    @classmethod
    def img64_xl(cls, **overrides):
        """EDM2-XL for ImageNet-64 (1,119,276,709 parameters); see `img64`.

        Example:

        >>> keras_gcm.networks.EDM2UNet.img64_xl().model_channels
        384
        """
        return cls.img64("xl", **overrides)

    # -- weights by EDM2 name ---------------------------------------------

    def edm2_weight_specs(self):
        """EDM2's state-dict entries of this configuration, without building.

        Returns:
            A list of `(edm2_name, torch_shape, owner, attribute)`: the key
            in EDM2's `UNet.state_dict()` (e.g. `enc.64x64_conv.weight`),
            the tensor's shape in PyTorch layout, and the Keras layer and
            attribute name holding it (`weight`, `emb_gain`, `out_gain`,
            `freqs`, `phases`). Buffers (`freqs`, `phases`) included.
        """
        specs = []

        def mp(name, layer):
            k = layer.kernel_size
            shape = ((layer.filters, layer.in_channels, k, k) if k
                     else (layer.filters, layer.in_channels))
            specs.append((f"{name}.weight", shape, layer, "weight"))

        def fourier(name, layer):
            specs.append((f"{name}.freqs", (layer.num_channels,), layer, "freqs"))
            specs.append((f"{name}.phases", (layer.num_channels,), layer, "phases"))

        specs.append(("out_gain", (), self, "out_gain"))
        fourier("emb_fourier", self.emb_fourier)
        mp("emb_noise", self.emb_noise)
        if self.emb_label is not None:
            mp("emb_label", self.emb_label)
        if self.time_inputs == 2:
            specs.append(("emb_gain_s", (), self, "emb_gain_s"))
            fourier("emb_fourier_s", self.emb_fourier_s)
            mp("emb_noise_s", self.emb_noise_s)
        for prefix, layers in (("enc", self.enc_layers), ("dec", self.dec_layers)):
            for layer in layers:
                name = f"{prefix}.{layer.name[len(prefix) + 1:]}"
                if isinstance(layer, MPConv):
                    mp(name, layer)
                    continue
                specs.append((f"{name}.emb_gain", (), layer, "emb_gain"))
                for sub_name, sub in layer.mp_layers():
                    mp(f"{name}.{sub_name}", sub)
        mp("out_conv", self.out_conv)
        return specs

    def count_edm2_parameters(self):
        """EDM2's parameter count of this configuration (no buffers), unbuilt.

        Equals `sum(p.numel() for p in unet.parameters())` of EDM2's torch
        module, and the number of trainable weights once built.
        """
        return int(sum(
            int(np.prod(shape)) for name, shape, _, _ in self.edm2_weight_specs()
            if not name.endswith((".freqs", ".phases"))
        ))

    # -- Keras plumbing ----------------------------------------------------

    @property
    def seed_generators(self):
        """The dropout layers' `SeedGenerator`s, in block order."""
        generators = []
        for layer in list(self.enc_layers) + list(self.dec_layers):
            if isinstance(layer, EDM2Block):
                generator = getattr(layer.dropout, "seed_generator", None)
                if generator is not None:
                    generators.append(generator)
        return generators

    def _check_input_shape(self, shape):
        shape = tuple(shape)
        expected = (self.img_resolution, self.img_resolution, self.in_channels)
        if len(shape) != 4 or tuple(shape[1:]) != expected:
            raise ValueError(
                f"EDM2UNet expects images of shape (batch, {expected[0]}, "
                f"{expected[1]}, {expected[2]}) (channels-last). "
                f"Received shape {shape}."
            )

    def build(self, input_shape=None):
        if input_shape is not None:
            self._check_input_shape(input_shape)
        self.out_gain = self.add_weight(shape=(), initializer="zeros", name="out_gain")
        self.emb_fourier.build()
        self.emb_noise.build()
        if self.emb_label is not None:
            self.emb_label.build()
        if self.time_inputs == 2:
            self.emb_gain_s = self.add_weight(
                shape=(), initializer="zeros", name="emb_gain_s"
            )
            self.emb_fourier_s.build()
            self.emb_noise_s.build()
        for layer in list(self.enc_layers) + list(self.dec_layers) + [self.out_conv]:
            layer.build()
        self.built = True

    def __call__(self, x, c_t, c_s=None, class_labels=None, **kwargs):
        def as_tensor(value):
            if value is None or isinstance(value, keras.KerasTensor):
                return value
            if ops.is_tensor(value):
                return value
            return ops.convert_to_tensor(np.asarray(value))

        return super().__call__(
            as_tensor(x), as_tensor(c_t), as_tensor(c_s), as_tensor(class_labels),
            **kwargs,
        )

    def _label_vector(self, class_labels):
        if class_labels is None:
            return ops.zeros((1, self.label_dim), "float32")
        if len(class_labels.shape) == 1:
            if not keras.backend.standardize_dtype(class_labels.dtype).startswith(
                ("int", "uint")
            ):
                raise ValueError(
                    "EDM2UNet: rank-1 `class_labels` must be integer class "
                    f"indices. Received dtype {class_labels.dtype}."
                )
            # Concrete labels only (eager); the samplers and fit check on the host.
            check_class_labels(class_labels, self.label_dim)
            # Index `label_dim` ("no label") gives the zero row.
            one_hot = ops.one_hot(class_labels, self.label_dim + 1, dtype="float32")
            return one_hot[:, : self.label_dim]
        if len(class_labels.shape) == 2 and class_labels.shape[-1] == self.label_dim:
            return ops.cast(class_labels, "float32")
        raise ValueError(
            "EDM2UNet expects `class_labels` of shape (batch,) (int) or "
            f"(batch, {self.label_dim}) (one-hot). Received shape "
            f"{tuple(class_labels.shape)}."
        )

    def call(self, x, c_t, c_s=None, class_labels=None, training=None):
        """Runs the network.

        Args:
            x: `(B, H, W, C)` images (channels-last).
            c_t: `(B,)` conditioned times (EDM2's `c_noise`).
            c_s: `(B,)` second conditioned times; only with `time_inputs=2`.
            class_labels: None, `(B,)` int indices in `[0, label_dim]`
                (`label_dim` = no label) or `(B, label_dim)` rows; only with
                `label_dim > 0`.
            training: bool, dropout on when True.

        Returns:
            `(B, H, W, C)` in the compute dtype.
        """
        self._check_input_shape(x.shape)
        if self.time_inputs == 2 and c_s is None:
            raise ValueError(
                "This EDM2UNet was built with `time_inputs=2`: pass the "
                "conditioned second time `c_s` (shape (batch,))."
            )
        if self.time_inputs == 1 and c_s is not None:
            raise ValueError(
                "This EDM2UNet was built with `time_inputs=1` and takes no "
                "`c_s`; build it with `time_inputs=2` for two time inputs."
            )
        if self.label_dim == 0 and class_labels is not None:
            raise ValueError(
                "This EDM2UNet is unconditional (`label_dim=0`) and takes no "
                "`class_labels`: build it with `label_dim=<number of classes>` "
                "for a class-conditional network, or pass class_labels=None."
            )
        if len(c_t.shape) != 1:
            raise ValueError(
                "EDM2UNet expects `c_t` of shape (batch,), one conditioned time "
                f"per example. Received shape {tuple(c_t.shape)}."
            )
        x = ops.cast(x, self.compute_dtype)

        emb = self.emb_noise(self.emb_fourier(c_t))
        if self.time_inputs == 2:
            emb = emb + self.emb_noise_s(self.emb_fourier_s(c_s), gain=self.emb_gain_s)
        if self.emb_label is not None:
            labels = self._label_vector(class_labels)
            emb = mp_sum(
                emb,
                self.emb_label(labels * math.sqrt(self.label_dim)),
                self.label_balance,
            )
        emb = mp_silu(emb)

        x = ops.concatenate([x, ops.ones_like(x[..., :1])], axis=-1)
        skips = []
        for layer in self.enc_layers:
            x = layer(x) if isinstance(layer, MPConv) else layer(x, emb, training=training)
            skips.append(x)
        for layer in self.dec_layers:
            if "_block" in layer.name:
                x = mp_concat(x, skips.pop(), self.concat_balance)
            x = layer(x, emb, training=training)
        return self.out_conv(x, gain=self.out_gain)

    def compute_output_spec(self, x, c_t, c_s=None, class_labels=None, training=None):
        return keras.KerasTensor(tuple(x.shape), dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "img_resolution": self.img_resolution,
                "in_channels": self.in_channels,
                "label_dim": self.label_dim,
                "model_channels": self.model_channels,
                "channel_mult": list(self.channel_mult),
                "channel_mult_noise": self.channel_mult_noise,
                "channel_mult_emb": self.channel_mult_emb,
                "num_blocks": self.num_blocks,
                "attn_resolutions": list(self.attn_resolutions),
                "label_balance": self.label_balance,
                "concat_balance": self.concat_balance,
                "dropout": self.dropout_rate,
                "dropout_max_resolution": self.dropout_max_resolution,
                "res_balance": self.res_balance,
                "attn_balance": self.attn_balance,
                "clip_act": self.clip_act,
                "channels_per_head": self.channels_per_head,
                "resample_filter": list(self.resample_filter),
                "time_inputs": self.time_inputs,
                "seed": self.seed,
                "input_range": (
                    None if self.input_range is None else list(self.input_range)
                ),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
