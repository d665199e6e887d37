"""The demo's phase diagram as a Markdown table, and the agreement of two runs on disjoint seeds.

    python benchmarks/demo_table.py validation/corpus/demo_epochs.nc
    python benchmarks/demo_table.py results/quick.nc --compare validation/quick_seeds4567.nc

The table is :func:`threeregime.analysis.tables.results_table` (also ``threeregime table FILE`` and
``ds.threeregime.table()``).  Each cell: the regime under the default rule (``?`` = uncertain: the label flips across dense
seeds or the barrier is within one standard error of its threshold), the retrained test error
(mean over dense x retraining seeds, the column's best in bold), mc in % of the train error
(negative = barrier) and softmax CKA, both means over dense seeds.  ``--compare`` prints how
many labels two files share: over cells resolved (I, II-A or II-B) in both, and over cells
resolved and not uncertain in both.  No torch.
"""
from __future__ import annotations

import argparse

import numpy as np

import threeregime as tr
from threeregime.analysis.regimes import decode
from threeregime.analysis.rules import DEFAULT_RULE
from threeregime.analysis.tables import RESOLVED, results_table


def _labelled(path: str):
    ds = tr.open_sweep(path).load()
    c = tr.classify(ds)
    return ds, c, decode(c["regime"])


def table(path: str) -> str:
    """The table of :func:`threeregime.analysis.tables.results_table`, labelled by the default rule."""
    return results_table(tr.open_sweep(path).load(), rule=DEFAULT_RULE)


def compare(a: str, b: str) -> str:
    _, ca, la = _labelled(a)
    _, cb, lb = _labelled(b)
    la, lb = la.values.ravel(), lb.values.ravel()
    res = np.isin(la, RESOLVED) & np.isin(lb, RESOLVED)
    sure = res & (ca["regime_uncertain"].values.ravel() == 0) & (
        cb["regime_uncertain"].values.ravel() == 0)
    lines = []
    for what, m in (("resolved in both", res), ("resolved and not uncertain in both", sure)):
        k, n = int((la[m] == lb[m]).sum()), int(m.sum())
        lines.append(f"{what}: {k}/{n} agree" + (f" = {100 * k / n:.0f} %" if n else ""))
    diff = [f"{x} vs {y}" for x, y, m in zip(la, lb, res) if m and x != y]
    lines.append("disagreements: " + (", ".join(diff) if diff else "none"))
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--compare", metavar="NC", help="a second run of the same grid")
    args = ap.parse_args(argv)
    print(table(args.results))
    if args.compare:
        print()
        print(compare(args.results, args.compare))


if __name__ == "__main__":
    main()
