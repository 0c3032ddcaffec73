"""Several processes on one machine (loopback only) train like one process.

Every backend's own multi-process engine (`keras_gcm.distribute.initialize`):
torch.distributed (gloo), jax.distributed (gloo CPU collectives) and
TensorFlow's MultiWorkerMirroredStrategy. Two worker processes (this file
run as ``python -m tests.test_multiprocess ...``) train GCM-CU (MMD M = 4)
and GCM-VU (M = 2) on a global batch; the pytest process trains the same
global batches on one process meanwhile. Loss and every updated variable
must agree to 1e-5. The workers also check that the processes draw
different noise (rows of one global draw), that a run stopped after one
step and resumed from a `ResumableCheckpoint` written by process 0 equals
the uninterrupted run, and that bad batch sizes are refused. Failure cases:
a process that never joins, and one that dies before training, make the
other fail with a clear error within a bounded time, leaving no partial
checkpoint.
"""

import json
import os
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import keras

from keras_gcm import distribute
from tests.test_distribute import _assert_parity, _build, _data, _pack, _state, _train
from tests.test_distribute import _unpack  # noqa: F401

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = 1e-5
# name: (preset, VU?, global batch size, rows = 2 steps).
CASES = {
    "gcm_cu": ("gcm_cu", False, 8, 16),  # M = 4: one group per process
    "gcm_vu": ("gcm_vu", True, 8, 16),  # M = 2: two groups per process
}
JOIN_TIMEOUT = 10  # seconds a worker waits for the other one
WORKER_TIMEOUT = 420  # seconds a worker pair may take in all


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_port_pair():
    """A port p with p + 1 free too (TensorFlow's worker 1 listens on p + 1)."""
    for _ in range(50):
        port = free_port()
        if port < 65535:
            try:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise RuntimeError("no two consecutive free ports on 127.0.0.1")


# ------------------------------------------------------------- the workers
def _worker_train(out, rank):
    """The training checks, on every process of the job."""
    import keras_gcm
    from keras_gcm.trainers import draw_for_replica

    backend = keras.backend.backend()
    build = _builder(backend)
    results = {"devices": np.array(len(keras.distribution.list_devices())
                                   if backend == "jax" else 2)}
    for name, (preset, vu, batch, rows) in CASES.items():
        model = build(preset, vu)
        _pack(results, name, *_train(model, rows, batch))
        # Resume: one step, a checkpoint by process 0, a fresh model, one more.
        directory = os.path.join(os.path.dirname(out), f"ckpt_{name}")
        data = _data(rows)
        first = build(preset, vu)
        first.fit(data[:batch], batch_size=batch, epochs=1, shuffle=False, verbose=0,
                  callbacks=[keras_gcm.callbacks.ResumableCheckpoint(directory, verbose=0)])
        resumed = build(preset, vu)
        resumed.fit(data[batch:], batch_size=batch, epochs=2, shuffle=False, verbose=0,
                    callbacks=[keras_gcm.callbacks.ResumableCheckpoint(directory, verbose=0)])
        results[f"{name}/resumed"] = np.array(
            [float(np.max(np.abs(a.astype(np.float64) - b)))
             for a, b in zip(_state(resumed), _unpack(results, name, "final"))]
        )
        results[f"{name}/files"] = np.array(sorted(os.listdir(directory)))

    # This process's rows of a draw for the global batch of 8 (4 per process).
    if backend == "jax":
        results["noise"] = _jax_noise_rows(keras.random.SeedGenerator(5))
    else:
        results["noise"] = _replica_noise_rows(backend)

    # Bad input. torch / TF: a global batch of 4 gives each process 2 rows, no
    # MMD group of 4. JAX (global MMD groups): 9 rows in batches of 4 leave a
    # last batch of 1 that does not split over the devices.
    preset, rows = ("cu_e", 9) if backend == "jax" else ("gcm_cu", 8)
    model = build(preset, False)
    try:
        model.fit(_data(rows), batch_size=4, epochs=1, shuffle=False, verbose=0)
        results["batch_error"] = np.array("")
    except ValueError as error:
        results["batch_error"] = np.array(str(error))
    np.savez(out, **results)


def _builder(backend):
    """`_build` for this backend's engine (JAX: a global DataParallel; TF: the
    MultiWorkerMirroredStrategy's scope around building)."""
    if backend == "jax":
        keras.distribution.set_distribution(distribute.data_parallel())
    if backend != "tensorflow":
        return _build

    def build(preset, vu):
        with distribute._STRATEGIES["multi_worker"].scope():
            return _build(preset, vu)

    return build


