"""`keras_gcm.networks.load_edm_state_dict`: a SongUNet filled from EDM's
PyTorch state dict reproduces EDM's network (fixture made by EDM's own code,
tools/make_edm_fixture.py)."""

import os
import sys

import keras
import numpy as np
import pytest
from keras import ops

from keras_gcm.networks import SongUNet
from keras_gcm.networks import edm_state_dict_shapes
from keras_gcm.networks import load_edm_state_dict
from keras_gcm.networks.edm_checkpoint import _qkv_permutation

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "tools"))
from make_edm_fixture import FIXTURE_PATH  # noqa: E402
from make_edm_fixture import NETWORKS  # noqa: E402


@pytest.fixture(scope="module")
def fixture():
    return dict(np.load(FIXTURE_PATH))


def _state(fixture, name):
    prefix = f"{name}/state/"
    return {k[len(prefix):]: v for k, v in fixture.items() if k.startswith(prefix)}


def _network(name, **overrides):
    config = {k: v for k, v in NETWORKS[name].items() if k != "out_channels"}
    config.update({"seed": 0, **overrides})
    net = SongUNet(**config)
    net.build((None, 8, 8, 3))
    return net


def _run(net, fixture, name, augment=True):
    x = np.transpose(fixture[f"{name}/x"], (0, 2, 3, 1))  # NCHW -> NHWC
    kwargs = {}
    if augment and f"{name}/augment_labels" in fixture:
        kwargs["augment_labels"] = fixture[f"{name}/augment_labels"]
    return ops.convert_to_numpy(net(x, fixture[f"{name}/noise_labels"], **kwargs))


def _expected(fixture, key):
    return np.transpose(fixture[key], (0, 2, 3, 1))


@pytest.mark.parametrize("name", ["ddpmpp", "ncsnpp"])
def test_loaded_network_reproduces_edm(fixture, name):
    net = load_edm_state_dict(_network(name), _state(fixture, name))
    expected = _expected(fixture, f"{name}/output")
    assert np.abs(expected).max() > 1.0  # random O(1) weights, not EDM's ~0 init
    np.testing.assert_allclose(_run(net, fixture, name), expected, atol=1e-4, rtol=1e-4)
    if name == "ddpmpp":
        # No augmentation labels (sampling) is EDM's `augment_labels=None`.
        np.testing.assert_allclose(
            _run(net, fixture, name, augment=False),
            _expected(fixture, "ddpmpp/output_no_augment"), atol=1e-4, rtol=1e-4,
        )
    else:
        np.testing.assert_array_equal(
            ops.convert_to_numpy(net.map_noise.frequencies),
            fixture["ncsnpp/state/map_noise.freqs"],
        )


def test_qkv_channels_are_reordered_from_edm_interleaving():
    # EDM's channel h*3d + 3c + j (head h, channel c, q/k/v j) is our j*C + h*d + c.
    perm = _qkv_permutation(channels=4, heads=2)
    np.testing.assert_array_equal(perm, [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11])
    np.testing.assert_array_equal(np.sort(_qkv_permutation(32, 4)), np.arange(96))


def test_file_saved_with_torch_and_fourier_frequencies_survive_keras_save(fixture, tmp_path):
    import torch

    state = {"model." + k: torch.from_numpy(v) for k, v in _state(fixture, "ncsnpp").items()}
    path = tmp_path / "edm-ncsnpp.pt"
    torch.save(state, path)  # an EDMPrecond's state dict: keys "model.*"
    net = load_edm_state_dict(_network("ncsnpp", seed=123), str(path))
    expected = _expected(fixture, "ncsnpp/output")
    np.testing.assert_allclose(_run(net, fixture, "ncsnpp"), expected, atol=1e-4, rtol=1e-4)
    # The frequencies are a weight: a saved and reloaded network keeps EDM's,
    # not the ones its seed would draw.
    keras_path = str(tmp_path / "net.keras")
    net.save(keras_path)
    loaded = keras.models.load_model(keras_path)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(loaded.map_noise.frequencies),
        fixture["ncsnpp/state/map_noise.freqs"],
    )
    np.testing.assert_allclose(_run(loaded, fixture, "ncsnpp"), expected, atol=1e-4, rtol=1e-4)


def test_mismatching_state_dicts_get_clear_errors(fixture):
    state = _state(fixture, "ddpmpp")
    wide = _network("ddpmpp", model_channels=32)
    with pytest.raises(
        ValueError,
        match=r"Shape mismatch at EDM tensor 'map_augment\.weight': the state dict "
              r"has shape \(16, 9\), the network .* needs \(32, 9\)",
    ):
        load_edm_state_dict(wide, state)
    with pytest.raises(ValueError, match=r"first 'map_augment\.weight'.*augment_dim"):
        load_edm_state_dict(_network("ddpmpp", augment_dim=0), state)
    with pytest.raises(ValueError, match=r"no tensor 'map_noise\.freqs'"):
        load_edm_state_dict(_network("ncsnpp"), {k: v for k, v in _state(
            fixture, "ncsnpp").items() if k != "map_noise.freqs"})
    shapes = edm_state_dict_shapes(_network("ddpmpp"))
    assert shapes == {k: v.shape for k, v in state.items() if not k.endswith("resample_filter")}


def test_missing_torch_is_a_clear_error(monkeypatch, tmp_path):
    net = _network("ddpmpp")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="pip install torch"):
        load_edm_state_dict(net, str(tmp_path / "net.pt"))
