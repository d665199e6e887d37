"""Statistics at the dense-seed level (issue 18, STYLE rule 14): the unit, the helper, the
exclusion of collapsed replicates, and labels that do not depend on the number of seeds."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import xarray as xr
from _results_synth import TRUTH, synthetic_sweep

from threeregime.analysis.features import cell_stats
from threeregime.analysis.rules import classify_with_rule, get_rule
from threeregime.stats import mean_sem, pooled_sem, t_interval, unit_means

CORPUS = Path(__file__).resolve().parents[1] / "validation" / "corpus"


def test_mean_sem_matches_scipy_and_ignores_nan():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 6))
    a[1, 2] = np.nan
    m, s, n = mean_sem(a)
    for i in range(4):
        x = a[i][np.isfinite(a[i])]
        assert m[i] == pytest.approx(x.mean(), rel=1e-12)
        assert s[i] == pytest.approx(scipy.stats.sem(x), rel=1e-12)
        assert n[i] == x.size
    _, s1, n1 = mean_sem(np.array([[1.0, np.nan]]))
    assert np.isnan(s1[0]) and n1[0] == 1
    lo, hi = t_interval(m, s, n, 0.95)
    ref = scipy.stats.t.interval(0.95, n[0] - 1, loc=m[0], scale=s[0])
    assert (lo[0], hi[0]) == pytest.approx(ref, rel=1e-12)


def test_unit_means_and_pooled_sem():
    a = np.arange(24, dtype=float).reshape(2, 3, 4)
    np.testing.assert_allclose(unit_means(a, (2,)), a.mean(2))
    units = np.array([[[0.0, 2.0], [1.0, 1.0], [5.0, np.nan]]])  # (1 col, 3 cells, 2 units)
    # squared deviations 2 + 0 (+ nothing: one unit) over 1 + 1 (+ 0) dof -> var 1
    np.testing.assert_allclose(pooled_sem(units, 1), [[1 / np.sqrt(2), 1 / np.sqrt(2), 1.0]])


def test_rule_z_over_dense_seeds_equals_scipy_one_sample_t():
    ds = synthetic_sweep(5, lmc_sd=0.02)
    out = classify_with_rule(ds, get_rule().replace(settings={"noise": "cell"}))
    # the dense-seed means: the pairs of one dense seed averaged first
    unit = ds["lmc"].mean("pair")
    t = scipy.stats.ttest_1samp(unit.transpose("epochs", "density", "dense_seed").values, 0.0,
                                axis=-1).statistic
    np.testing.assert_allclose(out["lmc_z"].transpose("epochs", "density").values, t,
                               rtol=1e-10)
    assert (out["n_used"] == 3).all()
    # the default noise floors a cell's standard error by its column's spread: where the cell's
    # own binds, its z is still the t statistic
    f = classify_with_rule(ds)
    own = (f["lmc_noise"] == f["lmc_sem"]).transpose("epochs", "density").values
    assert own.sum() >= 4
    np.testing.assert_allclose(f["lmc_z"].transpose("epochs", "density").values[own], t[own],
                               rtol=1e-10)
    # the pooled standard error over (dense seed x pair) stays, as a diagnostic
    flat = ds["lmc"].transpose("epochs", "density", "dense_seed", "pair").values.reshape(4, 4, -1)
    np.testing.assert_allclose(f["lmc_sem_pooled"].transpose("epochs", "density").values,
                               scipy.stats.sem(flat, axis=-1), rtol=1e-10)


def test_dense_seed_confidence_and_step_t_use_the_unit():
    ds = synthetic_sweep(6, lmc_sd=0.02)
    out = classify_with_rule(ds)
    # the step's z is the t over dense seeds of each seed's (hot mean - cold mean) at the split
    lmc = ds["lmc"].mean("pair").sel(epochs=[5, 10, 20, 40])   # hot -> cold
    cold = out["step_cold"].isel(density=0).values.astype(bool)
    steps = (lmc.isel(epochs=np.flatnonzero(~cold)).mean("epochs")
             - lmc.isel(epochs=np.flatnonzero(cold)).mean("epochs"))   # (density, dense_seed)
    t = scipy.stats.ttest_1samp(steps.transpose("density", "dense_seed").values, 0.0,
                                axis=-1).statistic
    assert float(out["step_z"].max()) == pytest.approx(float(np.max(t)), rel=1e-10)


def _collapse(ds, e, d, s):
    """Dense seed ``s`` of cell (e, d) at chance: constant outputs, CKA above 1 as the raw-moment
    CKA gave them, no barrier, test and train error at chance."""
    ds = ds.copy(deep=True)
    at = {"epochs": e, "density": d, "dense_seed": s}
    ds["dense_train_error"].loc[at] = 0.9
    ds["train_error"].loc[at] = 0.9
    ds["test_error"].loc[at] = 0.9
    ds["lmc"].loc[at] = 0.0
    ds["cka"].loc[at] = 1.13
    return ds


def test_an_injected_collapsed_dense_seed_changes_no_other_label():
    ds = synthetic_sweep(7, dense_seeds=(0, 1, 2, 3))
    base = classify_with_rule(ds)
    bad = classify_with_rule(_collapse(ds, 40, 0.05, 3))
    other = np.ones(TRUTH.shape, dtype=bool)
    other[3, 0] = False   # (epochs 40, density 0.05)
    lab = lambda o: o["regime"].transpose("epochs", "density").values
    np.testing.assert_array_equal(lab(bad)[other], lab(base)[other])
    assert lab(bad)[3, 0] == lab(base)[3, 0] == 0      # the cell itself keeps its label too
    at = {"epochs": 40, "density": 0.05}
    assert int(bad["n_used"].sel(at)) == 3 and int(base["n_used"].sel(at)) == 4
    # excluded per replicate: the dense seed, and its 3 retrained models are not counted twice
    assert int(bad["n_collapsed"].sel(at)) == 1 and int(bad["n_collapsed"].sum()) == 1
    assert float(bad["cka_mean"].max()) <= 1.0
    # excluding it is the same as never having had it
    gone = ds.copy(deep=True)
    for v in ("lmc", "cka", "test_error"):
        gone[v].loc[{**at, "dense_seed": 3}] = np.nan
    xr.testing.assert_allclose(bad[["lmc_z", "cka_mean", "step_z"]],
                               classify_with_rule(gone)[["lmc_z", "cka_mean", "step_z"]])
    # a single retrained model at chance leaves out the pairs it belongs to
    one = ds.copy(deep=True)
    one["train_error"].loc[{**at, "dense_seed": 2, "retrain_seed": 0}] = 0.9
    st = cell_stats(one)
    assert int(st["n_collapsed"].sel(at)) == 1 and int(st["n_used"].sel(at)) == 4
    pairs = one["lmc"].sel({**at, "dense_seed": 2})
    keep = (one["pair_a"] != 0) & (one["pair_b"] != 0)
    assert float(st["lmc_unit"].sel({**at, "dense_seed": 2})) == pytest.approx(
        float(pairs.where(keep).mean()))


def test_all_dense_seeds_at_chance_is_near_chance():
    ds = synthetic_sweep(8)
    for s in (0, 1, 2):
        ds = _collapse(ds, 40, 0.5, s)
    out = classify_with_rule(ds)
    at = {"epochs": 40, "density": 0.5}
    assert int(out["regime"].sel(at)) == -1 and int(out["n_used"].sel(at)) == 0
    assert int(out["undetermined_reason"].sel(at)) == 5   # near_chance


def test_cell_stats_variables_have_long_name_and_units():
    st = cell_stats(synthetic_sweep(9))
    for v in ("n_used", "n_collapsed", "lmc_sem", "lmc_sem_pooled", "lmc_unit"):
        assert st[v].attrs["long_name"] and st[v].attrs["units"]
    assert st["n_used"].attrs["units"] == "count"
    assert "diagnostic" in st["lmc_sem_pooled"].attrs["long_name"]


@pytest.mark.parametrize("seed", [10, 11])
def test_large_effect_labels_agree_at_3_and_12_dense_seeds(seed):
    few = classify_with_rule(synthetic_sweep(seed, dense_seeds=range(3)))
    many = classify_with_rule(synthetic_sweep(seed + 100, dense_seeds=range(12)))
    np.testing.assert_array_equal(few["regime"].values, many["regime"].values)
    assert (few["regime"] == 0).sum() == (TRUTH == 0).sum()


def test_sam_rho_collapsed_seed_is_out():
    """The shipped corpus: sam_rho holds a dense seed at chance whose pair CKAs exceed 1."""
    ds = xr.open_dataset(CORPUS / "sam_rho.nc")
    assert float(ds["cka"].max()) > 1.0            # as measured with the raw-moment CKA
    st = cell_stats(ds)
    assert int(st["n_collapsed"].sum()) > 0 and int(st["n_used"].min()) >= 0
    assert float(st["cka_mean"].max()) <= 1.0
