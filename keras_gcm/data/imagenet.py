"""Class-conditional ImageNet-64 pipelines (Table 6a, appendix G.2).

Two sources of the 64x64 ImageNet images the paper's EDM2 fine-tuning uses:

* TensorFlow Datasets' `imagenet_resized/64x64` (1,281,167 training and
  50,000 validation images with their 1,000 class labels; box-resized),
  through `imagenet64(source="imagenet_resized")`;
* the Downsampled-ImageNet batch files of Chrabaszcz et al. (2017)
  (`train_data_batch_1.npz` ... `train_data_batch_10.npz`, `val_data.npz`;
  arrays `data` of flattened channel-first uint8 rows and 1-based `labels`),
  through `imagenet64_npz(paths)`. TFDS' `downsampled_imagenet/64x64` holds
  the same images *without* labels (unconditional only).

Every pipeline yields float32 channels-last `[-1, 1]` images and, with
`labels=True` (the default here), int32 labels in `[0, 1000)`, as
`keras.Model.fit` consumes them (`ConsistencyModel.fit(ds)` passes the labels
to the network). Class index `num_classes` is reserved for "no label".
"""

import os

import numpy as np

from keras_gcm.data.images import _array_pipeline
from keras_gcm.data.images import _finish_pipeline
from keras_gcm.data.images import _import_tf
from keras_gcm.data.images import _resolve_seed

IMAGENET_NUM_CLASSES = 1000
"""Number of ImageNet classes (labels are `0 ... 999`).

Example:

>>> keras_gcm.data.IMAGENET_NUM_CLASSES
1000
"""

_SOURCES = {
    "imagenet_resized": ("imagenet_resized/64x64", True, 1_281_167),
    "downsampled_imagenet": ("downsampled_imagenet/64x64", False, 1_281_149),
}


def imagenet64(
    split="train",
    batch_size=2048,
    source="imagenet_resized",
    labels=True,
    xflip=False,
    shuffle=True,
    seed=None,
    repeat=True,
    drop_remainder=True,
    data_dir=None,
    prefetch=True,
    cache=False,
):
    """ImageNet 64x64 from TensorFlow Datasets, `(images, labels)` batches.

    Args:
        split: a TFDS split: `"train"`, `"validation"` or a slice such as
            `"train[:1%]"`.
        batch_size: images per batch (EDM2 and ECT: 2048 in total).
        source: `"imagenet_resized"` (TFDS `imagenet_resized/64x64`, with
            labels) or `"downsampled_imagenet"` (TFDS
            `downsampled_imagenet/64x64`, images only: `labels=False`).
        labels: yield `(images, labels)` (int32 in `[0, 1000)`).
        xflip: random horizontal flips (EDM2 trains ImageNet without).
        shuffle: shuffle the examples.
        seed: int seed of the shuffle and flips (None: a random one).
        repeat: repeat forever (give `fit` a `steps_per_epoch`).
        drop_remainder: drop the last incomplete batch.
        data_dir: TFDS data directory; ImageNet cannot be downloaded by TFDS,
            it must be prepared there beforehand (see TFDS' instructions).
        prefetch: prefetch batches in the background.
        cache: keep the decoded images in memory (15.7 GB for train).

    Returns:
        A `tf.data.Dataset` of float32 `(batch_size, 64, 64, 3)` images in
        `[-1, 1]`, with int32 `(batch_size,)` labels when `labels=True`.

    Example:

    >>> ds = keras_gcm.data.imagenet64(batch_size=256, seed=0)  # doctest: +SKIP
    """
    tf = _import_tf()
    if source not in _SOURCES:
        raise ValueError(
            f"`source` must be one of {sorted(_SOURCES)}. Received: {source!r}"
        )
    name, has_labels, default_size = _SOURCES[source]
    if labels and not has_labels:
        raise ValueError(
            f"TFDS {name!r} has no class labels: use "
            "source='imagenet_resized' (or imagenet64_npz on the Downsampled-"
            "ImageNet batch files) for class-conditional training, or "
            "labels=False."
        )
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "imagenet64() needs tensorflow-datasets: `pip install keras-gcm[data]`."
        ) from error
    resolved_seed = _resolve_seed(seed)
    ds = tfds.load(
        name,
        split=split,
        data_dir=data_dir,
        shuffle_files=bool(shuffle),
        read_config=tfds.ReadConfig(shuffle_seed=resolved_seed),
    )
    def to_pair(ex):
        # TFDS' downsampled_imagenet declares images of unknown size; they are
        # 64x64, which this makes static (a no-op on 64x64 images).
        image = tf.image.resize_with_crop_or_pad(ex["image"], 64, 64)
        label = ex["label"] if has_labels else tf.zeros((), tf.int64)
        return image, label

    ds = ds.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    num_examples = int(ds.cardinality())
    if num_examples == 0:
        raise ValueError(f"ImageNet-64 split {split!r} of {name!r} is empty.")
    if num_examples < 0:
        num_examples = default_size
    return _finish_pipeline(
        ds,
        num_examples=num_examples,
        batch_size=batch_size,
        xflip=xflip,
        shuffle=shuffle,
        seed=resolved_seed,
        repeat=repeat,
        drop_remainder=drop_remainder,
        prefetch=prefetch,
        labels=labels,
        cache=cache,
        shuffle_buffer_size=min(num_examples, 50_000),
    )


