"""Argument checks at the public boundary: clear errors that name the argument.

Public constructors and functions call these before doing any work, so that
`MLP(hidden_units="32")` or `one_step(model, 10.7)` fail with a message that
names the argument and says what was expected, instead of a type error from
deep inside a layer (or a silent `int(10.7) == 10`).
"""

import numbers

import numpy as np


def _is_int(value):
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(
        value, (bool, np.bool_)
    )


def check_int(value, name, minimum=None):
    """`value` as an int; a `TypeError` / `ValueError` naming `name` otherwise.

    Accepts Python and numpy integers (and floats with an integral value,
    e.g. `4.0`); rejects strings, booleans and non-integral floats.

    Args:
        value: the argument.
        name: the argument's name, used in the message.
        minimum: optional smallest allowed value.

    Returns:
        `int(value)`.

    Example:

    >>> keras_gcm.validation.check_int(4, "group_size", minimum=1)
    4
    """
    if not _is_int(value):
        if isinstance(value, (numbers.Real, np.floating)) and not isinstance(
            value, (bool, np.bool_)
        ) and float(value).is_integer():
            value = int(value)
        else:
            raise TypeError(
                f"`{name}` must be an integer; received {value!r} of type "
                f"{type(value).__name__}. Pass an int, e.g. {name}="
                f"{_suggestion(value)}."
            )
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}; received {value}.")
    return value


def check_seed(value, name="seed", allow_none=True):
    """A seed: None (where allowed) or an int >= 0; clear errors otherwise.

    Example:

    >>> keras_gcm.validation.check_seed(0)
    0
    """
    if value is None and allow_none:
        return None
    if value is None or not _is_int(value):
        expected = "None or an integer >= 0" if allow_none else "an integer >= 0"
        raise TypeError(
            f"`{name}` must be {expected}; received {value!r} of type "
            f"{type(value).__name__}."
        )
    if int(value) < 0:
        raise ValueError(
            f"`{name}` must be an integer >= 0; received {int(value)}. Use a "
            "non-negative seed, e.g. seed=0."
        )
    return int(value)


