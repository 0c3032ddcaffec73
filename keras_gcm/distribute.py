"""Training on several devices: JAX data parallelism and `tf.distribute`.

`ConsistencyModel.fit` runs unchanged on several devices with the engines
Keras supports:

* **JAX**: `keras.distribution.DataParallel` (`data_parallel`). The train
  step is one SPMD program with a *global* view of the batch: the noise,
  the times and the dropout masks are drawn for the whole global batch from
  replicated seed states and the consistency loss (MMD groups included) is
  exactly the global one, whatever way the batch is split across devices,
  even when an MMD group straddles two devices.
* **TensorFlow**: `tf.distribute.MirroredStrategy` (`mirrored_strategy`).
  Each replica trains on its slice of the global batch; the loss is divided
  by the number of replicas and the gradients summed, every replica draws
  its own rows of the global batch's noise and times (different noise on
  every replica, equal to one device's draws), and MMD groups stay inside a
  replica (a global batch size that is a multiple of replicas x M).
* **PyTorch**: one device per process (`distribution_scope` raises for
  more); several processes with `torch.distributed` (below).

Build, compile and fit inside `distribution_scope(num_devices)` (or the
scope of the objects above).

Several processes or hosts (`initialize`, one launch per process, e.g. by
`torchrun`, SLURM or a TPU pod): torch.distributed, jax.distributed and
`tf.distribute.MultiWorkerMirroredStrategy`. `batch_size` stays the global
batch; each process trains on its rows (`process_shard`), and process 0
alone writes files (`is_chief`). See the docs page "Training on several
devices and hosts".
"""

import contextlib
import os
import sys

import numpy as np
import keras


def _backend():
    return keras.backend.backend()


def _require(backend, what):
    if _backend() != backend:
        raise ValueError(
            f"`{what}` needs the {backend} backend; KERAS_BACKEND is "
            f"{_backend()!r}. Use `keras_gcm.distribute.distribution_scope`, "
            "which picks the engine of the current backend."
        )


def _check_count(num_devices, available, kind, hint):
    if num_devices is None:
        return len(available)
    num_devices = int(num_devices)
    if num_devices < 1:
        raise ValueError(f"`num_devices` must be >= 1. Received: {num_devices}")
    if num_devices > len(available):
        raise ValueError(
            f"Asked for {num_devices} devices but only {len(available)} {kind} "
            f"device(s) are visible: {available}. {hint}"
        )
    return num_devices


