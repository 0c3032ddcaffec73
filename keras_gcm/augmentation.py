"""EDM's non-leaking augmentation pipeline (`AugmentPipe`), channels-last Keras 3.

The paper's headline CIFAR-10 numbers (batch 1024: 1-step FID 2.53, 2-step
1.92; Tables 4, 8 and 9) train with the augmentation of Karras et al.,
"Elucidating the Design Space of Diffusion-Based Generative Models" (2022),
`training/augment.py`, itself built on Karras et al., "Training Generative
Adversarial Networks with Limited Data" (2020). Each image is transformed
with probability `p` per transform, and the network is told what was done:
the transform parameters are returned as *augmentation labels* that the
network is conditioned on (`SongUNet(augment_dim=9)`), and at sampling the
labels are zero, i.e. "no augmentation", so the augmentations do not leak
into the samples.
"""

import math

import keras
import numpy as np

try:  # Keras' own preprocessing layers use it to run inside `tf.data`.
    from keras.src.layers.preprocessing.data_layer import DataLayer as _BaseLayer
except ImportError:  # pragma: no cover - other Keras versions
    _BaseLayer = keras.layers.Layer

# Low-pass filter of the 'sym6' wavelet (EDM's `wavelets['sym6']`), used to
# upsample 2x before and downsample 2x after the bilinear resampling.
SYM6 = (
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057,
    -0.048311742585633, 0.4910559419267466, 0.787641141030194,
    0.3379294217276218, -0.07263752278646252, -0.021060292512300564,
    0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
)

__all__ = ["AugmentPipe"]

_PROBABILITIES = (
    "xflip", "yflip", "rotate_int", "translate_int", "scale", "rotate_frac",
    "aniso", "translate_frac", "brightness", "contrast", "lumaflip", "hue",
    "saturation",
)
_LABEL_SIZES = dict(
    xflip=1, yflip=1, rotate_int=2, translate_int=2, scale=1, rotate_frac=2,
    aniso=2, translate_frac=2, brightness=1, contrast=1, lumaflip=1, hue=2,
    saturation=1,
)


