"""Helpers shared by the recipe scripts (backend choice, output folder, JSON).

Import this module before Keras: `select_backend` sets KERAS_BACKEND.
"""

import importlib.util
import json
import os
import sys
import time

BACKENDS = ("jax", "torch", "tensorflow")


def add_backend_argument(parser):
    parser.add_argument(
        "--backend", choices=BACKENDS, default=None,
        help="Keras backend (default: $KERAS_BACKEND, else the first installed of "
             "jax, torch, tensorflow).",
    )


def select_backend(requested=None):
    """Sets KERAS_BACKEND before Keras is imported and returns it."""
    if "keras" in sys.modules:
        import keras

        current = keras.backend.backend()
        if requested and requested != current:
            raise RuntimeError(
                f"Keras is already imported with the {current} backend; cannot switch "
                f"to {requested}."
            )
        return current
    backend = requested or os.environ.get("KERAS_BACKEND")
    if backend is None:
        for name in BACKENDS:
            module = "tensorflow" if name == "tensorflow" else name
            if importlib.util.find_spec(module) is not None:
                backend = name
                break
    if backend is None:
        raise RuntimeError("Install one of jax, torch or tensorflow: pip install 'keras-gcm[jax]'.")
    os.environ["KERAS_BACKEND"] = backend
    return backend


def prepare_output(path):
    os.makedirs(path, exist_ok=True)
    return path


def write_json(path, payload):
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
    return path


class Timer:
    def __enter__(self):
        self.start = time.time()
        return self

    def __exit__(self, *exc):
        self.seconds = time.time() - self.start
