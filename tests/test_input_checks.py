"""Bad inputs get a clear error before any training step (issue 15, items 4-8;
issue 13, items 3 and 5)."""

import os
import sys

import numpy as np
import pytest
import keras

import keras_gcm
from keras_gcm import ConsistencyModel
from keras_gcm.networks import MLP
from tests.models import make_model

RECIPES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "recipes")


def _tiny(**kwargs):
    return MLP(hidden_units=8, num_blocks=1, embedding_dim=8, **kwargs)


def _compiled(network=None, **kwargs):
    model = ConsistencyModel(network or _tiny(), seed=0, **kwargs)
    model.compile(optimizer=keras_gcm.optimizers.RAdam(1e-3))
    return model


def _untrained(model):
    return not model.built or int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 0


def test_empty_arrays_and_pipelines_are_rejected():
    import tensorflow as tf

    model = _compiled()
    with pytest.raises(ValueError, match="empty"):
        model.fit(np.zeros((0, 2), "float32"), batch_size=4, verbose=0)
    empty = tf.data.Dataset.from_tensor_slices(np.zeros((0, 2), "float32")).batch(4)
    with pytest.raises(ValueError, match="empty"):
        model.fit(empty, verbose=0)

    def nothing():
        yield from ()

    with pytest.raises(ValueError, match="empty"):
        model.fit(nothing(), steps_per_epoch=1, verbose=0)
    assert _untrained(model)


def test_the_first_batch_of_a_pipeline_is_checked_like_arrays():
    import tensorflow as tf

    network = _tiny()
    network.input_range = (-1.0, 1.0)  # as image networks declare
    model = _compiled(network)
    images = np.random.default_rng(0).uniform(0, 255, (16, 2)).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices(images).batch(8)
    with pytest.raises(ValueError, match=r"\[0, 255\] images"):
        model.fit(ds, verbose=0)
    bad = images / 255.0
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.fit(tf.data.Dataset.from_tensor_slices(bad).batch(8), verbose=0)
    with pytest.raises(ValueError, match="MMD group size"):  # 6 % 4
        model.fit(tf.data.Dataset.from_tensor_slices(bad[2:14] * 0).batch(6), verbose=0)

    def batches():
        yield (images[:8],)

    with pytest.raises(ValueError, match="input_range"):
        model.fit(batches(), steps_per_epoch=1, verbose=0)
    assert _untrained(model)


def test_a_checked_generator_still_trains_on_every_batch():
    model = _compiled()
    seen = []

    def batches():
        for i in range(3):
            seen.append(i)
            yield (keras_gcm.data.toy2d("two_moons", 8, seed=i),)

    model.fit(batches(), steps_per_epoch=3, epochs=1, verbose=0)
    assert seen == [0, 1, 2]
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 3


def test_a_partial_tf_data_batch_gives_the_mmd_message_on_every_backend():
    import tensorflow as tf

    model = _compiled()
    x = keras_gcm.data.toy2d("two_moons", 10, seed=0)
    ds = tf.data.Dataset.from_tensor_slices(x).batch(4)  # 4, 4, 2
    with pytest.raises(ValueError, match=r"MMD group size \(4\).*drop_remainder"):
        model.fit(ds, verbose=0)


def test_labels_for_a_network_without_labels_are_an_error():
    import tensorflow as tf

    model = _compiled()
    x = keras_gcm.data.toy2d("two_moons", 16, seed=0)
    y = np.zeros(16, "int32")
    with pytest.raises(ValueError, match=r"takes none.*fit\(x\) without y"):
        model.fit(x, y, batch_size=8, verbose=0)
    with pytest.raises(ValueError, match="takes none"):
        model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), verbose=0)
    assert _untrained(model)


def test_a_two_time_input_network_with_a_cu_preset_is_an_error():
    with pytest.raises(ValueError, match="two time inputs.*VU preset"):
        ConsistencyModel.from_preset("gcm_cu", _tiny(time_inputs=2))


