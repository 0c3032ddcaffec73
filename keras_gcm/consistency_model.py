"""`ConsistencyModel`: a `keras.Model` that trains a consistency model with `fit`.

All the mathematics of a training step is in `compute_consistency_loss`,
written once in `keras.ops`; the per-backend `train_step`s in
`keras_gcm.trainers` only take its gradient, apply the optimizer and update
the EMA weights inside the compiled step.
"""

import contextlib
import inspect
import itertools
import warnings

import numpy as np
import keras
from keras import ops

from keras_gcm import callbacks as gcm_callbacks
from keras_gcm import interpolants
from keras_gcm import losses as gcm_losses
from keras_gcm import nonfinite
from keras_gcm import portable_random
from keras_gcm import schedules
from keras_gcm import time_sampling
from keras_gcm import weighting as gcm_weighting
from keras_gcm.trainers import ConsistencyTrainer
from keras_gcm.trainers import draw_for_replica
from keras_gcm.trainers import export_defaults
from keras_gcm.trainers import global_rng_state
from keras_gcm.trainers import jvp as backend_jvp
from keras_gcm.trainers import set_global_rng_state
from keras_gcm.validation import check_seed
from keras_gcm.validation import check_class_labels
from keras_gcm.validation import network_takes_labels
from keras_gcm.validation import peek_first_batch

JVP_MODES = ("finite_difference", "analytic")
# ||y_pred - target|| per sample, batch mean of the weighted norms: the
# flow-matching loss of the s = t pairs.
_FLOW_MATCHING_LOSS = gcm_losses.ConsistencyLoss(form="eq39", name="flow_matching")
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
        and p.name not in ("training", "mask", "class_labels", "augment_labels")
    ]
    if len(names) in (2, 3):
        return len(names) - 1
    raise ValueError(
        "Cannot tell how many time inputs the network takes. Give it a "
        "`time_inputs` attribute (1 for CU models, 2 for VU models); its call "
        "must be `call(x, c_t)` or `call(x, c_t, c_s)`."
    )


def _check_augment(augment, network):
    """The `augment=` option: an AugmentPipe whose labels the network takes."""
    if augment is None:
        return None
    from keras_gcm.augmentation import AugmentPipe

    if isinstance(augment, dict):
        augment = keras.saving.deserialize_keras_object(augment)
    if not isinstance(augment, AugmentPipe):
        raise TypeError(
            "`augment` must be a keras_gcm.augmentation.AugmentPipe. "
            f"Received: {augment!r}"
        )
    augment_dim = getattr(network, "augment_dim", None)
    if augment_dim != augment.label_dim:
        raise ValueError(
            f"`augment` returns {augment.label_dim} augmentation labels, but the "
            f"network takes augment_dim={augment_dim}: build it with "
            f"`augment_dim={augment.label_dim}` (e.g. "
            f"`SongUNet.ddpmpp(augment_dim={augment.label_dim})`)."
        )
    return augment


def _is_functional(network):
    return isinstance(network, keras.Model) and hasattr(network, "_nodes_by_depth")


