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
# # 07 — Pruning families: N:M with progressive gradient flow, channels, rewind and scratch
#
# **What this shows.** The three-regime picture was drawn for one-shot *unstructured* magnitude
# pruning followed by fine-tuning. Here the same sweep (MNIST-1D, 1D CNN; temperature = dense
# epochs, load = density) is run for the pruning users deploy, each family as an axis of one
# sweep so that the unstructured case sits next to it:
#
# - `sweeps/families_nm.yaml`: **N:M sparse training with progressive gradient flow** (masks
#   recomputed by magnitude every step, the gradient to pruned weights decaying from 1 to 0;
#   Bambhaniya et al.) at 1:8, 1:4 and 2:4 -- one pattern per density (1/8, 1/4, 1/2), so the
#   three `nm_N_M` methods together make one N:M diagram -- against one-shot magnitude pruning;
# - `sweeps/families_channel.yaml`: **structured channel pruning** (whole filters removed by the
#   L2 norm of their coupled group, the network made smaller, via torch-pruning) against
#   magnitude at the same densities;
# - `sweeps/families_retrain_mode.yaml`: magnitude pruning retrained by **finetune** (the
#   reference), **rewind** (to the dense run's epoch 1, lottery-ticket style) or **scratch**
#   (a fresh initialisation of the pruned network; Liu et al., "Rethinking the Value of Network
#   Pruning").
#
# Each family is drawn as its own phase diagram (classified on its own slice) beside the
# unstructured one, then we ask what the diagrams share: do the three regimes appear, and does
# the advice (I -> hotter, II-A -> colder, II-B -> keep) point the way the measured test error
# does? `benchmarks/families_validation.py` scores that with the pre-registered protocol;
# `docs/pruning_families.md` has the figures.
#
# **How long.** Full setting, measured on a shared 2-core CPU with one worker: the three sweeps
# from scratch take 4, 5 and 7.5 minutes (`threeregime run sweeps/families_X.yaml --out
# runs/families_X --workers 1`: 251, 314 and 446 s); with `ROBUSTNESS = True` the first run of
# this notebook then measures the corruption error of every retrained model (6.5 minutes: only
# the measure stage is new, the models are reused); after that, about a minute (reading and
# drawing). Tiny setting (`THREEREGIME_NOTEBOOK_TINY=1`): 20-30 s of CPU.
#
# **The tiny setting is a smoke run.** A few hundred training examples, a quarter-width CNN, a
# few epochs: the models stay near chance, so most cells say `undetermined` ("near chance"). It
# checks that every family, every panel (the robustness panel included: the tiny sweeps measure
# corruption error) and the scoring run; it does not show the three regimes. Unset
# `THREEREGIME_NOTEBOOK_TINY` for the real pictures.

# %% tags=["parameters"]
import os

TINY = os.environ.get("THREEREGIME_NOTEBOOK_TINY", "") == "1"
WORKERS = 1 if TINY else 2
RUNS_DIR = os.environ.get("THREEREGIME_NOTEBOOK_RUNS")   # None: <repo>/runs
ROBUSTNESS = True   # also measure the corruption error (reuses the trained models)

# %%
import matplotlib.pyplot as plt
import numpy as np
from _nbsetup import run_sweep, setup, smoke_sweep  # notebooks/_nbsetup.py: shared set-up

import threeregime as tr
import threeregime.metrics.measures  # noqa: F401  (registers the robustness measure for the specs)
from threeregime.analysis.calibrate import measured_directions, score_directions
from threeregime.analysis.plotting import PhaseDiagram, save
from threeregime.analysis.rules import DEFAULT_RULE, advice_of, label_names
from threeregime.analysis.slices import slices  # one slice per method / mode
from threeregime.spec.specs import SweepSpec, from_dict, to_dict

ROOT, RUNS = setup("nb07", TINY, RUNS_DIR)

FAMILIES = ("nm", "channel", "retrain_mode")


