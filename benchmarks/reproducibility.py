"""Reproducibility between disjoint dense seeds (issue 18 item 5).

For every results file, the dense seeds are split into two disjoint halves (sorted order, first
half / second half); each half is labelled on its own with the default rule, and the best
temperature of every load column (lowest mean retrained test error over the half's dense seeds)
is read on each half. Printed per setting: label agreement on the cells both halves resolve
(I, II-A or II-B), and best-temperature agreement per column, with whether each half's best row
is significantly better than its runner-up (paired t-test over the half's dense seeds, 5 %)::

    python benchmarks/reproducibility.py validation/corpus/*.nc validation/corpus_v2/*.nc
    python benchmarks/reproducibility.py --pair validation/corpus/demo_epochs.nc \\
        validation/quick_seeds4567.nc       # two files of one setting on disjoint seeds

Torch-free.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import xarray as xr
from scipy import stats

import threeregime as tr
from threeregime.analysis.regimes import decode

RESOLVED = ("I", "II-A", "II-B")


def _axes(ds: xr.Dataset) -> tuple[str, str]:
    temp = [d for d in ds.dims if ds[d].attrs.get("role") == "temperature"]
    load = [d for d in ds.dims if ds[d].attrs.get("role") == "load"]
    return temp[0], load[0]


def best_rows(ds: xr.Dataset) -> dict:
    """Per load column: (best temperature, is it significantly better than the runner-up)."""
    t, ld = _axes(ds)
    te = ds["test_error"].mean("retrain_seed")                  # (t, ld, dense_seed)
    out = {}
    for c in ds[ld].values.tolist():
        col = te.sel({ld: c})
        means = col.mean("dense_seed").values
        order = np.argsort(means)
        b, r = order[0], order[1]
        d = (col.isel({t: r}) - col.isel({t: b})).values
        d = d[np.isfinite(d)]
        p = stats.ttest_1samp(d, 0.0).pvalue if d.size >= 2 and np.std(d) > 0 else 1.0
        out[c] = (ds[t].values[b].item(), bool(p < 0.05 and d.mean() > 0))
    return out


def compare(a: xr.Dataset, b: xr.Dataset) -> dict:
    """Label and best-temperature agreement between two runs of one grid on disjoint seeds."""
    la = decode(tr.classify(a)["regime"]).values.ravel()
    lb = decode(tr.classify(b)["regime"]).values.ravel()
    both = np.isin(la, RESOLVED) & np.isin(lb, RESOLVED)
    ba, bb = best_rows(a), best_rows(b)
    cols = list(ba)
    agree = [c for c in cols if ba[c][0] == bb[c][0]]
    sig = [c for c in cols if ba[c][1] and bb[c][1]]
    return {"labels_agree": int((la[both] == lb[both]).sum()), "both_resolved": int(both.sum()),
            "cells": int(la.size), "best_agree": len(agree), "columns": len(cols),
            "sig_columns": len(sig), "sig_agree": sum(ba[c][0] == bb[c][0] for c in sig),
            "best": {c: (ba[c], bb[c]) for c in cols}}


def halves(ds: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset]:
    s = sorted(ds["dense_seed"].values.tolist())
    h = len(s) // 2
    return ds.sel(dense_seed=s[:h]), ds.sel(dense_seed=s[h:])


def line(name: str, seeds: str, r: dict) -> str:
    best = "; ".join(f"{c:g}: {x[0]:g}{'*' if x[1] else ''} / {y[0]:g}{'*' if y[1] else ''}"
                     for c, (x, y) in r["best"].items())
    return (f"| {name} | {seeds} | {r['labels_agree']}/{r['both_resolved']} "
            f"(of {r['cells']} cells) | {r['best_agree']}/{r['columns']} | "
            f"{r['sig_agree']}/{r['sig_columns']} | {best} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", type=Path, help="results files, each split in halves")
    ap.add_argument("--pair", nargs=2, type=Path, metavar=("A", "B"),
                    help="two files of one setting on disjoint dense seeds")
    a = ap.parse_args(argv)
    print("| setting | dense seeds | labels agree (both resolved) | best temperature agrees "
          "| ... where both halves' best is significant | best per column (half 1 / half 2; "
          "* = significantly better than the runner-up) |")
    print("|---|---|---|---|---|---|")
    for f in a.files:
        ds = tr.open_sweep(f).load()
        h1, h2 = halves(ds)
        seeds = (f"{h1.dense_seed.values.tolist()} vs {h2.dense_seed.values.tolist()}")
        print(line(ds.attrs.get("sweep_name", f.stem), seeds, compare(h1, h2)), flush=True)
    if a.pair:
        x, y = (tr.open_sweep(p).load() for p in a.pair)
        seeds = f"{x.dense_seed.values.tolist()} vs {y.dense_seed.values.tolist()}"
        print(line(f"{a.pair[0].stem} vs {a.pair[1].stem}", seeds, compare(x, y)))


if __name__ == "__main__":
    main()
