"""Loading EDM2 checkpoints (PyTorch state dicts) into `EDM2UNet`.

EDM2 (NVlabs/edm2) publishes its networks as pickles of `Precond` modules;
unpickling them needs EDM2's own code, so the loader reads what a user
saves from one: `torch.save(net.state_dict(), "edm2-img64-s.pt")` (keys
`unet.enc.64x64_conv.weight`, ..., and the uncertainty head
`logvar_fourier.*`, `logvar_linear.*`, which a consistency model does not
use), or the same arrays in an `.npz` file or a dict.
"""

import os

import numpy as np

from keras_gcm.networks.edm2 import EDM2UNet

_IGNORED_PREFIXES = ("logvar_fourier.", "logvar_linear.")


def read_state_dict(source):
    """Reads a state dict: a `.pt` / `.pth` file, an `.npz` file or a mapping.

    `.pt` files are read with `torch.load(..., map_location="cpu",
    weights_only=True)` (PyTorch needed only for them). A dict saved under
    `"state_dict"`, `"ema"` or `"net"` is unwrapped.

    Args:
        source: path or mapping of names to arrays / tensors.

    Returns:
        `{name: np.ndarray}` (float32 for floating tensors).

    Example:

    >>> state = keras_gcm.networks.read_state_dict({"out_gain": np.zeros(())})
    >>> sorted(state)
    ['out_gain']
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise FileNotFoundError(f"No EDM2 checkpoint at {path!r}.")
        if path.endswith(".npz"):
            with np.load(path) as data:
                state = {k: data[k] for k in data.files}
        elif path.endswith(".pkl"):
            raise ValueError(
                f"{path!r} is a pickled EDM2 network; unpickling it needs EDM2's "
                "code. In EDM2's environment save its state dict instead: "
                "`net = pickle.load(f)['ema']; torch.save(net.state_dict(), "
                "'edm2.pt')`, then load 'edm2.pt'."
            )
        else:
            try:
                import torch
            except ImportError as error:  # pragma: no cover - torch is a test dep
                raise ImportError(
                    "Reading a PyTorch checkpoint needs torch: `pip install "
                    "keras-gcm[torch]`, or convert it to .npz with "
                    "`np.savez(path, **{k: v.numpy() for k, v in sd.items()})`."
                ) from error
            state = torch.load(path, map_location="cpu", weights_only=True)
    else:
        state = dict(source)
    for key in ("state_dict", "ema", "net"):
        if key in state and isinstance(state[key], dict):
            state = state[key]
    out = {}
    for name, value in state.items():
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        value = np.asarray(value)
        if value.dtype.kind == "f":
            value = value.astype("float32")
        out[str(name)] = value
    return out


def load_edm2_checkpoint(network, source, strict=True):
    """Loads an EDM2 state dict into an `EDM2UNet`, in place.

    Names follow EDM2's `Precond.state_dict()` (`unet.` prefix optional);
    the uncertainty head (`logvar_*`) is skipped. Convolution kernels
    `(out, in, kh, kw)` become Keras' `(kh, kw, in, out)`, dense matrices
    `(out, in)` become `(in, out)`. The network is built if needed.

    Args:
        network: an `EDM2UNet` (e.g. `EDM2UNet.img64("s")`).
        source: path of a `.pt` / `.npz` state dict, or a mapping.
        strict: bool; if True, a tensor the network does not have is an
            error (else it is skipped).

    Returns:
        The network.

    Raises:
        ValueError: a tensor whose shape does not match the configuration
            (naming the tensor and both shapes), a missing tensor, or (with
            `strict`) an unexpected one.

    Example:

    >>> net = keras_gcm.networks.EDM2UNet(
    ...     img_resolution=8, in_channels=1, model_channels=16,
    ...     channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4],
    ...     channels_per_head=16, seed=0)
    >>> net.build()
    >>> state = {name: keras.ops.convert_to_numpy(value) for name, value in
    ...          keras_gcm.networks.edm2_state_dict(net).items()}
    >>> _ = keras_gcm.networks.load_edm2_checkpoint(net, state)
    """
    if not isinstance(network, EDM2UNet):
        raise TypeError(
            f"load_edm2_checkpoint loads into an EDM2UNet. Received {type(network).__name__}."
        )
    state = read_state_dict(source)
    state = {
        (k[len("unet."):] if k.startswith("unet.") else k): v
        for k, v in state.items()
        if not k.startswith(_IGNORED_PREFIXES)
    }
    if not network.built:
        network.build()
    specs = network.edm2_weight_specs()
    expected = {name for name, _, _, _ in specs}
    unexpected = sorted(set(state) - expected)
    if unexpected and strict:
        raise ValueError(
            f"The checkpoint has {len(unexpected)} tensor(s) this EDM2UNet "
            f"configuration does not, e.g. {unexpected[:5]}: check "
            "`model_channels`, `channel_mult`, `num_blocks`, `attn_resolutions` "
            "and `label_dim` (or pass strict=False to skip them)."
        )
    missing = [name for name, _, _, _ in specs if name not in state]
    if missing:
        raise ValueError(
            f"The checkpoint lacks {len(missing)} tensor(s) of this EDM2UNet "
            f"configuration, e.g. {missing[:5]}: check `model_channels`, "
            "`channel_mult`, `num_blocks`, `attn_resolutions` and `label_dim`."
        )
    assignments = []
    for name, shape, owner, attribute in specs:
        value = state[name]
        if tuple(value.shape) != tuple(shape):
            raise ValueError(
                f"Checkpoint tensor {name!r} has shape {tuple(value.shape)}, but "
                f"this EDM2UNet configuration expects {tuple(shape)} (PyTorch "
                "layout): build the network with the checkpoint's configuration "
                "(e.g. EDM2UNet.img64('s' / 'm' / 'l' / 'xl'), label_dim)."
            )
        if value.ndim == 4:
            value = value.transpose(2, 3, 1, 0)
        elif value.ndim == 2:
            value = value.T
        assignments.append((getattr(owner, attribute), value))
    for variable, value in assignments:
        variable.assign(value.astype(variable.dtype))
    return network


def edm2_state_dict(network):
    """The network's weights under EDM2's names, in PyTorch layout.

    The inverse of `load_edm2_checkpoint` (without the `unet.` prefix):
    `torch.save({k: torch.as_tensor(v) for k, v in ...}, path)` writes a
    file EDM2's `UNet.load_state_dict` reads.

    Args:
        network: a built `EDM2UNet`.

    Returns:
        `{edm2_name: np.ndarray}`.

    Example:

    >>> net = keras_gcm.networks.EDM2UNet(
    ...     img_resolution=8, in_channels=1, model_channels=16,
    ...     channel_mult=[1], num_blocks=1, attn_resolutions=[], channels_per_head=16, seed=0)
    >>> net.build()
    >>> keras_gcm.networks.edm2_state_dict(net)["enc.8x8_conv.weight"].shape
    (16, 2, 3, 3)
    """
    from keras import ops

    if not network.built:
        network.build()
    out = {}
    for name, _, owner, attribute in network.edm2_weight_specs():
        value = np.asarray(ops.convert_to_numpy(getattr(owner, attribute)))
        if value.ndim == 4:
            value = value.transpose(3, 2, 0, 1)
        elif value.ndim == 2:
            value = value.T
        out[name] = value
    return out
