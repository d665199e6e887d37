"""Regime classification (threeregime.analysis.regimes): recovers known regimes, says how sure
it is."""
from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import xarray as xr
from _results_synth import DENSITY, EPOCHS, TRUTH, synthetic_sweep

import threeregime
from threeregime import ResultsError, SpecError
from threeregime.analysis.regimes import (
    FLAG_MEANINGS,
    FLAG_VALUES,
    REASONS,
    REGIME_VARS,
    UNDETERMINED,
    classify,
    decode,
    regime_names,
    regimes_of,
)
from threeregime.analysis.rules import DEFAULT_RULE, LEGACY_DEFAULTS, NAMES, RULES, Rule

#: the legacy rule (the pre-issue-11 defaults) that most tests below pin down
legacy = functools.partial(classify, rule="legacy")


def _labels(out):
    return out["regime"].transpose("epochs", "density").values


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_recovers_known_regimes(seed):
    ds = synthetic_sweep(seed)
    out = legacy(ds)
    np.testing.assert_array_equal(_labels(out), TRUTH)
    assert out["regime"].dtype == np.int8
    assert out["regime"].attrs["flag_values"].tolist() == [0, 1, 2, 3, -1]
    assert out["regime"].attrs["flag_meanings"] == FLAG_MEANINGS
    assert (out["n_valid_pairs"] == 9).all()
    conf = out["regime_confidence"].values
    assert np.all((conf > 0.9) & (conf <= 1.0))
    for name in out.data_vars:
        assert out[name].attrs["long_name"] and out[name].attrs["units"] == "1", name
    rule = json.loads(out.attrs["regime_rule"])
    assert rule["tau_lmc"] == LEGACY_DEFAULTS["tau_lmc"] and rule["cka_rule"] == "relative"
    assert rule["temperature"] == ["epochs"] and rule["load"] == ["density"]
    assert out["regime"].attrs["rule"] == out.attrs["regime_rule"]
    assert threeregime.classify is classify


def test_mean_and_sem_match_numpy():
    ds = synthetic_sweep(0)
    out = legacy(ds)
    cell = ds["lmc"].sel(epochs=20, density=0.05).values.ravel()
    assert out["lmc_mean"].sel(epochs=20, density=0.05) == pytest.approx(cell.mean())
    assert out["lmc_sem"].sel(epochs=20, density=0.05) == pytest.approx(
        cell.std(ddof=1) / np.sqrt(cell.size))


def test_no_pair_dims_unsorted_coords_and_transposed():
    ds = synthetic_sweep(1)
    means = xr.Dataset({"lmc": ds["lmc"].mean(["dense_seed", "pair"]),
                        "cka": ds["cka"].mean(["dense_seed", "pair"])})
    shuffled = means.isel(epochs=[2, 0, 3, 1], density=[3, 1, 0, 2]).transpose()
    out = legacy(shuffled)
    assert out["regime"].dims == ("density", "epochs")
    np.testing.assert_array_equal(_labels(out.sel(epochs=EPOCHS, density=DENSITY)), TRUTH)
    assert np.isnan(out["regime_confidence"]).all()     # no spread, no certainty
    assert (out["n_valid_pairs"] == 1).all()


def test_user_sems_without_replicates_give_confidence():
    ds = synthetic_sweep(1)
    means = xr.Dataset({"lmc": ds["lmc"].mean(["dense_seed", "pair"]),
                        "cka": ds["cka"].mean(["dense_seed", "pair"]),
                        "lmc_sem": ds["lmc"].mean(["dense_seed", "pair"]) * 0 + 0.001,
                        "cka_sem": ds["cka"].mean(["dense_seed", "pair"]) * 0 + 0.001})
    out = legacy(means)
    assert np.isfinite(out["regime_confidence"]).all()


def test_paper_numbers_without_attrs_need_explicit_dims():
    # numbers read off a figure: untagged dims, 2 x 2
    lmc = xr.DataArray([[-0.2, 0.0], [0.0, 0.0]], dims=("T", "L"),
                       coords={"T": [1, 2], "L": [0.1, 0.5]})
    cka = xr.DataArray([[0.5, 0.9], [0.8, 0.95]], dims=("T", "L"), coords=lmc.coords)
    ds = xr.Dataset({"lmc": lmc, "cka": cka})
    with pytest.raises(ResultsError, match="cannot find a temperature dim of lmc .*"
                                           "pass temperature=<dim name>"):
        legacy(ds)
    out = legacy(ds, temperature="T", load="L")
    assert decode(out["regime"]).values.tolist() == [["I", "II-A"], ["II-B", "II-B"]]
    with pytest.raises(ResultsError, match="temperature='X' is not a dim of lmc; allowed: T, L"):
        legacy(ds, temperature="X")