def tiny(spec: SweepSpec) -> SweepSpec:
    """The family sweep on sweeps/smoke.yaml's data, model and recipes, one dense seed, two
    densities (1:8 dropped), corruption severities 0 and 2 only."""
    d = to_dict(spec)
    smoke = to_dict(smoke_sweep(ROOT, "smoke", {"epochs": [2, 4]}))["base"]
    d["base"].update({k: smoke[k] for k in ("data", "model", "dense", "retrain",
                                            "retrain_seeds", "measure")})
    d["base"]["measure"]["severities"] = [0, 2]
    d.update(name=f"tiny_{spec.name}", dense_seeds=[0])
    axes = d["axes"]
    axes["epochs"], axes["density"] = [2, 4], axes["density"][-2:]
    if "prune_method" in axes:   # 1:8 keeps density 0.125, no longer on the axis
        axes["prune_method"] = [m for m in axes["prune_method"] if m != "nm_1_8"]
    return from_dict(SweepSpec, d)


def with_robustness(spec: SweepSpec) -> SweepSpec:
    """``spec`` with the corruption error measured: only the measure stage of each point is
    new (its key holds the measure spec); dense runs and retrainings are reused."""
    d = to_dict(spec)
    d["base"]["measure"]["extra"] = ["robustness"]
    return from_dict(SweepSpec, d)


specs = {f: tr.load_yaml(ROOT / "sweeps" / f"families_{f}.yaml") for f in FAMILIES}
if TINY:
    specs = {f: tiny(s) for f, s in specs.items()}
if ROBUSTNESS:
    specs = {f: with_robustness(s) for f, s in specs.items()}
for s in specs.values():
    print(f"{s.name:24s} grid {dict(zip(s.axes, s.shape))}, dense seeds {list(s.dense_seeds)}")

# %% [markdown]
# Run (or resume) the three sweeps. Stages are content-addressed: when `runs/` already holds
# them (from the command line), this only reads the results.

# %%
data = {f: run_sweep(s, RUNS, workers=WORKERS, progress=False) for f, s in specs.items()}
for f, s in specs.items():
    print(tr.sweep_status(s, RUNS / s.name))

# %% [markdown]
# One Dataset per method or retraining mode (`threeregime.analysis.slices.slices`):
# the stored regime labels of the whole sweep are dropped and every slice is classified on its
# own with the library's default rule, so that one family's change point does not decide
# another's. The `nm` slice joins 1:8, 1:4 and 2:4, each at its own density.

# %%
parts = {f: slices(ds) for f, ds in data.items()}
regimes = {f: {k: tr.classify(sl) for k, sl in p.items()} for f, p in parts.items()}
print({f: list(p) for f, p in parts.items()})


# %%
TITLES = {"test_error": "test error", "normalized_test_error": "test error - column best",
          "lmc": "LMC (mc; < 0 = barrier)", "cka": "CKA of softmax outputs",
          "corruption_error": "corrupted test error"}


def side_by_side(family, variables=("test_error", "normalized_test_error", "lmc", "cka")):
    """Rows: variables; columns: the family's slices; one colour scale per test-error row (LMC
    and CKA keep their own: scratch's barriers would wash out the others)."""
    p, reg = parts[family], regimes[family]
    cols = list(p)
    variables = [v for v in variables if v in next(iter(p.values())) or v.startswith("norm")]
    fig, axs = plt.subplots(len(variables), len(cols), squeeze=False, layout="constrained",
                            figsize=(4.4 * len(cols), 3.1 * len(variables)))
    for i, var in enumerate(variables):
        dia = [PhaseDiagram.from_dataset(p[c], x="density", y="epochs", var=var,
                                         regimes=reg[c]) for c in cols]
        vals = np.concatenate([d.values.ravel() for d in dia])
        vals = vals[np.isfinite(vals)]
        lim = {"vmin": vals.min(), "vmax": vals.max()} if vals.size and "error" in var else {}
        for j, (c, d) in enumerate(zip(cols, dia)):
            ax = axs[i, j]
            d.plot(ax=ax, key=False, title=f"{c}: {TITLES.get(var, var)}", **lim)
            # one short y label per row and x labels under the last row: the full labels are
            # taller than a row of this grid and run into each other
            ax.set_ylabel("dense epochs (hotter ↑)" if j == 0 else "")
            if i < len(variables) - 1:
                ax.set_xlabel("")
    fig.suptitle(f"{specs[family].name}: one phase diagram per slice (rule {DEFAULT_RULE})",
                 fontsize=13)
    print("saved", save(fig, RUNS / specs[family].name / "side_by_side.png"))
    return fig


