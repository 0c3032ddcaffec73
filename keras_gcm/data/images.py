"""Image data pipelines: CIFAR-10, image folders, `.npz` arrays, scikit-learn digits.

Every pipeline yields float32, channels-last images in `[-1, 1]` (the data range
the consistency model's interpolant assumes, `sigma_d = 0.5`), optionally with
labels, as a `tf.data.Dataset` that `keras.Model.fit` consumes on every Keras
backend (Keras 3 reads `tf.data` under JAX and PyTorch too). The digits data
set is small enough to also come as plain numpy arrays.

The random parts (shuffling, horizontal flips) are deterministic given `seed`:
two pipelines built with the same arguments yield the same batches. Flips are
drawn per batch with `tf.random.stateless_uniform` keyed on `(seed, batch
index)`, so they do not depend on TensorFlow's global random state; the
shuffle is `tf.data`'s, whose order also depends on TensorFlow's global seed
when one is set (`keras.utils.set_random_seed` sets it), so fix that too when
a run must be reproducible.

TensorFlow, `tensorflow_datasets` and scikit-learn are imported lazily, only by
the functions that need them (they are the `data` extra of the package).
"""

import os

import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

# Digits: 30 images of each of the 10 classes are held out (300 images), the
# other 1,497 are the training split. The split is drawn once with numpy's
# legacy `RandomState(0)` (whose stream numpy guarantees stable across versions).
DIGITS_NUM_EXAMPLES = 1797
DIGITS_HELDOUT_PER_CLASS = 30
DIGITS_NUM_HELDOUT = 300
"""Number of held-out digits (30 per class), the reference set of the digits metrics.

Example:

>>> len(keras_gcm.data.digits("heldout")) == keras_gcm.data.DIGITS_NUM_HELDOUT
True
"""
DIGITS_NUM_TRAIN = 1497
"""Number of digits in the fixed training split (1,797 - 300).

Example:

>>> len(keras_gcm.data.digits("train")) == keras_gcm.data.DIGITS_NUM_TRAIN
True
"""
DIGITS_SPLIT_SEED = 0


