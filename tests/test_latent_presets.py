"""The Table 6b presets (latent-space ImageNet-256, appendix G.2)."""

import numpy as np

import keras_gcm
from keras_gcm import presets
from keras_gcm import time_sampling as T


def test_table_6b_presets_have_appendix_g2_values():
    for name, omega, kappa, interval in (("imagenet256_vu_dit_b4", 3.0, 0.0, (0.0, 1.0)),
                                         ("imagenet256_vu_dit_xl2", 0.2, 0.92, (0.0, 0.75))):
        c = presets.components(name)
        assert presets.time_inputs(name) == 2 and "Table 6b" in presets.describe(name)
        assert c["step"].epsilon == 0.02 and c["step"].mu == 3.5
        assert c["weighting"].gamma == 0.2 and c["weighting"].lam == 6.0
        sampler = c["time_sampler"]
        assert isinstance(sampler, T.EqualTimeMixture)
        assert (sampler.probability, sampler.mean, sampler.std) == (0.75, -0.4, 1.0)
        assert sampler.equal_time_importance is False
        assert sampler.base.s_dist.nu == 1.0 and isinstance(sampler.base.t_dist, T.SineTime)
        assert c["loss"].group_size == 2 and c["loss"].sigma == 0.1
        assert c["importance_weighting"] is True
        g = presets.guidance(name)
        assert g == {"label_dropout": 0.1, "model_guidance": omega,
                     "model_guidance_kappa": kappa, "model_guidance_interval": interval}
    assert presets.guidance("gcm_vu") == {}


def test_from_preset_applies_guidance_to_conditional_networks_only():
    dit = keras_gcm.networks.DiT(img_resolution=4, in_channels=1, patch_size=2,
                                 hidden_size=16, depth=1, num_heads=2, label_dim=3)
    model = keras_gcm.ConsistencyModel.from_preset("imagenet256_vu_dit_b4", dit)
    assert model.label_dropout == 0.1 and model.model_guidance == 3.0
    mlp = keras_gcm.networks.MLP(time_inputs=2)
    plain = keras_gcm.ConsistencyModel.from_preset("imagenet256_vu_dit_b4", mlp)
    assert plain.label_dropout == 0.0 and not plain.uses_model_guidance
    # The factories have the paper's sizes (MeanFlow: B/4 131M, XL/2 676M).
    b4 = keras_gcm.networks.DiT.parameter_count(**keras_gcm.networks.DiT.b4().get_config())
    xl2 = keras_gcm.networks.DiT.parameter_count(**keras_gcm.networks.DiT.xl2().get_config())
    assert np.round(b4 / 1e6) == 131 and np.round(xl2 / 1e6) == 676
