"""Tests for EDM's SongUNet (DDPM++ / NCSN++) in `keras_gcm.networks.ddpmpp`."""

import json
import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_gcm.networks.ddpmpp import ResampleConv2D
from keras_gcm.networks.ddpmpp import SongUNet
from keras_gcm.networks.ddpmpp import fir_downsample_2d
from keras_gcm.networks.ddpmpp import fir_upsample_2d

TINY = dict(
    img_resolution=8,
    in_channels=1,
    model_channels=16,
    channel_mult=[1, 2],
    num_blocks=1,
    attn_resolutions=[4],
)
# One resolution, no resampling: the fewest distinct ops (JAX compiles every
# eager op once per shape and dtype).
ONE_LEVEL = dict(TINY, channel_mult=[1], attn_resolutions=[8])


def _np(x):
    return ops.convert_to_numpy(x)


def _tiny(**overrides):
    config = dict(TINY, seed=7)
    config.update(overrides)
    net = SongUNet(**config)
    net.build((None, config["img_resolution"], config["img_resolution"], config["in_channels"]))
    return net


def _randomize(net, seed=0):
    """O(1) weights everywhere (EDM's init makes the output ~1e-5)."""
    rng = np.random.default_rng(seed)
    for v in net.weights:
        value = rng.standard_normal(v.shape) * (0.25 if len(v.shape) > 1 else 0.1)
        if v.path.endswith("gamma"):
            value = value + 1.0
        v.assign(value.astype("float32"))


def _inputs(net, batch=3, seed=1):
    rng = np.random.default_rng(seed)
    res, ch = net.img_resolution, net.in_channels
    x = rng.standard_normal((batch, res, res, ch)).astype("float32")
    c = np.linspace(0.2, 5.0, batch).astype("float32")
    return x, c


# ---------------------------------------------------------------- counts


def test_parameter_counts_match_edm():
    # EDM's SongUNet at 32x32x3, channel_mult [2, 2, 2], 128 channels,
    # 4 blocks, attention at 16: 55,732,739 parameters for DDPM++ and
    # 56,395,523 for NCSN++ (sum of `p.numel()` over EDM's torch module's
    # parameters; its resample filters and Fourier frequencies are buffers).
    ddpmpp = SongUNet.ddpmpp(img_resolution=32, in_channels=3)
    ddpmpp.build((None, 32, 32, 3))
    assert ddpmpp.count_params() == 55_732_739
    assert not ddpmpp.non_trainable_weights
    del ddpmpp
    ncsnpp = SongUNet.ncsnpp(img_resolution=32, in_channels=3)
    ncsnpp.build((None, 32, 32, 3))
    # The 128 Fourier frequencies (EDM's `freqs` buffer) are a non-trainable
    # weight, so that loaded values are saved.
    assert sum(int(np.prod(v.shape)) for v in ncsnpp.trainable_weights) == 56_395_523
    assert [v.path.split("/")[-1] for v in ncsnpp.non_trainable_weights] == ["frequencies"]
    assert ncsnpp.count_params() == 56_395_523 + 128


def test_second_time_input_adds_one_two_layer_mlp():
    cu, vu = _tiny(time_inputs=1), _tiny(time_inputs=2)
    noise, emb = 16, 64  # model_channels * 1, model_channels * 4
    assert vu.count_params() - cu.count_params() == noise * emb + emb + emb * emb + emb
    assert cu.time_inputs == 1 and vu.time_inputs == 2


# ----------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    "overrides",
    [
        dict(),
        dict(encoder_type="residual", embedding_type="fourier", channel_mult_noise=2,
             resample_filter=[1, 3, 3, 1]),
        dict(encoder_type="skip", decoder_type="skip"),
        dict(time_inputs=2, label_dim=4, in_channels=3, out_channels=3),
        dict(img_resolution=16, channel_mult=[1, 1, 2], attn_resolutions=[8],
             encoder_type="residual", decoder_type="skip", resample_filter=[1, 3, 3, 1]),
    ],
)
def test_output_shape_equals_input_shape(overrides):
    net = _tiny(**overrides)
    x, c = _inputs(net)
    kwargs = {}
    if net.time_inputs == 2:
        kwargs["c_s"] = c * 0.5
    if net.label_dim:
        kwargs["class_labels"] = np.array([0, 3, 2])
    y = net(x, c, **kwargs)
    assert tuple(y.shape) == x.shape
    assert np.all(np.isfinite(_np(y)))


