"""Presets: the paper's table cells as data (Tables 2, 3 and 7)."""

import json
import math

import numpy as np
import pytest
from scipy.integrate import quad

import keras

import keras_gcm
from keras_gcm import ConsistencyModel
from keras_gcm import presets
from keras_gcm import schedules as S
from keras_gcm.networks import MLP
from tests.helpers import roundtrip, to_numpy

TABLE_2 = ["cu_a_baseline", "cu_b", "cu_c", "cu_d", "cu_e", "gcm_cu"]
TABLE_3 = ["vu_g_baseline", "vu_h", "vu_i", "vu_j", "vu_k", "gcm_vu"]

# Table 7 cells that are another preset's row (the paper's numbers identify them).
ALIASES = {
    "t7c_identity": "cu_b",
    "t7c_exponential": "cu_c",
    "t7d_no_curriculum": "vu_k",
    "t7g_sine_b0_01": "cu_e",
    "t7i_no_mmd": "vu_k",
    "t7i_time_aware_mmd": "gcm_vu",
    "t7j_finite_difference": "vu_k",
    "t7e_cu": "cu_e",
    "t7e_vu": "vu_k",
    "f7f_nu4": "gcm_vu",
    "t7h_ddpmpp": "gcm_vu",
    "t10_d": "cu_d",
    "t10_m": "vu_j",
    "t10_k": "vu_k",
    "t10_l": "gcm_vu",
    "t11_e": "cu_e",
    "t11_f": "gcm_cu",
}


def _data(name):
    preset = presets.get(name)
    preset.pop("description")
    return preset


def _distinct_presets():
    seen, names = [], []
    for name in presets.list():
        data = _data(name)
        if data not in seen:
            seen.append(data)
            names.append(name)
    return names


def _tiny_network(name, seed=0):
    return MLP(hidden_units=8, num_blocks=1, embedding_dim=8,
               time_inputs=presets.time_inputs(name), seed=seed)


# ------------------------------------------------------------------ training
@pytest.mark.parametrize("name", _distinct_presets())
def test_every_preset_trains_for_two_steps(name):
    model = ConsistencyModel.from_preset(name, _tiny_network(name), seed=0)
    # Eager steps: 33 distinct presets x 3 backends must stay cheap; the
    # compiled steps are covered by tests/test_consistency_model.py.
    model.compile(optimizer=keras_gcm.optimizers.RAdam(1e-2), run_eagerly=True)
    model.build((None, 2))
    before = [to_numpy(v).copy() for v in model.network.trainable_variables]
    history = model.fit(keras_gcm.data.toy2d("two_moons", 16, seed=0), batch_size=8,
                        epochs=1, shuffle=False, verbose=0).history
    assert np.all(np.isfinite(history["loss"])) and history["loss"][0] > 0
    assert 0 < history["mean_h"][0] < 0.5
    assert int(to_numpy(model.optimizer.iterations)) == 2
    assert int(to_numpy(model.ema_updates)) == 2
    after = [to_numpy(v) for v in model.network.trainable_variables]
    # The output layer starts at zero: two steps must have moved it.
    assert not np.allclose(after[-2], before[-2])


def test_aliases_are_exactly_the_rows_the_paper_numbers_identify():
    for alias, row in ALIASES.items():
        assert _data(alias) == _data(row), alias
        assert presets.paper_fid(alias) is not None
    # The rest of the list is pairwise distinct.
    assert len(_distinct_presets()) == len(presets.list()) - len(ALIASES)
    # The numbers that identify the rows (Table 2/3 vs Table 7).
    assert presets.paper_fid("t7c_identity")[0] == presets.paper_fid("cu_b")[0]
    assert presets.paper_fid("t7c_exponential") == presets.paper_fid("cu_c")
    assert presets.paper_fid("t7g_uniform") == presets.paper_fid("cu_d")
    assert presets.paper_fid("t7g_sine_b0_01") == presets.paper_fid("cu_e")
    assert presets.paper_fid("t7d_no_curriculum") == presets.paper_fid("vu_k")
    assert presets.paper_fid("t7i_time_aware_mmd") == presets.paper_fid("gcm_vu")


# ------------------------------------------------------- the paper's values
def _changed_keys(a, b):
    da, db = _data(a), _data(b)
    return {k for k in set(da) | set(db) if da.get(k) != db.get(k)}


