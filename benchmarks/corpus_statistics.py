"""Statistics at the dense-seed level on the validation corpus (issue 18), per setting.

For every setting of ``validation/corpus/*.nc`` (or the files given) prints, with the default
rule (:data:`threeregime.analysis.rules.DEFAULT_RULE`) and the statistics of :mod:`threeregime.stats`:

- **Regime I z**: the number of Regime I cells and the median of their ``lmc_z`` (barrier over
  its noise: the standard error over dense-seed means floored by the column's seed-to-seed
  spread), beside the stored labels' count and median z of the file (the rule and statistics
  that labelled the file: see its ``regime_rule`` attr and ``history``);
- **the change point**: the joint step's t over dense seeds (``step_z``), its size relative to
  chance error (``step_rel_chance``) and whether it fires for the rule
  (:func:`threeregime.analysis.rules.step_fires`); with ``scope="column"`` how many load
  columns fire; and, for reference only, how many steps pass the one-sided 5 % t quantile with
  n - 1 dof whatever their size;
- **replicates excluded** as at chance on training data: dense seeds, retrained models (of the
  other dense seeds), and the cells whose statistics rest on fewer dense seeds;
- **labels changed** against the stored labels;
- **advice agreement** of :func:`threeregime.analysis.validation.validate_advice` (truth over dense-seed
  means) for the default rule, beside "always keep" (a diagnostic, not the protocol's score).

Usage::

    python benchmarks/corpus_statistics.py [FILE.nc ...]

No torch; a few seconds per setting.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import xarray as xr
from scipy.stats import t as student_t

from threeregime.analysis.features import cell_stats
from threeregime.analysis.rules import classify_with_rule, get_rule, step_fires
from threeregime.analysis.validation import validate_advice

CORPUS = Path(__file__).resolve().parents[1] / "validation" / "corpus"


def _median(a: np.ndarray) -> float:
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else float("nan")


def setting_row(path: Path) -> dict:
    """The figures of one setting (see the module docstring)."""
    ds = xr.open_dataset(path).load()
    rule = get_rule()
    out = classify_with_rule(ds, rule)
    lab = out["regime"].values
    old = ds["regime"].values if "regime" in ds else np.full(lab.shape, -1)
    old_z = ds["lmc_z"].values if "lmc_z" in ds else np.full(lab.shape, np.nan)
    by_col = classify_with_rule(ds, rule.replace(settings={"scope": "column"}))
    temp = out.attrs.get("temperature") or [d for d in out["regime"].dims
                                            if ds[d].attrs.get("role") == "temperature"][0]

    def fires(o: xr.Dataset) -> np.ndarray:      # per column (the joint step: one value)
        first = {k: o[k].isel({temp: 0}).values.ravel() if k in o else np.inf
                 for k in ("step_z", "step_df", "step_rel_chance")}
        return step_fires(rule, first["step_z"], first["step_df"], first["step_rel_chance"])

    col_z = by_col["step_z"].isel({temp: 0}).values.ravel()
    col_fire = fires(by_col)
    n_dense = ds.sizes.get("dense_seed", 1)
    t95 = float(student_t.ppf(0.95, max(n_dense - 1, 1)))
    st = cell_stats(ds, chance_fraction=rule.settings["chance_fraction"])
    chance = 1.0 - 1.0 / int(ds.attrs.get("num_classes", 10))
    lim = rule.settings["chance_fraction"] * chance
    dense_out = (ds["dense_train_error"] >= lim) if "dense_train_error" in ds else None
    retr = (ds["train_error"] >= lim) if "train_error" in ds else None
    if retr is not None and dense_out is not None:
        retr = retr & ~dense_out
    if "status" in ds:  # as cell_stats counts: failed / missing points are not replicates
        ok = ds["status"] <= 1
        dense_out = dense_out & ok if dense_out is not None else None
        retr = retr & ok if retr is not None else None
    return {
        "setting": path.stem, "cells": lab.size, "n_dense": n_dense,
        "I_new": int((lab == 0).sum()), "z_new": _median(out["lmc_z"].values[lab == 0]),
        "I_old": int((old == 0).sum()), "z_old": _median(old_z[old == 0]),
        "step_t": float(out["step_z"].max()), "fires": bool(fires(out).any()),
        "step_rel": float(out["step_rel_chance"].max()) if "step_rel_chance" in out else
        float("nan"), "cols_fire": int(col_fire.sum()), "cols": col_z.size,
        "cols_t95": int((col_z >= t95).sum()), "t95": t95,
        "dense_excl": int(dense_out.sum()) if dense_out is not None else 0,
        "retr_excl": int(retr.sum()) if retr is not None else 0,
        "cells_fewer": int((st["n_collapsed"] > 0).sum()),
        "changed": int((lab != old).sum()),
        "advice": validate_advice(ds, rule=rule),
    }


def main(argv: list[str]) -> None:
    paths = [Path(a) for a in argv] or sorted(CORPUS.glob("*.nc"))
    rows = [setting_row(p) for p in paths]
    rule = get_rule()
    head = ("| setting | Regime I cells (new / stored) | median Regime I z: new (dense seeds) "
            f"/ stored (pooled) | joint step t, size / chance (fires for {rule.name}?) | "
            f"columns firing: {rule.name} "
            "/ at t95 | excluded: dense seeds / retrained models (cells) | labels changed | "
            "advice agreement / always keep |")
    print(head)
    print("|" + "---|" * 8)
    for r in rows:
        print(f"| {r['setting']} | {r['I_new']} / {r['I_old']} | {r['z_new']:.2f} / "
              f"{r['z_old']:.2f} | {r['step_t']:.2f}, {r['step_rel']:.3f} "
              f"({'yes' if r['fires'] else 'no'}) | "
              f"{r['cols_fire']}/{r['cols']} / {r['cols_t95']}/{r['cols']} | "
              f"{r['dense_excl']} / {r['retr_excl']} ({r['cells_fewer']}) | "
              f"{r['changed']}/{r['cells']} | {r['advice']['agreement']:.2f} / "
              f"{r['advice']['naive']['keep']:.2f} |")
    r0 = rows[0] if rows else None
    if r0:
        print(f"\nrule {rule.name} ({rule.family}): thresholds {rule.thresholds}; t95 = one-sided 5 % t "
              f"quantile with n_dense - 1 = {r0['n_dense'] - 1} dof = {r0['t95']:.2f} "
              "(reference only, no rule uses it)")


if __name__ == "__main__":
    main(sys.argv[1:])
