"""The Stable Diffusion VAE (`AutoencoderKL`, e.g. `sd-vae-ft-ema`), channels-last Keras 3.

The latent-space ImageNet-256 runs of the paper (Table 6b, appendix G.2)
train on the latents of Stable Diffusion's KL autoencoder (Rombach et al.,
2022), as MeanFlow and DiT do: 256x256x3 images in [-1, 1] map to 32x32x4
latents; training uses `scaling_factor * latent` (0.18215) drawn from the
posterior `N(mean, std^2)`.

The architecture is diffusers' `AutoencoderKL` (`DownEncoderBlock2D` /
`UpDecoderBlock2D`): an encoder of `conv_in`, per resolution
`layers_per_block` ResNet blocks and a stride-2 convolution (after a
(0, 1, 0, 1) zero pad), a middle block (ResNet, single-head self-attention,
ResNet), GroupNorm + SiLU + `conv_out` to `2 * latent_channels` moments and
the 1x1 `quant_conv`; a decoder of the 1x1 `post_quant_conv`, `conv_in`,
the middle block, per resolution `layers_per_block + 1` ResNet blocks and a
nearest 2x upsampling + convolution, then GroupNorm + SiLU + `conv_out`.
Every GroupNorm has `norm_num_groups` groups and epsilon 1e-6.

No weights ship with the library: `AutoencoderKL.from_diffusers(path)`
reads a diffusers-format file (`diffusion_pytorch_model.safetensors` or
`.bin`), e.g. from https://huggingface.co/stabilityai/sd-vae-ft-ema.

Why not keras-cv's or keras-hub's VAE (checked against keras-cv 0.9.0 and
keras-hub 0.32.0, the newest on the package index, with Keras 3.15.1):
keras-cv's `keras_cv.models.stable_diffusion.ImageEncoder` builds and runs on
jax, tensorflow and torch (random weights, 64x64 input), but it ends in
`Lambda(lambda x: x[..., :4] * 0.18215)`, so it returns only the scaled
posterior mean and drops the log-variance that MeanFlow-style posterior
sampling (and `encode_latents`' std) needs; its weights are Keras `.h5`
files fetched from huggingface.co/fchollet/stable-diffusion into an unnamed
`keras.Sequential`, with no diffusers-format loader; and its GroupNorms use
epsilon 1e-5 where diffusers' `Encoder` / `Decoder` use 1e-6. keras-hub's
`VAEBackbone` (in `keras_hub.src.models.vae`, not exported in
`keras_hub.models`) is SD3's VAE: defaults for 16 latent channels (32
moments) and scale / shift 1.5305 / 0.0609, and no `quant_conv` /
`post_quant_conv`, which the SD-1 VAE (4 channels) has; its weights come
only inside the SD3 / SD3.5 presets (Kaggle), converted by a repository
script from SD3's single-file checkpoints, and the package has no diffusers
VAE loader. Hence this implementation, which loads diffusers'
file directly and is tested against `diffusers.AutoencoderKL`.
"""

import os

import keras
import numpy as np
from keras import ops

from keras_gcm.networks.ddpmpp import GroupNorm

SD_VAE_URL = "https://huggingface.co/stabilityai/sd-vae-ft-ema"
SD_SCALING_FACTOR = 0.18215


def _conv(filters, kernel, name, strides=1, padding="same"):
    return keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding, name=name)


def _norm(groups, name):
    return GroupNorm(num_groups=groups, min_channels_per_group=1, epsilon=1e-6, name=name)


