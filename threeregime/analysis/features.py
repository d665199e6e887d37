"""Scale-aware evidence for regime rules, from a results Dataset or a means-only table.

Torch-free (numpy / xarray / scipy).  Two steps:

1. :func:`cell_stats` reduces a results Dataset (dims: one temperature axis, load axes, and the
   replicate dims ``dense_seed`` / ``pair`` / ``retrain_seed``) to cell means and standard
   errors: ``lmc_mean``/``lmc_sem`` over (dense seed, pair), ``cka_mean``/``cka_sem``,
   ``test_error_mean``/``test_error_sem`` over (dense seed, retrain seed), ``train_error_mean``,
   ``n_valid_pairs`` and a status ``reason``.  A means-only Dataset (no replicate dims, e.g. the
   paper's table via :func:`read_table`) passes its values through, with ``<var>_sem`` when
   present.
2. :func:`features` adds the evidence a rule reads, every one free of the setting's scale:

   ======================= ==============================================================
   feature                 meaning
   ======================= ==============================================================
   ``lmc_z``               barrier against its own noise: lmc_mean / max(sem, floor)
   ``lmc_rel_chance``      barrier as a fraction of the chance error 1 - 1/num_classes
   ``lmc_rel_error``       barrier relative to the retrained models' test error
   ``cka_rel_max``         CKA minus its column's maximum (determined cells)
   ``cka_pos``             position of CKA within its column's [min, max]
   ``headroom_lost``       (test error - column best) / (chance - column best)
   ``step_cold``           1 on the cold side of the LMC change point along temperature
   ``step_z``              significance of that change point (hot mean - cold mean over its se)
   ======================= ==============================================================

The change point (:func:`change_point`) is the split of a temperature-ordered sequence into a
hot and a cold segment that best fits two levels (least squares), restricted to splits whose cold
side has the lower LMC (a barrier appears on the cold side: more epochs, larger batch, smaller lr).
``scope="joint"`` shares one split among all load columns (the learning-rate drop is an event of
the dense schedule, and columns without a barrier carry no information on where it is);
``scope="column"`` fits each column on its own.
"""
from __future__ import annotations

import csv
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..errors import DataError, ResultsError, SpecError, did_you_mean

__all__ = ["REPLICATE_DIMS", "Grid", "cell_index", "cell_stats", "change_point", "features",
           "read_table", "replicate_mean", "temperature_dim"]

REPLICATE_DIMS = ("dense_seed", "pair", "retrain_seed")
_STATUS_OK, _STATUS_DIVERGED, _STATUS_MISSING = 0, 1, 3
#: ``reason`` codes written by :func:`cell_stats` (same as the regime ``undetermined_reason``)
REASON_NOT_COMPUTED, REASON_FAILED, REASON_TOO_FEW = 1, 2, 3


def temperature_dim(ds: xr.Dataset, var: str, temperature: str | None = None) -> str:
    """The one temperature dim of ``ds[var]`` (coordinate attr ``role == 'temperature'``)."""
    cell = [str(d) for d in ds[var].dims if d not in REPLICATE_DIMS]
    if temperature is not None:
        if temperature not in cell:
            raise ResultsError(f"temperature must be a dim of {var}; got {temperature!r}; "
                               f"allowed: {', '.join(cell) or 'none'}")
        return temperature
    temps = [d for d in cell if d in ds.coords and ds[d].attrs.get("role") == "temperature"]
    if len(temps) != 1:
        raise ResultsError(f"need exactly one temperature dim of {var} (coordinate attrs "
                           f"role='temperature'); found {temps or 'none'} among "
                           f"{', '.join(cell) or 'none'}; pass temperature=<dim name>")
    return temps[0]


