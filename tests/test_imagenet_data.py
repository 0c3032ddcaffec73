"""Tests for the class-conditional ImageNet-64 pipelines (keras_gcm.data.imagenet)."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

import keras_gcm  # noqa: E402
from keras_gcm.data import imagenet64  # noqa: E402
from keras_gcm.data import imagenet64_npz  # noqa: E402
from keras_gcm.data import read_downsampled_imagenet_npz  # noqa: E402


def _raw(name, n):
    ds = tfds.load(name, split="train", shuffle_files=False)
    examples = list(ds.take(n).as_numpy_iterator())
    return examples


def test_imagenet_resized_yields_scaled_images_and_labels():
    with tfds.testing.mock_data(num_examples=6):
        raw = _raw("imagenet_resized/64x64", 6)
        ds = imagenet64(batch_size=6, shuffle=False, seed=0)
        images, labels = next(iter(ds.as_numpy_iterator()))
    assert images.shape == (6, 64, 64, 3) and images.dtype == np.float32
    assert labels.dtype == np.int32
    expected = np.stack([ex["image"] for ex in raw]).astype(np.float32) / 127.5 - 1.0
    np.testing.assert_array_equal(images, expected)
    np.testing.assert_array_equal(labels, [ex["label"] for ex in raw])
    assert labels.min() >= 0 and labels.max() < keras_gcm.data.IMAGENET_NUM_CLASSES


def test_downsampled_imagenet_is_unlabelled():
    with tfds.testing.mock_data(num_examples=4):
        ds = imagenet64(batch_size=4, source="downsampled_imagenet", labels=False,
                        shuffle=False)
        images = next(iter(ds.as_numpy_iterator()))
        assert images.shape == (4, 64, 64, 3)
        assert -1.0 <= images.min() and images.max() <= 1.0
        with pytest.raises(ValueError, match="no class labels.*imagenet_resized"):
            imagenet64(source="downsampled_imagenet", labels=True)
    with pytest.raises(ValueError, match="`source` must be one of"):
        imagenet64(source="imagenet")


def _batch_file(path, n, labels, side=64, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3 * side * side), dtype=np.uint8)
    np.savez(path, data=data, labels=np.asarray(labels))
    return data


def test_downsampled_imagenet_npz_layout_and_one_based_labels(tmp_path):
    a = _batch_file(tmp_path / "train_data_batch_1.npz", 3, [1, 1000, 7])
    b = _batch_file(tmp_path / "train_data_batch_2.npz", 1, [500], seed=1)
    images, labels = read_downsampled_imagenet_npz(
        [tmp_path / "train_data_batch_1.npz", tmp_path / "train_data_batch_2.npz"])
    assert images.shape == (4, 64, 64, 3)
    np.testing.assert_array_equal(labels, [0, 999, 6, 499])
    # Channel-first rows: the first 4096 values are the red plane.
    np.testing.assert_array_equal(images[0, :, :, 0].ravel(), a[0, :4096])
    np.testing.assert_array_equal(images[3, :, :, 2].ravel(), b[0, 8192:])
    ds = imagenet64_npz(tmp_path / "train_data_batch_1.npz", batch_size=3,
                        shuffle=False)
    x, y = next(iter(ds.as_numpy_iterator()))
    np.testing.assert_array_equal(y, [0, 999, 6])
    np.testing.assert_allclose(x, images[:3].astype(np.float32) / 127.5 - 1.0)


def test_downsampled_imagenet_npz_rejects_bad_labels(tmp_path):
    _batch_file(tmp_path / "bad.npz", 2, [0, 3])
    with pytest.raises(ValueError, match=r"1-based class ids in \[1, 1000\].*\[0, 3\]"):
        read_downsampled_imagenet_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", images=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="lacks.*data"):
        read_downsampled_imagenet_npz(tmp_path / "other.npz")
