"""The FID Inception-v3 network (pool3 features) in Keras 3.

This is the network behind the standard Fréchet Inception Distance: the
TensorFlow Inception-v3 graph of 2015-12-05 used by the original TTUR FID
code, as ported to PyTorch by `pytorch-fid` (`FIDInceptionA/C/E_1/E_2`
blocks). It differs from the usual Inception-v3 in ways that change the
FID value, all reproduced here:

- images are resized to 299x299 with bilinear interpolation (PyTorch's
  `F.interpolate(..., mode="bilinear", align_corners=False)`, no
  anti-aliasing) and expected in `[-1, 1]` (`pytorch-fid` maps its `[0, 1]`
  input with `2 x - 1`);
- the 3x3 average pools of the A, C and E_1 blocks do not count the zero
  padding (TensorFlow's `SAME` average pool, `count_include_pad=False`);
- the last block (E_2, `Mixed_7c`) uses a 3x3 *max* pool in its pool branch;
- batch normalisation uses `epsilon=1e-3`;
- the output is the 2048-d global average pool of `Mixed_7c` ("pool3").

The weights are not bundled. Download the PyTorch FID weights released by
`pytorch-fid` (a `torch` state dict, 95 MB),
https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth,
and pass the file to `fid_inception_v3` (reading a `.pth` file needs
`torch`; `load_pytorch_fid_weights` also accepts an `.npz` file or a dict
of NumPy arrays with the same keys).

Computing CIFAR-10 FID (the number papers report: 50,000 generated samples
against the statistics of the 50,000 CIFAR-10 training images):

```python
import numpy as np
from keras_gcm.metrics.frechet import (
    FrechetInceptionDistance, compute_statistics, save_statistics)
from keras_gcm.metrics.inception import fid_inception_v3

inception = fid_inception_v3("pt_inception-2015-12-05-6726825d.pth")

# 1. Reference statistics, once: all 50k training images, as uint8 -> [-1, 1].
#    (Precomputed pytorch-fid / TTUR `.npz` statistics files work as well.)
train = ...  # uint8 array (50000, 32, 32, 3), e.g. from tensorflow-datasets
mu, cov = compute_statistics(inception, train / 127.5 - 1.0, batch_size=250)
save_statistics("cifar10_train_fid.npz", mu, cov)

# 2. 50k samples of the model. FrechetInceptionDistance clips them and rounds
#    them to uint8 levels like saved PNGs (the convention of EDM and the TTUR
#    code) before the features (`quantize=True`, the default).
fid = FrechetInceptionDistance(inception)
for _ in range(200):
    fid.update(sampler(250))  # (250, 32, 32, 3) in [-1, 1]
print("FID:", fid.result("cifar10_train_fid.npz"))
```

FID is biased with the number of samples: compare values computed with the
same count (50k). On GPUs, TF32 matmuls (JAX's default precision, PyTorch's
cuDNN default) move features slightly; the values stay comparable to the
published ones, which were computed the same way.
"""

import os

import keras
import numpy as np
from keras import layers

__all__ = [
    "FID_WEIGHTS_FILENAME",
    "FID_WEIGHTS_URL",
    "BilinearResize",
    "fid_inception_v3",
    "load_pytorch_fid_weights",
]

FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth"
)
FID_WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"

# Modules of pytorch-fid's `InceptionV3.blocks` (its own state dict names them
# `blocks.<i>.<j>`), mapped to the torchvision names of the weight file.
_PYTORCH_FID_BLOCKS = (
    ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"),
    ("Conv2d_3b_1x1", "Conv2d_4a_3x3"),
    (
        "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
        "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
    ),
    ("Mixed_7a", "Mixed_7b", "Mixed_7c"),
)
# Conv + batch-norm units of the pool3 network (94 convolutions).
_NUM_CONV_UNITS = 94
# Parameters of the weight file that the pool3 network does not use.
_UNUSED_PREFIXES = ("fc.", "AuxLogits.")


