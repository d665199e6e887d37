"""advise(): the single-model rule, caching, errors, reading a sweep, and case studies 2 and 3.

Fast tests use tiny MNIST-1D subsets or monkeypatch the measurement; the two end-to-end checks
of the physics (a Regime I model is told "hotter", a briefly trained one at 50 % density
"colder") need the full embedded data and are marked slow.
"""
from __future__ import annotations

import importlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from _results_synth import synthetic_sweep
from torch import nn

import threeregime
from threeregime import DataError, SpecError, TrainSpec
from threeregime.data import load_data
from threeregime.models import build_model
from threeregime.spec import DataSpec, ModelSpec

A = importlib.import_module("threeregime.advise")


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tiny():
    """A tiny MNIST-1D problem and a dense CNN trained on it for a few epochs."""
    torch.set_num_threads(1)
    data = load_data(DataSpec(name="mnist1d", train_size=256, test_size=128))
    model = build_model(ModelSpec(name="cnn1d", width=0.25), data.input_shape,
                        data.num_classes, seed=0)
    res = threeregime.fit(model, {k: v.clone() for k, v in model.state_dict().items()}, data,
                          TrainSpec(epochs=3, batch_size=32), seeds=[0])
    model.load_state_dict(res.states[0])
    return model, data


QUICK = TrainSpec(epochs=1, batch_size=32)


def _fake_retrain(test_error=0.1, train_error=0.05, k=3):
    def f(model, splits, *, seeds, **kw):
        return {"states": [], "mask": {}, "diverged": [False] * len(seeds),
                "test_error": [test_error] * len(seeds), "train_error": [train_error] * len(seeds),
                "realized_density": kw["density"], "seeds": list(seeds), "from_cache": False}
    return f


def _fake_measure(lmc, cka):
    def f(model, splits, ret, *, pairs, **kw):
        return {"lmc": list(lmc), "cka": list(cka)}
    return f


def _patched(monkeypatch, lmc, cka, **kw):
    monkeypatch.setattr(A, "_retrain", _fake_retrain(**kw))
    monkeypatch.setattr(A, "_measure", _fake_measure(lmc, cka))


# --------------------------------------------------------------------------- Advice
def test_public_names_importable():
    for name in ("advise", "Advice", "select_model_to_prune", "tune_temperature"):
        assert getattr(threeregime, name) is not None
    from threeregime import Advice, advise, select_model_to_prune, tune_temperature  # noqa
    assert isinstance(threeregime.Advice, type)
    assert callable(threeregime.advise)   # stays callable after the submodule is imported


@pytest.mark.parametrize("hp,hotter,colder", [
    ("epochs", "train fewer epochs", "train more epochs"),
    ("batch_size", "use a smaller batch", "use a larger batch"),
    ("lr", "raise the learning rate", "lower the learning rate"),
    ("sam_rho", "raise rho", "lower rho")])
def test_moves_in_own_words(hp, hotter, colder):
    assert A.move_for(hp, "hotter") == hotter
    assert A.move_for(hp, "colder") == colder
    assert A.move_for(hp, "keep") == f"keep {hp}"
    assert A.move_for(hp, "unknown").startswith("no advice")


@pytest.mark.parametrize("lmc,cka,regime,direction,move", [
    ([-0.10, -0.12, -0.09], [0.60, 0.62, 0.61], "I", "hotter", "use a smaller batch"),
    ([0.0, -0.002, 0.001], [0.80, 0.82, 0.81], "II-A", "colder", "use a larger batch"),
    ([0.0, -0.002, 0.001], [0.99, 0.985, 0.99], "II-B", "keep", "keep batch_size")])
def test_regime_to_direction_and_move(monkeypatch, tiny, lmc, cka, regime, direction, move):
    _patched(monkeypatch, lmc, cka)
    model, data = tiny
    adv = threeregime.advise(model, data, target_density=0.1, hyperparameter="batch_size",
                             value=64, cache_dir=False)
    assert (adv.regime, adv.direction, adv.move) == (regime, direction, move)
    assert adv.hyperparameter == "batch_size" and adv.value == 64.0
    assert 0.5 <= adv.confidence <= 1.0
    ev = adv.evidence
    assert ev["n_pairs"] == 3 and len(ev["lmc"]) == len(ev["cka"]) == 3
    assert ev["lmc_mean"] == pytest.approx(np.mean(lmc))
    assert ev["cka_sem"] == pytest.approx(np.std(cka, ddof=1) / math.sqrt(3))
    assert ev["test_error"] == [0.1] * 3
    assert adv.rule["tau_lmc"] == A.DEFAULTS["tau_lmc"] == 0.02
    assert adv.rule["cka_rule"] == "absolute"
    assert adv.rule["tau_cka"] == A.DEFAULTS["tau_cka"]
    text = str(adv)
    assert text.splitlines()[0].startswith(f"Advice: {move} ({direction}; regime {regime}")
    assert "batch_size = 64 at density 0.1" in text and len(text.splitlines()) <= 7
    ds = adv.to_dataset()
    assert ds.attrs["regime"] == regime and ds.attrs["move"] == move
    assert ds["lmc"].dims == ("pair",) and ds.sizes["retrain_seed"] == 3


