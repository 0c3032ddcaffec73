"""Presets: the paper's ablation rows as data.

A preset is a plain dict mapping `ConsistencyModel` constructor arguments to
component specs `[class_name, kwargs]` (nested specs allowed) or plain values,
plus a `description` naming its table cell. `components(name)` turns one into
objects; `ConsistencyModel.from_preset(name, network)` builds the model.

Table 2 (CU), cumulative: A baseline -> B + exponential h -> C + exponential
c(t) -> D + Gamma weight -> E + sine t-sampling -> F (`gcm_cu`) + time-aware
MMD. Table 3 (VU): G = A + uniform-power s-sampling, then H..K as B..E and L
(`gcm_vu`) + time-aware MMD.

Table 7 (one module changed on the row the paper ablates it on, identified
by the paper's numbers):

* `t7b_*`: the discretisations h(t) of Table 7b on row D (7b's exponential
  row, 3.03 / 2.26, is D's 3.02 / 2.24 up to noise); every h is normalised to
  the baseline integral `0.005 / 3` (Fig. 7a), the exponential one included
  (epsilon 0.006015, where D keeps the paper's default 0.005).
* `t7c_*`: the time conditionings of Table 7c on row B (7c's `c(t) = t` row,
  5.73 / 4.42, is B; its exponential row, 5.75 / 4.31, is C).
* `t7d_*`: without / with the epsilon-halving curriculum, on row K (7d's
  2.91 / 2.15 is K).
* `t7g_*`: the t-sampling densities of Table 7g on row D with importance
  weighting (7g's uniform row is D, its `sine(1, 0.01)` row is E).
* `t7i_*`: no MMD / IMM's shared-time MMD (M = 2, sigma = inf) / time-aware
  MMD (M = 2, sigma = 0.1), on row K (7i's rows are K and L).
* `t7j_*`: finite-difference vs analytic (`keras.ops` JVP) derivative, on
  row K (7j's finite-difference row, 2.91 / 2.15, is K).
* `ect_like`, `imm_like`: ECT's and IMM's discretisation and time
  conditioning on row D.

Further tables (appendix H and the rest of Table 7):

* `t7e_*`: IMM's, MeanFlow's and FACM's loss weighting and time sampling
  (each cited in its description) on rows K / E, and ours (E, K).
* `f7f_nu*`: the nu sweep of Fig. 7f on row L (nu = 4 is L).
* `t7h_*`: DDPM++ / NCSN++ on row L; `network_kind(name)` names the network.
* `t10_*`: Table 10, VU built on CU row D (D, M, K, L).
* `t11_*`: Table 11, the CU framework's enhancements applied to ECT (a-f).
Table 6b (latent-space ImageNet-256, appendix G.2): `imagenet256_vu_dit_b4`
and `imagenet256_vu_dit_xl2`, GCM-VU with epsilon 0.02, nu 1, gamma 0.2 and
the s = t mixture (`EqualTimeMixture`), plus MeanFlow's model guidance in
their `guidance` entry (see `guidance(name)`).

`paper_fid(name)` gives the CIFAR-10 FIDs (1-step, 2-step) the paper reports
for a preset's table cell.
"""

import builtins
import copy
import fnmatch
import math

import keras

from keras_gcm import interpolants  # noqa: F401  (registers the classes)
from keras_gcm import losses  # noqa: F401
from keras_gcm import schedules  # noqa: F401
from keras_gcm import time_sampling  # noqa: F401
from keras_gcm import weighting  # noqa: F401


def _spec(name, **kwargs):
    return [name, kwargs]


def _cu(t_dist):
    return _spec("ConstantUpperLimit", t_dist=t_dist)


def _vu(t_dist):
    return _spec("VariableUpperLimit", s_dist=_spec("UniformPowerTime", nu=4.0),
                 t_dist=t_dist)


_UNIFORM = _spec("UniformTime")
_SINE = _spec("SineTime", a=1.0, b=0.01)

_A = {
    "description": "Table 2 A: naive baseline (constant h, c(t)=t, w=1, uniform t, s=t0, Eq. 39 loss)",
    "step": _spec("ConstantStep"),
    "conditioning": _spec("IdentityTime"),
    "weighting": _spec("ConstantWeight"),
    "time_sampler": _cu(_UNIFORM),
    "loss": _spec("ConsistencyLoss", form="eq39"),
    "importance_weighting": False,
}


