"""Where a corpus setting's time goes: CPU seconds per stage on a reduced slice of it.

    python benchmarks/corpus_profile.py                          # v2_lr, lr 0.1, 3 dense seeds
    python benchmarks/corpus_profile.py --setting v2_epochs --temperatures 40 --dense-seeds 2
    python benchmarks/corpus_profile.py --json out.json          # the figures as JSON too

The slice keeps everything that sets the cost of one model (data, model, dense and retraining
recipes, measures, every density, every retraining seed) and cuts the grid: a few temperature
values (``--temperatures``, default the base point's) and the first ``--dense-seeds`` dense
seeds.  It runs inline (one process, one torch thread, as every corpus worker does) with
:func:`threeregime.run_sweep` into a fresh directory, with timers wrapped around the library's
functions (module attributes replaced for the run): each timer counts *exclusive* CPU time
(``time.process_time``, user + sys of this process), so nested timers never count a second
twice.  Categories:

* ``imports``: importing torch and the package (before the run starts);
* ``data generation``: :func:`threeregime.data.sources.load_data` (MNIST-1D with its validation
  set, once per process: cached in-process afterwards);
* ``dense training`` / ``dense evaluation``: :func:`~threeregime.training.train.fit` and the
  train/test error evaluation inside the dense stage;
* ``pruning``: the magnitude pruning of each dense source;
* ``retraining`` / ``retrain evaluation``: ``fit`` and the final train-error evaluation in the
  retrain stage (``fit``'s own per-epoch test evaluation is part of ``retraining``);
* ``LMC``, ``CKA``, ``Hessian trace``, ``validation errors``: the measures of the measure stage;
* ``I/O``: torch checkpoints and point netCDF files written and read (``save_torch``,
  ``load_torch``, ``write_point``, ``read_point``, ``write_dataset``);
* ``other``: everything not inside a timer (planning, claims, assembling, classifying).

The figures are per slice; the script also extrapolates them to the full setting by counting
its dense runs, retrainings and points (``x N`` column; data generation and imports are once per
worker process, not scaled).  The slice keeps the full setting's retraining ensembles (every
density and retraining seed of one dense run: 12 members) but trains fewer dense runs together
than the full setting does; it says so, since the extrapolated dense figure is then an upper
bound.  Timings only: nothing here checks results.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

_T0_CPU = time.process_time()
_T0_WALL = time.perf_counter()

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import torch  # noqa: E402

import threeregime  # noqa: E402
from threeregime import metrics  # noqa: E402
from threeregime.spec.specs import SweepSpec, load_yaml  # noqa: E402
from threeregime.sweep import driver, stages  # noqa: E402
from threeregime.sweep.executors import InlineExecutor  # noqa: E402
from threeregime.sweep.plan import dense_tasks, plan_sweep, retrain_tasks  # noqa: E402

IMPORT_CPU = time.process_time() - _T0_CPU
IMPORT_WALL = time.perf_counter() - _T0_WALL


# --------------------------------------------------------------------------- timers
class Timers:
    """Exclusive CPU and wall time per label: a stack of open timers; time spent in an inner
    timer is taken off the outer one."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.wall: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list] = []   # [label, cpu0, wall0, child_cpu, child_wall]

    @contextlib.contextmanager
    def timed(self, label: str):
        frame = [label, time.process_time(), time.perf_counter(), 0.0, 0.0]
        self._stack.append(frame)
        try:
            yield
        finally:
            self._stack.pop()
            cpu = time.process_time() - frame[1]
            wall = time.perf_counter() - frame[2]
            self.cpu[label] += cpu - frame[3]
            self.wall[label] += wall - frame[4]
            self.calls[label] += 1
            if self._stack:
                self._stack[-1][3] += cpu
                self._stack[-1][4] += wall

    def current(self) -> str | None:
        return self._stack[-1][0] if self._stack else None

    def wrap(self, label, fn):
        """``fn`` timed under ``label`` (a string, or ``label(outer) -> str`` given the label
        of the enclosing timer)."""
        def wrapped(*a, **k):
            name = label(self.current()) if callable(label) else label
            with self.timed(name):
                return fn(*a, **k)
        wrapped.__wrapped__ = fn
        return wrapped


