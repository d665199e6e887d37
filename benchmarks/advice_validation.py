"""Does the advice point the way the retrained test error improves?  (issue #5, item 3)

For every cell of a finished sweep with one temperature axis (default: the embedded quick sweep,
``runs/quick``), compare the direction the three-regime rule advises with the direction that
actually lowers the retrained test error in the cell's density column (see
:func:`threeregime.analysis.validation.validate_advice`), and score the naive rules "always hotter",
"always colder", "always keep" the same way.

Usage::

    python benchmarks/advice_validation.py [RESULTS.nc | SWEEP_DIR]
        [--calibrate-on CALIBRATION.nc] [--z 1.0] [--markdown docs/advice_validation.md]

``--calibrate-on`` fits the absolute CKA threshold of the single-model rule on ANOTHER sweep
(default: the quick sweep with dense seed 1) -- how :data:`threeregime.analysis.rules.LEGACY_DEFAULTS`
``tau_cka`` was chosen -- so that the agreement reported on the validated sweep is held out.
Reads results only: no torch, seconds.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from threeregime import open_sweep
from threeregime.analysis.regimes import classify
from threeregime.analysis.rules import LEGACY_DEFAULTS as DEFAULTS
from threeregime.analysis.validation import validate_advice


def calibrate_tau_cka(cal) -> dict:
    """Fit ``tau_cka`` on a CALIBRATION sweep (another dense seed than the one validated on).

    Candidates are the midpoints between consecutive softmax-CKA cell means of the calibration
    sweep; the score is the agreement of the single-model advice with the direction that lowers
    the retrained test error (``validate_advice(cal, tau_cka=t)``); among equally good
    thresholds the lowest is kept (rounded to 3 decimals).
    """
    c = np.unique(np.round(classify(cal)["cka_mean"].values.ravel(), 6))
    c = c[np.isfinite(c)]
    cand = np.round((c[:-1] + c[1:]) / 2, 3)
    scores = np.array([validate_advice(cal, tau_cka=float(t))["agreement"] for t in cand])
    best = cand[scores == scores.max()]
    return {"tau_cka": float(best.min()), "agreement": float(scores.max()),
            "plateau": [float(best.min()), float(best.max())], "n_candidates": int(cand.size)}


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


def report(path: str, z: float, calibrate_on: str | None) -> str:
    ds = open_sweep(path)
    lines = [f"Advice validation on `{path}` (sweep `{ds.attrs.get('sweep_name', '?')}`)", ""]
    if calibrate_on:
        cal = calibrate_tau_cka(open_sweep(calibrate_on))
        lines += ["### Calibration of tau_cka (on a held-out dense seed)", "",
                  f"On `{calibrate_on}`: best absolute threshold {cal['tau_cka']:.3f} (plateau "
                  f"{cal['plateau'][0]:.3f}-{cal['plateau'][1]:.3f} of {cal['n_candidates']} "
                  f"candidates), agreement {100 * cal['agreement']:.0f} % there. Library "
                  f"default: {DEFAULTS['tau_cka']:g}.", ""]
    runs = {"advise (absolute CKA rule, defaults tau_lmc="
            f"{DEFAULTS['tau_lmc']:g}, tau_cka={DEFAULTS['tau_cka']:g})":
                validate_advice(ds, z=z, rule="advise"),
            "sweep classifier (legacy relative CKA rule)": validate_advice(ds, z=z,
                                                                          rule="legacy")}
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
        s = validate_advice(ds, z=zz, rule="legacy")
        lines.append(f"- z = {zz:g}: {100 * a['agreement']:.0f} / {100 * s['agreement']:.0f} / "
                     + " / ".join(f"{100 * v:.0f}" for v in a["naive"].values()) + " %")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="?", default="tests/data/quick_dense_seeds234.nc",
                    help="results .nc file or sweep folder to validate on (default: the quick "
                    "sweep with dense seeds 2, 3, 4 -- sweeps/quick_validation.yaml -- shipped "
                    "in tests/data)")
    ap.add_argument("--z", type=float, default=1.0,
                    help="noise margin of 'keep' in standard errors (default 1)")
    ap.add_argument("--calibrate-on", default="tests/data/quick_dense_seed1.nc",
                    help="sweep to fit tau_cka on (default: the quick sweep with dense seed "
                    "1, sweeps/quick_calibration.yaml); 'none' to skip")
    ap.add_argument("--markdown", help="also write the report to this file")
    args = ap.parse_args(argv)
    cal = None if args.calibrate_on in ("", "none") else args.calibrate_on
    text = report(args.results, args.z, cal)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
