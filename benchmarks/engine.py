"""Benchmark the training engine and the sweep: vectorized ensembles vs the one-model loop.

    python benchmarks/engine.py                 # full (~15-20 min on a shared 2-core CPU)
    python benchmarks/engine.py --quick         # short version (a few minutes)
    python benchmarks/engine.py --device cuda   # the same on a GPU

Everything is measured side by side in this one process (the demo timing alone runs the CLI
as a child process, as ``make demo`` does); each timing is the best of ``--repeat`` runs and
the spread (max/min) is printed next to it.

1. Sweep end to end: the retraining + measure stages of one dense source of
   ``sweeps/quick.yaml`` (all densities x seeds = one ensemble chunk, and its points) with
   ``engine="vmap"`` and ``engine="loop"``; the two Datasets are compared variable by variable;
   the full quick sweep is extrapolated from the stage times. Optionally the demo itself
   (``threeregime run sweeps/quick.yaml``) as a child process: wall time and peak RSS.
2. Retraining throughput (models x epochs / s) of the vmap engine at M = 1, 4, 12, 36 members
   and of the loop, with 1 and 2 torch threads.
3. LMC of all seed pairs of a cell: ``lmc_pairs`` (one stacked ensemble) vs a loop of ``lmc``.
4. Scaling: wall time and peak RSS of a small sweep at 1x, 2x, 4x grid points, and throughput
   and peak RSS of the engine at cnn1d width 1, 2, 4.
5. Arithmetic rate: FLOPs of one step (``torch.utils.flop_counter.FlopCounterMode``) x steps/s
   against the measured float32 matmul peak on 1 and 2 threads.

Timings only; correctness lives in tests/test_train.py and tests/test_engine_equivalence.py.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from threeregime.data.sources import load_data  # noqa: E402
from threeregime.metrics import lmc, lmc_pairs  # noqa: E402
from threeregime.models.zoo import build_model  # noqa: E402
from threeregime.spec.specs import ModelSpec, SweepSpec, from_dict, load_yaml, to_dict  # noqa: E402
from threeregime.sweep import driver, stages  # noqa: E402
from threeregime.sweep import plan as sweep_plan  # noqa: E402
from threeregime.training.train import fit, init_states  # noqa: E402


# --------------------------------------------------------------------------- helpers
def best_of(fn, repeat: int):
    """(min seconds, max/min spread, last result) over ``repeat`` calls."""
    times, out = [], None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        out = fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return min(times), max(times) / min(times), out


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak resident set size of this process while the block runs (sampled every 5 ms),
    and the same minus the RSS on entry."""

    def __enter__(self):
        self.gpu_peak = 0
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss())
        self.delta = self.peak - self.base
        if torch.cuda.is_available():
            self.gpu_peak = torch.cuda.max_memory_allocated()


def mib(b: float) -> str:
    return f"{b / 2 ** 20:,.0f} MiB"


def table(head: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def machine() -> str:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
            f"python {platform.python_version()}")


def sub_spec(spec: SweepSpec, quick: bool, **axes) -> SweepSpec:
    """A copy of ``spec`` with other axes (and, with ``quick``, short runs)."""
    d = to_dict(spec, drop_defaults=False)
    d["axes"] = {k: list(v) for k, v in (axes or d["axes"]).items()}
    if quick:
        d["base"]["dense"]["epochs"] = 4
        d["base"]["retrain"]["epochs"] = 3
        if "epochs" in d["axes"]:
            d["axes"]["epochs"] = [e for e in d["axes"]["epochs"] if e <= 4] or [4]
    return from_dict(SweepSpec, d)


# --------------------------------------------------------------------------- 1. end to end
def _loaded(template, state):
    import copy

    m = copy.deepcopy(template)
    m.load_state_dict(state)
    return m


