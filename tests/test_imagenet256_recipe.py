"""recipes/imagenet256_latent.py: the Table 6b recipe on mock latents."""

import csv
import json
import os
import sys

import numpy as np
import pytest

from keras_gcm.data import latents as latent_data
from tests.helpers import fid_files

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(_ROOT, "recipes"))
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
    with pytest.raises(SystemExit):  # the final FID needs a covariance: >= 2 samples
        recipe.parse_args(["--smoke", "--final-fid-samples", "1"])
    args = recipe.parse_args(["--latents", "x"])
    assert args.steps == 1000 * int(np.ceil(80 * 1_281_167 / 256 / 1000))
    assert recipe.parse_args(["--latents", "x", "--network", "xl2"]).preset == \
        "imagenet256_vu_dit_xl2"



# One backend: the recipe's FID wiring (flags -> decoded samples ->
# QualityMetric / final FID -> logs, metrics.json) is backend-independent;
# the FID arithmetic itself is tested on every backend in
# tests/test_inception.py and tests/test_frechet.py.
@pytest.mark.backends("jax")
def test_smoke_logs_one_step_fid_of_decoded_samples(tmp_path):
    weights, reference = fid_files(tmp_path)
    out = tmp_path / "run"
    metrics = recipe.main([
        "--smoke", "--output", str(out), "--precision", "fp32", "--steps", "1",
        "--fid-every", "1", "--fid-samples", "2", "--final-fid-samples", "2",
        "--inception-weights", weights, "--fid-reference", reference, "--no-save-model"])
    assert metrics["steps"] == 1
    with open(out / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0]  # the row of step 1
    # The recipe computes 1-step FIDs only (its docstring): no two-step column.
    assert "fid_two_step" not in rows[0] and "fid_two_step" not in metrics
    assert np.isfinite(float(rows[0]["fid_one_step"])) and float(rows[0]["fid_one_step"]) > 0
    # metrics.json holds the final FID, on --final-fid-samples fresh samples.
    final = json.load(open(out / "metrics.json"))["fid_one_step"]
    assert final == metrics["fid_one_step"] and np.isfinite(final) and final > 0
