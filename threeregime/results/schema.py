"""The point Dataset of the results schema: its flags, variables and builder; CF attributes.

The schema itself is documented in :mod:`threeregime.results.storage` (its module docstring); this
module holds the part a point writer needs (status flags, the point variables,
:func:`make_point_dataset`, :func:`netcdf_attrs`), and the CF-1.10 completion every written
file goes through (:func:`cf_complete`, :func:`cf_encoding`, :func:`provenance`), all
re-exported by ``storage``.  It imports neither torch nor anything above
:mod:`threeregime.errors`.
"""
from __future__ import annotations

import csv
import datetime as _dt
import functools
import importlib.metadata
import importlib.resources
import io
import itertools
import json
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..errors import ResultsError

__all__ = ["STATUS", "STATUS_FLAG_MEANINGS", "REPLICATE_DIMS", "SCHEMA_VERSION", "CONVENTIONS",
           "CELL_VARS", "cf_complete", "cf_encoding", "make_point_dataset", "netcdf_attrs",
           "provenance"]

#: Version of the results schema (global attr ``schema_version``, in every written file).
#: 2: every axis carries role/hotter/long_name/units, regimes added by the driver.
#: 3: CF-1.10 attributes (Conventions, title, history, source, date_created, versions of the
#: stack; long_name and units on every variable, flag attributes on every flag variable; no
#: ``epoch`` units), strings as fixed-width char arrays.
SCHEMA_VERSION = 3

#: The CF conventions of every written file (global attr ``Conventions``).
CONVENTIONS = "CF-1.10"

_REFERENCES = ("Zhou, Yang, Chang, Mahoney (2023): A Three-regime Model of Network Pruning. "
               "ICML 2023, arXiv:2305.18383")

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
    "val_error": (("retrain_seed",), "validation error of the final retrained model (NaN: "
                  "no validation split)"),
    "dense_test_error": ((), "test error of the dense model"),
    "dense_val_error": ((), "validation error of the dense model (NaN: no validation split)"),
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
                       val_error: Any = None, dense_val_error: float | None = None,
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
    val_error : array-like, shape (K,), optional
        Validation error of each final retrained model; ``None`` -> NaN (no validation split).
    dense_val_error : float, optional
        Validation error of the dense snapshot; ``None`` -> NaN.
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
        The point's variables over the point dims (``retrain_seed``, ``pair``, ...).

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
             "hessian_trace_stderr": hessian_trace_stderr, "hessian_top_eig": hessian_top_eig,
             "val_error": val_error, "dense_val_error": dense_val_error}
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
                                   {"long_name": "retraining epoch (count)", "units": "1"})
    for name, (dims, values, attrs) in (extra_vars or {}).items():
        if name in data_vars or name == "status":
            raise ResultsError(f"extra_vars: {name!r} is a variable of the point schema; "
                               "choose another name")
        data_vars[name] = (tuple(dims), np.asarray(values), dict(attrs))
    data_vars["status"] = ((), _status_code(status), dict(_STATUS_ATTRS))
    return xr.Dataset(data_vars, coords=coords, attrs=netcdf_attrs(extra_attrs))


# --------------------------------------------------------------------------- CF-1.10
#: long_name and units of the cell variables that the analysis modules add (cell summaries of
#: :mod:`threeregime.analysis.features`, a rule's features), a table shipped as data in
#: ``cell_vars.csv`` next to this module; :func:`cf_complete` sets them on a variable
#: that has none.  A variable in neither this table nor its own attrs gets its name as
#: ``long_name`` and units ``1``.
CELL_VARS: dict[str, tuple[str, str]] = {
    row["name"]: (row["long_name"], row["units"])
    for row in csv.DictReader(io.StringIO(
        (importlib.resources.files(__package__) / "cell_vars.csv").read_text(encoding="utf-8")))
}

#: flag attributes of the flag variables that carry none of their own
_FLAGS: dict[str, tuple[np.ndarray, str]] = {
    "regime_uncertain": (np.array([0, 1], dtype=np.int8), "certain uncertain"),
}

#: units that are not UDUNITS units, and the legal unit they mean here
_UNIT_FIX = {"epoch": "1", "epochs": "1"}