def test_axes_names_are_recognised_without_attrs():
    lmc = xr.DataArray(np.zeros((2, 3)), dims=("batch_size", "density"),
                       coords={"batch_size": [16, 256], "density": [0.1, 0.2, 0.5]})
    ds = xr.Dataset({"lmc": lmc, "cka": lmc + 0.9})
    out = legacy(ds)
    assert (out["regime"] == 2).all()          # flat CKA columns: keep


def test_single_cell_axes():
    ds = synthetic_sweep(2).isel(epochs=[2], density=[0, 3])
    out = legacy(ds)
    np.testing.assert_array_equal(_labels(out), [[0, 2]])
    one = synthetic_sweep(2).isel(density=[2])
    np.testing.assert_array_equal(_labels(legacy(one)), TRUTH[:, [2]])


def test_relative_rule_flat_column_is_all_keep_and_absolute_rule():
    ds = synthetic_sweep(0)
    # a spread larger than every column's range: every Regime II cell is II-B
    out = legacy(ds, min_cka_spread=0.5)
    expect = np.where(TRUTH == 0, 0, 2)
    np.testing.assert_array_equal(_labels(out), expect)
    out = legacy(ds, cka_rule="absolute", tau_cka=0.9)
    np.testing.assert_array_equal(_labels(out), TRUTH)
    out = legacy(ds, cka_rule="absolute", tau_cka=0.99)
    np.testing.assert_array_equal(_labels(out), np.where(TRUTH == 0, 0, 1))
    # tau_lmc larger than every barrier: no Regime I
    assert (legacy(ds, tau_lmc=0.5)["regime"] != 0).all()


def test_confidence_lower_for_noisier_data():
    quiet = [legacy(synthetic_sweep(s, lmc_sd=0.05, cka_sd=0.05))["regime_confidence"]
             .mean().item() for s in range(4)]
    noisy = [legacy(synthetic_sweep(s, lmc_sd=0.15, cka_sd=0.15))["regime_confidence"]
             .mean().item() for s in range(4)]
    clean = legacy(synthetic_sweep(0))["regime_confidence"].mean().item()
    assert clean > np.mean(quiet) > np.mean(noisy)


def test_zero_spread_gives_confidence_one():
    ds = synthetic_sweep(0, lmc_sd=0.0, cka_sd=0.0)
    np.testing.assert_allclose(legacy(ds)["regime_confidence"], 1.0)


def test_nan_diverged_missing_and_too_few_pairs():
    status = {(5, 0.1, s): "diverged" for s in (0, 1, 2)}
    status[(10, 0.5, 0)] = "diverged"                # one replicate only: cell still decided
    ds = synthetic_sweep(3, status=status, skip={(40, 0.5, s) for s in (0, 1, 2)})
    ds["lmc"].loc[{"epochs": 20, "density": 0.2}] = np.nan
    out = legacy(ds)
    lab, why = out["regime"], out["undetermined_reason"]
    assert lab.sel(epochs=5, density=0.1) == UNDETERMINED
    assert why.sel(epochs=5, density=0.1) == REASONS["diverged_or_failed"]
    assert lab.sel(epochs=40, density=0.5) == UNDETERMINED
    assert why.sel(epochs=40, density=0.5) == REASONS["not_computed"]
    assert lab.sel(epochs=20, density=0.2) == UNDETERMINED
    assert why.sel(epochs=20, density=0.2) == REASONS["too_few_valid_pairs"]
    assert lab.sel(epochs=10, density=0.5) == 2 and out["n_valid_pairs"].sel(
        epochs=10, density=0.5) == 6
    assert np.isnan(out["regime_confidence"].where(lab == UNDETERMINED, drop=True)).all()
    decided = (lab != UNDETERMINED).values
    np.testing.assert_array_equal(_labels(out)[decided], TRUTH[decided])
    out = legacy(ds, min_pairs=10)
    assert (out["regime"] == UNDETERMINED).all()
    assert set(np.unique(out["undetermined_reason"])) <= {1, 2, 3}