@contextlib.contextmanager
def patched(timers: Timers):
    """Replace the library functions the stages call by timed wrappers (restored on exit)."""
    def by_stage(kind_dense: str, kind_retrain: str, other: str):
        def pick(outer):
            return {"dense stage": kind_dense, "retrain stage": kind_retrain}.get(outer, other)
        return pick

    targets = [
        (driver, "run_dense_group", "dense stage"),
        (driver, "run_retrain_group", "retrain stage"),
        (driver, "measure_point", "measure stage"),
        (stages, "fit", by_stage("dense training", "retraining", "training (other)")),
        (stages, "evaluate", by_stage("dense evaluation", "retrain evaluation", "evaluation")),
        (stages, "_pruned", "pruning"),
        (stages, "load_data", "data generation"),
        (driver, "load_data", "data generation"),
        (stages, "load_torch", "I/O"),
        (stages, "save_torch", "I/O"),
        (stages, "write_point", "I/O"),
        (driver, "read_point", "I/O"),
        (driver, "write_dataset", "I/O"),
        (stages, "val_errors", "validation errors"),
        (metrics, "lmc_pairs", "LMC"),
        (metrics, "cka_pairs", "CKA"),
        (metrics, "hessian_trace", "Hessian trace"),
        (metrics, "hessian_top_eigenvalues", "Hessian trace"),
    ]
    saved = []
    for mod, name, label in targets:
        fn = getattr(mod, name)
        saved.append((mod, name, fn))
        setattr(mod, name, timers.wrap(label, fn))
    try:
        yield
    finally:
        for mod, name, fn in reversed(saved):
            setattr(mod, name, fn)


# --------------------------------------------------------------------------- slice
def slice_spec(spec: SweepSpec, temperatures: list[float] | None, dense_seeds: int
               ) -> tuple[SweepSpec, str]:
    """The setting cut to ``temperatures`` (default: the base point's value) and its first
    ``dense_seeds`` dense seeds; every load value and retraining seed kept."""
    temps = [k for k in spec.axes if k != "density"]
    if len(temps) != 1:
        raise SystemExit(f"expected one temperature axis besides density; got {temps}")
    axis = temps[0]
    grid = list(spec.axes[axis])
    if temperatures is None:
        from threeregime.tuning_run import _base_value
        temperatures = [_base_value(spec, axis)]
    keep = [v for v in grid if any(abs(float(v) - float(t)) < 1e-12 for t in temperatures)]
    if len(keep) != len(temperatures):
        raise SystemExit(f"--temperatures {temperatures} not all on the {axis} grid {grid}")
    if not 1 <= dense_seeds <= len(spec.dense_seeds):
        raise SystemExit(f"--dense-seeds must be in 1..{len(spec.dense_seeds)}; got "
                         f"{dense_seeds}")
    axes = dict(spec.axes)
    axes[axis] = keep
    return dataclasses.replace(spec, axes=axes,
                               dense_seeds=tuple(spec.dense_seeds[:dense_seeds])), axis


def counts(spec: SweepSpec) -> dict[str, int]:
    p = plan_sweep(spec)
    opts = stages.RunOptions(threads=1)

    def size_of(q, t):
        return stages.chunk_size(q, t, opts)

    return {"dense": len(p.dense), "retrain": len(p.retrain), "points": len(p.points),
            "dense_ensemble": max(len(t) for t in dense_tasks(p, size_of)),
            "retrain_ensemble": max(len(t) for t in retrain_tasks(p, size_of))}


#: which count a category scales with when extrapolating to the full setting
SCALE = {"dense training": "dense", "dense evaluation": "dense", "dense stage": "dense",
         "pruning": "retrain", "retraining": "retrain", "retrain evaluation": "retrain",
         "retrain stage": "retrain", "LMC": "points", "CKA": "points",
         "Hessian trace": "points", "validation errors": "points", "measure stage": "points",
         "I/O": "points", "other": "points"}