def _to_numpy(x):
    """Converts a numpy array, a backend tensor or a `tf.Tensor` to numpy."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor
        return x.detach().cpu().numpy()
    if hasattr(x, "numpy"):  # an eager tf.Tensor
        return x.numpy()
    return np.asarray(x)


def check_images(x, name="images", tolerance=1e-3):
    """Checks that `x` is a batch of model-ready images, else raises a clear error.

    Model-ready images are a rank-4, channels-last `(N, H, W, C)` batch of finite
    floating-point values in `[-1, 1]` (up to `tolerance`). Call this before
    training starts: a `[0, 255]` or channels-first batch trains without error
    but to nothing useful.

    Args:
        x: a numpy array, a tensor of any backend, or a `tf.data.Dataset` (its
            first element is checked; for `(images, labels)` elements, the images).
        name: what to call `x` in the error message.
        tolerance: how far outside `[-1, 1]` values may lie (rounding slack).

    Returns:
        None. Raises `ValueError` describing what was found (shape, dtype,
        min / max) and how to fix it.

    Example:

    >>> import numpy as np
    >>> keras_gcm.data.check_images(np.zeros((2, 8, 8, 1), "float32"))
    >>> x = np.full((2, 8, 8, 3), 255, "uint8")
    >>> keras_gcm.data.check_images(x.astype("float32"))  # doctest: +SKIP
    ValueError: `images` must lie in [-1, 1] ... scale [0, 255] images with x / 127.5 - 1
    """
    if hasattr(x, "element_spec") and hasattr(x, "take"):  # a tf.data.Dataset
        element = next(iter(x.take(1)), None)
        if element is None:
            raise ValueError(f"`{name}` is an empty dataset.")
        if isinstance(element, (tuple, list)):
            element = element[0]
        x = element
    x = _to_numpy(x)
    shape = tuple(x.shape)
    if x.ndim != 4:
        hint = ""
        if x.ndim == 3:
            hint = (
                " For one image use x[None]; for a grayscale batch (N, H, W) "
                "add a channel axis with x[..., None]."
            )
        raise ValueError(
            f"`{name}` must be a rank-4 channels-last batch (N, H, W, C); got "
            f"rank {x.ndim} with shape {shape}.{hint}"
        )
    if shape[0] == 0:
        raise ValueError(f"`{name}` is an empty batch: shape {shape}.")
    if shape[1] in (1, 3) and shape[3] not in (1, 3, 4):
        raise ValueError(
            f"`{name}` looks channels-first (shape {shape}); keras_gcm expects "
            "channels-last (N, H, W, C): transpose with "
            "np.transpose(x, (0, 2, 3, 1))."
        )
    if not np.issubdtype(x.dtype, np.floating):
        hint = ""
        if x.dtype == np.uint8 or np.issubdtype(x.dtype, np.integer):
            hint = " Scale [0, 255] integer images with x / 127.5 - 1."
        raise ValueError(
            f"`{name}` must be floating-point in [-1, 1]; got dtype {x.dtype} "
            f"with shape {shape}.{hint}"
        )
    finite = np.isfinite(x)
    if not finite.all():
        raise ValueError(
            f"`{name}` has {int(x.size - finite.sum())} non-finite values "
            f"(NaN or inf) out of {x.size}; shape {shape}."
        )
    low, high = float(x.min()), float(x.max())
    if low < -1.0 - tolerance or high > 1.0 + tolerance:
        if low >= 0.0 and high > 2.0:
            hint = "they look like [0, 255] images: scale them with x / 127.5 - 1."
        elif low >= 0.0:
            hint = "they look like [0, 1]-based images: scale them with x * 2 - 1."
        else:
            hint = (
                "rescale them to [-1, 1], e.g. 2 * (x - lo) / (hi - lo) - 1 "
                "with your data's declared range (lo, hi)."
            )
        raise ValueError(
            f"`{name}` must lie in [-1, 1]; found min {low:.6g}, max {high:.6g} "
            f"(shape {shape}, dtype {x.dtype}): {hint}"
        )


def _import_tf():
    try:
        import tensorflow as tf
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "keras_gcm's image pipelines need TensorFlow (for tf.data): "
            "`pip install keras-gcm[data]`."
        ) from error
    return tf


def _resolve_seed(seed):
    if seed is None:
        return int(np.random.default_rng().integers(0, 2**31 - 1))
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"`seed` must be an int or None; got {seed!r}.")
    return int(seed)


def _check_batch_size(batch_size):
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int; got {batch_size!r}.")
    return int(batch_size)


def _finish_pipeline(
    ds,
    *,
    num_examples,
    batch_size,
    xflip,
    shuffle,
    seed,
    repeat,
    drop_remainder,
    prefetch,
    labels,
    decode_fn=None,
    cache=False,
    shuffle_buffer_size=None,
    integer_input=True,
):
    """Shared tail of every pipeline.

    `ds` yields `(image, label)` pairs, the image either an integer `[0, 255]`
    tensor (`integer_input=True`) or a float one already in `[-1, 1]`.
    `decode_fn`, when given, maps each raw element to such a pair (it runs
    before the cache, or after the shuffle when there is no cache, so that a
    folder of files is shuffled as cheap file names).
    """
    tf = _import_tf()
    batch_size = _check_batch_size(batch_size)
    seed = _resolve_seed(seed)
    autotune = tf.data.AUTOTUNE
    if decode_fn is not None and cache:
        ds = ds.map(decode_fn, num_parallel_calls=autotune, deterministic=True)
        decode_fn = None
    if cache:
        ds = ds.cache()
    if shuffle:
        buffer = shuffle_buffer_size or max(1, min(int(num_examples), 50_000))
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if decode_fn is not None:
        ds = ds.map(decode_fn, num_parallel_calls=autotune, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    flip_seed_base = tf.constant(seed, tf.int64)

    def to_model_input(batch_index, element):
        images, label = element
        if integer_input:
            images = tf.cast(images, tf.float32) / 127.5 - 1.0
        else:
            images = tf.cast(images, tf.float32)
        if xflip:
            flip = tf.random.stateless_uniform(
                [tf.shape(images)[0]],
                seed=tf.stack([flip_seed_base, tf.cast(batch_index, tf.int64)]),
            )
            images = tf.where(
                (flip < 0.5)[:, None, None, None], tf.reverse(images, axis=[2]), images
            )
        if labels:
            return images, tf.cast(label, tf.int32)
        return images

    ds = ds.enumerate().map(
        to_model_input, num_parallel_calls=autotune, deterministic=True
    )
    if prefetch:
        ds = ds.prefetch(autotune)
    return ds


def cifar10(
    split="train",
    batch_size=512,
    xflip=True,
    shuffle=True,
    seed=None,
    repeat=True,
    drop_remainder=True,
    data_dir=None,
    prefetch=True,
    labels=False,
    cache=True,
):
    """CIFAR-10 as a `tf.data` pipeline of `[-1, 1]` float32 images.

    Loads `tfds.load("cifar10", split=split, data_dir=data_dir)` (TensorFlow
    Datasets downloads and prepares it on first use unless `data_dir` already
    holds it), scales the uint8 pixels with `x / 127.5 - 1`, and applies the
    random horizontal flip of the paper's CIFAR-10 setup (appendix G.1, "xflip").

    Args:
        split: a TFDS split string: `"train"` (50,000 images), `"test"`
            (10,000), or a slice such as `"train[:10%]"`.
        batch_size: images per batch (the paper uses 512; 1024 for its headline).
        xflip: flip each image left-right with probability 1/2.
        shuffle: shuffle the examples (with a fresh order every epoch).
        seed: int seed for the shuffle and the flips (None: a random one).
            The same seed gives the same batches.
        repeat: repeat forever (then give `fit` a `steps_per_epoch`).
        drop_remainder: drop the last incomplete batch (static batch shapes).
        data_dir: TFDS data directory (None: TFDS's default, `~/tensorflow_datasets`).
        prefetch: prefetch batches in the background.
        labels: yield `(images, labels)` (int32 class ids) instead of `images`.
        cache: keep the decoded uint8 images in memory (150 MB for the train
            split) so later epochs skip the decoding.

    Returns:
        A `tf.data.Dataset` of float32 `(batch_size, 32, 32, 3)` images in
        `[-1, 1]` (or `(images, labels)` pairs).

    Example:

    >>> ds = keras_gcm.data.cifar10(batch_size=512, seed=0)  # doctest: +SKIP
    >>> model.fit(ds, steps_per_epoch=1000, epochs=400)  # doctest: +SKIP
    """
    tf = _import_tf()
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "cifar10() needs tensorflow-datasets: `pip install keras-gcm[data]`."
        ) from error
    resolved_seed = _resolve_seed(seed)
    ds = tfds.load(
        "cifar10",
        split=split,
        data_dir=data_dir,
        shuffle_files=bool(shuffle),
        read_config=tfds.ReadConfig(shuffle_seed=resolved_seed),
    )
    ds = ds.map(
        lambda example: (example["image"], example["label"]),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    num_examples = int(ds.cardinality())
    if num_examples == 0:
        raise ValueError(f"CIFAR-10 split {split!r} is empty.")
    if num_examples < 0:  # unknown cardinality
        num_examples = 50_000
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
    )


def _normalize_image_size(image_size):
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        image_size = (int(image_size), int(image_size))
    try:
        height, width = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(
            f"`image_size` must be an int or a (height, width) pair; got {image_size!r}."
        ) from None
    if height < 1 or width < 1:
        raise ValueError(f"`image_size` must be positive; got {image_size!r}.")
    return height, width


def list_image_files(path):
    """Sorted list of the PNG / JPEG files under `path`, searched recursively.

    Args:
        path: a directory.

    Returns:
        A sorted list of file paths whose extension is `.png`, `.jpg` or `.jpeg`
        (any case).

    Example:

    >>> files = keras_gcm.data.list_image_files("my_images/")  # doctest: +SKIP
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ValueError(f"Image folder {path!r} does not exist or is not a directory.")
    files = []
    for root, _, names in os.walk(path):
        for file_name in names:
            if file_name.lower().endswith(IMAGE_EXTENSIONS):
                files.append(os.path.join(root, file_name))
    return sorted(files)


def image_folder_classes(path):
    """The class names of a folder holding one subfolder per class, sorted.

    The classes are the subfolders of `path` in sorted order, hidden ones
    (names starting with `.`) left out: the class names and label order that
    `keras.utils.image_dataset_from_directory(path, labels="inferred")`
    infers, so class `i` is `image_folder_classes(path)[i]`. (For ImageNet
    folders named by WordNet id, `n01440764 ...`, this sorted order is the
    standard order of the 1,000 class ids.)

    Args:
        path: the folder.

    Returns:
        A list of at least two subfolder names (str), sorted. Raises
        `ValueError` when `path` is not a directory, has no subfolders, has
        only one, or holds image files next to its subfolders (they would
        have no class).

    Example:

    >>> import os
    >>> for name in ("dog", "cat"):
    ...     os.makedirs(os.path.join("pets", name))
    >>> keras_gcm.data.image_folder_classes("pets")
    ['cat', 'dog']
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ValueError(f"Image folder {path!r} does not exist or is not a directory.")
    names = sorted(os.listdir(path))
    subfolders = [name for name in names
                  if not name.startswith(".") and os.path.isdir(os.path.join(path, name))]
    loose = [name for name in names if name.lower().endswith(IMAGE_EXTENSIONS)
             and os.path.isfile(os.path.join(path, name))]
    if not subfolders:
        raise ValueError(
            f"Image folder {path!r} has no class subfolders: labels are inferred from one "
            "subfolder per class (path/<class_name>/*.png). Sort the images into class "
            "subfolders, or read the folder without labels (`image_folder(..., labels=False)`)."
        )
    if loose:
        raise ValueError(
            f"Image folder {path!r} holds {len(loose)} image file(s) (e.g. {loose[0]!r}) "
            f"next to its {len(subfolders)} class subfolder(s): class labels need every image "
            "inside one subfolder per class. Move them into a class subfolder, or read the "
            "folder without labels (`image_folder(..., labels=False)`)."
        )
    if len(subfolders) < 2:
        raise ValueError(
            f"Image folder {path!r} has a single class subfolder ({subfolders[0]!r}): "
            "class-conditional training needs at least 2 classes. Add a subfolder per "
            "class, or read the images without labels (`image_folder(..., labels=False)`)."
        )
    return subfolders


def image_folder(
    path,
    image_size,
    batch_size,
    channels=3,
    xflip=False,
    shuffle=True,
    seed=None,
    repeat=True,
    drop_remainder=True,
    prefetch=True,
    cache=False,
    labels=False,
):
    """A folder of PNG / JPEG images as a `tf.data` pipeline of `[-1, 1]` images.

    Files are found recursively (extensions `.png`, `.jpg`, `.jpeg`, any case).
    Each image is resized so that its shorter side equals the target size
    (bilinear with antialiasing) and then center-cropped to `image_size`, so
    the aspect ratio is kept; an image already of that size is left unchanged.
    Pixels are scaled with `x / 127.5 - 1`. Files are read and decoded as
    the batches are drawn (the shuffle permutes file names), so a folder
    larger than memory streams.

    With `labels=True` the folder must hold one subfolder per class (see
    `image_folder_classes`): an image's label is the index of its class
    subfolder in sorted order (the labels `keras.utils.image_dataset_from_directory`
    infers), whatever the depth of the image inside it.

    Args:
        path: the folder.
        image_size: int or `(height, width)` of the output images.
        batch_size: images per batch.
        channels: 3 (RGB; grayscale files are expanded) or 1 (grayscale).
        xflip: flip each image left-right with probability 1/2.
        shuffle: shuffle the files (a fresh order every epoch).
        seed: int seed for the shuffle and the flips (None: a random one).
        repeat: repeat forever.
        drop_remainder: drop the last incomplete batch.
        prefetch: prefetch batches in the background.
        cache: keep the decoded, resized images in memory after the first epoch.
        labels: yield `(images, labels)`, int32 class ids in
            `[0, number of class subfolders)`, instead of `images`.

    Returns:
        A `tf.data.Dataset` of float32 `(batch_size, height, width, channels)`
        images in `[-1, 1]` (or `(images, labels)` pairs). With `labels=True`
        its `class_names` attribute lists the class of each label, as
        `image_folder_classes` returns them.

    Example:

    >>> import os
    >>> for label, name in enumerate(["cat", "dog"]):
    ...     os.makedirs(os.path.join("pets", name))
    ...     for i in range(2):
    ...         pixels = np.full((8, 8, 3), 255 * label, "uint8")
    ...         keras.utils.save_img(os.path.join("pets", name, f"{i}.png"), pixels, scale=False)
    >>> ds = keras_gcm.data.image_folder("pets", image_size=8, batch_size=4, labels=True, seed=0)
    >>> ds.class_names
    ['cat', 'dog']
    >>> images, labels = next(iter(ds.as_numpy_iterator()))
    >>> images.shape, labels.dtype
    ((4, 8, 8, 3), dtype('int32'))
    >>> bool(np.all(images.max(axis=(1, 2, 3)) == 2.0 * labels - 1.0))  # dog is white
    True
    """
    tf = _import_tf()
    height, width = _normalize_image_size(image_size)
    if channels not in (1, 3):
        raise ValueError(f"`channels` must be 1 or 3; got {channels!r}.")
    class_names = None
    if labels:
        class_names = image_folder_classes(path)
        files, label_ids = [], []
        for label, name in enumerate(class_names):
            class_files = list_image_files(os.path.join(os.fspath(path), name))
            files.extend(class_files)
            label_ids.extend([label] * len(class_files))
    else:
        files = list_image_files(path)
        label_ids = [0] * len(files)
    if not files:
        raise ValueError(
            f"No image files ({', '.join(IMAGE_EXTENSIONS)}) found under {os.fspath(path)!r} "
            "(searched recursively)."
        )

    def decode(file_path, label):
        image = tf.io.decode_image(
            tf.io.read_file(file_path), channels=channels, expand_animations=False
        )
        shape = tf.shape(image)
        in_height = tf.cast(shape[0], tf.float32)
        in_width = tf.cast(shape[1], tf.float32)
        scale = tf.maximum(height / in_height, width / in_width)
        new_height = tf.maximum(height, tf.cast(tf.math.ceil(in_height * scale), tf.int32))
        new_width = tf.maximum(width, tf.cast(tf.math.ceil(in_width * scale), tf.int32))
        same_size = tf.logical_and(tf.equal(shape[0], height), tf.equal(shape[1], width))

        def resize_and_crop():
            resized = tf.image.resize(
                tf.cast(image, tf.float32),
                tf.stack([new_height, new_width]),
                method="bilinear",
                antialias=True,
            )
            top = (new_height - height) // 2
            left = (new_width - width) // 2
            cropped = resized[top : top + height, left : left + width, :]
            return tf.clip_by_value(tf.round(cropped), 0.0, 255.0)

        out = tf.cond(same_size, lambda: tf.cast(image, tf.float32), resize_and_crop)
        out = tf.ensure_shape(out, [height, width, channels])
        return out, label

    ds = tf.data.Dataset.from_tensor_slices((files, np.asarray(label_ids, np.int32)))
    ds = _finish_pipeline(
        ds,
        num_examples=len(files),
        batch_size=batch_size,
        xflip=xflip,
        shuffle=shuffle,
        seed=seed,
        repeat=repeat,
        drop_remainder=drop_remainder,
        prefetch=prefetch,
        labels=bool(labels),
        decode_fn=decode,
        cache=cache,
        shuffle_buffer_size=len(files),
        integer_input=True,
    )
    if class_names is not None:
        ds.class_names = class_names
    return ds


def _scale_array_images(images, value_range, name):
    """Validates a user array and maps its declared `value_range` to `[-1, 1]`."""
    if images.ndim != 4:
        raise ValueError(
            f"{name} must be a rank-4 channels-last array (N, H, W, C); got shape "
            f"{images.shape}. For grayscale (N, H, W) arrays add a channel axis "
            "with x[..., None]."
        )
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty: shape {images.shape}.")
    if images.dtype == np.bool_ or not (
        np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)
    ):
        raise ValueError(f"{name} must be an integer or float array; got {images.dtype}.")
    if value_range is None:
        value_range = (0, 255) if np.issubdtype(images.dtype, np.integer) else (-1, 1)
    low, high = (float(v) for v in value_range)
    if not high > low:
        raise ValueError(f"`value_range` must be (low, high) with low < high; got {value_range!r}.")
    if np.issubdtype(images.dtype, np.floating) and not np.isfinite(images).all():
        raise ValueError(f"{name} contains NaN or inf values.")
    found_low, found_high = float(images.min()), float(images.max())
    if found_low < low or found_high > high:
        raise ValueError(
            f"{name} has values in [{found_low:.6g}, {found_high:.6g}], outside the "
            f"declared range [{low:g}, {high:g}] (dtype {images.dtype}); pass the "
            "right `value_range` (uint8 / integer arrays default to (0, 255), float "
            "arrays to (-1, 1))."
        )
    scaled = (images.astype(np.float64) - low) * (2.0 / (high - low)) - 1.0
    return scaled.astype(np.float32)


def _array_pipeline(images, labels_array, *, batch_size, xflip, shuffle, seed,
                    repeat, drop_remainder, prefetch, labels):
    tf = _import_tf()
    if labels_array is None:
        labels_array = np.zeros((images.shape[0],), np.int32)
    ds = tf.data.Dataset.from_tensor_slices((images, labels_array.astype(np.int32)))
    return _finish_pipeline(
        ds,
        num_examples=images.shape[0],
        batch_size=batch_size,
        xflip=xflip,
        shuffle=shuffle,
        seed=seed,
        repeat=repeat,
        drop_remainder=drop_remainder,
        prefetch=prefetch,
        labels=labels,
        shuffle_buffer_size=images.shape[0],
        integer_input=False,
    )


def npz_images(
    path,
    key="images",
    batch_size=512,
    value_range=None,
    labels=False,
    label_key="labels",
    xflip=False,
    shuffle=True,
    seed=None,
    repeat=True,
    drop_remainder=True,
    prefetch=True,
):
    """A user's image array from a `.npz` (or `.npy`) file as a `tf.data` pipeline.

    The array must be `(N, H, W, C)`, channels-last. Its values are mapped
    linearly from `value_range` to `[-1, 1]`; the default range is `(0, 255)`
    for integer arrays (e.g. uint8) and `(-1, 1)` for float arrays (used as
    is). Values outside the declared range raise an error rather than being
    clipped silently.

    Args:
        path: a `.npz` file (read the array under `key`) or a `.npy` file.
        key: the array's name inside the `.npz`.
        batch_size: images per batch.
        value_range: `(low, high)` of the stored values, or None for the
            dtype's default (see above).
        labels: yield `(images, labels)` with the int labels stored under
            `label_key`.
        label_key: the labels' name inside the `.npz`.
        xflip: flip each image left-right with probability 1/2.
        shuffle: shuffle the images (a fresh order every epoch).
        seed: int seed for the shuffle and the flips (None: a random one).
        repeat: repeat forever.
        drop_remainder: drop the last incomplete batch.
        prefetch: prefetch batches in the background.

    Returns:
        A `tf.data.Dataset` of float32 `(batch_size, H, W, C)` images in `[-1, 1]`.

    Example:

    >>> np.savez("faces.npz", images=uint8_images)  # doctest: +SKIP
    >>> ds = keras_gcm.data.npz_images("faces.npz", batch_size=256, seed=0)  # doctest: +SKIP
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"File {path!r} does not exist.")
    label_array = None
    if path.endswith(".npy"):
        images = np.load(path, allow_pickle=False)
        if labels:
            raise ValueError("`labels=True` needs a .npz file holding the labels.")
    else:
        with np.load(path, allow_pickle=False) as archive:
            if key not in archive.files:
                raise ValueError(
                    f"{path!r} has no array {key!r}; it holds {sorted(archive.files)}. "
                    "Pass the right `key`."
                )
            images = archive[key]
            if labels:
                if label_key not in archive.files:
                    raise ValueError(
                        f"{path!r} has no label array {label_key!r}; it holds "
                        f"{sorted(archive.files)}."
                    )
                label_array = np.asarray(archive[label_key])
    images = _scale_array_images(images, value_range, f"Array {key!r} in {path!r}")
    if label_array is not None and label_array.shape != (images.shape[0],):
        raise ValueError(
            f"Labels {label_key!r} must have shape ({images.shape[0]},); got "
            f"{label_array.shape}."
        )
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


