"""The sweep driver end to end: schema, idempotence, executors, CLI."""
from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest
import xarray as xr
from _tiny import tiny_sweep

import threeregime
from threeregime import cli
from threeregime.spec.specs import SweepSpec, from_dict
from threeregime.sweep.driver import run_point, run_sweep, sweep_status
from threeregime.sweep.plan import Store, plan_point, plan_sweep

TINY = tiny_sweep("tiny")


@pytest.fixture(scope="module")
def tiny_spec() -> SweepSpec:
    return from_dict(SweepSpec, TINY)


@pytest.fixture(scope="module")
def tiny_result(tiny_spec, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    return out, run_sweep(tiny_spec, out, progress=False, threads=1, device="cpu")


def _strip(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.copy()
    for volatile in ("created", "date_created", "history", "git_sha"):
        ds.attrs.pop(volatile, None)
    return ds


def test_sweep_dataset_schema(tiny_result, tiny_spec):
    out, ds = tiny_result
    assert dict(ds.sizes)["epochs"] == 2 and dict(ds.sizes)["density"] == 2
    for v in ["test_error", "normalized_test_error", "realized_density", "lmc", "lmc_curve",
              "cka", "cka_logits", "hessian_trace", "hessian_trace_stderr", "hessian_top_eig",
              "regime", "regime_confidence", "status"]:
        assert v in ds, v
        assert "long_name" in ds[v].attrs, v
    assert ds["epochs"].attrs["role"] == "temperature"
    assert ds["epochs"].attrs["hotter"] == "decreasing"
    assert ds["density"].attrs["role"] == "load"
    assert ds["regime"].dtype == np.int8
    assert list(ds["regime"].attrs["flag_values"]) == [0, 1, 2, 3, -1]
    assert ds.attrs["spec_hash"] == threeregime.spec_hash(tiny_spec)
    assert ds["lmc_curve"].sizes["t"] == 3
    # realised density tracks the requested one (layer-uniform: within one weight per layer)
    np.testing.assert_allclose(ds["realized_density"].isel(dense_seed=0, epochs=0).values,
                               [0.2, 0.6], atol=0.02)
    assert (out / "results.nc").exists()
    xr.testing.assert_identical(_strip(threeregime.open_sweep(out)), _strip(ds))


def test_rerun_does_no_work(tiny_result, tiny_spec, monkeypatch):
    out, ds = tiny_result
    import threeregime.sweep.stages as stages

    calls = []
    real_fit = stages.fit
    monkeypatch.setattr(stages, "fit", lambda *a, **k: calls.append(1) or real_fit(*a, **k))
    again = run_sweep(tiny_spec, out, progress=False, threads=1, device="cpu")
    assert calls == []
    xr.testing.assert_identical(_strip(again), _strip(ds))
    st = sweep_status(out)
    assert (st.done, st.pending, st.failed, st.total) == (4, 0, 0, 4)


def test_plan_shares_work(tiny_spec):
    plan = plan_sweep(tiny_spec)
    assert len(plan.dense) == 1  # the epochs axis is snapshots of one run
    assert len(plan.retrain) == 2 * 2 * 2  # snapshots x densities x seeds
    assert len(plan.points) == 4


def test_edited_spec_reuses_finished_stages(tiny_result, tiny_spec, tmp_path, monkeypatch):
    out, _ = tiny_result
    import shutil

    import threeregime.sweep.stages as stages

    work = tmp_path / "w"
    shutil.copytree(out, work)
    grown = dataclasses.replace(tiny_spec, axes={**tiny_spec.axes, "density": (0.2, 0.4, 0.6)})
    sizes = []
    real_fit = stages.fit
    monkeypatch.setattr(stages, "fit", lambda m, init, *a, **k: sizes.append(
        len(k["seeds"])) or real_fit(m, init, *a, **k))
    ds = run_sweep(grown, work, progress=False, threads=1, device="cpu")
    assert sizes == [4]  # only the new density's 2 snapshots x 2 seeds retrained; no dense run
    assert ds.sizes["density"] == 3 and int((ds["status"] == 0).sum()) == 6


@pytest.mark.parametrize("kind", ["process", "dask"])
def test_executors_give_identical_results(tiny_result, tiny_spec, tmp_path, kind):
    from threeregime.sweep.executors import DaskExecutor, ProcessExecutor

    _, ref = tiny_result
    ex = (ProcessExecutor(workers=2, threads=1) if kind == "process"
          else DaskExecutor(n_workers=2, threads=1))
    try:
        ds = run_sweep(tiny_spec, tmp_path / kind, executor=ex, progress=False, threads=1,
                       device="cpu")
    finally:
        ex.close()
    xr.testing.assert_identical(_strip(ds), _strip(ref))


def test_submitit_local_executor(tiny_spec, tmp_path):
    """Bit-identical to an inline run of the same spec.  (A sub-grid of another sweep is not a
    reference: its retrainings form other ensembles, which differ in the last bits.)"""
    pytest.importorskip("submitit", reason="submitit is the optional 'slurm' extra")
    from threeregime.sweep.executors import SubmititExecutor

    spec = dataclasses.replace(tiny_spec, axes={"epochs": (2,), "density": (0.2, 0.6)})
    ref = run_sweep(spec, tmp_path / "inline", progress=False, threads=1, device="cpu")
    ex = SubmititExecutor(folder=str(tmp_path / "sub"), cluster="local", timeout_min=10)
    ds = run_sweep(spec, tmp_path / "s", executor=ex, progress=False, threads=1, device="cpu")
    for v in ("test_error", "lmc", "cka", "cka_logits", "lmc_curve"):
        xr.testing.assert_allclose(ds[v], ref[v], rtol=0, atol=0)
    xr.testing.assert_identical(_strip(ds), _strip(ref))


def test_run_point_end_to_end(tiny_spec):
    p = tiny_spec.points()[0][1]
    ds = run_point(p, device="cpu", progress=False)
    assert ds.sizes["retrain_seed"] == 2 and ds.sizes["pair"] == 1
    assert np.isfinite(ds["test_error"]).all()
    assert np.isfinite(ds["lmc"]).all() and np.isfinite(ds["cka"]).all()
    assert 0 <= float(ds["cka"].max()) <= 1 + 1e-9


def test_cli_run_status_plot_export(tiny_result, tmp_path, capsys):
    out, _ = tiny_result
    spec_file = tmp_path / "tiny.yaml"
    threeregime.dump_yaml(from_dict(SweepSpec, TINY), spec_file)
    assert cli.main(["run", str(spec_file), "--out", str(out), "--quiet", "--threads", "1",
                     "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "4/4 points done" in text and "regimes (rows: epochs" in text
    assert cli.main(["status", str(out)]) == 0
    assert "4/4 points done" in capsys.readouterr().out
    nc = tmp_path / "x.nc"
    assert cli.main(["export", str(out), str(nc)]) == 0 and nc.exists()
    png = tmp_path / "x.png"
    assert cli.main(["plot", str(nc), "-o", str(png)]) == 0
    assert png.stat().st_size > 10_000


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\naxes: {density: [0.1, 2]}\n")
    assert cli.main(["run", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ")
    assert "axes.density[1]" in err and "got 2" in err


@pytest.mark.parametrize("mode", ["finetune", "rewind", "reinit"])
def test_retrain_modes_start_from_the_right_weights(tiny_spec, tmp_path, monkeypatch, mode):
    """finetune: pruned dense weights; rewind: the dense snapshot at rewind_epoch, masked;
    reinit: fresh random weights with the same mask (Liu et al. 2019 baseline)."""
    import threeregime.sweep.stages as stages
    from threeregime.sweep.torchio import load_torch

    p = tiny_spec.points()[-1][1]  # the end of the dense run (epochs 2), density 0.6
    p = dataclasses.replace(p, retrain_mode=mode, rewind_epoch=1)
    captured = {}
    real_fit = stages.fit

    def spy(model, init, data, spec, **kw):
        if kw.get("masks") and kw["masks"][0] is not None:
            captured["init"], captured["masks"] = init, kw["masks"]
        return real_fit(model, init, data, spec, **kw)

    monkeypatch.setattr(stages, "fit", spy)
    run_point(p, out=tmp_path, device="cpu", progress=False)
    dj, _, _ = plan_point({}, p)
    final = load_torch(dj.path(Store(tmp_path), p.snapshot_epoch))["state"]
    early = load_torch(dj.path(Store(tmp_path), 1))["state"]
    init, mask = captured["init"][0], captured["masks"][0]
    name = next(iter(mask))
    kept = mask[name]
    assert 0.55 < kept.float().mean() < 0.65
    ref = {"finetune": final, "rewind": early}.get(mode)
    if ref is not None:
        torch_equal = (init[name][kept] == ref[name][kept]).all()
        assert bool(torch_equal), mode
    else:
        assert not bool((init[name][kept] == final[name][kept]).all())
        assert not bool((init[name][kept] == early[name][kept]).all())
    # the mask comes from the magnitudes of the dense source in every mode
    src = final[name].abs()
    assert src[kept].min() >= src[~kept].max()


def test_point_with_hessian(tiny_spec):
    p = tiny_spec.points()[-1][1]
    p = dataclasses.replace(p, measure=dataclasses.replace(
        p.measure, hessian=True, hessian_probes=8, hessian_n=64))
    ds = run_point(p, device="cpu", progress=False)
    tr_, se = ds["hessian_trace"].values, ds["hessian_trace_stderr"].values
    assert np.isfinite(tr_).all() and (se > 0).all()
    assert np.isfinite(ds["hessian_top_eig"].values).all()
    assert ds["hessian_trace"].attrs["long_name"]


def test_cli_point_writes_a_point_dataset(tiny_spec, tmp_path, capsys):
    """`threeregime point FILE.yaml -o OUT.nc` (issue #2's one point end to end)."""
    p = tiny_spec.points()[-1][1]
    f = tmp_path / "point.yaml"
    threeregime.dump_yaml(p, f)
    out = tmp_path / "point.nc"
    assert cli.main(["point", str(f), "-o", str(out), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "test_error" in text and f"wrote {out}" in text
    ds = xr.load_dataset(out, engine="h5netcdf")
    assert ds.sizes["retrain_seed"] == 2 and np.isfinite(ds["lmc"]).all()


def test_python_dash_m_entry_point():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "threeregime", "--help"], capture_output=True,
                       text=True, check=True)
    for cmd in ("run", "status", "plot", "export", "point", "advise"):
        assert cmd in r.stdout


def test_memory_budget_sizes_the_ensembles(tiny_spec):
    from threeregime.sweep.plan import retrain_tasks
    from threeregime.sweep.stages import RunOptions, chunk_size, problem_of
    from threeregime.training.train import estimate_member_bytes

    p = tiny_spec.points()[0][1]
    plan = plan_sweep(tiny_spec)

    def sizes(opts):
        return [len(t) for t in retrain_tasks(plan, lambda q, t: chunk_size(q, t, opts))]

    assert sizes(RunOptions(device="cpu")) == [8]
    pb = problem_of(p)
    per = estimate_member_bytes(pb.template, pb.data.input_shape, p.retrain.batch_size)
    assert per > sum(q.numel() * 4 for q in pb.template.parameters())
    tight = RunOptions(device="cpu", memory_budget=3 * per)
    assert chunk_size(p, p.retrain, tight) == 3
    assert sizes(tight) == [3, 3, 2]
    with pytest.raises(threeregime.SpecError, match="memory_budget must be a positive"):
        RunOptions(memory_budget=0)


# --------------------------------------------------------------------------- issue 20: version,
# exit codes, progress logging, table, plan
def test_cli_version_and_exit_codes_in_help(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"threeregime {threeregime.__version__}"
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert "exit status:" in text
    for code in ("0 ", "1 ", "2 ", "130"):
        assert f"\n  {code}" in text, code


def _copy_without_a_point(tiny_result, tiny_spec, tmp_path):
    import shutil

    out, _ = tiny_result
    work = tmp_path / "work"
    shutil.copytree(out, work)
    plan_sweep(tiny_spec).points[0].path(Store(work)).unlink()
    spec_file = tmp_path / "tiny.yaml"
    threeregime.dump_yaml(tiny_spec, spec_file)
    return spec_file, work


def test_cli_run_logs_progress_when_stderr_is_not_a_terminal(tiny_result, tiny_spec, tmp_path,
                                                              capsys, monkeypatch):
    spec_file, work = _copy_without_a_point(tiny_result, tiny_spec, tmp_path)
    args = ["run", str(spec_file), "--out", str(work), "--workers", "1", "--device", "cpu"]
    assert cli.main(args) == 0                       # capsys' stderr is not a terminal
    err = capsys.readouterr().err
    assert "threeregime.sweep.driver INFO sweep 'tiny' in " in err and "3 already done" in err
    assert "threeregime.sweep.driver INFO measure: 1/1 task(s) done" in err
    assert "INFO sweep 'tiny': results written to" in err
    import logging

    assert not logging.getLogger("threeregime").handlers      # removed after the command
    plan_sweep(tiny_spec).points[0].path(Store(work)).unlink()
    assert cli.main([*args, "--quiet"]) == 0         # --quiet: no progress of any kind
    assert "INFO" not in capsys.readouterr().err
    plan_sweep(tiny_spec).points[0].path(Store(work)).unlink()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert cli.main(args) == 0                       # a terminal: bars, no log lines
    assert "INFO" not in capsys.readouterr().err


def test_table_cli_and_accessor(tiny_result, tmp_path, capsys):
    from threeregime.analysis.regimes import decode

    out, _ = tiny_result
    ds = threeregime.open_sweep(out)
    assert cli.main(["table", str(out)]) == 0
    text = capsys.readouterr().out.strip()
    assert text == ds.threeregime.table()
    lines = text.splitlines()
    assert lines[0] == "| epochs \\ density | 0.2 | 0.6 |" and lines[1] == "|---|---|---|"
    names = decode(ds["regime"])
    te = ds["test_error_mean"]
    rows = lines[2:]
    assert [r.split(" |")[0] for r in rows] == ["| 1 (hottest)", "| 2 (coldest)"]
    for row, ep in zip(rows, [1, 2]):                # every cell from the Dataset itself
        cells = [c.strip() for c in row.strip("|").split("|")[1:]]
        for cell, d in zip(cells, [0.2, 0.6]):
            at = {"epochs": ep, "density": d}
            label, rest = cell.split(": ", 1)
            assert label.rstrip("?") == str(names.sel(at).values)
            err, mc, cka = (x.strip() for x in rest.split(" / "))
            best = float(te.sel(at)) == float(te.sel(density=d).min())
            assert err == (f"**{100 * float(te.sel(at)):.1f} %**" if best
                           else f"{100 * float(te.sel(at)):.1f} %")
            assert mc == f"{100 * float(ds['lmc_mean'].sel(at)):.1f}"
            assert cka == f"{float(ds['cka_mean'].sel(at)):.3f}"
    assert cli.main(["table", str(out), "--rule", "paper"]) == 2
    assert "rule must be one of" in capsys.readouterr().err


def test_plan_counts_cached_work_and_estimates(tiny_result, tiny_spec, tmp_path, capsys):
    from threeregime.sweep.estimate import plan_report

    spec_file, work = _copy_without_a_point(tiny_result, tiny_spec, tmp_path)
    before = sorted(p for p in work.rglob("*"))
    rep = plan_report(spec_file, work, workers=2, device="cpu")
    assert rep.counts == {"dense": (1, 1), "retrain": (8, 8), "measure": (4, 3)}
    assert rep.steps["dense"] == 0 and rep.steps["retrain"] == 0
    # one point left: 1 pair x 3 LMC points x (128 train + 64 test) + 2 models x 192 examples
    assert rep.steps["measure"] == 1 * 3 * 192 + 2 * 192
    assert sorted(p for p in work.rglob("*")) == before        # nothing written
    fresh = plan_report(tiny_spec, None, workers=1, device="cpu")
    # dense: 2 epochs x 128 // 32 steps; retrain: 8 models x 1 epoch x 4 steps
    assert fresh.steps["dense"] == 2 * 4 and fresh.steps["retrain"] == 8 * 4
    assert fresh.counts == {"dense": (1, 0), "retrain": (8, 0), "measure": (4, 0)}
    assert len(fresh.seconds_per_step) == 2 and all(
        0 < s < 10 for s in fresh.seconds_per_step.values())
    assert fresh.stage_seconds["start-up"] > 0          # the data was made and timed
    expected = sum(fresh.stage_seconds.values())
    assert 0 < fresh.estimate_s == pytest.approx(expected)
    assert cli.main(["plan", str(spec_file), "--out", str(work), "--workers", "2",
                     "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "retrainings          8, 8 cached; 0 optimizer steps left" in text
    assert "measured points      4, 3 cached" in text
    assert "estimate: about" in text and "a rough estimate" in text
    assert cli.main(["plan", str(spec_file), "--out", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.startswith(f"error: --out {tmp_path / 'none'}: no such")
