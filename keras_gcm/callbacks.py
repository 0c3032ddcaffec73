"""Training callbacks."""

import math

import keras


class NonFiniteLossError(FloatingPointError):
    """Raised when the training loss becomes NaN or infinite."""


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stops training with an error naming the step at which the loss became
    NaN or infinite.

    `ConsistencyModel.fit` adds it automatically. (The loss reported by `fit`
    is a running mean over the epoch, so it turns non-finite at the first
    offending step and stays so.)

    Example:

    >>> model.fit(x, callbacks=[keras_gcm.callbacks.NonFiniteLossGuard()])
    """

    def on_train_begin(self, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        iterations = getattr(optimizer, "iterations", None)
        self._step = int(keras.ops.convert_to_numpy(iterations)) if iterations is not None else 0
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        value = (logs or {}).get("loss")
        if value is None:
            return
        value = float(value)
        if not math.isfinite(value):
            self.model.stop_training = True
            raise NonFiniteLossError(
                f"The training loss became {value} at training step {self._step} "
                f"(epoch {self._epoch + 1}, batch {batch + 1}). Check the data for "
                "NaN/inf values and their scale, lower the learning rate, or make "
                "sure the discretisation h(t) is not too small for float32."
            )
