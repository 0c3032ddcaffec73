"""Consistency losses: the l2 particle loss (Eq. 5, 39, 40), its continuous-time
limit (Eq. 6) and the time-aware MMD (appendix F, Eq. 44-46).

Both losses are `keras.losses.Loss` subclasses. `ConsistencyModel` builds the
student points `y_pred`, the stop-gradient teacher points `y_true["target"]`
and a per-sample weight (the loss weight divided by `t - r`, or by `t - s` for
Eq. 5) with `ConsistencyLoss.terms`, then calls the loss with that weight as
`sample_weight`; the `"sum_over_batch_size"` reduction gives the batch mean
(and the right scaling under `tf.distribute`).
"""

import keras

from keras_gcm.validation import check_float, check_int
from keras import ops

FORMS = ("eq40", "eq39", "eq5")
#: Times of the teacher points in the time-aware MMD kernel (Eq. 44): `t` or `r`.
KERNEL_TIMES = ("t", "r")


def safe_norm(x, axis):
    """Euclidean norm over `axis` whose gradient at 0 is 0 instead of NaN.

    NaN inputs still give NaN (so a diverging run is not hidden).

    Args:
        x: a tensor.
        axis: int or tuple of ints, the axes to reduce.

    Returns:
        The norm `sqrt(sum(x^2, axis))`.

    Example:

    >>> x = keras.ops.convert_to_tensor([[3.0, 4.0], [0.0, 0.0]])
    >>> print(keras.ops.convert_to_numpy(keras_gcm.losses.safe_norm(x, axis=-1)))
    [5. 0.]
    """
    sq = ops.sum(ops.square(x), axis=axis)
    zero = sq == 0.0
    safe = ops.where(zero, ops.ones_like(sq), sq)
    return ops.where(zero, ops.zeros_like(sq), ops.sqrt(safe))


def _expand(t, x):
    return ops.reshape(t, (-1,) + (1,) * (len(x.shape) - 1))


def _safe_reciprocal(gap):
    """1 / gap where gap > 0, 0 where gap <= 0 (a zero-length step carries no
    weight); NaN stays NaN."""
    empty = gap <= 0.0
    return ops.where(empty, ops.zeros_like(gap),
                     1.0 / ops.where(empty, ops.ones_like(gap), gap))


def _flatten(x):
    """(B, ...) -> (B, D) with D static, also when B is unknown while tracing."""
    dim = 1
    for size in x.shape[1:]:
        dim *= int(size)
    return ops.reshape(x, (-1, dim))


