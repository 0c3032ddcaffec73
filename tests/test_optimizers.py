"""Tests for `keras_gcm.optimizers.RAdam` against `torch.optim.RAdam`.

torch is imported under every Keras backend: it is only the reference
implementation here. Gradients for the step-by-step comparison are computed by
torch at the Keras variables' current values, so the comparison isolates the
optimizer; `model.fit` tests exercise the compiled train steps of each backend.
"""

import numpy as np
import pytest
import torch

import keras
from keras import ops

from keras_gcm.optimizers import RAdam
from keras_gcm.optimizers import _sma_length

NUM_STEPS = 30  # rectification starts at step 6 for beta_2 = 0.999


def _two_layer_problem(seed=0):
    """A tiny tanh net on a regression problem: 4 parameter tensors."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(16, 3)).astype("float32")
    y = np.sin(x @ rng.normal(size=(3, 2))).astype("float32")
    params = [
        rng.normal(size=(3, 5)).astype("float32"),
        0.1 * rng.normal(size=(5,)).astype("float32"),
        rng.normal(size=(5, 2)).astype("float32"),
        0.1 * rng.normal(size=(2,)).astype("float32"),
    ]
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(y)

    def loss_fn(w1, b1, w2, b2):
        hidden = torch.tanh(x_t @ w1 + b1)
        return torch.mean((hidden @ w2 + b2 - y_t) ** 2)

    return params, loss_fn


def _torch_trajectory(params, loss_fn, num_steps, param_groups=None, **kwargs):
    tensors = [torch.tensor(p, requires_grad=True) for p in params]
    groups = tensors if param_groups is None else param_groups(tensors)
    opt = torch.optim.RAdam(groups, **kwargs)
    trajectory = []
    for _ in range(num_steps):
        opt.zero_grad()
        loss_fn(*tensors).backward()
        opt.step()
        trajectory.append([t.detach().numpy().copy() for t in tensors])
    return trajectory


def _keras_trajectory(params, loss_fn, num_steps, optimizer, exclude=None):
    variables = [keras.Variable(p, name=f"p{i}") for i, p in enumerate(params)]
    if exclude is not None:
        optimizer.exclude_from_weight_decay(
            var_list=[variables[i] for i in exclude]
        )
    trajectory = []
    for _ in range(num_steps):
        values = [
            torch.tensor(ops.convert_to_numpy(v), requires_grad=True)
            for v in variables
        ]
        loss_fn(*values).backward()
        optimizer.apply([t.grad.numpy() for t in values], variables)
        trajectory.append([ops.convert_to_numpy(v) for v in variables])
    return trajectory


def _assert_trajectories_close(keras_traj, torch_traj, params):
    assert len(keras_traj) == len(torch_traj)
    for step, (k_step, t_step) in enumerate(zip(keras_traj, torch_traj)):
        for k_value, t_value in zip(k_step, t_step):
            np.testing.assert_allclose(
                k_value,
                t_value,
                rtol=1e-5,
                atol=1e-6,
                err_msg=f"step {step + 1}",
            )
    # The parameters actually moved (a trajectory that stays at the
    # initial point would match trivially).
    moved = max(np.max(np.abs(k - p)) for k, p in zip(keras_traj[-1], params))
    assert moved > 0.05


def test_sma_length_matches_float64_formula():
    steps = np.unique(np.round(np.logspace(0, 7, 300)))
    for beta_2 in (0.7, 0.9, 0.99, 0.999, 0.9999):
        expected = (
            2.0 / (1.0 - beta_2) - 1.0
        ) - 2.0 * steps * beta_2**steps / (1.0 - beta_2**steps)
        got = ops.convert_to_numpy(
            _sma_length(
                ops.convert_to_tensor(steps.astype("float32")),
                beta_2,
                "float32",
            )
        )
        np.testing.assert_allclose(got, expected, rtol=2e-6)
    # rho_1 = 1 exactly; beta_2 = 0.999 rectifies from step 6 on.
    rho = ops.convert_to_numpy(
        _sma_length(
            ops.convert_to_tensor(np.arange(1, 8, dtype="float32")),
            0.999,
            "float32",
        )
    )
    np.testing.assert_allclose(rho[0], 1.0, rtol=1e-6)
    np.testing.assert_array_equal(rho > 5.0, [0, 0, 0, 0, 0, 1, 1])


@pytest.mark.parametrize(
    "beta_2, weight_decay, decoupled",
    [
        (0.999, None, False),
        (0.999, 0.05, False),
        (0.999, 0.05, True),
        (0.99, 0.0, False),
    ],
)
def test_trajectory_matches_torch_radam(beta_2, weight_decay, decoupled):
    params, loss_fn = _two_layer_problem()
    lr = 2e-2
    torch_traj = _torch_trajectory(
        params,
        loss_fn,
        NUM_STEPS,
        lr=lr,
        betas=(0.9, beta_2),
        eps=1e-8,
        weight_decay=weight_decay or 0.0,
        decoupled_weight_decay=decoupled,
    )
    optimizer = RAdam(
        learning_rate=lr,
        beta_2=beta_2,
        weight_decay=weight_decay,
        decoupled_weight_decay=decoupled,
    )
    keras_traj = _keras_trajectory(params, loss_fn, NUM_STEPS, optimizer)
    _assert_trajectories_close(keras_traj, torch_traj, params)


def test_weight_decay_kinds_differ_and_matter():
    # Guards against a weight decay that is silently ignored: the three
    # settings give three clearly different end points.
    params, loss_fn = _two_layer_problem()
    ends = []
    for kwargs in (
        {},
        {"weight_decay": 0.5},
        {"weight_decay": 0.5, "decoupled_weight_decay": True},
    ):
        traj = _keras_trajectory(
            params, loss_fn, 20, RAdam(learning_rate=2e-2, **kwargs)
        )
        ends.append(np.concatenate([p.ravel() for p in traj[-1]]))
    assert np.max(np.abs(ends[0] - ends[1])) > 1e-3
    assert np.max(np.abs(ends[0] - ends[2])) > 1e-3
    assert np.max(np.abs(ends[1] - ends[2])) > 1e-3


@pytest.mark.parametrize("decoupled", [False, True])
def test_exclude_from_weight_decay_matches_torch_param_groups(decoupled):
    params, loss_fn = _two_layer_problem(seed=1)
    wd = 0.1

    def groups(tensors):  # biases (1 and 3) without weight decay
        return [
            {"params": [tensors[0], tensors[2]], "weight_decay": wd},
            {"params": [tensors[1], tensors[3]], "weight_decay": 0.0},
        ]

    torch_traj = _torch_trajectory(
        params,
        loss_fn,
        NUM_STEPS,
        param_groups=groups,
        lr=2e-2,
        decoupled_weight_decay=decoupled,
    )
    optimizer = RAdam(
        learning_rate=2e-2, weight_decay=wd, decoupled_weight_decay=decoupled
    )
    keras_traj = _keras_trajectory(
        params, loss_fn, NUM_STEPS, optimizer, exclude=[1, 3]
    )
    _assert_trajectories_close(keras_traj, torch_traj, params)


def _linear_regression_data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 2)) + 0.3).astype("float32")
    kernel = 0.1 * rng.normal(size=(4, 2)).astype("float32")
    bias = np.zeros((2,), "float32")
    return x, y, kernel, bias


@pytest.mark.parametrize(
    "weight_decay, decoupled", [(None, False), (0.1, False), (0.1, True)]
)
def test_compiled_fit_matches_torch_radam(weight_decay, decoupled):
    """`model.fit` (jit / XLA / torch) runs the same trajectory as torch."""
    x, y, kernel, bias = _linear_regression_data()
    epochs, lr = 30, 5e-2
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.set_weights([kernel, bias])
    model.compile(
        optimizer=RAdam(
            learning_rate=lr,
            weight_decay=weight_decay,
            decoupled_weight_decay=decoupled,
        ),
        loss="mse",
        jit_compile=keras.backend.backend() != "torch",
    )
    model.fit(x, y, batch_size=len(x), epochs=epochs, shuffle=False, verbose=0)

    x_t, y_t = torch.from_numpy(x), torch.from_numpy(y)

    def loss_fn(w, b):
        return torch.mean((x_t @ w + b - y_t) ** 2)

    torch_traj = _torch_trajectory(
        [kernel, bias],
        loss_fn,
        epochs,
        lr=lr,
        weight_decay=weight_decay or 0.0,
        decoupled_weight_decay=decoupled,
    )
    for got, expected in zip(model.get_weights(), torch_traj[-1]):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert np.max(np.abs(model.get_weights()[0] - kernel)) > 0.3


def test_fit_reduces_loss_of_small_mlp():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(256, 2)).astype("float32")
    y = (np.sin(2 * x[:, :1]) + 0.5 * x[:, 1:]).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(32, activation="tanh"),
            keras.layers.Dense(1),
        ]
    )
    model.compile(
        optimizer=RAdam(learning_rate=3e-2, weight_decay=1e-4, use_ema=True),
        loss="mse",
    )
    history = model.fit(x, y, batch_size=64, epochs=20, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.2 * losses[0]


def test_get_config_round_trip():
    optimizer = RAdam(
        learning_rate=3e-4,
        beta_1=0.8,
        beta_2=0.99,
        epsilon=1e-6,
        weight_decay=0.01,
        decoupled_weight_decay=True,
        clipnorm=1.0,
        use_ema=True,
        ema_momentum=0.999,
        name="radam_test",
    )
    config = optimizer.get_config()
    assert config["beta_1"] == 0.8
    assert config["beta_2"] == 0.99
    assert config["epsilon"] == 1e-6
    assert config["weight_decay"] == 0.01
    assert config["decoupled_weight_decay"] is True
    assert config["clipnorm"] == 1.0
    restored = RAdam.from_config(config)
    assert isinstance(restored, RAdam)
    assert restored.get_config() == config

    # Through Keras' registry (package "keras_gcm").
    serialized = keras.optimizers.serialize(optimizer)
    deserialized = keras.optimizers.deserialize(serialized)
    assert isinstance(deserialized, RAdam)
    assert deserialized.get_config() == config


def test_get_config_with_learning_rate_schedule():
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, 100, 0.5)
    optimizer = RAdam(learning_rate=schedule)
    restored = RAdam.from_config(optimizer.get_config())
    assert isinstance(
        restored._learning_rate, keras.optimizers.schedules.ExponentialDecay
    )
    assert restored._learning_rate.get_config() == schedule.get_config()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"beta_1": 1.0},
        {"beta_1": -0.1},
        {"beta_2": 1.0},
        {"epsilon": -1e-8},
        {"weight_decay": -0.1},
    ],
)
def test_invalid_arguments_raise(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        RAdam(**kwargs)


def test_small_beta_2_never_rectifies():
    # beta_2 <= 2/3 gives rho_inf <= 5: every step is momentum SGD, as in
    # torch.
    params, loss_fn = _two_layer_problem()
    torch_traj = _torch_trajectory(
        params, loss_fn, 10, lr=1e-2, betas=(0.9, 0.5)
    )
    keras_traj = _keras_trajectory(
        params, loss_fn, 10, RAdam(learning_rate=1e-2, beta_2=0.5)
    )
    for k_step, t_step in zip(keras_traj, torch_traj):
        for k_value, t_value in zip(k_step, t_step):
            np.testing.assert_allclose(k_value, t_value, rtol=1e-5, atol=1e-6)
