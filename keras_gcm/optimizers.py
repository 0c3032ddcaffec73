"""Optimizers that Keras does not ship.

`RAdam` is the Rectified Adam optimizer (Liu et al., 2020, "On the Variance of
the Adaptive Learning Rate and Beyond"), the optimizer of "A Guide to Training
Consistency Models" (appendix G.1: lr 1e-4, betas (0.9, 0.999), eps 1e-8). It
follows `torch.optim.RAdam` step for step, both kinds of weight decay included,
so that training recipes transfer between the PyTorch reference code and this
library.
"""

import math

import keras
from keras import ops

# Below this `x = -t log(beta_2)` the SMA length uses its series form.
_SMA_SERIES_SWITCH = 1.0


def _sma_length(step, beta_2, dtype):
    """Length `rho_t` of the approximated simple moving average (RAdam).

    `rho_t = rho_inf - 2 t beta_2^t / (1 - beta_2^t)` with
    `rho_inf = 2 / (1 - beta_2) - 1`. Written as is, the two terms are each
    about `2 / (1 - beta_2)` (2000 for `beta_2 = 0.999`) while their
    difference is about `t`, so float32 loses about four digits exactly
    where RAdam decides to rectify (`rho_t > 5`, around step 6). With
    `L = -log(beta_2)` and `x = t L`, `2 t beta_2^t / (1 - beta_2^t) =
    (2 / L) x / expm1(x)`, and the Bernoulli series of `x / expm1(x)` gives
    the cancellation-free form

    `rho_t = (rho_inf - 2 / L) + t (1 - x/6 + x^3/360 - x^5/15120
    + x^7/604800 - x^9/23950080 + O(x^11))`,

    where `rho_inf - 2 / L` is computed once in float64. The series is used
    for `x < 1` (truncation error below 1e-9 relative), the direct form
    (no cancellation there) above.

    Args:
        step: Scalar tensor, the 1-based step count `t`, in `dtype`.
        beta_2: Python float in (0, 1), the second-moment decay rate.
        dtype: The floating dtype of the computation.

    Returns:
        A scalar tensor `rho_t` in `dtype`.

    Example:

    >>> rho = keras_gcm.optimizers._sma_length(keras.ops.convert_to_tensor(6.0), 0.999, "float32")
    >>> round(float(keras.ops.convert_to_numpy(rho)), 3)
    5.994
    """
    log_beta_2 = math.log(beta_2)  # float64, = -L
    rho_inf = 2.0 / (1.0 - beta_2) - 1.0
    offset = rho_inf + 2.0 / log_beta_2  # rho_inf - 2 / L, in float64
    x = step * ops.cast(-log_beta_2, dtype)
    # Series branch (clamped so that the unused branch never overflows).
    xs = ops.minimum(x, _SMA_SERIES_SWITCH)
    xs2 = xs * xs
    poly = 1.0 / 604800.0 - xs2 / 23950080.0
    poly = -1.0 / 15120.0 + xs2 * poly
    poly = 1.0 / 360.0 + xs2 * poly
    series = 1.0 - xs / 6.0 + xs * xs2 * poly
    rho_series = ops.cast(offset, dtype) + step * series
    # Direct branch, well conditioned for x >= 1.
    rho_direct = ops.cast(rho_inf, dtype) - 2.0 * step / ops.expm1(
        ops.maximum(x, _SMA_SERIES_SWITCH)
    )
    return ops.where(x < _SMA_SERIES_SWITCH, rho_series, rho_direct)


