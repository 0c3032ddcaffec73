"""A residual MLP for vector data (the toy 2-D recipes)."""

import zlib

import keras

from keras_gcm.validation import check_float, check_int, check_seed
from keras import ops

from keras_gcm.networks.embeddings import PositionalEmbedding


@keras.saving.register_keras_serializable(package="keras_gcm")
class MLP(keras.layers.Layer):
    """Residual MLP `F(x, c_t[, c_s])` for vector data.

    The time input `c_t` (and, for VU models, `c_s`) is embedded with EDM's
    sinusoidal positional embedding followed by a two-layer MLP; the s path
    is its own small MLP whose output is summed into the t embedding (as
    IMM does). Each residual block adds a projection of the embedding. The
    output layer starts at zero, so an untrained model predicts `f = 0`.

    Args:
        hidden_units: int, width of the residual stream (default 256).
        num_blocks: int, number of residual blocks (default 3).
        embedding_dim: int, width of the time embedding (default 128).
        time_inputs: 1 (CU) or 2 (VU).
        dropout: float, dropout rate inside the blocks.
        seed: int >= 0, seed of the initial weights and of the dropout layers
            (explicit, so the teacher pass can replay the student's mask on
            every backend, and the same arguments give the same network in
            any process).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> net = keras_gcm.networks.MLP(hidden_units=128, num_blocks=2)
    >>> out = net(keras.ops.zeros((4, 2)), keras.ops.zeros((4,)))  # (4, 2)
    """

    def __init__(self, hidden_units=256, num_blocks=3, embedding_dim=128, time_inputs=1,
                 dropout=0.0, seed=0, **kwargs):
        super().__init__(**kwargs)
        time_inputs = check_int(time_inputs, "time_inputs")
        dropout = check_float(dropout, "dropout")
        if time_inputs not in (1, 2):
            raise ValueError(f"`time_inputs` must be 1 or 2. Received: {time_inputs}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: {dropout}")
        self.hidden_units = check_int(hidden_units, "hidden_units", minimum=1)
        self.num_blocks = check_int(num_blocks, "num_blocks", minimum=0)
        self.embedding_dim = check_int(embedding_dim, "embedding_dim", minimum=1)
        self.time_inputs = int(time_inputs)
        self.dropout = float(dropout)
        self.seed = check_seed(seed, allow_none=False)

        def dense(units, name, **kw):
            # Initial weights seeded from `seed` (and the layer's name), so the
            # same constructor arguments give the same network in any process.
            initializer = keras.initializers.GlorotUniform(
                seed=(self.seed * 1_000_003 + zlib.crc32(name.encode())) % (2**31 - 1))
            return keras.layers.Dense(units, dtype=self.dtype_policy, name=name,
                                      kernel_initializer=initializer, **kw)

        self.t_positional = PositionalEmbedding(embedding_dim, name="t_positional")
        self.t_embed = [dense(embedding_dim, "t_embed_0", activation="silu"),
                        dense(embedding_dim, "t_embed_1")]
        self.s_embed = None
        if self.time_inputs == 2:
            self.s_embed = [dense(embedding_dim, "s_embed_0", activation="silu"),
                            dense(embedding_dim, "s_embed_1")]
        self.input_proj = dense(hidden_units, "input_proj")
        blocks = range(self.num_blocks)
        self.block_dense_0 = [dense(hidden_units, f"block_{i}_dense_0") for i in blocks]
        self.block_emb = [dense(hidden_units, f"block_{i}_emb") for i in blocks]
        self.block_dropout = [
            keras.layers.Dropout(dropout, seed=self.seed + i, name=f"block_{i}_dropout")
            for i in blocks
        ]
        self.block_dense_1 = [dense(hidden_units, f"block_{i}_dense_1") for i in blocks]
        self.output_proj = None

    def build(self, x_shape, c_t_shape=None, c_s_shape=None):
        if len(x_shape) != 2:
            raise ValueError(f"MLP expects vectors of shape (batch, dim); got {x_shape}.")
        dim = x_shape[-1]
        self.output_proj = keras.layers.Dense(
            dim, kernel_initializer="zeros", dtype=self.dtype_policy, name="output_proj"
        )
        e = (None, self.embedding_dim)
        self.t_embed[0].build((None, self.embedding_dim))
        self.t_embed[1].build(e)
        if self.s_embed is not None:
            self.s_embed[0].build((None, self.embedding_dim))
            self.s_embed[1].build(e)
        self.input_proj.build(x_shape)
        h = (None, self.hidden_units)
        for i in range(self.num_blocks):
            self.block_dense_0[i].build(h)
            self.block_emb[i].build(e)
            self.block_dense_1[i].build(h)
        self.output_proj.build(h)
        self.built = True

    def _embed(self, c, layers):
        e = ops.cast(self.t_positional(c), self.compute_dtype)
        return layers[1](layers[0](e))

    def call(self, x, c_t, c_s=None, training=None):
        if self.time_inputs == 2 and c_s is None:
            raise ValueError("This MLP has time_inputs=2 (VU): pass c_s.")
        if self.time_inputs == 1 and c_s is not None:
            raise ValueError("This MLP has time_inputs=1 (CU): it takes no c_s.")
        emb = self._embed(c_t, self.t_embed)
        if c_s is not None:
            emb = emb + self._embed(c_s, self.s_embed)
        emb = ops.silu(emb)
        h = self.input_proj(x)
        for i in range(self.num_blocks):
            y = self.block_dense_0[i](ops.silu(h)) + self.block_emb[i](emb)
            y = self.block_dropout[i](ops.silu(y), training=training)
            h = h + self.block_dense_1[i](y)
        return self.output_proj(ops.silu(h))

    def get_config(self):
        config = super().get_config()
        config.update({
            "hidden_units": self.hidden_units, "num_blocks": self.num_blocks,
            "embedding_dim": self.embedding_dim, "time_inputs": self.time_inputs,
            "dropout": self.dropout, "seed": self.seed,
        })
        return config
