"""The tuning policy (threeregime.analysis.tuning) as a pure walk, replayed on a results
Dataset, and run live through the stages (threeregime.tune, ``threeregime tune``)."""
from __future__ import annotations

import os

import numpy as np
import pytest
import yaml
from _results_synth import synthetic_sweep
from _tiny import tiny_sweep

import threeregime as tr
from threeregime import SpecError, cli
from threeregime.analysis.regimes import decode
from threeregime.analysis.tuning import advise_step, policy_walk
from threeregime.analysis.tuning_trace import walk_dataset

I, A, B, U, X = "I", "II-A", "II-B", "II-unresolved", "undetermined"


# --------------------------------------------------------------------------- the pure walk
@pytest.mark.parametrize("labels, vals, start, budget, kw, visited, stopped", [
    ([I] * 6, [0.5, 0.4, 0.3, 0.2, 0.1, 0.05], 0, 3, {}, (0, 1, 2), "budget"),
    ([I] * 6, [0.5, 0.4, 0.3, 0.2, 0.1, 0.05], 0, 1, {}, (0,), "budget"),
    ([B, I, I], [0.1, 0.2, 0.3], 0, 5, {}, (0,), "keep"),
    ([X, I, I], [0.1, 0.2, 0.3], 0, 5, {}, (0,), "undetermined"),
    ([I, A, I], [0.3, 0.2, 0.1], 0, 5, {}, (0, 1), "reversal"),
    ([I, I, I], [0.3, 0.2, 0.1], 0, 5, {}, (0, 1, 2), "edge"),
    ([I, I, I, I], [0.3, 0.2, 0.25, 0.1], 0, 5, {}, (0, 1, 2), "val_worse"),
    ([I, I, I, I], [0.3, 0.2, 0.25, 0.1], 0, 5, {"tol": 0.06}, (0, 1, 2, 3), "edge"),
    ([I, I, I], [0.3, np.nan, 0.1], 0, 5, {}, (0, 1), "val_worse"),       # diverged cell
    # hotter = -1: decreasing position is hotter (the epochs axis)
    ([I, I, I, I], [0.1, 0.2, 0.3, 0.4], 3, 5, {"hotter": -1}, (3, 2, 1, 0), "edge"),
    # a first II-unresolved cell: one probe step colder, whose label decides
    ([U, B, B], [0.3, 0.2, 0.1], 0, 5, {"hotter": -1}, (0, 1), "keep"),
    ([U, B, B], [0.3, 0.2, 0.1], 0, 5, {"hotter": -1, "probe": None}, (0,), "keep"),
    ([U, U, U], [0.3, 0.2, 0.1], 0, 5, {"hotter": -1}, (0, 1), "keep"),
    ([U, I, I], [0.3, 0.2, 0.1], 0, 5, {"hotter": -1}, (0, 1), "reversal"),
])
def test_each_stopping_rule(labels, vals, start, budget, kw, visited, stopped):
    w = policy_walk(labels, vals, start, budget, **kw)
    assert w.visited == visited and w.stopped == stopped
    assert len(w.visited) <= budget
    assert w.labels == tuple(labels[p] for p in visited)
    finite = [p for p in visited if np.isfinite(vals[p])]
    assert w.chosen == min(finite, key=lambda p: vals[p])
    assert w.moves[-1] is None and len(w.moves) == len(visited)


def test_chooses_by_validation_and_is_deterministic():
    labels = [I] * 5
    val = [0.30, 0.20, 0.22, 0.40, 0.5]     # the walk stops at 2 (worse than 1)
    w = policy_walk(labels, val, 0, 5)
    assert w.visited == (0, 1, 2) and w.chosen == 1
    assert policy_walk(labels, val, 0, 5) == w
    # ties: the first visited
    assert policy_walk([I, I, I], [0.2, 0.2, 0.2], 0, 3).chosen == 0
    # callables: evaluated once per visited position, in order; labels see the visited tuple
    calls, seen = [], []
    w2 = policy_walk(lambda vis: seen.append(vis) or labels[vis[-1]],
                     lambda i: calls.append(i) or val[i], 0, 5, bounds=(0, 4))
    assert w2 == w and calls == [0, 1, 2] and seen == [(0,), (0, 1), (0, 1, 2)]
    # unbounded (a continuous hyperparameter): only the budget stops an all-I walk
    w3 = policy_walk(lambda vis: I, lambda i: 1.0 / (10 + i), 0, 4, bounds=(None, None))
    assert w3.visited == (0, 1, 2, 3) and w3.stopped == "budget" and w3.chosen == 3


