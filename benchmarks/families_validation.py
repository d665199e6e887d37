"""Do the three regimes and the advice transfer to other pruning families? (issue 13)

Reads the exported family sweeps (``results/families_{nm,channel,retrain_mode}.nc``: run
``threeregime run sweeps/families_X.yaml --out runs/families_X`` then ``threeregime export
runs/families_X results/families_X.nc``) and, for every *slice* (one pruning method or one
retraining mode; the ``nm_N_M`` methods together form one N:M diagram, each at its own density
N/M, as the comment of ``sweeps/families_nm.yaml`` says):

1. **Regimes**: the cells labelled I / II-A / II-B / unresolved / undetermined by a rule
   (default: the library default), classified on the slice alone (not jointly with the other
   methods of the sweep), and the labels as an epochs x density grid.
2. **The phenomenon itself**: the best dense temperature (epochs) of each density column, and
   the mean barrier ``mc`` of the lowest and highest density.
3. **Advice transfer**, by the pre-registered protocol (docs/validation_protocol.md sections
   2-4, :func:`threeregime.analysis.calibrate.measured_directions` and
   :func:`~threeregime.analysis.calibrate.score_directions`): truth = the neighbouring temperature whose
   retrained test error is lower by a two-sided paired t-test (alpha 0.05) over (dense seed,
   retraining seed) blocks, ``keep`` otherwise, edge cells unscored unless their one neighbour
   is better; advice = I -> hotter, II-A -> colder, II-B / unresolved -> keep, undetermined ->
   a miss; accuracy with a 95 % Wilson interval and exact sign tests against always hotter /
   colder / keep.  The shipped rules never saw these sweeps, so every score is held out.
   Pooled over the new families (N:M, channel, rewind, scratch); the magnitude / finetune
   slices are the unstructured reference, reported per slice.
4. **Reproducibility**: the rule on each dense seed alone; agreement of the labels resolved in
   both (the protocol's section 5 measure).

Usage::

    python benchmarks/families_validation.py [FILE.nc ...] [--rules paper_step,level,legacy]
        [--markdown OUT.md]

No torch; seconds.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus_validation import _pct, advice, reproducibility, score_line  # noqa: E402

from threeregime.analysis.calibrate import measured_directions, score_directions  # noqa: E402
from threeregime.analysis.regimes import classify  # noqa: E402
from threeregime.analysis.rules import DEFAULT_RULE, RULES  # noqa: E402
from threeregime.analysis.slices import slices  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "results" / f"families_{n}.nc" for n in ("nm", "channel", "retrain_mode")]
#: slices that are the unstructured, fine-tuned reference (not pooled with the new families)
REFERENCE = ("magnitude", "finetune")
NAMES = {0: "I", 1: "II-A", 2: "II-B", 3: "unres.", -1: "undet."}


def load_slices(paths: list[Path]) -> dict[str, xr.Dataset]:
    data: dict[str, xr.Dataset] = {}
    for p in paths:
        ds = xr.open_dataset(p).load()
        tag = p.stem.removeprefix("families_").removesuffix("_robust") + ":"
        data.update(slices(ds, tag))
    return data


def label_grid(reg: xr.DataArray) -> list[str]:
    """The regime labels as rows of epochs (hottest first) x columns of density."""
    reg = reg.transpose("epochs", "density").sortby("epochs")
    head = "| epochs \\ density | " + " | ".join(f"{d:g}" for d in reg["density"].values) + " |"
    rows = [head, "|---" * (reg.sizes["density"] + 1) + "|"]
    for e in reg["epochs"].values:
        cells = [NAMES.get(int(c), "?") for c in reg.sel(epochs=e).values]
        rows.append(f"| {int(e)} | " + " | ".join(cells) + " |")
    return rows


def phenomenon(ds: xr.Dataset) -> str:
    te = ds["test_error"]
    if "status" in ds:
        te = te.where(ds["status"].broadcast_like(te) == 0)
    te = te.mean(["dense_seed", "retrain_seed"])
    best = te.idxmin("epochs")
    mc = 100 * ds["lmc"].mean(["dense_seed", "pair"])
    lo, hi = ds["density"].values.min(), ds["density"].values.max()
    parts = [f"{d:g}: {int(best.sel(density=d))} ep ({100 * float(te.sel(density=d).min()):.1f}"
             f" %)" for d in ds["density"].values]
    return (f"best epochs per density (test error): {', '.join(parts)}; mean mc (%) over "
            f"epochs {list(map(int, ds['epochs'].values))}: density {lo:g} "
            f"{np.round(mc.sel(density=lo).values, 2).tolist()}, density {hi:g} "
            f"{np.round(mc.sel(density=hi).values, 2).tolist()}")


def robustness(data: dict[str, xr.Dataset], labels: dict[str, xr.DataArray]) -> list[str]:
    """Corrupted test error (severities >= 1, mean over corruptions) and its gap to the clean
    test error, in percent, averaged over the cells of each regime (slices that measured it)."""
    have = [s for s, ds in data.items() if "corrupted_test_error" in ds]
    if not have:
        return ["", "## Robustness per regime", "", "No slice measured the corruption error "
                "(measure.extra: [robustness])."]
    out = ["", "## Robustness per regime (corrupted test error, severities 1-5, mean over "
           "corruptions; gap = corrupted - clean; % , cells averaged per regime)", "",
           "| slice | " + " | ".join(f"{n} (cells): corrupted / gap" for n in NAMES.values())
           + " |", "|---" * (len(NAMES) + 1) + "|"]
    for s in have:
        ds = data[s]
        ce = ds["corrupted_test_error"]
        ce = ce.sel(severity=ce["severity"] > 0).mean(["corruption", "severity"])
        ce = ce.mean(["dense_seed", "retrain_seed"])
        gap = ce - ds["test_error"].mean(["dense_seed", "retrain_seed"])
        reg = labels[s].transpose(*ce.dims)
        cells = []
        for c in NAMES:
            m = reg.values == c
            cells.append(f"({int(m.sum())}) {100 * np.nanmean(ce.values[m]):.1f} / "
                         f"{100 * np.nanmean(gap.values[m]):.1f}" if m.any() else "-")
        out.append(f"| {s} | " + " | ".join(cells) + " |")
    return out


def mask_overlap(sweep: Path, runs: Path) -> list[str]:
    """Share of the kept weights two retraining seeds of one point have in common (mean over
    pairs and dense seeds): 1 for fixed one-shot masks; N:M training recomputes its masks, so
    a retrained pair may end on different supports.  Reads the retraining records (torch)."""
    import collections
    import itertools

    import torch

    from threeregime.spec.specs import load_yaml
    from threeregime.sweep.plan import Store, plan_sweep
    from threeregime.sweep.torchio import load_torch

    torch.set_num_threads(1)
    spec, store = load_yaml(sweep), Store(runs)
    groups: dict = collections.defaultdict(dict)
    for r in plan_sweep(spec).retrain:
        p = r.spec
        groups[(p.prune.method, p.prune.density, r.source, r.dense_key)][r.seed] = r.path(store)
    share: dict = collections.defaultdict(list)
    for key, paths in groups.items():
        masks = {s: load_torch(path)["mask"] for s, path in paths.items()}
        for a, b in itertools.combinations(sorted(masks), 2):
            names = [n for n in masks[a] if n in masks[b]]
            kept = sum(int(masks[a][n].sum()) for n in names)
            both = sum(int((masks[a][n] & masks[b][n]).sum()) for n in names)
            share[key[:3]].append(both / kept if kept else float("nan"))
    out = ["", f"## Masks of retrained pairs ({sweep.name}, {runs})", "",
           "| method | density | epochs | kept weights shared by two retraining seeds |",
           "|---|---|---|---|"]
    for (m, d, e), v in sorted(share.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0)):
        out.append(f"| {m} | {d:g} | {e} | {np.mean(v):.3f} |")
    return out


def report(paths: list[Path], rules: list[str]) -> str:
    t0 = time.time()
    data = load_slices(paths)
    default = rules[0]
    truth = {s: measured_directions(ds) for s, ds in data.items()}
    out = [f"Files: {', '.join(str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p) for p in paths)}",
           f"Rules: {', '.join(rules)} (first = the one whose regimes are counted; "
           f"library default: {DEFAULT_RULE})", "",
           "## Regimes per slice (cells; classified on the slice alone)", "",
           "| slice | I | II-A | II-B | unresolved | undetermined | truth hotter / colder / "
           "keep / unscored |", "|---|---|---|---|---|---|---|"]
    labels = {}
    for s, ds in data.items():
        reg = classify(ds, rule=RULES[default])["regime"]
        labels[s] = reg
        v = reg.values.ravel()
        t = truth[s].values.astype(str).ravel()
        counts = " | ".join(str(int((v == c).sum())) for c in (0, 1, 2, 3, -1))
        tc = " / ".join(str(int((t == m).sum())) for m in ("hotter", "colder", "keep", ""))
        out.append(f"| {s} | {counts} | {tc} |")
    out += ["", f"## Labels ({default}) and the phenomenon per slice", ""]
    for s, ds in data.items():
        out += [f"**{s}**: {phenomenon(ds)}", ""] + label_grid(labels[s]) + [""]
    out += ["## Advice transfer (held out: the rules never saw these sweeps)", "",
            "| rule | slice | advice right [Wilson 95 %] | naive: accuracy (wins/losses, sign p) |",
            "|---|---|---|---|"]
    new = [s for s in data if s.split(":")[1] not in REFERENCE]
    pooled_adv = {}
    for name in rules:
        adv = {s: advice(ds, RULES[name], truth[s]) for s, ds in data.items()}
        pooled_adv[name] = adv
        for s in data:
            out.append(f"| {name} | {s} | {score_line(adv[s], truth[s].values)[1]} |")
        for group, members in (("pooled new families", new),
                               ("pooled reference", [s for s in data if s not in new])):
            if members:
                a = np.concatenate([np.ravel(adv[s]) for s in members])
                t = np.concatenate([np.ravel(truth[s].values) for s in members])
                out.append(f"| **{name}** | **{group}** ({', '.join(members)}) | "
                           f"{score_line(a, t)[1]} |")
    out += ["", "## Sensitivity of the truth (new families pooled)", "",
            "| rule | t-test alpha 0.05 | Wilcoxon alpha 0.05 | t-test alpha 0.10 |",
            "|---|---|---|---|"]
    alt = [truth, {s: measured_directions(data[s], test="wilcoxon") for s in new},
           {s: measured_directions(data[s], alpha=0.10) for s in new}]
    for name in rules:
        a = np.concatenate([np.ravel(pooled_adv[name][s]) for s in new])
        cols = []
        for tr in alt:
            sc = score_directions(a, np.concatenate([np.ravel(tr[s].values) for s in new]))
            cols.append(_pct(sc["k"], sc["n"], *sc["wilson"]))
        out.append(f"| {name} | " + " | ".join(cols) + " |")
    out += ["", f"## Reproducibility across dense seeds ({default})", ""]
    out += reproducibility(data, RULES[default])
    out += robustness(data, labels)
    out.append(f"\n({time.time() - t0:.0f} s)")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path, help="exported family sweeps (.nc)")
    ap.add_argument("--rules", default=",".join([DEFAULT_RULE, *(r for r in RULES
                                                                  if r != DEFAULT_RULE)]),
                    help="comma-separated shipped rules; the first one's regimes are counted")
    ap.add_argument("--markdown", type=Path, help="also write the report here")
    ap.add_argument("--masks", nargs=2, type=Path, metavar=("SWEEP.yaml", "RUNS_DIR"),
                    help="also report the mask overlap of retrained pairs (reads the "
                         "retraining records; imports torch)")
    args = ap.parse_args(argv)
    paths = [p for p in (args.files or FILES) if p.is_file()]
    if not paths:
        sys.exit("no family sweeps found: run and export sweeps/families_*.yaml (see the "
                 "module docstring) or pass .nc files")
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    for r in rules:
        if r not in RULES:
            sys.exit(f"error: --rules: unknown rule {r!r}; shipped: {', '.join(RULES)}")
    text = report([p.resolve() for p in paths], rules)
    if args.masks:
        text += "\n" + "\n".join(mask_overlap(*args.masks))
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
