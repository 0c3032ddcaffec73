"""Regenerates `tests/fixtures/edm_songunet_augment.npz` from EDM's own code.

The fixture lets `tests/test_edm_checkpoint.py` and
`tests/test_augmentation.py` check, under every backend, that

* `keras_gcm.networks.load_edm_state_dict` fills `SongUNet` from an EDM
  state dict (channels-first kernels, the (channel, q/k/v)-interleaved
  attention `qkv`, NCSN++'s Fourier `freqs` buffer) so that it reproduces
  EDM's outputs, for a small DDPM++ network (with `augment_dim=9`) and a
  small NCSN++ network, both with random weights;
* `keras_gcm.augmentation.AugmentPipe` reproduces EDM's `AugmentPipe` given
  the same random draws: the script records every `torch.rand` / `randn` /
  `randint` EDM's pipe makes (in order, with their values) and the test
  replays them.

EDM's code is not part of this project. Run the script against a checkout
of https://github.com/NVlabs/edm (only `training/`, `torch_utils/` and
`dnnlib/` are imported) with the project's torch:

    python tools/make_edm_fixture.py --edm-dir /path/to/edm
"""

import argparse
import os
import sys

import numpy as np

FIXTURE_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "tests", "fixtures", "edm_songunet_augment.npz",
)
SMALL = dict(
    img_resolution=8, in_channels=3, out_channels=3, model_channels=16,
    channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4], dropout=0.0,
)
NETWORKS = {
    "ddpmpp": dict(SMALL, augment_dim=9, embedding_type="positional",
                   channel_mult_noise=1, encoder_type="standard",
                   resample_filter=[1, 1]),
    "ncsnpp": dict(SMALL, embedding_type="fourier", channel_mult_noise=2,
                   encoder_type="residual", resample_filter=[1, 3, 3, 1]),
}
# EDM's CIFAR-10 augmentation (train.py --augment=0.12) with p raised so
# that every transform fires often in a small batch, plus the transforms
# EDM's CIFAR-10 setting leaves off (integer blitting, colour).
AUGMENT_SETTINGS = {
    "cifar10": dict(p=0.6, xflip=1e8, yflip=1, scale=1, rotate_frac=1, aniso=1,
                    translate_frac=1),
    "all": dict(p=0.5, xflip=1, yflip=1, rotate_int=1, translate_int=1, scale=1,
                rotate_frac=1, aniso=1, translate_frac=1, brightness=1, contrast=1,
                lumaflip=1, hue=1, saturation=1),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--edm-dir", required=True, help="checkout of NVlabs/edm")
    parser.add_argument("--output", default=FIXTURE_PATH)
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(args.edm_dir))
    import torch
    from training import augment as edm_augment
    from training.networks import SongUNet

    out = {}
    rng = np.random.default_rng(20221024)
    for name, config in NETWORKS.items():
        torch.manual_seed(0)
        net = SongUNet(**config).eval()
        with torch.no_grad():
            for key, value in net.state_dict().items():
                if key.endswith("resample_filter"):
                    continue
                if key.endswith("freqs"):  # keep EDM's N(0, 16^2) draw
                    continue
                scale = 0.25 if value.ndim > 1 else 0.1
                new = rng.standard_normal(value.shape) * scale
                if key.endswith(("norm0.weight", "norm1.weight", "norm2.weight",
                                 "aux_norm.weight")):
                    new = new + 1.0
                value.copy_(torch.from_numpy(new.astype(np.float32)))
        batch = 3
        x = rng.standard_normal((batch, 3, 8, 8)).astype(np.float32)
        noise = np.asarray([-0.8, 0.1, 1.3], np.float32)  # EDM's ln(sigma) / 4
        kwargs = {}
        if config.get("augment_dim"):
            aug = (rng.standard_normal((batch, 9)) * 0.5).astype(np.float32)
            kwargs["augment_labels"] = torch.from_numpy(aug)
            out[f"{name}/augment_labels"] = aug
        with torch.no_grad():
            y = net(torch.from_numpy(x), torch.from_numpy(noise), None, **kwargs)
            if config.get("augment_dim"):
                y_plain = net(torch.from_numpy(x), torch.from_numpy(noise), None)
                out[f"{name}/output_no_augment"] = y_plain.numpy()
        out[f"{name}/x"] = x
        out[f"{name}/noise_labels"] = noise
        out[f"{name}/output"] = y.numpy()
        for key, value in net.state_dict().items():
            out[f"{name}/state/{key}"] = value.numpy()

    # AugmentPipe: record EDM's random draws.
    for setting, kwargs in AUGMENT_SETTINGS.items():
        torch.manual_seed(1)
        draws = []
        real = {"rand": torch.rand, "randn": torch.randn, "randint": torch.randint}

        def recorder(kind):
            def draw(*a, **k):
                value = real[kind](*a, **k)
                draws.append((kind, value.numpy().copy()))
                return value
            return draw

        images = np.random.default_rng(7).uniform(-1, 1, (6, 3, 8, 8)).astype(np.float32)
        pipe = edm_augment.AugmentPipe(**kwargs)
        try:
            for kind in real:
                setattr(torch, kind, recorder(kind))
            result, labels = pipe(torch.from_numpy(images))
        finally:
            for kind, fn in real.items():
                setattr(torch, kind, fn)
        out[f"augment_{setting}/images"] = images
        out[f"augment_{setting}/result"] = result.numpy()
        out[f"augment_{setting}/labels"] = labels.numpy()
        out[f"augment_{setting}/draw_kinds"] = np.asarray([k for k, _ in draws])
        for i, (_, value) in enumerate(draws):
            out[f"augment_{setting}/draw_{i}"] = value.astype(
                np.int64 if value.dtype.kind == "i" else np.float32
            )
    np.savez_compressed(args.output, **out)
    print(f"wrote {args.output} ({os.path.getsize(args.output) / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