@keras.saving.register_keras_serializable(package="keras_gcm")
class VAEResnetBlock(keras.layers.Layer):
    """diffusers' `ResnetBlock2D` without time embedding.

    `h = conv2(silu(norm2(conv1(silu(norm1(x))))))`, output `shortcut(x) + h`
    with a 1x1 `conv_shortcut` when the channels change.

    Args:
        in_channels: int.
        out_channels: int.
        groups: int, GroupNorm groups.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> from keras_gcm.networks.vae import VAEResnetBlock
    >>> tuple(VAEResnetBlock(8, 16, groups=4)(keras.ops.ones((1, 4, 4, 8))).shape)
    (1, 4, 4, 16)
    """

    def __init__(self, in_channels, out_channels, groups=32, **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.norm1 = _norm(self.groups, "norm1")
        self.conv1 = _conv(self.out_channels, 3, "conv1")
        self.norm2 = _norm(self.groups, "norm2")
        self.conv2 = _conv(self.out_channels, 3, "conv2")
        self.conv_shortcut = (_conv(self.out_channels, 1, "conv_shortcut")
                              if self.in_channels != self.out_channels else None)

    def build(self, input_shape):
        shape = tuple(input_shape)
        out_shape = shape[:-1] + (self.out_channels,)
        self.norm1.build(shape)
        self.conv1.build(shape)
        self.norm2.build(out_shape)
        self.conv2.build(out_shape)
        if self.conv_shortcut is not None:
            self.conv_shortcut.build(shape)
        self.built = True

    def call(self, x):
        h = self.conv1(ops.silu(self.norm1(x)))
        h = self.conv2(ops.silu(self.norm2(h)))
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return shortcut + h

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.out_channels,)

    def get_config(self):
        config = super().get_config()
        config.update({"in_channels": self.in_channels, "out_channels": self.out_channels,
                       "groups": self.groups})
        return config


@keras.saving.register_keras_serializable(package="keras_gcm")
class VAEAttention(keras.layers.Layer):
    """The VAE middle block's single-head self-attention with a residual.

    `x + to_out(softmax(q k^T / sqrt(C)) v)` with `q, k, v` linear maps of
    `GroupNorm(x)` over the `H * W` positions (softmax in float32).

    Args:
        channels: int.
        groups: int, GroupNorm groups.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> from keras_gcm.networks.vae import VAEAttention
    >>> tuple(VAEAttention(8, groups=4)(keras.ops.ones((1, 4, 4, 8))).shape)
    (1, 4, 4, 8)
    """

    def __init__(self, channels, groups=32, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.groups = int(channels), int(groups)
        self.group_norm = _norm(self.groups, "group_norm")
        self.to_q = keras.layers.Dense(self.channels, name="to_q")
        self.to_k = keras.layers.Dense(self.channels, name="to_k")
        self.to_v = keras.layers.Dense(self.channels, name="to_v")
        self.to_out = keras.layers.Dense(self.channels, name="to_out")

    def build(self, input_shape):
        self.group_norm.build(tuple(input_shape))
        for layer in (self.to_q, self.to_k, self.to_v, self.to_out):
            layer.build((None, None, self.channels))
        self.built = True

    def call(self, x):
        shape = ops.shape(x)
        c = self.channels
        h = ops.reshape(self.group_norm(x), (shape[0], -1, c))
        q, k, v = self.to_q(h), self.to_k(h), self.to_v(h)
        logits = ops.einsum("bqc,bkc->bqk", q, k) * ops.cast(c ** -0.5, q.dtype)
        weights = ops.cast(ops.softmax(ops.cast(logits, "float32"), axis=-1), v.dtype)
        out = self.to_out(ops.einsum("bqk,bkc->bqc", weights, v))
        return x + ops.reshape(out, shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"channels": self.channels, "groups": self.groups})
        return config


