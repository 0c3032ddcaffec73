"""Filling `SongUNet` from a pretrained EDM network (a PyTorch state dict).

ECT and the paper's Table 11 start consistency training from a pretrained
EDM diffusion model (Karras et al., 2022). EDM saves its networks as
PyTorch modules; `torch.save(net.state_dict(), path)` of EDM's `SongUNet`
(or of its `EDMPrecond` / `VPPrecond` / `VEPrecond` wrapper, whose keys
start with `model.`) is what `load_edm_state_dict` reads.
"""

import numpy as np

from keras_gcm.networks.ddpmpp import GroupNorm
from keras_gcm.networks.ddpmpp import ResampleConv2D
from keras_gcm.networks.ddpmpp import UNetBlock
from keras_gcm.networks.embeddings import FourierEmbedding

_PRECOND_PREFIX = "model."


def _read_state_dict(source):
    if isinstance(source, dict):
        state = source
    else:
        try:
            import torch
        except ImportError as error:
            raise ImportError(
                "load_edm_state_dict reads EDM's PyTorch checkpoint file with "
                "torch, which is not installed: `pip install torch` (any "
                "Keras backend works), or pass the state dict as a dict of "
                "NumPy arrays."
            ) from error
        state = torch.load(str(source), map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(
                f"{source!r} does not hold a state dict; save EDM's network with "
                "`torch.save(net.state_dict(), path)`."
            )
    arrays = {}
    for key, value in state.items():
        if hasattr(value, "detach"):  # torch tensor
            value = value.detach().cpu().float().numpy()
        arrays[str(key)] = np.asarray(value, dtype=np.float32)
    if arrays and all(k.startswith(_PRECOND_PREFIX) for k in arrays):
        arrays = {k[len(_PRECOND_PREFIX):]: v for k, v in arrays.items()}
    return arrays


def _qkv_permutation(channels, heads):
    """Our qkv channel `j C + h d + c` is EDM's channel `h 3 d + 3 c + j`.

    EDM reshapes the `3 C` qkv outputs as `(heads, C / heads, 3)` and
    unbinds the last axis; `UNetBlock` reads them as `(3, heads, C / heads)`.
    """
    head_dim = channels // heads
    j, h, c = np.meshgrid(
        np.arange(3), np.arange(heads), np.arange(head_dim), indexing="ij"
    )
    return (h * 3 * head_dim + 3 * c + j).reshape(-1)


def _entries(network):
    """`(edm_key, keras_variable, to_keras)` for every weight of `network`."""
    entries = []

    def dense(key, layer):
        entries.append((f"{key}.weight", layer.kernel, lambda w: w.T))
        if layer.use_bias:
            entries.append((f"{key}.bias", layer.bias, None))

    def conv(key, layer, permutation=None):
        if layer.conv is None:
            return

        def kernel(w):  # (out, in, kh, kw) -> (kh, kw, in, out)
            if permutation is not None:
                w = w[permutation]
            return np.transpose(w, (2, 3, 1, 0))

        def bias(b):
            return b if permutation is None else b[permutation]

        entries.append((f"{key}.weight", layer.conv.kernel, kernel))
        if layer.use_bias:
            entries.append((f"{key}.bias", layer.conv.bias, bias))

    def norm(key, layer):
        entries.append((f"{key}.weight", layer.gamma, None))
        entries.append((f"{key}.bias", layer.beta, None))

    if isinstance(network.map_noise, FourierEmbedding):
        entries.append(("map_noise.freqs", network.map_noise.frequencies, None))
    for name in ("map_label", "map_augment", "map_layer0", "map_layer1"):
        layer = getattr(network, name, None)
        if layer is not None:
            dense(name, layer)
    if network.time_inputs == 2:
        raise ValueError(
            "EDM's networks take one time input; load the checkpoint into a "
            "SongUNet built with `time_inputs=1`."
        )
    for prefix, layers in (("enc", network.enc_layers), ("dec", network.dec_layers)):
        for layer in layers:
            key = f"{prefix}.{layer.name[len(prefix) + 1:]}"
            if isinstance(layer, UNetBlock):
                norm(f"{key}.norm0", layer.norm0)
                conv(f"{key}.conv0", layer.conv0)
                dense(f"{key}.affine", layer.affine)
                norm(f"{key}.norm1", layer.norm1)
                conv(f"{key}.conv1", layer.conv1)
                if layer.skip is not None:
                    conv(f"{key}.skip", layer.skip)
                if layer.num_heads:
                    norm(f"{key}.norm2", layer.norm2)
                    conv(
                        f"{key}.qkv",
                        layer.qkv,
                        _qkv_permutation(layer.out_channels, layer.num_heads),
                    )
                    conv(f"{key}.proj", layer.proj)
            elif isinstance(layer, GroupNorm):
                norm(key, layer)
            elif isinstance(layer, ResampleConv2D):
                conv(key, layer)
    return entries


def _edm_shape(variable, to_keras=None):
    """The shape EDM stores for `variable` (channels-first, `(out, in)`)."""
    shape = tuple(int(d) for d in variable.shape)
    if len(shape) == 2:  # Dense kernel (in, out) -> Linear weight (out, in)
        return shape[::-1]
    if len(shape) == 4:  # (kh, kw, in, out) -> (out, in, kh, kw)
        return (shape[3], shape[2], shape[0], shape[1])
    return shape


def load_edm_state_dict(network, source):
    """Fills a `SongUNet` with the weights of an EDM `SongUNet` state dict.

    EDM's layers map one to one onto `SongUNet`'s (the same names: EDM's
    `enc.16x16_block0.conv0` is `enc_16x16_block0/conv0`); the loader
    converts channels-first kernels `(out, in, kh, kw)` to channels-last
    `(kh, kw, in, out)`, transposes the linear layers, reorders the
    attention `qkv` output channels (EDM interleaves them as
    `(head, channel, q/k/v)`, `UNetBlock` reads three consecutive thirds
    `(q/k/v, head, channel)`), and copies NCSN++'s Fourier frequencies
    (EDM's `map_noise.freqs` buffer) into the `FourierEmbedding`'s
    `frequencies` weight, so they are saved with the network. The FIR
    `resample_filter` buffers are constants of both networks and are not
    read. Build the network with EDM's configuration (e.g.
    `SongUNet.ddpmpp()` for EDM's CIFAR-10 DDPM++, `augment_dim=9` for a
    network trained with augmentation, `label_dim=10` for a conditional
    one); a different configuration is an error naming the first tensor
    whose shape differs.

    Note that EDM's preconditioning feeds the network `c_noise =
    ln(sigma) / 4` and scales its input and output (`EDMPrecond`); a
    consistency model wraps the loaded network with its own `c_in`, `c_out`
    and time conditioning.

    Args:
        network: a `keras_gcm.networks.SongUNet` (`time_inputs=1`); built
            here if it is not.
        source: the path of a file written by `torch.save(net.state_dict())`
            (read with torch, on any Keras backend; keys of an
            `EDMPrecond` wrapper, `model.*`, are accepted), or a dict of
            arrays / tensors with EDM's keys.

    Returns:
        `network`, with its weights replaced.

    Raises:
        ImportError: a file is given and torch is not installed.
        ValueError: a tensor is missing, unexpected, or has another shape.

    Example:

    >>> net = keras_gcm.networks.SongUNet(
    ...     img_resolution=8, in_channels=3, model_channels=16,
    ...     channel_mult=[1], num_blocks=1, attn_resolutions=[], seed=0)
    >>> net.build((None, 8, 8, 3))
    >>> state = {k: np.zeros(s, "float32") for k, s in
    ...          keras_gcm.networks.edm_state_dict_shapes(net).items()}
    >>> _ = keras_gcm.networks.load_edm_state_dict(net, state)
    """
    if not network.built:
        network.build(
            (None, network.img_resolution, network.img_resolution, network.in_channels)
        )
    state = _read_state_dict(source)
    entries = _entries(network)
    for key, variable, to_keras in entries:
        if key not in state:
            raise ValueError(
                f"The EDM state dict has no tensor {key!r}, which the network "
                f"needs (shape {_edm_shape(variable, to_keras)}): build the "
                "SongUNet with the checkpoint's configuration (e.g. "
                "`label_dim`, `augment_dim`, `embedding_type`, "
                "`encoder_type`, `channel_mult`)."
            )
        expected = _edm_shape(variable, to_keras)
        if tuple(state[key].shape) != expected:
            raise ValueError(
                f"Shape mismatch at EDM tensor {key!r}: the state dict has "
                f"shape {tuple(state[key].shape)}, the network "
                f"({variable.path}) needs {expected}. Build the SongUNet with "
                "the checkpoint's configuration (e.g. `model_channels`, "
                "`channel_mult`, `img_resolution`, `in_channels`)."
            )
    known = {key for key, _, _ in entries}
    unexpected = [
        key for key in state
        if key not in known and not key.endswith("resample_filter")
    ]
    if unexpected:
        raise ValueError(
            f"The EDM state dict has {len(unexpected)} tensor(s) the network "
            f"does not, the first {unexpected[0]!r} (shape "
            f"{tuple(state[unexpected[0]].shape)}): build the SongUNet with the "
            "checkpoint's configuration (e.g. `label_dim`, `augment_dim`, "
            "`encoder_type`, `num_blocks`)."
        )
    for key, variable, to_keras in entries:
        value = state[key] if to_keras is None else to_keras(state[key])
        variable.assign(np.ascontiguousarray(value, dtype=np.float32))
    return network


def edm_state_dict_shapes(network):
    """`{edm_key: shape}` of the EDM state dict that fits `network`.

    Args:
        network: a built `keras_gcm.networks.SongUNet`.

    Returns:
        dict of EDM tensor names to their (channels-first) shapes.

    Example:

    >>> net = keras_gcm.networks.SongUNet.ddpmpp(
    ...     img_resolution=8, in_channels=3, model_channels=16,
    ...     channel_mult=[1], num_blocks=1, attn_resolutions=[])
    >>> net.build((None, 8, 8, 3))
    >>> keras_gcm.networks.edm_state_dict_shapes(net)["enc.8x8_conv.weight"]
    (16, 3, 3, 3)
    """
    return {key: _edm_shape(v, f) for key, v, f in _entries(network)}