def test_thresholds_are_arguments(monkeypatch, tiny):
    _patched(monkeypatch, [-0.03, -0.03, -0.03], [0.9, 0.9, 0.9])
    model, data = tiny
    kw = {"target_density": 0.1, "hyperparameter": "epochs", "cache_dir": False}
    assert threeregime.advise(model, data, **kw).regime == "I"
    adv = threeregime.advise(model, data, tau_lmc=0.05, tau_cka=0.85, **kw)
    assert adv.regime == "II-B" and adv.rule["tau_cka"] == 0.85


def test_collapse_is_undetermined(monkeypatch, tiny):
    # retrained models at chance look connected and similar (PROBE.md): no advice
    _patched(monkeypatch, [0.0, 0.0, 0.0], [0.9999, 0.9999, 0.9999], train_error=0.88,
             test_error=0.9)
    model, data = tiny
    adv = threeregime.advise(model, data, target_density=0.03, hyperparameter="epochs",
                             cache_dir=False)
    assert (adv.regime, adv.direction) == ("undetermined", "unknown")
    assert "collapsed" in adv.evidence["undetermined_reason"] and math.isnan(adv.confidence)
    assert "undetermined: the retrained models collapsed" in str(adv)


# --------------------------------------------------------------------------- real runs, cache
def test_end_to_end_tiny_and_cache(monkeypatch, tiny, tmp_path):
    import threeregime.train as T

    calls = []
    real_fit = T.fit

    def counting_fit(*a, **k):
        calls.append(1)
        return real_fit(*a, **k)

    monkeypatch.setattr(T, "fit", counting_fit)
    model, data = tiny
    kw = {"target_density": 0.2, "hyperparameter": "epochs", "value": 3, "seeds": 2,
          "retrain": QUICK, "device": "cpu", "cache_dir": tmp_path}
    a1 = threeregime.advise(model, data, **kw)
    assert len(calls) == 1 and not a1.evidence["from_cache"]
    assert a1.regime in ("I", "II-A", "II-B", "undetermined")
    assert a1.evidence["n_pairs"] == 1 and a1.evidence["pairs"] == [[0, 1]]
    assert a1.evidence["realized_density"] == pytest.approx(0.2, abs=0.01)
    a2 = threeregime.advise(model, data, **kw)
    assert len(calls) == 1 and a2.evidence["from_cache"]          # nothing retrained
    assert a2.evidence["lmc"] == a1.evidence["lmc"] and a2.regime == a1.regime
    threeregime.advise(model, data, **{**kw, "target_density": 0.5})
    assert len(calls) == 2                                         # new density -> new key
    # (train, test) pairs of (x, y) are accepted and hash like the same Splits
    pairs = ((data.train.x, data.train.y), (data.test.x, data.test.y))
    threeregime.advise(model, pairs, **kw)
    assert len(calls) == 2


def test_cache_dir_env(monkeypatch, tiny, tmp_path):
    monkeypatch.setenv("THREEREGIME_CACHE", str(tmp_path / "c"))
    assert A._cache_root(None) == tmp_path / "c" / "advise"
    assert A._cache_root(False) is None


# --------------------------------------------------------------------------- errors
def test_error_no_prunable_layers(tiny):
    _, data = tiny
    lin = nn.Sequential(nn.Flatten(), nn.Linear(40, 10))
    with pytest.raises(SpecError, match=r"^model has no prunable layers \(Linear/Conv weights\)"
                                        r" besides the classifier; got Sequential"):
        threeregime.advise(lin, data, target_density=0.1, hyperparameter="epochs")


@pytest.mark.parametrize("d", [0, 0.0, 1.5, -0.1, float("nan")])
def test_error_density(tiny, d):
    model, data = tiny
    with pytest.raises(SpecError, match=r"^target_density must be a number in \(0, 1\]; got "):
        threeregime.advise(model, data, target_density=d, hyperparameter="epochs")