def _replica_noise_rows(backend):
    from keras_gcm.trainers import draw_for_replica

    if backend == "torch":
        generator = keras.random.SeedGenerator(5)
        return keras.ops.convert_to_numpy(draw_for_replica(
            lambda n: keras.random.normal((n, 2), seed=generator), 4))
    import tensorflow as tf

    strategy = distribute._STRATEGIES["multi_worker"]
    with strategy.scope():
        generator = keras.random.SeedGenerator(5)

    @tf.function
    def noise():
        return strategy.run(lambda: draw_for_replica(
            lambda n: keras.random.normal((n, 2), seed=generator), 4))

    return np.concatenate([np.asarray(v) for v in
                           strategy.experimental_local_results(noise())])


def _jax_noise_rows(generator):
    """This process's rows of the train step's noise for a global batch of 8."""
    import jax

    from keras_gcm.trainers import draw_for_replica

    distribution = distribute.data_parallel()
    sharding = distribution.get_data_layout((8, 2)).backend_layout

    def draw(state, x):
        with keras.StatelessScope(state_mapping=[(generator.state, state)]):
            return draw_for_replica(
                lambda n: keras.random.normal((n,) + x.shape[1:], seed=generator),
                x.shape[0],
            )

    local = _data(8).reshape(jax.process_count(), -1, 2)[jax.process_index()]
    x = jax.make_array_from_process_local_data(sharding, local)
    noise = jax.jit(
        lambda state, x: jax.lax.with_sharding_constraint(draw(state, x), sharding)
    )(generator.state.value, x)
    shards = sorted(noise.addressable_shards, key=lambda s: s.index[0].start or 0)
    return np.concatenate([np.asarray(s.data) for s in shards])


def _main(argv):
    scenario, out, num, rank, coordinator = argv
    rank = int(rank)
    try:
        distribute.initialize(int(num), rank, coordinator, timeout=JOIN_TIMEOUT)
    except Exception as error:
        print(f"WORKER-ERROR {type(error).__name__}: {error}", flush=True)
        sys.exit(3)
    if scenario == "train":
        _worker_train(f"{out}.{rank}.npz", rank)
    elif scenario == "die":
        if rank == 1:
            os._exit(1)  # dies before training; process 0 must not hang
        import keras_gcm

        model = _build("gcm_cu", False)
        try:
            model.fit(_data(64), batch_size=8, epochs=4, shuffle=False, verbose=0,
                      callbacks=[keras_gcm.callbacks.ResumableCheckpoint(out, verbose=0)])
        except Exception as error:
            print(f"WORKER-ERROR {type(error).__name__}: {str(error)[:500]}", flush=True)
            sys.exit(4)


# ---------------------------------------------------------------- launching
def _env(backend, devices=1):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=ROOT, JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
    for key in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT", "TF_CONFIG"):
        env.pop(key, None)
    flags = env.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    if devices > 1:
        flags += f" --xla_force_host_platform_device_count={devices}"
    env["XLA_FLAGS"] = flags.strip()
    return env


def _launch(scenario, out, backend, ranks=(0, 1), num=2, devices=1):
    coordinator = f"127.0.0.1:{_free_port_pair()}"
    return [
        subprocess.Popen(
            [sys.executable, "-m", "tests.test_multiprocess", scenario, str(out),
             str(num), str(rank), coordinator],
            cwd=ROOT, env=_env(backend, devices), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )
        for rank in ranks
    ]


def _kill(process):
    """Kills the process and, when it leads a session of its own (a `bash -c`
    launch), every process it started."""
    try:
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, 9)
            return
    except OSError:
        pass
    process.kill()


def _wait(processes, timeout=WORKER_TIMEOUT):
    """(return codes, logs, seconds) of the processes; kills them at the timeout
    (a killed process's log ends with a TIMEOUT line)."""
    start, logs = time.time(), []
    for process in processes:
        remaining = max(1.0, timeout - (time.time() - start))
        try:
            logs.append(process.communicate(timeout=remaining)[0])
        except subprocess.TimeoutExpired:
            _kill(process)
            logs.append((process.communicate()[0] or "")
                        + f"\nTIMEOUT: killed after {timeout} s")
    return [p.returncode for p in processes], logs, time.time() - start


