"""Hessian trace: time to a given standard error, threeregime vs PyHessian, every zoo model.

    python benchmarks/hessian.py            # all five models, 3 timings each (~10 min, 1 core)
    python benchmarks/hessian.py --quick    # smaller data and fewer probes (~2 min)

For each zoo model (mlp, cnn1d with and without BatchNorm, preresnet20 at width 0.25 on
CIFAR-shaped inputs, vgg at width 0.25), briefly trained on synthetic class-conditional data:

1. PyPI ``pyhessian`` 0.1 runs a fixed P = 100 Rademacher probes (30 with --quick; its own
   stopping rule is a relative change, not an error bound, so it is disabled); its s.e. is computed
   from its per-probe samples (sd / sqrt(P)).  That error is the target.
2. ``threeregime.metrics.hessian_trace(estimator="hutchpp", method="taylor-fx",
   target_stderr=<pyhessian's s.e.>)`` runs until its own standard error reaches the target.

Printed per model: both estimates +- s.e. (they must agree: |diff| / combined s.e. < 3),
median seconds of 3 runs each, the ratio, and the ratio at exactly equal variance
(``t_pyhessian se_pyhessian^2 / (t_ours se_ours^2)``, since time to a given error scales as
its square).  One torch thread; on a shared machine timings move with the load (repeat).
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from threeregime.metrics import hessian_trace
from threeregime.models.zoo import build_model
from threeregime.spec.specs import ModelSpec

#: name, spec, input shape, n (full, quick), pyhessian probes P (full, quick)
MODELS = [
    ("mlp 40-128-128-10", ModelSpec(name="mlp"), (1, 40), (2000, 500), (100, 30)),
    ("cnn1d (32 ch)", ModelSpec(name="cnn1d"), (1, 40), (2000, 500), (100, 30)),
    ("cnn1d + BN", ModelSpec(name="cnn1d", batchnorm=True), (1, 40), (2000, 500), (100, 30)),
    ("preresnet20 w=0.25", ModelSpec(name="preresnet20", width=0.25), (3, 32, 32), (128, 32),
     (100, 30)),
    ("vgg w=0.25 + BN", ModelSpec(name="vgg", width=0.25, batchnorm=True), (3, 32, 32),
     (256, 64), (100, 30)),
]


def trained(spec, shape, n, steps=100):
    """The model after ``steps`` SGD steps on class-conditional Gaussian data, and the data."""
    g = torch.Generator().manual_seed(0)
    means = torch.randn(10, *shape, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    x = 0.5 * means[y] + torch.randn(n, *shape, generator=g)
    model = build_model(spec, shape, 10, 0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(steps):
        i = torch.randint(0, n, (64,), generator=g)
        loss = nn.functional.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), (x, y)


def timed(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sketch", type=int, default=10)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    q = int(args.quick)
    print(f"torch {torch.__version__}, 1 thread, load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores; median of {args.repeat}; ours = hutchpp (sketch "
          f"{args.sketch}) + taylor-fx, stopped at pyhessian's s.e.\n")
    rows = []
    for name, spec, shape, ns, ps in MODELS:
        n, probes = ns[q], ps[q]
        model, data = trained(spec, shape, n)
        d = sum(p.numel() for p in model.parameters())
        t_ph, ph = timed(lambda: hessian_trace(model, None, data, probes, seed=0,
                                               backend="pyhessian"), args.repeat)
        t_us, us = timed(lambda: hessian_trace(
            model, None, data, 20 * probes, seed=0, estimator="hutchpp", sketch=args.sketch,
            method="taylor-fx", target_stderr=ph.stderr), args.repeat)
        z = abs(us.trace - ph.trace) / math.hypot(us.stderr, ph.stderr)
        eq = (t_ph * ph.stderr ** 2) / (t_us * us.stderr ** 2)
        rows.append([name, f"{d:,}", str(n), f"{ph.trace:.4g} ± {ph.stderr:.2g} ({probes})",
                     f"{t_ph:.2f}", f"{us.trace:.4g} ± {us.stderr:.2g} ({us.probes}+"
                     f"{2 * us.sketch})", f"{t_us:.2f}", f"{t_ph / t_us:.2f}", f"{eq:.2f}",
                     f"{z:.2f} ({'yes' if z < 3 else 'NO'})", us.method])
        print(" | ".join(rows[-1]), flush=True)
    header = ["model", "params", "n", "pyhessian trace ± s.e. (probes)", "s",
              "ours trace ± s.e. (probes+sketch products)", "s", "speed-up",
              "speed-up at equal variance", "|diff|/s.e. (agree < 3)", "engine"]
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