def test_error_hyperparameter(tiny):
    model, data = tiny
    with pytest.raises(SpecError) as e:
        threeregime.advise(model, data, target_density=0.1, hyperparameter="epoch")
    assert str(e.value) == ("hyperparameter must be one of epochs, batch_size, lr, sam_rho; got "
                            "'epoch' (did you mean 'epochs'?)")


def test_error_data_too_small(tiny):
    model, data = tiny
    small = ((data.train.x[:16], data.train.y[:16]), (data.test.x[:16], data.test.y[:16]))
    with pytest.raises(DataError) as e:
        threeregime.advise(model, small, target_density=0.1, hyperparameter="epochs")
    assert str(e.value) == ("retrain.batch_size must be <= the number of training examples "
                            "(16); got 64: lower retrain.batch_size or pass more data")


def test_error_seeds_and_data_form(tiny):
    model, data = tiny
    with pytest.raises(SpecError, match=r"^seeds must be an integer >= 2"):
        threeregime.advise(model, data, target_density=0.1, hyperparameter="lr", seeds=1)
    with pytest.raises(DataError, match=r"^data must be a Splits"):
        threeregime.advise(model, [1, 2, 3], target_density=0.1, hyperparameter="lr")


# --------------------------------------------------------------------------- sweep Dataset
def test_advise_from_dataset():
    ds = synthetic_sweep(0)
    adv = threeregime.advise(ds, point={"epochs": 20, "density": 0.05})
    assert (adv.regime, adv.direction, adv.move) == ("I", "hotter", "train fewer epochs")
    assert adv.hyperparameter == "epochs" and adv.value == 20.0
    assert adv.evidence["n_pairs"] == 9 and len(adv.evidence["lmc"]) == 9
    assert adv.evidence["density"] == 0.05 and adv.rule["cka_rule"] == "relative"
    adv = threeregime.advise(ds, point={"epochs": 5, "density": 0.5})
    assert (adv.regime, adv.move) == ("II-A", "train more epochs")
    adv = threeregime.advise(ds, point={"epochs": 40, "density": 0.5})
    assert (adv.regime, adv.move) == ("II-B", "keep epochs")
    # the absolute rule on demand
    assert threeregime.advise(ds, point={"epochs": 5, "density": 0.5},
                              tau_cka=0.7).regime == "II-B"


def test_advise_from_dataset_errors():
    ds = synthetic_sweep(0)
    with pytest.raises(SpecError, match=r"^point must give a value for every cell dim; missing "
                                        r"density"):
        threeregime.advise(ds, point={"epochs": 20})
    with pytest.raises(SpecError, match=r"^point\['epochs'\] must be one of 5, 10, 20, 40; "
                                        r"got 15"):
        threeregime.advise(ds, point={"epochs": 15, "density": 0.05})
    with pytest.raises(SpecError, match=r"did you mean 'density'"):
        threeregime.advise(ds, point={"epochs": 20, "densty": 0.05})


def test_cli_advise_on_results(tmp_path, capsys):
    from threeregime.cli import main
    from threeregime.storage import write_dataset

    path = write_dataset(synthetic_sweep(0), tmp_path / "r.nc")
    rc = main(["advise", str(path), "--point", "epochs=20", "--point", "density=0.05"])
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith("Advice: train fewer epochs (hotter; regime I")
    rc = main(["advise", str(path), "--point", "epochs20"])
    assert rc == 2 and "--point must be AXIS=VALUE" in capsys.readouterr().err


def test_cli_advise_checkpoint(tmp_path, capsys, monkeypatch):
    from threeregime.cli import main

    _patched(monkeypatch, [-0.1, -0.1, -0.1], [0.6, 0.6, 0.6])
    data = load_data(DataSpec(name="mnist1d"))
    m = build_model(ModelSpec(name="cnn1d"), data.input_shape, data.num_classes, seed=0)
    ck = tmp_path / "m.pt"
    torch.save(m.state_dict(), ck)
    rc = main(["advise", str(ck), "--density", "0.05", "--value", "40"])
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith("Advice: train fewer epochs (hotter; regime I")
    rc = main(["advise", str(ck), "--density", "0.05", "--width", "2"])
    assert rc == 2 and "checkpoint does not fit --model cnn1d" in capsys.readouterr().err