_DIGITS_CACHE = {}


def _load_digits_arrays():
    if "arrays" not in _DIGITS_CACHE:
        try:
            from sklearn.datasets import load_digits
        except ImportError as error:  # pragma: no cover - depends on the install
            raise ImportError(
                "digits() needs scikit-learn: `pip install keras-gcm[data]`."
            ) from error
        bunch = load_digits()
        # Values 0..16 -> [-1, 1]; exact in float32.
        images = (bunch.images / 8.0 - 1.0).astype(np.float32)[..., None]
        targets = bunch.target.astype(np.int32)
        images.setflags(write=False)
        targets.setflags(write=False)
        _DIGITS_CACHE["arrays"] = (images, targets)
    return _DIGITS_CACHE["arrays"]


def digits_split_indices(split="train"):
    """Indices into scikit-learn's `load_digits()` of the fixed digits splits.

    The held-out split is 30 images of each digit class (300 images), drawn once
    with `numpy.random.RandomState(0)` (a permutation per class, in class
    order, the first 30 held out); the train split is the other 1,497 images.
    Both are returned sorted.

    Args:
        split: `"train"` (1,497), `"heldout"` (300; alias `"test"`) or `"all"`
            (1,797).

    Returns:
        A sorted int64 numpy array of indices.

    Example:

    >>> keras_gcm.data.digits_split_indices("heldout").shape
    (300,)
    """
    split = _digits_split_name(split)
    _, targets = _load_digits_arrays()
    if split == "all":
        return np.arange(targets.shape[0], dtype=np.int64)
    rng = np.random.RandomState(DIGITS_SPLIT_SEED)
    heldout = []
    for digit in range(10):
        members = np.flatnonzero(targets == digit)
        heldout.append(members[rng.permutation(members.shape[0])[:DIGITS_HELDOUT_PER_CLASS]])
    heldout = np.sort(np.concatenate(heldout)).astype(np.int64)
    if split == "heldout":
        return heldout
    mask = np.ones(targets.shape[0], bool)
    mask[heldout] = False
    return np.flatnonzero(mask).astype(np.int64)