def test_collapse_is_not_a_regime_cell():
    ds = synthetic_sweep(0)
    # collapsed cell: models failed to train, look connected and similar (PROBE.md)
    sel = {"epochs": 40, "density": 0.05}
    ds["test_error"].loc[sel] = 0.76
    ds["lmc"].loc[sel] = 0.0
    ds["cka"].loc[sel] = 0.9999
    out = legacy(ds)
    assert out["regime"].sel(sel) == UNDETERMINED
    assert out["undetermined_reason"].sel(sel) == REASONS["collapsed"]
    assert out["regime"].sel(epochs=20, density=0.05) == 0
    assert legacy(ds, collapse_margin=None)["regime"].sel(sel) != UNDETERMINED
    # train error near chance (10 classes): also collapse
    ds2 = synthetic_sweep(0, attrs={"num_classes": 10})
    ds2["train_error"].loc[{"epochs": 5, "density": 0.5}] = 0.85
    out2 = legacy(ds2)
    assert out2["undetermined_reason"].sel(epochs=5, density=0.5) == REASONS["collapsed"]
    assert legacy(ds2, num_classes=2)["undetermined_reason"].sel(
        epochs=5, density=0.5) == REASONS["collapsed"]
    assert legacy(ds2, chance_fraction=None)["regime"].sel(epochs=5, density=0.5) == 1


@pytest.mark.parametrize("kw, msg", [
    ({"tau_lmc": -1}, r"^tau_lmc must be a number in \[0, inf\]; got -1$"),
    ({"cka_rule": "absolut"}, "cka_rule must be one of relative, absolute; got 'absolut'"),
    ({"cka_rule": "absolute"}, ("tau_cka must be a number in \\[0, 1\\] with "
                                "cka_rule='absolute'; got None")),
    ({"min_pairs": 0}, "min_pairs must be an integer >= 1; got 0"),
    ({"min_cka_spread": float("nan")}, r"^min_cka_spread must be a number in \[0, inf\]; got nan"),
    ({"chance_fraction": "x"}, r"^chance_fraction must be a number in \[0, inf\]; got 'x'"),
    ({"min_pairs": np.int64(0)}, r"^min_pairs must be an integer >= 1; got 0$"),
])
def test_bad_arguments(kw, msg):
    with pytest.raises(SpecError, match=msg):
        legacy(synthetic_sweep(0), **kw)


def test_missing_variables():
    ds = synthetic_sweep(0).drop_vars("cka")
    with pytest.raises(ResultsError, match="classify needs variables lmc and cka"):
        legacy(ds)


def test_reclassify_from_means_only():
    out = legacy(synthetic_sweep(0))
    again = legacy(out[["lmc_mean", "cka_mean", "lmc_sem", "cka_sem"]])
    xr.testing.assert_equal(again["regime"], out["regime"])


def test_decode_and_constants():
    assert regime_names == ("I", "II-A", "II-B")
    assert NAMES[-1] == "undetermined"
    arr = decode(np.array([0, 1, 2, 3, -1, 7], dtype=np.int8))
    assert arr.tolist() == ["I", "II-A", "II-B", "II-unresolved", "undetermined", "undetermined"]
    da = decode(xr.DataArray(np.array([[0, 2]], np.int8), dims=("a", "b")))
    assert da.dims == ("a", "b") and da.values.tolist() == [["I", "II-B"]]


def test_accessor_legacy():
    ds = synthetic_sweep(0)
    out = ds.threeregime.classify(tau_lmc=0.01)
    assert "lmc" in out and "regime" in out and "regime" not in ds
    assert json.loads(out["regime"].attrs["rule"])["tau_lmc"] == 0.01
    assert ds.threeregime.dims() == {"cells": ["epochs", "density"],
                                     "temperature": ["epochs"], "load": ["density"]}


def test_regimes_of_takes_the_datasets_own_or_classifies():
    ds = synthetic_sweep(0)
    fresh = regimes_of(ds)                      # no regimes in ds: classified, default rule
    assert fresh.identical(classify(ds)) and set(REGIME_VARS) <= set(fresh.data_vars)
    assert json.loads(fresh.attrs["regime_rule"])["name"] == DEFAULT_RULE
    # a Dataset with (deliberately odd) regimes of its own is read as it is ...
    marked = ds.assign({v: fresh[v] for v in REGIME_VARS})
    marked["regime"] = marked["regime"].where(False, np.int8(2)).astype(np.int8)
    marked["regime"].attrs = fresh["regime"].attrs
    own = regimes_of(marked, temperature="epochs")   # naming a dim does not reclassify
    assert (own["regime"] == 2).all() and set(own.data_vars) == set(REGIME_VARS)
    assert json.loads(own.attrs["regime_rule"])["name"] == DEFAULT_RULE
    assert marked.threeregime.regimes()["regime"].identical(own["regime"])
    # ... unless a rule argument asks for a classification
    again = regimes_of(marked, tau_lmc=0.01)
    assert not (again["regime"] == 2).all()
    assert json.loads(again.attrs["regime_rule"])["tau_lmc"] == 0.01
    assert not (regimes_of(marked, rule="level")["regime"] == 2).all()
    with pytest.raises(ResultsError):
        regimes_of(ds.drop_vars(["lmc", "cka"]))


