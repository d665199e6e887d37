"""The trace of a tune (:class:`TuneTrace`: Dataset, table, plot, next step) and the live
policy replayed on a finished results Dataset (:func:`walk_dataset`, offline scoring).

Torch-free; the policy itself is :mod:`threeregime.analysis.tuning`, the live run
:mod:`threeregime.tuning_run`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from ..errors import ResultsError, SpecError
from .advice import move_for
from .regimes import decode
from .tuning import (
    PROBE,
    Step,
    Walk,
    advise_step,
    cell_mean,
    column_of,
    label_visited,
    policy_walk,
)

__all__ = ["TuneTrace", "walk_dataset"]


def walk_dataset(ds: xr.Dataset, point: Mapping[str, Any], start: Any, budget: int, *,
                 temperature: str | None = None, rule: Any = None, probe: str | None = PROBE,
                 tol: float = 0.0, val: str = "val_error") -> TuneTrace:
    """Replay the live tune on a finished results Dataset (offline scoring).

    ``point`` fixes the cell dims other than the temperature (e.g. ``{"density": 0.1}``);
    ``start`` is a temperature value on the grid.  Labels come from the visited cells only
    (:func:`label_visited` with ``rule``, default the library's), validation errors from
    ``ds[val]`` (cell mean over dense and retraining seeds; use another variable, e.g. the
    test error of other dense seeds, to score a protocol).  Returns the :class:`TuneTrace`.
    """
    col, temp = column_of(ds, temperature, point)
    values = [v.item() for v in col[temp].values]
    idx = [k for k, v in enumerate(values) if np.isclose(float(v), float(start))]
    if not idx:
        raise SpecError(f"start {start!r} is not on the {temp} grid; allowed: {values}")
    if val not in col:
        raise ResultsError(f"{val} is not in the dataset; a sweep with data.val_size has "
                           "val_error")
    val_mean = cell_mean(col, val, temp)
    if not np.isfinite(val_mean).any():
        raise ResultsError(f"{val} is NaN in every cell of this column (no validation split); "
                           "pass val= another variable (e.g. test error of other dense seeds)")
    hotter = 1 if col[temp].attrs.get("hotter") == "increasing" else -1

    def lab(vis: tuple[int, ...]) -> str:
        return str(decode(label_visited(col, vis, temperature=temp, rule=rule)["regime"]
                          ).values.ravel()[vis[-1]])

    walk = policy_walk(lab, list(val_mean), idx[0], budget, hotter=hotter, probe=probe, tol=tol)
    return TuneTrace.from_walk(walk, col, temp, budget=budget, rule=rule)


# --------------------------------------------------------------------------- the trace
@dataclass
class TuneTrace:
    """The outcome of a tune: the walk, the chosen point and the evaluated column.

    ``best_value``: the chosen temperature value (lowest validation error among the visited);
    ``stopped``: one of :data:`STOPS`; ``trace``: :meth:`dataset`; ``column``: the results
    Dataset of the visited cells (one temperature column; the others not computed), for
    :meth:`plot` and :meth:`advise`.
    """

    hyperparameter: str
    values: list
    walk: Walk
    best_value: Any
    stopped: str
    point: dict = field(default_factory=dict)
    test_error: list = field(default_factory=list)
    val_error_sem: list = field(default_factory=list)
    uncertain: list = field(default_factory=list)
    budget: int = 0
    rule: str = ""
    column: Any = None

    @classmethod
    def from_walk(cls, walk: Walk, column: xr.Dataset, temperature: str, *, budget: int,
                  rule: Any = None, values: Sequence[Any] | None = None) -> TuneTrace:
        """The trace of ``walk`` over ``column`` (positions index ``values``, default the
        column's temperature coordinate)."""
        values = list(values if values is not None
                      else [v.item() for v in column[temperature].values])
        test = cell_mean(column, "test_error", temperature)
        sem = np.full(len(test), np.nan)
        if "val_error" in column:
            da = column["val_error"]
            per_seed = da.mean([d for d in da.dims if d not in (temperature, "dense_seed")])
            if "dense_seed" in per_seed.dims and per_seed.sizes["dense_seed"] > 1:
                with np.errstate(all="ignore"):
                    sem = np.asarray((per_seed.std("dense_seed", ddof=1)
                                      / np.sqrt(per_seed.count("dense_seed"))).values, float)
        reg = label_visited(column, walk.visited, temperature=temperature, rule=rule)
        unc = (np.asarray(reg["regime_uncertain"].values, bool).ravel()
               if "regime_uncertain" in reg else np.zeros(len(values), bool))
        pos = {p: k for k, p in enumerate(walk.visited)}
        point = {d: column[d].values.ravel()[0].item() for d in column.dims
                 if d in column.coords and d != temperature and column.sizes[d] == 1
                 and d not in ("dense_seed", "retrain_seed", "pair", "t", "split", "quantity")}
        return cls(hyperparameter=temperature, values=values, walk=walk,
                   best_value=values[walk.chosen], stopped=walk.stopped, point=point,
                   test_error=[float(test[p]) for p in walk.visited],
                   val_error_sem=[float(sem[p]) for p in walk.visited],
                   uncertain=[bool(unc[p]) if p < len(unc) and p in pos else False
                              for p in walk.visited],
                   budget=budget, rule=str(getattr(rule, "name", rule) or "default"),
                   column=column)

    def dataset(self) -> xr.Dataset:
        """The trace as an :class:`xarray.Dataset` over ``step`` (visit order)."""
        w = self.walk
        unit = {"units": "1"}
        ds = xr.Dataset(
            {"val_error": ("step", np.asarray(w.val_error, float),
                           {"long_name": "validation error (cell mean)", **unit}),
             "val_error_sem": ("step", np.asarray(self.val_error_sem, float),
                               {"long_name": "standard error of val_error over dense seeds",
                                **unit}),
             "test_error": ("step", np.asarray(self.test_error, float),
                            {"long_name": "test error (cell mean; reported, never selected "
                                          "on)", **unit}),
             "regime": ("step", np.asarray(w.labels, dtype=object),
                        {"long_name": "regime label read at the step"}),
             "uncertain": ("step", np.asarray(self.uncertain, np.int8),
                           {"long_name": "1 where the label is uncertain", **unit}),
             "move": ("step", np.asarray([m or "stop" for m in w.moves], dtype=object),
                      {"long_name": "direction taken from the step"}),
             "chosen": ("step", np.asarray([p == w.chosen for p in w.visited], np.int8),
                        {"long_name": "1 at the point chosen by validation error", **unit})},
            coords={"step": np.arange(len(w.visited)),
                    self.hyperparameter: ("step", np.asarray([self.values[p]
                                                              for p in w.visited]),
                                          {"long_name": self.hyperparameter})},
            attrs={"hyperparameter": self.hyperparameter, "stopped": self.stopped,
                   "best_value": float(self.best_value), "budget": int(self.budget),
                   "rule": self.rule, "selected_on": "val_error",
                   **{f"point_{k}": v for k, v in self.point.items()}})
        return ds

    def table(self) -> str:
        """The walk as a text table (also ``str(trace)``)."""
        at = ", ".join(f"{k} {v:g}" for k, v in self.point.items())
        lines = [f"Tuning {self.hyperparameter}{' at ' + at if at else ''}: best "
                 f"{self.best_value:g} by validation error (stopped: {self.stopped}; "
                 f"{len(self.walk.visited)} of {self.budget} evaluations)",
                 f"  {'step':>4s} {self.hyperparameter:>10s}  {'regime':<16s} "
                 f"{'val err':>15s} {'test err':>8s}  move"]
        w = self.walk
        for k, p in enumerate(w.visited):
            v, s = w.val_error[k], self.val_error_sem[k]
            v_s = (f"{100 * v:6.2f}%" + (f" +/-{100 * s:4.2f}" if np.isfinite(s) else " " * 7)
                   if np.isfinite(v) else f"{'n/a':>15s}")
            t = self.test_error[k]
            t_s = f"{100 * t:7.2f}%" if np.isfinite(t) else f"{'n/a':>8s}"
            lab = w.labels[k] + (" (unc.)" if self.uncertain[k] else "")
            mv = w.moves[k]
            mv_s = "stop" if mv is None else mv
            if mv is not None and self.hyperparameter in ("epochs", "batch_size", "lr",
                                                          "sam_rho"):
                mv_s += f" ({move_for(self.hyperparameter, mv.split(':')[-1])})"
            mark = "  <- chosen" if p == w.chosen else ""
            lines.append(f"  {k:>4d} {self.values[p]:>10g}  {lab:<16s} {v_s:>15s} {t_s}  "
                         f"{mv_s}{mark}")
        return "\n".join(lines)

    __str__ = table

    def plot(self, ax: Any = None, *, ds: xr.Dataset | None = None, var: str = "test_error"):
        """Draw the walk on the phase diagram of ``ds`` (a sweep Dataset; default the visited
        column): arrows between visited cells in visit order (right of the cell's labels), the
        chosen cell circled (left of them).

        Returns ``(PhaseDiagramArtists, [arrow and marker artists])``.
        """
        from .plotting import PhaseDiagram

        base = ds if ds is not None else self.column
        if base is None:
            raise ResultsError("nothing to draw on: pass ds= (a sweep results Dataset)")
        diagram = PhaseDiagram.from_dataset(base, y=self.hyperparameter, var=var)
        art = diagram.plot(ax=ax)
        xs = [k for k, v in enumerate(diagram.x_values)
              if self.point.get(diagram.x) is None
              or np.isclose(float(v), float(self.point[diagram.x]))]
        x = xs[0] if xs else 0
        rows = {float(v): k for k, v in enumerate(diagram.y_values)}
        ys = [rows.get(float(self.values[p])) for p in self.walk.visited]
        extra = []
        for k in range(1, len(ys)):
            if ys[k - 1] is None or ys[k] is None:
                continue
            extra.append(art.ax.annotate("", xy=(x + 0.3, ys[k]), xytext=(x + 0.3, ys[k - 1]),
                                         arrowprops={"arrowstyle": "->", "color": "crimson",
                                                     "lw": 2}, zorder=6))
        best = rows.get(float(self.best_value))
        if best is not None:
            # left of the cell's labels (the arrows run on the right), so no text is covered
            extra += art.ax.plot([x - 0.3], [best], "o", ms=16, mfc="none", mec="crimson",
                                 mew=2, zorder=6)
        return art, extra

    def advise(self, ds: xr.Dataset | None = None, *, rule: Any = None) -> Step:
        """The step recommended from the chosen point (:func:`advise_step`), over ``ds`` (a
        sweep Dataset: with the expected gain) or the visited column."""
        base = ds if ds is not None else self.column
        return advise_step(base, {**self.point, self.hyperparameter: self.best_value},
                           temperature=self.hyperparameter, rule=rule,
                           visited_only=ds is None, visited=self.walk.visited)
