"""Retraining ensembles grouped per cell (``ensembles="cell"``) vs per dense run ("dense").

The grouping changes which models train together, never what a model is: the same jobs and
keys, equal numbers to float rounding, and a store made with one grouping is reused by the
other.
"""
from __future__ import annotations

import dataclasses
import os
import shutil

import numpy as np
import pytest
import torch
import yaml
from _tiny import tiny_sweep

import threeregime as tr
from threeregime.spec.specs import SweepSpec, from_dict
from threeregime.sweep import stages
from threeregime.sweep.plan import dense_tasks, plan_sweep, retrain_tasks
from threeregime.sweep.torchio import load_torch


def _spec(**base) -> SweepSpec:
    d = tiny_sweep("tg")
    d["dense_seeds"] = [0, 1, 2]
    d["base"].update(base)
    return from_dict(SweepSpec, d)


def _cell(spec: SweepSpec) -> SweepSpec:
    return dataclasses.replace(spec, axes={"epochs": [2], "density": [0.2]})


def _sizes(plan, ensembles, size=12):
    return [len(t) for t in retrain_tasks(plan, lambda p, t: size, ensembles)]


def test_cell_grouping_puts_a_cells_dense_runs_in_one_ensemble():
    plan = plan_sweep(_cell(_spec()))                       # 3 dense seeds x 2 retrain seeds
    assert _sizes(plan, "dense") == [2, 2, 2]
    assert _sizes(plan, "cell") == [6]
    assert _sizes(plan, "cell", size=4) == [4, 2]             # cut at the ensemble size
    assert retrain_tasks(plan, lambda p, t: 12) == retrain_tasks(plan, lambda p, t: 12, "dense")
    cell = retrain_tasks(plan, lambda p, t: 12, "cell")
    dense = retrain_tasks(plan, lambda p, t: 12, "dense")
    assert [j.key for t in cell for j in t] == [j.key for t in dense for j in t]   # same jobs
    # the whole grid: cells of one recipe share ensembles across dense runs and densities
    full = plan_sweep(_spec())
    assert sum(_sizes(full, "cell")) == len(full.retrain) == 24
    # channel pruning keeps one ensemble per dense source (its architecture follows it)
    ch = plan_sweep(_cell(_spec(prune={"method": "channel"})))
    assert _sizes(ch, "cell") == _sizes(ch, "dense") == [2, 2, 2]


def test_bad_grouping_is_a_one_line_error():
    plan = plan_sweep(_cell(_spec()))
    with pytest.raises(tr.SpecError, match=r"^ensembles must be one of dense, cell; got 'run'$"):
        retrain_tasks(plan, lambda p, t: 12, "run")
    with pytest.raises(tr.SpecError, match=r"ensembles must be one of dense, cell; got 'x'"):
        tr.tune(_spec(), density=0.2, budget=1, ensembles="x")


def _retrained(root, plan, ensembles, opts):
    for t in retrain_tasks(plan, lambda p, s: stages.chunk_size(p, s, opts), ensembles):
        stages.run_retrain_group(root, t, opts)
    return {j.key: load_torch(j.path(stages.Store(root))) for j in plan.retrain}


def test_cell_grouping_equals_per_dense_run_retraining(tmp_path):
    """Same models to float rounding: the per-member math is the same, only the stacked
    kernels (grouped convolutions over 2 vs 6 members) sum in another order."""
    spec = _cell(_spec())
    plan = plan_sweep(spec)
    opts = stages.RunOptions(device="cpu", threads=1, progress=False)
    base = tmp_path / "base"
    for t in dense_tasks(plan, lambda p, s: 12):
        stages.run_dense_group(base, t, opts)
    roots = {}
    for mode in ("dense", "cell"):
        roots[mode] = tmp_path / f"by_{mode}"
        shutil.copytree(base, roots[mode])
    a = _retrained(roots["dense"], plan, "dense", opts)
    b = _retrained(roots["cell"], plan, "cell", opts)
    assert a.keys() == b.keys() and len(a) == 6
    for k in a:
        assert a[k]["chunk"] != b[k]["chunk"]                 # trained in other ensembles
        for name, v in a[k]["state"].items():
            torch.testing.assert_close(v, b[k]["state"][name], atol=1e-5, rtol=1e-5)
        assert torch.equal(a[k]["mask"]["features.0.weight"], b[k]["mask"]["features.0.weight"])
        np.testing.assert_allclose(a[k]["history"]["train_loss"],
                                   b[k]["history"]["train_loss"], atol=1e-5)


def _yaml(tmp_path):
    d = tiny_sweep("tg")
    d["dense_seeds"] = [0, 1]
    d["axes"]["epochs"] = [1, 2]
    d["base"]["data"]["val_size"] = 64
    path = tmp_path / "tg.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


def _mtimes(root):
    return {p: os.stat(p).st_mtime_ns for p in (root / "retrain").glob("*.pt")}


def test_store_made_per_dense_run_is_reused_by_cell_grouping(tmp_path, monkeypatch):
    """A tune (or sweep) store retrained with the old grouping resumes with the new one:
    finished retrainings are reused as they are, a missing one alone is trained."""
    spec, out = _yaml(tmp_path), tmp_path / "store"
    old = tr.tune(spec, density=0.2, budget=1, start=2, out=out, ensembles="dense")
    saved = _mtimes(out)
    assert len(saved) == 4                                     # 2 dense x 2 retrain seeds

    real_fit, calls = stages.fit, []
    monkeypatch.setattr(stages, "fit", lambda *a, **k: calls.append(len(k["seeds"]))
                        or real_fit(*a, **k))
    new = tr.tune(spec, density=0.2, budget=1, start=2, out=out, ensembles="cell")
    assert calls == [] and _mtimes(out) == saved               # nothing trained again
    for v in ("test_error", "val_error", "lmc", "cka"):
        np.testing.assert_array_equal(new.column[v].values, old.column[v].values)

    gone = sorted(saved)[0]                                    # an interrupted cell
    gone.unlink()
    for p in (out / "points").glob("*.nc"):
        p.unlink()
    tr.tune(spec, density=0.2, budget=1, start=2, out=out, ensembles="cell")
    assert calls == [1]                                        # the missing member alone
    again = _mtimes(out)
    assert gone in again and all(again[p] == t for p, t in saved.items() if p != gone)


def test_cli_tune_passes_the_grouping(tmp_path, monkeypatch, capsys):
    import threeregime.tuning_run as tu
    from threeregime import cli

    seen = {}

    class _Stop(tr.ThreeRegimeError):
        pass

    def fake(*a, **k):
        seen.update(k)
        raise _Stop("stopped here")
    monkeypatch.setattr(tu, "tune", fake)
    argv = ["tune", str(_yaml(tmp_path)), "--density", "0.2", "--budget", "1"]
    assert cli.main(argv) == 2 and seen["ensembles"] == "cell"        # the default
    assert cli.main([*argv, "--ensembles", "dense"]) == 2 and seen["ensembles"] == "dense"
    with pytest.raises(SystemExit) as e:                               # argparse: exit 2
        cli.main([*argv, "--ensembles", "run"])
    assert e.value.code == 2 and "invalid choice: 'run'" in capsys.readouterr().err
