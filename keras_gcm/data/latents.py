"""VAE latents on disk: encode a data set once, then train on posterior samples.

The latent-space runs (Table 6b) encode every image once with the SD VAE
and store the posterior's mean and standard deviation (as MeanFlow does);
each training step then draws `scaling_factor * (mean + std * n)`,
`n ~ N(0, I)`, so the model sees fresh posterior samples every epoch.

On disk a latent folder holds `metadata.json` (the latent shape, the
scaling factor, the number of examples and classes) and shards
`shard-00000.npz`, ... with `mean`, `std` (float16 by default) and `labels`
(int32, -1 when the source has none). `python -m
keras_gcm.data.encode_latents` writes one from an image folder or a tfds
data set; `latents(path, ...)` reads it as a `tf.data` pipeline of
`(latents, labels)` batches.
"""

import glob
import json
import os

import numpy as np

METADATA = "metadata.json"


class LatentShardWriter:
    """Writes `(mean, std, labels)` batches into numbered shards of a latent folder.

    Args:
        directory: output folder (created).
        scaling_factor: float, the VAE's latent scale (0.18215 for SD).
        shard_size: examples per shard.
        dtype: storage dtype of mean and std ("float16" or "float32").
        num_classes: int or None, stored in the metadata.

    Example:

    >>> import tempfile
    >>> writer = keras_gcm.data.latents.LatentShardWriter(tempfile.mkdtemp(), 0.18215)
    >>> writer.add(np.zeros((2, 4, 4, 4)), np.ones((2, 4, 4, 4)), np.array([0, 1]))
    >>> _ = writer.close()
    """

    def __init__(self, directory, scaling_factor, shard_size=10_000, dtype="float16",
                 num_classes=None, source=None):
        self.directory = os.fspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        if glob.glob(os.path.join(self.directory, "shard-*.npz")):
            raise FileExistsError(
                f"{self.directory!r} already holds latent shards: choose an empty folder "
                "(or delete the old shards) so that two encodings are not mixed.")
        self.scaling_factor = float(scaling_factor)
        self.shard_size = int(shard_size)
        self.dtype = dtype
        self.num_classes = num_classes
        self.source = source
        self._buffer = []
        self._shard = 0
        self.count = 0
        self.shape = None

    def add(self, mean, std, labels=None):
        mean, std = np.asarray(mean, "float32"), np.asarray(std, "float32")
        if mean.shape != std.shape or mean.ndim != 4:
            raise ValueError(f"mean and std must be equal (B, h, w, c) arrays; got "
                             f"{mean.shape} and {std.shape}.")
        if self.shape is None:
            self.shape = tuple(int(d) for d in mean.shape[1:])
        labels = (np.full(len(mean), -1, "int32") if labels is None
                  else np.asarray(labels, "int32").reshape(-1))
        self._buffer.append((mean, std, labels))
        while sum(len(b[0]) for b in self._buffer) >= self.shard_size:
            self._flush(self.shard_size)

    def _flush(self, n):
        mean = np.concatenate([b[0] for b in self._buffer])
        std = np.concatenate([b[1] for b in self._buffer])
        labels = np.concatenate([b[2] for b in self._buffer])
        path = os.path.join(self.directory, f"shard-{self._shard:05d}.npz")
        np.savez(path, mean=mean[:n].astype(self.dtype), std=std[:n].astype(self.dtype),
                 labels=labels[:n])
        self._shard += 1
        self.count += min(n, len(mean))
        self._buffer = [(mean[n:], std[n:], labels[n:])] if len(mean) > n else []

    def close(self):
        """Writes the last shard and `metadata.json`; returns the metadata."""
        remaining = sum(len(b[0]) for b in self._buffer)
        if remaining:
            self._flush(remaining)
        if self.shape is None:
            raise ValueError("No latents were written (the source was empty).")
        metadata = {"shape": list(self.shape), "scaling_factor": self.scaling_factor,
                    "num_examples": self.count, "num_shards": self._shard,
                    "num_classes": self.num_classes, "dtype": self.dtype,
                    "source": self.source}
        with open(os.path.join(self.directory, METADATA), "w") as f:
            json.dump(metadata, f, indent=2)
        return metadata