class Grid:
    """Cells of one Dataset as (n_columns, n_temperatures) arrays ordered hot -> cold."""

    def __init__(self, ds: xr.Dataset, cell_dims: Sequence[str], temperature: str) -> None:
        self.temperature = temperature
        self.cell = tuple(cell_dims)
        self.cols = [d for d in cell_dims if d != temperature]
        self.dims = tuple(self.cols) + (temperature,)
        self.coords = {d: ds[d] for d in self.dims if d in ds.coords}
        values = np.asarray(ds[temperature].values)
        hotter = ds[temperature].attrs.get("hotter", "increasing")
        order = np.argsort(values, kind="stable")
        self.order = order[::-1] if hotter == "increasing" else order
        self.shape = tuple(ds.sizes[d] for d in self.dims)
        self.n_temp = self.shape[-1]
        self.n_col = int(np.prod(self.shape[:-1])) if self.cols else 1

    def grid(self, da: xr.DataArray, extra: Sequence[str] = ()) -> np.ndarray:
        """(n_col, n_temp, *extra) float array, temperature ordered hot -> cold."""
        a = np.asarray(da.transpose(*self.dims, *extra).values, dtype=np.float64)
        a = a.reshape((self.n_col, self.n_temp) + a.shape[len(self.dims):])
        return a[:, self.order]

    def back(self, a: np.ndarray, name: str, attrs: dict | None = None) -> xr.DataArray:
        """Inverse of :meth:`grid` for a (n_col, n_temp) array, dims in the cells' order."""
        out = np.empty_like(a)
        out[:, self.order] = a
        return xr.DataArray(out.reshape(self.shape), dims=self.dims,
                            coords={d: c for d, c in self.coords.items()}, name=name,
                            attrs=attrs or {}).transpose(*self.cell)


def cell_index(ds: xr.Dataset, point: Any, cell: Sequence[str]) -> dict[str, int]:
    """Index of the cell ``point`` (a mapping: one value per dim of ``cell``) along every cell
    dim; a one-line SpecError names a bad, unknown (did-you-mean) or missing coordinate."""
    from collections.abc import Mapping

    if not isinstance(point, Mapping):
        raise SpecError(f"point must be a mapping of the cell's coordinates, e.g. "
                        f"{{'epochs': 40, 'density': 0.05}}; got {point!r}")
    for k in point:
        if k not in cell:
            raise SpecError(f"point has unknown dim {k!r}; the cell dims are "
                            f"{', '.join(cell)}{did_you_mean(str(k), cell)}")
    missing = [d for d in cell if d not in point]
    if missing:
        raise SpecError(f"point must give a value for every cell dim; missing "
                        f"{', '.join(missing)} (cell dims: {', '.join(cell)})")
    sel = {}
    for d in cell:
        vals = np.asarray(ds[d].values)
        numeric = vals.dtype.kind in "fiu"
        hit = np.flatnonzero(np.isclose(vals.astype(float), float(point[d]), rtol=1e-9, atol=0)
                             if numeric else vals == point[d])
        if hit.size == 0:
            allowed = ", ".join(f"{v:g}" if numeric else str(v) for v in vals)
            raise SpecError(f"point[{d!r}] must be one of {allowed}; got {point[d]!r}")
        sel[d] = int(hit[0])
    return sel


