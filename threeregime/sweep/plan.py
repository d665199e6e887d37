"""The sweep as a plan: content-addressed stage specs, the store layout, grouping into tasks.

Torch-free.  A sweep directory (a *store*) holds content-addressed artifacts; the key of each
is the hash (:func:`threeregime.spec.specs.spec_hash`, SHA-256 of canonical JSON) of exactly the
inputs that determine it, so an edited spec reuses every stage whose inputs did not change, and
a rerun of a finished sweep does no work::

    ROOT/
      sweep.json                   spec (canonical JSON), its hash, the sweep name
      dense/<dkey>/epoch_NNNN.pt   dense checkpoint at a snapshot epoch (+ its errors)
      dense/<dkey>/final.pt        end of the dense run (written last: marks the run done)
      dense/<dkey>/run.json        the dense run's spec and training history
      retrain/<rkey>.pt            one retrained sparse model (state, mask, history, errors)
      points/<pkey>.nc             one grid point (cell x dense seed): errors and metrics
      failed/<key>.json            why a stage failed (retried on the next run)
      claims/<key>.claim           who is working on a stage now (several processes share ROOT)
      results.nc                   the assembled sweep Dataset (:mod:`threeregime.results.storage`)

Keys belong to the stage specs (:class:`DenseJob`, :class:`RetrainJob`, :class:`PointJob`):

* dense:   ``spec_hash({"data" (val_size removed), "model", "dense" (snapshots removed),
  "seed"})``;
* retrain: ``spec_hash({"dense": dkey, "source": epoch | "final", "prune", "retrain", "mode",
  "rewind": epoch (rewind mode) | None, "seed"})``;
* point:   ``spec_hash({"retrain": [rkey, ...], "measure"})``, plus ``"val_size"`` when the
  data has a validation split.

A validation split (``data.val_size``) changes neither the training nor the test data, so it
is left out of the dense (and hence retrain) keys: its errors are evaluated by the measure
stage, and a spec with ``val_size`` reuses the dense and retrained models of the same spec
without it.

A dense source need not come from training: :func:`threeregime.sweep.stages.save_dense` stores a
user's model under a key of its own (state bytes + data fingerprint) and retrain/point jobs
refer to it by ``dense_key`` like to any other.
"""
from __future__ import annotations

import dataclasses
import functools
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import SpecError
from ..spec.specs import PointSpec, SweepSpec, TrainSpec, nm_pattern, spec_hash

__all__ = ["DenseJob", "RetrainJob", "PointJob", "SweepPlan", "Store", "plan_point",
           "plan_sweep", "dense_tasks", "retrain_tasks", "chunks", "RETRAIN_ENSEMBLES"]


# --------------------------------------------------------------------------- store layout
@dataclass(frozen=True)
class Store:
    """The path layout of a sweep directory (see the module docstring)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def dense(self, key: str, epoch: int | None = None) -> Path:
        """A dense checkpoint: at snapshot ``epoch``, or the end of the run (``None``)."""
        name = "final.pt" if epoch is None else f"epoch_{epoch:04d}.pt"
        return self.root / "dense" / key / name

    def dense_run(self, key: str) -> Path:
        return self.root / "dense" / key / "run.json"

    def retrain(self, key: str) -> Path:
        return self.root / "retrain" / f"{key}.pt"

    def point(self, key: str) -> Path:
        return self.root / "points" / f"{key}.nc"

    def failed(self, key: str) -> Path:
        return self.root / "failed" / f"{key}.json"

    def claim(self, key: str) -> Path:
        return self.root / "claims" / f"{key}.claim"

    @property
    def meta(self) -> Path:
        return self.root / "sweep.json"

    @property
    def results(self) -> Path:
        return self.root / "results.nc"


# --------------------------------------------------------------------------- stage specs
def _training_data(p: PointSpec):
    """The data spec as far as training sees it: the validation split left out."""
    return dataclasses.replace(p.data, val_size=None)


@dataclass(frozen=True)
class DenseJob:
    """One dense run: ``spec``'s data, model, dense recipe and dense seed; snapshot ``epochs``."""

    spec: PointSpec          # representative point (data, model, dense, dense_seed)
    epochs: tuple[int, ...]  # snapshot epochs needed (besides the final state)

    @functools.cached_property
    def key(self) -> str:
        p = self.spec
        return spec_hash({"data": _training_data(p), "model": p.model,
                          "dense": dataclasses.replace(p.dense, snapshots=()),
                          "seed": p.dense_seed})

    @functools.cached_property
    def group(self) -> str:
        """Dense runs in one group train together (only lr, rho and seed may differ)."""
        d = dataclasses.replace(self.spec.dense, lr=0.1, sam_rho=0.0, snapshots=())
        return spec_hash({"data": _training_data(self.spec), "model": self.spec.model,
                          "dense": d})

    def path(self, store: Store, epoch: int | None = None) -> Path:
        return store.dense(self.key, epoch)

    def done(self, store: Store) -> bool:
        return self.path(store).exists() and all(self.path(store, e).exists()
                                                 for e in self.epochs)


