"""The idempotent stage functions of a sweep, on a content-addressed store (torch half).

Each stage reads and writes artifacts of a store directory laid out as in
:mod:`threeregime.plan` and keyed by its stage specs; "file exists" means "done", so every
stage can be called again (after a crash, by another process) and does only missing work.

:func:`run_dense_group` trains dense runs as one ensemble and saves snapshots;
:func:`save_dense` stores a given (user's) model as a dense source under :func:`user_dense_key`;
:func:`run_retrain_group` prunes dense sources and retrains them as one ensemble;
:func:`measure_point` runs the point's measures (:mod:`threeregime.measures`) and writes the
point Dataset; :func:`run_on_dense` retrains + measures one point on a stored dense source.

Every stage takes ``problem`` (:class:`Problem`: data + architecture template; ``None`` builds
it from the jobs' spec, so a caller with its own data and model passes them in) and first pins
the numerics (:func:`pin_numerics`), so results never depend on the executor that ran it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import _artifacts as art
from ._device import resolve_device
from ._errors import ResultsError, SpecError
from ._torchio import load_torch, save_torch
from .channel import apply_plan
from .data import load_data
from .families import PrunedSource, prune_names, prune_source, start_state
from .measures import MeasureInput, run_measures
from .models import build_model
from .plan import DenseJob, PointJob, RetrainJob, Store, chunks, plan_point, point_job
from .plan import retrain_jobs as _retrain_jobs
from .prune import density_report
from .spec import PointSpec, TrainSpec, canonical_json, check_pos_int, spec_hash
from .storage import make_point_dataset, read_point, write_point
from .train import estimate_member_bytes, evaluate, fit, init_states

__all__ = ["RunOptions", "Problem", "problem_of", "pin_numerics", "chunk_size",
           "run_dense_group", "run_retrain_group", "measure_point", "save_dense",
           "user_dense_key", "run_on_dense", "MAX_MEMBERS", "MAX_MEMBERS_CUDA"]

#: default cap on ensemble members trained together. On a CPU, ensembles of ~12 small models
#: are fastest per model (larger ones fall out of cache: benchmarks/RESULTS.md); on a GPU the cap
#: is a memory budget.
MAX_MEMBERS = 12
MAX_MEMBERS_CUDA = 256


# --------------------------------------------------------------------------- options
@dataclass
class RunOptions:
    """How (not what) to compute: never part of any content hash.

    ``threads``: torch threads per process (None: 1 on CPU); ``memory_budget``: bytes per
    ensemble (None: 2 GiB on CPU, 40 % of a GPU); ``max_members``: None: 12 CPU, 256 CUDA.
    """

    device: str = "auto"
    engine: str = "vmap"
    max_members: int | None = None
    progress: bool | None = None
    threads: int | None = None
    memory_budget: float | None = None

    def __post_init__(self) -> None:
        if self.engine not in ("vmap", "loop"):
            raise SpecError(f"engine must be one of vmap, loop; got {self.engine!r}")
        dev = resolve_device(self.device)
        if self.max_members is None:
            self.max_members = MAX_MEMBERS_CUDA if dev.type == "cuda" else MAX_MEMBERS
        check_pos_int("max_members", self.max_members)
        if self.memory_budget is None:
            self.memory_budget = _default_budget(dev)
        if isinstance(self.memory_budget, bool) or not isinstance(
                self.memory_budget, (int, float)) or self.memory_budget <= 0:
            raise SpecError(f"memory_budget must be a positive number of bytes; got "
                            f"{self.memory_budget!r}")


def _default_budget(dev: torch.device) -> float:
    """2 GiB on a CPU (the quick sweep's ensembles need far less); 40 % of a GPU's memory."""
    if dev.type == "cuda":
        return 0.4 * torch.cuda.get_device_properties(dev).total_memory
    return 2.0 * 2**30


def pin_numerics(opts: RunOptions) -> None:
    """Fix what the numbers of a stage may depend on, whatever process runs it.

    One torch thread per process by default on CPU (small ensembles step ~10-50x slower with
    2 OpenMP threads on a busy 2-core machine, shared/PROBE.md; parallelism comes from worker
    processes); the thread-count variables for libraries started after this call; cuDNN in
    its deterministic mode.  Every stage calls it first, so an inline run, a process pool, dask
    and submitit workers compute with the same settings.
    """
    threads = opts.threads
    if threads is None and resolve_device(opts.device).type == "cpu":
        threads = 1
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(int(threads))
        torch.set_num_threads(int(threads))
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


# --------------------------------------------------------------------------- problem
@dataclass(frozen=True)
class Problem:
    """The data and the architecture template the stages work on.

    ``template`` fixes the architecture (its weights are never used); ``data`` is a ``Splits``
    (``.train``, ``.test``, ``.input_shape``, ``.num_classes``; :func:`threeregime.load_data`
    or :func:`threeregime.data.as_splits`).  ``loss_fn(outputs, targets)``: the training loss
    of dense runs and retrainings (None: cross-entropy); it is not part of any key, so a
    caller with its own loss folds it into its dense key (as ``advise`` does).
    """

    data: Any
    template: nn.Module
    loss_fn: Callable | None = None


def problem_of(p: PointSpec) -> Problem:
    """Data and an architecture template for a point (data cached in-process)."""
    data = load_data(p.data)
    return Problem(data, build_model(p.model, data.input_shape, data.num_classes, seed=0))


def chunk_size(p: PointSpec, train_spec: TrainSpec, opts: RunOptions,
               problem: Problem | None = None) -> int:
    """Members per ensemble: ``opts.max_members``, lowered so that the estimated memory of a
    training step (:func:`threeregime.train.estimate_member_bytes`) fits ``opts.memory_budget``.
    A function of the spec and the options only, never of the executor."""
    pb = problem or problem_of(p)
    per = estimate_member_bytes(pb.template, pb.data.input_shape, train_spec.batch_size,
                                sam=train_spec.sam_rho > 0)
    return max(1, min(opts.max_members, int(opts.memory_budget // max(per, 1))))


# --------------------------------------------------------------------------- claims
@contextlib.contextmanager
def _claimed(store: Store, jobs: Sequence, done: Callable[[Any], bool]):
    """Yield ``(todo, mine)``: the jobs not done yet and those this process claimed; the
    claims are released on exit, however the stage ends."""
    todo = [j for j in jobs if not done(j)]
    mine = [j for j in todo if art.claim(store.claim(j.key))]
    # a job finished elsewhere just before our claim is released (release returns None)
    mine = [j for j in mine if not done(j) or art.release(store.claim(j.key))]
    try:
        yield todo, mine
    finally:
        for j in mine:
            art.release(store.claim(j.key))


def _ensemble(jobs: Sequence, mine: list, chunk: str, done_path: Callable) -> list:
    """The members to train together in one vectorized ensemble.

    A member's numbers depend (in the last bits) on the ensemble it is trained in.  When part
    of this very chunk was saved by a run that then crashed (its artifacts carry the chunk's
    id), the whole chunk is trained again and only the missing members are saved, so the
    results equal those of an undisturbed run.  Otherwise (e.g. a spec edit added members)
    only this process's missing members train: finished work is reused, not redone.
    """
    for j in jobs:
        if j in mine or not done_path(j).exists():
            continue
        with contextlib.suppress(OSError, ResultsError):
            if load_torch(done_path(j)).get("chunk") == chunk:
                return list(jobs)
    return list(mine)


@contextlib.contextmanager
def _group_stage(root: str | Path, jobs: Sequence, opts: RunOptions):
    """Open a dense/retrain group stage: pin numerics, claim the unfinished jobs.

    Yields ``(store, mine, answer)``: ``answer`` is the stage's return value when there is
    nothing for this process to do (all done, or claimed elsewhere), else None.
    """
    store = Store(root)
    pin_numerics(opts)
    with _claimed(store, jobs, lambda j: j.done(store)) as (todo, mine):
        answer = None
        if not todo:
            answer = {"trained": 0}
        elif not mine:
            answer = {"trained": 0, "claimed_elsewhere": len(todo)}
        yield store, mine, answer


# --------------------------------------------------------------------------- dense
def _dense_record(state, errors: tuple, m: int, **extra) -> dict:
    tr_loss, tr_err, te_loss, te_err = errors
    return {"state": state, **extra, "train_error": float(tr_err[m]),
            "train_loss": float(tr_loss[m]), "test_error": float(te_err[m]),
            "test_loss": float(te_loss[m])}


def _errors(pb: Problem, states, device: str) -> tuple:
    tr_loss, tr_err = evaluate(pb.template, states, pb.data.train, device=device)
    te_loss, te_err = evaluate(pb.template, states, pb.data.test, device=device)
    return tr_loss, tr_err, te_loss, te_err


def run_dense_group(root: str | Path, jobs: Sequence[DenseJob], opts: RunOptions,
                    problem: Problem | None = None) -> dict:
    """Train the dense runs of one group together; save snapshots. Idempotent."""
    with _group_stage(root, jobs, opts) as (store, mine, answer):
        if answer is not None:
            return answer
        art.fault("dense")
        chunk = spec_hash([j.key for j in jobs])
        group = _ensemble(jobs, mine, chunk, lambda j: j.path(store))
        p0 = group[0].spec
        pb = problem or problem_of(p0)
        data = pb.data
        snaps = sorted(set().union(*(j.epochs for j in group)))
        dense_spec = dataclasses.replace(p0.dense, snapshots=tuple(snaps))
        inits = [init_states(build_model(j.spec.model, data.input_shape, data.num_classes,
                                         seed=j.spec.dense_seed)) for j in group]
        res = fit(pb.template, inits, data, dense_spec, seeds=[j.spec.dense_seed for j in group],
                  lrs=[j.spec.dense.lr for j in group],
                  rhos=[j.spec.dense.sam_rho for j in group],
                  device=opts.device, engine=opts.engine, progress=opts.progress,
                  desc=f"dense x{len(group)}", eval_epochs=(), loss_fn=pb.loss_fn)
        final_epoch = res.history["train_loss"].shape[0]
        for m, j in enumerate(group):
            if j not in mine or store.dense_run(j.key).exists():
                continue
            art.write_json(store.dense_run(j.key), {
                "spec": json.loads(canonical_json(j.spec)), "diverged": res.diverged[m],
                "diverged_at": res.diverged_at[m],
                "train_loss": res.history["train_loss"][:, m].tolist(),
                "train_error": res.history["train_error"][:, m].tolist()})
        series: list[tuple[int | None, list]] = [(e, res.snapshots[e]) for e in snaps]
        series.append((None, res.states))   # final.pt last: it marks the run done
        for epoch, states in series:
            errs = _errors(pb, states, opts.device)
            for m, j in enumerate(group):
                if j not in mine or j.path(store, epoch).exists():
                    continue  # committed before a crash: a finished file is never rewritten
                div_at = res.diverged_at[m]
                diverged = res.diverged[m] and (epoch is None or div_at <= max(epoch, 1))
                save_torch(j.path(store, epoch), _dense_record(
                    states[m], errs, m, chunk=chunk,
                    epoch=final_epoch if epoch is None else epoch,
                    diverged=bool(diverged or not np.isfinite(errs[0][m]))))
        return {"trained": len(mine)}


def _digest(tensors: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update((t.float() if t.dtype == torch.bfloat16 else t).numpy().tobytes())
    return h.hexdigest()


def user_dense_key(state: Mapping[str, torch.Tensor], data: Any) -> str:
    """Store key of a given (user's) model as a dense source: ``spec_hash`` of its state's
    SHA-256 and a fingerprint (SHA-256) of the data's train and test tensors."""
    tensors = {f"{s}.{v}": getattr(getattr(data, s), v)
               for s in ("train", "test") for v in ("x", "y")}
    return spec_hash({"user_state": _digest(state), "data": _digest(tensors)})


def save_dense(root: str | Path, key: str, state: Mapping[str, torch.Tensor], problem: Problem,
               opts: RunOptions, *, extra: Mapping[str, Any] | None = None) -> Path:
    """Store ``state`` as the final dense checkpoint ``dense/<key>/final.pt`` (with its train
    and test errors on ``problem.data``), unless it is there already. Idempotent.

    ``extra`` (JSON-able) is written to ``dense/<key>/run.json`` (e.g. where the model came
    from).  Returns the checkpoint's path.
    """
    store = Store(root)
    path = store.dense(key)
    if path.exists():
        return path
    pin_numerics(opts)
    state = {k: v.detach().cpu().clone() for k, v in state.items()}
    errs = _errors(problem, [state], opts.device)
    if not store.dense_run(key).exists():
        art.write_json(store.dense_run(key), {"source": "given", **dict(extra or {})})
    return save_torch(path, _dense_record(state, errs, 0, chunk=key, epoch=None,
                                          diverged=not bool(np.isfinite(errs[0][0]))))


# --------------------------------------------------------------------------- retrain
def _save_diverged_retrain(store: Store, j: RetrainJob, src: dict, chunk: str) -> None:
    """The retraining of a diverged dense model: not run; NaN numbers, status diverged."""
    nan = float("nan")
    save_torch(j.path(store), {
        "state": src["state"], "chunk": chunk, "mask": {}, "diverged": True,
        "dense_diverged": True, "test_error": nan, "train_error": nan, "train_loss": nan,
        "realized_density": nan, "history": {}})


def _retrain_init(store: Store, j: RetrainJob, src: dict, pb: Problem,
                  ps: PrunedSource | None = None) -> dict:
    """Start of retraining: the pruned weights (finetune), the rewind checkpoint (rewind) or a
    fresh initialisation (reinit/scratch), in the pruned source's architecture."""
    p = j.spec
    rewind = (load_torch(store.dense(j.dense_key, p.rewind_epoch))["state"]
              if p.retrain_mode == "rewind" else None)
    seed = 10_000 + 97 * p.dense_seed + j.seed
    if ps is not None and ps.plan:   # channel pruning: a smaller architecture
        return start_state(p.retrain_mode, ps, pb.template, pb.data.input_shape,
                           rewind_state=rewind, seed=seed)
    if p.retrain_mode == "finetune":
        init = src["state"]
    elif rewind is not None:
        init = rewind
    else:  # reinit: fresh random weights, same mask ("Rethinking ..." baseline)
        init = init_states(build_model(p.model, pb.data.input_shape, pb.data.num_classes,
                                       seed=seed))
    return {k: v.clone() for k, v in init.items()}


def _pruned(pb: Problem, j: RetrainJob, src: dict) -> PrunedSource:
    """Prune dense source ``src`` by the family of ``j.spec.prune.method``
    (:func:`threeregime.families.prune_source`).  Random pruning draws from the dense seed,
    so every retrain seed of a cell shares one mask (the seeds differ only in data order, as
    the reference)."""
    p = j.spec
    names = prune_names(pb.template, p.prune, include_classifier=p.model.prune_classifier)
    return prune_source(pb.template, src["state"], p.prune, names, pb.data.input_shape,
                        seed=p.dense_seed, options=p.prune.options)


def run_retrain_group(root: str | Path, jobs: Sequence[RetrainJob], opts: RunOptions,
                      problem: Problem | None = None) -> dict:
    """Prune the dense sources of ``jobs`` and retrain all of them as one ensemble.

    A group shares one pruning family (plan's grouping): fixed masks, N:M training with one
    recipe (``fit(nm=...)``), or channel pruning to one smaller architecture.
    """
    with _group_stage(root, jobs, opts) as (store, mine, answer):
        if answer is not None:
            return answer
        chunk = spec_hash([j.key for j in jobs])
        group = _ensemble(jobs, mine, chunk, lambda j: j.path(store))
        p0 = group[0].spec
        pb = problem or problem_of(p0)
        inits, masks, reports, live = [], [], [], []
        cache: dict = {}
        ps = None
        for j in group:
            src = load_torch(store.dense(j.dense_key, j.source))
            if src["diverged"]:
                # nothing to prune (NaN weights cannot be ranked): recorded as diverged below
                if j in mine:
                    _save_diverged_retrain(store, j, src, chunk)
                continue
            live.append(j)
            ck = (j.dense_key, j.source, canonical_json(j.spec.prune))
            art.fault("prune")
            if ck not in cache:
                cache[ck] = _pruned(pb, j, src)
            ps = cache[ck]
            inits.append(_retrain_init(store, j, src, pb, ps))
            masks.append(ps.masks)
            reports.append(ps.report)
        if not live:
            return {"trained": 0, "diverged": len(mine)}
        art.fault("retrain")
        template = ps.template
        nm_names = (prune_names(pb.template, p0.prune,
                                include_classifier=p0.model.prune_classifier)
                    if ps.nm is not None else None)
        res = fit(template, inits, pb.data, p0.retrain, seeds=[j.seed for j in live],
                  masks=masks, device=opts.device, engine=opts.engine, progress=opts.progress,
                  desc=f"retrain x{len(live)}", loss_fn=pb.loss_fn, nm=ps.nm,
                  nm_names=nm_names)
        tr_loss, tr_err = evaluate(template, res.states, pb.data.train, device=opts.device)
        last = res.last_test_error(5)
        for m, j in enumerate(live):
            if j not in mine:
                continue
            mask = res.masks[m] if ps.nm is not None else masks[m]
            extra = {"plan": ps.plan} if ps.plan else {}
            save_torch(j.path(store), {
                "state": res.states[m], "chunk": chunk, "mask": mask,
                "diverged": bool(res.diverged[m] or not np.isfinite(tr_loss[m])),
                "dense_diverged": False,
                "test_error": float(last[m]), "train_error": float(tr_err[m]),
                "train_loss": float(tr_loss[m]),
                "realized_density": float((density_report(mask) if ps.nm is not None
                                           else reports[m])["overall"]), **extra,
                "history": {k: v[:, m].tolist() if v.ndim == 2 else v.tolist()
                            for k, v in res.history.items()}})
        return {"trained": len(mine)}


# --------------------------------------------------------------------------- measure
def measure_point(root: str | Path, job: PointJob, opts: RunOptions,
                  problem: Problem | None = None) -> dict:
    """Run the point's measures on its retrained models; write its Dataset. Idempotent."""
    store = Store(root)
    out = job.path(store)
    if out.exists():
        return {"measured": 0}
    if not art.claim(store.claim(job.key)):
        return {"measured": 0, "claimed_elsewhere": 1}
    try:
        if out.exists():   # finished elsewhere just before our claim
            return {"measured": 0}
        art.fault("measure")
        pin_numerics(opts)
        p = job.spec
        pb = problem or problem_of(p)
        dense = load_torch(store.dense(job.dense_key, job.source))
        rs = [load_torch(store.retrain(k)) for k in job.retrain_keys]
        ok = [not r["diverged"] for r in rs]
        pairs = list(itertools.combinations(range(len(rs)), 2))
        T = p.measure.lmc_points
        plan = next((r["plan"] for r in rs if r.get("plan")), None)
        template = (pb.template if plan is None
                    else apply_plan(pb.template, plan, pb.data.input_shape))
        inp = MeasureInput(template, [r["state"] for r in rs], [r["mask"] for r in rs], ok,
                           [(i, a, b) for i, (a, b) in enumerate(pairs) if ok[a] and ok[b]],
                           len(pairs), pb.data, p, opts.device)
        values, extra = run_measures(inp, p.measure.names())
        nan = {"lmc": len(pairs), "lmc_curve": (len(pairs), T, 2, 2), "cka": len(pairs),
               "cka_logits": len(pairs), "hessian_trace": len(rs),
               "hessian_trace_stderr": len(rs), "hessian_top_eig": len(rs)}
        values = {k: values.get(k, np.full(shape, np.nan)) for k, shape in nan.items()}
        ds = make_point_dataset(
            retrain_seeds=list(p.retrain_seeds),
            test_error=[r["test_error"] if not r["diverged"] else np.nan for r in rs],
            train_error=[r["train_error"] if not r["diverged"] else np.nan for r in rs],
            dense_test_error=dense["test_error"] if not dense["diverged"] else np.nan,
            dense_train_error=dense["train_error"] if not dense["diverged"] else np.nan,
            realized_density=float(np.mean([r["realized_density"] for r in rs])),
            status="diverged" if (dense["diverged"] or not all(ok)) else "ok",
            lmc_t=np.linspace(0, 1, T), **values, extra_vars=extra,
            extra_attrs={"point_spec": canonical_json(p), "point_key": job.key})
        write_point(ds, out)
        return {"measured": 1}
    finally:
        art.release(store.claim(job.key))


# --------------------------------------------------------------------------- one point
def _until_done(what: str, done: Callable[[], bool], step: Callable[[], Any], wait: float,
                poll: float) -> None:
    """Run ``step`` until ``done()``, waiting ``poll`` s between tries while another process
    holds the work's claim (``step`` takes a stale one over); after ``wait`` s a ResultsError."""
    deadline = time.monotonic() + wait
    while True:
        step()
        if done():
            return
        if time.monotonic() >= deadline:
            raise ResultsError(f"{what} is claimed by another process and not finished after "
                               f"{wait:g} s; wait for it (or remove its claim under claims/ if "
                               "that process is gone) and call again")
        time.sleep(poll)


def run_on_dense(root: str | Path, dense_key: str, point: PointSpec, opts: RunOptions, *,
                 source: int | None = None, problem: Problem | None = None,
                 coords: dict | None = None, wait: float = 3600.0, poll: float = 1.0):
    """Prune the stored dense source ``dense_key`` (snapshot ``source``), retrain it with
    ``point.retrain_seeds``, measure; return the point Dataset. Idempotent: finished stages
    in ``root`` are reused.  Stages another process has claimed (two callers sharing a store)
    are waited for, up to ``wait`` seconds (polling every ``poll``), then a ResultsError."""
    store = Store(root)
    rjs = _retrain_jobs(point, dense_key, source)
    for chunk in chunks(rjs, opts.max_members):
        _until_done(f"retraining {chunk[0].key} of {store.root}",
                    lambda c=chunk: all(j.done(store) for j in c),
                    lambda c=chunk: run_retrain_group(root, c, opts, problem), wait, poll)
    pj = point_job(coords or {}, point, dense_key, source, rjs)
    _until_done(f"point {pj.key} of {store.root}", lambda: pj.done(store),
                lambda: measure_point(root, pj, opts, problem), wait, poll)
    return read_point(pj.path(store))


def run_point_in(root: str | Path, point: PointSpec, opts: RunOptions,
                 problem: Problem | None = None):
    """Dense training -> prune -> K retrainings -> measures for one point, in store ``root``."""
    dj, _, pj = plan_point({}, point)
    run_dense_group(root, [dj], opts, problem)
    return run_on_dense(root, dj.key, point, opts, source=pj.source, problem=problem)