@pytest.mark.parametrize("build, name, error", [
    (lambda: MLP(hidden_units="32"), "hidden_units", TypeError),
    (lambda: MLP(num_blocks=2.5), "num_blocks", TypeError),
    (lambda: MLP(seed=-1), "seed", ValueError),
    (lambda: keras_gcm.losses.TimeAwareMMD("4", 0.05), "group_size", TypeError),
    (lambda: keras_gcm.losses.TimeAwareMMD(4, "0.05"), "sigma", TypeError),
    (lambda: ConsistencyModel(_tiny(), seed=-3), "seed", ValueError),
    (lambda: ConsistencyModel(_tiny(), seed="0"), "seed", TypeError),
    (lambda: keras_gcm.callbacks.NonFiniteLossGuard(0), "max_consecutive_skips", ValueError),
])
def test_types_are_checked_at_the_public_boundary(build, name, error):
    with pytest.raises(error, match=f"`{name}`"):
        build()


def test_sampler_arguments_are_checked():
    model = make_model()
    with pytest.raises(TypeError, match="`num_samples` must be an integer"):
        keras_gcm.samplers.one_step(model, 10.7, seed=0)
    with pytest.raises(ValueError, match="`seed` must be an integer >= 0"):
        keras_gcm.samplers.one_step(model, 10, seed=-1)
    assert keras_gcm.samplers.one_step(model, 10.0, seed=0).shape == (10, 2)


@pytest.mark.backends("jax")  # flag parsing only: backend-independent
@pytest.mark.parametrize("recipe, argv, flag", [
    ("toy2d", ["--steps", "0"], "--steps"),
    ("toy2d", ["--eval-samples", "1"], "--eval-samples"),
    ("toy2d", ["--learning-rate", "nan"], "--learning-rate"),
    ("toy2d", ["--output", "/proc/not-writable"], "--output"),
    ("toy2d", ["--output", __file__ + "/out"], "--output"),  # under a file
    ("digits", ["--attn-resolutions", "16"], "--attn-resolutions"),
    ("digits", ["--eval-samples", "1"], "--eval-samples"),
    ("ablation", ["--steps", "0"], "--steps"),
])
def test_recipe_flags_are_checked_before_training(recipe, argv, flag, capsys, tmp_path):
    if "--output" not in argv:
        argv = argv + ["--output", str(tmp_path / "out")]
    sys.path.insert(0, RECIPES)
    try:
        module = __import__(recipe)
        with pytest.raises(SystemExit) as info:
            module.parse_args(argv)
    finally:
        sys.path.remove(RECIPES)
    assert info.value.code == 2
    assert flag in capsys.readouterr().err


def test_songunet_rejects_an_attention_resolution_it_does_not_have():
    with pytest.raises(ValueError, match=r"`attn_resolutions` \[16\].*\[8, 4\]"):
        keras_gcm.networks.SongUNet(
            img_resolution=8, in_channels=1, model_channels=8, channel_mult=[1, 2],
            num_blocks=1, attn_resolutions=[16])


# ------------------------------------------------- class labels (issue 11)
# Labels outside [0, label_dim) must be a clear error on every backend. The
# networks can only check concrete (eager) labels; inside a compiled JAX /
# TensorFlow step an out-of-range index used to become a zero (or clamped)
# class embedding silently, so the samplers and fit check on the host.

LABEL_DIM = 4
_RANGE = r"\[0, label_dim\) = \[0, 4\).*relabel your classes 0\.\.N-1"


def _edm2():
    # The config of tests/fixtures/edm2_unet_small.npz (test_edm2.py).
    return keras_gcm.networks.EDM2UNet(
        img_resolution=8, in_channels=2, label_dim=LABEL_DIM, model_channels=16,
        channel_mult=[1, 2], num_blocks=1, attn_resolutions=[8, 4],
        channels_per_head=8, dropout=0.0, seed=3)


