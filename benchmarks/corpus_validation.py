"""The pre-registered corpus validation of regime rules and advice (docs/validation_protocol.md).

For every setting of the corpus (``validation/corpus/*.nc``, one sweep with one temperature axis
each; ``benchmarks/make_corpus.py`` regenerates them):

1. **Truth** (section 2): the right move at each cell, from a two-sided paired t-test (alpha
   0.05) of the retrained test error against each neighbouring temperature over (dense seed,
   retraining seed) blocks (:func:`threeregime.analysis.calibrate.measured_directions`); edge cells whose
   one neighbour is not better are not scored.
2. **Held-out advice** (section 5): each calibrated family's thresholds are fitted on the other
   settings (:func:`threeregime.analysis.calibrate.calibrate`, ``target="directions"``, groups =
   settings) and the fitted rule labels the held-out setting; the shipped rules (``paper_step``
   and ``level`` fitted on the paper's table, ``legacy`` set by hand) never saw the corpus and
   are scored as they are.  Advice = I -> hotter, II-A -> colder, II-B / unresolved -> keep,
   undetermined -> a miss.
3. **Statistics** (section 4): accuracy with a 95 % Wilson interval; exact two-sided sign tests
   on the discordant cells against always hotter / colder / keep; per setting and pooled.
   Sensitivity: the truth with the Wilcoxon test and with alpha 0.10.
4. **Default rule**: the highest pooled held-out accuracy (ties: fewer thresholds).
5. **Reproducibility across dense seeds**: the default rule labels each dense seed alone (the
   protocol's pairs of seeds) and each half of the dense seeds (two runs on disjoint seeds);
   agreement = the fraction of cells resolved in both (I, II-A or II-B) with the same label.

Usage::

    python benchmarks/corpus_validation.py [FILE.nc ...] [--markdown OUT.md] [--emit]

``--emit`` prints the calibrated rules as dicts for ``threeregime/analysis/rules.py`` (thresholds fitted
on ALL settings; scores = the leave-one-setting-out figures).  No torch; about a minute.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr

from threeregime.analysis.calibrate import calibrate, measured_directions, score_directions
from threeregime.analysis.regimes import REGIME_VARS, classify
from threeregime.analysis.rules import RULES, Rule, advice_of, label_names

CORPUS = Path(__file__).resolve().parents[1] / "validation" / "corpus"
#: families fitted leave-one-setting-out, from the shipped rule's thresholds and settings
CALIBRATED = {"corpus_step": "paper_step", "corpus_level": "level"}
#: shipped rules scored as they are (never fitted on the corpus)
FIXED = ("paper_step", "level", "legacy")
RESOLVED = (0, 1, 2)


def load(paths: list[Path]) -> dict[str, xr.Dataset]:
    """Settings by file stem, without stored regime variables (the rules label them anew)."""
    out = {}
    for p in paths:
        ds = xr.open_dataset(p).load()
        out[p.stem] = ds.drop_vars([v for v in (*REGIME_VARS, "regime_uncertain")
                                    if v in ds])
    return out


def _grid(da: xr.DataArray, like: xr.DataArray) -> np.ndarray:
    return np.asarray(da.transpose(*like.dims).values)


def advice(ds: xr.Dataset, rule: Rule, like: xr.DataArray) -> np.ndarray:
    """The rule's advice per cell of ``ds``, aligned with ``like`` (a truth DataArray)."""
    return advice_of(label_names(_grid(classify(ds, rule=rule)["regime"], like)))


def held_out(data: dict, truth: dict) -> tuple[dict, dict]:
    """Per candidate rule: held-out advice per setting, and the rule fitted on all settings."""
    adv: dict[str, dict] = {}
    fitted: dict[str, Rule] = {}
    for name, base in CALIBRATED.items():
        start = RULES[base].replace(name=name, provenance={}, scores={})
        fit = calibrate(data, truth, start, target="directions")
        fitted[name] = fit
        adv[name] = {s: advice(ds, start.replace(thresholds=fit.scores["per_group"][s]
                                                  ["thresholds"]), truth[s])
                     for s, ds in data.items()}
    for name in FIXED:
        adv[name] = {s: advice(ds, RULES[name], truth[s]) for s, ds in data.items()}
    return adv, fitted