@keras.saving.register_keras_serializable(package="keras_gcm")
class BilinearResize(layers.Layer):
    """Bilinear resize matching PyTorch's `align_corners=False` interpolation.

    Output pixel `i` samples the input at `src = (i + 0.5) * in / out - 0.5`
    (clamped at 0) and interpolates linearly between its two neighbours
    (clamped at the last pixel), separately along height and width, without
    anti-aliasing. This is `torch.nn.functional.interpolate(x, size,
    mode="bilinear", align_corners=False)`, the resize of `pytorch-fid`,
    written with `keras.ops` gathers so it works for any input size on every
    backend (`keras.ops.image.resize` anti-aliases when downsampling on some
    backends, which would change FID).

    Args:
        height: int, output height.
        width: int, output width.
        **kwargs: base `Layer` arguments.

    Example:

    >>> resize = keras_gcm.metrics.inception.BilinearResize(299, 299)
    >>> tuple(resize(np.zeros((2, 32, 32, 3), "float32")).shape)
    (2, 299, 299, 3)
    """

    def __init__(self, height=299, width=299, **kwargs):
        super().__init__(**kwargs)
        if int(height) < 1 or int(width) < 1:
            raise ValueError(
                "`height` and `width` must be positive integers; received "
                f"height={height}, width={width}."
            )
        self.height = int(height)
        self.width = int(width)

    def _resize_axis(self, x, out_size, axis):
        in_size_static = x.shape[axis]
        if in_size_static is not None and in_size_static == out_size:
            return x
        in_size = keras.ops.shape(x)[axis]
        scale = keras.ops.cast(in_size, "float32") / float(out_size)
        index = keras.ops.arange(out_size, dtype="float32")
        source = keras.ops.maximum((index + 0.5) * scale - 0.5, 0.0)
        lower = keras.ops.floor(source)
        weight_upper = source - lower
        last = keras.ops.cast(in_size, "int32") - 1
        lower_index = keras.ops.minimum(keras.ops.cast(lower, "int32"), last)
        upper_index = keras.ops.minimum(lower_index + 1, last)
        lower_values = keras.ops.take(x, lower_index, axis=axis)
        upper_values = keras.ops.take(x, upper_index, axis=axis)
        weight_shape = [1] * len(x.shape)
        weight_shape[axis] = out_size
        weight_upper = keras.ops.cast(
            keras.ops.reshape(weight_upper, weight_shape), x.dtype
        )
        return lower_values + weight_upper * (upper_values - lower_values)

    def call(self, images):
        images = self._resize_axis(images, self.height, axis=1)
        return self._resize_axis(images, self.width, axis=2)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                "`BilinearResize` expects images of shape (batch, height, "
                f"width, channels); received shape {tuple(input_shape)}."
            )
        return (input_shape[0], self.height, self.width, input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update({"height": self.height, "width": self.width})
        return config


class _Builder:
    """Creates conv + batch-norm + ReLU units, named after the torch keys."""

    def __init__(self, dtype):
        self.dtype = dtype
        # torchvision module path -> (conv layer name, batch-norm layer name)
        self.units = {}

    def conv_bn(self, x, module, filters, kernel_size, strides=1, padding="valid"):
        name = module.replace(".", "_")
        self.units[module] = (f"{name}_conv", f"{name}_bn")
        x = layers.Conv2D(
            filters, kernel_size, strides=strides, padding=padding,
            use_bias=False, kernel_initializer="zeros", dtype=self.dtype,
            name=f"{name}_conv",
        )(x)
        x = layers.BatchNormalization(
            epsilon=1e-3, dtype=self.dtype, name=f"{name}_bn"
        )(x)
        return layers.ReLU(dtype=self.dtype, name=f"{name}_relu")(x)

    def avg_pool_3x3(self, x, name):
        # TF "SAME" average pool: the padded zeros are not counted
        # (`count_include_pad=False`) on every Keras backend.
        return layers.AveragePooling2D(
            3, strides=1, padding="same", dtype=self.dtype, name=name
        )(x)

    def concat(self, tensors, name):
        return layers.Concatenate(axis=-1, dtype=self.dtype, name=name)(tensors)

    def block_a(self, x, name, pool_features):
        """FIDInceptionA (Mixed_5b/5c/5d)."""
        b1 = self.conv_bn(x, f"{name}.branch1x1", 64, 1)
        b5 = self.conv_bn(x, f"{name}.branch5x5_1", 48, 1)
        b5 = self.conv_bn(b5, f"{name}.branch5x5_2", 64, 5, padding="same")
        b3 = self.conv_bn(x, f"{name}.branch3x3dbl_1", 64, 1)
        b3 = self.conv_bn(b3, f"{name}.branch3x3dbl_2", 96, 3, padding="same")
        b3 = self.conv_bn(b3, f"{name}.branch3x3dbl_3", 96, 3, padding="same")
        bp = self.avg_pool_3x3(x, f"{name}_pool")
        bp = self.conv_bn(bp, f"{name}.branch_pool", pool_features, 1)
        return self.concat([b1, b5, b3, bp], name)

    def block_b(self, x, name):
        """InceptionB (Mixed_6a), grid reduction 35 -> 17."""
        b3 = self.conv_bn(x, f"{name}.branch3x3", 384, 3, strides=2)
        bd = self.conv_bn(x, f"{name}.branch3x3dbl_1", 64, 1)
        bd = self.conv_bn(bd, f"{name}.branch3x3dbl_2", 96, 3, padding="same")
        bd = self.conv_bn(bd, f"{name}.branch3x3dbl_3", 96, 3, strides=2)
        bp = layers.MaxPooling2D(3, strides=2, dtype=self.dtype, name=f"{name}_pool")(x)
        return self.concat([b3, bd, bp], name)

    def block_c(self, x, name, channels_7x7):
        """FIDInceptionC (Mixed_6b..6e)."""
        c7 = channels_7x7
        b1 = self.conv_bn(x, f"{name}.branch1x1", 192, 1)
        b7 = self.conv_bn(x, f"{name}.branch7x7_1", c7, 1)
        b7 = self.conv_bn(b7, f"{name}.branch7x7_2", c7, (1, 7), padding="same")
        b7 = self.conv_bn(b7, f"{name}.branch7x7_3", 192, (7, 1), padding="same")
        bd = self.conv_bn(x, f"{name}.branch7x7dbl_1", c7, 1)
        bd = self.conv_bn(bd, f"{name}.branch7x7dbl_2", c7, (7, 1), padding="same")
        bd = self.conv_bn(bd, f"{name}.branch7x7dbl_3", c7, (1, 7), padding="same")
        bd = self.conv_bn(bd, f"{name}.branch7x7dbl_4", c7, (7, 1), padding="same")
        bd = self.conv_bn(bd, f"{name}.branch7x7dbl_5", 192, (1, 7), padding="same")
        bp = self.avg_pool_3x3(x, f"{name}_pool")
        bp = self.conv_bn(bp, f"{name}.branch_pool", 192, 1)
        return self.concat([b1, b7, bd, bp], name)

    def block_d(self, x, name):
        """InceptionD (Mixed_7a), grid reduction 17 -> 8."""
        b3 = self.conv_bn(x, f"{name}.branch3x3_1", 192, 1)
        b3 = self.conv_bn(b3, f"{name}.branch3x3_2", 320, 3, strides=2)
        b7 = self.conv_bn(x, f"{name}.branch7x7x3_1", 192, 1)
        b7 = self.conv_bn(b7, f"{name}.branch7x7x3_2", 192, (1, 7), padding="same")
        b7 = self.conv_bn(b7, f"{name}.branch7x7x3_3", 192, (7, 1), padding="same")
        b7 = self.conv_bn(b7, f"{name}.branch7x7x3_4", 192, 3, strides=2)
        bp = layers.MaxPooling2D(3, strides=2, dtype=self.dtype, name=f"{name}_pool")(x)
        return self.concat([b3, b7, bp], name)

    def block_e(self, x, name, max_pool):
        """FIDInceptionE_1 (Mixed_7b, avg pool) / E_2 (Mixed_7c, max pool)."""
        b1 = self.conv_bn(x, f"{name}.branch1x1", 320, 1)
        b3 = self.conv_bn(x, f"{name}.branch3x3_1", 384, 1)
        b3 = self.concat(
            [
                self.conv_bn(b3, f"{name}.branch3x3_2a", 384, (1, 3), padding="same"),
                self.conv_bn(b3, f"{name}.branch3x3_2b", 384, (3, 1), padding="same"),
            ],
            f"{name}_branch3x3",
        )
        bd = self.conv_bn(x, f"{name}.branch3x3dbl_1", 448, 1)
        bd = self.conv_bn(bd, f"{name}.branch3x3dbl_2", 384, 3, padding="same")
        bd = self.concat(
            [
                self.conv_bn(
                    bd, f"{name}.branch3x3dbl_3a", 384, (1, 3), padding="same"
                ),
                self.conv_bn(
                    bd, f"{name}.branch3x3dbl_3b", 384, (3, 1), padding="same"
                ),
            ],
            f"{name}_branch3x3dbl",
        )
        if max_pool:
            bp = layers.MaxPooling2D(
                3, strides=1, padding="same", dtype=self.dtype, name=f"{name}_pool"
            )(x)
        else:
            bp = self.avg_pool_3x3(x, f"{name}_pool")
        bp = self.conv_bn(bp, f"{name}.branch_pool", 192, 1)
        return self.concat([b1, b3, bd, bp], name)


def _build_fid_inception_v3(resize_to, dtype, name):
    builder = _Builder(dtype)
    images = keras.Input(shape=(None, None, 3), name="images", dtype=dtype)
    x = images
    if resize_to is not None:
        x = BilinearResize(resize_to[0], resize_to[1], dtype=dtype, name="resize")(x)
    x = builder.conv_bn(x, "Conv2d_1a_3x3", 32, 3, strides=2)
    x = builder.conv_bn(x, "Conv2d_2a_3x3", 32, 3)
    x = builder.conv_bn(x, "Conv2d_2b_3x3", 64, 3, padding="same")
    x = layers.MaxPooling2D(3, strides=2, dtype=dtype, name="maxpool_1")(x)
    x = builder.conv_bn(x, "Conv2d_3b_1x1", 80, 1)
    x = builder.conv_bn(x, "Conv2d_4a_3x3", 192, 3)
    x = layers.MaxPooling2D(3, strides=2, dtype=dtype, name="maxpool_2")(x)
    x = builder.block_a(x, "Mixed_5b", pool_features=32)
    x = builder.block_a(x, "Mixed_5c", pool_features=64)
    x = builder.block_a(x, "Mixed_5d", pool_features=64)
    x = builder.block_b(x, "Mixed_6a")
    x = builder.block_c(x, "Mixed_6b", channels_7x7=128)
    x = builder.block_c(x, "Mixed_6c", channels_7x7=160)
    x = builder.block_c(x, "Mixed_6d", channels_7x7=160)
    x = builder.block_c(x, "Mixed_6e", channels_7x7=192)
    x = builder.block_d(x, "Mixed_7a")
    x = builder.block_e(x, "Mixed_7b", max_pool=False)
    x = builder.block_e(x, "Mixed_7c", max_pool=True)
    features = layers.GlobalAveragePooling2D(dtype=dtype, name="pool3")(x)
    assert len(builder.units) == _NUM_CONV_UNITS
    return keras.Model(images, features, name=name)


def _missing_weights_message(path):
    return (
        f"FID Inception weights not found at {path!r}. Download the PyTorch "
        f"FID weights ({FID_WEIGHTS_FILENAME}, 95 MB) from {FID_WEIGHTS_URL} "
        "and pass the path of the file."
    )


def _to_numpy(value):
    if hasattr(value, "detach"):  # a torch tensor, from any Keras backend.
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _read_state_dict(source):
    """Returns `{key: np.ndarray}` from a dict, `.npz` or torch `.pth` file."""
    if isinstance(source, dict):
        return {key: _to_numpy(value) for key, value in source.items()}
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(
            "`weights` must be the path of the PyTorch FID weight file, an "
            "`.npz` file or a dict of arrays; received "
            f"{type(source).__name__}."
        )
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise FileNotFoundError(_missing_weights_message(path))
    if path.endswith(".npz"):
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            f"Reading the PyTorch weight file {path!r} needs `torch` "
            "(the CPU build is enough). Alternatively convert it once to "
            "an `.npz` file of NumPy arrays with the same keys."
        ) from error
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state_dict, dict):
        raise ValueError(
            f"{path!r} does not hold a state dict (a dict of tensors); it "
            f"holds a {type(state_dict).__name__}."
        )
    return {key: _to_numpy(value) for key, value in state_dict.items()}


