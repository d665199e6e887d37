# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 — Pictures of why: paths, planes and curvature
#
# **What this shows.** The regimes are defined by the *global* shape of the pruned network's
# loss landscape. Three pictures of it on the quick sweep (MNIST-1D, 1D CNN, temperature =
# dense epochs, load = density):
#
# 1. the train error along the straight line between two retrained copies of the same pruned
#    network, averaged per regime (the `lmc_curve` variable of the sweep): a bump is a barrier;
# 2. the loss on a random 2-D plane around one retrained sparse model, with the PyPI
#    `loss-landscapes` package, for a cold and a hot dense model at the lowest density;
# 3. the Hessian trace and top eigenvalue (local sharpness) across the phase diagram.
#
# **How long.** Full setting: 3 minutes measured (173 s, on a loaded 2-core machine) when
# `runs/quick` holds the trained models: re-measuring 20 points with the Hessian (60 models x
# 20 Hutchinson probes on 512 examples) plus two 20 x 20 loss planes; add the quick sweep
# (~10 minutes measured, notebook 01) if it is not there. Tiny setting
# (`THREEREGIME_NOTEBOOK_TINY=1`): about 20 seconds.
#
# **The tiny setting is a smoke run.** A few hundred training examples and a few epochs: the
# models stay near chance (about 90 % test error), so the tables say `undetermined` and the
# diagrams mark every cell "near chance". It checks that every cell runs; it does not show the three
# regimes. Unset `THREEREGIME_NOTEBOOK_TINY` for the real pictures.

# %% tags=["parameters"]
import os

TINY = os.environ.get("THREEREGIME_NOTEBOOK_TINY", "") == "1"
PLANE_STEPS = 6 if TINY else 20       # even; the plane is PLANE_STEPS x PLANE_STEPS evaluations
PLANE_DISTANCE = 5.0                  # loss-landscapes: the plane spans +-||theta|| / (2 distance)
PLANE_EXAMPLES = 128 if TINY else 1000   # training examples the loss is evaluated on
WORKERS = 1 if TINY else 2            # local worker processes of the sweep (one torch thread each)
RUNS_DIR = os.environ.get("THREEREGIME_NOTEBOOK_RUNS")   # None: <repo>/runs

# %%
import copy
import dataclasses

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FormatStrFormatter, MaxNLocator
import torch
from _nbsetup import run_sweep, setup   # notebooks/_nbsetup.py: shared set-up

import threeregime as tr
from threeregime.sweep.plan import plan_sweep
from threeregime.analysis.plotting import PhaseDiagram, plot_lmc_curves
from threeregime.analysis.regimes import decode

torch.set_num_threads(1)
ROOT, RUNS = setup("nb06", TINY, RUNS_DIR)
if TINY:
    sweep = tr.load_yaml(ROOT / "sweeps" / "smoke.yaml")
    hessian = {"hessian": True, "hessian_probes": 4, "hessian_n": 128}
else:
    sweep = tr.load_yaml(ROOT / "sweeps" / "quick.yaml")
    hessian = {"hessian": True}      # 20 Rademacher probes on 512 training examples

# %% [markdown]
# The Hessian is not measured by default (it is the costly part). Asking for it changes only the
# *measurement* stage: dense runs and retrained models are stored under hashes that do not
# include what is measured, so in `runs/quick` this re-measures the existing retrained models and
# trains nothing.

# %%
spec = dataclasses.replace(sweep, base=dataclasses.replace(
    sweep.base, measure=dataclasses.replace(sweep.base.measure, **hessian)))
out = RUNS / spec.name
ds = run_sweep(spec, RUNS, workers=WORKERS)   # into out = RUNS / spec.name, with progress bars
print(tr.sweep_status(out))
decode(ds["regime"]).to_pandas()

# %% [markdown]
# ## 1. Along the line between two retrained copies
#
# For every pair of retraining seeds, `lmc_curve` holds the error and loss at 11 points of
# `(1 - t) theta_a + t theta_b`, on train and test. Regime I curves bulge: the two copies
# sit in different basins. Regime II curves stay flat.

# %%
fig, axs = plt.subplots(1, 3, figsize=(9.5, 3.4), layout="constrained")
plot_lmc_curves(ds, split="train", quantity="error", by="regime", ax=axs[0])
plot_lmc_curves(ds, split="test", quantity="loss", by="regime", ax=axs[1])
cells = plot_lmc_curves(ds, split="train", quantity="error", by="cell", ax=axs[2])
for ax, title in zip(axs, ("train error, mean per regime", "test loss, mean per regime",
                           "train error, one curve per cell")):
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("t (0: model a, 1: model b)")
    ax.xaxis.set_major_locator(MaxNLocator(3))

