"""`ConsistencyModel`: a `keras.Model` that trains a consistency model with `fit`.

All the mathematics of a training step is in `compute_consistency_loss`,
written once in `keras.ops`; the per-backend `train_step`s in
`keras_gcm.trainers` only take its gradient, apply the optimizer and update
the EMA weights inside the compiled step.
"""

import inspect
import warnings

import numpy as np
import keras
from keras import ops

from keras_gcm import callbacks as gcm_callbacks
from keras_gcm import interpolants
from keras_gcm import losses as gcm_losses
from keras_gcm import schedules
from keras_gcm import time_sampling
from keras_gcm import weighting as gcm_weighting
from keras_gcm.trainers import ConsistencyTrainer
from keras_gcm.trainers import draw_for_replica
from keras_gcm.trainers import global_rng_state
from keras_gcm.trainers import jvp as backend_jvp
from keras_gcm.trainers import set_global_rng_state

JVP_MODES = ("finite_difference", "analytic")
# Smallest step epsilon for a finite-difference loss with a bf16/fp16 network
# (the paper uses 0.02 with BF16 on ImageNet, appendix G.2).
LOW_PRECISION_MIN_EPSILON = 0.02


def _expand(t, x):
    return ops.reshape(t, (-1,) + (1,) * (len(x.shape) - 1))


def _per_example(x, value):
    """A (B,) tensor filled with `value`, for a batch `x` of any rank."""
    first = x[(slice(None),) + (0,) * (len(x.shape) - 1)]
    return ops.zeros_like(ops.cast(first, "float32")) + value


def _concrete(x):
    """Numpy value of `x`, or None while tracing (jit / tf.function)."""
    if isinstance(x, keras.KerasTensor):
        return None
    try:
        return np.asarray(ops.convert_to_numpy(x))
    except Exception:  # tracers and graph tensors cannot be read
        return None


def _data_shape_of(x):
    """Batch shape of an array or of the first element of a tf.data pipeline."""
    spec = getattr(x, "element_spec", None)
    if spec is not None:
        while isinstance(spec, (tuple, list)):
            spec = spec[0]
        return tuple(spec.shape) if getattr(spec, "shape", None) is not None else None
    if isinstance(x, (dict, list, tuple)) or x is None:
        return None
    shape = getattr(x, "shape", None)
    return None if shape is None else (None,) + tuple(shape[1:])


def count_time_inputs(network):
    """Number of time inputs (1 for CU, 2 for VU) a network takes.

    Read from the network's `time_inputs` attribute; for a Functional model,
    the number of its inputs minus one; else from the positional arguments of
    its `call` signature.
    """
    value = getattr(network, "time_inputs", None)
    if value is not None:
        return int(value)
    inputs = getattr(network, "inputs", None) if _is_functional(network) else None
    if inputs:
        return len(inputs) - 1
    try:
        params = inspect.signature(network.call).parameters.values()
    except (TypeError, ValueError):
        params = []
    names = [
        p.name for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        and p.name not in ("training", "mask", "class_labels")
    ]
    if len(names) in (2, 3):
        return len(names) - 1
    raise ValueError(
        "Cannot tell how many time inputs the network takes. Give it a "
        "`time_inputs` attribute (1 for CU models, 2 for VU models); its call "
        "must be `call(x, c_t)` or `call(x, c_t, c_s)`."
    )


def _is_functional(network):
    return isinstance(network, keras.Model) and hasattr(network, "_nodes_by_depth")


def _resolve(obj, default, base, what):
    if obj is None:
        return default()
    if isinstance(obj, dict):
        obj = keras.saving.deserialize_keras_object(obj)
    if not isinstance(obj, base):
        raise TypeError(f"`{what}` must be a {base.__name__}. Received: {obj!r}")
    return obj