# --------------------------------------------------------------------------- reading
def read_table(path: str | Path, *, temperature: str = "epochs", load: str = "density",
               hotter: str = "decreasing", noise: dict[str, float] | None = None,
               num_classes: int = 10) -> xr.Dataset:
    """Read a means-only CSV table (``#`` comment lines allowed) into a cell Dataset.

    Columns ``temperature``, ``load`` and numeric variables (``test_error``, ``lmc``, ``cka``)
    become variables over (load, temperature); string columns (``regime_drawn``) stay strings.
    ``noise`` (default: the paper table's reading errors ``lmc`` 0.01, ``test_error`` 0.01,
    ``cka`` 0.002) becomes ``<var>_sem``.
    """
    noise = {"lmc": 0.01, "test_error": 0.01, "cka": 0.002} if noise is None else noise
    p = Path(path)
    if not p.is_file():
        raise DataError(f"table path must be an existing CSV file; got {str(p)!r}")
    with p.open(newline="") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    if not rows or temperature not in rows[0] or load not in rows[0]:
        raise DataError(f"table {p.name} must have columns {temperature!r} and {load!r}; got "
                        f"{', '.join(rows[0]) if rows else 'no rows'}")
    tv = sorted({float(r[temperature]) for r in rows})
    lv = sorted({float(r[load]) for r in rows})
    data: dict[str, Any] = {}
    for name in rows[0]:
        if name in (temperature, load):
            continue
        try:
            [float(r[name]) for r in rows]
            arr: np.ndarray = np.full((len(lv), len(tv)), np.nan)
        except ValueError:
            arr = np.full((len(lv), len(tv)), "", dtype=object)
        for r in rows:
            i, j = lv.index(float(r[load])), tv.index(float(r[temperature]))
            arr[i, j] = r[name] if arr.dtype == object else float(r[name])
        data[name] = ((load, temperature), arr.astype(str) if arr.dtype == object else arr)
    for name, sem in noise.items():
        if name in data:
            data[f"{name}_sem"] = ((load, temperature), np.full((len(lv), len(tv)), float(sem)))
    t_is_int = all(float(x).is_integer() for x in tv)
    coords = {load: (load, np.array(lv), {"role": "load"}),
              temperature: (temperature, np.array(tv, dtype=np.int64 if t_is_int else float),
                            {"role": "temperature", "hotter": hotter})}
    return xr.Dataset(data, coords=coords, attrs={"num_classes": num_classes,
                                                  "source": str(p.name)})