def _canonical_key(key):
    """Maps pytorch-fid `InceptionV3` keys (`blocks.i.j.*`) to file keys."""
    if key.startswith("module."):
        key = key[len("module."):]
    if key.startswith("blocks."):
        parts = key.split(".")
        try:
            module = _PYTORCH_FID_BLOCKS[int(parts[1])][int(parts[2])]
        except (IndexError, ValueError):
            return key
        return ".".join([module] + parts[3:])
    return key


def _torch_module_path(layer_prefix):
    """`Mixed_5b_branch1x1` -> `Mixed_5b.branch1x1` (inverse of the naming)."""
    if layer_prefix.startswith("Mixed_"):
        return layer_prefix[:8] + "." + layer_prefix[9:]
    return layer_prefix


def _conv_units(model):
    """`{torch module path: (conv layer, bn layer)}` of a FID Inception model.

    Layer names are the torchvision module paths with "." replaced by "_"
    (e.g. `Mixed_5b.branch1x1` -> `Mixed_5b_branch1x1_conv` / `_bn`).
    """
    layer_names = {layer.name for layer in getattr(model, "layers", [])}
    units = {
        _torch_module_path(name[: -len("_conv")]): (name, name[: -len("_conv")] + "_bn")
        for name in sorted(layer_names)
        if name.endswith("_conv")
    }
    if len(units) != _NUM_CONV_UNITS or any(
        bn not in layer_names for _, bn in units.values()
    ):
        raise ValueError(
            "`model` must be built by `fid_inception_v3`; "
            f"{getattr(model, 'name', type(model).__name__)!r} has "
            f"{len(units)} of its {_NUM_CONV_UNITS} conv + batch-norm units."
        )
    return units


