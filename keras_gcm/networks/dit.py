"""DiT: the Diffusion Transformer backbone of the latent-space experiments.

The architecture is Peebles & Xie, "Scalable Diffusion Models with
Transformers" (2023, facebookresearch/DiT `models.py`) in the two-time form
MeanFlow's DiT uses (Geng et al., "Mean Flows for One-step Generative
Modeling", 2025, Gsunshine/meanflow `models/models_dit.py`), which the paper
("A Guide to Training Consistency Models", Table 6b, appendix G.2) trains on
ImageNet-256 latents:

* patchify: a `p x p` convolution with stride `p` (a linear map of each
  patch) plus fixed 2-D sine-cosine position embeddings;
* conditioning `c = e_t(c_t) + e_s(c_s) + e_y(y)`: two timestep embedders
  (sinusoidal `[cos, sin]` features, max period 10000, then
  `Dense -> SiLU -> Dense`) and a class-embedding table with one extra
  "null class" row (index `label_dim`) for classifier-free guidance;
* `depth` adaLN-Zero blocks: `x += gate * Attn(LN(x) (1 + scale) + shift)`,
  `x += gate' * MLP(LN(x) (1 + scale') + shift')` with the six modulation
  vectors a zero-initialised linear map of `silu(c)`;
* the final adaLN layer and a linear map back to patches, unpatchified to
  the input's shape.

Everything is channels-last, `(batch, height, width, channels)`.

Network protocol (what `keras_gcm`'s consistency models call):

    network(x, c_t, c_s=None, class_labels=None, training=None)
"""

import math

import keras
import numpy as np
from keras import ops

from keras_gcm.validation import check_class_labels


def timestep_frequencies(t, dim, max_period=10000.0):
    """DiT's sinusoidal timestep features `[cos(t w), sin(t w)]`.

    `w_i = max_period ** (-i / (dim // 2))` for `i < dim // 2`; an odd `dim`
    gets a trailing zero (GLIDE's `timestep_embedding`).

    Args:
        t: `(B,)` tensor of (conditioned) times.
        dim: int, feature size.
        max_period: float, the slowest period.

    Returns:
        A float32 `(B, dim)` tensor.

    Example:

    >>> from keras_gcm.networks.dit import timestep_frequencies
    >>> tuple(timestep_frequencies(keras.ops.zeros((2,)), 8).shape)
    (2, 8)
    """
    half = dim // 2
    freqs = np.exp(-math.log(max_period) * np.arange(half, dtype=np.float64) / half)
    args = ops.cast(t, "float32")[:, None] * ops.convert_to_tensor(
        freqs.astype("float32")
    )[None, :]
    emb = ops.concatenate([ops.cos(args), ops.sin(args)], axis=-1)
    if dim % 2:
        emb = ops.concatenate([emb, ops.zeros_like(emb[:, :1])], axis=-1)
    return emb


