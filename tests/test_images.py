"""Tests of the image data pipelines (keras_gcm/data/images.py)."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from sklearn.datasets import load_digits

from keras_gcm.data import images as image_data


def _batches(ds, count):
    return [np.asarray(b) for b in ds.take(count).as_numpy_iterator()]


def _raw_cifar(num_examples):
    """The mock CIFAR-10 examples in file order, as TFDS returns them."""
    raw = list(tfds.load("cifar10", split="train").as_numpy_iterator())
    assert len(raw) == num_examples
    images = np.stack([r["image"] for r in raw])
    labels = np.array([r["label"] for r in raw])
    return images, labels


def _scaled(uint8_images):
    return uint8_images.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


# --------------------------------------------------------------------- cifar10


def test_cifar10_scaling_labels_and_flip_rate():
    with tfds.testing.mock_data(num_examples=4):
        raw, raw_labels = _raw_cifar(4)
        ds = image_data.cifar10(
            batch_size=4, shuffle=False, xflip=True, seed=0, labels=True
        )
        assert ds.element_spec[0].shape == (4, 32, 32, 3)
        assert ds.element_spec[0].dtype == tf.float32
        batches = list(ds.take(16).as_numpy_iterator())
    expected = _scaled(raw)
    flipped = expected[:, :, ::-1, :]
    num_flipped = 0
    for images, labels in batches:
        assert images.dtype == np.float32 and images.shape == (4, 32, 32, 3)
        assert images.min() >= -1.0 and images.max() <= 1.0
        np.testing.assert_array_equal(labels, raw_labels)
        for i in range(4):
            is_plain = np.array_equal(images[i], expected[i])
            is_flipped = np.array_equal(images[i], flipped[i])
            # Each output is the image x / 127.5 - 1, flipped left-right or not.
            assert is_plain != is_flipped
            num_flipped += int(is_flipped)
    # 64 fair coin flips: P(outside [16, 48]) < 1e-4.
    assert 16 <= num_flipped <= 48


def test_cifar10_without_flip_is_the_scaled_data_and_spans_the_range():
    with tfds.testing.mock_data(num_examples=8):
        raw, _ = _raw_cifar(8)
        ds = image_data.cifar10(batch_size=8, shuffle=False, xflip=False, seed=0)
        (batch,) = _batches(ds, 1)
    np.testing.assert_array_equal(batch, _scaled(raw))
    # uint8 0 -> -1 and 255 -> +1 exactly.
    assert _scaled(np.array([0, 255], np.uint8)).tolist() == [-1.0, 1.0]


def test_cifar10_is_deterministic_given_seed_and_each_epoch_a_permutation():
    with tfds.testing.mock_data(num_examples=8):
        raw, _ = _raw_cifar(8)
        first = _batches(image_data.cifar10(batch_size=8, seed=3), 4)
        second = _batches(image_data.cifar10(batch_size=8, seed=3), 4)
        other = _batches(image_data.cifar10(batch_size=8, seed=4), 4)
        no_flip = _batches(image_data.cifar10(batch_size=8, seed=3, xflip=False), 4)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))
    # With batch = split size, every batch is one shuffled epoch: a permutation.
    expected = np.sort(_scaled(raw).reshape(8, -1), axis=0)
    orders = []
    for batch in no_flip:
        np.testing.assert_array_equal(np.sort(batch.reshape(8, -1), axis=0), expected)
        orders.append(
            [int(np.flatnonzero((_scaled(raw) == img).all(axis=(1, 2, 3)))[0]) for img in batch]
        )
    assert len({tuple(o) for o in orders}) > 1  # reshuffled between epochs


class ReconstructionModel(keras.Model):
    """Images-only model: the loss is the reconstruction error of x itself."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(3)

    def call(self, x):
        return self.dense(x)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return keras.ops.mean(keras.ops.square(y_pred - x))


