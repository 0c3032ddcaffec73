"""Regenerates `tests/fixtures/vae_random.npz` with diffusers' `AutoencoderKL`.

The fixture lets `tests/test_vae.py` check `keras_gcm.networks.AutoencoderKL`
against diffusers without any download: a small configuration of the SD VAE
architecture (`block_out_channels=(16, 32)`, one ResNet per block, 8
GroupNorm groups, 4 latent channels) with seeded random weights (stored under
diffusers' state-dict names), seeded images and latents, and diffusers'
posterior mean / std and decoded images.

Run it outside the project's environment, e.g.:

    pip install --target /tmp/diffusers-pkgs diffusers "huggingface_hub<1.0" safetensors regex
    PYTHONPATH=/tmp/diffusers-pkgs python tools/make_vae_fixture.py

(remove any numpy / torch the `--target` install pulled in, so the
environment's own are used).
"""

import os

import numpy as np

FIXTURE_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "tests", "fixtures", "vae_random.npz",
)
CONFIG = dict(block_out_channels=(16, 32), layers_per_block=1, latent_channels=4,
              norm_num_groups=8)
WEIGHT_SEED = 20221220
INPUT_SEED = 3


def main():
    import torch
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, **CONFIG).eval()
    rng = np.random.default_rng(WEIGHT_SEED)
    state = {}
    with torch.no_grad():
        for name, param in vae.named_parameters():
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or (
                    "norm" in name and name.endswith(".weight")):
                value = 1.0 + 0.2 * rng.standard_normal(tuple(param.shape))
            else:
                fan_in = int(np.prod(param.shape[1:])) if param.ndim > 1 else 10
                value = rng.standard_normal(tuple(param.shape)) * (1.0 / np.sqrt(fan_in))
            value = value.astype("float32")
            param.copy_(torch.from_numpy(value))
            state[name] = value
    rng = np.random.default_rng(INPUT_SEED)
    images = rng.uniform(-1, 1, (2, 16, 16, 3)).astype("float32")
    latents = rng.standard_normal((2, 8, 8, 4)).astype("float32")
    with torch.no_grad():
        posterior = vae.encode(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).latent_dist
        mean, std = posterior.mean.numpy(), posterior.std.numpy()
        decoded = vae.decode(torch.from_numpy(latents.transpose(0, 3, 1, 2).copy())).sample.numpy()
    np.savez_compressed(
        FIXTURE_PATH, images=images, latents=latents,
        mean=mean.transpose(0, 2, 3, 1), std=std.transpose(0, 2, 3, 1),
        decoded=decoded.transpose(0, 2, 3, 1),
        **{"w/" + k: v for k, v in state.items()},
    )
    print("wrote", FIXTURE_PATH, "parameters:", sum(v.size for v in state.values()),
          "sd-vae parameters:", sum(p.numel() for p in AutoencoderKL(
              down_block_types=("DownEncoderBlock2D",) * 4,
              up_block_types=("UpDecoderBlock2D",) * 4,
              block_out_channels=(128, 256, 512, 512), layers_per_block=2).parameters()))


if __name__ == "__main__":
    main()