# --------------------------------------------------------------------------- case study 2
def _fake_advice(regime, lmc, cka, te=0.1):
    return A._make_advice(regime, 0.9, {"lmc_mean": lmc, "cka_mean": cka,
                                        "test_error_mean": te}, {}, "epochs", None)


def test_select_model_to_prune_ranking(monkeypatch):
    table = {"hot": ("II-A", 0.0, 0.80), "mid": ("II-B", -0.001, 0.95),
             "cold": ("I", -0.2, 0.99), "colder": ("I", -0.3, 0.995),
             "broken": ("undetermined", 0.0, 1.0)}
    monkeypatch.setattr(A, "advise", lambda m, data, **kw: _fake_advice(*table[m]))
    sel = threeregime.select_model_to_prune({k: k for k in table}, None, target_density=0.1)
    assert sel.best == "mid" and sel.best_model == "mid"
    assert [r["name"] for r in sel.ranking] == ["mid", "hot", "cold", "colder", "broken"]
    assert [r["eligible"] for r in sel.ranking] == [True, True, False, False, False]
    text = str(sel)
    assert text.startswith("Selected: 'mid'") and "(dropped)" in text
    # all in Regime I: the best connected wins, CKA does not matter
    sel = threeregime.select_model_to_prune(["cold", "colder"], None, target_density=0.1)
    assert sel.best == 0 and sel.best_model == "cold"
    sel = threeregime.select_model_to_prune(["broken"], None, target_density=0.1)
    assert sel.best is None and "none" in str(sel)
    with pytest.raises(SpecError, match="^candidates must hold at least one model"):
        threeregime.select_model_to_prune({}, None, target_density=0.1)


# --------------------------------------------------------------------------- case study 3
def test_tune_temperature_walks_until_keep(monkeypatch):
    # epochs: I at >= 40, II-A at <= 5, II-B at 10-20; test error lowest at 20
    def fake(model, data, *, hyperparameter, value, **kw):
        reg = "I" if value >= 40 else ("II-A" if value <= 5 else "II-B")
        return _fake_advice(reg, 0.0, 0.9, te={80: 0.3, 40: 0.2, 20: 0.1}.get(value, 0.15))

    monkeypatch.setattr(A, "advise", fake)
    visited = []
    res = threeregime.tune_temperature(lambda v: visited.append(v) or v, None,
                                       hyperparameter="epochs", start=80, target_density=0.05)
    assert visited == [80, 40, 20] and res.stopped == "II-B (keep)"
    assert res.best_value == 20 and [h[0] for h in res.history] == [80, 40, 20]
    assert "best 20" in str(res)


def test_tune_temperature_direction_and_stops(monkeypatch):
    # batch size: always Regime I -> smaller batches; the error stops improving at 16
    errs = {256: 0.3, 128: 0.2, 64: 0.15, 32: 0.1, 16: 0.12}
    monkeypatch.setattr(A, "advise", lambda m, d, *, value, **kw: _fake_advice(
        "I", -0.1, 0.6, te=errs[value]))
    res = threeregime.tune_temperature(lambda v: v, None, hyperparameter="batch_size",
                                       start=256, target_density=0.05, budget=10)
    assert [h[0] for h in res.history] == [256, 128, 64, 32, 16]
    assert res.stopped == "no improvement" and res.best_value == 32
    # lr: II-A -> colder = smaller lr; budget ends the walk
    monkeypatch.setattr(A, "advise", lambda m, d, *, value, **kw: _fake_advice(
        "II-A", 0.0, 0.8, te=value))
    res = threeregime.tune_temperature(lambda v: v, None, hyperparameter="lr", start=0.4,
                                       target_density=0.5, budget=3)
    assert [h[0] for h in res.history] == pytest.approx([0.4, 0.2, 0.1])
    assert res.stopped == "budget"
    # sam_rho: I -> hotter = larger rho, then II-A -> back: a revisit stops the walk
    monkeypatch.setattr(A, "advise", lambda m, d, *, value, **kw: _fake_advice(
        "I" if value < 0.15 else "II-A", 0.0, 0.8, te=0.2 - value))
    res = threeregime.tune_temperature(lambda v: v, None, hyperparameter="sam_rho", start=0.1,
                                       target_density=0.1)
    assert [h[0] for h in res.history] == pytest.approx([0.1, 0.2])
    assert res.stopped == "revisit"
    with pytest.raises(SpecError, match=r"^start must be a finite number > 0; got 0"):
        threeregime.tune_temperature(lambda v: v, None, hyperparameter="sam_rho", start=0,
                                     target_density=0.1)


