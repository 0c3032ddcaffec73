"""ConsistencyModel with the SongUNet: save/load and training on images."""

import numpy as np

import keras

import keras_gcm
from keras_gcm import samplers


def _tiny_unet(time_inputs):
    return keras_gcm.networks.SongUNet(
        img_resolution=8, in_channels=1, model_channels=8, channel_mult=[1, 2],
        num_blocks=1, attn_resolutions=[4], dropout=0.1, time_inputs=time_inputs, seed=0,
    )


def test_keras_file_with_a_songunet_gives_identical_samples(tmp_path):
    images = np.random.default_rng(0).uniform(-1, 1, (16, 8, 8, 1)).astype("float32")
    for preset in ("gcm_vu",):  # (the CU path is the same code with one time input)
        net = _tiny_unet(keras_gcm.presets.time_inputs(preset))
        model = keras_gcm.ConsistencyModel.from_preset(preset, net)
        model.compile(optimizer=keras_gcm.optimizers.RAdam(1e-3))
        model.fit(images, batch_size=8, epochs=1, verbose=0)
        path = tmp_path / f"{preset}.keras"
        model.save(path)
        loaded = keras.saving.load_model(path)
        assert isinstance(loaded.network, keras_gcm.networks.SongUNet)
        for use_ema in (True, False):
            np.testing.assert_allclose(
                samplers.two_step(loaded, 4, seed=1, use_ema=use_ema),
                samplers.two_step(model, 4, seed=1, use_ema=use_ema),
                rtol=1e-5, atol=1e-6,
            )
