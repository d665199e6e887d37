"""The results schema, atomic writes and reading sweeps back.  This docstring IS the schema.

Nothing here imports torch: a notebook that only reads results starts fast.  Files are netCDF-4
written with the ``h5netcdf`` engine; every write goes to a unique temporary name in the target
folder, is fsynced and then renamed over the target (``os.replace``), so a reader never sees a
half-written file and "the file exists" means "the work is done".

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
dense_test_error         ()                            1      test error of the dense snapshot
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

Registered measures (``measure.extra``, :mod:`threeregime.measures`) add their own variables
(``extra_vars``), each with ``long_name`` and ``units``.

Sweep Dataset (:func:`combine_points`)
--------------------------------------
Dims ``(*axes, dense_seed, <point dims>)``: every point variable gains the swept axes (named as in
:data:`threeregime.spec.AXES`, in sweep order) and ``dense_seed`` in front.  Every axis
coordinate carries attrs ``role`` (``temperature`` / ``load``), ``hotter`` (``increasing`` /
``decreasing``; temperature axes only; written as ``"none"`` for load axes), ``long_name`` and
``units``: a reader needs nothing from the package to interpret the axes (readers must use these
attrs, never a table of known axes).  Points not computed yet are NaN with ``status = 3``.
Added variables (dims = the swept axes):

=========================== ====== ==========================================================
variable                    units  meaning
=========================== ====== ==========================================================
test_error_mean             1      cell mean test error over dense seeds and retrain seeds
normalized_test_error       1      ``test_error_mean`` minus its minimum over the temperature
                                   axes in the same load column (0 = best temperature;
                                   :func:`normalized_test_error`, the one place it is computed)
regime                      int8   CF ``flag_values [0, 1, 2, -1]``, ``flag_meanings "regime_I
                                   regime_II_A regime_II_B undetermined"`` (added by the sweep
                                   driver with :func:`threeregime.regimes.classify`, never by
                                   this module; its ``rule`` attr holds the thresholds as JSON)
regime_confidence           1      probability of the assigned label (normal approximation)
lmc_mean, lmc_sem,          1      the evidence the label rests on (see
cka_mean, cka_sem,                 :mod:`threeregime.regimes`)
n_valid_pairs,
undetermined_reason
=========================== ====== ==========================================================

The regime variables are added only when the sweep has a temperature axis and LMC/CKA data.

Global attrs: ``schema_version`` (:data:`SCHEMA_VERSION`, an int raised whenever this schema
changes incompatibly; files without it are version 1), ``spec_json``, ``spec_hash``,
``threeregime_version`` (the installed distribution's version, from ``importlib.metadata``),
``torch_version`` (passed in: this module never imports torch), ``git_sha`` (``"unknown"``
outside a git checkout), ``created`` (ISO 8601, UTC) and whatever else the caller passes.

netCDF-legal attributes: str, int, float and 1-D numeric arrays only.  :func:`netcdf_attrs`
converts bools to int, drops None, writes dicts (and lists that are not all numbers) as JSON
strings and paths as str.
"""
from __future__ import annotations

import datetime as _dt
import functools
import importlib.metadata
import itertools
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ._artifacts import atomic_write
from ._errors import ResultsError, SpecError
from .spec import AXES

__all__ = [
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
    "open_sweep",
    "read_point",
    "write_dataset",
    "write_point",
]

#: The netCDF engine used for every read and write.
ENGINE = "h5netcdf"

#: Version of the sweep schema above (global attr ``schema_version``).  2: every axis carries
#: role/hotter/long_name/units, ``schema_version`` written, regimes added by the driver.
SCHEMA_VERSION = 2

#: Point status flags (int8).
STATUS: dict[str, int] = {"ok": 0, "diverged": 1, "failed": 2, "missing": 3}
STATUS_FLAG_MEANINGS = " ".join(STATUS)
_STATUS_ATTRS = {
    "long_name": "status of the point's training",
    "units": "1",
    "flag_values": np.array(list(STATUS.values()), dtype=np.int8),
    "flag_meanings": STATUS_FLAG_MEANINGS,
}

REPLICATE_DIMS = ("dense_seed", "retrain_seed", "pair")

