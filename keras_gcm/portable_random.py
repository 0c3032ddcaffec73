"""Counter-based random numbers that are identical on every Keras backend.

`keras.random` gives different numbers for the same integer seed under JAX,
TensorFlow and torch. Evaluation (`ConsistencyModel.test_step`) needs draws
that are a fixed function of `(seed, counter, element index)`, so that two
evaluations of the same weights on the same data, on any backend, see the
same noise and times, and so that evaluating never advances the training
seed generators.

Each element's integer index is hashed with the 32-bit MurmurHash3
finaliser (`fmix32`), keyed by the seed, the counter and a stream number,
in int32 `keras.ops` (multiplication wraps modulo 2**32 on every backend;
right shifts are made logical with a mask). The top 24 bits of the hash give
a float32 uniform in the open interval (0, 1); two uniforms give a normal
by the Box-Muller transform. The integers are bitwise the same on every
backend (tested against a numpy reference); the normals agree to float32
rounding of `log` / `cos`.
"""

import numpy as np
from keras import ops

_M1 = 0x85EBCA6B  # fmix32 multipliers
_M2 = 0xC2B2AE35
_GOLDEN = 0x9E3779B9  # 2**32 / golden ratio: spreads consecutive integers
_STREAM = 0x632BE5AB


def _int32(value):
    """A Python integer modulo 2**32 as an int32 constant (two's complement)."""
    return ops.convert_to_tensor(np.array(value % 2**32, np.uint32).view(np.int32))


def _shift_right(h, bits):
    """Logical right shift of int32 `h` (arithmetic shift, then the sign bits masked)."""
    return ops.bitwise_and(ops.right_shift(h, bits), _int32((1 << (32 - bits)) - 1))


def _fmix32(h):
    h = ops.bitwise_xor(h, _shift_right(h, 16))
    h = ops.multiply(h, _int32(_M1))
    h = ops.bitwise_xor(h, _shift_right(h, 13))
    h = ops.multiply(h, _int32(_M2))
    return ops.bitwise_xor(h, _shift_right(h, 16))


def _key(seed, counter, stream):
    """int32 key of `(seed, counter, stream)`; `counter` may be a tensor."""
    base = _fmix32(_int32(int(seed) * _GOLDEN + int(stream) * _STREAM))
    counter = ops.cast(ops.convert_to_tensor(counter), "int32")
    return _fmix32(ops.add(base, ops.multiply(counter, _int32(_GOLDEN))))


def _bits(size, seed, counter, stream):
    index = ops.arange(size, dtype="int32")
    key = _key(seed, counter, stream)
    h = _fmix32(ops.add(ops.multiply(index, _int32(_GOLDEN)), key))
    return _fmix32(ops.bitwise_xor(h, key))


def _size(shape):
    size = 1
    for dim in shape:
        size = size * dim
    return size


def uniform(shape, seed=0, counter=0, stream=0):
    """Uniform variates in the open interval (0, 1), the same on every backend.

    Args:
        shape: tuple of ints (the first entry may be a scalar tensor, e.g. a
            dynamic batch size under TensorFlow).
        seed: int, the seed.
        counter: int or int32 scalar tensor (e.g. a batch index).
        stream: int, an independent stream for the same seed and counter.

    Returns:
        A float32 tensor of `shape`: `(k + 0.5) / 2**24` for 24-bit hashes k.

    Example:

    >>> u = keras_gcm.portable_random.uniform((4, 3), seed=0, counter=7)
    """
    shape = tuple(shape)
    bits = _bits(_size(shape), seed, counter, stream)
    k = ops.cast(_shift_right(bits, 8), "float32")
    return ops.reshape((k + 0.5) * (1.0 / 2**24), shape)


def normal(shape, seed=0, counter=0, stream=0):
    """Standard normal variates (Box-Muller), the same on every backend.

    Args:
        shape, seed, counter, stream: as in `uniform` (the normal uses the
            uniform streams `2 * stream` and `2 * stream + 1`).

    Returns:
        A float32 tensor of `shape`.

    Example:

    >>> z = keras_gcm.portable_random.normal((4, 2), seed=0, counter=7)
    """
    u1 = uniform(shape, seed, counter, 2 * stream)
    u2 = uniform(shape, seed, counter, 2 * stream + 1)
    return ops.sqrt(-2.0 * ops.log(u1)) * ops.cos((2.0 * np.pi) * u2)