def _digits_split_name(split):
    names = {"train": "train", "heldout": "heldout", "test": "heldout", "all": "all"}
    if split not in names:
        raise ValueError(
            f"Unknown digits split {split!r}; expected 'train', 'heldout' (or 'test') "
            "or 'all'."
        )
    return names[split]


def digits(
    split="train",
    labels=False,
    as_dataset=False,
    batch_size=128,
    xflip=False,
    shuffle=True,
    seed=None,
    repeat=True,
    drop_remainder=True,
    prefetch=True,
):
    """scikit-learn's 8x8 digits as `[-1, 1]` float32 images, with a fixed split.

    `load_digits()` holds 1,797 grayscale 8x8 images with integer values 0..16;
    they are scaled with `x / 8 - 1`. The split is fixed (see
    `digits_split_indices`): 1,497 training images and 300 held-out images (30
    per class), the latter being the reference set of the digits quality metrics.

    Args:
        split: `"train"` (1,497), `"heldout"` (300; alias `"test"`) or `"all"`.
        labels: also return the int32 class labels.
        as_dataset: return a `tf.data` pipeline (with the options below)
            instead of numpy arrays.
        batch_size, xflip, shuffle, seed, repeat, drop_remainder, prefetch:
            pipeline options (only with `as_dataset=True`); flips are off by
            default since digits are not mirror-symmetric.

    Returns:
        A float32 `(N, 8, 8, 1)` numpy array (or `(images, labels)`), in the
        split's fixed order; with `as_dataset=True`, a `tf.data.Dataset`.

    Example:

    >>> x = keras_gcm.data.digits("train")
    >>> x.shape, float(x.min()), float(x.max())
    ((1497, 8, 8, 1), -1.0, 1.0)
    """
    indices = digits_split_indices(split)
    images, targets = _load_digits_arrays()
    x, y = images[indices], targets[indices]
    if not as_dataset:
        return (x, y) if labels else x
    return _array_pipeline(
        x,
        y,
        batch_size=batch_size,
        xflip=xflip,
        shuffle=shuffle,
        seed=seed,
        repeat=repeat,
        drop_remainder=drop_remainder,
        prefetch=prefetch,
        labels=labels,
    )
