"""Tests of the Keras FID Inception-v3 network against `pytorch-fid`.

`tests/fixtures/inception_fid_random.npz` (written by
`tools/make_inception_fixture.py` with pytorch-fid 0.3.0) holds a seed recipe
for random weights of the FID weight file (keys and shapes) and the pool3
features pytorch-fid's `InceptionV3([3])` computes with them for seeded
images. Here the same weights are regenerated with NumPy, converted with
`load_pytorch_fid_weights` and run through our Keras network.
"""

import importlib.util
import os

import numpy as np
import pytest

import keras

from keras_gcm.metrics.inception import (
    FID_WEIGHTS_URL,
    BilinearResize,
    fid_inception_v3,
    load_pytorch_fid_weights,
)

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_FIXTURE = os.path.join(_ROOT, "tests", "fixtures", "inception_fid_random.npz")


def _load_fixture_tool():
    path = os.path.join(_ROOT, "tools", "make_inception_fixture.py")
    spec = importlib.util.spec_from_file_location("make_inception_fixture", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_fixture_tool()


@pytest.fixture(scope="module")
def fixture():
    with np.load(_FIXTURE) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def random_weights(fixture):
    keys, shapes = tool.recipe_from_fixture(fixture)
    return tool.random_state_dict(keys, shapes, int(fixture["weight_seed"]))


@pytest.fixture(scope="module")
def network(random_weights):
    return fid_inception_v3(random_weights)


def _fixture_images(fixture):
    groups = [tuple(int(v) for v in g) for g in fixture["image_groups"]]
    return tool.random_images(int(fixture["image_seed"]), groups)


def test_features_match_pytorch_fid(fixture, network):
    # pytorch-fid feeds [0, 1] images and maps them with 2x - 1; we take
    # [-1, 1]. Group 1: 32x32 (upsampled to 299); group 2: 341x405
    # (downsampled without anti-aliasing).
    features = np.concatenate(
        [
            keras.ops.convert_to_numpy(network.predict_on_batch(2.0 * x - 1.0))
            for x in _fixture_images(fixture)
        ]
    )
    expected = fixture["features"]
    assert features.shape == expected.shape == (4, 2048)
    scale = np.max(np.abs(expected))
    max_difference = np.max(np.abs(features - expected))
    assert max_difference <= 1e-4 * scale, (max_difference, scale)
    print(f"max |keras - pytorch-fid| = {max_difference:.3g} (scale {scale:.3g})")
    # The comparison is not vacuous: the features vary across images and
    # channels (each FID quirk, e.g. counting the pool padding, the E_2 max
    # pool or an anti-aliased resize, moves them by 5-20 % of their scale).
    tolerance = 1e-4 * scale
    assert np.mean(expected > 0) > 0.5
    for i, j in [(0, 1), (2, 3), (0, 2)]:
        assert np.max(np.abs(expected[i] - expected[j])) > 100 * tolerance


def test_converter_maps_oihw_to_hwio_and_batch_norm(network, random_weights):
    conv = network.get_layer("Mixed_6b_branch7x7_2_conv")
    torch_kernel = random_weights["Mixed_6b.branch7x7_2.conv.weight"]
    assert torch_kernel.shape == (128, 128, 1, 7)
    kernel = keras.ops.convert_to_numpy(conv.kernel)
    assert kernel.shape == (1, 7, 128, 128)
    for out_c, in_c, col in [(0, 0, 0), (3, 17, 6), (127, 5, 2)]:
        assert kernel[0, col, in_c, out_c] == torch_kernel[out_c, in_c, 0, col]
    bn = network.get_layer("Mixed_7c_branch_pool_bn")
    for variable, param in [
        (bn.gamma, "weight"),
        (bn.beta, "bias"),
        (bn.moving_mean, "running_mean"),
        (bn.moving_variance, "running_var"),
    ]:
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(variable),
            random_weights[f"Mixed_7c.branch_pool.bn.{param}"],
        )
    assert bn.epsilon == 1e-3
    assert network.output_shape == (None, 2048)


