"""`recipes/images.py`: your own folder of images, class-conditional from subfolders, resumable."""

import json
import os
import sys

import numpy as np
import pytest

from keras_gcm import data

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "recipes"))
import images as images_recipe  # noqa: E402


def _digit_folder(path, count=60, classes=(0, 1, 2)):
    """8x8 digits as grayscale PNGs, one subfolder per class (names: the digits)."""
    from PIL import Image

    x, y = data.digits("heldout", labels=True)
    keep = np.isin(y, classes)
    x, y = x[keep][:count], y[keep][:count]
    pixels = np.round((x + 1.0) * 127.5).astype(np.uint8)
    for i, (image, label) in enumerate(zip(pixels, y)):
        folder = path / f"digit_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[..., 0]).save(folder / f"{i:04d}.png")
    return pixels, y


def test_labels_come_from_the_subfolder_names(tmp_path):
    pixels, y = _digit_folder(tmp_path / "digits")
    loaded, labels, names = images_recipe.load_folder(str(tmp_path / "digits"), 8, channels=1)
    assert names == ["digit_0", "digit_1", "digit_2"]
    assert loaded.shape == (len(pixels), 8, 8, 1) and loaded.dtype == np.uint8
    # Each loaded image is one of the written ones, with its own class.
    for image, label in zip(loaded, labels):
        match = np.flatnonzero(np.all(pixels == image, axis=(1, 2, 3)))
        assert match.size and label in y[match]
    assert images_recipe.class_subfolders(str(tmp_path / "digits" / "digit_0")) == []
    _, none, no_names = images_recipe.load_folder(str(tmp_path / "digits"), 8, channels=1,
                                                  conditional=False)
    assert none is None and no_names == []


# One backend: the recipe run is backend-independent Keras code whose
# arithmetic the cross-backend parity tests check; the backends share the
# slow runs out so CI stays in its 2-core budget.
@pytest.mark.backends("jax")
def test_trains_conditionally_writes_grids_fid_and_resumes(tmp_path):
    _digit_folder(tmp_path / "digits")
    common = [str(tmp_path / "digits"), "--image-size", "8", "--channels", "1",
              "--fid-features", "digits", "--steps-per-epoch", "1", "--batch-size", "8",
              "--model-channels", "8", "--channel-mult", "1", "--grid-every", "1",
              "--fid-samples", "64", "--output", str(tmp_path / "run"), "--verbose", "0"]
    first = images_recipe.main(common + ["--steps", "2"])
    assert first["class_names"] == ["digit_0", "digit_1", "digit_2"]
    assert first["steps"] == 2 and first["resumed_from_step"] == 0
    assert first["grids"] and all((tmp_path / "run" / g).is_file() for g in first["grids"])
    for key in ("fid_one_step", "fid_two_step", "fid_untrained_one_step"):
        assert np.isfinite(first[key]) and first[key] > 0
    # The same command with more steps continues from the checkpoint.
    second = images_recipe.main(common + ["--steps", "3"])
    assert second["resumed_from_step"] == 2 and second["steps"] == 3
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["steps"] == 3 and (tmp_path / "run" / "samples_1step.png").is_file()


def test_bad_arguments_say_what_to_do(tmp_path, capsys):
    _digit_folder(tmp_path / "digits", count=10)
    with pytest.raises(SystemExit):
        images_recipe.parse_args([str(tmp_path / "digits"), "--image-size", "16",
                                  "--fid-features", "digits"])
    assert "--image-size 8" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        images_recipe.parse_args([str(tmp_path / "nowhere"), "--image-size", "8"])
    assert "not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        images_recipe.parse_args([str(tmp_path / "digits"), "--image-size", "8",
                                  "--fid-features", "inception"])
    assert "--inception-weights" in capsys.readouterr().err
