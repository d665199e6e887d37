"""One-axis slices of a pruning-family sweep: one Dataset per method or retraining mode.

A family sweep (``sweeps/families_*.yaml``) adds a category axis, ``prune_method`` or
``retrain_mode``, to the (epochs x density) grid.  Each value of it is its own phase diagram,
classified alone; :func:`slices` cuts the sweep into them.  The ``nm_N_M`` methods fix their
own density N/M, so together they form one N:M diagram (each method at its density).
Used by notebook 07 and ``benchmarks/families_validation.py``.  No torch.
"""
from __future__ import annotations

import xarray as xr

from ..spec.specs import nm_pattern
from .regimes import REGIME_VARS

__all__ = ["slices"]

#: the category axes of the shipped family sweeps, in the order they are looked for
CATEGORY_DIMS = ("prune_method", "retrain_mode")


def slices(ds: xr.Dataset, tag: str = "") -> dict[str, xr.Dataset]:
    """One Dataset per method / retraining mode, stored regime variables dropped.

    Parameters
    ----------
    ds : xarray.Dataset
        A sweep results Dataset, with or without a category dim (:data:`CATEGORY_DIMS`).
    tag : str
        Prefix of every key (e.g. ``"nm:"`` when slices of several files are pooled).

    Returns
    -------
    dict of str to xarray.Dataset
        ``{tag + value: slice}`` in the order of the category's values, the ``nm_N_M``
        methods joined into one ``tag + "nm"`` slice, each at its own density N/M (the
        nearest density of the sweep), sorted by density.  Without a category dim:
        ``{tag or "all": ds}``.
    """
    ds = ds.drop_vars([v for v in (*REGIME_VARS, "regime_uncertain") if v in ds])
    dim = next((d for d in CATEGORY_DIMS if d in ds.dims), None)
    if dim is None:
        return {tag or "all": ds}
    out, nm = {}, []
    for v in ds[dim].values.tolist():
        one = ds.sel({dim: v}, drop=True)
        pattern = nm_pattern(v) if dim == "prune_method" else None
        if pattern:
            nm.append(one.sel(density=[pattern[0] / pattern[1]], method="nearest"))
        else:
            out[f"{tag}{v}"] = one
    if nm:
        out[f"{tag}nm"] = xr.concat(nm, "density").sortby("density")
    return out
