"""A step-indexed batch stream: the data half of exact resumption.

`keras_gcm.callbacks.ResumableCheckpoint` saves the training state; this
stream gives the batches of any global step without replaying the ones before.
"""

import threading

import numpy as np
import keras


class StepIndexedBatches(keras.utils.PyDataset):
    """An endless, seeded batch stream whose batch n depends only on (seed, n).

    The data half of exact resumption. The examples of global step `n` are
    positions `n*B ... n*B + B - 1` of an endless sequence of passes over the
    data, pass `p` being the permutation
    `default_rng(SeedSequence(seed, spawn_key=(0, p))).permutation(N)`;
    the horizontal flips of step `n` come from `spawn_key=(1, n)`. A run
    resumed at step `n` with `start_step=n` sees exactly the batches the
    uninterrupted run saw from step `n` on, without replaying the data before
    it. Plain numpy, a `keras.utils.PyDataset`: it feeds `fit` on every
    backend (give `fit` a `steps_per_epoch`; the stream does not end).

    Args:
        data: array `(N, ...)`; integer arrays (e.g. uint8 images) are mapped
            with `x / 127.5 - 1`, float arrays are used as they are.
        batch_size: int, examples per batch.
        seed: int, seed of the order and the flips.
        start_step: int, the global step of the first batch.
        xflip: flip images (channels-last, rank 4) left-right with
            probability 1/2.
        shuffle: False to keep the data's own order (pass after pass).
        labels: optional `(N,)` labels; batches are then `(x, labels)`.
        **kwargs: `keras.utils.PyDataset` arguments (`workers`, ...).

    Example:

    >>> points = np.arange(20, dtype="float32").reshape(10, 2)
    >>> stream = keras_gcm.data.StepIndexedBatches(points, 4, seed=0)
    >>> resumed = keras_gcm.data.StepIndexedBatches(points, 4, seed=0, start_step=3)
    >>> bool(np.array_equal(stream[3], resumed[0]))  # batch 3 without replaying 0-2
    True

    With a checkpoint (`keras_gcm.callbacks.ResumableCheckpoint`), a stopped
    run continues where it stopped:

    >>> start = keras_gcm.callbacks.ResumableCheckpoint.latest_step("runs/ckpt")  # doctest: +SKIP
    >>> data = keras_gcm.data.StepIndexedBatches(images, 128, seed=0, start_step=start)  # doctest: +SKIP
    >>> model.fit(data, steps_per_epoch=1000, epochs=10,
    ...           callbacks=[keras_gcm.callbacks.ResumableCheckpoint("runs/ckpt")])  # doctest: +SKIP
    """

    def __init__(self, data, batch_size, seed=0, start_step=0, xflip=False,
                 shuffle=True, labels=None, **kwargs):
        super().__init__(**kwargs)
        data = np.asarray(data)
        if data.ndim < 2 or data.shape[0] < 1:
            raise ValueError(
                f"`data` must be a non-empty array (N, ...data dims); got shape {data.shape}."
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive int; got {batch_size!r}.")
        batch_size = int(batch_size)
        if isinstance(start_step, bool) or int(start_step) < 0:
            raise ValueError(f"`start_step` must be an int >= 0; got {start_step!r}.")
        if xflip and data.ndim != 4:
            raise ValueError(
                f"`xflip` needs channels-last images (N, H, W, C); got shape {data.shape}."
            )
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape[:1] != data.shape[:1]:
                raise ValueError(
                    f"`labels` must hold one label per example ({data.shape[0]}); got "
                    f"shape {labels.shape}."
                )
        self.data = data
        self.labels = labels
        self.batch_size = batch_size
        self.seed = int(seed)
        self.start_step = int(start_step)
        self.xflip = bool(xflip)
        self.shuffle = bool(shuffle)
        self._permutations = {}
        self._lock = threading.Lock()

    @property
    def num_batches(self):
        return None  # endless: fit needs steps_per_epoch

    def _permutation(self, data_pass):
        with self._lock:
            perm = self._permutations.get(data_pass)
            if perm is None:
                rng = np.random.default_rng(
                    np.random.SeedSequence(self.seed, spawn_key=(0, int(data_pass)))
                )
                perm = rng.permutation(self.data.shape[0])
                if len(self._permutations) >= 4:
                    self._permutations.pop(min(self._permutations))
                self._permutations[data_pass] = perm
            return perm

    def indices(self, step):
        """Indices into `data` of the examples of global step `step`."""
        n = self.data.shape[0]
        positions = int(step) * self.batch_size + np.arange(self.batch_size, dtype=np.int64)
        passes, offsets = positions // n, positions % n
        if not self.shuffle:
            return offsets
        out = np.empty_like(offsets)
        for data_pass in np.unique(passes):
            mask = passes == data_pass
            out[mask] = self._permutation(int(data_pass))[offsets[mask]]
        return out

    def batch(self, step):
        """The batch of global step `step` (`self[step - start_step]`)."""
        idx = self.indices(step)
        x = self.data[idx]
        if np.issubdtype(x.dtype, np.integer):
            x = x.astype(np.float32) / 127.5 - 1.0
        else:
            x = x.astype(np.float32, copy=False)
        if self.xflip:
            rng = np.random.default_rng(
                np.random.SeedSequence(self.seed, spawn_key=(1, int(step)))
            )
            flip = rng.random(self.batch_size) < 0.5
            x = np.where(flip[:, None, None, None], x[:, :, ::-1], x)
        if self.labels is not None:
            return x, self.labels[idx]
        return x

    def __getitem__(self, index):
        return self.batch(self.start_step + int(index))

    def as_dataset(self, prefetch=True):
        """The same stream as an endless `tf.data.Dataset` with a static batch shape.

        Batch `i` is `self.batch(start_step + i)`, computed in tf.data's
        threads (`tf.numpy_function`, deterministic order) and prefetched.
        `fit` reads a `tf.data.Dataset` on every backend; unlike a
        `PyDataset`, whose batch size Keras leaves unknown under TensorFlow,
        the batch size here is part of the static shape.

        Args:
            prefetch: bool, prefetch batches in the background.

        Returns:
            A `tf.data.Dataset` of `x` (or `(x, labels)`) batches.
        """
        import tensorflow as tf

        example = self.batch(self.start_step)
        if self.labels is None:
            specs = (tf.TensorSpec(example.shape, example.dtype),)
        else:
            specs = tuple(tf.TensorSpec(e.shape, e.dtype) for e in example)

        def load(step):
            def compute(value):
                out = self.batch(int(value))
                return tuple(out) if isinstance(out, tuple) else (out,)

            out = tf.numpy_function(compute, [step], [s.dtype for s in specs])
            out = [tf.ensure_shape(o, s.shape) for o, s in zip(out, specs)]
            return out[0] if len(out) == 1 else tuple(out)

        ds = tf.data.Dataset.range(self.start_step, 2**62)
        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.prefetch(tf.data.AUTOTUNE) if prefetch else ds
