"""Benchmark the loss-landscape metrics against their peers, in one run.

    python benchmarks/metrics.py            # full (a few minutes on a 2-core CPU)
    python benchmarks/metrics.py --quick    # short version (~1 minute)

1. Hessian trace: ``threeregime.metrics.hessian_trace`` (the ``"taylor"`` quadratic-form path
   and the three HVP engines) vs the PyPI ``pyhessian`` 0.1 loop at the same number of
   Rademacher probes, same MLP, same batch.
2. LMC: ``threeregime.metrics.lmc`` vs ``loss_landscapes.linear_interpolation`` on a small
   BatchNorm CNN, and the loss error loss_landscapes makes by not recalibrating BatchNorm.
3. CKA: streamed feature form vs Gram form at n = 6,400 and n = 50,000.

Timings only; correctness lives in tests/test_metrics_*.py.  One torch thread.
"""
from __future__ import annotations

import argparse
import copy
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from threeregime.metrics import gram_cka, hessian_trace, linear_cka, lmc


def best_of(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def table(rows, header):
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))
    print()


# --------------------------------------------------------------------------- 1. Hessian
def bench_hessian(quick: bool):
    n, probes, repeat = (1000, 20, 2) if quick else (4000, 100, 3)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                          nn.Linear(256, 10))
    x, y = torch.randn(n, 40), torch.randint(0, 10, (n,))
    print(f"### Hessian trace: MLP 40-256-256-10 ({sum(p.numel() for p in model.parameters())}"
          f" parameters), batch {n}, {probes} Rademacher probes, best of {repeat}\n")
    t_ph, ph = best_of(lambda: hessian_trace(model, None, (x, y), probes, seed=0,
                                             backend="pyhessian"), repeat)
    hessian_trace(model, None, (x, y), 2, backend="pyhessian")  # warm-up
    hessian_trace(model, None, (x, y), 2)
    rows = [["pyhessian 0.1 (tol=-inf)", f"{t_ph:.2f}", "1.00",
             f"{ph.trace:.3f} ± {ph.stderr:.3f}", "-"]]
    samples = {}
    for method in ("taylor", "autograd", "func-vjp", "func-jvp"):
        t, r = best_of(lambda method=method: hessian_trace(model, None, (x, y), probes, seed=0,
                                             method=method), repeat)
        assert r.method == method
        samples[method] = r.samples
        z = abs(r.trace - ph.trace) / math.hypot(r.stderr, ph.stderr)
        rows.append([f"threeregime method={method}"
                     + (" (default via 'auto')" if method == "taylor" else ""),
                     f"{t:.2f}", f"{t_ph / t:.2f}",
                     f"{r.trace:.3f} ± {r.stderr:.3f}", f"{z:.2f} ({'yes' if z < 3 else 'NO'})"])
    table(rows, ["implementation", "seconds", "speed-up vs pyhessian", "trace ± s.e.",
                 "|diff|/s.e. (agree < 3)"])
    ref = samples["autograd"]
    rel = {m: float(np.max(np.abs(s - ref) / np.abs(ref))) for m, s in samples.items()
           if m != "autograd"}
    print("Per-probe samples vs method=autograd (same probes), max relative difference: "
          + ", ".join(f"{m} {d:.1e}" for m, d in rel.items()) + "\n")


# --------------------------------------------------------------------------- 2. LMC
class BNCNN(nn.Module):
    def __init__(self, seed, ch=16):
        super().__init__()
        torch.manual_seed(seed)
        self.c1 = nn.Conv1d(1, ch, 5, padding=2)
        self.b1 = nn.BatchNorm1d(ch)
        self.c2 = nn.Conv1d(ch, ch, 5, padding=2, stride=2)
        self.b2 = nn.BatchNorm1d(ch)
        self.fc = nn.Linear(ch * 20, 10)

    def forward(self, x):
        h = torch.relu(self.b1(self.c1(x)))
        h = torch.relu(self.b2(self.c2(h)))
        return self.fc(h.flatten(1))