def test_symbolic_call_as_the_consistency_model_builds_it():
    net = SongUNet(**TINY, label_dim=3, time_inputs=2, seed=0)
    out = net(
        keras.KerasTensor((None, 8, 8, 1)),
        keras.KerasTensor((None,)),
        keras.KerasTensor((None,)),
        class_labels=keras.KerasTensor((None,), dtype="int32"),
        training=False,
    )
    assert net.built
    assert tuple(out.shape) == (None, 8, 8, 1)


# ----------------------------------------------------- initialisation


def test_untrained_output_is_near_zero():
    # EDM's init: the output convolution's kernel is xavier-uniform * 1e-5.
    net = _tiny()
    x, c = _inputs(net)
    y = _np(net(x, c))
    assert 0.0 < y.std() < 1e-4
    out_conv = net.dec_layers[-1]
    assert out_conv.name.endswith("aux_conv")
    kernel = _np(out_conv.conv.kernel)
    kh, kw, cin, cout = kernel.shape
    limit = 1e-5 * math.sqrt(6.0 / (kh * kw * (cin + cout)))
    assert np.abs(kernel).max() <= limit
    assert np.abs(kernel).max() > 0.8 * limit


def test_xavier_uniform_init_and_zero_biases():
    net = SongUNet(**dict(TINY, model_channels=32), seed=0)
    net.build((None, 8, 8, 1))
    block = net.enc_layers[1]  # enc_8x8_block0: 32 -> 32 channels
    kernel = _np(block.conv0.conv.kernel)
    fan_in, fan_out = 9 * 32, 9 * 32
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    assert np.abs(kernel).max() <= limit
    # Variance of U(-a, a) is a^2 / 3 (9,216 draws: ~1.5% standard error).
    np.testing.assert_allclose(kernel.var(), limit**2 / 3, rtol=0.06)
    # Zero-init branch ends (EDM's init_zero = 1e-5 gain).
    assert np.abs(_np(block.conv1.conv.kernel)).max() <= 1e-5 * limit
    attn = next(layer for layer in net.enc_layers if getattr(layer, "num_heads", 0))
    qkv = _np(attn.qkv.conv.kernel)
    qkv_limit = math.sqrt(0.2) * math.sqrt(6.0 / (qkv.shape[2] + qkv.shape[3]))
    assert np.abs(qkv).max() <= qkv_limit
    np.testing.assert_allclose(qkv.var(), qkv_limit**2 / 3, rtol=0.1)
    for v in net.weights:
        if v.path.endswith("bias") or v.path.endswith("beta"):
            assert not np.any(_np(v))
        if v.path.endswith("gamma"):
            assert np.all(_np(v) == 1.0)


def test_group_norm_uses_edm_group_rule():
    net = _tiny()
    block = net.enc_layers[1]
    assert block.norm0.groups == min(32, 16 // 4)
    assert block.norm0.epsilon == 1e-6
    big = net.dec_layers[0]  # 32-channel block at the lowest resolution
    assert big.norm0.groups == 8


# ------------------------------------------------------ resample filters


def _fir_down_reference(x, f):
    """Direct EDM down-sampling: correlate with outer(f, f)/sum^2, stride 2."""
    f = np.asarray(f, np.float64)
    kernel = np.outer(f, f) / f.sum() ** 2
    k = len(f)
    pad = (k - 1) // 2
    xp = np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    n_out = (xp.shape[1] - k) // 2 + 1
    out = np.zeros((x.shape[0], n_out, n_out, x.shape[3]))
    for i in range(n_out):
        for j in range(n_out):
            patch = xp[:, 2 * i : 2 * i + k, 2 * j : 2 * j + k, :]
            out[:, i, j, :] = np.einsum("bhwc,hw->bc", patch, kernel)
    return out


def _fir_up_reference(x, f):
    """Direct EDM up-sampling: transposed conv with 4 outer(f, f)/sum^2.

    Scatter form: out[2 i + a - p, 2 j + b - p] += x[i, j] * kernel[a, b].
    """
    f = np.asarray(f, np.float64)
    kernel = 4.0 * np.outer(f, f) / f.sum() ** 2
    k = len(f)
    pad = (k - 1) // 2
    b, h, w, c = x.shape
    full = np.zeros((b, 2 * h + k, 2 * w + k, c))
    for i in range(h):
        for j in range(w):
            for a in range(k):
                for bb in range(k):
                    full[:, 2 * i + a, 2 * j + bb, :] += x[:, i, j, :] * kernel[a, bb]
    return full[:, pad : pad + 2 * h, pad : pad + 2 * w, :]


def test_fir_11_downsampling_is_average_pooling():
    x = np.random.default_rng(0).standard_normal((2, 8, 6, 3)).astype("float32")
    pooled = x.reshape(2, 4, 2, 3, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(_np(fir_downsample_2d(x, [1, 1])), pooled, atol=1e-6)
    np.testing.assert_allclose(
        _np(fir_downsample_2d(x, [1, 1])),
        _np(ops.average_pool(x, 2, strides=2, padding="valid")),
        atol=1e-6,
    )


def test_fir_11_upsampling_is_nearest_neighbour():
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 2)).astype("float32")
    nearest = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
    np.testing.assert_array_equal(_np(fir_upsample_2d(x, [1, 1])), nearest)


