"""EDM's SongUNet: the DDPM++ and NCSN++ U-Nets, channels-last Keras 3.

The architecture is the one of Karras et al., "Elucidating the Design Space
of Diffusion-Based Generative Models" (2022), `training/networks.py`, which
re-implements the DDPM++ / NCSN++ networks of Song et al., "Score-Based
Generative Modeling through Stochastic Differential Equations" (2021). The
paper this library follows ("A Guide to Training Consistency Models") trains
its CIFAR-10 models with the DDPM++ form: 128 channels, multipliers
`[2, 2, 2]`, 4 residual blocks per resolution, attention at 16x16, a
positional time embedding, 55,732,739 parameters with one time input.

Everything is channels-last, `(batch, height, width, channels)`. The
resampling FIR filters (`[1, 1]` for DDPM++, `[1, 3, 3, 1]` for NCSN++) are
constants, never weights, and are applied as separable sums of strided
slices, which XLA fuses into neighbouring elementwise work.

Network protocol (what `keras_gcm`'s consistency models call):

    network(x, c_t, c_s=None, class_labels=None, training=None)

`x` is `(B, H, W, C)`; `c_t` and `c_s` are `(B,)` *conditioned* times
`c(t)`, `c(s)` that feed the noise embedding exactly as EDM feeds its
`noise_labels`; the output has the shape of `x`. A network built with
`time_inputs=2` (variable-upper-limit models) embeds `c_s` with its own
two-layer MLP and adds it to the `c_t` embedding before the shared SiLU, as
IMM does.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_gcm.networks.embeddings import FourierEmbedding
from keras_gcm.networks.embeddings import PositionalEmbedding
from keras_gcm.validation import check_class_labels

# ---------------------------------------------------------------------------
# Helpers.


@keras.saving.register_keras_serializable(package="keras_gcm")
class EDMXavierUniform(keras.initializers.Initializer):
    """EDM's `weight_init(mode='xavier_uniform') * init_weight`.

    Draws `gain * sqrt(6 / (fan_in + fan_out)) * U(-1, 1)` with Keras' fans
    (`k * k * in` and `k * k * out` for a conv kernel `(k, k, in, out)`, as
    EDM computes them). The draw is made with NumPy, from `seed` or, when
    `seed` is None, from NumPy's global generator (which
    `keras.utils.set_random_seed` seeds): a 55.7M-parameter network then
    initialises without compiling one random kernel per weight shape.

    Args:
        gain: float, EDM's `init_weight` (1e-5 for the zero-init layers).
        seed: int or None.

    Example:

    >>> init = keras_gcm.networks.ddpmpp.EDMXavierUniform(gain=1.0, seed=0)
    >>> w = init((3, 3, 16, 32))
    >>> bool(keras.ops.max(keras.ops.abs(w)) <= (6 / (9 * 48)) ** 0.5)
    True
    """

    def __init__(self, gain=1.0, seed=None):
        self.gain = float(gain)
        self.seed = seed

    def __call__(self, shape, dtype=None):
        shape = tuple(int(d) for d in shape)
        if len(shape) < 2:
            fan_in = fan_out = shape[0] if shape else 1
        else:
            receptive = int(np.prod(shape[:-2]))
            fan_in, fan_out = receptive * shape[-2], receptive * shape[-1]
        limit = self.gain * math.sqrt(6.0 / (fan_in + fan_out))
        if self.seed is None:
            values = np.random.uniform(-limit, limit, size=shape)
        else:
            values = np.random.default_rng(self.seed).uniform(-limit, limit, size=shape)
        dtype = keras.backend.standardize_dtype(dtype or keras.backend.floatx())
        return ops.convert_to_tensor(values.astype(dtype), dtype=dtype)

    def get_config(self):
        return {"gain": self.gain, "seed": self.seed}


def _xavier_uniform(init_weight):
    """EDM's xavier-uniform initialiser times `init_weight` (zeros for 0)."""
    init_weight = float(init_weight)
    if init_weight == 0.0:
        return keras.initializers.Zeros()
    return EDMXavierUniform(gain=init_weight)


def _normalized_taps(resample_filter):
    """1-D FIR taps `f / sum(f)`; the 2-D filter is their outer product."""
    taps = np.asarray(resample_filter, dtype=np.float64)
    if taps.ndim != 1 or taps.size < 2 or taps.size % 2 != 0:
        raise ValueError(
            "`resample_filter` must be a 1-D list of an even number (>= 2) of "
            "taps, e.g. [1, 1] or [1, 3, 3, 1]. "
            f"Received: resample_filter={resample_filter}"
        )
    if taps.sum() == 0:
        raise ValueError(
            "`resample_filter` taps must not sum to zero. "
            f"Received: resample_filter={resample_filter}"
        )
    return taps / taps.sum()


def _slice_axis(x, axis, start, stop, step=1):
    index = [slice(None)] * len(x.shape)
    index[axis] = slice(start, stop, step)
    return x[tuple(index)]


def _pad_axis(x, axis, before, after):
    if before == 0 and after == 0:
        return x
    pad_width = [[0, 0] for _ in x.shape]
    pad_width[axis] = [before, after]
    return ops.pad(x, pad_width)


def _weighted_sum(terms):
    """`sum_k w_k * x_k` for a list of `(w_k, x_k)`, skipping `* 1.0`."""
    total = None
    for weight, value in terms:
        term = value if weight == 1.0 else value * weight
        total = term if total is None else total + term
    return total


def _static_dim(x, axis, what):
    size = x.shape[axis]
    if size is None:
        raise ValueError(
            f"{what} needs a statically known size along axis {axis}. "
            f"Received a tensor of shape {x.shape}."
        )
    return int(size)


def fir_downsample_2d(x, resample_filter=(1, 1), padding=None):
    """2x FIR downsampling of channels-last images, EDM's `Conv2d(down=True)`.

    Computes EDM's depthwise `conv2d(x, outer(f, f) / sum(f)**2, stride=2,
    padding=padding)` as two separable passes of strided slices:
    `y[i] = sum_k f[k] / sum(f) * x_padded[2 i + k]` along height, then width.
    With `[1, 1]` this is exactly 2x2 average pooling.

    Args:
        x: tensor `(B, H, W, C)` with static `H`, `W`.
        resample_filter: list of an even number of FIR taps.
        padding: zero padding on each side of both spatial axes; defaults to
            EDM's `(len(resample_filter) - 1) // 2`.

    Returns:
        The downsampled tensor, `(B, H', W', C)` with
        `H' = (H + 2 padding - len(resample_filter)) // 2 + 1`.

    Example:

    >>> x = keras.ops.ones((1, 4, 4, 2))
    >>> tuple(keras_gcm.networks.ddpmpp.fir_downsample_2d(x, [1, 3, 3, 1]).shape)
    (1, 2, 2, 2)
    """
    taps = _normalized_taps(resample_filter)
    num_taps = taps.size
    if padding is None:
        padding = (num_taps - 1) // 2
    for axis in (1, 2):
        size = _static_dim(x, axis, "fir_downsample_2d") + 2 * padding
        num_out = (size - num_taps) // 2 + 1
        if num_out < 1:
            raise ValueError(
                f"fir_downsample_2d: spatial size {size - 2 * padding} is too "
                f"small for a {num_taps}-tap filter."
            )
        x = _pad_axis(x, axis, padding, padding)
        x = _weighted_sum(
            [
                (
                    float(taps[k]),
                    _slice_axis(x, axis, k, k + 2 * (num_out - 1) + 1, 2),
                )
                for k in range(num_taps)
            ]
        )
    return x