@pytest.mark.parametrize("kw, match", [
    ({"budget": 0}, r"budget must be an integer >= 1; got 0"),
    ({"start": 7}, r"start must be a position in \[0, 2\]; got 7"),
    ({"hotter": 2}, r"hotter must be one of"),
    ({"probe": "warmer"}, r"probe must be one of"),
    ({"tol": -1.0}, r"tol must be a number in \[0, inf\]; got -1.0"),
])
def test_walk_bad_input_one_line(kw, match):
    args = {"labels": [I, I, I], "val_error": [0.1, 0.2, 0.3], "start": 0, "budget": 2, **kw}
    with pytest.raises(SpecError, match=match) as e:
        policy_walk(**args)
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------------- on a Dataset
@pytest.fixture(scope="module")
def synth():
    ds = synthetic_sweep(seed=3)
    # validation error that disagrees with test error: test error rises with epochs (rows),
    # validation error falls (the policy must follow validation)
    te = ds["test_error"]
    ds["val_error"] = te.copy(data=np.asarray(0.5 - te.values))
    return ds


def test_walk_dataset_selects_on_validation_not_test(synth):
    # density 0.05: epochs 5 -> II-A (colder), 10 -> II-B, 20/40 -> I; start at 5
    res = walk_dataset(synth, {"density": 0.05}, 5, 3)
    vis = [res.values[p] for p in res.walk.visited]
    assert vis[0] == 5 and len(vis) >= 2
    val = res.dataset()["val_error"].values
    test = res.dataset()["test_error"].values
    assert res.best_value == vis[int(np.argmin(val))]
    assert res.best_value != vis[int(np.argmin(test))], "the case must separate val and test"
    np.testing.assert_allclose(
        val, [float(synth["val_error"].sel(epochs=v, density=0.05).mean()) for v in vis])
    assert res.dataset().attrs["selected_on"] == "val_error"
    table = str(res)
    assert "<- chosen" in table and "stopped" in table


def test_labels_come_from_visited_cells_only(synth):
    from threeregime.analysis.tuning import column_of, label_visited

    col, temp = column_of(synth, None, {"density": 0.05})
    alone = label_visited(col, [0], temperature=temp)
    assert str(decode(alone["regime"]).values.ravel()[0]) == U   # one cell
    both = label_visited(col, [0, 1], temperature=temp)
    names = decode(both["regime"]).values.ravel()
    assert names[2] == X and names[3] == X                   # masked: not computed


def test_advise_step_gain_matches_a_paired_interval_by_hand(synth):
    from scipy import stats

    # truth: II-B -> keep (at 20 % density this seed's noise gives a barrier of z = -2.8 under
    # the dense-seed statistics of issue 18: a false Regime I, the rule's 2 % null rate)
    step = advise_step(synth, {"density": 0.5, "epochs": 40})
    assert step.direction == "keep" and step.to is None and not np.isfinite(step.gain)
    step = advise_step(synth, {"density": 0.05, "epochs": 20})  # Regime I -> hotter: 10
    assert step.direction == "hotter" and step.to == 10
    per = synth["test_error"].sel(density=0.05).mean("retrain_seed")
    d = (per.sel(epochs=20) - per.sel(epochs=10)).values
    assert step.gain == pytest.approx(d.mean())
    lo, hi = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=d.std(ddof=1)
                              / np.sqrt(len(d)))
    assert step.gain_ci == pytest.approx((lo, hi)) and step.n_dense_seeds == 3
    assert "expected gain" in str(step)


def test_trace_plot_returns_artists(synth):
    import matplotlib

    matplotlib.use("Agg")
    res = walk_dataset(synth, {"density": 0.05}, 5, 3)
    art, extra = res.plot(ds=synth)
    assert art.ax is not None and len(extra) == len(res.walk.visited)   # arrows + circle
    # the circle sits left of the cell's centre (the labels' place), the arrows right of it
    circle, arrow = extra[-1], extra[0]
    assert circle.get_marker() == "o"
    assert np.isclose(circle.get_xdata()[0], arrow.xy[0] - 0.6)
    art2, _ = res.plot()                                  # the visited column alone
    assert art2.ax is not art.ax


