"""recipes/ablation.py: a tiny end-to-end run and its summary arithmetic."""

import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "recipes"))

import ablation  # noqa: E402


def test_tiny_ablation_writes_table_json_and_plots(tmp_path):
    out = str(tmp_path / "abl")
    argv = ["--dataset", "two_moons", "--presets", "cu_a_baseline", "gcm_vu",
            "--seeds", "3", "--steps", "3", "--batch-size", "16", "--eval-samples", "64",
            "--hidden-units", "8", "--num-blocks", "1", "--output", out]
    summary = ablation.main(argv)
    assert list(summary) == ["cu_a_baseline", "gcm_vu"]
    for name in ("table.md", "runs.json", "summary.json", "ablation.png", "samples.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name

    with open(os.path.join(out, "runs.json")) as f:
        runs = json.load(f)
    assert [(r["preset"], r["seed"]) for r in runs] == [("cu_a_baseline", 3), ("gcm_vu", 3)]
    for run in runs:
        assert run["settings"]["steps"] == 3 and run["settings"]["batch_size"] == 16
        for steps in ("one_step", "two_step"):
            assert set(run[steps]) == {"energy_distance", "sliced_w2"}
            assert np.isfinite(run[steps]["energy_distance"])
            # An untrained-ish model is far from the data: well above the floor.
            assert run[steps]["sliced_w2"] > 0.05
    assert runs[1]["paper_cifar10_fid"] == [2.86, 2.11]

    table = open(os.path.join(out, "table.md")).read()
    assert "| `cu_a_baseline` | Table 2 A |" in table
    assert "| `gcm_vu` | Table 3 L (GCM-VU) |" in table
    assert "6.40 / 4.28" in table and "floor" in table
    assert "Command: `python recipes/ablation.py --dataset two_moons" in table
    # The table shows the JSON's numbers (one seed: no spread).
    ed = runs[0]["one_step"]["energy_distance"]
    row = [line for line in table.splitlines() if line.startswith("| `cu_a_baseline`")][0]
    shown = float(row.split("|")[3].strip().strip("*"))
    assert shown == pytest.approx(ed, abs=10 ** -(len(str(shown).split(".")[1])))

    # A second call with the same settings reuses the saved runs.
    before = os.path.getmtime(os.path.join(out, "runs", "gcm_vu__seed3.json"))
    again = ablation.main(argv + ["--no-plots"])
    assert os.path.getmtime(os.path.join(out, "runs", "gcm_vu__seed3.json")) == before
    assert again["gcm_vu"]["one_step/energy_distance"]["values"] == [
        runs[1]["one_step"]["energy_distance"]]


def _record(preset, seed, one, two):
    return {"preset": preset, "seed": seed, "description": f"Table 2 X: {preset}",
            "paper_cifar10_fid": None,
            "one_step": {"energy_distance": one, "sliced_w2": 2 * one},
            "two_step": {"energy_distance": two, "sliced_w2": 2 * two}}


def test_summary_is_mean_and_sample_standard_deviation():
    records = [_record("b", 0, 0.10, 0.05), _record("a", 0, 0.30, 0.01),
               _record("b", 1, 0.20, 0.07), _record("b", 2, 0.60, 0.09)]
    summary = ablation.summarise(records, ("energy_distance", "sliced_w2"))
    assert list(summary) == ["b", "a"]
    stat = summary["b"]["one_step/energy_distance"]
    assert stat["mean"] == pytest.approx(0.3)
    assert stat["std"] == pytest.approx(np.std([0.1, 0.2, 0.6], ddof=1))
    assert summary["b"]["two_step/sliced_w2"]["mean"] == pytest.approx(0.14)
    assert summary["a"]["one_step/energy_distance"]["std"] == 0.0
    settings = {"dataset": "two_moons", "steps": 10, "batch_size": 8, "learning_rate": 1e-3,
                "ema_decay": 0.99, "eval_samples": 100, "backend": "jax"}
    table = ablation.markdown_table(summary, [], settings, "python recipes/ablation.py")
    row_b = [line for line in table.splitlines() if line.startswith("| `b`")][0]
    assert "0.3000 ± 0.2646" in row_b  # 4 places: 3 significant digits of 0.01
    row_a = [line for line in table.splitlines() if line.startswith("| `a`")][0]
    assert "**0.0100**" in row_a  # the best 2-step mean is bold
    assert "seeds 0, 1, 2" in table


def test_curriculum_is_scaled_to_the_run_length():
    settings = ablation.settings_of(ablation.parse_args(
        ["--presets", "t7d_curriculum", "--steps", "4000", "--hidden-units", "8",
         "--num-blocks", "1"]), "jax")
    model = ablation.build_model("t7d_curriculum", settings, seed=0)
    # 50K of the paper's 400K iterations -> 500 of 4000 steps.
    assert model.curriculum.halve_every == 500
    assert model.curriculum.initial_epsilon == 0.5
    settings["scale_curriculum"] = False
    assert ablation.build_model("t7d_curriculum", settings, 0).curriculum.halve_every == 50_000


def test_digits_settings_build_a_small_unet_on_the_train_split():
    args = ablation.parse_args(["--dataset", "digits", "--steps", "2", "--batch-size", "4"])
    assert (args.steps, args.batch_size, args.eval_samples) == (2, 4, 1000)
    settings = ablation.settings_of(args, "jax")
    net = ablation.build_network(settings, time_inputs=2, seed=0)
    assert type(net).__name__ == "SongUNet" and net.time_inputs == 2
    data = ablation.training_data(settings, seed=0)
    assert data.shape == (8, 8, 8, 1) and data.min() >= -1 and data.max() <= 1


def test_unknown_dataset_and_preset_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="Unknown data set"):
        ablation.main(["--dataset", "moons", "--output", str(tmp_path)])
    with pytest.raises(ValueError, match="No preset matches"):
        ablation.main(["--presets", "t9_*", "--output", str(tmp_path)])


