"""Training callbacks: a non-finite-loss guard, sample grids, quality metrics
and exact resumption (a step-indexed data stream and a full-state checkpoint)."""

import json
import math
import os
import threading

import numpy as np
import keras

from keras_gcm import distribute as gcm_distribute
from keras_gcm.utils import image_grids as _image_grids


class NonFiniteLossError(FloatingPointError):
    """Raised when training steps keep giving a NaN or infinite loss.

    `ConsistencyModel.fit` raises it when `NonFiniteLossGuard` stopped the
    run, naming the first skipped step; the model then holds the state of the
    last finite step (every backend skips a non-finite update inside the
    compiled step, see `keras_gcm.nonfinite`), so it can be inspected, saved
    or trained on with other settings.

    Example:

    ```python
    try:
        model.fit(x, epochs=10)
    except keras_gcm.callbacks.NonFiniteLossError as error:
        print(error.step, error)  # "... non-finite from training step 1234 ..."
    ```
    """

    def __init__(self, message, step=None):
        super().__init__(message)
        self.step = step


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stops training after `max_consecutive_skips` non-finite steps in a row.

    A `ConsistencyModel` train step skips a non-finite update (weights,
    optimizer moments and iteration count, and EMA keep their last finite
    values) and reports `skipped_steps` (over the model's life) and
    `consecutive_skips` in the logs. This guard sets `model.stop_training`
    when `consecutive_skips` reaches `max_consecutive_skips`;
    `ConsistencyModel.fit` then raises `NonFiniteLossError` naming the first
    skipped step, *after* Keras has put the training state back on the model
    (so under JAX no donated buffer is left behind). `ConsistencyModel.fit`
    adds a guard with the default limit unless one is passed. With another
    model (no skip counters in the logs) it stops at the first non-finite
    loss and raises at the end of training.

    The check runs synchronously after every batch (`async_safe = False`):
    under JAX a stop requested from Keras' asynchronous callback thread
    could land while the next step already holds the donated state, and
    Keras' end-of-training state sync then read deleted buffers. Training
    therefore stops exactly at the limit (and skipped steps change no
    state). `max_lag` bounds the wait should the guard run asynchronously.

    Args:
        max_consecutive_skips: int >= 1, skipped steps in a row that stop
            training (default 10: a transient bad batch is skipped; a
            diverged run, whose every step is non-finite, stops after 10
            steps that cost compute but change no state).
        max_lag: int >= 1, steps the asynchronous check may fall behind.

    Example:

    >>> guard = keras_gcm.callbacks.NonFiniteLossGuard(max_consecutive_skips=3)
    >>> guard.max_consecutive_skips
    3
    """

    async_safe = False

    def __init__(self, max_consecutive_skips=10, max_lag=2):
        super().__init__()
        from keras_gcm.validation import check_int

        self.max_consecutive_skips = check_int(
            max_consecutive_skips, "max_consecutive_skips", minimum=1)
        self.max_lag = check_int(max_lag, "max_lag", minimum=1)
        self._condition = threading.Condition()
        self.failure = None
        self._defer_error = False

    def on_train_begin(self, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        iterations = getattr(optimizer, "iterations", None)
        self._epoch_start = (
            int(keras.ops.convert_to_numpy(iterations)) if iterations is not None else 0
        )
        self.failure = None
        self._seen = -1

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        with self._condition:
            self._seen = -1
        self._batches = 0

    def on_train_batch_begin(self, batch, logs=None):
        # Runs on the training thread: wait for the asynchronous check to be
        # at most `max_lag` steps behind (bounded wait: never hangs).
        with self._condition:
            self._condition.wait_for(
                lambda: self._seen >= batch - self.max_lag - 1 or self.failure,
                timeout=60.0,
            )
        if self.failure is not None:
            self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        try:
            self._check(batch, logs)
        finally:
            with self._condition:
                self._seen = max(self._seen, batch)
                self._batches = max(self._batches, batch + 1)
                self._condition.notify_all()

    def _check(self, batch, logs):
        consecutive = logs.get("consecutive_skips")
        if consecutive is not None:
            if int(consecutive) < self.max_consecutive_skips:
                return
            value = "non-finite"
        else:
            value = logs.get("loss")
            if value is None or math.isfinite(float(value)):
                return
        step = self._epoch_start + batch + 1
        with self._condition:
            if self.failure is None or step < self.failure[0]:
                self.failure = (step, self._epoch, batch, value)
        self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self._epoch_start += self._batches

    def on_train_end(self, logs=None):
        if not self._defer_error:
            self.raise_if_failed()

    def raise_if_failed(self, model=None):
        """Raises `NonFiniteLossError` if this guard stopped the last `fit`."""
        if self.failure is None:
            return
        step, epoch, batch, value = self.failure
        model = model if model is not None else self.model
        first = getattr(model, "first_skipped_step", None)
        skipped = ""
        if first is not None and int(keras.ops.convert_to_numpy(first.value)) > 0:
            step = int(keras.ops.convert_to_numpy(first.value))
            count = int(keras.ops.convert_to_numpy(model.consecutive_skips.value))
            skipped = (
                f" {count} consecutive steps were skipped; the model holds the "
                f"state after step {step - 1}, the last finite one."
            )
            where = ""
        else:
            where = f" (epoch {epoch + 1}, batch {batch + 1})"
        self.failure = None
        raise NonFiniteLossError(
            f"The training loss became {value} from training step {step}"
            f"{where}.{skipped} Check the data for NaN/inf values and their "
            "scale, lower the learning rate, or make sure the discretisation "
            "h(t) is not too small for float32.",
            step=step,
        )


# ---------------------------------------------------------------------------
# Periodic callbacks (sample grids, quality metrics)
# ---------------------------------------------------------------------------


def _resolve_sampler(sampler):
    """`"one_step"`, `"two_step"` or a callable `fn(model, num_samples, seed=, batch_size=)`."""
    from keras_gcm import samplers

    if callable(sampler):
        return sampler
    table = {"one_step": samplers.one_step, "two_step": samplers.two_step}
    if sampler not in table:
        raise ValueError(
            f"`sampler` must be 'one_step', 'two_step' or a callable "
            f"fn(model, num_samples, seed=..., batch_size=...); got {sampler!r}."
        )
    return table[sampler]


def _sampler_name(sampler):
    return sampler if isinstance(sampler, str) else getattr(sampler, "__name__", "sampler")


def _check_every(every_n_steps, name="every_n_steps"):
    if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, (int, np.integer)) \
            or every_n_steps < 1:
        raise ValueError(f"`{name}` must be a positive int; got {every_n_steps!r}.")
    return int(every_n_steps)


def _print(message):
    print(message, flush=True)


def _checkpoint_step(name):
    """Step of a `ckpt-<step>.npz` file name (-1 if it has none)."""
    try:
        return int(name[len("ckpt-"):-len(".npz")])
    except ValueError:
        return -1


def _optimizer_step(model):
    """The global step: optimizer updates plus skipped (non-finite) steps,
    i.e. the number of batches trained on."""
    step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    skipped = getattr(model, "skipped_steps", None)
    if skipped is not None:
        step += int(keras.ops.convert_to_numpy(skipped.value))
    return step


class _PeriodicCallback(keras.callbacks.Callback):
    """Acts at the epoch ends where the global step passes a multiple of N.

    The global step is the optimizer's iteration count, so it continues
    across a resumed run. Acting at epoch ends only (no per-batch hook)
    keeps Keras' asynchronous callback dispatch on (no device sync per step
    under JAX / PyTorch), and at an epoch end the JAX state is on the model.
    With a `steps_per_epoch` that divides N, the action happens exactly every
    N steps; otherwise at the first epoch end after each multiple of N.
    `every_n_steps=None` (where a subclass allows it) acts at every epoch end.
    """

    async_safe = True

    def __init__(self, every_n_steps, allow_every_epoch=False):
        super().__init__()
        if every_n_steps is None and allow_every_epoch:
            self.every_n_steps = None
        else:
            self.every_n_steps = _check_every(every_n_steps)
        self._previous_step = None

    def on_train_begin(self, logs=None):
        self._previous_step = None

    def on_epoch_begin(self, epoch, logs=None):
        if self._previous_step is None:
            # After every callback's on_train_begin (and so after a restore).
            self._previous_step = _optimizer_step(self.model)

    def _advance(self):
        """(global step now, whether it passed a multiple of N since the last epoch end)."""
        step = _optimizer_step(self.model)
        previous = self._previous_step if self._previous_step is not None else 0
        self._previous_step = step
        due = self.every_n_steps is None or (
            step // self.every_n_steps > previous // self.every_n_steps
        )
        return step, due

    def on_epoch_end(self, epoch, logs=None):
        step, due = self._advance()
        if due:
            self.act(step, logs)

    def act(self, step, logs):
        raise NotImplementedError


def _tf_summary_writer(log_dir):
    import tensorflow as tf

    return tf.summary.create_file_writer(os.fspath(log_dir))


def _summary_metadata(plugin_name):
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = plugin_name
    return metadata


def _write_summary_image(writer, tag, image, step):
    """A TensorBoard image summary of one `uint8` `(H, W, C)` image.

    Written with TensorFlow's core `tf.summary.write` in the format of
    TensorBoard's image plugin (`[width, height, png]` strings), so it needs
    no `tensorboard` package to write.
    """
    import tensorflow as tf

    png = tf.io.encode_png(np.asarray(image, np.uint8))
    tensor = tf.stack([tf.as_string(image.shape[1]), tf.as_string(image.shape[0]), png])
    with writer.as_default():
        tf.summary.write(tag, tensor, step=int(step), metadata=_summary_metadata("images"))
    writer.flush()


def _write_summary_scalars(writer, values, step):
    """TensorBoard scalar summaries (TensorBoard's scalar-plugin format)."""
    import tensorflow as tf

    with writer.as_default():
        for tag, value in values.items():
            tf.summary.write(
                tag, tf.constant(float(value), tf.float32), step=int(step),
                metadata=_summary_metadata("scalars"),
            )
    writer.flush()


class SampleGrid(_PeriodicCallback):
    """Writes a PNG grid of samples from the EMA weights every N training steps.

    Samples are drawn with `keras_gcm.samplers` from the EMA weights with a
    fixed `seed`, so successive grids show the same noise turning into
    images. With `log_dir`, the grid also goes to TensorBoard as an image
    (written with TensorFlow's `tf.summary.write`, under any Keras backend;
    viewing needs the `tensorboard` package, writing does not). Files are named
    `samples_<sampler>_<step:08d>.png`. Grids are written at epoch ends (see
    `every_n_steps`) and, with `at_train_end`, when training ends.

    Args:
        every_n_steps: int; a grid at each epoch end where the optimizer step
            passes a multiple of it (exactly every N steps when
            `steps_per_epoch` divides N).
        output_dir: folder of the PNG files.
        num_samples: int, images in the grid.
        seed: int, numpy seed of the sampler's noise.
        sampler: `"one_step"`, `"two_step"` (restart for CU, pushforward for
            VU, via t = 0.6) or a callable `fn(model, num_samples, seed=...,
            batch_size=...)` returning images in `[-1, 1]`.
        log_dir: optional TensorBoard folder (events under `log_dir/samples`).
        nrow: images per row (default `ceil(sqrt(num_samples))`).
        scale: integer upscaling of each image in the PNG (e.g. 4 for 8x8).
        batch_size: samples per compiled sampler call.
        at_train_end: also write a grid when training ends, if none was
            written at the final step.

    Example:

    >>> grid = keras_gcm.callbacks.SampleGrid(1000, "runs/digits/grids")
    >>> model.fit(data, steps_per_epoch=500, epochs=10, callbacks=[grid])
    ... # doctest: +SKIP
    """

    def __init__(self, every_n_steps, output_dir, num_samples=64, seed=0,
                 sampler="one_step", log_dir=None, nrow=None, scale=1,
                 batch_size=256, at_train_end=True):
        super().__init__(every_n_steps)
        self.output_dir = os.fspath(output_dir)
        self.num_samples = int(num_samples)
        if self.num_samples < 1:
            raise ValueError(f"`num_samples` must be >= 1; got {num_samples}.")
        self.seed = int(seed)
        self.sampler = sampler
        self._sample_fn = _resolve_sampler(sampler)
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.nrow = nrow
        self.scale = _check_every(scale, "scale")
        self.batch_size = _check_every(batch_size, "batch_size")
        self.at_train_end = bool(at_train_end)
        self.paths = []
        self._written_step = None
        self._writer = None

    def act(self, step, logs):
        self.write(step)

    def on_train_end(self, logs=None):
        if self.at_train_end and self.model.built:
            step = _optimizer_step(self.model)
            if step != self._written_step:
                self.write(step)
        if self._writer is not None:
            self._writer.flush()

    def write(self, step=None):
        """Samples and writes the PNG (and TensorBoard image) now; returns the path."""
        model = self.model
        step = _optimizer_step(model) if step is None else int(step)
        images = self._sample_fn(
            model, self.num_samples, seed=self.seed, batch_size=self.batch_size
        )
        name = _sampler_name(self.sampler)
        path = os.path.join(self.output_dir, f"samples_{name}_{step:08d}.png")
        if not gcm_distribute.is_chief():  # several processes: process 0 writes
            return None
        grid = _image_grids.save_image_grid(images, path, nrow=self.nrow, scale=self.scale)
        if self.log_dir is not None:
            if self._writer is None:
                self._writer = _tf_summary_writer(os.path.join(self.log_dir, "samples"))
            _write_summary_image(self._writer, f"samples/{name}", grid, step)
        self.paths.append(path)
        self._written_step = step
        return path


class QualityMetric(_PeriodicCallback):
    """Computes a sample-quality figure every N steps and logs it.

    At each epoch end where the optimizer step passes a multiple of
    `every_n_steps`, draws `num_samples` samples from the EMA weights (fixed
    `seed`) and calls `metric_fn(samples)`: a float (logged as `name`) or a
    dict of floats with the declared `keys` (logged as `name_<key>`). The values are printed, kept in
    `self.values` as `(step, {key: value})` pairs, and put into the epoch's
    logs (NaN at the epoch ends without a new value, so every epoch has the
    same keys), where `History`, `CSVLogger`, `TensorBoard` and the progress
    bar see them: list this callback before `CSVLogger` / `TensorBoard`.
    With `log_dir`, the values also go to TensorBoard against the step.

    Args:
        every_n_steps: int (exactly every N steps when `steps_per_epoch`
            divides N).
        metric_fn: callable, samples (numpy `(N, ...data dims)`, as the
            sampler returns them) -> float or dict of floats; e.g. the digits
            FDD, or an FID through `keras_gcm.metrics.FrechetInceptionDistance`.
        name: str, the log key (the prefix for dict results).
        num_samples: int, samples per evaluation.
        seed: int, numpy seed of the sampler's noise.
        sampler: `"one_step"`, `"two_step"` or a callable (see `SampleGrid`).
        batch_size: samples per compiled sampler call.
        log_dir: optional TensorBoard folder (events under `log_dir/quality`).
        verbose: 1 to print each value.
        keys: the keys of a metric that returns a dict (None: it returns
            a float). Known up front, so every epoch logs the same keys.

    Example:

    >>> fdd = keras_gcm.callbacks.QualityMetric(
    ...     1000, keras_gcm.metrics.frechet_digits_distance, "fdd_1step",
    ...     num_samples=1000)
    >>> history = model.fit(data, steps_per_epoch=1000, epochs=5,
    ...                     callbacks=[fdd])  # doctest: +SKIP
    >>> history.history["fdd_1step"]  # doctest: +SKIP
    """

    def __init__(self, every_n_steps, metric_fn, name, num_samples=1000, seed=0,
                 sampler="one_step", batch_size=256, log_dir=None, verbose=1,
                 keys=None):
        super().__init__(every_n_steps)
        if not callable(metric_fn):
            raise ValueError(f"`metric_fn` must be callable; got {metric_fn!r}.")
        if not isinstance(name, str) or not name:
            raise ValueError(f"`name` must be a non-empty string; got {name!r}.")
        self.metric_fn = metric_fn
        self.name = name
        self.num_samples = int(num_samples)
        if self.num_samples < 2:
            raise ValueError(f"`num_samples` must be >= 2; got {num_samples}.")
        self.seed = int(seed)
        self.sampler = sampler
        self._sample_fn = _resolve_sampler(sampler)
        self.batch_size = _check_every(batch_size, "batch_size")
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.verbose = int(verbose)
        self.values = []
        # The log keys are known up front, so every epoch has the same keys.
        self._keys = [name] if keys is None else sorted(f"{name}_{k}" for k in keys)
        self._dict_result = keys is not None
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        self._current = None
        super().on_epoch_end(epoch, logs)
        if logs is not None:
            for key in self._keys:
                logs[key] = (self._current or {}).get(key, float("nan"))

    def act(self, step, logs):
        self._current = self.evaluate(step)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.flush()

    def evaluate(self, step=None):
        """Samples and computes the metric now; returns `{log key: value}`."""
        step = _optimizer_step(self.model) if step is None else int(step)
        samples = self._sample_fn(
            self.model, self.num_samples, seed=self.seed, batch_size=self.batch_size
        )
        result = self.metric_fn(np.asarray(samples))
        if isinstance(result, dict):
            values = {f"{self.name}_{k}": float(v) for k, v in result.items()}
        else:
            values = {self.name: float(result)}
        if self._dict_result != isinstance(result, dict) or sorted(values) != self._keys:
            raise ValueError(
                f"`metric_fn` returned the keys {sorted(values)}; expected {self._keys} "
                "(declare the keys of a metric that returns a dict with `keys=`)."
            )
        self.values.append((step, values))
        if not gcm_distribute.is_chief():  # several processes: process 0 writes
            return values
        if self.verbose:
            text = ", ".join(f"{k} = {v:.6g}" for k, v in values.items())
            _print(f"[step {step}] {text}")
        if self.log_dir is not None:
            if self._writer is None:
                self._writer = _tf_summary_writer(os.path.join(self.log_dir, "quality"))
            _write_summary_scalars(self._writer, values, step)
        return values


# ---------------------------------------------------------------------------
# Exact resumption: a step-indexed data stream and a full-state checkpoint
# ---------------------------------------------------------------------------


class ResumableCheckpoint(_PeriodicCallback):
    """Saves the whole training state so a stopped run continues the same trajectory.

    A checkpoint holds every model variable (the network's weights, the EMA
    weights and their update count, the seed-generator states of the noise,
    the time sampler and the dropout layers), every optimizer variable (the
    moments and the iteration count, i.e. the step) and, under PyTorch,
    torch's global random state. Together with a data stream positioned at
    the checkpoint's step (`StepIndexedBatches(start_step=
    ResumableCheckpoint.latest_step(directory))`), a resumed run reproduces
    the uninterrupted run's weights.

    Checkpoints are written at epoch ends (each epoch, or those where the
    step passes a multiple of `every_n_steps`, and always after the last
    epoch) as `ckpt-<step>.npz`, with `checkpoint.json` naming the latest
    (written after it, atomically; the `max_to_keep` newest files are kept).
    A state with a NaN or infinite value is never written, nor one taken
    while non-finite steps are being skipped or after a mid-epoch stop (off
    the epoch grid): the latest checkpoint stays the last good one. On
    restart, a latest file that is truncated or corrupt (a crash during a
    write, a full disk) is passed over for the newest intact checkpoint, with
    a warning; temporary files left by a killed write are removed by the
    next save.

    What resumes exactly: a `ResumableCheckpoint` restores every variable,
    including the random-generator states, so a resumed run continues the
    uninterrupted run's trajectory bitwise. A `.keras` file
    (`model.save`) also stores the model's variables, seed states included,
    and the optimizer's; it does not store torch's global random state
    (unseeded torch dropout) nor the data stream's position, so continuing
    from it is statistically equivalent, not bitwise.
    When a checkpoint exists, `on_train_begin` restores it and makes `fit`
    start at epoch `step / steps_per_epoch`, as
    `keras.callbacks.BackupAndRestore` does: keep `steps_per_epoch` (and
    `epochs` as the total) the same across the runs.

    Why not `BackupAndRestore`: with an integer `save_freq` it saves
    mid-epoch but resumes at the start of that epoch with the mid-epoch
    weights (the steps before the save are trained twice), it does not say
    where the data must resume, and it deletes its backup when `fit`
    completes. Saving at epoch ends and exposing the step before `fit`
    (`latest_step`) gives exact resumption.

    Args:
        directory: folder of the checkpoints (one run per folder).
        every_n_steps: None (every epoch end) or an int.
        max_to_keep: int, checkpoint files kept.
        restore: bool, restore the latest checkpoint in `on_train_begin`.
        verbose: 1 to print when saving / restoring.

    Example:

    A CIFAR-10-sized run (`images`: a uint8 training set; not run here):

    >>> ckpt_dir = "runs/cifar10/checkpoints"
    >>> start = keras_gcm.callbacks.ResumableCheckpoint.latest_step(ckpt_dir)
    >>> data = keras_gcm.data.StepIndexedBatches(
    ...     images, 512, seed=0, start_step=start, xflip=True)  # doctest: +SKIP
    >>> model.fit(data, steps_per_epoch=1000, epochs=400,
    ...           callbacks=[keras_gcm.callbacks.ResumableCheckpoint(ckpt_dir)])  # doctest: +SKIP
    """

    INDEX_FILE = "checkpoint.json"

    def __init__(self, directory, every_n_steps=None, max_to_keep=2, restore=True,
                 verbose=1):
        super().__init__(every_n_steps, allow_every_epoch=True)
        self.directory = os.fspath(directory)
        self.max_to_keep = _check_every(max_to_keep, "max_to_keep")
        self.restore_on_train_begin = bool(restore)
        self.verbose = int(verbose)
        self.restored_step = None
        self._set_initial_epoch = False

    # -- reading -------------------------------------------------------------
    @classmethod
    def read_index(cls, directory):
        """The `checkpoint.json` of `directory` as a dict, or None (also when
        the index is unreadable: `latest_step` / `restore` then scan the
        folder for checkpoint files)."""
        path = os.path.join(os.fspath(directory), cls.INDEX_FILE)
        if not os.path.isfile(path):
            return None
        try:
            with open(path) as f:
                index = json.load(f)
            int(index["step"]), str(index["latest"])
            return index
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @classmethod
    def _candidates(cls, directory):
        """Checkpoint file names, newest first: the index's latest, then the
        other `ckpt-*.npz` files of the folder by step."""
        directory = os.fspath(directory)
        names = []
        index = cls.read_index(directory)
        if index is not None:
            names.append(index["latest"])
        if os.path.isdir(directory):
            found = [
                f for f in os.listdir(directory)
                if f.startswith("ckpt-") and f.endswith(".npz")
            ]
            names += sorted(set(found) - set(names), key=_checkpoint_step, reverse=True)
        return names

    @staticmethod
    def _load_arrays(path):
        """All arrays of a checkpoint file, or None if it is missing, truncated,
        corrupt or holds a non-finite value."""
        import zipfile

        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {k: archive[k] for k in archive.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
            return None
        if not arrays or not all(
            np.all(np.isfinite(a)) for a in arrays.values()
            if np.issubdtype(a.dtype, np.floating)
        ):
            return None
        return arrays

    @classmethod
    def find_latest(cls, directory):
        """`(step, path, arrays)` of the newest intact checkpoint, or None.

        Files that cannot be read (truncated, corrupt) or that hold a
        non-finite value are passed over, with a warning.
        """
        for name in cls._candidates(directory):
            path = os.path.join(os.fspath(directory), name)
            arrays = cls._load_arrays(path)
            if arrays is not None:
                return _checkpoint_step(name), path, arrays
            if os.path.exists(path):
                _print(
                    f"Warning: the checkpoint {path} is truncated, corrupt or "
                    "non-finite; falling back to the previous one."
                )
        return None

    @classmethod
    def latest_step(cls, directory):
        """Step of the newest intact checkpoint in `directory` (0 when there is none)."""
        found = cls.find_latest(directory)
        return 0 if found is None else found[0]

    # -- state ---------------------------------------------------------------
    @staticmethod
    def _variables(model):
        optimizer = getattr(model, "optimizer", None)
        if optimizer is None:
            raise ValueError("ResumableCheckpoint needs a compiled model (with an optimizer).")
        if not model.built:
            raise ValueError(
                "ResumableCheckpoint needs a built model: call model.build(input_shape) "
                "before fit."
            )
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        return list(model.variables), list(optimizer.variables)

    @staticmethod
    def _torch_rng_arrays():
        if keras.backend.backend() != "torch":
            return {}
        import torch

        arrays = {"torch_rng_cpu": torch.get_rng_state().numpy()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            for i, state in enumerate(torch.cuda.get_rng_state_all()):
                arrays[f"torch_rng_cuda_{i:03d}"] = state.cpu().numpy()
        return arrays

    @staticmethod
    def _restore_torch_rng(arrays):
        if keras.backend.backend() != "torch" or "torch_rng_cpu" not in arrays:
            return
        import torch

        torch.set_rng_state(torch.from_numpy(np.array(arrays["torch_rng_cpu"])))
        cuda = sorted(k for k in arrays if k.startswith("torch_rng_cuda_"))
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([torch.from_numpy(np.array(arrays[k])) for k in cuda])

    def save(self, model=None):
        """Writes a checkpoint of `model` (default: the fitted model); returns its path."""
        model = model if model is not None else self.model
        model_vars, optimizer_vars = self._variables(model)
        step = _optimizer_step(model)
        arrays = {}
        for i, v in enumerate(model_vars):
            arrays[f"model_{i:06d}"] = np.asarray(keras.ops.convert_to_numpy(v.value))
        for i, v in enumerate(optimizer_vars):
            arrays[f"optimizer_{i:06d}"] = np.asarray(keras.ops.convert_to_numpy(v.value))
        arrays.update(self._torch_rng_arrays())
        return self._write(step, arrays, {
            "backend": keras.backend.backend(),
            "model_variables": [[v.path, list(v.shape), str(v.dtype)] for v in model_vars],
            "optimizer_variables": [
                [v.path, list(v.shape), str(v.dtype)] for v in optimizer_vars
            ],
        })

    def _write(self, step, arrays, metadata):
        """Writes `arrays` as the checkpoint of `step` (atomically: a temporary
        file renamed into place, then the index); returns its path, or None
        (nothing written) if an array holds a non-finite value."""
        if not gcm_distribute.is_chief():  # several processes: process 0 writes
            gcm_distribute.barrier()
            return None
        bad = [
            k for k, a in arrays.items()
            if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a))
        ]
        if bad:
            _print(
                f"Warning: not saving the training state of step {step}: it holds "
                f"non-finite values ({len(bad)} arrays, e.g. {bad[0]}). The latest "
                f"checkpoint in {self.directory} stays the last finite one."
            )
            gcm_distribute.barrier()
            return None
        os.makedirs(self.directory, exist_ok=True)
        name = f"ckpt-{step:09d}.npz"
        path = os.path.join(self.directory, name)
        temporary = os.path.join(self.directory, f".{name}.{os.getpid()}.tmp.npz")
        with open(temporary, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
        previous = self.read_index(self.directory) or {}
        files = [f for f in previous.get("files", []) if f != name] + [name]
        index = {
            "step": step,
            "latest": name,
            "files": files[-self.max_to_keep:],
            **metadata,
        }
        temporary = os.path.join(self.directory, f".{self.INDEX_FILE}.{os.getpid()}.tmp")
        with open(temporary, "w") as f:
            json.dump(index, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, os.path.join(self.directory, self.INDEX_FILE))
        for old in files[:-self.max_to_keep]:
            old_path = os.path.join(self.directory, old)
            if os.path.exists(old_path):
                os.remove(old_path)
        # Temporary files of writes that were killed before their rename.
        for leftover in os.listdir(self.directory):
            if leftover.startswith(".") and leftover.endswith((".tmp.npz", ".tmp")):
                try:
                    os.remove(os.path.join(self.directory, leftover))
                except OSError:
                    pass
        gcm_distribute.barrier()  # the others may read it once it is complete
        if self.verbose:
            _print(f"Saved the training state of step {step} to {path}")
        return path

    def restore(self, model=None):
        """Loads the latest checkpoint into `model`; returns its step (None if none).

        The model must be built and compiled as the saved one was (same
        network, optimizer and variable shapes); a mismatch raises a
        `ValueError` naming the first differing variable.
        """
        model = model if model is not None else self.model
        found = self.find_latest(self.directory)
        if found is None:
            return None
        _, path, arrays = found
        model_vars, optimizer_vars = self._variables(model)
        pending = []
        for prefix, variables in (("model", model_vars), ("optimizer", optimizer_vars)):
            stored = sorted(k for k in arrays if k.startswith(prefix + "_"))
            if len(stored) != len(variables):
                raise ValueError(
                    f"The checkpoint {path} holds {len(stored)} {prefix} variables but "
                    f"this model has {len(variables)}: it was saved from a different "
                    "model or optimizer configuration."
                )
            for key, variable in zip(stored, variables):
                value = arrays[key]
                if tuple(value.shape) != tuple(variable.shape):
                    raise ValueError(
                        f"Checkpoint {prefix} variable {key} has shape {value.shape}, but "
                        f"{variable.path} has shape {tuple(variable.shape)}: the checkpoint "
                        "was saved from a different configuration."
                    )
                pending.append((variable, value))
        for variable, value in pending:
            variable.assign(value.astype(variable.dtype))
        self._restore_torch_rng(arrays)
        step = _optimizer_step(model)
        self.restored_step = step
        if self.verbose:
            _print(
                f"Restored the training state of step {step} from {path}"
            )
        return step

    # -- callback hooks --------------------------------------------------------
    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._set_initial_epoch = False
        if not self.restore_on_train_begin or not self._candidates(self.directory):
            return
        step = self.restore()
        steps_per_epoch = (self.params or {}).get("steps")
        if step and steps_per_epoch:
            if step % steps_per_epoch:
                raise ValueError(
                    f"The checkpoint in {self.directory} is at step {step}, which is not "
                    f"a multiple of steps_per_epoch={steps_per_epoch}: fit resumes at "
                    f"an epoch boundary. Resume with a steps_per_epoch that divides "
                    f"{step} (checkpoints are written at epoch ends, so the "
                    "steps_per_epoch of the run that wrote it does), or restore it "
                    "with ResumableCheckpoint(directory, restore=False).restore(model) "
                    "and train on with epochs counted from there."
                )
            self.model._initial_epoch = step // steps_per_epoch
            self._set_initial_epoch = True

    def on_epoch_end(self, epoch, logs=None):
        step, due = self._advance()
        last = epoch + 1 >= (self.params or {}).get("epochs", epoch + 1)
        if not (due or last):
            return
        skipping = getattr(self.model, "consecutive_skips", None)
        if skipping is not None and int(keras.ops.convert_to_numpy(skipping.value)):
            if self.verbose:
                _print(
                    f"Not saving at step {step}: the last steps were non-finite and "
                    "skipped; the latest checkpoint stays the last good one."
                )
            return
        steps_per_epoch = (self.params or {}).get("steps")
        if self.model.stop_training and steps_per_epoch and step % steps_per_epoch:
            if self.verbose:
                _print(
                    f"Not saving at step {step}: training stopped mid-epoch, off "
                    "the epoch grid a restart resumes on."
                )
            return
        self.save()

    def on_train_end(self, logs=None):
        if self._set_initial_epoch:
            self.model._initial_epoch = None
            self._set_initial_epoch = False


# ---------------------------------------------------------------------------
# Names that moved (importable from here for one release, with a warning)
# ---------------------------------------------------------------------------

_MOVED = {
    "StepIndexedBatches": "keras_gcm.data",
    "image_grid": "keras_gcm.utils",
    "images_to_uint8": "keras_gcm.utils",
    "save_image_grid": "keras_gcm.utils",
}


def __getattr__(name):
    if name in _MOVED:
        import importlib
        import warnings

        warnings.warn(
            f"`keras_gcm.callbacks.{name}` moved to `{_MOVED[name]}.{name}`; import it "
            "from there (the old name will be removed in the next release).",
            DeprecationWarning, stacklevel=2,
        )
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