def _dit():
    return keras_gcm.networks.DiT(
        img_resolution=8, in_channels=2, patch_size=2, hidden_size=16, depth=1,
        num_heads=2, label_dim=LABEL_DIM, time_inputs=1, seed=0)


def _songunet():
    return keras_gcm.networks.SongUNet(
        img_resolution=8, in_channels=2, model_channels=8, channel_mult=[1],
        num_blocks=1, attn_resolutions=[], label_dim=LABEL_DIM, dropout=0.0, seed=0)


LABELLED_NETWORKS = pytest.mark.parametrize(
    "network", [_edm2, _dit, _songunet], ids=["edm2", "dit", "songunet"])


def _labelled(network):
    model = _compiled(network())
    model.build((None, 8, 8, 2))
    return model


@LABELLED_NETWORKS
def test_out_of_range_labels_are_refused_by_the_samplers(network):
    model = _labelled(network)
    with pytest.raises(ValueError, match=_RANGE + r".*label_dim >= 10"):
        keras_gcm.samplers.one_step(model, 4, seed=0, class_labels=[0, 1, 2, 9])
    with pytest.raises(ValueError, match=r"\[0, 4\).*e\.g\. \[9\]"):
        model.generate(4, steps=1, seed=0, class_labels=np.array([0, 1, 2, 9], "int32"))
    with pytest.raises(ValueError, match=_RANGE):
        keras_gcm.samplers.two_step(model, 4, seed=0, class_labels=[0, 9, 1, 2])
    with pytest.raises(ValueError, match=r"\[0, 4\).*e\.g\. \[-1\]"):
        keras_gcm.samplers.two_step(model, 4, seed=0, class_labels=[-1, 0, 1, 2])


@LABELLED_NETWORKS
def test_out_of_range_labels_are_refused_by_fit_and_evaluate(network):
    import tensorflow as tf

    model = _labelled(network)
    x = np.random.default_rng(0).uniform(-1, 1, (8, 8, 8, 2)).astype("float32")
    y = np.array([0, 1, 2, 3, 0, 1, 2, 9], "int32")
    with pytest.raises(ValueError, match=r"`y` must lie in " + _RANGE):
        model.fit(x, y, batch_size=4, verbose=0)
    with pytest.raises(ValueError, match=r"\[0, 4\).*e\.g\. \[-1\]"):
        model.fit(x, np.where(y == 9, -1, y), batch_size=4, verbose=0)
    with pytest.raises(ValueError, match=_RANGE):
        model.fit(x, y % 4, batch_size=4, validation_data=(x, y), verbose=0)
    # A pipeline's first batch is read on the host, as for its images.
    ds = tf.data.Dataset.from_tensor_slices((x, y[::-1].copy())).batch(4)
    with pytest.raises(ValueError, match=_RANGE):
        model.fit(ds, verbose=0)
    assert _untrained(model)
    with pytest.raises(ValueError, match=r"`y` must lie in " + _RANGE):
        model.evaluate(x, y, batch_size=4, verbose=0)


def test_the_label_range_check_accepts_the_no_label_class_and_traced_labels():
    from keras_gcm.validation import check_class_labels

    check_class_labels(np.array([0, 3, 4]), 4)  # 4 = "no label"
    check_class_labels(np.eye(4, dtype="float32"), 4)  # one-hot rows: the network's
    check_class_labels(keras.KerasTensor((None,), dtype="int32"), 4)
    with pytest.raises(ValueError, match=r"`labels` must lie in " + _RANGE):
        check_class_labels(np.array([5, 0]), 4, name="labels")
    with pytest.raises(ValueError, match=r"\[0, label_dim\) = \[0, 4\)"):
        _dit()(np.zeros((2, 8, 8, 2), "float32"), np.zeros(2, "float32"),
               class_labels=np.array([1, 7], "int32"))
    model = _labelled(_dit)
    out = keras_gcm.samplers.one_step(model, 4, seed=0, class_labels=[0, 1, 3, 4])
    assert out.shape == (4, 8, 8, 2) and np.all(np.isfinite(out))
