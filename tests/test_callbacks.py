"""Callbacks: exact resumption, sample grids, quality metrics, image grids."""

import csv
import glob
import os

import numpy as np
import pytest
import keras

from keras_gcm import ConsistencyModel
from keras_gcm import samplers
from keras_gcm.callbacks import QualityMetric
from keras_gcm.callbacks import ResumableCheckpoint
from keras_gcm.callbacks import SampleGrid
from keras_gcm.data import StepIndexedBatches
from keras_gcm.data import toy2d
from keras_gcm.optimizers import RAdam
from keras_gcm.utils import image_grid
from keras_gcm.utils import images_to_uint8
from keras_gcm.utils import save_image_grid
from tests.models import make_model


def _values(variables):
    return [np.array(keras.ops.convert_to_numpy(v.value)) for v in variables]


# --------------------------------------------------------------------- grids
def test_images_to_uint8_maps_the_range_and_clips():
    x = np.array([-1.0, -0.5, 0.0, 0.5, 1.0, -3.0, 3.0, np.nan])
    expected = np.array([0, 64, 128, 191, 255, 0, 255, 0])  # round((x + 1) * 127.5)
    np.testing.assert_array_equal(images_to_uint8(x), expected)


def test_image_grid_places_image_i_in_row_i_div_nrow():
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (5, 3, 4, 3)).astype("float32")
    grid = image_grid(images, nrow=2, padding=2, pad_value=7, scale=2)
    # rows = ceil(5 / 2) = 3; each cell 6 x 8 after scaling, plus padding.
    assert grid.shape == (3 * (6 + 2) + 2, 2 * (8 + 2) + 2, 3)
    pixels = images_to_uint8(images)
    for i in range(5):
        top, left = 2 + (i // 2) * 8, 2 + (i % 2) * 10
        cell = grid[top:top + 6, left:left + 8]
        np.testing.assert_array_equal(cell, pixels[i].repeat(2, 0).repeat(2, 1))
    # The empty sixth cell and the padding keep the pad value.
    assert np.all(grid[2 + 2 * 8:2 + 2 * 8 + 6, 12:20] == 7)
    assert np.all(grid[:2] == 7) and np.all(grid[:, :2] == 7)


def test_save_image_grid_writes_a_grayscale_png(tmp_path):
    from PIL import Image

    images = np.linspace(-1, 1, 4 * 8 * 8).reshape(4, 8, 8, 1)
    path = tmp_path / "sub" / "grid.png"
    grid = save_image_grid(images, path, scale=3)
    loaded = np.array(Image.open(path))
    assert loaded.shape == (2 * 25 + 1, 2 * 25 + 1)  # 2 x 2 grid of 24-pixel cells
    np.testing.assert_array_equal(loaded, grid[..., 0])


def test_image_grid_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        image_grid(np.zeros((2, 4, 4, 2)))
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        image_grid(np.zeros((4, 4)))


# ---------------------------------------------------------- the data stream
def test_step_indexed_batches_are_permutation_passes_indexed_by_step():
    data = np.arange(10, dtype="float32")[:, None]
    stream = StepIndexedBatches(data, batch_size=4, seed=3)
    seen = np.concatenate([stream[i][:, 0] for i in range(5)])  # 20 = two passes
    assert sorted(seen[:10]) == list(range(10))
    assert sorted(seen[10:]) == list(range(10))
    assert not np.array_equal(seen[:10], seen[10:])  # a fresh order per pass
    resumed = StepIndexedBatches(data, batch_size=4, seed=3, start_step=2)
    for i in range(3):
        np.testing.assert_array_equal(resumed[i], stream[i + 2])
    other_seed = StepIndexedBatches(data, batch_size=4, seed=4)
    assert not np.array_equal(other_seed[0], stream[0])


def test_step_indexed_batches_as_dataset_yields_the_same_batches():
    data = np.random.default_rng(0).normal(size=(7, 3)).astype("float32")
    stream = StepIndexedBatches(data, batch_size=4, seed=2, start_step=3)
    batches = [np.asarray(b) for b in stream.as_dataset().take(3).as_numpy_iterator()]
    assert batches[0].shape == (4, 3)
    for i, batch in enumerate(batches):
        np.testing.assert_array_equal(batch, stream[i])
    labelled = StepIndexedBatches(data, 4, seed=2, labels=np.arange(7))
    x, y = next(iter(labelled.as_dataset().as_numpy_iterator()))
    np.testing.assert_array_equal(x, data[y])


def test_step_indexed_batches_scale_integers_and_flip_deterministically():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 2, 3, 1)).astype("uint8")
    stream = StepIndexedBatches(images, batch_size=6, seed=1, xflip=True)
    batch = stream[0]
    idx = stream.indices(0)
    base = images[idx].astype("float32") / 127.5 - 1.0
    flipped = np.array([np.array_equal(b, f[:, ::-1]) and not np.array_equal(b, f)
                        for b, f in zip(batch, base)])
    same = np.array([np.array_equal(b, f) for b, f in zip(batch, base)])
    assert np.all(flipped | same) and flipped.any()
    np.testing.assert_array_equal(StepIndexedBatches(
        images, batch_size=6, seed=1, xflip=True)[0], batch)