# %% [markdown]
# ## 2. A random plane around one retrained model
#
# Two models from the lowest-density column: the one pruned from the coldest dense snapshot
# (most epochs; in the paper, Regime I) and the one from the hottest (fewest epochs). We load the
# retrained model of seed 0 from the sweep directory (`retrain/<key>.pt`, with its mask).
#
# Three details matter for a sparse model and for `loss-landscapes` 3.0.6:
#
# * the plane must stay in the pruned subspace, so the mask is applied through a
#   parametrization (`weight = original * mask`): the plane's coordinates on pruned weights
#   have no effect. (Its directions are drawn on all coordinates and then filter-normalized, so
#   in the pruned layers the effective step is smaller than the nominal one, equally for both
#   models.)
# * `random_plane` moves the start model's parameters in place: we hand it a deep copy;
# * it does not touch BatchNorm statistics: the metric below re-estimates them at every point
#   of the plane when the model has BatchNorm (the quick sweep's CNN has none, so this is
#   only a guard). Its directions come from the global torch RNG: we fork and seed it;
# * its grid is not aligned: walking the plane in a serpentine, it evaluates the even rows at
#   offsets `j + 1 - steps/2` along the second direction and the odd rows at `j - steps/2`
#   (checked on a linear model whose weights the metric records), so the returned matrix is not
#   a regular grid and the start model is not at its centre. `aligned()` below puts every value
#   at its true coordinates and keeps the rows' common support; with an even number of steps
#   the start model is then a grid point.

# %%
from loss_landscapes import point, random_plane
from loss_landscapes.metrics import Metric
from torch.nn.utils import parametrize

data = tr.load_data(spec.base.data)
x_eval, y_eval = data.train.x[:PLANE_EXAMPLES], data.train.y[:PLANE_EXAMPLES]
plan = plan_sweep(spec)
dense_seed = spec.dense_seeds[0]


