"""Multi-device training equals one device (JAX sharding, tf.distribute).

The 2-device runs need simulated CPU devices, which must exist before the
backend initialises, so they run in a subprocess (this file run as
``python -m tests.test_distribute BACKEND OUT``): JAX with
``--xla_force_host_platform_device_count=2``, TensorFlow with two logical CPU
devices. The 1-device reference runs in the pytest process meanwhile, on the
same code path with the same global batches, the same initial weights and
the same seed states; loss and every updated variable (weights, EMA weights,
EMA counter, seed states, optimizer slots) must agree to 1e-5.

Semantics proved here:

* JAX (`DataParallel`): the loss is exactly the global one; it holds even
  when an MMD group straddles the two devices (global batch 4, M = 4).
* TensorFlow (`MirroredStrategy`): MMD groups stay inside a replica (a
  global batch that does not split into groups per replica is refused); the
  replicas' losses sum to the global loss; every replica draws its own rows
  of the global batch's noise and times, so two replicas given identical data
  get different noise (and different losses); dropout masks differ across
  replicas while the seed states stay equal on all replicas.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import keras

import keras_gcm
from keras_gcm import ConsistencyModel
from keras_gcm import distribute
from keras_gcm.networks import MLP
from tests.models import randomize_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_DEVICES = 2
TOL = 1e-5
# name: (preset, VU?, global batch size, number of rows = 2 steps).
TF_CASES = {
    "gcm_cu": ("gcm_cu", False, 8, 16),  # M = 4: one group per replica
    "gcm_vu": ("gcm_vu", True, 8, 16),  # M = 2: two groups per replica
}
JAX_CASES = {
    # A global batch of 4 with M = 4: the MMD group straddles both devices.
    "gcm_cu_straddle": ("gcm_cu", False, 4, 8),
    "gcm_vu": ("gcm_vu", True, 8, 16),  # M = 2: two groups per device
}


# ----------------------------------------------------------- shared helpers
def _data(rows):
    return (0.5 * np.random.default_rng(7).standard_normal((rows, 2))).astype("float32")


def _build(preset, vu, dropout=0.0):
    """A tiny model with fixed weights and fixed seed states (any process)."""
    keras.utils.set_random_seed(0)
    network = MLP(hidden_units=16, num_blocks=1, embedding_dim=8,
                  time_inputs=2 if vu else 1, dropout=dropout, seed=0)
    model = ConsistencyModel.from_preset(preset, network, seed=0, ema_decay=0.9)
    model.build((None, 2))
    randomize_weights(network, 0)
    seeds = [v for v in model.non_trainable_variables if "seed_generator_state" in v.path]
    assert seeds, "the model must have seed generators"
    for i, state in enumerate(seeds):
        state.assign(np.array([1000 + i, 0], dtype=state.dtype))
    # A large learning rate: RAdam's first steps move the weights by lr * the
    # gradient, so the check below sees gradient differences directly.
    model.compile(optimizer=keras_gcm.optimizers.RAdam(1.0))
    return model


def _state(model):
    variables = (model.trainable_variables + model.non_trainable_variables
                 + model.optimizer.variables)
    return [np.asarray(keras.ops.convert_to_numpy(v.value)) for v in variables]


class _StepLosses(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.running = []

    def on_train_batch_end(self, batch, logs=None):
        self.running.append(float(logs["loss"]))

    def per_step(self):
        # Keras logs the running mean over the epoch.
        means = np.asarray(self.running, dtype=np.float64)
        totals = means * np.arange(1, len(means) + 1)
        return np.diff(np.concatenate([[0.0], totals]))


def _train(model, rows, batch_size):
    """`fit` for two steps; returns (per-step losses, initial state, final state)."""
    initial = _state(model)
    record = _StepLosses()
    model.fit(_data(rows), batch_size=batch_size, epochs=1, shuffle=False,
              verbose=0, callbacks=[record])
    return record.per_step(), initial, _state(model)


def _pack(results, name, losses, initial, final):
    results[f"{name}/losses"] = np.asarray(losses)
    for i, value in enumerate(initial):
        results[f"{name}/initial/{i}"] = value
    for i, value in enumerate(final):
        results[f"{name}/final/{i}"] = value


def _unpack(results, name, part):
    values, i = [], 0
    while f"{name}/{part}/{i}" in results:
        values.append(results[f"{name}/{part}/{i}"])
        i += 1
    return values


# ------------------------------------------------------ subprocess workers
def _worker_jax(out):
    import jax

    from keras_gcm.trainers import draw_for_replica

    assert len(jax.devices()) == NUM_DEVICES, jax.devices()
    results = {}
    distribution = distribute.data_parallel(NUM_DEVICES)
    with distribution.scope():
        for name, (preset, vu, batch, rows) in JAX_CASES.items():
            model = _build(preset, vu)
            _pack(results, name, *_train(model, rows, batch))
            variables = (model.trainable_variables + model.non_trainable_variables
                         + model.optimizer.variables)
            results[f"{name}/replicated"] = np.array(
                all(v.value.sharding.is_fully_replicated for v in variables)
            )

        # The noise of the train step, drawn on a batch sharded over the devices.
        model = _build("gcm_cu", False)
        generator = model.noise_seed_generator
        x = _data(8)
        sharding = distribution.get_data_layout(x.shape).backend_layout

        def draw(state, x):
            with keras.StatelessScope(state_mapping=[(generator.state, state)]):
                return draw_for_replica(
                    lambda n: keras.random.normal((n,) + x.shape[1:], seed=generator),
                    x.shape[0],
                )

        sharded = jax.jit(
            lambda state, x: jax.lax.with_sharding_constraint(draw(state, x), sharding)
        )(generator.state.value, jax.device_put(x, sharding))
        shards = sorted(sharded.addressable_shards, key=lambda s: s.index[0].start or 0)
        results["jax_noise/shards"] = np.stack([np.asarray(s.data) for s in shards])

        # A last batch of 1 cannot be split over 2 devices: refused before training.
        try:
            _build("cu_e", False).fit(_data(9), batch_size=4, verbose=0)
            results["jax_error"] = np.array("")
        except ValueError as error:
            results["jax_error"] = np.array(str(error))
    # The same draw on one device, without any distribution.
    results["jax_noise/single"] = np.asarray(
        jax.jit(draw)(np.asarray(generator.state.value), x)
    )
    np.savez(out, **results)


def _worker_tensorflow(out):
    import tensorflow as tf

    from keras_gcm.trainers import tensorflow as tf_trainer

    strategy = distribute.mirrored_strategy(NUM_DEVICES)
    assert strategy.num_replicas_in_sync == NUM_DEVICES
    results = {}
    for name, (preset, vu, batch, rows) in TF_CASES.items():
        with strategy.scope():
            model = _build(preset, vu)
        _pack(results, name, *_train(model, rows, batch))
        # Every replica's copy of every variable holds the same value.
        spread = 0.0
        for v in (model.trainable_variables + model.non_trainable_variables
                  + model.optimizer.variables):
            copies = [np.asarray(c) for c in strategy.experimental_local_results(v.value)]
            spread = max([spread] + [float(np.max(np.abs(c - copies[0]))) for c in copies])
        results[f"{name}/replica_spread"] = np.array(spread)

    # Identical data on both replicas: the real loss path draws different
    # noise and times per replica, and the replicas' losses sum to the loss
    # of one device on the global batch.
    with strategy.scope():
        model = _build("gcm_cu", False)
    half = _data(4)
    batch = np.concatenate([half, half])
    seeds = [v for v in model.non_trainable_variables if "seed_generator_state" in v.path]
    saved = [v.numpy() for v in seeds]
    dataset = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices(batch).batch(8, drop_remainder=True)
    )

    @tf.function
    def replica_losses(x):
        return strategy.run(lambda xl: model.compute_consistency_loss(xl)[0], args=(x,))

    per_replica = replica_losses(next(iter(dataset)))
    results["tf_identical/replica_losses"] = np.array(
        [float(v) for v in strategy.experimental_local_results(per_replica)]
    )
    for state, value in zip(seeds, saved):
        state.assign(value)
    results["tf_identical/one_device_loss"] = np.array(
        float(model.compute_consistency_loss(batch)[0])  # default strategy: 1 device
    )

    # draw_for_replica: the replicas' noise tiles one device's draw.
    with strategy.scope():
        generator = keras.random.SeedGenerator(5)

    @tf.function
    def replica_noise(x):
        return strategy.run(lambda xl: tf_trainer.draw_for_replica(
            lambda n: keras.random.normal((n, 2), seed=generator), xl.shape[0]), args=(x,))

    noise = strategy.experimental_local_results(replica_noise(next(iter(dataset))))
    results["tf_noise/replicas"] = np.stack([np.asarray(z) for z in noise])
    results["tf_noise/single"] = np.asarray(
        keras.random.normal((8, 2), seed=keras.random.SeedGenerator(5))
    )
    results["tf_noise/states"] = np.stack(
        [np.asarray(s) for s in strategy.experimental_local_results(generator.state.value)]
    )

    # A batch of 3 split 2 + 1 (static shapes (2, 2) and (1, 2) here): the
    # slices still tile the global draw, and the loss correction N b / B
    # makes the replicas' losses sum to the global mean.
    uneven = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices(_data(3)).batch(3)
    )
    with strategy.scope():
        generator = keras.random.SeedGenerator(6)

    @tf.function
    def uneven_step(x):
        def step(xl):
            z = tf_trainer.draw_for_replica(
                lambda n: keras.random.normal((n, 2), seed=generator), xl.shape[0])
            return z, tf_trainer._unequal_share_correction(xl)
        return strategy.run(step, args=(x,))

    noise, shares = uneven_step(next(iter(uneven)))
    results["tf_uneven/noise"] = np.concatenate(
        [np.asarray(z) for z in strategy.experimental_local_results(noise)])
    results["tf_uneven/rows"] = np.array(
        [np.asarray(z).shape[0] for z in strategy.experimental_local_results(noise)])
    results["tf_uneven/shares"] = np.array(
        [float(v) for v in strategy.experimental_local_results(shares)])
    results["tf_uneven/single"] = np.asarray(
        keras.random.normal((3, 2), seed=keras.random.SeedGenerator(6))
    )

    # Dropout: different masks per replica; seed states advance as on one device.
    with strategy.scope():
        dropout = keras.layers.Dropout(0.5, seed=3)
    dropout_generators = dropout._seed_generators

    @tf.function
    def replica_masks(x):
        def step(xl):
            with tf_trainer.replica_dropout_seeds(dropout_generators):
                return dropout(tf.ones((4, 64)), training=True)
        return strategy.run(step, args=(x,))

    masks = strategy.experimental_local_results(replica_masks(next(iter(dataset))))
    results["tf_dropout/masks"] = np.stack([np.asarray(m) for m in masks])
    results["tf_dropout/states"] = np.stack([
        np.asarray(s)
        for s in strategy.experimental_local_results(dropout_generators[0].state.value)
    ])

    # A global batch of 4 gives each replica 2 rows: no MMD group of 4 fits.
    with strategy.scope():
        model = _build("gcm_cu", False)
    messages = []
    for data in ({"x": _data(8), "batch_size": 4},
                 {"x": tf.data.Dataset.from_tensor_slices(_data(8)).batch(
                     4, drop_remainder=True)}):
        try:
            model.fit(**data, epochs=1, shuffle=False, verbose=0)
            messages.append("")
        except ValueError as error:
            messages.append(str(error))
    results["tf_errors"] = np.array(messages)
    np.savez(out, **results)


def _main(argv):
    backend, out = argv
    if backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(NUM_DEVICES)]
        )
        _worker_tensorflow(out)
    else:
        _worker_jax(out)


# ------------------------------------------------------------ the fixtures
def _launch(backend, out):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    if backend == "jax":
        # Optimisation level 0 halves XLA's compile time for these tiny steps.
        env["XLA_FLAGS"] = (
            env.get("XLA_FLAGS", "")
            + f" --xla_force_host_platform_device_count={NUM_DEVICES}"
            + " --xla_backend_optimization_level=0"
        ).strip()
        env["JAX_PLATFORMS"] = "cpu"
    return subprocess.Popen(
        [sys.executable, "-m", "tests.test_distribute", backend, str(out)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _run(backend, tmp_path_factory, cases):
    """Starts the 2-device subprocess, runs the 1-device references meanwhile."""
    out = tmp_path_factory.mktemp(f"distribute_{backend}") / "results.npz"
    process = _launch(backend, out)
    try:
        reference = {}
        for name, (preset, vu, batch, rows) in cases.items():
            _pack(reference, name, *_train(_build(preset, vu), rows, batch))
        log, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, f"2-device worker failed:\n{log[-6000:]}"
    with np.load(out) as results:
        return reference, dict(results)


@pytest.fixture(scope="module")
def jax_runs(tmp_path_factory):
    return _run("jax", tmp_path_factory, JAX_CASES)


@pytest.fixture(scope="module")
def tf_runs(tmp_path_factory):
    return _run("tensorflow", tmp_path_factory, TF_CASES)


def _assert_parity(reference, results, name):
    np.testing.assert_allclose(
        results[f"{name}/losses"], reference[f"{name}/losses"], rtol=0, atol=TOL
    )
    # Same starting point in both processes ...
    for ours, theirs in zip(_unpack(results, name, "initial"),
                            _unpack(reference, name, "initial")):
        np.testing.assert_array_equal(ours, theirs)
    final, expected = _unpack(results, name, "final"), _unpack(reference, name, "final")
    assert len(final) == len(expected) > 0
    # ... the same variables after the steps: weights, EMA weights and counter,
    # seed states, optimizer slots ...
    for i, (ours, theirs) in enumerate(zip(final, expected)):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOL, err_msg=f"variable {i}")
    # ... and the check is not vacuous: the steps moved the weights by far
    # more than the tolerance.
    moved = max(float(np.max(np.abs(a.astype(np.float64) - b)))
                for a, b in zip(expected, _unpack(reference, name, "initial"))
                if a.dtype.kind == "f")
    assert moved > 1e3 * TOL, moved


# -------------------------------------------------------------------- JAX
@pytest.mark.backends("jax")
@pytest.mark.parametrize("name", list(JAX_CASES))
def test_jax_data_parallel_step_equals_one_device(jax_runs, name):
    """2 devices == 1 device to 1e-5: CU (M=4) with a group straddling the
    devices, VU (M=2) with two groups per device: the loss is the global one."""
    reference, results = jax_runs
    _assert_parity(reference, results, name)
    # Weights, EMA, counter, seed states and slots keep a replicated layout.
    assert bool(results[f"{name}/replicated"])


@pytest.mark.backends("jax")
def test_jax_devices_hold_different_rows_of_one_global_draw(jax_runs):
    _, results = jax_runs
    shards, single = results["jax_noise/shards"], results["jax_noise/single"]
    assert shards.shape == (NUM_DEVICES, 4, 2)
    assert np.min(np.abs(shards[0] - shards[1])) > 1e-6
    np.testing.assert_array_equal(np.concatenate(list(shards)), single)


@pytest.mark.backends("jax")
def test_jax_fit_refuses_batches_that_do_not_split_over_the_devices(jax_runs):
    _, results = jax_runs
    message = str(results["jax_error"])
    assert "multiple of 2" in message and "batches of 4 and 1" in message


# ------------------------------------------------------------- TensorFlow
@pytest.mark.backends("tensorflow")
@pytest.mark.parametrize("name", list(TF_CASES))
def test_tf_mirrored_step_equals_one_device(tf_runs, name):
    """2 replicas == 1 device to 1e-5 (CU M=4, VU M=2), copies in sync."""
    reference, results = tf_runs
    _assert_parity(reference, results, name)
    assert float(results[f"{name}/replica_spread"]) == 0.0


@pytest.mark.backends("tensorflow")
def test_tf_replicas_draw_different_noise_on_identical_data(tf_runs):
    _, results = tf_runs
    losses = results["tf_identical/replica_losses"]
    # Same rows on both replicas: equal losses would mean equal draws.
    assert abs(losses[0] - losses[1]) > 1e-4 * abs(losses).max()
    # Each replica's loss is its mean divided by 2: they sum to the global loss.
    np.testing.assert_allclose(
        losses.sum(), float(results["tf_identical/one_device_loss"]), rtol=1e-5
    )


@pytest.mark.backends("tensorflow")
def test_tf_replica_noise_tiles_the_one_device_draw(tf_runs):
    _, results = tf_runs
    replicas, single = results["tf_noise/replicas"], results["tf_noise/single"]
    assert replicas.shape == (NUM_DEVICES, 4, 2)
    assert np.min(np.abs(replicas[0] - replicas[1])) > 1e-6
    np.testing.assert_array_equal(np.concatenate(list(replicas)), single)
    # The mirrored state advanced once, identically on both replicas.
    states = results["tf_noise/states"]
    np.testing.assert_array_equal(states[0], states[1])
    np.testing.assert_array_equal(states[0], [5, 1])


@pytest.mark.backends("tensorflow")
def test_tf_unequal_split_tiles_the_draw_and_reweights_the_loss(tf_runs):
    _, results = tf_runs
    rows = results["tf_uneven/rows"]
    assert sorted(rows.tolist()) == [1, 2]
    np.testing.assert_array_equal(results["tf_uneven/noise"], results["tf_uneven/single"])
    # Replica i's loss (its mean / N) times N b_i / B: the sum is the global mean.
    np.testing.assert_allclose(results["tf_uneven/shares"], 2 * rows / 3, rtol=1e-6)


@pytest.mark.backends("tensorflow")
def test_tf_dropout_masks_differ_and_seed_states_stay_in_sync(tf_runs):
    _, results = tf_runs
    masks = results["tf_dropout/masks"] != 0
    assert masks.shape == (NUM_DEVICES, 4, 64)
    assert 0.3 < masks.mean() < 0.7
    assert np.mean(masks[0] != masks[1]) > 0.3  # independent masks: about 0.5
    states = results["tf_dropout/states"]
    np.testing.assert_array_equal(states[0], states[1])
    np.testing.assert_array_equal(states[0], [3, 1])  # one draw, as on one device


@pytest.mark.backends("tensorflow")
def test_tf_refuses_mmd_groups_across_replicas(tf_runs):
    _, results = tf_runs
    from_arrays, from_dataset = results["tf_errors"]
    assert "multiple of 8" in from_arrays and "replicas" in from_arrays
    assert "2 replicas" in from_dataset and "2 x 4 = 8" in from_dataset


# ------------------------------------------------------- every backend
def test_check_replica_batches():
    x = np.zeros((24, 2), "float32")
    distribute.check_replica_batches(x, 8, 8, "why")  # 3 batches of 8
    with pytest.raises(ValueError, match="multiple of 8.*batches of 8 and 4"):
        distribute.check_replica_batches(x[:20], 8, 8, "why")
    with pytest.raises(ValueError, match="multiple of 4: because"):
        distribute.check_replica_batches(x, 6, 4, "because")
    distribute.check_replica_batches(None, 8, 8, "why")  # nothing to check


def test_distribution_scope_one_device_is_a_no_op():
    with distribute.distribution_scope(1):
        model = _build("gcm_cu", False)
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            assert not tf.distribute.has_strategy()
        elif keras.backend.backend() == "jax":
            assert keras.distribution.distribution() is None
    if keras.backend.backend() == "tensorflow":
        assert model.distribute_strategy.num_replicas_in_sync == 1


def test_engine_helpers_refuse_other_backends():
    backend = keras.backend.backend()
    if backend != "jax":
        with pytest.raises(ValueError, match="needs the jax backend"):
            distribute.data_parallel(2)
    if backend != "tensorflow":
        with pytest.raises(ValueError, match="needs the tensorflow backend"):
            distribute.mirrored_strategy(2)
    if backend == "torch":
        with pytest.raises(ValueError, match="not supported with the torch backend"):
            distribute.distribution_scope(2)
    else:
        # More devices than visible (the pytest process has one CPU device).
        with pytest.raises(ValueError, match="only 1"):
            distribute.distribution_scope(64)


def test_recipe_setup_distribution():
    sys.path.insert(0, os.path.join(ROOT, "recipes"))
    try:
        import argparse

        import _common
    finally:
        sys.path.pop(0)
    parser = argparse.ArgumentParser()
    _common.add_backend_argument(parser)
    _common.add_distribution_arguments(parser)
    args = parser.parse_args([])
    assert args.devices == 1 and not args.simulate_cpu_devices
    with _common.setup_distribution(args):
        pass
    args = parser.parse_args(["--devices", "2"])
    if keras.backend.backend() == "torch":
        with pytest.raises(ValueError, match="not supported with the torch backend"):
            _common.setup_distribution(args)
    else:
        with pytest.raises(ValueError, match="only 1"):
            _common.setup_distribution(args)
    with pytest.raises(ValueError, match=">= 1"):
        _common.setup_distribution(parser.parse_args(["--devices", "0"]))


if __name__ == "__main__":
    _main(sys.argv[1:])