# ---------------------------------------------------------------- resumption
class _Crash(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("simulated interruption")


def _fit(model, data, epochs, steps, callbacks=()):
    return model.fit(data, steps_per_epoch=steps, epochs=epochs, verbose=0,
                     callbacks=list(callbacks))


def test_resumed_run_matches_the_uninterrupted_run(tmp_path):
    """Stop after k steps, resume in a fresh process-like model: step 2k is identical."""
    k = 3
    points = toy2d("two_moons", 1024, seed=0)

    def stream(start=0):
        return StepIndexedBatches(points, batch_size=32, seed=5, start_step=start).as_dataset()

    def new_model(seed):
        # The global seed fixes the generators the model does not seed itself
        # (e.g. the time sampler's).
        keras.utils.set_random_seed(seed)
        model = make_model(dropout=0.2, seed=seed, ema_decay=0.99)
        model.compile(optimizer=RAdam(1e-2))
        return model

    reference = new_model(seed=0)
    _fit(reference, stream(), epochs=2, steps=k)

    directory = str(tmp_path / "ckpt")
    interrupted = new_model(seed=0)
    with pytest.raises(RuntimeError, match="simulated"):
        _fit(interrupted, stream(), epochs=2, steps=k,
             callbacks=[ResumableCheckpoint(directory, verbose=0), _Crash()])
    assert ResumableCheckpoint.latest_step(directory) == k

    # Another seed: other initial weights, dropout and noise states, all of
    # which the checkpoint must overwrite.
    resumed = new_model(seed=1)
    start = ResumableCheckpoint.latest_step(directory)
    history = _fit(resumed, stream(start), epochs=2, steps=k,
                   callbacks=[ResumableCheckpoint(directory, verbose=0)])
    assert len(history.history["loss"]) == 1  # only the second epoch ran
    assert int(keras.ops.convert_to_numpy(resumed.optimizer.iterations)) == 2 * k
    assert resumed._initial_epoch is None

    for name, got, want in [
        ("weights", resumed.network.trainable_variables, reference.network.trainable_variables),
        ("ema", resumed.ema_weights, reference.ema_weights),
        ("optimizer", resumed.optimizer.variables, reference.optimizer.variables),
    ]:
        for a, b in zip(_values(got), _values(want)):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=name)
    # The run moved the weights in the second half (the comparison is not vacuous).
    at_k = ResumableCheckpoint(directory, verbose=0)
    assert max(np.abs(a - b).max() for a, b in zip(
        _values(resumed.ema_weights), _values(interrupted.ema_weights))) > 1e-4
    assert at_k.latest_step(directory) == 2 * k


