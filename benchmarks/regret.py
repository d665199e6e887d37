"""Regret of the tuning procedure against equal-budget baselines (validation protocol v2).

Implements ``docs/validation_protocol_v2.md`` on exported sweeps (netCDF)::

    python benchmarks/regret.py validation/corpus_v2/*.nc            # the primary table
    python benchmarks/regret.py validation/corpus_v2/*.nc --per-setting
    python benchmarks/regret.py FILES --csv scores.csv --plot regret.png  # also a table, a figure
    python benchmarks/regret.py --from-csv scores.csv --per-setting       # tables again, seconds
    python benchmarks/regret.py FILES --drop v2_sam:sam_rho=0.5           # a row left out

Every policy sees one half of the dense seeds (regime labels from LMC/CKA by the library's default
rule, validation error) and is scored on the test error of the other half; both folds are run and
averaged per start cell. Regret = test error of the reported point minus the best of its column,
in percentage points. Intervals: percentile bootstrap of the per-start-cell difference (tune minus
baseline), resampled within settings, 10,000 resamples, seed 0 (the draws follow the order of
the files, so the reported intervals are for the order given in docs/advice_validation.md's
command); sign tests with
``scipy.stats.binomtest``. The tune policy itself is the library's live walk replayed offline
(:func:`threeregime.analysis.tuning_trace.walk_dataset` on the seen half, protocol deviation 1),
so the benchmark scores exactly what users run.
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import xarray as xr
from scipy import stats

CHANCE_TRAIN_ERROR = 0.85      # a replicate at/above this train error is collapsed (10 classes)
BUDGETS = (1, 2, 3, 4)
HOTTER, KEEP, COLDER = -1, 0, 1  # row steps; rows are ordered hottest first
WW_COLDER, WW_HOTTER = 6.0, 2.0  # protocol v2: mean layer alpha > 6 -> colder, < 2 -> hotter

# the library's direction of a regime (rules.ADVICE) -> row step; undetermined (None) -> keep
_STEP_OF_DIRECTION = {"hotter": HOTTER, "colder": COLDER, "keep": KEEP, None: KEEP}


# ----------------------------------------------------------------------------- data per column


def _axes(ds: xr.Dataset) -> tuple[str, str, list]:
    temp = [d for d in ds.dims if ds[d].attrs.get("role") == "temperature"]
    load = [d for d in ds.dims if ds[d].attrs.get("role") == "load"]
    if len(temp) != 1 or len(load) != 1:
        raise SystemExit(f"{ds.attrs.get('sweep_name')}: expected one temperature and one load "
                         f"axis, got {temp} / {load}")
    t = temp[0]
    hot_first = ds[t].attrs.get("hotter") != "increasing"   # decreasing: smallest is hottest
    rows = sorted(ds[t].values.tolist(), reverse=not hot_first)
    return t, load[0], rows


def _seed_means(ds: xr.Dataset, var: str) -> xr.DataArray:
    """Per (cell, dense seed) mean over retraining seeds, collapsed replicates excluded."""
    ok = ds["train_error"] < CHANCE_TRAIN_ERROR
    if "dense_train_error" in ds:
        ok = ok & (ds["dense_train_error"] < CHANCE_TRAIN_ERROR)
    return ds[var].where(ok).mean("retrain_seed", skipna=True)


def _labels(ds: xr.Dataset) -> xr.DataArray:
    import threeregime as tr

    return tr.classify(ds)["regime"]


def ww_steps(alpha: dict | None, rows: list, seen: list) -> list[int] | None:
    """Protocol v2's weightwatcher rule per temperature row, from the seen half's dense models:
    mean layer alpha (over the seen dense seeds) above 6 -> colder, below 2 -> hotter, else
    keep; None without an alpha table (``<setting>_ww_alpha.csv``, benchmarks/ww_alpha.py)."""
    if alpha is None:
        return None
    out = []
    for r in rows:
        a = [alpha[(float(r), int(s))] for s in seen if (float(r), int(s)) in alpha]
        m = float(np.mean(a)) if a else float("nan")
        out.append(COLDER if m > WW_COLDER else HOTTER if m < WW_HOTTER else KEEP)
    return out


def read_alpha(path: Path) -> dict | None:
    """``{(temperature value, dense seed): alpha}`` from a benchmarks/ww_alpha.py CSV."""
    import csv

    if not path.is_file():
        return None
    with path.open() as fh:
        return {(float(r["value"]), int(r["dense_seed"])): float(r["alpha"])
                for r in csv.DictReader(fh)}


def column_views(ds: xr.Dataset, seen: list, scored: list, alpha: dict | None = None
                 ) -> list[dict]:
    """One dict per load column: row steps and validation error (seen seeds), test error (scored)."""
    from threeregime.analysis.regimes import decode
    from threeregime.analysis.rules import ADVICE

    t, ld, rows = _axes(ds)
    seen_ds = ds.sel(dense_seed=seen)
    lab = decode(_labels(seen_ds))
    val_var = "val_error" if "val_error" in ds and np.isfinite(ds["val_error"]).any() else None
    if val_var is None:
        raise SystemExit(f"{ds.attrs.get('sweep_name')}: no validation error in the file; "
                         "protocol v2 needs a sweep with data.val_size set")
    val = _seed_means(seen_ds, val_var).mean("dense_seed", skipna=True)
    test = _seed_means(ds.sel(dense_seed=scored), "test_error").mean("dense_seed", skipna=True)
    out = []
    for c in ds[ld].values.tolist():
        sel = {ld: c}
        names = [str(lab.sel(sel).sel({t: r}).item()) for r in rows]
        v = np.array([float(val.sel(sel).sel({t: r})) for r in rows])
        te = np.array([float(test.sel(sel).sel({t: r})) for r in rows])
        v = np.where(np.isfinite(v), v, np.inf)          # a failed cell is infinitely bad to pick
        out.append({"load": c, "steps": [_STEP_OF_DIRECTION[ADVICE[n]] for n in names],
                    "names": names, "val": v, "test": te, "ww": ww_steps(alpha, rows, seen),
                    "walks": tune_walks(seen_ds, sel, rows, max(BUDGETS))})
    return out


# ----------------------------------------------------------------------------- policies


def _best(visited: list[int], val: np.ndarray) -> int:
    return min(visited, key=lambda i: (val[i], visited.index(i)))


def tune_walks(seen_ds: xr.Dataset, point: dict, rows: list, max_budget: int) -> dict:
    """The library's live tune replayed on the seen half (protocol v2, deviation 1), from every
    start row: ``{start row: visited rows in order}`` and ``"val"``, the library's validation
    error per row for a walk of ``max_budget`` points.

    Same as :func:`threeregime.analysis.tuning_trace.walk_dataset` (labels from the visited
    cells only, its probe, validation error = cell mean), with the column's labels memoized by
    visited set; a walk with a smaller budget is the prefix of this one (the budget is the only
    stopping rule that depends on it), and its choice the lowest validation error in that
    prefix."""
    from threeregime.analysis.regimes import decode
    from threeregime.analysis.tuning import (
        PROBE,
        cell_mean,
        column_of,
        label_visited,
        policy_walk,
    )

    col, temp = column_of(seen_ds, None, point)
    col = col.load()
    ds_values = [v.item() for v in col[temp].values]
    val_mean = list(cell_mean(col, "val_error", temp))
    hotter = 1 if col[temp].attrs.get("hotter") == "increasing" else -1
    memo: dict[tuple, np.ndarray] = {}

    def lab(vis: tuple[int, ...]) -> str:
        key = tuple(sorted(vis))
        if key not in memo:
            memo[key] = np.asarray(decode(label_visited(col, key, temperature=temp)["regime"]
                                          ).values).ravel()
        return str(memo[key][vis[-1]])

    lib_val = np.array([val_mean[ds_values.index(r)] for r in rows], float)
    out = {"val": np.where(np.isfinite(lib_val), lib_val, np.inf)}
    for s, value in enumerate(rows):
        walk = policy_walk(lab, val_mean, ds_values.index(value), max_budget, hotter=hotter,
                           probe=PROBE)
        out[s] = [rows.index(ds_values[j]) for j in walk.visited]
    return out


def tune_walk_full_grid(col: dict, start: int, budget: int) -> int:
    """The same walk with labels from the whole seen grid (secondary line)."""
    from threeregime.analysis.tuning import policy_walk

    walk = policy_walk(col["names"], list(col["val"]), start, budget, hotter=-1)
    return int(walk.chosen)


#: a fixed row step as the regime whose advice it is (for the library's walk)
_REGIME_OF_STEP = {HOTTER: "I", COLDER: "II-A", KEEP: "II-B"}


def step_walk(steps: list[int], val: np.ndarray, start: int, budget: int) -> int:
    """Walk like tune on fixed per-row directions (the weightwatcher baseline): the library's
    :func:`threeregime.analysis.tuning.policy_walk` on the regimes those directions advise, so
    it stops as tune does (keep, a reversal, the edge, a validation error worse than the
    previous point's, the budget) and reports the best visited by validation."""
    from threeregime.analysis.tuning import policy_walk

    labels = [_REGIME_OF_STEP[s] for s in steps]
    return int(policy_walk(labels, val, start, budget, hotter=HOTTER, probe=None).chosen)


def one_step(val: np.ndarray, start: int, budget: int, d: int) -> int:
    visited = [start]
    if budget >= 2 and 0 <= start + d < len(val):
        visited.append(start + d)
    return _best(visited, val)


def to_edge(val: np.ndarray, start: int, budget: int, d: int, report: str = "last") -> int:
    visited = [start]
    while len(visited) < budget and 0 <= visited[-1] + d < len(val):
        visited.append(visited[-1] + d)
    return visited[-1] if report == "last" else _best(visited, val)


def greedy(val: np.ndarray, start: int, budget: int, first: int) -> int:
    visited, best, pos, d, turned = [start], start, start, first, False
    while len(visited) < budget:
        nxt = pos + d
        if not 0 <= nxt < len(val) or nxt in visited:
            if turned:
                break
            turned, d, pos = True, -d, best
            continue
        visited.append(nxt)
        if val[nxt] < val[best]:
            best = pos = nxt
        elif turned:
            break
        else:
            turned, d, pos = True, -d, best
    return best


def continue_greedy(val: np.ndarray, reg: np.ndarray, visited: list[int], budget: int) -> float:
    """Regret of hill-climbing on validation error from an already visited set until the budget
    is spent: step to an unvisited neighbour of the best visited row; with two unvisited
    neighbours, the mean over both choices (as ``greedy`` averages its first direction); stop
    when the best row has none. Reports the best visited by validation."""
    if len(visited) >= budget:
        return float(reg[_best(visited, val)])
    b = _best(visited, val)
    nbrs = [b + d for d in (HOTTER, COLDER) if 0 <= b + d < len(val) and b + d not in visited]
    if not nbrs:
        return float(reg[b])
    return float(np.mean([continue_greedy(val, reg, [*visited, n], budget) for n in nbrs]))


def random_regret(val: np.ndarray, test_regret: np.ndarray, start: int, budget: int) -> float:
    """Exact expected regret of random search: the start plus budget-1 other rows, uniform."""
    others = [i for i in range(len(val)) if i != start]
    m = min(budget - 1, len(others))
    regs = [test_regret[_best([start, *s], val)] for s in itertools.combinations(others, m)]
    return float(np.mean(regs))


POLICIES = ("tune", "tune (full-grid labels)", "keep", "one step hotter", "one step colder", "always hotter",
            "always colder", "always hotter (best)", "always colder (best)", "random", "greedy",
            "weightwatcher")
#: diagnostics added after the protocol's scores were seen (not protocol policies; reported apart)
POST_HOC = ("post hoc: tune, then greedy", "post hoc: greedy, advised direction first")
#: not a policy: how many points tune's walk evaluated (it may stop before the budget)
EVALUATED = "tune: points evaluated"


def start_cell_regrets(col: dict, start: int, budget: int) -> dict[str, float]:
    """Regret (pp) of every policy from one start cell at one budget."""
    val, test = col["val"], col["test"]
    reg = 100.0 * (test - np.nanmin(test))
    walk = col["walks"][start][:budget]           # the points tune evaluated at this budget
    pick = {
        "tune": _best(walk, col["walks"]["val"]),
        "tune (full-grid labels)": tune_walk_full_grid(col, start, budget),
        "keep": start,
        "one step hotter": one_step(val, start, budget, HOTTER),
        "one step colder": one_step(val, start, budget, COLDER),
        "always hotter": to_edge(val, start, budget, HOTTER),
        "always colder": to_edge(val, start, budget, COLDER),
        "always hotter (best)": to_edge(val, start, budget, HOTTER, "best"),
        "always colder (best)": to_edge(val, start, budget, COLDER, "best"),
    }
    if col.get("ww") is not None:
        pick["weightwatcher"] = step_walk(col["ww"], val, start, budget)
    out = {k: float(reg[i]) for k, i in pick.items()}
    out["random"] = random_regret(val, reg, start, budget)
    out["greedy"] = float(np.mean([reg[greedy(val, start, budget, f)] for f in (HOTTER, COLDER)]))
    # post hoc: does the walk's stopping rule cost it (spend the rest of the budget climbing),
    # and does the advised direction carry information (greedy starting that way; keep or an
    # undetermined cell gives no direction, so both, as plain greedy)? Both climb on ``val``, the
    # validation error the search baselines use (collapsed replicates left out), not on tune's
    # cell mean; the two differ only in cells with collapsed replicates.
    out[EVALUATED] = float(len(walk))
    out[POST_HOC[0]] = continue_greedy(val, reg, list(walk), budget)
    d = col["steps"][start]
    firsts = (d,) if d != KEEP else (HOTTER, COLDER)
    out[POST_HOC[1]] = float(np.mean([reg[greedy(val, start, budget, f)] for f in firsts]))
    return out


# ----------------------------------------------------------------------------- scoring


def halves(seeds: list) -> tuple[list, list]:
    s = sorted(seeds)
    h = len(s) // 2
    return s[:h], s[h:]


def score_setting(ds: xr.Dataset, alpha: dict | None = None) -> dict:
    """Per start cell and budget: policy regrets averaged over the two folds; move precision."""
    a, b = halves(ds["dense_seed"].values.tolist())
    folds = [column_views(ds, a, b, alpha), column_views(ds, b, a, alpha)]
    cells: dict[tuple, dict[int, dict[str, float]]] = {}
    wins = losses = 0
    for cols in folds:
        for col in cols:
            n = len(col["val"])
            for s in range(n):
                if not np.isfinite(col["test"][s]):
                    continue
                for k in BUDGETS:
                    r = start_cell_regrets(col, s, k)
                    acc = cells.setdefault((col["load"], s), {}).setdefault(k, {})
                    for p, v in r.items():
                        acc.setdefault(p, []).append(v)
                d = col["steps"][s]
                if d != KEEP and 0 < s < n - 1:
                    adv, opp = col["test"][s + d], col["test"][s - d]
                    if np.isfinite(adv) and np.isfinite(opp) and adv != opp:
                        wins += int(adv < opp)
                        losses += int(adv > opp)
    per_cell = {key: {k: {p: float(np.mean(v)) for p, v in pol.items()} for k, pol in by_k.items()}
                for key, by_k in cells.items()}
    return {"cells": per_cell, "wins": wins, "losses": losses,
            "name": ds.attrs.get("sweep_name", "?"), "halves": (a, b)}


def _bootstrap(diffs_by_setting: list[np.ndarray], n_boot: int = 10_000,
               seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    sizes = [len(d) for d in diffs_by_setting]
    total = sum(sizes)
    means = np.zeros(n_boot)
    for d in diffs_by_setting:
        idx = rng.integers(0, len(d), size=(n_boot, len(d)))
        means += d[idx].sum(axis=1)
    means /= total
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def _difference(rs: list[dict], a: str, b: str) -> list[str]:
    """Per budget: mean of (a - b) over start cells, its bootstrap interval and sign test."""
    row = []
    for k in BUDGETS:
        by_set = [np.array([c[k][a] - c[k][b] for c in r["cells"].values()]) for r in rs]
        d = np.concatenate(by_set)
        lo, hi = _bootstrap(by_set)
        better, worse = int((d < 0).sum()), int((d > 0).sum())
        pv = stats.binomtest(better, better + worse).pvalue if better + worse else 1.0
        row.append(f"{d.mean():+.2f} [{lo:+.2f}, {hi:+.2f}] {better}/{worse} p={pv:.2g}")
    return row


def report(results: list[dict], per_setting: bool = False) -> str:
    lines = []
    groups = [("pooled", results)] + ([(r["name"], [r]) for r in results] if per_setting else [])
    for title, rs in groups:
        n_cells = sum(len(r["cells"]) for r in rs)
        lines.append(f"### {title} ({n_cells} start cells; regret in pp, mean over start cells)")
        lines.append("")
        lines.append("| policy | " + " | ".join(f"budget {k}" for k in BUDGETS) + " |")
        lines.append("|---|" + "---|" * len(BUDGETS))
        policies = [p for p in POLICIES + POST_HOC if all(p in c[BUDGETS[0]] for r in rs
                                               for c in r["cells"].values())]
        for p in policies:
            vals = []
            for k in BUDGETS:
                v = [c[k][p] for r in rs for c in r["cells"].values()]
                vals.append(f"{np.mean(v):.2f}")
            lines.append(f"| {p} | " + " | ".join(vals) + " |")
        ev = [np.mean([c[k][EVALUATED] for r in rs for c in r["cells"].values()])
              for k in BUDGETS]
        lines.append("")
        lines.append("points tune evaluated (mean over start cells; it stops on keep, a "
                     "reversal, the edge or a worse validation error): "
                     + " / ".join(f"{e:.2f}" for e in ev) + " at budgets "
                     + " / ".join(str(k) for k in BUDGETS))
        lines.append("")
        lines.append("tune minus baseline: mean [95 % bootstrap interval], sign test "
                     "(tune better / worse, p)")
        lines.append("")
        lines.append("| baseline | " + " | ".join(f"budget {k}" for k in BUDGETS) + " |")
        lines.append("|---|" + "---|" * len(BUDGETS))
        for p in policies[1:]:
            lines.append(f"| {p} | " + " | ".join(_difference(rs, "tune", p)) + " |")
        post_hoc = [p for p in policies if p in POST_HOC]
        if post_hoc:
            lines.append("")
            lines.append("Rows starting 'post hoc:' were added after the protocol's scores were "
                         "seen; they diagnose what bounds tune and are not protocol policies.")
            lines.append("")
            lines.append("post hoc minus baseline (same statistics; negative = the post-hoc "
                         "policy is better)")
            lines.append("")
            lines.append("| post hoc - baseline | " + " | ".join(f"budget {k}" for k in BUDGETS)
                         + " |")
            lines.append("|---|" + "---|" * len(BUDGETS))
            for p in post_hoc:
                for base in ("random", "greedy"):
                    lines.append(f"| {p} - {base} | " + " | ".join(_difference(rs, p, base))
                                 + " |")
        w = sum(r["wins"] for r in rs)
        lo_ = sum(r["losses"] for r in rs)
        if w + lo_:
            ci = stats.binomtest(w, w + lo_).proportion_ci(0.95, method="wilson")
            lines.append("")
            lines.append(f"advised move beats the opposite neighbour: {w}/{w + lo_} = "
                         f"{100 * w / (w + lo_):.1f} % [{100 * ci.low:.1f}, {100 * ci.high:.1f}] "
                         "(interior cells x 2 folds)")
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- export, plot

#: the policies the figure draws (always hotter and the one-step policies are in the tables)
PLOTTED = ("tune", "random", "greedy", "always colder", "weightwatcher", "keep")
#: the pooled panel's 95 % intervals of the mean (the paired differences are in the tables)
BANDED = ("tune", "random", "greedy")


def to_frame(results: list[dict]):
    """Tidy per-start-cell regrets: one row per (setting, load, start row, budget, policy),
    regret in pp averaged over the two folds; ``tune: points evaluated`` is a row too."""
    import pandas as pd

    rows = [{"setting": r["name"], "load": load, "start": start, "budget": k, "policy": p,
             "regret": v}
            for r in results for (load, start), by_k in r["cells"].items()
            for k, pol in by_k.items() for p, v in pol.items()]
    return pd.DataFrame(rows)


def from_frame(frame) -> list[dict]:
    """The results structure :func:`report` reads, back from :func:`to_frame`'s table (without
    the advised-move counts, which the table does not hold)."""
    out = []
    for name, g in frame.groupby("setting", sort=False):
        cells: dict = {}
        for row in g.itertuples(index=False):
            cells.setdefault((row.load, int(row.start)), {}).setdefault(int(row.budget), {})[
                row.policy] = float(row.regret)
        out.append({"name": name, "cells": cells, "wins": 0, "losses": 0})
    return out


def plot_regret(frame, path: Path | None = None, policies: tuple[str, ...] = PLOTTED):
    """Regret against budget: pooled (95 % bootstrap intervals of the mean for tune, random and
    greedy, start cells resampled within settings) and one panel per setting.

    Returns the figure; saves it when ``path`` is given."""
    import matplotlib.pyplot as plt

    settings = list(dict.fromkeys(frame["setting"]))
    fig, axes = plt.subplots(1, len(settings) + 1, figsize=(3.1 * (len(settings) + 1), 3.3),
                             constrained_layout=True)
    for ax, title in zip(axes, ["pooled", *settings]):
        sub = frame if title == "pooled" else frame[frame["setting"] == title]
        n_cells = sub[["setting", "load", "start"]].drop_duplicates().shape[0]
        for p in policies:
            g = sub[sub["policy"] == p]
            if g.empty:
                continue
            mean = g.groupby("budget")["regret"].mean()
            main = p == "tune"
            (line,) = ax.plot(mean.index, mean.values, marker="o", ms=3, lw=2.4 if main else 1.3,
                              label=p, zorder=3 if main else 2)
            if title == "pooled" and p in BANDED:
                lo, hi = [], []
                for k in mean.index:
                    by_set = [gg["regret"].to_numpy() for _, gg in g[g["budget"] == k].groupby(
                        "setting")]
                    a, b = _bootstrap(by_set)   # pooled mean, within settings
                    lo.append(a)
                    hi.append(b)
                x = mean.index + 0.06 * (BANDED.index(p) - 1)   # side by side, not on top
                ax.errorbar(x, mean.values, yerr=[mean.values - lo, np.array(hi) - mean.values],
                            fmt="none", ecolor=line.get_color(), elinewidth=1, capsize=2)
        ax.set_title(f"{title} ({n_cells} start cells)", fontsize=9)
        ax.set_xlabel("budget (trained points)")
        ax.set_xticks(sorted(frame["budget"].unique()))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("regret (pp of test error)")
    axes[0].legend(fontsize=7, frameon=False)
    if path is not None:
        fig.savefig(path, dpi=130)
    return fig


def parse_drops(items: list[str]) -> list[tuple[str, str, float]]:
    """``["v2_sam:sam_rho=0.5"]`` -> ``[("v2_sam", "sam_rho", 0.5)]``; a one-line error
    otherwise."""
    out = []
    for it in items:
        try:
            setting, rest = it.split(":", 1)
            axis, value = rest.split("=", 1)
            out.append((setting, axis, float(value)))
        except ValueError:
            raise SystemExit(f"--drop: {it!r} is not SETTING:AXIS=VALUE (e.g. v2_sam:sam_rho=0.5)"
                             ) from None
    return out


def drop_rows(ds: xr.Dataset, drops: list[tuple[str, str, float]]) -> xr.Dataset:
    """``ds`` without the rows of ``drops`` that name its sweep; an axis or value it lacks is a
    one-line error (a typo must not pass as a check that changed nothing)."""
    name = ds.attrs.get("sweep_name")
    for setting, axis, value in drops:
        if setting != name:
            continue
        if axis not in ds.dims:
            raise SystemExit(f"--drop: {name} has no axis {axis!r}; axes: "
                             f"{sorted(map(str, ds.dims))}")
        hit = [v for v in ds[axis].values if np.isclose(float(v), value)]
        if not hit:
            raise SystemExit(f"--drop: {name}.{axis} has no value {value:g}; values: "
                             f"{[float(v) for v in ds[axis].values]}")
        ds = ds.drop_sel({axis: hit})
        print(f"{name}: dropped {axis} = {value:g}", flush=True)
    return ds


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path, help="exported sweeps (netCDF)")
    ap.add_argument("--per-setting", action="store_true", help="also one table per setting")
    ap.add_argument("--csv", type=Path, help="also write the per-start-cell regrets (tidy CSV)")
    ap.add_argument("--plot", type=Path, help="also draw regret against budget (PNG)")
    ap.add_argument("--drop", nargs="+", default=[], metavar="SETTING:AXIS=VALUE",
                    help="leave a temperature row out before scoring (a sensitivity check), "
                         "e.g. v2_sam:sam_rho=0.5")
    ap.add_argument("--from-csv", action="store_true",
                    help="FILES is one CSV written by --csv: report and plot from it without "
                         "recomputing (the advised-move counts are not in it)")
    a = ap.parse_args(argv)
    if a.from_csv:
        import pandas as pd

        if len(a.files) != 1 or a.files[0].suffix != ".csv":
            raise SystemExit(f"--from-csv: expected one .csv file, got {[str(f) for f in a.files]}")
        frame = pd.read_csv(a.files[0])
        print(report(from_frame(frame), a.per_setting))
        if a.plot:
            plot_regret(frame, a.plot)
            print(f"wrote {a.plot}")
        return
    drops = parse_drops(a.drop)
    results = []
    for f in a.files:
        with xr.open_dataset(f) as ds:
            ds = ds.load()
        ds = drop_rows(ds, drops)
        alpha = read_alpha(f.with_name(f"{f.stem}_ww_alpha.csv"))
        r = score_setting(ds, alpha)
        print(f"{f}: {r['name']}, dense seeds {r['halves'][0]} | {r['halves'][1]}; "
              f"weightwatcher baseline: {'scored' if alpha else 'not run (no alpha table)'}",
              flush=True)
        results.append(r)
    print()
    print(report(results, a.per_setting))
    if a.csv or a.plot:
        frame = to_frame(results)
        if a.csv:
            frame.to_csv(a.csv, index=False)          # full precision: --from-csv reproduces
            print(f"wrote {a.csv}")
        if a.plot:
            plot_regret(frame, a.plot)
            print(f"wrote {a.plot}")


if __name__ == "__main__":
    main()