def load_pytorch_fid_weights(model, weights):
    """Loads the PyTorch FID Inception weights into `fid_inception_v3`.

    Maps each `<module>.conv.weight` (PyTorch OIHW) to the Keras kernel
    (HWIO) of the layer `<module>_conv` and `<module>.bn.{weight, bias,
    running_mean, running_var}` to the batch-norm layer `<module>_bn`
    (gamma, beta, moving mean, moving variance). Keys of the classifier
    (`fc.*`), of an auxiliary head and `num_batches_tracked` are ignored.
    Keys of a `pytorch_fid.inception.InceptionV3` state dict
    (`blocks.<i>.<j>.*`) are accepted as well. Every layer must receive its
    weights with the right shape, otherwise a `ValueError` says which.

    Args:
        model: a model built by `fid_inception_v3`.
        weights: path of `pt_inception-2015-12-05-6726825d.pth` (a torch
            state dict; needs `torch`, imported only here), path of an
            `.npz` file with the same keys, or a dict of NumPy arrays.

    Returns:
        `model`, with its weights set.

    Example:

    With the user-supplied weight file (not run in the doctests):

    >>> model = keras_gcm.metrics.fid_inception_v3()  # doctest: +SKIP
    >>> keras_gcm.metrics.load_pytorch_fid_weights(
    ...     model, "pt_inception-2015-12-05-6726825d.pth")  # doctest: +SKIP
    """
    units = _conv_units(model)
    state_dict = _read_state_dict(weights)
    grouped = {}
    unknown = []
    for raw_key, value in state_dict.items():
        key = _canonical_key(raw_key)
        if key.startswith(_UNUSED_PREFIXES) or key.endswith("num_batches_tracked"):
            continue
        module, _, param = key.rpartition(".")
        module, _, kind = module.rpartition(".")
        if module not in units or kind not in ("conv", "bn"):
            unknown.append(raw_key)
            continue
        grouped.setdefault(module, {})[f"{kind}.{param}"] = np.asarray(value)
    if unknown:
        raise ValueError(
            f"{len(unknown)} weight(s) match no layer of the FID Inception "
            f"network, e.g. {unknown[:5]}. Is this the FID Inception state "
            f"dict ({FID_WEIGHTS_FILENAME})?"
        )

    # Check every shape first and report missing weights, then assign: a
    # bad state dict leaves the model untouched.
    bn_params = ("bn.weight", "bn.bias", "bn.running_mean", "bn.running_var")
    assignments = []
    missing = []
    for module, (conv_name, bn_name) in units.items():
        params = grouped.get(module, {})
        missing.extend(
            f"{module}.{p}" for p in ("conv.weight",) + bn_params if p not in params
        )
        conv = model.get_layer(conv_name)
        if "conv.weight" in params:
            kernel = params["conv.weight"]
            height, width, in_channels, out_channels = conv.kernel.shape
            torch_shape = (out_channels, in_channels, height, width)
            if kernel.shape != torch_shape:
                raise ValueError(
                    f"`{module}.conv.weight` must have the PyTorch shape "
                    f"{torch_shape} (out, in, height, width); received "
                    f"{kernel.shape}."
                )
            # PyTorch OIHW -> Keras HWIO.
            assignments.append((conv.kernel, kernel.transpose(2, 3, 1, 0)))
        bn = model.get_layer(bn_name)
        for variable, param in zip(
            (bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance), bn_params
        ):
            if param not in params:
                continue
            value = params[param]
            if value.shape != tuple(variable.shape):
                raise ValueError(
                    f"`{module}.{param}` must have shape "
                    f"{tuple(variable.shape)}; received {value.shape}."
                )
            assignments.append((variable, value))
    if missing:
        raise ValueError(
            f"{len(missing)} weight(s) of the FID Inception network are "
            f"missing from the state dict, e.g. {missing[:5]}."
        )
    for variable, value in assignments:
        variable.assign(np.asarray(value, dtype="float32"))
    return model


