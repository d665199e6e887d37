"""A tune cell, old grouping vs new: one ensemble per dense run vs one per cell; data on disk.

    python benchmarks/tune_grouping.py                       # quick.yaml, density 0.1, 40 24 16
    python benchmarks/tune_grouping.py --dense-from /tmp/qt/store --repeat 2

``threeregime tune`` evaluates one cell (a temperature value at one density, all dense seeds x
retraining seeds) at a time.  Before ``ensembles="cell"`` a cell's retrainings trained as one
ensemble per dense run (``retrain_tasks(plan, ..., "dense")``: 4 ensembles of 3 on the quick
sweep); now as one ensemble of all of them (``"cell"``: 1 of 12).  This script runs the same
cells both ways in this one process, side by side (inline, one torch thread, the dense models
shared: copied from ``--dense-from``, a store holding the quick sweep's dense runs, or trained
once here), and prints per grouping the CPU and wall seconds of the retrain and measure stages,
the ratio, and the largest difference of every result variable between the two (a member's
numbers depend in the last bits on its ensemble; training amplifies that).

It also times :func:`threeregime.load_data` of the tuned spec's data (MNIST-1D with its
validation split) generated vs read from the disk cache (:mod:`threeregime.data.disk_cache`),
the once-per-process cost every tune call and sweep worker paid.

Repeats alternate the order of the two groupings (old first, then new first, ...) so that a
change of machine load does not favour one; the figures are the minimum over repeats.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import numpy as np  # noqa: E402
import torch  # noqa: E402

from threeregime.data import sources  # noqa: E402
from threeregime.spec.specs import SweepSpec  # noqa: E402
from threeregime.sweep import driver, stages  # noqa: E402
from threeregime.sweep.plan import dense_tasks, plan_sweep, retrain_tasks  # noqa: E402
from threeregime.tuning_run import _plan_inputs  # noqa: E402

VARS = ("test_error", "train_error", "val_error", "lmc", "cka", "cka_logits")


def clock() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


def since(t0: tuple[float, float]) -> tuple[float, float]:
    c, w = clock()
    return c - t0[0], w - t0[1]


def cell_spec(column: SweepSpec, axis: str, value, density: float) -> SweepSpec:
    return dataclasses.replace(column, axes={axis: [value], "density": [density]})


def run_cells(column: SweepSpec, axis: str, values: list, density: float, root: Path,
              dense_root: Path, opts: stages.RunOptions, ensembles: str) -> dict:
    """Retrain and measure ``values`` one cell at a time (as tune does) in a fresh store."""
    shutil.copytree(dense_root / "dense", root / "dense")

    def size_of(p, t):
        return stages.chunk_size(p, t, opts)

    out = {"retrain_cpu": 0.0, "retrain_wall": 0.0, "measure_cpu": 0.0, "measure_wall": 0.0,
           "ensembles": []}
    for v in values:
        plan = plan_sweep(cell_spec(column, axis, v, density))
        tasks = retrain_tasks(plan, size_of, ensembles)
        out["ensembles"].append([len(t) for t in tasks])
        t0 = clock()
        for t in tasks:
            stages.run_retrain_group(root, t, opts)
        c, w = since(t0)
        out["retrain_cpu"] += c
        out["retrain_wall"] += w
        t0 = clock()
        for pj in plan.points:
            stages.measure_point(root, pj, opts)
        c, w = since(t0)
        out["measure_cpu"] += c
        out["measure_wall"] += w
    full = plan_sweep(dataclasses.replace(column, axes={axis: list(values),
                                                         "density": [density]}))
    out["dataset"] = driver.assemble(full.spec, root, full)
    return out


def data_times(column: SweepSpec, cache: Path) -> dict:
    """load_data of the tuned spec: generated (disk cache off) vs read from the disk cache."""
    spec = column.base.data
    res = {}
    for name, env in (("generate", "off"), ("write", str(cache)), ("read", str(cache))):
        os.environ["THREEREGIME_DATA_CACHE"] = env
        sources.clear_cache()
        t0 = clock()
        d = sources.load_data(spec)
        res[name] = since(t0)
        res.setdefault("splits", []).append(d)
    a, b = res.pop("splits")[0], sources.load_data(spec)
    res["identical"] = all(torch.equal(getattr(getattr(a, s), v), getattr(getattr(b, s), v))
                           for s in ("train", "test", "val") for v in ("x", "y"))
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spec", default=str(ROOT / "sweeps" / "quick.yaml"))
    ap.add_argument("--density", type=float, default=0.1)
    ap.add_argument("--cells", type=float, nargs="+", default=[40, 24, 16],
                    help="temperature values evaluated, in order (default 40 24 16: the "
                    "walk of docs/tuning.md)")
    ap.add_argument("--dense-from", default=None,
                    help="a store with the spec's dense runs (dense/); default: train them here")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    column, axis, grid, _, density = _plan_inputs(args.spec, args.density, 1, None, None, None)
    values = [next(g for g in grid if np.isclose(float(g), c)) for c in args.cells]
    opts = stages.RunOptions(threads=1, progress=False)
    stages.pin_numerics(opts)
    print(f"torch {torch.__version__}, 1 thread; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.spec}: {axis} = {values}, "
          f"density {density}")
    with tempfile.TemporaryDirectory(prefix="tgroup-") as tmp:
        tmp = Path(tmp)
        dt = data_times(column, tmp / "datacache")
        print(f"load_data: generated {dt['generate'][0]:.2f} CPU-s, written to the disk cache "
              f"{dt['write'][0]:.2f}, read from it {dt['read'][0]:.3f} CPU-s "
              f"({dt['generate'][0] / max(dt['read'][0], 1e-9):.0f}x); identical tensors: "
              f"{dt['identical']}")
        if args.dense_from:
            dense_root = Path(args.dense_from)
        else:
            dense_root = tmp / "dense_store"
            t0 = clock()
            for t in dense_tasks(plan_sweep(column), lambda p, t: stages.chunk_size(p, t, opts)):
                stages.run_dense_group(dense_root, t, opts)
            print(f"dense runs trained here: {since(t0)[0]:.1f} CPU-s")
        runs: dict[str, list[dict]] = {"dense": [], "cell": []}
        for rep in range(max(1, args.repeat)):
            order = ("dense", "cell") if rep % 2 == 0 else ("cell", "dense")
            for mode in order:
                r = run_cells(column, axis, values, density, tmp / f"{mode}-{rep}", dense_root,
                              opts, mode)
                runs[mode].append(r)
                print(f"  repeat {rep} {mode:5s}: ensembles {r['ensembles']}, retrain "
                      f"{r['retrain_cpu']:.1f} CPU-s ({r['retrain_wall']:.1f} s wall), measure "
                      f"{r['measure_cpu']:.1f} CPU-s", flush=True)
    best = {m: {k: min(r[k] for r in rs) for k in ("retrain_cpu", "retrain_wall",
                                                    "measure_cpu", "measure_wall")}
            for m, rs in runs.items()}
    a, b = runs["dense"][0]["dataset"], runs["cell"][0]["dataset"]
    diffs = {v: float(np.nanmax(np.abs(a[v].values - b[v].values))) for v in VARS if v in a}
    same_dense = all(np.array_equal(runs["dense"][0]["dataset"][v].values,
                                    r["dataset"][v].values, equal_nan=True)
                     for r in runs["dense"][1:] for v in VARS if v in a)
    print("\n| grouping | ensembles per cell | retrain CPU-s | measure CPU-s | retrain + measure "
          "CPU-s |\n|---|---|---|---|---|")
    for m in ("dense", "cell"):
        s = best[m]
        print(f"| {m} | {runs[m][0]['ensembles'][0]} | {s['retrain_cpu']:.1f} | "
              f"{s['measure_cpu']:.1f} | {s['retrain_cpu'] + s['measure_cpu']:.1f} |")
    ratio = best["dense"]["retrain_cpu"] / best["cell"]["retrain_cpu"]
    tot = ((best["dense"]["retrain_cpu"] + best["dense"]["measure_cpu"])
           / (best["cell"]["retrain_cpu"] + best["cell"]["measure_cpu"]))
    print(f"\nretraining: cell grouping {ratio:.2f}x faster than per dense run (CPU-s); "
          f"retrain + measure {tot:.2f}x")
    print("max |dense - cell| over the cells: " + ", ".join(f"{k} {v:.2e}"
                                                           for k, v in diffs.items()))
    if args.repeat > 1:
        print(f"repeats of the same grouping bit-identical: {same_dense}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "best": best, "ratio_retrain": ratio, "ratio_total": tot, "max_abs_diff": diffs,
            "data": {k: v for k, v in dt.items()}, "cells": values, "density": density},
            indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
