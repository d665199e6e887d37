"""The tuning policy, torch-free: a deterministic walk along a temperature axis, its trace, and
the same walk replayed on a results Dataset.

Selection on validation, reporting on test (STYLE.md rule 15).  :func:`policy_walk` is the
policy as a pure function over a grid of positions ``0 .. n-1`` (or an unbounded range, for a
continuous hyperparameter): it reads the regime label of the current position, steps the way
the advice points (Regime I -> hotter, II-A -> colder; :data:`threeregime.rules.ADVICE`), and
stops on

* ``keep``: the label advises keep (II-B, II unresolved),
* ``undetermined``: no label (collapsed, diverged, too few pairs),
* ``reversal``: the advice points back the way the walk came,
* ``edge``: the next position is off the grid (or the range),
* ``val_worse``: the position just evaluated has a higher validation error than the one
  before it (or none: diverged),
* ``budget``: ``budget`` positions have been evaluated.

It returns the visited positions and the chosen one: the lowest validation error among the
visited (the first on ties), never test error.  Labels and validation errors are arrays (an
offline grid, e.g. a corpus Dataset) or callables evaluated on demand (the live tune,
:func:`threeregime.tuning_run.tune`), so the same code runs both ways.

A single cell cannot tell II-A from II-B (that needs CKA relative to a neighbour along
temperature), so the live walk labels each position from the *visited* cells only
(:func:`label_visited`: the others are masked as not computed, then the default rule
classifies the column), and a first cell labelled II-unresolved is followed by one ``probe``
step (default colder: the II-A side's advice) whose label and validation error decide.
:func:`threeregime.analysis.tuning_trace.walk_dataset` replays exactly this on a finished
results Dataset, and :class:`threeregime.analysis.tuning_trace.TuneTrace` shows a walk.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ..errors import SpecError
from ..spec.codec import check_float, check_pos_int, choose_one
from .advice import move_for
from .features import find_dims
from .regimes import classify, decode
from .rules import ADVICE

__all__ = ["STOPS", "Walk", "policy_walk", "label_visited", "column_of", "cell_mean",
           "advise_step", "Step", "PROBE"]

#: why a walk stops (module docstring)
STOPS = ("keep", "undetermined", "reversal", "edge", "val_worse", "budget")
#: the direction a first II-unresolved cell is probed in (module docstring)
PROBE = "colder"


@dataclass(frozen=True)
class Walk:
    """One walk of :func:`policy_walk`.

    ``visited``: positions in the order evaluated; ``labels``: the regime label of each, as read
    when it was the walk's newest position; ``val_error``: its validation error; ``moves``: the
    direction taken from each visited position (``"probe:colder"`` for a probe; None where the
    walk stopped); ``chosen``: the visited position with the lowest validation error;
    ``stopped``: one of :data:`STOPS`.
    """

    visited: tuple[int, ...]
    labels: tuple[str, ...]
    val_error: tuple[float, ...]
    moves: tuple[str | None, ...]
    chosen: int
    stopped: str


def _getter(x: Any, what: str) -> Callable:
    if callable(x):
        return x
    if isinstance(x, (str, bytes)) or not isinstance(x, (Sequence, np.ndarray)):
        raise SpecError(f"{what} must be a sequence over the grid or a callable; got "
                        f"{type(x).__name__}")
    return None  # type: ignore[return-value]


def policy_walk(labels: Sequence[str] | Callable[[tuple[int, ...]], str],
                val_error: Sequence[float] | Callable[[int], float], start: int, budget: int,
                *, hotter: int = 1, bounds: tuple[int | None, int | None] | None = None,
                probe: str | None = PROBE, tol: float = 0.0) -> Walk:
    """Walk along a temperature axis by the advice of each visited position (module docstring).

    Parameters
    ----------
    labels : sequence of str, or callable ``visited -> str``
        Regime names (``I``, ``II-A``, ``II-B``, ``II-unresolved``, ``undetermined``) per
        position, or a function of the visited positions (in visit order) giving the label of
        the last one (the live tune labels from the visited cells only).
    val_error : sequence of float, or callable ``position -> float``
        Validation error per position (NaN: failed); a callable is called once per visited
        position, in visit order (the live tune evaluates the point there).
    start : int
        The first position.
    budget : int
        Most positions evaluated (>= 1), the first included.
    hotter : {1, -1}
        The direction of increasing position that is hotter (1) or colder (-1).
    bounds : (lo, hi), optional
        Positions allowed, inclusive (None: unbounded on that side).  Default: the grid of
        ``labels`` or ``val_error`` when one is a sequence, else unbounded.
    probe : {"colder", "hotter", None}
        Direction to probe when the first position is II-unresolved; None: stop there (keep).
    tol : float
        A position is worse than the one before when its validation error exceeds it by more
        than ``tol``.

    Returns
    -------
    Walk
        Deterministic: the same inputs give the same walk.
    """
    check_pos_int("budget", budget)
    if hotter not in (1, -1) or isinstance(hotter, bool):
        raise SpecError(f"hotter must be one of 1, -1 (the way along the positions that is "
                        f"hotter); got {hotter!r}")
    if probe not in ("colder", "hotter", None):
        raise SpecError(f"probe must be one of colder, hotter, None; got {probe!r}")
    check_float("tol", tol, 0.0, math.inf)
    lab_get, val_get = _getter(labels, "labels"), _getter(val_error, "val_error")
    n = next((len(x) for x in (labels, val_error) if not callable(x)), None)
    if bounds is None:
        bounds = (0, n - 1) if n is not None else (None, None)
    lo, hi = bounds
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or (
            lo is not None and start < lo) or (hi is not None and start > hi):
        raise SpecError(f"start must be a position in [{lo}, {hi}]; got {start!r}")
    start = int(start)

    def label_of(vis: tuple[int, ...]) -> str:
        return str(lab_get(vis) if lab_get is not None else labels[vis[-1]])

    def val_of(i: int) -> float:
        v = val_get(i) if val_get is not None else val_error[i]
        return float("nan") if v is None else float(v)

    visited, vals, labs, moves = [start], [val_of(start)], [], []
    prev: str | None = None
    while True:
        labs.append(label_of(tuple(visited)))
        if len(visited) > 1 and not (vals[-1] <= vals[-2] + tol):   # NaN counts as worse
            stopped = "val_worse"
            break
        d = ADVICE.get(labs[-1])
        move = d
        if d == "keep" and labs[-1] == "II-unresolved" and probe and len(visited) == 1:
            d, move = probe, f"probe:{probe}"
        if d is None:
            stopped = "undetermined"
            break
        if d == "keep":
            stopped = "keep"
            break
        if prev is not None and d != prev:
            stopped = "reversal"
            break
        nxt = visited[-1] + (hotter if d == "hotter" else -hotter)
        if (lo is not None and nxt < lo) or (hi is not None and nxt > hi):
            stopped = "edge"
            break
        if len(visited) >= budget:
            stopped = "budget"
            break
        moves.append(move)
        visited.append(nxt)
        vals.append(val_of(nxt))
        prev = d
    moves.append(None)
    finite = [k for k, v in enumerate(vals) if np.isfinite(v)]
    best = min(finite, key=lambda k: (vals[k], k)) if finite else 0
    return Walk(tuple(visited), tuple(labs), tuple(vals), tuple(moves), visited[best], stopped)


# --------------------------------------------------------------------------- on a Dataset
_REGIME_VARS = ("regime", "regime_confidence", "regime_uncertain", "undetermined_reason")


def column_of(ds: xr.Dataset, temperature: str | None, point: Mapping[str, Any] | None
              ) -> tuple[xr.Dataset, str]:
    """``ds`` reduced to one temperature column: every other cell dim selected by ``point``
    (kept as a size-1 dim, so the column stays a phase-diagram Dataset)."""
    cell, temps, _ = find_dims(ds, "lmc")
    temperature = choose_one("temperature", temperature, temps, "the temperature dims")
    point = dict(point or {})
    sel = {}
    for d in cell:
        if d == temperature:
            continue
        if d not in point:
            raise SpecError(f"point must give a value of {d} (the cell dims besides "
                            f"{temperature}); got {sorted(point)}")
        vals = ds[d].values
        hit = [k for k, v in enumerate(vals) if (v == point[d] if vals.dtype.kind in "OUS"
                                                 else np.isclose(float(v), float(point[d])))]
        if not hit:
            raise SpecError(f"point {d}={point[d]!r} is not on the grid; allowed: "
                            f"{[v.item() if hasattr(v, 'item') else v for v in vals]}")
        sel[d] = [hit[0]]
    return ds.isel(sel).drop_vars([v for v in _REGIME_VARS if v in ds]), temperature


def label_visited(column: xr.Dataset, visited: Sequence[int], *, temperature: str,
                  rule: Any = None) -> xr.Dataset:
    """Classify a one-column results Dataset as if only positions ``visited`` (indices along
    ``temperature``) were computed: the others are masked (NaN, status missing) first.

    Returns :func:`threeregime.regimes.classify`'s Dataset over ``temperature`` (size-1 load
    dims squeezed): ``regime``, ``regime_uncertain``, ``regime_confidence``, ...
    """
    keep = np.zeros(column.sizes[temperature], dtype=bool)
    keep[list(visited)] = True
    mask = xr.DataArray(keep, dims=[temperature])
    masked = column.copy()
    for name, da in column.data_vars.items():
        if temperature not in da.dims:
            continue
        if name == "status":
            masked[name] = da.where(mask, 3).astype(da.dtype)
        elif da.dtype.kind == "f":
            masked[name] = da.where(mask)
    out = classify(masked, rule=rule, temperature=temperature)
    return out.squeeze([d for d in out.dims if d != temperature and out.sizes[d] == 1],
                       drop=False)


def cell_mean(column: xr.Dataset, name: str, temperature: str) -> np.ndarray:
    """Cell means of ``column[name]`` along ``temperature`` (NaN where nothing is finite)."""
    if name not in column:
        return np.full(column.sizes[temperature], np.nan)
    da = column[name]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(da.mean([d for d in da.dims if d != temperature]).values, float)


# --------------------------------------------------------------------------- one step
@dataclass(frozen=True)
class Step:
    """The step recommended at a cell: ``direction`` (hotter/colder/keep/None), ``to`` (the
    neighbour's value, None for keep or at the edge), the ``regime`` it rests on, and, when
    both cells are computed, ``gain``: the test error at the cell minus at the neighbour
    (positive = the step helps), ``gain_ci`` its 95 % interval over dense seeds (paired
    t-interval; NaN with fewer than two)."""

    hyperparameter: str
    value: Any
    direction: str | None
    to: Any
    regime: str
    uncertain: bool
    gain: float = float("nan")
    gain_ci: tuple[float, float] = (float("nan"), float("nan"))
    n_dense_seeds: int = 0

    def __str__(self) -> str:
        if self.direction in (None, "keep"):
            what = ("keep " if self.direction == "keep" else "no advice on ") + \
                self.hyperparameter
        else:
            what = f"{move_for(self.hyperparameter, self.direction)}: " + \
                (f"{self.hyperparameter} {self.value:g} -> {self.to:g}" if self.to is not None
                 else "already at the grid's edge")
        s = f"Step: {what} (regime {self.regime}{', uncertain' if self.uncertain else ''})"
        if np.isfinite(self.gain):
            lo, hi = self.gain_ci
            ci = (f", 95 % interval [{100 * lo:+.2f}, {100 * hi:+.2f}] over "
                  f"{self.n_dense_seeds} dense seeds" if np.isfinite(lo) else "")
            s += f"\n  expected gain in test error {100 * self.gain:+.2f} points{ci}"
        return s


def advise_step(ds: xr.Dataset, point: Mapping[str, Any], *, temperature: str | None = None,
                rule: Any = None, visited_only: bool = False,
                visited: Sequence[int] | None = None) -> Step:
    """The step the advice recommends at cell ``point`` of a results Dataset, and, when the
    neighbour it points to is computed, the expected gain in test error with a 95 % interval
    over dense seeds (paired by dense seed).  Labels: the whole column classified with
    ``rule`` (``visited_only``: only the ``visited`` positions, as the tune reads them)."""
    from scipy import stats

    col, temp = column_of(ds, temperature, {k: v for k, v in point.items()})
    if temp not in point:
        raise SpecError(f"point must give a value of {temp}; got {sorted(point)}")
    values = [v.item() for v in col[temp].values]
    idx = [k for k, v in enumerate(values) if np.isclose(float(v), float(point[temp]))]
    if not idx:
        raise SpecError(f"point {temp}={point[temp]!r} is not on the grid; allowed: {values}")
    i = idx[0]
    vis = list(visited) if visited_only and visited is not None else list(range(len(values)))
    reg = label_visited(col, vis, temperature=temp, rule=rule)
    name = str(decode(reg["regime"]).values.ravel()[i])
    unc = bool(np.asarray(reg["regime_uncertain"].values).ravel()[i]) \
        if "regime_uncertain" in reg else False
    d = ADVICE.get(name)
    hotter = 1 if col[temp].attrs.get("hotter") == "increasing" else -1
    j = None if d in (None, "keep") else i + (hotter if d == "hotter" else -hotter)
    if j is not None and not 0 <= j < len(values):
        j = None
    step = dict(hyperparameter=temp, value=values[i], direction=d,
                to=None if j is None else values[j], regime=name, uncertain=unc)
    if j is None or "test_error" not in col:
        return Step(**step)
    te = col["test_error"]
    per = te.mean([x for x in te.dims if x not in (temp, "dense_seed")])
    if "dense_seed" not in per.dims:
        per = per.expand_dims("dense_seed")
    diff = np.asarray((per.isel({temp: i}) - per.isel({temp: j})).values, float).ravel()
    diff = diff[np.isfinite(diff)]
    if diff.size == 0:
        return Step(**step)
    ci = (float("nan"), float("nan"))
    if diff.size >= 2:
        lo, hi = stats.t.interval(0.95, diff.size - 1, loc=diff.mean(),
                                  scale=stats.sem(diff))
        ci = (float(lo), float(hi))
    return Step(**step, gain=float(diff.mean()), gain_ci=ci, n_dense_seeds=int(diff.size))
