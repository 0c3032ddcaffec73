"""The image recipes end to end (tiny settings), and bad-input errors before training."""

import csv
import json
import os
import sys

import numpy as np
import pytest
import keras

import keras_gcm
from keras_gcm.data import StepIndexedBatches
from keras_gcm.utils import image_grid
from keras_gcm.metrics import digits_quality
from keras_gcm.metrics import save_statistics

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "recipes"))
import cifar10 as cifar10_recipe  # noqa: E402
import digits as digits_recipe  # noqa: E402


def _png(path):
    from PIL import Image

    return np.array(Image.open(path))


# -------------------------------------------------------------------- digits
def test_digits_recipe_writes_metrics_and_grids(tmp_path):
    out = tmp_path / "digits"
    metrics = digits_recipe.main([
        "--steps", "4", "--log-every", "2", "--grid-every", "4", "--batch-size", "16",
        "--model-channels", "8", "--channel-mult", "1", "--attn-resolutions", "",
        "--eval-samples", "64", "--log-samples", "20", "--output", str(out),
        "--verbose", "0",
    ])
    with open(out / "metrics.json") as f:
        saved = json.load(f)
    assert saved == json.loads(json.dumps(metrics))
    for key in ("one_step", "two_step", "untrained_one_step", "train_split_floor"):
        assert set(saved[key]) == {"frechet_digits_distance", "pixel_energy_distance"}
    # The floor is the train split scored against the held-out split.
    floor = digits_quality(keras_gcm.data.digits("train"))
    assert saved["train_split_floor"] == pytest.approx(floor)
    assert saved["steps"] == 4 and [row["step"] for row in saved["curve"]] == [2, 4]
    assert all(np.isfinite(row["fdd_1step"]) for row in saved["curve"])
    assert saved["network"]["parameters"] > 0 and saved["train_seconds"] > 0
    assert saved["grids"] == [os.path.join("grids", "samples_one_step_00000004.png")]
    # 8 x 8 grids of 8x8 digits shown 4x: 8 * (32 + 1) + 1 pixels.
    for name in ("samples_1step", "samples_2step", "samples_untrained", "data"):
        assert _png(out / f"{name}.png").shape == (265, 265)
    heldout = keras_gcm.data.digits("heldout")
    np.testing.assert_array_equal(
        _png(out / "data.png"), image_grid(heldout[:64], nrow=8, scale=4)[..., 0]
    )
    assert _png(out / "grids" / "samples_one_step_00000004.png").shape == (265, 265)


def test_recipes_reject_bad_images_with_clear_errors():
    good = np.zeros((4, 8, 8, 1), "float32")
    digits_recipe.check_training_images(good)
    with pytest.raises(ValueError, match=r"\[-1, 1\].*x / 127.5 - 1"):
        digits_recipe.check_training_images(good + 200.0)
    with pytest.raises(ValueError, match="rank-4"):
        digits_recipe.check_training_images(good[..., 0])
    with pytest.raises(ValueError, match=r"\(8, 8, 1\)"):
        digits_recipe.check_training_images(np.zeros((4, 8, 8, 3), "float32"))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        cifar10_recipe.check_training_images(np.full((2, 32, 32, 3), 1.5, "float32"))


def _tiny_songunet_model():
    network = keras_gcm.networks.SongUNet(
        img_resolution=8, in_channels=1, model_channels=8, channel_mult=[1],
        num_blocks=1, attn_resolutions=[], seed=0,
    )
    model = keras_gcm.ConsistencyModel(network, seed=0)
    model.compile(optimizer=keras_gcm.optimizers.RAdam(1e-3))
    return model


def test_fit_rejects_images_of_the_wrong_range_or_rank_before_training():
    model = _tiny_songunet_model()
    assert model.network.input_range == (-1.0, 1.0)  # SongUNet declares EDM's range
    pixels = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 1)).astype("float32")
    with pytest.raises(ValueError, match=r"\[-1, 1\].*x / 127.5 - 1"):
        model.fit(pixels, batch_size=8, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"x / 127.5 - 1"):  # also through a PyDataset
        model.fit(StepIndexedBatches(pixels, 8), steps_per_epoch=1, verbose=0)
    with pytest.raises(ValueError, match=r"\(N, 8, 8, 1\).*x\[\.\.\., None\]"):
        model.fit(np.zeros((16, 8, 8), "float32"), batch_size=8, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"x / 2 - 1|\[0, 1\]"):
        model.fit(np.full((16, 8, 8, 1), 0.9, "float32") * 1.2, batch_size=8, verbose=0)
    assert not model.optimizer.built or int(
        keras.ops.convert_to_numpy(model.optimizer.iterations)) == 0