class _EvaluationBatchCounter(keras.metrics.Metric):
    """Index of the current `evaluate` batch (reset with the metrics, reports nothing).

    A metric so that Keras resets it at the start of every `evaluate` (and of
    every validation pass) and threads it through the compiled JAX step; its
    `result()` is empty, so it adds no entry to the logs.
    """

    def __init__(self, name="evaluation_batches", **kwargs):
        super().__init__(name=name, **kwargs)
        self.count = self.add_variable(
            shape=(), initializer="zeros", dtype="int32", name="count"
        )

    def update_state(self):
        self.count.assign(self.count.value + 1)

    def result(self):
        return {}


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
    the time sampler's `density(t, s)` with importance weighting, section 3.3).

    A constant-upper-limit (CU) model has a one-time-input network and a
    `ConstantUpperLimit` sampler; a variable-upper-limit (VU) model has a
    two-time-input network and a `VariableUpperLimit` sampler. Every module
    defaults to the paper's GCM choice (Table 1) for the network's kind; a
    row of Table 2 / 3 is `ConsistencyModel.from_preset(name, network)`.

    An exponential moving average (EMA) of the network's weights is updated
    inside the compiled train step. Keras' own loops use the **raw** weights,
    the ones the optimizer trains: `fit`'s `loss`, `evaluate` / `val_loss`
    (unless `evaluate_with_ema=True`) and `predict` / `__call__`. Everything
    that generates samples for use takes the **EMA** weights by default:
    `generate`, `keras_gcm.samplers` and `export`.

    `evaluate` (and `validation_data` / `validation_split` in `fit`) reports
    the consistency loss without dropout on fixed draws: the noise and times
    of the i-th evaluation batch are a function of `evaluation_seed` and i
    only (`keras_gcm.portable_random`, the same numbers on every backend),
    never of the training seed generators, so the same weights and data give
    the same number on every call and every backend, and evaluating does not
    change the training run. It uses the step's own epsilon (a curriculum is
    ignored), so values at different points of training are comparable.

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
        importance_weighting: bool, divide `w(t)` by the time sampler's
            `density(t, s)` (default True; `VariableUpperLimit(
            importance_density=...)` reads it as `p_q(q)` or `p(t | s)`).
        ema_decay: float in [0, 1), EMA decay per step (default 0.9999).
        ema_warmup: bool; if True the decay is `min(ema_decay, (1+n)/(10+n))`
            after n updates, so short runs get a useful EMA.
        jvp: "finite_difference" (discrete-time loss, default) or "analytic"
            (continuous-time loss of Eq. 6 through `keras.ops.jvp`).
        seed: int or None, seed of the noise generator.
        augment: optional `keras_gcm.augmentation.AugmentPipe` (EDM's
            augmentation, the paper's Table 9 configuration). As EDM's loss
            does, each training batch is augmented before it is noised and
            the student and the teacher get its augmentation labels
            (`augment_labels=`; the network needs `augment_dim` equal to the
            pipe's `label_dim`); sampling passes no labels (zero).
        evaluate_with_ema: bool, compute `evaluate`'s loss with the EMA weights
            instead of the raw ones (default False: `val_loss` is then the
            same function of the same weights as the training `loss`, which
            is what `EarlyStopping` and `ReduceLROnPlateau` compare). Neither
            loss measures sample quality: on two moons (800 steps, seeds 0
            and 1, `benchmarks/evaluation_weights.py`) the rank correlation
            of the held-out loss with the EMA samples' 1-step sliced W2 is
            -0.48 (raw) and -0.71 (EMA); use `keras_gcm.callbacks.QualityMetric`
            for quality.
        label_dropout: float in [0, 1), probability that a training label is
            replaced by the "no label" class `label_dim` (classifier-free
            guidance needs the unconditional model this trains). Default 0.
        model_guidance: float omega, MeanFlow's model guidance (training-time
            CFG, default 1 = off): for conditional samples with t in
            `model_guidance_interval` the velocity `u_t` of the loss becomes
            `omega u_t + kappa f(x_t, t, t | y) + (1 - omega - kappa)
            f(x_t, t, t | no label)` (stop-gradient, current weights), so
            that 1-step samples are guided. Needs a VU model, a conditional
            network and `label_dropout > 0`.
        model_guidance_kappa: float kappa of the formula above (default 0).
        model_guidance_interval: `(t_min, t_max)` where model guidance
            applies (default `(0, 1)`: everywhere).
        **kwargs: standard `keras.Model` arguments.

    Example:

    >>> network = keras_gcm.networks.MLP(hidden_units=128, num_blocks=2)
    >>> model = keras_gcm.ConsistencyModel(network)          # GCM-CU
    >>> model.compile(optimizer=keras_gcm.optimizers.RAdam(1e-3))
    >>> history = model.fit(keras_gcm.data.toy2d("two_moons", 8192, seed=0),
    ...                     batch_size=256, epochs=2, verbose=0)
    >>> samples = keras_gcm.samplers.one_step(model, 1000, seed=0)
    >>> samples.shape
    (1000, 2)
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
        augment=None,
        evaluate_with_ema=False,
        label_dropout=0.0,
        model_guidance=1.0,
        model_guidance_kappa=0.0,
        model_guidance_interval=(0.0, 1.0),
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
        seed = check_seed(seed)
        # The default time sampler is owned by the model: seeded from `seed`
        # (with a derived seed, so its draws are independent of the noise's).
        sampler_seed = None if seed is None else int(
            np.random.SeedSequence([seed, 1]).generate_state(1)[0] % (2**31 - 1))
        default_sampler = (
            (lambda: time_sampling.VariableUpperLimit(
                time_sampling.UniformPowerTime(4.0), time_sampling.SineTime(),
                seed=sampler_seed))
            if vu
            else (lambda: time_sampling.ConstantUpperLimit(
                time_sampling.SineTime(), seed=sampler_seed))
        )
        self.time_sampler = _resolve(
            time_sampler, default_sampler, time_sampling.JointTimeSampler,
            "time_sampler",
        )
        if sampler_seed is not None and getattr(self.time_sampler, "seed", 0) is None:
            # An unseeded sampler (e.g. a preset's) is seeded from the model's
            # seed too; its config then carries that seed.
            self.time_sampler.seed = sampler_seed
            generator = self.time_sampler.seed_generator
            generator._initial_seed = sampler_seed
            generator.state.assign(
                np.array([sampler_seed, 0]).astype(generator.state.dtype))
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
        if vu and not self.time_sampler.variable_upper_limit:
            raise ValueError(
                "This network takes two time inputs, `F(x, c_t, c_s)` (a VU "
                "model), but the time sampler is a constant-upper-limit one "
                f"({type(self.time_sampler).__name__}, s = t0 always): s would "
                "never be trained, and two-step / pushforward sampling would "
                "run the network at times it never saw. Use a VU preset or "
                "sampler (keras_gcm.time_sampling.VariableUpperLimit), or a "
                "network with one time input (e.g. MLP(time_inputs=1))."
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
        self.augment = _check_augment(augment, network)
        self.evaluate_with_ema = bool(evaluate_with_ema)
        self.noise_seed_generator = keras.random.SeedGenerator(seed)
        self._init_guidance(label_dropout, model_guidance, model_guidance_kappa,
                            model_guidance_interval)
        self.h_tracker = keras.metrics.Mean(name="mean_h")
        self._evaluation_batches = _EvaluationBatchCounter()
        self._evaluating = False
        self._network_seed_generators = None
        self._ema_index = None
        # The samplers' compiled functions, keyed by tuples: a plain attribute,
        # so that Keras / TensorFlow do not track (or try to export) it.
        object.__setattr__(self, "_inference_functions", {})

    # --------------------------------------------------------------- guidance
    def _init_guidance(self, label_dropout, omega, kappa, interval):
        label_dropout, omega, kappa = float(label_dropout), float(omega), float(kappa)
        interval = tuple(float(v) for v in interval)
        if not 0.0 <= label_dropout < 1.0:
            raise ValueError(
                f"`label_dropout` must be in [0, 1) (e.g. 0.1). Received: {label_dropout}")
        if len(interval) != 2 or interval[0] > interval[1]:
            raise ValueError(
                "`model_guidance_interval` must be (t_min, t_max) with t_min <= t_max. "
                f"Received: {interval}")
        label_dim = int(getattr(self.network, "label_dim", 0) or 0)
        if label_dropout > 0 and not label_dim:
            raise ValueError(
                "`label_dropout` needs a class-conditional network (one with "
                "`label_dim > 0`); this network is unconditional.")
        self.label_dropout = label_dropout
        self.model_guidance = omega
        self.model_guidance_kappa = kappa
        self.model_guidance_interval = interval
        if self.uses_model_guidance:
            if not label_dim:
                raise ValueError(
                    "Model guidance mixes conditional and unconditional velocities: it "
                    "needs a class-conditional network (`label_dim > 0`).")
            if label_dropout <= 0:
                raise ValueError(
                    "Model guidance uses the unconditional model f(x_t, t, t | no label), "
                    "which only label dropout trains: pass `label_dropout` > 0 (e.g. 0.1).")
            if self.time_inputs != 2:
                raise ValueError(
                    "Model guidance evaluates f(x_t, t, t) (s = t): it needs a VU model "
                    "(a network with two time inputs) and a sampler with s = t pairs, "
                    "e.g. keras_gcm.time_sampling.EqualTimeMixture.")
        self.label_seed_generator = (
            keras.random.SeedGenerator(None if self.seed is None else self.seed + 1)
            if label_dropout > 0 else None)

    @property
    def uses_model_guidance(self):
        """Whether training mixes in the unconditional velocity (omega != 1 or kappa != 0)."""
        return self.model_guidance != 1.0 or self.model_guidance_kappa != 0.0

    @property
    def trained_with_label_dropout(self):
        """Whether training drops labels (here or in the network), as CFG needs."""
        return self.label_dropout > 0 or float(getattr(self.network, "label_dropout", 0) or 0) > 0

    def null_labels(self, class_labels):
        """The "no label" version of `class_labels`: the class `label_dim` (int
        labels) or zero rows (one-hot labels)."""
        class_labels = ops.convert_to_tensor(class_labels)
        if len(class_labels.shape) == 2:
            return ops.zeros_like(class_labels)
        return ops.zeros_like(class_labels) + int(self.network.label_dim)

    def _drop_labels(self, class_labels, batch):
        """Label dropout: `(labels, dropped)` with dropped labels set to "no label"."""
        class_labels = ops.convert_to_tensor(class_labels)
        u = draw_for_replica(
            lambda n: keras.random.uniform((n,), seed=self.label_seed_generator), batch)
        dropped = u < self.label_dropout
        mask = dropped if len(class_labels.shape) == 1 else dropped[:, None]
        return ops.where(mask, self.null_labels(class_labels), class_labels), dropped

    def _guided_velocity(self, x_t, t, u_t, class_labels, dropped):
        """MeanFlow's model-guided velocity (training-time CFG), stop-gradient."""
        omega, kappa = self.model_guidance, self.model_guidance_kappa
        f_null = self.f(x_t, t, t, self.null_labels(class_labels), False)
        guided = omega * u_t + (1.0 - omega - kappa) * f_null
        if kappa:
            guided = guided + kappa * self.f(x_t, t, t, class_labels, False)
        low, high = self.model_guidance_interval
        active = ops.logical_and(t >= low, t <= high)
        if dropped is not None:
            active = ops.logical_and(active, ops.logical_not(dropped))
        return ops.where(_expand(active, u_t), ops.stop_gradient(guided), u_t)

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
        # Skipped (non-finite) steps, see keras_gcm.nonfinite.
        for name in nonfinite.COUNTER_NAMES:
            setattr(self, name, self.add_weight(
                shape=(), dtype="int32", initializer="zeros", trainable=False,
                name=name,
            ))
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
    def _call_network(self, x, c_t, c_s, class_labels, training, values=None,
                      augment_labels=None):
        args = [x, c_t] + ([c_s] if self.time_inputs == 2 else [])
        kwargs = {"training": training}
        if class_labels is not None:
            kwargs["class_labels"] = class_labels
        if augment_labels is not None:
            kwargs["augment_labels"] = augment_labels
        call_args = (args,) if _is_functional(self.network) else tuple(args)
        if values is None:
            # `Layer.__call__` passes `training` on only where `call` takes it
            # (and to the sub-layers through the call context).
            return self.network(*call_args, **kwargs)
        if not getattr(self.network, "_call_has_training_arg", True):
            # `stateless_call` calls `call` directly: as Keras does, pass
            # `training` only where the signature takes it.
            kwargs.pop("training")
        out, _ = self.network.stateless_call(values[0], values[1], *call_args, **kwargs)
        return out

    def f(self, x_t, t, s, class_labels=None, training=False, values=None,
          augment_labels=None):
        """`f(x_t, t, s) = c_out(t) F(c_in(t) x_t, c(t), c(s))` (section 3.1).

        Args:
            x_t: noised batch.
            t, s: per-example times, shape (B,).
            class_labels: optional labels passed to the network.
            training: bool, dropout on or off.
            values: optional `(trainable, non_trainable)` network weight
                values to evaluate with (e.g. the EMA weights).
            augment_labels: optional augmentation labels passed to the
                network (training with `augment=`; None at sampling).
        """
        x_t = ops.convert_to_tensor(x_t, "float32")
        t = ops.convert_to_tensor(t, "float32")
        s = ops.convert_to_tensor(s, "float32")
        te = _expand(t, x_t)
        x_in = self.interpolant.c_in(te) * x_t
        c_t = self.conditioning.c(t)
        c_s = self.conditioning.c(s) if self.time_inputs == 2 else None
        out = self._call_network(
            x_in, c_t, c_s, class_labels, training, values, augment_labels
        )
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

        `inputs` are standard normal; they are scaled by the interpolant's
        `noise_std` (its `noise_scale`), as in training.

        This is what `predict` runs. Use `generate` or `keras_gcm.samplers`
        for samples with the EMA weights.
        """
        z = ops.cast(inputs, "float32")
        t = _per_example(z, self.tT)
        s = _per_example(z, self.t0)
        x = self.interpolant.sigma(self.tT) * self.interpolant.noise_std * z
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
                " (and drop the remainder of a tf.data pipeline: "
                ".batch(n, drop_remainder=True))."
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
        if self.curriculum is None or self._evaluating:
            return self.step.epsilon
        step = self.optimizer.iterations if self.optimizer is not None else 0
        return self.curriculum.epsilon(step, self.step.epsilon)

    def compute_consistency_loss(self, x, training=True, z=None, t=None, s=None,
                                 class_labels=None):
        """The consistency loss of one batch, in `keras.ops` (all backends).

        Args:
            x: a batch of data, shape (B, ...data dims).
            training: bool, dropout on (the same mask for student and teacher).
            z: optional noise of x's shape, used as is (if None, drawn
                from the model's seed generator as `noise_std * N(0, I)`,
                see `OTFlow(noise_scale=...)`).
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
        aug = None
        if self.augment is not None and training:
            # EDM's loss: augment the clean batch, condition on its labels.
            x, aug = self.augment(x)
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
            ) * self.interpolant.noise_std
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
        dropped = None
        if class_labels is not None and training and self.label_dropout > 0:
            class_labels, dropped = self._drop_labels(class_labels, batch)
        if class_labels is not None and self.uses_model_guidance:
            u_t = self._guided_velocity(x_t, t, u_t, class_labels, dropped)
        r = ops.maximum(t - self.step.h(t, self._epsilon()), s)
        weight = self.weighting.w(t)
        if self.importance_weighting:
            weight = weight / self.time_sampler.density(t, s)

        snapshot = self._rng_snapshot()
        if self.jvp == "finite_difference":
            x_r = x_t + _expand(r - t, x_t) * u_t
            f_t = self.f(x_t, t, s, class_labels, training, augment_labels=aug)
            self._rng_restore(snapshot)
            f_r = ops.stop_gradient(
                self.f(x_r, r, s, class_labels, training, augment_labels=aug)
            )
            y_pred, target, scale = loss_fn.terms(x_t, x_r, u_t, f_t, f_r, t, r, s)
            flow_matching = None
            if self.variable_upper_limit:
                # s = t pairs (EqualTimeMixture): the s -> t limit of Eq. 39/40,
                # the flow-matching loss ||f(x_t, t, t) - u_t|| (the terms
                # above give these pairs zero weight).
                flow_matching = (f_t, ops.stop_gradient(u_t),
                                 ops.cast(t - s <= 0.0, "float32"))
        else:
            def f_of(x_in, t_in):
                return self.f(x_in, t_in, s, class_labels, training, augment_labels=aug)

            _, dfdt = backend_jvp(
                f_of, (ops.stop_gradient(x_t), t), (u_t, ops.ones_like(t))
            )
            self._rng_restore(snapshot)
            f_t = self.f(x_t, t, s, class_labels, training, augment_labels=aug)
            y_pred, target, scale = loss_fn.continuous_terms(u_t, f_t, dfdt, t, s)
            flow_matching = None  # Eq. 6 at s = t is already ||f_t - u_t||.

        loss = loss_fn(
            {"target": target, "t": t, "s": s, "r": r}, y_pred,
            sample_weight=weight * scale
        )
        if flow_matching is not None:
            f_eq, u_eq, equal = flow_matching
            loss = loss + _FLOW_MATCHING_LOSS(
                {"target": u_eq}, f_eq, sample_weight=weight * equal)
        return loss, {"mean_h": ops.mean(t - r)}

    # Seed of the evaluation draws (`compute_evaluation_loss`): fixed, and
    # independent of `seed`, so models trained with different seeds are
    # evaluated on the same draws.
    evaluation_seed = 0

    def compute_evaluation_loss(self, x, class_labels=None):
        """The loss `evaluate` reports: the consistency loss on fixed draws.

        The noise z and the times (t, s) of the i-th batch of an `evaluate`
        call (or validation pass) are drawn by `keras_gcm.portable_random`
        from `(evaluation_seed, i)`: the same numbers on every backend and in
        every call, and the training seed generators are not touched. The
        times follow the model's time sampler, so the value estimates the
        training objective. No dropout; the step's own epsilon (no
        curriculum); the raw weights, or the EMA weights with
        `evaluate_with_ema=True` (the raw ones before the first EMA update).
        Each call advances the batch index; Keras resets it when an
        evaluation starts.

        Args:
            x: a batch of data, shape (B, ...data dims).
            class_labels: optional labels passed to the network.

        Returns:
            `(loss, aux)` as in `compute_consistency_loss`.
        """
        x = ops.convert_to_tensor(x, "float32")
        if not self.built:
            self.build(x.shape)
        self._check_batch(x)
        batch = x.shape[0] if x.shape[0] is not None else ops.shape(x)[0]
        index = self._evaluation_batches.count.value
        seed = self.evaluation_seed
        z = draw_for_replica(
            lambda n: portable_random.normal(
                (n,) + tuple(x.shape[1:]), seed, index, stream=0
            ),
            batch,
        )
        streams = itertools.count(2)  # the normal uses uniform streams 0 and 1

        def uniforms(shape):
            return portable_random.uniform(shape, seed, index, next(streams))

        loss_fn = self.consistency_loss
        group = loss_fn.group_size if loss_fn.shared_time else 1
        t, s = draw_for_replica(
            lambda n: self.time_sampler.sample(n, seed=uniforms, group_size=group),
            batch,
        )
        scope = self._ema_scope() if self.evaluate_with_ema else contextlib.nullcontext()
        self._evaluating = True
        try:
            with scope:
                loss, aux = self.compute_consistency_loss(
                    x, training=False, z=z, t=t, s=s, class_labels=class_labels
                )
        finally:
            self._evaluating = False
        self._evaluation_batches.update_state()
        return loss, aux

    def _ema_scope(self):
        """A `StatelessScope` in which the network's weights read as the EMA.

        Every model variable keeps its current value (also inside an
        enclosing stateless scope, as in the JAX steps) except the network's
        trainable weights, which read as the EMA weights once the EMA holds
        an update. Variable updates inside the scope are discarded.
        """
        trained = self.ema_updates.value > 0
        ema = {
            id(v): ops.where(trained, e.value, v.value)
            for v, e in zip(self.network.trainable_variables, self.ema_weights)
        }
        mapping = [(v, ema.get(id(v), v.value)) for v in self.variables]
        return keras.StatelessScope(state_mapping=mapping)

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
            v.assign(ops.copy(e.value))  # a copy: JAX steps donate every buffer

    # ----------------------------------------------------------- generation
    def generate(self, num_samples, steps=1, times=None, seed=None, class_labels=None,
                 batch_size=1024, use_ema=True, verbose=0):
        """Samples from the model, with the EMA weights by default.

        The model's counterpart of `keras_gcm.samplers` (as keras-hub's
        `generate`): `steps=1` is `samplers.one_step`, `steps=2` the paper's
        two-step sampler `samplers.two_step`; `times` gives any grid,
        sampled with `samplers.restart` (CU models) or `samplers.pushforward`
        (VU models). The same seed gives the same samples as the sampler
        functions, on every backend and for every `batch_size`.

        Args:
            num_samples: int.
            steps: 1 or 2 (ignored when `times` is given).
            times: optional decreasing times starting at tT: the restart times
                of a CU model, or the pushforward grid (ending at t0) of a VU
                model.
            seed: int or None, numpy seed of the noise.
            class_labels: optional (num_samples,) labels for class-conditional
                networks.
            batch_size: int, samples per compiled call.
            use_ema: bool, the EMA weights (default True; the raw weights
                before the first EMA update).
            verbose: 0 or 1 (a progress bar).

        Returns:
            A numpy array of shape (num_samples, ...data dims).

        Example:

        >>> model = keras_gcm.ConsistencyModel(keras_gcm.networks.MLP(hidden_units=32))
        >>> model.build((None, 2))
        >>> x = model.generate(100, seed=0)            # one step, EMA weights
        >>> x2 = model.generate(100, steps=2, seed=0)  # the paper's two steps
        """
        from keras_gcm import samplers

        kwargs = {"seed": seed, "batch_size": batch_size, "use_ema": use_ema,
                  "class_labels": class_labels, "verbose": verbose}
        if times is not None:
            sampler = samplers.pushforward if self.variable_upper_limit else samplers.restart
            return sampler(self, num_samples, times=times, **kwargs)
        if steps == 1:
            return samplers.one_step(self, num_samples, **kwargs)
        if steps == 2:
            return samplers.two_step(self, num_samples, **kwargs)
        raise ValueError(
            f"`steps` must be 1 or 2 (the paper's samplers); got {steps!r}. For "
            "another grid pass `times`, e.g. times=(0.994, 0.8, 0.6, 0.3) for a "
            "CU model (restart times) or times=(0.994, 0.6, 0.3, 0.006) for a VU "
            "model (pushforward grid ending at t0)."
        )

    def evaluate(self, *args, **kwargs):
        """`keras.Model.evaluate`: the consistency loss on fixed draws.

        See `compute_evaluation_loss` for the draws and the weights. Every
        random state of training is left as it was, including torch's global
        generator, from which the torch data loaders draw their shuffling
        seeds: validating during `fit` does not change the training run.
        An array `y` of integer class labels outside `[0, label_dim)` is a
        `ValueError` (as in `fit`).

        Args:
            *args, **kwargs: as `keras.Model.evaluate`.

        Returns:
            As `keras.Model.evaluate`: `loss` and `mean_h`.

        Example:

        >>> model = keras_gcm.ConsistencyModel(keras_gcm.networks.MLP(hidden_units=32))
        >>> model.compile()
        >>> data = keras_gcm.data.toy2d("two_moons", 512, seed=0)
        >>> logs = model.evaluate(data, batch_size=128, return_dict=True, verbose=0)
        """
        arguments = inspect.signature(keras.Model.evaluate).bind_partial(
            self, *args, **kwargs).arguments
        self._check_label_values(arguments.get("y"), "y")
        state = global_rng_state()
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            if state is not None:
                set_global_rng_state(state)

    def predict(self, x, *args, **kwargs):
        """`keras.Model.predict`: one-step samples of the noise `x`, raw weights.

        As every Keras loop (`fit`, `evaluate`), `predict` runs the model's
        forward pass `call` with the raw weights the optimizer trains:
        `predict(z)` returns `g(sigma(tT) z, tT, t0)` for standard normal
        noise `z` of shape (N, ...data dims). For samples with the EMA
        weights use `generate` or `keras_gcm.samplers`.

        Args:
            x: standard normal noise (an array, a tf.data pipeline, ...).
            *args, **kwargs: as `keras.Model.predict` (`batch_size`, ...).

        Returns:
            A numpy array of x's shape.

        Example:

        >>> model = keras_gcm.ConsistencyModel(keras_gcm.networks.MLP(hidden_units=32))
        >>> model.build((None, 2))
        >>> x = model.predict(keras.random.normal((8, 2)), verbose=0)
        """
        return super().predict(x, *args, **kwargs)

    def export(self, filepath, format=None, verbose=None, input_signature=None,
               use_ema=True, **kwargs):
        """Exports the one-step generator: noise (and labels) to samples.

        The artifact is a `keras_gcm.one_step_generator.OneStepGenerator`
        with a snapshot of the EMA weights (`use_ema=True`, the default, as
        the samplers), exported by `keras.Model.export`: its endpoint maps
        noise `z` of shape (B, ...data dims) (and int32 labels (B,) for a
        class-conditional network) to the one-step samples
        `g(sigma(tT) z, tT, t0)`, for any batch size.

        Args:
            filepath: where to write the artifact (a `.pt2` file for
                `format="torch"`).
            format: a `keras.Model.export` format; default `"tf_saved_model"`
                (JAX and TensorFlow; load it with `tf.saved_model.load(path)`
                and call `.serve(z)`) and `"torch"` under torch (a
                `torch.export` program; `torch.export.load(path).module()(z)`).
            verbose: bool, print a message.
            input_signature: optional, default the generator's
                `input_signature()` (noise, and labels where conditional,
                with a free batch dimension).
            use_ema: bool, export the EMA weights (default True).
            **kwargs: passed to `keras.Model.export`.

        Returns:
            What `keras.Model.export` returns.

        Example:

        >>> model = keras_gcm.ConsistencyModel(keras_gcm.networks.MLP(hidden_units=32))
        >>> model.build((None, 2))
        >>> path = "/tmp/generator" + (".pt2" if keras.backend.backend() == "torch" else "")
        >>> model.export(path, verbose=False)
        """
        from keras_gcm.one_step_generator import OneStepGenerator

        generator = OneStepGenerator(self, use_ema=use_ema)
        if format is None:
            format = "torch" if keras.backend.backend() == "torch" else "tf_saved_model"
        if input_signature is None:
            input_signature = generator.input_signature()
        kwargs = {**export_defaults(format, input_signature), **kwargs}
        return generator.export(filepath, format=format, verbose=verbose,
                                input_signature=input_signature, **kwargs)

    # ------------------------------------------------------ non-finite steps
    def _skip_counters(self):
        return [getattr(self, name) for name in nonfinite.COUNTER_NAMES]

    def _guarded_variables(self):
        """The variables a skipped step restores (TensorFlow and torch steps):
        network weights, optimizer variables, EMA weights and count, and the
        network's floating-point non-trainable state. Seed states advance."""
        floats = [
            v for v in self.network.non_trainable_variables
            if "float" in keras.backend.standardize_dtype(v.dtype)
        ]
        return (
            list(self.trainable_variables) + self._guarded_optimizer_variables()
            + list(self.ema_weights) + [self.ema_updates] + floats
        )

    def _guarded_optimizer_variables(self):
        """The optimizer's variables, less a `LossScaleOptimizer`'s own loss
        scale and counter (it lowers the scale on a non-finite step itself)."""
        inner = getattr(self.optimizer, "inner_optimizer", None)
        if inner is None:
            return list(self.optimizer.variables)
        own = {id(v) for v in inner.variables}
        return [v for v in self.optimizer.variables if id(v) in own]

    def _save_guarded_state(self):
        """Copies of the guarded variables' values, taken before the step."""
        if not self.optimizer.built:  # (else apply would add its variables)
            self.optimizer.build(self.trainable_variables)
        return [ops.copy(v.value) for v in self._guarded_variables()], ops.copy(
            self.optimizer.iterations.value
        )

    def _skip_non_finite(self, loss, grads, saved):
        """Restores the saved state if the step was non-finite (stateful steps).

        Returns the scalar `finite` flag.
        """
        variables = self._guarded_variables()
        old_values, iterations = saved
        finite = nonfinite.step_is_finite(
            loss, list(grads) + [v.value for v in self.trainable_variables]
        )
        all_replicas = getattr(self, "_all_replicas_finite", None)
        if all_replicas is not None:  # tf.distribute: skip on every replica
            finite = all_replicas(finite)
        for v, value in zip(variables, nonfinite.select(
                finite, [v.value for v in variables], old_values)):
            v.assign(value)
        counters = self._skip_counters()
        for v, value in zip(counters, nonfinite.counter_values(
                finite, [c.value for c in counters], iterations)):
            v.assign(value)
        return finite

    def _stateless_skip_non_finite(self, loss, grads, old_state, new_state):
        """The JAX step's version of `_skip_non_finite` on variable values.

        Args:
            old_state, new_state: `(trainable, non_trainable, optimizer_vars)`
                value lists before and after the update.

        Returns:
            `(trainable, non_trainable, optimizer_vars, finite)`.
        """
        old_trainable, old_non_trainable, old_optimizer = old_state
        trainable, non_trainable, optimizer_vars = new_state
        optimizer_vars, non_trainable = list(optimizer_vars), list(non_trainable)
        finite = nonfinite.step_is_finite(loss, list(grads) + list(trainable))
        guarded_optimizer = {id(v) for v in self._guarded_optimizer_variables()}
        optimizer_slots = [
            i for i, v in enumerate(self.optimizer.variables) if id(v) in guarded_optimizer
        ]
        index = {id(v): i for i, v in enumerate(self.non_trainable_variables)}
        guarded = self._guarded_variables()[
            len(self.trainable_variables) + len(guarded_optimizer):
        ]
        state_slots = [index[id(v)] for v in guarded]
        # One conditional over every guarded value: a select per variable
        # made XLA's compile of the step several times slower.
        restored = nonfinite.select_all(
            finite,
            list(trainable) + [optimizer_vars[i] for i in optimizer_slots]
            + [non_trainable[i] for i in state_slots],
            list(old_trainable) + [old_optimizer[i] for i in optimizer_slots]
            + [old_non_trainable[i] for i in state_slots],
        )
        n_trainable, n_optimizer = len(trainable), len(optimizer_slots)
        trainable = restored[:n_trainable]
        for i, value in zip(optimizer_slots, restored[n_trainable:]):
            optimizer_vars[i] = value
        for i, value in zip(state_slots, restored[n_trainable + n_optimizer:]):
            non_trainable[i] = value
        iterations = old_optimizer[
            [id(v) for v in self.optimizer.variables].index(id(self.optimizer.iterations))
        ]
        counter_index = [index[id(c)] for c in self._skip_counters()]
        new = nonfinite.counter_values(
            finite, [old_non_trainable[i] for i in counter_index], iterations
        )
        for i, value in zip(counter_index, new):
            non_trainable[i] = value
        return trainable, non_trainable, optimizer_vars, finite

    def _skip_logs(self, logs, counters):
        """Adds `skipped_steps` and `consecutive_skips` to a train step's logs."""
        # New float tensors, never the state's own buffers: under JAX the
        # state is donated to the next step while callbacks read the logs.
        logs = dict(logs)
        logs["skipped_steps"] = ops.cast(counters[0], "float32")
        logs["consecutive_skips"] = ops.cast(counters[1], "float32")
        return logs

    # -------------------------------------------------------------- fitting
    def _update_trackers(self, loss, aux, finite=None):
        if finite is None:
            self._loss_tracker.update_state(loss)
            self.h_tracker.update_state(aux["mean_h"])
        else:
            # A skipped step does not enter the epoch means.
            weight = ops.cast(finite, "float32")
            self._loss_tracker.update_state(
                ops.where(finite, loss, 0.0), sample_weight=weight)
            self.h_tracker.update_state(
                ops.where(finite, aux["mean_h"], 0.0), sample_weight=weight)
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

        Before any training step, arrays and the first batch of a pipeline
        (tf.data, PyDataset, generator; read without consuming the data) are
        checked: not empty, finite values, the data shape and value range the
        network declares, batches that divide into MMD groups, and labels only
        for a class-conditional network. Integer class labels must lie in
        `[0, label_dim)` (the index `label_dim` is "no label"); an array `y`
        (and `validation_data`'s labels) is checked whole, a pipeline's labels
        only in its first batch: a compiled step cannot raise on label values
        (under JAX and TensorFlow an out-of-range index would silently give a
        zero or wrong class embedding), so check the labels of later batches
        of a tf.data or generator pipeline in the pipeline itself (e.g.
        `tf.debugging.assert_less(y, label_dim + 1)` in a `map`).

        A non-finite step is skipped inside the compiled step; after
        `NonFiniteLossGuard.max_consecutive_skips` of them in a row, `fit`
        raises `NonFiniteLossError` naming the first, with the model holding
        the last finite state.
        """
        bound = inspect.signature(keras.Model.fit).bind_partial(self, *args, **kwargs)
        arguments = bound.arguments
        x = arguments.get("x")
        if x is None:
            raise ValueError(
                "fit needs training data: pass `x` (an array of shape "
                "(num_examples, ...data dims), a tf.data.Dataset, a PyDataset "
                "or a generator of batches)."
            )
        # Pipelines (tf.data, PyDataset, generators): check the first batch as
        # arrays are checked, without consuming the user's data.
        peeked = peek_first_batch(x, with_labels=True)
        first_batch = None
        has_labels = arguments.get("y") is not None
        first_labels = None
        if peeked is not None:
            first_batch, pipeline_labels, first_labels, arguments["x"] = peeked
            has_labels = has_labels or pipeline_labels
            if first_batch is not None:
                self._validate_array(first_batch, None, single_batch=True)
        elif not isinstance(x, (dict, list, tuple)):
            self._validate_array(x, arguments.get("batch_size"))
        if has_labels and not network_takes_labels(self.network):
            raise ValueError(
                f"fit received class labels (`y`, or labels in the data set's "
                f"elements), but the network {type(self.network).__name__} takes "
                "none (no `class_labels` argument, or label_dim=0). A "
                "ConsistencyModel needs no targets: call fit(x) without y, or "
                "use a class-conditional network (e.g. SongUNet(label_dim=10))."
            )
        # Label values, on the host: the compiled step cannot raise on them.
        self._check_label_values(arguments.get("y"), "y")
        self._check_label_values(first_labels, "class labels of the first batch")
        validation_data = arguments.get("validation_data")
        if isinstance(validation_data, (tuple, list)) and len(validation_data) > 1:
            self._check_label_values(validation_data[1], "validation_data labels")
        x = arguments["x"]
        if not self.built:
            shape = _data_shape_of(x) if first_batch is None else (
                (None,) + tuple(first_batch.shape[1:]))
            if shape is not None:
                self.build(shape)
        callbacks = list(arguments.get("callbacks") or [])
        guards = [c for c in callbacks if isinstance(c, gcm_callbacks.NonFiniteLossGuard)]
        if not guards:
            guards = [gcm_callbacks.NonFiniteLossGuard()]
            callbacks.append(guards[0])
        arguments["callbacks"] = callbacks
        arguments.pop("self")
        for guard in guards:
            # Raised below, once Keras has put the training state on the model.
            guard._defer_error = True
        try:
            history = super().fit(**arguments)
        finally:
            for guard in guards:
                guard._defer_error = False
        for guard in guards:
            guard.raise_if_failed(self)
        return history

    def _check_label_values(self, y, name):
        """Integer labels outside `[0, label_dim)` (`label_dim`: "no label")
        are a clear `ValueError` (`keras_gcm.validation.check_class_labels`)."""
        label_dim = getattr(self.network, "label_dim", None)
        if label_dim:  # values it cannot read (dicts, ragged lists, tracers) pass
            check_class_labels(y, label_dim, name)

    def _validate_array(self, x, batch_size, single_batch=False):
        if isinstance(x, (dict, list, tuple)):
            return
        arr = np.asarray(x)
        if arr.ndim >= 1 and arr.shape[0] == 0:
            raise ValueError(
                f"The training data are empty: an array of shape {arr.shape} (0 "
                "examples). Pass at least one batch of examples."
            )
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
    def _all_seed_generators(self):
        found = []
        for layer in self._flatten_layers(include_self=True):
            found.extend(getattr(layer, "_seed_generators", []))
        return found

    def save_own_variables(self, store):
        """Also stores the random-generator states (noise, time sampler,
        dropout) in `.keras` files, so a loaded model draws what the saved
        one would have drawn next."""
        super().save_own_variables(store)
        for i, generator in enumerate(self._all_seed_generators()):
            store[f"seed_state_{i}"] = np.asarray(
                ops.convert_to_numpy(generator.state.value))

    def load_own_variables(self, store):
        keys = list(store.keys())
        seeds = sorted(
            (k for k in keys if str(k).startswith("seed_state_")),
            key=lambda k: int(str(k)[len("seed_state_"):]),
        )
        super().load_own_variables({k: store[k] for k in keys if k not in seeds})
        generators = self._all_seed_generators()
        if len(seeds) == len(generators):
            for key, generator in zip(seeds, generators):
                generator.state.assign(
                    np.asarray(store[key]).astype(generator.state.dtype))

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
            "augment": ser(self.augment) if self.augment is not None else None,
            "evaluate_with_ema": self.evaluate_with_ema,
            "label_dropout": self.label_dropout,
            "model_guidance": self.model_guidance,
            "model_guidance_kappa": self.model_guidance_kappa,
            "model_guidance_interval": list(self.model_guidance_interval),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("network", "interpolant", "step", "conditioning", "weighting",
                    "time_sampler", "loss", "curriculum", "augment"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)

    @classmethod
    def from_preset(cls, name, network, **overrides):
        """Builds the model of a named preset (a row of the paper's tables).

        Args:
            name: a preset name from `keras_gcm.presets.list()`.
            network: the network `F`. A class-conditional network
                (`label_dim > 0`) also gets the preset's guidance arguments
                (`keras_gcm.presets.guidance(name)`).
            **overrides: constructor arguments that replace the preset's.

        Example:

        >>> model = keras_gcm.ConsistencyModel.from_preset(
        ...     "cu_a_baseline", keras_gcm.networks.MLP())
        """
        from keras_gcm import presets

        guided = presets.guidance(name) if getattr(network, "label_dim", 0) else {}
        return cls(network=network, **{**presets.components(name), **guided, **overrides})
