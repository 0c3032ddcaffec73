"""Regenerates `tests/fixtures/edm2_unet_small.npz` from EDM2's public code.

The fixture lets `tests/test_edm2.py` check `keras_gcm.networks.EDM2UNet`
(and the EDM denoiser bridge) against NVlabs/edm2's own
`training/networks_edm2.py` without copying that code into the project: the
script builds EDM2's `Precond` (which holds the `UNet`) in a small
configuration, randomises every parameter and buffer (the learned gains
included, which EDM2 initialises to zero), and stores the state dict, seeded
inputs and EDM2's outputs:

* `unet_out`: `UNet(x, noise_labels, class_labels)` (the raw network),
* `denoised`: `Precond(x_noisy, sigma, class_labels)` (the EDM denoiser D).

Run it outside the project with a checkout of NVlabs/edm2 and any torch:

    git clone https://github.com/NVlabs/edm2 /tmp/edm2
    KERAS_BACKEND=torch python tools/make_edm2_fixture.py --edm2 /tmp/edm2

Images are stored channels-last (NHWC); tensors of the state dict keep
PyTorch's layout and names (`unet.enc.8x8_conv.weight`, ...), exactly as
`torch.save(net.state_dict(), path)` writes them.
"""

import argparse
import json
import os
import sys

import numpy as np

CONFIG = dict(
    img_resolution=8,
    img_channels=2,
    label_dim=4,
    model_channels=16,
    channel_mult=[1, 2],
    num_blocks=1,
    attn_resolutions=[8, 4],
    channels_per_head=8,
    dropout=0.0,
)
SEED = 20240311
FIXTURE_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "tests", "fixtures", "edm2_unet_small.npz",
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edm2", required=True, help="path of an NVlabs/edm2 checkout")
    parser.add_argument("--out", default=FIXTURE_PATH)
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(args.edm2))
    import torch
    from training.networks_edm2 import Precond

    torch.manual_seed(SEED)
    kwargs = dict(CONFIG)
    res, ch, labels = kwargs.pop("img_resolution"), kwargs.pop("img_channels"), kwargs.pop("label_dim")
    net = Precond(res, ch, labels, use_fp16=False, **kwargs).eval()
    rng = np.random.default_rng(SEED)
    with torch.no_grad():
        for name, tensor in list(net.named_parameters()) + list(net.named_buffers()):
            if name.endswith("gain"):
                value = rng.uniform(0.3, 1.5, size=tensor.shape)
            elif name.endswith("freqs"):
                value = 2 * np.pi * rng.standard_normal(tensor.shape)
            elif name.endswith("phases"):
                value = 2 * np.pi * rng.uniform(size=tensor.shape)
            else:
                value = rng.standard_normal(tensor.shape)
            tensor.copy_(torch.as_tensor(value, dtype=torch.float32))

    batch = 4
    x = rng.standard_normal((batch, ch, res, res)).astype("float32")
    noise_labels = np.array([-1.2, -0.3, 0.4, 1.1], "float32")
    sigma = np.array([0.05, 0.6, 2.5, 40.0], "float32")
    # Class indices; `label_dim` means "no label" (the zero row, as EDM2 drops).
    class_index = np.array([0, 3, 1, labels], "int64")
    one_hot = np.eye(labels + 1, dtype="float32")[class_index][:, :labels]
    with torch.no_grad():
        unet_out = net.unet(torch.as_tensor(x), torch.as_tensor(noise_labels),
                            torch.as_tensor(one_hot)).numpy()
        denoised = net(torch.as_tensor(x), torch.as_tensor(sigma),
                       torch.as_tensor(one_hot)).numpy()
    state = {k: v.detach().numpy().astype("float32") for k, v in net.state_dict().items()}
    arrays = {f"state/{k}": v for k, v in state.items()}
    np.savez_compressed(
        args.out,
        config=json.dumps(CONFIG),
        x=x.transpose(0, 2, 3, 1),
        noise_labels=noise_labels,
        sigma=sigma,
        class_index=class_index,
        unet_out=unet_out.transpose(0, 2, 3, 1),
        denoised=denoised.transpose(0, 2, 3, 1),
        **arrays,
    )
    print(f"wrote {args.out}: {len(state)} tensors, "
          f"{sum(v.size for v in state.values())} values")


if __name__ == "__main__":
    main()
