"""Tests for EDM2's U-Net, its checkpoint loader and the EDM denoiser bridge."""

import json
import os

import keras
import numpy as np
import pytest
from keras import ops

import keras_gcm
from keras_gcm.networks import EDM2UNet
from keras_gcm.networks import EDMDenoiserVelocity
from keras_gcm.networks import edm2_state_dict
from keras_gcm.networks import load_edm2_checkpoint
from keras_gcm.networks.edm2 import mp_concat
from keras_gcm.networks.edm2 import mp_normalize
from keras_gcm.networks.edm2 import mp_sum

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "edm2_unet_small.npz")


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _forward(net, *args, **kwargs):
    """The network's inference forward; one compiled graph under JAX.

    (Eager JAX compiles every op of the U-Net separately, which dominates the
    test's time on a small CPU.)
    """
    if keras.backend.backend() != "jax":
        return _np(net(*args, **kwargs))
    import jax

    values = ([v.value for v in net.trainable_variables],
              [v.value for v in net.non_trainable_variables])
    args = [None if a is None else ops.convert_to_tensor(a) for a in args]
    kwargs = {k: None if v is None else ops.convert_to_tensor(v) for k, v in kwargs.items()}

    @jax.jit
    def run(values, args, kwargs):
        return net.stateless_call(values[0], values[1], *args, **kwargs)[0]

    return _np(run(values, args, kwargs))


@pytest.fixture(scope="module")
def fixture():
    with np.load(FIXTURE) as data:
        arrays = {k: data[k] for k in data.files}
    config = json.loads(str(arrays.pop("config")))
    state = {k[len("state/"):]: v for k, v in arrays.items() if k.startswith("state/")}
    return config, state, arrays


def _network(config, **overrides):
    kwargs = dict(
        img_resolution=config["img_resolution"],
        in_channels=config["img_channels"],
        label_dim=config["label_dim"],
        model_channels=config["model_channels"],
        channel_mult=config["channel_mult"],
        num_blocks=config["num_blocks"],
        attn_resolutions=config["attn_resolutions"],
        channels_per_head=config["channels_per_head"],
        dropout=config["dropout"],
        seed=3,
    )
    kwargs.update(overrides)
    return EDM2UNet(**kwargs)


@pytest.fixture(scope="module")
def loaded(fixture):
    config, state, _ = fixture
    net = _network(config)
    load_edm2_checkpoint(net, state)
    return net


# ---------------------------------------------------------------- parity


def test_unet_matches_edm2_reference(fixture, loaded):
    # EDM2's UNet(x, noise_labels, one_hot) from NVlabs/edm2 with random
    # weights and gains (tools/make_edm2_fixture.py); the last example has the
    # "no label" index label_dim, EDM2's zero row.
    _, _, arrays = fixture
    y = _forward(loaded, arrays["x"], arrays["noise_labels"],
                 class_labels=arrays["class_index"].astype("int32"))
    ref = arrays["unet_out"]
    assert np.abs(ref).max() > 1.0
    np.testing.assert_allclose(y, ref, rtol=0, atol=2e-6 * np.abs(ref).max())


def test_denoiser_matches_edm2_precond(fixture, loaded):
    _, _, arrays = fixture
    bridge = EDMDenoiserVelocity(loaded)
    d = _np(bridge.denoise(arrays["x"], arrays["sigma"],
                           class_labels=arrays["class_index"].astype("int32")))
    ref = arrays["denoised"]
    np.testing.assert_allclose(d, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize(
    "conditioning",
    [keras_gcm.schedules.ExponentialTime(3.5), keras_gcm.schedules.LogSigmaTime(),
     keras_gcm.schedules.IdentityTime()],
    ids=["exponential", "log_sigma", "identity"],
)
def test_wrapped_velocity_equals_the_edm2_denoisers(fixture, loaded, conditioning):
    # With sigma = t / (1 - t) and x_t = (1 - t) y, the consistency model's f
    # must be (x_t - D(y, sigma)) / t with EDM2's own D (the fixture).
    _, _, arrays = fixture
    sigma = arrays["sigma"].astype("float64")
    t = (sigma / (1.0 + sigma)).astype("float32")
    x_t = (1.0 - t)[:, None, None, None] * arrays["x"]
    expected = (x_t - arrays["denoised"]) / t[:, None, None, None]
    bridge = EDMDenoiserVelocity(loaded, conditioning=conditioning)
    model = keras_gcm.ConsistencyModel(bridge, conditioning=conditioning)
    labels = arrays["class_index"].astype("int32")
    f = _np(model.f(x_t, t, np.full_like(t, 0.0), class_labels=labels))
    scale = np.abs(expected).max(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(f / scale, expected / scale, rtol=0, atol=5e-5)


def test_magnitude_preserving_ops_preserve_unit_variance():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4096, 8)).astype("float32")
    b = rng.standard_normal((4096, 24)).astype("float32")
    assert abs(_np(mp_sum(a, b[:, :8], 0.3)).std() - 1.0) < 0.03
    cat = _np(mp_concat(a, b, 0.5))
    assert abs(cat.std() - 1.0) < 0.03
    # Eq. 103: both halves contribute equally to the total magnitude.
    assert abs((cat[:, :8] ** 2).sum() / (cat[:, 8:] ** 2).sum() - 1.0) < 0.05
    unit = _np(mp_normalize(b, axis=-1))
    np.testing.assert_allclose(np.sqrt((unit**2).mean(axis=-1)), 1.0, atol=1e-3)