@keras.saving.register_keras_serializable(package="keras_gcm")
class AugmentPipe(_BaseLayer):
    """EDM's augmentation pipeline with its augmentation labels.

    Port of EDM's `AugmentPipe` (`training/augment.py`) to channels-last
    images `(B, H, W, C)`: integer pixel blitting (x-flip, y-flip, 90-degree
    rotation, integer translation with reflection), general geometric
    transforms (isotropic scaling, rotation, anisotropic scaling, fractional
    translation) executed as one inverse affine map `G_inv` with EDM's
    anti-aliased resampling (reflect padding, 2x 'sym6' wavelet upsampling,
    bilinear sampling, 2x 'sym6' downsampling), and colour transforms
    (brightness, contrast, luma flip, hue rotation, saturation) as one 4x4
    matrix `M` on `[r, g, b, 1]` (grey images use the mean of its first
    three rows, as EDM). Each transform `k` is applied to an image with
    probability `min(1, k * p)` and its parameter otherwise zero; the labels
    are the parameters, concatenated in EDM's order:

    | transform      | labels                                            |
    |----------------|---------------------------------------------------|
    | xflip          | `w` in {0, 1}                                     |
    | yflip          | `w` in {0, 1}                                     |
    | rotate_int     | `[w in (1, 2), w in (2, 3)]`, `w` quarter turns   |
    | translate_int  | `[tx / (W max), ty / (H max)]`, `tx, ty` pixels   |
    | scale          | `w`, the image is scaled by `2**(w scale_std)`    |
    | rotate_frac    | `[cos(w) - 1, sin(w)]`, `w` radians               |
    | aniso          | `[w cos(r), w sin(r)]`                            |
    | translate_frac | `[wx, wy]`, shift `(wx W, wy H) translate_frac_std`|
    | brightness     | `w`, offset `w brightness_std`                    |
    | contrast       | `w`, factor `2**(w contrast_std)`                 |
    | lumaflip       | `w` in {0, 1}                                     |
    | hue            | `[cos(w) - 1, sin(w)]`                            |
    | saturation     | `w`, factor `2**(w saturation_std)`               |

    All labels are zero for an image left alone, so the zero label (what a
    sampler passes) means "not augmented". The defaults are EDM's CIFAR-10
    configuration (`train.py --augment=0.12`): `p=0.12`, `xflip=1e8`
    (a flip label is drawn for every image: x-flips happen half the time),
    `yflip=scale=rotate_frac=aniso=translate_frac=1`, which gives the
    9 labels `SongUNet(augment_dim=9)` takes. An image none of whose
    geometric transforms fires is returned unchanged (EDM resamples it
    through the identity map, equal up to float rounding).

    The layer works on all three backends, inside a compiled train step
    (the model applies it in the loss, see `ConsistencyModel(augment=...)`)
    and inside a `tf.data` pipeline (`dataset.map(pipe)`, as Keras'
    preprocessing layers do). Random draws come from the layer's
    `SeedGenerator`, so the same `seed` gives the same augmentations.

    Args:
        p: float in [0, 1], the overall augmentation probability (EDM's
            `--augment`, 0.12 for the paper's Table 9 configuration).
        xflip: probability multiplier of x-flips (each transform fires with
            probability `min(1, multiplier * p)`; 0 turns it and its labels
            off). EDM's CIFAR-10 setting uses 1e8: always.
        yflip: multiplier of y-flips.
        rotate_int: multiplier of 90-degree rotations.
        translate_int: multiplier of integer translations.
        scale: multiplier of isotropic scaling.
        rotate_frac: multiplier of arbitrary rotations.
        aniso: multiplier of anisotropic scaling.
        translate_frac: multiplier of fractional translations.
        brightness: multiplier of brightness changes.
        contrast: multiplier of contrast changes.
        lumaflip: multiplier of luma flips.
        hue: multiplier of hue rotations.
        saturation: multiplier of saturation changes.
        translate_int_max: integer translation range, relative to the size.
        scale_std: log2 standard deviation of isotropic scaling.
        rotate_frac_max: fractional rotation range, 1 = full circle.
        aniso_std: log2 standard deviation of anisotropic scaling.
        aniso_rotate_prob: probability of anisotropic scaling in a rotated
            frame.
        translate_frac_std: standard deviation of fractional translation,
            relative to the size.
        brightness_std: standard deviation of brightness.
        contrast_std: log2 standard deviation of contrast.
        hue_max: hue rotation range, 1 = full circle.
        saturation_std: log2 standard deviation of saturation.
        seed: int or None, seed of the random draws.
        **kwargs: standard `keras.layers.Layer` arguments.

    Returns (when called on images `(B, H, W, C)`):
        `(augmented_images, labels)` with labels `(B, label_dim)` float32.

    Example:

    >>> pipe = keras_gcm.augmentation.AugmentPipe(p=0.12, seed=0)
    >>> pipe.label_dim
    9
    >>> images, labels = pipe(keras.ops.zeros((4, 8, 8, 3)))
    >>> tuple(images.shape), tuple(labels.shape)
    ((4, 8, 8, 3), (4, 9))
    """

    def __init__(
        self,
        p=0.12,
        xflip=1e8,
        yflip=1.0,
        rotate_int=0.0,
        translate_int=0.0,
        translate_int_max=0.125,
        scale=1.0,
        rotate_frac=1.0,
        aniso=1.0,
        translate_frac=1.0,
        scale_std=0.2,
        rotate_frac_max=1.0,
        aniso_std=0.2,
        aniso_rotate_prob=0.5,
        translate_frac_std=0.125,
        brightness=0.0,
        contrast=0.0,
        lumaflip=0.0,
        hue=0.0,
        saturation=0.0,
        brightness_std=0.2,
        contrast_std=0.5,
        hue_max=1.0,
        saturation_std=1.0,
        seed=None,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        p = float(p)
        if not 0.0 <= p <= 1.0 or math.isnan(p):
            raise ValueError(
                "AugmentPipe: the augmentation probability `p` must be in "
                f"[0, 1] (the paper's Table 9 uses 0.12). Received: p={p}"
            )
        self.p = p
        multipliers = dict(
            xflip=xflip, yflip=yflip, rotate_int=rotate_int,
            translate_int=translate_int, scale=scale, rotate_frac=rotate_frac,
            aniso=aniso, translate_frac=translate_frac, brightness=brightness,
            contrast=contrast, lumaflip=lumaflip, hue=hue, saturation=saturation,
        )
        for name, value in multipliers.items():
            if not float(value) >= 0.0:
                raise ValueError(
                    f"AugmentPipe: the probability multiplier `{name}` must be "
                    f">= 0 (0 turns the transform off). Received: {name}={value}"
                )
            setattr(self, name, float(value))
        self.translate_int_max = float(translate_int_max)
        self.scale_std = float(scale_std)
        self.rotate_frac_max = float(rotate_frac_max)
        self.aniso_std = float(aniso_std)
        self.aniso_rotate_prob = float(aniso_rotate_prob)
        self.translate_frac_std = float(translate_frac_std)
        self.brightness_std = float(brightness_std)
        self.contrast_std = float(contrast_std)
        self.hue_max = float(hue_max)
        self.saturation_std = float(saturation_std)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    @property
    def label_dim(self):
        """Number of augmentation labels (9 for EDM's CIFAR-10 setting)."""
        return sum(_LABEL_SIZES[k] for k in _PROBABILITIES if getattr(self, k) > 0)

    # -- random draws (one method each, in EDM's order) ---------------------

    def _ops(self):
        backend = getattr(self, "backend", None)
        if backend is None or backend.name == keras.backend.backend():
            return keras.ops, keras.random
        return _BackendOps(backend), backend.random

    def _uniform(self, shape):
        return self._random.uniform(shape, seed=self._seed)

    def _normal(self, shape):
        return self._random.normal(shape, seed=self._seed)

    def _randint(self, high, shape):
        return self._ops_ns.floor(self._uniform(shape) * high)

    def _applies(self, multiplier, shape):
        return self._uniform(shape) < multiplier * self.p

    # -- the pipeline --------------------------------------------------------

    def call(self, images):
        ops, random = self._ops()
        backend = getattr(self, "backend", None)
        seed = (
            self._get_seed_generator(backend._backend)
            if backend is not None and hasattr(self, "_get_seed_generator")
            else self.generator
        )
        # Plain attributes for the draw methods (not Keras-tracked state).
        object.__setattr__(self, "_ops_ns", ops)
        object.__setattr__(self, "_random", random)
        object.__setattr__(self, "_seed", seed)
        images = ops.cast(images, "float32")
        if len(images.shape) != 4:
            raise ValueError(
                "AugmentPipe expects a batch of channels-last images "
                f"(batch, height, width, channels). Received shape {images.shape}."
            )
        height, width, channels = (int(d) for d in images.shape[1:])
        if channels not in (1, 3) and any(
            getattr(self, k) > 0 for k in ("brightness", "contrast", "lumaflip", "hue", "saturation")
        ):
            raise ValueError(
                "AugmentPipe: colour transforms need RGB (3 channels) or grey "
                f"(1 channel) images. Received {channels} channels."
            )
        n = ops.shape(images)[0]
        zero = ops.zeros_like
        labels = []

        # Pixel blitting.
        if self.xflip > 0:
            w = self._randint(2, (n, 1, 1, 1))
            w = ops.where(self._applies(self.xflip, (n, 1, 1, 1)), w, zero(w))
            images = ops.where(w == 1, ops.flip(images, axis=2), images)
            labels.append(w)
        if self.yflip > 0:
            w = self._randint(2, (n, 1, 1, 1))
            w = ops.where(self._applies(self.yflip, (n, 1, 1, 1)), w, zero(w))
            images = ops.where(w == 1, ops.flip(images, axis=1), images)
            labels.append(w)
        if self.rotate_int > 0:
            if height != width:
                raise ValueError(
                    "AugmentPipe: `rotate_int` needs square images. Received "
                    f"{height}x{width}."
                )
            w = self._randint(4, (n, 1, 1, 1))
            w = ops.where(self._applies(self.rotate_int, (n, 1, 1, 1)), w, zero(w))
            images = ops.where((w == 1) | (w == 2), ops.flip(images, axis=2), images)
            images = ops.where((w == 2) | (w == 3), ops.flip(images, axis=1), images)
            images = ops.where(
                (w == 1) | (w == 3), ops.transpose(images, (0, 2, 1, 3)), images
            )
            labels += [
                ops.cast((w == 1) | (w == 2), "float32"),
                ops.cast((w == 2) | (w == 3), "float32"),
            ]
        if self.translate_int > 0:
            w = self._uniform((2, n, 1, 1, 1)) * 2 - 1
            w = ops.where(self._applies(self.translate_int, (1, n, 1, 1, 1)), w, zero(w))
            tx = ops.round(w[0] * (width * self.translate_int_max))
            ty = ops.round(w[1] * (height * self.translate_int_max))
            images = _translate_int(ops, images, tx, ty)
            labels += [
                tx / (width * self.translate_int_max),
                ty / (height * self.translate_int_max),
            ]

        # Geometric transformations: the inverse map G_inv (B, 3, 3).
        eye3 = ops.broadcast_to(ops.eye(3, dtype="float32"), (n, 3, 3))
        g_inv = eye3
        geometric = []  # the geometric labels: all zero iff G_inv = I
        if self.scale > 0:
            w = self._normal((n,))
            w = ops.where(self._applies(self.scale, (n,)), w, zero(w))
            s = ops.power(2.0, w * self.scale_std)
            g_inv = g_inv @ _scale2d(ops, 1 / s, 1 / s)
            labels.append(w)
            geometric.append(w)
        if self.rotate_frac > 0:
            w = (self._uniform((n,)) * 2 - 1) * (np.pi * self.rotate_frac_max)
            w = ops.where(self._applies(self.rotate_frac, (n,)), w, zero(w))
            g_inv = g_inv @ _rotate2d(ops, w)  # rotate2d_inv(-w)
            labels += [ops.cos(w) - 1, ops.sin(w)]
            geometric.append(w)
        if self.aniso > 0:
            w = self._normal((n,))
            r = (self._uniform((n,)) * 2 - 1) * np.pi
            w = ops.where(self._applies(self.aniso, (n,)), w, zero(w))
            r = ops.where(self._uniform((n,)) < self.aniso_rotate_prob, r, zero(r))
            s = ops.power(2.0, w * self.aniso_std)
            g_inv = (
                g_inv @ _rotate2d(ops, -r) @ _scale2d(ops, 1 / s, s) @ _rotate2d(ops, r)
            )
            labels += [w * ops.cos(r), w * ops.sin(r)]
            geometric.append(w)
        if self.translate_frac > 0:
            w = self._normal((2, n))
            w = ops.where(self._applies(self.translate_frac, (1, n)), w, zero(w))
            g_inv = g_inv @ _translate2d(
                ops,
                -w[0] * (width * self.translate_frac_std),
                -w[1] * (height * self.translate_frac_std),
            )
            labels += [w[0], w[1]]
            geometric += [w[0], w[1]]
        if geometric:
            moved = ops.any(ops.stack(geometric, axis=1) != 0, axis=1)
            resampled = _resample(ops, images, g_inv)
            images = ops.where(moved[:, None, None, None], resampled, images)

        # Colour transformations: M (B, 4, 4) on [r, g, b, 1].
        eye4 = ops.broadcast_to(ops.eye(4, dtype="float32"), (n, 4, 4))
        m = eye4
        luma = np.asarray([1, 1, 1, 0], np.float32) / np.sqrt(3)
        luma_outer = ops.convert_to_tensor(np.outer(luma, luma).astype("float32"))
        colour = False
        if self.brightness > 0:
            colour = True
            w = self._normal((n,))
            w = ops.where(self._applies(self.brightness, (n,)), w, zero(w))
            b = w * self.brightness_std
            m = _translate3d(ops, b, b, b) @ m
            labels.append(w)
        if self.contrast > 0:
            colour = True
            w = self._normal((n,))
            w = ops.where(self._applies(self.contrast, (n,)), w, zero(w))
            c = ops.power(2.0, w * self.contrast_std)
            m = _scale3d(ops, c, c, c) @ m
            labels.append(w)
        if self.lumaflip > 0:
            colour = True
            w = self._randint(2, (n, 1, 1))
            w = ops.where(self._applies(self.lumaflip, (n, 1, 1)), w, zero(w))
            m = (eye4 - 2 * luma_outer[None] * w) @ m
            labels.append(w)
        if self.hue > 0:
            colour = True
            w = (self._uniform((n,)) * 2 - 1) * (np.pi * self.hue_max)
            w = ops.where(self._applies(self.hue, (n,)), w, zero(w))
            m = _rotate3d(ops, luma, w) @ m
            labels += [ops.cos(w) - 1, ops.sin(w)]
        if self.saturation > 0:
            colour = True
            w = self._normal((n, 1, 1))
            w = ops.where(self._applies(self.saturation, (n, 1, 1)), w, zero(w))
            m = (
                luma_outer[None]
                + (ops.eye(4, dtype="float32")[None] - luma_outer[None])
                * ops.power(2.0, w * self.saturation_std)
            ) @ m
            labels.append(w)
        if colour:
            if channels == 3:
                images = (
                    ops.einsum("bij,bhwj->bhwi", m[:, :3, :3], images)
                    + m[:, None, None, :3, 3]
                )
            else:
                row = ops.mean(m[:, :3, :], axis=1)  # (B, 4)
                gain = ops.sum(row[:, :3], axis=1)
                images = images * gain[:, None, None, None] + row[:, None, None, None, 3]

        if labels:
            labels = ops.concatenate(
                [ops.reshape(ops.cast(v, "float32"), (n, -1)) for v in labels], axis=1
            )
        else:
            labels = ops.zeros((n, 0), "float32")
        return images, labels

    def compute_output_shape(self, input_shape):
        return tuple(input_shape), (input_shape[0], self.label_dim)

    def compute_output_spec(self, images):
        return (
            keras.KerasTensor(images.shape, dtype="float32"),
            keras.KerasTensor((images.shape[0], self.label_dim), dtype="float32"),
        )

    def get_config(self):
        config = super().get_config()
        config.update({k: getattr(self, k) for k in _PROBABILITIES})
        config.update(
            {
                "p": self.p,
                "translate_int_max": self.translate_int_max,
                "scale_std": self.scale_std,
                "rotate_frac_max": self.rotate_frac_max,
                "aniso_std": self.aniso_std,
                "aniso_rotate_prob": self.aniso_rotate_prob,
                "translate_frac_std": self.translate_frac_std,
                "brightness_std": self.brightness_std,
                "contrast_std": self.contrast_std,
                "hue_max": self.hue_max,
                "saturation_std": self.saturation_std,
                "seed": self.seed,
            }
        )
        return config


class _BackendOps:
    """`keras.ops`-like access to another backend (inside `tf.data`)."""

    def __init__(self, backend):
        self._backend = backend

    def __getattr__(self, name):
        for module in ("numpy", "nn", "math", "linalg", "core"):
            namespace = getattr(self._backend, module, None)
            if namespace is not None and hasattr(namespace, name):
                return getattr(namespace, name)
        return getattr(self._backend, name)


# ---------------------------------------------------------------------------
# Helpers (batched 3x3 / 4x4 matrices, EDM's `matrix`).


def _matrix(ops, rows, like):
    """Stacks a matrix of scalars / (B,) tensors into (B, R, C)."""
    if isinstance(like, (int, float)):
        return ops.convert_to_tensor(np.asarray(rows, np.float32)[None])
    ref = ops.zeros_like(like)
    elems = [ref + e for row in rows for e in row]
    stacked = ops.stack(elems, axis=-1)
    return ops.reshape(stacked, (-1, len(rows), len(rows[0])))


def _translate2d(ops, tx, ty):
    return _matrix(ops, [[1, 0, tx], [0, 1, ty], [0, 0, 1]], tx)


def _scale2d(ops, sx, sy):
    return _matrix(ops, [[sx, 0, 0], [0, sy, 0], [0, 0, 1]], sx)


def _rotate2d(ops, theta):
    c, s = ops.cos(theta), ops.sin(theta)
    return _matrix(ops, [[c, -s, 0], [s, c, 0], [0, 0, 1]], theta)


def _translate3d(ops, tx, ty, tz):
    return _matrix(
        ops, [[1, 0, 0, tx], [0, 1, 0, ty], [0, 0, 1, tz], [0, 0, 0, 1]], tx
    )


def _scale3d(ops, sx, sy, sz):
    return _matrix(
        ops, [[sx, 0, 0, 0], [0, sy, 0, 0], [0, 0, sz, 0], [0, 0, 0, 1]], sx
    )


def _rotate3d(ops, v, theta):
    vx, vy, vz = (float(a) for a in v[:3])
    s, c = ops.sin(theta), ops.cos(theta)
    cc = 1 - c
    return _matrix(
        ops,
        [
            [vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s, 0],
            [vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s, 0],
            [vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c, 0],
            [0, 0, 0, 1],
        ],
        theta,
    )


def _gather_rows_cols(ops, images, y_index, x_index):
    """`out[b, i, j] = images[b, y_index[b, i], x_index[b, j]]`."""
    batch, height, width, channels = (
        ops.shape(images)[0], images.shape[1], images.shape[2], images.shape[3]
    )
    y = ops.broadcast_to(ops.cast(y_index, "int32")[:, :, None, None],
                         (batch, height, width, channels))
    out = ops.take_along_axis(images, y, axis=1)
    x = ops.broadcast_to(ops.cast(x_index, "int32")[:, None, :, None],
                         (batch, height, width, channels))
    return ops.take_along_axis(out, x, axis=2)


def _translate_int(ops, images, tx, ty):
    """EDM's integer translation with mirror reflection at the borders."""
    height, width = int(images.shape[1]), int(images.shape[2])
    tx = ops.reshape(tx, (-1, 1))
    ty = ops.reshape(ty, (-1, 1))
    x = ops.arange(width, dtype="float32")[None, :]
    y = ops.arange(height, dtype="float32")[None, :]
    x = (width - 1) - ops.abs((width - 1) - ops.mod(x - tx, 2 * width - 2))
    y = (height - 1) - ops.abs((height - 1) - ops.mod(y + ty, 2 * height - 2))
    return _gather_rows_cols(ops, images, y, x)


def _filter_axis(ops, x, taps, axis, stride=1, padding=0):
    """Depthwise 1-D correlation with `taps` along `axis` (1 or 2)."""
    channels = int(x.shape[-1])
    taps = np.asarray(taps, np.float32)
    shape = (len(taps), 1) if axis == 1 else (1, len(taps))
    kernel = np.tile(taps.reshape(shape + (1, 1)), (1, 1, channels, 1))
    if padding:
        pad = [[0, 0], [0, 0], [0, 0], [0, 0]]
        pad[axis] = [padding, padding]
        x = ops.pad(x, pad)
    strides = (stride, 1) if axis == 1 else (1, stride)
    return ops.depthwise_conv(
        x, ops.convert_to_tensor(kernel), strides=strides, padding="valid"
    )


def _zero_interleave(ops, x, axis):
    """`[x0, 0, x1, 0, ..., x_last]` along `axis` (length 2 n - 1)."""
    stacked = ops.stack([x, ops.zeros_like(x)], axis=axis + 1)
    shape = [-1] + [int(d) for d in x.shape[1:]]
    shape[axis] = 2 * shape[axis]
    out = ops.reshape(stacked, shape)
    index = [slice(None)] * 4
    index[axis] = slice(0, shape[axis] - 1)
    return out[tuple(index)]


def _resample(ops, images, g_inv):
    """EDM's geometric execution: pad, upsample, bilinear sample, downsample.

    EDM pads by a batch-dependent reflect margin, clamped to (W - 1, H - 1);
    here the margin is always that clamp (static shapes for XLA and
    `tf.data`). Reflect padding by more pixels agrees with EDM's on every
    pixel EDM keeps, and EDM's margin already covers the transformed image
    plus the filter support, so the result is EDM's wherever the sampled
    points stay inside EDM's margin.
    """
    height, width = int(images.shape[1]), int(images.shape[2])
    n = ops.shape(images)[0]
    hz = np.asarray(SYM6, np.float32)
    hz_pad = len(hz) // 4
    mx, my = width - 1, height - 1
    images = ops.pad(images, [[0, 0], [my, my], [mx, mx], [0, 0]], mode="reflect")
    # Upsample 2x (zero interleave, then the reversed filter), W then H.
    conv_pad = (len(hz) + 1) // 2
    images = _zero_interleave(ops, images, axis=2)
    images = _filter_axis(ops, images, hz[::-1], axis=2, padding=conv_pad)
    images = _zero_interleave(ops, images, axis=1)
    images = _filter_axis(ops, images, hz[::-1], axis=1, padding=conv_pad)
    up_h, up_w = int(images.shape[1]), int(images.shape[2])

    g_inv = _scale2d(ops, 2.0, 2.0) @ g_inv @ _scale2d(ops, 0.5, 0.5)
    g_inv = _translate2d(ops, -0.5, -0.5) @ g_inv @ _translate2d(ops, 0.5, 0.5)
    out_h, out_w = (height + hz_pad * 2) * 2, (width + hz_pad * 2) * 2
    g_inv = (
        _scale2d(ops, 2.0 / up_w, 2.0 / up_h) @ g_inv
        @ _scale2d(ops, out_w / 2.0, out_h / 2.0)
    )
    # affine_grid(align_corners=False): normalised output pixel centres.
    gx = (2.0 * np.arange(out_w, dtype=np.float32) + 1.0) / out_w - 1.0
    gy = (2.0 * np.arange(out_h, dtype=np.float32) + 1.0) / out_h - 1.0
    mesh_x, mesh_y = np.meshgrid(gx, gy, indexing="xy")
    base = np.stack([mesh_x, mesh_y, np.ones_like(mesh_x)], -1)
    base = ops.convert_to_tensor(base.reshape(-1, 3))  # (P, 3) rows [x, y, 1]
    grid = ops.einsum("bij,pj->bpi", g_inv[:, :2, :], base)  # (B, P, 2)
    # grid_sample(bilinear, zeros, align_corners=False).
    ix = ((grid[..., 0] + 1.0) * up_w - 1.0) / 2.0
    iy = ((grid[..., 1] + 1.0) * up_h - 1.0) / 2.0
    ix0, iy0 = ops.floor(ix), ops.floor(iy)
    fx, fy = ix - ix0, iy - iy0
    flat = ops.reshape(images, (n, up_h * up_w, int(images.shape[-1])))
    sampled = 0.0
    for dy, wy in ((0.0, 1.0 - fy), (1.0, fy)):
        for dx, wx in ((0.0, 1.0 - fx), (1.0, fx)):
            cx, cy = ix0 + dx, iy0 + dy
            valid = (cx >= 0) & (cx <= up_w - 1) & (cy >= 0) & (cy <= up_h - 1)
            index = ops.cast(
                ops.clip(cy, 0, up_h - 1) * up_w + ops.clip(cx, 0, up_w - 1), "int32"
            )
            index = ops.broadcast_to(index[:, :, None], (n, index.shape[1], flat.shape[-1]))
            values = ops.take_along_axis(flat, index, axis=1)
            weight = ops.where(valid, wx * wy, ops.zeros_like(wx))
            sampled = sampled + values * weight[:, :, None]
    images = ops.reshape(sampled, (n, out_h, out_w, int(flat.shape[-1])))
    # Downsample 2x and crop, W then H.
    conv_pad = (len(hz) - 1) // 2
    images = _filter_axis(ops, images, hz, axis=2, stride=2, padding=conv_pad)
    images = images[:, :, hz_pad:-hz_pad, :]
    images = _filter_axis(ops, images, hz, axis=1, stride=2, padding=conv_pad)
    images = images[:, hz_pad:-hz_pad, :, :]
    return images