def sincos_position_embedding(embed_dim, grid_size):
    """MAE's fixed 2-D sine-cosine position embedding, `(grid^2, embed_dim)`.

    The first half of the channels encodes the column (width) index, the
    second half the row index, each as `[sin(pos w), cos(pos w)]` with
    `w_i = 10000 ** (-i / (embed_dim / 4))`; tokens are in row-major order.

    Args:
        embed_dim: int, divisible by 4.
        grid_size: int, patches per side.

    Returns:
        A float32 numpy array of shape `(grid_size**2, embed_dim)`.

    Example:

    >>> from keras_gcm.networks.dit import sincos_position_embedding
    >>> sincos_position_embedding(16, 4).shape
    (16, 16)
    """
    if embed_dim % 4:
        raise ValueError(
            f"The DiT width (`hidden_size`) must be divisible by 4 for the 2-D "
            f"sine-cosine position embedding. Received: {embed_dim}"
        )
    grid_w, grid_h = np.meshgrid(
        np.arange(grid_size, dtype=np.float64), np.arange(grid_size, dtype=np.float64)
    )

    def one_axis(pos):
        omega = 1.0 / 10000 ** (np.arange(embed_dim // 4, dtype=np.float64) / (embed_dim / 4.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return np.concatenate([one_axis(grid_w), one_axis(grid_h)], axis=1).astype("float32")


def _xavier(fan_in, fan_out, seed):
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return keras.initializers.RandomUniform(-limit, limit, seed=seed)


def _dense(units, fan_in, seed, name, init="xavier", dtype=None):
    if init == "xavier":
        kernel = _xavier(fan_in, units, seed)
    elif init == "normal":
        kernel = keras.initializers.RandomNormal(stddev=0.02, seed=seed)
    else:
        kernel = "zeros"
    return keras.layers.Dense(
        units, kernel_initializer=kernel, bias_initializer="zeros", dtype=dtype, name=name
    )


@keras.saving.register_keras_serializable(package="keras_gcm")
class DiTBlock(keras.layers.Layer):
    """A DiT block with adaLN-Zero conditioning (Peebles & Xie, Fig. 3).

    `x += gate_msa * Attn(modulate(LN(x), shift_msa, scale_msa))`, then
    `x += gate_mlp * MLP(modulate(LN(x), shift_mlp, scale_mlp))`, where
    `modulate(h, shift, scale) = h (1 + scale) + shift` and the six vectors
    are `Dense(silu(c))`, zero-initialised (so the block starts as the
    identity). LayerNorms have no affine parameters (epsilon 1e-6); the
    attention is multi-head self-attention with a fused `qkv` projection
    (softmax in float32); the MLP is `Dense(mlp_ratio * D) -> GELU(tanh) ->
    Dense(D)`.

    Args:
        hidden_size: int, token width D.
        num_heads: int, attention heads (must divide D).
        mlp_ratio: float, MLP hidden width over D.
        seed: int or None, seed of the initialisers.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> from keras_gcm.networks.dit import DiTBlock
    >>> block = DiTBlock(32, 4, seed=0)
    >>> tuple(block(keras.ops.ones((2, 16, 32)), keras.ops.ones((2, 32))).shape)
    (2, 16, 32)
    """

    def __init__(self, hidden_size, num_heads, mlp_ratio=4.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = int(hidden_size)
        self.num_heads = int(num_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.seed = seed
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"`num_heads` ({self.num_heads}) must divide `hidden_size` "
                f"({self.hidden_size})."
            )
        d = self.hidden_size
        hidden = int(d * self.mlp_ratio)
        s = (lambda k: None) if seed is None else (lambda k: int(seed) + k)
        policy = self.dtype_policy
        self.norm1 = keras.layers.LayerNormalization(
            epsilon=1e-6, center=False, scale=False, dtype=policy, name="norm1")
        self.norm2 = keras.layers.LayerNormalization(
            epsilon=1e-6, center=False, scale=False, dtype=policy, name="norm2")
        self.qkv = _dense(3 * d, d, s(0), "qkv", dtype=policy)
        self.proj = _dense(d, d, s(1), "proj", dtype=policy)
        self.fc1 = _dense(hidden, d, s(2), "fc1", dtype=policy)
        self.fc2 = _dense(d, hidden, s(3), "fc2", dtype=policy)
        self.adaln = _dense(6 * d, d, None, "adaLN_modulation", init="zeros", dtype=policy)

    def build(self, x_shape, c_shape=None):
        d = self.hidden_size
        token_shape = (None, None, d)
        self.norm1.build(token_shape)
        self.norm2.build(token_shape)
        self.qkv.build(token_shape)
        self.proj.build(token_shape)
        self.fc1.build(token_shape)
        self.fc2.build((None, None, int(d * self.mlp_ratio)))
        self.adaln.build((None, d))
        self.built = True

    def attention(self, h):
        """Multi-head self-attention of `(B, T, D)` tokens (timm's `Attention`)."""
        d, heads = self.hidden_size, self.num_heads
        tokens = ops.shape(h)[1]
        qkv = ops.reshape(self.qkv(h), (-1, tokens, 3, heads, d // heads))
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (B, T, H, d_h)
        scale = (d // heads) ** -0.5
        logits = ops.einsum("bqhd,bkhd->bhqk", q, k) * ops.cast(scale, q.dtype)
        weights = ops.cast(ops.softmax(ops.cast(logits, "float32"), axis=-1), v.dtype)
        out = ops.einsum("bhqk,bkhd->bqhd", weights, v)
        return self.proj(ops.reshape(out, (-1, tokens, d)))

    def call(self, x, c):
        mod = ops.cast(self.adaln(ops.silu(c)), x.dtype)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = ops.split(
            mod, 6, axis=-1
        )
        h = self.norm1(x) * (1.0 + scale_msa[:, None]) + shift_msa[:, None]
        x = x + gate_msa[:, None] * self.attention(h)
        h = self.norm2(x) * (1.0 + scale_mlp[:, None]) + shift_mlp[:, None]
        h = self.fc2(keras.activations.gelu(self.fc1(h), approximate=True))
        return x + gate_mlp[:, None] * h

    def compute_output_shape(self, x_shape, c_shape=None):
        return x_shape

    def get_config(self):
        config = super().get_config()
        config.update({"hidden_size": self.hidden_size, "num_heads": self.num_heads,
                       "mlp_ratio": self.mlp_ratio, "seed": self.seed})
        return config


# (depth, hidden_size, num_heads) of the DiT sizes (Peebles & Xie, Table 1).
DIT_SIZES = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16),
             "XL": (28, 1152, 16)}


@keras.saving.register_keras_serializable(package="keras_gcm")
class DiT(keras.Model):
    """Diffusion Transformer `F(x, c_t[, c_s], class_labels)` (MeanFlow's form).

    Used for the latent-space ImageNet-256 runs of the paper (Table 6b,
    appendix G.2: DiT-B/4 and DiT-XL/2 on 32x32x4 Stable Diffusion VAE
    latents). See the module docstring for the architecture. With
    `time_inputs=2` the conditioning is `e_t(c_t) + e_s(c_s) + e_y(y)` as in
    MeanFlow's DiT (which embeds `t` and `t - r`); with `time_inputs=1` it is
    DiT's `e_t(c_t) + e_y(y)`. Initialisation is DiT's: xavier-uniform
    linear maps (the patch projection as a linear map of the flattened
    patch), `N(0, 0.02)` class table and timestep-MLP kernels, zero biases,
    and zero adaLN modulations and output layer (the untrained network
    outputs exactly zero).

    Class labels: `class_labels` are `(B,)` ints in `[0, label_dim]`; the
    value `label_dim` (and `class_labels=None`) selects the extra "null
    class" row: the unconditional network of classifier-free guidance
    (`keras_gcm.ConsistencyModel(label_dropout=...)` trains it).

    Args:
        img_resolution: int, input height and width (32 for 256x256 images
            through the SD VAE).
        in_channels: int, input channels (4 for SD VAE latents).
        patch_size: int, patch side p (must divide `img_resolution`).
        hidden_size: int, token width D.
        depth: int, number of DiT blocks.
        num_heads: int, attention heads.
        mlp_ratio: float, MLP width over D.
        label_dim: int, number of classes (0: unconditional, no table).
        time_inputs: 1 (`c_t`) or 2 (`c_t` and `c_s`).
        frequency_embedding_size: int, sinusoidal features per time input.
        input_range: `(low, high)` bound checked by `ConsistencyModel.fit`
            on array data, or None (default: latents are unbounded).
        seed: int or None, seed of the initialisers.
        **kwargs: standard `keras.Model` arguments (`name`, `dtype`, ...).

    Example:

    >>> net = keras_gcm.networks.DiT(img_resolution=8, in_channels=4,
    ...     patch_size=2, hidden_size=32, depth=2, num_heads=4, label_dim=10,
    ...     time_inputs=2, seed=0)
    >>> x = keras.ops.zeros((2, 8, 8, 4))
    >>> c = keras.ops.ones((2,))
    >>> tuple(net(x, c, c, class_labels=keras.ops.array([3, 10])).shape)
    (2, 8, 8, 4)
    """

    def __init__(
        self,
        img_resolution=32,
        in_channels=4,
        patch_size=2,
        hidden_size=1152,
        depth=28,
        num_heads=16,
        mlp_ratio=4.0,
        label_dim=1000,
        time_inputs=2,
        frequency_embedding_size=256,
        input_range=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._convert_input_args = False
        img_resolution, patch_size = int(img_resolution), int(patch_size)
        if patch_size < 1 or img_resolution % patch_size:
            raise ValueError(
                f"`patch_size` ({patch_size}) must divide `img_resolution` "
                f"({img_resolution}): e.g. patch_size=2 or 4 for 32x32 latents."
            )
        if time_inputs not in (1, 2):
            raise ValueError(f"`time_inputs` must be 1 or 2. Received: {time_inputs!r}")
        if int(label_dim) < 0:
            raise ValueError(f"`label_dim` must be >= 0. Received: {label_dim}")
        for name, value in (("in_channels", in_channels), ("hidden_size", hidden_size),
                            ("depth", depth), ("num_heads", num_heads)):
            if int(value) < 1:
                raise ValueError(f"`{name}` must be >= 1. Received: {value}")
        self.img_resolution = img_resolution
        self.in_channels = int(in_channels)
        self.out_channels = int(in_channels)
        self.patch_size = patch_size
        self.hidden_size = int(hidden_size)
        self.depth = int(depth)
        self.num_heads = int(num_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.label_dim = int(label_dim)
        self.time_inputs = int(time_inputs)
        self.frequency_embedding_size = int(frequency_embedding_size)
        self.input_range = None if input_range is None else tuple(float(v) for v in input_range)
        self.seed = None if seed is None else int(seed)
        self.grid_size = img_resolution // patch_size
        d, p, c = self.hidden_size, patch_size, self.in_channels
        self._pos_embed = sincos_position_embedding(d, self.grid_size)

        def s(k):
            return None if self.seed is None else self.seed + 1000 * k

        policy = self.dtype_policy
        self.x_embedder = keras.layers.Conv2D(
            d, p, strides=p, padding="valid",
            kernel_initializer=_xavier(c * p * p, d, s(1)),
            bias_initializer="zeros", dtype=policy, name="x_embedder",
        )
        freq = self.frequency_embedding_size
        # The conditioning path (time and class embeddings) stays float32.
        self.t_embedder = [
            _dense(d, freq, s(2), "t_embedder_0", init="normal", dtype="float32"),
            _dense(d, d, s(3), "t_embedder_2", init="normal", dtype="float32"),
        ]
        self.s_embedder = None
        if self.time_inputs == 2:
            self.s_embedder = [
                _dense(d, freq, s(4), "s_embedder_0", init="normal", dtype="float32"),
                _dense(d, d, s(5), "s_embedder_2", init="normal", dtype="float32"),
            ]
        self.y_embedder = None
        if self.label_dim:
            self.y_embedder = keras.layers.Embedding(
                self.label_dim + 1, d,
                embeddings_initializer=keras.initializers.RandomNormal(
                    stddev=0.02, seed=s(6)),
                dtype="float32", name="y_embedder",
            )
        self.blocks = [
            DiTBlock(d, self.num_heads, self.mlp_ratio, seed=s(10 + i), dtype=policy,
                     name=f"block_{i}")
            for i in range(self.depth)
        ]
        self.final_norm = keras.layers.LayerNormalization(
            epsilon=1e-6, center=False, scale=False, dtype=policy, name="final_norm")
        self.final_adaln = _dense(2 * d, d, None, "final_adaLN_modulation",
                                  init="zeros", dtype=policy)
        self.final_linear = _dense(p * p * self.out_channels, d, None, "final_linear",
                                   init="zeros", dtype=policy)

    # ------------------------------------------------------------ factories
    @classmethod
    def _factory(cls, size, patch_size, **kwargs):
        depth, hidden, heads = DIT_SIZES[size]
        return cls(patch_size=patch_size, hidden_size=hidden, depth=depth,
                   num_heads=heads, **kwargs)

    @classmethod
    def b4(cls, **kwargs):
        """DiT-B/4 (12 blocks, width 768, 12 heads, patch 4), Table 6b.

        Example:

        >>> net = keras_gcm.networks.DiT.b4(label_dim=1000)
        """
        return cls._factory("B", 4, **kwargs)

    @classmethod
    def b2(cls, **kwargs):
        """DiT-B/2 (12 blocks, width 768, 12 heads, patch 2).

        Example:

        >>> net = keras_gcm.networks.DiT.b2(label_dim=1000)
        """
        return cls._factory("B", 2, **kwargs)

    @classmethod
    def l2(cls, **kwargs):
        """DiT-L/2 (24 blocks, width 1024, 16 heads, patch 2).

        Example:

        >>> net = keras_gcm.networks.DiT.l2(label_dim=1000)
        """
        return cls._factory("L", 2, **kwargs)

    @classmethod
    def xl2(cls, **kwargs):
        """DiT-XL/2 (28 blocks, width 1152, 16 heads, patch 2), Table 6b.

        Example:

        >>> net = keras_gcm.networks.DiT.xl2(label_dim=1000)
        """
        return cls._factory("XL", 2, **kwargs)

    @staticmethod
    def parameter_count(img_resolution=32, in_channels=4, patch_size=2,
                        hidden_size=1152, depth=28, num_heads=16, mlp_ratio=4.0,
                        label_dim=1000, time_inputs=2, frequency_embedding_size=256,
                        **unused):
        """Number of weights of a DiT, computed from its configuration.

        Counts what `DiT(...).count_params()` counts once built (the position
        embedding is a constant, not a weight) without allocating anything,
        so the sizes of the XL/2 factories can be checked cheaply.

        Returns:
            int.

        Example:

        >>> keras_gcm.networks.DiT.parameter_count(patch_size=4, hidden_size=768,
        ...     depth=12, num_heads=12)  # DiT-B/4 with two time inputs
        131165248
        """
        d, p, c = int(hidden_size), int(patch_size), int(in_channels)
        hidden = int(d * float(mlp_ratio))
        n = (c * p * p + 1) * d
        n += time_inputs * ((frequency_embedding_size + 1) * d + (d + 1) * d)
        n += (label_dim + 1) * d if label_dim else 0
        block = (d + 1) * 3 * d + (d + 1) * d + (d + 1) * hidden + (hidden + 1) * d
        block += (d + 1) * 6 * d
        n += int(depth) * block
        n += (d + 1) * 2 * d + (d + 1) * p * p * c
        return int(n)

    # ---------------------------------------------------------------- build
    def _check_input_shape(self, shape):
        shape = tuple(shape)
        expected = (self.img_resolution, self.img_resolution, self.in_channels)
        if len(shape) != 4 or tuple(shape[1:]) != expected:
            raise ValueError(
                f"This DiT takes channels-last inputs of shape (batch, "
                f"{expected[0]}, {expected[1]}, {expected[2]}) (img_resolution="
                f"{self.img_resolution}, in_channels={self.in_channels}); received "
                f"shape {shape}. For SD-VAE latents of 256x256 images use "
                "img_resolution=32, in_channels=4."
            )

    def build(self, input_shape, *args, **kwargs):
        self._check_input_shape(input_shape)
        d, freq = self.hidden_size, self.frequency_embedding_size
        self.x_embedder.build(tuple(input_shape))
        for embedder in [self.t_embedder] + ([self.s_embedder] if self.s_embedder else []):
            embedder[0].build((None, freq))
            embedder[1].build((None, d))
        if self.y_embedder is not None:
            self.y_embedder.build((None,))
        for block in self.blocks:
            block.build((None, None, d), (None, d))
        self.final_norm.build((None, None, d))
        self.final_adaln.build((None, d))
        self.final_linear.build((None, None, d))
        self.built = True

    def __call__(self, x, c_t, c_s=None, class_labels=None, **kwargs):
        def as_tensor(value):
            if value is None or isinstance(value, keras.KerasTensor) or ops.is_tensor(value):
                return value
            return ops.convert_to_tensor(np.asarray(value))

        return super().__call__(as_tensor(x), as_tensor(c_t), as_tensor(c_s),
                                as_tensor(class_labels), **kwargs)

    def _embed_time(self, embedder, c, name):
        if len(c.shape) != 1:
            raise ValueError(
                f"DiT expects `{name}` of shape (batch,), one conditioned time per "
                f"example. Received shape {tuple(c.shape)}."
            )
        h = timestep_frequencies(c, self.frequency_embedding_size)
        return embedder[1](ops.silu(embedder[0](h)))

    def _label_indices(self, class_labels, batch):
        if class_labels is None:
            return ops.full((batch,), self.label_dim, dtype="int32")
        if len(class_labels.shape) == 2 and class_labels.shape[-1] == self.label_dim:
            # One-hot rows; an all-zero row is the null class.
            labels = ops.cast(ops.argmax(class_labels, axis=-1), "int32")
            null = ops.sum(ops.cast(class_labels, "float32"), axis=-1) == 0
            return ops.where(null, self.label_dim, labels)
        if len(class_labels.shape) != 1 or not keras.backend.standardize_dtype(
                class_labels.dtype).startswith(("int", "uint")):
            raise ValueError(
                f"DiT expects `class_labels` of shape (batch,) with integer classes "
                f"in [0, {self.label_dim}] ({self.label_dim} = no label), or "
                f"one-hot rows (batch, {self.label_dim}). Received shape "
                f"{tuple(class_labels.shape)}, dtype {class_labels.dtype}."
            )
        # Concrete labels only (eager); the samplers and fit check on the host.
        check_class_labels(class_labels, self.label_dim)
        return ops.cast(class_labels, "int32")

    def call(self, x, c_t, c_s=None, class_labels=None, training=None):
        """Runs the network.

        Args:
            x: `(B, H, W, C)` inputs (channels-last latents or images).
            c_t: `(B,)` conditioned times `c(t)`.
            c_s: `(B,)` conditioned times `c(s)`; required with
                `time_inputs=2`, refused with `time_inputs=1`.
            class_labels: None (null class), `(B,)` ints in `[0, label_dim]`
                (`label_dim` = null class) or `(B, label_dim)` one-hot rows
                (a zero row = null class); only with `label_dim > 0`.
            training: unused (DiT has no dropout), accepted for the protocol.

        Returns:
            `(B, H, W, C)` in the compute dtype.
        """
        self._check_input_shape(x.shape)
        if self.time_inputs == 2 and c_s is None:
            raise ValueError(
                "This DiT was built with `time_inputs=2`: pass the conditioned "
                "second time `c_s` (shape (batch,))."
            )
        if self.time_inputs == 1 and c_s is not None:
            raise ValueError(
                "This DiT was built with `time_inputs=1` and takes no `c_s`; "
                "build it with `time_inputs=2` for two time inputs."
            )
        if self.label_dim == 0 and class_labels is not None:
            raise ValueError(
                "This DiT is unconditional (`label_dim=0`) and takes no `class_labels`."
            )
        d, p, g = self.hidden_size, self.patch_size, self.grid_size
        x = ops.cast(x, self.compute_dtype)
        tokens = ops.reshape(self.x_embedder(x), (-1, g * g, d))
        tokens = tokens + ops.cast(ops.convert_to_tensor(self._pos_embed), tokens.dtype)[None]
        cond = self._embed_time(self.t_embedder, c_t, "c_t")
        if self.s_embedder is not None:
            cond = cond + self._embed_time(self.s_embedder, c_s, "c_s")
        if self.y_embedder is not None:
            cond = cond + self.y_embedder(
                self._label_indices(class_labels, ops.shape(x)[0]))
        cond_c = ops.cast(cond, self.compute_dtype)
        for block in self.blocks:
            tokens = block(tokens, cond_c)
        shift, scale = ops.split(ops.cast(self.final_adaln(ops.silu(cond_c)), tokens.dtype),
                                 2, axis=-1)
        tokens = self.final_norm(tokens) * (1.0 + scale[:, None]) + shift[:, None]
        out = self.final_linear(tokens)  # (B, T, p * p * C)
        c = self.out_channels
        out = ops.reshape(out, (-1, g, g, p, p, c))
        out = ops.transpose(out, (0, 1, 3, 2, 4, 5))
        return ops.reshape(out, (-1, g * p, g * p, c))

    def compute_output_spec(self, x, c_t, c_s=None, class_labels=None, training=None):
        shape = tuple(x.shape[:3]) + (self.out_channels,)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)

    # -------------------------------------------------------- torch weights
    def load_torch_state_dict(self, state_dict):
        """Loads a PyTorch DiT / MeanFlow-DiT state dict (numpy arrays or tensors).

        Names are facebookresearch/DiT's (`x_embedder.proj.weight`,
        `t_embedder.mlp.0.weight`, `blocks.{i}.attn.qkv.weight`, ...); the
        second time embedder is `h_embedder.*` (MeanFlow's name) or
        `s_embedder.*`. `pos_embed` (a constant here) is checked, not loaded.

        Args:
            state_dict: mapping from names to arrays.

        Raises:
            ValueError: naming the first missing or mis-shaped tensor.

        Example:

        >>> net.load_torch_state_dict(torch.load("dit.pt", map_location="cpu"))  # doctest: +SKIP
        """
        sd = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
              for k, v in state_dict.items()}
        if not self.built:
            self.build((None, self.img_resolution, self.img_resolution, self.in_channels))

        def get(name, shape):
            if name not in sd:
                raise ValueError(f"The state dict has no tensor {name!r} (expected shape {shape}).")
            value = sd[name]
            if tuple(value.shape) != tuple(shape):
                raise ValueError(
                    f"Tensor {name!r} has shape {tuple(value.shape)}; this DiT "
                    f"needs {tuple(shape)}: the file is for another configuration."
                )
            return value.astype("float32")

        def linear(layer, prefix):
            units, fan_in = layer.kernel.shape[1], layer.kernel.shape[0]
            layer.kernel.assign(get(prefix + ".weight", (units, fan_in)).T)
            layer.bias.assign(get(prefix + ".bias", (units,)))

        d, p, c = self.hidden_size, self.patch_size, self.in_channels
        w = get("x_embedder.proj.weight", (d, c, p, p))
        self.x_embedder.kernel.assign(np.transpose(w, (2, 3, 1, 0)))
        self.x_embedder.bias.assign(get("x_embedder.proj.bias", (d,)))
        linear(self.t_embedder[0], "t_embedder.mlp.0")
        linear(self.t_embedder[1], "t_embedder.mlp.2")
        if self.s_embedder is not None:
            prefix = "h_embedder" if "h_embedder.mlp.0.weight" in sd else "s_embedder"
            linear(self.s_embedder[0], prefix + ".mlp.0")
            linear(self.s_embedder[1], prefix + ".mlp.2")
        if self.y_embedder is not None:
            self.y_embedder.embeddings.assign(
                get("y_embedder.embedding_table.weight", (self.label_dim + 1, d)))
        for i, block in enumerate(self.blocks):
            linear(block.qkv, f"blocks.{i}.attn.qkv")
            linear(block.proj, f"blocks.{i}.attn.proj")
            linear(block.fc1, f"blocks.{i}.mlp.fc1")
            linear(block.fc2, f"blocks.{i}.mlp.fc2")
            linear(block.adaln, f"blocks.{i}.adaLN_modulation.1")
        linear(self.final_adaln, "final_layer.adaLN_modulation.1")
        linear(self.final_linear, "final_layer.linear")
        if "pos_embed" in sd:
            ref = sd["pos_embed"].reshape(self._pos_embed.shape)
            if not np.allclose(ref, self._pos_embed, atol=1e-5):
                raise ValueError("The state dict's `pos_embed` is not DiT's 2-D sine-cosine embedding.")

    def get_config(self):
        config = super().get_config()
        config.update({
            "img_resolution": self.img_resolution,
            "in_channels": self.in_channels,
            "patch_size": self.patch_size,
            "hidden_size": self.hidden_size,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "mlp_ratio": self.mlp_ratio,
            "label_dim": self.label_dim,
            "time_inputs": self.time_inputs,
            "frequency_embedding_size": self.frequency_embedding_size,
            "input_range": None if self.input_range is None else list(self.input_range),
            "seed": self.seed,
        })
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
