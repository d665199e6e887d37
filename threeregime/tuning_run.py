"""``threeregime.tune``: the tuning policy run live, through the sweep's stages and store.

From a sweep spec's base point (the user's dense configuration) at density ``density``, each
evaluated temperature value is one grid cell of the spec (all its dense seeds): the dense runs
are trained or reused, pruned, retrained and measured by the stage functions of
:mod:`threeregime.stages` in the sweep's own directory (default ``runs/<name>``, so models of an
earlier ``threeregime run`` are reused and an interrupted tune resumes where it stopped: every
stage's artifact is content-addressed).  The walk is :func:`threeregime.tuning.policy_walk`,
labels come from the visited cells only (:func:`threeregime.tuning.label_visited`, the default
rule), and the point returned is the visited one with the lowest *validation* error: the spec
gets a validation split (``data.val_size``, default :data:`DEFAULT_VAL_SIZE`) when it has none,
which changes neither training nor test data, so cached dense and retrained models are reused.

Cells: the tuned axis keeps the spec's grid; density is set to ``density`` (any value in
(0, 1]); every other axis of the spec (a category, another load) is dropped and the base
point's value used.  Each cell's retrainings train as ensembles of that cell only, so a cell's
numbers do not depend on which cells were visited before it.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import ResultsError, SpecError
from .advice import check_density
from .spec import AXES, SweepSpec, check_choice, check_pos_int, load_yaml
from .tuning import PROBE, label_visited, policy_walk
from .tuning_trace import TuneTrace

__all__ = ["tune", "DEFAULT_VAL_SIZE"]

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
    if axis is None:
        if len(temps) != 1:
            raise SpecError(f"axis must name the temperature axis to tune (the spec's: "
                            f"{', '.join(temps) or 'none'}); got None")
        axis = temps[0]
    check_choice("axis", axis, tuple(temps))
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


def tune(spec: Any, *, density: float, budget: int, start: Any = None, axis: str | None = None,
         out: str | Path | None = None, rule: Any = None, probe: str | None = PROBE,
         tol: float = 0.0, val_size: int | None = None, executor: Any = None,
         device: str = "auto", engine: str = "vmap", progress: bool | None = False,
         threads: int | None = None) -> TuneTrace:
    """Tune a temperature-like hyperparameter of a sweep's base point for pruning at ``density``.

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
    probe, tol : see :func:`threeregime.tuning.policy_walk`.
    val_size : int, optional
        Validation examples when the spec has no ``data.val_size`` (default 1000).
    executor, device, engine, progress, threads : as in :func:`threeregime.run_sweep`.

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
    from . import _artifacts as art
    from .driver import _preflight, _run_stages, assemble, default_out
    from .executors import InlineExecutor
    from .plan import Store, SweepPlan, plan_sweep
    from .stages import RunOptions

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
        errors = _run_stages(one, store, executor, opts, progress)
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
        from .regimes import decode

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
