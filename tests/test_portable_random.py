"""keras_gcm.portable_random: bitwise a numpy reference of the hash, on every backend."""

import numpy as np
import pytest
import keras

from keras_gcm import portable_random
from tests.helpers import to_numpy


def _fmix32(h):
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def reference_uniform(n, seed, counter, stream):
    """MurmurHash3's fmix32 in numpy uint32 (wrapping arithmetic)."""
    golden = 0x9E3779B9
    with np.errstate(over="ignore"):
        base = _fmix32(np.uint32((seed * golden + stream * 0x632BE5AB) % 2**32))
        key = _fmix32(np.uint32((int(base) + counter * golden) % 2**32))
        h = _fmix32(np.arange(n, dtype=np.uint32) * np.uint32(golden) + key)
        h = _fmix32(h ^ key)
    return ((h >> np.uint32(8)).astype(np.float32) + np.float32(0.5)) / np.float32(2**24)


@pytest.mark.parametrize("seed,counter,stream", [(0, 0, 0), (5, 123, 2), (2**31 - 1, 2**20, 7)])
def test_uniform_is_bitwise_the_numpy_reference(seed, counter, stream):
    got = to_numpy(portable_random.uniform((500, 3), seed, counter, stream))
    np.testing.assert_array_equal(got, reference_uniform(1500, seed, counter, stream).reshape(500, 3))
    # A tensor counter (as in the compiled evaluation step) gives the same numbers.
    counter_tensor = keras.ops.convert_to_tensor(counter, "int32")
    np.testing.assert_array_equal(
        to_numpy(portable_random.uniform((500, 3), seed, counter_tensor, stream)), got)


def test_uniform_and_normal_have_the_right_distribution():
    u = to_numpy(portable_random.uniform((200_000,), seed=1, counter=3))
    assert 0.0 < u.min() and u.max() < 1.0  # open interval
    # Kolmogorov-Smirnov distance to U(0, 1): ~1/sqrt(n) for a good generator.
    ks = np.max(np.abs(np.sort(u) - (np.arange(1, u.size + 1) - 0.5) / u.size))
    assert ks < 5e-3
    z = to_numpy(portable_random.normal((200_000,), seed=1, counter=3))
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1.0) < 0.01
    assert abs(np.mean(z**4) - 3.0) < 0.1  # normal kurtosis
    # Neighbouring counters, streams and seeds are uncorrelated.
    for other in ({"counter": 4}, {"stream": 1}, {"seed": 2}):
        v = to_numpy(portable_random.uniform((200_000,), **{"seed": 1, "counter": 3, **other}))
        assert abs(np.corrcoef(u, v)[0, 1]) < 0.01
