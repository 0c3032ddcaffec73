"""Keras conventions: evaluate / validation, custom networks, generate / predict,
export, TensorBoard (issue 13, items 1, 2, 4, 6, 7)."""

import glob
import os
import re

import numpy as np
import pytest
import keras

import keras_gcm
from keras_gcm import ConsistencyModel, portable_random, samplers, schedules
from keras_gcm.one_step_generator import OneStepGenerator
from keras_gcm.optimizers import RAdam
from tests.helpers import to_numpy
from tests.models import make_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKEND = keras.backend.backend()


def _data(n, seed):
    return keras_gcm.data.toy2d("two_moons", n, seed=seed)


def _trained(epochs=2, **kwargs):
    model = make_model(**kwargs)
    model.compile(optimizer=RAdam(1e-3))
    model.fit(_data(512, 0), batch_size=64, epochs=epochs, verbose=0)
    return model


@pytest.fixture(scope="module")
def trained():
    """A CU model after 16 steps (shared: tests must not change it)."""
    keras.utils.set_random_seed(0)
    return _trained()


def _state(variables):
    return [to_numpy(v.value).copy() for v in variables]


# ------------------------------------------------------------- 1. evaluate
def test_evaluate_is_the_loss_on_fixed_draws_and_leaves_training_alone():
    model = make_model()
    model.compile(optimizer=RAdam(1e-3))
    val = _data(256, 1)
    seeds = [model.noise_seed_generator.state] + [
        layer.seed_generator.state for layer in model.time_sampler._flatten_layers()
        if hasattr(layer, "seed_generator")]
    before = _state(seeds)
    first = model.evaluate(val, batch_size=256, verbose=0, return_dict=True)
    second = model.evaluate(val, batch_size=256, verbose=0, return_dict=True)
    assert first == second  # the same draws every call
    assert first["loss"] > 0 and np.isfinite(first["loss"])
    for a, b in zip(before, _state(seeds)):  # training's random streams untouched
        np.testing.assert_array_equal(a, b)
    # The documented draws of batch 0: noise and times from (evaluation_seed, 0).
    seed = model.evaluation_seed
    z = portable_random.normal(val.shape, seed, 0, stream=0)
    streams = iter(range(2, 10))
    t, s = model.time_sampler.sample(
        256, seed=lambda shape: portable_random.uniform(shape, seed, 0, next(streams)),
        group_size=model.consistency_loss.group_size if model.consistency_loss.shared_time else 1)
    loss, aux = model.compute_consistency_loss(val, training=False, z=z, t=t, s=s)
    # (Compiled vs eager float32: the MMD's cancelling terms differ at ~1e-5.)
    assert first["loss"] == pytest.approx(float(to_numpy(loss)), rel=1e-4)
    assert first["mean_h"] == pytest.approx(float(to_numpy(aux["mean_h"])), rel=1e-5)
    # Batch 1 of a two-batch evaluation sees other draws than batch 0.
    halves = [model.evaluate(val[:128], batch_size=128, verbose=0),
              model.evaluate(val[128:], batch_size=128, verbose=0)]
    both = model.evaluate(val, batch_size=128, verbose=0)
    assert both[0] != pytest.approx(np.mean([h[0] for h in halves]), rel=1e-7)