# Under TensorFlow, Keras gives a PyDataset an unknown batch size, which the
# MMD loss's reshape does not handle yet (reported); `as_dataset()` is the
# path the recipes use on every backend.
@pytest.mark.backends("jax", "torch")
def test_fit_reads_the_stream_as_a_pydataset_like_its_tf_data_form():
    points = toy2d("two_moons", 512, seed=0)
    weights = []
    for as_dataset in (False, True):
        keras.utils.set_random_seed(0)
        model = make_model(dropout=0.1)
        model.compile(optimizer=RAdam(1e-2))
        stream = StepIndexedBatches(points, 32, seed=1)
        _fit(model, stream.as_dataset() if as_dataset else stream, epochs=1, steps=2)
        weights.append(_values(model.network.trainable_variables))
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_restore_rejects_a_checkpoint_of_another_model(tmp_path):
    small = make_model()
    small.compile(optimizer=RAdam(1e-3))
    ResumableCheckpoint(tmp_path, verbose=0).save(small)
    other = ConsistencyModel(small.network.__class__(hidden_units=8, num_blocks=1))
    other.build((None, 2))
    other.compile(optimizer=RAdam(1e-3))
    with pytest.raises(ValueError, match="different"):
        ResumableCheckpoint(tmp_path, verbose=0).restore(other)


def test_resuming_with_another_steps_per_epoch_is_an_error(tmp_path, capsys):
    points = toy2d("two_moons", 256, seed=0)
    model = make_model()
    model.compile(optimizer=RAdam(1e-3))
    _fit(model, StepIndexedBatches(points, 32).as_dataset(), epochs=1, steps=3,
         callbacks=[ResumableCheckpoint(tmp_path, verbose=1)])
    assert "Saved the training state of step 3" in capsys.readouterr().out
    with pytest.raises(ValueError, match="steps_per_epoch"):
        _fit(model, StepIndexedBatches(points, 32, start_step=3).as_dataset(), epochs=2, steps=2,
             callbacks=[ResumableCheckpoint(tmp_path, verbose=0)])


# ------------------------------------------------------ grids and metrics
def _tiny_image_model(seed=0):
    """A consistency model on 4x4x1 'images' with a small functional network."""
    x_in = keras.Input((4, 4, 1))
    c_in = keras.Input(())
    h = keras.layers.Flatten()(x_in)
    c = keras.layers.Reshape((1,))(c_in)
    h = keras.layers.Concatenate()([h, c])
    h = keras.layers.Dense(16, activation="silu")(h)
    h = keras.layers.Dense(16)(h)
    out = keras.layers.Reshape((4, 4, 1))(h)
    network = keras.Model([x_in, c_in], out)
    model = ConsistencyModel(network, seed=seed)
    model.build((None, 4, 4, 1))
    model.compile(optimizer=RAdam(1e-3))
    return model


def _tiny_images(n=64):
    return np.random.default_rng(0).uniform(-1, 1, (n, 4, 4, 1)).astype("float32")


def test_sample_grid_writes_pngs_of_the_right_size(tmp_path):
    from PIL import Image
    import tensorflow as tf

    model = _tiny_image_model()
    grid = SampleGrid(2, tmp_path / "grids", num_samples=6, seed=3, nrow=3, scale=2,
                      log_dir=tmp_path / "tb")
    _fit(model, StepIndexedBatches(_tiny_images(), 16).as_dataset(), epochs=4, steps=1,
         callbacks=[grid])
    files = sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "grids" / "*.png")))
    assert files == ["samples_one_step_00000002.png", "samples_one_step_00000004.png"]
    last = np.array(Image.open(tmp_path / "grids" / files[-1]))
    # 2 rows x 3 columns of 8x8 cells (4x4 images at scale 2), 1-pixel padding.
    assert last.shape == (2 * 9 + 1, 3 * 9 + 1)
    # The grid shows the EMA model's one-step samples for the callback's seed.
    expected = image_grid(samplers.one_step(model, 6, seed=3), nrow=3, scale=2)
    np.testing.assert_array_equal(last, expected[..., 0])
    events = glob.glob(str(tmp_path / "tb" / "samples" / "events.*"))
    assert events
    shapes = []
    for event in tf.compat.v1.train.summary_iterator(events[0]):
        for value in event.summary.value:
            image = tf.io.decode_png(tf.make_ndarray(value.tensor)[2])
            shapes.append((event.step, tuple(image.shape)))
    assert shapes == [(2, (19, 28, 1)), (4, (19, 28, 1))]


