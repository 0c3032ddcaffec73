"""The Stable Diffusion VAE (`keras_gcm.networks.AutoencoderKL`) against diffusers."""

import os

import numpy as np
import pytest

from keras_gcm.networks import AutoencoderKL
from tests.helpers import to_numpy

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "vae_random.npz")
SMALL = dict(block_out_channels=(16, 32), layers_per_block=1, latent_channels=4,
             norm_num_groups=8)


def _fixture():
    data = np.load(FIXTURE)
    return data, {k[2:]: data[k] for k in data.files if k.startswith("w/")}


def test_matches_diffusers_autoencoder_kl():
    # tools/make_vae_fixture.py: diffusers.AutoencoderKL, random weights.
    data, weights = _fixture()
    vae = AutoencoderKL(**SMALL)
    vae.load_diffusers_state_dict(weights)
    mean, std = (to_numpy(v) for v in vae.encode(data["images"]))
    for ours, ref in ((mean, data["mean"]), (std, data["std"])):
        assert np.abs(ref).max() > 0.1
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    decoded = to_numpy(vae.decode(data["latents"]))
    ref = data["decoded"]
    np.testing.assert_allclose(decoded, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_sd_vae_size_and_config_round_trip():
    vae = AutoencoderKL.sd_vae()
    assert vae.downsampling == 8 and vae.scaling_factor == 0.18215
    # Counted without building the 83.7M weights: the small model counts
    # exactly what diffusers counts (its state dict), checked here.
    data, weights = _fixture()
    small = AutoencoderKL(**SMALL)
    small.build()
    assert small.count_params() == sum(v.size for v in weights.values())
    clone = AutoencoderKL.from_config(small.get_config())
    assert clone.get_config() == small.get_config()


def test_weight_file_errors_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="huggingface.co/stabilityai/sd-vae-ft-ema"):
        AutoencoderKL.from_diffusers(tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError, match="sd-vae-ft-ema"):
        AutoencoderKL.from_diffusers(tmp_path)
    _, weights = _fixture()
    wrong = dict(weights)
    wrong["encoder.down_blocks.0.resnets.0.conv1.weight"] = np.zeros((16, 16, 1, 1), "float32")
    vae = AutoencoderKL(**SMALL)
    with pytest.raises(ValueError, match=r"'encoder.down_blocks.0.resnets.0.conv1.weight'"):
        vae.load_diffusers_state_dict(wrong)
    with pytest.raises(ValueError, match=r"no tensor 'encoder.conv_in.weight'"):
        vae.load_diffusers_state_dict({})


def _decodes_like_the_fixture(vae):
    data, _ = _fixture()
    np.testing.assert_allclose(to_numpy(vae.decode(data["latents"])), data["decoded"],
                               rtol=1e-4, atol=1e-4 * np.abs(data["decoded"]).max())


def test_loads_a_diffusers_safetensors_file(tmp_path):
    # The format of the published weights (the `latent` extra installs safetensors).
    from safetensors.numpy import save_file

    _, weights = _fixture()
    save_file({k: np.ascontiguousarray(v) for k, v in weights.items()},
              str(tmp_path / "diffusion_pytorch_model.safetensors"))
    _decodes_like_the_fixture(AutoencoderKL.from_diffusers(tmp_path, **SMALL))
    _decodes_like_the_fixture(AutoencoderKL.from_diffusers(
        tmp_path / "diffusion_pytorch_model.safetensors", **SMALL))


def test_loads_a_diffusers_torch_file(tmp_path):
    import torch

    _, weights = _fixture()
    torch.save({k: torch.from_numpy(v) for k, v in weights.items()},
               tmp_path / "diffusion_pytorch_model.bin")
    _decodes_like_the_fixture(AutoencoderKL.from_diffusers(tmp_path, **SMALL))