def fir_upsample_2d(x, resample_filter=(1, 1)):
    """2x FIR upsampling of channels-last images, EDM's `Conv2d(up=True)`.

    EDM computes a depthwise transposed convolution with the kernel
    `4 outer(f, f) / sum(f)**2`, stride 2 and padding `p = (len(f) - 1) // 2`.
    Per axis, with `g = 2 f / sum(f)` and `out[j] = sum_{2 i + k - p = j}
    g[k] x[i]`, this is written here in polyphase form: output phase `r` of
    `out[2 m + r]` sums `g[k] x[m + (r + p - k) / 2]` over the taps with
    `k = r + p (mod 2)`; the two phases are then interleaved. With `[1, 1]`
    this is exactly nearest-neighbour 2x upsampling.

    Args:
        x: tensor `(B, H, W, C)` with static `H`, `W`.
        resample_filter: list of an even number of FIR taps.

    Returns:
        The upsampled tensor, `(B, 2 H, 2 W, C)`.

    Example:

    >>> x = keras.ops.ones((1, 2, 2, 3))
    >>> tuple(keras_gcm.networks.ddpmpp.fir_upsample_2d(x, [1, 3, 3, 1]).shape)
    (1, 4, 4, 3)
    """
    taps = 2.0 * _normalized_taps(resample_filter)
    num_taps = taps.size
    pad = (num_taps - 1) // 2
    for axis in (1, 2):
        size = _static_dim(x, axis, "fir_upsample_2d")
        phase_terms = []
        for phase in (0, 1):
            phase_terms.append(
                [
                    (float(taps[k]), (phase + pad - k) // 2)
                    for k in range(num_taps)
                    if (k - phase - pad) % 2 == 0
                ]
            )
        offsets = [offset for terms in phase_terms for _, offset in terms]
        before, after = max(0, -min(offsets)), max(0, max(offsets))
        x_padded = _pad_axis(x, axis, before, after)
        phases = [
            _weighted_sum(
                [
                    (
                        weight,
                        _slice_axis(
                            x_padded, axis, before + offset, before + offset + size
                        ),
                    )
                    for weight, offset in terms
                ]
            )
            for terms in phase_terms
        ]
        x = ops.stack(phases, axis=axis + 1)
        new_shape = [-1] + [int(d) for d in x.shape[1:]]
        new_shape[axis] = 2 * size
        del new_shape[axis + 1]
        x = ops.reshape(x, new_shape)
    return x


# ---------------------------------------------------------------------------
# Layers.


@keras.saving.register_keras_serializable(package="keras_gcm")
class GroupNorm(keras.layers.Layer):
    """Group normalisation with EDM's group rule, statistics in float32.

    The number of groups is `min(num_groups, channels // min_channels_per_group)`
    (EDM's `GroupNorm`). Mean and variance over each group's spatial
    positions and channels, normalisation and the per-channel affine map are
    computed in float32 whatever the dtype policy; the result is cast to the
    layer's compute dtype.

    Args:
        num_groups: int, the largest number of groups.
        min_channels_per_group: int, the fewest channels in a group.
        epsilon: float, added to the variance.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> norm = keras_gcm.networks.ddpmpp.GroupNorm(epsilon=1e-6)
    >>> y = norm(keras.ops.ones((2, 4, 4, 64)))
    >>> norm.groups
    16
    """

    def __init__(
        self, num_groups=32, min_channels_per_group=4, epsilon=1e-5, **kwargs
    ):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.num_groups = int(num_groups)
        self.min_channels_per_group = int(min_channels_per_group)
        self.epsilon = float(epsilon)
        self.groups = None

    def build(self, input_shape):
        channels = input_shape[-1]
        groups = min(self.num_groups, channels // self.min_channels_per_group)
        if groups < 1 or channels % groups != 0:
            raise ValueError(
                f"GroupNorm: {channels} channels cannot be split into "
                f"min({self.num_groups}, {channels} // "
                f"{self.min_channels_per_group}) = {groups} equal groups."
            )
        self.groups = groups
        self.gamma = self.add_weight(
            shape=(channels,), initializer="ones", name="gamma"
        )
        self.beta = self.add_weight(
            shape=(channels,), initializer="zeros", name="beta"
        )

    def call(self, x):
        shape = ops.shape(x)
        channels = x.shape[-1]
        grouped_shape = [-1] + list(shape[1:-1]) + [
            self.groups,
            channels // self.groups,
        ]
        x32 = ops.reshape(ops.cast(x, "float32"), grouped_shape)
        axes = tuple(range(1, len(grouped_shape) - 2)) + (len(grouped_shape) - 1,)
        mean = ops.mean(x32, axis=axes, keepdims=True)
        centered = x32 - mean
        variance = ops.mean(ops.square(centered), axis=axes, keepdims=True)
        normalized = centered * ops.rsqrt(variance + self.epsilon)
        normalized = ops.reshape(normalized, [-1] + list(shape[1:]))
        gamma = ops.cast(self.gamma, "float32")
        beta = ops.cast(self.beta, "float32")
        return ops.cast(normalized * gamma + beta, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_groups": self.num_groups,
                "min_channels_per_group": self.min_channels_per_group,
                "epsilon": self.epsilon,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_gcm")
class ResampleConv2D(keras.layers.Layer):
    """EDM's `Conv2d`: optional 2x FIR up/down-sampling and a convolution.

    Order: up/down-sample with the FIR filter (`fir_upsample_2d` /
    `fir_downsample_2d`), then a `kernel_size` x `kernel_size` convolution
    with "same" padding (skipped when `kernel_size == 0`). With
    `fused_resample=True` and `down=True` the convolution comes first, with
    the extra FIR padding, then an unpadded FIR downsampling (EDM's fused
    path, used by NCSN++'s residual encoder). Weights are EDM's
    xavier-uniform times `init_weight`, biases zero.

    Args:
        filters: int, output channels (ignored when `kernel_size == 0`: the
            channels are kept).
        kernel_size: int, odd convolution size, or 0 for no convolution.
        use_bias: bool.
        up: bool, 2x upsampling.
        down: bool, 2x downsampling.
        resample_filter: list of FIR taps.
        fused_resample: bool, EDM's fused convolution-then-downsampling.
        init_weight: float, multiplier of the xavier-uniform initial kernel.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> conv = keras_gcm.networks.ddpmpp.ResampleConv2D(
    ...     8, 3, down=True, resample_filter=[1, 3, 3, 1])
    >>> tuple(conv(keras.ops.ones((1, 8, 8, 4))).shape)
    (1, 4, 4, 8)
    """

    def __init__(
        self,
        filters,
        kernel_size,
        use_bias=True,
        up=False,
        down=False,
        resample_filter=(1, 1),
        fused_resample=False,
        init_weight=1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if up and down:
            raise ValueError("ResampleConv2D: `up` and `down` are exclusive.")
        kernel_size = int(kernel_size)
        if kernel_size < 0 or (kernel_size > 0 and kernel_size % 2 == 0):
            raise ValueError(
                "ResampleConv2D: `kernel_size` must be 0 or odd. "
                f"Received: kernel_size={kernel_size}"
            )
        if fused_resample and up and kernel_size:
            raise ValueError(
                "ResampleConv2D: `fused_resample` is implemented for "
                "down-sampling only."
            )
        _normalized_taps(resample_filter)
        self.filters = int(filters)
        self.kernel_size = kernel_size
        self.use_bias = bool(use_bias)
        self.up = bool(up)
        self.down = bool(down)
        self.resample_filter = [float(v) for v in resample_filter]
        self.fused_resample = bool(fused_resample)
        self.init_weight = float(init_weight)
        self.conv = None
        if kernel_size:
            self.conv = keras.layers.Conv2D(
                self.filters,
                kernel_size,
                padding="same",
                use_bias=self.use_bias,
                kernel_initializer=_xavier_uniform(self.init_weight),
                bias_initializer="zeros",
                dtype=self.dtype_policy,
                name="conv",
            )

    @property
    def _filter_pad(self):
        return (len(self.resample_filter) - 1) // 2

    def _resampled_shape(self, input_shape):
        batch, height, width, channels = input_shape
        if self.up:
            height, width = 2 * height, 2 * width
        if self.down:
            height, width = height // 2, width // 2
        return (batch, height, width, channels)

    def build(self, input_shape):
        if self.conv is not None:
            if self.fused_resample and self.down:
                pad = 2 * self._filter_pad
                conv_shape = (
                    input_shape[0],
                    input_shape[1] + pad,
                    input_shape[2] + pad,
                    input_shape[3],
                )
            else:
                conv_shape = self._resampled_shape(input_shape)
            self.conv.build(conv_shape)

    def call(self, x):
        if self.conv is not None and self.fused_resample and self.down:
            pad = self._filter_pad
            x = ops.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
            x = self.conv(x)
            return fir_downsample_2d(x, self.resample_filter, padding=0)
        if self.up:
            x = fir_upsample_2d(x, self.resample_filter)
        if self.down:
            x = fir_downsample_2d(x, self.resample_filter)
        if self.conv is not None:
            x = self.conv(x)
        return x

    def compute_output_shape(self, input_shape):
        shape = self._resampled_shape(input_shape)
        if self.conv is not None:
            shape = shape[:3] + (self.filters,)
        return shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "use_bias": self.use_bias,
                "up": self.up,
                "down": self.down,
                "resample_filter": list(self.resample_filter),
                "fused_resample": self.fused_resample,
                "init_weight": self.init_weight,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_gcm")
class UNetBlock(keras.layers.Layer):
    """EDM's `UNetBlock` (the SongUNet form), channels-last.

        h = conv0(silu(norm0(x)))                      (up/down-sampled)
        h = silu(norm1(h + affine(emb)))               (adaptive_scale=False)
        h = silu(shift + norm1(h) * (1 + scale))       (adaptive_scale=True)
        y = skip_scale * (conv1(dropout(h)) + skip(x))
        y = skip_scale * (proj(attention(norm2(y))) + y)   (attention=True)

    `skip` is a (resampling) 1x1 convolution when the channels change or the
    block resamples (`resample_proj=True`), the identity otherwise.
    Attention is softmax(q k^T / sqrt(d)) v per head, logits and softmax in
    float32 (as EDM's `AttentionOp`); q, k, v are the three consecutive
    thirds of the `qkv` 1x1 convolution's output channels, each split into
    heads. The embedding path (`affine`) is float32; its output is cast to
    the compute dtype. Dropout (before `conv1`, as EDM) uses
    `keras.layers.Dropout` seeded with `dropout_seed`, so restoring its
    `SeedGenerator` state replays the same mask.

    Args:
        in_channels: int, input channels.
        out_channels: int, output channels.
        emb_channels: int, size of the embedding vector.
        up: bool, 2x upsampling.
        down: bool, 2x downsampling.
        attention: bool, add a self-attention layer.
        num_heads: int or None; None means `out_channels // channels_per_head`.
        channels_per_head: int.
        dropout: float, dropout rate before `conv1`.
        dropout_seed: int or None, seed of the dropout's `SeedGenerator`.
        skip_scale: float, multiplies each residual sum.
        epsilon: float, GroupNorm epsilon.
        resample_filter: list of FIR taps.
        resample_proj: bool, 1x1 convolution on a resampling skip.
        adaptive_scale: bool, scale-and-shift embedding modulation.
        init_weight: float, xavier-uniform gain of `conv0`, `affine`, `skip`.
        init_zero_weight: float, gain of `conv1` and `proj` (EDM's `init_zero`).
        init_attn_weight: float or None, gain of `qkv` (None: `init_weight`).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> block = keras_gcm.networks.ddpmpp.UNetBlock(
    ...     16, 32, emb_channels=64, attention=True, num_heads=1)
    >>> y = block(keras.ops.ones((2, 8, 8, 16)), keras.ops.ones((2, 64)))
    >>> tuple(y.shape)
    (2, 8, 8, 32)
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        emb_channels,
        up=False,
        down=False,
        attention=False,
        num_heads=None,
        channels_per_head=64,
        dropout=0.0,
        dropout_seed=None,
        skip_scale=1.0,
        epsilon=1e-5,
        resample_filter=(1, 1),
        resample_proj=False,
        adaptive_scale=True,
        init_weight=1.0,
        init_zero_weight=0.0,
        init_attn_weight=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.emb_channels = int(emb_channels)
        self.up = bool(up)
        self.down = bool(down)
        self.attention = bool(attention)
        self.channels_per_head = int(channels_per_head)
        self.num_heads = 0
        if self.attention:
            self.num_heads = int(
                num_heads
                if num_heads is not None
                else self.out_channels // self.channels_per_head
            )
            if self.num_heads < 1 or self.out_channels % self.num_heads:
                raise ValueError(
                    f"UNetBlock: {self.out_channels} channels cannot be split "
                    f"into {self.num_heads} attention heads."
                )
        self.requested_num_heads = num_heads
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(
                f"UNetBlock: `dropout` must be in [0, 1). Received: {dropout}"
            )
        self.dropout_rate = float(dropout)
        self.dropout_seed = None if dropout_seed is None else int(dropout_seed)
        self.skip_scale = float(skip_scale)
        self.epsilon = float(epsilon)
        self.resample_filter = [float(v) for v in resample_filter]
        self.resample_proj = bool(resample_proj)
        self.adaptive_scale = bool(adaptive_scale)
        self.init_weight = float(init_weight)
        self.init_zero_weight = float(init_zero_weight)
        self.init_attn_weight = (
            None if init_attn_weight is None else float(init_attn_weight)
        )

        policy = self.dtype_policy
        self.norm0 = GroupNorm(epsilon=self.epsilon, dtype=policy, name="norm0")
        self.conv0 = ResampleConv2D(
            self.out_channels,
            3,
            up=self.up,
            down=self.down,
            resample_filter=self.resample_filter,
            init_weight=self.init_weight,
            dtype=policy,
            name="conv0",
        )
        self.affine = keras.layers.Dense(
            self.out_channels * (2 if self.adaptive_scale else 1),
            kernel_initializer=_xavier_uniform(self.init_weight),
            bias_initializer="zeros",
            dtype="float32",
            name="affine",
        )
        self.norm1 = GroupNorm(epsilon=self.epsilon, dtype=policy, name="norm1")
        self.dropout = keras.layers.Dropout(
            self.dropout_rate, seed=self.dropout_seed, dtype=policy, name="dropout"
        )
        self.conv1 = ResampleConv2D(
            self.out_channels,
            3,
            init_weight=self.init_zero_weight,
            dtype=policy,
            name="conv1",
        )
        self.skip = None
        if self.out_channels != self.in_channels or self.up or self.down:
            kernel = (
                1
                if self.resample_proj or self.out_channels != self.in_channels
                else 0
            )
            self.skip = ResampleConv2D(
                self.out_channels,
                kernel,
                up=self.up,
                down=self.down,
                resample_filter=self.resample_filter,
                init_weight=self.init_weight,
                dtype=policy,
                name="skip",
            )
        if self.num_heads:
            attn_weight = (
                self.init_weight
                if self.init_attn_weight is None
                else self.init_attn_weight
            )
            self.norm2 = GroupNorm(
                epsilon=self.epsilon, dtype=policy, name="norm2"
            )
            self.qkv = ResampleConv2D(
                3 * self.out_channels,
                1,
                init_weight=attn_weight,
                dtype=policy,
                name="qkv",
            )
            self.proj = ResampleConv2D(
                self.out_channels,
                1,
                init_weight=self.init_zero_weight,
                dtype=policy,
                name="proj",
            )

    def build(self, input_shape):
        if input_shape[-1] != self.in_channels:
            raise ValueError(
                f"UNetBlock '{self.name}' expects {self.in_channels} input "
                f"channels. Received input shape {input_shape}."
            )
        self.norm0.build(input_shape)
        self.conv0.build(input_shape)
        out_shape = self.conv0.compute_output_shape(input_shape)
        self.affine.build((None, self.emb_channels))
        self.norm1.build(out_shape)
        self.dropout.build(out_shape)
        self.conv1.build(out_shape)
        if self.skip is not None:
            self.skip.build(input_shape)
        if self.num_heads:
            self.norm2.build(out_shape)
            self.qkv.build(out_shape)
            self.proj.build(out_shape)

    def _attend(self, x):
        shape = ops.shape(x)
        height, width = x.shape[1], x.shape[2]
        heads = self.num_heads
        head_dim = self.out_channels // heads
        qkv = self.qkv(self.norm2(x))
        qkv = ops.reshape(qkv, (-1, height * width, 3, heads, head_dim))
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        logits = ops.einsum(
            "bqhc,bkhc->bhqk",
            ops.cast(q, "float32"),
            ops.cast(k, "float32") * (1.0 / math.sqrt(head_dim)),
        )
        weights = ops.cast(ops.softmax(logits, axis=-1), v.dtype)
        attended = ops.einsum("bhqk,bkhc->bqhc", weights, v)
        attended = ops.reshape(attended, shape)
        return self.proj(attended)

    def call(self, x, emb, training=None):
        orig = x
        x = self.conv0(ops.silu(self.norm0(x)))
        params = ops.cast(self.affine(emb), x.dtype)[:, None, None, :]
        if self.adaptive_scale:
            scale, shift = ops.split(params, 2, axis=-1)
            x = ops.silu(shift + self.norm1(x) * (scale + 1.0))
        else:
            x = ops.silu(self.norm1(x + params))
        x = self.conv1(self.dropout(x, training=training))
        x = x + (self.skip(orig) if self.skip is not None else orig)
        if self.skip_scale != 1.0:
            x = x * self.skip_scale
        if self.num_heads:
            x = self._attend(x) + x
            if self.skip_scale != 1.0:
                x = x * self.skip_scale
        return x

    def compute_output_shape(self, input_shape):
        return self.conv0.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "in_channels": self.in_channels,
                "out_channels": self.out_channels,
                "emb_channels": self.emb_channels,
                "up": self.up,
                "down": self.down,
                "attention": self.attention,
                "num_heads": self.requested_num_heads,
                "channels_per_head": self.channels_per_head,
                "dropout": self.dropout_rate,
                "dropout_seed": self.dropout_seed,
                "skip_scale": self.skip_scale,
                "epsilon": self.epsilon,
                "resample_filter": list(self.resample_filter),
                "resample_proj": self.resample_proj,
                "adaptive_scale": self.adaptive_scale,
                "init_weight": self.init_weight,
                "init_zero_weight": self.init_zero_weight,
                "init_attn_weight": self.init_attn_weight,
            }
        )
        return config


# ---------------------------------------------------------------------------
# The network.

_ENCODER_TYPES = ("standard", "skip", "residual")
_DECODER_TYPES = ("standard", "skip")
_EMBEDDING_TYPES = ("positional", "fourier")


@keras.saving.register_keras_serializable(package="keras_gcm")
class SongUNet(keras.Model):
    """EDM's SongUNet (DDPM++ / NCSN++), channels-last, Keras 3.

    The U-Net of Karras et al. (2022) that re-implements Song et al.'s
    DDPM++ and NCSN++: a time embedding (positional or Fourier) through a
    two-layer SiLU MLP, an encoder of `num_blocks` `UNetBlock`s per
    resolution with 2x downsampling blocks between resolutions, two blocks
    at the lowest resolution (the first with attention), a decoder of
    `num_blocks + 1` blocks per resolution on the concatenated encoder
    skips, and an output `silu(GroupNorm)` + 3x3 convolution. Initialisation
    is EDM's: xavier-uniform everywhere, gain `1e-5` on the last
    convolution of every residual branch and of the output (so the untrained
    network outputs almost zero), `sqrt(0.2)` on the attention `qkv`, zero
    biases; GroupNorm epsilon `1e-6`, as EDM's SongUNet passes.

    Time conditioning: `c_t` (and `c_s` when `time_inputs=2`) are the
    conditioned times the consistency model passes, fed to the noise
    embedding as EDM feeds `noise_labels`. With `time_inputs=2` the `c_s`
    embedding has its own MLP (`map_layer0_s`, `map_layer1_s`) and is added
    to the `c_t` embedding before the shared SiLU:
    `emb = silu(mlp_t(e(c_t) + label) + mlp_s(e(c_s)))`, where each `mlp` is
    `Dense -> SiLU -> Dense`. With `time_inputs=1` this is EDM's
    `emb = silu(mlp_t(e(c_t) + label))`. The embedding path runs in float32
    under any dtype policy; the image path in the policy's compute dtype,
    GroupNorm statistics and attention softmax in float32. The output has
    the compute dtype.

    Dropout is a `keras.layers.Dropout` in every block, seeded with
    `seed + 1 + block_index`; `seed_generators` lists every random-state
    holder of the network (dropout and label dropout), so a caller can
    snapshot and restore their `state` to replay the same masks.

    Args:
        img_resolution: int, input height and width (square images).
        in_channels: int, input channels.
        out_channels: int or None, output channels (None: `in_channels`).
        label_dim: int, number of classes, 0 for unconditional.
        model_channels: int, base channel count.
        channel_mult: list of int, channel multipliers per resolution.
        channel_mult_emb: int, embedding size is `model_channels * this`.
        num_blocks: int, residual blocks per resolution.
        attn_resolutions: list of int, resolutions with self-attention.
        dropout: float, dropout rate inside the blocks.
        label_dropout: float, probability of dropping the class label in
            training (classifier-free guidance).
        embedding_type: "positional" (DDPM++) or "fourier" (NCSN++).
        channel_mult_noise: int, noise embedding size is
            `model_channels * this`.
        encoder_type: "standard" (DDPM++), "skip" or "residual" (NCSN++).
        decoder_type: "standard" or "skip".
        resample_filter: list of FIR taps, `[1, 1]` (DDPM++) or
            `[1, 3, 3, 1]` (NCSN++).
        time_inputs: 1 (one time input `c_t`) or 2 (`c_t` and `c_s`).
        augment_dim: int, number of augmentation labels the network is
            conditioned on (EDM's `augment_dim`; 9 for
            `keras_gcm.augmentation.AugmentPipe`'s CIFAR-10 setting), 0 for
            none. As EDM, a bias-free linear map `map_augment` of the labels
            is added to the noise embedding; no labels (what the samplers
            pass) means the zero labels, "not augmented".
        seed: int or None, seed of the dropout masks, label dropout and
            Fourier frequencies (None: drawn from NumPy's global generator,
            then fixed in the config).
        input_range: `(low, high)` of the images the network is trained on
            (default `(-1, 1)`, EDM's scaling); `ConsistencyModel.fit`
            rejects array data outside it before training starts. None
            turns the check off.
        **kwargs: standard `keras.Model` arguments (`name`, `dtype`, ...).

    Example:

    >>> net = keras_gcm.networks.SongUNet(
    ...     img_resolution=8, in_channels=1, model_channels=16,
    ...     channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4])
    >>> x = keras.ops.zeros((2, 8, 8, 1))
    >>> tuple(net(x, keras.ops.ones((2,))).shape)
    (2, 8, 8, 1)
    """

    def __init__(
        self,
        img_resolution,
        in_channels,
        out_channels=None,
        label_dim=0,
        model_channels=128,
        channel_mult=(2, 2, 2),
        channel_mult_emb=4,
        num_blocks=4,
        attn_resolutions=(16,),
        dropout=0.10,
        label_dropout=0.0,
        embedding_type="positional",
        channel_mult_noise=1,
        encoder_type="standard",
        decoder_type="standard",
        resample_filter=(1, 1),
        time_inputs=1,
        seed=None,
        input_range=(-1.0, 1.0),
        augment_dim=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.input_range = (
            None if input_range is None else tuple(float(v) for v in input_range)
        )
        # Inputs are cast by `call` itself: Keras' automatic cast would turn
        # the times into the compute dtype (bfloat16 under mixed precision),
        # which cannot resolve the small time steps of consistency training.
        self._convert_input_args = False

        if embedding_type not in _EMBEDDING_TYPES:
            raise ValueError(
                f"`embedding_type` must be one of {_EMBEDDING_TYPES}. "
                f"Received: {embedding_type!r}"
            )
        if encoder_type not in _ENCODER_TYPES:
            raise ValueError(
                f"`encoder_type` must be one of {_ENCODER_TYPES}. "
                f"Received: {encoder_type!r}"
            )
        if decoder_type not in _DECODER_TYPES:
            raise ValueError(
                f"`decoder_type` must be one of {_DECODER_TYPES}. "
                f"Received: {decoder_type!r}"
            )
        if time_inputs not in (1, 2):
            raise ValueError(
                f"`time_inputs` must be 1 or 2. Received: {time_inputs!r}"
            )
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
        for name, value in (
            ("in_channels", in_channels),
            ("model_channels", model_channels),
            ("channel_mult_emb", channel_mult_emb),
            ("channel_mult_noise", channel_mult_noise),
            ("num_blocks", num_blocks),
        ):
            if int(value) < 1:
                raise ValueError(f"`{name}` must be >= 1. Received: {value}")
        if int(augment_dim) < 0:
            raise ValueError(
                f"`augment_dim` must be >= 0. Received: {augment_dim}"
            )
        if int(label_dim) < 0:
            raise ValueError(f"`label_dim` must be >= 0. Received: {label_dim}")
        for name, value in (("dropout", dropout), ("label_dropout", label_dropout)):
            if not 0.0 <= float(value) < 1.0:
                raise ValueError(f"`{name}` must be in [0, 1). Received: {value}")
        _normalized_taps(resample_filter)
        if seed is None:
            seed = int(np.random.randint(0, 2**30))

        self.img_resolution = img_resolution
        self.in_channels = int(in_channels)
        self.out_channels = int(
            in_channels if out_channels is None else out_channels
        )
        self.label_dim = int(label_dim)
        self.model_channels = int(model_channels)
        self.channel_mult = channel_mult
        self.channel_mult_emb = int(channel_mult_emb)
        self.num_blocks = int(num_blocks)
        self.attn_resolutions = [int(r) for r in attn_resolutions]
        resolutions = [int(img_resolution) >> level for level in range(len(channel_mult))]
        unknown = [r for r in self.attn_resolutions if r not in resolutions]
        if unknown:
            raise ValueError(
                f"`attn_resolutions` {unknown} do not exist in this network: with "
                f"img_resolution={img_resolution} and {len(channel_mult)} levels "
                f"(channel_mult={list(channel_mult)}) the resolutions are "
                f"{resolutions}. Choose attention resolutions among them."
            )
        self.dropout_rate = float(dropout)
        self.label_dropout = float(label_dropout)
        self.embedding_type = embedding_type
        self.channel_mult_noise = int(channel_mult_noise)
        self.encoder_type = encoder_type
        self.decoder_type = decoder_type
        self.resample_filter = [float(v) for v in resample_filter]
        self.time_inputs = int(time_inputs)
        self.augment_dim = int(augment_dim)
        self.seed = int(seed)

        emb_channels = self.model_channels * self.channel_mult_emb
        noise_channels = self.model_channels * self.channel_mult_noise
        self.emb_channels = emb_channels
        self.noise_channels = noise_channels
        policy = self.dtype_policy

        def dense(units, name):
            # The embedding path stays float32 under any policy (as EDM's).
            return keras.layers.Dense(
                units,
                kernel_initializer=_xavier_uniform(1.0),
                bias_initializer="zeros",
                dtype="float32",
                name=name,
            )

        # Mapping.
        if embedding_type == "positional":
            self.map_noise = PositionalEmbedding(
                noise_channels, endpoint=True, name="map_noise"
            )
        else:
            self.map_noise = FourierEmbedding(
                noise_channels, seed=self.seed, name="map_noise"
            )
        self.map_label = (
            dense(noise_channels, "map_label") if self.label_dim else None
        )
        self.map_augment = None
        if self.augment_dim:
            # EDM: Linear(augment_dim, noise_channels, bias=False).
            self.map_augment = keras.layers.Dense(
                noise_channels,
                use_bias=False,
                kernel_initializer=_xavier_uniform(1.0),
                dtype="float32",
                name="map_augment",
            )
        self.map_layer0 = dense(emb_channels, "map_layer0")
        self.map_layer1 = dense(emb_channels, "map_layer1")
        if self.time_inputs == 2:
            self.map_layer0_s = dense(emb_channels, "map_layer0_s")
            self.map_layer1_s = dense(emb_channels, "map_layer1_s")
        self.label_seed_generator = None
        if self.label_dim and self.label_dropout > 0:
            self.label_seed_generator = keras.random.SeedGenerator(
                self.seed, name="label_dropout_seed_generator"
            )

        block_index = [0]

        def block(name, cin, cout, **overrides):
            block_index[0] += 1
            return UNetBlock(
                cin,
                cout,
                emb_channels,
                num_heads=1,
                dropout=self.dropout_rate,
                dropout_seed=self.seed + block_index[0],
                skip_scale=math.sqrt(0.5),
                epsilon=1e-6,
                resample_filter=self.resample_filter,
                resample_proj=True,
                adaptive_scale=False,
                init_weight=1.0,
                init_zero_weight=1e-5,
                init_attn_weight=math.sqrt(0.2),
                dtype=policy,
                name=name,
                **overrides,
            )

        # Encoder.
        enc_layers, enc_roles = [], []
        cout = self.in_channels
        caux = self.in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                cin = cout
                cout = self.model_channels
                enc_layers.append(
                    ResampleConv2D(cout, 3, dtype=policy, name=f"enc_{res}x{res}_conv")
                )
                enc_roles.append("main")
            else:
                enc_layers.append(
                    block(f"enc_{res}x{res}_down", cout, cout, down=True)
                )
                enc_roles.append("main")
                if encoder_type == "skip":
                    enc_layers.append(
                        ResampleConv2D(
                            caux,
                            0,
                            down=True,
                            resample_filter=self.resample_filter,
                            dtype=policy,
                            name=f"enc_{res}x{res}_aux_down",
                        )
                    )
                    enc_roles.append("aux_down")
                    enc_layers.append(
                        ResampleConv2D(
                            cout, 1, dtype=policy, name=f"enc_{res}x{res}_aux_skip"
                        )
                    )
                    enc_roles.append("aux_skip")
                if encoder_type == "residual":
                    enc_layers.append(
                        ResampleConv2D(
                            cout,
                            3,
                            down=True,
                            resample_filter=self.resample_filter,
                            fused_resample=True,
                            dtype=policy,
                            name=f"enc_{res}x{res}_aux_residual",
                        )
                    )
                    enc_roles.append("aux_residual")
                    caux = cout
            for idx in range(self.num_blocks):
                cin = cout
                cout = self.model_channels * mult
                enc_layers.append(
                    block(
                        f"enc_{res}x{res}_block{idx}",
                        cin,
                        cout,
                        attention=res in self.attn_resolutions,
                    )
                )
                enc_roles.append("main")
        skip_channels = []
        for layer, role in zip(enc_layers, enc_roles):
            if role == "main":
                skip_channels.append(
                    layer.out_channels if isinstance(layer, UNetBlock) else layer.filters
                )

        # Decoder.
        dec_layers, dec_roles = [], []
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                dec_layers.append(
                    block(f"dec_{res}x{res}_in0", cout, cout, attention=True)
                )
                dec_roles.append("main")
                dec_layers.append(block(f"dec_{res}x{res}_in1", cout, cout))
                dec_roles.append("main")
            else:
                dec_layers.append(block(f"dec_{res}x{res}_up", cout, cout, up=True))
                dec_roles.append("main")
            for idx in range(self.num_blocks + 1):
                cin = cout + skip_channels.pop()
                cout = self.model_channels * mult
                dec_layers.append(
                    block(
                        f"dec_{res}x{res}_block{idx}",
                        cin,
                        cout,
                        attention=(
                            idx == self.num_blocks and res in self.attn_resolutions
                        ),
                    )
                )
                dec_roles.append("concat")
            if decoder_type == "skip" or level == 0:
                if decoder_type == "skip" and level < len(channel_mult) - 1:
                    dec_layers.append(
                        ResampleConv2D(
                            self.out_channels,
                            0,
                            up=True,
                            resample_filter=self.resample_filter,
                            dtype=policy,
                            name=f"dec_{res}x{res}_aux_up",
                        )
                    )
                    dec_roles.append("aux_up")
                dec_layers.append(
                    GroupNorm(epsilon=1e-6, dtype=policy, name=f"dec_{res}x{res}_aux_norm")
                )
                dec_roles.append("aux_norm")
                dec_layers.append(
                    ResampleConv2D(
                        self.out_channels,
                        3,
                        init_weight=1e-5,
                        dtype=policy,
                        name=f"dec_{res}x{res}_aux_conv",
                    )
                )
                dec_roles.append("aux_conv")
        self.enc_layers = enc_layers
        self.dec_layers = dec_layers
        self._enc_roles = tuple(enc_roles)
        self._dec_roles = tuple(dec_roles)

    # -- factories ---------------------------------------------------------

    @classmethod
    def ddpmpp(cls, img_resolution=32, in_channels=3, **overrides):
        """DDPM++ (EDM's CIFAR-10 configuration); any argument can be overridden.

        Example:

        A 55.7M-parameter build (not run in the doctests; tests/test_ddpmpp.py
        checks the count):

        >>> net = keras_gcm.networks.SongUNet.ddpmpp(32, 3, dropout=0.2)  # doctest: +SKIP
        >>> net.build((None, 32, 32, 3))  # doctest: +SKIP
        >>> net.count_params()  # doctest: +SKIP
        55732739
        """
        config = dict(
            model_channels=128,
            channel_mult=[2, 2, 2],
            channel_mult_emb=4,
            num_blocks=4,
            attn_resolutions=[16],
            dropout=0.10,
            embedding_type="positional",
            channel_mult_noise=1,
            encoder_type="standard",
            decoder_type="standard",
            resample_filter=[1, 1],
        )
        config.update(overrides)
        return cls(img_resolution=img_resolution, in_channels=in_channels, **config)

    @classmethod
    def ncsnpp(cls, img_resolution=32, in_channels=3, **overrides):
        """NCSN++ (EDM's CIFAR-10 configuration); any argument can be overridden.

        Example:

        A 56.4M-parameter build (not run in the doctests; tests/test_ddpmpp.py
        checks the count):

        >>> net = keras_gcm.networks.SongUNet.ncsnpp(32, 3)  # doctest: +SKIP
        >>> net.build((None, 32, 32, 3))  # doctest: +SKIP
        >>> net.count_params()  # doctest: +SKIP
        56395523
        """
        config = dict(
            model_channels=128,
            channel_mult=[2, 2, 2],
            channel_mult_emb=4,
            num_blocks=4,
            attn_resolutions=[16],
            dropout=0.10,
            embedding_type="fourier",
            channel_mult_noise=2,
            encoder_type="residual",
            decoder_type="standard",
            resample_filter=[1, 3, 3, 1],
        )
        config.update(overrides)
        return cls(img_resolution=img_resolution, in_channels=in_channels, **config)

    # -- Keras plumbing ----------------------------------------------------

    @property
    def seed_generators(self):
        """Every `SeedGenerator` the network draws from, in a fixed order.

        The dropout layers' generators (block order), then the label-dropout
        generator when there is one. Snapshot `[g.state.value for g in ...]`
        and `assign` it back to replay the same random masks.
        """
        generators = []
        for layer in list(self.enc_layers) + list(self.dec_layers):
            if isinstance(layer, UNetBlock):
                generator = getattr(layer.dropout, "seed_generator", None)
                if generator is not None:
                    generators.append(generator)
        if self.label_seed_generator is not None:
            generators.append(self.label_seed_generator)
        return generators

    def _check_input_shape(self, shape):
        shape = tuple(shape)
        expected = (self.img_resolution, self.img_resolution, self.in_channels)
        if len(shape) != 4 or tuple(shape[1:]) != expected:
            raise ValueError(
                f"SongUNet expects images of shape (batch, {expected[0]}, "
                f"{expected[1]}, {expected[2]}) (channels-last). "
                f"Received shape {shape}."
            )

    def build(self, input_shape):
        self._check_input_shape(input_shape)
        batch = input_shape[0]
        noise_shape = (batch, self.noise_channels)
        emb_shape = (batch, self.emb_channels)
        if self.map_label is not None:
            self.map_label.build((batch, self.label_dim))
        if self.map_augment is not None:
            self.map_augment.build((batch, self.augment_dim))
        self.map_layer0.build(noise_shape)
        self.map_layer1.build(emb_shape)
        if self.time_inputs == 2:
            self.map_layer0_s.build(noise_shape)
            self.map_layer1_s.build(emb_shape)

        x_shape = tuple(input_shape)
        aux_shape = x_shape
        skips = []
        for layer, role in zip(self.enc_layers, self._enc_roles):
            layer.build(aux_shape if role.startswith("aux") else x_shape)
            if role == "aux_down":
                aux_shape = layer.compute_output_shape(aux_shape)
            elif role == "aux_residual":
                aux_shape = x_shape
            elif role == "main":
                x_shape = layer.compute_output_shape(x_shape)
                skips.append(x_shape)
        aux_shape = None
        for layer, role in zip(self.dec_layers, self._dec_roles):
            if role == "aux_up":
                layer.build(aux_shape)
                aux_shape = layer.compute_output_shape(aux_shape)
            elif role == "aux_norm":
                layer.build(x_shape)
            elif role == "aux_conv":
                layer.build(x_shape)
                aux_shape = layer.compute_output_shape(x_shape)
            else:
                if role == "concat":
                    skip = skips.pop()
                    x_shape = x_shape[:3] + (x_shape[3] + skip[3],)
                layer.build(x_shape)
                x_shape = layer.compute_output_shape(x_shape)
        self.built = True

    def __call__(self, x, c_t, c_s=None, class_labels=None, augment_labels=None,
                 **kwargs):
        # Inputs are not auto-cast (see __init__); make array-likes tensors so
        # that Keras' call machinery accepts them, keeping their dtypes.
        def as_tensor(value):
            if value is None or isinstance(value, keras.KerasTensor):
                return value
            if ops.is_tensor(value):
                return value
            return ops.convert_to_tensor(np.asarray(value))

        return super().__call__(
            as_tensor(x),
            as_tensor(c_t),
            as_tensor(c_s),
            as_tensor(class_labels),
            augment_labels=as_tensor(augment_labels),
            **kwargs,
        )

    def _embed_times(self, c, name):
        if len(c.shape) != 1:
            raise ValueError(
                f"SongUNet expects `{name}` of shape (batch,), one conditioned "
                f"time per example. Received shape {tuple(c.shape)}."
            )
        return self.map_noise(ops.cast(c, "float32"))

    def _label_embedding_input(self, class_labels, batch_size, training):
        labels = class_labels
        if labels is None:
            # No labels: the all-zero "dropped label" vector, as EDM does.
            labels = ops.zeros((1, self.label_dim), "float32")
        elif len(labels.shape) == 1:
            if not keras.backend.standardize_dtype(labels.dtype).startswith(
                ("int", "uint")
            ):
                raise ValueError(
                    "SongUNet: rank-1 `class_labels` must be integer class "
                    f"indices. Received dtype {labels.dtype}."
                )
            # Concrete labels only (eager); the samplers and fit check on the host.
            check_class_labels(labels, self.label_dim)
            # The class `label_dim` means "no label": the zero vector.
            known = labels < self.label_dim
            labels = ops.one_hot(
                ops.where(known, labels, ops.zeros_like(labels)), self.label_dim,
                dtype="float32",
            ) * ops.cast(known, "float32")[:, None]
        elif len(labels.shape) == 2 and labels.shape[-1] == self.label_dim:
            labels = ops.cast(labels, "float32")
        else:
            raise ValueError(
                "SongUNet expects `class_labels` of shape (batch,) (int) or "
                f"(batch, {self.label_dim}) (one-hot). Received shape "
                f"{tuple(labels.shape)}."
            )
        if training and self.label_dropout > 0:
            keep = keras.random.uniform(
                (batch_size, 1), seed=self.label_seed_generator
            ) >= self.label_dropout
            labels = labels * ops.cast(keep, "float32")
        return labels * math.sqrt(self.label_dim)

    def call(self, x, c_t, c_s=None, class_labels=None, training=None,
             augment_labels=None):
        """Runs the network.

        Args:
            x: `(B, H, W, C)` images (channels-last).
            c_t: `(B,)` conditioned times `c(t)`.
            c_s: `(B,)` conditioned times `c(s)`; required with
                `time_inputs=2`, refused with `time_inputs=1`.
            class_labels: None, `(B,)` int class indices in
                `[0, label_dim]` or `(B, label_dim)` one-hot rows; only with
                `label_dim > 0` (None and the class `label_dim` mean "no
                label", the zero vector; other indices are an error when
                their values can be read, i.e. eagerly).
            training: bool, dropout and label dropout are active when True.
            augment_labels: None or `(B, augment_dim)` augmentation labels
                (`keras_gcm.augmentation.AugmentPipe`); only with
                `augment_dim > 0` (None means the zero labels).

        Returns:
            `(B, H, W, out_channels)` in the compute dtype.
        """
        self._check_input_shape(x.shape)
        if self.time_inputs == 2 and c_s is None:
            raise ValueError(
                "This SongUNet was built with `time_inputs=2`: pass the "
                "conditioned second time `c_s` (shape (batch,))."
            )
        if self.time_inputs == 1 and c_s is not None:
            raise ValueError(
                "This SongUNet was built with `time_inputs=1` and takes no "
                "`c_s`; build it with `time_inputs=2` for two time inputs."
            )
        if self.label_dim == 0 and class_labels is not None:
            raise ValueError(
                "This SongUNet is unconditional (`label_dim=0`) and takes no "
                "`class_labels`."
            )
        if augment_labels is not None and self.map_augment is None:
            raise ValueError(
                "This SongUNet was built without augmentation labels "
                "(`augment_dim=0`) and takes no `augment_labels`; build it with "
                "`augment_dim=9` (EDM's AugmentPipe labels) to condition on them."
            )
        if augment_labels is not None and (
            len(augment_labels.shape) != 2
            or augment_labels.shape[-1] != self.augment_dim
        ):
            raise ValueError(
                f"SongUNet expects `augment_labels` of shape (batch, "
                f"{self.augment_dim}) (`augment_dim`). Received shape "
                f"{tuple(augment_labels.shape)}."
            )
        x = ops.cast(x, self.compute_dtype)
        batch_size = ops.shape(x)[0]

        # Mapping (float32).
        emb = self._embed_times(c_t, "c_t")
        if self.map_label is not None:
            emb = emb + self.map_label(
                self._label_embedding_input(class_labels, batch_size, training)
            )
        if augment_labels is not None:
            emb = emb + self.map_augment(ops.cast(augment_labels, "float32"))
        emb = self.map_layer1(ops.silu(self.map_layer0(emb)))
        if self.time_inputs == 2:
            emb_s = self._embed_times(c_s, "c_s")
            emb = emb + self.map_layer1_s(ops.silu(self.map_layer0_s(emb_s)))
        emb = ops.silu(emb)

        # Encoder.
        skips = []
        aux = x
        for layer, role in zip(self.enc_layers, self._enc_roles):
            if role == "aux_down":
                aux = layer(aux)
            elif role == "aux_skip":
                x = x + layer(aux)
                skips[-1] = x
            elif role == "aux_residual":
                x = (x + layer(aux)) * math.sqrt(0.5)
                skips[-1] = x
                aux = x
            else:
                if isinstance(layer, UNetBlock):
                    x = layer(x, emb, training=training)
                else:
                    x = layer(x)
                skips.append(x)

        # Decoder.
        aux = None
        hidden = None
        for layer, role in zip(self.dec_layers, self._dec_roles):
            if role == "aux_up":
                aux = layer(aux)
            elif role == "aux_norm":
                hidden = layer(x)
            elif role == "aux_conv":
                hidden = layer(ops.silu(hidden))
                aux = hidden if aux is None else hidden + aux
            else:
                if role == "concat":
                    x = ops.concatenate([x, skips.pop()], axis=-1)
                x = layer(x, emb, training=training)
        return aux

    def compute_output_spec(self, x, c_t, c_s=None, class_labels=None, training=None,
                            augment_labels=None):
        shape = tuple(x.shape[:3]) + (self.out_channels,)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "img_resolution": self.img_resolution,
                "in_channels": self.in_channels,
                "out_channels": self.out_channels,
                "label_dim": self.label_dim,
                "model_channels": self.model_channels,
                "channel_mult": list(self.channel_mult),
                "channel_mult_emb": self.channel_mult_emb,
                "num_blocks": self.num_blocks,
                "attn_resolutions": list(self.attn_resolutions),
                "dropout": self.dropout_rate,
                "label_dropout": self.label_dropout,
                "embedding_type": self.embedding_type,
                "channel_mult_noise": self.channel_mult_noise,
                "encoder_type": self.encoder_type,
                "decoder_type": self.decoder_type,
                "resample_filter": list(self.resample_filter),
                "time_inputs": self.time_inputs,
                "augment_dim": self.augment_dim,
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