def test_validation_loss_is_real_comparable_and_decreases():
    train, val = _data(2048, 0), _data(256, 1)

    def run(epochs=3, **fit_kwargs):
        keras.utils.set_random_seed(7)
        model = make_model()
        model.compile(optimizer=RAdam(2e-3))
        initial = model.evaluate(val, batch_size=128, verbose=0)[0]
        history = model.fit(train, batch_size=128, epochs=epochs, verbose=0, **fit_kwargs)
        return model, initial, history.history

    model, initial, history = run(validation_data=(val,))
    val_loss = history["val_loss"]
    assert np.all(np.isfinite(val_loss)) and min(val_loss) > 0
    assert np.all(np.diff([initial] + val_loss) < 0)  # it decreases while training
    assert val_loss[-1] < 0.9 * initial
    # The same draws at every epoch: val_mean_h does not move, and the last
    # val_loss is evaluate() on the same weights.
    assert len(set(history["val_mean_h"])) == 1
    final = model.evaluate(val, batch_size=128, verbose=0, return_dict=True)
    assert final["loss"] == pytest.approx(val_loss[-1], rel=1e-6)
    # Validating does not perturb training: same losses and weights as without.
    plain, _, plain_history = run()
    np.testing.assert_allclose(history["loss"], plain_history["loss"], rtol=1e-5)
    for a, b in zip(_state(model.trainable_variables), _state(plain.trainable_variables)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # validation_split gives a val_loss too.
    _, _, split_history = run(epochs=1, validation_split=0.25)
    assert np.isfinite(split_history["val_loss"][0]) and split_history["val_loss"][0] > 0


def test_evaluate_with_ema_and_curriculum(trained):
    val = _data(256, 1)
    raw = trained.evaluate(val, batch_size=128, verbose=0)

    def copy(**overrides):
        model = ConsistencyModel.from_config({**trained.get_config(), **overrides})
        model.build((None, 2))
        model.set_weights(trained.get_weights())
        model.compile(optimizer=RAdam(1e-3))
        return model

    with_ema = copy(evaluate_with_ema=True).evaluate(val, batch_size=128, verbose=0)
    swapped = copy()
    swapped.copy_ema_to_network()  # the raw weights become the EMA
    np.testing.assert_allclose(with_ema, swapped.evaluate(val, batch_size=128, verbose=0),
                               rtol=1e-5)
    assert with_ema[0] != pytest.approx(raw[0], rel=1e-3)
    # A curriculum changes epsilon during training, not the evaluation objective.
    curriculum = make_model(curriculum=schedules.EpsilonHalvingCurriculum(0.5, 10))
    plain = make_model()
    for m in (curriculum, plain):
        m.compile(optimizer=RAdam(1e-3))
    np.testing.assert_allclose(curriculum.evaluate(val, batch_size=128, verbose=0),
                               plain.evaluate(val, batch_size=128, verbose=0), rtol=1e-6)


# ----------------------------------------------------- 2. custom networks
def _docs_code():
    with open(os.path.join(ROOT, "docs", "custom_networks.md")) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


def test_custom_networks_page_runs_and_the_models_work(tmp_path):
    blocks = _docs_code()
    assert len(blocks) == 2
    namespace = {}
    for block in blocks:
        exec(compile(block, "docs/custom_networks.md", "exec"), namespace)
    model, vu_model = namespace["model"], namespace["vu_model"]
    assert not model.network._call_has_training_arg  # no `training` argument
    assert model.time_inputs == 1 and vu_model.time_inputs == 2
    for m in (model, vu_model):  # every sampler path works and learned something
        for samples in (m.generate(256, seed=0), m.generate(256, steps=2, seed=0),
                        samplers.one_step(m, 256, seed=0, use_ema=False)):
            assert samples.shape == (256, 2) and np.all(np.isfinite(samples))
            assert 0.3 < np.std(samples) < 2.0
    path = tmp_path / "points.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.generate(64, seed=1), model.generate(64, seed=1),
                               rtol=1e-6, atol=1e-6)


def test_a_network_without_training_argument_samples_and_evaluates():
    class Net(keras.layers.Layer):
        time_inputs = 1

        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x, c_t):
            return self.dense(x) * keras.ops.expand_dims(c_t, -1)

    model = ConsistencyModel(Net(), seed=0)
    model.compile(optimizer=RAdam(1e-3))
    model.fit(_data(256, 0), batch_size=64, verbose=0)
    assert samplers.two_step(model, 8, seed=0).shape == (8, 2)
    assert np.isfinite(model.evaluate(_data(64, 1), batch_size=64, verbose=0)[0])


# ------------------------------------------------- 7. generate and predict
def test_generate_mirrors_the_samplers_with_the_ema(trained):
    model = trained

    def close(a, b):  # (other batch sizes may round differently under TensorFlow)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)

    cu_times = (0.994, 0.8, 0.4)
    close(model.generate(50, seed=3), samplers.one_step(model, 50, seed=3))
    close(model.generate(50, steps=2, seed=3), samplers.two_step(model, 50, seed=3))
    close(model.generate(50, times=cu_times, seed=3, batch_size=16),
          samplers.restart(model, 50, times=cu_times, seed=3))
    raw = model.generate(50, seed=3, use_ema=False)
    assert np.abs(raw - model.generate(50, seed=3)).max() > 1e-4  # EMA != raw
    with pytest.raises(ValueError, match="times"):
        model.generate(10, steps=3)
    vu = _trained(vu=True)
    grid = (0.994, 0.5, 0.006)
    close(vu.generate(20, times=grid, seed=1), samplers.pushforward(vu, 20, times=grid, seed=1))


def test_predict_is_the_raw_one_step_map(trained):
    model = trained
    z = np.random.default_rng(0).standard_normal((40, 2)).astype("float32")
    predicted = model.predict(z, batch_size=16, verbose=0)
    raw = to_numpy(model.g(model.interpolant.sigma(model.tT) * model.interpolant.noise_std * z, np.full(40, model.tT, "float32"),
                           np.full(40, model.t0, "float32")))
    np.testing.assert_allclose(predicted, raw, rtol=1e-5, atol=1e-6)
    ema = to_numpy(OneStepGenerator(model)(z))
    assert np.abs(predicted - ema).max() > 1e-4