@keras.saving.register_keras_serializable(package="keras_gcm")
class RAdam(keras.optimizers.Optimizer):
    """Rectified Adam (RAdam), step for step equal to `torch.optim.RAdam`.

    With gradient `g_t` (after clipping and, for coupled weight decay,
    `g_t + weight_decay * theta`), RAdam keeps Adam's moments
    `m_t = beta_1 m + (1 - beta_1) g_t`, `v_t = beta_2 v + (1 - beta_2) g_t^2`
    and the length of the approximated simple moving average
    `rho_t = rho_inf - 2 t beta_2^t / (1 - beta_2^t)`,
    `rho_inf = 2 / (1 - beta_2) - 1`. While `rho_t <= 5` (the first five
    steps for `beta_2 = 0.999`) the variance of the adaptive step size is
    intractable and the update is momentum SGD,
    `theta -= lr * m_t / (1 - beta_1^t)`; afterwards it is the rectified
    Adam update

    `theta -= lr * r_t * m_t / (1 - beta_1^t)
    * sqrt(1 - beta_2^t) / (sqrt(v_t) + epsilon)`,

    `r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf /
    ((rho_inf - 4)(rho_inf - 2) rho_t))`.

    The switch is an `ops.where`, so the update compiles (JAX
    `stateless_apply`, `tf.function` with XLA, torch) without a Python branch
    on a tensor value. The scalar terms are computed in a cancellation-free
    form (float32 is enough to place the switch exactly where float64 does).

    Weight decay follows PyTorch: with `decoupled_weight_decay=False` (the
    default, `torch.optim.RAdam`'s) it is an L2 penalty added to the
    gradient, `g_t + weight_decay * theta`, before the moments; with
    `decoupled_weight_decay=True` the weights shrink first,
    `theta *= 1 - lr * weight_decay` (AdamW style; this is also what Keras
    optimizers do with `weight_decay`). In both cases
    `exclude_from_weight_decay` is honoured.

    The paper's training default (appendix G.1) is
    `RAdam(learning_rate=1e-4, beta_1=0.9, beta_2=0.999, epsilon=1e-8)`.

    Args:
        learning_rate: A float, a
            `keras.optimizers.schedules.LearningRateSchedule` instance, or a
            callable that takes no arguments and returns the learning rate.
            Defaults to `1e-3`.
        beta_1: Float in [0, 1), the decay rate of the first moment.
            Defaults to `0.9`.
        beta_2: Float in [0, 1), the decay rate of the second moment.
            Defaults to `0.999`.
        epsilon: Float >= 0 added to `sqrt(v_t)` (not bias corrected, as in
            PyTorch). Defaults to `1e-8`.
        weight_decay: `None` or a float >= 0, the weight decay coefficient.
            `None` and `0` mean no decay. Defaults to `None`.
        decoupled_weight_decay: Bool. `False`: L2 penalty added to the
            gradient; `True`: decoupled (AdamW-style) decay. Defaults to
            `False`, as in PyTorch.
        clipnorm: Float or `None`: clip each gradient to this norm.
        clipvalue: Float or `None`: clip each gradient to this value.
        global_clipnorm: Float or `None`: clip all gradients to this global
            norm.
        use_ema: Bool. Keep an exponential moving average of the weights
            (Keras' optimizer EMA). Defaults to `False`.
        ema_momentum: Float, the EMA momentum. Defaults to `0.99`.
        ema_overwrite_frequency: Int or `None`, how often the model weights
            are overwritten with their EMA.
        loss_scale_factor: Float or `None`, the loss scale factor.
        gradient_accumulation_steps: Int or `None`, number of steps over which
            gradients are accumulated.
        name: String, the optimizer's name.
        **kwargs: Other keyword arguments of `keras.optimizers.Optimizer`.

    Example:

    >>> import numpy as np
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer=keras_gcm.optimizers.RAdam(learning_rate=1e-2), loss="mse")
    >>> x = np.random.rand(64, 3).astype("float32")
    >>> y = x.sum(axis=1, keepdims=True)
    >>> history = model.fit(x, y, epochs=2, verbose=0)
    """

    def __init__(
        self,
        learning_rate=1e-3,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        weight_decay=None,
        decoupled_weight_decay=False,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name=None,
        **kwargs,
    ):
        for arg_name, value in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(
                    f"`{arg_name}` must be a float in [0, 1). "
                    f"Received: {arg_name}={value!r}"
                )
        if not isinstance(epsilon, (int, float)) or not epsilon >= 0.0:
            raise ValueError(
                f"`epsilon` must be a float >= 0. Received: epsilon={epsilon!r}"
            )
        if weight_decay is not None and (
            not isinstance(weight_decay, (int, float)) or not weight_decay >= 0
        ):
            raise ValueError(
                "`weight_decay` must be None or a float >= 0. "
                f"Received: weight_decay={weight_decay!r}"
            )
        if weight_decay is not None and weight_decay == 0:
            weight_decay = None
        super().__init__(
            learning_rate=learning_rate,
            name=name,
            weight_decay=weight_decay,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            use_ema=use_ema,
            ema_momentum=ema_momentum,
            ema_overwrite_frequency=ema_overwrite_frequency,
            loss_scale_factor=loss_scale_factor,
            gradient_accumulation_steps=gradient_accumulation_steps,
            **kwargs,
        )
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.decoupled_weight_decay = bool(decoupled_weight_decay)

    def build(self, var_list):
        """Creates the first and second moment variables.

        Args:
            var_list: List of model variables to build the moments for.

        Example:

        >>> import numpy as np
        >>> opt = keras_gcm.optimizers.RAdam()
        >>> opt.build([keras.Variable(np.zeros((2, 3)))])
        >>> len(opt.variables)  # iterations, learning rate, 2 moments
        4
        """
        if self.built:
            return
        super().build(var_list)
        self._momentums = []
        self._velocities = []
        for variable in var_list:
            self._momentums.append(
                self.add_variable_from_reference(variable, "momentum")
            )
            self._velocities.append(
                self.add_variable_from_reference(variable, "velocity")
            )

    def _apply_weight_decay(self, variables):
        # Keras applies `weight_decay` as decoupled decay,
        # `theta *= 1 - lr * wd`, before `update_step`: exactly PyTorch's
        # decoupled decay. The coupled (L2) kind is added to the gradient in
        # `update_step` instead.
        if self.decoupled_weight_decay:
            super()._apply_weight_decay(variables)

    def update_step(self, gradient, variable, learning_rate):
        """Applies one RAdam update to `variable`.

        Args:
            gradient: The gradient of the loss with respect to `variable`.
            variable: The model variable to update.
            learning_rate: The current learning rate.

        Example:

        >>> import numpy as np
        >>> opt = keras_gcm.optimizers.RAdam(learning_rate=0.1)
        >>> w = keras.Variable(np.ones(2, "float32"))
        >>> opt.apply([np.ones(2, "float32")], [w])  # step 1: lr * m_hat
        >>> [round(float(v), 6) for v in keras.ops.convert_to_numpy(w)]
        [0.9, 0.9]
        """
        var_dtype = variable.dtype
        # Scalars in at least float32 even for low-precision variables.
        dtype = "float64" if var_dtype == "float64" else "float32"
        gradient = ops.cast(gradient, var_dtype)
        if (
            self.weight_decay is not None
            and not self.decoupled_weight_decay
            and self._use_weight_decay(variable)
        ):
            gradient = gradient + ops.cast(self.weight_decay, var_dtype) * (
                variable
            )

        index = self._get_variable_index(variable)
        m = self._momentums[index]
        v = self._velocities[index]
        self.assign_add(m, (gradient - m) * (1.0 - self.beta_1))
        self.assign_add(v, (ops.square(gradient) - v) * (1.0 - self.beta_2))

        sgd_scale, adam_scale, rectify = self._step_scalars(learning_rate, dtype)
        sgd_update = ops.cast(sgd_scale, var_dtype) * m
        if adam_scale is None:
            self.assign_sub(variable, sgd_update)
            return
        adam_update = (
            ops.cast(adam_scale, var_dtype)
            * m
            / (ops.sqrt(v) + ops.cast(self.epsilon, var_dtype))
        )
        self.assign_sub(variable, ops.where(rectify, adam_update, sgd_update))

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # The step's scalars (bias corrections, rectification) are the same
        # for every variable: compute them once per step, not once per
        # variable (in eager torch that was half of the step time).
        object.__setattr__(self, "_scalar_cache", {})
        try:
            super()._backend_update_step(grads, trainable_variables, learning_rate)
        finally:
            object.__setattr__(self, "_scalar_cache", None)

    def _step_scalars(self, learning_rate, dtype):
        """`(sgd_scale, adam_scale, rectify)` of the current step.

        `sgd_scale = lr / (1 - beta_1^t)` is the un-rectified step on the
        bias-corrected moment; `adam_scale = sgd_scale * r_t * sqrt(1 - beta_2^t)`
        the rectified one, used where `rectify` (`rho_t > 5`). `adam_scale`
        is None when RAdam can never rectify (`beta_2 <= 2/3`).
        """
        cache = getattr(self, "_scalar_cache", None)
        if cache is not None and dtype in cache:
            return cache[dtype]
        lr = ops.cast(learning_rate, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        # 1 - beta^t, computed as -expm1(t log beta) (no cancellation).
        if self.beta_1 > 0.0:
            bias_correction_1 = -ops.expm1(
                step * ops.cast(math.log(self.beta_1), dtype)
            )
        else:
            bias_correction_1 = ops.ones((), dtype)
        sgd_scale = lr / bias_correction_1
        rho_inf = 2.0 / (1.0 - self.beta_2) - 1.0
        if rho_inf <= 5.0:
            # beta_2 <= 2/3: rho_t < rho_inf <= 5 at every step, RAdam never
            # rectifies (a property of the configuration, not of a tensor).
            result = (sgd_scale, None, None)
        else:
            bias_correction_2 = -ops.expm1(
                step * ops.cast(math.log(self.beta_2), dtype)
            )
            rho_t = _sma_length(step, self.beta_2, dtype)
            rho_safe = ops.maximum(rho_t, 5.0)  # keeps the unused branch finite
            rectification = ops.sqrt(
                (rho_safe - 4.0)
                * (rho_safe - 2.0)
                * (rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0)))
                / rho_safe
            )
            adam_scale = sgd_scale * rectification * ops.sqrt(bias_correction_2)
            result = (sgd_scale, adam_scale, rho_t > 5.0)
        if cache is not None:
            cache[dtype] = result
        return result

    def get_config(self):
        """Returns the optimizer's configuration (no state).

        Returns:
            A dict from which `RAdam.from_config` rebuilds the optimizer.

        Example:

        >>> opt = keras_gcm.optimizers.RAdam(learning_rate=1e-4, weight_decay=0.01)
        >>> keras_gcm.optimizers.RAdam.from_config(opt.get_config()).get_config()["beta_2"]
        0.999
        """
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "decoupled_weight_decay": self.decoupled_weight_decay,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_gcm")
class InverseSqrtDecay(keras.optimizers.schedules.LearningRateSchedule):
    """EDM2's / ECT's learning-rate decay `lr / sqrt(max(step / ref_steps, 1))`.

    Constant for the first `ref_steps` optimizer steps, then decaying as the
    inverse square root of the step (EDM2's `learning_rate_schedule`, Karras et
    al. 2024, without its ramp-up; ECT fine-tunes ImageNet-64
    with `ref_lr = 1e-3`, `ref_steps = 2000`).

    Args:
        learning_rate: float, the reference learning rate.
        ref_steps: int, steps before the decay starts (0: constant).

    Example:

    >>> schedule = keras_gcm.optimizers.InverseSqrtDecay(1e-3, 2000)
    >>> round(float(schedule(8000)), 6)
    0.0005
    """

    def __init__(self, learning_rate, ref_steps):
        self.learning_rate = float(learning_rate)
        self.ref_steps = int(ref_steps)

    def __call__(self, step):
        if self.ref_steps <= 0:
            return ops.convert_to_tensor(self.learning_rate, "float32")
        ratio = ops.cast(step, "float32") / float(self.ref_steps)
        return self.learning_rate / ops.sqrt(ops.maximum(ratio, 1.0))

    def get_config(self):
        return {"learning_rate": self.learning_rate, "ref_steps": self.ref_steps}
