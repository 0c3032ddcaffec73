"""Nothing lost when the loss turns non-finite (issue 15, items 1-3).

Fault injection on every backend: a network that returns NaN from step k on,
and a learning rate of 1e8. Each run must stop with `NonFiniteLossError`
naming step k, leave the weights, EMA and optimizer moments finite and equal
to those after step k - 1, keep the model readable and savable (JAX: no
donated buffer), and leave a latest checkpoint that resumes cleanly.
"""

import numpy as np
import pytest
import keras
from keras import ops

import keras_gcm
from keras_gcm import ConsistencyModel
from keras_gcm.callbacks import NonFiniteLossError, NonFiniteLossGuard
from keras_gcm.callbacks import ResumableCheckpoint
from keras_gcm.networks import MLP
from tests.models import randomize_weights

BATCH = 8


@keras.saving.register_keras_serializable(package="keras_gcm_tests")
class NaNFromStep(keras.layers.Layer):
    """An MLP whose output is NaN from training step `k` (1-based) on.

    The step is read from the optimizer's iteration count (k - 1 before
    step k; skipped steps do not advance it, so every later step is NaN too).
    """

    time_inputs = 1

    def __init__(self, k, **kwargs):
        super().__init__(**kwargs)
        self.k = k
        self.inner = MLP(hidden_units=16, num_blocks=1, embedding_dim=8, seed=0)
        object.__setattr__(self, "_optimizer", None)

    def call(self, x, c_t, training=None):
        out = self.inner(x, c_t, training=training)
        if self._optimizer is None:
            return out
        bad = ops.cast(self._optimizer.iterations.value, "int32") >= self.k - 1
        # (Added, not multiplied: the gradient of `where(bad, nan * out, out)`
        # is NaN even where `bad` is False.)
        return out + ops.where(bad, float("nan"), 0.0)

    def get_config(self):
        return {**super().get_config(), "k": self.k}


class StateRecorder(keras.callbacks.Callback):
    """The guarded state (weights, EMA, EMA count, optimizer variables) at
    every epoch end; with one step per epoch, after every step."""

    def on_train_begin(self, logs=None):
        self.states = [_guarded_state(self.model)]

    def on_epoch_end(self, epoch, logs=None):
        self.states.append(_guarded_state(self.model))


def _guarded_state(model):
    values = model._guarded_variables()
    return [np.array(keras.ops.convert_to_numpy(v.value)) for v in values]


def _data():
    return keras_gcm.data.toy2d("two_moons", BATCH, seed=0)


def _model(network, learning_rate=1e-3):
    model = ConsistencyModel(network, seed=0, loss=keras_gcm.losses.ConsistencyLoss())
    model.build((None, 2))
    randomize_weights(network, 0)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    model.optimizer.build(model.trainable_variables)
    return model


def _assert_stopped_at(model, recorder, error, k, tmp_path):
    assert error.step == k
    assert f"training step {k}" in str(error)
    now = _guarded_state(model)
    expected = recorder.states[k - 1]  # after step k - 1
    for a, b in zip(now, expected):
        assert np.all(np.isfinite(a))
        np.testing.assert_array_equal(a, b)
    assert int(ops.convert_to_numpy(model.first_skipped_step.value)) == k
    # Readable and savable (under JAX: no deleted / donated buffer).
    path = str(tmp_path / "after_failure.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    for a, b in zip(loaded.network.get_weights(), model.network.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_nan_network_stops_at_step_k_with_the_state_of_step_k_minus_1(tmp_path):
    k = 4
    network = NaNFromStep(k)
    model = _model(network)
    object.__setattr__(network, "_optimizer", model.optimizer)
    recorder = StateRecorder()
    ckpt_dir = tmp_path / "ckpt"
    with pytest.raises(NonFiniteLossError) as info:
        model.fit(
            _data(), batch_size=BATCH, epochs=30, shuffle=False, verbose=0,
            callbacks=[recorder, ResumableCheckpoint(ckpt_dir, verbose=0),
                       NonFiniteLossGuard(max_consecutive_skips=3)],
        )
    _assert_stopped_at(model, recorder, info.value, k, tmp_path)
    # Training stopped at the limit: k - 1 finite steps and 3 skipped ones.
    assert len(recorder.states) - 1 == k - 1 + 3
    assert int(ops.convert_to_numpy(model.skipped_steps.value)) == 3
    # The latest checkpoint is the last finite epoch end, and resumes cleanly.
    assert ResumableCheckpoint.latest_step(ckpt_dir) == k - 1
    fresh = _model(NaNFromStep(10**6))
    history = fresh.fit(
        _data(), batch_size=BATCH, epochs=k + 2, shuffle=False, verbose=0,
        callbacks=[ResumableCheckpoint(ckpt_dir, verbose=0)],
    ).history
    assert len(history["loss"]) == 3 and np.all(np.isfinite(history["loss"]))
    assert history["skipped_steps"][-1] == 0


def test_learning_rate_1e8_stops_with_the_last_finite_state(tmp_path):
    network = MLP(hidden_units=16, num_blocks=1, embedding_dim=8, seed=0)
    model = _model(network, learning_rate=1e8)
    recorder = StateRecorder()
    with pytest.raises(NonFiniteLossError) as info:
        model.fit(
            _data(), batch_size=BATCH, epochs=40, shuffle=False, verbose=0,
            callbacks=[recorder, NonFiniteLossGuard(max_consecutive_skips=2)],
        )
    k = info.value.step
    assert 2 <= k <= 30
    _assert_stopped_at(model, recorder, info.value, k, tmp_path)


def test_a_transient_non_finite_step_is_skipped_and_training_goes_on():
    import tensorflow as tf

    model = _model(MLP(hidden_units=16, num_blocks=1, embedding_dim=8, seed=0))
    x = keras_gcm.data.toy2d("two_moons", 64, seed=0)
    x[20] = np.nan  # batch 3 of 8 (only the first batch of tf.data is checked)
    ds = tf.data.Dataset.from_tensor_slices(x).batch(BATCH)
    history = model.fit(ds, epochs=2, verbose=0).history
    assert history["skipped_steps"] == [1, 2]
    assert np.all(np.isfinite(history["loss"]))
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 14
    for v in model.network.trainable_variables + model.ema_weights:
        assert np.all(np.isfinite(ops.convert_to_numpy(v.value)))
    # With a limit of 1 the first bad step stops the run, naming it.
    model = _model(MLP(hidden_units=16, num_blocks=1, embedding_dim=8, seed=0))
    with pytest.raises(NonFiniteLossError, match=r"training step 3\b"):
        model.fit(ds, epochs=1, verbose=0,
                  callbacks=[NonFiniteLossGuard(max_consecutive_skips=1)])