# name -> (dims, long_name)   (units are "1" for all of them)
_POINT_VARS: dict[str, tuple[tuple[str, ...], str]] = {
    "test_error": (("retrain_seed",),
                   "test error of the retrained model (mean of the last 5 epochs)"),
    "train_error": (("retrain_seed",), "final train error of the retrained model"),
    "dense_test_error": ((), "test error of the dense model"),
    "dense_train_error": ((), "train error of the dense model"),
    "realized_density": ((), "kept fraction of prunable weights"),
    "lmc": (("pair",), "linear mode connectivity mc = m - e(t*) (train error; < 0 = barrier)"),
    "lmc_curve": (("pair", "t", "split", "quantity"), "error and loss along the linear path"),
    "cka": (("pair",), "linear CKA of softmax outputs"),
    "cka_logits": (("pair",), "linear CKA of logits"),
    "hessian_trace": (("retrain_seed",), "Hessian trace (Hutchinson estimate)"),
    "hessian_trace_stderr": (("retrain_seed",), "standard error of the Hessian trace estimate"),
    "hessian_top_eig": (("retrain_seed",), "top Hessian eigenvalue"),
}
_COMPRESS_MIN_SIZE = 256   # variables with at least this many elements are zlib-compressed


# --------------------------------------------------------------------------- attributes
def netcdf_attrs(attrs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return a copy of ``attrs`` holding only netCDF-legal attribute values.

    str, int, float and 1-D numeric arrays pass (numpy scalars become Python numbers); bools
    become int; None is dropped; dicts, and lists or tuples that are not all numbers, become
    JSON strings; anything else (paths, ...) becomes ``str``.
    """
    out: dict[str, Any] = {}
    for key, v in (attrs or {}).items():
        key = str(key)
        if v is None:
            continue
        if isinstance(v, (bool, np.bool_)):
            out[key] = int(v)
        elif isinstance(v, str):
            out[key] = v
        elif isinstance(v, (int, np.integer)):
            out[key] = int(v)
        elif isinstance(v, (float, np.floating)):
            out[key] = float(v)
        elif isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind in "iuf":
            out[key] = v
        elif isinstance(v, np.ndarray) and v.dtype.kind == "b":
            out[key] = v.astype(np.int8)
        elif isinstance(v, (list, tuple)) and v and all(
                isinstance(x, (int, float, np.integer, np.floating))
                and not isinstance(x, (bool, np.bool_)) for x in v):
            arr = np.asarray(v)
            out[key] = arr
        elif isinstance(v, (Mapping, list, tuple)):
            out[key] = json.dumps(v, sort_keys=True, default=str)
        else:
            out[key] = str(v)
    return out


# --------------------------------------------------------------------------- points
def _as_array(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    if value is None:
        return np.full(shape, np.nan)
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != shape:
        raise ResultsError(f"{name} must have shape {shape}; got {arr.shape}")
    return arr


def _status_code(status: Any) -> np.int8:
    if isinstance(status, str):
        if status not in STATUS:
            raise ResultsError(f"status must be one of {', '.join(STATUS)}; got {status!r}")
        return np.int8(STATUS[status])
    if isinstance(status, (int, np.integer)) and int(status) in STATUS.values():
        return np.int8(status)
    raise ResultsError(f"status must be one of {', '.join(STATUS)} or its flag "
                       f"{list(STATUS.values())}; got {status!r}")


def make_point_dataset(*, retrain_seeds: Sequence[int], test_error: Any, train_error: Any,
                       dense_test_error: float, dense_train_error: float,
                       realized_density: float, status: str | int = "ok", lmc: Any = None,
                       lmc_curve: Any = None, lmc_t: Any = None, cka: Any = None,
                       cka_logits: Any = None, hessian_trace: Any = None,
                       hessian_trace_stderr: Any = None, hessian_top_eig: Any = None,
                       test_error_curve: Any = None, curve_epochs: Any = None,
                       extra_vars: Mapping[str, tuple] | None = None,
                       extra_attrs: Mapping[str, Any] | None = None) -> xr.Dataset:
    """Build the Dataset of one point (one grid cell, one dense seed) in the schema above.

    Parameters
    ----------
    retrain_seeds : sequence of int
        The K retraining seeds; pairs are all ``i < j`` combinations in this order.
    test_error, train_error : array-like, shape (K,)
        Per retrained model, fractions.
    dense_test_error, dense_train_error, realized_density : float
        Scalars of the dense snapshot and the mask.
    status : {"ok", "diverged", "failed"} or its int flag
    lmc, cka, cka_logits : array-like, shape (P,), optional
        Per pair, ``P = K(K-1)/2``; ``None`` -> NaN.
    lmc_curve : array-like, shape (P, T, 2, 2) or (P, T), optional
        Along the path, ``[..., split, quantity]`` with split (train, test) and quantity
        (error, loss); a (P, T) array is the train error only (the rest NaN).
    lmc_t : array-like, shape (T,), optional
        Path positions; default ``linspace(0, 1, T)``.  Without a curve, ``t`` has length 0.
    hessian_trace, hessian_trace_stderr, hessian_top_eig : array-like, shape (K,), optional
    test_error_curve : array-like, shape (K, E), optional
        Test error per retraining epoch; stored with dim ``retrain_epoch`` (coords
        ``curve_epochs``, default 1..E).  Left out when ``None``.
    extra_vars : mapping name -> (dims, values, attrs), optional
        Variables of registered measures (dims among the point dims; attrs with
        ``long_name`` and ``units``).
    extra_attrs : mapping, optional
        Dataset attrs (made netCDF-legal with :func:`netcdf_attrs`).

    Returns
    -------
    xarray.Dataset

    Raises
    ------
    ResultsError
        An array has the wrong shape, or ``status`` is unknown.
    """
    seeds = [int(s) for s in retrain_seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ResultsError(f"retrain_seeds must be a non-empty list of distinct seeds; got "
                           f"{list(retrain_seeds)}")
    k = len(seeds)
    pairs = list(itertools.combinations(range(k), 2))
    p = len(pairs)

    if lmc_curve is not None:
        curve = np.asarray(lmc_curve, dtype=np.float64)
        if curve.ndim == 2:
            full = np.full(curve.shape + (2, 2), np.nan)
            full[..., 0, 0] = curve
            curve = full
        if curve.ndim != 4 or curve.shape[0] != p or curve.shape[2:] != (2, 2):
            raise ResultsError(f"lmc_curve must have shape (pairs={p}, T, 2, 2) or ({p}, T); "
                               f"got {np.shape(lmc_curve)}")
        n_t = curve.shape[1]
    else:
        n_t = 0 if lmc_t is None else len(lmc_t)
        curve = np.full((p, n_t, 2, 2), np.nan)
    t = np.linspace(0.0, 1.0, n_t) if lmc_t is None else np.asarray(lmc_t, dtype=np.float64)
    if t.shape != (n_t,):
        raise ResultsError(f"lmc_t must have shape ({n_t},) to match lmc_curve; got {t.shape}")

    sizes = {"retrain_seed": k, "pair": p, "t": n_t, "split": 2, "quantity": 2}
    given = {"test_error": test_error, "train_error": train_error,
             "dense_test_error": dense_test_error, "dense_train_error": dense_train_error,
             "realized_density": realized_density, "lmc": lmc, "cka": cka,
             "cka_logits": cka_logits, "hessian_trace": hessian_trace,
             "hessian_trace_stderr": hessian_trace_stderr, "hessian_top_eig": hessian_top_eig}
    data_vars: dict[str, Any] = {}
    for name, (dims, long_name) in _POINT_VARS.items():
        attrs = {"long_name": long_name, "units": "1"}
        if name == "lmc_curve":
            data_vars[name] = (dims, curve, attrs)
            continue
        shape = tuple(sizes[d] for d in dims)
        data_vars[name] = (dims, _as_array(name, given[name], shape), attrs)
    coords: dict[str, Any] = {
        "retrain_seed": ("retrain_seed", np.asarray(seeds, dtype=np.int64),
                         {"long_name": "retraining seed", "units": "1"}),
        "pair": ("pair", np.arange(p, dtype=np.int64),
                 {"long_name": "index of the pair of retrained models", "units": "1"}),
        "pair_a": ("pair", np.asarray([seeds[i] for i, _ in pairs], dtype=np.int64),
                   {"long_name": "retraining seed of the first model of the pair",
                    "units": "1"}),
        "pair_b": ("pair", np.asarray([seeds[j] for _, j in pairs], dtype=np.int64),
                   {"long_name": "retraining seed of the second model of the pair",
                    "units": "1"}),
        "t": ("t", t, {"long_name": "position on the linear path between the pair",
                       "units": "1"}),
        "split": ("split", np.asarray(["train", "test"]), {"long_name": "data split"}),
        "quantity": ("quantity", np.asarray(["error", "loss"]),
                     {"long_name": "evaluated quantity"}),
    }
    if test_error_curve is not None:
        tec = np.asarray(test_error_curve, dtype=np.float64)
        if tec.ndim != 2 or tec.shape[0] != k:
            raise ResultsError(f"test_error_curve must have shape (retrain_seeds={k}, epochs); "
                               f"got {tec.shape}")
        ep = (np.arange(1, tec.shape[1] + 1) if curve_epochs is None
              else np.asarray(curve_epochs))
        if ep.shape != (tec.shape[1],):
            raise ResultsError(f"curve_epochs must have shape ({tec.shape[1]},); got {ep.shape}")
        data_vars["test_error_curve"] = (("retrain_seed", "retrain_epoch"), tec,
                                         {"long_name": "test error per retraining epoch",
                                          "units": "1"})
        coords["retrain_epoch"] = ("retrain_epoch", ep.astype(np.int64),
                                   {"long_name": "retraining epoch", "units": "epoch"})
    for name, (dims, values, attrs) in (extra_vars or {}).items():
        if name in data_vars or name == "status":
            raise ResultsError(f"extra_vars: {name!r} is a variable of the point schema; "
                               "choose another name")
        data_vars[name] = (tuple(dims), np.asarray(values), dict(attrs))
    data_vars["status"] = ((), _status_code(status), dict(_STATUS_ATTRS))
    return xr.Dataset(data_vars, coords=coords, attrs=netcdf_attrs(extra_attrs))


# --------------------------------------------------------------------------- sweeps
@functools.lru_cache(maxsize=1)
def _git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else "unknown"


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
    :data:`threeregime.spec.AXES`), as :func:`combine_points` writes them."""
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
        Default: :data:`threeregime.spec.AXES`.
    dense_seeds : sequence of int
    attrs : mapping, optional
        Global attrs (``spec_json``, ``spec_hash``, ``torch_version``, ...); ``created``,
        ``git_sha``, ``threeregime_version`` and ``schema_version`` are filled in unless given.

    No regimes are classified here (the sweep driver does it, :func:`threeregime.driver.assemble`).

    Returns
    -------
    xarray.Dataset

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
                  "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    base_attrs.update(dict(attrs or {}))
    out = xr.Dataset(data_vars, coords=coords, attrs=netcdf_attrs(base_attrs))

    # cell summaries over replicates (missing/failed points are NaN already)
    te = out["test_error"].where(out["status"] <= STATUS["diverged"])
    with np.errstate(all="ignore"):
        vals = te.values.reshape(shape[:-1] + (-1,))
        counts = np.isfinite(vals).sum(-1)
        mean = np.where(counts > 0, np.nansum(vals, -1) / np.maximum(counts, 1), np.nan)
    out["test_error_mean"] = (tuple(names), mean, {
        "long_name": "cell mean test error over dense and retraining seeds", "units": "1"})
    out["normalized_test_error"] = normalized_test_error(out)
    return out


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


def _version() -> str:
    try:
        return importlib.metadata.version("threeregime")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# --------------------------------------------------------------------------- files
def _encoding(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    enc: dict[str, dict[str, Any]] = {}
    for name, var in ds.variables.items():
        if var.size >= _COMPRESS_MIN_SIZE and var.dtype.kind in "iuf":
            enc[str(name)] = {"zlib": True, "complevel": 4}
    return enc


def _write_netcdf(ds: xr.Dataset, path: str | os.PathLike) -> Path:
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
    accessor (:mod:`threeregime.accessor`).

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
    return read_point(path)


_EXPORT_FORMATS = ("netcdf",)


def export(ds: xr.Dataset, path: str | os.PathLike, format: str = "netcdf") -> Path:
    """Write a Dataset to ``path`` (netCDF-4 via h5netcdf, zlib for big variables).

    ``open_sweep(export(ds, path))`` is identical to ``ds`` (values, dtypes and attrs),
    provided its attrs are netCDF-legal (see :func:`netcdf_attrs`).

    Returns
    -------
    pathlib.Path
    """
    if format not in _EXPORT_FORMATS:
        raise SpecError(f"format must be one of {', '.join(_EXPORT_FORMATS)}; got {format!r}")
    return write_dataset(ds, path)