# %% [markdown]
# ## Magnitude vs N:M (progressive gradient flow)
#
# Left: one-shot magnitude masks, fine-tuned. Right: N:M sparse training, 1:8 at density
# 0.125, 1:4 at 0.25, 2:4 at 0.5. The first convolution stays dense for both (its rows of 5
# weights cannot take M = 4 or 8), so density counts the other two convolutions.

# %%
fig = side_by_side("nm")

# %% [markdown]
# ## Magnitude vs structured channel pruning
#
# Same densities (fraction of prunable weights kept); the channel-pruned network is really
# smaller (`realized_density` is what the layer-uniform channel keep fraction gives).

# %%
fig = side_by_side("channel")
print("realized density (mean over cells):",
      {k: np.round(sl["realized_density"].mean(["epochs", "dense_seed"]).values, 3).tolist()
       for k, sl in parts["channel"].items()})

# %% [markdown]
# ## Finetune vs rewind vs scratch

# %%
fig = side_by_side("retrain_mode")

# %% [markdown]
# ## What the diagrams share with the unstructured case
#
# Per slice: the regime counts, the best dense temperature of each density column (the paper's
# headline fact: hot is best at low density, cold at high density), and the mean barrier `mc`
# at the lowest and highest density. A family *shares* the three-regime picture when it shows a
# barrier (Regime I) at low load that disappears at high load, and when the best temperature
# moves with load as the regimes say.

# %%
for f, p in parts.items():
    for k, sl in p.items():
        reg = regimes[f][k]["regime"]
        counts = {n: int((reg.values == c).sum()) for c, n in
                  ((0, "I"), (1, "II-A"), (2, "II-B"), (3, "unresolved"), (-1, "undet."))}
        te = sl["test_error"].where(sl["status"].broadcast_like(sl["test_error"]) == 0)
        te = te.mean(["dense_seed", "retrain_seed"])
        best = {f"{d:g}": int(te.idxmin("epochs").sel(density=d)) for d in sl["density"].values}
        mc = 100 * sl["lmc"].mean(["dense_seed", "pair"])
        lo, hi = sl["density"].values.min(), sl["density"].values.max()
        print(f"{f:>12s} {k:10s} {counts}\n{'':24s}best epochs per density {best}; mc (%) "
              f"at {lo:g}: {np.round(mc.sel(density=lo).values, 1).tolist()}, at {hi:g}: "
              f"{np.round(mc.sel(density=hi).values, 1).tolist()}")

# %% [markdown]
# **What the full setting shows** (2 dense seeds x 3 retraining seeds, labelled with `paper_step`,
# the default rule when this was read; the tables are in `docs/pruning_families.md`):
#
# - *Shared with the unstructured case*: the three regimes appear for N:M training (the joined
#   1:8 / 1:4 / 2:4 diagram: 7 cells Regime I, 1 II-A, 3 II-B, 1 unresolved) and for channel
#   pruning (3 I, 4 II-A, 4 II-B, 1 unresolved), laid out as in the paper: Regime I at the
#   lowest density, and at higher density II-A hot / II-B cold with CKA rising with epochs.
#   The 2:4 column alone (density 0.5) has no Regime I: II-A at 2 epochs, II-B from 4.
# - *Not shared*: what Regime I means. For N:M training the barrier between two retrained
#   seeds *deepens* as the dense model trains longer (1:8: `mc` -5.8 % at 2 epochs, -8.5 % at
#   40) while test error keeps falling (25.0 -> 15.6 %): colder is better where the rule says
#   hotter. N:M training recomputes its masks, and two retraining seeds end on different
#   supports (`benchmarks/families_validation.py --masks`: 47-61 % of the kept weights shared
#   at 1:8 and 1:4, 76 % at 2:4; one-shot masks share 100 %), so the barrier is partly between
#   two different sparse networks. Scratch retraining from independent random initialisations
#   is Regime I almost everywhere (`mc` -12 % to -64 %) by construction, whatever the dense
#   temperature; its test error hardly depends on it.
# - Channel pruning is *better* than unstructured magnitude at 10 % density here (best test
#   error 10.5 % vs 23.8 %), equal at 50 %.