def test_default_rule_flags_and_uncertainty():
    ds = synthetic_sweep(1)
    out = classify(ds)
    # the LMC step of 0.1 between the second and third temperature stands out of the seed
    # noise (0.003): its t over dense seeds passes the 5 % level by far, but it is 11 % of chance
    # error, below the default's fitted step_chance (0.29), so the default (step_v2) finds no
    # change point and splits the Regime II cells at each column's CKA change point: TRUTH
    assert DEFAULT_RULE == "step_v2"
    assert float(out["step_z"].max()) > 10
    assert float(out["step_rel_chance"].max()) < RULES[DEFAULT_RULE].thresholds["step_chance"]
    np.testing.assert_array_equal(_labels(out), TRUTH)
    # with a step of 5 % of chance enough, the paper's construction applies: every Regime II
    # cell hot of the step is II-A
    small_step = RULES[DEFAULT_RULE].replace(thresholds={"step_chance": 0.05})
    np.testing.assert_array_equal(_labels(classify(ds, rule=small_step)),
                                  np.where(np.arange(4)[:, None] < 2, 1, TRUTH))
    # paper_step (the default before issue 18) decides on the step's z alone
    paper = classify(ds, rule="paper_step")
    assert float(paper["step_z"].max()) > RULES["paper_step"].thresholds["z_step"]
    np.testing.assert_array_equal(_labels(paper), np.where(np.arange(4)[:, None] < 2, 1, TRUTH))
    no_step = RULES["paper_step"].replace(thresholds={"z_step": 1e9})
    np.testing.assert_array_equal(_labels(classify(ds, rule=no_step)), TRUTH)
    assert out["regime"].attrs["flag_values"].tolist() == FLAG_VALUES.tolist() == [0, 1, 2, 3, -1]
    assert out["regime"].attrs["flag_meanings"].split()[3] == "regime_II_unresolved"
    assert out["regime_uncertain"].dtype == np.int8
    assert set(np.unique(out["regime_uncertain"])) <= {0, 1}
    assert out.attrs["regime_rule"] == RULES[DEFAULT_RULE].to_json()
    assert REASONS["near_chance"] == 5 and "near_chance" in \
        out["undetermined_reason"].attrs["flag_meanings"].split()
    # three dense seeds agree on these clean data: confidence 1, nothing uncertain far from
    # the threshold
    assert np.nanmin(out["regime_confidence"].values) == 1.0


def test_rule_by_name_object_and_bad_rules():
    ds = synthetic_sweep(2)
    by_name = classify(ds, rule="level")
    xr.testing.assert_identical(by_name, classify(ds, rule=RULES["level"]))
    via = ds.threeregime.classify(rule="level")
    xr.testing.assert_identical(by_name["regime"], via["regime"])
    assert via.attrs["regime_rule"] == by_name.attrs["regime_rule"] and "lmc" in via
    # the legacy rule as an object equals the legacy keywords
    leg = RULES["legacy"].replace(thresholds={"tau_lmc": 0.05})
    a, b = classify(ds, rule=leg), classify(ds, tau_lmc=0.05)
    xr.testing.assert_equal(a["regime"], b["regime"])
    assert json.loads(a.attrs["regime_rule"])["name"] == "legacy"
    with pytest.raises(SpecError, match=r"^tau_lmc is a threshold of the legacy rule; got it "
                                        r"with rule='paper_step'"):
        classify(ds, rule="paper_step", tau_lmc=0.01)
    with pytest.raises(SpecError, match="rule must be one of .*got 'paper_stp'.*paper_step"):
        classify(ds, rule="paper_stp")
    with pytest.raises(SpecError, match="rule must be a Rule or one of .*got int"):
        classify(ds, rule=5)
    # one path: classify dispatches every rule, legacy included, through classify_with_rule
    from threeregime.analysis.rules import classify_with_rule
    xr.testing.assert_identical(classify_with_rule(ds, RULES["legacy"]), legacy(ds))
    assert isinstance(RULES["legacy"], Rule) and RULES["legacy"].family == "legacy"