def data_parallel(num_devices=None, devices=None):
    """A JAX `keras.distribution.DataParallel` over the first `num_devices` devices.

    Variables (weights, EMA weights, optimizer slots, seed states) are
    replicated; each batch is split along its first axis. The consistency
    loss is computed on the global batch (SPMD), so N devices train exactly
    like one device on the same global batch. For several hosts, call
    `keras.distribution.initialize()` on every host first and build a
    `keras.distribution.DeviceMesh` over `keras.distribution.list_devices()`
    (this function uses all visible devices when `num_devices` is None).

    Args:
        num_devices: int or None (all devices: accelerators if any, else CPU).
        devices: optional explicit list of device names (as returned by
            `keras.distribution.list_devices()`); overrides `num_devices`.

    Returns:
        A `keras.distribution.DataParallel`.

    Example:

    Two devices (JAX; not run in the doctests, which see one device):

    >>> distribution = keras_gcm.distribute.data_parallel(2)  # doctest: +SKIP
    >>> with distribution.scope():  # doctest: +SKIP
    ...     model = keras_gcm.ConsistencyModel.from_preset("gcm_cu", network)
    ...     model.compile(optimizer=keras_gcm.optimizers.RAdam(1e-3))
    ...     model.fit(data, batch_size=512)
    """
    _require("jax", "data_parallel")
    if devices is None:
        available = keras.distribution.list_devices()
        count = _check_count(
            num_devices, available, "JAX",
            "On a CPU-only machine, simulate devices with "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N (set before "
            "JAX is imported).",
        )
        devices = available[:count]
    return keras.distribution.DataParallel(devices=list(devices))


# One strategy per device set: two MirroredStrategy objects over the same
# devices in one process can mix up their collective-op instances.
_STRATEGIES = {}


def mirrored_strategy(num_devices=None, devices=None):
    """A `tf.distribute.MirroredStrategy` over the first `num_devices` devices.

    GPUs are used when there are any, else the logical CPU devices (split
    the CPU with `tf.config.set_logical_device_configuration` to try it
    without accelerators). The same strategy object is returned for the
    same devices.

    Args:
        num_devices: int or None (all GPUs, or all logical CPUs).
        devices: optional explicit list of device names
            (e.g. `["/gpu:0", "/gpu:1"]`); overrides `num_devices`.

    Returns:
        A `tf.distribute.MirroredStrategy`. Build and compile the model in
        its `scope()`.

    Example:

    Two devices (TensorFlow; not run in the doctests, which see one device):

    >>> strategy = keras_gcm.distribute.mirrored_strategy(2)  # doctest: +SKIP
    >>> with strategy.scope():  # doctest: +SKIP
    ...     model = keras_gcm.ConsistencyModel.from_preset("gcm_cu", network)
    ...     model.compile(optimizer=keras_gcm.optimizers.RAdam(1e-3))
    >>> model.fit(data, batch_size=512)  # doctest: +SKIP
    """
    _require("tensorflow", "mirrored_strategy")
    import tensorflow as tf

    if devices is None:
        pool = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        available = [d.name for d in pool]
        count = _check_count(
            num_devices, available, "TensorFlow",
            "On a CPU-only machine, split the CPU into logical devices with "
            "tf.config.set_logical_device_configuration before TensorFlow "
            "initialises.",
        )
        devices = available[:count]
    key = tuple(devices)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = tf.distribute.MirroredStrategy(list(devices))
    return _STRATEGIES[key]


def distribution_scope(num_devices=None):
    """A context manager that trains on `num_devices` devices with the
    current backend's engine.

    JAX: the scope of `data_parallel(num_devices)`; TensorFlow: the scope of
    `mirrored_strategy(num_devices)`; with `num_devices=1` a scope that does
    nothing (plain single-device training). PyTorch supports one device only.
    Build, compile **and fit** inside the scope (JAX distributes the data in
    `fit` only while its distribution is set).

    Args:
        num_devices: int or None (all visible devices).

    Returns:
        A context manager.

    Raises:
        ValueError: with PyTorch and more than one device, or when fewer
            devices are visible than asked for.

    Example:

    Two devices (not run in the doctests, which see one device):

    >>> with keras_gcm.distribute.distribution_scope(2):  # doctest: +SKIP
    ...     model = keras_gcm.ConsistencyModel.from_preset("gcm_vu", network)
    ...     model.compile(optimizer=keras_gcm.optimizers.RAdam(1e-3))
    ...     model.fit(data, batch_size=512)
    """
    if num_devices is not None and int(num_devices) == 1:
        return contextlib.nullcontext()
    backend = _backend()
    if backend == "jax":
        return data_parallel(num_devices).scope()
    if backend == "tensorflow":
        return mirrored_strategy(num_devices).scope()
    raise ValueError(
        f"Training on several devices is not supported with the {backend} "
        "backend in one process: start one process per device (torchrun, "
        "keras_gcm.distribute.initialize), or use jax "
        "(keras.distribution.DataParallel) or tensorflow "
        "(tf.distribute.MirroredStrategy) for several devices in one process."
    )


def check_replica_batches(x, batch_size, multiple, reason):
    """Checks that every batch of an array epoch is a multiple of `multiple`.

    Used by the train steps before `fit` starts, so that a bad split fails
    at once rather than at the last (partial) batch of the first epoch.

    Args:
        x: the training data given to `fit` (only arrays are checked).
        batch_size: `fit`'s batch size (None: Keras' default 32).
        multiple: int, the number every batch size must be a multiple of.
        reason: str, why (ends the error message).

    Raises:
        ValueError: naming the batch sizes that do not divide.

    Example:

    >>> import numpy as np
    >>> keras_gcm.distribute.check_replica_batches(np.zeros((64, 2)), 16, 8, "MMD groups of 8")
    >>> keras_gcm.distribute.check_replica_batches(np.zeros((60, 2)), 16, 8, "MMD groups of 8")
    Traceback (most recent call last):
    ...
    ValueError: Every batch size must be a multiple of 8: ...
    """
    if x is None or isinstance(x, (dict, list, tuple)) or hasattr(x, "element_spec"):
        return
    if callable(getattr(x, "__next__", None)) or not hasattr(x, "shape"):
        return
    num_examples = int(np.shape(x)[0])
    batch = int(batch_size or 32)
    last = num_examples % batch
    bad = [size for size in {batch, last or batch} if size % multiple]
    if bad:
        raise ValueError(
            f"Every batch size must be a multiple of {multiple}: {reason}. "
            f"batch_size={batch} and {num_examples} examples give batches of "
            f"{batch} and {last or batch}. Use a batch size and a number of "
            f"examples that are multiples of {multiple} (or a tf.data "
            f"pipeline with drop_remainder=True)."
        )


# ---------------------------------------------------------------------------
# Several processes (hosts): one launch, each backend's own engine
# ---------------------------------------------------------------------------

#: Seconds a process waits for the others (joining, and each collective).
DEFAULT_TIMEOUT = 300

# (process_id, num_processes, coordinator) once `initialize` has run.
_PROCESS = None


def _engine_error(backend, what):
    return RuntimeError(
        f"Training on several processes with the {backend} backend needs "
        f"{what}, which is not available in this installation. Install a build "
        "that has it, or train on one process (--num-processes 1)."
    )


def _parse_coordinator(coordinator):
    """`"host:port"` -> `(host, port)`, with a clear error for anything else."""
    text = str(coordinator or "")
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"`coordinator` must be 'host:port' (the address of process 0, e.g. "
            f"'127.0.0.1:12355' or 'node001:12355'). Received: {coordinator!r}"
        )
    return host, int(port)