@dataclass(frozen=True)
class RetrainJob:
    """Prune dense source ``dense_key`` (snapshot ``source``, None = final) and retrain it with
    retraining seed ``seed`` (``spec`` gives prune, retrain, mode, rewind epoch)."""

    dense_key: str
    source: int | None
    seed: int
    spec: PointSpec

    @functools.cached_property
    def key(self) -> str:
        p = self.spec
        return spec_hash({"dense": self.dense_key,
                          "source": "final" if self.source is None else self.source,
                          "prune": p.prune, "retrain": p.retrain, "mode": p.retrain_mode,
                          "rewind": p.rewind_epoch if p.retrain_mode == "rewind" else None,
                          "seed": self.seed})

    @functools.cached_property
    def group(self) -> str:
        """Retrainings of one group train together as one ensemble: one dense run and recipe;
        N:M training also shares its pattern and recipe (``prune``), and channel pruning its
        smaller architecture (``prune`` and the dense snapshot ``source``)."""
        return self._group_key({"dense": self.dense_key})

    @functools.cached_property
    def cell_group(self) -> str:
        """Like :attr:`group`, across dense runs: retrainings of one recipe on dense runs of
        the same data (training part) and model train together (``retrain_tasks(...,
        ensembles="cell")``); N:M training also shares its pattern and recipe, and channel
        pruning keeps one group per dense source (its smaller architecture follows the
        source's weights)."""
        if self.spec.prune.method == "channel":
            return self.group
        return self._group_key({"data": _training_data(self.spec), "model": self.spec.model})

    def _group_key(self, base: dict) -> str:
        """Hash of ``base`` (what the members share besides their recipe) with the retrain
        recipe and, where the pruning fixes the architecture or its masks train, the pruning."""
        key = {**base, "retrain": self.spec.retrain}
        prune = self.spec.prune
        if prune.method == "channel":
            key.update(prune=prune, source=self.source)
        elif nm_pattern(prune.method):
            key.update(prune=prune)
        return spec_hash(key)

    def path(self, store: Store) -> Path:
        return store.retrain(self.key)

    def done(self, store: Store) -> bool:
        return self.path(store).exists()


@dataclass(frozen=True)
class PointJob:
    """Measure the retrained models ``retrain_keys`` of one point (``spec.measure``)."""

    coords: dict
    spec: PointSpec
    dense_key: str
    source: int | None
    retrain_keys: tuple[str, ...]

    @functools.cached_property
    def key(self) -> str:
        key = {"retrain": list(self.retrain_keys), "measure": self.spec.measure}
        if self.spec.data.val_size is not None:
            key["val_size"] = self.spec.data.val_size
        return spec_hash(key)

    @property
    def stage_keys(self) -> tuple[str, ...]:
        """Keys of every stage this point needs (dense, retrainings, itself)."""
        return (self.dense_key, *self.retrain_keys, self.key)

    def path(self, store: Store) -> Path:
        return store.point(self.key)

    def done(self, store: Store) -> bool:
        return self.path(store).exists()


@dataclass
class SweepPlan:
    spec: SweepSpec
    dense: list[DenseJob]
    retrain: list[RetrainJob]
    points: list[PointJob]


def retrain_jobs(p: PointSpec, dense_key: str, source: int | None) -> list[RetrainJob]:
    """The K retrain jobs of point ``p`` on dense source ``dense_key`` (``p.retrain_seeds``)."""
    return [RetrainJob(dense_key, source, s, p) for s in p.retrain_seeds]