# --------------------------------------------------------------------------- validation
def test_validate_advice_synthetic():
    # truth: test error lowest at the hottest row in the two low-density columns and at the
    # coldest row at high density -> I cells should be advised hotter etc.
    ds = synthetic_sweep(0)
    te = ds["test_error"].copy()
    best = {0.05: 5, 0.1: 5, 0.2: 20, 0.5: 40}
    for d, e_best in best.items():
        for e in ds["epochs"].values:
            off = 0.0 if e == e_best else 0.05 * (1 + abs(np.log2(e / e_best)))
            te.loc[{"epochs": e, "density": d}] = 0.1 + off + 0.0 * te.loc[
                {"epochs": e, "density": d}]
    ds["test_error"] = te
    out = A.validate_advice(ds, rule="sweep")
    assert out["n_cells"] == 16 and set(out["naive"]) == {"hotter", "colder", "keep"}
    cells = {(c["epochs"], c["density"]): c for c in out["cells"]}
    assert cells[(20, 0.05)]["truth"] == "hotter" and cells[(20, 0.05)]["advised"] == "hotter"
    assert cells[(5, 0.5)]["truth"] == "colder" and cells[(5, 0.5)]["advised"] == "colder"
    assert cells[(40, 0.5)]["truth"] == "keep"
    assert 0 <= out["agreement"] <= 1 and out["agreement"] > max(out["naive"].values())
    # a margin wider than every difference makes every cell "keep"
    out = A.validate_advice(ds, margin=1.0)
    assert out["naive"]["keep"] == 1.0


# --------------------------------------------------------------------------- physics
# Issue #5 asks for these two checks as tests; they run by default (~25 s each on a quiet
# 2-core machine: one 40-epoch dense run and three 40-epoch retrainings on MNIST-1D).
def _dense(epochs, density_name="full"):
    data = load_data(DataSpec(name="mnist1d", train_size=4000, test_size=1000))
    model = build_model(ModelSpec(name="cnn1d"), data.input_shape, data.num_classes, seed=0)
    res = threeregime.fit(model, {k: v.clone() for k, v in model.state_dict().items()}, data,
                          TrainSpec(epochs=40), seeds=[0], stop_epoch=epochs)
    model.load_state_dict(res.states[0])
    return model, data


def test_regime_one_model_is_told_hotter(tmp_path):
    """40 dense epochs, 5 % density, 3 x 40 retraining epochs: a barrier, so train hotter."""
    torch.set_num_threads(1)
    model, data = _dense(40)
    adv = threeregime.advise(model, data, target_density=0.05, hyperparameter="epochs",
                             value=40, device="cpu", cache_dir=tmp_path)
    assert adv.regime == "I" and adv.direction == "hotter", str(adv)


@pytest.fixture(scope="module")
def half_density_brief(tmp_path_factory):
    """A 5-epoch snapshot (hot) pruned to 50 %: advised once, cached for both tests below."""
    torch.set_num_threads(1)
    model, data = _dense(5)
    return threeregime.advise(model, data, target_density=0.5, hyperparameter="epochs",
                              value=5, device="cpu",
                              cache_dir=tmp_path_factory.mktemp("advise_cache"))


def test_briefly_trained_dense_half_density_is_connected(half_density_brief):
    """Well connected at 50 % density, so never "hotter"."""
    adv = half_density_brief
    assert adv.regime in ("II-A", "II-B") and adv.direction != "hotter", str(adv)
    assert adv.evidence["lmc_mean"] > -0.01


def test_briefly_trained_dense_half_density_is_told_colder(half_density_brief):
    assert half_density_brief.direction == "colder", str(half_density_brief)


_DATA = Path(__file__).resolve().parent / "data"


def test_advice_beats_naive_rules_on_quick_sweep():
    """Held-out validation (docs/advice_validation.md): tau_cka was fit on dense seed 1; this
    is the quick sweep with dense seeds 2, 3, 4 (3 dense x 3 retraining seeds per cell)."""
    ds = threeregime.open_sweep(_DATA / "quick_dense_seeds234.nc")
    for rule in ("advise", "sweep"):
        out = A.validate_advice(ds, rule=rule)
        assert out["agreement"] > max(out["naive"].values()), (rule, out["agreement"],
                                                               out["naive"])
    # the hottest 50 % cell is connected with relatively low CKA: II-A, "train more epochs"
    assert threeregime.advise(ds, point={"epochs": 5, "density": 0.5}).direction == "colder"
