"""The results schema, atomic writes and reading sweeps back.  This docstring IS the schema.

Nothing here imports torch: a notebook that only reads results starts fast.  Files are netCDF-4
written with the ``h5netcdf`` engine; every write goes to a unique temporary name in the target
folder, is fsynced and then renamed over the target (``os.replace``), so a reader never sees a
half-written file and "the file exists" means "the work is done".  The point Dataset's
builder and flags are in :mod:`threeregime.results.schema` (re-exported here).

Point Dataset (one grid cell x one dense seed; :func:`make_point_dataset`)
---------------------------------------------------------------------------
Dimensions

============== ================ ==============================================================
dim            size             coordinate
============== ================ ==============================================================
retrain_seed   K                the retraining seeds (int64)
pair           K(K-1)/2         0..P-1; non-index coords ``pair_a``, ``pair_b`` hold the two
                                retraining seeds of the pair (all i < j combinations, in order)
t              T (0 if no LMC)  position on the linear path, float64 in [0, 1]
split          2                ``train``, ``test``
quantity       2                ``error``, ``loss``
retrain_epoch  E (optional)     epochs of ``test_error_curve`` (only when given)
============== ================ ==============================================================

Variables (every one carries ``long_name`` and ``units``; float64; NaN = not measured)

======================== ============================= ====== ====================================
variable                 dims                          units  meaning
======================== ============================= ====== ====================================
test_error               retrain_seed                  1      test error (fraction), mean of the
                                                              last 5 retraining epochs
train_error              retrain_seed                  1      final train error of the retrained
                                                              model (fraction)
val_error                retrain_seed                  1      validation error (fraction) of the
                                                              final retrained model; NaN without
                                                              a validation split (data.val_size)
dense_test_error         ()                            1      test error of the dense snapshot
dense_val_error          ()                            1      validation error of the dense
                                                              snapshot (NaN: no split)
dense_train_error        ()                            1      train error of the dense snapshot
realized_density         ()                            1      kept fraction of prunable weights
lmc                      pair                          1      mc = m - e(t*) on the train-error
                                                              scale; negative = barrier
lmc_curve                pair, t, split, quantity      1      error / loss along the linear path
cka                      pair                          1      linear CKA of softmax outputs
cka_logits               pair                          1      linear CKA of logits
hessian_trace            retrain_seed                  1      Hutchinson estimate of tr(H)
hessian_trace_stderr     retrain_seed                  1      its standard error
hessian_top_eig          retrain_seed                  1      top Hessian eigenvalue
test_error_curve         retrain_seed, retrain_epoch   1      optional: test error per epoch
status                   ()                            int8   CF flags, see below
======================== ============================= ====== ====================================

``status`` is int8 with ``flag_values = [0, 1, 2, 3]`` and ``flag_meanings = "ok diverged failed
missing"``.  A point writer sets 0-2; 3 (``missing``) marks grid points that are not computed yet
when a sweep in progress is assembled.  Point attrs are whatever the writer passes in
``extra_attrs`` (made netCDF-legal, see below).

Registered measures (``measure.extra``, :mod:`threeregime.metrics.measures`) add their own variables
(``extra_vars``), each with ``long_name`` and ``units``.  The built-in ones:

``robustness`` -> ``corrupted_test_error`` (retrain_seed, corruption, severity), units 1:
    test error (fraction) of each retrained model under each input corruption
    (:mod:`threeregime.data.corruptions`; the ``corruption`` positions follow
    ``measure.corruptions``, or every corruption that applies to the inputs in
    ``corruptions.CORRUPTIONS`` order; the ``severity`` positions follow
    ``measure.severities``; severity 0 = clean); NaN for a diverged model.

Sweep Dataset (:func:`combine_points`)
--------------------------------------
Dims ``(*axes, dense_seed, <point dims>)``: every point variable gains the swept axes (named as in
:data:`threeregime.spec.specs.AXES`, in sweep order) and ``dense_seed`` in front.  Every axis
coordinate carries attrs ``role`` (``temperature`` / ``load``), ``hotter`` (``increasing`` /
``decreasing``; temperature axes only; written as ``"none"`` for load axes), ``long_name`` and
``units``: a reader needs nothing from the package to interpret the axes (readers must use these
attrs, never a table of known axes).  Points not computed yet are NaN with ``status = 3``.
Added variables (dims = the swept axes):

=========================== ====== ==========================================================
variable                    units  meaning
=========================== ====== ==========================================================
test_error_mean             1      cell mean test error over dense seeds (retrain seeds
                                   averaged within a dense seed first)
normalized_test_error       1      ``test_error_mean`` minus its minimum over the temperature
                                   axes in the same load column (0 = best temperature;
                                   :func:`normalized_test_error`, the one place it is computed)
regime                      int8   CF ``flag_values [0, 1, 2, 3, -1]``, ``flag_meanings
                                   "regime_I regime_II_A regime_II_B regime_II_unresolved
                                   undetermined"`` (added by the sweep driver with
                                   :func:`threeregime.analysis.regimes.classify`, never by this
                                   module; its ``rule`` attr holds the rule as JSON)
regime_confidence           1      confidence of the assigned label (see the rule)
lmc_mean, lmc_sem,          1      the evidence the label rests on (see
cka_mean, cka_sem,                 :mod:`threeregime.analysis.regimes`; ``regime_uncertain``,
n_valid_pairs,                     int8 0/1, and the rule's features when a named rule labelled it)
undetermined_reason
n_used                      count  dense seeds the statistics of the cell rest on (named rules)
n_collapsed                 count  replicates left out as at chance on training data: dense
                                   models, plus retrained models of the other dense seeds
lmc_sem_pooled,             1      DIAGNOSTIC ONLY: standard errors pooled over (dense seed x
cka_sem_pooled                     pair), ignoring the nesting; no rule, advice or validation
                                   decides on them
=========================== ====== ==========================================================

The regime variables are added only when the sweep has a temperature axis and LMC/CKA data.

Which statistics decide (issue 18, :mod:`threeregime.stats`).  The dense seed is the unit:
what a named rule, the advice or a validation decides on is computed over dense-seed means
(pairs and retrain seeds averaged within a dense seed first), with ``n_used - 1`` degrees of
freedom: ``lmc_mean``/``lmc_sem``, ``cka_mean``/``cka_sem``, ``test_error_mean``, ``lmc_z``
(``lmc_mean`` over ``lmc_noise``: ``lmc_sem`` floored by the seed-to-seed spread of its load
column; the one-sample t statistic where its own standard error binds), ``cka_noise``,
``step_z`` (t over dense seeds of the LMC step at the change point), and the truth of
:func:`threeregime.analysis.calibrate.measured_directions` (which
:func:`threeregime.analysis.validation.validate_advice` uses too).  Before any of them, a
dense seed whose dense model is at chance on its training data and a retrained model at chance
(with the pairs it is in) are left out; the
legacy rule (``rule="legacy"``) is kept bit for bit and does neither.  ``n_valid_pairs`` and
the ``*_pooled`` variables are diagnostics.

Global attrs: ``schema_version`` (:data:`SCHEMA_VERSION`, an int raised whenever this schema
changes incompatibly; files without it are version 1), ``spec_json``, ``spec_hash``,
``threeregime_version`` (the installed distribution's version, from ``importlib.metadata``),
``torch_version`` (passed in: this module never imports torch), ``git_sha`` (the commit of an
install from a git URL, or of this package's own source checkout; ``"unknown"`` otherwise: git
never runs in a user's repository), ``python_version``, ``numpy_version``, ``xarray_version``,
``h5netcdf_version``, ``created`` (ISO 8601, UTC) and whatever else the caller passes.

CF-1.10 (every file written here goes through :func:`cf_complete`; ``compliance-checker
--test=cf:1.10`` passes on them, ``tests/test_cf.py``; ``docs/netcdf.md``): global
``Conventions = "CF-1.10"``, ``title``, ``source``, ``references``, ``date_created``,
``history`` (one line per program that wrote or changed the file); every variable has
``long_name`` and UDUNITS ``units`` (``1`` for fractions, counts and indices; never
``epoch``), every flag variable (``status``, ``regime``,
``regime_uncertain``, ``undetermined_reason``) ``flag_values`` and ``flag_meanings``; strings
(``split``, ``quantity``, category axes) are stored as fixed-width UTF-8 char arrays (xarray
reads them back as strings); coordinates carry no ``_FillValue``.

netCDF-legal attributes: str, int, float and 1-D numeric arrays only.  :func:`netcdf_attrs`
converts bools to int, drops None, writes dicts (and lists that are not all numbers) as JSON
strings and paths as str.
"""
from __future__ import annotations