# ---------------------------------------------------------------- counts


def test_edm2_img64_parameter_counts():
    # sum(p.numel() for p in Precond(64, 3, 1000, model_channels=c).unet.parameters())
    # in NVlabs/edm2 (the Fourier frequencies / phases are buffers).
    expected = {"s": 280_209_253, "m": 497_803_045, "l": 777_492_197, "xl": 1_119_276_709}
    for size, count in expected.items():
        net = EDM2UNet.img64(size)
        assert net.count_edm2_parameters() == count, size
        assert not net.built  # counted from the configuration, nothing allocated
    assert EDM2UNet.img64_s().dropout_rate == 0.0
    assert EDM2UNet.img64_xl().dropout_rate == 0.1


def test_weight_names_and_counts_match_edm2_state_dict(fixture, loaded):
    _, state, _ = fixture
    names = {k[len("unet."):] for k in state if k.startswith("unet.")}
    assert {name for name, *_ in loaded.edm2_weight_specs()} == names
    edm2_params = sum(v.size for k, v in state.items()
                      if k.startswith("unet.") and not k.endswith(("freqs", "phases")))
    assert loaded.count_edm2_parameters() == edm2_params
    assert sum(int(np.prod(w.shape)) for w in loaded.trainable_weights) == edm2_params


# ---------------------------------------------------------------- loader


def test_checkpoint_round_trip_through_a_torch_file(fixture, loaded, tmp_path):
    pytest.importorskip("torch")
    import torch

    config, state, arrays = fixture
    path = tmp_path / "edm2.pt"
    torch.save({k: torch.as_tensor(v) for k, v in state.items()}, path)
    net = _network(config, seed=11)
    load_edm2_checkpoint(net, str(path))
    exported = edm2_state_dict(net)
    for name, value in exported.items():
        np.testing.assert_array_equal(value, state["unet." + name])
    labels = arrays["class_index"].astype("int32")
    np.testing.assert_array_equal(
        _np(net(arrays["x"], arrays["noise_labels"], class_labels=labels)),
        _np(loaded(arrays["x"], arrays["noise_labels"], class_labels=labels)),
    )


def test_checkpoint_shape_mismatch_names_the_tensor_and_both_shapes(fixture, tmp_path):
    config, state, _ = fixture
    pickled = tmp_path / "network-snapshot.pkl"
    pickled.write_bytes(b"")
    net = _network(config, model_channels=8, channels_per_head=4)
    with pytest.raises(ValueError, match=r"'emb_fourier.freqs' has shape \(16,\).*"
                                         r"expects \(8,\)"):
        load_edm2_checkpoint(net, state)
    unconditional = _network(config, label_dim=0)
    with pytest.raises(ValueError, match="emb_label.weight"):
        load_edm2_checkpoint(unconditional, state)
    wide = _network(config, channel_mult=[1, 3])
    with pytest.raises(ValueError, match=r"'emb_noise.weight' has shape \(32, 16\).*expects \(48, 16\)"):
        load_edm2_checkpoint(wide, {k: v for k, v in state.items()})
    partial = {k: v for k, v in state.items() if "out_conv" not in k}
    with pytest.raises(ValueError, match="lacks 1 tensor.*out_conv.weight"):
        load_edm2_checkpoint(_network(config), partial)
    with pytest.raises(ValueError, match="pickled EDM2 network"):
        load_edm2_checkpoint(_network(config), str(pickled))