@keras.saving.register_keras_serializable(package="keras_gcm")
class ConsistencyLoss(keras.losses.Loss):
    """The l2-norm consistency loss, in one of its equal-gradient forms.

    With student `f_t = f(x_t, t, s)`, teacher `f_r = sg(f(x_r, r, s))`
    (`r = max(t - h(t), s)`, `x_r = x_t + (r - t) u_t`), per sample:

    * `"eq39"` (default, Eq. 39, the form appendix G.1 implements):
      `||u_t - f_t + (s-r) (sg(f_t) - f_r) / (t - r)||`;
    * `"eq40"` (Eq. 40):
      `||x_t + (r-t) f_t + (s-r) sg(f_t) - (x_r + (s-r) f_r)|| / (t - r)`;
    * `"eq5"` (Eq. 5): `||x_t + (s-t) f_t - (x_r + (s-r) f_r)|| / (t - s)`.

    All three have the same gradient with respect to the network (appendix
    D.1); Eq. 40 and Eq. 39 also have the same value, but in float32 Eq. 40
    subtracts two points of size `|x_t|` and divides the difference by
    `t - r ~ 1e-4`, which costs up to ~3e-4 relative error per sample near
    tT; Eq. 39 works with the velocity-sized terms and stays at ~1e-7
    (`tests/test_choices.py` checks both against float64). The continuous-time loss
    of Eq. 6, `||f_t - sg(u_t + (s - t) df/dt)||`, uses `continuous_terms`.
    The norm is over all non-batch axes; the reduction is the batch mean of
    the per-sample norm times `sample_weight`.

    Args:
        form: one of "eq39" (default), "eq40", "eq5".
        name: loss name.
        reduction: Keras reduction (default "sum_over_batch_size").
        dtype: computation dtype (float32 by default, also under mixed
            precision: the finite difference divides by h ~ 1e-4).

    Example:

    >>> rng = np.random.default_rng(0)
    >>> x_t, u_t, f_t, f_r = (keras.ops.convert_to_tensor(rng.normal(size=(8, 2)), "float32")
    ...                       for _ in range(4))
    >>> t = keras.ops.convert_to_tensor(rng.uniform(0.2, 0.9, 8), "float32")
    >>> r, s = t - 0.01, keras.ops.zeros(8)
    >>> x_r = x_t + keras.ops.expand_dims(r - t, -1) * u_t
    >>> def value(form):
    ...     loss = keras_gcm.losses.ConsistencyLoss(form=form)
    ...     y_pred, target, scale = loss.terms(x_t, x_r, u_t, f_t, f_r, t, r, s)
    ...     return float(loss({"target": target, "t": t, "s": s}, y_pred,
    ...                       sample_weight=scale))  # times w(t) in training
    >>> bool(np.isclose(value("eq40"), value("eq39"), rtol=1e-3))  # equal values
    True
    """

    def __init__(self, form="eq39", name="consistency_loss",
                 reduction="sum_over_batch_size", dtype="float32"):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if form not in FORMS:
            raise ValueError(f"`form` must be one of {FORMS}. Received: {form!r}")
        self.form = form

    #: Number of consecutive samples that form one loss group (1: particle loss).
    group_size = 1
    #: Whether samples of a group must share (t, s).
    shared_time = False

    def terms(self, x_t, x_r, u_t, f_t, f_r, t, r, s):
        """Student points, stop-gradient teacher points and per-sample scale.

        Args:
            x_t, x_r, u_t: tensors of the data shape (batch first).
            f_t: student network output at (x_t, t, s) (with gradient).
            f_r: teacher output at (x_r, r, s) (stop-gradient applied here).
            t, r, s: per-sample times, shape (B,).

        Returns:
            `(y_pred, y_true, scale)`: the loss is
            `mean(scale * weight * ||y_pred - y_true||)`.
        """
        f_r = ops.stop_gradient(f_r)
        te, re, se = _expand(t, x_t), _expand(r, x_t), _expand(s, x_t)
        teacher = x_r + (se - re) * f_r
        if self.form == "eq40":
            y_pred = x_t + (re - te) * f_t + (se - re) * ops.stop_gradient(f_t)
            return y_pred, teacher, _safe_reciprocal(t - r)
        if self.form == "eq5":
            y_pred = x_t + (se - te) * f_t
            return y_pred, teacher, _safe_reciprocal(t - s)
        # eq39
        inv_gap = _expand(_safe_reciprocal(t - r), x_t)
        target = u_t + (se - re) * (ops.stop_gradient(f_t) - f_r) * inv_gap
        positive = ops.cast(t - r > 0.0, "float32")
        return f_t, target, positive

    def continuous_terms(self, u_t, f_t, dfdt, t, s):
        """Terms of the continuous-time loss, Eq. 6: `||f_t - sg(u_t + (s-t) df/dt)||`."""
        target = ops.stop_gradient(u_t + (_expand(s, u_t) - _expand(t, u_t)) * dfdt)
        return f_t, target, ops.ones_like(t)

    def call(self, y_true, y_pred):
        target = y_true["target"] if isinstance(y_true, dict) else y_true
        return safe_norm(_flatten(y_pred - target), axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update({"form": self.form})
        return config


@keras.saving.register_keras_serializable(package="keras_gcm")
class TimeAwareMMD(ConsistencyLoss):
    """Time-aware MMD with the energy kernel (appendix F, Eq. 44-46).

    The batch is split into groups of `group_size` (M) consecutive samples,
    each with its own (t, s). With student points `a_j` (the Eq. 40
    expression, value `g(x_t, t, s)`) and teacher points `b_k = sg(g(x_r, r, s))`,
    the kernel weight `kappa(u, v)_jk = exp(-(|u_j - v_k| + |s_j - s_k|) / sigma)`
    (Eq. 44) and `c_j = w_j / (t_j - r_j)`, one group contributes

        1/(2 M^2) sum_j c_j sum_k (2 kappa(t, r)_jk ||a_j - b_k||
                                   - kappa(t, t)_jk ||a_j - a_k|| - kappa(r, r)_jk ||b_j - b_k||)

    (Eq. 45: a teacher point carries its time r; with `kernel_times="t"`
    every kappa is `kappa(t, t)`, the library's previous behaviour.)

    and the loss is the mean over groups. Per sample this is
    `c_j * (1/(2M)) sum_k kappa_jk (...)` averaged over the batch, so with
    M = 1 and `kernel_times="t"` (or `sigma=None`) it is exactly the Eq. 40
    loss (with the default `"r"` its one pair is weighted `exp(-(t - r) /
    sigma)`); with `sigma=None` (infinite) and
    shared times it is IMM's MMD with the energy kernel (Eq. 43), halved.

    Args:
        group_size: int M (4 for CU, 2 for VU in the paper).
        sigma: float kernel width in time, or None for infinity (0.05 CU,
            0.1 VU).
        shared_time: bool; if True the model samples one (t, s) per group
            (IMM's MMD, Table 7i) instead of one per sample.
        form: "eq40" (default, appendix G.1) or "eq5" for the particle points.
        kernel_times: which times the kernel gives the teacher points `b_k`:
            `"r"` (default; Eq. 44 and 45 read literally: a teacher point
            lives at its teacher time `r_k`, so the student-teacher pairs use
            `|t_j - r_k|` and the teacher-teacher pairs `|r_j - r_k|`; the
            times come from `y_true["r"]`, which `ConsistencyModel` passes,
            and are taken equal to t when absent) or `"t"` (the library's
            behaviour before this option: the student's `t_k` for both, so
            every pair is weighted by `exp(-(|t_j - t_k| + |s_j - s_k|) /
            sigma)`). The two differ by well under the seed spread in our
            measurements (docs page "Choices the paper leaves open"), so the
            default follows the paper.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> x_t, u_t, f_t, f_r = (keras.ops.convert_to_tensor(rng.normal(size=(8, 2)), "float32")
    ...                       for _ in range(4))
    >>> t = keras.ops.convert_to_tensor(rng.uniform(0.2, 0.9, 8), "float32")
    >>> r, s = t - 0.01, keras.ops.zeros(8)
    >>> x_r = x_t + keras.ops.expand_dims(r - t, -1) * u_t
    >>> def value(loss):
    ...     y_pred, target, scale = loss.terms(x_t, x_r, u_t, f_t, f_r, t, r, s)
    ...     return float(loss({"target": target, "t": t, "s": s}, y_pred,
    ...                       sample_weight=scale))  # times w(t) in training
    >>> mmd = keras_gcm.losses.TimeAwareMMD(group_size=4, sigma=0.05)
    >>> value(mmd) >= 0.0
    True
    >>> particle = keras_gcm.losses.ConsistencyLoss(form="eq40")
    >>> bool(np.isclose(value(keras_gcm.losses.TimeAwareMMD(group_size=1)), value(particle)))
    True
    """

    def __init__(self, group_size=4, sigma=0.05, shared_time=False, form="eq40",
                 kernel_times="r", name="time_aware_mmd",
                 reduction="sum_over_batch_size", dtype="float32"):
        if form not in ("eq40", "eq5"):
            raise ValueError(
                "TimeAwareMMD compares points g(x, t, s): `form` must be 'eq40' "
                f"or 'eq5'. Received: {form!r}"
            )
        super().__init__(form=form, name=name, reduction=reduction, dtype=dtype)
        group_size = check_int(group_size, "group_size", minimum=1)
        if sigma is not None and sigma != float("inf"):
            sigma = check_float(sigma, "sigma", exclusive_minimum=0.0)
        if sigma is not None and not (sigma > 0):
            raise ValueError(f"`sigma` must be positive or None. Received: {sigma}")
        if kernel_times not in KERNEL_TIMES:
            raise ValueError(
                f"`kernel_times` must be one of {KERNEL_TIMES}. Received: {kernel_times!r}"
            )
        self.kernel_times = kernel_times
        self.group_size = group_size
        self.sigma = None if sigma is None or sigma == float("inf") else float(sigma)
        self.shared_time = bool(shared_time)

    def call(self, y_true, y_pred):
        m = self.group_size
        a = _flatten(y_pred)
        b = _flatten(y_true["target"])
        dim = a.shape[-1]
        a = ops.reshape(a, (-1, m, dim))
        b = ops.reshape(b, (-1, m, dim))

        def pairwise(p, q):  # (G, M, M): ||p_j - q_k||
            return safe_norm(ops.expand_dims(p, 2) - ops.expand_dims(q, 1), axis=-1)

        if self.sigma is None:
            disc = 2.0 * pairwise(a, b) - pairwise(a, a) - pairwise(b, b)
        else:
            t = ops.reshape(y_true["t"], (-1, m))
            s = ops.reshape(y_true["s"], (-1, m))
            if self.kernel_times == "r" and y_true.get("r") is not None:
                r = ops.reshape(y_true["r"], (-1, m))
            else:
                r = t

            def kernel(u, v):  # (G, M, M): exp(-(|u_j - v_k| + |s_j - s_k|) / sigma)
                gap = ops.abs(ops.expand_dims(u, 2) - ops.expand_dims(v, 1)) + ops.abs(
                    ops.expand_dims(s, 2) - ops.expand_dims(s, 1)
                )
                return ops.exp(-gap / self.sigma)

            disc = (2.0 * pairwise(a, b) * kernel(t, r)
                    - pairwise(a, a) * kernel(t, t) - pairwise(b, b) * kernel(r, r))
        per_sample = ops.sum(disc, axis=-1) / (2.0 * m)
        return ops.reshape(per_sample, (-1,))

    def get_config(self):
        config = super().get_config()
        config.update(
            {"group_size": self.group_size, "sigma": self.sigma,
             "shared_time": self.shared_time, "kernel_times": self.kernel_times}
        )
        return config