def fid_inception_v3(weights_path=None, resize_to=(299, 299), name="fid_inception_v3"):
    """The FID Inception-v3 network: images in `[-1, 1]` -> pool3 features.

    A functional `keras.Model` mapping a batch of channels-last RGB images
    `(B, H, W, 3)` with values in `[-1, 1]` (any size: they are resized
    bilinearly to 299x299 first) to the 2048-d pool3 features `(B, 2048)`
    of the TensorFlow FID network (see the module docstring for its quirks).
    All layers compute in float32 whatever the global dtype policy.

    Args:
        weights_path: path of the PyTorch FID weight file
            `pt_inception-2015-12-05-6726825d.pth` (download it from
            `FID_WEIGHTS_URL`), of an `.npz` file with the same keys, or a
            dict of NumPy arrays. `None` builds the network with zero
            kernels, placeholders to be filled by `load_pytorch_fid_weights`
            (random initialisation would only cost time: the network is
            meaningless without the FID weights).
        resize_to: `(height, width)` the input is resized to, or `None` to
            feed the images unchanged. Keep the default for FID.
        name: model name.

    Returns:
        A `keras.Model`.

    Example:

    >>> inception = keras_gcm.metrics.fid_inception_v3("pt_inception-2015-12-05-6726825d.pth")
    ... # doctest: +SKIP
    >>> inception.predict_on_batch(images).shape  # doctest: +SKIP
    (250, 2048)
    """
    if isinstance(weights_path, (str, os.PathLike)) and not os.path.isfile(
        os.fspath(weights_path)
    ):
        raise FileNotFoundError(_missing_weights_message(os.fspath(weights_path)))
    if resize_to is not None:
        if len(resize_to) != 2 or min(resize_to) < 1:
            raise ValueError(
                "`resize_to` must be (height, width) with positive sizes or "
                f"None; received {resize_to}."
            )
        if min(resize_to) < 75:
            raise ValueError(
                "Inception-v3 needs inputs of at least 75x75 pixels; "
                f"received resize_to={resize_to}."
            )
    model = _build_fid_inception_v3(resize_to, "float32", name)
    if weights_path is not None:
        load_pytorch_fid_weights(model, weights_path)
    return model