# ---------------------------------------------------------------- labels


def test_no_label_index_is_the_zero_row(fixture, loaded):
    _, _, arrays = fixture
    x, c = arrays["x"][:2], arrays["noise_labels"][:2]
    none_index = np.full((2,), loaded.label_dim, "int32")
    np.testing.assert_allclose(
        _np(loaded(x, c, class_labels=none_index)), _np(loaded(x, c)), atol=1e-6
    )
    one_hot = np.eye(loaded.label_dim, dtype="float32")[[1, 2]]
    np.testing.assert_allclose(
        _np(loaded(x, c, class_labels=np.array([1, 2], "int32"))),
        _np(loaded(x, c, class_labels=one_hot)), atol=1e-6,
    )


def test_bad_labels_get_clear_errors(fixture, loaded):
    config, _, arrays = fixture
    x, c = arrays["x"][:2], arrays["noise_labels"][:2]
    with pytest.raises(ValueError, match=r"\[0, label_dim\) = \[0, 4\).*\[7\]"):
        loaded(x, c, class_labels=np.array([1, 7], "int32"))
    with pytest.raises(ValueError, match=r"\[0, label_dim\)"):
        loaded(x, c, class_labels=np.array([-1, 0], "int32"))
    unconditional = _network(config, label_dim=0)
    with pytest.raises(ValueError, match="unconditional.*label_dim"):
        unconditional(x, c, class_labels=np.array([1, 0], "int32"))
    with pytest.raises(ValueError, match="channels-last"):
        loaded(np.zeros((2, 2, 8, 8), "float32"), c)


# ---------------------------------------------------- serialisation, training


def test_config_round_trip(fixture, loaded):
    _, _, arrays = fixture
    bridge = EDMDenoiserVelocity(
        loaded, conditioning=keras_gcm.schedules.LogSigmaTime()
    )
    clone = EDMDenoiserVelocity.from_config(bridge.get_config())
    clone.build()
    clone.set_weights(bridge.get_weights())
    labels = arrays["class_index"].astype("int32")
    c = np.array([-1.0, -0.5, 0.0, 0.5], "float32")
    np.testing.assert_allclose(
        _np(clone(arrays["x"], c, class_labels=labels)),
        _np(bridge(arrays["x"], c, class_labels=labels)), atol=1e-6,
    )
    net = EDM2UNet.from_config(loaded.get_config())
    assert net.get_config() == loaded.get_config()


def _rms_per_output_channel(w):
    w = _np(w)
    return np.sqrt((w.reshape(-1, w.shape[-1]) ** 2).mean(axis=0))


def test_forced_weight_normalisation_after_optimizer_steps():
    # Eq. 66: the stored weight is normalize(w) after every step (the
    # constraint the optimizer applies), starting from a normalised draw.
    conv = keras_gcm.networks.edm2.MPConv(3, 5, 3, seed=0)
    conv.build()
    np.testing.assert_allclose(_rms_per_output_channel(conv.weight), 1.0, atol=1e-3)
    optimizer = keras.optimizers.SGD(0.5)
    grad = np.random.default_rng(0).standard_normal(conv.weight.shape).astype("float32")
    before = _np(conv.weight)
    optimizer.apply([ops.convert_to_tensor(grad)], [conv.weight])
    after = _np(conv.weight)
    step = before - 0.5 * grad
    expected = step / (1e-4 + np.sqrt((step.reshape(-1, 5) ** 2).mean(axis=0)))
    np.testing.assert_allclose(after, expected, atol=1e-5)


@pytest.mark.backends("jax")
def test_forced_weight_normalisation_in_stateless_apply():
    # The JAX trainer updates weights with `optimizer.stateless_apply`.
    conv = keras_gcm.networks.edm2.MPConv(2, 4, 0, seed=1)
    conv.build()
    optimizer = keras.optimizers.SGD(1.0)
    optimizer.build([conv.weight])
    grad = np.full(conv.weight.shape, 3.0, "float32")
    (new,), _ = optimizer.stateless_apply(
        [v.value for v in optimizer.variables], [grad], [conv.weight.value]
    )
    np.testing.assert_allclose(_rms_per_output_channel(new), 1.0, atol=1e-3)