def test_quality_metric_values_land_in_history_and_csv(tmp_path, capsys):
    model = _tiny_image_model()

    def metric_fn(samples):
        return {"mean": float(np.mean(samples)), "std": float(np.std(samples))}

    quality = QualityMetric(2, metric_fn, "q", num_samples=50, seed=1, verbose=1,
                            log_dir=tmp_path / "tb", keys=("mean", "std"))
    csv_path = tmp_path / "log.csv"
    history = _fit(model, StepIndexedBatches(_tiny_images(), 16).as_dataset(), epochs=4, steps=1,
                   callbacks=[quality, keras.callbacks.CSVLogger(str(csv_path))])
    means = history.history["q_mean"]
    assert np.isnan(means[0]) and np.isnan(means[2])
    assert [step for step, _ in quality.values] == [2, 4]
    final = samplers.one_step(model, 50, seed=1)
    np.testing.assert_allclose(means[3], np.mean(final), rtol=1e-6)
    np.testing.assert_allclose(history.history["q_std"][3], np.std(final), rtol=1e-6)
    assert means[1] == quality.values[0][1]["q_mean"]
    assert f"[step 4] q_mean = {means[3]:.6g}, q_std" in capsys.readouterr().out
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert float(rows[3]["q_mean"]) == pytest.approx(means[3])
    import tensorflow as tf

    (events,) = glob.glob(str(tmp_path / "tb" / "quality" / "events.*"))
    scalars = {(e.step, v.tag): float(tf.make_ndarray(v.tensor))
               for e in tf.compat.v1.train.summary_iterator(events) for v in e.summary.value}
    assert scalars[(4, "q_mean")] == pytest.approx(means[3])
    assert sorted(scalars) == [(2, "q_mean"), (2, "q_std"), (4, "q_mean"), (4, "q_std")]


def test_periodic_callbacks_reject_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="every_n_steps"):
        SampleGrid(0, tmp_path)
    with pytest.raises(ValueError, match="sampler"):
        SampleGrid(1, tmp_path, sampler="ten_step")
    with pytest.raises(ValueError, match="callable"):
        QualityMetric(1, "fid", "fid")
    quality = QualityMetric(1, lambda x: {"a": 1.0}, "q", num_samples=4, verbose=0)
    quality.set_model(_tiny_image_model())
    with pytest.raises(ValueError, match="keys"):
        quality.evaluate(0)  # a dict result needs declared keys


# --------------------------------------------------------------- moved names
@pytest.mark.parametrize("name, new_home", [
    ("StepIndexedBatches", "keras_gcm.data"),
    ("image_grid", "keras_gcm.utils"),
    ("images_to_uint8", "keras_gcm.utils"),
    ("save_image_grid", "keras_gcm.utils"),
])
def test_moved_names_stay_importable_from_callbacks_with_a_warning(name, new_home):
    import importlib

    import keras_gcm.callbacks

    with pytest.warns(DeprecationWarning, match=f"moved to `{new_home}.{name}`"):
        old = getattr(keras_gcm.callbacks, name)
    assert old is getattr(importlib.import_module(new_home), name)
    with pytest.warns(DeprecationWarning):
        exec(f"from keras_gcm.callbacks import {name}", {})
    with pytest.raises(AttributeError):
        keras_gcm.callbacks.no_such_name  # noqa: B018
