"""Skipping non-finite training steps inside the compiled train step.

A training step whose loss, gradients or updated weights are NaN or
infinite is *skipped*: every backend's train step computes the update as
usual and then selects, on a scalar flag, the pre-step values of the
network weights, the optimizer variables (moments and iteration count),
the EMA weights and their update count, and any floating-point network
state (e.g. normalisation statistics). The seed states of the noise, time
and dropout generators do advance, so the next step draws new noise and
times. The stateful steps (TensorFlow, torch) assign
`keras.ops.where(finite, new, old)` per variable; the stateless JAX step
takes all values through one `keras.ops.cond` (`select_all`), which XLA
compiles as fast as the step without the guard (a `where` per variable
made the compile of a small SongUNet step 7x slower on CPU). Three int32
model variables count what happened:

* `skipped_steps`: skipped steps over the model's life;
* `consecutive_skips`: skipped steps in a row (0 after a finite step);
* `first_skipped_step`: the global step number (1-based, counting skipped
  steps) of the first step of the current run of skips, 0 if none.

`keras_gcm.callbacks.NonFiniteLossGuard` stops `fit` after a number of
consecutive skips and `ConsistencyModel.fit` then raises
`NonFiniteLossError` naming the first skipped step, with the model's state
equal to the state after the last finite step.

All the logic is in `keras.ops`, written once; the trainers only call it.
"""

import keras
from keras import ops

__all__ = ["step_is_finite", "select", "select_all", "counter_values"]

COUNTER_NAMES = ("skipped_steps", "consecutive_skips", "first_skipped_step")


def _is_float(value):
    return "float" in keras.backend.standardize_dtype(value.dtype)


def step_is_finite(loss, tensors):
    """Scalar bool: `loss` and every floating-point tensor in `tensors` are finite.

    Args:
        loss: the step's loss.
        tensors: gradients and updated weight values (None entries ignored).

    Returns:
        A scalar boolean tensor.

    Example:

    >>> import numpy as np
    >>> grads = [keras.ops.ones((2,)), keras.ops.array([1.0, np.nan])]
    >>> bool(keras_gcm.nonfinite.step_is_finite(keras.ops.array(0.5), grads))
    False
    """
    checks = [ops.all(ops.isfinite(loss))]
    for value in tensors:
        if value is not None and _is_float(value):
            checks.append(ops.all(ops.isfinite(value)))
    return ops.all(ops.stack(checks))


def select(finite, new_values, old_values):
    """`new` where the step is finite, else `old`, element-wise over two lists.

    Example:

    >>> new, old = [keras.ops.ones((2,))], [keras.ops.zeros((2,))]
    >>> keras.ops.convert_to_numpy(
    ...     keras_gcm.nonfinite.select(keras.ops.array(False), new, old)[0]).tolist()
    [0.0, 0.0]
    """
    return [
        ops.where(finite, new, ops.cast(old, new.dtype))
        for new, old in zip(new_values, old_values)
    ]


def select_all(finite, new_values, old_values):
    """`new_values` if the step is finite, else `old_values`: one `ops.cond`.

    The stateless (JAX) step restores all its values with this single
    conditional; XLA compiles it several times faster than one `where` per
    variable.

    Example:

    >>> new, old = [keras.ops.ones((2,)), keras.ops.ones(())], [keras.ops.zeros((2,)), 3.0]
    >>> [keras.ops.convert_to_numpy(v).tolist() for v in
    ...  keras_gcm.nonfinite.select_all(keras.ops.array(False), new, old)]
    [[0.0, 0.0], 3.0]
    """
    if not new_values:
        return []
    old_values = [ops.cast(old, new.dtype) for new, old in zip(new_values, old_values)]
    return list(ops.cond(finite, lambda: list(new_values), lambda: old_values))


def counter_values(finite, counters, iterations):
    """New `(skipped_steps, consecutive_skips, first_skipped_step)` values.

    Args:
        finite: scalar bool, whether this step was finite.
        counters: the three counters' values before the step.
        iterations: the optimizer's iteration count before the step (finite
            steps only), so this step's global number is
            `iterations + skipped_steps + 1`.

    Returns:
        The three new counter values (int32).

    Example:

    A second non-finite step in a row, after 10 finite steps and 1 skipped one:

    >>> values = keras_gcm.nonfinite.counter_values(
    ...     keras.ops.array(False), [1, 1, 11], 10)
    >>> [int(v) for v in values]
    [2, 2, 11]
    """
    skipped, consecutive, first = (ops.cast(c, "int32") for c in counters)
    bad = ops.cast(ops.logical_not(finite), "int32")
    step = ops.cast(iterations, "int32") + skipped + 1
    first = ops.where(finite, 0, ops.where(consecutive > 0, first, step))
    return skipped + bad, (consecutive + 1) * bad, first