# --------------------------------------------------------------------------- live
def _tiny_yaml(tmp_path):
    d = tiny_sweep("tt")
    d["axes"]["epochs"] = [1, 2, 3]
    d["base"]["dense"]["epochs"] = 3
    d["base"]["data"]["val_size"] = 64
    path = tmp_path / "tt.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


@pytest.fixture
def always_one(monkeypatch):
    """Every visited cell reads as Regime I (tiny models sit near chance): the walk moves
    hotter (fewer epochs) until the grid's edge or the budget, and validation error decides
    nothing about where it goes (tol large)."""
    import threeregime.tuning_run as tu

    def fake(column, visited, *, temperature, rule=None):
        reg = tr.classify(column, temperature=temperature)
        return reg.assign(regime=reg["regime"] * 0)       # 0 = Regime I everywhere
    monkeypatch.setattr(tu, "label_visited", fake)


@pytest.mark.parametrize("kw, match", [
    ({"axis": "lr"}, r"axis must be one of epochs; got 'lr'"),
    ({"density": 1.5}, r"density must be a number in \(0, 1\]; got 1.5"),
    ({"budget": 0}, r"budget must be an integer >= 1; got 0"),
    ({"start": 5}, r"start 5 is not on the epochs grid of sweep 'tt'; pass start as one of "
                   r"\[1, 2, 3\]"),
    ({"spec": "missing.yaml"}, r"spec file 'missing.yaml' does not exist"),
])
def test_tune_bad_input_before_any_training(tmp_path, monkeypatch, kw, match):
    import threeregime.sweep.stages as stages

    monkeypatch.setattr(stages, "fit", lambda *a, **k: pytest.fail("trained before the check"))
    args = {"spec": _tiny_yaml(tmp_path), "density": 0.2, "budget": 2, **kw}
    out = tmp_path / "store"
    with pytest.raises(SpecError, match=match) as e:
        tr.tune(args.pop("spec"), out=out, **args)
    assert "\n" not in str(e.value) and not out.exists()
    # the CLI says the same in one line, exit status 2
    argv = ["tune", str(kw.get("spec", _tiny_yaml(tmp_path))), "--density",
            str(args["density"]), "--budget", str(args["budget"]), "--out", str(out)]
    argv += [f"--{k}={v}" for k, v in kw.items() if k in ("axis", "start")]
    assert cli.main(argv) == 2 and not out.exists()


def _mtimes(root):
    return {p: os.stat(p).st_mtime_ns for p in root.rglob("*.pt")}


def test_tune_budget_resume_and_no_repeated_training(tmp_path, monkeypatch, always_one):
    import threeregime.sweep.stages as stages

    spec, out = _tiny_yaml(tmp_path), tmp_path / "store"
    real_fit = stages.fit
    calls = []

    def interrupting(*a, **k):      # the third fit (the second cell's retraining) is cut
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_fit(*a, **k)
    monkeypatch.setattr(stages, "fit", interrupting)
    with pytest.raises(KeyboardInterrupt):
        tr.tune(spec, density=0.2, budget=2, start=3, out=out, tol=1.0)
    saved = _mtimes(out)
    assert any("retrain" in str(p) for p in saved) and any("dense" in str(p) for p in saved)

    calls.clear()
    monkeypatch.setattr(stages, "fit", lambda *a, **k: calls.append(1) or real_fit(*a, **k))
    res = tr.tune(spec, density=0.2, budget=2, start=3, out=out, tol=1.0)
    assert [res.values[p] for p in res.walk.visited] == [3, 2]     # hotter = fewer epochs
    assert res.stopped == "budget" and len(res.walk.visited) == 2
    again = _mtimes(out)
    assert all(again[p] == t for p, t in saved.items()), "finished work was redone"
    assert len(calls) >= 1                                  # the missing retrainings only
    # the trace selects on validation error and reports test error next to it
    ds = res.dataset()
    col = res.column
    want = [float(col["val_error"].sel(epochs=v).mean()) for v in (3, 2)]
    np.testing.assert_allclose(ds["val_error"].values, want)
    assert res.best_value == (3, 2)[int(np.argmin(want))]

    calls.clear()                    # a finished tune resumes to the same walk, training nothing
    res2 = tr.tune(spec, density=0.2, budget=2, start=3, out=out, tol=1.0)
    assert calls == [] and res2.walk == res.walk

    calls.clear()                    # a larger budget reaches the edge, reusing both cells
    res3 = tr.tune(spec, density=0.2, budget=5, start=3, out=out, tol=1.0)
    assert [res3.values[p] for p in res3.walk.visited] == [3, 2, 1]
    assert res3.stopped == "edge"