def test_tables_2_and_3_add_one_module_per_row():
    steps = [set(), {"step"}, {"conditioning"}, {"weighting"},
             {"time_sampler", "importance_weighting"}, {"loss"}]
    for table in (TABLE_2, TABLE_3):
        for prev, row, expected in zip(table[:-1], table[1:], steps[1:]):
            assert _changed_keys(prev, row) == expected, (prev, row)
    # G is A plus the uniform-power s-sampling, and nothing else.
    assert _changed_keys("cu_a_baseline", "vu_g_baseline") == {"time_sampler"}
    for cu, vu in zip(TABLE_2[1:-1], TABLE_3[1:-1]):
        assert _changed_keys(cu, vu) == {"time_sampler"}, (cu, vu)


def test_table_2_and_3_components_have_the_papers_values():
    a = presets.components("cu_a_baseline")
    assert isinstance(a["step"], S.ConstantStep)
    assert a["step"].epsilon == pytest.approx(0.005 / 3)
    assert isinstance(a["conditioning"], S.IdentityTime)
    assert isinstance(a["weighting"], keras_gcm.weighting.ConstantWeight)
    assert isinstance(a["time_sampler"], keras_gcm.time_sampling.ConstantUpperLimit)
    assert isinstance(a["time_sampler"].t_dist, keras_gcm.time_sampling.UniformTime)
    assert (a["time_sampler"].t0, a["time_sampler"].tT) == (0.006, 0.994)
    # Appendix G.1: the particle loss is implemented as Eq. 39.
    assert type(a["loss"]) is keras_gcm.losses.ConsistencyLoss and a["loss"].form == "eq39"
    assert a["importance_weighting"] is False

    f = presets.components("gcm_cu")
    assert isinstance(f["step"], S.ExponentialStep)
    assert (f["step"].epsilon, f["step"].mu) == (0.005, 3.5)
    assert isinstance(f["conditioning"], S.ExponentialTime) and f["conditioning"].mu == 3.5
    assert (f["weighting"].gamma, f["weighting"].lam) == (1.0, 6.0)
    sine = f["time_sampler"].t_dist
    assert isinstance(sine, keras_gcm.time_sampling.SineTime) and (sine.a, sine.b) == (1.0, 0.01)
    assert f["importance_weighting"] is True
    assert (f["loss"].group_size, f["loss"].sigma, f["loss"].shared_time) == (4, 0.05, False)

    g = presets.components("vu_g_baseline")["time_sampler"]
    assert isinstance(g, keras_gcm.time_sampling.VariableUpperLimit)
    assert g.s_dist.nu == 4.0 and g.order == "s_first"
    assert isinstance(g.t_dist, keras_gcm.time_sampling.UniformTime)
    loss = presets.components("gcm_vu")["loss"]
    assert (loss.group_size, loss.sigma, loss.shared_time) == (2, 0.1, False)

    # The GCM rows are the model's defaults (Table 1).
    for name, vu in (("gcm_cu", False), ("gcm_vu", True)):
        net = MLP(hidden_units=8, num_blocks=1, embedding_dim=8, time_inputs=2 if vu else 1)
        default = ConsistencyModel(net).get_config()
        preset = ConsistencyModel.from_preset(name, net).get_config()
        for key in ("step", "conditioning", "weighting", "time_sampler", "loss",
                    "importance_weighting", "jvp", "curriculum"):
            assert _strip_names(preset[key]) == _strip_names(default[key]), (name, key)


def _strip_names(config):
    """A serialised config without the auto-generated layer names."""
    if isinstance(config, dict):
        return {k: _strip_names(v) for k, v in config.items() if k not in ("name",)}
    if isinstance(config, list):
        return [_strip_names(v) for v in config]
    return config


T7B_FORMS = {  # preset -> (class, h(t) / epsilon as in appendix C.3)
    "t7b_constant": (S.ConstantStep, lambda t: 1.0 + 0 * t),
    "t7b_linear_decrease": (S.LinearDecreasingStep, lambda t: 1 - t),
    "t7b_quadratic_decrease": (S.QuadraticDecreasingStep, lambda t: (1 - t) ** 2),
    "t7b_cubic_decrease": (S.CubicDecreasingStep, lambda t: (1 - t) ** 3),
    "t7b_quadratic_increase": (S.QuadraticIncreasingStep, lambda t: t ** 2),
    "t7b_quadratic_concave": (S.QuadraticConcaveStep, lambda t: t * (1 - t)),
    "t7b_quadratic_convex": (S.QuadraticConvexStep, lambda t: (0.5 - t) ** 2),
    "t7b_exponential_decrease": (S.ExponentialStep, lambda t: np.exp(-3.5 * t)),
    "t7b_edm": (S.EDMStep, None),
    "t7b_ect": (S.ECTStep, None),
    "t7b_imm": (S.IMMStep, None),
}


