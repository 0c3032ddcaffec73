"""The compiled torch step (`jit_compile=True`, torch.compile) computes the eager step.

Keras compiles `train_step` with `torch.compile` when the model is compiled
with `jit_compile=True`; the samplers follow the same setting. The compiled
step must keep the dropout-mask replay (the teacher pass sees the student's
mask) and the seed-state handling exact: the same draws give the same loss,
the same updated weights, EMA and seed states as the eager step.
"""

import numpy as np
import pytest

import keras

import keras_gcm
from keras_gcm import samplers
from tests.helpers import to_numpy

pytestmark = pytest.mark.backends("torch")


def _model(preset, jit_compile, network="mlp"):
    time_inputs = keras_gcm.presets.time_inputs(preset)
    if network == "mlp":
        network, shape = keras_gcm.networks.MLP(
            hidden_units=16, num_blocks=1, embedding_dim=8, dropout=0.3,
            time_inputs=time_inputs, seed=0,
        ), (2,)
    else:  # a small SongUNet: the layers' shared code meets several shapes
        network, shape = keras_gcm.networks.SongUNet(
            img_resolution=8, in_channels=1, model_channels=8, channel_mult=(1, 2),
            num_blocks=1, attn_resolutions=(4,), dropout=0.3, time_inputs=time_inputs,
            seed=0,
        ), (8, 8, 1)
    model = keras_gcm.ConsistencyModel.from_preset(preset, network, ema_decay=0.9, seed=0)
    model.compile(optimizer=keras_gcm.optimizers.RAdam(1e-2), jit_compile=jit_compile)
    model.build((None,) + shape)
    return model


def _state(model):
    return [to_numpy(v) for v in model.variables]


# torch.compile of the step takes a minute or two on 2 CPU cores: gcm_cu with the
# MLP in CI; gcm_vu (two time inputs) and the SongUNet (several minutes: dynamo
# compiles each layer's code once per shape) with the extended tests.
@pytest.mark.parametrize("preset,network", [
    ("gcm_cu", "mlp"),
    pytest.param("gcm_vu", "mlp", marks=pytest.mark.extended),
    pytest.param("gcm_cu", "songunet", marks=pytest.mark.extended),
])
def test_compiled_train_step_equals_the_eager_step(preset, network):
    import torch._dynamo

    # 8 steps: RAdam's rectified (Adam-like) updates start at step 6, before
    # which the layers below the zero-initialised output barely move.
    if network == "mlp":
        x = keras_gcm.data.toy2d("two_moons", 8 * 64, seed=0)
    else:
        x = keras_gcm.data.digits("train")[: 8 * 64]
    runs = {}
    for jit in (False, True):
        torch._dynamo.reset()
        keras.utils.set_random_seed(0)
        model = _model(preset, jit, network)
        history = model.fit(x, batch_size=64, epochs=1, shuffle=False, verbose=0).history
        runs[jit] = (model, history["loss"][0], _state(model))
    (eager, eager_loss, eager_state), (compiled, compiled_loss, compiled_state) = (
        runs[False], runs[True])
    assert compiled.train_function is not eager.train_function
    # Dropout is on, and the loss is that of the replayed masks: a teacher
    # pass with a fresh mask changes it by far more than float32 rounding.
    assert compiled_loss == pytest.approx(eager_loss, rel=1e-5, abs=1e-8)
    assert len(compiled_state) == len(eager_state)
    for got, want in zip(compiled_state, eager_state):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    # The weights moved: a step that did nothing would also agree.
    initial = _model(preset, False, network).network.trainable_variables
    moved = [not np.allclose(to_numpy(a), to_numpy(b))
             for a, b in zip(compiled.network.trainable_variables, initial)]
    assert sum(moved) > len(moved) // 2, moved


def test_samplers_follow_jit_compile():
    import torch._dynamo

    torch._dynamo.reset()
    keras.utils.set_random_seed(0)
    eager, compiled = _model("gcm_cu", False), _model("gcm_cu", True)
    one_eager = samplers.one_step(eager, 64, seed=1)
    one_compiled = samplers.one_step(compiled, 64, seed=1)
    np.testing.assert_allclose(to_numpy(one_compiled), to_numpy(one_eager), rtol=1e-5, atol=1e-6)
    flags = {key[-1]: fn.compiled for key, fn in compiled._inference_functions.items()}
    assert flags == {True: True}
    assert all(not fn.compiled for fn in eager._inference_functions.values())