def encode_batches(vae, batches, directory, shard_size=10_000, dtype="float16",
                   num_classes=None, source=None, verbose=1):
    """Encodes `(images, labels)` batches with `vae` into a latent folder.

    Args:
        vae: a `keras_gcm.networks.AutoencoderKL` (or any object with
            `encode(images) -> (mean, std)` and `scaling_factor`).
        batches: iterable of `(images, labels)` (images `(B, H, W, 3)` in
            [-1, 1]; labels `(B,)` ints or None).
        directory: output folder.
        shard_size, dtype, num_classes, source: see `LatentShardWriter`.
        verbose: 1 for a progress bar.

    Returns:
        The metadata dict.

    Example:

    >>> batches = [(np.zeros((2, 16, 16, 3), "float32"), np.array([0, 1]))]
    >>> keras_gcm.data.latents.encode_batches(vae, batches, "latents/")  # doctest: +SKIP
    """
    import keras

    writer = LatentShardWriter(directory, vae.scaling_factor, shard_size, dtype,
                               num_classes, source)
    progbar = keras.utils.Progbar(None, unit_name="image") if verbose else None
    for images, labels in batches:
        mean, std = vae.encode(keras.ops.convert_to_tensor(np.asarray(images, "float32")))
        writer.add(keras.ops.convert_to_numpy(mean), keras.ops.convert_to_numpy(std),
                   None if labels is None else np.asarray(labels))
        if progbar is not None:
            progbar.add(len(images))
    return writer.close()


def read_metadata(path):
    """The `metadata.json` of a latent folder, with a clear error when missing.

    Example:

    >>> keras_gcm.data.latents.read_metadata("latents/")["shape"]  # doctest: +SKIP
    [32, 32, 4]
    """
    file = os.path.join(os.fspath(path), METADATA)
    if not os.path.exists(file):
        raise FileNotFoundError(
            f"{os.fspath(path)!r} is not a latent folder (no {METADATA}). Write one with "
            "`python -m keras_gcm.data.encode_latents --out DIR ...`.")
    with open(file) as f:
        return json.load(f)


def check_latent_shape(path, network):
    """Raises a clear error when a latent folder does not fit `network`.

    Args:
        path: a latent folder.
        network: a network with `img_resolution` and `in_channels` (DiT).

    Returns:
        The metadata dict.

    Example:

    >>> keras_gcm.data.latents.check_latent_shape("latents/", dit)  # doctest: +SKIP
    """
    metadata = read_metadata(path)
    shape = tuple(metadata["shape"])
    expected = (int(network.img_resolution), int(network.img_resolution),
                int(network.in_channels))
    if shape != expected:
        raise ValueError(
            f"The latents in {os.fspath(path)!r} have shape {shape} but the network takes "
            f"{expected}: build the network with img_resolution={shape[0]}, "
            f"in_channels={shape[2]} (256x256 images through the SD VAE give (32, 32, 4)), "
            "or encode images of the matching resolution.")
    return metadata


def latents(path, batch_size, labels=True, shuffle=True, seed=None, repeat=True,
            drop_remainder=True, sample_posterior=True, prefetch=True):
    """A latent folder as a `tf.data` pipeline of scaled posterior samples.

    Each batch is `scaling_factor * (mean + std * n)` with fresh normal `n`
    (`sample_posterior=True`, MeanFlow's practice), or
    `scaling_factor * mean`. Shards are read in a seeded order and
    examples shuffled within a buffer of two shards.

    Args:
        path: a folder written by `encode_latents` / `LatentShardWriter`.
        batch_size: int.
        labels: also yield the int32 labels.
        shuffle, seed, repeat, drop_remainder, prefetch: pipeline options.
        sample_posterior: draw from the posterior (True) or use its mean.

    Returns:
        A `tf.data.Dataset` of float32 `(batch, h, w, c)` latents (and labels).

    Example:

    >>> ds = keras_gcm.data.latents.latents("latents/", 256, seed=0)  # doctest: +SKIP
    >>> model.fit(ds, steps_per_epoch=5000)  # doctest: +SKIP
    """
    import tensorflow as tf

    metadata = read_metadata(path)
    files = sorted(glob.glob(os.path.join(os.fspath(path), "shard-*.npz")))
    if not files:
        raise FileNotFoundError(f"No shard-*.npz files in {os.fspath(path)!r}.")
    shape = tuple(metadata["shape"])
    scale = float(metadata["scaling_factor"])
    seed = int(np.random.default_rng().integers(2**31)) if seed is None else int(seed)
    shard_size = int(np.load(files[0])["labels"].shape[0])

    def generate():
        rng = np.random.default_rng(seed)
        while True:
            order = rng.permutation(len(files)) if shuffle else np.arange(len(files))
            for index in order:
                with np.load(files[index]) as shard:
                    mean, std, lab = shard["mean"], shard["std"], shard["labels"]
                for i in range(len(lab)):
                    yield mean[i], std[i], lab[i]
            if not repeat:
                return

    spec = (tf.TensorSpec(shape, tf.float16 if metadata.get("dtype") == "float16" else tf.float32),
            tf.TensorSpec(shape, tf.float16 if metadata.get("dtype") == "float16" else tf.float32),
            tf.TensorSpec((), tf.int32))
    ds = tf.data.Dataset.from_generator(generate, output_signature=spec)
    if shuffle:
        ds = ds.shuffle(max(2 * shard_size, batch_size), seed=seed)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    base = tf.constant(seed, tf.int64)

    def to_model_input(index, element):
        mean, std, lab = element
        mean, std = tf.cast(mean, tf.float32), tf.cast(std, tf.float32)
        x = mean
        if sample_posterior:
            noise = tf.random.stateless_normal(tf.shape(mean), seed=tf.stack([base, index]))
            x = mean + std * noise
        x = scale * x
        return (x, lab) if labels else x

    ds = ds.enumerate().map(to_model_input, num_parallel_calls=tf.data.AUTOTUNE,
                            deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE) if prefetch else ds


