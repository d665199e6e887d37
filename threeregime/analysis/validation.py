"""Advice scored against test error: does the advised direction lower it? (no torch)

:func:`validate_advice` reads, for every cell of a sweep, the direction that lowers the
retrained test error off its load column and compares it with the direction the cell's regime
advises (:mod:`threeregime.analysis.advice`), scoring the naive rules "always hotter", "always
colder"
and "always keep" alike.  ``benchmarks/advice_validation.py`` and ``docs/advice_validation.md``
use it.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import xarray as xr

from ..errors import SpecError
from ..spec.specs import check_choice
from ..stats import mean_sem
from .advice import check_tau
from .calibrate import measured_directions, test_error_blocks
from .features import find_dims
from .regimes import classify
from .rules import ADVICE, LEGACY_DEFAULTS, NAMES, RULES

__all__ = ["validate_advice"]


def validate_advice(ds: xr.Dataset, *, z: float = 1.0, margin: float | None = None,
                    rule: Any = "advise", tau_lmc: float | None = None,
                    tau_cka: float | None = None) -> dict:
    """Compare the advice of every cell of a sweep with the direction that lowers test error.

    For every cell the *true* direction is read off its load column (all cells sharing the
    load values): ``keep`` when the cell's mean retrained test error is within a noise margin
    of the column's best (``z`` standard errors of the difference, the standard errors over
    dense-seed means, retrain seeds averaged within a dense seed first; or a fixed
    ``margin``), else ``hotter`` / ``colder`` towards
    the column's best temperature.  The *advised* direction comes from the cell's regime.
    The naive rules "always hotter", "always colder" and "always keep" are scored alike.

    Parameters
    ----------
    ds : sweep results Dataset with ``test_error``, ``lmc``, ``cka`` and one temperature dim.
    z : float
        Width of the noise margin in standard errors.
    margin : float, optional
        A fixed margin (fraction of test error) instead.
    rule : "advise", "sweep", a shipped rule's name, or a :class:`threeregime.analysis.rules.Rule`
        ``"advise"``: the legacy single-model rule (absolute CKA threshold ``tau_cka``; the
        default of ``advise`` on a model before issue 17);
        ``"sweep"``: :func:`threeregime.analysis.regimes.classify` with its default rule (the legacy
        relative rule when ``tau_lmc`` is given); a name (``paper_step``, ``level``,
        ``legacy``) or Rule: ``classify(ds, rule=rule)``.
    tau_lmc, tau_cka : thresholds of the legacy rules (default
        :data:`threeregime.analysis.rules.LEGACY_DEFAULTS`).

    Returns
    -------
    dict
        ``agreement`` (fraction of all cells; undetermined counts as a miss),
        ``agreement_determined`` (over cells with a regime), ``naive`` (rule -> agreement),
        ``n_cells``, ``n_determined``, and ``cells``: one dict per cell with its coordinates,
        ``regime``, ``advised``, ``truth``, ``test_error`` (mean) and ``sem``.
    """
    if isinstance(rule, str) and rule not in ("advise", "sweep") and rule not in RULES:
        check_choice("rule", rule, ("advise", "sweep", *RULES))
    _, temps, _ = find_dims(ds, "lmc")
    if len(temps) != 1:
        raise SpecError(f"ds must have exactly one temperature dim for validate_advice; got "
                        f"{temps}")
    temp = temps[0]
    t_lmc = None if tau_lmc is None else check_tau("tau_lmc", tau_lmc)
    t_cka = None
    if rule == "advise":
        t_lmc = LEGACY_DEFAULTS["tau_lmc"] if t_lmc is None else t_lmc
        t_cka = LEGACY_DEFAULTS["tau_cka"] if tau_cka is None else check_tau("tau_cka",
                                                                               tau_cka)
        reg = classify(ds, tau_lmc=t_lmc, cka_rule="absolute", tau_cka=t_cka)
    elif rule == "sweep":
        reg = classify(ds) if t_lmc is None else classify(ds, tau_lmc=t_lmc)
    else:
        reg = classify(ds, rule=rule)
    name = json.loads(reg.attrs["regime_rule"]).get("name", rule)
    # the library's one direction scorer, towards the column's best (dense seeds the unit)
    g, blocks = test_error_blocks(ds, temp)
    mean, sem, _ = mean_sem(blocks)
    cell, _, _ = find_dims(ds, "test_error")
    others = [d for d in cell if d != temp]

    def by_temp(da: xr.DataArray) -> np.ndarray:  # (n_temp, n_columns), the Dataset's order
        return da.transpose(temp, *others).values.reshape(ds.sizes[temp], -1)

    truth = by_temp(measured_directions(ds, against="best", z=z, margin=margin,
                                        temperature=temp))
    truth = np.where(truth == "", "unknown", truth).astype(object)
    stats = {"mean": by_temp(g.back(mean, "mean")), "sem": by_temp(g.back(sem, "sem"))}
    codes = reg["regime"].transpose(temp, *others).values.reshape(truth.shape)
    advised = np.vectorize(lambda c: ADVICE[NAMES[int(c)]] or "unknown",
                           otypes=[object])(codes)
    valid = truth != "unknown"
    det = valid & (advised != "unknown")
    shape_o = [ds.sizes[d] for d in others]
    cells = []
    tv = ds[temp].values
    for i in range(truth.shape[0]):
        for j in range(truth.shape[1]):
            idx = np.unravel_index(j, shape_o) if others else ()
            coords = {temp: tv[i].item()}
            coords.update({d: ds[d].values[k].item() for d, k in zip(others, idx)})
            cells.append({**coords, "regime": NAMES[int(codes[i, j])],
                          "advised": advised[i, j], "truth": truth[i, j],
                          "test_error": float(stats["mean"][i, j]),
                          "sem": float(stats["sem"][i, j])})
    n = int(valid.sum())

    def score(pred: np.ndarray, mask: np.ndarray) -> float:
        k = int(mask.sum())
        return float((pred[mask] == truth[mask]).sum() / k) if k else float("nan")

    naive = {d: score(np.full(truth.shape, d, dtype=object), valid)
             for d in ("hotter", "colder", "keep")}
    return {"agreement": score(advised, valid), "agreement_determined": score(advised, det),
            "naive": naive, "n_cells": n, "n_determined": int(det.sum()),
            "rule": rule if isinstance(rule, str) else name, "rule_name": name,
            "tau_lmc": t_lmc, "tau_cka": t_cka, "z": z, "margin": margin,
            "temperature": temp, "cells": cells}