def launch_settings(num_processes=None, process_id=None, coordinator=None):
    """`(num_processes, process_id, coordinator)` of this process.

    Each argument left None is read from the environment: `torchrun`'s
    `WORLD_SIZE`, `RANK`, `MASTER_ADDR` / `MASTER_PORT`, else Keras'
    `KERAS_DISTRIBUTION_NUM_PROCESSES`, `KERAS_DISTRIBUTION_PROCESS_ID`,
    `KERAS_DISTRIBUTION_JOB_ADDRESSES` (its first address); with none of
    them, one process.

    Args:
        num_processes: int or None.
        process_id: int in `[0, num_processes)` or None.
        coordinator: `"host:port"` of process 0, or None.

    Returns:
        `(num_processes, process_id, coordinator)`, validated.

    Raises:
        ValueError: a count below 1, a process id out of range, or a missing
            or malformed coordinator address with several processes.

    Example:

    >>> keras_gcm.distribute.launch_settings(2, 1, "127.0.0.1:12355")
    (2, 1, '127.0.0.1:12355')
    >>> keras_gcm.distribute.launch_settings(1)
    (1, 0, None)
    """
    env = os.environ
    if num_processes is None:
        num_processes = env.get("WORLD_SIZE") or env.get("KERAS_DISTRIBUTION_NUM_PROCESSES") or 1
    if process_id is None:
        process_id = env.get("RANK") or env.get("KERAS_DISTRIBUTION_PROCESS_ID") or 0
    if coordinator is None:
        if env.get("MASTER_ADDR") and env.get("MASTER_PORT"):
            coordinator = f"{env['MASTER_ADDR']}:{env['MASTER_PORT']}"
        elif env.get("KERAS_DISTRIBUTION_JOB_ADDRESSES"):
            coordinator = env["KERAS_DISTRIBUTION_JOB_ADDRESSES"].split(",")[0]
    try:
        num_processes, process_id = int(num_processes), int(process_id)
    except (TypeError, ValueError):
        raise ValueError(
            f"`num_processes` and `process_id` must be integers. Received: "
            f"{num_processes!r}, {process_id!r}"
        ) from None
    if num_processes < 1:
        raise ValueError(f"`num_processes` must be >= 1. Received: {num_processes}")
    if not 0 <= process_id < num_processes:
        raise ValueError(
            f"`process_id` must be in [0, {num_processes - 1}] for {num_processes} "
            f"processes. Received: {process_id}. Number the processes 0 to "
            f"num_processes - 1 (e.g. SLURM_PROCID)."
        )
    if num_processes == 1:
        return 1, 0, None if coordinator is None else str(coordinator)
    if coordinator is None:
        raise ValueError(
            f"{num_processes} processes need a `coordinator`: the 'host:port' "
            "address of process 0 (--coordinator, or MASTER_ADDR and MASTER_PORT)."
        )
    _parse_coordinator(coordinator)
    return num_processes, process_id, str(coordinator)


