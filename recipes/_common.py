"""Helpers shared by the recipe scripts (backend choice, output folder, JSON).

Import this module before Keras: `select_backend` sets KERAS_BACKEND.
"""

import contextlib
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
        raise RuntimeError("Install one of jax, torch or tensorflow: from the source tree, pip install '.[jax]'.")
    os.environ["KERAS_BACKEND"] = backend
    return backend


def add_distribution_arguments(parser):
    parser.add_argument(
        "--devices", type=int, default=1,
        help="train on N devices: jax -> keras.distribution.DataParallel, "
             "tensorflow -> tf.distribute.MirroredStrategy (torch: 1 only). "
             "The batch size is the global batch, split across the devices.",
    )
    parser.add_argument(
        "--num-processes", type=int, default=None,
        help="train with N processes (hosts), one launch per process: jax -> "
             "jax.distributed, tensorflow -> MultiWorkerMirroredStrategy, torch -> "
             "torch.distributed (default: $WORLD_SIZE from torchrun, else 1). "
             "The batch size stays the global batch.",
    )
    parser.add_argument(
        "--process-id", type=int, default=None,
        help="this process's id in [0, N) (default: $RANK from torchrun, else 0).",
    )
    parser.add_argument(
        "--coordinator", default=None,
        help="host:port of process 0 (default: $MASTER_ADDR:$MASTER_PORT from "
             "torchrun). TensorFlow's workers listen on port, port + 1, ...",
    )
    parser.add_argument(
        "--simulate-cpu-devices", action="store_true",
        help="split the host CPU into --devices virtual devices (to try "
             "multi-device training without accelerators; slow).",
    )


def setup_distribution(args):
    """Prepares training on `args.devices` devices; returns the scope to build in.

    Call after `select_backend` and before importing Keras (with
    `--simulate-cpu-devices`, JAX must learn the device count before it is
    imported). Build and compile the model inside the returned context
    manager:

    * jax: sets a global `keras.distribution.DataParallel` over N devices
      (it also covers `fit`); the scope does nothing;
    * tensorflow: returns the scope of a `tf.distribute.MirroredStrategy`
      over N devices (GPUs, else logical CPUs);
    * torch: N > 1 raises a ValueError (not supported).

    With `--devices 1` nothing changes (a scope that does nothing).
    """
    count = int(args.devices)
    if count < 1:
        raise ValueError(f"--devices must be >= 1. Received: {count}")
    if getattr(args, "num_processes", None) is not None or "WORLD_SIZE" in os.environ:
        scope = _setup_processes(args)
        if scope is not None:
            return scope
    if count == 1:
        return contextlib.nullcontext()
    backend = select_backend(getattr(args, "backend", None))
    if backend == "torch":
        raise ValueError(
            f"--devices {count} is not supported with the torch backend: use "
            "jax or tensorflow for several devices (--backend jax or "
            "--backend tensorflow)."
        )
    if getattr(args, "simulate_cpu_devices", False):
        if backend == "jax":
            if "jax" in sys.modules:
                raise RuntimeError(
                    "--simulate-cpu-devices must be set up before JAX is "
                    "imported: call setup_distribution before importing keras."
                )
            flags = os.environ.get("XLA_FLAGS", "")
            os.environ["XLA_FLAGS"] = (
                f"{flags} --xla_force_host_platform_device_count={count}".strip()
            )
            os.environ["JAX_PLATFORMS"] = "cpu"
        else:
            import tensorflow as tf

            tf.config.set_visible_devices([], "GPU")
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
            )
    import keras

    from keras_gcm import distribute

    if backend == "jax":
        keras.distribution.set_distribution(distribute.data_parallel(count))
        return contextlib.nullcontext()
    return distribute.mirrored_strategy(count).scope()


def _setup_processes(args):
    """Joins a multi-process job (`keras_gcm.distribute.initialize`); returns the
    scope to build in, or None with one process."""
    backend = select_backend(getattr(args, "backend", None))
    from keras_gcm import distribute

    num, rank, coordinator = distribute.launch_settings(
        args.num_processes, args.process_id, args.coordinator
    )
    if num == 1:
        return None
    if backend == "jax" and getattr(args, "simulate_cpu_devices", False):
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (
            f"{flags} --xla_force_host_platform_device_count={int(args.devices)}".strip()
        )
        os.environ["JAX_PLATFORMS"] = "cpu"
    strategy = distribute.initialize(num, rank, coordinator)
    if backend == "jax":
        import keras

        # Data parallelism over every device of every process.
        keras.distribution.set_distribution(distribute.data_parallel())
        return contextlib.nullcontext()
    if backend == "tensorflow":
        return strategy.scope()
    return contextlib.nullcontext()