def _then(base, description, **changes):
    preset = copy.deepcopy(base)
    preset.update(copy.deepcopy(changes))
    preset["description"] = description
    return preset


_PRESETS = {}
_PRESETS["cu_a_baseline"] = _A
_PRESETS["cu_b"] = _then(_A, "Table 2 B: A + exponential discretisation h(t) = 0.005 exp(-3.5 t)",
                         step=_spec("ExponentialStep", epsilon=0.005, mu=3.5))
_PRESETS["cu_c"] = _then(_PRESETS["cu_b"], "Table 2 C: B + exponential time conditioning c(t) = (exp(3.5 t) - 1) / 3.5",
                         conditioning=_spec("ExponentialTime", mu=3.5))
_PRESETS["cu_d"] = _then(_PRESETS["cu_c"], "Table 2 D: C + Gamma loss weighting w(t) = t exp(-6 t)",
                         weighting=_spec("GammaWeight", gamma=1.0, lam=6.0))
_PRESETS["cu_e"] = _then(_PRESETS["cu_d"], "Table 2 E: D + sine t-sampling (a=1, b=0.01) with importance weights",
                         time_sampler=_cu(_SINE), importance_weighting=True)
_PRESETS["gcm_cu"] = _then(_PRESETS["cu_e"], "Table 2 F (GCM-CU): E + time-aware MMD (M=4, sigma=0.05)",
                           loss=_spec("TimeAwareMMD", group_size=4, sigma=0.05))

_G = _then(_A, "Table 3 G: A + uniform-power s-sampling (nu=4), VU", time_sampler=_vu(_UNIFORM))
_PRESETS["vu_g_baseline"] = _G
_PRESETS["vu_h"] = _then(_G, "Table 3 H: G + exponential discretisation",
                         step=_spec("ExponentialStep", epsilon=0.005, mu=3.5))
_PRESETS["vu_i"] = _then(_PRESETS["vu_h"], "Table 3 I: H + exponential time conditioning",
                         conditioning=_spec("ExponentialTime", mu=3.5))
_PRESETS["vu_j"] = _then(_PRESETS["vu_i"], "Table 3 J: I + Gamma loss weighting",
                         weighting=_spec("GammaWeight", gamma=1.0, lam=6.0))
_PRESETS["vu_k"] = _then(_PRESETS["vu_j"], "Table 3 K: J + sine t-sampling with importance weights",
                         time_sampler=_vu(_SINE), importance_weighting=True)
_PRESETS["gcm_vu"] = _then(_PRESETS["vu_k"], "Table 3 L (GCM-VU): K + time-aware MMD (M=2, sigma=0.1)",
                           loss=_spec("TimeAwareMMD", group_size=2, sigma=0.1))

_PRESETS["ect_like"] = _then(
    _PRESETS["cu_d"],
    "ECT-like (Table 7b 'ECT's' + ECT's conditioning): D with ECT's discretisation (Eq. 28) "
    "and EDM/ECT's noise conditioning c(t) = ln(0.5 tan(pi t / 2)) / 4",
    step=_spec("ECTStep"), conditioning=_spec("LogSigmaTime", sigma_data=0.5, scale=0.25),
)
_PRESETS["imm_like"] = _then(
    _PRESETS["cu_d"],
    "IMM-like (Table 7b 'IMM's' + Table 7c 'c(t) = 1000t'): D with IMM's discretisation "
    "(Eq. 29) and c(t) = 1000 t",
    step=_spec("IMMStep"), conditioning=_spec("LinearTime", scale=1000.0),
)

# --------------------------------------------------------------- Table 7b
# Epsilon of the exponential step whose integral over [0, 1] equals the
# baseline's 0.005 / 3 (Fig. 7a): eps (1 - exp(-mu)) / mu = 0.005 / 3.
EXPONENTIAL_EQUAL_INTEGRAL_EPSILON = schedules.BASELINE_INTEGRAL * 3.5 / (1.0 - math.exp(-3.5))

