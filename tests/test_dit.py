"""Tests for `keras_gcm.networks.DiT` (DiT / MeanFlow's two-time DiT)."""

import os

import keras
import numpy as np
import pytest
from keras import ops

from keras_gcm.networks import DiT

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "dit_random.npz")
SMALL = dict(img_resolution=8, in_channels=4, patch_size=2, hidden_size=32, depth=2,
             num_heads=4, label_dim=10)


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _fixture():
    data = np.load(FIXTURE)
    weights = {k[2:]: data[k] for k in data.files if k.startswith("w/")}
    return data, weights


@pytest.mark.parametrize("time_inputs", [2, 1])
def test_matches_reference_pytorch_dit(time_inputs):
    # tools/make_dit_fixture.py: facebookresearch/DiT's modules, random
    # weights, MeanFlow's c = t_emb + h_emb + y_emb (two times) or DiT's own
    # forward (one time); the last label is the null class.
    data, weights = _fixture()
    net = DiT(time_inputs=time_inputs, seed=0, **SMALL)
    if time_inputs == 1:
        weights = {k: v for k, v in weights.items() if not k.startswith("h_embedder")}
    net.load_torch_state_dict(weights)
    c_s = data["c_s"] if time_inputs == 2 else None
    out = _np(net(data["x"], data["c_t"], c_s, class_labels=data["class_labels"]))
    ref = data["out_two_times"] if time_inputs == 2 else data["out_one_time"]
    assert np.abs(ref).max() > 1.0  # random weights: a non-trivial output
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_null_class_is_label_dim_and_none():
    data, weights = _fixture()
    net = DiT(time_inputs=2, seed=0, **SMALL)
    net.load_torch_state_dict(weights)
    x, c_t, c_s = data["x"], data["c_t"], data["c_s"]
    null = _np(net(x, c_t, c_s, class_labels=np.full(4, 10, "int32")))
    none = _np(net(x, c_t, c_s))
    one_hot_zero = _np(net(x, c_t, c_s, class_labels=np.zeros((4, 10), "float32")))
    np.testing.assert_allclose(none, null, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(one_hot_zero, null, rtol=1e-6, atol=1e-6)
    labelled = _np(net(x, c_t, c_s, class_labels=np.full(4, 3, "int32")))
    assert np.abs(labelled - null).max() > 1e-2


def test_parameter_counts_of_the_factories():
    data, _ = _fixture()
    # The reference counts (trainable parameters of facebookresearch/DiT with
    # learn_sigma=False, plus MeanFlow's second time embedder): B/4 131.2M and
    # XL/2 676.4M, as MeanFlow's Table reports (131M, 676M).
    for key, factory in (("b4", DiT.b4), ("b2", DiT.b2), ("l2", DiT.l2), ("xl2", DiT.xl2)):
        for suffix, time_inputs in (("ts", 2), ("t", 1)):
            net = factory(label_dim=1000, time_inputs=time_inputs)  # unbuilt: cheap
            count = DiT.parameter_count(**net.get_config())
            assert count == int(data[f"count_{key}_{suffix}"]), (key, suffix)
    # The closed form counts what Keras builds.
    for time_inputs, label_dim in ((2, 10), (1, 0)):
        net = DiT(time_inputs=time_inputs, **dict(SMALL, label_dim=label_dim))
        net.build((None, 8, 8, 4))
        assert net.count_params() == DiT.parameter_count(**net.get_config())
        assert not net.non_trainable_weights


def test_initial_output_is_zero_and_config_round_trip():
    net = DiT(time_inputs=2, seed=3, **SMALL)
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 4)).astype("float32")
    c = np.array([0.5, 2.0], "float32")
    out = _np(net(x, c, c, class_labels=np.array([1, 2], "int32")))
    assert np.all(out == 0.0)  # adaLN-Zero and the zero output layer
    clone = DiT.from_config(net.get_config())
    clone.build((None, 8, 8, 4))
    assert clone.get_config() == net.get_config()
    assert clone.count_params() == net.count_params()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(net))
    assert isinstance(restored, DiT)


def test_bad_inputs_get_clear_errors():
    net = DiT(time_inputs=2, seed=0, **SMALL)
    c = np.ones(2, "float32")
    with pytest.raises(ValueError, match="img_resolution=8, in_channels=4"):
        net(np.zeros((2, 8, 8, 3), "float32"), c, c)
    with pytest.raises(ValueError, match="c_s"):
        net(np.zeros((2, 8, 8, 4), "float32"), c)
    with pytest.raises(ValueError, match="patch_size"):
        DiT(img_resolution=8, patch_size=3)
    with pytest.raises(ValueError, match="unconditional"):
        DiT(time_inputs=1, **dict(SMALL, label_dim=0))(
            np.zeros((2, 8, 8, 4), "float32"), c, class_labels=np.zeros(2, "int32"))
