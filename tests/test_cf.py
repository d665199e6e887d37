"""CF-1.10: the IOOS compliance checker on a written sweep file, the CF rules that matter here
checked directly on every written and shipped file, and provenance that never runs git in a
user's repository.

The checker is ``compliance-checker`` (PyPI, in the ``dev`` extra) run through its Python API
with the ``cf:1.10`` suite at the ``strict`` criterion (errors, warnings and recommendations all
fail); it runs offline (the CF standard-name table ships inside the package).
"""
from __future__ import annotations

import io
import subprocess
from contextlib import redirect_stdout
from pathlib import Path

import h5netcdf
import numpy as np
import pytest
import xarray as xr
from _results_synth import synthetic_sweep

from threeregime.analysis.regimes import classify
from threeregime.analysis.rules import RULES
from threeregime.results import schema as _schema
from threeregime.results.storage import (
    CONVENTIONS,
    SCHEMA_VERSION,
    cf_complete,
    export,
    make_point_dataset,
    open_sweep,
    write_point,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted({p for pat in ("validation/**/*.nc", "tests/data/*.nc", "docs/**/*.nc")
                  for p in ROOT.glob(pat)})
GLOBAL = ("Conventions", "title", "history", "source", "references", "date_created",
          "schema_version", "threeregime_version", "git_sha", "python_version", "numpy_version",
          "xarray_version")


def _sweep_file(tmp_path: Path) -> Path:
    """A classified sweep with every variable the driver writes, exported."""
    ds = synthetic_sweep(0, skip={(5, 0.05, 0)})
    reg = classify(ds)
    for name in reg.data_vars:
        ds[name] = reg[name]
    ds.attrs.update(reg.attrs)
    return export(ds, tmp_path / "sweep.nc")


def _point_file(tmp_path: Path) -> Path:
    ds = make_point_dataset(retrain_seeds=[0, 1, 2], test_error=[0.1, 0.11, 0.12],
                            train_error=[0.0, 0.01, 0.0], dense_test_error=0.09,
                            dense_train_error=0.0, realized_density=0.1,
                            lmc=[-0.1, 0.0, 0.01], cka=[0.9, 0.95, 0.97],
                            lmc_curve=np.zeros((3, 5)), test_error_curve=np.full((3, 4), 0.2))
    return write_point(ds, tmp_path / "point.nc")


def _compliance(path: Path) -> tuple[bool, bool, str]:
    """(passed, checker raised inside a check, report) of cf:1.10 at the strict criterion."""
    runner = pytest.importorskip("compliance_checker.runner",
                                 reason="compliance-checker is in the dev extra")
    suite = pytest.importorskip("compliance_checker.suite")
    suite.CheckSuite.load_all_available_checkers()
    buf = io.StringIO()
    with redirect_stdout(buf):
        passed, errors = runner.ComplianceChecker.run_checker(
            str(path), ["cf:1.10"], verbose=1, criteria="strict", output_format="text")
    return passed, errors, buf.getvalue()


@pytest.mark.parametrize("make", [_sweep_file, _point_file], ids=["sweep", "point"])
def test_compliance_checker_passes_on_written_files(tmp_path, make):
    passed, errors, report = _compliance(make(tmp_path))
    assert passed and not errors, report


def test_compliance_checker_fails_on_what_it_should(tmp_path):
    """The checker run above is not a rubber stamp: the old layout (no Conventions, 'epoch'
    units, variable-length string coordinates) fails it."""
    ds = open_sweep(_sweep_file(tmp_path))
    ds.attrs.pop("Conventions")
    ds["epochs"].attrs["units"] = "epoch"
    ds.to_netcdf(tmp_path / "old.nc", engine="h5netcdf")     # plain xarray: vlen strings
    passed, _, report = _compliance(tmp_path / "old.nc")
    assert not passed
    assert "epoch" in report and "Conventions" in report


def _cf_problems(path: Path) -> list[str]:
    """The CF rules of the schema, checked on the file's raw netCDF variables (h5netcdf)."""
    out = []
    with h5netcdf.File(path, "r") as f:
        g = dict(f.attrs)
        for key in GLOBAL:
            if key not in g:
                out.append(f"global attr {key} missing")
        if "Conventions" in g and g["Conventions"] != CONVENTIONS:
            out.append(f"Conventions = {g['Conventions']!r}")
        if int(np.ravel(g.get("schema_version", 0))[0]) != SCHEMA_VERSION:
            out.append(f"schema_version {g.get('schema_version')}")
        for name, var in f.variables.items():
            a = dict(var.attrs)
            kind = np.dtype(var.dtype).kind if var.dtype is not str else "O"
            if kind == "O":
                out.append(f"{name}: variable-length strings")
            if "long_name" not in a:
                out.append(f"{name}: no long_name")
            numeric = kind in "iuf"
            if numeric and "units" not in a and "flag_values" not in a:
                out.append(f"{name}: no units")
            if str(a.get("units", "")) in ("epoch", "epochs"):
                out.append(f"{name}: units {a['units']!r} (not UDUNITS)")
            if "flag_values" in a:
                fv, fm = np.asarray(a["flag_values"]), str(a.get("flag_meanings", ""))
                if fv.dtype != np.dtype(var.dtype) or len(fv) != len(fm.split()):
                    out.append(f"{name}: flag_values {fv!r} vs flag_meanings {fm!r}")
            elif name in ("status", "regime", "regime_uncertain", "undetermined_reason"):
                out.append(f"{name}: flag variable without flag_values")
            if numeric and var.dimensions == (name,) and "_FillValue" in a:
                out.append(f"{name}: coordinate with _FillValue")
    return out


def test_written_files_follow_the_cf_rules(tmp_path):
    for make in (_sweep_file, _point_file):
        path = make(tmp_path)
        assert _cf_problems(path) == [], path.name
    ds = open_sweep(tmp_path / "sweep.nc")
    assert ds["split"].values.tolist() == ["train", "test"]     # char arrays read back as str
    assert ds["regime_uncertain"].attrs["flag_meanings"] == "certain uncertain"
    for name in ("lmc_mean", "lmc_sem", "cka_mean", "cka_sem", "n_valid_pairs",
                 "test_error_mean", "regime_uncertain"):
        assert ds[name].attrs["long_name"] != name.replace("_", " "), name


def test_the_rule_checker_catches_the_old_layout(tmp_path):
    ds = synthetic_sweep(0)
    ds["lmc_mean"] = ds["test_error_mean"].copy(data=ds["test_error_mean"].values)
    ds["lmc_mean"].attrs = {}
    ds.attrs.pop("Conventions")
    ds["epochs"].attrs["units"] = "epoch"
    ds.to_netcdf(tmp_path / "old.nc", engine="h5netcdf")
    problems = "\n".join(_cf_problems(tmp_path / "old.nc"))
    for bit in ("Conventions missing", "lmc_mean: no long_name", "epochs: units 'epoch'",
                "split: variable-length strings"):
        assert bit in problems, problems


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_variable_has_its_own_long_name(rule):
    """No variable a shipped rule adds falls back to its name as long_name."""
    reg = cf_complete(classify(synthetic_sweep(0), rule=rule))
    for name, var in reg.variables.items():
        assert var.attrs["long_name"] != str(name).replace("_", " "), (rule, name)


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(ROOT)) for p in SHIPPED])
def test_shipped_files_are_cf_clean(path):
    """Shipped files are regenerated with the current code or upgraded by
    ``scripts/upgrade_netcdf.py`` (run it after replacing one)."""
    assert _cf_problems(path) == [], "run scripts/upgrade_netcdf.py"
    hist = open_sweep(path).attrs["history"].splitlines()
    assert hist and "threeregime" in hist[0]