_T7B = [
    ("t7b_constant", "Constant", _spec("ConstantStep")),
    ("t7b_edm", "EDM's (Eq. 27)", _spec("EDMStep")),
    ("t7b_ect", "ECT's (Eq. 28)", _spec("ECTStep")),
    ("t7b_imm", "IMM's (Eq. 29)", _spec("IMMStep")),
    ("t7b_linear_decrease", "Linear Decrease (Eq. 30)", _spec("LinearDecreasingStep")),
    ("t7b_quadratic_decrease", "Quadratic Decrease (Eq. 31)", _spec("QuadraticDecreasingStep")),
    ("t7b_cubic_decrease", "Cubic Decrease (Eq. 32)", _spec("CubicDecreasingStep")),
    ("t7b_quadratic_increase", "Quadratic Increase (Eq. 33)", _spec("QuadraticIncreasingStep")),
    ("t7b_quadratic_concave", "Quadratic Concave (Eq. 34)", _spec("QuadraticConcaveStep")),
    ("t7b_quadratic_convex", "Quadratic Convex (Eq. 35)", _spec("QuadraticConvexStep")),
    ("t7b_exponential_decrease", "Exponential Decrease (Eq. 36)",
     _spec("ExponentialStep", epsilon=EXPONENTIAL_EQUAL_INTEGRAL_EPSILON, mu=3.5)),
]
for _name, _row, _step in _T7B:
    _PRESETS[_name] = _then(
        _PRESETS["cu_d"],
        f"Table 7b row '{_row}': D with this h(t), normalised to the baseline integral 0.005/3",
        step=_step,
    )

# --------------------------------------------------------------- Table 7c
_PRESETS["t7c_identity"] = _then(
    _PRESETS["cu_b"], "Table 7c row 'c(t) = t' (on row B; same as cu_b)")
_PRESETS["t7c_linear_1000"] = _then(
    _PRESETS["cu_b"], "Table 7c row 'c(t) = 1000t' (IMM's conditioning, on row B)",
    conditioning=_spec("LinearTime", scale=1000.0))
_PRESETS["t7c_exponential"] = _then(
    _PRESETS["cu_b"],
    "Table 7c row 'exponential' (printed e^{-3.5t}; c(t) = (exp(3.5 t) - 1) / 3.5, on row B; "
    "same as cu_c)",
    conditioning=_spec("ExponentialTime", mu=3.5))

# --------------------------------------------------------------- Table 7d
_PRESETS["t7d_no_curriculum"] = _then(
    _PRESETS["vu_k"], "Table 7d row 'no curriculum' (row K; same as vu_k)")
_PRESETS["t7d_curriculum"] = _then(
    _PRESETS["vu_k"],
    "Table 7d row 'curriculum': K with epsilon starting at 0.5 and halving every 50K "
    "iterations (appendix G.1)",
    curriculum=_spec("EpsilonHalvingCurriculum", initial_epsilon=0.5, halve_every=50_000))

# --------------------------------------------------------------- Table 7g
_T7G = [
    ("t7g_uniform", "Uniform", _UNIFORM),
    ("t7g_sine_b0_1", "p_sine(t; 1, 0.1)", _spec("SineTime", a=1.0, b=0.1)),
    ("t7g_sine_b0_01", "p_sine(t; 1, 0.01)", _spec("SineTime", a=1.0, b=0.01)),
    ("t7g_sine_b0_001", "p_sine(t; 1, 0.001)", _spec("SineTime", a=1.0, b=0.001)),
    ("t7g_cosh_a1_5_b0", "p_cosh(t; 1.5, 0)", _spec("CoshTime", a=1.5, b=0.0)),
]
for _name, _row, _dist in _T7G:
    _PRESETS[_name] = _then(
        _PRESETS["cu_d"],
        f"Table 7g row '{_row}': D with this t-sampling density and importance weights",
        time_sampler=_cu(_dist), importance_weighting=True,
    )

# --------------------------------------------------------------- Table 7i
_PRESETS["t7i_no_mmd"] = _then(
    _PRESETS["vu_k"], "Table 7i row 'group size 1 (w/o MMD)' (row K; same as vu_k)")
_PRESETS["t7i_shared_time_mmd"] = _then(
    _PRESETS["vu_k"],
    "Table 7i row 'group 2, shared time, sigma = inf': K with IMM's MMD (one (t, s) per "
    "group, energy kernel, Eq. 5 points as in appendix G.1)",
    loss=_spec("TimeAwareMMD", group_size=2, sigma=None, shared_time=True, form="eq5"))
