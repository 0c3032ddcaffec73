"""Presets: the paper's ablation rows as data.

A preset is a plain dict mapping `ConsistencyModel` constructor arguments to
component specs `[class_name, kwargs]` (nested specs allowed) or plain values.
`components(name)` turns one into objects; `ConsistencyModel.from_preset`
builds the model.

Table 2 (CU), cumulative: A baseline -> B + exponential h -> C + exponential
c(t) -> D + Gamma weight -> E + sine t-sampling -> F (`gcm_cu`) + time-aware
MMD. Table 3 (VU): G = A + uniform-power s-sampling, then H..K as B..E and L
(`gcm_vu`) + time-aware MMD.
"""

import builtins
import copy

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
    "description": "Table 2 A: naive baseline (constant h, c(t)=t, w=1, uniform t, s=t0, Eq. 40 loss)",
    "step": _spec("ConstantStep"),
    "conditioning": _spec("IdentityTime"),
    "weighting": _spec("ConstantWeight"),
    "time_sampler": _cu(_UNIFORM),
    "loss": _spec("ConsistencyLoss", form="eq40"),
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
    "Table 7b/7c: ECT's discretisation (Eq. 28) on D, with c(t) = 1000 t",
    step=_spec("ECTStep"), conditioning=_spec("LinearTime", scale=1000.0),
)
_PRESETS["imm_like"] = _then(
    _PRESETS["cu_d"],
    "Table 7b/7c: IMM's discretisation (Eq. 29) and c(t) = 1000 t on D",
    step=_spec("IMMStep"), conditioning=_spec("LinearTime", scale=1000.0),
)


def list():  # noqa: A001 - the issue's public name
    """Names of all presets.

    Example:

    >>> keras_gcm.presets.list()[:3]
    ['cu_a_baseline', 'cu_b', 'cu_c']
    """
    return [name for name in _PRESETS]


def get(name):
    """The preset's data (a deep copy): component specs and plain values.

    Example:

    >>> keras_gcm.presets.get("gcm_cu")["loss"]
    ['TimeAwareMMD', {'group_size': 4, 'sigma': 0.05}]
    """
    if name not in _PRESETS:
        raise ValueError(f"Unknown preset {name!r}. Available: {', '.join(_PRESETS)}.")
    return copy.deepcopy(_PRESETS[name])


def describe(name):
    """One-line description of a preset."""
    return get(name)["description"]


def time_inputs(name):
    """Number of time inputs the preset's network needs: 1 (CU) or 2 (VU).

    Example:

    >>> keras_gcm.presets.time_inputs("gcm_vu")
    2
    """
    return 2 if get(name)["time_sampler"][0] == "VariableUpperLimit" else 1


def build_component(spec):
    """Instantiates a `[class_name, kwargs]` spec (recursively).

    Example:

    >>> build_component(["SineTime", {"a": 1.0, "b": 0.01}])
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

    Example:

    >>> kwargs = keras_gcm.presets.components("cu_a_baseline")
    >>> model = keras_gcm.ConsistencyModel(network, **kwargs)
    """
    preset = get(name)
    preset.pop("description")
    return {key: build_component(value) for key, value in preset.items()}
