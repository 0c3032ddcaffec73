"""Classifier-free guidance: label dropout, sampling-time CFG, MeanFlow's model guidance."""

import numpy as np
import pytest

import keras
import keras_gcm
from keras_gcm import time_sampling as T
from tests.helpers import to_numpy

LABELS = 3


def _dit(seed=0, randomize=True):
    net = keras_gcm.networks.DiT(img_resolution=4, in_channels=1, patch_size=2,
                                 hidden_size=16, depth=1, num_heads=2, label_dim=LABELS,
                                 time_inputs=2, seed=seed)
    net.build((None, 4, 4, 1))
    if randomize:  # adaLN-Zero starts at an exactly zero output
        rng = np.random.default_rng(seed)
        for v in net.weights:
            v.assign((0.3 * rng.standard_normal(v.shape)).astype("float32"))
    return net


def _model(**kwargs):
    kwargs.setdefault("time_sampler", T.EqualTimeMixture(seed=0))
    kwargs.setdefault("loss", keras_gcm.losses.ConsistencyLoss())
    model = keras_gcm.ConsistencyModel(_dit(), importance_weighting=False, seed=0, **kwargs)
    model.build((None, 4, 4, 1))
    return model


def _batch(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4, 4, 1)).astype("float32")
    z = rng.standard_normal((n, 4, 4, 1)).astype("float32")
    y = rng.integers(0, LABELS, n).astype("int32")
    return x, z, y


def test_label_dropout_replaces_labels_with_the_null_class():
    model = _model(label_dropout=0.3)
    y = np.zeros(20_000, "int32") + 1
    dropped_labels, dropped = model._drop_labels(keras.ops.convert_to_tensor(y), 20_000)
    dropped_labels, dropped = to_numpy(dropped_labels), to_numpy(dropped)
    assert abs(dropped.mean() - 0.3) < 5 * np.sqrt(0.3 * 0.7 / 20_000)
    assert np.all(dropped_labels[dropped] == LABELS) and np.all(dropped_labels[~dropped] == 1)
    one_hot = np.eye(LABELS, dtype="float32")[y[:100]]
    rows, dropped = model._drop_labels(keras.ops.convert_to_tensor(one_hot), 100)
    rows, dropped = to_numpy(rows), to_numpy(dropped)
    assert np.all(rows[dropped] == 0) and np.all(rows[~dropped] == one_hot[~dropped])
    clone = keras_gcm.ConsistencyModel.from_config(model.get_config())
    assert clone.label_dropout == 0.3 and clone.trained_with_label_dropout


def test_null_class_is_the_zero_label_vector_in_songunet():
    net = keras_gcm.networks.SongUNet(img_resolution=8, in_channels=1, model_channels=16,
                                      channel_mult=[1], num_blocks=1, attn_resolutions=[],
                                      label_dim=LABELS, seed=0, dropout=0.0)
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 1)).astype("float32")
    c = np.ones(2, "float32")
    null = to_numpy(net(x, c, class_labels=np.array([LABELS, LABELS], "int32")))
    np.testing.assert_allclose(null, to_numpy(net(x, c)), rtol=1e-6, atol=1e-7)


def test_model_guidance_target_is_meanflows_guided_velocity():
    omega, kappa = 2.0, 0.5
    model = _model(label_dropout=0.1, model_guidance=omega, model_guidance_kappa=kappa,
                   model_guidance_interval=(0.0, 0.5))
    x, z, y = _batch()
    t = np.linspace(0.1, 0.9, 32).astype("float32")
    # training=False: no label dropout, so every sample is conditional.
    loss, _ = model.compute_consistency_loss(x, training=False, z=z, t=t, s=t, class_labels=y)
    x_t = (1 - t[:, None, None, None]) * x + t[:, None, None, None] * z
    u = z - x
    f_cond = to_numpy(model.f(x_t, t, t, y))
    f_null = to_numpy(model.f(x_t, t, t, np.full(32, LABELS, "int32")))
    guided = omega * u + kappa * f_cond + (1 - omega - kappa) * f_null
    target = np.where((t <= 0.5)[:, None, None, None], guided, u)
    w = to_numpy(model.weighting.w(t))
    expected = np.mean(w * np.linalg.norm((f_cond - target).reshape(32, -1), axis=1))
    np.testing.assert_allclose(float(to_numpy(loss)), expected, rtol=1e-5)
    unguided = _model(label_dropout=0.1)
    loss1, _ = unguided.compute_consistency_loss(x, training=False, z=z, t=t, s=t, class_labels=y)
    assert abs(float(to_numpy(loss1)) - expected) > 1e-3 * expected
    clone = keras_gcm.ConsistencyModel.from_config(model.get_config())
    assert (clone.model_guidance, clone.model_guidance_kappa) == (omega, kappa)
    assert clone.model_guidance_interval == (0.0, 0.5)