def mock_latents(path, num_examples=64, shape=(32, 32, 4), num_classes=1000, seed=0,
                 scaling_factor=0.18215, shard_size=32):
    """Writes a folder of random latents (for `--smoke` runs and tests).

    Means are `N(0, 1) / scaling_factor`, standard deviations 0.1 / scaling
    factor, labels uniform over `num_classes` (none, -1, for 0).

    Returns:
        The metadata dict.

    Example:

    >>> import tempfile
    >>> _ = keras_gcm.data.latents.mock_latents(tempfile.mkdtemp(), 64, (8, 8, 4), 10)
    """
    rng = np.random.default_rng(seed)
    writer = LatentShardWriter(path, scaling_factor, shard_size, "float16",
                               num_classes or None, source="mock")
    mean = rng.standard_normal((num_examples,) + tuple(shape)) / scaling_factor
    labels = rng.integers(0, num_classes, num_examples) if num_classes else None
    writer.add(mean, np.full_like(mean, 0.1 / scaling_factor), labels)
    return writer.close()


def load_latents(path):
    """Reads a whole latent folder into memory: `(mean, std, labels, metadata)`.

    ImageNet-256 in float16 is about 21 GB. Use `latents()` to stream instead.

    Example:

    >>> mean, std, labels, meta = keras_gcm.data.latents.load_latents("latents/")  # doctest: +SKIP
    """
    metadata = read_metadata(path)
    files = sorted(glob.glob(os.path.join(os.fspath(path), "shard-*.npz")))
    if not files:
        raise FileNotFoundError(f"No shard-*.npz files in {os.fspath(path)!r}.")
    parts = [np.load(f) for f in files]
    mean = np.concatenate([p["mean"] for p in parts])
    std = np.concatenate([p["std"] for p in parts])
    labels = np.concatenate([p["labels"] for p in parts])
    return mean, std, labels, metadata


def _step_indexed_latents_class():
    from keras_gcm.data.step_indexed_batches import StepIndexedBatches

    class StepIndexedLatents(StepIndexedBatches):
        """`StepIndexedBatches` of scaled posterior samples (exact resumption).

        Batch n holds `scaling_factor * (mean + std * noise)` for the examples
        of step n, the noise drawn from `SeedSequence(seed, spawn_key=(2, n))`,
        so a resumed run sees the same latents as an uninterrupted one.
        """

        def __init__(self, mean, std, labels, batch_size, scaling_factor, seed=0,
                     start_step=0, **kwargs):
            super().__init__(mean, batch_size, seed=seed, start_step=start_step,
                             labels=labels, **kwargs)
            if np.shape(std) != np.shape(mean):
                raise ValueError(f"`std` must have mean's shape {np.shape(mean)}; got "
                                 f"{np.shape(std)}.")
            self.std = std
            self.scaling_factor = float(scaling_factor)

        def batch(self, step):
            idx = self.indices(step)
            rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(2, int(step))))
            mean = self.data[idx].astype(np.float32)
            std = self.std[idx].astype(np.float32)
            x = self.scaling_factor * (mean + std * rng.standard_normal(mean.shape, np.float32))
            if self.labels is not None:
                return x, self.labels[idx]
            return x

    return StepIndexedLatents


def step_indexed_latents(path, batch_size, seed=0, start_step=0, labels=True):
    """An in-memory, step-indexed stream of posterior samples for exact resumption.

    Loads the folder (`load_latents`) and returns a
    `keras_gcm.data.StepIndexedBatches` whose batch n depends only on
    (seed, n): `scaling_factor * (mean + std * noise)` with the labels.

    Example:

    >>> data = keras_gcm.data.latents.step_indexed_latents("latents/", 256)  # doctest: +SKIP
    >>> model.fit(data.as_dataset(), steps_per_epoch=1000)  # doctest: +SKIP
    """
    mean, std, lab, metadata = load_latents(path)
    return _step_indexed_latents_class()(
        mean, std, lab if labels else None, batch_size, metadata["scaling_factor"],
        seed=seed, start_step=start_step)