def test_changes_are_paired_by_seed_against_the_base_row():
    records = [_record("cu_a_baseline", 0, 0.30, 0.10), _record("cu_b", 0, 0.20, 0.12),
               _record("cu_a_baseline", 1, 0.50, 0.10), _record("cu_b", 1, 0.30, 0.11),
               _record("cu_b", 2, 9.00, 9.00)]  # no baseline for seed 2: not paired
    changes = ablation.paired_changes(records, "energy_distance")
    assert list(changes) == ["cu_b"] and changes["cu_b"]["base"] == "cu_a_baseline"
    assert changes["cu_b"]["one_step"]["values"] == pytest.approx([-0.1, -0.2])
    assert changes["cu_b"]["one_step"]["std"] == pytest.approx(np.std([-0.1, -0.2], ddof=1))
    assert changes["cu_b"]["two_step"]["mean"] == pytest.approx(0.015)
    assert ablation.base_row("t7b_edm") == "cu_d" and ablation.base_row("gcm_vu") == "vu_k"
    assert ablation.base_row("cu_a_baseline") is None


# One backend: the recipe run is backend-independent Keras code whose
# arithmetic the cross-backend parity tests check; the backends share the
# slow runs out so CI stays in its 2-core budget.
@pytest.mark.backends("torch")
def test_a_folder_of_images_is_an_ablation_data_set(tmp_path):
    from PIL import Image

    import keras_gcm

    x = keras_gcm.data.digits("heldout")[:40]
    pixels = np.round((x + 1.0) * 127.5).astype(np.uint8)
    folder = tmp_path / "my_digits"
    folder.mkdir()
    for i, image in enumerate(pixels):
        Image.fromarray(image[..., 0]).save(folder / f"{i:03d}.png")
    with pytest.raises(SystemExit):
        ablation.parse_args(["--dataset", str(folder)])  # needs --image-size
    out = str(tmp_path / "abl")
    summary = ablation.main([
        "--dataset", str(folder), "--image-size", "8", "--channels", "1",
        "--fid-features", "digits", "--presets", "gcm_cu", "--steps", "2",
        "--batch-size", "8", "--eval-samples", "40", "--model-channels", "8",
        "--output", out, "--no-plots"])
    table = open(os.path.join(out, "table.md")).read()
    assert "Frechet distance" in table and "gcm_cu" in table
    settings = ablation.settings_of(ablation.parse_args([
        "--dataset", str(folder), "--image-size", "8", "--channels", "1",
        "--fid-features", "digits", "--eval-samples", "40"]), "jax")
    # The floor is all of the folder against itself: Frechet distance 0, and the
    # unbiased energy distance of a set with itself, -2/n times its mean pairwise distance.
    floor = ablation.floor(settings, seed=0)
    assert abs(floor["frechet_distance"]) < 1e-3
    flat = (pixels / 127.5 - 1.0).reshape(len(pixels), -1)
    pairwise = np.linalg.norm(flat[:, None] - flat[None], axis=-1)
    mean_pairwise = pairwise.sum() / (len(flat) * (len(flat) - 1))
    np.testing.assert_allclose(floor["pixel_energy_distance"], -2 * mean_pairwise / len(flat),
                               rtol=1e-4)
    assert summary is not None