def test_cf_complete_is_idempotent_and_leaves_data_alone():
    ds = synthetic_sweep(0, classify=True)
    once = cf_complete(ds)
    xr.testing.assert_identical(cf_complete(once), once)
    for name, var in ds.variables.items():
        assert once.variables[name].values is var.values or np.array_equal(
            once.variables[name].values, var.values, equal_nan=var.dtype.kind == "f")
    twice = cf_complete(once, history="edited")
    assert twice.attrs["history"].splitlines()[:-1] == once.attrs["history"].splitlines()
    assert twice.attrs["history"].endswith(" edited")


def test_git_sha_never_runs_in_a_users_repository(tmp_path):
    """An installed copy inside a user's git repository is no source checkout of threeregime."""
    user = tmp_path / "user_repo"
    pkg = user / ".venv" / "lib" / "site-packages" / "threeregime"
    pkg.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(user)], check=True)
    (user / "pyproject.toml").write_text('[project]\nname = "users-project"\n')
    assert _schema._source_checkout(pkg) is None
    # the user's own project placed right above the package: still not threeregime
    flat = user / "threeregime"
    flat.mkdir()
    assert _schema._source_checkout(flat) is None
    # a source checkout of threeregime itself
    (user / "pyproject.toml").write_text('[project]\nname = "threeregime"\n')
    assert _schema._source_checkout(flat) == user