_PRESETS["t7i_time_aware_mmd"] = _then(
    _PRESETS["vu_k"],
    "Table 7i row 'group 2, time-aware, sigma = 0.1' (row L; same as gcm_vu)",
    loss=_spec("TimeAwareMMD", group_size=2, sigma=0.1))

# --------------------------------------------------------------- Table 7j
_PRESETS["t7j_finite_difference"] = _then(
    _PRESETS["vu_k"], "Table 7j row 'finite difference' (row K; same as vu_k)")
_PRESETS["t7j_analytic"] = _then(
    _PRESETS["vu_k"],
    "Table 7j row 'analytic': K with the continuous-time loss (Eq. 6) through keras.ops JVP",
    jvp="analytic")

# --------------------------------------------------------------- Table 7e
# Each method's loss weighting and time sampling on our CU (E) / VU (K) rows,
# without importance weights (the method's own effective weight w(t) p(t)).
_PRESETS["t7e_imm"] = _then(
    _PRESETS["vu_k"],
    "Table 7e row 'IMM': K with IMM's weighting (Zhou et al., 2025: "
    "1/2 sigmoid(b - lambda_t) (-dlambda/dt) alpha^a / (alpha^2 + sigma^2)) and IMM's "
    "time sampling (t uniform, then s uniform on [t0, t])",
    weighting=_spec("IMMWeight", a=1.0, b=4.0),
    time_sampler=_spec("VariableUpperLimit", s_dist=_UNIFORM, t_dist=_UNIFORM, order="t_first"),
    importance_weighting=False)
_PRESETS["t7e_meanflow"] = _then(
    _PRESETS["vu_k"],
    "Table 7e row 'MeanFlow': K with MeanFlow's time sampling (Geng et al., 2025: two "
    "logit-normal(-2, 2) draws, t the larger, s the smaller) and constant weight (its "
    "adaptive weight acts on the loss value, not on t)",
    weighting=_spec("ConstantWeight"),
    time_sampler=_spec("SortedPairTimes", t_dist=_spec("LogitNormalTime", mean=-2.0, std=2.0)),
    importance_weighting=False)
_PRESETS["t7e_facm"] = _then(
    _PRESETS["cu_e"],
    "Table 7e row 'FACM': E with FACM's weighting (Peng et al., 2025: cos(pi t'/2) in "
    "t' = 1 - t, i.e. sin(pi t / 2)) and time sampling (t = 2/pi arctan(exp(n)), "
    "n ~ N(-0.8, 1.6^2))",
    weighting=_spec("SineWeight"),
    time_sampler=_cu(_spec("ArctanLogNormalTime", mean=-0.8, std=1.6, scale=1.0)),
    importance_weighting=False)
_PRESETS["t7e_cu"] = _then(_PRESETS["cu_e"], "Table 7e row 'CU (Ours)' (row E; same as cu_e)")
_PRESETS["t7e_vu"] = _then(_PRESETS["vu_k"], "Table 7e row 'VU (Ours)' (row K; same as vu_k)")

# --------------------------------------------------------------- Fig. 7f
# The intensity nu of the auxiliary VU task (uniform-power s-sampling), on row
# L; the paper plots the sweep without printing its values, nu = 4 is L.
FIG_7F_NUS = (1.0, 2.0, 4.0, 8.0, 16.0)
for _nu in FIG_7F_NUS:
    _PRESETS[f"f7f_nu{_nu:g}"] = _then(
        _PRESETS["gcm_vu"],
        f"Fig. 7f: L (GCM-VU) with the uniform-power s-sampling nu = {_nu:g}"
        + (" (same as gcm_vu)" if _nu == 4.0 else ""),
        time_sampler=_spec("VariableUpperLimit", s_dist=_spec("UniformPowerTime", nu=_nu),
                           t_dist=_SINE))

# --------------------------------------------------------------- Table 7h
# The network is not a model argument: `network_kind(name)` names it
# ("ddpmpp" unless the preset says otherwise; recipes build the network).
_PRESETS["t7h_ddpmpp"] = _then(
    _PRESETS["gcm_vu"], "Table 7h row 'DDPM++' (row L with EDM's DDPM++; same as gcm_vu)")
_PRESETS["t7h_ncsnpp"] = _then(
    _PRESETS["gcm_vu"], "Table 7h row 'NCSN++': row L with EDM's NCSN++ network "
    "(SongUNet.ncsnpp())", network="ncsnpp")