def test_sampling_guidance_scale_is_cfg():
    model = _model(label_dropout=0.1)
    y = np.array([0, 1, 2, 1], "int32")
    kw = dict(seed=5, use_ema=False, class_labels=y)
    cond = keras_gcm.samplers.one_step(model, 4, **kw)
    np.testing.assert_allclose(keras_gcm.samplers.one_step(model, 4, guidance_scale=1.0, **kw), cond)
    null = keras_gcm.samplers.one_step(model, 4, seed=5, use_ema=False,
                                       class_labels=np.full(4, LABELS, "int32"))
    # g is affine in f: guidance w gives null + w (cond - null), for one and for two steps.
    guided = keras_gcm.samplers.one_step(model, 4, guidance_scale=3.0, **kw)
    np.testing.assert_allclose(guided, null + 3.0 * (cond - null), rtol=1e-4, atol=1e-5)
    assert np.abs(cond - null).max() > 1e-2
    two = keras_gcm.samplers.two_step(model, 4, guidance_scale=0.0, **kw)
    two_null = keras_gcm.samplers.two_step(model, 4, seed=5, use_ema=False,
                                           class_labels=np.full(4, LABELS, "int32"))
    np.testing.assert_allclose(two, two_null, rtol=1e-5, atol=1e-6)


def test_guidance_errors_say_what_to_do():
    no_dropout = _model()
    y = np.zeros(4, "int32")
    with pytest.raises(ValueError, match="label_dropout=0.1"):
        keras_gcm.samplers.one_step(no_dropout, 4, class_labels=y, guidance_scale=2.0)
    with pytest.raises(ValueError, match="class_labels"):
        keras_gcm.samplers.one_step(_model(label_dropout=0.1), 4, guidance_scale=2.0)
    mlp = keras_gcm.ConsistencyModel(keras_gcm.networks.MLP(time_inputs=2))
    mlp.build((None, 2))
    with pytest.raises(ValueError, match="unconditional"):
        keras_gcm.samplers.one_step(mlp, 4, guidance_scale=2.0, class_labels=y)
    with pytest.raises(ValueError, match="label_dropout"):
        keras_gcm.ConsistencyModel(_dit(randomize=False), model_guidance=2.0)
    with pytest.raises(ValueError, match="class-conditional"):
        keras_gcm.ConsistencyModel(keras_gcm.networks.MLP(time_inputs=2), label_dropout=0.1)
    with pytest.raises(ValueError, match="VU model"):
        cu = keras_gcm.networks.DiT(img_resolution=4, in_channels=1, patch_size=2,
                                    hidden_size=16, depth=1, num_heads=2, label_dim=3,
                                    time_inputs=1)
        keras_gcm.ConsistencyModel(cu, label_dropout=0.1, model_guidance=2.0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        keras_gcm.ConsistencyModel(_dit(randomize=False), label_dropout=1.0)


def test_fit_with_label_dropout_and_model_guidance():
    model = _model(label_dropout=0.2, model_guidance=2.0)
    model.compile(optimizer=keras_gcm.optimizers.RAdam(1e-3))
    x, _, y = _batch(64)
    before = [to_numpy(v).copy() for v in model.network.trainable_variables]
    label_state = to_numpy(model.label_seed_generator.state.value).copy()
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    after = [to_numpy(v) for v in model.network.trainable_variables]
    assert any(np.abs(a - b).max() > 0 for a, b in zip(after, before))
    # The label-dropout generator is model state, advanced by the train step.
    assert np.any(to_numpy(model.label_seed_generator.state.value) != label_state)