@pytest.mark.parametrize("name", sorted(T7B_FORMS))
def test_table_7b_steps_share_the_baseline_integral_on_row_d(name):
    cls, shape = T7B_FORMS[name]
    assert _changed_keys("cu_d", name) == {"step"}
    step = presets.components(name)["step"]
    assert type(step) is cls
    # Fig. 7a: every h(t) integrates to the baseline's 0.005 / 3 over [0, 1].
    grid = np.linspace(0.0, 1.0, 2001)
    h = to_numpy(step(grid.astype("float32"))).astype("float64")
    if shape is not None:
        np.testing.assert_allclose(h, step.epsilon * shape(grid), rtol=1e-4, atol=1e-9)
        integral = quad(lambda t: step.epsilon * shape(t), 0.0, 1.0)[0]
    else:  # EDM / ECT / IMM: trapezoid on the layer's own values
        integral = np.trapezoid(np.nan_to_num(h[:-1]), grid[:-1])
    assert integral == pytest.approx(0.005 / 3, rel=2e-3)


def test_table_7b_exponential_row_is_normalised_while_d_keeps_the_default():
    eps = presets.EXPONENTIAL_EQUAL_INTEGRAL_EPSILON
    assert eps * (1 - math.exp(-3.5)) / 3.5 == pytest.approx(0.005 / 3, rel=1e-12)
    assert eps == pytest.approx(0.006015, abs=1e-6)
    assert presets.components("cu_d")["step"].epsilon == 0.005


def test_table_7c_7d_7g_7i_7j_change_one_module_on_their_row():
    assert _changed_keys("cu_b", "t7c_linear_1000") == {"conditioning"}
    assert presets.components("t7c_linear_1000")["conditioning"].scale == 1000.0

    assert _changed_keys("vu_k", "t7d_curriculum") == {"curriculum"}
    cur = presets.components("t7d_curriculum")["curriculum"]
    assert (cur.initial_epsilon, cur.halve_every) == (0.5, 50_000)
    # Appendix G.1: 7 halvings by 350K of the paper's 400K iterations, no
    # floor at the configured step 0.005: 0.5 / 2^7 = 0.0039 (floor=False).
    assert cur.floor is False
    assert float(to_numpy(cur.epsilon(100_000, 0.005))) == pytest.approx(0.125)
    assert float(to_numpy(cur.epsilon(350_000, 0.005))) == pytest.approx(0.00390625)

    expected_7g = {
        "t7g_uniform": ("UniformTime", {}),
        "t7g_sine_b0_1": ("SineTime", {"a": 1.0, "b": 0.1}),
        "t7g_sine_b0_01": ("SineTime", {"a": 1.0, "b": 0.01}),
        "t7g_sine_b0_001": ("SineTime", {"a": 1.0, "b": 0.001}),
        "t7g_cosh_a1_5_b0": ("CoshTime", {"a": 1.5, "b": 0.0}),
    }
    for name, (cls, params) in expected_7g.items():
        assert _changed_keys("cu_d", name) <= {"time_sampler", "importance_weighting"}
        dist = presets.components(name)["time_sampler"].t_dist
        assert type(dist).__name__ == cls
        for key, value in params.items():
            assert getattr(dist, key) == value
        assert presets.get(name)["importance_weighting"] is True
        # A proper density on [0, 1] that grows towards the noise end.
        q = np.linspace(0.0, 1.0, 4001)
        p = to_numpy(dist.pdf(q.astype("float32"))).astype("float64")
        assert np.trapezoid(p, q) == pytest.approx(1.0, abs=1e-3)
        assert np.all(np.diff(p) >= -1e-6)

    shared = presets.components("t7i_shared_time_mmd")["loss"]
    assert (shared.group_size, shared.sigma, shared.shared_time) == (2, None, True)
    assert _changed_keys("vu_k", "t7i_shared_time_mmd") == {"loss"}
    assert _changed_keys("vu_k", "t7j_analytic") == {"jvp"}
    assert presets.get("t7j_analytic")["loss"][1].get("group_size", 1) == 1