def initialize(num_processes=None, process_id=None, coordinator=None,
               timeout=DEFAULT_TIMEOUT):
    """Joins this process to a multi-process (multi-host) training job.

    Call it first in every process, before any model is built (JAX: before
    any JAX computation; TensorFlow: before any TensorFlow operation). Each
    backend uses its own engine:

    * **torch**: `torch.distributed.init_process_group` (gloo on CPU, nccl
      on GPUs, one process per GPU: `LOCAL_RANK` picks the GPU). The train
      step all-reduces the gradients.
    * **jax**: `jax.distributed.initialize` (gloo CPU collectives on CPU);
      then `data_parallel()` spans every process's devices.
    * **tensorflow**: a `tf.distribute.MultiWorkerMirroredStrategy` with a
      `TF_CONFIG` in which worker i listens on its own host at port
      `port + i` (process 0 at the coordinator; the processes first meet
      there, within `timeout`, and learn each other's hosts); returned,
      build and compile in its scope.

    With one process it does nothing. In every case `batch_size` in `fit`
    stays the global batch: give `fit` the same (global) array in every
    process and each trains on its own rows (`process_shard`).

    Args:
        num_processes: int or None (from the environment, see
            `launch_settings`).
        process_id: int or None.
        coordinator: `"host:port"` of process 0, or None.
        timeout: seconds to wait for the other processes to join (and, with
            torch and TensorFlow, for each collective) before failing.

    Returns:
        The `MultiWorkerMirroredStrategy` under TensorFlow with several
        processes; None otherwise.

    Raises:
        ValueError: bad launch settings (see `launch_settings`).
        RuntimeError: the backend lacks its multi-process engine, or the
            other processes did not join within `timeout` seconds.

    Example:

    >>> keras_gcm.distribute.initialize(1)  # one process: nothing to do
    """
    global _PROCESS
    num_processes, process_id, coordinator = launch_settings(
        num_processes, process_id, coordinator
    )
    if num_processes == 1:
        return None
    if _PROCESS is not None:
        if _PROCESS != (process_id, num_processes, coordinator):
            raise RuntimeError(
                f"This process already joined a job as process {_PROCESS[0]} of "
                f"{_PROCESS[1]} (coordinator {_PROCESS[2]}); a process joins one job."
            )
        return _STRATEGIES.get("multi_worker")
    timeout = float(timeout)
    backend = _backend()
    joined = (
        f"process {process_id} of {num_processes}: the processes did not all join "
        f"the coordinator {coordinator} within {timeout:g} s. Start every process "
        f"(ids 0 to {num_processes - 1}) with the same num_processes and "
        "coordinator, and check that process 0's host and port are reachable."
    )
    strategy = None
    if backend == "torch":
        _initialize_torch(num_processes, process_id, coordinator, timeout, joined)
    elif backend == "jax":
        _initialize_jax(num_processes, process_id, coordinator, timeout, joined)
    elif backend == "tensorflow":
        strategy = _initialize_tensorflow(num_processes, process_id, coordinator, timeout,
                                          joined)
    else:  # pragma: no cover - keras_gcm.trainers refuses other backends
        raise _engine_error(backend, "a multi-process engine")
    _PROCESS = (process_id, num_processes, coordinator)
    return strategy


