"""Training on several devices: JAX data parallelism and `tf.distribute`.

`ConsistencyModel.fit` runs unchanged on several devices with the engines
Keras supports:

* **JAX**: `keras.distribution.DataParallel` (`data_parallel`). The train
  step is one SPMD program with a *global* view of the batch: the noise,
  the times and the dropout masks are drawn for the whole global batch from
  replicated seed states and the consistency loss (MMD groups included) is
  exactly the global one, whatever way the batch is split across devices,
  even when an MMD group straddles two devices.
* **TensorFlow**: `tf.distribute.MirroredStrategy` (`mirrored_strategy`).
  Each replica trains on its slice of the global batch; the loss is divided
  by the number of replicas and the gradients summed, every replica draws
  its own rows of the global batch's noise and times (different noise on
  every replica, equal to one device's draws), and MMD groups stay inside a
  replica (a global batch size that is a multiple of replicas x M).
* **PyTorch**: single device only (`distribution_scope` raises for more).

Build, compile and fit inside `distribution_scope(num_devices)` (or the
scope of the objects above). See the docs page "Training on several
devices".
"""

import contextlib

import numpy as np
import keras


def _backend():
    return keras.backend.backend()


def _require(backend, what):
    if _backend() != backend:
        raise ValueError(
            f"`{what}` needs the {backend} backend; KERAS_BACKEND is "
            f"{_backend()!r}. Use `keras_gcm.distribute.distribution_scope`, "
            "which picks the engine of the current backend."
        )


def _check_count(num_devices, available, kind, hint):
    if num_devices is None:
        return len(available)
    num_devices = int(num_devices)
    if num_devices < 1:
        raise ValueError(f"`num_devices` must be >= 1. Received: {num_devices}")
    if num_devices > len(available):
        raise ValueError(
            f"Asked for {num_devices} devices but only {len(available)} {kind} "
            f"device(s) are visible: {available}. {hint}"
        )
    return num_devices