# ------------------------------------------------------------------- cifar10
def _csv_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
# One backend: the recipe run is backend-independent Keras code whose
# arithmetic the cross-backend parity tests check; the backends share the
# slow runs out so CI stays in its 2-core budget.
# TensorFlow: its checkpoint resume is not covered by test_callbacks.py.
@pytest.mark.backends("tensorflow")
def test_cifar10_smoke_runs_checkpoints_and_resumes(tmp_path):
    out = tmp_path / "cifar"
    first = cifar10_recipe.main(["--smoke", "--steps", "1", "--output", str(out)])
    assert first["steps"] == 1 and first["resumed_from_step"] == 0
    assert (out / "model.keras").is_file()
    # The grid written when training stopped: 16 samples, 4 x 4 of 32x32 RGB.
    assert first["grids"] == [os.path.join("grids", "samples_one_step_00000001.png")]
    assert _png(out / first["grids"][0]).shape == (4 * 33 + 1, 4 * 33 + 1, 3)

    second = cifar10_recipe.main(["--smoke", "--steps", "2", "--output", str(out)])
    assert second["resumed_from_step"] == 1 and second["steps"] == 2
    with open(out / "checkpoints" / "checkpoint.json") as f:
        assert json.load(f)["step"] == 2
    rows = _csv_rows(out / "log.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1]  # one row per epoch, both runs
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    assert second["grids"] == [os.path.join("grids", "samples_one_step_00000002.png")]
    # --smoke also ran the Table 9 configuration (EDM augmentation 0.12).
    assert first["augment"] == 0.0 and first["table9"]["augment"] == 0.12
    assert second["table9"]["steps"] == 2 and second["table9"]["resumed_from_step"] == 1
    loaded = keras.saving.load_model(out / "table9" / "model.keras")
    assert loaded.augment.p == 0.12 and loaded.network.augment_dim == 9


def test_cifar10_missing_fid_files_fail_before_training(tmp_path):
    reference = tmp_path / "reference.npz"
    save_statistics(reference, np.zeros(2048), np.eye(2048))
    out = tmp_path / "cifar"
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05"):
        cifar10_recipe.main(["--smoke", "--output", str(out), "--inception-weights",
                             str(tmp_path / "missing.pth"), "--fid-reference", str(reference)])
    with pytest.raises(FileNotFoundError, match="statistics"):
        cifar10_recipe.main(["--smoke", "--output", str(out), "--inception-weights",
                             str(tmp_path / "missing.pth"), "--fid-reference",
                             str(tmp_path / "missing.npz")])
    assert not (out / "checkpoints").exists()
    with pytest.raises(SystemExit):  # one of the two files alone
        cifar10_recipe.parse_args(["--inception-weights", "x.pth"])


def test_cifar10_defaults_are_the_papers_configuration():
    args = cifar10_recipe.parse_args([])
    assert (args.batch_size, args.steps, args.learning_rate, args.ema_decay) == (
        512, 400_000, 1e-4, 0.9999)
    assert (args.beta_1, args.beta_2, args.adam_epsilon, args.dropout) == (
        0.9, 0.999, 1e-8, 0.2)
    assert args.xflip and args.precision == "tf32" and args.preset == "gcm_cu"
    network = cifar10_recipe.build_network(args, time_inputs=1)
    network.build((None, 32, 32, 3))
    assert network.count_params() == 55_732_739
    assert cifar10_recipe.parse_args(["--precision", "bf16"]).epsilon == 0.02
    assert cifar10_recipe.parse_args(["--precision", "bf16", "--epsilon", "0.01"]).epsilon == 0.01


def test_cifar10_precision_scope_sets_and_restores_the_policy():
    backend = keras.backend.backend()
    before = keras.config.dtype_policy().name
    with cifar10_recipe.precision_scope("bf16", backend):
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == before
    with pytest.raises(ValueError, match="precision"):
        with cifar10_recipe.precision_scope("fp8", backend):
            pass


def test_cifar10_table8_and_table9_configurations_and_network_flag(capsys):
    table8 = cifar10_recipe.parse_args([])
    assert (table8.batch_size, table8.augment, table8.xflip) == (512, 0.0, True)
    table9 = cifar10_recipe.parse_args(["--batch-size", "1024", "--augment", "0.12"])
    assert (table9.batch_size, table9.augment, table9.xflip) == (1024, 0.12, True)
    smoke9 = cifar10_recipe.parse_args(["--smoke", "--augment", "0.12"])
    model = cifar10_recipe.build_model(smoke9)
    assert model.augment.p == 0.12 and model.augment.label_dim == 9
    assert model.network.augment_dim == 9 and model.network.embedding_type == "positional"
    assert cifar10_recipe.build_model(cifar10_recipe.parse_args(["--smoke"])).augment is None
    ncsnpp = cifar10_recipe.build_network(
        cifar10_recipe.parse_args(["--smoke", "--network", "ncsnpp"]), time_inputs=1)
    assert (ncsnpp.embedding_type, ncsnpp.encoder_type) == ("fourier", "residual")
    with pytest.raises(SystemExit):
        cifar10_recipe.parse_args(["--augment", "1.5"])
    assert "--augment must be a probability in [0, 1]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cifar10_recipe.parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse rewraps lines
    assert "Table 8" in help_text and "--batch-size 1024 --augment 0.12" in help_text