def test_keras_fit_on_cifar10_pipeline_for_two_steps():
    with tfds.testing.mock_data(num_examples=8):
        labelled = image_data.cifar10(batch_size=4, seed=0, labels=True)
        images_only = image_data.cifar10(batch_size=4, seed=0)

        classifier = keras.Sequential(
            [keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)]
        )
        classifier.compile(
            optimizer=keras.optimizers.SGD(0.01),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        before = keras.ops.convert_to_numpy(classifier.layers[-1].kernel).copy()
        history = classifier.fit(labelled, steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)
        assert np.isfinite(history.history["loss"][0])
        after = keras.ops.convert_to_numpy(classifier.layers[-1].kernel)
        assert not np.allclose(before, after)

        autoencoder = ReconstructionModel(name="reconstruction")
        autoencoder.compile(optimizer=keras.optimizers.SGD(0.01))
        autoencoder(np.zeros((1, 32, 32, 3), np.float32))
        before = keras.ops.convert_to_numpy(autoencoder.dense.kernel).copy()
        autoencoder.fit(images_only, steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)
        after = keras.ops.convert_to_numpy(autoencoder.dense.kernel)
        assert not np.allclose(before, after)


# ---------------------------------------------------------------- image_folder


def _write_image(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    array = tf.constant(array, tf.uint8)
    if path.lower().endswith(".png"):
        data = tf.io.encode_png(array)
    else:
        data = tf.io.encode_jpeg(array, quality=100)
    tf.io.write_file(path, data)


def test_image_folder_round_trip_recursive(tmp_path):
    rng = np.random.RandomState(0)
    arrays = rng.randint(0, 256, size=(5, 8, 8, 3)).astype(np.uint8)
    names = ["a.png", "sub/b.PNG", "sub/deeper/c.png", "d.png", "sub/e.png"]
    for name, array in zip(names, arrays):
        _write_image(str(tmp_path / name), array)
    (tmp_path / "notes.txt").write_text("not an image")
    files = image_data.list_image_files(tmp_path)
    assert len(files) == 5 and files == sorted(files)
    order = [files.index(str(tmp_path / name)) for name in names]
    ds = image_data.image_folder(
        tmp_path, image_size=8, batch_size=2, shuffle=False, repeat=False,
        drop_remainder=False, seed=0,
    )
    out = np.concatenate(list(ds.as_numpy_iterator()))
    assert out.dtype == np.float32 and out.shape == (5, 8, 8, 3)
    np.testing.assert_array_equal(out[order], _scaled(arrays))

    gray = image_data.image_folder(
        tmp_path, image_size=8, batch_size=5, channels=1, shuffle=False, seed=0
    )
    (batch,) = _batches(gray, 1)
    assert batch.shape == (5, 8, 8, 1)


def test_image_folder_resizes_shorter_side_and_center_crops(tmp_path):
    red, green = np.array([255, 0, 0]), np.array([0, 255, 0])
    wide = np.broadcast_to(green, (16, 24, 3)).copy()
    # Red bands of 3 columns lie outside the 16x16 center crop (source columns
    # 4..19), beyond the reach of the 2x antialiasing kernel (radius 2 pixels).
    wide[:, :3] = red
    wide[:, -3:] = red
    tall = np.transpose(wide, (1, 0, 2)).copy()
    _write_image(str(tmp_path / "wide.png"), wide)
    _write_image(str(tmp_path / "tall.png"), tall)
    ds = image_data.image_folder(
        tmp_path, image_size=8, batch_size=2, shuffle=False, seed=0
    )
    (batch,) = _batches(ds, 1)
    assert batch.shape == (2, 8, 8, 3)
    # Only the green center survives the crop: (0, 255, 0) -> (-1, 1, -1).
    np.testing.assert_allclose(batch, np.broadcast_to([-1.0, 1.0, -1.0], batch.shape))

    # A (height, width) target of the same aspect ratio is a plain 2x downscale.
    only_wide = tmp_path / "only_wide"
    _write_image(str(only_wide / "w.png"), wide)
    ds = image_data.image_folder(only_wide, image_size=(8, 12), batch_size=1, seed=0)
    (batch,) = _batches(ds, 1)
    assert batch.shape == (1, 8, 12, 3)
    np.testing.assert_allclose(batch[0, :, 0], np.broadcast_to([1.0, -1.0, -1.0], (8, 3)))
    np.testing.assert_allclose(batch[0, :, 4], np.broadcast_to([-1.0, 1.0, -1.0], (8, 3)))


def test_image_folder_reads_jpeg(tmp_path):
    array = np.full((8, 8, 3), 200, np.uint8)
    _write_image(str(tmp_path / "img.jpg"), array)
    _write_image(str(tmp_path / "img2.JPEG"), array)
    ds = image_data.image_folder(tmp_path, image_size=8, batch_size=2, seed=0)
    (batch,) = _batches(ds, 1)
    np.testing.assert_allclose(batch, 200 / 127.5 - 1, atol=3 / 127.5)


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="No image files"):
        image_data.image_folder(tmp_path, image_size=8, batch_size=2)
    with pytest.raises(ValueError, match="does not exist"):
        image_data.image_folder(tmp_path / "missing", image_size=8, batch_size=2)
    _write_image(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="image_size"):
        image_data.image_folder(tmp_path, image_size=(8,), batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        image_data.image_folder(tmp_path, image_size=8, batch_size=0)


# ------------------------------------------------------------------ npz_images


def test_npz_uint8_round_trip_with_labels(tmp_path):
    rng = np.random.RandomState(1)
    arrays = rng.randint(0, 256, size=(6, 4, 4, 3)).astype(np.uint8)
    arrays[0, 0, 0] = [0, 255, 128]
    labels = np.arange(6)
    path = tmp_path / "data.npz"
    np.savez(path, images=arrays, labels=labels)
    ds = image_data.npz_images(
        path, batch_size=4, shuffle=False, repeat=False, drop_remainder=False,
        labels=True, seed=0,
    )
    parts = list(ds.as_numpy_iterator())
    images = np.concatenate([p[0] for p in parts])
    out_labels = np.concatenate([p[1] for p in parts])
    np.testing.assert_allclose(images, arrays / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_array_equal(out_labels, labels)
    assert images[0, 0, 0].tolist() == [-1.0, 1.0, pytest.approx(128 / 127.5 - 1)]


def test_npz_float_ranges_and_npy(tmp_path):
    x = np.linspace(-1, 1, 2 * 2 * 2 * 1, dtype=np.float32).reshape(2, 2, 2, 1)
    np.savez(tmp_path / "f.npz", samples=x)
    ds = image_data.npz_images(tmp_path / "f.npz", key="samples", batch_size=2, shuffle=False)
    np.testing.assert_allclose(_batches(ds, 1)[0], x, atol=1e-7)

    unit = (x + 1) / 2  # declared as [0, 1]
    np.save(tmp_path / "u.npy", unit)
    ds = image_data.npz_images(
        tmp_path / "u.npy", batch_size=2, shuffle=False, value_range=(0, 1)
    )
    np.testing.assert_allclose(_batches(ds, 1)[0], x, atol=1e-6)


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "rank3.npz", images=np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"rank-4.*\(4, 8, 8\)"):
        image_data.npz_images(tmp_path / "rank3.npz")
    np.savez(tmp_path / "f255.npz", images=np.full((2, 4, 4, 3), 255.0, np.float32))
    with pytest.raises(ValueError, match=r"outside the declared range \[-1, 1\].*value_range"):
        image_data.npz_images(tmp_path / "f255.npz")
    # The same array is fine once its range is declared.
    ds = image_data.npz_images(tmp_path / "f255.npz", value_range=(0, 255), batch_size=2)
    np.testing.assert_array_equal(_batches(ds, 1)[0], 1.0)
    with pytest.raises(ValueError, match="has no array 'x'.*images"):
        image_data.npz_images(tmp_path / "f255.npz", key="x")
    with pytest.raises(ValueError, match="does not exist"):
        image_data.npz_images(tmp_path / "nope.npz")
    np.savez(tmp_path / "nan.npz", images=np.full((2, 4, 4, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        image_data.npz_images(tmp_path / "nan.npz")


# ---------------------------------------------------------------------- digits


def test_digits_split_is_fixed_disjoint_and_stratified():
    train = image_data.digits_split_indices("train")
    heldout = image_data.digits_split_indices("heldout")
    assert train.shape == (1497,) and heldout.shape == (300,)
    assert np.intersect1d(train, heldout).size == 0
    np.testing.assert_array_equal(np.union1d(train, heldout), np.arange(1797))
    target = load_digits().target
    np.testing.assert_array_equal(np.bincount(target[heldout]), np.full(10, 30))
    # Pinned: the split must never change silently (it defines the benchmark).
    np.testing.assert_array_equal(heldout[:10], [3, 7, 13, 19, 36, 43, 48, 53, 55, 60])
    assert int(heldout.sum()) == 259751
    np.testing.assert_array_equal(image_data.digits_split_indices("test"), heldout)


def test_digits_arrays_are_the_scaled_sklearn_images():
    bunch = load_digits()
    x, y = image_data.digits("train", labels=True)
    xh = image_data.digits("heldout")
    assert x.shape == (1497, 8, 8, 1) and xh.shape == (300, 8, 8, 1)
    assert x.dtype == np.float32 and y.dtype == np.int32
    train = image_data.digits_split_indices("train")
    # Values 0..16 map linearly onto [-1, 1]: v / 8 - 1.
    np.testing.assert_array_equal(x[..., 0], bunch.images[train] / 8.0 - 1.0)
    np.testing.assert_array_equal(y, bunch.target[train])
    assert x.min() == -1.0 and x.max() == 1.0
    assert image_data.digits("all").shape == (1797, 8, 8, 1)
    with pytest.raises(ValueError, match="Unknown digits split"):
        image_data.digits("validation")


def test_digits_dataset_epoch_is_a_permutation_of_the_split():
    x, y = image_data.digits("heldout", labels=True)
    ds = image_data.digits(
        "heldout", labels=True, as_dataset=True, batch_size=100, seed=0, repeat=False
    )
    parts = list(ds.as_numpy_iterator())
    assert [p[0].shape for p in parts] == [(100, 8, 8, 1)] * 3
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    assert not np.array_equal(images, x)  # shuffled
    order = np.lexsort(images.reshape(300, -1).T)
    reference_order = np.lexsort(x.reshape(300, -1).T)
    np.testing.assert_array_equal(images[order], x[reference_order])
    np.testing.assert_array_equal(labels[order], y[reference_order])


# ---------------------------------------------------------------- check_images


def test_check_images_accepts_model_ready_batches():
    x = np.random.uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32)
    image_data.check_images(x)
    image_data.check_images(keras.ops.convert_to_tensor(x))
    image_data.check_images(x * 1.0005)  # within the rounding tolerance
    image_data.check_images(image_data.digits("heldout", as_dataset=True, batch_size=8, seed=0))


def test_check_images_errors_say_what_was_found_and_how_to_fix():
    x255 = np.random.RandomState(0).randint(0, 256, (4, 8, 8, 3))
    x255[0, 0, 0, 0] = 255
    x255[0, 0, 0, 1] = 0
    with pytest.raises(ValueError, match=r"min 0, max 255.*x / 127\.5 - 1"):
        image_data.check_images(x255.astype(np.float32))
    with pytest.raises(ValueError, match=r"dtype uint8.*x / 127\.5 - 1"):
        image_data.check_images(x255.astype(np.uint8))
    with pytest.raises(ValueError, match=r"x \* 2 - 1"):
        image_data.check_images(np.full((2, 4, 4, 1), 1.5, np.float32))
    with pytest.raises(ValueError, match=r"`samples`.*rank 3.*\(4, 8, 8\)"):
        image_data.check_images(np.zeros((4, 8, 8), np.float32), name="samples")
    with pytest.raises(ValueError, match=r"channels-first.*np\.transpose"):
        image_data.check_images(np.zeros((4, 3, 32, 32), np.float32))
    bad = np.zeros((2, 4, 4, 1), np.float32)
    bad[0, 0, 0, 0] = np.nan
    bad[1, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="2 non-finite"):
        image_data.check_images(bad)
    with pytest.raises(ValueError, match="min -1.01"):
        image_data.check_images(np.full((2, 4, 4, 1), -1.01, np.float32))
    with pytest.raises(ValueError, match="empty batch"):
        image_data.check_images(np.zeros((0, 4, 4, 1), np.float32))
    dataset = tf.data.Dataset.from_tensor_slices(
        (np.full((4, 4, 4, 1), 255.0, np.float32), np.zeros(4))
    ).batch(2)
    with pytest.raises(ValueError, match="max 255"):
        image_data.check_images(dataset)
