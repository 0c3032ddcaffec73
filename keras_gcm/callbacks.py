"""Training callbacks."""

import math
import threading

import keras


class NonFiniteLossError(FloatingPointError):
    """Raised when the training loss becomes NaN or infinite."""


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stops training with an error naming the step at which the loss became
    NaN or infinite.

    `ConsistencyModel.fit` adds it automatically. The loss reported by `fit`
    is a running mean over the epoch, so it turns non-finite at the first
    offending step and stays so. The check is safe for Keras' asynchronous
    callback dispatch (it does not force a device sync in the training
    loop): a failing batch sets `model.stop_training`, and the error, naming
    the first failing step, is raised at the end of the epoch.

    Example:

    >>> model.fit(x, callbacks=[keras_gcm.callbacks.NonFiniteLossGuard()])
    """

    async_safe = True

    def on_train_begin(self, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        iterations = getattr(optimizer, "iterations", None)
        self._epoch_start = (
            int(keras.ops.convert_to_numpy(iterations)) if iterations is not None else 0
        )
        self._lock = threading.Lock()
        self._failure = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._batches = 0

    def on_train_batch_end(self, batch, logs=None):
        value = (logs or {}).get("loss")
        with self._lock:
            self._batches = max(self._batches, batch + 1)
        if value is None or math.isfinite(float(value)):
            return
        step = self._epoch_start + batch + 1
        with self._lock:
            if self._failure is None or step < self._failure[0]:
                self._failure = (step, self._epoch, batch, float(value))
        self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self._epoch_start += self._batches
        if self._failure is not None:
            step, epoch, batch, value = self._failure
            raise NonFiniteLossError(
                f"The training loss became {value} at training step {step} "
                f"(epoch {epoch + 1}, batch {batch + 1}). Check the data for "
                "NaN/inf values and their scale, lower the learning rate, or make "
                "sure the discretisation h(t) is not too small for float32."
            )