def _initialize_torch(num_processes, process_id, coordinator, timeout, joined):
    import datetime

    import torch

    dist = getattr(torch, "distributed", None)
    if dist is None or not dist.is_available():
        raise _engine_error("torch", "torch.distributed")
    engine = "nccl" if torch.cuda.is_available() else "gloo"
    if not getattr(dist, f"is_{engine}_available")():
        raise _engine_error("torch", f"the {engine} backend of torch.distributed")
    if dist.is_initialized():
        return
    if engine == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", process_id)) % torch.cuda.device_count())
    try:
        dist.init_process_group(
            engine, init_method=f"tcp://{coordinator}", world_size=num_processes,
            rank=process_id, timeout=datetime.timedelta(seconds=timeout),
        )
    except Exception as error:  # DistStoreError, RuntimeError (timeouts)
        raise RuntimeError(f"torch.distributed: {joined} ({error})") from error


def _initialize_jax(num_processes, process_id, coordinator, timeout, joined):
    import jax

    try:
        from jax._src import xla_bridge

        started = xla_bridge.backends_are_initialized()
    except Exception:  # pragma: no cover - private API moved
        started = False
    if started:
        raise RuntimeError(
            "keras_gcm.distribute.initialize must run before any JAX computation "
            "(JAX's devices are already set up in this process): call it first, "
            "right after importing keras_gcm."
        )
    platforms = os.environ.get("JAX_PLATFORMS", "") or str(
        getattr(jax.config, "jax_platforms", "") or "")
    if platforms in ("", "cpu") or platforms.startswith("cpu"):
        try:
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        except Exception as error:
            raise _engine_error("jax", "gloo CPU collectives") from error
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator, num_processes=num_processes,
            process_id=process_id, initialization_timeout=int(max(timeout, 1)),
            heartbeat_timeout_seconds=int(max(min(timeout, 100), 3)),
        )
    except Exception as error:
        raise RuntimeError(f"jax.distributed: {joined} ({error})") from error


def _initialize_tensorflow(num_processes, process_id, coordinator, timeout, joined):
    import json

    import tensorflow as tf

    host, port = _parse_coordinator(coordinator)
    # MultiWorkerMirroredStrategy waits for absent workers forever (and then
    # ignores SIGTERM): meet them first, within `timeout`, and learn their hosts.
    workers = _rendezvous(host, port, num_processes, process_id, timeout, joined)
    os.environ["TF_CONFIG"] = json.dumps(
        {"cluster": {"worker": workers}, "task": {"type": "worker", "index": process_id}}
    )
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    _STRATEGIES["multi_worker"] = strategy
    return strategy