def test_cli_tune_end_to_end(tmp_path, capsys):
    spec, out = _tiny_yaml(tmp_path), tmp_path / "store"
    png = tmp_path / "walk.png"
    rc = cli.main(["tune", str(spec), "--density", "0.2", "--budget", "2", "--start", "2",
                   "--out", str(out), "--plot", str(png)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "Tuning epochs at density 0.2" in text and "<- chosen" in text
    assert "Step:" in text and png.stat().st_size > 0


# --------------------------------------------------------------------------- a user's model
@pytest.fixture(scope="module")
def user_setup():
    import torch

    from threeregime import DataSpec, ModelSpec, TrainSpec

    torch.set_num_threads(1)
    data = tr.load_data(DataSpec("mnist1d", train_size=256, test_size=128, val_size=128,
                                 options={"n_train": 256, "n_test": 128}))
    mspec = ModelSpec("mlp", options={"hidden": [32]})
    trained = []

    def train_fn(epochs):
        trained.append(epochs)
        model = tr.build_model(mspec, data.input_shape, data.num_classes, seed=0)
        res = tr.fit(model, model.state_dict(), data, TrainSpec(epochs=int(epochs),
                                                                batch_size=32, lr=0.05),
                     seeds=[0], device="cpu")
        model.load_state_dict(res.states[0])
        return model
    return data, train_fn, trained, TrainSpec(epochs=1, batch_size=32, lr=0.05)


def test_tune_a_users_model(tmp_path, user_setup, monkeypatch):
    import threeregime.tuning_run as tu

    data, train_fn, trained, retrain = user_setup
    # every visited value reads as Regime I: epochs go down (hotter) by the factor
    monkeypatch.setattr(tu, "label_visited", lambda col, vis, *, temperature, rule=None:
                        tr.classify(col, temperature=temperature).pipe(
                            lambda r: r.assign(regime=r["regime"] * 0)))
    trained.clear()
    res = tr.tune(train_fn, data, hyperparameter="epochs", start=8, density=0.5, budget=3,
                  factor=2, tol=1.0, seeds=2, retrain=retrain, cache_dir=tmp_path / "c",
                  device="cpu")
    assert trained == [8, 4, 2] and res.stopped == "budget"
    ds = res.dataset()
    assert list(ds["epochs"].values) == [8, 4, 2]
    assert res.best_value == [8, 4, 2][int(np.nanargmin(ds["val_error"].values))]
    # the range's edge: epochs >= lower
    trained.clear()
    res = tr.tune(train_fn, data, hyperparameter="epochs", start=8, density=0.5, budget=5,
                  factor=2, lower=4, tol=1.0, seeds=2, retrain=retrain,
                  cache_dir=tmp_path / "c", device="cpu")
    assert trained == [8, 4] and res.stopped == "edge"
    # the earlier name runs the same walk
    trained.clear()
    again = tr.tune_temperature(train_fn, data, hyperparameter="epochs", start=8,
                                target_density=0.5, budget=3, factor=2, min_improvement=1.0,
                                seeds=2, retrain=retrain, cache_dir=tmp_path / "c",
                                device="cpu")
    assert again.walk == tr.tune(train_fn, data, hyperparameter="epochs", start=8,
                                 density=0.5, budget=3, factor=2, tol=1.0, seeds=2,
                                 retrain=retrain, cache_dir=tmp_path / "c",
                                 device="cpu").walk


def test_tune_a_users_model_needs_a_validation_split(user_setup):
    data, train_fn, trained, _ = user_setup
    no_val = data._replace(val=None)
    trained.clear()
    with pytest.raises(SpecError, match=r"^data must carry a validation split \(data.val\)"):
        tr.tune(train_fn, no_val, hyperparameter="epochs", start=8, density=0.5, budget=2)
    with pytest.raises(SpecError, match=r"^start 8 must lie within \[lower, upper\]"):
        tr.tune(train_fn, data, hyperparameter="epochs", start=8, density=0.5, budget=2,
                lower=10)
    with pytest.raises(SpecError, match=r"^seeds: only for tune\(train_fn, data, \.\.\.\)"):
        tr.tune("sweeps/quick.yaml", density=0.5, budget=2, seeds=2)
    assert trained == []