import datetime as _dt
import itertools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..errors import ResultsError, SpecError
from ..spec.specs import AXES
from ..stats import mean_sem, unit_means
from .artifacts import atomic_write
from .paths import check_output_path, looks_like_netcdf
from .schema import (
    CONVENTIONS,
    REPLICATE_DIMS,
    SCHEMA_VERSION,
    STATUS,
    STATUS_FLAG_MEANINGS,
    _git_sha,
    _version,
    cf_complete,
    cf_encoding,
    make_point_dataset,
    netcdf_attrs,
    provenance,
)

__all__ = [
    "CONVENTIONS",
    "ENGINE",
    "STATUS",
    "STATUS_FLAG_MEANINGS",
    "SCHEMA_VERSION",
    "combine_points",
    "export",
    "make_point_dataset",
    "netcdf_attrs",
    "normalized_test_error",
    "axis_meta_of",
    "cf_complete",
    "provenance",
    "open_sweep",
    "read_point",
    "write_dataset",
    "write_point",
    "REPLICATE_DIMS",
]

#: The netCDF engine used for every read and write.
ENGINE = "h5netcdf"

_COMPRESS_MIN_SIZE = 256   # variables with at least this many elements are zlib-compressed


# --------------------------------------------------------------------------- sweeps
def _nan_like(ds: xr.Dataset) -> xr.Dataset:
    out = ds.copy(deep=True)
    for name, var in out.data_vars.items():
        if name == "status":
            var.values[...] = STATUS["missing"]
        elif var.dtype.kind == "f":
            var.values[...] = np.nan
    return out


