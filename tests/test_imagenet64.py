"""ImageNet-64 fine-tuning: the preset, the learning-rate decay and the recipe (smoke)."""

import csv
import json
import os
import sys

import numpy as np
import pytest
from keras import ops

import keras_gcm
from keras_gcm import presets
from tests.helpers import fid_files

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(_ROOT, "recipes"))
import imagenet64 as recipe  # noqa: E402


def test_finetune_preset_is_appendix_g2_with_ects_curriculum():
    parts = presets.components("imagenet64_cu_finetune")
    assert presets.time_inputs("imagenet64_cu_finetune") == 1
    assert "Table 6a" in presets.describe("imagenet64_cu_finetune")
    weight = parts["weighting"]
    assert (weight.gamma, weight.lam) == (1.0, 3.0)
    sampler = parts["time_sampler"]
    assert isinstance(sampler, keras_gcm.time_sampling.ConstantUpperLimit)
    assert isinstance(sampler.t_dist, keras_gcm.time_sampling.UniformTime)
    step, curriculum = parts["step"], parts["curriculum"]
    assert isinstance(step, keras_gcm.schedules.ECTStep)
    # ECT (q = 4, a stage per 25K of 100K iterations): 1 / 4^(stage + 1).
    eps = [float(ops.convert_to_numpy(curriculum.epsilon(n, step.epsilon)))
           for n in (0, 24_999, 25_000, 50_000, 75_000, 99_999, 200_000)]
    np.testing.assert_allclose(eps, [1 / 4, 1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 256, 1 / 256])


def test_inverse_sqrt_decay_is_ects_schedule():
    schedule = keras_gcm.optimizers.InverseSqrtDecay(1e-3, 2000)
    values = [float(ops.convert_to_numpy(schedule(n))) for n in (0, 2000, 8000, 100_000)]
    np.testing.assert_allclose(values, [1e-3, 1e-3, 5e-4, 1e-3 / np.sqrt(50)], rtol=1e-6)
    clone = keras_gcm.optimizers.InverseSqrtDecay.from_config(schedule.get_config())
    assert clone.get_config() == schedule.get_config()


def test_recipe_defaults_are_ects_setting():
    args = recipe.parse_args([])
    assert (args.network, args.batch_size, args.steps) == ("edm2-s", 128, 100_000)
    assert (args.learning_rate, args.beta_1, args.beta_2) == (1e-3, 0.9, 0.99)
    assert (args.dropout, args.dropout_max_resolution, args.lr_ref_steps) == (0.4, 16, 2000)
    assert args.preset == "imagenet64_cu_finetune" and args.ema_decay == 0.9999
    xl = recipe.parse_args(["--network", "edm2-xl"])
    assert (xl.learning_rate, xl.dropout) == (7e-4, 0.5)
    with pytest.raises(SystemExit):
        recipe.parse_args(["--init", "missing.pt"])


def _checkpoint(path, seed=0, **overrides):
    config = dict(recipe.smoke_network_config(), seed=seed)
    config.update(overrides)
    net = keras_gcm.networks.EDM2UNet(**config)
    net.build()
    rng = np.random.default_rng(seed)
    state = keras_gcm.networks.edm2_state_dict(net)
    state = {f"unet.{k}": (rng.uniform(0.2, 1.0, v.shape).astype("float32")
                           if k.endswith("gain") else v) for k, v in state.items()}
    np.savez(path, **state)
    return state


# Two compiled consistency train steps of a 64x64 network: minutes under
# TensorFlow's XLA compile on 2 CPU cores; the same model code runs under
# TensorFlow in tests/test_edm2.py and tests/test_digits_finetune.py.
@pytest.mark.backends("jax", "torch")
def test_recipe_fine_tunes_from_a_checkpoint_and_resumes(tmp_path):
    ckpt = tmp_path / "edm2.npz"
    state = _checkpoint(ckpt)
    out = tmp_path / "run"
    first = recipe.main(["--smoke", "--init", str(ckpt), "--steps", "1", "--output", str(out)])
    assert first["steps"] == 1 and first["resumed_from_step"] == 0
    assert np.isfinite(first["final_loss"])
    assert len(first["grids"]) == 1 and first["grids"][0].endswith("00000001.png")
    assert (out / first["grids"][0]).is_file()
    second = recipe.main(["--smoke", "--init", str(ckpt), "--steps", "2", "--output", str(out)])
    assert second["resumed_from_step"] == 1 and second["steps"] == 2
    with open(out / "checkpoints" / "checkpoint.json") as f:
        assert json.load(f)["step"] == 2
    assert state  # the checkpoint held non-zero gains: a non-trivial initial network


def test_recipe_rejects_a_checkpoint_of_another_configuration(tmp_path):
    ckpt = tmp_path / "other.npz"
    _checkpoint(ckpt, model_channels=16, channels_per_head=16)
    with pytest.raises(ValueError, match=r"emb_fourier.freqs' has shape \(16,\).*\(8,\)"):
        recipe.main(["--smoke", "--init", str(ckpt), "--output", str(tmp_path / "run")])
    assert not (tmp_path / "run" / "checkpoints").exists()



# One backend: the recipe's FID wiring (flags -> QualityMetric callbacks ->
# logs / metrics.json) is backend-independent; the FID arithmetic itself is
# tested on every backend in tests/test_inception.py and tests/test_frechet.py.
@pytest.mark.backends("jax")
def test_recipe_logs_one_and_two_step_fid_with_inception_weights(tmp_path):
    weights, reference = fid_files(tmp_path)
    out = tmp_path / "run"
    metrics = recipe.main([
        "--smoke", "--steps", "1", "--fid-every", "1", "--fid-samples", "2",
        "--inception-weights", weights, "--fid-reference", reference, "--output", str(out)])
    assert metrics["steps"] == 1
    with open(out / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0]  # the row of step 1
    with open(out / "metrics.json") as f:
        saved = json.load(f)
    for key in ("fid_one_step", "fid_two_step"):
        value = float(rows[0][key])
        assert np.isfinite(value) and value > 0
        assert metrics[key] == saved[key] == pytest.approx(value)
