"""Shared pytest configuration.

Backend-specific tests carry ``@pytest.mark.backends("jax", "torch")``; under any
other backend they are reported as skipped *with the reason*, never silently.
"""

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "backends(*names): the test only runs under the named Keras backends",
    )
    config.addinivalue_line(
        "markers", "slow: a longer end-to-end test (still part of CI)"
    )
    config.addinivalue_line(
        "markers",
        "extended: a long end-to-end comparison, left out of the default run "
        "(and of CI's 2-core budget; today: the gcm_vu and SongUNet cases of "
        "test_torch_compile.py, whose torch.compile takes minutes); run them with "
        "`python -m pytest -m extended`",
    )


def pytest_collection_modifyitems(config, items):
    backend = keras.backend.backend()
    for item in items:
        marker = item.get_closest_marker("backends")
        if marker is not None and backend not in marker.args:
            item.add_marker(
                pytest.mark.skip(
                    reason=f"backend-specific: runs under {marker.args}, "
                    f"current backend is {backend!r}"
                )
            )


@pytest.fixture(autouse=True)
def _seed_everything():
    keras.utils.set_random_seed(1234)
    np.random.seed(1234)
    yield