def _train_runs(tmp_path_factory, devices):
    backend = keras.backend.backend()
    out = tmp_path_factory.mktemp(f"multiprocess_{backend}_{devices}") / "results"
    processes = _launch("train", out, backend, devices=devices)
    try:
        reference = {}
        for name, (preset, vu, batch, rows) in CASES.items():
            _pack(reference, name, *_train(_build(preset, vu), rows, batch))
        codes, logs, _ = _wait(processes)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for code, log in zip(codes, logs):
        assert code == 0, f"worker failed:\n{log[-6000:]}"
    results = []
    for rank in range(2):
        with np.load(f"{out}.{rank}.npz") as archive:
            results.append(dict(archive))
    return reference, results


# 2 processes x 1 device each (every backend); JAX also 2 processes x 2 devices.
LAYOUTS = [pytest.param(1, id="2x1")] + (
    [pytest.param(2, id="2x2")] if keras.backend.backend() == "jax" else [])


@pytest.fixture(scope="module", params=LAYOUTS)
def train_runs(request, tmp_path_factory):
    return _train_runs(tmp_path_factory, request.param)


MULTI = pytest.mark.backends("torch", "jax")
# The training checks run on all three engines.
EVERY = pytest.mark.backends("torch", "jax", "tensorflow")


@EVERY
@pytest.mark.parametrize("name", list(CASES))
def test_two_processes_step_equals_one_process(train_runs, name):
    reference, results = train_runs
    for rank in range(2):
        _assert_parity(reference, results[rank], name)


@EVERY
@pytest.mark.parametrize("name", list(CASES))
def test_resumed_two_process_run_equals_the_uninterrupted_one(train_runs, name):
    _, results = train_runs
    for rank in range(2):
        assert np.max(results[rank][f"{name}/resumed"]) <= 1e-6
    # Process 0 wrote the checkpoints (complete: no temporary files left).
    assert list(results[0][f"{name}/files"]) == [
        "checkpoint.json", "ckpt-000000001.npz", "ckpt-000000002.npz"]


@EVERY
def test_processes_draw_different_rows_of_one_global_draw(train_runs):
    _, results = train_runs
    rows = [results[rank]["noise"] for rank in range(2)]
    assert rows[0].shape == (4, 2)
    assert np.min(np.abs(rows[0] - rows[1])) > 1e-6
    single = keras.ops.convert_to_numpy(
        keras.random.normal((8, 2), seed=keras.random.SeedGenerator(5)))
    np.testing.assert_array_equal(np.concatenate(rows), single)


@EVERY
def test_batches_that_do_not_split_over_the_processes_are_refused(train_runs):
    _, results = train_runs
    devices = int(results[0]["devices"])
    expected = f"multiple of {devices}" if keras.backend.backend() == "jax" else "multiple of 8"
    for rank in range(2):
        message = str(results[rank]["batch_error"])
        assert expected in message and "processes" in message, message


# JAX's coordination service ends a process whose peer never joined or died
# itself (SIGABRT) with this message, before Python sees an exception.
JAX_ABORT = "JAX distributed service detected fatal errors"


def _failed_clearly(code, log, python_code, message):
    """The process failed with our error (exit `python_code`, `message` in its
    log) or, under JAX, was ended by JAX's coordination service."""
    if keras.backend.backend() == "jax" and code == -6:
        return JAX_ABORT in log
    return code == python_code and message in log


@EVERY
def test_a_process_that_never_joins_fails_the_other_in_bounded_time(tmp_path):
    backend = keras.backend.backend()
    (process,) = _launch("train", tmp_path / "alone", backend, ranks=(0,))
    codes, logs, seconds = _wait([process], timeout=JOIN_TIMEOUT + 90)
    assert "TIMEOUT" not in logs[0], logs[0][-3000:]
    assert _failed_clearly(codes[0], logs[0], 3, "did not all join"), logs[0][-3000:]


@EVERY
def test_a_process_that_dies_fails_the_other_without_a_partial_checkpoint(tmp_path):
    backend = keras.backend.backend()
    directory = tmp_path / "ckpt"
    processes = _launch("die", directory, backend)
    codes, logs, _ = _wait(processes, timeout=WORKER_TIMEOUT)
    assert codes[1] == 1
    assert "TIMEOUT" not in logs[0], logs[0][-3000:]
    assert _failed_clearly(codes[0], logs[0], 4, "another process of the job has stopped"), \
        logs[0][-3000:]
    leftovers = sorted(os.listdir(directory)) if directory.exists() else []
    assert not [f for f in leftovers if f.endswith(".tmp") or ".tmp." in f], leftovers


