"""Tests of EDM's augmentation pipeline (`keras_gcm.augmentation.AugmentPipe`)
and of training with it (`ConsistencyModel(augment=...)`)."""

import os
import sys

import keras
import numpy as np
import pytest
from keras import ops

import keras_gcm
from keras_gcm.augmentation import AugmentPipe

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "tools"))
from make_edm_fixture import AUGMENT_SETTINGS  # noqa: E402
from make_edm_fixture import FIXTURE_PATH  # noqa: E402

OFF = dict(xflip=0, yflip=0, scale=0, rotate_frac=0, aniso=0, translate_frac=0)
SHAPE = (6, 8, 8, 3)  # one shape for every call (JAX compiles each op once)


def _np(x):
    return ops.convert_to_numpy(x)


def _images(seed=0, channels=3):
    shape = SHAPE[:3] + (channels,)
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype("float32")


class _Replay(AugmentPipe):
    """Draws EDM's recorded random numbers instead of its own."""

    def __init__(self, draws, **kwargs):
        super().__init__(**kwargs)
        self._draws = list(draws)

    def _next(self, kind, shape):
        recorded_kind, value = self._draws.pop(0)
        assert recorded_kind == kind and value.shape == tuple(shape)
        return ops.convert_to_tensor(value.astype("float32"))

    def _uniform(self, shape):
        return self._next("rand", shape)

    def _normal(self, shape):
        return self._next("randn", shape)

    def _randint(self, high, shape):
        return self._next("randint", shape)


@pytest.mark.parametrize("setting", sorted(AUGMENT_SETTINGS))
def test_matches_edm_augment_pipe_given_its_random_draws(setting):
    # Fixture: EDM's own AugmentPipe (tools/make_edm_fixture.py) on 6 images,
    # with every random draw recorded; replaying the draws must give EDM's
    # images (geometric resampling, colour matrices) and labels.
    data = np.load(FIXTURE_PATH)
    prefix = f"augment_{setting}/"
    kinds = data[prefix + "draw_kinds"]
    draws = [(str(k), data[prefix + f"draw_{i}"]) for i, k in enumerate(kinds)]
    pipe = _Replay(draws, **{**OFF, **AUGMENT_SETTINGS[setting]})
    images = np.transpose(data[prefix + "images"], (0, 2, 3, 1))
    result, labels = pipe(images)
    assert not pipe._draws  # every recorded draw used, in EDM's order
    np.testing.assert_array_equal(_np(labels), data[prefix + "labels"])
    expected = np.transpose(data[prefix + "result"], (0, 2, 3, 1))
    assert np.abs(expected - images).max() > 0.5  # the transforms acted
    np.testing.assert_allclose(_np(result), expected, atol=2e-5)


def test_cifar10_setting_has_edm_nine_labels():
    pipe = AugmentPipe()
    assert pipe.p == 0.12 and pipe.label_dim == 9
    assert AugmentPipe(**{**OFF, "xflip": 1}).label_dim == 1
    full = dict(rotate_int=1, translate_int=1, brightness=1, contrast=1, lumaflip=1,
                hue=1, saturation=1)
    assert AugmentPipe(**full).label_dim == 19


def test_p_zero_is_the_identity_with_zero_labels():
    x = _images()
    images, labels = AugmentPipe(p=0.0, seed=0)(x)
    np.testing.assert_array_equal(_np(images), x)
    assert _np(labels).shape == (6, 9) and not np.any(_np(labels))


def test_flip_labels_match_the_flipped_images():
    x = _images(1)
    for axis, name in ((2, "xflip"), (1, "yflip")):
        pipe = AugmentPipe(p=1.0, **{**OFF, name: 1}, seed=0)
        seen = set()
        for _ in range(3):  # successive draws of one pipe
            images, labels = pipe(x)
            w = _np(labels)[:, 0]
            seen |= set(w.tolist())
            expected = np.where(w[:, None, None, None] == 1, np.flip(x, axis), x)
            np.testing.assert_array_equal(_np(images), expected)
        assert seen == {0.0, 1.0}