# --------------------------------------------------------------- Table 10
_PRESETS["t10_d"] = _then(_PRESETS["cu_d"], "Table 10 row 'D Baseline' (same as cu_d)")
_PRESETS["t10_m"] = _then(
    _PRESETS["cu_d"],
    "Table 10 row 'M + s-sampling': D with VU uniform-power s-sampling (nu = 4), t uniform "
    "(the components of Table 3 J)",
    time_sampler=_vu(_UNIFORM))
_PRESETS["t10_k"] = _then(_PRESETS["t10_m"],
                          "Table 10 row 'K + t-sampling': M with sine t-sampling and importance "
                          "weights (same as vu_k)",
                          time_sampler=_vu(_SINE), importance_weighting=True)
_PRESETS["t10_l"] = _then(_PRESETS["t10_k"],
                          "Table 10 row 'L + time-aware MMD' (same as gcm_vu)",
                          loss=_spec("TimeAwareMMD", group_size=2, sigma=0.1))

# --------------------------------------------------------------- Table 11
# ECT (Geng et al., 2024) trained from scratch in flow-matching time: ECT's
# discretisation with its curriculum (epsilon halving from 0.5 every 50K
# iterations), EDM's noise conditioning ln(sigma)/4, EDM's log-normal noise
# sampling (P_mean -1.1, P_std 2.0, sigma = sigma_d tan(pi t / 2)) and
# ECT's weight 1/(t - r), which the consistency loss already applies.
_PRESETS["t11_a_ect"] = _then(
    _A,
    "Table 11 a) ECT (w/o diffusion pretraining): ECT's h(t) (Eq. 28) with its curriculum, "
    "c(t) = ln(sigma)/4, log-normal(-1.1, 2.0) noise sampling, weight 1/(t - r)",
    step=_spec("ECTStep"),
    curriculum=_spec("EpsilonHalvingCurriculum", initial_epsilon=0.5, halve_every=50_000),
    conditioning=_spec("LogSigmaTime", sigma_data=0.5, scale=0.25),
    weighting=_spec("ConstantWeight"),
    time_sampler=_cu(_spec("ArctanLogNormalTime", mean=-1.1, std=2.0, scale=0.5)),
    importance_weighting=False)
_PRESETS["t11_b"] = _then(_PRESETS["t11_a_ect"], "Table 11 b) a - discretisation curriculum")
del _PRESETS["t11_b"]["curriculum"]
_PRESETS["t11_c"] = _then(_PRESETS["t11_b"],
                          "Table 11 c) b - ECT discretisation + exponential discretisation",
                          step=_spec("ExponentialStep", epsilon=0.005, mu=3.5))
_PRESETS["t11_d"] = _then(_PRESETS["t11_c"],
                          "Table 11 d) c + time preconditioning c(t) = (exp(3.5 t) - 1) / 3.5",
                          conditioning=_spec("ExponentialTime", mu=3.5))
_PRESETS["t11_e"] = _then(_PRESETS["t11_d"],
                          "Table 11 e) d - ECT loss weighting & time sampling + ours (Gamma "
                          "weight, sine t-sampling with importance weights; same as cu_e)",
                          weighting=_spec("GammaWeight", gamma=1.0, lam=6.0),
                          time_sampler=_cu(_SINE), importance_weighting=True)
_PRESETS["t11_f"] = _then(_PRESETS["t11_e"],
                          "Table 11 f) e + time-aware MMD (same as gcm_cu)",
                          loss=_spec("TimeAwareMMD", group_size=4, sigma=0.05))