@pytest.mark.parametrize("taps", [[1, 3, 3, 1], [1, 2, 3, 4], [2, 1]])
def test_fir_filters_match_direct_implementation(taps):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(
        _np(fir_downsample_2d(x, taps)), _fir_down_reference(x, taps), atol=1e-5
    )
    y = rng.standard_normal((2, 4, 4, 3)).astype("float32")
    np.testing.assert_allclose(
        _np(fir_upsample_2d(y, taps)), _fir_up_reference(y, taps), atol=1e-5
    )
    # The up-sampler is 4x the adjoint of the down-sampler:
    # <up(y), x> = 4 <y, down(x)>.
    lhs = np.sum(_np(fir_upsample_2d(y, taps)).astype(np.float64) * x)
    rhs = 4.0 * np.sum(y * _np(fir_downsample_2d(x, taps)).astype(np.float64))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-5)


def test_fused_residual_downsampling_is_conv_then_fir():
    # EDM's fused path (NCSN++ residual encoder): conv with padding
    # w_pad + f_pad, then an unpadded stride-2 FIR.
    rng = np.random.default_rng(3)
    layer = ResampleConv2D(3, 3, down=True, resample_filter=[1, 3, 3, 1], fused_resample=True)
    layer.build((None, 8, 8, 2))
    layer.conv.kernel.assign(rng.standard_normal((3, 3, 2, 3)).astype("float32"))
    layer.conv.bias.assign(np.array([0.1, -0.2, 0.3], "float32"))
    x = rng.standard_normal((1, 8, 8, 2)).astype("float32")
    w = _np(layer.conv.kernel).astype(np.float64)
    xp = np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)])
    conv = np.zeros((1, 10, 10, 3))
    for i in range(10):
        for j in range(10):
            conv[:, i, j] = np.einsum("bhwc,hwco->bo", xp[:, i : i + 3, j : j + 3], w)
    f = np.array([1, 3, 3, 1], np.float64)
    kernel = np.outer(f, f) / 64.0
    expected = np.zeros((1, 4, 4, 3))
    for i in range(4):
        for j in range(4):
            expected[:, i, j] = np.einsum(
                "bhwc,hw->bc", conv[:, 2 * i : 2 * i + 4, 2 * j : 2 * j + 4], kernel
            )
    expected += np.array([0.1, -0.2, 0.3])
    np.testing.assert_allclose(_np(layer(x)), expected, atol=1e-4)


# -------------------------------------------------- determinism, dropout


def test_inference_is_deterministic_and_dropout_replays_with_seed_state():
    net = _tiny(dropout=0.3)
    _randomize(net)
    x, c = _inputs(net)
    y_eval = _np(net(x, c))
    np.testing.assert_array_equal(_np(net(x, c, training=False)), y_eval)

    generators = net.seed_generators
    assert len(generators) == 10  # one Dropout per UNetBlock
    snapshot = [ops.copy(g.state.value) for g in generators]
    y_a = _np(net(x, c, training=True))
    for g, state in zip(generators, snapshot):
        g.state.assign(state)
    y_b = _np(net(x, c, training=True))
    y_c = _np(net(x, c, training=True))
    np.testing.assert_array_equal(y_a, y_b)
    assert np.abs(y_a - y_eval).max() > 1e-3  # dropout acts in training
    assert np.abs(y_c - y_a).max() > 1e-3  # the states advanced