def test_pth_file_and_pytorch_fid_keys_load_identically(
    tmp_path, network, random_weights
):
    torch = pytest.importorskip("torch")
    path = tmp_path / "pt_inception-random.pth"
    torch.save({k: torch.from_numpy(v) for k, v in random_weights.items()}, path)
    from_file = fid_inception_v3(str(path))
    expected = network.get_weights()
    for got, want in zip(from_file.get_weights(), expected):
        np.testing.assert_array_equal(got, want)

    # Keys of a `pytorch_fid.inception.InceptionV3` state dict
    # (`blocks.<block>.<index>.*`) map to the same layers.
    names = {
        "Conv2d_1a_3x3": "blocks.0.0", "Conv2d_2b_3x3": "blocks.0.2",
        "Conv2d_4a_3x3": "blocks.1.1", "Mixed_6e": "blocks.2.7",
        "Mixed_7c": "blocks.3.2",
    }
    renamed = {}
    for key, value in random_weights.items():
        module, _, rest = key.partition(".")
        renamed[f"{names.get(module, module)}.{rest}"] = value * 0.5
    load_pytorch_fid_weights(from_file, renamed)
    for got, want in zip(from_file.get_weights(), expected):
        np.testing.assert_allclose(got, want * 0.5, rtol=1e-6)


def test_tiny_pth_state_dict_reports_what_is_wrong(tmp_path, network):
    torch = pytest.importorskip("torch")
    path = tmp_path / "tiny.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(32, 3, 3, 3)}, path)
    with pytest.raises(ValueError, match="missing from the state dict"):
        load_pytorch_fid_weights(network, str(path))
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(32, 3, 5, 5)}, path)
    with pytest.raises(ValueError, match=r"\(32, 3, 3, 3\)"):
        load_pytorch_fid_weights(network, str(path))
    torch.save({"features.0.weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="match no layer"):
        load_pytorch_fid_weights(network, str(path))
    # A rejected state dict leaves the model untouched.
    kernel = network.get_layer("Conv2d_1a_3x3_conv").kernel
    assert np.any(keras.ops.convert_to_numpy(kernel) != 0)


def test_missing_weight_file_says_where_to_get_it(tmp_path):
    missing = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    with pytest.raises(FileNotFoundError) as error:
        fid_inception_v3(str(missing))
    assert FID_WEIGHTS_URL in str(error.value)
    assert str(missing) in str(error.value)
    assert FID_WEIGHTS_URL == (
        "https://github.com/mseitzer/pytorch-fid/releases/download/"
        "fid_weights/pt_inception-2015-12-05-6726825d.pth"
    )


def test_converter_rejects_other_models():
    other = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="built by `fid_inception_v3`"):
        load_pytorch_fid_weights(other, {})


def test_bilinear_resize_matches_torch_interpolate():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    for in_shape, out_shape in [((5, 7), (12, 9)), ((40, 33), (13, 29))]:
        x = rng.standard_normal((2, *in_shape, 3)).astype("float32")
        got = keras.ops.convert_to_numpy(BilinearResize(*out_shape)(x))
        expected = torch.nn.functional.interpolate(
            torch.from_numpy(x).permute(0, 3, 1, 2),
            size=out_shape, mode="bilinear", align_corners=False,
        ).permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_bilinear_resize_formula_and_config():
    # Half-pixel sampling of a linear ramp: out[i] = in at (i + .5) s - .5,
    # clamped to [0, n - 1] at the borders.
    n, out = 4, 10
    ramp = np.arange(n, dtype="float32")
    x = np.broadcast_to(ramp[None, :, None, None], (1, n, 1, 1)).copy()
    got = keras.ops.convert_to_numpy(BilinearResize(out, 1)(x))[0, :, 0, 0]
    source = np.clip((np.arange(out) + 0.5) * n / out - 0.5, 0, n - 1)
    np.testing.assert_allclose(got, source, atol=1e-6)
    layer = BilinearResize(17, 19, name="resize")
    restored = BilinearResize.from_config(layer.get_config())
    assert (restored.height, restored.width) == (17, 19)
    assert keras.saving.get_registered_object(
        "keras_gcm>BilinearResize"
    ) is BilinearResize
    with pytest.raises(ValueError, match="positive"):
        BilinearResize(0, 5)


def test_bad_resize_argument():
    with pytest.raises(ValueError, match="at least 75x75"):
        fid_inception_v3(resize_to=(32, 32))
    with pytest.raises(ValueError, match="resize_to"):
        fid_inception_v3(resize_to=(299,))