def _rendezvous(host, port, num_processes, process_id, timeout, joined):
    """Meets every process (at most `timeout` s); returns the workers' addresses.

    Process 0 listens on `host:port` (its engine binds that port only after
    this returns); the others connect and send their id; once all have
    arrived, process 0 sends each the list of addresses, `host:port` for
    process 0 and `<address it connected from>:port + i` for process i, so
    that every worker listens on its own host. Raises the RuntimeError
    `joined` on a timeout. The other processes close their connections
    first, so that process 0's port is free again for the engine.
    """
    import json
    import socket
    import time

    deadline = time.monotonic() + timeout

    def remaining():
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout
        return left

    def fail(detail):
        return RuntimeError(f"tensorflow: {joined} ({detail})")

    if process_id == 0:
        try:
            server = socket.create_server((host, port))
        except OSError as error:
            raise RuntimeError(
                f"tensorflow: process 0 cannot listen on the coordinator {host}:{port} "
                f"({error}); choose a free port on process 0's host."
            ) from error
        peers = {}
        try:
            with server:
                while len(peers) < num_processes - 1:
                    server.settimeout(remaining())
                    connection, (address, *_) = server.accept()
                    connection.settimeout(remaining())
                    words = connection.recv(64).decode("ascii", "replace").split()
                    if (len(words) != 2 or words[1] != str(num_processes)
                            or not words[0].isdigit()
                            or not 0 < int(words[0]) < num_processes):
                        connection.close()
                        raise fail(f"a process announced {' '.join(words)!r}, expected "
                                   f"'<id> {num_processes}': were all started with the "
                                   "same num_processes and distinct process ids?")
                    if int(words[0]) in peers:
                        connection.close()
                        raise fail(f"two processes were started with id {words[0]}")
                    peers[int(words[0])] = (connection, address)
                workers = [f"{host}:{port}"] + [
                    f"{peers[i][1]}:{port + i}" for i in range(1, num_processes)]
                message = ("go " + json.dumps(workers) + "\n").encode("ascii")
                for connection, _ in peers.values():
                    connection.sendall(message)
                for connection, _ in peers.values():  # they close first
                    connection.settimeout(max(1.0, deadline - time.monotonic()))
                    try:
                        connection.recv(1)
                    except OSError:
                        pass
        except socket.timeout:
            raise fail(f"{len(peers)} of the other {num_processes - 1} arrived") from None
        finally:
            for connection, _ in peers.values():
                connection.close()
        return workers
    while True:
        try:
            connection = socket.create_connection((host, port), timeout=min(remaining(), 5))
            break
        except socket.timeout:
            raise fail("process 0 was not reached") from None
        except OSError:
            if time.monotonic() >= deadline:
                raise fail("process 0 was not reached") from None
            time.sleep(0.2)
    try:
        with connection:
            connection.settimeout(remaining())
            connection.sendall(f"{process_id} {num_processes}".encode("ascii"))
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = connection.recv(65536)
                if not chunk:
                    break
                reply += chunk
    except socket.timeout:
        raise fail("process 0 did not see every process arrive") from None
    except OSError as error:
        raise fail(error) from error
    if not reply.startswith(b"go "):
        raise fail("process 0 closed the connection")
    return json.loads(reply[3:].decode("ascii"))


def peer_failure_error(error):
    """The RuntimeError for a collective that failed because a peer stopped.

    The train steps of torch and TensorFlow raise it when a collective with
    the other processes fails or times out.

    Args:
        error: the engine's error (or its message), quoted at the end.

    Returns:
        A `RuntimeError` that says what happened and what to do.

    Example:

    >>> error = keras_gcm.distribute.peer_failure_error("Connection reset by peer")
    >>> "another process of the job has stopped" in str(error)
    True
    """
    return RuntimeError(
        f"Process {process_index()} of {process_count()}: a collective with the other "
        "processes failed; another process of the job has stopped or cannot be "
        "reached (see its log). Restart every process; with a "
        f"ResumableCheckpoint training resumes at its last step. ({error})"
    )


def process_count():
    """Number of processes in the training job (1 without `initialize`).

    Example:

    >>> keras_gcm.distribute.process_count()
    1
    """
    if _PROCESS is not None:
        return _PROCESS[1]
    backend = _backend()
    if backend == "torch":
        import torch

        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size()
    elif backend == "jax" and "jax" in sys.modules:
        import jax

        if getattr(jax._src.distributed.global_state, "client", None) is not None:
            return jax.process_count()
    return 1


def process_index():
    """This process's id in the training job (0 without `initialize`).

    Example:

    >>> keras_gcm.distribute.process_index()
    0
    """
    if _PROCESS is not None:
        return _PROCESS[0]
    backend = _backend()
    if backend == "torch":
        import torch

        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank()
    elif backend == "jax" and "jax" in sys.modules:
        import jax

        if getattr(jax._src.distributed.global_state, "client", None) is not None:
            return jax.process_index()
    return 0


def is_chief():
    """Whether this process writes the job's files (checkpoints, grids, metrics).

    True for process 0 and for a single process.

    Example:

    >>> keras_gcm.distribute.is_chief()
    True
    """
    return process_index() == 0


