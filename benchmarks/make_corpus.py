"""Regenerate the validation corpus (issue 11) and print its descriptive tables.

One command regenerates every setting of the corpus::

    python benchmarks/make_corpus.py                    # all of sweeps/corpus/*.yaml
    python benchmarks/make_corpus.py --only demo_epochs # one setting
    python benchmarks/make_corpus.py --corpus corpus_v2 # corpus v2 (issue 19), sweeps/corpus_v2

Each ``sweeps/corpus/<name>.yaml`` is run with the command-line interface
(``python -m threeregime run <yaml> --out <runs>/<name> --workers N``; resumable: finished stages
are reused) and exported to ``validation/corpus/<name>.nc`` (``python -m threeregime export``).
Only the CLI is used, so the script does not depend on the package's internal layout.

Descriptive tables (no advice rule is scored here)::

    python benchmarks/make_corpus.py --summarize validation/corpus/demo_epochs.nc

prints, per cell (temperature row x load column, hottest row first), the mean over dense seeds of
the per-dense-seed means of test error, mc (``lmc``) and CKA (softmax outputs), each with its
standard error over dense seeds; the best row of every load column with a paired t-test (over
dense seeds) against the runner-up; the best row in two disjoint halves of the dense seeds; and
the CKA difference between the coldest and the hottest connected row of each column.
"""
from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def regenerate(names: list[str] | None, workers: str, runs: Path, out: Path,
               corpus: str = "corpus") -> None:
    """Run each sweep of ``sweeps/<corpus>/`` and export it to ``out/<name>.nc``."""
    yamls = sorted((REPO / "sweeps" / corpus).glob("*.yaml"))
    if names:
        known = {y.stem: y for y in yamls}
        missing = [n for n in names if n not in known]
        if missing:
            sys.exit(f"--only: unknown setting(s) {', '.join(missing)}; "
                     f"allowed: {', '.join(known)}")
        yamls = [known[n] for n in names]
    out.mkdir(parents=True, exist_ok=True)
    for y in yamls:
        t0 = time.time()
        sweep_dir = runs / y.stem
        _run([sys.executable, "-m", "threeregime", "run", str(y), "--out", str(sweep_dir),
              "--workers", workers, "--quiet"])
        _run([sys.executable, "-m", "threeregime", "export", str(sweep_dir),
              str(out / f"{y.stem}.nc")])
        print(f"{y.stem}: {time.time() - t0:.0f} s wall", flush=True)


# ----------------------------------------------------------------------------- summaries


def _axes(ds):
    temp = [d for d in ds.dims if ds[d].attrs.get("role") == "temperature"]
    load = [d for d in ds.dims if ds[d].attrs.get("role") == "load"]
    if len(temp) != 1 or len(load) != 1:
        raise SystemExit(f"expected one temperature and one load axis, got {temp} / {load}")
    t, ld = temp[0], load[0]
    hot_first = ds[t].attrs.get("hotter") != "increasing"   # decreasing: smallest is hottest
    order = sorted(ds[t].values.tolist(), reverse=not hot_first)
    return t, ld, order


def _t_p(diffs) -> tuple[float, float, float]:
    """Mean, standard error and two-sided paired t-test p-value of per-seed differences."""
    import numpy as np
    from scipy import stats

    d = np.asarray(diffs, dtype=float)
    d = d[np.isfinite(d)]
    if d.size < 2:
        return float("nan"), float("nan"), float("nan")
    m, se = d.mean(), d.std(ddof=1) / math.sqrt(d.size)
    if se == 0:
        return float(m), 0.0, 0.0 if m != 0 else 1.0
    p = 2 * stats.t.sf(abs(m / se), d.size - 1)
    return float(m), float(se), float(p)


def per_seed(ds):
    """Per dense seed and cell: mean test error, mean mc, mean CKA, min train error."""
    return {
        "test_error": ds["test_error"].mean("retrain_seed"),
        "lmc": ds["lmc"].mean("pair"),
        "cka": ds["cka"].mean("pair"),
        "train_error": ds["train_error"].mean("retrain_seed"),
    }