def is_chief():
    """Whether this process writes the recipe's files (process 0 of a job)."""
    from keras_gcm import distribute

    return distribute.is_chief()


def preset_overrides(args):
    """`ConsistencyModel.from_preset` overrides from a recipe's arguments.

    `args.ema_decay`, `args.seed` (and `args.ema_warmup` where the recipe
    has it), and with `args.epsilon` set, the
    preset's discretisation with that epsilon (its other arguments kept).
    """
    from keras_gcm import presets

    overrides = {"ema_decay": args.ema_decay, "seed": args.seed}
    if getattr(args, "ema_warmup", None) is not None:
        overrides["ema_warmup"] = args.ema_warmup
    if getattr(args, "epsilon", None) is not None:
        step_spec = presets.get(args.preset)["step"]
        step_spec[1]["epsilon"] = args.epsilon
        overrides["step"] = presets.build_component(step_spec)
    return overrides


def check_training_images(images, image_shape, name="training images"):
    """Raises a clear `ValueError` unless `images` is an `(N, *image_shape)` batch in [-1, 1].

    Runs `keras_gcm.data.check_images` (rank 4, channels-last, finite, in
    [-1, 1]) and checks the image shape the network is built for.
    """
    from keras_gcm.data import check_images

    check_images(images, name=name)
    if tuple(images.shape[1:]) != tuple(image_shape):
        raise ValueError(
            f"`{name}` must be images of shape {tuple(image_shape)} (H, W, C); got "
            f"{tuple(images.shape[1:])}."
        )


def check_flags(parser, args, positive=(), minimums=None, output="output"):
    """Checks a recipe's flags before any work; `parser.error` names the flag.

    Args:
        parser: the recipe's `argparse.ArgumentParser`.
        args: its parsed arguments.
        positive: names of flags that must be >= 1 (e.g. "steps").
        minimums: dict name -> smallest allowed value (e.g.
            `{"eval_samples": 2}`: a distance needs two samples).
        output: name of the output-folder flag, checked for being writable
            (None: no check).
    """
    limits = {"seed": 0, "verbose": 0}
    limits.update({name: 1 for name in positive})
    limits.update(minimums or {})
    for name, minimum in limits.items():
        value = getattr(args, name, None)
        if value is not None and value < minimum:
            parser.error(
                f"--{name.replace('_', '-')} must be >= {minimum}; got {value}."
            )
    rate = getattr(args, "learning_rate", None)
    if rate is not None and not (rate > 0 and rate < float("inf")):
        parser.error(f"--learning-rate must be a positive finite number; got {rate}.")
    path = getattr(args, output, None) if output else None
    if path is not None:
        # Nothing is created here: the folder, or its nearest existing parent,
        # must be a writable directory.
        existing = os.path.abspath(path)
        while not os.path.exists(existing) and os.path.dirname(existing) != existing:
            existing = os.path.dirname(existing)
        writable = os.path.isdir(existing)
        if writable:
            probe = os.path.join(existing, f".write-test-{os.getpid()}")
            try:
                with open(probe, "w"):
                    pass
                os.remove(probe)
            except OSError:
                writable = False
        if not writable:
            flag = f"--{output.replace('_', '-')}"
            parser.error(
                f"{flag} {path!r} is not writable ({existing!r} is not a writable "
                f"folder); choose another folder with {flag}."
            )


def prepare_output(path):
    os.makedirs(path, exist_ok=True)
    return path


def write_json(path, payload):
    if not is_chief():  # several processes: process 0 writes
        return path
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
    return path


class Timer:
    def __enter__(self):
        self.start = time.time()
        self.cpu_start = time.process_time()
        return self

    def __exit__(self, *exc):
        self.seconds = time.time() - self.start
        # user + sys time of every thread of this process: the figure that a
        # busy machine does not inflate the way it inflates wall time.
        self.cpu_seconds = time.process_time() - self.cpu_start