@keras.saving.register_keras_serializable(package="keras_gcm")
class AutoencoderKL(keras.Model):
    """Stable Diffusion's KL autoencoder (diffusers' `AutoencoderKL`), channels-last.

    `encode(images)` returns the posterior `(mean, std)` of the *unscaled*
    latents; `decode(latents)` maps unscaled latents back to images in
    about [-1, 1]. Training data are `scaling_factor * (mean + std * n)`
    (see `keras_gcm.data.latents`), and samples are decoded as
    `decode(samples / scaling_factor)`.

    Args:
        in_channels: int, image channels (3).
        out_channels: int, decoded channels (3).
        block_out_channels: list of int, channels per resolution
            (`[128, 256, 512, 512]` for the SD VAE).
        layers_per_block: int (2 for the SD VAE).
        latent_channels: int (4).
        norm_num_groups: int, GroupNorm groups (32).
        scaling_factor: float, latent scale (0.18215 for the SD VAE).
        **kwargs: standard `keras.Model` arguments.

    Example:

    >>> vae = keras_gcm.networks.AutoencoderKL(block_out_channels=[16, 32],
    ...     layers_per_block=1, norm_num_groups=8)
    >>> mean, std = vae.encode(keras.ops.zeros((1, 16, 16, 3)))
    >>> tuple(mean.shape), tuple(vae.decode(mean).shape)
    ((1, 8, 8, 4), (1, 16, 16, 3))
    """

    def __init__(self, in_channels=3, out_channels=3, block_out_channels=(128, 256, 512, 512),
                 layers_per_block=2, latent_channels=4, norm_num_groups=32,
                 scaling_factor=SD_SCALING_FACTOR, **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.block_out_channels = [int(c) for c in block_out_channels]
        self.layers_per_block = int(layers_per_block)
        self.latent_channels = int(latent_channels)
        self.norm_num_groups = int(norm_num_groups)
        self.scaling_factor = float(scaling_factor)
        for c in self.block_out_channels:
            if c % self.norm_num_groups:
                raise ValueError(
                    f"Every entry of `block_out_channels` ({self.block_out_channels}) must be "
                    f"divisible by `norm_num_groups` ({self.norm_num_groups}).")
        g, chans, n = self.norm_num_groups, self.block_out_channels, self.layers_per_block
        # Encoder.
        self.enc_conv_in = _conv(chans[0], 3, "encoder_conv_in")
        self.enc_blocks = []  # (resnets, downsampler or None)
        prev = chans[0]
        for i, c in enumerate(chans):
            resnets = [VAEResnetBlock(prev if j == 0 else c, c, g, name=f"encoder_down{i}_res{j}")
                       for j in range(n)]
            down = (_conv(c, 3, f"encoder_down{i}_downsample", strides=2, padding="valid")
                    if i < len(chans) - 1 else None)
            self.enc_blocks.append((resnets, down))
            prev = c
        self.enc_mid = self._mid_block(chans[-1], "encoder_mid")
        self.enc_norm_out = _norm(g, "encoder_conv_norm_out")
        self.enc_conv_out = _conv(2 * self.latent_channels, 3, "encoder_conv_out")
        self.quant_conv = _conv(2 * self.latent_channels, 1, "quant_conv")
        # Decoder.
        self.post_quant_conv = _conv(self.latent_channels, 1, "post_quant_conv")
        rev = chans[::-1]
        self.dec_conv_in = _conv(rev[0], 3, "decoder_conv_in")
        self.dec_mid = self._mid_block(rev[0], "decoder_mid")
        self.dec_blocks = []  # (resnets, upsample conv or None)
        prev = rev[0]
        for i, c in enumerate(rev):
            resnets = [VAEResnetBlock(prev if j == 0 else c, c, g, name=f"decoder_up{i}_res{j}")
                       for j in range(n + 1)]
            up = _conv(c, 3, f"decoder_up{i}_upsample") if i < len(rev) - 1 else None
            self.dec_blocks.append((resnets, up))
            prev = c
        self.dec_norm_out = _norm(g, "decoder_conv_norm_out")
        self.dec_conv_out = _conv(self.out_channels, 3, "decoder_conv_out")

    def _mid_block(self, c, name):
        g = self.norm_num_groups
        return [VAEResnetBlock(c, c, g, name=f"{name}_res0"),
                VAEAttention(c, g, name=f"{name}_attn"),
                VAEResnetBlock(c, c, g, name=f"{name}_res1")]

    @classmethod
    def sd_vae(cls, **kwargs):
        """The `sd-vae-ft-ema` / `sd-vae-ft-mse` architecture (83,653,863 weights).

        Example:

        >>> vae = keras_gcm.networks.AutoencoderKL.sd_vae()
        """
        return cls(block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                   latent_channels=4, norm_num_groups=32, **kwargs)

    @property
    def downsampling(self):
        """Image side over latent side (8 for the SD VAE)."""
        return 2 ** (len(self.block_out_channels) - 1)

    def build(self, input_shape=None):
        # The weights do not depend on the image size: build on a small one.
        side = 2 * self.downsampling
        x = keras.KerasTensor((1, side, side, self.in_channels))
        mean, _ = self.encode(x)
        self.decode(mean)
        self.built = True

    def encode(self, images):
        """Posterior `(mean, std)` of the unscaled latents of `(B, H, W, 3)` images in [-1, 1].

        Args:
            images: channels-last images, H and W divisible by `downsampling`.

        Returns:
            `(mean, std)`, each `(B, H / 8, W / 8, latent_channels)` for the SD VAE.
        """
        h = self.enc_conv_in(images)
        for resnets, down in self.enc_blocks:
            for block in resnets:
                h = block(h)
            if down is not None:
                h = down(ops.pad(h, [[0, 0], [0, 1], [0, 1], [0, 0]]))
        for layer in self.enc_mid:
            h = layer(h)
        h = self.enc_conv_out(ops.silu(self.enc_norm_out(h)))
        moments = self.quant_conv(h)
        mean, logvar = moments[..., :self.latent_channels], moments[..., self.latent_channels:]
        logvar = ops.clip(logvar, -30.0, 20.0)
        return mean, ops.exp(0.5 * logvar)

    def decode(self, latents):
        """Images (about [-1, 1]) of `(B, h, w, latent_channels)` unscaled latents."""
        h = self.dec_conv_in(self.post_quant_conv(latents))
        for layer in self.dec_mid:
            h = layer(h)
        for resnets, up in self.dec_blocks:
            for block in resnets:
                h = block(h)
            if up is not None:
                h = up(ops.repeat(ops.repeat(h, 2, axis=1), 2, axis=2))
        return self.dec_conv_out(ops.silu(self.dec_norm_out(h)))

    def call(self, images):
        """Reconstruction `decode(mean)` of the posterior mean."""
        mean, _ = self.encode(images)
        return self.decode(mean)

    # -------------------------------------------------------- diffusers weights
    def _diffusers_names(self):
        """`[(diffusers name prefix, layer, kind)]` in diffusers' state-dict order."""
        out = [("encoder.conv_in", self.enc_conv_in, "conv")]

        def resnet(prefix, block):
            items = [(prefix + ".norm1", block.norm1, "norm"), (prefix + ".conv1", block.conv1, "conv"),
                     (prefix + ".norm2", block.norm2, "norm"), (prefix + ".conv2", block.conv2, "conv")]
            if block.conv_shortcut is not None:
                items.append((prefix + ".conv_shortcut", block.conv_shortcut, "conv"))
            return items

        def mid(prefix, layers):
            attn = layers[1]
            return (resnet(prefix + ".resnets.0", layers[0]) + [
                (prefix + ".attentions.0.group_norm", attn.group_norm, "norm"),
                (prefix + ".attentions.0.to_q", attn.to_q, "linear"),
                (prefix + ".attentions.0.to_k", attn.to_k, "linear"),
                (prefix + ".attentions.0.to_v", attn.to_v, "linear"),
                (prefix + ".attentions.0.to_out.0", attn.to_out, "linear"),
            ] + resnet(prefix + ".resnets.1", layers[2]))

        for i, (resnets, down) in enumerate(self.enc_blocks):
            for j, block in enumerate(resnets):
                out += resnet(f"encoder.down_blocks.{i}.resnets.{j}", block)
            if down is not None:
                out.append((f"encoder.down_blocks.{i}.downsamplers.0.conv", down, "conv"))
        out += mid("encoder.mid_block", self.enc_mid)
        out += [("encoder.conv_norm_out", self.enc_norm_out, "norm"),
                ("encoder.conv_out", self.enc_conv_out, "conv"),
                ("decoder.conv_in", self.dec_conv_in, "conv")]
        for i, (resnets, up) in enumerate(self.dec_blocks):
            for j, block in enumerate(resnets):
                out += resnet(f"decoder.up_blocks.{i}.resnets.{j}", block)
            if up is not None:
                out.append((f"decoder.up_blocks.{i}.upsamplers.0.conv", up, "conv"))
        out += mid("decoder.mid_block", self.dec_mid)
        out += [("decoder.conv_norm_out", self.dec_norm_out, "norm"),
                ("decoder.conv_out", self.dec_conv_out, "conv"),
                ("quant_conv", self.quant_conv, "conv"),
                ("post_quant_conv", self.post_quant_conv, "conv")]
        return out

    def load_diffusers_state_dict(self, state_dict):
        """Loads a diffusers `AutoencoderKL` state dict (name -> array or tensor).

        Accepts diffusers' current attention names (`to_q`, `to_k`, `to_v`,
        `to_out.0`) and the older ones (`query`, `key`, `value`,
        `proj_attn`); 1x1-convolution-shaped attention weights are accepted too.

        Raises:
            ValueError: naming the first tensor that is missing or has the
                wrong shape (a file of another architecture).
        """
        if not self.built:
            self.build()
        sd = {k: (v.detach().cpu().float().numpy() if hasattr(v, "detach") else np.asarray(v))
              for k, v in state_dict.items()}
        old_names = {".to_q": ".query", ".to_k": ".key", ".to_v": ".value", ".to_out.0": ".proj_attn"}

        def fetch(name, shape, what):
            value = sd.get(name)
            if value is None:
                for new, old in old_names.items():
                    if name.rsplit(".", 1)[0].endswith(new):
                        value = sd.get(name.replace(new, old))
            if value is None:
                raise ValueError(
                    f"The VAE weight file has no tensor {name!r} (expected {what} of shape "
                    f"{shape}): it is not a diffusers AutoencoderKL of this architecture "
                    f"(block_out_channels={self.block_out_channels}, layers_per_block="
                    f"{self.layers_per_block}, latent_channels={self.latent_channels}).")
            if value.ndim == 4 and len(shape) == 2 and value.shape[2:] == (1, 1):
                value = value[:, :, 0, 0]
            if tuple(value.shape) != tuple(shape):
                raise ValueError(
                    f"The VAE weight file's tensor {name!r} has shape {tuple(value.shape)}, "
                    f"this architecture needs {tuple(shape)}: the file is for another "
                    f"configuration (block_out_channels={self.block_out_channels}, "
                    f"layers_per_block={self.layers_per_block}, latent_channels="
                    f"{self.latent_channels}).")
            return value.astype("float32")

        for prefix, layer, kind in self._diffusers_names():
            if kind == "norm":
                c = layer.gamma.shape[0]
                layer.gamma.assign(fetch(prefix + ".weight", (c,), "a GroupNorm scale"))
                layer.beta.assign(fetch(prefix + ".bias", (c,), "a GroupNorm shift"))
            elif kind == "linear":
                fan_in, units = layer.kernel.shape
                layer.kernel.assign(fetch(prefix + ".weight", (units, fan_in), "a linear weight").T)
                layer.bias.assign(fetch(prefix + ".bias", (units,), "a linear bias"))
            else:
                k, _, cin, cout = layer.kernel.shape
                w = fetch(prefix + ".weight", (cout, cin, k, k), "a convolution kernel")
                layer.kernel.assign(np.transpose(w, (2, 3, 1, 0)))
                layer.bias.assign(fetch(prefix + ".bias", (cout,), "a convolution bias"))

    @classmethod
    def from_diffusers(cls, path, **kwargs):
        """The SD VAE with weights from a diffusers-format file.

        Args:
            path: a `diffusion_pytorch_model.safetensors` (needs the
                `safetensors` package) or `.bin` (needs torch) file, or the
                folder that holds one (e.g. a download of
                https://huggingface.co/stabilityai/sd-vae-ft-ema).
            **kwargs: architecture overrides (default `sd_vae()`'s).

        Returns:
            A built `AutoencoderKL`.

        Example:

        >>> vae = keras_gcm.networks.AutoencoderKL.from_diffusers("sd-vae-ft-ema/")  # doctest: +SKIP
        """
        path = os.fspath(path)
        if os.path.isdir(path):
            found = [os.path.join(path, n) for n in ("diffusion_pytorch_model.safetensors",
                                                    "diffusion_pytorch_model.bin")
                     if os.path.exists(os.path.join(path, n))]
            if not found:
                raise FileNotFoundError(
                    f"No diffusion_pytorch_model.safetensors or .bin in {path!r}. Download the "
                    f"VAE weights from {SD_VAE_URL} (files 'diffusion_pytorch_model.safetensors' "
                    "and 'config.json') and pass that folder or file.")
            path = found[0]
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"VAE weight file {path!r} not found. Download "
                f"'diffusion_pytorch_model.safetensors' from {SD_VAE_URL} (the sd-vae-ft-ema "
                "weights; sd-vae-ft-mse has the same architecture) and pass its path.")
        if path.endswith(".safetensors"):
            try:
                from safetensors.numpy import load_file
            except ImportError as error:
                raise ImportError(
                    "Reading .safetensors needs the `safetensors` package: pip install "
                    "safetensors") from error
            state = load_file(path)
        else:
            import torch

            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state)
        config = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                      latent_channels=4, norm_num_groups=32)
        config.update(kwargs)
        vae = cls(**config)
        vae.build()
        vae.load_diffusers_state_dict(state)
        return vae

    def get_config(self):
        config = super().get_config()
        config.update({
            "in_channels": self.in_channels, "out_channels": self.out_channels,
            "block_out_channels": list(self.block_out_channels),
            "layers_per_block": self.layers_per_block, "latent_channels": self.latent_channels,
            "norm_num_groups": self.norm_num_groups, "scaling_factor": self.scaling_factor,
        })
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
