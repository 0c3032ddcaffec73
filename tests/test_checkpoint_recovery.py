"""Checkpoints survive crashes, and seeds reproduce runs (issue 15, items 3, 9, 10).

* A writer SIGKILLed at random moments (12 tries) leaves a loadable latest
  checkpoint, and the next successful save leaves no temporary file.
* A truncated or corrupt latest checkpoint falls back to the newest intact one.
* Two processes with the same constructor seeds train bitwise-identical
  weights (100 steps, tiny MLP) on each backend.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import keras

from keras_gcm.callbacks import ResumableCheckpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One subprocess; it forks writer children (numpy / file code only) and kills
# each at a random moment of its write loop.
KILL_LOOP = r"""
import json, os, random, signal, sys, time
import numpy as np
from keras_gcm.callbacks import ResumableCheckpoint

directory, tries = sys.argv[1], int(sys.argv[2])
rng = random.Random(0)

def arrays(step):
    return {"model_000000": np.full((256, 256), step, "float32"),
            "optimizer_000000": np.arange(4096, dtype="float32") + step}

ckpt = ResumableCheckpoint(directory, max_to_keep=2, verbose=0)
ckpt._write(1, arrays(1), {})
report = []
for attempt in range(tries):
    pid = os.fork()
    if pid == 0:  # writer: save continuously until killed
        step = 10 * (attempt + 1)
        while True:
            step += 1
            ckpt._write(step, arrays(step), {})
    time.sleep(rng.uniform(0.0, 0.05))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    found = ResumableCheckpoint.find_latest(directory)
    ok = found is not None and np.all(found[2]["model_000000"] == found[0])
    leftovers_before = sorted(f for f in os.listdir(directory) if ".tmp" in f)
    ckpt._write(1000 + attempt, arrays(1000 + attempt), {})
    leftovers_after = sorted(f for f in os.listdir(directory) if ".tmp" in f)
    report.append({"loadable": bool(ok), "step": None if found is None else found[0],
                   "tmp_before": leftovers_before, "tmp_after": leftovers_after})
print("REPORT" + json.dumps(report))
"""


@pytest.mark.backends("jax")  # file handling only: the same on every backend
def test_killed_writes_leave_a_loadable_checkpoint_and_no_temporary_files(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", KILL_LOOP, str(tmp_path), "12"],
        capture_output=True, text=True, timeout=240, env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.split("REPORT", 1)[1])
    assert len(report) == 12
    for entry in report:
        assert entry["loadable"], entry
        assert entry["tmp_after"] == [], entry
    # At least one kill hit a write in progress (a temporary file was left).
    assert any(entry["tmp_before"] for entry in report)


def _write_steps(directory, steps):
    ckpt = ResumableCheckpoint(directory, max_to_keep=3, verbose=0)
    for step in steps:
        ckpt._write(step, {"model_000000": np.full((8,), step, "float32")}, {})
    return ckpt


def test_a_truncated_or_corrupt_latest_checkpoint_falls_back(tmp_path, capsys):
    _write_steps(tmp_path, [2, 4, 6])
    latest = tmp_path / "ckpt-000000006.npz"
    latest.write_bytes(latest.read_bytes()[:40])  # truncated
    assert ResumableCheckpoint.latest_step(tmp_path) == 4
    assert "truncated, corrupt" in capsys.readouterr().out
    (tmp_path / "checkpoint.json").write_text('{"step": 6, "lat')  # corrupt index
    step, path, arrays = ResumableCheckpoint.find_latest(tmp_path)
    assert step == 4 and np.all(arrays["model_000000"] == 4)


def test_a_non_finite_state_is_never_written(tmp_path, capsys):
    ckpt = _write_steps(tmp_path, [2])
    assert ckpt._write(3, {"model_000000": np.array([1.0, np.nan], "float32")}, {}) is None
    assert "non-finite" in capsys.readouterr().out
    assert ResumableCheckpoint.latest_step(tmp_path) == 2
    assert json.loads((tmp_path / "checkpoint.json").read_text())["step"] == 2


SEEDED_RUN = r"""
import sys
import numpy as np
import keras_gcm
network = keras_gcm.networks.MLP(hidden_units=16, num_blocks=1, embedding_dim=8,
                                 dropout=0.1, seed=3)
model = keras_gcm.ConsistencyModel(network, seed=7)
model.compile(optimizer=keras_gcm.optimizers.RAdam(1e-3))
x = keras_gcm.data.toy2d("two_moons", 800, seed=0)
model.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0)
import keras
assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 100
np.savez(sys.argv[1], *[np.asarray(w) for w in model.get_weights()])
"""


def test_two_processes_with_the_same_seeds_train_identical_weights(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, KERAS_BACKEND=keras.backend.backend(),
               JAX_PLATFORMS="cpu")
    paths = [str(tmp_path / f"run{i}.npz") for i in range(2)]
    runs = [
        subprocess.Popen([sys.executable, "-c", SEEDED_RUN, path], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for path in paths
    ]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-2000:]
    first, second = (np.load(p) for p in paths)
    assert len(first.files) == len(second.files) > 0
    for key in first.files:
        np.testing.assert_array_equal(first[key], second[key])


def test_a_keras_file_carries_the_random_generator_states(tmp_path):
    import keras_gcm

    def fresh():
        network = keras_gcm.networks.MLP(hidden_units=8, num_blocks=1, embedding_dim=8,
                                         dropout=0.1, seed=1)
        model = keras_gcm.ConsistencyModel(network, seed=0)
        model.compile(optimizer=keras_gcm.optimizers.RAdam(1e-3))
        return model

    model = fresh()
    model.fit(keras_gcm.data.toy2d("two_moons", 32, seed=0), batch_size=8, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    for a, b in zip(model._all_seed_generators(), loaded._all_seed_generators()):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a.state.value),
                                      keras.ops.convert_to_numpy(b.state.value))
    x = keras_gcm.data.toy2d("two_moons", 16, seed=1)
    model.fit(x, batch_size=8, shuffle=False, verbose=0)
    loaded.fit(x, batch_size=8, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