# Table 6a (appendix G.2): fine-tuning a pretrained EDM2 diffusion model on
# ImageNet-64 into a CU model with ECT's setting (locuslab/ect, branch imgnet)
# and the paper's two changes, Gamma(1, 3) and uniform t. ECT's discretisation
# (Eq. 28) with its curriculum: epsilon = 1 / 4^(stage + 1), q = 4, a stage
# every 25K of the 100K iterations (ECT: every 500 ticks of 6.4 kimg at batch
# 128), so 0.25, 1/16, 1/64 and finally 1/256. c(t) = t: with a pretrained
# EDM network behind `keras_gcm.networks.EDMDenoiserVelocity` the conditioning
# is undone by the wrapper (which feeds EDM2 its own ln(sigma) / 4), so the
# identity avoids an inversion round-off. The optimizer (Adam, lr 1e-3 for S,
# betas (0.9, 0.99), inverse-sqrt decay after 2000 iterations), batch 128 and
# dropout 0.4 at <= 16x16 are training settings of recipes/imagenet64.py.
_PRESETS["imagenet64_cu_finetune"] = _then(
    _PRESETS["gcm_cu"],
    "Table 6a (appendix G.2): GCM-CU fine-tuned from EDM2 on ImageNet-64 with ECT's "
    "discretisation and curriculum (epsilon 1/4 -> 1/256, x1/4 every 25K of 100K "
    "iterations), Gamma weight t exp(-3 t), uniform t",
    step=_spec("ECTStep", epsilon=1.0 / 256.0, k=8.0, b=0.5),
    conditioning=_spec("IdentityTime"),
    weighting=_spec("GammaWeight", gamma=1.0, lam=3.0),
    time_sampler=_cu(_UNIFORM),
    curriculum=_spec("EpsilonHalvingCurriculum", initial_epsilon=0.25,
                     halve_every=25_000, factor=0.25, floor=True),
    # Kernel times t for student and teacher points: ECT's curriculum starts
    # at h = 0.25, where Eq. 44's teacher times r (the library default, chosen
    # on h ~ 0.005) make the cross-kernel weights far smaller than the
    # self-terms and the group estimate negative (seen in two-step tests).
    loss=_spec("TimeAwareMMD", group_size=4, sigma=0.05, kernel_times="t"),
)

# ------------------------------------- Table 6b: latent-space ImageNet-256
# Appendix G.2: the VU variant on SD-VAE latents with MeanFlow's DiT, BF16,
# epsilon 0.02, nu = 1, Gamma gamma = 0.2, and with probability 0.75 an s = t
# pair with t from MeanFlow's lognorm(-0.4, 1.0). The "guidance" entry is
# MeanFlow's training-time CFG for that network size (the paper keeps
# MeanFlow's settings untuned): label dropout 0.1 and (omega, kappa, t-interval)
# of MeanFlow's Table 4 / zhuyu-cs/MeanFlow's README; `from_preset` applies it
# to class-conditional networks only.
_IMAGENET256 = _then(
    _PRESETS["gcm_vu"], "Table 6b",
    step=_spec("ExponentialStep", epsilon=0.02, mu=3.5),
    weighting=_spec("GammaWeight", gamma=0.2, lam=6.0),
    time_sampler=_spec(
        "EqualTimeMixture",
        base=_spec("VariableUpperLimit", s_dist=_spec("UniformPowerTime", nu=1.0),
                   t_dist=_SINE),
        probability=0.75, mean=-0.4, std=1.0, equal_time_importance=False),
)
_PRESETS["imagenet256_vu_dit_b4"] = _then(
    _IMAGENET256,
    "Table 6b VU-B/4 (1-step FID 14.27 after 80 epochs): GCM-VU with epsilon 0.02, nu 1, "
    "gamma 0.2, s = t with probability 0.75 (t ~ lognorm(-0.4, 1)); MeanFlow-B/4's model "
    "guidance omega 3",
    guidance={"label_dropout": 0.1, "model_guidance": 3.0, "model_guidance_kappa": 0.0,
              "model_guidance_interval": [0.0, 1.0]},
)
_PRESETS["imagenet256_vu_dit_xl2"] = _then(
    _IMAGENET256,
    "Table 6b VU-XL/2 (1-step FID 7.12 after 40 epochs): GCM-VU with epsilon 0.02, nu 1, "
    "gamma 0.2, s = t with probability 0.75 (t ~ lognorm(-0.4, 1)); MeanFlow-XL/2's model "
    "guidance omega 0.2, kappa 0.92 on t in [0, 0.75]",
    guidance={"label_dropout": 0.1, "model_guidance": 0.2, "model_guidance_kappa": 0.92,
              "model_guidance_interval": [0.0, 0.75]},
)