# ------------------------------------------------------------- 4. export
class LabelNet(keras.layers.Layer):
    """A tiny class-conditional CU network."""

    time_inputs = 1
    label_dim = 3

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.embed = keras.layers.Embedding(3, 2)
        self.dense = keras.layers.Dense(2)

    def call(self, x, c_t, class_labels=None, training=None):
        h = keras.ops.concatenate([x, keras.ops.expand_dims(c_t, -1)], -1)
        if class_labels is None:  # Keras traces the model once without labels
            return self.dense(h)
        return self.dense(h) + self.embed(class_labels)


def _ema_one_step(model, z, labels=None):
    n = z.shape[0]
    return to_numpy(model.g(model.interpolant.sigma(model.tT) * model.interpolant.noise_std * z, np.full(n, model.tT, "float32"),
                            np.full(n, model.t0, "float32"), labels, False,
                            model.network_values(use_ema=True)))


def _export_and_load(model, path):
    """Exports `model`, loads the artifact; returns it as a numpy function."""
    if BACKEND == "torch":
        import torch

        model.export(path + ".pt2", verbose=False)
        program = torch.export.load(path + ".pt2").module()
        return lambda *inputs: program(*[torch.as_tensor(v) for v in inputs]).detach().numpy()
    import tensorflow as tf

    model.export(path, verbose=False)
    artifact = tf.saved_model.load(path)
    return lambda *inputs: artifact.serve(*[tf.constant(v) for v in inputs]).numpy()


def test_export_after_sampling_gives_the_ema_one_step_generator(trained, tmp_path):
    model = trained
    samplers.one_step(model, 8, seed=0)  # fills the sampler cache
    model.generate(8, steps=2, seed=0)
    exported = _export_and_load(model, str(tmp_path / "generator"))
    for n in (5, 33):  # any batch size
        z = np.random.default_rng(n).standard_normal((n, 2)).astype("float32")
        np.testing.assert_allclose(exported(z), _ema_one_step(model, z), rtol=1e-5, atol=1e-5)
    # The artifact's samples are the sampler's for the same noise.
    z = samplers._noise(0, 0, 8, (2,), 1)[0]
    np.testing.assert_allclose(exported(z), samplers.one_step(model, 8, seed=0),
                               rtol=1e-5, atol=1e-5)


def test_export_of_a_class_conditional_model_takes_labels(tmp_path):
    model = ConsistencyModel(LabelNet(), seed=0)
    model.compile(optimizer=RAdam(1e-2))
    x = _data(256, 0)
    labels = (np.arange(256) % 3).astype("int32")
    model.fit(x, labels, batch_size=64, epochs=2, verbose=0)
    z = np.random.default_rng(0).standard_normal((6, 2)).astype("float32")
    y = np.array([0, 1, 2, 2, 1, 0], "int32")
    out = _export_and_load(model, str(tmp_path / "conditional"))(z, y)
    np.testing.assert_allclose(out, _ema_one_step(model, z, y), rtol=1e-5, atol=1e-5)
    assert np.abs(out[0] - out[2]).max() > 1e-4  # the labels matter
    generator = OneStepGenerator(model)
    with pytest.raises(ValueError, match="class_labels"):
        generator(z)


# ---------------------------------------------------------- 6. TensorBoard
def test_tensorboard_logs_a_scalar_and_an_image(tmp_path):
    import tensorflow as tf

    model = make_model()
    model.compile(optimizer=RAdam(1e-3))

    def as_image(model, num_samples, seed=0, batch_size=256):  # 2-D points as 1x2 images
        return np.tanh(samplers.one_step(model, num_samples, seed=seed)).reshape(-1, 1, 2, 1)

    grid = keras_gcm.callbacks.SampleGrid(4, tmp_path / "grids", num_samples=4, sampler=as_image,
                                          log_dir=tmp_path / "tb")
    history = model.fit(_data(512, 0), batch_size=64, epochs=2, verbose=0,
                        validation_data=(_data(128, 1),),
                        callbacks=[grid, keras.callbacks.TensorBoard(str(tmp_path / "tb"))])

    def events(sub):
        (path,) = glob.glob(str(tmp_path / "tb" / sub / "events.*"))
        return [(e.step, v) for e in tf.compat.v1.train.summary_iterator(path)
                for v in e.summary.value]

    scalars = {(step, v.tag): float(tf.make_ndarray(v.tensor)) for step, v in events("train")
               if v.tag == "epoch_loss"}
    assert scalars[(1, "epoch_loss")] == pytest.approx(history.history["loss"][1], rel=1e-6)
    val = {step: float(tf.make_ndarray(v.tensor)) for step, v in events("validation")
           if v.tag == "epoch_loss"}
    assert val[1] == pytest.approx(history.history["val_loss"][1], rel=1e-6)
    images = [(step, tuple(tf.io.decode_png(tf.make_ndarray(v.tensor)[2]).shape))
              for step, v in events("samples")]
    assert images and images[-1][0] == 16
    assert images[-1][1][-1] == 1
