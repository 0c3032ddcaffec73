"""`python -m keras_gcm.metrics.fid_stats`: reference statistics of a folder or an `.npz`."""

import os
import subprocess
import sys

import numpy as np
import pytest

from keras_gcm import data
from keras_gcm import metrics
from keras_gcm.metrics import fid_stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _digits_uint8():
    return np.round((data.digits("heldout")[:120] + 1.0) * 127.5).astype(np.uint8)


def _write_folder(path, pixels):
    from PIL import Image

    for i, image in enumerate(pixels):
        folder = path / f"class_{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[..., 0]).save(folder / f"{i:04d}.png")


def test_folder_and_npz_statistics_equal_the_direct_computation(tmp_path):
    pixels = _digits_uint8()
    expected = metrics.compute_statistics(metrics.digits_features, pixels / 127.5 - 1.0,
                                          progress=False)
    _write_folder(tmp_path / "folder", pixels)
    np.savez(tmp_path / "digits.npz", images=pixels)
    out = tmp_path / "stats" / "folder_fid.npz"
    fid_stats.main([str(tmp_path / "folder"), str(out), "--features", "digits",
                    "--channels", "1", "--batch-size", "32"])
    mu, cov = metrics.load_statistics(out)
    # The folder is read in file order, not the array's: same statistics all the same.
    np.testing.assert_allclose(mu, expected[0], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(cov, expected[1], rtol=1e-6, atol=1e-8)
    fid_stats.main([str(tmp_path / "digits.npz"), str(tmp_path / "npz_fid.npz"),
                    "--features", "digits", "--batch-size", "50"])
    mu_npz, cov_npz = metrics.load_statistics(tmp_path / "npz_fid.npz")
    np.testing.assert_allclose(mu_npz, expected[0], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(cov_npz, expected[1], rtol=1e-6, atol=1e-8)
    # The saved statistics are a reference the FID class reads: the data against itself is 0.
    fid = metrics.FrechetInceptionDistance(metrics.digits_features)
    fid.update(pixels / 127.5 - 1.0)
    assert fid.result(out) < 1e-6


def test_clear_errors_name_the_fix(tmp_path, capsys):
    with pytest.raises(SystemExit):
        fid_stats.main([str(tmp_path), str(tmp_path / "out.npz")])
    assert "--inception-weights" in capsys.readouterr().err
    with pytest.raises(ValueError, match="tfds:NAME"):
        fid_stats.source_images(str(tmp_path / "missing.png"))
    with pytest.raises(ValueError, match="tfds:cifar10:train"):
        fid_stats.source_images("tfds:")


def test_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "keras_gcm.metrics.fid_stats", "--help"], cwd=ROOT,
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")),
    )
    assert result.returncode == 0, result.stderr
    assert "tfds:NAME[:SPLIT]" in result.stdout
