"""Stochastic trace estimators behind :func:`threeregime.metrics.hessian_trace`.

Both work on flat vectors through three callables: ``quad(w) = w^T H w`` (a quadratic form:
the ``"taylor"`` / ``"taylor-fx"`` engines compute it without the full product), ``matvec(w) =
H w`` (an HVP) and ``probe(stream, i)`` (Rademacher vector ``i`` of an independent seeded
stream; stream 0 is the plain Hutchinson stream, so both estimators draw the same residual
probes).

**Hutchinson** (``"hutchinson"``): samples ``x_i = g_i^T H g_i``, iid with mean ``tr(H)`` and
variance ``2 (||H||_F^2 - sum_j H_jj^2)`` for Rademacher ``g``; estimate ``mean(x)``, standard
error ``sd(x) / sqrt(m)``.  Cost: m quadratic forms.

**Hutch++** (``"hutchpp"``; Meyer, Musco, Musco & Woodruff, SOSA 2021, arXiv 2010.09649):
deflate the dominant eigen-directions, then run Hutchinson on what is left.

1. sketch: ``Y = H S`` for k Rademacher columns ``S`` (stream 1; k HVPs); ``Q`` = an
   orthonormal basis of ``range(Y)`` (QR in float64; columns whose ``|R_jj|`` falls below
   ``1e-10 max |R_jj|`` are dropped, so ``rank <= k``); ``P = Q Q^T``;
2. the deflated part, exactly: ``T_Q = tr(Q^T H Q) = sum_j q_j^T H q_j`` (rank quadratic forms);
3. residual: ``x_i = T_Q + w_i^T H w_i`` with ``w_i = (I - P) g_i``, ``g_i`` the stream-0
   Rademacher probes (m quadratic forms).

Estimate ``mean(x)``, standard error ``sd(x) / sqrt(m)``: the reported ``samples`` are the
``x_i`` and the formula is the same as Hutchinson's.  Why it is a valid standard error:
given the sketch ``S`` (hence ``Q``), the ``x_i`` are iid and unbiased for the trace, because
``E[g g^T] = I`` gives ``E[w^T H w | Q] = tr((I-P) H (I-P)) = tr(H) - tr(P H P)`` (the cross
terms ``tr(P H (I-P))`` vanish since ``(I-P) P = 0``) and ``tr(P H P) = T_Q``.  So the
conditional mean is ``tr(H)`` whatever the sketch, the law of total variance leaves only
``Var(estimate) = E[sigma_Q^2] / m`` with ``sigma_Q^2 = Var(w^T H w | Q)`` (``= 2 (||B||_F^2
- sum_j B_jj^2)`` when ``w`` is Rademacher; here ``B = (I-P) H (I-P)`` and ``w`` is a projected
Rademacher vector, of the same order), and ``sd(x)^2`` is conditionally unbiased for
``sigma_Q^2``: ``E[stderr^2] = Var(estimate)`` exactly, and ``(estimate - tr H) / stderr`` is
approximately Student-t with m - 1 degrees of freedom.  The variance shrinks from Hutchinson's
``2 ||H||_F^2 / m`` (roughly) to ``2 ||H - H_k||_F^2 / m`` when ``range(Q)`` captures the top
k eigen-directions (the outlier eigenvalues of a network's Hessian carry most of
``||H||_F^2``).  Cost: k HVPs + rank + m quadratic forms, plus ``O(d k)`` memory for Q.

With ``target_stderr`` the residual probes stop at the first ``m >= min_probes`` whose
standard error is at most the target (at most ``probes``).  A data-dependent stopping time
makes the reported error slightly optimistic (stopping where ``sd`` happens to be low); with
``min_probes`` >= 10 the effect is small (tests check the calibration).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

__all__ = ["HessianTraceResult", "hutchinson", "hutchpp", "trace_result"]

MIN_PROBES = 10
_RANK_TOL = 1e-10


@dataclass(frozen=True, repr=False)
class HessianTraceResult:
    """Hutchinson (or Hutch++) estimate of tr(H).

    Attributes
    ----------
    trace : mean of the per-probe samples.
    stderr : sample standard deviation of the samples / sqrt(probes) (NaN for one probe);
        for Hutch++ the samples include the deflated part, see the module docs.
    samples : (probes,) float64: ``v^T H v`` (Hutchinson) or ``tr(Q^T H Q) + w^T H w``
        (Hutch++), iid given the sketch.
    probes : number of random (residual) probes, ``len(samples)``.
    n : number of data points in the loss.
    backend : ``"torch"`` or ``"pyhessian"``; ``method`` the engine that ran.
    estimator : ``"hutchinson"`` or ``"hutchpp"``.
    sketch : rank of the deflated subspace (0 for Hutchinson).
    matvecs : operator applications spent: ``probes`` quadratic forms, plus for Hutch++
        ``sketch`` HVPs and ``sketch`` quadratic forms (the requested k HVPs when rank < k).
    """

    trace: float
    stderr: float
    samples: np.ndarray = field(compare=False)
    probes: int
    n: int
    backend: str = "torch"
    method: str = "autograd"
    estimator: str = "hutchinson"
    sketch: int = 0
    matvecs: int = 0

    def __repr__(self) -> str:
        extra = f", sketch={self.sketch}" if self.estimator == "hutchpp" else ""
        return (f"HessianTraceResult(trace={self.trace:.6g} ± {self.stderr:.2g} (s.e.), "
                f"probes={self.probes}{extra}, n={self.n}, backend={self.backend!r}, "
                f"estimator={self.estimator!r})")


def trace_result(samples: np.ndarray, n: int, backend: str, method: str, *,
                 estimator: str = "hutchinson", sketch: int = 0,
                 matvecs: int | None = None) -> HessianTraceResult:
    p = len(samples)
    se = float(samples.std(ddof=1) / math.sqrt(p)) if p > 1 else math.nan
    return HessianTraceResult(trace=float(samples.mean()), stderr=se, samples=samples,
                              probes=p, n=n, backend=backend, method=method,
                              estimator=estimator, sketch=sketch,
                              matvecs=p if matvecs is None else matvecs)


def _sample(fn: Callable[[int], float], probes: int, target: float | None,
            min_probes: int) -> np.ndarray:
    """``fn(0), fn(1), ...``: ``probes`` of them, or fewer once the s.e. reaches ``target``."""
    out = np.empty(probes, dtype=np.float64)
    for i in range(probes):
        out[i] = fn(i)
        m = i + 1
        if target is not None and m >= min(min_probes, probes) and m > 1:
            if out[:m].std(ddof=1) / math.sqrt(m) <= target:
                return out[:m].copy()
    return out


def hutchinson(quad: Callable[[Tensor], float], probe: Callable[[int, int], Tensor],
               probes: int, target: float | None = None,
               min_probes: int = MIN_PROBES) -> np.ndarray:
    """Hutchinson samples ``g_i^T H g_i`` over the stream-0 probes (module docs)."""
    return _sample(lambda i: quad(probe(0, i)), probes, target, min_probes)


def hutchpp(quad: Callable[[Tensor], float], matvec: Callable[[Tensor], Tensor],
            probe: Callable[[int, int], Tensor], probes: int, sketch: int,
            target: float | None = None, min_probes: int = MIN_PROBES
            ) -> tuple[np.ndarray, int]:
    """Hutch++ samples ``tr(Q^T H Q) + w_i^T H w_i`` and the rank of Q (module docs)."""
    first = probe(1, 0)
    dtype = first.dtype
    y = torch.stack([matvec(first if j == 0 else probe(1, j)).double()
                     for j in range(sketch)], 1)
    q, r = torch.linalg.qr(y)
    diag = r.diagonal().abs()
    top = float(diag.max()) if len(diag) else 0.0
    q = q[:, diag > _RANK_TOL * top] if top > 0 else q[:, :0]
    low = math.fsum(quad(q[:, j].to(dtype)) for j in range(q.shape[1]))

    def one(i: int) -> float:
        g = probe(0, i).double()
        w = g - q @ (q.T @ g)
        return low + quad(w.to(dtype))

    return _sample(one, probes, target, min_probes), int(q.shape[1])
