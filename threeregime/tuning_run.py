"""``threeregime.tune``: the tuning policy run live, through the sweep's stages and store.

From a sweep spec's base point (the user's dense configuration) at density ``density``, each
evaluated temperature value is one grid cell of the spec (all its dense seeds): the dense runs
are trained or reused, pruned, retrained and measured by the stage functions of
:mod:`threeregime.sweep.stages` in the sweep's own directory (default ``runs/<name>``, so
models of an earlier ``threeregime run`` are reused and an interrupted tune resumes where it
stopped: every stage's artifact is content-addressed).  The walk is
:func:`threeregime.analysis.tuning.policy_walk`, labels come from the visited cells only
(:func:`threeregime.analysis.tuning.label_visited`, the default rule), and the point returned
is the visited one with the lowest *validation* error: the spec gets a validation split
(``data.val_size``, default :data:`DEFAULT_VAL_SIZE`) when it has none, which changes neither
training nor test data, so cached dense and retrained models are reused.

Cells: the tuned axis keeps the spec's grid; density is set to ``density`` (any value in
(0, 1]); every other axis of the spec (a category, another load) is dropped and the base
point's value used.  Each cell's retrainings train as ensembles of that cell only, so a cell's
numbers do not depend on which cells were visited before it: by default (``ensembles="cell"``)
all of a cell's retrainings (dense seeds x retraining seeds) form one ensemble, cut at
``max_members`` (12 on a CPU); ``ensembles="dense"`` trains one ensemble per dense run, the
grouping before this option existed (a member's numbers depend in the last bits on its
ensemble: benchmarks/tune_grouping.py measures the difference).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .analysis.advice import check_density
from .analysis.tuning import PROBE, label_visited, policy_walk
from .analysis.tuning_trace import TuneTrace
from .errors import ResultsError, SpecError
from .spec.codec import AXES, check_choice, check_pos_int, choose_one
from .spec.specs import SweepSpec, load_yaml

__all__ = ["tune", "tune_model", "tune_temperature", "DEFAULT_VAL_SIZE"]

#: validation examples added to a spec without a validation split
DEFAULT_VAL_SIZE = 1000


def _spec_of(spec: Any) -> SweepSpec:
    if isinstance(spec, SweepSpec):
        return spec
    if isinstance(spec, (str, Path)):
        p = Path(spec)
        if not p.is_file():
            raise SpecError(f"spec file {str(p)!r} does not exist; pass a sweep YAML file "
                            "(e.g. sweeps/quick.yaml)")
        return load_yaml(p, kind="sweep")
    raise SpecError(f"spec must be a SweepSpec or the path of a sweep YAML file; got "
                    f"{type(spec).__name__}")


def _base_value(spec: SweepSpec, axis: str) -> Any:
    b = spec.base
    if axis == "epochs":
        return b.snapshot_epoch if b.snapshot_epoch is not None else b.dense.epochs
    return {"batch_size": b.dense.batch_size, "lr": b.dense.lr,
            "sam_rho": b.dense.sam_rho}[axis]


def _plan_inputs(spec: Any, density: Any, budget: Any, start: Any, axis: str | None,
                 val_size: int | None) -> tuple[SweepSpec, str, list, int, float]:
    """Every check of :func:`tune` that needs no data: the spec, the axis, its grid, the start
    position and the density (one-line errors)."""
    spec = _spec_of(spec)
    temps = [k for k in spec.axes if AXES[k].role == "temperature"]
    axis = choose_one("axis", axis, temps, "the spec's temperature axes (the one to tune)")
    density = check_density(density, "density")
    check_pos_int("budget", budget)
    grid = list(spec.axes[axis])
    if start is None:
        start = _base_value(spec, axis)
        where = f"the base point's {axis} {start:g}"
    else:
        where = f"start {start!r}"
    hits = [k for k, v in enumerate(grid)
            if isinstance(start, (int, float)) and not isinstance(start, bool)
            and np.isclose(float(v), float(start))]
    if not hits:
        raise SpecError(f"{where} is not on the {axis} grid of sweep {spec.name!r}; pass start "
                        f"as one of {grid}")
    data = spec.base.data
    if data.val_size is None:
        data = dataclasses.replace(data, val_size=DEFAULT_VAL_SIZE if val_size is None
                                   else val_size)
    elif val_size is not None and val_size != data.val_size:
        raise SpecError(f"val_size {val_size} disagrees with the spec's data.val_size "
                        f"{data.val_size}; leave it out")
    base = dataclasses.replace(spec.base, data=data)
    if axis == "epochs":     # one dense run serves the whole axis: snapshot every grid value
        snaps = tuple(sorted(set(base.dense.snapshots) | set(grid)))
        base = dataclasses.replace(base, dense=dataclasses.replace(base.dense, snapshots=snaps))
    column = dataclasses.replace(spec, base=base, axes={axis: grid, "density": [density]})
    return column, axis, grid, hits[0], density


def tune(spec: Any, data: Any = None, *, density: float, budget: int, start: Any = None,
         axis: str | None = None, out: str | Path | None = None, rule: Any = None,
         probe: str | None = PROBE, tol: float = 0.0, val_size: int | None = None,
         executor: Any = None, device: str = "auto", engine: str = "vmap",
         progress: bool | None = False, threads: int | None = None,
         ensembles: str = "cell", **model_kwargs: Any) -> TuneTrace:
    """Tune a temperature-like hyperparameter of a sweep's base point for pruning at ``density``.

    ``tune(train_fn, data, hyperparameter=..., start=..., density=..., budget=...)`` tunes a
    user's own model instead (a continuous hyperparameter, geometric steps):
    :func:`tune_model`, which takes ``model_kwargs``.

    Parameters
    ----------
    spec : SweepSpec or path of a sweep YAML file
        Its base point is the dense configuration; its temperature axis (``axis``) the grid
        walked; its dense and retraining seeds those of every evaluated cell.
    density : float in (0, 1]
        Fraction of prunable weights kept.
    budget : int >= 1
        Most cells evaluated (the start included).
    start : value on the axis grid, optional
        Default: the base point's own value (an error when it is not on the grid).
    axis : str, optional
        The temperature axis (needed when the spec has several).
    out : path, optional
        The store (default ``runs/<name>``, the sweep's own directory).
    rule : Rule or str, optional
        Regime rule (default :data:`threeregime.rules.DEFAULT_RULE`).
    probe, tol : see :func:`threeregime.analysis.tuning.policy_walk`.
    val_size : int, optional
        Validation examples when the spec has no ``data.val_size`` (default 1000).
    executor, device, engine, progress, threads : as in :func:`threeregime.run_sweep`.
    ensembles : ``"cell"`` or ``"dense"``
        How a cell's retrainings are grouped into ensembles: all of the cell's together
        (default; faster on a CPU) or one ensemble per dense run (the grouping before this
        option; results agree to float rounding amplified by training, not bitwise).

    Returns
    -------
    TuneTrace
        ``best_value`` (chosen by validation error), ``stopped``, ``dataset()``, ``table()``,
        ``plot()``, ``advise()``.

    Raises
    ------
    SpecError, DataError
        Bad input (unknown axis, density out of range, budget < 1, start not on the grid, spec
        file missing, data that cannot hold the validation split), before anything is trained.
    """
    if callable(spec) and not isinstance(spec, (SweepSpec, str, Path)):
        return tune_model(spec, data, density=density, budget=budget, start=start, rule=rule,
                          probe=probe, tol=tol, device=device, engine=engine,
                          progress=progress, **model_kwargs)
    if data is not None or model_kwargs:
        extra = sorted(model_kwargs) + (["data"] if data is not None else [])
        raise SpecError(f"{', '.join(extra)}: only for tune(train_fn, data, ...) on a user's "
                        "model; a sweep spec fixes its data and recipe")
    from .results import artifacts as art
    from .sweep.driver import _preflight, _run_stages, assemble, default_out
    from .sweep.executors import InlineExecutor
    from .sweep.plan import RETRAIN_ENSEMBLES, Store, SweepPlan, plan_sweep
    from .sweep.stages import RunOptions

    check_choice("ensembles", ensembles, RETRAIN_ENSEMBLES)
    column, axis, grid, i0, density = _plan_inputs(spec, density, budget, start, axis,
                                                   val_size)
    opts = RunOptions(device=device, engine=engine, progress=progress, threads=threads)
    full = plan_sweep(column)
    _preflight(full)                                   # data, model, val split, batch sizes
    root = Path(out) if out is not None else default_out(column)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ResultsError(f"cannot create output directory {root}: {e.strerror}; choose "
                           "another out") from None
    store = Store(root)
    art.clean_temp(root)
    art.clean_claims(root / "claims")               # left by an interrupted run
    own = executor is None
    executor = executor or InlineExecutor()
    state: dict[str, Any] = {"visited": []}

    def cell_plan(values: list) -> SweepPlan:
        keep = [pj for pj in full.points if any(np.isclose(float(pj.coords[axis]), float(v))
                                                for v in values)]
        return SweepPlan(column, full.dense, full.retrain, keep)

    def evaluate(i: int) -> float:
        one = plan_sweep(dataclasses.replace(column, axes={axis: [grid[i]],
                                                           "density": [density]}))
        errors = _run_stages(one, store, executor, opts, progress, ensembles=ensembles)
        if errors:
            raise ResultsError(f"tune: {len(errors)} stage task(s) of {axis}={grid[i]:g} "
                               f"failed (first: {errors[0]}); details in {root}/failed/")
        state["visited"].append(i)
        state["column"] = assemble(column, root, cell_plan([grid[k]
                                                            for k in state["visited"]]))
        col = state["column"]
        ve = col["val_error"].isel({axis: i})
        with np.errstate(all="ignore"):
            return float(np.nanmean(ve.values)) if np.isfinite(ve.values).any() else np.nan

    def label(vis: tuple[int, ...]) -> str:
        from .analysis.regimes import decode

        reg = label_visited(state["column"], vis, temperature=axis, rule=rule)
        return str(decode(reg["regime"]).values.ravel()[vis[-1]])

    hotter = 1 if AXES[axis].hotter == "increasing" else -1
    try:
        walk = policy_walk(label, evaluate, i0, budget, hotter=hotter,
                           bounds=(0, len(grid) - 1), probe=probe, tol=tol)
    finally:
        if own:
            executor.close()
    return TuneTrace.from_walk(walk, state["column"], axis, budget=budget, rule=rule)


# --------------------------------------------------------------------------- a user's model
def _positions(start: Any, hp: str, factor: float, lower: float | None, upper: float | None,
               reach: int = 40) -> tuple[dict[int, Any], tuple[int, int]]:
    """Values of positions ``-reach .. reach`` around ``start`` (position +1 = one step to a
    larger value: x ``factor``, epochs and batch size rounded and changed by >= 1) inside
    ``[lower, upper]``, and the contiguous range of positions around 0 that are allowed."""
    from .analysis.advice import HYPERPARAMETERS, step_value

    up = "hotter" if HYPERPARAMETERS[hp] == "increasing" else "colder"
    down = "colder" if up == "hotter" else "hotter"
    vals = {0: start}
    for sign, d in ((1, up), (-1, down)):
        v = start
        for k in range(1, reach + 1):
            nxt = step_value(v, d, hp, factor)
            if nxt == v or not math.isfinite(float(nxt)) or nxt <= 0:
                break
            vals[sign * k] = v = nxt

    def ok(v: Any) -> bool:
        return (lower is None or v >= lower - 1e-12) and (upper is None or v <= upper + 1e-12)

    lo = hi = 0
    while lo - 1 in vals and ok(vals[lo - 1]):
        lo -= 1
    while hi + 1 in vals and ok(vals[hi + 1]):
        hi += 1
    return vals, (lo, hi)


def tune_model(train_fn: Any, data: Any, *, hyperparameter: str, start: float,
               density: float, budget: int, factor: float = 2.0, lower: float | None = None,
               upper: float | None = None, rule: Any = None, probe: str | None = PROBE,
               tol: float = 0.0, seeds: Any = 3, retrain: Any = None, prune: str = "magnitude",
               device: str = "auto", cache_dir: Any = None, progress: bool | None = None,
               loss: Any = None, engine: str = "vmap", cka_inputs: str = "train"
               ) -> TuneTrace:
    """Tune a continuous temperature-like hyperparameter of a user's own model.

    ``train_fn(value)`` returns the dense ``nn.Module`` trained with ``hyperparameter`` =
    ``value``; positions are ``start`` times powers of ``factor`` (epochs and batch size
    rounded, changed by >= 1) within ``[lower, upper]``.  Each evaluated model is pruned to
    ``density``, retrained with ``seeds`` and measured through the sweep's stages in
    ``cache_dir`` exactly as :func:`threeregime.advise` does (retrainings of an identical model
    are reused); the labels come from the visited values (one dense model each) with ``rule``.
    ``data`` must carry a validation split (``data.val``: :func:`threeregime.load_data` with
    ``DataSpec(val_size=...)``): the value returned has the lowest validation error.
    Returns the :class:`~threeregime.analysis.tuning_trace.TuneTrace`.
    """
    from .advisor import (
        _checked_inputs,
        _dense_key,
        _measure_spec,
        _numerics_kept,
        _problem,
        _store,
    )
    from .analysis.advice import check_hyperparameter, check_seeds
    from .results.storage import axis_meta_of, combine_points
    from .spec.codec import check_float
    from .spec.specs import PointSpec, spec_hash
    from .sweep.stages import RunOptions, run_on_dense, save_dense, user_dense_key

    hp = check_hyperparameter(hyperparameter)
    if not callable(train_fn):
        raise SpecError(f"train_fn must be a callable value -> trained model; got "
                        f"{type(train_fn).__name__}")
    start = start.item() if isinstance(start, np.generic) else start
    check_float("start", start, 0.0, np.inf, lo_open=True)
    check_float("factor", factor, 1.0, np.inf, lo_open=True)
    check_pos_int("budget", budget)
    density = check_density(density, "density")
    seed_list = check_seeds(seeds)
    for name, v in (("lower", lower), ("upper", upper)):
        if v is not None:
            check_float(name, v, 0.0, np.inf)
    if (lower is not None and start < lower) or (upper is not None and start > upper):
        raise SpecError(f"start {start:g} must lie within [lower, upper] = [{lower}, {upper}]")
    val = getattr(data, "val", None)
    if val is None:
        raise SpecError("data must carry a validation split (data.val) to select on: load it "
                        "with threeregime.load_data(DataSpec(..., val_size=N))")
    start = int(start) if hp in ("epochs", "batch_size") else float(start)
    values, bounds = _positions(start, hp, factor, lower, upper)
    points: dict[int, Any] = {}
    state: dict[str, Any] = {}

    def column() -> Any:
        order = sorted(points, key=lambda k: values[k])
        pts = [({hp: values[k], "density": density, "dense_seed": 0}, points[k])
               for k in order]
        return combine_points(pts, axes={hp: [values[k] for k in order], "density": [density]},
                              axis_meta=axis_meta_of([hp, "density"]), dense_seeds=[0],
                              attrs={"num_classes": int(getattr(data, "num_classes", 0) or 10)})

    def evaluate(k: int) -> float:
        model = train_fn(values[k])             # once per visited value
        splits, rt, prune_spec = _checked_inputs(model, data, density, prune, retrain, ())
        spec = PointSpec(prune=prune_spec, retrain=rt, retrain_seeds=seed_list,
                         measure=_measure_spec(cka_inputs, int(splits.train.x.shape[0])))
        problem = _problem(splits, model, loss)
        dkey = spec_hash({"advise": _dense_key(model, splits, loss),
                          "val": user_dense_key({}, _ValOnly(val))})
        with _numerics_kept(), _store(cache_dir) as root:
            opts = RunOptions(device=device, engine=engine, progress=progress)
            opts.max_members = max(opts.max_members, len(seed_list))
            save_dense(root, dkey, model.state_dict(), problem, opts,
                       extra={"what": "a user's model (threeregime.tune)", hp: values[k]})
            points[k] = run_on_dense(root, dkey, spec, opts, problem=problem).load()
        state["column"] = column()
        ve = np.asarray(points[k]["val_error"].values, float)
        return float(np.nanmean(ve)) if np.isfinite(ve).any() else float("nan")

    def label(vis: tuple[int, ...]) -> str:
        from .analysis.regimes import decode

        col = state["column"]
        pos = [int(np.flatnonzero(np.isclose(col[hp].values, values[k]))[0]) for k in vis]
        reg = label_visited(col, pos, temperature=hp, rule=rule)
        return str(decode(reg["regime"]).values.ravel()[pos[-1]])

    from .analysis.advice import HYPERPARAMETERS

    hotter = 1 if HYPERPARAMETERS[hp] == "increasing" else -1
    walk = policy_walk(label, evaluate, 0, budget, hotter=hotter, bounds=bounds, probe=probe,
                       tol=tol)
    col = state["column"]
    order = sorted(points, key=lambda k: values[k])
    index = {k: i for i, k in enumerate(order)}
    remapped = dataclasses.replace(walk, visited=tuple(index[k] for k in walk.visited),
                                   chosen=index[walk.chosen])
    return TuneTrace.from_walk(remapped, col, hp, budget=budget, rule=rule)


class _ValOnly:
    """The validation split in the shape :func:`~threeregime.stages.user_dense_key` reads."""

    def __init__(self, val: Any) -> None:
        self.train = self.test = val


def tune_temperature(train_fn: Callable[[Any], Any], data: Any, *, hyperparameter: str,
                     start: float, target_density: float, factor: float = 2.0, budget: int = 5,
                     min_improvement: float = 0.0, **kwargs: Any) -> Any:
    """Walk a temperature-like hyperparameter by following the advice (case study 3): the
    earlier name of ``threeregime.tune(train_fn, data, ...)``
    (:func:`tune_model`), with its semantics: the walk stops on keep, a
    reversal, the range's edge, a validation error worse than the previous value's (by more
    than ``min_improvement``) or the budget, and the value returned has the lowest
    *validation* error (``data`` must carry a validation split, ``data.val``), never test
    error.  ``kwargs`` go to :func:`tune_model` (``seeds``,
    ``retrain``, ``device``, ``cache_dir``, ...).  Returns its
    :class:`~threeregime.analysis.tuning_trace.TuneTrace`.
    """
    from .analysis.advice import check_hyperparameter

    check_hyperparameter(hyperparameter)
    check_density(target_density)
    return tune_model(train_fn, data, hyperparameter=hyperparameter, start=start,
                      density=target_density, budget=budget, factor=factor,
                      tol=min_improvement, **kwargs)
