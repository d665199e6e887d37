"""What a sweep would train, and roughly how long it would take: ``threeregime plan SPEC``.

:func:`plan_report` counts the dense runs, retrainings and measured points of a sweep
(:func:`threeregime.plan.plan_sweep`), how many of them a sweep directory holds already, and
the optimizer steps still to take.  The time is an *estimate*: a few optimizer steps of each
distinct (data, model, batch size, SAM) of the spec are timed on this machine, as an ensemble
of as many members as the run trains at once, with the run's device, threads and engine
(:func:`time_steps`), and scaled by the steps left; measurements are counted as forward passes
at a third of a training step's cost per example; each stage's work is divided over the
workers it can keep busy.  Start-up is added: the run's process and (with workers) a pool
worker each import the stages (timed in a fresh interpreter) and make the data (timed).  Not
counted: reading and writing checkpoints and results, pruning, N:M / channel specifics; so a
tiny sweep, where these dominate, takes longer than estimated.
"""
from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..data.sources import load_data
from ..errors import SpecError
from ..models.zoo import build_model
from ..spec.specs import SweepSpec, TrainSpec, canonical_json, load_yaml
from ..training.device import resolve_device
from .plan import Store, dense_tasks, plan_sweep, retrain_tasks
from .stages import RunOptions, chunk_size, pin_numerics

__all__ = ["PlanReport", "plan_report", "time_steps"]

#: optimizer steps timed per calibration (after two untimed warm-up steps)
CALIBRATION_STEPS = 5


@dataclass
class PlanReport:
    """Counts and a time estimate of a sweep (module docstring).

    ``counts``: stage -> (total, cached); ``steps``: stage -> optimizer steps still to take
    (dense, retrain) or forward-pass examples (measure); ``seconds_per_step``: calibration
    (description -> seconds per optimizer step); ``estimate_s``: the estimated wall time left
    on ``workers`` workers (NaN when not calibrated).
    """

    name: str
    out: Path | None
    counts: dict = field(default_factory=dict)
    steps: dict = field(default_factory=dict)
    seconds_per_step: dict = field(default_factory=dict)
    stage_seconds: dict = field(default_factory=dict)
    estimate_s: float = math.nan
    workers: int = 1
    device: str = "cpu"

    def __str__(self) -> str:
        where = f" ({self.out})" if self.out is not None else ""
        lines = [f"plan of sweep {self.name!r}{where}:"]
        units = {"dense": "dense models", "retrain": "retrainings", "measure": "measured points"}
        for stage, (total, cached) in self.counts.items():
            c = f", {cached} cached" if self.out is not None else ""
            work = (f"{self.steps[stage]:,} optimizer steps left" if stage != "measure"
                    else f"{self.steps[stage]:,} examples through a model left")
            lines.append(f"  {units[stage]:<16s}{total:>6d}{c}; {work}")
        for what, s in self.seconds_per_step.items():
            lines.append(f"  calibration: {1000 * s:.2f} ms per optimizer step and model: {what},"
                         f" on {self.device} ({CALIBRATION_STEPS} steps timed)")
        if math.isfinite(self.estimate_s):
            per = ", ".join(f"{k} {_duration(v)}" for k, v in self.stage_seconds.items())
            lines.append(f"  estimate: about {_duration(self.estimate_s)} on {self.workers} "
                         f"worker(s) ({per}); a rough estimate scaled from the calibration")
        return "\n".join(lines)


