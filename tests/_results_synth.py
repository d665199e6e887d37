"""Synthetic sweep Datasets with known regimes, shared by the results-side tests."""
from __future__ import annotations

import numpy as np

from threeregime.analysis import regimes
from threeregime.results.storage import combine_points, make_point_dataset

EPOCHS = [5, 10, 20, 40]            # temperature, hotter = decreasing
DENSITY = [0.05, 0.1, 0.2, 0.5]     # load
# rows = epochs (hot -> cold), cols = density (low -> high); 0 = I, 1 = II-A, 2 = II-B
TRUTH = np.array([[1, 1, 1, 1],
                  [2, 2, 1, 2],
                  [0, 0, 2, 2],
                  [0, 0, 2, 2]], dtype=np.int8)
#: the labels by the paper's construction (the default rule): the LMC step between the second
#: and third temperature is far outside the seed noise, so every Regime II cell hot of it is
#: II-A; TRUTH's hot II-B cells (row 1) are what a CKA split without a step gives (legacy rule)
STEP_TRUTH = np.where(np.arange(len(EPOCHS))[:, None] < 2, np.where(TRUTH == 0, 0, 1), TRUTH)
LMC = {0: -0.10, 1: 0.0, 2: 0.0}
CKA = {0: 0.60, 1: 0.80, 2: 0.95}


def synthetic_sweep(seed=0, *, lmc_sd=0.003, cka_sd=0.01, dense_seeds=(0, 1, 2),
                    retrain_seeds=(0, 1, 2), skip=(), status=None, classify=False,
                    attrs=None, truth=TRUTH, epochs=EPOCHS, density=DENSITY):
    """Sweep Dataset over (epochs, density, dense_seed, ...) whose cells follow ``truth``.

    ``skip``: (epochs, density, dense_seed) points left out (missing); ``status``: dict of
    such points -> status string.
    """
    rng = np.random.default_rng(seed)
    k = len(retrain_seeds)
    p = k * (k - 1) // 2
    pts = []
    for i, e in enumerate(epochs):
        for j, d in enumerate(density):
            lab = int(truth[i, j])
            for s in dense_seeds:
                if (e, d, s) in skip:
                    continue
                te = 0.10 + 0.02 * i + rng.normal(0, 0.002, k)
                pts.append(({"epochs": e, "density": d, "dense_seed": s}, make_point_dataset(
                    retrain_seeds=retrain_seeds, test_error=te, train_error=te / 3,
                    dense_test_error=0.08, dense_train_error=0.01, realized_density=d,
                    status=(status or {}).get((e, d, s), "ok"),
                    lmc=LMC[lab] + rng.normal(0, lmc_sd, p),
                    cka=np.clip(CKA[lab] + rng.normal(0, cka_sd, p), 0, 1),
                    cka_logits=np.clip(CKA[lab] + rng.normal(0, cka_sd, p), 0, 1),
                    lmc_curve=rng.uniform(0, 0.2, (p, 11, 2, 2)))))
    base = {"spec_json": '{"name":"synthetic"}', "spec_hash": "0123456789abcdef",
            "torch_version": "none"}
    base.update(attrs or {})
    out = combine_points(pts, {"epochs": list(epochs), "density": list(density)}, None,
                         list(dense_seeds), attrs=base)
    if classify is not False:   # as the sweep driver does: storage never classifies
        reg = regimes.classify(out, **({} if classify is True else dict(classify)))
        out = out.assign({name: reg[name] for name in reg.data_vars})
    return out