def bench_lmc(quick: bool):
    n = 1000 if quick else 4000
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(40, 10, generator=g)
    x = torch.randn(n, 1, 40, generator=g)
    y = (x[:, 0] @ teacher).argmax(1)
    models = []
    for seed in (1, 2):
        m = BNCNN(seed)
        opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
        gen = torch.Generator().manual_seed(seed)
        for _ in range(3 if quick else 8):
            for idx in torch.randperm(n, generator=gen).split(64):
                opt.zero_grad()
                nn.functional.cross_entropy(m(x[idx]), y[idx]).backward()
                opt.step()
        models.append(m.eval())
    a, b = models
    import loss_landscapes
    import loss_landscapes.metrics

    metric = loss_landscapes.metrics.Loss(nn.functional.cross_entropy, x, y)

    def ll():
        with torch.no_grad():  # it mutates model_start: give it a copy
            return loss_landscapes.linear_interpolation(copy.deepcopy(a), b, metric, steps=10)

    repeat = 2 if quick else 3
    print(f"### LMC: BN CNN (2 conv + BN, {sum(p.numel() for p in a.parameters())} parameters),"
          f" train n = {n}, 11 points (t = 0, 0.1, ..., 1), best of {repeat}\n")
    lmc(a, b, (x, y), points=2)  # warm-up (first vmap call)
    t_ll, ll_loss = best_of(ll, repeat)  # loss at t = 0.1 ... 1.0
    t_no, r_no = best_of(lambda: lmc(a, b, (x, y), bn_recalibrate=False, engine="loop"), repeat)
    t_v, r_v = best_of(lambda: lmc(a, b, (x, y), engine="vmap"), repeat)
    t_l, _ = best_of(lambda: lmc(a, b, (x, y), engine="loop"), repeat)
    rows = [
        ["loss_landscapes.linear_interpolation (10 steps, loss only, no BN recal.)",
         f"{t_ll:.3f}", "-"],
        ["threeregime lmc, bn_recalibrate=False, engine=loop (11 points, error + loss)", f"{t_no:.3f}",
         f"{t_ll / t_no:.2f}"],
        ["threeregime lmc, BN recalibrated, engine=vmap (11 points)", f"{t_v:.3f}",
         f"{t_ll / t_v:.2f}"],
        ["threeregime lmc, BN recalibrated, engine=loop (default, 11 points)", f"{t_l:.3f}",
         f"{t_ll / t_l:.2f}"],
    ]
    table(rows, ["implementation", "seconds", "speed-up vs loss_landscapes"])
    ours = r_v.train_loss[1:]
    diff = ll_loss - ours
    mid = 4  # t = 0.5
    print(f"Train loss along the path, t = 0.1 ... 1.0 (BN recalibrated, ours): "
          f"{np.array2string(ours, precision=3)}")
    print(f"loss_landscapes (endpoint a's BN statistics):                 "
          f"{np.array2string(ll_loss, precision=3)}")
    print(f"Error of not recalibrating BN: max |diff| = {np.abs(diff).max():.3f} "
          f"(at t = {0.1 * (1 + int(np.abs(diff).argmax())):.1f}), at t = 0.5: "
          f"{diff[mid]:+.3f} ({100 * diff[mid] / ours[mid]:+.0f} % of the recalibrated loss); "
          f"our bn_recalibrate=False matches loss_landscapes to "
          f"{np.abs(r_no.train_loss[1:] - ll_loss)[:-1].max():.1e} except at t=1 "
          f"(it keeps a's statistics, we interpolate them)")
    print(f"mc with BN recalibration: {r_v.mc:+.4f}; without: {r_no.mc:+.4f}\n")


# --------------------------------------------------------------------------- 3. CKA
def bench_cka(quick: bool):
    d = 10  # softmax outputs of a 10-class model
    sizes = [1600, 6400] if quick else [1600, 3200, 6400, 50000]
    print(f"### CKA: feature (streamed, batches of 1000) vs Gram form, d = {d}, float64\n")
    rows = []
    t_gram_ref = None
    for n in sizes:
        g = torch.Generator().manual_seed(n)
        x = torch.randn(n, d, generator=g).softmax(-1)
        y = (x + 0.1 * torch.randn(n, d, generator=g)).softmax(-1)
        t_f, v_f = best_of(lambda x=x, y=y: linear_cka(x, y, batch_size=1000), 3)
        gram_gb = 2 * n * n * 8 / 1e9
        if n <= 6400:
            t_g, v_g = best_of(lambda x=x, y=y: gram_cka(x, y), 1 if n > 3200 else 2)
            t_gram_ref = (n, t_g)
            rows.append([n, f"{t_f * 1e3:.1f}", f"{t_g * 1e3:.0f}", f"{t_g / t_f:.0f}",
                         f"{abs(v_f - v_g):.1e}", f"{gram_gb:.2f} (measured)"])
        else:
            n0, t0 = t_gram_ref
            t_g = t0 * (n / n0) ** 2
            rows.append([n, f"{t_f * 1e3:.1f}", f"~{t_g * 1e3:.0f} (est.)",
                         f"~{t_g / t_f:.0f}", "-", f"{gram_gb:.0f} (not run)"])
    table(rows, ["n", "feature form ms", "Gram form ms", "ratio", "|difference|",
                 "Gram memory GB (2 float64 n x n)"])
    print("Gram form at n = 50,000 estimated from the largest measured n by O(n^2) scaling: "
          "its two float64 Gram matrices (40 GB) do not fit this machine.\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short version")
    ap.add_argument("--only", choices=["hessian", "lmc", "cka"], default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(f"# benchmarks/metrics.py{' --quick' if args.quick else ''}: "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread\n")
    if args.only in (None, "hessian"):
        bench_hessian(args.quick)
    if args.only in (None, "lmc"):
        bench_lmc(args.quick)
    if args.only in (None, "cka"):
        bench_cka(args.quick)


if __name__ == "__main__":
    main()
