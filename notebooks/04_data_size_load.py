# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 — Data size as the load
#
# **What this shows.** Load is not only density: the paper's second load-like parameter is the
# amount of training data the pruned network must fit. Here density is fixed at 10 % and the
# load axis is the number of MNIST-1D training examples (500 to 4,000), with dense epochs as the
# temperature (`sweeps/mnist1d_train_size.yaml`). We draw the phase diagram with train size on
# the horizontal axis and ask where the best temperature of each data size sits.
#
# **How long.** Full setting: about 5 minutes on a 2-core laptop CPU (estimated: 4 dense runs
# and 48 retrainings, most of them on fewer than 4,000 examples, against the quick sweep's 1 dense
# run and 60 retrainings on 4,000); seconds when `runs/mnist1d_train_size` exists. Tiny setting
# (`THREEREGIME_NOTEBOOK_TINY=1`): about 20 seconds.
#
# **The tiny setting is a smoke run.** A few hundred training examples and a few epochs: the
# models stay near chance (about 90 % test error), so the tables say `undetermined` and the
# diagrams mark every cell "near chance". It checks that every cell runs; it does not show the three
# regimes. Unset `THREEREGIME_NOTEBOOK_TINY` for the real pictures.

# %% tags=["parameters"]
import os

TINY = os.environ.get("THREEREGIME_NOTEBOOK_TINY", "") == "1"
WORKERS = 1 if TINY else 2
RUNS_DIR = os.environ.get("THREEREGIME_NOTEBOOK_RUNS")   # None: <repo>/runs

# %%
from _nbsetup import run_sweep, setup, smoke_sweep   # notebooks/_nbsetup.py: shared set-up

import threeregime as tr
from threeregime.analysis.plotting import plot_phase_diagrams
from threeregime.analysis.regimes import decode

ROOT, RUNS = setup("nb04", TINY, RUNS_DIR)
if TINY:   # sweeps/smoke.yaml's base at 10 % density, data size as the load
    spec = smoke_sweep(ROOT, "tiny_train_size", {"epochs": [2, 4], "train_size": [128, 256]},
                       prune={"density": 0.1})
else:
    spec = tr.load_yaml(ROOT / "sweeps" / "mnist1d_train_size.yaml")
print(tr.dump_yaml(spec))

# %% [markdown]
# Each training-set size is a seeded subsample of the same pool (nested: the 500 examples are
# among the 1,000), so the columns differ only in how much data the dense and the retrained
# networks see. Each size needs its own dense run; the epochs axis is again served by snapshots.

# %%
ds = run_sweep(spec, RUNS, workers=WORKERS)
print(tr.sweep_status(RUNS / spec.name))
print({d: ds[d].attrs["role"] for d in spec.axes})

# %%
fig, _ = plot_phase_diagrams(ds, x="train_size", y="epochs")

# %% [markdown]
# With one dense seed (`dense_seeds: [0]`) the labels below cannot show Regime I or split
# II-A from II-B: the dense seed is the statistical unit, and one unit has no spread to test a
# barrier against (notebook 03 says more). Read the LMC and test-error panels; add dense seeds
# to the spec to label them.

# %%
decode(ds["regime"]).to_pandas()

# %% [markdown]
# Test error (%) and the best temperature per data size. More data at fixed density is a
# heavier load, so the three-regime picture predicts the same movement as along density: hot
# is best with little data, cold with more.

# %%
te = ds["test_error"].mean(["dense_seed", "retrain_seed"])
print((100 * te).round(2).to_pandas(), end="\n\n")
print("best epochs per train size:", te.idxmin("epochs").to_pandas().to_dict())

# %%
print("mc (%) of the retrained pairs")
(100 * ds["lmc"].mean(["dense_seed", "pair"])).round(2).to_pandas()
