"""Regenerates `tests/fixtures/inception_fid_random.npz` with `pytorch-fid`.

The fixture lets `tests/test_inception.py` check our Keras FID Inception
network against `pytorch-fid`'s own network without the 95 MB weight file:
both sides build the *same random weights* from a seed recipe (the seed and
the list of state-dict keys with their shapes), and the fixture stores the
2048-d pool3 features `pytorch-fid` computes for a few seeded images.

`pytorch-fid` imports `torchvision`, which does not import beside the
project's CPU torch, so run this script in a separate environment:

    python3 -m venv /work/venv-fid
    /work/venv-fid/bin/pip install torch==2.14.1 torchvision==0.29.1 \\
        pytorch-fid numpy
    /work/venv-fid/bin/python tools/make_inception_fixture.py

The script builds `pytorch_fid.inception.InceptionV3([3])` (its default FID
network) with `load_state_dict_from_url` patched to return the random state
dict, so pytorch-fid's own construction (`fid_inception_v3`, the FID blocks,
strict `load_state_dict`) runs unchanged and nothing is downloaded.

The functions above `main` need only NumPy: the test imports this file to
regenerate the weights and the images.
"""

import os

import numpy as np

WEIGHT_SEED = 20151205
IMAGE_SEED = 6726825
# (batch, height, width): CIFAR-sized inputs (upsampled to 299) and a
# non-square input larger than 299 (downsampled, without anti-aliasing).
IMAGE_GROUPS = ((2, 32, 32), (2, 341, 405))
FIXTURE_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "tests", "fixtures", "inception_fid_random.npz",
)


def random_state_dict(keys, shapes, seed=WEIGHT_SEED):
    """Seeded random weights for the FID Inception state dict.

    Draws, in the order of `keys`, from one `np.random.RandomState(seed)`:
    conv kernels `N(0, 2 / fan_in)` (He), batch-norm gamma `U(0.5, 1.5)`,
    beta `N(0, 0.1^2)`, running mean `N(0, 0.1^2)`, running variance
    `U(0.5, 1.5)`, classifier weights `N(0, 0.01^2)` and biases 0;
    `num_batches_tracked` is 0 (no draw). Activations keep a sensible scale
    through the 94 conv + batch-norm + ReLU units.

    Args:
        keys: sequence of state-dict keys (torchvision Inception-v3 names).
        shapes: sequence of shapes, one per key.
        seed: int.

    Returns:
        `{key: np.ndarray}` (float32, int64 for `num_batches_tracked`).
    """
    rng = np.random.RandomState(seed)
    state = {}
    for key, shape in zip(keys, shapes):
        shape = tuple(int(s) for s in shape)
        if key.endswith("num_batches_tracked"):
            value = np.zeros(shape, np.int64)
        elif key.endswith("conv.weight"):
            fan_in = int(np.prod(shape[1:]))
            value = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        elif key.endswith("bn.weight") or key.endswith("bn.running_var"):
            value = rng.uniform(0.5, 1.5, shape)
        elif key.endswith("bn.bias") or key.endswith("bn.running_mean"):
            value = 0.1 * rng.standard_normal(shape)
        elif key == "fc.weight":
            value = 0.01 * rng.standard_normal(shape)
        elif key == "fc.bias":
            value = np.zeros(shape)
        else:
            raise ValueError(f"No rule for state-dict key {key!r}.")
        if value.dtype != np.int64:
            value = value.astype(np.float32)
        state[key] = value
    return state


def random_images(seed=IMAGE_SEED, groups=IMAGE_GROUPS):
    """Seeded channels-last images in `[0, 1]`, one float32 array per group."""
    rng = np.random.RandomState(seed)
    return [
        rng.uniform(0.0, 1.0, (batch, height, width, 3)).astype(np.float32)
        for batch, height, width in groups
    ]


def recipe_from_fixture(fixture):
    """`(keys, shapes)` stored in a loaded fixture."""
    keys = [str(k) for k in fixture["keys"]]
    shapes = [
        tuple(int(s) for s in row[: int(n)])
        for row, n in zip(fixture["shapes"], fixture["ndims"])
    ]
    return keys, shapes


def main():
    import pytorch_fid
    import pytorch_fid.inception as fid_inception
    import torch
    import torchvision

    torch.manual_seed(0)
    # The key list of the FID weight file: torchvision's Inception-v3 with
    # 1008 classes and no auxiliary head (the FID blocks have the same
    # parameters as the standard ones).
    skeleton = torchvision.models.inception_v3(
        num_classes=1008, aux_logits=False, init_weights=False, weights=None
    )
    keys = list(skeleton.state_dict().keys())
    shapes = [tuple(v.shape) for v in skeleton.state_dict().values()]
    state = random_state_dict(keys, shapes)
    torch_state = {k: torch.from_numpy(v) for k, v in state.items()}

    def fake_download(url, *args, **kwargs):
        assert url == fid_inception.FID_WEIGHTS_URL, url
        return torch_state

    fid_inception.load_state_dict_from_url = fake_download
    network = fid_inception.InceptionV3([3]).eval()

    features, features64 = [], []
    with torch.no_grad():
        for images in random_images():
            x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
            features.append(network(x)[0].squeeze(-1).squeeze(-1).numpy())
            features64.append(
                network.double()(x.double())[0].squeeze(-1).squeeze(-1).numpy()
            )
            network.float()
    features = np.concatenate(features)
    features64 = np.concatenate(features64)
    print(
        "features: shape", features.shape, "mean", features.mean(),
        "max", features.max(), "fraction zero", np.mean(features == 0),
        "float32 vs float64 max abs diff", np.abs(features - features64).max(),
    )

    max_ndim = max(len(s) for s in shapes)
    padded = np.full((len(shapes), max_ndim), -1, np.int64)
    for row, shape in zip(padded, shapes):
        row[: len(shape)] = shape
    os.makedirs(os.path.dirname(FIXTURE_PATH), exist_ok=True)
    np.savez_compressed(
        FIXTURE_PATH,
        weight_seed=np.int64(WEIGHT_SEED),
        image_seed=np.int64(IMAGE_SEED),
        image_groups=np.array(IMAGE_GROUPS, np.int64),
        keys=np.array(keys),
        shapes=padded,
        ndims=np.array([len(s) for s in shapes], np.int64),
        features=features.astype(np.float32),
        features_float64=features64,
        versions=np.array(
            [
                f"torch {torch.__version__}",
                f"torchvision {torchvision.__version__}",
                f"pytorch-fid {pytorch_fid.__version__}",
            ]
        ),
    )
    print("wrote", FIXTURE_PATH, os.path.getsize(FIXTURE_PATH), "bytes")


if __name__ == "__main__":
    main()