# ------------------------------------------------ the paper's CIFAR-10 FIDs
_PAPER_FID = {
    "cu_a_baseline": (6.40, 4.28), "cu_b": (5.73, 4.40), "cu_c": (5.75, 4.31),
    "cu_d": (3.02, 2.24), "cu_e": (2.91, 2.20), "gcm_cu": (2.91, 2.19),
    "vu_g_baseline": (6.59, 4.27), "vu_h": (5.50, 4.10), "vu_i": (5.49, 4.06),
    "vu_j": (2.94, 2.15), "vu_k": (2.91, 2.15), "gcm_vu": (2.86, 2.11),
    "ect_like": None, "imm_like": None,
    "t7b_constant": (4.62, 2.50), "t7b_edm": (3.29, 2.24), "t7b_ect": (3.20, 2.27),
    "t7b_imm": (3.35, 2.43), "t7b_linear_decrease": (3.08, 2.26),
    "t7b_quadratic_decrease": (3.34, 2.43), "t7b_cubic_decrease": (3.46, 2.65),
    "t7b_quadratic_increase": (9.09, 3.08), "t7b_quadratic_concave": (3.38, 2.28),
    "t7b_quadratic_convex": (6.83, 2.75), "t7b_exponential_decrease": (3.03, 2.26),
    "t7c_identity": (5.73, 4.42), "t7c_linear_1000": (8.59, 7.05),
    "t7c_exponential": (5.75, 4.31),
    "t7d_no_curriculum": (2.91, 2.15), "t7d_curriculum": (3.12, 2.25),
    "t7g_uniform": (3.02, 2.24), "t7g_sine_b0_1": (2.94, 2.21),
    "t7g_sine_b0_01": (2.91, 2.20), "t7g_sine_b0_001": (2.92, 2.20),
    "t7g_cosh_a1_5_b0": (2.93, 2.23),
    "t7i_no_mmd": (2.91, 2.15), "t7i_shared_time_mmd": (2.91, 2.16),
    "t7i_time_aware_mmd": (2.86, 2.11),
    "t7j_finite_difference": (2.91, 2.15), "t7j_analytic": (2.93, 2.18),
    "t7e_imm": (3.63, 2.37), "t7e_meanflow": (4.10, 2.58), "t7e_facm": (5.25, 4.24),
    "t7e_cu": (2.91, 2.20), "t7e_vu": (2.91, 2.15),
    "f7f_nu4": (2.86, 2.11),  # the other nu are plotted, not printed
    "t7h_ddpmpp": (2.86, 2.11), "t7h_ncsnpp": (2.94, 2.22),
    "t10_d": (3.02, 2.24), "t10_m": (2.94, 2.15), "t10_k": (2.91, 2.15), "t10_l": (2.86, 2.11),
    "t11_a_ect": (3.87, 2.84), "t11_b": (4.63, 3.09), "t11_c": (4.38, 3.09),
    "t11_d": (4.38, 3.05), "t11_e": (2.91, 2.20), "t11_f": (2.91, 2.19),
}


def list():  # noqa: A001 - the issue's public name
    """Names of all presets, in table order.

    Returns:
        A list of preset names (Table 2, Table 3, `ect_like`, `imm_like`,
        then the Table 7 variants `t7b_*` ... `t7j_*`).

    Example:

    >>> keras_gcm.presets.list()[:3]
    ['cu_a_baseline', 'cu_b', 'cu_c']
    """
    return [name for name in _PRESETS]