def test_ect_and_imm_like_use_their_discretisation_and_conditioning():
    ect = presets.components("ect_like")
    assert isinstance(ect["step"], S.ECTStep)
    assert isinstance(ect["conditioning"], S.LogSigmaTime)
    imm = presets.components("imm_like")
    assert isinstance(imm["step"], S.IMMStep)
    assert isinstance(imm["conditioning"], S.LinearTime) and imm["conditioning"].scale == 1000.0
    assert _changed_keys("cu_d", "ect_like") == {"step", "conditioning"}


def test_every_description_names_a_table_cell():
    for name in presets.list():
        text = presets.describe(name)
        assert "Table" in text or "Fig. 7f" in text, name
        if name.startswith("t7"):
            assert f"Table 7{name[2]}" in text, name


# ------------------------------------------------------------- round trips
@pytest.mark.parametrize("name", _distinct_presets())
def test_preset_model_config_round_trips(name):
    model = ConsistencyModel.from_preset(name, _tiny_network(name))
    config = model.get_config()
    json.dumps(keras.saving.serialize_keras_object(model))  # JSON-safe
    rebuilt = ConsistencyModel.from_config(config)
    assert rebuilt.get_config() == config
    for key in ("step", "conditioning", "weighting", "time_sampler", "loss", "curriculum"):
        spec = presets.get(name).get(key)
        built = getattr(rebuilt, "consistency_loss" if key == "loss" else key)
        if spec is None:
            assert built is None
        else:
            assert type(built).__name__ == spec[0], (name, key)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert again.get_config() == config


def test_from_preset_overrides_and_errors():
    model = ConsistencyModel.from_preset(
        "t7d_curriculum", _tiny_network("t7d_curriculum"), curriculum=None, ema_decay=0.9)
    assert model.curriculum is None and model.ema_decay == 0.9
    with pytest.raises(ValueError, match="Unknown preset"):
        presets.get("cu_z")
    with pytest.raises(ValueError, match="No preset matches"):
        presets.match("t9*")
    with pytest.raises(ValueError, match="Unknown keras_gcm component"):
        presets.build_component(["NoSuchStep", {}])


def test_match_selects_table_rows_in_order():
    assert presets.match("cu_*") == TABLE_2[:-1]
    assert presets.match(["gcm_cu", "cu_a_baseline", "gcm_cu"]) == ["gcm_cu", "cu_a_baseline"]
    assert len(presets.match("t7b_*")) == 11
    assert presets.match("t7g_*")[0] == "t7g_uniform"


# ------------------------------------------------ ECT's time conditioning
def test_log_sigma_time_is_edm_c_noise_in_flow_matching_time():
    c = S.LogSigmaTime()
    t = np.linspace(0.006, 0.994, 50)
    sigma = 0.5 * np.tan(np.pi * t / 2)  # Eq. 24
    np.testing.assert_allclose(to_numpy(c(t.astype("float32"))), np.log(sigma) / 4,
                               rtol=1e-5, atol=2e-6)
    assert float(to_numpy(c(np.float32([0.5]))[0])) == pytest.approx(math.log(0.5) / 4, abs=1e-6)
    # Finite at the ends.
    assert np.all(np.isfinite(to_numpy(c(np.float32([0.0, 1.0])))))
    clone = roundtrip(c)
    assert (clone.sigma_data, clone.scale) == (0.5, 0.25)
    with pytest.raises(ValueError, match="sigma_data"):
        S.LogSigmaTime(sigma_data=0.0)


def test_log_sigma_time_sees_ects_step_as_its_sigma_ratio():
    """Under c(t) = ln(sigma)/4 the perceived ECT step is -ln(sigma_r / sigma_t)/4,
    with sigma_r / sigma_t = 1 - eps (1 + k / (1 + exp(b sigma_t))) (Eq. 25)."""
    c, step = S.LogSigmaTime(), S.ECTStep()
    t = np.linspace(0.05, 0.95, 19).astype("float32")
    r = t - to_numpy(step(t))
    perceived = to_numpy(c(t)).astype("float64") - to_numpy(c(r)).astype("float64")
    sigma_t = 0.5 * np.tan(np.pi * t.astype("float64") / 2)
    ratio = 1 - step.epsilon * (1 + 8 / (1 + np.exp(1.0 * sigma_t)))
    np.testing.assert_allclose(perceived, -np.log(ratio) / 4, rtol=2e-2)
