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