def test_integer_rotation_and_translation_are_recovered_from_the_labels():
    x = _images(2)
    images, labels = AugmentPipe(p=1.0, **{**OFF, "rotate_int": 1}, seed=0)(x)
    labels = _np(labels)
    quarter_turns = {(0, 0): 0, (1, 0): 1, (1, 1): 2, (0, 1): 3}
    for image, source, label in zip(_np(images), x, labels):
        k = quarter_turns[tuple(int(v) for v in label)]
        # EDM: k quarter turns counter-clockwise (flip W, flip H, transpose).
        np.testing.assert_array_equal(image, np.rot90(source, k, axes=(0, 1)))

    images, labels = AugmentPipe(
        p=1.0, **{**OFF, "translate_int": 1}, translate_int_max=0.25, seed=1
    )(x)
    shifts = np.round(_np(labels) * 8 * 0.25).astype(int)  # (tx, ty) pixels
    assert np.any(shifts != 0)
    for image, source, (tx, ty) in zip(_np(images), x, shifts):
        # EDM: out[y, x] = in[y + ty, x - tx] (mirror-reflected at the border).
        for row in range(8):
            for col in range(8):
                src_y = 7 - abs(7 - (row + ty) % 14)
                src_x = 7 - abs(7 - (col - tx) % 14)
                np.testing.assert_array_equal(image[row, col], source[src_y, src_x])


def test_geometric_and_colour_labels_match_the_transforms():
    x = _images(3)
    # Pure fractional rotation: the label is (cos w - 1, sin w).
    _, labels = AugmentPipe(p=1.0, **{**OFF, "rotate_frac": 1}, seed=0)(x)
    cos_m1, sin = _np(labels).T
    np.testing.assert_allclose((cos_m1 + 1) ** 2 + sin**2, 1.0, rtol=1e-5)
    # Brightness: every pixel moves by w * brightness_std.
    images, labels = AugmentPipe(p=1.0, **{**OFF, "brightness": 1}, seed=0)(x)
    offset = _np(images) - x
    np.testing.assert_allclose(
        offset, np.broadcast_to(0.2 * _np(labels)[:, :, None, None], x.shape), atol=1e-5
    )
    # Contrast on a grey image: every pixel scales by 2**(w * contrast_std).
    grey = _images(4, channels=1)
    images, labels = AugmentPipe(p=1.0, **{**OFF, "contrast": 1}, seed=0)(grey)
    factor = 2.0 ** (0.5 * _np(labels)[:, 0])
    np.testing.assert_allclose(_np(images), grey * factor[:, None, None, None], rtol=1e-5)


def test_same_seed_same_augmentations():
    x = _images(5)
    a_images, a_labels = AugmentPipe(p=1.0, seed=11)(x)
    b_images, b_labels = AugmentPipe(p=1.0, seed=11)(x)
    np.testing.assert_array_equal(_np(a_labels), _np(b_labels))
    np.testing.assert_array_equal(_np(a_images), _np(b_images))
    _, c_labels = AugmentPipe(p=1.0, seed=12)(x)
    assert np.abs(_np(c_labels) - _np(a_labels)).max() > 0.1


def test_runs_inside_a_tf_data_pipeline():
    import tensorflow as tf

    x = _images(6)
    pipe = AugmentPipe(p=1.0, **{**OFF, "xflip": 1}, seed=3)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(6).map(pipe)
    images, labels = next(iter(dataset))
    w = labels.numpy()[:, 0]
    expected = np.where(w[:, None, None, None] == 1, np.flip(x, 2), x)
    np.testing.assert_array_equal(images.numpy(), expected)


def test_config_round_trip():
    pipe = AugmentPipe(p=0.3, rotate_int=1, hue=0.5, seed=4)
    clone = AugmentPipe.from_config(pipe.get_config())
    assert clone.get_config() == pipe.get_config() and clone.label_dim == 13