# %% [markdown]
# ## Does the advice transfer?
#
# The pre-registered protocol (docs/validation_protocol.md): the right move at a cell is the
# neighbouring temperature whose retrained test error is lower by a paired t-test over
# (dense seed, retraining seed) blocks, `keep` when neither is; edge cells are scored only when
# their one neighbour is better. The advice of the default rule is scored against it, next to
# the naive rules. (With one dense seed and two retraining seeds, as in the tiny setting, fewer
# than 3 blocks: nothing is scored.) The full tables, with every shipped rule, Wilson intervals,
# sign tests and reproducibility: `python benchmarks/families_validation.py`.

# %%
for f, p in parts.items():
    for k, sl in p.items():
        truth = measured_directions(sl)
        reg = regimes[f][k]["regime"].transpose(*truth.dims)
        s = score_directions(advice_of(label_names(reg.values)), truth.values)
        if not s["n"]:
            print(f"{f:>12s} {k:10s} no scored cell")
            continue
        naive = ", ".join(f"{m} {100 * v['accuracy']:.0f} %" for m, v in s["naive"].items())
        print(f"{f:>12s} {k:10s} advice right {s['k']}/{s['n']} = {100 * s['accuracy']:.0f} % "
              f"[{100 * s['wilson'][0]:.0f}, {100 * s['wilson'][1]:.0f}]; always {naive}")

# %% [markdown]
# Full setting: the default rule's advice is right on 3/9 scored N:M cells (always colder:
# 6/9), 6/9 channel cells (always colder: 7/9), 6/11 rewind and 1/6 scratch cells; pooled over
# the new families 16/35 = 45.7 % [30.5, 61.8], against 19/27 = 70.4 % [51.5, 84.1] on the
# unstructured slices of the same sweeps. On this data the advice does not transfer to the
# new families: it is significantly better than "always hotter" only, and no better than
# "always colder" or "always keep". Intervals are wide (9 scored cells per slice).
#
# ## Robustness per regime
#
# When the sweep measured it (`measure.extra: [robustness]`; the tiny sweeps do, the shipped
# family sweeps do not), the test error under input corruptions (shift, scale, mask, noise,
# blur, JPEG-like quantisation of the 1-D signal), averaged over corruptions and severities
# 1-5, as a panel; and the robustness gap (corrupted minus clean test error) averaged per
# regime: is Regime I also where robustness is lost? (Full setting: corrupted error follows
# clean error -- highest in Regime I cells, e.g. 56.9 % vs 31.9-35.5 % for fine-tuning -- but
# the gap above clean error is *smaller* there, 14.2 vs 26-27 points: Regime I cells are the
# low-density ones whose clean error is already high. No extra robustness loss shows in
# Regime I beyond its clean error.)

# %%
for f, p in parts.items():
    for k, sl in p.items():
        if "corrupted_test_error" not in sl:
            print(f"{f} {k}: no corruption error in this sweep (add measure.extra: "
                  f"[robustness] to measure it; trained models are reused)")
            continue
        ce = sl["corrupted_test_error"]
        ce = ce.sel(severity=ce["severity"] > 0).mean(["corruption", "severity"])
        sl = sl.assign(corrupted_error=(100 * ce).assign_attrs(
                           long_name="corrupted test error", units="%"),
                       robustness_gap=(ce - sl["test_error"]).assign_attrs(
                           long_name="corrupted - clean test error", units="1"))
        art = PhaseDiagram.from_dataset(sl, x="density", y="epochs", var="corrupted_error",
                                        regimes=regimes[f][k]).plot(title=f"{f} {k}",
                                                                    fmt="{:.1f}%")
        save(art.ax.figure, RUNS / specs[f].name / f"corrupted_error_{k}.png")
        gap = sl["robustness_gap"].mean(["dense_seed", "retrain_seed"])
        reg = regimes[f][k]["regime"]
        per = {n: round(100 * float(gap.where(reg == c).mean()), 2) for c, n in
               ((0, "I"), (1, "II-A"), (2, "II-B"), (3, "unresolved"), (-1, "undet."))
               if bool((reg == c).any())}
        print(f"{f} {k}: robustness gap (%) per regime {per}")