def report(timers: Timers, total_cpu: float, total_wall: float, part: dict, full: dict
           ) -> list[dict]:
    cats = dict(timers.cpu)
    cats["imports"] = IMPORT_CPU
    cats["other"] = total_cpu - sum(timers.cpu.values())
    rows = []
    for name, cpu in sorted(cats.items(), key=lambda kv: -kv[1]):
        scale = SCALE.get(name)
        factor = full[scale] / part[scale] if scale else 1.0
        rows.append({"category": name, "cpu_s": cpu, "share": cpu / (total_cpu + IMPORT_CPU),
                     "calls": timers.calls.get(name, 1), "full_cpu_s": cpu * factor})
    full_total = sum(r["full_cpu_s"] for r in rows)
    for r in rows:
        r["full_share"] = r["full_cpu_s"] / full_total
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--setting", default="v2_lr", help="a sweeps/corpus_v2 setting (v2_lr)")
    ap.add_argument("--temperatures", type=float, nargs="+", default=None,
                    help="temperature values kept (default: the base point's)")
    ap.add_argument("--dense-seeds", type=int, default=3, help="first N dense seeds (3)")
    ap.add_argument("--out", default=None, help="sweep directory (default: a temporary one)")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    path = ROOT / "sweeps" / "corpus_v2" / f"{args.setting}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (ROOT / "sweeps" / "corpus_v2").glob("*.yaml"))
        raise SystemExit(f"--setting {args.setting!r}: no {path}; known: {', '.join(known)}")
    spec = load_yaml(path, kind="sweep")
    part_spec, axis = slice_spec(spec, args.temperatures, args.dense_seeds)
    part, full = counts(part_spec), counts(spec)
    print(f"threeregime {threeregime.__file__}; torch {torch.__version__}; "
          f"{platform.processor() or platform.machine()}; load average "
          f"{' '.join(f'{x:.2f}' for x in __import__('os').getloadavg())}")
    print(f"slice of {args.setting}: {axis} = {part_spec.axes[axis]}, density = "
          f"{part_spec.axes['density']}, dense seeds {list(part_spec.dense_seeds)}: "
          f"{part['dense']} dense runs, {part['retrain']} retrainings, {part['points']} points "
          f"(full setting: {full['dense']}, {full['retrain']}, {full['points']})")
    timers = Timers()
    with contextlib.ExitStack() as stack:
        out = args.out or stack.enter_context(tempfile.TemporaryDirectory(prefix="cprof-"))
        c0, w0 = time.process_time(), time.perf_counter()
        with patched(timers):
            driver.run_sweep(part_spec, out, executor=InlineExecutor(), progress=False,
                             threads=1)
        total_cpu, total_wall = time.process_time() - c0, time.perf_counter() - w0
    rows = report(timers, total_cpu, total_wall, part, full)
    print(f"\nrun: {total_cpu:.1f} CPU-s, {total_wall:.1f} s wall; imports {IMPORT_CPU:.1f} "
          f"CPU-s ({IMPORT_WALL:.1f} s wall)\n")
    print("| category | CPU-s (slice) | % of slice | calls | CPU-s full setting (x N) | "
          "% of full |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['category']} | {r['cpu_s']:.1f} | {100 * r['share']:.1f} | {r['calls']} "
              f"| {r['full_cpu_s']:.0f} | {100 * r['full_share']:.1f} |")
    for kind in ("dense", "retrain"):
        a, b = part[f"{kind}_ensemble"], full[f"{kind}_ensemble"]
        if a != b:
            print(f"\nnote: the slice trains {kind} ensembles of {a}, the full setting of {b}; "
                  f"a larger ensemble costs less per model on a CPU (benchmarks/RESULTS.md), so "
                  f"the extrapolated {kind} figure is an upper bound")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "setting": args.setting, "slice": part, "full": full, "total_cpu_s": total_cpu,
            "total_wall_s": total_wall, "import_cpu_s": IMPORT_CPU, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