class _Mask(torch.nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.register_buffer("mask", mask.to(torch.float32))

    def forward(self, w):
        return w * self.mask


def retrained_model(coords: dict, seed_index: int = 0):
    """The retrained sparse model of one cell, masked through a parametrization, eval mode."""
    job = next(pj for pj in plan.points if pj.coords["dense_seed"] == dense_seed
               and all(np.isclose(pj.coords[k], v) for k, v in coords.items()))
    art = torch.load(out / "retrain" / f"{job.retrain_keys[seed_index]}.pt", map_location="cpu",
                     weights_only=False)
    model = tr.build_model(spec.base.model, data.input_shape, data.num_classes, seed=0)
    model.load_state_dict(art["state"])
    for name, mask in art["mask"].items():
        module_name, _, pname = name.rpartition(".")
        parametrize.register_parametrization(model.get_submodule(module_name), pname,
                                             _Mask(mask))
    return model.eval()


class TrainLoss(Metric):
    """Cross-entropy on a fixed training subset, BatchNorm statistics re-estimated first."""

    def __init__(self, x, y, bn_x=None):
        super().__init__()
        self.x, self.y, self.bn_x = x, y, (x if bn_x is None else bn_x)

    def __call__(self, model_wrapper) -> float:
        model = model_wrapper.get_modules()[0]
        bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        with torch.no_grad():
            if bns:
                for m in bns:
                    m.reset_running_stats()
                    m.momentum = None            # cumulative average over the pass
                model.train()
                model(self.bn_x)
            model.eval()
            return torch.nn.functional.cross_entropy(model(self.x), self.y).item()


def aligned(plane: np.ndarray, steps: int, distance: float):
    """Values of ``random_plane`` on a regular grid: (x offsets, y offsets, values[x, y]).

    Offsets are in units of the start model's norm ||theta|| (one step = ||theta|| /
    (distance * steps)). Rows i are offsets ``i - steps/2`` along the first direction; the even
    rows sampled ``j + 1 - steps/2`` and the odd rows ``j - steps/2`` along the second, so the
    common support drops the last value of even rows and the first of odd rows.
    """
    plane = np.asarray(plane, dtype=float)
    half = steps // 2
    rows = [plane[i, :-1] if i % 2 == 0 else plane[i, 1:] for i in range(steps)]
    unit = 1.0 / (distance * steps)
    x = (np.arange(steps) - half) * unit
    y = (np.arange(steps - 1) - (half - 1)) * unit
    return x, y, np.stack(rows)


lowest = float(ds["density"].min())
cases = {"cold": int(ds["epochs"].max()), "hot": int(ds["epochs"].min())}
planes = {}
for label, epochs in cases.items():
    model = retrained_model({"epochs": epochs, "density": lowest})
    with torch.random.fork_rng():
        torch.manual_seed(0)
        raw = random_plane(copy.deepcopy(model), TrainLoss(x_eval, y_eval),
                           distance=PLANE_DISTANCE, steps=PLANE_STEPS,
                           normalization="filter", deepcopy_model=True)
    planes[label] = aligned(raw, PLANE_STEPS, PLANE_DISTANCE)
    centre = point(copy.deepcopy(model), TrainLoss(x_eval, y_eval))     # the model itself
    regime = str(decode(ds["regime"].sel(epochs=epochs, density=lowest)).item())
    cases[label] = (epochs, regime)
    x, y, z = planes[label]
    i0, j0 = int(np.argmin(abs(x))), int(np.argmin(abs(y)))
    print(f"{label}: {epochs} epochs, density {lowest:g}, regime {regime}; train loss of the "
          f"model {centre:.4f}, at the plane's origin {z[i0, j0]:.4f}")

# %%
def decimals(lo: float, hi: float) -> FormatStrFormatter:
    """Tick labels with enough decimals to tell ticks across [lo, hi] apart, no offset."""
    return FormatStrFormatter(f"%.{max(0, 1 - int(np.floor(np.log10(max(hi - lo, 1e-12)))))}f")


fig, axs = plt.subplots(1, 3, figsize=(9.5, 3.3), layout="constrained")
for ax, (label, (x, y, z)) in zip(axs, planes.items()):
    # each plane's own range: around a trained model the loss may vary in the 4th decimal
    levels = np.linspace(np.nanmin(z), np.nanmax(z), 15)
    cs = ax.contourf(x, y, z.T, levels=levels, cmap="viridis")
    ax.plot(0, 0, "w+", ms=10)
    epochs, regime = cases[label]
    ax.set_title(f"{label}: {epochs} epochs ({regime})", fontsize=10)
    ax.set_ylabel("direction 2")
    cb = fig.colorbar(cs, ax=ax, format=decimals(np.nanmin(z), np.nanmax(z)))
    cb.locator = MaxNLocator(5, steps=[1, 2, 5, 10])
    cb.update_ticks()
for label, (x, y, z) in planes.items():
    axs[2].plot(x, z[:, int(np.argmin(abs(y)))], marker=".", label=f"{label} ({cases[label][1]})")
zs = np.concatenate([z.ravel() for _, _, z in planes.values()])
axs[2].yaxis.set_major_locator(MaxNLocator(5, steps=[1, 2, 5, 10]))
axs[2].yaxis.set_major_formatter(decimals(np.nanmin(zs), np.nanmax(zs)))
axs[2].set_ylabel("train loss")
axs[2].set_title("slice through the centre", fontsize=10)
fig.legend(loc="outside lower right", fontsize=8, ncols=2)   # under the panels, off the curves
for ax in axs:
    ax.set_xlabel("direction 1 (x ||theta||)")
    ax.xaxis.set_major_locator(MaxNLocator(4))
    if ax is not axs[2]:
        ax.yaxis.set_major_locator(MaxNLocator(5))
fig.suptitle(f"train loss on a random plane, density {lowest:g}", fontsize=11);

# %% [markdown]
# A random plane shows the *local* basin around one model: its width says how sharp the minimum
# is, not whether a second retraining lands in the same basin -- that is what the line between
# two copies (section 1) measures, and why LMC, not the plane, separates Regime I from II.
#
# ## 3. Curvature across the phase diagram
#
# Hutchinson's estimate of the Hessian trace (with its standard error, from the Rademacher
# probes) and the top eigenvalue by power iteration, of every retrained model, restricted to the
# unpruned weights; averaged over the retrained models of each cell.

# %%
fig, axs = plt.subplots(1, 2, figsize=(9.5, 3.6), layout="constrained")
for ax, var in zip(axs, ("hessian_trace", "hessian_top_eig")):
    PhaseDiagram.from_dataset(ds, var=var).plot(ax=ax, fmt="{:.3g}")

# %%
rel = float((ds["hessian_trace_stderr"] / abs(ds["hessian_trace"])).median())
print(f"relative standard error of the trace estimates (median over models): {rel:.2f}")
table = ds[["hessian_trace", "lmc", "test_error"]].mean(
    ["dense_seed", "retrain_seed", "pair"]).to_dataframe()
table["regime"] = decode(ds["regime"]).to_series()
table.round({"hessian_trace": 3, "lmc": 4, "test_error": 4})

# %% [markdown]
# The predecessor paper (Yang et al., NeurIPS 2021) found that local sharpness alone does not
# tell the phases apart: sharp and flat minima occur on both sides of the connectivity
# boundary. Compare the trace panel with the regime boundaries above before reading a
# trend into it.
