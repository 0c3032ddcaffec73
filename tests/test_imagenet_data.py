"""Tests for the class-conditional pipelines: ImageNet-64 (keras_gcm.data.imagenet) and
class-per-subfolder image folders (keras_gcm.data.image_folder(labels=True))."""

import keras
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


# ------------------------------------------- class-per-subfolder image folders

# Created out of sorted order: the labels follow the sorted names (ant, moth, zebra).
_CLASSES = {"zebra": 3, "ant": 2, "moth": 1}


def _pixel_value(label):
    return 30 + 80 * label  # 30, 110, 190: exact in [-1, 1] after x / 127.5 - 1


def _save_png(path, value, size=8):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)


def _class_folder(root):
    """3 class subfolders of uniform 8x8 PNGs whose value encodes the sorted class id."""
    names = sorted(_CLASSES)
    for name, count in _CLASSES.items():
        value = _pixel_value(names.index(name))
        for i in range(count):
            # One image of each class sits one level deeper: labels come from the class folder.
            sub = root / name / ("nested" if i == 0 else "")
            _save_png(sub / f"{name}_{i}.png", value)
    _save_png(root / ".hidden" / "ignored.png", 255)  # hidden folders are no class
    (root / "zebra" / "notes.txt").write_text("not an image")
    return root


def _labels_of_pixels(images):
    values = np.round((images[:, 0, 0, 0] + 1.0) * 127.5).astype(int)
    return (values - 30) // 80


def test_image_folder_labels_follow_sorted_class_subfolders(tmp_path):
    folder = _class_folder(tmp_path / "classes")
    assert keras_gcm.data.image_folder_classes(folder) == ["ant", "moth", "zebra"]
    ds = keras_gcm.data.image_folder(folder, image_size=8, batch_size=6, labels=True,
                                     shuffle=False, repeat=False, drop_remainder=False)
    assert ds.class_names == ["ant", "moth", "zebra"]
    (images, labels), = list(ds.as_numpy_iterator())
    assert images.shape == (6, 8, 8, 3) and images.dtype == np.float32
    assert labels.shape == (6,) and labels.dtype == np.int32
    assert -1.0 <= images.min() and images.max() <= 1.0
    np.testing.assert_array_equal(np.sort(labels), [0, 0, 1, 2, 2, 2])
    np.testing.assert_array_equal(_labels_of_pixels(images), labels)
    # The same labels Keras infers.
    reference = keras.utils.image_dataset_from_directory(
        folder, labels="inferred", label_mode="int", image_size=(8, 8), batch_size=None,
        shuffle=False, verbose=False)
    assert reference.class_names == ds.class_names
    pairs = [(int(y), int(_labels_of_pixels(np.asarray(x, np.float32)[None] / 127.5 - 1)[0]))
             for x, y in reference]
    assert len(pairs) == 6 and all(y == from_pixels for y, from_pixels in pairs)


def test_image_folder_labels_stay_paired_through_shuffle_and_flips(tmp_path):
    folder = _class_folder(tmp_path / "classes")
    ds = keras_gcm.data.image_folder(folder, image_size=(4, 6), batch_size=4, labels=True,
                                     seed=3, xflip=True)
    batches = list(ds.take(5).as_numpy_iterator())
    again = list(keras_gcm.data.image_folder(folder, image_size=(4, 6), batch_size=4,
                                             labels=True, seed=3, xflip=True)
                 .take(5).as_numpy_iterator())
    for (images, labels), (images_2, labels_2) in zip(batches, again):
        assert images.shape == (4, 4, 6, 3) and labels.dtype == np.int32
        np.testing.assert_array_equal(_labels_of_pixels(images), labels)
        np.testing.assert_array_equal(labels, labels_2)
        np.testing.assert_array_equal(images, images_2)
    assert set(np.concatenate([labels for _, labels in batches])) == {0, 1, 2}
    # Without labels the same folder yields images only.
    unlabelled = next(iter(keras_gcm.data.image_folder(folder, 8, 4, seed=0)))
    assert tuple(unlabelled.shape) == (4, 8, 8, 3)


def test_image_folder_labels_errors(tmp_path):
    flat = tmp_path / "flat"
    _save_png(flat / "a.png", 0)
    with pytest.raises(ValueError, match="no class subfolders.*labels=False"):
        keras_gcm.data.image_folder(flat, 8, 2, labels=True)
    mixed = _class_folder(tmp_path / "mixed")
    _save_png(mixed / "loose.PNG", 0)
    with pytest.raises(ValueError, match=r"1 image file\(s\).*'loose.PNG'.*next to its 3 class "
                                         r"subfolder\(s\).*Move them"):
        keras_gcm.data.image_folder(mixed, 8, 2, labels=True)
    single = tmp_path / "single"
    _save_png(single / "only" / "a.png", 0)
    with pytest.raises(ValueError, match="single class subfolder.*at least 2 classes"):
        keras_gcm.data.image_folder_classes(single)
    empty = tmp_path / "empty_classes"
    (empty / "a").mkdir(parents=True)
    (empty / "b").mkdir()
    with pytest.raises(ValueError, match="No image files"):
        keras_gcm.data.image_folder(empty, 8, 2, labels=True)
    with pytest.raises(ValueError, match="does not exist"):
        keras_gcm.data.image_folder_classes(tmp_path / "missing")


def _recipe():
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "recipes"))
    import imagenet64

    return imagenet64


def test_imagenet64_recipe_image_folder_must_match_the_networks_classes(tmp_path):
    recipe = _recipe()
    folder = _class_folder(tmp_path / "classes")
    with pytest.raises(SystemExit):
        recipe.parse_args(["--image-folder", str(folder), "--npz-files", "a.npz"])
    with pytest.raises(SystemExit):
        recipe.parse_args(["--image-folder", str(tmp_path / "missing")])
    with pytest.raises(ValueError, match="3 class subfolders.*label_dim=1000"):
        recipe.main(["--image-folder", str(folder), "--output", str(tmp_path / "run")])


# Two compiled train steps of a 64x64 EDM2UNet (see tests/test_imagenet64.py): one backend.
@pytest.mark.backends("jax")
def test_imagenet64_recipe_smoke_trains_on_an_image_folder(tmp_path):
    recipe = _recipe()
    folder = _class_folder(tmp_path / "classes")
    metrics = recipe.main(["--smoke", "--image-folder", str(folder),
                           "--output", str(tmp_path / "run")])
    assert metrics["steps"] == 2 and np.isfinite(metrics["final_loss"])
