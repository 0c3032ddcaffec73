"""recipes/imagenet256_latent.py: the Table 6b recipe on mock latents."""

import json
import os
import sys

import numpy as np
import pytest

from keras_gcm.data import latents as latent_data

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "recipes"))
import imagenet256_latent as recipe  # noqa: E402


def test_smoke_trains_decodes_grids_and_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["--smoke", "--output", str(out), "--precision", "fp32"]
    metrics = recipe.main(args)
    assert metrics["steps"] == 2 and np.isfinite(metrics["final_loss"])
    assert metrics["preset"] == "imagenet256_vu_dit_b4" and metrics["num_classes"] == 10
    assert metrics["grids"] and os.path.exists(out / metrics["grids"][0])
    # Rerunning the finished run restores the checkpoint instead of training.
    again = recipe.main(args)
    assert again["resumed_from_step"] == 2 and again["steps"] == 2
    assert json.load(open(out / "metrics.json"))["resumed_from_step"] == 2


def test_bad_latents_and_arguments_get_clear_errors(tmp_path):
    with pytest.raises(SystemExit):
        recipe.parse_args([])  # --latents is required without --smoke
    with pytest.raises(FileNotFoundError, match="encode_latents"):
        recipe.main(["--latents", str(tmp_path / "none"), "--steps", "1",
                     "--steps-per-epoch", "1", "--output", str(tmp_path / "o")])
    latent_data.mock_latents(tmp_path / "unlabelled", 8, (8, 8, 4), num_classes=0)
    with pytest.raises(ValueError, match="num_classes"):
        recipe.main(["--latents", str(tmp_path / "unlabelled"), "--steps", "1",
                     "--steps-per-epoch", "1", "--output", str(tmp_path / "o")])
    args = recipe.parse_args(["--latents", "x"])
    assert args.steps == 1000 * int(np.ceil(80 * 1_281_167 / 256 / 1000))
    assert recipe.parse_args(["--latents", "x", "--network", "xl2"]).preset == \
        "imagenet256_vu_dit_xl2"
