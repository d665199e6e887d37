"""How often the default rule calls a null cell Regime I, with the noise measured in the sweep.

Synthetic sweeps (``tests/_results_synth.py``) whose 16 cells all have no barrier (LMC 0 with
seed noise 0.01 per pair), 3 dense seeds x 3 retraining seeds; the default rule with the column
noise floor (``settings.noise="column"``) and with the cell's own standard error only
(``"cell"``: lmc_z is then a t with 2 dof, whose tail below -2.5 is 6.5 %).

Usage::

    python benchmarks/null_rate.py [N_SWEEPS]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _results_synth import synthetic_sweep  # noqa: E402

from threeregime.analysis.rules import classify_with_rule, get_rule  # noqa: E402


def main(n_sweeps: int = 25) -> None:
    null = np.full((4, 4), 2, dtype=np.int8)   # every cell Regime II: no barrier anywhere
    for noise in ("column", "cell"):
        rule = get_rule().replace(settings={"noise": noise})
        rate = np.mean([float((classify_with_rule(synthetic_sweep(s, truth=null, lmc_sd=0.01),
                                                  rule)["regime"] == 0).mean())
                        for s in range(n_sweeps)])
        print(f"noise={noise}: null cells labelled Regime I {rate:.3f} "
              f"({n_sweeps} sweeps x 16 cells, 3 dense seeds)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 25)