# ------------------------------------------- the documented launches, as written
def _documented_launch(backend):
    with open(os.path.join(ROOT, "docs", "distributed.md")) as f:
        text = f.read()
    match = re.search(rf"<!-- launch:{backend} -->\n```bash\n(.*?)```", text, re.S)
    assert match, f"docs/distributed.md has no launch block for {backend}"
    return match.group(1)


@EVERY
def test_the_documented_launch_runs_as_written(tmp_path):
    """The docs' command lines, with a free port and a tiny configuration.

    Where the docs start process 1 on a line of its own (JAX, TensorFlow), it
    gets an output folder of its own, which must stay empty: process 0 alone
    writes metrics and plots."""
    backend = keras.backend.backend()
    small = ("recipes/toy2d.py --steps 4 --batch-size 16 --eval-samples 64 "
             "--hidden-units 8 --num-blocks 1 --verbose 0 --output {}")
    command = _documented_launch(backend).replace("29500", str(_free_port_pair()))
    lines = []
    for line in command.splitlines():
        out = tmp_path / ("rank1" if "--process-id 1" in line else "rank0")
        lines.append(line.replace("recipes/toy2d.py", small.format(out)))
    process = subprocess.Popen(["bash", "-c", "\n".join(lines)], cwd=ROOT, env=_env(backend),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    codes, logs, _ = _wait([process], timeout=WORKER_TIMEOUT)
    assert codes == [0], logs[0][-4000:]
    with open(tmp_path / "rank0" / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["processes"] == 2 and metrics["backend"] == backend
    assert np.isfinite(metrics["final_loss"])
    if backend != "torch":  # torchrun starts both from one line
        written = sorted(os.listdir(tmp_path / "rank1")) if (tmp_path / "rank1").exists() else []
        assert written == [], written


# ------------------------------------------------------- every backend, no launch
def test_launch_settings_refuse_bad_input(monkeypatch):
    for key in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    assert distribute.launch_settings() == (1, 0, None)
    with pytest.raises(ValueError, match=r"`process_id` must be in \[0, 1\]"):
        distribute.launch_settings(2, 2, "127.0.0.1:1234")
    with pytest.raises(ValueError, match="`num_processes` must be >= 1"):
        distribute.launch_settings(0, 0)
    with pytest.raises(ValueError, match="need a `coordinator`"):
        distribute.launch_settings(2, 0)
    with pytest.raises(ValueError, match="'host:port'"):
        distribute.launch_settings(2, 0, "127.0.0.1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    assert distribute.launch_settings() == (4, 3, "127.0.0.1:29500")


def test_one_process_helpers():
    assert distribute.initialize(1) is None
    assert distribute.process_count() == 1 and distribute.is_chief()
    x = np.arange(10)
    np.testing.assert_array_equal(distribute.process_shard(x, 4), x)
    assert distribute.local_batch_size(6) == 6
    distribute.barrier()


@pytest.mark.backends("torch")
def test_torch_without_its_engine_is_refused(monkeypatch):
    import torch

    monkeypatch.setattr(torch.distributed, "is_gloo_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="gloo backend of torch.distributed.*not available"):
        distribute.initialize(2, 0, "127.0.0.1:1")


@pytest.mark.backends("jax")
def test_jax_without_gloo_collectives_is_refused(monkeypatch):
    import jax
    from jax._src import xla_bridge

    def update(name, value):
        if name == "jax_cpu_collectives_implementation":
            raise AttributeError(f"unknown option {name}")
        raise AssertionError(f"unexpected jax.config.update({name!r})")

    # As in a fresh process (this one has run JAX already), on CPU.
    monkeypatch.setattr(xla_bridge, "backends_are_initialized", lambda: False)
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setattr(jax.config, "update", update)
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: pytest.fail(
        "jax.distributed.initialize was called without CPU collectives"))
    with pytest.raises(RuntimeError, match="jax backend needs gloo CPU collectives.*not available"):
        distribute.initialize(2, 0, "127.0.0.1:1")
    assert distribute.process_count() == 1


if __name__ == "__main__":
    _main(sys.argv[1:])
