"""Scale-aware evidence for regime rules, from a results Dataset or a means-only table.

Torch-free (numpy / xarray / scipy).  Two steps:

1. :func:`cell_stats` reduces a results Dataset (dims: one temperature axis, load axes, and the
   replicate dims ``dense_seed`` / ``pair`` / ``retrain_seed``) to cell means and standard
   errors over the independent unit, the dense seed (:mod:`threeregime.stats`): pairs and
   retrain seeds are averaged within a dense seed first, replicates at chance on their training
   data are left out before that (``n_collapsed``), and ``lmc_mean``/``lmc_sem``,
   ``cka_mean``/``cka_sem``, ``test_error_mean``/``test_error_sem``, ``train_error_mean`` are
   taken over the ``n_used`` dense-seed means; ``lmc_unit``/``cka_unit`` keep those means,
   ``n_valid_pairs`` and ``*_sem_pooled`` (over dense seed x pair) are diagnostics, ``reason``
   the status.  A means-only Dataset (no replicate dims, e.g. the paper's table via
   :func:`read_table`) passes its values through, with ``<var>_sem`` when present.
2. :func:`features` adds the evidence a rule reads, every one free of the setting's scale:

   ======================= ==============================================================
   feature                 meaning
   ======================= ==============================================================
   ``lmc_z``               barrier against its noise: lmc_mean / lmc_noise, the noise being
                           the standard error over dense seeds floored by the column's
                           seed-to-seed spread (a t statistic where the cell's own binds)
   ``lmc_rel_chance``      barrier as a fraction of the chance error 1 - 1/num_classes
   ``lmc_rel_error``       barrier relative to the retrained models' test error
   ``cka_rel_max``         CKA minus its column's maximum (determined cells)
   ``cka_pos``             position of CKA within its column's [min, max]
   ``headroom_lost``       (test error - column best) / (chance - column best)
   ``step_cold``           1 on the cold side of the LMC change point along temperature
   ``step_z``              significance of that change point: t over dense seeds of each
                           seed's hot mean - cold mean (means-only: over the cells' se)
   ``step_rel_chance``     size of that step (hot mean - cold mean) as a fraction of chance
   ``lmc_df``, ``step_df`` degrees of freedom of ``lmc_z`` and ``step_z`` (dense seeds - 1;
                           inf for a means-only table: its reading error is a normal se)
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
from ..results.schema import REPLICATE_DIMS
from ..spec.specs import AXES
from ..stats import mean_sem, one_sample_t, pooled_sem, unit_means

__all__ = ["Grid", "cell_index", "cell_stats", "change_point", "features", "find_dims",
           "read_table", "replicate_mean", "temperature_dim"]

#: the reading errors of the paper's table (Zhou et al. 2023, Figure 2): the noise of a
#: means-only table that brings no ``<var>_sem`` of its own (nothing to measure it from)
TABLE_NOISE = {"lmc": 0.01, "test_error": 0.01, "cka": 0.002}
_STATUS_OK, _STATUS_DIVERGED, _STATUS_MISSING = 0, 1, 3
#: ``reason`` codes written by :func:`cell_stats` (same as the regime ``undetermined_reason``)
REASON_NOT_COMPUTED, REASON_FAILED, REASON_TOO_FEW, REASON_NEAR_CHANCE = 1, 2, 3, 5


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


def _role_of(ds: xr.Dataset, dim: str) -> str | None:
    if dim in ds.coords and ds[dim].attrs.get("role") in ("temperature", "load"):
        return ds[dim].attrs["role"]
    if dim in AXES:
        return AXES[dim].role
    return None


def _as_list(x: str | Sequence[str] | None) -> list[str] | None:
    if x is None:
        return None
    return [x] if isinstance(x, str) else list(x)


def find_dims(ds: xr.Dataset, var: str = "lmc", temperature: str | Sequence[str] | None = None,
              load: str | Sequence[str] | None = None) -> tuple[list[str], list[str], list[str]]:
    """Return ``(cell_dims, temperature_dims, load_dims)`` of ``ds[var]``.

    Cell dims are the dims of ``var`` other than the replicate dims (``dense_seed``,
    ``retrain_seed``, ``pair``).  Temperature and load dims come from the coordinates' ``role``
    attr, else from the names in :data:`threeregime.spec.specs.AXES`; explicit names override.
    """
    if var not in ds:
        raise ResultsError(f"dataset has no variable {var!r}; variables: "
                           f"{', '.join(map(str, ds.data_vars)) or 'none'}")
    cell = [str(d) for d in ds[var].dims if d not in REPLICATE_DIMS]
    temps = _as_list(temperature)
    loads = _as_list(load)
    for label, given in (("temperature", temps), ("load", loads)):
        for d in given or []:
            if d not in cell:
                raise ResultsError(f"{label}={d!r} is not a dim of {var}; allowed: "
                                   f"{', '.join(cell) or 'none'}")
    if temps is None:
        temps = [d for d in cell if _role_of(ds, d) == "temperature" and d not in (loads or [])]
    if loads is None:
        loads = [d for d in cell if _role_of(ds, d) == "load" and d not in temps]
    if not temps:
        raise ResultsError(f"cannot find a temperature dim of {var} (dims: "
                           f"{', '.join(cell) or 'none'}): no coordinate has attrs "
                           f"role='temperature'; pass temperature=<dim name>")
    if set(temps) & set(loads):
        raise ResultsError(f"a dim cannot be both temperature and load; got temperature={temps}"
                           f", load={loads}")
    return cell, temps, loads


class Grid:
    """Cells of one Dataset as (n_columns, n_temperatures) arrays ordered hot -> cold."""

    def __init__(self, ds: xr.Dataset, cell_dims: Sequence[str], temperature: str) -> None:
        self.temperature = temperature
        self.cell = tuple(cell_dims)
        self.cols = [d for d in cell_dims if d != temperature]
        self.dims = tuple(self.cols) + (temperature,)
        self.coords = {d: ds[d] for d in self.dims if d in ds.coords}
        values = np.asarray(ds[temperature].values)
        hotter = ds[temperature].attrs.get("hotter") or (
            AXES[temperature].hotter if temperature in AXES else "increasing")
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
    noise = dict(TABLE_NOISE) if noise is None else noise
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
_UNIT = "dense_seed"


def _chance(ds: xr.Dataset) -> float:
    return 1.0 - 1.0 / int(ds.attrs.get("num_classes", 10))


def _collapsed_masks(ds: xr.Dataset, chance_fraction: float | None
                     ) -> tuple[xr.DataArray | None, xr.DataArray | None]:
    """(dense seeds at chance, retrained models at chance) as boolean DataArrays (or None).

    A dense model (``dense_train_error``) or a retrained model (``train_error``) whose train
    error is at least ``chance_fraction`` x chance error learnt nothing: its outputs are (near)
    constant, its LMC and CKA are not measurements of the regime.
    """
    if chance_fraction is None:
        return None, None
    lim = chance_fraction * _chance(ds)
    dense = ds["dense_train_error"] >= lim if "dense_train_error" in ds else None
    retrained = ds["train_error"] >= lim if ("train_error" in ds
                                             and "retrain_seed" in ds["train_error"].dims) else None
    return dense, retrained


def _pair_mask(ds: xr.DataArray | xr.Dataset, retrained: xr.DataArray) -> xr.DataArray | None:
    """Pairs with a member at chance (``pair_a``/``pair_b`` hold retrain seed values).

    Without those coordinates (or with values that are not retrain seeds) every pair of a dense
    seed with a retrained model at chance is left out."""
    if "retrain_seed" not in retrained.dims:
        return None
    seeds = list(np.asarray(retrained["retrain_seed"].values))
    try:
        ia = [seeds.index(v) for v in np.asarray(ds["pair_a"].values)]
        ib = [seeds.index(v) for v in np.asarray(ds["pair_b"].values)]
    except (KeyError, ValueError):
        return retrained.any("retrain_seed")
    ra = retrained.isel(retrain_seed=xr.DataArray(ia, dims="pair")).drop_vars(
        "retrain_seed", errors="ignore")
    rb = retrained.isel(retrain_seed=xr.DataArray(ib, dims="pair")).drop_vars(
        "retrain_seed", errors="ignore")
    return ra | rb


def _units(ds: xr.Dataset, name: str, cell: list[str], ok_only: bool,
           dense_out: xr.DataArray | None, retrained_out: xr.DataArray | None
           ) -> np.ndarray | None:
    """(*cell, n_units) dense-seed means of ``name``: non-ok points and collapsed replicates
    masked, replicates nested in a dense seed (pairs, retrain seeds) averaged first.  Without a
    ``dense_seed`` dim each remaining replicate is its own unit."""
    if name not in ds or not set(cell) <= set(ds[name].dims):
        return None
    da = ds[name]
    if "status" in ds and set(ds["status"].dims) <= set(da.dims):
        st = ds["status"].broadcast_like(da)
        da = da.where(st == _STATUS_OK) if ok_only else da.where(st <= _STATUS_DIVERGED)
    if dense_out is not None and set(dense_out.dims) <= set(da.dims):
        da = da.where(~dense_out)
    if retrained_out is not None:
        if set(retrained_out.dims) <= set(da.dims):
            da = da.where(~retrained_out)
        elif "pair" in da.dims:
            pm = _pair_mask(ds, retrained_out)
            if pm is not None and set(pm.dims) <= set(da.dims):
                da = da.where(~pm)
    rep = [d for d in da.dims if d not in cell]
    nested = [d for d in rep if d != _UNIT]
    unit = [d for d in rep if d == _UNIT]
    if not unit:  # no dense seed dim: the replicates are the units
        vals = np.asarray(da.transpose(*cell, *rep).values, dtype=np.float64)
        return vals.reshape(vals.shape[:len(cell)] + (-1,))
    vals = np.asarray(da.transpose(*cell, *unit, *nested).values, dtype=np.float64)
    return unit_means(vals, tuple(range(len(cell) + 1, vals.ndim)))


def _pooled_reps(ds: xr.Dataset, name: str, cell: list[str]) -> np.ndarray | None:
    """(*cell, n_replicates) samples with non-ok points masked (the pooled diagnostic)."""
    if name not in ds or not set(cell) <= set(ds[name].dims):
        return None
    da = ds[name]
    if "status" in ds and set(ds["status"].dims) <= set(da.dims):
        da = da.where(ds["status"].broadcast_like(da) == _STATUS_OK)
    rep = [d for d in da.dims if d not in cell]
    vals = np.asarray(da.transpose(*cell, *rep).values, dtype=np.float64)
    return vals.reshape(vals.shape[:len(cell)] + (-1,))


def _attrs(long_name: str, units: str = "1") -> dict:
    return {"long_name": long_name, "units": units}


#: long_name / units of the :func:`cell_stats` variables (the schema: storage module docs)
CELL_ATTRS = {
    "lmc_mean": _attrs("mean linear mode connectivity over dense seeds (pairs averaged first)"),
    "lmc_sem": _attrs("standard error of lmc_mean over dense-seed means (n_used - 1 dof)"),
    "cka_mean": _attrs("mean CKA over dense seeds (pairs averaged first)"),
    "cka_sem": _attrs("standard error of cka_mean over dense-seed means (n_used - 1 dof)"),
    "test_error_mean": _attrs("mean test error over dense seeds (retrain seeds averaged "
                              "first)"),
    "test_error_sem": _attrs("standard error of test_error_mean over dense-seed means"),
    "train_error_mean": _attrs("mean train error over the dense seeds used"),
    "n_used": _attrs("dense seeds used (finite LMC and CKA, not at chance)", "count"),
    "n_collapsed": _attrs("replicates excluded as at chance on training data (dense models "
                          "plus retrained models)", "count"),
    "n_valid_pairs": _attrs("(dense seed, pair) samples used; diagnostic", "count"),
    "lmc_sem_pooled": _attrs("diagnostic only: standard error of the LMC pooled over (dense "
                             "seed x pair), ignoring the nesting; no rule reads it"),
    "cka_sem_pooled": _attrs("diagnostic only: standard error of the CKA pooled over (dense "
                             "seed x pair); no rule reads it"),
    "lmc_unit": _attrs("LMC of each dense seed (its pairs averaged); NaN = excluded"),
    "cka_unit": _attrs("CKA of each dense seed (its pairs averaged); NaN = excluded"),
    "reason": _attrs("why the cell is undetermined before any rule (0 = not)"),
}


def cell_stats(ds: xr.Dataset, *, temperature: str | None = None,
               chance_fraction: float | None = 0.9) -> xr.Dataset:
    """Cell means and standard errors over dense seeds of LMC, CKA and test error.

    Every replicate nested in a dense seed (seed pairs, retrain seeds) is averaged first; means
    and standard errors are then taken over the dense-seed means (:mod:`threeregime.stats`).
    Before any statistic, a dense seed whose dense model is at chance on its training data
    (``dense_train_error >= chance_fraction x chance``) and a retrained model at chance
    (``train_error``; with it every pair it belongs to) are left out, per replicate, and
    counted in ``n_collapsed``; ``n_used`` counts the dense seeds left.  A cell with none left
    for this reason gets ``reason`` near_chance.  ``chance_fraction=None`` keeps everything.

    Works for results Datasets with replicate dims and for means-only Datasets (their
    ``<var>_sem`` pass through, else the reading errors :data:`TABLE_NOISE`; ``n_used`` 1).
    The output is over the cell dims (the dims of ``lmc`` other than replicate dims) plus
    ``dense_seed`` for ``lmc_unit``/``cka_unit``; long_name/units in :data:`CELL_ATTRS`.
    """
    src_l = "lmc" if "lmc" in ds else "lmc_mean"
    src_c = "cka" if "cka" in ds else "cka_mean"
    if src_l not in ds or src_c not in ds:
        raise ResultsError("rules need variables lmc and cka (or lmc_mean and cka_mean); got "
                           f"{', '.join(map(str, ds.data_vars)) or 'none'}")
    temp = temperature_dim(ds, src_l, temperature)
    cell = [str(d) for d in ds[src_l].dims if d not in REPLICATE_DIMS]
    means_only = not any(d in REPLICATE_DIMS for d in ds[src_l].dims)
    dense_out, retrained_out = _collapsed_masks(ds, chance_fraction)
    # one sample per (dense seed, pair) with finite LMC and CKA, collapsed replicates masked
    lmc_da, cka_da = xr.broadcast(ds[src_l], ds[src_c])
    both = np.isfinite(lmc_da) & np.isfinite(cka_da)
    joint = ds.assign({src_l: lmc_da.where(both), src_c: cka_da.where(both)})
    lmc_u = _units(joint, src_l, cell, True, dense_out, retrained_out)
    cka_u = _units(joint, src_c, cell, True, dense_out, retrained_out)
    lmc_m, lmc_s, n = mean_sem(lmc_u)
    cka_m, cka_s, _ = mean_sem(cka_u)
    te = _units(ds, "test_error" if "test_error" in ds else "test_error_mean", cell, False,
                dense_out, retrained_out)
    tr = _units(ds, "train_error", cell, False, dense_out, retrained_out)
    nan = np.full(lmc_m.shape, np.nan)
    te_m, te_s, _ = mean_sem(te) if te is not None else (nan, nan, None)
    tr_m = mean_sem(tr)[0] if tr is not None else nan
    pooled_l = _pooled_reps(joint, src_l, cell)
    pooled_c = _pooled_reps(joint, src_c, cell)
    _, lmc_sp, n_pairs = mean_sem(pooled_l)
    _, cka_sp, _ = mean_sem(pooled_c)
    n_coll = np.zeros(lmc_m.shape, dtype=np.int64)
    if retrained_out is not None and dense_out is not None:  # count each replicate once
        retrained_out = retrained_out & ~dense_out
    for mask in (dense_out, retrained_out):
        if mask is not None and set(cell) <= set(mask.dims):
            m = mask
            if "status" in ds and set(ds["status"].dims) <= set(m.dims):
                m = m & (ds["status"].broadcast_like(m) <= _STATUS_DIVERGED)
            rep = [d for d in m.dims if d not in cell]
            n_coll += np.asarray(m.transpose(*cell, *rep).values).reshape(
                lmc_m.shape + (-1,)).sum(-1)
    if means_only:  # the table's own noise, else its reading error (TABLE_NOISE)
        for name, target in (("lmc_sem", lmc_s), ("cka_sem", cka_s),
                             ("test_error_sem", te_s)):
            if name in ds:
                target[...] = ds[name].transpose(*cell).values
            else:
                target[...] = TABLE_NOISE[name[:-4]]
        n = np.where(np.isfinite(lmc_m), 1, 0)
        n_pairs = n
    reason = np.zeros(lmc_m.shape, dtype=np.int8)
    if "status" in ds and set(ds["status"].dims) >= set(cell):
        raw = ds["status"].astype(float)      # read unmasked: status 3 = not computed
        st = _pooled_reps(xr.Dataset({"s": raw}), "s", cell)
        reason[~(st == _STATUS_OK).any(-1)] = REASON_FAILED
        reason[(st == _STATUS_MISSING).all(-1)] = REASON_NOT_COMPUTED
    reason[(reason == 0) & (n < 1) & (n_coll > 0)] = REASON_NEAR_CHANCE
    reason[(reason == 0) & ((n < 1) | ~np.isfinite(lmc_m))] = REASON_TOO_FEW
    coords = {k: v for k, v in ds.coords.items() if v.dims and set(v.dims) <= set(cell)}
    data = {k: (cell, v) for k, v in (
        ("lmc_mean", lmc_m), ("lmc_sem", lmc_s), ("cka_mean", cka_m), ("cka_sem", cka_s),
        ("test_error_mean", te_m), ("test_error_sem", te_s), ("train_error_mean", tr_m),
        ("n_used", n.astype(np.int64)), ("n_collapsed", n_coll),
        ("n_valid_pairs", np.asarray(n_pairs).astype(np.int64)),
        ("lmc_sem_pooled", lmc_sp), ("cka_sem_pooled", cka_sp), ("reason", reason))}
    if not means_only and _UNIT in ds[src_l].dims:
        data["lmc_unit"] = ((*cell, _UNIT), lmc_u)
        data["cka_unit"] = ((*cell, _UNIT), cka_u)
        coords[_UNIT] = ds[_UNIT]
    out = xr.Dataset(data, coords=coords)
    for k in out.data_vars:
        out[k].attrs.update(CELL_ATTRS.get(k, {}))
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
def change_point(x: np.ndarray, se: np.ndarray, *, scope: str = "joint",
                 units: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Two-level fit of (n_col, n_temp) values ordered hot -> cold.

    Returns ``(k, z)`` per column: ``k`` = number of cells on the hot side of the best split
    (0 = no split with a lower cold side), ``z`` = the significance of hot mean - cold mean.
    The split is chosen on the cell means: ``scope="joint"``: one split for all columns, by the
    summed squared step significance ``z^2`` (for equal per-cell noise ``sigma`` this is the
    least-squares gain ``n_h n_c / n ((mean_h - mean_c) / sigma)^2``); its ``z`` is the largest
    column ``z`` at that split (the event is significant for the grid when one column shows it).

    ``units`` (n_col, n_temp, n_units): the values of each independent unit (dense seed).  Then
    the ``z`` at the chosen split is the one-sample t statistic over units of the unit's own
    step (its hot-side mean minus its cold-side mean), with ``n_units - 1`` degrees of freedom.
    Without units it is the step over its standard error from the per-cell ``se`` (NaN cells
    ignored), as for a means-only table whose ``se`` is a reading error.
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
            if units is not None:  # t over units of each unit's own step
                step = (unit_means(units[:, :k], (1,)) - unit_means(units[:, k:], (1,)))
                m, sem, _ = mean_sem(step)  # (n_col,)
                z = one_sample_t(m, sem)
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


def _step_size(x: np.ndarray, ks: np.ndarray, units: np.ndarray | None, scope: str
               ) -> tuple[np.ndarray, np.ndarray]:
    """Per column: the LMC step at its split ``ks`` (hot-side mean minus cold-side mean; 0
    without a split) and the degrees of freedom of its test (units with a value in the column
    minus 1; inf without units).  ``scope="joint"``: the largest step and the smallest degrees
    of freedom over the columns (the event is the grid's, as for its z)."""
    n_col = x.shape[0]
    size = np.zeros(n_col)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # an all-NaN side: no step
        for i, k in enumerate(ks):
            if k > 0:
                d = np.nanmean(x[i, :k]) - np.nanmean(x[i, k:])
                size[i] = d if np.isfinite(d) else 0.0
    df = (np.isfinite(units).any(1).sum(-1) - 1.0 if units is not None
          else np.full(n_col, np.inf))
    if scope == "joint" and n_col:
        size, df = np.full(n_col, size.max()), np.full(n_col, df.min())
    return size, df


# --------------------------------------------------------------------------- features
def features(stats: xr.Dataset, *, lmc_floor: float = 0.0, cka_floor: float = 0.0,
             scope: str = "joint", num_classes: int | None = None, noise: str = "column",
             unit_sd: tuple[xr.DataArray, xr.DataArray] | None = None) -> xr.Dataset:
    """Add the scale-aware features of the module docstring to a :func:`cell_stats` Dataset.

    Noise (``lmc_noise``, ``cka_noise``: the denominators of ``lmc_z`` and of the CKA tests) is
    the cell's standard error over dense seeds, floored by the standard error its column's
    seed-to-seed spread implies (:func:`threeregime.stats.pooled_sem` over the determined cells
    of the column; ``noise="cell"``: no such floor), and by the constants ``lmc_floor`` /
    ``cka_floor`` (default 0: none; a means-only table brings its own ``<var>_sem``).  Where the
    cell's own standard error binds, ``lmc_z`` is the one-sample t statistic over dense seeds.
    ``unit_sd``: the (lmc, cka) standard deviation of ONE dense seed measured on the full sweep,
    used to label a single dense seed alone (the rule's confidence).
    """
    g = Grid(stats, list(stats["lmc_mean"].dims), stats.attrs["temperature"])
    C = num_classes or int(stats.attrs.get("num_classes", 10))
    chance = 1.0 - 1.0 / C
    det = g.grid(stats["reason"]) == 0
    lmc = np.where(det, g.grid(stats["lmc_mean"]), np.nan)
    cka = np.where(det, g.grid(stats["cka_mean"]), np.nan)
    te = g.grid(stats["test_error_mean"])
    units = None
    if unit_sd is not None:
        lse, cse = g.grid(unit_sd[0]), g.grid(unit_sd[1])
    else:
        lse, cse = g.grid(stats["lmc_sem"]), g.grid(stats["cka_sem"])
        if "lmc_unit" in stats:
            units = np.where(det[..., None], g.grid(stats["lmc_unit"], extra=(_UNIT,)), np.nan)
            if noise in ("column", "grid"):
                cu = np.where(det[..., None], g.grid(stats["cka_unit"], extra=(_UNIT,)),
                              np.nan)
                within = 1 if noise == "column" else (0, 1)
                lse = np.fmax(lse, pooled_sem(units, within))
                cse = np.fmax(cse, pooled_sem(cu, within))
    lse = np.fmax(lse, lmc_floor) if lmc_floor > 0 else lse
    cse = np.fmax(cse, cka_floor) if cka_floor > 0 else cse
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
    ks, zs = change_point(lmc, lse, scope=scope, units=units)
    idx = np.arange(g.n_temp)[None, :]
    feats["step_cold"] = np.where(ks[:, None] > 0, (idx >= ks[:, None]).astype(float), 0.0)
    feats["step_z"] = np.broadcast_to(zs[:, None], lmc.shape).copy()
    # magnitudes on the chance scale and the degrees of freedom of the tests (protocol v1,
    # amendment 1): the step's size at the split, and dense seeds - 1 (inf without units: a
    # means-only table, whose reading error is a normal standard error)
    size, step_df = _step_size(lmc, ks, units, scope)
    feats["step_rel_chance"] = np.broadcast_to((size / chance)[:, None], lmc.shape).copy()
    feats["step_df"] = np.broadcast_to(step_df[:, None], lmc.shape).copy()
    feats["lmc_df"] = (np.isfinite(units).sum(-1) - 1.0 if units is not None
                       else np.full(lmc.shape, np.inf))
    out = stats.copy()
    for name, a in feats.items():
        out[name] = g.back(np.asarray(a, dtype=np.float64), name)
    out["lmc_noise"] = g.back(lse, "lmc_noise", _attrs(
        "noise of lmc_mean: its standard error over dense seeds, floored by its column's "
        "seed-to-seed spread"))
    out["cka_noise"] = g.back(cse, "cka_noise", _attrs(
        "noise of cka_mean: its standard error over dense seeds, floored by its column's "
        "seed-to-seed spread"))
    out["lmc_z"].attrs.update(_attrs("lmc_mean / lmc_noise: t statistic over dense seeds "
                                     "where the cell's own standard error binds"))
    out["step_z"].attrs.update(_attrs("t statistic over dense seeds of the LMC step at the "
                                      "change point (hot minus cold)"))
    out.attrs.update({"num_classes": C, "lmc_floor": lmc_floor, "cka_floor": cka_floor,
                      "step_scope": scope, "noise": noise})
    return out
