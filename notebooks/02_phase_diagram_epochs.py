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
# # 02 — The paper's Figure 2: temperature = training epochs, load = density
#
# **What this shows.** The four panels of Zhou et al. (ICML 2023), Figure 2 -- test error,
# normalized test error (minus the best of its density column), linear mode connectivity and CKA
# of the retrained pairs -- with the regime boundaries drawn on each, for the embedded default
# (`sweeps/quick.yaml`, MNIST-1D, 1D CNN). Then the facts the paper reads off the figure: where the
# best temperature of each density column sits, and how much the labels depend on the LMC
# threshold. Set `SETTING = "cifar10"` to run the paper's own setting
# (`sweeps/cifar10_preresnet20_epochs.yaml`, CIFAR-10 / PreResNet-20) if you have the CIFAR-10
# python batches and a GPU.
#
# **How long.** Full setting (MNIST-1D): 15 s measured on a 2-core CPU when `runs/quick` already
# holds the quick sweep (notebook 01 or `make demo`); from scratch add the sweep itself, about
# 3 minutes (see notebook 01). CIFAR-10: 3 dense runs and 1,296 retrainings of 160
# epochs -- GPU-days, not a laptop job. Tiny setting (`THREEREGIME_NOTEBOOK_TINY=1`): about 15
# seconds.
#
# **The tiny setting is a smoke run.** A few hundred training examples and a few epochs: the
# models stay near chance (about 90 % test error), so the tables say `undetermined` and the
# diagrams mark every cell "near chance". It checks that every cell runs; it does not show the three
# regimes. Unset `THREEREGIME_NOTEBOOK_TINY` for the real pictures.

# %% tags=["parameters"]
import os

TINY = os.environ.get("THREEREGIME_NOTEBOOK_TINY", "") == "1"
SETTING = "mnist1d"          # "mnist1d" (embedded default) or "cifar10" (the paper; needs data)
CIFAR10_ROOT = None          # folder with data_batch_1..5 and test_batch; None: as in the YAML
DEVICE = "auto"              # "auto" uses CUDA when present
WORKERS = 1 if TINY else 2
RUNS_DIR = os.environ.get("THREEREGIME_NOTEBOOK_RUNS")   # None: <repo>/runs

# %%
import dataclasses

import numpy as np
from _nbsetup import run_sweep, setup   # notebooks/_nbsetup.py: shared set-up

import threeregime as tr
from threeregime.sweep.plan import plan_sweep
from threeregime.analysis.plotting import plot_phase_diagrams, save
from threeregime.analysis.regimes import decode

ROOT, RUNS = setup("nb02", TINY, RUNS_DIR)

cifar = tr.load_yaml(ROOT / "sweeps" / "cifar10_preresnet20_epochs.yaml")
if CIFAR10_ROOT is not None:
    cifar = dataclasses.replace(cifar, base=dataclasses.replace(
        cifar.base, data=dataclasses.replace(cifar.base.data, root=str(CIFAR10_ROOT))))

if TINY:
    spec = tr.load_yaml(ROOT / "sweeps" / "smoke.yaml")
elif SETTING == "cifar10":
    tr.load_data(cifar.base.data)    # fails here, with what to put where, if the files are missing
    spec = cifar
elif SETTING == "mnist1d":
    spec = tr.load_yaml(ROOT / "sweeps" / "quick.yaml")
else:
    raise ValueError(f"SETTING must be 'mnist1d' or 'cifar10'; got {SETTING!r}")
print(spec.name, "|", spec.description, "| grid", dict(zip(spec.axes, spec.shape)))

# %% [markdown]
# What the paper's setting costs, from the plan alone (nothing is trained here). The epochs axis
# is served by checkpoints of one dense run per seed, so the cost is in the retrainings:

# %%
for s in (spec, cifar):
    plan = plan_sweep(s)
    print(f"{s.name:28s} dense runs: {len(plan.dense):3d}   retrainings: {len(plan.retrain):5d}"
          f" x {s.base.retrain.epochs} epochs   grid points: {len(plan.points)}")

# %%
ds = run_sweep(spec, RUNS, workers=WORKERS, device=DEVICE)
print(tr.sweep_status(RUNS / spec.name))

# %% [markdown]
# ## Figure 2
#
# Hotter (fewer epochs) at the top, higher load (density) to the right; the black lines separate
# the regimes, hatched cells are undetermined.

# %%
fig, panels = plot_phase_diagrams(ds)
print("saved", save(fig, RUNS / spec.name / "figure2.png"))

# %% [markdown]
# How to read it: in Regime I (low density; in the paper, low temperature too) the LMC panel
# shows a barrier (negative `mc`) between two retrainings of the same pruned network, and the
# normalized test error is large: there, a *hotter* dense model (fewer epochs) prunes better.
# In Regime II the pairs are connected (`mc ~ 0`); CKA then separates II-A (less similar
# outputs: cool down) from II-B (most similar: keep).
#
# ## The best temperature of each density column
#
# The paper's headline fact: the best dense temperature moves from hot at low density to cold
# at high density.

# %%
te = ds["test_error"].mean(["dense_seed", "retrain_seed"])
best = te.idxmin("epochs")
for d in ds["density"].values:
    col = te.sel(density=d)
    print(f"density {d:5.2f}: best epochs {int(best.sel(density=d)):3d}"
          f"  (test error {100 * float(col.min()):5.2f} %, worst {100 * float(col.max()):5.2f} %)")

# %% [markdown]
# And the connectivity facts (SPEC section 6): at the highest density `mc` should be about 0 for
# every temperature; at the lowest density it should fall once the dense run has passed its first
# learning-rate drop (epoch 20 of 40 here).

# %%
mc = 100 * ds["lmc"].mean(["dense_seed", "pair"])
lo, hi = ds["density"].values.min(), ds["density"].values.max()
print("mc (%) at the lowest density :", np.round(mc.sel(density=lo).values, 2))
print("mc (%) at the highest density:", np.round(mc.sel(density=hi).values, 2))
print("epochs                       :", ds["epochs"].values)

# %% [markdown]
# ## How much the labels depend on the threshold
#
# The paper drew its boundaries by hand; the default rule (`step_v2`) calls a barrier
# significant when mc is below zero beyond the 5 % level of a t test over dense-seed means and
# larger than `barrier_chance` of chance error (1.7 %, fitted on the paper's own Figure 2).
# Labels that flip between reasonable thresholds deserve less trust than their neighbours;
# `regime_uncertain` marks the cells whose label flips across dense seeds or whose barrier is
# within one standard error of the threshold, and `regime_confidence` is the fraction of dense
# seeds that give the pooled label. The default before issue 18 (`paper_step`, a fitted z
# threshold on the barrier) and the first release's rule (`legacy`, a fixed mc cut-off and a CKA
# midpoint per column) are shown last for comparison.

# %%
import dataclasses

from threeregime.analysis.rules import get_rule

step = get_rule("step_v2")
for b in (0.0, 0.0167, 0.05):
    rule = dataclasses.replace(step, name=f"step_v2_b{b}",
                               thresholds={**step.thresholds, "barrier_chance": b})
    print(f"barrier_chance = {b}")
    print(decode(tr.classify(ds, rule=rule)["regime"]).to_pandas(), end="\n\n")
print("paper_step (the default before issue 18)")
print(decode(tr.classify(ds, rule="paper_step")["regime"]).to_pandas(), end="\n\n")
print("legacy rule (first release)")
print(decode(tr.classify(ds, rule="legacy")["regime"]).to_pandas())

# %%
artists = ds.threeregime.plot("regime_confidence", fmt="{:.2f}")