def axis_meta_of(names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """role, hotter, long_name and units of the sweepable axes ``names`` (from
    :data:`threeregime.spec.specs.AXES`), as :func:`combine_points` writes them."""
    out = {}
    for name in names:
        if name not in AXES:
            raise ResultsError(f"axis_meta has no entry for axis {name!r}; give role, hotter, "
                               f"long_name, units (known axes: {', '.join(AXES)})")
        ax = AXES[name]
        out[name] = {"role": ax.role, "hotter": ax.hotter, "long_name": ax.long_name,
                     "units": ax.units}
    return out


def _axis_attrs(name: str, meta: Mapping[str, Any] | None) -> dict[str, Any]:
    if meta is None:
        meta = axis_meta_of([name])[name]
    role = meta.get("role")
    if role not in ("temperature", "load"):
        raise ResultsError(f"axis_meta[{name!r}].role must be 'temperature' or 'load'; "
                           f"got {role!r}")
    hotter = meta.get("hotter") if role == "temperature" else None
    if role == "temperature" and hotter not in ("increasing", "decreasing"):
        raise ResultsError(f"axis_meta[{name!r}].hotter must be 'increasing' or "
                           f"'decreasing'; got {hotter!r}")
    return netcdf_attrs({"role": role, "hotter": hotter or "none",
                         "long_name": meta.get("long_name", name),
                         "units": meta.get("units", "1")})


def combine_points(points: Sequence[tuple[Mapping[str, Any], xr.Dataset]],
                   axes: Mapping[str, Sequence[Any]],
                   axis_meta: Mapping[str, Mapping[str, Any]] | None = None,
                   dense_seeds: Sequence[int] = (0,), *,
                   attrs: Mapping[str, Any] | None = None) -> xr.Dataset:
    """Stack point Datasets into the sweep Dataset (schema above).

    Parameters
    ----------
    points : list of (coords, Dataset)
        ``coords`` maps every axis name and ``"dense_seed"`` to the point's value; the Dataset
        is a :func:`make_point_dataset` result.  Grid points absent from the list are filled
        with NaN and ``status = missing`` (a sweep in progress reads as a consistent partial
        Dataset).
    axes : mapping name -> list of values
        The swept axes in order (the grid is their product).
    axis_meta : mapping name -> dict(role, hotter, long_name, units), optional
        Default: :data:`threeregime.spec.specs.AXES`.
    dense_seeds : sequence of int
    attrs : mapping, optional
        Global attrs (``spec_json``, ``spec_hash``, ``torch_version``, ...); ``created``,
        ``git_sha``, ``threeregime_version`` and ``schema_version`` are filled in unless given.

    No regimes are classified here (the sweep driver does it,
    :func:`threeregime.sweep.driver.assemble`).

    Returns
    -------
    xarray.Dataset
        Every point variable over ``(*axes, dense_seed, ...)``, plus the cell summaries.

    Raises
    ------
    ResultsError
        No point given, a point lies off the grid, or points disagree on retraining seeds.
    """
    names = list(axes)
    axis_values = {n: list(axes[n]) for n in names}
    seeds = [int(s) for s in dense_seeds]
    if not points:
        raise ResultsError("combine_points needs at least one computed point; got none "
                           "(run `threeregime run` first)")
    lookup: dict[tuple, xr.Dataset] = {}
    for coords, ds in points:
        try:
            key = tuple(coords[n] for n in names) + (int(coords["dense_seed"]),)
        except KeyError as e:
            raise ResultsError(f"point coords must name every axis and dense_seed; "
                               f"{dict(coords)} lacks {e.args[0]!r}") from None
        for n, v in zip(names, key):
            if v not in axis_values[n]:
                raise ResultsError(f"point coordinate {n}={v!r} is not on the grid; allowed: "
                                   f"{axis_values[n]}")
        if key[-1] not in seeds:
            raise ResultsError(f"point coordinate dense_seed={key[-1]!r} is not on the grid; "
                               f"allowed: {seeds}")
        lookup[key] = ds

    first = next(iter(lookup.values()))
    ref_seeds = first["retrain_seed"].values
    for key, ds in lookup.items():
        if not np.array_equal(ds["retrain_seed"].values, ref_seeds):
            raise ResultsError(f"point {dict(zip(names + ['dense_seed'], key))} has "
                               f"retrain_seed {ds['retrain_seed'].values.tolist()}; the sweep "
                               f"uses {ref_seeds.tolist()}")
    # union of path positions (failed points may have no curve) and of variables
    ts = [ds["t"].values for ds in lookup.values() if ds.sizes.get("t", 0)]
    t_union = np.unique(np.concatenate(ts)) if ts else np.zeros(0)
    templ = first
    for ds in lookup.values():
        extra = set(ds.data_vars) - set(templ.data_vars)
        if extra:
            templ = xr.merge([templ, _nan_like(ds[sorted(extra)])], compat="override",
                             combine_attrs="override")
    templ = _nan_like(templ).reindex(t=t_union)
    if "status" in templ:
        templ["status"] = templ["status"].astype(np.int8)

    grid = list(itertools.product(*(axis_values[n] for n in names), seeds))
    shape = tuple(len(axis_values[n]) for n in names) + (len(seeds),)
    new_dims = tuple(names) + ("dense_seed",)
    aligned = []
    for key in grid:
        ds = lookup.get(key)
        if ds is None:
            aligned.append(templ)
            continue
        if not np.array_equal(ds["t"].values, t_union):
            ds = ds.reindex(t=t_union)
        aligned.append(ds)

    data_vars: dict[str, Any] = {}
    for name, tvar in templ.data_vars.items():
        arrs = []
        for ds in aligned:
            v = ds[name] if name in ds else templ[name]
            arrs.append(np.asarray(v.transpose(*tvar.dims).values, dtype=tvar.dtype))
        stacked = np.stack(arrs).reshape(shape + tvar.shape)
        data_vars[name] = (new_dims + tvar.dims, stacked, dict(tvar.attrs))
    coords: dict[str, Any] = {}
    for n in names:
        coords[n] = (n, np.asarray(axis_values[n]),
                     _axis_attrs(n, None if axis_meta is None else axis_meta.get(n)))
    coords["dense_seed"] = ("dense_seed", np.asarray(seeds, dtype=np.int64),
                            {"long_name": "dense training seed", "units": "1"})
    for c, var in templ.coords.items():
        coords[c] = (var.dims, var.values, dict(var.attrs))

    base_attrs = {"schema_version": SCHEMA_VERSION, "threeregime_version": _version(),
                  "git_sha": _git_sha(),
                  "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                  **provenance()}
    base_attrs.update(dict(attrs or {}))
    out = xr.Dataset(data_vars, coords=coords, attrs=netcdf_attrs(base_attrs))

    # cell summaries over dense seeds, retrain seeds averaged within one first (the dense seed
    # is the unit, threeregime.stats); missing/failed points are NaN already
    te = out["test_error"].where(out["status"] <= STATUS["diverged"])
    vals = te.transpose(*names, "dense_seed", ...).values.reshape(shape + (-1,))
    mean = mean_sem(unit_means(vals, (vals.ndim - 1,)))[0]
    out["test_error_mean"] = (tuple(names), mean, {
        "long_name": "cell mean test error over dense seeds (retrain seeds averaged first)",
        "units": "1"})
    out["normalized_test_error"] = normalized_test_error(out)
    return cf_complete(out)


def normalized_test_error(ds: xr.Dataset) -> xr.DataArray:
    """Cell test error minus its best over the temperature axes in the same load column.

    The one place this is computed (the sweep Dataset's ``normalized_test_error``, plots).
    Uses ``test_error_mean`` when present, else the mean of ``test_error`` over the replicate
    dims (diverged and missing points excluded when ``status`` is there).  Temperature axes are
    the coordinates whose ``role`` attr is ``temperature``.

    Returns
    -------
    xarray.DataArray over the swept axes; 0 = the best temperature of its column.
    """
    if "test_error_mean" in ds:
        tm = ds["test_error_mean"]
    elif "test_error" in ds:
        te = ds["test_error"]
        if "status" in ds:
            te = te.where(ds["status"] <= STATUS["diverged"])
        tm = te.mean([d for d in REPLICATE_DIMS if d in te.dims], skipna=True)
    else:
        raise ResultsError("normalized_test_error needs test_error_mean or test_error; the "
                           "Dataset has neither")
    names = list(tm.dims)
    temps = [n for n in names if ds[n].attrs.get("role") == "temperature"]
    best = tm.min(temps, skipna=True) if temps else tm
    return (tm - best).transpose(*names).rename("normalized_test_error").assign_attrs(
        long_name="test error minus the best over the temperature axes in the same load column",
        units="1")


# --------------------------------------------------------------------------- files
def _encoding(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    enc: dict[str, dict[str, Any]] = cf_encoding(ds)
    for name, var in ds.variables.items():
        if var.size >= _COMPRESS_MIN_SIZE and var.dtype.kind in "iuf":
            enc.setdefault(str(name), {}).update({"zlib": True, "complevel": 4})
    return enc


def _write_netcdf(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    ds = cf_complete(ds)
    return atomic_write(path, lambda tmp: ds.to_netcdf(tmp, engine=ENGINE,
                                                       encoding=_encoding(ds)))


def write_point(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write a point Dataset atomically (temp file in the same folder, fsync, rename).

    Returns
    -------
    pathlib.Path
        ``path``.  On any error the temporary file is removed and ``path`` is untouched; an
        OS error (disk full, read-only folder) is a one-line :class:`ResultsError`.
    """
    return _write_netcdf(ds, path)


def write_dataset(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write a sweep Dataset atomically (like :func:`write_point`)."""
    return _write_netcdf(ds, path)


def read_point(path: str | os.PathLike) -> xr.Dataset:
    """Load a results file fully into memory and close it.

    Raises
    ------
    ResultsError
        The file is missing, or it is corrupt or truncated (delete it to recompute).
    """
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: results file not found")
    try:
        return xr.load_dataset(path, engine=ENGINE)
    except Exception as e:  # noqa: BLE001  (damaged files raise OSError, ValueError, ...)
        raise ResultsError(f"{path}: corrupt or unreadable results file "
                           f"({type(e).__name__}); delete it to recompute") from None


def open_sweep(path: str | os.PathLike) -> xr.Dataset:
    """Open a sweep's results: a ``.nc`` file, or a sweep folder holding ``results.nc``.

    The Dataset is loaded into memory (the file is closed again) and has the ``ds.threeregime``
    accessor (:mod:`threeregime.analysis.accessor`).

    Raises
    ------
    ResultsError
        Nothing to open, or the file is corrupt.
    """
    path = Path(path)
    if path.is_dir():
        target = path / "results.nc"
        if not target.is_file():
            raise ResultsError(f"{path}: no results.nc in this sweep folder; run `threeregime "
                               f"run` to compute it (`threeregime status` shows progress)")
        path = target
    elif not path.exists():
        raise ResultsError(f"{path}: no such results file or sweep folder")
    elif not looks_like_netcdf(path):
        raise ResultsError(f"{path}: not a netCDF results file (no netCDF or HDF5 signature); "
                           "give a results .nc file or a sweep folder")
    return read_point(path)


_EXPORT_FORMATS = ("netcdf",)


def export(ds: xr.Dataset, path: str | os.PathLike, format: str = "netcdf") -> Path:
    """Write a Dataset to ``path`` (netCDF-4 via h5netcdf, zlib for big variables, CF-1.10).

    ``open_sweep(export(ds, path))`` is identical to ``cf_complete(ds)`` (values, dtypes and
    attrs), provided its attrs are netCDF-legal (see :func:`netcdf_attrs`); for a Dataset read
    from a file or returned by the sweep driver that is ``ds`` itself.  The folder of ``path``
    must exist (it is not created).

    Returns
    -------
    pathlib.Path
    """
    if format not in _EXPORT_FORMATS:
        raise SpecError(f"format must be one of {', '.join(_EXPORT_FORMATS)}; got {format!r}")
    if not isinstance(ds, xr.Dataset):
        raise SpecError(f"ds must be an xarray.Dataset; got {type(ds).__name__}")
    return write_dataset(ds, check_output_path(path, name="path"))