def test_bad_input_errors():
    with pytest.raises(ValueError, match=r"`p` must be in \[0, 1\]"):
        AugmentPipe(p=1.5)
    with pytest.raises(ValueError, match=r"`p` must be in \[0, 1\]"):
        AugmentPipe(p=-0.1)
    with pytest.raises(ValueError, match="multiplier `scale`"):
        AugmentPipe(scale=-1)
    plain = keras_gcm.networks.SongUNet(
        img_resolution=8, in_channels=1, model_channels=8, channel_mult=[1],
        num_blocks=1, attn_resolutions=[], seed=0,
    )
    with pytest.raises(ValueError, match="augment_dim=9"):
        keras_gcm.ConsistencyModel(plain, augment=AugmentPipe())
    x = np.zeros((2, 8, 8, 1), "float32")
    with pytest.raises(ValueError, match="augment_dim=0"):
        plain(x, np.ones((2,), "float32"), augment_labels=np.zeros((2, 9), "float32"))


def test_the_model_augments_in_the_loss_and_samples_without_labels():
    # EDM's loss: the clean batch is augmented and both network calls get
    # the labels; with p = 0 the labels are zero and the loss is the plain
    # model's; sampling passes no labels.
    net = keras_gcm.networks.SongUNet(
        img_resolution=8, in_channels=1, model_channels=8, channel_mult=[1],
        num_blocks=1, attn_resolutions=[], dropout=0.0, augment_dim=9, seed=0,
    )
    rng = np.random.default_rng(8)
    x = rng.uniform(-1, 1, (8, 8, 8, 1)).astype("float32")  # MMD groups of 4
    z = rng.standard_normal(x.shape).astype("float32")
    t = np.repeat(np.linspace(0.3, 0.9, 2), 4).astype("float32")
    plain = keras_gcm.ConsistencyModel(net, seed=0)
    model = keras_gcm.ConsistencyModel(net, augment=AugmentPipe(p=0.0), seed=0)
    strong = keras_gcm.ConsistencyModel(net, augment=AugmentPipe(p=1.0, seed=0), seed=0)
    loss_plain, _ = plain.compute_consistency_loss(x, z=z, t=t)
    loss_zero, _ = model.compute_consistency_loss(x, z=z, t=t)
    loss_strong, _ = strong.compute_consistency_loss(x, z=z, t=t)
    np.testing.assert_allclose(float(loss_zero), float(loss_plain), rtol=1e-6)
    assert abs(float(loss_strong) - float(loss_plain)) > 1e-3 * abs(float(loss_plain))
    config = strong.get_config()
    assert config["augment"]["config"]["p"] == 1.0
    clone = keras_gcm.ConsistencyModel.from_config(config)
    assert isinstance(clone.augment, AugmentPipe) and clone.augment.p == 1.0


@pytest.mark.slow
# One backend (CI's time budget): the loss-level hook is tested under every
# backend above. Torch's eager step with the augmentation ran past 900 s on the
# loaded 2-core machine.
@pytest.mark.backends("tensorflow")
def test_augmented_training_learns_on_digits():
    # 200 steps of GCM-CU with EDM's augmentation (p = 0.12) on 8x8 digits:
    # the 1-step Frechet digits distance falls from ~262 (untrained) to ~72
    # (JAX, seed 0); the test asks for less than half the untrained value.
    from keras_gcm.data.images import digits
    from keras_gcm.metrics.digits import frechet_digits_distance

    keras.utils.set_random_seed(0)
    x = digits("train")
    net = keras_gcm.networks.SongUNet(
        img_resolution=8, in_channels=1, model_channels=16, channel_mult=[1],
        num_blocks=1, attn_resolutions=[], dropout=0.0, augment_dim=9, seed=0,
    )
    model = keras_gcm.ConsistencyModel.from_preset(
        "gcm_cu", net, ema_decay=0.99, augment=AugmentPipe(p=0.12, seed=0), seed=0
    )
    model.compile(optimizer=keras_gcm.optimizers.RAdam(3e-3))
    model.build((None, 8, 8, 1))
    before = frechet_digits_distance(keras_gcm.samplers.one_step(model, 500, seed=1))
    steps, batch = 200, 32
    data = np.concatenate([x] * (steps * batch // len(x) + 1))[: steps * batch]
    model.fit(data, batch_size=batch, epochs=1, verbose=0, shuffle=True)
    after = frechet_digits_distance(keras_gcm.samplers.one_step(model, 500, seed=1))
    assert after < 0.5 * before, (before, after)
