"""Rules as objects, their features, calibration, the protocol's statistics, the paper's table."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from threeregime.analysis.calibrate import (
    calibrate,
    measured_directions,
    paired_direction_test,
    score_directions,
    sign_test,
    table_directions,
    wilson_interval,
)
from threeregime.analysis.features import read_table
from threeregime.analysis.rules import (
    DEFAULT_RULE,
    REASONS,
    RULES,
    Rule,
    advice_of,
    classify_cell_with_rule,
    classify_with_rule,
    get_rule,
    label_names,
)
from threeregime.analysis.validation import validate_advice
from threeregime.errors import SpecError

DATA = Path(__file__).parent / "data"
TABLE = DATA / "zhou2023_figure2_partial.csv"


def step_rule(**th) -> Rule:
    return Rule("t", "step", {"z_barrier": 2.0, "z_step": 3.0, "z_cka": 2.0, **th})


def means_table(lmc, cka, test_error=None) -> xr.Dataset:
    """Means-only Dataset over (density, epochs), epochs hotter = fewer."""
    lmc, cka = np.asarray(lmc, float), np.asarray(cka, float)
    te = np.full(lmc.shape, 0.1) if test_error is None else np.asarray(test_error, float)
    n_d, n_e = lmc.shape
    dims = ("density", "epochs")
    return xr.Dataset(
        {"lmc": (dims, lmc), "cka": (dims, cka), "test_error": (dims, te),
         "lmc_sem": (dims, np.full(lmc.shape, 0.01)), "cka_sem": (dims, np.full(lmc.shape,
                                                                               0.002))},
        coords={"density": ("density", np.linspace(0.1, 0.8, n_d), {"role": "load"}),
                "epochs": ("epochs", np.arange(1, n_e + 1) * 10,
                           {"role": "temperature", "hotter": "decreasing"})},
        attrs={"num_classes": 10})


def results_ds(lmc, cka, te, tr=None, rng=None) -> xr.Dataset:
    """Results Dataset with replicate dims from (epochs, density, dense_seed, pair) arrays."""
    lmc, cka, te = (np.asarray(a, float) for a in (lmc, cka, te))
    tr = te if tr is None else np.asarray(tr, float)
    n_e, n_d, n_s, n_p = lmc.shape
    return xr.Dataset(
        {"lmc": (("epochs", "density", "dense_seed", "pair"), lmc),
         "cka": (("epochs", "density", "dense_seed", "pair"), cka),
         "test_error": (("epochs", "density", "dense_seed", "retrain_seed"), te),
         "train_error": (("epochs", "density", "dense_seed", "retrain_seed"), tr),
         "status": (("epochs", "density", "dense_seed"), np.zeros((n_e, n_d, n_s), np.int8))},
        coords={"epochs": ("epochs", np.arange(1, n_e + 1) * 5,
                           {"role": "temperature", "hotter": "decreasing"}),
                "density": ("density", np.linspace(0.05, 0.5, n_d), {"role": "load"}),
                "dense_seed": np.arange(n_s), "pair": np.arange(n_p),
                "retrain_seed": np.arange(te.shape[-1])},
        attrs={"num_classes": 10})


# --------------------------------------------------------------------------- Rule objects
def test_rule_round_trips_json_yaml_dict(tmp_path):
    r = get_rule("paper_step")
    assert Rule.from_json(r.to_json()) == r
    assert Rule.from_dict(r.to_dict()) == r
    path = tmp_path / "r.yaml"
    r.dump_yaml(path)
    back = Rule.load_yaml(path)
    assert back == r and back.thresholds["z_barrier"] == r.thresholds["z_barrier"]
    assert "lmc_z" in r.features and "step_cold" in r.features


@pytest.mark.parametrize("kwargs, needle", [
    (dict(name="x", family="stepp", thresholds={}), "rule.family must be one of step, level"),
    (dict(name="x", family="step", thresholds={"z_barrier": -1, "z_step": 1, "z_cka": 1}),
     "rule.thresholds.z_barrier must be a number in [0, inf]; got -1"),
    (dict(name="x", family="step", thresholds={"z_barier": 1, "z_step": 1, "z_cka": 1}),
     "did you mean 'z_barrier'"),
    (dict(name="x", family="step", thresholds={"z_barrier": 1}),
     "missing z_step, z_cka"),
    (dict(name="x", family="step", thresholds={"z_barrier": 1, "z_step": 1, "z_cka": 1},
          settings={"scope": "grid"}), "rule.settings.scope must be one of joint, column"),
])
def test_bad_rule_input_is_one_line_naming_field_value_allowed(kwargs, needle):
    with pytest.raises(SpecError) as e:
        Rule(**kwargs)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_get_rule_unknown_name_and_default_is_shipped():
    assert DEFAULT_RULE in RULES and get_rule() is RULES[DEFAULT_RULE]
    with pytest.raises(SpecError, match="did you mean 'paper_step'"):
        get_rule("paper_stp")
    for r in RULES.values():  # provenance and held-out scores ship with every rule
        assert r.provenance["calibrated_on"] and r.scores["held_out_n"] > 0


# --------------------------------------------------------------------------- statistics
def test_wilson_interval_hand_values():
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 20)[0] == 0.0
    assert wilson_interval(20, 20)[1] == 1.0
    assert np.isnan(wilson_interval(0, 0)[0])


def test_sign_test_hand_values():
    assert sign_test(9, 1) == pytest.approx(22 / 1024)
    assert sign_test(10, 0) == pytest.approx(2 / 1024)
    assert sign_test(5, 5) == 1.0 and sign_test(0, 0) == 1.0
    assert sign_test(3, 1) == pytest.approx(2 * 5 / 16)


def test_paired_t_test_hand_value():
    # d = [1, 1, 1, 2]: mean 1.25, sd 0.5, t = 5 on 3 df -> two-sided p = 0.01539
    d, p, n = paired_direction_test([1, 2, 3, 4], [2, 3, 4, 6])
    assert (d, n) == (1.25, 4) and p == pytest.approx(0.015392, abs=1e-5)
    assert np.isnan(paired_direction_test([1, 2], [2, 3])[1])  # too few blocks


def test_score_directions_counts_and_naive():
    s = score_directions(["hotter", "keep", None, "colder"], ["hotter", "colder", "keep", ""])
    assert (s["k"], s["n"]) == (1, 3) and s["coverage"] == pytest.approx(2 / 3)
    assert s["naive"]["keep"]["k"] == 1 and s["naive"]["hotter"]["wins"] == 0


# --------------------------------------------------------------------------- directions
def test_table_directions_margin_and_edges():
    te = np.array([[0.20, 0.15, 0.16, 0.30, 0.305]])
    t = means_table(np.zeros_like(te), np.ones_like(te), te)
    d = table_directions(t).values[0]
    # edge 10: colder neighbour better by 0.05 -> colder; 30: 0.01 better is not MORE than the
    # margin -> keep; 50 (edge): its neighbour is not better -> not scored
    assert list(d) == ["colder", "keep", "keep", "hotter", ""]
    assert table_directions(t, margin=0.2).values[0, 3] == "keep"


def test_measured_directions_paired_test_finds_planted_better_neighbour():
    rng = np.random.default_rng(0)
    n_e, n_s, n_r = 4, 3, 3
    base = np.array([0.30, 0.20, 0.20, 0.20])[:, None, None, None]
    te = base + 0.001 * rng.standard_normal((1, 1, n_s, n_r))  # block effects, shared
    te[0] += 0.002 * rng.standard_normal((1, n_s, n_r))
    ds = results_ds(np.zeros((n_e, 1, n_s, 3)), np.ones((n_e, 1, n_s, 3)), te)
    d = measured_directions(ds).values[:, 0]
    assert d[0] == "colder" and d[1] == "keep" and d[2] == "keep" and d[3] == ""


def _best_sweep(status_row=None):
    """epochs 5 (hottest) .. 20 with mean test errors 0.30, 0.20, 0.26, 0.40 (best: 10)."""
    rng = np.random.default_rng(1)
    base = np.array([0.30, 0.20, 0.26, 0.40])[:, None, None, None]
    te = base + 0.001 * rng.standard_normal((4, 1, 4, 3))
    ds = results_ds(np.zeros((4, 1, 4, 3)), np.ones((4, 1, 4, 3)), te)
    if status_row is not None:
        ds["status"][status_row] = 2
    return ds


def test_measured_directions_towards_best_margin_status_and_validation_agree():
    ds = _best_sweep()
    d = measured_directions(ds, against="best").values[:, 0]
    assert list(d) == ["colder", "keep", "hotter", "hotter"]
    # 0.26 - 0.20 is inside a margin of 0.07, 0.10 is not
    d = measured_directions(ds, against="best", margin=0.07).values[:, 0]
    assert list(d) == ["colder", "keep", "keep", "hotter"]
    # without the hotter attr the axis table says epochs are hotter when fewer: same truth
    bare = ds.assign_coords(epochs=("epochs", ds["epochs"].values, {"role": "temperature"}))
    assert list(measured_directions(bare, against="best").values[:, 0]) == [
        "colder", "keep", "hotter", "hotter"]
    # a failed row is not scored and cannot be the best
    d = measured_directions(_best_sweep(status_row=1), against="best").values[:, 0]
    assert list(d) == ["colder", "", "keep", "hotter"]
    # validate_advice reads its truth from the same scorer
    cells = validate_advice(ds, rule="paper_step")["cells"]
    assert [c["truth"] for c in cells] == ["colder", "keep", "hotter", "hotter"]
    with pytest.raises(SpecError, match="against must be one of neighbour, best; got 'bset'"):
        measured_directions(ds, against="bset")


# --------------------------------------------------------------------------- classification
def _step_grid(cka_hi):
    """Column 0: barrier jumps at the 5th temperature; column 1: connected, CKA per arg."""
    lmc = np.zeros((2, 8))
    lmc[0, 4:] = -0.5
    cka = np.full((2, 8), 0.95)
    cka[1, 4:] = cka_hi
    return means_table(lmc, cka)


def test_step_rule_orders_II_A_hot_II_B_cold_and_marks_unresolved():
    out = classify_with_rule(_step_grid(0.99), step_rule())
    names = label_names(out["regime"].transpose("density", "epochs").values)
    assert list(names[0]) == ["II-A"] * 4 + ["I"] * 4
    assert list(names[1]) == ["II-A"] * 4 + ["II-B"] * 4
    # the same grid with the cold side's CKA within its noise: unresolved, its own flag
    out = classify_with_rule(_step_grid(0.9505), step_rule())
    codes = out["regime"].transpose("density", "epochs").values
    assert list(codes[1, 4:]) == [3] * 4 and 3 in out["regime"].attrs["flag_values"]
    assert "regime_II_unresolved" in out["regime"].attrs["flag_meanings"]
    both = Rule("t", "step", step_rule().thresholds, {"unresolved_side": "both"})
    codes = classify_with_rule(_step_grid(0.9505), both)["regime"].transpose(
        "density", "epochs").values
    assert (codes[1] == 3).all()


def test_collapsed_and_near_chance_cells_are_never_II_B():
    n_e, n_d, n_s = 4, 1, 2
    lmc = np.zeros((n_e, n_d, n_s, 3))
    cka = np.full((n_e, n_d, n_s, 3), 0.95) + np.linspace(0, 0.04, n_e)[:, None, None, None]
    cka[3] = 0.9999  # the collapsed cell looks perfectly connected and similar
    te = np.full((n_e, n_d, n_s, 3), 0.10)
    te[3] = 0.85  # train error 0.85 >= 0.9 x chance (0.81)
    tr = te.copy()
    out = classify_with_rule(results_ds(lmc, cka, te, tr), step_rule())
    assert int(out["regime"].values[3, 0]) == -1
    assert int(out["undetermined_reason"].values[3, 0]) == REASONS["near_chance"]
    tr[3] = 0.10  # trains fine but tests far above the column's best: collapsed
    out = classify_with_rule(results_ds(lmc, cka, te, tr), step_rule())
    assert int(out["undetermined_reason"].values[3, 0]) == REASONS["collapsed"]
    assert 2 not in out["regime"].values[3]


def test_confidence_comes_from_dense_seeds():
    n_e, n_s = 4, 3
    lmc = np.zeros((n_e, 1, n_s, 3))
    lmc[2:, :, :, :] = -0.3
    # at the second temperature two dense seeds see a barrier, the third hardly: the mean is
    # significant over dense seeds (t = -2.6 on 2 dof), the third seed alone is not
    lmc[1, :, :2, :] = -0.3
    lmc[1, :, 2, :] = -0.05
    cka = np.full((n_e, 1, n_s, 3), 0.95)
    te = np.full((n_e, 1, n_s, 3), 0.1)
    rule = Rule("t", "level", {"z_barrier": 2.0, "barrier_chance": 0.0, "z_cka": 2.0})
    out = classify_with_rule(results_ds(lmc, cka, te), rule)
    assert out["regime_uncertain"].values[1, 0] == 1
    assert out["regime_confidence"].values[1, 0] == pytest.approx(2 / 3)
    assert out["regime_uncertain"].values[3, 0] == 0
    assert out["regime_confidence"].values[3, 0] == 1.0


def test_single_cell_variant():
    r = get_rule()
    one = classify_cell_with_rule([-0.3, -0.32, -0.28], rule=r)
    assert one["regime"] == "I" and one["advice"] == "hotter"
    two = classify_cell_with_rule([0.0, -0.001], cka=[0.99, 0.98], rule=r)
    assert two["regime"] == "II-unresolved" and two["advice"] == "keep"
    assert "unresolved without a column" in two["variant"]
    dead = classify_cell_with_rule([0.0], train_error=0.89, rule=r)
    assert dead["regime"] == "undetermined" and dead["reason"] == "near_chance"


def test_classify_with_rule_on_a_real_sweep_has_the_regime_variables():
    ds = xr.open_dataset(DATA / "quick_dense_seeds234.nc")
    out = classify_with_rule(ds, get_rule())
    for v in ("regime", "regime_confidence", "regime_uncertain", "lmc_mean", "lmc_sem",
              "cka_mean", "cka_sem", "n_valid_pairs", "undetermined_reason"):
        assert out[v].dims == ("epochs", "density") or set(out[v].dims) == {"epochs",
                                                                           "density"}
    assert out["regime"].dtype == np.int8
    assert Rule.from_json(out.attrs["regime_rule"]) == get_rule()
    assert np.isfinite(out["regime_confidence"].values).all()  # three dense seeds


# --------------------------------------------------------------------------- calibration
def test_calibrate_recovers_a_planted_threshold():
    rng = np.random.default_rng(1)
    lmc = -rng.uniform(0, 0.1, size=(4, 12))
    t = means_table(lmc, np.full(lmc.shape, 0.95))
    z = lmc / 0.01
    truth = xr.DataArray(np.where(z < -3.7, "hotter", "keep"), dims=("density", "epochs"))
    rule = Rule("t", "level", {"z_barrier": 0.5, "barrier_chance": 0.0, "z_cka": 2.0})
    groups = t["density"].broadcast_like(t["lmc"]).transpose("density", "epochs")
    fitted = calibrate(t, truth, rule, target="directions", groups=groups,
                       fit=("z_barrier",))
    zs = np.sort(-z.ravel())
    gap = zs[zs > 3.7].min() - zs[zs < 3.7].max()
    assert abs(fitted.thresholds["z_barrier"] - 3.7) < gap
    assert fitted.scores["held_out_n"] == lmc.size
    assert fitted.scores["held_out_accuracy"] > 0.9
    assert set(fitted.scores["per_group"]) == {f"data:{d}" for d in t["density"].values}


# --------------------------------------------------------------------------- the paper's table
def test_paper_table_regions_held_out():
    """Thresholds fitted leave-one-column-out; the drawn regions reproduced on held-out cells.

    Advice: the pre-registered truth (margin 0.01) is ``keep`` in 69 of 70 scored cells, so a
    rule reproducing the drawing cannot reach 75 %: the drawn regions themselves score 18/70.
    The test asserts what is reached and that bound.
    """
    t = read_table(TABLE).transpose("density", "epochs")
    drawn = t["regime_drawn"].values.astype(object)
    base = Rule("paper_step", "step", {"z_barrier": 2.0, "z_step": 3.0, "z_cka": 1.0})
    groups = t["density"].broadcast_like(t["lmc"]).astype(str)
    fitted = calibrate(t, t["regime_drawn"], base, target="regions", groups=groups)
    labels = np.empty(drawn.shape, dtype=object)
    for i, d in enumerate(t["density"].values):
        th = fitted.scores["per_group"][f"data:{d}"]["thresholds"]
        out = classify_with_rule(t, base.replace(thresholds=th))
        labels[i] = label_names(out["regime"].transpose("density", "epochs").values[i])
    regions = (labels == drawn).mean()
    one_two = ((labels == "I") == (drawn == "I")).mean()
    # the goals of issue 18 (90 % of the drawn regions, 95 % I vs II on unseen columns), not
    # bounds read off the observed figures
    assert regions >= 0.90 and one_two >= 0.95
    assert fitted.scores["held_out_accuracy"] == pytest.approx(regions)
    truth = table_directions(t).values
    adv = score_directions(advice_of(labels), truth)
    ref = score_directions(advice_of(drawn), truth)
    assert adv["n"] == 70 and ref["naive"]["keep"]["k"] == 69
    # a rule that reproduces the drawing advises as the drawing does: within 5 points of the
    # drawn regions' own advice on either side (the bound is the reference, not the result)
    assert abs(adv["accuracy"] - ref["accuracy"]) <= 0.05
    shipped = get_rule("paper_step")
    assert shipped.scores["paper_table_regions"] == pytest.approx(regions)


# --------------------------------------------------------------------------- corpus benchmark
def test_corpus_validation_machinery(tmp_path):
    """benchmarks/corpus_validation.py on two synthetic settings: every rule is scored per
    setting and pooled, one default is named, reproducibility is counted (machinery only)."""
    import importlib.util

    from _results_synth import synthetic_sweep

    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "corpus_validation.py"
    spec = importlib.util.spec_from_file_location("corpus_validation", bench)
    cv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cv)
    paths = []
    for i in range(2):
        ds = synthetic_sweep(i, dense_seeds=(0, 1, 2, 3))
        ds = ds.drop_vars([v for v in ("regime", "regime_confidence") if v in ds])
        paths.append(tmp_path / f"setting{i}.nc")
        ds.to_netcdf(paths[-1])
    text = cv.report(paths, emit=True)
    for name in (*cv.CALIBRATED, *cv.FIXED):
        assert f"| **{name}** | **pooled** |" in text
        assert f"| {name} | setting0 |" in text and f"| {name} | setting1 |" in text
    default = text.split("Default by pooled held-out accuracy: **")[1].split("**")[0]
    assert default in (*cv.CALIBRATED, *cv.FIXED)
    assert "[0, 1] vs [2, 3]" in text and "Rule dicts:" in text
    same, n = cv.agreement(np.array([0, 1, 2, 3, -1]), np.array([0, 2, 2, 0, 0]))
    assert (same, n) == (2, 3)          # unresolved (3) and undetermined (-1) are not resolved


# --------------------------------------------------------------------------- the legacy family
def test_legacy_is_a_rule_like_the_others(tmp_path):
    """Issue 17: the legacy rule is a Rule (thresholds + its own settings), serialisable, run
    by classify_with_rule; None in collapse_margin / chance_fraction / tau_cka: no such check."""
    leg = RULES["legacy"]
    assert leg.settings == {"cka_rule": "relative", "tau_cka": 0.959, "chance_fraction": 0.9,
                            "min_pairs": 1}
    r = leg.replace(thresholds={"collapse_margin": None},
                    settings={"cka_rule": "absolute", "chance_fraction": None})
    assert r.thresholds["collapse_margin"] is None and r.settings["tau_cka"] == 0.959
    assert Rule.from_json(r.to_json()) == r
    assert Rule.load_yaml(r.dump_yaml(tmp_path / "r.yaml")) == r
    for bad, msg in [({"settings": {"cka_rule": "abs"}},
                      r"^rule.settings.cka_rule must be one of relative, absolute; got 'abs'"),
                     ({"settings": {"scope": "joint"}},
                      r"^rule.settings.scope is not a setting of family 'legacy'; allowed: "),
                     ({"settings": {"cka_rule": "absolute", "tau_cka": None}},
                      r"^rule.settings.tau_cka must be a number >= 0 with cka_rule='absolute'"),
                     ({"thresholds": {"tau_lmc": None}},
                      r"^rule.thresholds.tau_lmc must be a number in \[0, inf\]; got None"),
                     ({"settings": {"min_pairs": 0}},
                      r"^rule.settings.min_pairs must be an integer >= 1; got 0")]:
        with pytest.raises(SpecError, match=msg):
            leg.replace(**bad)
    with pytest.raises(SpecError, match=r"^rule.settings.cka_rule is not a setting of family "):
        RULES["paper_step"].replace(settings={"cka_rule": "absolute"})
    # one model: the legacy variant splits II-A / II-B against tau_cka, the others cannot
    one = classify_cell_with_rule([0.0, -0.002, 0.001], cka=[0.8, 0.82, 0.81], rule=leg)
    two = classify_cell_with_rule([0.0, -0.002, 0.001], cka=[0.99, 0.985, 0.99], rule=leg)
    assert (one["regime"], one["advice"], two["regime"], two["advice"]) == (
        "II-A", "colder", "II-B", "keep")
    assert 0.5 < one["confidence"] <= 1 and one["rule"]["cka_rule"] == "absolute"
    assert classify_cell_with_rule([0.0, -0.002, 0.001], cka=[0.8, 0.82, 0.81])[
        "regime"] == "II-unresolved"


def test_every_fitted_threshold_draws_candidates_from_its_own_feature():
    """Each threshold of the step / level families is searched over the values of the feature
    it cuts (a new threshold without its own feature once fell back to the CKA split's z)."""
    from threeregime.analysis.calibrate import _candidates
    from threeregime.analysis.rules import FAMILIES, _features_of

    t = read_table(DATA / "zhou2023_figure2_partial.csv")
    probe = Rule("r", "step_t", {"barrier_chance": 1.0, "step_chance": 1.0, "z_cka": 1.0}, {})
    feats = _features_of(t, probe, None)

    def values(name: str, sign: float = 1.0) -> np.ndarray:
        return np.round(sign * np.asarray(feats[name].values, float).ravel(), 9)

    own = {"z_barrier": values("lmc_z", -1), "barrier_chance": values("lmc_rel_chance", -1),
           "z_step": values("step_z"), "step_chance": values("step_rel_chance")}
    for family, keys in FAMILIES.items():
        if family == "legacy":
            continue
        rule = Rule("r", family, {k: 1.0 for k in keys}, {})
        f = _features_of(t, rule, None)
        for key in keys:
            cand = _candidates([(f, None, None)], rule, key)
            if key in own:
                v = own[key][np.isfinite(own[key]) & (own[key] >= 0)]
                assert cand.min() >= v.min() / 2 - 1e-6 and cand.max() <= v.max() * 1.5 + 1e-5
    with pytest.raises(SpecError, match="no candidate values for threshold 'z_nothing'"):
        _candidates([(f, None, None)], rule, "z_nothing")


def test_step_v2_reproduces_the_table_and_needs_a_barrier_of_some_size():
    """The shipped step_v2 (protocol v1 amendment 1): on the paper's table its change point
    fires and it reproduces the drawn regions in sample at least as well as held out (90 %);
    on a sweep a significant but tiny barrier (0.5 % of error over 12 seeds) is not Regime I,
    a large one is."""
    rule = get_rule("step_v2")
    t = read_table(DATA / "zhou2023_figure2_partial.csv").transpose("density", "epochs")
    out = classify_with_rule(t, rule)
    lab = label_names(out["regime"].transpose("density", "epochs").values)
    assert (lab == t["regime_drawn"].values.astype(object)).mean() >= 0.90
    assert float(out["step_rel_chance"].max()) >= rule.thresholds["step_chance"]
    rng = np.random.default_rng(3)
    lmc = np.zeros((4, 2, 12, 3))
    lmc[:, 0] = -0.005 + 0.0005 * rng.standard_normal((4, 12, 3))   # tiny, z ~ -30
    lmc[:, 1] = -0.08 + 0.005 * rng.standard_normal((4, 12, 3))     # 8 points of error
    te = 0.2 + 0.001 * rng.standard_normal((4, 2, 12, 3))
    ds = results_ds(lmc, np.full((4, 2, 12, 3), 0.95), te)
    got = label_names(classify_with_rule(ds, rule)["regime"].transpose("epochs", "density")
                      .values)
    assert "I" not in got[:, 0] and (got[:, 1] == "I").all()