@contextlib.contextmanager
def reference_metrics():
    """Make the measure stage use the per-pair reference paths (``lmc(engine="loop")`` and
    ``cka`` of two ordinary modules) instead of the batched ``lmc_pairs``/``cka_pairs``."""
    from threeregime import metrics
    from threeregime.metrics.cka import CKAPairsResult, cka
    from threeregime.metrics.lmc import LMCPairsResult

    def lmc_loop(model, states, pairs, train, test=None, points=11, **kw):
        kw.pop("max_members", None)
        rs = [lmc(_loaded(model, states[a]), _loaded(model, states[b]), train, test, points,
                  engine="loop", **kw) for a, b in pairs]
        return LMCPairsResult(pairs=list(pairs), mc=np.array([r.mc for r in rs]), t=rs[0].t,
                              curve=np.stack([r.curve for r in rs]))

    def cka_loop(model, states, pairs, inputs, **kw):
        rs = [cka(_loaded(model, states[a]).eval(), _loaded(model, states[b]).eval(), inputs,
                  **kw) for a, b in pairs]
        return CKAPairsResult(pairs=list(pairs), softmax=np.array([r.softmax for r in rs]),
                              logits=np.array([r.logits for r in rs]), n=rs[0].n)

    saved = metrics.lmc_pairs, metrics.cka_pairs
    metrics.lmc_pairs, metrics.cka_pairs = lmc_loop, cka_loop
    try:
        yield
    finally:
        metrics.lmc_pairs, metrics.cka_pairs = saved


def _size_of(opts: stages.RunOptions):
    """Ensemble size of a group, as the sweep driver chooses it."""
    return lambda point, train_spec: stages.chunk_size(point, train_spec, opts)


