"""Results schema, atomic writes and round trips (threeregime.results.storage)."""
from __future__ import annotations

import ast
import importlib.metadata
import inspect
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import xarray as xr
from _results_synth import DENSITY, EPOCHS, synthetic_sweep

import threeregime
from threeregime import ResultsError, SpecError
from threeregime.analysis.regimes import classify
from threeregime.results import storage
from threeregime.results.storage import (
    SCHEMA_VERSION,
    STATUS,
    cf_complete,
    combine_points,
    export,
    make_point_dataset,
    netcdf_attrs,
    normalized_test_error,
    open_sweep,
    read_point,
    write_dataset,
    write_point,
)


def _classified(**kw):
    """A synthetic sweep with regimes, classified as the driver does (storage never does)."""
    ds = synthetic_sweep(**kw)
    return ds.merge(classify(ds), compat="no_conflicts")


def _point(**kw):
    base = {"retrain_seeds": [3, 5, 7], "test_error": [0.1, 0.2, 0.3], "train_error": [0, 0, 0.1],
                "dense_test_error": 0.05, "dense_train_error": 0.0, "realized_density": 0.1}
    base.update(kw)
    return make_point_dataset(**base)


def _timeless(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` without the attrs that hold the time of writing (a point has no ``created``)."""
    out = ds.copy()
    for key in ("date_created", "history"):
        assert out.attrs.pop(key), key
    return out


def test_point_schema_pairs_nan_and_attrs():
    ds = _point(lmc=[-0.1, 0.0, 0.01])
    assert ds.sizes["retrain_seed"] == 3 and ds.sizes["pair"] == 3
    assert ds["pair_a"].values.tolist() == [3, 3, 5]
    assert ds["pair_b"].values.tolist() == [5, 7, 7]
    assert ds["lmc"].dims == ("pair",)
    assert np.isnan(ds["cka"]).all() and ds["cka"].shape == (3,)
    assert np.isnan(ds["hessian_trace"]).all() and ds["hessian_trace"].dims == ("retrain_seed",)
    assert ds["lmc_curve"].dims == ("pair", "t", "split", "quantity")
    assert ds.sizes["t"] == 0
    for name, var in ds.variables.items():
        if name in ("split", "quantity"):
            continue
        assert "long_name" in var.attrs and "units" in var.attrs, name
    st = ds["status"]
    assert st.dtype == np.int8 and int(st) == STATUS["ok"]
    assert st.attrs["flag_values"].dtype == np.int8
    assert st.attrs["flag_meanings"] == "ok diverged failed missing"


def test_point_curve_and_optional_curve():
    curve = np.zeros((3, 11, 2, 2))
    ds = _point(lmc_curve=curve, test_error_curve=np.ones((3, 5)), status="diverged")
    assert ds.sizes["t"] == 11 and ds["t"].values[-1] == 1.0
    assert ds["test_error_curve"].dims == ("retrain_seed", "retrain_epoch")
    assert int(ds["status"]) == STATUS["diverged"]
    two_d = _point(lmc_curve=np.zeros((3, 4)))
    assert np.isnan(two_d["lmc_curve"].sel(split="test")).all()
    assert (two_d["lmc_curve"].sel(split="train", quantity="error") == 0).all()


def test_single_seed_has_zero_pairs_and_round_trips(tmp_path):
    ds = make_point_dataset(retrain_seeds=[0], test_error=[0.1], train_error=[0.0],
                            dense_test_error=0.1, dense_train_error=0.0, realized_density=0.5)
    assert ds.sizes["pair"] == 0
    back = read_point(write_point(ds, tmp_path / "p.nc"))
    xr.testing.assert_identical(_timeless(back), _timeless(cf_complete(ds)))


@pytest.mark.parametrize("kw, msg", [
    ({"lmc": [0.0, 0.0]}, r"lmc must have shape \(3,\); got \(2,\)"),
    ({"test_error": [0.1]}, r"test_error must have shape \(3,\)"),
    ({"status": "exploded"}, ("status must be one of ok, diverged, failed, missing; got "
                              "'exploded'")),
    ({"lmc_curve": np.zeros((2, 11, 2, 2))}, "lmc_curve must have shape"),
    ({"retrain_seeds": [1, 1, 2]}, "retrain_seeds must be a non-empty list of distinct"),
])
def test_point_errors(kw, msg):
    with pytest.raises(ResultsError, match=msg):
        _point(**kw)


def test_netcdf_attrs_legal_types():
    out = netcdf_attrs({"b": True, "n": None, "d": {"x": 1}, "l": [1, 2.5], "s": ["a", "b"],
                        "i": np.int64(3), "p": tmp_path_like()})
    assert out["b"] == 1 and isinstance(out["b"], int)
    assert "n" not in out
    assert out["d"] == '{"x": 1}'
    assert isinstance(out["l"], np.ndarray) and out["l"].tolist() == [1, 2.5]
    assert out["s"] == '["a", "b"]'
    assert out["i"] == 3 and type(out["i"]) is int
    assert isinstance(out["p"], str)


def tmp_path_like():
    from pathlib import Path
    return Path("/x/y")


def test_combine_axes_attrs_missing_and_normalized():
    ds = synthetic_sweep(skip={(40, 0.5, 1)}, attrs={"flag": True, "nothing": None,
                                                     "meta": {"k": [1, 2]}})
    assert ds["test_error"].dims == ("epochs", "density", "dense_seed", "retrain_seed")
    assert ds["lmc_curve"].dims[:3] == ("epochs", "density", "dense_seed")
    ep, de = ds["epochs"].attrs, ds["density"].attrs
    assert ep["role"] == "temperature" and ep["hotter"] == "decreasing"
    assert de["role"] == "load" and de["hotter"] == "none"   # every axis: role and hotter
    assert ep["long_name"] and ep["units"] == "1"          # "epoch" is no UDUNITS unit
    missing = ds.sel(epochs=40, density=0.5, dense_seed=1)
    assert int(missing["status"]) == STATUS["missing"] and missing["status"].dtype == np.int8
    assert np.isnan(missing["test_error"]).all() and np.isnan(missing["lmc"]).all()
    assert int(ds["status"].sel(epochs=5, density=0.5, dense_seed=1)) == STATUS["ok"]
    # normalized test error: 0 at each column's best, >= 0 elsewhere
    nte = ds["normalized_test_error"]
    assert nte.dims == ("epochs", "density")
    np.testing.assert_allclose(nte.min("epochs").values, 0.0)
    expected = ds["test_error"].mean(["dense_seed", "retrain_seed"])
    np.testing.assert_allclose(ds["test_error_mean"], expected)
    for name in ("test_error_mean", "normalized_test_error"):
        assert ds[name].attrs["long_name"] and ds[name].attrs["units"] == "1"
    a = ds.attrs
    for key in ("spec_json", "spec_hash", "threeregime_version", "torch_version", "git_sha",
                "created"):
        assert isinstance(a[key], str), key
    assert a["threeregime_version"] == importlib.metadata.version("threeregime")
    assert a["schema_version"] == SCHEMA_VERSION == 3
    assert a["flag"] == 1 and "nothing" not in a and a["meta"] == '{"k": [1, 2]}'


def test_combine_errors():
    with pytest.raises(ResultsError, match="at least one computed point"):
        combine_points([], {"epochs": [5]}, None, [0])
    pt = _point()
    with pytest.raises(ResultsError, match=r"epochs=7 is not on the grid; allowed: \[5\]"):
        combine_points([({"epochs": 7, "density": 0.1, "dense_seed": 0}, pt)],
                       {"epochs": [5], "density": [0.1]}, None, [0])
    with pytest.raises(ResultsError, match="lacks 'dense_seed'"):
        combine_points([({"epochs": 5, "density": 0.1}, pt)],
                       {"epochs": [5], "density": [0.1]}, None, [0])
    with pytest.raises(ResultsError, match="axis_meta has no entry for axis 'width'"):
        combine_points([({"width": 1, "dense_seed": 0}, pt)], {"width": [1]}, None, [0])


def test_combine_custom_axis_meta_and_no_classification():
    ds = synthetic_sweep()
    assert "regime" not in ds and "regime_confidence" not in ds   # the driver classifies
    pt = _point()
    meta = {"width": {"role": "load", "long_name": "width factor", "units": "1"}}
    out = combine_points([({"width": 1.0, "dense_seed": 0}, pt)], {"width": [1.0, 2.0]}, meta,
                         [0])
    assert out["width"].attrs == {"role": "load", "hotter": "none", "long_name": "width factor",
                                  "units": "1"}
    assert "regime" not in out


def test_storage_does_not_reach_up():
    """storage imports neither regimes nor the package __init__ (nor the accessor)."""
    tree = ast.parse(inspect.getsource(storage))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            imported |= {node.module or ""} | {a.name for a in node.names}
    assert not imported & {"regimes", "accessor", "plotting", "__version__", ""}, imported


def test_normalized_test_error_one_place():
    ds = synthetic_sweep(skip={(40, 0.5, 1)})
    xr.testing.assert_identical(normalized_test_error(ds), ds["normalized_test_error"])
    # from test_error alone (a Dataset without the cell means): the same numbers
    bare = ds.drop_vars(["test_error_mean", "normalized_test_error"])
    np.testing.assert_allclose(normalized_test_error(bare), ds["normalized_test_error"])
    with pytest.raises(ResultsError, match="needs test_error_mean or test_error"):
        normalized_test_error(ds[["lmc"]])


def test_axis_attrs_let_a_reader_do_without_the_package(tmp_path):
    path = export(synthetic_sweep(), tmp_path / "r.nc")
    with h5py.File(path, "r") as f:
        assert int(np.ravel(f.attrs["schema_version"])[0]) == SCHEMA_VERSION
        for axis in ("epochs", "density"):
            for key in ("role", "hotter", "long_name", "units"):
                assert key in f[axis].attrs, (axis, key)


def test_export_open_round_trip_identical(tmp_path):
    ds = _classified(skip={(5, 0.05, 0)})
    (tmp_path / "sweep").mkdir()             # export creates no folder (issue 20)
    path = export(ds, tmp_path / "sweep" / "results.nc")
    assert path == tmp_path / "sweep" / "results.nc"
    for target in (path, tmp_path / "sweep"):
        back = open_sweep(target)
        xr.testing.assert_identical(back, cf_complete(ds))     # ds + its CF attributes
        again = open_sweep(export(back, tmp_path / "again.nc"))
        xr.testing.assert_identical(again, back)                # a read file round-trips as is
        assert back["status"].dtype == np.int8 and back["regime"].dtype == np.int8
    assert threeregime.open_sweep is open_sweep
    assert os.listdir(tmp_path / "sweep") == ["results.nc"]


def test_flag_attrs_are_netcdf_legal_on_disk(tmp_path):
    path = export(_classified(), tmp_path / "r.nc")
    with h5py.File(path, "r") as f:
        for name in ("regime", "status"):
            fv = f[name].attrs["flag_values"]
            assert isinstance(fv, np.ndarray) and fv.dtype == np.int8 and fv.ndim == 1
            fm = f[name].attrs["flag_meanings"]
            assert isinstance(fm, (str, bytes))
        assert f["regime"].dtype == np.int8
        assert f["regime"].attrs["flag_values"].tolist() == [0, 1, 2, 3, -1]
    raw = xr.open_dataset(path, engine="h5netcdf")
    try:
        assert raw["regime"].attrs["flag_meanings"] == (
            "regime_I regime_II_A regime_II_B regime_II_unresolved undetermined")
        for key, val in raw.attrs.items():
            assert isinstance(val, (str, int, float, np.number, np.ndarray)), key
    finally:
        raw.close()


def test_write_point_round_trip(tmp_path):
    ds = _point(lmc=[-0.1, 0.0, 0.01], extra_attrs={"point_hash": "abc", "ok": False})
    path = write_point(ds, tmp_path / "a" / "point.nc")
    back = read_point(path)
    xr.testing.assert_identical(_timeless(back), _timeless(cf_complete(ds)))
    assert back.attrs["ok"] == 0


def test_atomic_write_leaves_nothing_when_writer_fails(tmp_path, monkeypatch):
    ds = _point()
    target = tmp_path / "point.nc"
    write_point(ds, target)
    before = target.read_bytes()

    def broken(self, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_point(_point(test_error=[0.9, 0.9, 0.9]), target)
    with pytest.raises(RuntimeError):
        write_dataset(ds, tmp_path / "new.nc")
    assert sorted(os.listdir(tmp_path)) == ["point.nc"]
    assert target.read_bytes() == before


def test_atomic_write_cleans_up_on_replace_failure(tmp_path, monkeypatch):
    def no_replace(src, dst):
        raise OSError("cross-device")
    monkeypatch.setattr(os, "replace", no_replace)
    with pytest.raises(ResultsError, match=r"cannot write .*p\.nc: cross-device"):
        write_point(_point(), tmp_path / "p.nc")
    assert os.listdir(tmp_path) == []


def test_corrupt_and_missing_files(tmp_path):
    path = write_point(_point(), tmp_path / "p.nc")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ResultsError, match=r"p\.nc: corrupt or unreadable results file .*"
                                           r"delete it to recompute"):
        read_point(path)
    (tmp_path / "junk.nc").write_text("not netcdf")  # a user's own file: not told to delete it
    with pytest.raises(ResultsError, match=r"junk\.nc: not a netCDF results file \(no netCDF or "
                                           r"HDF5 signature\); give a results \.nc file"):
        open_sweep(tmp_path / "junk.nc")
    with pytest.raises(ResultsError, match="delete it to recompute"):
        open_sweep(path)                                # a truncated results file is
    with pytest.raises(ResultsError, match="results file not found"):
        read_point(tmp_path / "nope.nc")
    with pytest.raises(ResultsError, match="no such results file or sweep folder"):
        open_sweep(tmp_path / "nope")
    (tmp_path / "sweepdir").mkdir()
    with pytest.raises(ResultsError, match="no results.nc .*threeregime run"):
        open_sweep(tmp_path / "sweepdir")


def test_export_bad_format(tmp_path):
    with pytest.raises(SpecError, match="format must be one of netcdf; got 'zarr'"):
        export(_point(), tmp_path / "x.zarr", format="zarr")


def test_results_side_imports_no_torch():
    code = ("import sys, threeregime, threeregime.results.storage, threeregime.analysis.regimes, "
            "threeregime.analysis.plotting, threeregime.analysis.accessor; "
            "threeregime.open_sweep; threeregime.classify; threeregime.PhaseDiagram; "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                         env={**os.environ, "MPLBACKEND": "Agg"})
    assert res.returncode == 0, res.stderr


def test_grid_constants_consistent():
    ds = synthetic_sweep()
    assert ds["epochs"].values.tolist() == EPOCHS
    assert ds["density"].values.tolist() == DENSITY