@functools.lru_cache(maxsize=1)
def _version() -> str:
    try:
        return importlib.metadata.version("threeregime")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _source_checkout(package_dir: Path | None = None) -> Path | None:
    """The root of the source checkout this package (``package_dir``) is imported from, or None.

    Only a folder whose ``pyproject.toml`` names the project ``threeregime`` and that holds a
    ``.git`` counts: an installed copy inside a user's own repository is not one (its parent is
    ``site-packages``), so git is never run in the user's repository.
    """
    root = Path(package_dir or Path(__file__).resolve().parent).parent
    try:
        meta = (root / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return None
    if not (root / ".git").exists() or 'name = "threeregime"' not in meta:
        return None
    return root


@functools.lru_cache(maxsize=1)
def _git_sha() -> str:
    """The commit of the installed copy: from the distribution's ``direct_url.json`` (PEP 610,
    an install from a git URL), else ``git rev-parse HEAD`` in this package's own source
    checkout, else ``"unknown"``."""
    try:
        raw = importlib.metadata.distribution("threeregime").read_text("direct_url.json")
        sha = json.loads(raw or "{}").get("vcs_info", {}).get("commit_id")
        if sha:
            return str(sha)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        pass
    root = _source_checkout()
    if root is None:
        return "unknown"
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else "unknown"


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def provenance() -> dict[str, str]:
    """Versions of the stack and the package's provenance, as global attrs.

    ``threeregime_version`` (package metadata, :mod:`importlib.metadata`), ``git_sha`` (see
    :func:`_git_sha`), ``python_version``, ``numpy_version``, ``xarray_version``,
    ``h5netcdf_version`` and ``torch_version`` when torch is imported in this process (this
    module never imports it).
    """
    out = {"threeregime_version": _version(), "git_sha": _git_sha(),
           "python_version": platform.python_version(), "numpy_version": np.__version__,
           "xarray_version": xr.__version__, "h5netcdf_version": _dist_version("h5netcdf")}
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch_version"] = str(getattr(torch, "__version__", "unknown"))
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _complete_var(name: str, attrs: dict[str, Any], dtype: np.dtype) -> None:
    """long_name, legal units and flag attrs on one variable's attrs (in place)."""
    if name in CELL_VARS:
        long_name, units = CELL_VARS[name]
        attrs.setdefault("long_name", long_name)
        attrs.setdefault("units", units)
    if "long_name" not in attrs and "standard_name" not in attrs:
        attrs["long_name"] = name.replace("_", " ")
    if dtype.kind in "iuf" and "units" not in attrs and "flag_values" not in attrs:
        attrs["units"] = "1"
    if str(attrs.get("units", "")) in _UNIT_FIX:
        attrs["units"] = _UNIT_FIX[str(attrs["units"])]
    if name in _FLAGS and "flag_values" not in attrs:
        values, meanings = _FLAGS[name]
        attrs["flag_values"] = values.astype(dtype) if dtype.kind in "iu" else values
        attrs["flag_meanings"] = meanings


def cf_complete(ds: xr.Dataset, *, title: str | None = None, history: str | None = None,
                stack: bool = True) -> xr.Dataset:
    """``ds`` with its CF-1.10 attributes completed: nothing that is set already changes.

    Global attrs: ``Conventions`` (:data:`CONVENTIONS`), ``title`` (``title``, else from
    ``sweep_name``), ``source``, ``references``, ``date_created`` (``created`` when set),
    ``history`` (a first line when there is none; ``history`` given here is appended as a new
    line), ``schema_version`` and :func:`provenance`'s versions where absent (``stack=False``:
    absent versions are written ``"unknown"``, for a file made by another process, whose
    versions this process does not know).  Every variable
    gets a ``long_name`` (:data:`CELL_VARS`, else its name) and ``units`` (``1``), the
    non-UDUNITS ``epoch`` becomes ``1``, and ``regime_uncertain`` its flag attributes.

    Idempotent: ``cf_complete(cf_complete(ds))`` is identical to ``cf_complete(ds)``, so a
    file read back and written again is unchanged.  Data and coordinate values are never
    touched (a shallow copy; attrs only).
    """
    out = ds.copy(deep=False)
    for name, var in out.variables.items():
        var.attrs = dict(var.attrs)
        _complete_var(str(name), var.attrs, var.dtype)
    a = dict(out.attrs)
    created = str(a.get("created") or a.get("date_created") or _now())
    version = str(a.get("threeregime_version") or _version())
    a.setdefault("schema_version", SCHEMA_VERSION)
    for key, val in provenance().items():
        a.setdefault(key, val if stack else "unknown")
    a["Conventions"] = CONVENTIONS
    if title:
        a["title"] = title
    elif not a.get("title"):
        name = a.get("sweep_name")
        a["title"] = (f"threeregime results of sweep {name}" if name
                      else "threeregime pruning results")
    a.setdefault("source", f"threeregime {version}: dense training, pruning, retraining and "
                           "loss-landscape measures (linear mode connectivity, CKA, Hessian)")
    a.setdefault("references", _REFERENCES)
    a.setdefault("date_created", created)
    lines = [ln for ln in str(a.get("history") or "").splitlines() if ln.strip()]
    if not lines:
        lines.append(f"{created} threeregime {version}: created")
    if history:
        lines.append(f"{_now()} {history}")
    a["history"] = "\n".join(lines)
    out.attrs = netcdf_attrs(a)
    return out


def cf_encoding(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    """netCDF encoding that CF tools read: strings as fixed-width char arrays (UTF-8), and no
    ``_FillValue`` on coordinate variables."""
    enc: dict[str, dict[str, Any]] = {}
    for name, var in ds.variables.items():
        if var.dtype.kind in "UO" or (var.dtype.kind == "S" and var.dtype.itemsize > 1):
            enc[str(name)] = {"dtype": "S1", "_Encoding": "utf-8"}
        elif name in ds.coords and var.dtype.kind == "f":
            enc[str(name)] = {"_FillValue": None}
    return enc