# --------------------------------------------------------------------------- statistics
def _mean_sem(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, standard error and count over the last axis, ignoring NaN."""
    ok = np.isfinite(a)
    n = ok.sum(-1)
    with np.errstate(all="ignore"):
        mean = np.where(n > 0, np.where(ok, a, 0.0).sum(-1) / np.maximum(n, 1), np.nan)
        dev = np.where(ok, a - mean[..., None], 0.0)
        sd = np.sqrt((dev ** 2).sum(-1) / np.maximum(n - 1, 1))
        sem = np.where(n >= 2, sd / np.sqrt(np.maximum(n, 1)), np.nan)
    return mean, sem, n


def _reps(ds: xr.Dataset, name: str, cell: list[str], ok_only: bool) -> np.ndarray | None:
    """(*cell, n_replicates) samples of ``name`` with non-ok points masked."""
    if name not in ds or not set(cell) <= set(ds[name].dims):
        return None
    da = ds[name]
    if "status" in ds and set(ds["status"].dims) <= set(da.dims):
        st = ds["status"].broadcast_like(da)
        da = da.where(st == _STATUS_OK) if ok_only else da.where(st <= _STATUS_DIVERGED)
    rep = [d for d in da.dims if d not in cell]
    vals = np.asarray(da.transpose(*cell, *rep).values, dtype=np.float64)
    return vals.reshape(vals.shape[:len(cell)] + (-1,))


def cell_stats(ds: xr.Dataset, *, temperature: str | None = None) -> xr.Dataset:
    """Cell means and standard errors of LMC, CKA and test/train error (see module doc).

    Works for results Datasets with replicate dims and for means-only Datasets; the output is
    over the cell dims (the dims of ``lmc`` other than replicate dims).
    """
    src_l = "lmc" if "lmc" in ds else "lmc_mean"
    src_c = "cka" if "cka" in ds else "cka_mean"
    if src_l not in ds or src_c not in ds:
        raise ResultsError("rules need variables lmc and cka (or lmc_mean and cka_mean); got "
                           f"{', '.join(map(str, ds.data_vars)) or 'none'}")
    temp = temperature_dim(ds, src_l, temperature)
    cell = [str(d) for d in ds[src_l].dims if d not in REPLICATE_DIMS]
    lmc, cka = _reps(ds, src_l, cell, True), _reps(ds, src_c, cell, True)
    both = np.isfinite(lmc) & np.isfinite(cka)
    lmc_m, lmc_s, n = _mean_sem(np.where(both, lmc, np.nan))
    cka_m, cka_s, _ = _mean_sem(np.where(both, cka, np.nan))
    te = _reps(ds, "test_error" if "test_error" in ds else "test_error_mean", cell, False)
    tr = _reps(ds, "train_error", cell, False)
    te_m, te_s, _ = _mean_sem(te) if te is not None else (np.full(lmc_m.shape, np.nan),) * 3
    tr_m = _mean_sem(tr)[0] if tr is not None else np.full(lmc_m.shape, np.nan)
    means_only = not any(d in REPLICATE_DIMS for d in ds[src_l].dims)
    if means_only:
        for name, target in (("lmc_sem", lmc_s), ("cka_sem", cka_s),
                             ("test_error_sem", te_s)):
            if name in ds:
                target[...] = ds[name].transpose(*cell).values
        n = np.where(np.isfinite(lmc_m), 1, 0)
    reason = np.zeros(lmc_m.shape, dtype=np.int8)
    if "status" in ds and set(ds["status"].dims) >= set(cell):
        raw = ds["status"].astype(float)      # read unmasked: status 3 = not computed
        st = _reps(xr.Dataset({"s": raw}), "s", cell, False)
        reason[~(st == _STATUS_OK).any(-1)] = REASON_FAILED
        reason[(st == _STATUS_MISSING).all(-1)] = REASON_NOT_COMPUTED
    reason[(reason == 0) & ((n < 1) | ~np.isfinite(lmc_m))] = REASON_TOO_FEW
    coords = {k: v for k, v in ds.coords.items() if v.dims and set(v.dims) <= set(cell)}
    out = xr.Dataset({k: (cell, v) for k, v in (
        ("lmc_mean", lmc_m), ("lmc_sem", lmc_s), ("cka_mean", cka_m), ("cka_sem", cka_s),
        ("test_error_mean", te_m), ("test_error_sem", te_s), ("train_error_mean", tr_m),
        ("n_valid_pairs", n.astype(np.int64)), ("reason", reason))}, coords=coords)
    out.attrs.update({"temperature": temp, "num_classes": int(ds.attrs.get("num_classes", 10))})
    return out


def replicate_mean(da: xr.DataArray, ds: xr.Dataset, keep: Sequence[str]) -> xr.DataArray:
    """``da`` averaged over its replicate dims (dims ``keep`` left, in that order), leaving out
    failed / missing points (``ds["status"]`` > diverged)."""
    if "status" in ds and set(ds["status"].dims) <= set(da.dims):
        da = da.where(ds["status"] <= _STATUS_DIVERGED)
    rep = [d for d in da.dims if d in REPLICATE_DIMS]
    extra = [d for d in da.dims if d not in rep and d not in keep]
    if extra:
        raise ResultsError(f"{da.name} has dims {extra} besides {list(keep)}; select them "
                           f"first, e.g. ds.sel({extra[0]}=...)")
    if rep:
        with np.errstate(all="ignore"):
            vals = da.transpose(*keep, *rep).values.reshape(
                tuple(da.sizes[k] for k in keep) + (-1,)).astype(np.float64)
            n = np.isfinite(vals).sum(-1)
            mean = np.where(n > 0, np.nansum(vals, -1) / np.maximum(n, 1), np.nan)
        return xr.DataArray(mean, dims=tuple(keep),
                            coords={k: da[k] for k in keep if k in da.coords},
                            name=da.name, attrs=da.attrs)
    return da.transpose(*keep)


# --------------------------------------------------------------------------- change point
def change_point(x: np.ndarray, se: np.ndarray, *, scope: str = "joint") -> tuple[np.ndarray,
                                                                                  np.ndarray]:
    """Two-level fit of (n_col, n_temp) values ordered hot -> cold.

    Returns ``(k, z)`` per column: ``k`` = number of cells on the hot side of the best split
    (0 = no split with a lower cold side), ``z`` = (hot mean - cold mean) / its standard error
    (from the per-cell ``se``; NaN cells are ignored).  ``scope="joint"``: one split for all
    columns, chosen by the summed squared step significance ``z^2`` (for equal per-cell noise
    ``sigma`` this is the least-squares gain ``n_h n_c / n ((mean_h - mean_c) / sigma)^2``);
    its ``z`` is the largest column ``z`` at that split (the event is significant for the grid
    when one column shows it).
    """
    n_col, n_t = x.shape
    gains = np.zeros((n_col, n_t))
    zs = np.zeros((n_col, n_t))
    for k in range(1, n_t):
        h, c = x[:, :k], x[:, k:]
        nh, nc = np.isfinite(h).sum(1), np.isfinite(c).sum(1)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # empty sides: NaN, masked below
            d = np.nanmean(h, 1) - np.nanmean(c, 1)
            v = (np.nanmean(np.where(np.isfinite(h), se[:, :k] ** 2, np.nan), 1) / nh
                 + np.nanmean(np.where(np.isfinite(c), se[:, k:] ** 2, np.nan), 1) / nc)
            z = d / np.sqrt(v)
            g = np.where(d > 0, z ** 2, 0.0)  # = n_h n_c / n (d / sigma)^2 for equal noise
        ok = (nh > 0) & (nc > 0) & np.isfinite(z)
        gains[:, k] = np.where(ok, g, 0.0)
        zs[:, k] = np.where(ok, z, 0.0)
    if scope == "joint":
        k_best = int(np.argmax(gains.sum(0))) if gains.sum() > 0 else 0
        ks = np.full(n_col, k_best)
        z_joint = float(zs[:, k_best].max()) if k_best > 0 else 0.0
        return ks, np.full(n_col, z_joint)
    ks = np.where(gains.max(1) > 0, np.argmax(gains, 1), 0)
    return ks, np.where(ks > 0, zs[np.arange(n_col), ks], 0.0)


# --------------------------------------------------------------------------- features
def features(stats: xr.Dataset, *, lmc_floor: float = 0.01, cka_floor: float = 0.002,
             scope: str = "joint", num_classes: int | None = None) -> xr.Dataset:
    """Add the scale-aware features of the module docstring to a :func:`cell_stats` Dataset."""
    g = Grid(stats, list(stats["lmc_mean"].dims), stats.attrs["temperature"])
    C = num_classes or int(stats.attrs.get("num_classes", 10))
    chance = 1.0 - 1.0 / C
    det = g.grid(stats["reason"]) == 0
    lmc = np.where(det, g.grid(stats["lmc_mean"]), np.nan)
    cka = np.where(det, g.grid(stats["cka_mean"]), np.nan)
    te = g.grid(stats["test_error_mean"])
    lse = np.fmax(g.grid(stats["lmc_sem"]), lmc_floor)
    cse = np.fmax(g.grid(stats["cka_sem"]), cka_floor)
    with np.errstate(all="ignore"):
        tdet = np.where(det, te, np.nan)
        best = np.nanmin(np.where(np.isfinite(tdet), tdet, np.inf), 1, keepdims=True)
        best = np.where(np.isfinite(best), best, np.nan)
        cmax = np.nanmax(np.where(np.isfinite(cka), cka, -np.inf), 1, keepdims=True)
        cmin = np.nanmin(np.where(np.isfinite(cka), cka, np.inf), 1, keepdims=True)
        feats = {
            "lmc_z": lmc / lse,
            "lmc_rel_chance": lmc / chance,
            "lmc_rel_error": lmc / te,
            "cka_rel_max": cka - cmax,
            "cka_pos": np.where(cmax > cmin, (cka - cmin) / (cmax - cmin), np.nan),
            "headroom_lost": (te - best) / (chance - best),
        }
    ks, zs = change_point(lmc, lse, scope=scope)
    idx = np.arange(g.n_temp)[None, :]
    feats["step_cold"] = np.where(ks[:, None] > 0, (idx >= ks[:, None]).astype(float), 0.0)
    feats["step_z"] = np.broadcast_to(zs[:, None], lmc.shape).copy()
    out = stats.copy()
    for name, a in feats.items():
        out[name] = g.back(np.asarray(a, dtype=np.float64), name)
    out["lmc_noise"] = g.back(lse, "lmc_noise")
    out["cka_noise"] = g.back(cse, "cka_noise")
    out.attrs.update({"num_classes": C, "lmc_floor": lmc_floor, "cka_floor": cka_floor,
                      "step_scope": scope})
    return out