def point_job(coords: dict, p: PointSpec, dense_key: str, source: int | None,
              rjs: Sequence[RetrainJob]) -> PointJob:
    return PointJob(coords, p, dense_key, source, tuple(r.key for r in rjs))


def plan_point(coords: dict, p: PointSpec) -> tuple[DenseJob, list[RetrainJob], PointJob]:
    """The dense, retrain and point jobs of one grid point."""
    source = p.snapshot_epoch
    need = set(p.dense.snapshots)
    if source is not None:
        need.add(source)
    if p.retrain_mode == "rewind":
        need.add(p.rewind_epoch)
    dj = DenseJob(p, tuple(sorted(need)))
    rjs = retrain_jobs(p, dj.key, source)
    return dj, rjs, point_job(coords, p, dj.key, source, rjs)


def plan_sweep(spec: SweepSpec) -> SweepPlan:
    """Expand a sweep into its de-duplicated dense, retrain and point jobs (deterministic)."""
    dense: dict[str, DenseJob] = {}
    retrain: dict[str, RetrainJob] = {}
    points = []
    for coords, p in spec.points():
        dj, rjs, pj = plan_point(coords, p)
        if dj.key in dense:
            merged = tuple(sorted(set(dense[dj.key].epochs) | set(dj.epochs)))
            dense[dj.key] = dataclasses.replace(dense[dj.key], epochs=merged)
        else:
            dense[dj.key] = dj
        for r in rjs:
            retrain.setdefault(r.key, r)
        points.append(pj)
    return SweepPlan(spec, list(dense.values()), list(retrain.values()), points)


# --------------------------------------------------------------------------- grouping
#: ``size_of(point_spec, train_spec) -> members per ensemble`` (the torch side's memory rule,
#: :func:`threeregime.sweep.stages.chunk_size`, bound to the run options)
SizeOf = Callable[[PointSpec, TrainSpec], int]


def chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def dense_tasks(plan: SweepPlan, size_of: SizeOf) -> list[list[DenseJob]]:
    """Dense runs grouped into ensembles (fixed by the spec and options, never the executor)."""
    groups: dict[str, list[DenseJob]] = defaultdict(list)
    for j in plan.dense:
        groups[j.group].append(j)
    out = []
    for g in groups.values():
        hottest = max(g, key=lambda j: j.spec.dense.sam_rho).spec  # SAM needs the most memory
        out += chunks(g, size_of(g[0].spec, hottest.dense))
    return out


#: how retrainings are grouped into ensembles (:func:`retrain_tasks`)
RETRAIN_ENSEMBLES = ("dense", "cell")


def retrain_tasks(plan: SweepPlan, size_of: SizeOf, ensembles: str = "dense"
                  ) -> list[list[RetrainJob]]:
    """Retrainings grouped into ensembles, in plan order, cut into chunks of ``size_of``.

    ``ensembles="dense"`` (a sweep's grouping): one group per (dense run, retrain recipe)
    (:attr:`RetrainJob.group`), so a sweep's chunk holds every density and retraining seed of
    one dense source.  ``"cell"``: one group per retrain recipe across the dense runs of one
    data and model (:attr:`RetrainJob.cell_group`), so the K retrainings of each of a cell's
    dense seeds train as one ensemble (``threeregime.tune`` evaluates one cell at a time,
    whose per-dense-run groups hold only K members; a larger ensemble costs less per model
    on a CPU, benchmarks/RESULTS.md).  A member's numbers depend in the last bits on its
    ensemble, so the two groupings agree to float rounding amplified by training, not bitwise
    (benchmarks/tune_grouping.py measures by how much); the keys of the jobs are the same.
    """
    if ensembles not in RETRAIN_ENSEMBLES:
        raise SpecError(f"ensembles must be one of {', '.join(RETRAIN_ENSEMBLES)}; got "
                        f"{ensembles!r}")
    groups: dict[str, list[RetrainJob]] = defaultdict(list)
    for j in plan.retrain:
        groups[j.group if ensembles == "dense" else j.cell_group].append(j)
    return [c for g in groups.values() for c in chunks(g, size_of(g[0].spec, g[0].spec.retrain))]