def read_downsampled_imagenet_npz(paths, num_classes=IMAGENET_NUM_CLASSES):
    """Images and 0-based labels from Downsampled-ImageNet batch files.

    Each file holds `data`, `(N, 3 * 64 * 64)` uint8 rows in channel-first
    order, and `labels`, 1-based class ids (`1 ... 1000`).

    Args:
        paths: one path or a list of paths.
        num_classes: number of classes (labels are checked against it).

    Returns:
        `(images, labels)`: uint8 `(N, 64, 64, 3)` channels-last and int32
        `(N,)` labels in `[0, num_classes)`.

    Example:

    >>> x, y = keras_gcm.data.read_downsampled_imagenet_npz(
    ...     ["train_data_batch_1.npz"])  # doctest: +SKIP
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    images, labels = [], []
    for path in paths:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ValueError(f"Downsampled-ImageNet file {path!r} does not exist.")
        with np.load(path, allow_pickle=False) as archive:
            missing = {"data", "labels"} - set(archive.files)
            if missing:
                raise ValueError(
                    f"{path!r} is not a Downsampled-ImageNet batch file: it lacks "
                    f"{sorted(missing)} (it holds {sorted(archive.files)})."
                )
            data = np.asarray(archive["data"])
            label = np.asarray(archive["labels"]).astype(np.int64).ravel() - 1
        pixels = data.shape[1] // 3 if data.ndim == 2 else 0
        side = int(round(np.sqrt(pixels)))
        if data.ndim != 2 or side * side * 3 != data.shape[1]:
            raise ValueError(
                f"{path!r}: `data` must be (N, 3 * S * S) flattened channel-first "
                f"rows; got shape {data.shape}."
            )
        if label.shape[0] != data.shape[0]:
            raise ValueError(
                f"{path!r}: {data.shape[0]} images but {label.shape[0]} labels."
            )
        if label.size and (label.min() < 0 or label.max() >= num_classes):
            raise ValueError(
                f"{path!r}: labels must be 1-based class ids in [1, {num_classes}]; "
                f"found values in [{label.min() + 1}, {label.max() + 1}]. Pass the "
                "right `num_classes`."
            )
        images.append(data.reshape(-1, 3, side, side).transpose(0, 2, 3, 1))
        labels.append(label.astype(np.int32))
    return np.concatenate(images), np.concatenate(labels)


def imagenet64_npz(
    paths,
    batch_size=2048,
    labels=True,
    num_classes=IMAGENET_NUM_CLASSES,
    xflip=False,
    shuffle=True,
    seed=None,
    repeat=True,
    drop_remainder=True,
    prefetch=True,
):
    """Downsampled-ImageNet batch files as a `tf.data` pipeline of `(images, labels)`.

    Reads the files with `read_downsampled_imagenet_npz` (into memory: 15.7
    GB for the 64x64 train set) and yields float32 channels-last images in
    `[-1, 1]` and int32 labels in `[0, num_classes)`.

    Args:
        paths: one path or a list of `.npz` batch files.
        batch_size: images per batch.
        labels: yield `(images, labels)` (else images only).
        num_classes: number of classes.
        xflip: random horizontal flips.
        shuffle: shuffle the examples.
        seed: int seed (None: a random one).
        repeat: repeat forever.
        drop_remainder: drop the last incomplete batch.
        prefetch: prefetch batches in the background.

    Returns:
        A `tf.data.Dataset`.

    Example:

    >>> ds = keras_gcm.data.imagenet64_npz(
    ...     [f"train_data_batch_{i}.npz" for i in range(1, 11)])  # doctest: +SKIP
    """
    images, label_array = read_downsampled_imagenet_npz(paths, num_classes)
    images = images.astype(np.float32) / 127.5 - 1.0
    return _array_pipeline(
        images,
        label_array,
        batch_size=batch_size,
        xflip=xflip,
        shuffle=shuffle,
        seed=seed,
        repeat=repeat,
        drop_remainder=drop_remainder,
        prefetch=prefetch,
        labels=labels,
    )
