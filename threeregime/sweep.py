"""The sweep driver: grid -> dense runs -> pruning -> retraining -> metrics -> one Dataset.

A sweep directory holds content-addressed artifacts; the address of each is the hash of
exactly the inputs that determine it, so an edited spec reuses every stage whose inputs did
not change, and a rerun of a finished sweep does no work::

    OUT/
      sweep.json                spec (canonical JSON), its hash, the sweep name
      dense/<dkey>/epoch_NNNN.pt   dense checkpoint at a snapshot epoch (+ its errors)
      dense/<dkey>/final.pt        end of the dense run
      retrain/<rkey>.pt         one retrained sparse model (state, mask, history, errors)
      points/<pkey>.nc          one grid point (cell x dense seed): errors and metrics
      failed/<key>.json         why a stage failed (retried on the next run)
      claims/<key>.claim        who is working on a stage now (several processes share OUT)
      results.nc                the assembled sweep Dataset (see :mod:`threeregime.storage`)

Stages and what shares work:

* **dense**: one run per (data, model, dense recipe, dense seed); an epochs axis is served by
  snapshots of that one run. Runs that differ only in learning rate, SAM rho or seed (same
  batch size and data) are trained together as one vectorized ensemble.
* **retrain**: for every dense source (run x snapshot) and density: prune once, retrain K
  seeds. All retrainings of one dense run form one ensemble (split into fixed-size chunks
  under a memory budget; chunks never depend on the executor, so neither do results).
* **measure**: per point, LMC and CKA on all K(K-1)/2 seed pairs (batched), Hessian optional.

Every artifact is written atomically (:mod:`threeregime._artifacts`); "file exists" means
"done".
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import tempfile
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _artifacts as art
from ._errors import ResultsError, SpecError
from .spec import AXES, PointSpec, SweepSpec, canonical_json, load_yaml, spec_hash, to_dict

__all__ = ["run_sweep", "run_point", "sweep_status", "plan_sweep", "SweepPlan", "StageCounts"]

#: default cap on ensemble members trained together. On a CPU, ensembles of ~12 small models
#: are fastest per model (larger ones fall out of cache: benchmarks/RESULTS.md); on a GPU the cap
#: is a memory budget.
MAX_MEMBERS = 12
MAX_MEMBERS_CUDA = 256


# --------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class DenseJob:
    key: str
    spec: PointSpec          # representative point (data, model, dense, dense_seed)
    epochs: tuple[int, ...]  # snapshot epochs needed (besides the final state)

    @property
    def group(self) -> str:
        """Dense runs in one group train together (only lr, rho and seed may differ)."""
        d = dataclasses.replace(self.spec.dense, lr=0.1, sam_rho=0.0, snapshots=())
        return spec_hash({"data": self.spec.data, "model": self.spec.model, "dense": d})


@dataclass(frozen=True)
class RetrainJob:
    key: str
    dense_key: str
    source: int | None        # snapshot epoch of the dense run, None = final
    seed: int
    spec: PointSpec

    @property
    def group(self) -> str:
        return spec_hash({"dense": self.dense_key, "retrain": self.spec.retrain})


@dataclass(frozen=True)
class PointJob:
    key: str
    coords: dict
    spec: PointSpec
    dense_key: str
    source: int | None
    retrain_keys: tuple[str, ...]


@dataclass
class SweepPlan:
    spec: SweepSpec
    dense: list[DenseJob]
    retrain: list[RetrainJob]
    points: list[PointJob]


def _dense_key(p: PointSpec) -> str:
    return spec_hash({"data": p.data, "model": p.model,
                      "dense": dataclasses.replace(p.dense, snapshots=()),
                      "seed": p.dense_seed})


def _retrain_key(p: PointSpec, dkey: str, source: int | None, seed: int) -> str:
    return spec_hash({"dense": dkey, "source": "final" if source is None else source,
                      "prune": p.prune, "retrain": p.retrain, "mode": p.retrain_mode,
                      "rewind": p.rewind_epoch if p.retrain_mode == "rewind" else None,
                      "seed": seed})


def _point_plan(coords: dict, p: PointSpec) -> tuple[DenseJob, list[RetrainJob], PointJob]:
    dkey = _dense_key(p)
    source = p.snapshot_epoch
    need = set(p.dense.snapshots)
    if source is not None:
        need.add(source)
    if p.retrain_mode == "rewind":
        need.add(p.rewind_epoch)
    dj = DenseJob(dkey, p, tuple(sorted(need)))
    rjs = [RetrainJob(_retrain_key(p, dkey, source, s), dkey, source, s, p)
           for s in p.retrain_seeds]
    pkey = spec_hash({"retrain": [r.key for r in rjs], "measure": p.measure})
    pj = PointJob(pkey, coords, p, dkey, source, tuple(r.key for r in rjs))
    return dj, rjs, pj


def plan_sweep(spec: SweepSpec) -> SweepPlan:
    """Expand a sweep into its de-duplicated dense, retrain and point jobs (deterministic)."""
    dense: dict[str, DenseJob] = {}
    retrain: dict[str, RetrainJob] = {}
    points = []
    for coords, p in spec.points():
        dj, rjs, pj = _point_plan(coords, p)
        if dj.key in dense:
            dense[dj.key] = dataclasses.replace(
                dense[dj.key], epochs=tuple(sorted(set(dense[dj.key].epochs) | set(dj.epochs))))
        else:
            dense[dj.key] = dj
        for r in rjs:
            retrain.setdefault(r.key, r)
        points.append(pj)
    return SweepPlan(spec, list(dense.values()), list(retrain.values()), points)


# --------------------------------------------------------------------------- paths
def _dense_path(root: Path, dkey: str, epoch: int | None) -> Path:
    name = "final.pt" if epoch is None else f"epoch_{epoch:04d}.pt"
    return root / "dense" / dkey / name


def _retrain_path(root: Path, rkey: str) -> Path:
    return root / "retrain" / f"{rkey}.pt"


def _point_path(root: Path, pkey: str) -> Path:
    return root / "points" / f"{pkey}.nc"


def _failed_path(root: Path, key: str) -> Path:
    return root / "failed" / f"{key}.json"


def _dense_done(root: Path, job: DenseJob) -> bool:
    return _dense_path(root, job.key, None).exists() and all(
        _dense_path(root, job.key, e).exists() for e in job.epochs)


# --------------------------------------------------------------------------- context
@dataclass
class RunOptions:
    """How (not what) to compute: never part of any content hash."""

    device: str = "auto"
    engine: str = "vmap"
    max_members: int | None = None
    progress: bool | None = None
    threads: int | None = None   # torch threads per process; None: 1 on CPU
    memory_budget: float | None = None   # bytes per ensemble; None: 2 GiB CPU, 40 % of a GPU

    def __post_init__(self) -> None:
        if self.engine not in ("vmap", "loop"):
            raise SpecError(f"engine must be one of vmap, loop; got {self.engine!r}")
        if self.max_members is None:
            from .train import resolve_device
            cuda = resolve_device(self.device).type == "cuda"
            self.max_members = MAX_MEMBERS_CUDA if cuda else MAX_MEMBERS
        if isinstance(self.max_members, bool) or not isinstance(self.max_members, int) \
                or self.max_members < 1:
            raise SpecError(f"max_members must be an integer >= 1; got {self.max_members!r}")
        if self.memory_budget is None:
            self.memory_budget = _default_budget(self.device)
        if isinstance(self.memory_budget, bool) or not isinstance(
                self.memory_budget, (int, float)) or self.memory_budget <= 0:
            raise SpecError(f"memory_budget must be a positive number of bytes; got "
                            f"{self.memory_budget!r}")


def _default_budget(device: str) -> float:
    """2 GiB on a CPU (the quick sweep's ensembles need far less); 40 % of a GPU's memory."""
    from .train import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda":
        import torch

        return 0.4 * torch.cuda.get_device_properties(dev).total_memory
    return 2.0 * 2**30


def _setup_threads(opts: RunOptions) -> None:
    """One torch thread per process by default on CPU: small ensembles step ~10-50x slower
    with 2 OpenMP threads on a busy 2-core machine (every small op waits at a barrier;
    shared/PROBE.md), so parallelism comes from worker processes instead."""
    import torch

    threads = opts.threads
    if threads is None:
        from .train import resolve_device
        threads = 1 if resolve_device(opts.device).type == "cpu" else None
    if threads:
        torch.set_num_threads(int(threads))


def _problem(p: PointSpec):
    """Data and an architecture template for a point (data cached in-process)."""
    from .data import load_data
    from .models import build_model

    data = load_data(p.data)
    template = build_model(p.model, data.input_shape, data.num_classes, seed=0)
    return data, template


# --------------------------------------------------------------------------- claims
@contextlib.contextmanager
def _claimed(root: Path, jobs: Sequence, done: Callable[[Any], bool]):
    """Yield ``(todo, mine)``: the jobs not done yet and those this process claimed; the
    claims are released on exit, however the stage ends."""
    todo = [j for j in jobs if not done(j)]
    mine = [j for j in todo if art.claim(root / "claims" / f"{j.key}.claim")]
    try:
        yield todo, mine
    finally:
        for j in mine:
            art.release(root / "claims" / f"{j.key}.claim")


# --------------------------------------------------------------------------- stage: dense
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
            if art.load_torch(done_path(j)).get("chunk") == chunk:
                return list(jobs)
    return list(mine)


def run_dense_group(root: str | Path, jobs: Sequence[DenseJob], opts: RunOptions) -> dict:
    """Train the dense runs of one group together; save snapshots. Idempotent."""
    from .models import build_model
    from .train import evaluate, fit, init_states

    root = Path(root)
    _setup_threads(opts)
    with _claimed(root, jobs, lambda j: _dense_done(root, j)) as (todo, mine):
        if not todo:
            return {"trained": 0}
        if not mine:
            return {"trained": 0, "claimed_elsewhere": len(todo)}
        art.fault("dense")
        chunk = spec_hash([j.key for j in jobs])
        group = _ensemble(jobs, mine, chunk, lambda j: _dense_path(root, j.key, None))
        p0 = group[0].spec
        data, template = _problem(p0)
        snaps = sorted(set().union(*(j.epochs for j in group)))
        dense_spec = dataclasses.replace(p0.dense, snapshots=tuple(snaps))
        inits = [init_states(build_model(j.spec.model, data.input_shape, data.num_classes,
                                         seed=j.spec.dense_seed)) for j in group]
        res = fit(template, inits, data, dense_spec, seeds=[j.spec.dense_seed for j in group],
                  lrs=[j.spec.dense.lr for j in group],
                  rhos=[j.spec.dense.sam_rho for j in group],
                  device=opts.device, engine=opts.engine, progress=opts.progress,
                  desc=f"dense x{len(group)}", eval_epochs=())
        final_epoch = res.history["train_loss"].shape[0]
        for m, j in enumerate(group):
            if j not in mine or (root / "dense" / j.key / "run.json").exists():
                continue
            art.write_json(root / "dense" / j.key / "run.json", {
                "spec": json.loads(canonical_json(j.spec)), "diverged": res.diverged[m],
                "diverged_at": res.diverged_at[m],
                "train_loss": res.history["train_loss"][:, m].tolist(),
                "train_error": res.history["train_error"][:, m].tolist()})
        series: list[tuple[int | None, list]] = [(e, res.snapshots[e]) for e in snaps]
        series.append((None, res.states))   # final.pt last: it marks the run done
        for epoch, states in series:
            tr_loss, tr_err = evaluate(template, states, data.train, device=opts.device)
            te_loss, te_err = evaluate(template, states, data.test, device=opts.device)
            for m, j in enumerate(group):
                if j not in mine or _dense_path(root, j.key, epoch).exists():
                    continue  # committed before a crash: a finished file is never rewritten
                div_at = res.diverged_at[m]
                diverged = res.diverged[m] and (epoch is None or div_at <= max(epoch, 1))
                art.save_torch(_dense_path(root, j.key, epoch), {
                    "state": states[m], "chunk": chunk,
                    "epoch": final_epoch if epoch is None else epoch,
                    "diverged": bool(diverged or not np.isfinite(tr_loss[m])),
                    "train_error": float(tr_err[m]), "train_loss": float(tr_loss[m]),
                    "test_error": float(te_err[m]), "test_loss": float(te_loss[m])})
        return {"trained": len(mine)}


# --------------------------------------------------------------------------- stage: retrain
def _masks_for(state, p: PointSpec, template, seed: int):
    from .models import prunable_names
    from .prune import compute_masks

    names = prunable_names(template, include_classifier=p.model.prune_classifier)
    return compute_masks(state, p.prune, names, seed=seed)


def _save_diverged_retrain(root: Path, j: RetrainJob, src: dict, chunk: str) -> None:
    """The retraining of a diverged dense model: not run; NaN numbers, status diverged."""
    nan = float("nan")
    art.save_torch(_retrain_path(root, j.key), {
        "state": src["state"], "chunk": chunk, "mask": {}, "diverged": True,
        "dense_diverged": True, "test_error": nan, "train_error": nan, "train_loss": nan,
        "realized_density": nan, "history": {}})


def run_retrain_group(root: str | Path, jobs: Sequence[RetrainJob], opts: RunOptions) -> dict:
    """Prune the dense sources of ``jobs`` and retrain all of them as one ensemble."""
    from .models import build_model
    from .prune import density_report
    from .train import evaluate, fit

    root = Path(root)
    _setup_threads(opts)
    with _claimed(root, jobs, lambda j: _retrain_path(root, j.key).exists()) as (todo, mine):
        if not todo:
            return {"trained": 0}
        if not mine:
            return {"trained": 0, "claimed_elsewhere": len(todo)}
        chunk = spec_hash([j.key for j in jobs])
        group = _ensemble(jobs, mine, chunk, lambda j: _retrain_path(root, j.key))
        p0 = group[0].spec
        data, template = _problem(p0)
        inits, masks, reports, dense_div = [], [], [], []
        cache: dict = {}
        live = []
        for j in group:
            src = art.load_torch(_dense_path(root, j.dense_key, j.source))
            if src["diverged"]:
                # nothing to prune (NaN weights cannot be ranked): recorded as diverged below
                if j in mine:
                    _save_diverged_retrain(root, j, src, chunk)
                continue
            live.append(j)
            ck = (j.dense_key, j.source, canonical_json(j.spec.prune))
            art.fault("prune")
            if ck not in cache:
                # random pruning draws from the dense seed, so every retrain seed of a cell
                # shares one mask (the seeds differ only in data order, as the reference)
                cache[ck] = _masks_for(src["state"], j.spec, template, seed=j.spec.dense_seed)
            mask = cache[ck]
            p = j.spec
            if p.retrain_mode == "finetune":
                init = src["state"]
            elif p.retrain_mode == "rewind":
                init = art.load_torch(_dense_path(root, j.dense_key, p.rewind_epoch))["state"]
            else:  # reinit: fresh random weights, same mask ("Rethinking ..." baseline)
                from .train import init_states
                init = init_states(build_model(p.model, data.input_shape, data.num_classes,
                                               seed=10_000 + 97 * p.dense_seed + j.seed))
            init = {k: v.clone() for k, v in init.items()}
            inits.append(init)
            masks.append(mask)
            reports.append(density_report(mask))
            dense_div.append(bool(src["diverged"]))
        if not live:
            return {"trained": 0, "diverged": len(mine)}
        art.fault("retrain")
        res = fit(template, inits, data, p0.retrain, seeds=[j.seed for j in live], masks=masks,
                  device=opts.device, engine=opts.engine, progress=opts.progress,
                  desc=f"retrain x{len(live)}")
        tr_loss, tr_err = evaluate(template, res.states, data.train, device=opts.device)
        last = res.last_test_error(5)
        for m, j in enumerate(live):
            if j not in mine:
                continue
            art.save_torch(_retrain_path(root, j.key), {
                "state": res.states[m], "chunk": chunk, "mask": masks[m],
                "diverged": bool(res.diverged[m] or dense_div[m]
                                 or not np.isfinite(tr_loss[m])),
                "dense_diverged": dense_div[m],
                "test_error": float(last[m]), "train_error": float(tr_err[m]),
                "train_loss": float(tr_loss[m]),
                "realized_density": float(reports[m]["overall"]),
                "history": {k: v[:, m].tolist() if v.ndim == 2 else v.tolist()
                            for k, v in res.history.items()}})
        return {"trained": len(mine)}


# --------------------------------------------------------------------------- stage: measure
def measure_point(root: str | Path, job: PointJob, opts: RunOptions) -> dict:
    """LMC, CKA (and Hessian) on the retrained models of one point; write its Dataset."""
    from . import metrics
    from .storage import make_point_dataset, write_point

    root = Path(root)
    out = _point_path(root, job.key)
    if out.exists():
        return {"measured": 0}
    if not art.claim(root / "claims" / f"{job.key}.claim"):
        return {"measured": 0, "claimed_elsewhere": 1}
    try:
        art.fault("measure")
        _setup_threads(opts)
        p = job.spec
        data, template = _problem(p)
        dense = art.load_torch(_dense_path(root, job.dense_key, job.source))
        rs = [art.load_torch(_retrain_path(root, k)) for k in job.retrain_keys]
        K = len(rs)
        ok = [not r["diverged"] for r in rs]
        pairs = list(itertools.combinations(range(K), 2))
        npair = len(pairs)
        T = p.measure.lmc_points
        lmc = np.full(npair, np.nan)
        curve = np.full((npair, T, 2, 2), np.nan)
        cka = np.full(npair, np.nan)
        cka_logits = np.full(npair, np.nan)
        good_pairs = [(i, a, b) for i, (a, b) in enumerate(pairs) if ok[a] and ok[b]]
        states = [r["state"] for r in rs]
        if good_pairs and p.measure.lmc:
            res = metrics.lmc_pairs(template, states, [(a, b) for _, a, b in good_pairs],
                                    data.train, data.test if p.measure.lmc_test else None,
                                    points=T, batch_size=p.measure.eval_batch_size,
                                    device=opts.device)
            for n, (i, _, _) in enumerate(good_pairs):
                lmc[i] = res[n].mc
                curve[i] = res[n].curve
        if good_pairs and p.measure.cka:
            inputs = data.test.x if p.measure.cka_inputs == "test" else data.train.x
            if p.measure.cka_n is not None:
                inputs = inputs[:p.measure.cka_n]
            res = metrics.cka_pairs(template, states, [(a, b) for _, a, b in good_pairs], inputs,
                                    batch_size=p.measure.eval_batch_size, device=opts.device)
            for n, (i, _, _) in enumerate(good_pairs):
                cka[i] = res[n].softmax
                cka_logits[i] = res[n].logits
        h_tr = np.full(K, np.nan)
        h_se = np.full(K, np.nan)
        h_eig = np.full(K, np.nan)
        if p.measure.hessian:
            import torch

            from .train import resolve_device
            dev = resolve_device(opts.device)
            sub = (data.train.x[:p.measure.hessian_n], data.train.y[:p.measure.hessian_n])
            for k, r in enumerate(rs):
                if not ok[k]:
                    continue
                mdl = _loaded(template, r["state"]).to(dev)
                tr = metrics.hessian_trace(mdl, torch.nn.functional.cross_entropy, sub,
                                           probes=p.measure.hessian_probes,
                                           seed=p.dense_seed * 1000 + k, masks=r["mask"])
                h_tr[k], h_se[k] = tr.trace, tr.stderr
                eig = metrics.hessian_top_eigenvalues(mdl, torch.nn.functional.cross_entropy, sub,
                                                      k=p.measure.hessian_top_k,
                                                      seed=p.dense_seed, masks=r["mask"])
                h_eig[k] = eig.eigenvalues[0]
        status = "diverged" if (dense["diverged"] or not all(ok)) else "ok"
        ds = make_point_dataset(
            retrain_seeds=list(p.retrain_seeds),
            test_error=[r["test_error"] if not r["diverged"] else np.nan for r in rs],
            train_error=[r["train_error"] if not r["diverged"] else np.nan for r in rs],
            dense_test_error=dense["test_error"] if not dense["diverged"] else np.nan,
            dense_train_error=dense["train_error"] if not dense["diverged"] else np.nan,
            realized_density=float(np.mean([r["realized_density"] for r in rs])),
            status=status, lmc=lmc, lmc_curve=curve, lmc_t=np.linspace(0, 1, T), cka=cka,
            cka_logits=cka_logits, hessian_trace=h_tr, hessian_trace_stderr=h_se,
            hessian_top_eig=h_eig, extra_attrs={"point_spec": canonical_json(p),
                                                "point_key": job.key})
        write_point(ds, out)
        return {"measured": 1}
    finally:
        art.release(root / "claims" / f"{job.key}.claim")


def _loaded(template, state):
    import copy

    m = copy.deepcopy(template)
    m.load_state_dict(state)
    return m.eval()


# --------------------------------------------------------------------------- grouping
def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def chunk_size(p: PointSpec, train_spec, opts: RunOptions) -> int:
    """Members per ensemble: ``opts.max_members``, lowered so that the estimated memory of a
    training step (:func:`threeregime.train.estimate_member_bytes`) fits ``opts.memory_budget``.
    A function of the spec and the options only, never of the executor."""
    from .train import estimate_member_bytes

    data, template = _problem(p)
    per = estimate_member_bytes(template, data.input_shape, train_spec.batch_size,
                                sam=train_spec.sam_rho > 0)
    return max(1, min(opts.max_members, int(opts.memory_budget // max(per, 1))))


def dense_tasks(plan: SweepPlan, opts: RunOptions) -> list[list[DenseJob]]:
    groups: dict[str, list[DenseJob]] = defaultdict(list)
    for j in plan.dense:
        groups[j.group].append(j)
    out = []
    for g in groups.values():
        hottest = max(g, key=lambda j: j.spec.dense.sam_rho).spec  # SAM needs the most memory
        out += _chunks(g, chunk_size(g[0].spec, hottest.dense, opts))
    return out


def retrain_tasks(plan: SweepPlan, opts: RunOptions) -> list[list[RetrainJob]]:
    groups: dict[str, list[RetrainJob]] = defaultdict(list)
    for j in plan.retrain:
        groups[j.group].append(j)
    return [c for g in groups.values()
            for c in _chunks(g, chunk_size(g[0].spec, g[0].spec.retrain, opts))]


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


def sweep_status(spec_or_dir: SweepSpec | str | Path, out: str | Path | None = None
                 ) -> StageCounts:
    """Count finished, diverged, failed and pending points of a sweep.

    ``spec_or_dir`` is a :class:`SweepSpec`, a YAML path, or a sweep directory (whose
    ``sweep.json`` holds the spec).
    """
    from .storage import read_point

    spec, root = _resolve(spec_or_dir, out)
    plan = plan_sweep(spec)
    c = StageCounts(total=len(plan.points))
    for pj in plan.points:
        pp = _point_path(root, pj.key)
        if pp.exists():
            c.done += 1
            with contextlib.suppress(ResultsError):
                if int(read_point(pp)["status"].values) == 1:  # 1 = diverged
                    c.diverged += 1
        elif any(_failed_path(root, k).exists() for k in (pj.key, pj.dense_key,
                                                          *pj.retrain_keys)):
            c.failed += 1
        else:
            c.pending += 1
    c.stages = {
        "dense": (sum(_dense_done(root, j) for j in plan.dense), len(plan.dense)),
        "retrain": (sum(_retrain_path(root, j.key).exists() for j in plan.retrain),
                    len(plan.retrain)),
        "measure": (c.done, c.total)}
    return c


def _resolve(spec_or_dir, out) -> tuple[SweepSpec, Path]:
    from .spec import from_dict

    if isinstance(spec_or_dir, SweepSpec):
        if out is None:
            raise SpecError("out must name the sweep directory when a spec object is given")
        return spec_or_dir, Path(out)
    p = Path(spec_or_dir)
    if p.is_dir():
        meta = p / "sweep.json"
        if not meta.exists():
            raise ResultsError(f"{p} is not a sweep directory (no sweep.json); run "
                               "`threeregime run SWEEP.yaml --out DIR` first")
        raw = art.read_json(meta)
        return from_dict(SweepSpec, raw["spec"]), p
    spec = load_yaml(p, kind="sweep")
    return spec, Path(out) if out is not None else default_out(spec)


def default_out(spec: SweepSpec) -> Path:
    return Path("runs") / spec.name


# --------------------------------------------------------------------------- driver
def _record_failure(root: Path, keys: Sequence[str], stage: str, exc: BaseException) -> None:
    msg = f"{type(exc).__name__}: {exc}"
    for k in keys:
        art.write_json(_failed_path(root, k), {
            "stage": stage, "error": msg, "time": time.time(),
            "traceback": traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:]})


def _clear_failures(root: Path, keys: Sequence[str]) -> None:
    for k in keys:
        with contextlib.suppress(OSError):
            _failed_path(root, k).unlink()


def _write_meta(root: Path, spec: SweepSpec) -> None:
    meta = root / "sweep.json"
    h = spec_hash(spec)
    if meta.exists():
        old = art.read_json(meta)
        if old.get("name") != spec.name:
            raise ResultsError(
                f"{root} holds sweep {old.get('name')!r}, not {spec.name!r}; choose another "
                "--out directory (or rename the sweep)")
        if old.get("hash") == h:
            return
    art.write_json(meta, {"name": spec.name, "hash": h,
                          "spec": to_dict(spec, drop_defaults=True)})


def _stage(name, tasks, fn, executor, root, opts, keys_of, progress) -> list[str]:
    """Run one stage's tasks; return the failure messages (the sweep goes on)."""
    from .train import _tqdm

    tqdm = _tqdm(progress)
    errors: list[str] = []
    if not tasks:
        return errors
    bar = tqdm(total=len(tasks), desc=f"{name:8s}", unit="task", leave=True,
               disable=(None if progress is None else not progress))
    try:
        for task, outcome in executor.map(fn, [(str(root), t, opts) for t in tasks]):
            keys = keys_of(task[1])
            if isinstance(outcome, BaseException):
                if isinstance(outcome, KeyboardInterrupt):
                    raise outcome
                _record_failure(root, keys, name, outcome)
                errors.append(f"{name}: {type(outcome).__name__}: {outcome}")
            else:
                _clear_failures(root, keys)
            bar.update(1)
    finally:
        bar.close()
    return errors


def _preflight(plan: SweepPlan) -> None:
    """Catch user errors that would fail every task (unknown data/model name or option, no
    prunable layer, fewer examples than one batch) before any work, as one-line errors."""
    from ._errors import DataError
    from .models import prunable_names

    seen = set()
    for j in plan.dense:
        p = j.spec
        key = canonical_json({"data": p.data, "model": p.model})
        if key in seen:
            continue
        seen.add(key)
        part = "data"
        try:
            from .data import load_data
            from .models import build_model

            data = load_data(p.data)
            part = "model"
            template = build_model(p.model, data.input_shape, data.num_classes, seed=0)
            prunable_names(template, include_classifier=p.model.prune_classifier)
        except (SpecError, DataError) as e:
            msg = str(e)
            head = msg.split(" ", 1)[0]
            where = ("base." if head.startswith(f"{part}.") else f"base.{part}." if
                     head.startswith("options.") else f"base.{part}: ")
            raise type(e)(f"{where}{msg}") from None
        n = int(data.train.x.shape[0])
        for r in plan.retrain:
            if r.dense_key != j.key:
                continue
            for name, t in (("dense", p.dense), ("retrain", r.spec.retrain)):
                if n < t.batch_size:
                    raise DataError(f"base.{name}.batch_size must be <= the {n} training "
                                    f"examples of {p.data.name}; got {t.batch_size} (lower "
                                    "it or raise base.data.train_size)")


def _measure_stage(plan, points, executor, root, opts, progress) -> list[str]:
    ready = [pj for pj in points if not _point_path(root, pj.key).exists()
             and all(_retrain_path(root, k).exists() for k in pj.retrain_keys)]
    return _stage("measure", ready, measure_point, executor, root, opts, lambda t: [t.key],
                  progress)


def _ready(root: Path, chunk: Sequence[RetrainJob]) -> bool:
    """A retrain chunk shares one dense run: it can start when that run is done."""
    return _dense_path(root, chunk[0].dense_key, None).exists()


def _claim_path(root: Path, key: str) -> Path:
    return root / "claims" / f"{key}.claim"


def _blocked(root: Path, plan: SweepPlan) -> list[PointJob]:
    """Unfinished points one of whose stages is claimed (by another process, or a dead one)."""
    return [pj for pj in plan.points if not _point_path(root, pj.key).exists() and any(
        _claim_path(root, k).exists() for k in (pj.dense_key, *pj.retrain_keys, pj.key))]


def _await_others(plan: SweepPlan, root: Path, executor, opts: RunOptions,
                  poll: float) -> list[str]:
    """Finish the points whose stages were claimed elsewhere: wait while their owner works,
    take the stage over when the claim goes stale (owner dead or claim too old)."""
    errors: list[str] = []
    while True:
        blocked = _blocked(root, plan)
        if not blocked:
            return errors
        dk = {pj.dense_key for pj in blocked}
        rk = {k for pj in blocked for k in pj.retrain_keys}
        # the full plan's tasks, filtered: chunks are the same as in an undisturbed run
        errors += _stage("dense", [t for t in dense_tasks(plan, opts)
                                   if any(j.key in dk for j in t)],
                         run_dense_group, executor, root, opts, lambda t: [j.key for j in t],
                         False)
        errors += _stage("retrain", [t for t in retrain_tasks(plan, opts)
                                     if _ready(root, t) and any(j.key in rk for j in t)],
                         run_retrain_group, executor, root, opts,
                         lambda t: [j.key for j in t], False)
        errors += _measure_stage(plan, blocked, executor, root, opts, False)
        if _blocked(root, plan):
            time.sleep(poll)


def run_sweep(spec: SweepSpec | str | Path, out: str | Path | None = None, *,
              executor=None, device: str = "auto", engine: str = "vmap",
              max_members: int | None = None, progress: bool | None = None,
              threads: int | None = None, memory_budget: float | None = None,
              write_results: bool = True,
              poll: float = 1.0):
    """Run (or resume) a sweep and return its Dataset.

    Parameters
    ----------
    spec : a :class:`SweepSpec` or the path of a sweep YAML file.
    out : sweep directory (default ``runs/<name>``); finished stages found there are reused.
    executor : an executor from :mod:`threeregime.executors` (default: inline).
    device : ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda:N"``.
    engine : ``"vmap"`` (vectorized ensembles) or ``"loop"`` (one model at a time).
    max_members : largest ensemble trained at once (default 12 on CPU, 256 on CUDA).
    memory_budget : bytes one ensemble's training step may use (estimated per member from the
        model's parameters and activations); ensembles are cut to fit. Default 2 GiB on CPU,
        40 % of the GPU's memory on CUDA.
    poll : seconds between checks while waiting for stages that another process (sharing
        ``out``) has claimed; the call returns when they are done, or takes them over when that
        process died (same host) or its claim is older than 6 hours.

    Returns
    -------
    xarray.Dataset with the schema of :mod:`threeregime.storage`, regimes classified.
    Failed stages are recorded and reported; their points are marked missing.
    """
    from .executors import InlineExecutor

    if isinstance(spec, (str, Path)):
        spec = load_yaml(spec, kind="sweep")
    root = Path(out) if out is not None else default_out(spec)
    opts = RunOptions(device=device, engine=engine, max_members=max_members,
                      progress=progress, threads=threads, memory_budget=memory_budget)
    plan = plan_sweep(spec)
    _preflight(plan)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ResultsError(f"cannot create output directory {root}: {e.strerror}; choose "
                           "another --out") from None
    if not os.access(root, os.W_OK):
        raise ResultsError(f"output directory {root} is not writable; choose another --out")
    _write_meta(root, spec)
    art.clean_temp(root)
    art.clean_claims(root / "claims")   # left by crashed runs
    executor = executor or InlineExecutor()
    errors = []
    errors += _stage("dense", dense_tasks(plan, opts), run_dense_group, executor, root, opts,
                     lambda t: [j.key for j in t], progress)
    # a retrain chunk shares one dense run; if that failed, its failure is already recorded
    errors += _stage("retrain", [t for t in retrain_tasks(plan, opts) if _ready(root, t)],
                     run_retrain_group, executor, root, opts, lambda t: [j.key for j in t],
                     progress)
    errors += _measure_stage(plan, plan.points, executor, root, opts, progress)
    errors += _await_others(plan, root, executor, opts, poll)
    art.clean_claims(root / "claims")
    if errors and not any(_point_path(root, pj.key).exists() for pj in plan.points):
        raise ResultsError(f"no point of sweep {spec.name!r} could be computed: {len(errors)} "
                           f"stage task(s) failed (first: {errors[0]}); details in "
                           f"{root}/failed/, fix and rerun")
    ds = assemble(spec, root, plan)
    if write_results:
        from .storage import write_dataset
        write_dataset(ds, root / "results.nc")
    if errors:
        import warnings

        from ._errors import ThreeRegimeWarning
        warnings.warn(f"{len(errors)} stage task(s) failed (recorded under {root}/failed; "
                      f"rerun to retry): {errors[0]}", ThreeRegimeWarning, stacklevel=2)
    return ds


def assemble(spec: SweepSpec, root: str | Path, plan: SweepPlan | None = None):
    """Build the sweep Dataset from whatever point files exist (missing ones marked)."""
    import importlib.metadata

    from .storage import combine_points, read_point

    root = Path(root)
    plan = plan or plan_sweep(spec)
    pts = []
    for pj in plan.points:
        pp = _point_path(root, pj.key)
        if pp.exists():
            pts.append((pj.coords, read_point(pp)))
    meta = {k: {"role": AXES[k].role, "hotter": AXES[k].hotter, "long_name": AXES[k].long_name,
                "units": AXES[k].units} for k in spec.axes}
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = "unknown"
    num_classes = None
    with contextlib.suppress(Exception):
        num_classes = _problem(spec.base)[0].num_classes
    attrs = {"sweep_name": spec.name, "spec_json": canonical_json(spec),
             "spec_hash": spec_hash(spec), "torch_version": torch_version,
             "description": spec.description}
    if num_classes:
        attrs["num_classes"] = int(num_classes)
    return combine_points(pts, axes={k: list(v) for k, v in spec.axes.items()}, axis_meta=meta,
                          dense_seeds=list(spec.dense_seeds), attrs=attrs)


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
    xarray.Dataset of the point (schema in :mod:`threeregime.storage`).
    """
    from .storage import read_point

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
        dj, rjs, pj = _point_plan({}, point)
        run_dense_group(root, [dj], opts)
        for chunk in _chunks(rjs, opts.max_members):
            run_retrain_group(root, chunk, opts)
        measure_point(root, pj, opts)
        return read_point(_point_path(root, pj.key))