def test_dropout_masks_follow_the_constructor_seed():
    a, b = _tiny(dropout=0.3, seed=11), _tiny(dropout=0.3, seed=11)
    _randomize(a)
    b.set_weights(a.get_weights())
    x, c = _inputs(a)
    np.testing.assert_array_equal(_np(a(x, c, training=True)), _np(b(x, c, training=True)))
    seeds = [layer.dropout.seed for layer in a.enc_layers + a.dec_layers if hasattr(layer, "dropout")]
    assert seeds == list(range(12, 22))


# --------------------------------------------------- conditioning inputs


def test_time_input_errors():
    cu, vu = _tiny(time_inputs=1), _tiny(time_inputs=2)
    x, c = _inputs(cu)
    with pytest.raises(ValueError, match="time_inputs=2"):
        vu(x, c)
    with pytest.raises(ValueError, match="time_inputs=1"):
        cu(x, c, c)
    with pytest.raises(ValueError, match="shape"):
        cu(x[:, :4], c)
    with pytest.raises(ValueError, match=r"\(batch,\)"):
        cu(x, c[:, None])
    with pytest.raises(ValueError, match="label"):
        cu(x, c, class_labels=np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="time_inputs"):
        SongUNet(**TINY, time_inputs=3)
    with pytest.raises(ValueError, match="encoder_type"):
        SongUNet(**TINY, encoder_type="fancy")
    with pytest.raises(ValueError, match="resample_filter"):
        SongUNet(**TINY, resample_filter=[1, 2, 1])
    with pytest.raises(ValueError, match="divisible"):
        SongUNet(**dict(TINY, img_resolution=6, channel_mult=[1, 2, 2]))


def test_second_time_embedding_is_summed_before_the_shared_silu():
    # With the s-MLP's weights zero, its contribution vanishes and the VU
    # network equals the CU network with the same shared weights.
    cu, vu = _tiny(time_inputs=1), _tiny(time_inputs=2)
    _randomize(cu)
    by_path = {v.path.split("/", 1)[1]: v for v in vu.weights}
    for v in cu.weights:
        by_path[v.path.split("/", 1)[1]].assign(v.value)
    x, c = _inputs(cu)
    y_cu = _np(cu(x, c))
    y_vu = _np(vu(x, c, c * 0.3))  # s-MLP still has its fresh init
    assert np.abs(y_vu - y_cu).max() > 1e-4
    for layer in (vu.map_layer0_s, vu.map_layer1_s):
        for v in layer.weights:
            v.assign(np.zeros(v.shape, "float32"))
    np.testing.assert_allclose(_np(vu(x, c, c * 0.3)), y_cu, rtol=1e-5, atol=1e-5)
    # The s-MLP's bias enters as `silu(mlp_t + b_s)`: a constant shift of the
    # pre-activation, the same for every c_s.
    vu.map_layer1_s.bias.assign(np.full((64,), 0.7, "float32"))
    y1 = _np(vu(x, c, c * 0.3))
    y2 = _np(vu(x, c, c * 3.0))
    np.testing.assert_allclose(y1, y2, rtol=1e-5, atol=1e-5)
    assert np.abs(y1 - y_cu).max() > 1e-4


def test_class_labels_int_and_one_hot_agree():
    net = _tiny(label_dim=4)
    _randomize(net)
    x, c = _inputs(net)
    labels = np.array([0, 3, 1])
    y_int = _np(net(x, c, class_labels=labels))
    y_hot = _np(net(x, c, class_labels=np.eye(4, dtype="float32")[labels]))
    np.testing.assert_allclose(y_int, y_hot, rtol=1e-5, atol=1e-5)
    y_other = _np(net(x, c, class_labels=np.array([2, 2, 2])))
    assert np.abs(y_other - y_int).max() > 1e-3
    # No labels means EDM's zero ("dropped") label vector.
    y_none = _np(net(x, c))
    y_zero = _np(net(x, c, class_labels=np.zeros((3, 4), "float32")))
    np.testing.assert_allclose(y_none, y_zero, rtol=1e-5, atol=1e-5)