def data_parallel(num_devices=None, devices=None):
    """A JAX `keras.distribution.DataParallel` over the first `num_devices` devices.

    Variables (weights, EMA weights, optimizer slots, seed states) are
    replicated; each batch is split along its first axis. The consistency
    loss is computed on the global batch (SPMD), so N devices train exactly
    like one device on the same global batch. For several hosts, call
    `keras.distribution.initialize()` on every host first and build a
    `keras.distribution.DeviceMesh` over `keras.distribution.list_devices()`
    (this function uses all visible devices when `num_devices` is None).

    Args:
        num_devices: int or None (all devices: accelerators if any, else CPU).
        devices: optional explicit list of device names (as returned by
            `keras.distribution.list_devices()`); overrides `num_devices`.

    Returns:
        A `keras.distribution.DataParallel`.

    Example:

    Two devices (JAX; not run in the doctests, which see one device):

    >>> distribution = keras_gcm.distribute.data_parallel(2)  # doctest: +SKIP
    >>> with distribution.scope():  # doctest: +SKIP
    ...     model = keras_gcm.ConsistencyModel.from_preset("gcm_cu", network)
    ...     model.compile(optimizer=keras_gcm.optimizers.RAdam(1e-3))
    ...     model.fit(data, batch_size=512)
    """
    _require("jax", "data_parallel")
    if devices is None:
        available = keras.distribution.list_devices()
        count = _check_count(
            num_devices, available, "JAX",
            "On a CPU-only machine, simulate devices with "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N (set before "
            "JAX is imported).",
        )
        devices = available[:count]
    return keras.distribution.DataParallel(devices=list(devices))


# One strategy per device set: two MirroredStrategy objects over the same
# devices in one process can mix up their collective-op instances.
_STRATEGIES = {}


def mirrored_strategy(num_devices=None, devices=None):
    """A `tf.distribute.MirroredStrategy` over the first `num_devices` devices.

    GPUs are used when there are any, else the logical CPU devices (split
    the CPU with `tf.config.set_logical_device_configuration` to try it
    without accelerators). The same strategy object is returned for the
    same devices.

    Args:
        num_devices: int or None (all GPUs, or all logical CPUs).
        devices: optional explicit list of device names
            (e.g. `["/gpu:0", "/gpu:1"]`); overrides `num_devices`.

    Returns:
        A `tf.distribute.MirroredStrategy`. Build and compile the model in
        its `scope()`.

    Example:

    Two devices (TensorFlow; not run in the doctests, which see one device):

    >>> strategy = keras_gcm.distribute.mirrored_strategy(2)  # doctest: +SKIP
    >>> with strategy.scope():  # doctest: +SKIP
    ...     model = keras_gcm.ConsistencyModel.from_preset("gcm_cu", network)
    ...     model.compile(optimizer=keras_gcm.optimizers.RAdam(1e-3))
    >>> model.fit(data, batch_size=512)  # doctest: +SKIP
    """
    _require("tensorflow", "mirrored_strategy")
    import tensorflow as tf

    if devices is None:
        pool = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        available = [d.name for d in pool]
        count = _check_count(
            num_devices, available, "TensorFlow",
            "On a CPU-only machine, split the CPU into logical devices with "
            "tf.config.set_logical_device_configuration before TensorFlow "
            "initialises.",
        )
        devices = available[:count]
    key = tuple(devices)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = tf.distribute.MirroredStrategy(list(devices))
    return _STRATEGIES[key]


def distribution_scope(num_devices=None):
    """A context manager that trains on `num_devices` devices with the
    current backend's engine.

    JAX: the scope of `data_parallel(num_devices)`; TensorFlow: the scope of
    `mirrored_strategy(num_devices)`; with `num_devices=1` a scope that does
    nothing (plain single-device training). PyTorch supports one device only.
    Build, compile **and fit** inside the scope (JAX distributes the data in
    `fit` only while its distribution is set).

    Args:
        num_devices: int or None (all visible devices).

    Returns:
        A context manager.

    Raises:
        ValueError: with PyTorch and more than one device, or when fewer
            devices are visible than asked for.

    Example:

    Two devices (not run in the doctests, which see one device):

    >>> with keras_gcm.distribute.distribution_scope(2):  # doctest: +SKIP
    ...     model = keras_gcm.ConsistencyModel.from_preset("gcm_vu", network)
    ...     model.compile(optimizer=keras_gcm.optimizers.RAdam(1e-3))
    ...     model.fit(data, batch_size=512)
    """
    if num_devices is not None and int(num_devices) == 1:
        return contextlib.nullcontext()
    backend = _backend()
    if backend == "jax":
        return data_parallel(num_devices).scope()
    if backend == "tensorflow":
        return mirrored_strategy(num_devices).scope()
    raise ValueError(
        f"Training on several devices is not supported with the {backend} "
        "backend: use jax (keras.distribution.DataParallel) or tensorflow "
        "(tf.distribute.MirroredStrategy) for several devices."
    )


def check_replica_batches(x, batch_size, multiple, reason):
    """Checks that every batch of an array epoch is a multiple of `multiple`.

    Used by the train steps before `fit` starts, so that a bad split fails
    at once rather than at the last (partial) batch of the first epoch.

    Args:
        x: the training data given to `fit` (only arrays are checked).
        batch_size: `fit`'s batch size (None: Keras' default 32).
        multiple: int, the number every batch size must be a multiple of.
        reason: str, why (ends the error message).

    Raises:
        ValueError: naming the batch sizes that do not divide.

    Example:

    >>> import numpy as np
    >>> keras_gcm.distribute.check_replica_batches(np.zeros((64, 2)), 16, 8, "MMD groups of 8")
    >>> keras_gcm.distribute.check_replica_batches(np.zeros((60, 2)), 16, 8, "MMD groups of 8")
    Traceback (most recent call last):
    ...
    ValueError: Every batch size must be a multiple of 8: ...
    """
    if x is None or isinstance(x, (dict, list, tuple)) or hasattr(x, "element_spec"):
        return
    if callable(getattr(x, "__next__", None)) or not hasattr(x, "shape"):
        return
    num_examples = int(np.shape(x)[0])
    batch = int(batch_size or 32)
    last = num_examples % batch
    bad = [size for size in {batch, last or batch} if size % multiple]
    if bad:
        raise ValueError(
            f"Every batch size must be a multiple of {multiple}: {reason}. "
            f"batch_size={batch} and {num_examples} examples give batches of "
            f"{batch} and {last or batch}. Use a batch size and a number of "
            f"examples that are multiples of {multiple} (or a tf.data "
            f"pipeline with drop_remainder=True)."
        )