def barrier():
    """Waits until every process of the job reaches this point (one process: returns).

    Used after process 0 writes a checkpoint, so that the others never read a
    checkpoint that is not complete yet.

    Example:

    >>> keras_gcm.distribute.barrier()  # one process: returns at once
    """
    if process_count() == 1:
        return
    backend = _backend()
    if backend == "torch":
        import torch

        torch.distributed.barrier()
    elif backend == "jax":
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("keras_gcm.distribute.barrier")
    elif backend == "tensorflow":
        import tensorflow as tf

        strategy = _STRATEGIES.get("multi_worker") or tf.distribute.get_strategy()
        strategy.run(
            lambda: tf.distribute.get_replica_context().all_reduce("sum", tf.ones(()))
        )


def process_shard(x, global_batch_size):
    """This process's rows of an array, batch by batch.

    With P processes and a global batch B, global batch i is
    `x[i B:(i + 1) B]` and process k trains on its k-th block of `B / P`
    rows, so P processes together see exactly the batches of one process
    with batch size B (a final partial batch is split the same way).
    `fit` calls this for array inputs under several processes.

    Args:
        x: an array of shape (N, ...).
        global_batch_size: int, the global batch B (a multiple of P).

    Returns:
        The rows of this process, in order (N / P of them).

    Raises:
        ValueError: when a batch does not split evenly over the processes.

    Example:

    >>> import numpy as np
    >>> keras_gcm.distribute.process_shard(np.arange(8), 4)  # one process
    array([0, 1, 2, 3, 4, 5, 6, 7])
    """
    count = process_count()
    if count == 1:
        return x
    batch = int(global_batch_size)
    check_replica_batches(x, batch, count, f"each of the {count} processes trains "
                          "on an equal share of every global batch")
    index = process_index()
    x = np.asarray(x)
    full = (len(x) // batch) * batch
    head = x[:full].reshape((-1, count, batch // count) + x.shape[1:])[:, index]
    head = head.reshape((-1,) + x.shape[1:])
    tail = x[full:]
    share = len(tail) // count
    return np.concatenate([head, tail[index * share:(index + 1) * share]])


def process_fit_arguments(args, kwargs, multiple, reason):
    """`fit`'s arguments for this process: array data replaced by this
    process's rows (`process_shard`) and `batch_size` by the local batch.

    Used by the train steps under several processes, so that `fit` takes the
    same global arrays and global `batch_size` in every process. Other data
    (tf.data pipelines, generators, `PyDataset`s) are passed unchanged: they
    must already yield this process's share of every global batch.

    Args:
        args, kwargs: `fit`'s positional and keyword arguments.
        multiple: int, what every global batch size must be a multiple of.
        reason: str, why (ends the error message).

    Returns:
        `fit`'s keyword arguments for this process.

    Example:

    >>> import numpy as np
    >>> kwargs = keras_gcm.distribute.process_fit_arguments(
    ...     (np.zeros((16, 2)),), {"batch_size": 8}, 8, "MMD groups of 4")
    >>> kwargs["batch_size"]  # one process: unchanged
    8
    """
    bound = dict(zip(("x", "y", "batch_size"), args))
    bound.update(kwargs)
    x = bound.get("x")
    if (hasattr(x, "shape") and not hasattr(x, "element_spec")
            and not isinstance(x, (dict, list, tuple))):
        batch = int(bound.get("batch_size") or 32)
        check_replica_batches(x, batch, multiple, reason)
        bound["x"] = process_shard(x, batch)
        if bound.get("y") is not None:
            bound["y"] = process_shard(bound["y"], batch)
        bound["batch_size"] = local_batch_size(batch)
    return bound


def local_batch_size(global_batch_size):
    """The batch size of one process: the global batch divided by the processes.

    Example:

    >>> keras_gcm.distribute.local_batch_size(512)  # one process
    512
    """
    count = process_count()
    batch = int(global_batch_size)
    if batch % count:
        raise ValueError(
            f"The global batch size ({batch}) must be a multiple of the number of "
            f"processes ({count}): use a batch size that divides over them."
        )
    return batch // count