def _pct(k: int, n: int, lo: float, hi: float) -> str:
    return f"{k}/{n} = {100 * k / n:.1f} % [{100 * lo:.1f}, {100 * hi:.1f}]" if n else "0/0"


def score_line(adv: np.ndarray, tru: np.ndarray) -> tuple[dict, str]:
    s = score_directions(adv, tru)
    naive = "; ".join(f"{m} {100 * v['accuracy']:.1f} % (w/l {v['wins']}/{v['losses']}, "
                      f"p = {v['sign_p']:.3g})" for m, v in s["naive"].items())
    return s, f"{_pct(s['k'], s['n'], *s['wilson'])} | {naive}"


def agreement(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """(same, n) over cells resolved (I, II-A, II-B) in both label arrays."""
    both = np.isin(a, RESOLVED) & np.isin(b, RESOLVED)
    return int((a[both] == b[both]).sum()), int(both.sum())


def reproducibility(data: dict, rule: Rule) -> list[str]:
    lines = ["| setting | dense seeds | pairs of single seeds: agree / resolved in both | "
             "halves | agree / resolved in both |", "|---|---|---|---|---|"]
    tot = {"pair": [0, 0], "half": [0, 0]}
    for s, ds in data.items():
        seeds = ds["dense_seed"].values.tolist()
        cell = [d for d in ds["lmc"].dims if d not in ("dense_seed", "pair", "retrain_seed")]

        def lab(sel, ds=ds, cell=cell):
            reg = classify(ds.sel(dense_seed=sel), rule=rule)["regime"]
            return np.asarray(reg.transpose(*cell).values)

        single = {x: lab([x]) for x in seeds}
        pk = pn = 0
        for x, y in itertools.combinations(seeds, 2):
            k, n = agreement(single[x], single[y])
            pk, pn = pk + k, pn + n
        h = len(seeds) // 2
        halves = (seeds[:h], seeds[h:]) if h else ([], [])
        hk, hn = agreement(lab(halves[0]), lab(halves[1])) if h else (0, 0)
        tot["pair"] = [tot["pair"][0] + pk, tot["pair"][1] + pn]
        tot["half"] = [tot["half"][0] + hk, tot["half"][1] + hn]
        f = (lambda k, n: f"{k}/{n} = {100 * k / n:.0f} %" if n else "n/a")
        lines.append(f"| {s} | {seeds} | {f(pk, pn)} | {halves[0]} vs {halves[1]} | "
                     f"{f(hk, hn)} |")
    f = (lambda k, n: f"**{k}/{n} = {100 * k / n:.1f} %**" if n else "n/a")
    lines.append(f"| pooled | | {f(*tot['pair'])} | | {f(*tot['half'])} |")
    return lines


def report(paths: list[Path], emit: bool = False) -> str:
    t0 = time.time()
    data = load(paths)
    truth = {s: measured_directions(ds) for s, ds in data.items()}
    out = [f"Corpus: {len(data)} setting(s): " + ", ".join(
        f"{s} ({dict(ds.sizes)['dense_seed']} dense seeds, "
        f"{int(np.isin(truth[s].values, ('hotter', 'colder', 'keep')).sum())} scored)"
        for s, ds in data.items()), ""]
    out += ["Truth per setting (paired t-test, alpha 0.05): hotter / colder / keep / not scored",
            ""]
    for s, t in truth.items():
        v = t.values.astype(str)
        out.append(f"- {s}: " + " / ".join(str(int((v == m).sum())) for m in
                                            ("hotter", "colder", "keep", "")))
    adv, fitted = held_out(data, truth)
    settings = list(data)
    pooled = {}
    out += ["", "## Held-out advice accuracy (95 % Wilson) and sign tests vs the naive rules",
            "", "| rule | setting | advice right | naive: accuracy (wins/losses, sign p) |",
            "|---|---|---|---|"]
    for name, per in adv.items():
        for s in settings:
            _, line = score_line(per[s], truth[s].values)
            out.append(f"| {name} | {s} | {line} |")
        a = np.concatenate([np.ravel(per[s]) for s in settings])
        tr = np.concatenate([np.ravel(truth[s].values) for s in settings])
        sc, line = score_line(a, tr)
        pooled[name] = sc
        out.append(f"| **{name}** | **pooled** | {line} |")
    nthr = {n: len(RULES[CALIBRATED.get(n, n)].thresholds) for n in adv}
    best = max(adv, key=lambda n: (pooled[n]["accuracy"], -nthr[n]))
    out += ["", f"Default by pooled held-out accuracy: **{best}** "
                f"({100 * pooled[best]['accuracy']:.1f} %)."]
    for name, fit in fitted.items():
        out.append(f"- {name}: thresholds per held-out setting: " + "; ".join(
            f"{g}: " + ", ".join(f"{k}={v:g}" for k, v in p["thresholds"].items())
            for g, p in fit.scores["per_group"].items()) + "; fitted on all: " + ", ".join(
            f"{k}={v:g}" for k, v in fit.thresholds.items()))
    out += ["", "## Sensitivity of the truth (pooled, same held-out advice)", "",
            "| rule | t-test alpha 0.05 | Wilcoxon alpha 0.05 | t-test alpha 0.10 |",
            "|---|---|---|---|"]
    alt = {"wilcoxon": {s: measured_directions(ds, test="wilcoxon") for s, ds in data.items()},
           "a10": {s: measured_directions(ds, alpha=0.10) for s, ds in data.items()}}
    for name, per in adv.items():
        a = np.concatenate([np.ravel(per[s]) for s in settings])
        cols = []
        for tr in (truth, alt["wilcoxon"], alt["a10"]):
            sc = score_directions(a, np.concatenate([np.ravel(tr[s].values) for s in settings]))
            cols.append(_pct(sc["k"], sc["n"], *sc["wilson"]))
        out.append(f"| {name} | " + " | ".join(cols) + " |")
    a = np.concatenate([np.ravel(adv[best][s]) for s in settings])
    tr = np.concatenate([np.ravel(truth[s].values) for s in settings])
    moves = ("hotter", "colder", "keep")
    out += ["", f"## Where {best} misses (pooled held-out; rows: truth, columns: advice)", "",
            "| truth \\ advice | hotter | colder | keep | none (undetermined) |",
            "|---|---|---|---|---|"]
    for m in moves:
        row = a[tr == m]
        out.append(f"| {m} | " + " | ".join(str(int(np.sum(row == x))) for x in moves)
                   + f" | {int(np.sum([x is None for x in row]))} |")
    rule = fitted.get(best) or RULES[best]
    out += ["", f"## Reproducibility across dense seeds ({best}, thresholds as shipped)", ""]
    out += reproducibility(data, rule)
    if emit:
        out += ["", "Corpus scores of the shipped rules (for RULES[...].scores['corpus']):"]
        for name in FIXED:
            sc = pooled[name]
            out.append(f"{name}: " + json.dumps({
                "held_out_advice": round(sc["accuracy"], 6), "k": sc["k"], "n": sc["n"],
                "wilson": [round(x, 6) for x in sc["wilson"]], "settings": settings}))
        dicts = []
        for name, fit in fitted.items():
            sc = pooled[name]
            dicts.append(fit.replace(
                description=f"{RULES[CALIBRATED[name]].description} Thresholds fitted to the "
                            "measured directions of the validation corpus.",
                provenance={"calibrated_on": settings, "target": "directions",
                            "data": "validation/corpus (docs/validation_protocol.md)",
                            "method": fit.provenance["method"]},
                scores={**fit.scores, "pooled_held_out_advice": sc["accuracy"],
                        "pooled_held_out_wilson": list(sc["wilson"]),
                        "pooled_n": sc["n"], "note": "leave-one-setting-out on the corpus"}
            ).to_dict())
        out += ["", "Rule dicts:", json.dumps(dicts, indent=1)]
    out.append(f"\n({time.time() - t0:.0f} s)")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path, help="settings (default: validation/corpus)")
    ap.add_argument("--markdown", type=Path, help="also write the report here")
    ap.add_argument("--emit", action="store_true", help="print the calibrated rule dicts")
    args = ap.parse_args(argv)
    paths = args.files or sorted(CORPUS.glob("*.nc"))
    if not paths:
        sys.exit(f"no settings: pass .nc files or run benchmarks/make_corpus.py ({CORPUS})")
    text = report(paths, args.emit)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
