"""Latent folders: encoding once, the posterior-sampling pipeline, decoding samplers."""

import json
import os

import numpy as np
import pytest

import keras_gcm
from keras_gcm.data import latents as L
from keras_gcm.data import encode_latents
from tests.helpers import to_numpy

SMALL = dict(block_out_channels=(16, 32), layers_per_block=1, latent_channels=4,
             norm_num_groups=8)


def test_writer_pipeline_samples_the_scaled_posterior(tmp_path):
    rng = np.random.default_rng(0)
    mean = rng.standard_normal((10, 2, 2, 4)).astype("float32")
    std = np.full_like(mean, 0.5)
    writer = L.LatentShardWriter(tmp_path / "lat", 0.5, shard_size=4, dtype="float32",
                                 num_classes=3)
    writer.add(mean[:7], std[:7], np.arange(7) % 3)
    writer.add(mean[7:], std[7:], np.arange(7, 10) % 3)
    meta = writer.close()
    assert meta["num_examples"] == 10 and meta["num_shards"] == 3 and meta["shape"] == [2, 2, 4]
    ds = L.latents(tmp_path / "lat", 5, shuffle=False, repeat=False, seed=0,
                   sample_posterior=False)
    x, y = next(iter(ds))
    np.testing.assert_allclose(x.numpy(), 0.5 * mean[:5], rtol=1e-6)
    np.testing.assert_array_equal(y.numpy(), np.arange(5) % 3)
    # Posterior samples: mean + std * n, scaled; n ~ N(0, 1) fresh each batch.
    draws = []
    for x, _ in L.latents(tmp_path / "lat", 10, shuffle=False, repeat=True, seed=1).take(200):
        draws.append(x.numpy() / 0.5 - mean)
    noise = np.stack(draws) / 0.5
    assert abs(noise.mean()) < 0.02 and abs(noise.std() - 1.0) < 0.02
    with pytest.raises(FileExistsError, match="empty folder"):
        L.LatentShardWriter(tmp_path / "lat", 0.5)


def test_shape_mismatch_and_missing_folder_errors(tmp_path):
    L.mock_latents(tmp_path / "mock", 8, (8, 8, 4), 10)
    dit = keras_gcm.networks.DiT(img_resolution=4, in_channels=4, patch_size=2,
                                 hidden_size=16, depth=1, num_heads=2, label_dim=10)
    with pytest.raises(ValueError, match=r"img_resolution=8, in_channels=4"):
        L.check_latent_shape(tmp_path / "mock", dit)
    with pytest.raises(FileNotFoundError, match="encode_latents"):
        L.read_metadata(tmp_path / "nothing")


def test_encode_command_on_an_image_folder(tmp_path, monkeypatch):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        os.makedirs(tmp_path / "images" / name)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(
                tmp_path / "images" / name / f"{i}.png")
    vae = keras_gcm.networks.AutoencoderKL(**SMALL)
    vae.build()
    monkeypatch.setattr(keras_gcm.networks.AutoencoderKL, "from_diffusers",
                        classmethod(lambda cls, path, **kw: vae))
    assert encode_latents.main(["--images", str(tmp_path / "images"), "--vae", "unused",
                                "--out", str(tmp_path / "lat"), "--resolution", "16",
                                "--batch-size", "4", "--shard-size", "4"]) == 0
    meta = json.load(open(tmp_path / "lat" / "metadata.json"))
    assert meta["shape"] == [8, 8, 4] and meta["num_examples"] == 6
    labels = np.concatenate([np.load(tmp_path / "lat" / f"shard-0000{i}.npz")["labels"]
                             for i in range(2)])
    np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1, 1])
    # The stored posterior is the VAE's, of the folder's images in order.
    first = np.load(tmp_path / "lat" / "shard-00000.npz")
    images = next(iter(keras_gcm.data.image_folder(
        tmp_path / "images", 16, 4, shuffle=False, repeat=False))).numpy()
    mean, std = (to_numpy(v) for v in vae.encode(images))
    np.testing.assert_allclose(first["mean"].astype("float32"), mean, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(first["std"].astype("float32"), std, rtol=2e-3, atol=2e-3)
    # A decoding sampler for grids / FID returns images.
    net = keras_gcm.networks.DiT(img_resolution=8, in_channels=4, patch_size=2,
                                 hidden_size=16, depth=1, num_heads=2, label_dim=2)
    model = keras_gcm.ConsistencyModel(net, time_sampler=keras_gcm.time_sampling.EqualTimeMixture())
    model.build((None, 8, 8, 4))
    images = keras_gcm.samplers.decoded(vae, num_classes=2)(model, 3, seed=0)
    assert images.shape == (3, 16, 16, 3) and np.all(np.abs(images) <= 1.0)