def stage_times(spec: SweepSpec, root: Path, opts: stages.RunOptions, dense_from: Path | None):
    """Run dense (or copy it), retrain and measure stages; return times and the Dataset."""
    root.mkdir(parents=True, exist_ok=True)
    plan = sweep_plan.plan_sweep(spec)
    times = {}
    if dense_from is not None:
        shutil.copytree(dense_from / "dense", root / "dense")
        times["dense"] = float("nan")
    else:
        t0 = time.perf_counter()
        for task in sweep_plan.dense_tasks(plan, _size_of(opts)):
            stages.run_dense_group(root, task, opts)
        times["dense"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tasks = sweep_plan.retrain_tasks(plan, _size_of(opts))
    for task in tasks:
        stages.run_retrain_group(root, task, opts)
    times["retrain"] = time.perf_counter() - t0
    times["retrain_chunks"] = len(tasks)
    t0 = time.perf_counter()
    with reference_metrics() if opts.engine == "loop" else contextlib.nullcontext():
        for pj in plan.points:
            stages.measure_point(root, pj, opts)
    times["measure"] = time.perf_counter() - t0
    times["points"] = len(plan.points)
    return times, driver.assemble(spec, root, plan)


def bench_e2e(args, res: dict) -> None:
    full = load_yaml(ROOT / "sweeps" / "quick.yaml", kind="sweep")
    eps = sorted(full.axes["epochs"])
    # one dense source (the last snapshot) x all densities x all seeds = one ensemble chunk
    sub = sub_spec(full, args.quick, epochs=[eps[-1]], density=list(full.axes["density"]))
    n_full_points = len(list(full.points()))
    tmp = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    try:
        torch.set_num_threads(1)
        load_data(sub.base.data)  # generate MNIST-1D once, outside every timing
        out = {}
        dense_root = tmp / "dense-vmap"
        opts_v = stages.RunOptions(device=args.device, engine="vmap", progress=False, threads=1)
        opts_l = stages.RunOptions(device=args.device, engine="loop", progress=False, threads=1)
        # dense stage (one model) with each engine
        for name, opts in (("vmap", opts_v), ("loop", opts_l)):
            r = tmp / f"dense-{name}"
            t0 = time.perf_counter()
            for task in sweep_plan.dense_tasks(sweep_plan.plan_sweep(sub), _size_of(opts)):
                stages.run_dense_group(r, task, opts)
            out[f"dense_{name}"] = time.perf_counter() - t0
        ds = {}
        for name, opts in (("vmap", opts_v), ("loop", opts_l)):
            best = None
            for rep in range(args.repeat_e2e):
                t, d = stage_times(sub, tmp / f"{name}-{rep}", opts, dense_from=dense_root)
                if best is None or t["retrain"] + t["measure"] < best["retrain"] + best["measure"]:
                    best = t
                ds[name] = d
            out[name] = best
        v, lp = out["vmap"], out["loop"]
        chunks_full = len(sweep_plan.retrain_tasks(sweep_plan.plan_sweep(full), _size_of(opts_v)))
        diffs = {}
        for var in ("test_error", "train_error", "lmc", "cka", "cka_logits"):
            a, b = ds["vmap"][var].values, ds["loop"][var].values
            diffs[var] = float(np.nanmax(np.abs(a - b)))
        res["e2e"] = dict(out, diffs=diffs, chunks_full=chunks_full, points_full=n_full_points)
        rows = []
        for eng, t in (("vmap", v), ("loop", lp)):
            dense = out[f"dense_{eng}"]
            scale_r = chunks_full / t["retrain_chunks"]
            scale_m = n_full_points / t["points"]
            est = dense + scale_r * t["retrain"] + scale_m * t["measure"]
            t["full_estimate"] = est
            rows.append([eng, f"{dense:.1f}", f"{t['retrain']:.1f}", f"{t['measure']:.1f}",
                         f"{est:.0f}"])
        rows.append(["loop / vmap", f"{out['dense_loop'] / out['dense_vmap']:.2f}x",
                     f"{lp['retrain'] / v['retrain']:.2f}x", f"{lp['measure'] / v['measure']:.2f}x",
                     f"{lp['full_estimate'] / v['full_estimate']:.2f}x"])
        print(f"\n## 1. Sweep end to end ({'quick: 4/3 epochs' if args.quick else 'quick.yaml'})"
              f", 1 thread, subset = 1 dense source x {len(sub.axes['density'])} densities x "
              f"{len(sub.base.retrain_seeds)} seeds ({v['retrain_chunks']} chunk, "
              f"{v['points']} points); full = 1 dense run + {chunks_full} chunks + "
              f"{n_full_points} points, extrapolated")
        print(table(["engine", "dense run s", "retrain subset s", "measure subset s",
                     "full quick sweep s (extrapolated)"], rows))
        print("max |vmap - loop| over the subset's Dataset: "
              + ", ".join(f"{k} {x:.2e}" for k, x in diffs.items()))
        if args.demo:
            demo_root = tmp / "demo"
            spec_path = ROOT / "sweeps" / ("smoke.yaml" if args.quick else "quick.yaml")
            cmd = [sys.executable, "-m", "threeregime", "run", str(spec_path), "--out",
                   str(demo_root), "--quiet", "--device", args.device]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
            res["demo"] = {"cmd": " ".join(cmd[1:]), "wall_s": wall, "peak_rss": peak,
                           "rc": proc.returncode}
            print(f"\ndemo ({spec_path.name}, CLI defaults, child process): {wall:.0f} s wall, "
                  f"peak RSS {mib(peak)}, exit {proc.returncode}")
            if proc.returncode:
                print(proc.stderr[-2000:])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- 2. throughput
def _problem(width: float = 1.0, batchnorm: bool = False):
    from threeregime.spec.specs import DataSpec

    data = load_data(DataSpec(name="mnist1d", train_size=4000, test_size=1000))
    mspec = ModelSpec(name="cnn1d", width=width, batchnorm=batchnorm)
    template = build_model(mspec, data.input_shape, data.num_classes, seed=0)
    return data, mspec, template


def _train_spec(steps: int):
    from threeregime.spec.specs import TrainSpec

    return TrainSpec(epochs=1, iterations=steps, batch_size=64, lr=0.1, momentum=0.9,
                     weight_decay=1e-4, schedule="step", milestones=(0.5, 0.75))


def time_fit(data, mspec, template, M, engine, steps, repeat, device):
    inits = [init_states(build_model(mspec, data.input_shape, data.num_classes, seed=s))
             for s in range(M)]
    spec = _train_spec(steps)

    def run():
        return fit(template, inits, data, spec, seeds=list(range(M)), engine=engine,
                   device=device, progress=False, eval_epochs=())

    run() if repeat > 1 else None  # warm-up
    with PeakRSS() as pk:
        t, spread, _ = best_of(run, repeat)
    return t, spread, pk


def bench_throughput(args, res: dict) -> None:
    data, mspec, template = _problem()
    steps = 20 if args.quick else 62  # 62 steps = one epoch of 4,000 examples at batch 64
    spe = 4000 // 64
    rows, out = [], {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        loop_t, loop_s, _ = time_fit(data, mspec, template, 4, "loop", steps, args.repeat,
                                     args.device)
        per_loop = loop_t / (4 * steps)
        out[(threads, "loop")] = per_loop
        rows.append([threads, "loop", "4", f"{per_loop * 1e3:.2f}",
                     f"{1 / (per_loop * spe):.2f}", "1.00x", f"{loop_s:.2f}"])
        for M in args.members:
            t, spread, _ = time_fit(data, mspec, template, M, "vmap", steps, args.repeat,
                                    args.device)
            per = t / (M * steps)
            out[(threads, M)] = per
            rows.append([threads, "vmap", M, f"{per * 1e3:.2f}", f"{1 / (per * spe):.2f}",
                         f"{per_loop / per:.2f}x", f"{spread:.2f}"])
    res["throughput"] = {f"{k[0]}t/{k[1]}": v for k, v in out.items()}
    print(f"\n## 2. Retraining throughput, cnn1d (width 1) on MNIST-1D, batch 64, {steps} "
          f"steps per timing, best of {args.repeat}")
    print(table(["threads", "engine", "M", "ms / model-step", "model-epochs / s",
                 "speed-up vs loop", "spread"], rows))


# --------------------------------------------------------------------------- 3. LMC
def bench_lmc(args, res: dict) -> None:
    torch.set_num_threads(1)
    rows = []
    for bn in (False, True):
        data, mspec, template = _problem(batchnorm=bn)
        states = [init_states(build_model(mspec, data.input_shape, data.num_classes, seed=s))
                  for s in range(3)]
        # a few steps of training so the models are not at their inits
        states = fit(template, states, data, _train_spec(40), seeds=[0, 1, 2],
                     progress=False, eval_epochs=()).states
        pairs = [(0, 1), (0, 2), (1, 2)]
        models = []
        for s in states:
            m = build_model(mspec, data.input_shape, data.num_classes, seed=0)
            m.load_state_dict(s)
            models.append(m)
        tr, te = data.train, data.test
        kw = dict(points=11, batch_size=1000, device=args.device)
        t_b, s_b, rb = best_of(lambda: lmc_pairs(template, states, pairs, tr, te, **kw),
                               args.repeat)
        t_c, s_c, rc = best_of(lambda: lmc_pairs(template, states, pairs, tr, te,
                                                 max_members=3, **kw), args.repeat)
        t_v, s_v, rv = best_of(lambda: [lmc(models[a], models[b], tr, te, **kw)
                                        for a, b in pairs], args.repeat)
        t_l, s_l, rl = best_of(lambda: [lmc(models[a], models[b], tr, te, engine="loop", **kw)
                                        for a, b in pairs], args.repeat)
        dmc = max(max(abs(rb.mc[i] - rl[i].mc), abs(rc.mc[i] - rl[i].mc)) for i in range(3))
        res[f"lmc_bn{int(bn)}"] = {"pairs": t_b, "pairs_chunk3": t_c, "loop_vmap": t_v,
                                   "loop_loop": t_l, "max_abs_mc_diff": dmc}
        rows.append([f"cnn1d{' + BN' if bn else ''}", f"{t_b:.2f} ({s_b:.2f})",
                     f"{t_c:.2f} ({s_c:.2f})",
                     f"{t_v:.2f} ({s_v:.2f})", f"{t_l:.2f} ({s_l:.2f})",
                     f"{t_v / t_b:.2f}x", f"{t_l / t_b:.2f}x", f"{dmc:.1e}"])
    print("\n## 3. LMC of one cell (3 seeds -> 3 pairs x 11 points, train 4,000 + test 1,000),"
          " 1 thread; seconds (spread)")
    print(table(["model", "lmc_pairs (batched)", "lmc_pairs(max_members=3)",
                 "loop of lmc (vmap per pair)",
                 "loop of lmc(engine=loop)", "speed-up vs per-pair vmap",
                 "speed-up vs full loop", "max |mc diff|"], rows))


# --------------------------------------------------------------------------- 4. scaling
def bench_scaling(args, res: dict) -> None:
    torch.set_num_threads(1)
    full = load_yaml(ROOT / "sweeps" / "quick.yaml", kind="sweep")
    d = to_dict(full, drop_defaults=False)
    # a short version of quick.yaml so that 4x the grid still runs in minutes
    d["base"]["data"]["train_size"] = 1000
    d["base"]["dense"]["epochs"] = 4
    d["base"]["retrain"]["epochs"] = 1 if args.quick else 2
    grids = {"1x": {"epochs": [2, 4], "density": [0.1, 0.5]},
             "2x": {"epochs": [2, 4], "density": [0.05, 0.1, 0.2, 0.5]},
             "4x": {"epochs": [1, 2, 3, 4], "density": [0.05, 0.1, 0.2, 0.5]}}
    rows = []
    base_t = None
    for name, axes in grids.items():
        d["axes"] = axes
        spec = from_dict(SweepSpec, d)
        tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
        try:
            with PeakRSS() as pk:
                t0 = time.perf_counter()
                driver.run_sweep(spec, tmp, device=args.device, progress=False, threads=1,
                             write_results=False)
                t = time.perf_counter() - t0
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        base_t = base_t or t
        n = len(list(spec.points()))
        rows.append([name, n, n * len(spec.base.retrain_seeds), f"{t:.1f}",
                     f"{t / base_t:.2f}x", mib(pk.peak), mib(pk.delta)])
        res[f"grid_{name}"] = {"s": t, "peak": pk.peak, "delta": pk.delta}
    print(f"\n## 4a. Sweep scaling with the grid (quick.yaml at 1,000 train examples, dense 4 "
          f"epochs, retrain {d['base']['retrain']['epochs']} epochs, vmap, 1 thread; one run "
          "each)")
    print(table(["grid", "points", "retrainings", "wall s", "vs 1x", "peak RSS",
                 "RSS growth in the run"], rows))
    rows = []
    steps = 10 if args.quick else 31
    for width in (1, 2, 4):
        data, mspec, template = _problem(width=width)
        nparam = sum(p.numel() for p in template.parameters())
        tl, _, pl = time_fit(data, mspec, template, 2, "loop", steps, args.repeat, args.device)
        tv, sv, pv = time_fit(data, mspec, template, 12, "vmap", steps, args.repeat,
                              args.device)
        per_l, per_v = tl / (2 * steps), tv / (12 * steps)
        rows.append([width, f"{nparam:,}", f"{per_l * 1e3:.2f}", f"{per_v * 1e3:.2f}",
                     f"{per_l / per_v:.2f}x", f"{sv:.2f}", mib(pv.peak), mib(pv.delta),
                     mib(pv.gpu_peak)])
        res[f"width_{width}"] = {"loop": per_l, "vmap12": per_v, "peak": pv.peak}
    print(f"\n## 4b. Engine scaling with the model (cnn1d width w, batch 64, {steps} steps, "
          f"best of {args.repeat}, 1 thread)")
    print(table(["width", "params", "loop ms / model-step", "vmap M=12 ms / model-step",
                 "speed-up", "spread", "peak RSS", "RSS growth", "peak GPU memory"], rows))


# --------------------------------------------------------------------------- 5. FLOP rate
def bench_flops(args, res: dict) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    rows = []
    n = 2048
    peaks = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        a, b = torch.randn(n, n, device=args.device), torch.randn(n, n, device=args.device)
        t, s, _ = best_of(lambda: a @ b, max(3, args.repeat))
        peaks[threads] = 2 * n ** 3 / t
        rows.append([f"matmul {n}^3 float32", threads, f"{peaks[threads] / 1e9:.1f}",
                     "", f"{s:.2f}"])
    data, mspec, template = _problem()

    def count(M, engine):
        inits = [init_states(build_model(mspec, data.input_shape, data.num_classes, seed=s))
                 for s in range(M)]
        counter = FlopCounterMode(display=False)
        with counter:
            fit(template, inits, data, _train_spec(1), seeds=list(range(M)), engine=engine,
                device=args.device, progress=False, eval_epochs=())
        return counter.get_total_flops()

    one = count(1, "loop")  # one model's forward + backward, as the model defines it
    res["flops_one_model_step"] = one
    note = (f"FLOPs of one model-step (loop engine, counted): {one / 1e6:.2f} MFLOP; the vmap "
          f"engine's aten ops at M=12 count {count(12, 'vmap') / 12 / 1e6:.2f} MFLOP per "
          "member (grouped-conv backward as lowered under vmap). Rates below use the useful "
          "count, M x one model.")
    for M in (1, 12):
        for engine in ("vmap", "loop") if M == 12 else ("vmap", "loop"):
            if engine == "loop" and M == 1:
                continue
            flops = M * one
            for threads in args.threads:
                torch.set_num_threads(threads)
                steps = 20 if args.quick else 40
                t, s, _ = time_fit(data, mspec, template, M, engine, steps, args.repeat,
                                   args.device)
                rate = flops * steps / t
                res[f"flops_{engine}{M}_{threads}t"] = {"flops_per_step": flops, "rate": rate}
                rows.append([f"train step, {engine}, M={M} ({flops / 1e6:.1f} MFLOP/step)",
                             threads, f"{rate / 1e9:.2f}",
                             f"{100 * rate / peaks[threads]:.1f} %", f"{s:.2f}"])
    res["matmul_peak"] = peaks
    print("\n## 5. Arithmetic rate (useful FLOPs x steps/s) vs measured matmul peak")
    print(table(["what", "threads", "GFLOP/s", "of the matmul peak", "spread"], rows))
    print(note)


# --------------------------------------------------------------------------- main
SECTIONS = {"e2e": bench_e2e, "throughput": bench_throughput, "lmc": bench_lmc,
            "scaling": bench_scaling, "flops": bench_flops}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short version")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    ap.add_argument("--repeat", type=int, default=None, help="repeats per timing (best kept)")
    ap.add_argument("--repeat-e2e", type=int, default=1, help="repeats of the sweep stages")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--members", type=int, nargs="+", default=[1, 4, 12, 36])
    ap.add_argument("--only", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    ap.add_argument("--no-demo", dest="demo", action="store_false",
                    help="skip timing `threeregime run sweeps/quick.yaml` as a child process")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    if args.repeat is None:
        args.repeat = 2 if args.quick else 3
    if args.device.startswith("cuda"):
        args.threads = [args.threads[0]]
        args.members = sorted(set(args.members) | {128, 256})
    print(f"# benchmarks/engine.py{' --quick' if args.quick else ''} on {machine()}, "
          f"device {args.device}")
    print("Timings on a shared machine: best of repeats, spread = max/min.")
    res: dict = {"machine": machine(), "device": args.device, "quick": args.quick}
    for name in args.only:
        t0 = time.perf_counter()
        SECTIONS[name](args, res)
        print(f"({name}: {time.perf_counter() - t0:.0f} s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
