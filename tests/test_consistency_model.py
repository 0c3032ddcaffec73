import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras
from keras import ops

import keras_gcm
from keras_gcm import ConsistencyModel, losses, samplers, schedules, time_sampling
from keras_gcm.callbacks import NonFiniteLossError
from keras_gcm.networks import MLP
from tests.helpers import to_numpy
from tests.models import explicit_draws, make_model, randomize_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class RecordingNet(keras.layers.Layer):
    """Records the dropout mask of every call (eager only)."""

    time_inputs = 1

    def __init__(self, seeded, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(2)
        self.dropout = keras.layers.Dropout(0.5, seed=3 if seeded else None)
        self.masks = []

    def build(self, x_shape, c_t_shape=None):
        self.dense.build(x_shape)

    def call(self, x, c_t, training=None):
        mask = self.dropout(ops.ones((ops.shape(x)[0], 64)), training=training)
        try:
            self.masks.append(to_numpy(mask))
        except Exception:  # symbolic build / tracing
            pass
        return self.dense(x) * ops.mean(mask, axis=1, keepdims=True)


@pytest.mark.parametrize("seeded", [True, False], ids=["seeded_dropout", "unseeded_dropout"])
@pytest.mark.parametrize("jvp", ["finite_difference", "analytic"])
def test_teacher_and_student_see_the_same_dropout_mask(seeded, jvp):
    net = RecordingNet(seeded)
    loss = losses.ConsistencyLoss() if jvp == "analytic" else None
    model = ConsistencyModel(net, jvp=jvp, loss=loss, seed=0)
    model.build((None, 2))
    x, z, t, s = explicit_draws(8)
    for _ in range(2):
        net.masks.clear()
        model.compute_consistency_loss(x, training=True, z=z, t=t, s=s)
        student, teacher = net.masks[-2], net.masks[-1]
        assert 0.3 < (student == 0).mean() < 0.7  # dropout is really on
        np.testing.assert_array_equal(student, teacher)
    # ... and the next step draws a new mask.
    first = student
    net.masks.clear()
    model.compute_consistency_loss(x, training=True, z=z, t=t, s=s)
    assert not np.array_equal(net.masks[-2], first)


def test_dropout_replay_inside_the_compiled_train_step():
    """With h = 1e-4, a different teacher mask would blow the loss up by ~1/h."""
    common = dict(step=schedules.ConstantStep(1e-4), loss=losses.ConsistencyLoss(),
                  weighting=keras_gcm.weighting.ConstantWeight(), importance_weighting=False)
    x = keras_gcm.data.toy2d("two_moons", 512, seed=0)
    values = {}
    for rate in (0.0, 0.5):
        model = make_model(dropout=rate, **common)
        model.compile(optimizer=keras.optimizers.SGD(0.0))
        values[rate] = model.fit(x, batch_size=128, epochs=1, verbose=0).history["loss"][0]
    assert values[0.5] < 5 * values[0.0], values


def test_fit_reports_loss_and_mean_h():
    model = make_model()
    model.compile(optimizer=keras_gcm.optimizers.RAdam(1e-3))
    x = keras_gcm.data.toy2d("eight_gaussians", 1024, seed=0)
    history = model.fit(x, batch_size=128, epochs=2, verbose=0).history
    assert set(history) == {"loss", "mean_h", "skipped_steps", "consecutive_skips"}
    assert history["skipped_steps"] == [0, 0]
    # mean of h(t) = 0.005 exp(-3.5 t) under the sine sampler (r never hits s here).
    q = to_numpy(time_sampling.SineTime().sample((200_000,), seed=0))
    t = 0.006 + 0.988 * q
    expected = np.mean(0.005 * np.exp(-3.5 * t))
    assert history["mean_h"][-1] == pytest.approx(expected, rel=0.1)


def test_ema_is_updated_inside_the_train_step():
    model = make_model(ema_decay=0.9, ema_warmup=False, loss=losses.ConsistencyLoss())
    model.compile(optimizer=keras_gcm.optimizers.RAdam(1e-2))
    x = keras_gcm.data.toy2d("two_moons", 64, seed=0)
    weights = []
    for _ in range(4):
        model.train_on_batch(x)
        weights.append([to_numpy(v) for v in model.network.trainable_variables])
    ema = weights[0]  # the first update copies the weights
    for w in weights[1:]:
        ema = [0.9 * e + 0.1 * wi for e, wi in zip(ema, w)]
    for e, want in zip(model.ema_weights, ema):
        np.testing.assert_allclose(to_numpy(e), want, rtol=1e-5, atol=1e-6)
    assert int(to_numpy(model.ema_updates)) == 4
    assert not np.allclose(to_numpy(model.ema_weights[0]), weights[-1][0])


def test_ema_warmup_schedule():
    model = make_model(ema_decay=0.9999, ema_warmup=True)
    got = [float(to_numpy(model._ema_decay(ops.convert_to_tensor(n)))) for n in (0, 1, 10, 10**6)]
    assert got == pytest.approx([0.0, 2 / 11, 11 / 20, 0.9999])


def test_training_learns_the_distribution():
    """A short run lowers the 1-step energy distance far below the untrained model's."""
    data = keras_gcm.data.toy2d("eight_gaussians", 16384, seed=0)
    reference = keras_gcm.data.toy2d("eight_gaussians", 2000, seed=1)
    net = MLP(hidden_units=128, num_blocks=3, seed=0)
    model = ConsistencyModel(net, ema_decay=0.99, seed=0)
    model.compile(optimizer=keras_gcm.optimizers.RAdam(2e-3))
    model.build((None, 2))
    before = keras_gcm.metrics.energy_distance(samplers.one_step(model, 2000, seed=0), reference)
    model.fit(data, batch_size=256, epochs=10, verbose=0)
    after1 = keras_gcm.metrics.energy_distance(samplers.one_step(model, 2000, seed=0), reference)
    after2 = keras_gcm.metrics.energy_distance(samplers.two_step(model, 2000, seed=0), reference)
    print(f"energy distance: untrained {before:.4f}, 1-step {after1:.4f}, 2-step {after2:.4f}")
    assert after1 < 0.25 * before
    assert after2 < 0.25 * before


@pytest.mark.parametrize("preset", ["gcm_cu", "gcm_vu"])
def test_fit_accepts_tf_data_on_every_backend(preset):
    import tensorflow as tf

    vu = preset.endswith("vu")
    net = MLP(hidden_units=16, num_blocks=1, embedding_dim=8, time_inputs=2 if vu else 1)
    model = ConsistencyModel.from_preset(preset, net)
    model.compile(optimizer=keras_gcm.optimizers.RAdam(1e-3))
    x = keras_gcm.data.toy2d("two_moons", 256, seed=0)
    # Without drop_remainder the batch size is unknown while tracing (TF).
    ds = tf.data.Dataset.from_tensor_slices(x).batch(64)
    history = model.fit(ds, epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))


