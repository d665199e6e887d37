"""A results Dataset as a Markdown table, cell by cell (no torch).

:func:`results_table` gives, for every cell of the phase diagram, its regime (``?``: uncertain,
the label flips across dense seeds or sits within one standard error of its threshold), the
retrained test error (mean over dense x retraining seeds; the column's best in bold), mc in %
of the train error (negative = a barrier) and softmax CKA, both means over dense seeds.  Rows
run hottest first, columns along the load axis; a sweep with a further axis (e.g. the pruning
method) gets one table per value.  ``threeregime table RESULTS.nc`` and
``ds.threeregime.table()`` print it; so does ``benchmarks/demo_table.py`` (the README's table).
"""
from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import xarray as xr

from ..errors import ResultsError
from ..results.schema import REPLICATE_DIMS
from .features import find_dims
from .regimes import classify, decode, regimes_of

__all__ = ["results_table", "RESOLVED"]

#: the labels that are a regime (not undetermined, not II-unresolved)
RESOLVED = ("I", "II-A", "II-B")


def _test_error_mean(ds: xr.Dataset, labelled: xr.Dataset) -> xr.DataArray:
    for src in (labelled, ds):
        if "test_error_mean" in src:
            return src["test_error_mean"]
    if "test_error" not in ds:
        raise ResultsError("the table needs test_error_mean or test_error; the Dataset has "
                           f"neither (variables: {', '.join(map(str, ds.data_vars))})")
    te = ds["test_error"]
    return te.mean([d for d in te.dims if d in REPLICATE_DIMS], skipna=True)


def results_table(ds: xr.Dataset, *, rule: Any = None) -> str:
    """The phase diagram of ``ds`` as Markdown (module docstring).

    Parameters
    ----------
    ds : xarray.Dataset
        A sweep's results (:func:`threeregime.open_sweep`).
    rule : Rule or str, optional
        Classify with this rule (:data:`threeregime.rules.RULES`); default: the Dataset's own
        regimes when it has them, else the default rule (:func:`threeregime.regimes_of`).

    Returns
    -------
    str
        One Markdown table (or one per value of any axis besides temperature and load, each
        under a ``AXIS = VALUE`` line).

    Raises
    ------
    ResultsError
        ``ds`` is not a results Dataset (no ``lmc`` / temperature and load axes).
    SpecError
        An unknown rule.
    """
    if not isinstance(ds, xr.Dataset):
        raise ResultsError(f"ds must be an xarray.Dataset of sweep results; got "
                           f"{type(ds).__name__}")
    c = classify(ds, rule=rule) if rule is not None else regimes_of(ds)
    names = decode(c["regime"])
    _, temps, loads = find_dims(ds, "lmc" if "lmc" in ds else "lmc_mean")
    if not temps or not loads:
        raise ResultsError(f"the table needs a temperature and a load axis; got "
                           f"{', '.join(temps) or 'no'} temperature and "
                           f"{', '.join(loads) or 'no'} load axis")
    t, load = temps[0], loads[0]
    te = _test_error_mean(ds, c)
    rows = list(ds[t].values)
    if ds[t].attrs.get("hotter") == "increasing":
        rows = rows[::-1]
    cols = list(ds[load].values)
    extra = [d for d in names.dims if d not in (t, load)]
    out: list[str] = []
    for combo in itertools.product(*(list(names[d].values) for d in extra)):
        fixed = dict(zip(extra, combo))
        if extra:
            out += ([""] if out else []) + [", ".join(f"{d} = {v}" for d, v in fixed.items())]
        out += [f"| {t} \\ {load} | " + " | ".join(f"{v:g}" for v in cols) + " |",
                "|---" * (len(cols) + 1) + "|"]
        for i, r in enumerate(rows):
            tag = " (hottest)" if i == 0 else " (coldest)" if i == len(rows) - 1 else ""
            cells = []
            for v in cols:
                at = {**fixed, t: r, load: v}
                lab = str(names.sel(at).values)
                unsure = ("?" if "regime_uncertain" in c and int(c["regime_uncertain"].sel(at))
                          and lab in RESOLVED else "")
                e = float(te.sel(at))
                best = np.isclose(e, float(te.sel({**fixed, load: v}).min()))
                err = f"**{100 * e:.1f} %**" if best else f"{100 * e:.1f} %"
                cells.append(f"{lab}{unsure}: {err} / {100 * float(c['lmc_mean'].sel(at)):.1f}"
                             f" / {float(c['cka_mean'].sel(at)):.3f}")
            out.append(f"| {r:g}{tag} | " + " | ".join(cells) + " |")
    return "\n".join(out)
