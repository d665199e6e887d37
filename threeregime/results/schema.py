"""The point Dataset of the results schema: its flags, variables and builder.

The schema itself is documented in :mod:`threeregime.results.storage` (its module docstring); this
module holds the part a point writer needs (status flags, the point variables,
:func:`make_point_dataset`, :func:`netcdf_attrs`), all re-exported by ``storage``.  It imports
neither torch nor anything above :mod:`threeregime.errors`.
"""
from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..errors import ResultsError

__all__ = ["STATUS", "STATUS_FLAG_MEANINGS", "REPLICATE_DIMS", "make_point_dataset",
           "netcdf_attrs"]

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
                                   {"long_name": "retraining epoch", "units": "epoch"})
    for name, (dims, values, attrs) in (extra_vars or {}).items():
        if name in data_vars or name == "status":
            raise ResultsError(f"extra_vars: {name!r} is a variable of the point schema; "
                               "choose another name")
        data_vars[name] = (tuple(dims), np.asarray(values), dict(attrs))
    data_vars["status"] = ((), _status_code(status), dict(_STATUS_ATTRS))
    return xr.Dataset(data_vars, coords=coords, attrs=netcdf_attrs(extra_attrs))