def test_mixed_precision_keeps_times_in_float32():
    net = SongUNet(**ONE_LEVEL, dtype="mixed_bfloat16", seed=0)
    net.build((None, 8, 8, 1))
    _randomize(net)
    x, _ = _inputs(net)
    c = np.full((3,), 1000.0, "float32")
    y = net(x, c)
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    assert all(keras.backend.standardize_dtype(v.dtype) == "float32" for v in net.weights)
    # bfloat16 cannot tell 1000 from 1000.5 (spacing 8 there); float32 can.
    y_shift = net(x, c + 0.5)
    assert np.abs(_np(ops.cast(y, "float32")) - _np(ops.cast(y_shift, "float32"))).max() > 0
    # Close to the float32 network with the same weights.
    ref = SongUNet(**ONE_LEVEL, seed=0)
    ref.build((None, 8, 8, 1))
    ref.set_weights(net.get_weights())
    y32 = _np(ref(x, c))
    err = np.abs(_np(ops.cast(y, "float32")) - y32).max() / np.abs(y32).max()
    assert err < 0.1, err


# ------------------------------------------------------- serialisation


def test_config_round_trip_gives_same_outputs():
    net = _tiny(encoder_type="residual", embedding_type="fourier", channel_mult_noise=2,
                resample_filter=[1, 3, 3, 1], time_inputs=2)
    _randomize(net)
    config = net.get_config()
    assert json.loads(json.dumps(config)) == config
    assert type(config["channel_mult"]) is list and type(config["resample_filter"]) is list
    clone = SongUNet.from_config(config)
    clone.build((None, 8, 8, 1))
    clone.set_weights(net.get_weights())
    x, c = _inputs(net)
    np.testing.assert_array_equal(_np(clone(x, c, c * 0.5)), _np(net(x, c, c * 0.5)))
    np.testing.assert_array_equal(clone.map_noise.frequencies, net.map_noise.frequencies)


def test_save_and_load_keras_file(tmp_path):
    net = _tiny(label_dim=2, dropout=0.2)
    _randomize(net)
    x, c = _inputs(net)
    labels = np.array([1, 0, 1])
    expected = _np(net(x, c, class_labels=labels))
    path = str(tmp_path / "songunet.keras")
    net.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, SongUNet)
    np.testing.assert_array_equal(_np(loaded(x, c, class_labels=labels)), expected)


# ------------------------------------------------------ compiled calls


@pytest.mark.backends("jax")
def test_jax_jit_replays_the_eager_dropout_mask():
    import jax

    net = SongUNet(**ONE_LEVEL, dropout=0.3, seed=3)
    net.build((None, 8, 8, 1))
    _randomize(net)
    x, c = _inputs(net)
    trainable = [v.value for v in net.trainable_variables]
    non_trainable = [v.value for v in net.non_trainable_variables]  # seed states

    @jax.jit
    def run(trainable, non_trainable, x, c):
        return net.stateless_call(trainable, non_trainable, x, c, training=True)

    y_eager = _np(net(x, c, training=True))  # draws from the same seed states
    y_jit, new_states = run(trainable, non_trainable, x, c)
    np.testing.assert_allclose(np.asarray(y_jit), y_eager, rtol=1e-4, atol=1e-4)
    assert np.abs(y_eager - _np(net(x, c))).max() > 1e-3
    y_next, _ = run(trainable, new_states, x, c)
    assert np.abs(np.asarray(y_next) - np.asarray(y_jit)).max() > 1e-3


@pytest.mark.backends("tensorflow")
def test_tf_function_matches_eager():
    import tensorflow as tf

    net = _tiny()
    _randomize(net)
    x, c = _inputs(net)
    compiled = tf.function(lambda x, c: net(x, c, training=False))
    np.testing.assert_allclose(compiled(x, c).numpy(), _np(net(x, c)), atol=1e-5)


@pytest.mark.backends("torch")
def test_torch_gradients_reach_every_weight():
    import torch

    net = _tiny(time_inputs=2, label_dim=2)
    _randomize(net)
    x, c = _inputs(net)
    y = net(torch.from_numpy(x), torch.from_numpy(c), torch.from_numpy(c * 0.5),
            class_labels=torch.tensor([0, 1, 1]))
    y.square().sum().backward()
    for v in net.trainable_variables:
        assert v.value.grad is not None and torch.any(v.value.grad != 0), v.path
