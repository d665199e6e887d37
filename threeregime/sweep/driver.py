"""The sweep driver: plan -> dispatch the stages to an executor -> assemble one Dataset.

Stages and what shares work (keys and store layout: :mod:`threeregime.sweep.plan`; the stage
functions: :mod:`threeregime.sweep.stages`):

* **dense**: one run per (data, model, dense recipe, dense seed); an epochs axis is served by
  snapshots of that one run. Runs that differ only in learning rate, SAM rho or seed (same
  batch size and data) are trained together as one vectorized ensemble.
* **retrain**: for every dense source (run x snapshot) and density: prune once, retrain K
  seeds. All retrainings of one dense run form one ensemble (split into fixed-size chunks
  under a memory budget; chunks never depend on the executor, so neither do results).
* **measure**: per point, the measures its spec names (:mod:`threeregime.metrics.measures`).

Several processes may share one sweep directory: each stage task is claimed
(:mod:`threeregime.results.artifacts`), and a process waits for, or takes over, stages claimed
elsewhere.  :func:`assemble` is the one place where regimes of assembled results are
classified (:func:`threeregime.analysis.regimes.classify`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import logging
import os
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..analysis.regimes import classify
from ..data.sources import load_data, num_classes_of
from ..errors import DataError, FieldError, ResultsError, SpecError, ThreeRegimeWarning
from ..models.zoo import build_model, prunable_names
from ..pruning.families import check_family, prune_names
from ..results import artifacts as art
from ..results.storage import axis_meta_of, cf_complete, combine_points, read_point, write_dataset
from ..spec.codec import check_pos_int
from ..spec.specs import (
    PointSpec,
    SweepSpec,
    canonical_json,
    from_dict,
    load_yaml,
    spec_hash,
    to_dict,
)
from ..training.device import progress_bar
from .executors import InlineExecutor
from .plan import PointJob, Store, SweepPlan, dense_tasks, plan_sweep, retrain_tasks
from .stages import (
    RunOptions,
    chunk_size,
    measure_point,
    problem_of,
    run_dense_group,
    run_point_in,
    run_retrain_group,
)

__all__ = ["run_sweep", "run_point", "sweep_status", "assemble", "plan_sweep", "StageCounts",
           "default_out"]

#: progress as INFO lines (stage starts, every finished task, the end); the command line shows
#: them when stderr is not a terminal (a Slurm log), where no progress bar is drawn
log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- status
@dataclass
class StageCounts:
    """Done / pending / failed / diverged counts of a sweep directory."""

    total: int = 0
    done: int = 0
    diverged: int = 0
    failed: int = 0
    pending: int = 0
    stages: dict = field(default_factory=dict)

    def __str__(self) -> str:
        s = (f"{self.done}/{self.total} points done ({self.diverged} diverged), "
             f"{self.failed} failed, {self.pending} pending")
        st = ", ".join(f"{k}: {v[0]}/{v[1]}" for k, v in self.stages.items())
        return f"{s} [{st}]" if st else s


def sweep_status(spec_or_dir: SweepSpec | str | Path, out: str | Path | None = None, *,
                 results=None) -> StageCounts:
    """Count finished, diverged, failed and pending points of a sweep.

    ``spec_or_dir`` is a :class:`SweepSpec`, a YAML path, or a sweep directory (whose
    ``sweep.json`` holds the spec).  ``results``: the sweep's assembled Dataset, if at hand,
    counts diverged points from its ``status`` instead of reading every point file again.
    """
    spec, root = _resolve(spec_or_dir, out)
    store = Store(root)
    plan = plan_sweep(spec)
    c = StageCounts(total=len(plan.points))
    known = results is not None and "status" in results
    for pj in plan.points:
        if pj.done(store):
            c.done += 1
            with contextlib.suppress(ResultsError):
                if not known and int(read_point(pj.path(store))["status"].values) == 1:
                    c.diverged += 1                                     # 1 = diverged
        elif any(store.failed(k).exists() for k in pj.stage_keys):
            c.failed += 1
        else:
            c.pending += 1
    if known:
        c.diverged = int((results["status"] == 1).sum())
    c.stages = {"dense": (sum(j.done(store) for j in plan.dense), len(plan.dense)),
                "retrain": (sum(j.done(store) for j in plan.retrain), len(plan.retrain)),
                "measure": (c.done, c.total)}
    return c


def _resolve(spec_or_dir, out) -> tuple[SweepSpec, Path]:
    if isinstance(spec_or_dir, SweepSpec):
        if out is None:
            raise SpecError("out must name the sweep directory when a spec object is given")
        return spec_or_dir, Path(out)
    p = Path(spec_or_dir)
    if p.is_dir():
        meta = Store(p).meta
        if not meta.exists():
            raise ResultsError(f"{p} is not a sweep directory (no sweep.json); run "
                               "`threeregime run SWEEP.yaml --out DIR` first")
        return from_dict(SweepSpec, art.read_json(meta)["spec"]), p
    if not p.exists() and p.suffix.lower() not in (".yaml", ".yml"):
        raise ResultsError(f"{p}: no such sweep directory; give a sweep directory or a sweep "
                           "YAML file")
    spec = load_yaml(p, kind="sweep")
    return spec, Path(out) if out is not None else default_out(spec)


def default_out(spec: SweepSpec) -> Path:
    return Path("runs") / spec.name


# --------------------------------------------------------------------------- dispatch
def _record_failure(store: Store, keys: Sequence[str], stage: str, exc: BaseException) -> None:
    msg = f"{type(exc).__name__}: {exc}"
    for k in keys:
        art.write_json(store.failed(k), {
            "stage": stage, "error": msg, "time": time.time(),
            "traceback": traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:]})


def _clear_failures(store: Store, keys: Sequence[str]) -> None:
    for k in keys:
        with contextlib.suppress(OSError):
            store.failed(k).unlink()


def _write_meta(store: Store, spec: SweepSpec) -> None:
    h = spec_hash(spec)
    if store.meta.exists():
        old = art.read_json(store.meta)
        if old.get("name") != spec.name:
            raise ResultsError(
                f"{store.root} holds sweep {old.get('name')!r}, not {spec.name!r}; choose "
                "another --out directory (or rename the sweep)")
        if old.get("hash") == h:
            return
    art.write_json(store.meta, {"name": spec.name, "hash": h,
                                "spec": to_dict(spec, drop_defaults=True)})


def _keys(task) -> list[str]:
    """Stage keys of a task: a chunk of dense/retrain jobs, or one point job."""
    return [task.key] if isinstance(task, PointJob) else [j.key for j in task]


def _stage(name: str, tasks: list, fn: Callable, executor, store: Store, opts: RunOptions,
           progress: bool | None) -> list[str]:
    """Run one stage's tasks; return the failure messages (the sweep goes on).

    Tasks in other processes get ``progress=False``: their per-fit bars would reach a
    notebook as stderr text; this process's stage bar shows the progress.  The bar counts
    models (points for the measure stage), as the status line does, not tasks: a task trains
    a chunk of models together.
    """
    errors: list[str] = []
    if not tasks:
        return errors
    if not isinstance(executor, InlineExecutor):
        opts = dataclasses.replace(opts, progress=False)
    unit = "point" if name == "measure" else "model"
    total = sum(len(_keys(t)) for t in tasks)
    bar = progress_bar(progress)(total=total, desc=f"{name:8s}", unit=unit, leave=True,
                                 disable=(None if progress is None else not progress))
    log.info("%s: %d %s(s) in %d task(s) to run on %r", name, total, unit, len(tasks),
             executor)
    t0 = time.monotonic()
    try:
        for i, (task, outcome) in enumerate(
                executor.map(fn, [(str(store.root), t, opts) for t in tasks]), 1):
            keys = _keys(task[1])
            if isinstance(outcome, BaseException):
                if isinstance(outcome, KeyboardInterrupt):
                    raise outcome
                _record_failure(store, keys, name, outcome)
                errors.append(f"{name}: {type(outcome).__name__}: {outcome}")
                log.warning("%s: task %d/%d failed: %s: %s", name, i, len(tasks),
                            type(outcome).__name__, outcome)
            else:
                _clear_failures(store, keys)
                log.info("%s: %d/%d task(s) done (%.0f s)", name, i, len(tasks),
                         time.monotonic() - t0)
            bar.update(len(keys))
    finally:
        bar.close()
    return errors


def _located(e: Exception, part: str) -> Exception:
    """``e`` (raised building ``base.<part>``) with its location: from the field it carries."""
    if isinstance(e, FieldError):
        return e.under("base" if e.field.startswith(f"{part}.") else f"base.{part}")
    return type(e)(f"base.{part}: {e}")


def _preflight(plan: SweepPlan) -> None:
    """Catch user errors that would fail every task (unknown data/model name or option, no
    prunable layer, a dense layer that is not one, an N:M pattern a layer cannot take, a
    channel pruning that removes a layer, fewer examples than one batch) before any work, as
    one-line errors."""
    seen = set()
    for j in plan.dense:
        p = j.spec
        key = canonical_json({"data": p.data, "model": p.model})
        if key in seen:
            continue
        seen.add(key)
        part = "data"
        try:
            data = load_data(p.data)
            part = "model"
            template = build_model(p.model, data.input_shape, data.num_classes, seed=0)
            prunable_names(template, include_classifier=p.model.prune_classifier)
        except (SpecError, DataError) as e:
            raise _located(e, part) from None
        n = int(data.train.x.shape[0])
        checked = set()
        for r in plan.retrain:
            if r.dense_key != j.key:
                continue
            prune = r.spec.prune
            if canonical_json(prune) not in checked:
                checked.add(canonical_json(prune))
                names = prune_names(template, prune,
                                    include_classifier=p.model.prune_classifier)
                check_family(template, prune, names, data.input_shape)
            for name, t in (("dense", p.dense), ("retrain", r.spec.retrain)):
                if n < t.batch_size:
                    raise DataError(f"base.{name}.batch_size must be <= the {n} training "
                                    f"examples of {p.data.name}; got {t.batch_size} (lower "
                                    "it or raise base.data.train_size)")


def _run_stages(plan: SweepPlan, store: Store, executor, opts: RunOptions,
                progress: bool | None, *, dense: set | None = None,
                retrain: set | None = None, points: Sequence[PointJob] | None = None,
                ensembles: str = "dense") -> list[str]:
    """Dense, retrain and measure tasks of the plan (the full plan's chunks, filtered to the
    jobs with keys in ``dense`` / ``retrain`` when given: chunks equal an undisturbed run's);
    ``ensembles``: how retrainings are grouped (:func:`~threeregime.sweep.plan.retrain_tasks`)."""
    def size_of(p, t):
        return chunk_size(p, t, opts)

    d_tasks = [t for t in dense_tasks(plan, size_of)
               if dense is None or any(j.key in dense for j in t)]
    errors = _stage("dense", d_tasks, run_dense_group, executor, store, opts, progress)
    # a chunk whose dense run failed waits (that failure is already recorded)
    r_tasks = [t for t in retrain_tasks(plan, size_of, ensembles)
               if all(store.dense(j.dense_key).exists() for j in t)
               and (retrain is None or any(j.key in retrain for j in t))]
    errors += _stage("retrain", r_tasks, run_retrain_group, executor, store, opts, progress)
    ready = [pj for pj in (plan.points if points is None else points) if not pj.done(store)
             and all(store.retrain(k).exists() for k in pj.retrain_keys)]
    return errors + _stage("measure", ready, measure_point, executor, store, opts, progress)


def _claimed(store: Store, points: Sequence[PointJob]) -> bool:
    return any(store.claim(k).exists() for pj in points for k in pj.stage_keys)


def _blocked(store: Store, plan: SweepPlan) -> list[PointJob]:
    """Unfinished points one of whose stages is claimed (by another process, or a dead one),
    or that have not failed (another process may be between two of their stages)."""
    return [pj for pj in plan.points if not pj.done(store)
            and (_claimed(store, [pj]) or not any(store.failed(k).exists()
                                                  for k in pj.stage_keys))]


def _await_others(plan: SweepPlan, store: Store, executor, opts: RunOptions,
                  poll: float) -> list[str]:
    """Finish the points whose stages were claimed elsewhere: wait while their owner works,
    take the stage over when its lease goes stale (owner dead, or no heartbeat for 4 periods)."""
    errors: list[str] = []
    unclaimed_passes = 0
    while True:
        blocked = _blocked(store, plan)
        if not blocked or unclaimed_passes >= 3:   # (3 passes without a claim: give up)
            return errors
        errors += _run_stages(plan, store, executor, opts, False,
                              dense={pj.dense_key for pj in blocked},
                              retrain={k for pj in blocked for k in pj.retrain_keys},
                              points=blocked)
        left = _blocked(store, plan)
        unclaimed_passes = 0 if _claimed(store, left) else unclaimed_passes + 1
        if left and unclaimed_passes == 0:
            time.sleep(poll)


def _prepare(root: Path, spec: SweepSpec) -> Store:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ResultsError(f"cannot create output directory {root}: {e.strerror}; choose "
                           "another --out") from None
    if not os.access(root, os.W_OK):
        raise ResultsError(f"output directory {root} is not writable; choose another --out")
    store = Store(root)
    _write_meta(store, spec)
    art.clean_temp(root)
    art.clean_claims(root / "claims")   # left by crashed runs
    return store


def run_sweep(spec: SweepSpec | str | Path, out: str | Path | None = None, *,
              executor=None, device: str = "auto", engine: str = "vmap",
              max_members: int | None = None, progress: bool | None = None,
              threads: int | None = None, memory_budget: float | None = None,
              write_results: bool = True, poll: float = 1.0):
    """Run (or resume) a sweep and return its Dataset.

    Parameters
    ----------
    spec : a :class:`SweepSpec` or the path of a sweep YAML file.
    out : sweep directory (default ``runs/<name>``); finished stages found there are reused.
    executor : an executor from :mod:`threeregime.sweep.executors` (default: inline).
    device : ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda:N"``.
    engine : ``"vmap"`` (vectorized ensembles) or ``"loop"`` (one model at a time).
    max_members : largest ensemble trained at once (default 12 on CPU, 256 on CUDA).
    threads : torch threads per process (default 1 on CPU).
    memory_budget : bytes one ensemble's training step may use (estimated per member from the
        model's parameters and activations); ensembles are cut to fit. Default 2 GiB on CPU,
        40 % of the GPU's memory on CUDA.
    poll : seconds between checks while waiting for stages that another process (sharing
        ``out``) has claimed; the call returns when they are done, or takes them over when that
        process's lease goes stale (it died on this host, or its heartbeat is 4 lease periods
        old, any host: :mod:`threeregime.results.artifacts`).

    Returns
    -------
    xarray.Dataset with the schema of :mod:`threeregime.results.storage`, regimes classified.
    Failed stages are recorded and reported; their points are marked missing.
    """
    if isinstance(spec, (str, Path)):
        spec = load_yaml(spec, kind="sweep")
    root = Path(out) if out is not None else default_out(spec)
    check_pos_int("threads", threads, allow_none=True)
    opts = RunOptions(device=device, engine=engine, max_members=max_members,
                      progress=progress, threads=threads, memory_budget=memory_budget)
    plan = plan_sweep(spec)
    _preflight(plan)
    store = _prepare(root, spec)
    executor = executor or InlineExecutor()
    log.info("sweep %r in %s: %d point(s), %d already done", spec.name, root,
             len(plan.points), sum(pj.done(store) for pj in plan.points))
    errors = _run_stages(plan, store, executor, opts, progress)
    errors += _await_others(plan, store, executor, opts, poll)
    art.clean_claims(root / "claims")
    if errors and not any(pj.done(store) for pj in plan.points):
        raise ResultsError(f"no point of sweep {spec.name!r} could be computed: {len(errors)} "
                           f"stage task(s) failed (first: {errors[0]}); details in "
                           f"{root}/failed/, fix and rerun")
    ds = assemble(spec, root, plan)
    if write_results:
        write_dataset(ds, store.results)
        log.info("sweep %r: results written to %s", spec.name, store.results)
    if errors:
        warnings.warn(f"{len(errors)} stage task(s) failed (recorded under {root}/failed; "
                      f"rerun to retry): {errors[0]}", ThreeRegimeWarning, stacklevel=2)
    return ds


def assemble(spec: SweepSpec, root: str | Path, plan: SweepPlan | None = None, *,
             classify_kw: dict | None = None):
    """Build the sweep Dataset from whatever point files exist (missing ones marked), and
    classify its regimes (the one place results are classified; ``classify_kw`` are
    :func:`threeregime.analysis.regimes.classify`'s keyword arguments)."""
    store = Store(root)
    plan = plan or plan_sweep(spec)
    pts = [(pj.coords, read_point(pj.path(store))) for pj in plan.points if pj.done(store)]
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = "unknown"
    attrs = {"sweep_name": spec.name, "spec_json": canonical_json(spec),
             "spec_hash": spec_hash(spec), "torch_version": torch_version,
             "description": spec.description}
    with contextlib.suppress(Exception):
        n = num_classes_of(spec.base.data)      # without making the data when known upfront
        attrs["num_classes"] = int(problem_of(spec.base).data.num_classes if n is None else n)
    meta = axis_meta_of(spec.axes)
    # storage writes role temperature|load only: a category axis goes in as a load axis and
    # gets its own role after (regimes classify every category value's diagram alone)
    cats = [k for k, m in meta.items() if m["role"] == "category"]
    ds = combine_points(pts, axes={k: list(v) for k, v in spec.axes.items()},
                        axis_meta={k: {**m, "role": "load"} if k in cats else m
                                   for k, m in meta.items()},
                        dense_seeds=list(spec.dense_seeds), attrs=attrs)
    for k in cats:
        ds[k].attrs["role"] = "category"
    _ensure_val_vars(ds)
    temps = [n for n in spec.axes if ds[n].attrs["role"] == "temperature"]
    if temps and "lmc" in ds and "cka" in ds:
        reg = classify(ds, **(classify_kw or {}))
        for name in reg.data_vars:
            ds[name] = reg[name]
        ds.attrs.update(reg.attrs)              # regime_rule: which rule labelled the cells
    return cf_complete(ds)                      # CF-1.10 attrs on the added variables too


def _ensure_val_vars(ds) -> None:
    """``val_error`` / ``dense_val_error`` in every assembled Dataset: NaN when the points were
    written before the validation split existed (they have no validation data anyway)."""
    import numpy as np

    from ..results.schema import _POINT_VARS

    for name, like in (("val_error", "test_error"), ("dense_val_error", "dense_test_error")):
        if name not in ds and like in ds:
            ds[name] = ds[like].copy(data=np.full(ds[like].shape, np.nan))
            ds[name].attrs = {"long_name": _POINT_VARS[name][1], "units": "1"}


# --------------------------------------------------------------------------- one point
def run_point(point: PointSpec | str | Path, *, out: str | Path | None = None,
              device: str = "auto", engine: str = "vmap", progress: bool | None = None):
    """Dense training -> prune -> K retrainings -> metrics for one point.

    Parameters
    ----------
    point : a :class:`PointSpec` or the path of a point YAML file.
    out : a directory for the stage artifacts (reused by later calls with the same inputs);
        default: a temporary directory removed afterwards.

    Returns
    -------
    xarray.Dataset of the point (schema in :mod:`threeregime.results.storage`).
    """
    if isinstance(point, (str, Path)):
        point = load_yaml(point, kind="point")
    if not isinstance(point, PointSpec):
        raise SpecError(f"point must be a PointSpec or a YAML path; got {type(point).__name__}")
    opts = RunOptions(device=device, engine=engine, progress=progress)
    with contextlib.ExitStack() as stack:
        if out is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="threeregime-")))
        else:
            root = Path(out)
            root.mkdir(parents=True, exist_ok=True)
        return run_point_in(root, point, opts)