def summarize(path: str, tau_lmc: float = 0.02) -> str:
    """Markdown tables describing one exported corpus file (see the module docstring)."""
    import numpy as np
    import xarray as xr

    ds = xr.open_dataset(path, engine="h5netcdf").load()
    t, ld, rows = _axes(ds)
    loads = ds[ld].values.tolist()
    seeds = ds["dense_seed"].values.tolist()
    n = len(seeds)
    ps = per_seed(ds)
    sem = {k: v.std("dense_seed", ddof=1) / math.sqrt(n) for k, v in ps.items()}
    mean = {k: v.mean("dense_seed") for k, v in ps.items()}
    out = [f"### {Path(path).name}: {ds.attrs.get('description', '')}", "",
           f"{t} (rows, hottest first) x {ld} (columns); {n} dense seeds {seeds} x "
           f"{ds.sizes['retrain_seed']} retraining seeds; mean +/- standard error over dense "
           "seeds of per-dense-seed means.", ""]
    head = f"| {t} \\ {ld} | " + " | ".join(f"{v:g}" for v in loads) + " |"
    sep = "|---" * (len(loads) + 1) + "|"
    for var, scale, fmt, title in (("test_error", 100, "{:.1f} ± {:.1f}", "test error %"),
                                   ("lmc", 100, "{:+.1f} ± {:.1f}", "mc % (negative = barrier)"),
                                   ("cka", 1, "{:.3f} ± {:.3f}", "CKA (softmax, train inputs)")):
        out += [f"**{title}**", "", head, sep]
        for r in rows:
            cells = []
            for c in loads:
                m = float(mean[var].sel({t: r, ld: c})) * scale
                s = float(sem[var].sel({t: r, ld: c})) * scale
                mark = ""
                if var == "lmc" and m < -100 * tau_lmc:
                    mark = " (I)"
                cells.append(fmt.format(m, s) + mark)
            out.append(f"| {r:g} | " + " | ".join(cells) + " |")
        out.append("")
    # best row per column, paired test against the runner-up; halves of the dense seeds
    te = ps["test_error"]
    half = n // 2
    h1, h2 = seeds[:half], seeds[half:]
    out += ["**best row per column** (paired t over dense seeds; halves "
            f"{h1} / {h2})", "",
            "| " + ld + " | best | runner-up | diff % (± se) | p | best (half 1 / half 2) |",
            "|---|---|---|---|---|---|"]
    for c in loads:
        col = te.sel({ld: c})
        m = col.mean("dense_seed").sel({t: rows})
        order = np.argsort(m.values)
        b, r2 = rows[order[0]], rows[order[1]]
        dm, dse, p = _t_p((col.sel({t: r2}) - col.sel({t: b})).values)
        b1 = rows[int(np.argmin(col.sel(dense_seed=h1).mean("dense_seed").sel({t: rows}).values))]
        b2 = rows[int(np.argmin(col.sel(dense_seed=h2).mean("dense_seed").sel({t: rows}).values))]
        out.append(f"| {c:g} | {b:g} | {r2:g} | {100*dm:.2f} ± {100*dse:.2f} | {p:.3f} | "
                   f"{b1:g} / {b2:g}{' (agree)' if b1 == b2 else ''} |")
    out.append("")
    # dichotomy: lowest load column: best vs coldest row; highest: best vs hottest row
    lo, hi = loads[0], loads[-1]
    out.append("**dichotomy** (paired t over dense seeds)")
    out.append("")
    for c, other, word in ((lo, rows[-1], "coldest"), (hi, rows[0], "hottest")):
        col = te.sel({ld: c})
        b = rows[int(np.argmin(col.mean("dense_seed").sel({t: rows}).values))]
        pos = rows.index(b)
        dm, dse, p = _t_p((col.sel({t: other}) - col.sel({t: b})).values)
        out.append(f"- {ld} {c:g}: best {t} {b:g} (row {pos + 1} of {len(rows)} from the hot "
                   f"side); {word} row {other:g} is worse by {100*dm:.2f} ± {100*dse:.2f} "
                   f"points (p = {p:.3f})")
    out.append("")
    # II-A / II-B: CKA of the coldest connected row minus the hottest connected row
    out.append("**CKA split among connected rows** (mean mc > -tau_lmc = "
               f"{tau_lmc}; coldest minus hottest connected row, paired over dense seeds)")
    out.append("")
    for c in loads:
        conn = [r for r in rows if float(mean["lmc"].sel({t: r, ld: c})) > -tau_lmc]
        if len(conn) < 2:
            out.append(f"- {ld} {c:g}: fewer than 2 connected rows")
            continue
        ck = ps["cka"].sel({ld: c})
        dm, dse, p = _t_p((ck.sel({t: conn[-1]}) - ck.sel({t: conn[0]})).values)
        z = dm / dse if dse and dse > 0 else float("nan")
        out.append(f"- {ld} {c:g}: connected rows {', '.join(f'{r:g}' for r in conn)}; "
                   f"CKA({conn[-1]:g}) - CKA({conn[0]:g}) = {dm:+.4f} ± {dse:.4f} "
                   f"({z:.1f} se, p = {p:.3f})")
    out.append("")
    bad = (ps["train_error"] > 0.5).sum().item()
    out.append(f"dense-seed cells with mean retrained train error > 50 % (collapse): {bad}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default="corpus", choices=["corpus", "corpus_v2"],
                    help="which corpus: sweeps/corpus (v1, issue 11) or sweeps/corpus_v2 "
                         "(issue 19); sets the default --runs and --out folders")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="settings to regenerate")
    ap.add_argument("--workers", default="2", help="worker processes per sweep (default 2)")
    ap.add_argument("--runs", type=Path, default=None,
                    help="folder of the sweep directories (default runs/<corpus>)")
    ap.add_argument("--out", type=Path, default=None,
                    help="folder of the exported netCDF files (default validation/<corpus>)")
    ap.add_argument("--summarize", nargs="+", metavar="NC",
                    help="print descriptive tables of exported files instead of running")
    ap.add_argument("--tau-lmc", type=float, default=0.02,
                    help="mc threshold used only to mark cells in the tables (default 0.02)")
    a = ap.parse_args(argv)
    if a.summarize:
        for f in a.summarize:
            print(summarize(f, a.tau_lmc))
            print()
        return
    runs = a.runs or REPO / "runs" / a.corpus
    out = a.out or REPO / "validation" / a.corpus
    regenerate(a.only, a.workers, runs, out, a.corpus)


if __name__ == "__main__":
    main()