def match(patterns):
    """Preset names matching shell-style patterns, in table order, no repeats.

    Args:
        patterns: a name or pattern (`"t7b_*"`), or a list of them.

    Returns:
        A list of preset names.

    Example:

    >>> keras_gcm.presets.match(["cu_*", "gcm_cu"])
    ['cu_a_baseline', 'cu_b', 'cu_c', 'cu_d', 'cu_e', 'gcm_cu']
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    names = []
    for pattern in patterns:
        found = [n for n in _PRESETS if fnmatch.fnmatchcase(n, pattern)]
        if not found:
            raise ValueError(
                f"No preset matches {pattern!r}. Available: {', '.join(_PRESETS)}."
            )
        names.extend(n for n in found if n not in names)
    return names


def get(name):
    """The preset's data (a deep copy): component specs and plain values.

    Args:
        name: a preset name from `list()`.

    Returns:
        A dict of `ConsistencyModel` constructor arguments (component specs
        `[class_name, kwargs]` or plain values) and a `description`.

    Example:

    >>> keras_gcm.presets.get("gcm_cu")["loss"]
    ['TimeAwareMMD', {'group_size': 4, 'sigma': 0.05}]
    """
    if name not in _PRESETS:
        raise ValueError(f"Unknown preset {name!r}. Available: {', '.join(_PRESETS)}.")
    return copy.deepcopy(_PRESETS[name])


def describe(name):
    """One-line description of a preset, naming its table cell.

    Example:

    >>> keras_gcm.presets.describe("cu_d")
    'Table 2 D: C + Gamma loss weighting w(t) = t exp(-6 t)'
    """
    return get(name)["description"]


def paper_fid(name):
    """CIFAR-10 FIDs `(1-step, 2-step)` the paper reports for a preset's cell.

    Args:
        name: a preset name.

    Returns:
        A tuple of two floats, or None for presets with no table cell
        (`ect_like`, `imm_like`).

    Example:

    >>> keras_gcm.presets.paper_fid("gcm_cu")
    (2.91, 2.19)
    """
    get(name)
    return _PAPER_FID.get(name)


def time_inputs(name):
    """Number of time inputs the preset's network needs: 1 (CU) or 2 (VU).

    Example:

    >>> keras_gcm.presets.time_inputs("gcm_vu")
    2
    """
    sampler = get(name)["time_sampler"][0]
    cls = keras.saving.get_registered_object(f"keras_gcm>{sampler}")
    return 2 if getattr(cls, "variable_upper_limit", False) else 1
    return 2 if get(name)["time_sampler"][0] in ("VariableUpperLimit", "EqualTimeMixture") else 1


def build_component(spec):
    """Instantiates a `[class_name, kwargs]` spec (recursively).

    Anything that is not a spec (a float, a string, None) is returned as is.

    Args:
        spec: a `[class_name, kwargs]` pair naming a registered `keras_gcm`
            class, or a plain value.

    Returns:
        The object, or `spec` itself.

    Example:

    >>> dist = keras_gcm.presets.build_component(["SineTime", {"a": 1.0, "b": 0.01}])
    >>> type(dist).__name__, dist.a, dist.b
    ('SineTime', 1.0, 0.01)
    """
    if isinstance(spec, (builtins.list, tuple)) and len(spec) == 2 and isinstance(spec[0], str) \
            and isinstance(spec[1], dict):
        cls = keras.saving.get_registered_object(f"keras_gcm>{spec[0]}")
        if cls is None:
            raise ValueError(f"Unknown keras_gcm component {spec[0]!r}.")
        return cls(**{k: build_component(v) for k, v in spec[1].items()})
    return spec


def components(name):
    """Constructor arguments of `ConsistencyModel` for a preset.

    Args:
        name: a preset name.

    Returns:
        A dict of built components and plain values (no `description`).

    Example:

    >>> network = keras_gcm.networks.MLP(time_inputs=1)
    >>> kwargs = keras_gcm.presets.components("cu_a_baseline")
    >>> model = keras_gcm.ConsistencyModel(network, **kwargs)
    """
    preset = get(name)
    preset.pop("description")
    preset.pop("network", None)
    preset.pop("guidance", None)
    return {key: build_component(value) for key, value in preset.items()}


def network_kind(name):
    """The network a preset's table cell uses: "ddpmpp" (default) or "ncsnpp".

    A preset configures the `ConsistencyModel`; the network is built by the
    caller (`keras_gcm.networks.SongUNet.ddpmpp()` / `.ncsnpp()`), so Table
    7h's rows differ only in this name.

    Example:

    >>> keras_gcm.presets.network_kind("t7h_ncsnpp")
    'ncsnpp'
    """
    return get(name).get("network", "ddpmpp")
    preset.pop("guidance", None)
    return {key: build_component(value) for key, value in preset.items()}


def guidance(name):
    """Classifier-free-guidance arguments of a preset (empty for most presets).

    The Table 6b presets carry MeanFlow's training-time guidance for their
    network size (`label_dropout`, `model_guidance`, `model_guidance_kappa`,
    `model_guidance_interval`); `ConsistencyModel.from_preset` passes them
    when the network is class-conditional.

    Args:
        name: a preset name.

    Returns:
        A dict of `ConsistencyModel` keyword arguments.

    Example:

    >>> keras_gcm.presets.guidance("imagenet256_vu_dit_b4")["model_guidance"]
    3.0
    """
    value = get(name).get("guidance") or {}
    return {k: (tuple(v) if isinstance(v, builtins.list) else v) for k, v in value.items()}
