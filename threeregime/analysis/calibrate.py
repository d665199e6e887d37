"""Fit a rule's thresholds to labelled cells, score it held out, and the protocol's statistics.

Torch-free (numpy / xarray / scipy).  The protocol is ``docs/validation_protocol.md``:

- :func:`wilson_interval`, :func:`sign_test` (exact, two-sided), :func:`paired_direction_test`
  (two-sided paired t-test or Wilcoxon signed-rank over (dense seed, retrain seed) blocks);
- :func:`measured_directions` (the right move at each cell of a sweep: a paired test against
  each neighbouring temperature, or the side of the column's best beyond its noise), the one
  direction scorer over a sweep, and :func:`table_directions` (means only, a margin);
- :func:`calibrate`: one-dimensional searches of a rule's thresholds to labelled cells (drawn
  regions or measured directions), with leave-one-group-out cross-validation built in;
- :func:`score_directions`: accuracy with its Wilson interval and sign tests against the naive
  rules (always hotter / colder / keep).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from ..errors import SpecError
from ..results.schema import REPLICATE_DIMS
from ..stats import mean_sem, unit_means
from .features import Grid, temperature_dim
from .rules import NAMES, Rule, _features_of, _label_grid, advice_of

__all__ = ["NAIVE", "calibrate", "measured_directions", "paired_direction_test",
           "score_directions", "sign_test", "table_directions", "test_error_blocks",
           "wilson_interval"]

NAIVE = ("hotter", "colder", "keep")
_REGION_CODES = {"I": 0, "II-A": 1, "II-B": 2}
_DIR_CODES = {"hotter": 0, "colder": 1, "keep": 2}


# --------------------------------------------------------------------------- statistics
def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (``(nan, nan)`` when ``n == 0``):
    :func:`scipy.stats.binomtest`'s ``proportion_ci(method="wilson")``."""
    from scipy.stats import binomtest

    if n == 0:
        return float("nan"), float("nan")
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign test: ``min(1, 2 P[X <= min(w, l)])``, ``X ~ Bin(w + l, 1/2)``
    (:func:`scipy.stats.binomtest`; 1 when there is no win and no loss)."""
    from scipy.stats import binomtest

    n = wins + losses
    if n == 0:
        return 1.0
    return float(binomtest(int(wins), int(n), 0.5).pvalue)


def paired_direction_test(here: Any, there: Any, *, test: str = "t") -> tuple[float, float, int]:
    """Paired test of ``there - here`` over blocks: ``(mean difference, two-sided p, n)``.

    ``test="t"``: paired t-test; ``"wilcoxon"``: Wilcoxon signed-rank.  Blocks with a NaN on
    either side are dropped; fewer than 3 blocks give ``p = nan``.
    """
    from scipy.stats import ttest_rel, wilcoxon

    a, b = np.asarray(here, float).ravel(), np.asarray(there, float).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if a.size < 3:
        return float("nan"), float("nan"), int(a.size)
    d = b - a
    if np.allclose(d, 0):
        return 0.0, 1.0, int(a.size)
    if test == "t":
        p = float(ttest_rel(b, a).pvalue)
    elif test == "wilcoxon":
        p = float(wilcoxon(b, a).pvalue)
    else:
        raise SpecError(f"test must be one of t, wilcoxon; got {test!r}")
    return float(d.mean()), p if np.isfinite(p) else 1.0, int(a.size)


# --------------------------------------------------------------------------- directions
def _truth(gain: np.ndarray, better: np.ndarray, decidable: np.ndarray) -> np.ndarray:
    """(n_col, n_temp) truth from per-neighbour gains (axis -1: 0 = hotter, 1 = colder)."""
    n_col, n_t = gain.shape[:2]
    out = np.full((n_col, n_t), "", dtype=object)
    for i in range(n_col):
        for j in range(n_t):
            if not decidable[i, j].all():
                continue
            b = better[i, j]
            edge = j == 0 or j == n_t - 1
            if b.any():
                side = int(np.argmax(np.where(b, gain[i, j], -np.inf)))
                out[i, j] = ("hotter", "colder")[side]
            elif not edge:
                out[i, j] = "keep"
    return out


def _neighbours(g: Grid, fn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    gain = np.zeros((g.n_col, g.n_temp, 2))
    better = np.zeros((g.n_col, g.n_temp, 2), dtype=bool)
    dec = np.ones((g.n_col, g.n_temp, 2), dtype=bool)
    for j in range(g.n_temp):
        for side, jj in ((0, j - 1), (1, j + 1)):
            if 0 <= jj < g.n_temp:
                gain[:, j, side], better[:, j, side], dec[:, j, side] = fn(j, jj)
    return gain, better, dec


def table_directions(ds: xr.Dataset, *, margin: float = 0.01, var: str = "test_error",
                     temperature: str | None = None) -> xr.DataArray:
    """Right move at each cell of a means-only table: a neighbour whose ``var`` is lower by
    more than ``margin`` (difference rounded to 1e-6); ``""`` where not scored (edges)."""
    temp = temperature_dim(ds, var, temperature)
    g = Grid(ds, list(ds[var].dims), temp)
    te = g.grid(ds[var])

    def fn(j: int, jj: int):
        drop = np.round(te[:, j] - te[:, jj], 6)
        return drop, drop > margin, np.isfinite(drop)

    return g.back(_truth(*_neighbours(g, fn)), "direction")


def test_error_blocks(ds: xr.Dataset, temperature: str | None = None
                      ) -> tuple[Grid, np.ndarray]:
    """The cells' retrained test error as ``(n_col, n_temp, n_blocks)`` independent blocks.

    The blocks are the dense seeds (the independent unit, :mod:`threeregime.stats`): retrain
    seeds are averaged within a dense seed first.  Without a ``dense_seed`` dim the remaining
    replicates are the blocks.  Points whose ``status`` is not 0 (diverged, failed) are NaN.
    Temperature runs hot -> cold along axis 1 (:class:`threeregime.analysis.features.Grid`).
    """
    temp = temperature_dim(ds, "test_error", temperature)
    te = ds["test_error"]
    if "status" in ds:
        te = te.where(ds["status"].broadcast_like(te) == 0)
    cell = [d for d in te.dims if d not in REPLICATE_DIMS]
    g = Grid(ds, cell, temp)
    rep = [d for d in te.dims if d in REPLICATE_DIMS]
    unit = [d for d in rep if d == "dense_seed"]
    nested = [d for d in rep if d != "dense_seed"] if unit else []
    blocks = g.grid(te, [*unit, *nested] if unit else rep)
    if unit:  # (n_col, n_temp, n_dense, *nested) -> dense-seed means
        blocks = unit_means(blocks, tuple(range(3, blocks.ndim)))
    return g, blocks.reshape(g.n_col, g.n_temp, -1)


def _toward_best(blocks: np.ndarray, z: float, margin: float | None) -> np.ndarray:
    """(n_col, n_temp) truth "towards the column's best": ``keep`` within the noise margin of
    the best cell (``z`` standard errors of the difference over blocks, or ``margin``), else
    the side of the best temperature; ``""`` for a cell or column without a finite mean."""
    mean, sem, _ = mean_sem(blocks)
    out = np.full(mean.shape, "", dtype=object)
    for i in range(mean.shape[0]):
        col = mean[i]
        if not np.isfinite(col).any():
            continue
        b = int(np.nanargmin(col))
        for j in range(mean.shape[1]):
            if not np.isfinite(col[j]):
                continue
            tol = margin if margin is not None else z * math.sqrt(
                np.nan_to_num(sem[i, j]) ** 2 + np.nan_to_num(sem[i, b]) ** 2)
            if j == b or col[j] - col[b] <= tol:
                out[i, j] = "keep"
            else:  # temperature runs hot -> cold along the grid
                out[i, j] = "hotter" if b < j else "colder"
    return out


def measured_directions(ds: xr.Dataset, *, against: str = "neighbour", alpha: float = 0.05,
                        test: str = "t", z: float = 1.0, margin: float | None = None,
                        temperature: str | None = None) -> xr.DataArray:
    """The right move at each cell of a sweep, measured on retrained test error: the one
    direction scorer of the library (protocol v1 and the advice validation use it).

    The unit is the dense seed (:func:`test_error_blocks`).  Two truths, for two questions:

    ``against="neighbour"`` (the one-step truth of ``docs/validation_protocol.md``)
        a neighbouring temperature whose retrained test error is lower by a paired test over
        dense seeds at level ``alpha`` (``test`` ``"t"`` or ``"wilcoxon"``; ``n_dense - 1``
        degrees of freedom for the t-test; before issue 18 it paired (dense seed x retrain
        seed) blocks as if independent); ``keep`` where neither neighbour is better, ``""`` on
        an edge cell with no better neighbour.
    ``against="best"`` (:func:`threeregime.analysis.validation.validate_advice`)
        towards the column's best temperature, ``keep`` within ``z`` standard errors of the
        difference (over dense-seed means) of the best, or within a fixed ``margin``.

    Returns a string DataArray over the cells; ``""`` where nothing can be scored.
    """
    from ..spec.specs import check_choice

    check_choice("against", against, ("neighbour", "best"))
    g, blocks = test_error_blocks(ds, temperature)
    if against == "best":
        return g.back(_toward_best(blocks, z, margin), "direction")

    def fn(j: int, jj: int):
        res = [paired_direction_test(blocks[i, j], blocks[i, jj], test=test)
               for i in range(g.n_col)]
        d = np.array([r[0] for r in res])
        p = np.array([r[1] for r in res])
        return -d, (d < 0) & (p < alpha), np.isfinite(p)

    return g.back(_truth(*_neighbours(g, fn)), "direction")


# --------------------------------------------------------------------------- scoring
def score_directions(advised: Any, truth: Any) -> dict:
    """Accuracy (Wilson 95 %) of advised moves on scored cells, and the naive rules with sign
    tests on discordant cells.  ``None`` advice (undetermined) counts as a miss."""
    adv, tru = np.asarray(advised, dtype=object).ravel(), np.asarray(truth, dtype=object).ravel()
    m = np.array([t in _DIR_CODES for t in tru])
    adv, tru = adv[m], tru[m]
    right = np.array([a == t for a, t in zip(adv, tru)], dtype=bool)
    k, n = int(right.sum()), int(m.sum())
    out = {"n": n, "k": k, "accuracy": k / n if n else float("nan"),
           "wilson": wilson_interval(k, n), "coverage": float(np.mean([a is not None
                                                                       for a in adv])) if n
           else float("nan"), "naive": {}}
    for move in NAIVE:
        nr = tru == move
        w, lo = int((right & ~nr).sum()), int((~right & nr).sum())
        out["naive"][move] = {"k": int(nr.sum()), "accuracy": float(nr.mean()) if n else
                              float("nan"), "wilson": wilson_interval(int(nr.sum()), n),
                              "wins": w, "losses": lo, "sign_p": sign_test(w, lo)}
    return out


# --------------------------------------------------------------------------- calibration
def _codes(labels: xr.DataArray, g: Grid, target: str) -> np.ndarray:
    table = _REGION_CODES if target == "regions" else _DIR_CODES
    codes = np.vectorize(lambda s: table.get(str(s), -9), otypes=[float])(labels.values)
    return g.grid(labels.copy(data=codes))


def _hits(lab: np.ndarray, want: np.ndarray, target: str) -> np.ndarray:
    names = np.vectorize(lambda c: NAMES[int(c)], otypes=[object])(lab)
    if target == "regions":
        got = np.vectorize(lambda s: _REGION_CODES.get(s, -1), otypes=[float])(names)
    else:
        got = np.vectorize(lambda s: _DIR_CODES.get(s, -1) if s is not None else -1,
                           otypes=[float])(advice_of(names))
    return got == want


def calibrate(data: Mapping[str, xr.Dataset] | xr.Dataset, labels: Any, rule: Rule, *,
              target: str = "regions", groups: Any = None, fit: tuple[str, ...] | None = None,
              passes: int = 2, temperature: str | None = None) -> Rule:
    """Fit ``rule``'s thresholds to labelled cells; score them leave-one-group-out.

    Parameters
    ----------
    data : Dataset or mapping name -> Dataset
        Settings (a single Dataset is one setting named ``"data"``).
    labels : DataArray or mapping name -> DataArray
        Per cell: a region name (``I``/``II-A``/``II-B``) for ``target="regions"`` or a move
        (``hotter``/``colder``/``keep``) for ``target="directions"``; anything else = not
        labelled.
    rule : Rule
        The family, settings and starting thresholds.
    groups : mapping name -> DataArray of group names over cells, optional
        Default: one group per setting (leave-one-setting-out).  The paper table uses its
        density columns.
    fit : tuple of str, optional
        Thresholds to search, in this order (default: all of the family's).

    Returns
    -------
    Rule
        Thresholds fitted on ALL labelled cells; ``scores`` hold the held-out result (each
        group scored with thresholds fitted on the others) and ``provenance`` the method.
    """
    from ..spec.specs import check_choice

    check_choice("target", target, ("regions", "directions"))
    if isinstance(data, xr.Dataset):
        data, labels = {"data": data}, {"data": labels}
        groups = None if groups is None else {"data": groups}
    prepared = []
    for name, ds in data.items():
        f = _features_of(ds, rule, temperature)
        g = Grid(f, list(f["lmc_mean"].dims), f.attrs["temperature"])
        want = _codes(labels[name], g, target)
        grp = np.full(want.shape, name, dtype=object)
        if groups is not None:
            uniq, inv = np.unique(np.asarray(groups[name].values), return_inverse=True)
            codes = g.grid(groups[name].copy(data=inv.reshape(groups[name].shape))).astype(int)
            grp = np.array([f"{name}:{u}" for u in uniq], dtype=object)[codes]
        prepared.append((f, want, grp))
    fit = fit or tuple(rule.thresholds)
    all_groups = sorted({x for _, _, gr in prepared for x in gr.ravel()})

    def hits_of(r: Rule) -> list[np.ndarray]:
        return [_hits(_label_grid(f, r)[0], want, target) for f, want, _ in prepared]

    def fit_on(mask_of) -> Rule:
        r = rule
        for _ in range(passes):
            for key in fit:
                cands = _candidates(prepared, r, key)
                sc = []
                for c in cands:
                    rr = r.replace(thresholds={key: float(c)})
                    sc.append(sum(int((h & m).sum()) for h, m in
                                  zip(hits_of(rr), mask_of())))
                sc = np.array(sc)
                best = cands[sc == sc.max()]
                r = r.replace(thresholds={key: float(best[(best.size - 1) // 2])})
        return r

    labelled = [want >= 0 for _, want, _ in prepared]
    held_hits, held_n, per_group = 0, 0, {}
    for gname in all_groups:
        r = fit_on(lambda gname=gname: [lab & (gr != gname) for lab, (_, _, gr) in
                                         zip(labelled, prepared)])
        hm = [h & lab & (gr == gname) for h, lab, (_, _, gr) in
              zip(hits_of(r), labelled, prepared)]
        n = sum(int((lab & (gr == gname)).sum()) for lab, (_, _, gr) in
                zip(labelled, prepared))
        k = sum(int(x.sum()) for x in hm)
        per_group[gname] = {"k": k, "n": n, "thresholds": r.thresholds}
        held_hits, held_n = held_hits + k, held_n + n
    final = fit_on(lambda: labelled)
    scores = {"target": target, "held_out_accuracy": held_hits / held_n if held_n else None,
              "held_out_k": held_hits, "held_out_n": held_n,
              "held_out_wilson": list(wilson_interval(held_hits, held_n)),
              "per_group": per_group}
    prov = {**rule.provenance, "calibrated_on": list(data), "target": target,
            "method": "coordinate-wise 1-D searches (midpoint candidates, median of the best "
                      f"plateau), {passes} passes; leave-one-group-out over "
                      f"{len(all_groups)} groups"}
    return final.replace(scores=scores, provenance=prov)


def _candidates(prepared: list, rule: Rule, key: str) -> np.ndarray:
    """Midpoints between distinct values of the feature a threshold cuts, plus the ends."""
    vals: list[np.ndarray] = []
    for f, _, _ in prepared:
        if key == "z_barrier":
            vals.append(-np.asarray(f["lmc_z"].values).ravel())
        elif key == "barrier_chance":
            vals.append(-np.asarray(f["lmc_rel_chance"].values).ravel())
        elif key == "z_step":
            vals.append(np.asarray(f["step_z"].values).ravel())
        elif key == "step_chance":
            vals.append(np.asarray(f["step_rel_chance"].values).ravel())
        elif key == "z_cka":
            vals.append(np.asarray(_label_grid(f, rule)[3]).ravel())
        else:
            raise SpecError(f"calibrate has no candidate values for threshold {key!r}; "
                            f"allowed: z_barrier, barrier_chance, z_step, step_chance, z_cka")
    v = np.unique(np.round(np.concatenate(vals), 9))
    v = v[np.isfinite(v) & (v >= 0)]
    if v.size == 0:
        return np.array([rule.thresholds[key]])
    mids = (v[:-1] + v[1:]) / 2
    return np.round(np.concatenate([[v[0] / 2], mids, [v[-1] * 1.5 + 1e-6]]), 6)