def _duration(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def time_steps(model: nn.Module, data: Any, spec: TrainSpec, *, members: int = 1,
               device: Any = "cpu", engine: str = "vmap") -> float:
    """Seconds per optimizer step and member of an ensemble of ``members`` copies of
    ``model`` trained as the sweep trains them (:func:`threeregime.train.fit`) on ``data``
    with ``spec``'s batch size and SAM setting: the time of a fit of ``2 +``
    :data:`CALIBRATION_STEPS` steps minus that of 2 steps (start-up and the final evaluation
    cancel), per step and member."""
    from ..training.train import fit

    state = {k: v.clone() for k, v in model.state_dict().items()}

    def run(steps: int) -> float:
        t = dataclasses.replace(spec, iterations=steps, epochs=1, snapshots=())
        t0 = time.perf_counter()
        fit(model, state, data, t, seeds=list(range(members)), device=device, engine=engine,
            progress=False)
        return time.perf_counter() - t0

    run(1)                                      # warm-up (first-call costs)
    short, long = run(2), run(2 + CALIBRATION_STEPS)
    return max(long - short, 1e-9) / CALIBRATION_STEPS / members


def plan_report(spec: SweepSpec | str | Path, out: str | Path | None = None, *,
                workers: int = 1, device: str = "auto", threads: int | None = None,
                engine: str = "vmap", calibrate: bool = True) -> PlanReport:
    """Count a sweep's work (cached stages in ``out`` when given) and estimate its time.

    Parameters
    ----------
    spec : a :class:`SweepSpec` or the path of a sweep YAML file.
    out : its sweep directory, to count what is cached there (nothing is written).
    workers : worker processes the run would use (the work is divided over them).
    device, threads, engine : as :func:`threeregime.run_sweep` (the calibration runs with
        them).
    calibrate : False: counts only (no model is built, no time estimated).

    Returns
    -------
    PlanReport (``print`` it).
    """
    if isinstance(spec, (str, Path)):
        spec = load_yaml(spec, kind="sweep")
    if not isinstance(spec, SweepSpec):
        raise SpecError(f"spec must be a SweepSpec or a YAML path; got {type(spec).__name__}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SpecError(f"workers must be an integer >= 1; got {workers!r}")
    opts = RunOptions(device=device, threads=threads, engine=engine)
    plan = plan_sweep(spec)
    store = Store(out) if out is not None else None

    def left(jobs):
        return [j for j in jobs if store is None or not j.done(store)]

    dense, retrain, points = left(plan.dense), left(plan.retrain), left(plan.points)
    rep = PlanReport(name=spec.name, out=None if out is None else Path(out), workers=workers,
                     device=str(resolve_device(device)))
    rep.counts = {"dense": (len(plan.dense), len(plan.dense) - len(dense)),
                  "retrain": (len(plan.retrain), len(plan.retrain) - len(retrain)),
                  "measure": (len(plan.points), len(plan.points) - len(points))}
    data_of: dict[str, Any] = {}

    data_s = [0.0]                              # time to make / load the data, measured

    def data(p):
        key = canonical_json(p.data)
        if key not in data_of:
            t0 = time.perf_counter()
            data_of[key] = load_data(p.data)
            data_s[0] += time.perf_counter() - t0
        return data_of[key]

    work: dict[str, list] = {"dense": [], "retrain": [], "measure": []}
    for j in dense:
        t = j.spec.dense
        work["dense"].append((j.spec, t.batch_size, t.total_steps(_n(data(j.spec)))))
    for j in retrain:
        t = j.spec.retrain
        work["retrain"].append((j.spec, t.batch_size,
                                t.total_steps(_n(data(j.spec)))))
    for pj in points:
        d, m, k = data(pj.spec), pj.spec.measure, len(pj.retrain_keys)
        n_eval = _n(d) + int(d.test.x.shape[0])
        examples = (k * (k - 1) // 2) * m.lmc_points * n_eval + k * n_eval
        work["measure"].append((pj.spec, pj.spec.retrain.batch_size, examples))
    rep.steps = {k: int(sum(w[2] for w in v)) for k, v in work.items()}
    if not calibrate:
        return rep
    pin_numerics(opts)

    # tasks that can run at once: ensembles (chunks) with work left, one per measured point
    def size_of(p, t):
        return chunk_size(p, t, opts)

    keys = {j.key for j in dense} | {j.key for j in retrain}
    d_tasks = [c for c in dense_tasks(plan, size_of) if any(j.key in keys for j in c)]
    r_tasks = [c for c in retrain_tasks(plan, size_of) if any(j.key in keys for j in c)]
    tasks = {"dense": len(d_tasks), "retrain": len(r_tasks), "measure": len(points)}
    members = {"dense": max((len(c) for c in d_tasks), default=1),
               "retrain": max((len(c) for c in r_tasks), default=1)}
    timed: dict[str, float] = {}
    seconds = {"dense": 0.0, "retrain": 0.0, "measure": 0.0}
    for stage, items in work.items():
        m = members.get(stage, members["retrain"])
        for p, batch, amount in items:
            t = p.dense if stage == "dense" else p.retrain
            what = (f"{p.model.name} (width {p.model.width:g}) on {p.data.name}, batch "
                    f"{batch}{', SAM' if t.sam_rho > 0 else ''}, {m} member(s) at once")
            if what not in timed:
                d = data(p)
                model = build_model(p.model, d.input_shape, d.num_classes, seed=0)
                timed[what] = time_steps(model, d, t, members=m, device=device,
                                         engine=engine)
            per_step = timed[what]
            seconds[stage] += (amount * per_step / batch / 3 if stage == "measure"
                               else amount * per_step)
    rep.seconds_per_step = timed
    # start-up: the run's process, and with workers a pool worker too, imports the package and
    # torch (timed in a fresh interpreter) and makes the data (timed above)
    rep.stage_seconds = {"start-up": (_import_seconds() + data_s[0]) * (2 if workers > 1 else 1)}
    rep.stage_seconds.update({k: v / max(1, min(workers, tasks[k])) for k, v in seconds.items()})
    rep.estimate_s = sum(rep.stage_seconds.values())
    return rep


def _import_seconds() -> float:
    """Wall seconds a fresh interpreter takes to import the stages (torch included), as a
    spawned pool worker does before its first task."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import threeregime.stages"], env=env, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _n(d: Any) -> int:
    return int(d.train.x.shape[0])