@keras.saving.register_keras_serializable(package="keras_gcm")
class ConsistencyModel(ConsistencyTrainer, keras.Model):
    """A consistency model trained from scratch with `fit` (GCM playbook).

    Wraps a network `F(x, c_t[, c_s])` into `f = c_out F(c_in x_t, c(t), c(s))`
    and the one-step map `g(x_t, t, s) = x_t + (s - t) f` (Eq. 3). A training
    step draws noise z and times (t, s), forms `x_t`, the teacher time
    `r = max(t - h(t), s)` and `x_r = x_t + (r - t) u_t`, evaluates the
    student at t and the stop-gradient teacher at r **with the same dropout
    mask**, and minimises the consistency loss weighted by `w(t)` (divided by
    the sampling density `p(t | s)` with importance weighting, section 3.3).

    A constant-upper-limit (CU) model has a one-time-input network and a
    `ConstantUpperLimit` sampler; a variable-upper-limit (VU) model has a
    two-time-input network and a `VariableUpperLimit` sampler. Every module
    defaults to the paper's GCM choice (Table 1) for the network's kind; a
    row of Table 2 / 3 is `ConsistencyModel.from_preset(name, network)`.

    An exponential moving average (EMA) of the network's weights is updated
    inside the compiled train step and is what the samplers use by default.

    Args:
        network: a Keras layer/model `F` called as `F(x, c_t)` (CU) or
            `F(x, c_t, c_s)` (VU) returning a tensor of x's shape.
        interpolant: `OTFlow` (default `OTFlow(sigma_data=0.5)`).
        step: a discretisation `h(t)` from `keras_gcm.schedules`
            (default `ExponentialStep(0.005, 3.5)`).
        conditioning: a time conditioning `c(t)` (default `ExponentialTime(3.5)`).
        weighting: a loss weighting `w(t)` (default `GammaWeight(1, 6)`).
        time_sampler: a joint (t, s) sampler (default
            `ConstantUpperLimit(SineTime())` for CU,
            `VariableUpperLimit(UniformPowerTime(4), SineTime())` for VU).
        loss: a `ConsistencyLoss` or `TimeAwareMMD` (default time-aware MMD,
            M = 4, sigma = 0.05 for CU; M = 2, sigma = 0.1 for VU).
        curriculum: optional `EpsilonHalvingCurriculum`.
        importance_weighting: bool, divide `w(t)` by `p(t | s)` (default True).
        ema_decay: float in [0, 1), EMA decay per step (default 0.9999).
        ema_warmup: bool; if True the decay is `min(ema_decay, (1+n)/(10+n))`
            after n updates, so short runs get a useful EMA.
        jvp: "finite_difference" (discrete-time loss, default) or "analytic"
            (continuous-time loss of Eq. 6 through `keras.ops.jvp`).
        seed: int or None, seed of the noise generator.
        **kwargs: standard `keras.Model` arguments.

    Example:

    >>> network = keras_gcm.networks.MLP(hidden_units=(128, 128))
    >>> model = keras_gcm.ConsistencyModel(network)          # GCM-CU
    >>> model.compile(optimizer=keras_gcm.optimizers.RAdam(1e-3))
    >>> model.fit(keras_gcm.data.toy2d("two_moons", 8192, seed=0),
    ...           batch_size=256, epochs=2)
    >>> samples = keras_gcm.samplers.one_step(model, 1000, seed=0)
    """

    def __init__(
        self,
        network,
        interpolant=None,
        step=None,
        conditioning=None,
        weighting=None,
        time_sampler=None,
        loss=None,
        curriculum=None,
        importance_weighting=True,
        ema_decay=0.9999,
        ema_warmup=True,
        jvp="finite_difference",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(network, dict):
            network = keras.saving.deserialize_keras_object(network)
        if not isinstance(network, keras.layers.Layer):
            raise TypeError(f"`network` must be a Keras layer. Received: {network!r}")
        self.network = network
        self.time_inputs = count_time_inputs(network)
        if self.time_inputs not in (1, 2):
            raise ValueError(
                f"The network must take 1 (CU) or 2 (VU) time inputs; it takes "
                f"{self.time_inputs}."
            )
        vu = self.time_inputs == 2
        self.interpolant = _resolve(
            interpolant, interpolants.OTFlow, interpolants.OTFlow, "interpolant"
        )
        self.step = _resolve(
            step, schedules.ExponentialStep, schedules.DiscretizationStep, "step"
        )
        self.conditioning = _resolve(
            conditioning, schedules.ExponentialTime, schedules.TimeConditioning,
            "conditioning",
        )
        self.weighting = _resolve(
            weighting, gcm_weighting.GammaWeight, gcm_weighting.LossWeighting,
            "weighting",
        )
        default_sampler = (
            (lambda: time_sampling.VariableUpperLimit(
                time_sampling.UniformPowerTime(4.0), time_sampling.SineTime()))
            if vu
            else (lambda: time_sampling.ConstantUpperLimit(time_sampling.SineTime()))
        )
        self.time_sampler = _resolve(
            time_sampler, default_sampler, time_sampling.JointTimeSampler,
            "time_sampler",
        )
        default_loss = (
            (lambda: gcm_losses.TimeAwareMMD(2, 0.1)) if vu
            else (lambda: gcm_losses.TimeAwareMMD(4, 0.05))
        )
        self.consistency_loss = _resolve(
            loss, default_loss, gcm_losses.ConsistencyLoss, "loss"
        )
        self.curriculum = None
        if curriculum is not None:
            self.curriculum = _resolve(
                curriculum, None, schedules.EpsilonHalvingCurriculum, "curriculum"
            )
        if self.time_sampler.variable_upper_limit and not vu:
            raise ValueError(
                "A VU time sampler (VariableUpperLimit) needs a network with two "
                "time inputs, `F(x, c_t, c_s)`; this network takes one. Use a "
                "network built with `time_inputs=2`, or a ConstantUpperLimit "
                "sampler."
            )
        if jvp not in JVP_MODES:
            raise ValueError(f"`jvp` must be one of {JVP_MODES}. Received: {jvp!r}")
        if jvp == "analytic" and self.consistency_loss.group_size > 1:
            raise ValueError(
                "jvp='analytic' (the continuous-time loss of Eq. 6) is a particle "
                "loss; it cannot be combined with an MMD loss of group_size > 1."
            )
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"`ema_decay` must be in [0, 1). Received: {ema_decay}")
        self.importance_weighting = bool(importance_weighting)
        self.ema_decay = float(ema_decay)
        self.ema_warmup = bool(ema_warmup)
        self.jvp = jvp
        self.seed = seed
        self.noise_seed_generator = keras.random.SeedGenerator(seed)
        self.h_tracker = keras.metrics.Mean(name="mean_h")
        self._network_seed_generators = None
        self._ema_index = None
        self._inference_functions = {}

    # ------------------------------------------------------------------ build
    @property
    def t0(self):
        return self.time_sampler.t0

    @property
    def tT(self):
        return self.time_sampler.tT

    @property
    def variable_upper_limit(self):
        return self.time_inputs == 2

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 2:
            raise ValueError(
                f"Expected batches of shape (batch, ...data dims); got {input_shape}."
            )
        self.data_shape = tuple(input_shape[1:])
        x = keras.KerasTensor((None,) + self.data_shape)
        c = keras.KerasTensor((None,))
        labels = None
        if getattr(self.network, "label_dim", 0):
            labels = keras.KerasTensor((None,), dtype="int32")
        out = self._call_network(
            x, c, c if self.time_inputs == 2 else None, labels, training=False
        )
        if tuple(out.shape[1:]) != self.data_shape:
            raise ValueError(
                "The network's output shape must equal its input shape (it "
                f"predicts a velocity): input {self.data_shape}, output "
                f"{tuple(out.shape[1:])}."
            )
        self._warn_about_low_precision()
        self.ema_weights = [
            self.add_weight(
                shape=v.shape, dtype=v.dtype, initializer="zeros",
                trainable=False, name=f"ema_{i}",
            )
            for i, v in enumerate(self.network.trainable_variables)
        ]
        self.ema_updates = self.add_weight(
            shape=(), dtype="int32", initializer="zeros", trainable=False,
            name="ema_updates",
        )
        self.built = True

    def _warn_about_low_precision(self):
        """bf16 / fp16 networks and the finite difference (see docs: mixed precision).

        A bfloat16 output has about 3 significant digits, so `f_t - f_r`
        divided by `t - r ~ epsilon` is dominated by rounding when epsilon is
        small: with the paper's CIFAR-10 epsilon of 0.005 a bf16 run diverges
        even on toy data. A larger epsilon (the paper uses 0.02 with BF16 on
        ImageNet) or `jvp="analytic"` (the tangent is computed directly)
        avoids it.
        """
        dtype = keras.backend.standardize_dtype(self.network.compute_dtype)
        if (
            dtype in ("bfloat16", "float16")
            and self.jvp == "finite_difference"
            and self.step.epsilon < LOW_PRECISION_MIN_EPSILON
        ):
            warnings.warn(
                f"The network computes in {dtype} and the loss uses a finite "
                f"difference with epsilon={self.step.epsilon:g}: {dtype} outputs "
                f"carry about {3 if dtype == 'bfloat16' else 4} significant digits, "
                "so (f_t - f_r) / h is dominated by rounding and training can "
                f"diverge. Use epsilon >= {LOW_PRECISION_MIN_EPSILON:g} (e.g. "
                "ExponentialStep(0.02)), jvp='analytic', or a float32 network.",
                stacklevel=3,
            )

    # --------------------------------------------------------- the network
    def _call_network(self, x, c_t, c_s, class_labels, training, values=None):
        args = [x, c_t] + ([c_s] if self.time_inputs == 2 else [])
        kwargs = {"training": training}
        if class_labels is not None:
            kwargs["class_labels"] = class_labels
        call_args = (args,) if _is_functional(self.network) else tuple(args)
        if values is None:
            return self.network(*call_args, **kwargs)
        out, _ = self.network.stateless_call(values[0], values[1], *call_args, **kwargs)
        return out

    def f(self, x_t, t, s, class_labels=None, training=False, values=None):
        """`f(x_t, t, s) = c_out(t) F(c_in(t) x_t, c(t), c(s))` (section 3.1).

        Args:
            x_t: noised batch.
            t, s: per-example times, shape (B,).
            class_labels: optional labels passed to the network.
            training: bool, dropout on or off.
            values: optional `(trainable, non_trainable)` network weight
                values to evaluate with (e.g. the EMA weights).
        """
        x_t = ops.convert_to_tensor(x_t, "float32")
        t = ops.convert_to_tensor(t, "float32")
        s = ops.convert_to_tensor(s, "float32")
        te = _expand(t, x_t)
        x_in = self.interpolant.c_in(te) * x_t
        c_t = self.conditioning.c(t)
        c_s = self.conditioning.c(s) if self.time_inputs == 2 else None
        out = self._call_network(x_in, c_t, c_s, class_labels, training, values)
        return self.interpolant.c_out(te) * ops.cast(out, "float32")

    def g(self, x_t, t, s, class_labels=None, training=False, values=None):
        """The one-step map `g(x_t, t, s) = x_t + (s - t) f(x_t, t, s)` (Eq. 3)."""
        x_t = ops.convert_to_tensor(x_t, "float32")
        t = ops.convert_to_tensor(t, "float32")
        s = ops.convert_to_tensor(s, "float32")
        f = self.f(x_t, t, s, class_labels, training, values)
        return x_t + _expand(s - t, x_t) * f

    def call(self, inputs, training=False):
        """One step from noise: `g(sigma(tT) z, tT, t0)` with the *raw* weights.

        Use `keras_gcm.samplers` for batched sampling with the EMA weights.
        """
        z = ops.cast(inputs, "float32")
        t = _per_example(z, self.tT)
        s = _per_example(z, self.t0)
        x = self.interpolant.sigma(self.tT) * z
        return self.g(x, t, s, training=training)

    # ---------------------------------------------------- dropout replay
    def _dropout_seed_generators(self):
        if self._network_seed_generators is None:
            found = []
            for layer in self.network._flatten_layers(include_self=True):
                found.extend(getattr(layer, "_seed_generators", []))
            # Plain attribute: the generators are already tracked by the network.
            object.__setattr__(self, "_network_seed_generators", found)
        return self._network_seed_generators

    def _rng_snapshot(self):
        states = [ops.copy(sg.state.value) for sg in self._dropout_seed_generators()]
        return states, global_rng_state()

    def _rng_restore(self, snapshot):
        states, global_state = snapshot
        for sg, value in zip(self._dropout_seed_generators(), states):
            sg.state.assign(value)
        if global_state is not None:
            set_global_rng_state(global_state)

    # ------------------------------------------------------------- the loss
    def _check_batch(self, x):
        x_shape = tuple(x.shape)
        if self.built and tuple(x_shape[1:]) != self.data_shape:
            raise ValueError(
                f"Expected batches of shape (batch, {', '.join(map(str, self.data_shape))}); "
                f"got {x_shape}."
            )
        group = self.consistency_loss.group_size
        batch = x_shape[0]
        if group > 1 and batch is not None and batch % group:
            raise ValueError(
                f"The batch size ({batch}) must be divisible by the MMD group size "
                f"({group}): choose a batch size that is a multiple of {group}"
                " (and drop the remainder of a tf.data pipeline)."
            )

    def _check_times(self, t, s):
        t_np, s_np = _concrete(t), _concrete(s)
        eps = 1e-6
        if t_np is not None and (
            np.any(~np.isfinite(t_np)) or t_np.min() < self.t0 - eps or t_np.max() > self.tT + eps
        ):
            raise ValueError(
                f"Times t must lie in [t0, tT] = [{self.t0}, {self.tT}]; got values in "
                f"[{np.nanmin(t_np):.6g}, {np.nanmax(t_np):.6g}]."
            )
        if s_np is not None and (
            np.any(~np.isfinite(s_np)) or s_np.min() < self.t0 - eps or s_np.max() > self.tT + eps
        ):
            raise ValueError(
                f"Upper limits s must lie in [t0, tT] = [{self.t0}, {self.tT}]; got "
                f"values in [{np.nanmin(s_np):.6g}, {np.nanmax(s_np):.6g}]."
            )
        if t_np is not None and s_np is not None and np.any(s_np > t_np + eps):
            raise ValueError("Every upper limit s must satisfy s <= t.")
        if (
            not self.variable_upper_limit and s_np is not None
            and np.any(np.abs(s_np - self.t0) > eps)
        ):
            raise ValueError(f"A CU model has s = t0 = {self.t0}; got other values of s.")

    def _epsilon(self):
        if self.curriculum is None:
            return self.step.epsilon
        step = self.optimizer.iterations if self.optimizer is not None else 0
        return self.curriculum.epsilon(step, self.step.epsilon)

    def compute_consistency_loss(self, x, training=True, z=None, t=None, s=None,
                                 class_labels=None):
        """The consistency loss of one batch, in `keras.ops` (all backends).

        Args:
            x: a batch of data, shape (B, ...data dims).
            training: bool, dropout on (the same mask for student and teacher).
            z: optional noise of x's shape (drawn from the model's seed
                generator if None).
            t: optional times (B,) in [t0, tT] (drawn by the time sampler if
                None).
            s: optional upper limits (B,) with s <= t (t0 if None and t given).
            class_labels: optional labels passed to the network.

        Returns:
            `(loss, aux)`: the scalar loss and a dict with `"mean_h"`, the
            batch mean of `t - r`.
        """
        x = ops.convert_to_tensor(x, "float32")
        if not self.built:
            self.build(x.shape)
        self._check_batch(x)
        batch = x.shape[0] if x.shape[0] is not None else ops.shape(x)[0]
        if z is None:
            # Multi-device: under tf.distribute every replica draws the global
            # batch's noise from the mirrored seed state and keeps its own rows
            # (different noise per replica, equal to one device's draws); on a
            # single device or under JAX sharding this is a plain draw.
            z = draw_for_replica(
                lambda n: keras.random.normal(
                    (n,) + tuple(x.shape[1:]), seed=self.noise_seed_generator
                ),
                batch,
            )
        else:
            z = ops.convert_to_tensor(z, "float32")
            if tuple(z.shape) != tuple(x.shape):
                raise ValueError(f"`z` must have x's shape {x.shape}; got {z.shape}.")
        loss_fn = self.consistency_loss
        if t is None:
            if s is not None:
                raise ValueError("Pass `t` together with `s`.")
            group = loss_fn.group_size if loss_fn.shared_time else 1
            # Same per-replica slicing of the global batch's times as for z.
            t, s = draw_for_replica(
                lambda n: self.time_sampler.sample(n, group_size=group), batch
            )
        else:
            t = ops.convert_to_tensor(t, "float32")
            s = _per_example(x, self.t0) if s is None else ops.convert_to_tensor(s, "float32")
            self._check_times(t, s)

        x_t = self.interpolant.interpolate(x, z, t)
        u_t = self.interpolant.velocity(x, z, t)
        r = ops.maximum(t - self.step.h(t, self._epsilon()), s)
        weight = self.weighting.w(t)
        if self.importance_weighting:
            weight = weight / self.time_sampler.density(t, s)

        snapshot = self._rng_snapshot()
        if self.jvp == "finite_difference":
            x_r = x_t + _expand(r - t, x_t) * u_t
            f_t = self.f(x_t, t, s, class_labels, training)
            self._rng_restore(snapshot)
            f_r = ops.stop_gradient(self.f(x_r, r, s, class_labels, training))
            y_pred, target, scale = loss_fn.terms(x_t, x_r, u_t, f_t, f_r, t, r, s)
        else:
            def f_of(x_in, t_in):
                return self.f(x_in, t_in, s, class_labels, training)

            _, dfdt = backend_jvp(
                f_of, (ops.stop_gradient(x_t), t), (u_t, ops.ones_like(t))
            )
            self._rng_restore(snapshot)
            f_t = self.f(x_t, t, s, class_labels, training)
            y_pred, target, scale = loss_fn.continuous_terms(u_t, f_t, dfdt, t, s)

        loss = loss_fn(
            {"target": target, "t": t, "s": s}, y_pred, sample_weight=weight * scale
        )
        return loss, {"mean_h": ops.mean(t - r)}

    # ------------------------------------------------------------------ EMA
    def _ema_decay(self, updates):
        decay = ops.convert_to_tensor(self.ema_decay, "float32")
        if self.ema_warmup:
            n = ops.cast(updates, "float32")
            decay = ops.minimum(decay, (1.0 + n) / (10.0 + n))
        # The first update copies the weights.
        return ops.where(updates > 0, decay, 0.0)

    def _ema_new_values(self, weights, emas, updates):
        decay = self._ema_decay(updates)
        return [
            ops.cast(decay * e + (1.0 - decay) * ops.cast(w, "float32"), e.dtype)
            for w, e in zip(weights, emas)
        ], updates + 1

    def _ema_update(self):
        """EMA update by assignment (TensorFlow and torch train steps)."""
        new, updates = self._ema_new_values(
            [v.value for v in self.network.trainable_variables],
            [e.value for e in self.ema_weights],
            self.ema_updates.value,
        )
        for e, value in zip(self.ema_weights, new):
            e.assign(value)
        self.ema_updates.assign(updates)

    def _stateless_ema_update(self, trainable, non_trainable):
        """EMA update on variable values (the JAX train step)."""
        if self._ema_index is None:
            tv = {id(v): i for i, v in enumerate(self.trainable_variables)}
            ntv = {id(v): i for i, v in enumerate(self.non_trainable_variables)}
            self._ema_index = (
                [tv[id(v)] for v in self.network.trainable_variables],
                [ntv[id(e)] for e in self.ema_weights],
                ntv[id(self.ema_updates)],
            )
        w_idx, e_idx, n_idx = self._ema_index
        new, updates = self._ema_new_values(
            [trainable[i] for i in w_idx], [non_trainable[i] for i in e_idx],
            non_trainable[n_idx],
        )
        non_trainable = list(non_trainable)
        for i, value in zip(e_idx, new):
            non_trainable[i] = value
        non_trainable[n_idx] = updates
        return non_trainable

    @property
    def ema_initialized(self):
        """Whether the EMA weights hold at least one update."""
        return self.built and int(ops.convert_to_numpy(self.ema_updates.value)) > 0

    def network_values(self, use_ema=True):
        """`(trainable, non_trainable)` weight values of the network.

        With `use_ema=True` the trainable values are the EMA weights (the raw
        weights if the EMA has not been updated yet).
        """
        if use_ema and self.ema_initialized:
            trainable = [e.value for e in self.ema_weights]
        else:
            trainable = [v.value for v in self.network.trainable_variables]
        return trainable, [v.value for v in self.network.non_trainable_variables]

    def copy_ema_to_network(self):
        """Overwrites the network's weights with the EMA weights."""
        if not self.ema_initialized:
            raise ValueError("The EMA has not been updated yet: train first.")
        for v, e in zip(self.network.trainable_variables, self.ema_weights):
            v.assign(e.value)

    # -------------------------------------------------------------- fitting
    def _update_trackers(self, loss, aux):
        self._loss_tracker.update_state(loss)
        self.h_tracker.update_state(aux["mean_h"])
        return self.get_metrics_result()

    def compile(self, optimizer=None, loss=None, **kwargs):
        """Configures the optimizer (default RAdam, lr 1e-4, appendix G.1).

        The loss is a constructor argument of the model, not of `compile`.
        """
        if loss is not None:
            raise ValueError(
                "ConsistencyModel computes its own loss: pass `loss=` to the "
                "constructor (e.g. keras_gcm.losses.TimeAwareMMD), not to compile()."
            )
        if kwargs.get("metrics"):
            raise ValueError("ConsistencyModel reports its own metrics (loss, mean_h).")
        if optimizer is None:
            from keras_gcm.optimizers import RAdam

            optimizer = RAdam(learning_rate=1e-4)
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        """Re-compiles a loaded model with its saved optimizer (used by `load_model`)."""
        config = keras.saving.deserialize_keras_object(config)
        for key in ("loss", "loss_weights", "metrics", "weighted_metrics"):
            if config.get(key) is None:
                config.pop(key, None)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`, plus input checks and a non-finite-loss guard.

        Arrays are checked before training starts (finite values, the data
        shape, batches that divide into MMD groups); training stops with an
        error that names the step if the loss becomes NaN or infinite.
        """
        bound = inspect.signature(keras.Model.fit).bind_partial(self, *args, **kwargs)
        arguments = bound.arguments
        x = arguments.get("x")
        first_batch = None
        if isinstance(x, keras.utils.PyDataset):
            # A PyDataset (e.g. keras_gcm.data.StepIndexedBatches): check
            # its first batch. (Arrays are checked whole below.)
            first_batch = x[0]
            if isinstance(first_batch, (list, tuple)):
                first_batch = first_batch[0]
            first_batch = np.asarray(first_batch)
            self._validate_array(first_batch, None, single_batch=True)
        elif x is not None and not hasattr(x, "element_spec") and not callable(
            getattr(x, "__next__", None)
        ):
            self._validate_array(x, arguments.get("batch_size"))
        if not self.built:
            shape = _data_shape_of(x) if first_batch is None else (
                (None,) + tuple(first_batch.shape[1:]))
            if shape is not None:
                self.build(shape)
        callbacks = list(arguments.get("callbacks") or [])
        if not any(isinstance(c, gcm_callbacks.NonFiniteLossGuard) for c in callbacks):
            callbacks.append(gcm_callbacks.NonFiniteLossGuard())
        arguments["callbacks"] = callbacks
        arguments.pop("self")
        return super().fit(**arguments)

    def _validate_array(self, x, batch_size, single_batch=False):
        if isinstance(x, (dict, list, tuple)):
            return
        arr = np.asarray(x)
        if arr.ndim < 2:
            raise ValueError(
                f"Expected training data of shape (num_examples, ...data dims); got "
                f"an array of shape {arr.shape}."
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError("The training data contain NaN or infinite values.")
        self._validate_network_inputs(arr)
        if self.built and tuple(arr.shape[1:]) != self.data_shape:
            raise ValueError(
                f"The model was built for data of shape {self.data_shape}; got "
                f"{tuple(arr.shape[1:])}."
            )
        group = self.consistency_loss.group_size
        if group > 1 and single_batch:
            if arr.shape[0] % group:
                raise ValueError(
                    f"The batch size ({arr.shape[0]}) must be divisible by the MMD "
                    f"group size ({group}): use a batch size that is a multiple of "
                    f"{group}."
                )
        elif group > 1:
            batch = batch_size or 32
            last = arr.shape[0] % batch
            if batch % group or last % group:
                raise ValueError(
                    f"With an MMD group size of {group}, every batch must divide "
                    f"into groups: batch_size={batch} and {arr.shape[0]} examples "
                    f"give batches of {batch} and {last or batch}. Use a batch "
                    f"size that is a multiple of {group} and a number of examples "
                    f"that is too (or a tf.data pipeline with drop_remainder=True)."
                )

    def _validate_network_inputs(self, arr):
        """Checks array data against what the network declares, before training.

        * `network.input_range = (low, high)`: values must lie in it (up to
          0.1 % of its width), e.g. `(-1, 1)` for image networks;
        * `network.img_resolution` and `network.in_channels` (SongUNet):
          data of shape `(N, img_resolution, img_resolution, in_channels)`.
        """
        resolution = getattr(self.network, "img_resolution", None)
        channels = getattr(self.network, "in_channels", None)
        if resolution is not None and channels is not None:
            expected = (int(resolution), int(resolution), int(channels))
            if tuple(arr.shape[1:]) != expected:
                raise ValueError(
                    f"The network takes channels-last images of shape (N, "
                    f"{expected[0]}, {expected[1]}, {expected[2]}); the training data "
                    f"have shape {arr.shape} (rank {arr.ndim}). Add a channel axis to "
                    "grayscale (N, H, W) arrays with x[..., None]; transpose "
                    "channels-first data with np.transpose(x, (0, 2, 3, 1))."
                )
        input_range = getattr(self.network, "input_range", None)
        if input_range is None or arr.size == 0:
            return
        low, high = (float(v) for v in input_range)
        tolerance = 1e-3 * (high - low)
        found_low, found_high = float(arr.min()), float(arr.max())
        if found_low < low - tolerance or found_high > high + tolerance:
            if found_low >= 0.0 and found_high > 2.0:
                hint = " They look like [0, 255] images: scale them with x / 127.5 - 1."
            elif found_low >= 0.0 and (low, high) == (-1.0, 1.0):
                hint = " They look like [0, 1] images: scale them with x * 2 - 1."
            else:
                hint = ""
            raise ValueError(
                f"The network takes inputs in [{low:g}, {high:g}] (its `input_range`); "
                f"the training data span [{found_low:.6g}, {found_high:.6g}].{hint}"
            )

    # --------------------------------------------------------- serialisation
    def get_config(self):
        ser = keras.saving.serialize_keras_object
        return {
            "name": self.name,
            "trainable": self.trainable,
            "network": ser(self.network),
            "interpolant": ser(self.interpolant),
            "step": ser(self.step),
            "conditioning": ser(self.conditioning),
            "weighting": ser(self.weighting),
            "time_sampler": ser(self.time_sampler),
            "loss": ser(self.consistency_loss),
            "curriculum": ser(self.curriculum) if self.curriculum is not None else None,
            "importance_weighting": self.importance_weighting,
            "ema_decay": self.ema_decay,
            "ema_warmup": self.ema_warmup,
            "jvp": self.jvp,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("network", "interpolant", "step", "conditioning", "weighting",
                    "time_sampler", "loss", "curriculum"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)

    @classmethod
    def from_preset(cls, name, network, **overrides):
        """Builds the model of a named preset (a row of the paper's tables).

        Args:
            name: a preset name from `keras_gcm.presets.list()`.
            network: the network `F`.
            **overrides: constructor arguments that replace the preset's.

        Example:

        >>> model = keras_gcm.ConsistencyModel.from_preset(
        ...     "cu_a_baseline", keras_gcm.networks.MLP())
        """
        from keras_gcm import presets

        return cls(network=network, **{**presets.components(name), **overrides})
