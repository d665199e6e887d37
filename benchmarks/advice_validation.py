"""Does the advice point the way the retrained test error improves?  (issue #5, item 3)

For every cell of a finished sweep with one temperature axis (default: the embedded quick sweep,
``runs/quick``), compare the direction the three-regime rule advises with the direction that
actually lowers the retrained test error in the cell's density column (see
:func:`threeregime.advise.validate_advice`), and score the naive rules "always hotter",
"always colder", "always keep" the same way.

Usage::

    python benchmarks/advice_validation.py [RESULTS.nc | SWEEP_DIR] [--calibrate]
        [--z 1.0] [--markdown docs/advice_validation.md]

``--calibrate`` also prints the absolute CKA threshold that best reproduces the sweep
classifier's relative II-A / II-B split (how :data:`threeregime.advise.DEFAULTS` ``tau_cka`` was
chosen).  Reads results only: no torch, seconds.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from threeregime import open_sweep
from threeregime.advise import DEFAULTS, validate_advice
from threeregime.regimes import REGIME_II_A, REGIME_II_B, classify


def calibrate_tau_cka(ds) -> dict:
    """The absolute CKA threshold agreeing best with the relative rule on Regime II cells."""
    reg = classify(ds)                                  # library defaults, relative CKA rule
    lab = reg["regime"].values.ravel()
    cka = reg["cka_mean"].values.ravel()
    two = np.isin(lab, (REGIME_II_A, REGIME_II_B)) & np.isfinite(cka)
    c, is_b = cka[two], lab[two] == REGIME_II_B
    if c.size == 0:
        return {"tau_cka": float("nan"), "agreement": float("nan"), "n": 0}
    cand = np.unique(np.concatenate([c, [c.max() + 1e-9]]))
    score = np.array([np.mean((c >= t) == is_b) for t in cand])
    best = cand[score == score.max()]
    # the interval of equally good thresholds: [lowest best candidate, next cka value above]
    lo = best.min()
    below = c[c < lo]
    tau = 0.5 * (lo + below.max()) if below.size else lo
    return {"tau_cka": float(tau), "tau_cka_rounded": round(float(tau), 2),
            "agreement": float(score.max()), "n": int(c.size),
            "cka_II_A": sorted(map(float, c[~is_b])), "cka_II_B": sorted(map(float, c[is_b]))}


def _grid(out: dict, key: str, fmt=str) -> list[str]:
    temp = out["temperature"]
    cells = out["cells"]
    loads = sorted({c["density"] for c in cells})
    temps = sorted({c[temp] for c in cells})
    head = f"| {temp} \\ density | " + " | ".join(f"{d:g}" for d in loads) + " |"
    lines = [head, "|" + "---|" * (len(loads) + 1)]
    by = {(c[temp], c["density"]): c for c in cells}
    for t in temps:
        lines.append(f"| {t:g} | " + " | ".join(fmt(by[(t, d)]) if (t, d) in by else "" for d in
                                                 loads) + " |")
    return lines


def report(path: str, z: float, calibrate: bool) -> str:
    ds = open_sweep(path)
    lines = [f"Advice validation on `{path}` (sweep `{ds.attrs.get('sweep_name', '?')}`)", ""]
    if calibrate:
        cal = calibrate_tau_cka(ds)
        lines += ["### Calibration of tau_cka", "",
                  f"Regime II cells (relative rule, library defaults): {cal['n']}; best "
                  f"absolute threshold {cal.get('tau_cka', float('nan')):.4f} (rounded "
                  f"{cal.get('tau_cka_rounded')}) reproduces {100 * cal['agreement']:.0f} % of "
                  f"their II-A / II-B labels.",
                  f"CKA of II-A cells: {', '.join(f'{v:.4f}' for v in cal.get('cka_II_A', []))}",
                  f"CKA of II-B cells: {', '.join(f'{v:.4f}' for v in cal.get('cka_II_B', []))}",
                  ""]
    runs = {"advise (absolute CKA rule, defaults tau_lmc="
            f"{DEFAULTS['tau_lmc']:g}, tau_cka={DEFAULTS['tau_cka']:g})":
                validate_advice(ds, z=z, rule="advise"),
            "sweep classifier (relative CKA rule, defaults)": validate_advice(ds, z=z,
                                                                             rule="sweep")}
    first = next(iter(runs.values()))
    lines += [f"### Cells (test error % mean +/- sem over retraining seeds; truth with a "
              f"{z:g}-sem margin)", ""]
    lines += _grid(first, "cell", lambda c: f"{100 * c['test_error']:.2f} +/- "
                                            f"{100 * c['sem']:.2f}")
    lines += ["", "True direction (what lowers the test error in the column):", ""]
    lines += _grid(first, "truth", lambda c: c["truth"])
    for name, out in runs.items():
        lines += ["", f"Advised by {name}:", ""]
        lines += _grid(out, "advised", lambda c: f"{c['regime']} -> {c['advised']}")
    lines += ["", "### Agreement with the true direction", "",
              "| rule | agreement (all cells) | agreement (determined cells) | cells |",
              "|---|---|---|---|"]
    for name, out in runs.items():
        lines.append(f"| {name} | {100 * out['agreement']:.0f} % | "
                     f"{100 * out['agreement_determined']:.0f} % | {out['n_cells']} "
                     f"({out['n_determined']} determined) |")
    for d, v in first["naive"].items():
        lines.append(f"| always {d} | {100 * v:.0f} % | | {first['n_cells']} |")
    lines += ["", "The I-vs-II part alone (\"hotter\" vs anything else; naive: always hotter / "
                  "never hotter):", ""]
    for name, out in runs.items():
        c = [x for x in out["cells"] if x["truth"] != "unknown"]
        ok = sum((x["advised"] == "hotter") == (x["truth"] == "hotter") for x in c)
        hot = sum(x["truth"] == "hotter" for x in c)
        lines.append(f"- {name}: {ok}/{len(c)} = {100 * ok / len(c):.0f} % "
                     f"(naive {100 * hot / len(c):.0f} % / {100 * (len(c) - hot) / len(c):.0f} %)")
    lines += ["", "Sensitivity to the noise margin (agreement, all cells; advise / sweep / "
                  "hotter / colder / keep):", ""]
    for zz in (0.0, 0.5, 1.0, 2.0):
        a = validate_advice(ds, z=zz, rule="advise")
        s = validate_advice(ds, z=zz, rule="sweep")
        lines.append(f"- z = {zz:g}: {100 * a['agreement']:.0f} / {100 * s['agreement']:.0f} / "
                     + " / ".join(f"{100 * v:.0f}" for v in a["naive"].values()) + " %")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="?", default="runs/quick",
                    help="results .nc file or sweep folder (default runs/quick)")
    ap.add_argument("--z", type=float, default=1.0,
                    help="noise margin of 'keep' in standard errors (default 1)")
    ap.add_argument("--calibrate", action="store_true", help="also fit tau_cka")
    ap.add_argument("--markdown", help="also write the report to this file")
    args = ap.parse_args(argv)
    text = report(args.results, args.z, args.calibrate)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