def check_float(value, name, minimum=None, exclusive_minimum=None):
    """`value` as a float; a `TypeError` / `ValueError` naming `name` otherwise.

    Example:

    >>> keras_gcm.validation.check_float(0.05, "sigma", exclusive_minimum=0.0)
    0.05
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (numbers.Real, np.floating, np.integer)
    ):
        raise TypeError(
            f"`{name}` must be a number; received {value!r} of type "
            f"{type(value).__name__}."
        )
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"`{name}` must be finite; received {value}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; received {value}.")
    if exclusive_minimum is not None and value <= exclusive_minimum:
        raise ValueError(f"`{name}` must be > {exclusive_minimum}; received {value}.")
    return value


def _suggestion(value):
    try:
        return str(int(float(value)))
    except (TypeError, ValueError):
        return "4"


def _split(element):
    """`(x, has_labels, y)` of one pipeline element: `x`, `(x,)`, `(x, y[, w])`."""
    if isinstance(element, dict):
        return None, False, None
    if isinstance(element, (tuple, list)):
        has_labels = len(element) > 1 and element[1] is not None
        return element[0], has_labels, element[1] if has_labels else None
    return element, False, None


def peek_first_batch(x, with_labels=False):
    """The first batch of a data pipeline, without consuming what the user passed.

    * `tf.data.Dataset`: read through `x.take(1)` (the dataset is unchanged);
    * `keras.utils.PyDataset`: `x[0]`;
    * a Python generator: its first element is read and a generator that
      yields it again, then the rest, is returned in place of `x`.

    Args:
        x: the `x` argument of `fit`.
        with_labels: also return the first batch's labels.

    Returns:
        None if `x` is not a pipeline (arrays are checked whole), else
        `(batch, has_labels, x)`: the first batch's data as a numpy array
        (None for dict elements), whether its elements carry labels, and the
        `x` to train on; with `with_labels=True`, `(batch, has_labels,
        labels, x)`, `labels` the first batch's labels as a numpy array
        (None when there are none).

    Raises:
        ValueError: if the pipeline is empty.

    Example:

    >>> import numpy as np
    >>> def batches():
    ...     for i in range(3):
    ...         yield np.full((4, 2), i, "float32")
    >>> batch, has_labels, x = keras_gcm.validation.peek_first_batch(batches())
    >>> batch.shape, has_labels, [float(b[0, 0]) for b in x]
    ((4, 2), False, [0.0, 1.0, 2.0])
    """
    import types

    if hasattr(x, "element_spec") and hasattr(x, "take"):
        elements = list(x.take(1))
        if not elements:
            raise ValueError(
                "The training data set `x` is empty (a tf.data.Dataset with no "
                "elements): check its source and any filter / take / batch "
                "with drop_remainder=True on fewer examples than one batch."
            )
        return _peeked(elements[0], x, with_labels)
    try:
        import keras

        is_py_dataset = isinstance(x, keras.utils.PyDataset)
    except ImportError:  # pragma: no cover
        is_py_dataset = False
    if is_py_dataset:
        if getattr(x, "num_batches", None) == 0:
            raise ValueError(
                f"The training data set `x` ({type(x).__name__}) is empty: its "
                "length is 0 batches."
            )
        try:
            element = x[0]
        except IndexError:
            raise ValueError(
                f"The training data set `x` ({type(x).__name__}) is empty: "
                "x[0] raised IndexError."
            ) from None
        return _peeked(element, x, with_labels)
    if isinstance(x, types.GeneratorType):
        try:
            element = next(x)
        except StopIteration:
            raise ValueError(
                "The training generator `x` is empty: it yielded no batch."
            ) from None

        def replay(first, rest):
            yield first
            yield from rest

        return _peeked(element, replay(element, x), with_labels)
    return None


def _peeked(element, x, with_labels):
    batch, has_labels, labels = _split(element)
    if with_labels:
        return _as_numpy(batch), has_labels, _as_numpy(labels), x
    return _as_numpy(batch), has_labels, x


def _as_numpy(batch):
    if batch is None:
        return None
    import keras

    if isinstance(batch, dict):
        return None
    try:
        return np.asarray(keras.ops.convert_to_numpy(batch))
    except Exception:
        return np.asarray(batch)


def network_takes_labels(network):
    """Whether `network` is class-conditional (takes `class_labels`).

    A network with a `label_dim` attribute takes labels when it is > 0;
    otherwise when its `call` has a `class_labels` argument.

    Example:

    >>> keras_gcm.validation.network_takes_labels(keras_gcm.networks.MLP(hidden_units=8))
    False
    """
    import inspect

    label_dim = getattr(network, "label_dim", None)
    if label_dim is not None:
        return bool(label_dim)
    try:
        parameters = inspect.signature(network.call).parameters
    except (TypeError, ValueError):
        return True
    return "class_labels" in parameters or any(
        p.kind == p.VAR_KEYWORD for p in parameters.values()
    )


def _concrete_values(labels):
    """`labels` as a numpy array, or None for symbolic / traced tensors."""
    import keras

    if isinstance(labels, keras.KerasTensor):
        return None
    if isinstance(labels, np.ndarray):
        return labels
    if keras.backend.backend() == "torch":
        import torch

        if torch.compiler.is_compiling():  # reading values would break the graph
            return None
    try:
        return np.asarray(keras.ops.convert_to_numpy(labels))
    except Exception:  # jax tracers and tf graph tensors cannot be read
        return None


def check_class_labels(labels, label_dim, name="class_labels"):
    """Refuses integer class indices outside `[0, label_dim)` with a clear error.

    The index `label_dim` itself is accepted: it is the "no label" class of
    the label-conditional networks (what label dropout and classifier-free
    guidance feed). Only concrete values can be checked: a `KerasTensor`, a
    JAX tracer, a TensorFlow graph tensor or a tensor seen by
    `torch.compile` is let through, which is why the library's entry points
    (the samplers, `ConsistencyModel.fit` / `evaluate` with array labels)
    call this on the host before any compiled step. One-hot `(B, label_dim)`
    rows and non-integer arrays are left to the network's own checks.

    Args:
        labels: `(B,)` class indices (array-like or eager tensor), or None.
        label_dim: the network's number of classes.
        name: the argument's name, used in the message.

    Raises:
        ValueError: if an integer label is negative or greater than `label_dim`.

    Example:

    >>> import numpy as np
    >>> keras_gcm.validation.check_class_labels(np.array([0, 3, 4]), 4)
    >>> keras_gcm.validation.check_class_labels(np.array([0, 9]), 4)
    Traceback (most recent call last):
    ...
    ValueError: `class_labels` must lie in [0, label_dim) = [0, 4) ...
    """
    if labels is None:
        return
    values = _concrete_values(labels)
    if values is None or values.ndim != 1 or values.dtype.kind not in "iu":
        return
    label_dim = int(label_dim)
    bad = values[(values < 0) | (values > label_dim)]
    if not bad.size:
        return
    largest = int(values.max())
    hint = (
        f" (the largest label, {largest}, needs label_dim >= {largest + 1})"
        if largest > label_dim else ""
    )
    raise ValueError(
        f"`{name}` must lie in [0, label_dim) = [0, {label_dim}) (or equal "
        f"label_dim = {label_dim} for 'no label'). Received out-of-range labels, "
        f"e.g. {np.unique(bad)[:5].tolist()}: relabel your classes 0..N-1 or build "
        f"the network with label_dim=N for N classes{hint}."
    )