def test_non_finite_loss_stops_training_and_names_the_step():
    import tensorflow as tf

    model = make_model(loss=losses.ConsistencyLoss())
    model.compile(optimizer=keras_gcm.optimizers.RAdam(1e-3))
    x = keras_gcm.data.toy2d("two_moons", 256, seed=0)
    x[130] = np.nan  # batch 3 of 64 (tf.data is not checked up front)
    ds = tf.data.Dataset.from_tensor_slices(x).batch(64)
    guard = keras_gcm.callbacks.NonFiniteLossGuard(max_consecutive_skips=1)
    with pytest.raises(NonFiniteLossError, match=r"step 3\b"):
        model.fit(ds, epochs=1, verbose=0, callbacks=[guard])


def test_nan_in_array_data_is_rejected_before_training():
    model = make_model()
    model.compile()
    x = keras_gcm.data.toy2d("two_moons", 64, seed=0)
    x[3, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.fit(x, batch_size=16, verbose=0)


def test_batch_not_divisible_by_the_mmd_group_is_an_error():
    model = make_model(loss=losses.TimeAwareMMD(4, 0.05))
    model.compile()
    x = keras_gcm.data.toy2d("two_moons", 64, seed=0)
    with pytest.raises(ValueError, match="multiple of 4"):
        model.fit(x, batch_size=30, verbose=0)
    with pytest.raises(ValueError, match="divisible by the MMD group size"):
        model.compute_consistency_loss(x[:6])
    with pytest.raises(ValueError, match="groups"):
        model.fit(x[:62], batch_size=16, verbose=0)  # last batch of 14


def test_times_outside_the_interval_are_an_error():
    model = make_model(vu=True)
    x, z, t, s = explicit_draws(4, vu=True)
    with pytest.raises(ValueError, match=r"t must lie in \[t0, tT\]"):
        model.compute_consistency_loss(x, z=z, t=t + 1.0, s=s)
    with pytest.raises(ValueError, match="s must lie"):
        model.compute_consistency_loss(x, z=z, t=t, s=s - 0.5)
    with pytest.raises(ValueError, match="s <= t"):
        model.compute_consistency_loss(x, z=z, t=s, s=t)
    cu = make_model()
    with pytest.raises(ValueError, match="CU model"):
        cu.compute_consistency_loss(x, z=z, t=t, s=s)


def test_network_with_a_different_output_shape_is_an_error():
    class Wrong(keras.layers.Layer):
        time_inputs = 1

        def build(self, x_shape, c_t_shape=None):
            self.dense = keras.layers.Dense(3)

        def call(self, x, c_t, training=None):
            return self.dense(x)

    model = ConsistencyModel(Wrong())
    with pytest.raises(ValueError, match="output shape must equal its input shape"):
        model.build((None, 2))


def test_vu_sampler_with_a_one_time_input_network_is_an_error():
    with pytest.raises(ValueError, match="two time inputs"):
        ConsistencyModel(MLP(time_inputs=1), time_sampler=time_sampling.VariableUpperLimit())
    cu = make_model()
    with pytest.raises(ValueError, match="needs a VU model"):
        samplers.pushforward(cu, 4)


def test_other_constructor_errors():
    with pytest.raises(ValueError, match="group_size > 1"):
        ConsistencyModel(MLP(), jvp="analytic", loss=losses.TimeAwareMMD(4))
    with pytest.raises(ValueError, match="jvp"):
        ConsistencyModel(MLP(), jvp="numeric")
    with pytest.raises(ValueError, match="ema_decay"):
        ConsistencyModel(MLP(), ema_decay=1.0)
    with pytest.raises(ValueError, match="own loss"):
        ConsistencyModel(MLP()).compile(loss="mse")
    with pytest.raises(ValueError, match="time inputs"):
        class NoTimes(keras.layers.Layer):
            def call(self, x):
                return x
        ConsistencyModel(NoTimes())


def test_defaults_follow_the_network_kind():
    cu = ConsistencyModel(MLP(time_inputs=1))
    vu = ConsistencyModel(MLP(time_inputs=2))
    assert isinstance(cu.time_sampler, time_sampling.ConstantUpperLimit)
    assert isinstance(vu.time_sampler, time_sampling.VariableUpperLimit)
    assert (cu.consistency_loss.group_size, cu.consistency_loss.sigma) == (4, 0.05)
    assert (vu.consistency_loss.group_size, vu.consistency_loss.sigma) == (2, 0.1)


def test_config_roundtrip_and_keras_file_give_identical_samples(tmp_path):
    model = make_model(vu=True, curriculum=schedules.EpsilonHalvingCurriculum(0.5, 10))
    model.compile(optimizer=keras_gcm.optimizers.RAdam(1e-3))
    model.fit(keras_gcm.data.toy2d("two_moons", 256, seed=0), batch_size=64, verbose=0)
    copy = ConsistencyModel.from_config(model.get_config())
    assert copy.get_config() == model.get_config()
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    for sampler in (samplers.one_step, samplers.pushforward):
        np.testing.assert_allclose(sampler(loaded, 64, seed=3), sampler(model, 64, seed=3),
                                   rtol=1e-6, atol=1e-6)
    assert int(to_numpy(loaded.optimizer.iterations)) == 4


_PARITY_SCRIPT = r"""
import json, sys
import numpy as np
import keras
import keras_gcm
from tests.models import explicit_draws, make_model, randomize_weights
out = {}
for preset, vu in (("gcm_cu", False), ("gcm_vu", True), ("cu_a_baseline", False)):
    from keras_gcm.networks import MLP
    net = MLP(hidden_units=32, num_blocks=2, embedding_dim=16, time_inputs=2 if vu else 1)
    model = keras_gcm.ConsistencyModel.from_preset(preset, net)
    model.build((None, 2))
    randomize_weights(net, 0)
    x, z, t, s = explicit_draws(16, vu=vu)
    loss, aux = model.compute_consistency_loss(x, training=False, z=z, t=t, s=s)
    sample = keras_gcm.samplers.one_step(model, 8, seed=0, use_ema=False)
    model.compile()
    evaluation = model.evaluate(x, batch_size=8, verbose=0)  # fixed, portable draws
    out[preset] = [float(keras.ops.convert_to_numpy(loss)),
                   float(keras.ops.convert_to_numpy(aux["mean_h"])),
                   sample.ravel().tolist(), evaluation]
print("PARITY" + json.dumps(out))
"""


@pytest.mark.backends("jax")  # the test itself runs all three backends in subprocesses
def test_loss_and_samples_agree_across_backends():
    results = {}
    for backend in ("jax", "tensorflow", "torch"):
        env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=ROOT)
        proc = subprocess.run([sys.executable, "-c", _PARITY_SCRIPT], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        line = [l for l in proc.stdout.splitlines() if l.startswith("PARITY")]
        assert line, proc.stderr[-3000:]
        results[backend] = json.loads(line[0][len("PARITY"):])
    for preset in results["jax"]:
        ref = results["jax"][preset]
        for backend in ("tensorflow", "torch"):
            got = results[backend][preset]
            # MMD losses cancel terms (2|a-b| - |a-a'| - |b-b'|): float32
            # summation order differs by backend at the 1e-5 level.
            assert got[0] == pytest.approx(ref[0], rel=1e-4), (preset, backend)
            assert got[1] == pytest.approx(ref[1], rel=1e-5), (preset, backend)
            np.testing.assert_allclose(got[2], ref[2], rtol=1e-5, atol=1e-6)
            # evaluate: the same draws on every backend, so the same numbers.
            np.testing.assert_allclose(got[3], ref[3], rtol=1e-4)


def test_analytic_jvp_model_trains_in_the_compiled_step():
    model = make_model(jvp="analytic", loss=losses.ConsistencyLoss(), dropout=0.1)
    model.compile(optimizer=keras_gcm.optimizers.RAdam(1e-3))
    history = model.fit(keras_gcm.data.toy2d("two_moons", 256, seed=0), batch_size=64,
                        epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    assert int(to_numpy(model.ema_updates)) == 8
