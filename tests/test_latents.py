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


def test_encode_command_on_a_tfds_data_set(tmp_path, monkeypatch):
    # The `--tfds` path end to end on tensorflow-datasets' mock data (no download):
    # MNIST's 28x28x1 digits are resized to 16x16, made RGB, scaled and encoded.
    tf = pytest.importorskip("tensorflow")
    tfds = pytest.importorskip("tensorflow_datasets")
    vae = keras_gcm.networks.AutoencoderKL(**SMALL)
    vae.build()
    monkeypatch.setattr(keras_gcm.networks.AutoencoderKL, "from_diffusers",
                        classmethod(lambda cls, path, **kw: vae))
    with tfds.testing.mock_data(num_examples=6):
        raw = list(tfds.load("mnist", split="train", as_supervised=True,
                             shuffle_files=False).as_numpy_iterator())
        assert encode_latents.main(["--tfds", "mnist", "--split", "train", "--vae", "unused",
                                    "--out", str(tmp_path / "lat"), "--resolution", "16",
                                    "--batch-size", "4", "--shard-size", "4",
                                    "--num-classes", "10"]) == 0
    assert len(raw) == 6
    meta = json.load(open(tmp_path / "lat" / "metadata.json"))
    assert meta["shape"] == [8, 8, 4] and meta["num_examples"] == 6
    assert meta["num_shards"] == 2 and meta["num_classes"] == 10
    assert meta["source"] == "tfds:mnist:train"
    assert sorted(os.listdir(tmp_path / "lat")) == ["metadata.json", "shard-00000.npz",
                                                    "shard-00001.npz"]
    shards = [np.load(tmp_path / "lat" / f"shard-0000{i}.npz") for i in range(2)]
    assert [len(s["labels"]) for s in shards] == [4, 2]
    for shard, rows in zip(shards, (4, 2)):
        assert shard["mean"].shape == shard["std"].shape == (rows, 8, 8, 4)
        assert shard["mean"].dtype == np.float16
    np.testing.assert_array_equal(np.concatenate([s["labels"] for s in shards]),
                                  [label for _, label in raw])
    # The stored posterior is the VAE's, of the resized, RGB, [-1, 1] images in order.
    images = np.stack([encode_latents._center_crop(tf, tf.constant(image), 16).numpy()
                       for image, _ in raw]) / 127.5 - 1.0
    assert images.shape == (6, 16, 16, 3)
    mean, std = (to_numpy(v) for v in vae.encode(images.astype("float32")))
    stored_mean = np.concatenate([s["mean"] for s in shards]).astype("float32")
    stored_std = np.concatenate([s["std"] for s in shards]).astype("float32")
    np.testing.assert_allclose(stored_mean, mean, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(stored_std, std, rtol=2e-3, atol=2e-3)
