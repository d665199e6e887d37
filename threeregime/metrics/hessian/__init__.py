"""Local curvature: Hutchinson trace and top eigenvalues of the loss Hessian.

Both quantities come from Hessian-vector products (HVPs) of the training loss at the model's
parameters, model in eval mode (BatchNorm uses its running statistics and is not updated), on
the fixed data that is passed (Yang et al., NeurIPS 2021, "Taxonomizing local versus global
structure in neural network loss landscapes", arXiv 2107.11228, Sec. 3; HVPs as in PyHessian,
Yao et al. 2020).

HVP engines (``method``), all exact up to float rounding:

- ``"autograd"`` (default): the gradient is built once with ``create_graph=True`` and every
  probe is one ``torch.autograd.grad(g, params, v, retain_graph=True)`` through that graph
  (reverse-over-reverse with the graph reused; the classic double-backward).
- ``"func-vjp"``: ``torch.func.vjp`` of ``torch.func.grad`` (reverse-over-reverse, the pullback
  reused across probes).
- ``"func-jvp"``: ``torch.func.jvp`` of ``torch.func.grad`` (forward-over-reverse).

``benchmarks/metrics.py`` measures them; on a 1-thread CPU they cost about the same per probe
(PROBE.md), ``"autograd"`` being the cheapest and the most widely supported.  A torch.func
engine that fails on a model falls back to ``"autograd"``.

Trace only (:func:`hessian_trace` needs the quadratic forms ``v^T H v``, not ``H v``):

- ``"taylor"``: for an ``nn.Sequential`` MLP (``Linear`` layers, ``ReLU``/``LeakyReLU``/
  ``Tanh``/``Sigmoid`` activations, ``Flatten``/``Identity``/``Dropout``, nested
  ``Sequential``) under cross-entropy with class-index targets, each sample
  ``v^T H v = d^2/dt^2 L(theta + t v)`` at ``t = 0`` is computed directly by a hand-written
  second-order forward (Taylor) pass.  The forward activations, their derivatives and the
  backprop signals ``delta_l = dL/dz_l`` do not depend on the probe and are computed once.  A
  layer ``z = a W^T + b`` needs ``Rz = Ra W^T + a V^T`` and ``Ra V^T`` (contracted with
  ``delta``); since ``(a +- t Ra)(W +- t V)^T = a W^T +- t Rz + t^2 Ra V^T``, two matmuls of
  the layer's size give both (a double backward does about six):

      v^T H v = sum_rows Rz_L^T (diag(p) - p p^T) Rz_L / n           (output curvature)
              + sum_l 2 <delta_l, Ra_{l-1} V_l^T>                        (bilinear layers)
              + sum_act <dL/da, sigma''(z) * Rz^2>                       (curved activations)

  with ``Rz``/``Ra`` the first-order tangents along ``v`` (``V_l`` = the probe's block of
  ``W_l``).  Same probes, same samples as the HVP engines up to float rounding.
- ``"auto"`` (default of :func:`hessian_trace`): ``"taylor"`` where the model and loss
  qualify, else ``"autograd"``.  Any other model silently takes the ``"autograd"`` path, as
  does an explicit ``method="taylor"`` on a model it does not support (``result.method``
  says which engine ran).

Masked (pruned) models: with ``masks`` every probe and every HVP is multiplied by the 0/1 mask,
so the estimates refer to the Hessian restricted to the *unpruned* coordinates (the sub-Hessian
``H[S, S]``, S = kept weights): pruned weights are held at zero and are not free parameters of
the retrained sparse model.
"""
from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from ...errors import SpecError, did_you_mean
from ...spec.specs import check_choice, check_float, check_pos_int
from ...training.device import target_device
from .._common import iter_batches, probe_seed
from .taylor import TaylorQuadForm
from .taylor_fx import GraphQuadForm
from .trace import MIN_PROBES, HessianTraceResult, hutchinson, hutchpp, trace_result

__all__ = [
    "HessianEigenResult",
    "HessianTraceResult",
    "hessian_top_eigenvalues",
    "hessian_trace",
]

_METHODS = ("autograd", "func-vjp", "func-jvp")
_TRACE_METHODS = ("auto", "taylor", "taylor-fx", *_METHODS)
_ESTIMATORS = ("hutchinson", "hutchpp")


# --------------------------------------------------------------------------- results
@dataclass(frozen=True, repr=False)
class HessianEigenResult:
    """Eigenvalues of largest magnitude by power iteration with deflation.

    Attributes
    ----------
    eigenvalues : (k,) float64, in the order found (non-increasing magnitude, in practice).
    iterations : (k,) int, HVPs spent on each.
    converged : (k,) bool, relative change below ``tol`` before ``iters`` ran out.
    eigenvectors : list of k dicts name -> tensor (unit norm over all selected coordinates).
    n : number of data points in the loss.
    """

    eigenvalues: np.ndarray = field(compare=False)
    iterations: np.ndarray = field(compare=False)
    converged: np.ndarray = field(compare=False)
    eigenvectors: list = field(compare=False, default_factory=list)
    n: int = 0

    @property
    def top(self) -> float:
        return float(self.eigenvalues[0])

    def __repr__(self) -> str:
        ev = ", ".join(f"{e:.6g}" for e in self.eigenvalues)
        return (f"HessianEigenResult(eigenvalues=[{ev}], iterations={self.iterations.tolist()}, "
                f"converged={self.converged.tolist()}, n={self.n})")


# --------------------------------------------------------------------------- the HVP engine
class _HVP:
    """Exact HVPs of ``mean loss over data`` w.r.t. the selected parameters.

    The data are cut into batches; the loss of batch b is weighted by n_b / n so that the sum is
    the mean over all data.  With one batch the graph (or pullback) is built once and reused.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable | None, data, *, params, masks,
                 batch_size, device, method: str):
        if method not in _METHODS:
            raise SpecError(f"method must be one of {', '.join(_METHODS)}; got {method!r}"
                            f"{did_you_mean(str(method), _METHODS)}")
        self.model = model
        self.device = target_device(device, model)
        self.loss_fn = loss_fn if loss_fn is not None else nn.functional.cross_entropy
        all_params = dict(model.named_parameters())
        if params is None:
            names = [n for n, p in all_params.items() if p.requires_grad]
        else:
            names = [params] if isinstance(params, str) else list(params)
            for n in names:
                if n not in all_params:
                    raise SpecError(f"params must name parameters of the model; got {n!r}"
                                    f"{did_you_mean(n, all_params)}")
        if not names:
            raise SpecError("params must select at least one parameter; got none")
        self.names = names
        # detached leaves: the model's own tensors are never touched (no .grad written)
        self.p = {n: all_params[n].detach().to(self.device).requires_grad_(True) for n in names}
        self.fixed = {n: t.detach().to(self.device) for n, t in all_params.items()
                      if n not in self.p}
        self.fixed.update({n: b.detach().to(self.device) for n, b in model.named_buffers()})
        self.masks = None
        if masks is not None:
            self.masks = {}
            for n, m in masks.items():
                if n not in all_params:
                    raise SpecError(f"masks must be keyed by parameter names; got {n!r}"
                                    f"{did_you_mean(n, all_params)}")
                if n not in self.p:
                    continue
                if tuple(m.shape) != tuple(self.p[n].shape):
                    raise SpecError(f"masks[{n!r}] must have shape {tuple(self.p[n].shape)}; "
                                    f"got {tuple(m.shape)}")
                self.masks[n] = m.to(self.device, self.p[n].dtype)
        self.batches = list(iter_batches(data, batch_size, self.device, what="data"))
        self.n = sum(len(x) for x, _ in self.batches)
        if self.n == 0:
            raise SpecError("data must hold at least one example; got 0")
        self.method = method
        self._built = None  # per batch: grads (autograd) or pullback / grad fn (func)

    # -- pieces -------------------------------------------------------------------------------
    def _loss(self, p: Mapping[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        out = functional_call(self.model, ({**self.fixed, **p},), (x,), strict=False)
        return self.loss_fn(out, y) * (len(x) / self.n)

    def _build(self):
        built = []
        for x, y in self.batches:
            if self.method == "autograd":
                g = torch.autograd.grad(self._loss(self.p, x, y), list(self.p.values()),
                                        create_graph=True)
                built.append(g)
            elif self.method == "func-vjp":
                gf = torch.func.grad(lambda p, x=x, y=y: self._loss(p, x, y))
                p0 = {n: t.detach() for n, t in self.p.items()}
                _, pull = torch.func.vjp(gf, p0)
                built.append(pull)
            else:  # func-jvp: nothing to keep but the grad function
                built.append(torch.func.grad(lambda p, x=x, y=y: self._loss(p, x, y)))
        return built

    def _hv_batch(self, b, v: dict[str, Tensor]) -> list[Tensor]:
        item = self._built[b]
        if self.method == "autograd":
            return list(torch.autograd.grad(item, list(self.p.values()),
                                            grad_outputs=[v[n] for n in self.p],
                                            retain_graph=True))
        if self.method == "func-vjp":
            (hv,) = item(v)
            return [hv[n] for n in self.p]
        p0 = {n: t.detach() for n, t in self.p.items()}
        _, hv = torch.func.jvp(item, (p0,), (v,))
        return [hv[n] for n in self.p]

    def __call__(self, v: dict[str, Tensor]) -> dict[str, Tensor]:
        """H v for v a dict name -> tensor (masked in and out when masks are given)."""
        if self.masks:
            v = {n: t * self.masks[n] if n in self.masks else t for n, t in v.items()}
        if self._built is None:
            try:
                self._built = self._build()
            except (RuntimeError, NotImplementedError):
                if self.method == "autograd":
                    raise
                self.method = "autograd"  # torch.func unsupported for this model
                self._built = self._build()
        out = None
        for b in range(len(self.batches)):
            hv = self._hv_batch(b, v)
            out = hv if out is None else [a + c for a, c in zip(out, hv)]
        res = {n: t.detach() for n, t in zip(self.p, out)}
        if self.masks:
            res = {n: t * self.masks[n] if n in self.masks else t for n, t in res.items()}
        return res

    # -- vectors ------------------------------------------------------------------------------
    def rademacher(self, seed: int, index: int, stream: int = 0) -> dict[str, Tensor]:
        """Probe ``index``: +-1 entries drawn on the CPU from its own seeded stream (stream 0
        the Hutchinson probes, stream 1 the Hutch++ sketch)."""
        s = (probe_seed(seed, index) if stream == 0 else
             int(np.random.SeedSequence([int(seed), int(index), int(stream)])
                 .generate_state(1, np.uint64)[0] >> np.uint64(1)))
        g = torch.Generator().manual_seed(s)
        total = sum(t.numel() for t in self.p.values())
        flat = torch.randint(0, 2, (total,), generator=g).to(self.device)
        flat = flat.to(next(iter(self.p.values())).dtype) * 2 - 1
        return self._split(flat)

    def flat(self, v: Mapping[str, Tensor]) -> Tensor:
        return torch.cat([v[n].reshape(-1) for n in self.p])

    def gaussian(self, seed: int, index: int) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(probe_seed(seed, index))
        total = sum(t.numel() for t in self.p.values())
        flat = torch.randn((total,), generator=g, dtype=torch.float64)
        return self._split(flat.to(self.device, next(iter(self.p.values())).dtype))

    def _split(self, flat: Tensor) -> dict[str, Tensor]:
        out, i = {}, 0
        for n, t in self.p.items():
            out[n] = flat[i:i + t.numel()].view_as(t)
            i += t.numel()
        if self.masks:
            out = {n: t * self.masks[n] if n in self.masks else t for n, t in out.items()}
        return out


def _dot(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> float:
    return float(sum((a[n].double() * b[n].double()).sum() for n in a))


class _eval_mode:
    """Put a model in eval mode for a block and restore every module's flag afterwards."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        self.flags = [(m, m.training) for m in self.model.modules()]
        self.model.eval()

    def __exit__(self, *exc):
        for m, f in self.flags:
            m.train(f)


# --------------------------------------------------------------------------- public functions
def hessian_trace(model: nn.Module, loss_fn: Callable | None = None, data=None,
                  probes: int = 100, seed: int = 0, *, backend: str = "torch",
                  params: Sequence[str] | None = None,
                  masks: Mapping[str, Tensor] | None = None, batch_size: int | None = None,
                  method: str = "auto", device=None, estimator: str = "hutchinson",
                  sketch: int = 10, target_stderr: float | None = None,
                  min_probes: int = MIN_PROBES) -> HessianTraceResult:
    """Hutchinson (or Hutch++) estimate of the trace of the loss Hessian.

    Estimator ``"hutchinson"`` (default): ``tr(H) ~ (1/P) sum_p v_p^T H v_p`` with P
    independent Rademacher probes (entries +-1), unbiased; its variance per probe is
    ``2 (||H||_F^2 - sum_i H_ii^2)``, so the reported standard error (sample std / sqrt(P))
    shrinks as 1/sqrt(P) (Hutchinson 1990; Avron & Toledo 2011).  Estimator ``"hutchpp"``
    (Hutch++, Meyer et al. 2021): ``sketch`` HVPs find the dominant eigen-directions, whose
    part of the trace is computed exactly, and the P probes estimate the rest; its samples
    and standard error have the same form and meaning (unbiased, ``E[stderr^2] = Var``), see
    :mod:`threeregime.metrics.hessian.trace` for the derivation.  Cost: one forward and one backward
    with ``create_graph=True``, then one HVP (about two backward passes) per probe and batch;
    the ``"taylor"`` engines compute each ``v^T H v`` by one second-order forward pass
    instead (about two forward passes' worth; module docs).  H is the Hessian of the *mean*
    loss over all of ``data`` (model in eval mode; Yang et al. 2021 measure it on a fixed
    training subset with cross-entropy).

    Parameters
    ----------
    model : the network; neither its parameters, buffers, ``.grad`` nor mode are changed.
    loss_fn : ``loss_fn(outputs, targets) -> mean loss``; ``None`` = cross-entropy.
    data : ``(inputs, targets)`` tensors / ``TensorData`` (one batch unless ``batch_size``),
        or a DataLoader of ``(x, y)`` batches (HVPs summed over batches, weighted by size).
    probes : number of Rademacher probes P (the maximum when ``target_stderr`` is given).
    seed : probe p is drawn from its own stream seeded by ``(seed, p)``: results do not
        depend on the device, the batching or the global RNG.
    backend : ``"torch"`` (this module) or ``"pyhessian"`` (the PyPI ``pyhessian`` 0.1 loop,
        run for exactly P probes with its early stop disabled; global RNG forked and seeded).
    params : names of the parameters to differentiate (default: all with requires_grad);
        the others are held fixed (the trace of that diagonal block).
    masks : name -> 0/1 tensor; restricts to the unpruned coordinates (see module docs).
    batch_size : split an ``(x, y)`` pair into batches of this size (memory), default one.
    method : ``"auto"`` (``"taylor"`` where it applies, else ``"autograd"``), ``"taylor"``,
        ``"taylor-fx"`` (the traced second-order pass for CNNs, ResNets, MLPs under
        cross-entropy; falls back to ``"autograd"``), or an HVP engine ``"autograd"``,
        ``"func-vjp"``, ``"func-jvp"`` (module docs).  ``result.method`` names the engine.
    device : where to compute (default: the model's device).
    estimator : ``"hutchinson"`` or ``"hutchpp"``.
    sketch : Hutch++ sketch size k (HVPs spent on the deflation); ignored by Hutchinson.
    target_stderr : stop at the first P >= ``min_probes`` whose standard error is at most
        this (> 0); None = always P probes.
    min_probes : fewest probes before ``target_stderr`` may stop the run.

    Returns
    -------
    HessianTraceResult
    """
    check_pos_int("probes", probes)
    check_choice("estimator", estimator, _ESTIMATORS)
    check_pos_int("sketch", sketch, minimum=0)
    check_pos_int("min_probes", min_probes, minimum=2)
    if target_stderr is not None:
        check_float("target_stderr", target_stderr, 0.0, math.inf, lo_open=True)
    if backend == "pyhessian":
        if params is not None or masks is not None or estimator != "hutchinson":
            raise SpecError("backend 'pyhessian' supports neither params, masks nor "
                            "estimator='hutchpp'; use backend='torch'")
        return _pyhessian_trace(model, loss_fn, data, probes, seed, batch_size, device)
    check_choice("backend", backend, ("torch", "pyhessian"))
    check_choice("method", method, _TRACE_METHODS)
    engine = "autograd" if method in ("auto", "taylor", "taylor-fx") else method
    with _eval_mode(model):
        hvp = _HVP(model, loss_fn, data, params=params, masks=masks, batch_size=batch_size,
                   device=device, method=engine)
        qf = (TaylorQuadForm.build(hvp) if method in ("auto", "taylor") else
              GraphQuadForm.build(hvp) if method == "taylor-fx" else None)

        def quad(w: Tensor) -> float:
            v = hvp._split(w)
            return qf(v) if qf is not None else _dot(v, hvp(v))

        def probe(stream: int, i: int) -> Tensor:
            return hvp.flat(hvp.rademacher(seed, i, stream))

        rank = 0
        if estimator == "hutchpp" and sketch > 0:
            samples, rank = hutchpp(quad, lambda w: hvp.flat(hvp(hvp._split(w))), probe,
                                    probes, sketch, target_stderr, min_probes)
        else:
            samples = hutchinson(quad, probe, probes, target_stderr, min_probes)
    name = ("taylor" if method in ("auto", "taylor") else "taylor-fx") if qf else hvp.method
    return trace_result(samples, hvp.n, "torch", name, estimator=estimator, sketch=rank,
                        matvecs=len(samples) + (sketch + rank if estimator == "hutchpp"
                                                else 0))


def _pyhessian_trace(model, loss_fn, data, probes, seed, batch_size, device):
    try:
        from pyhessian import hessian as _PyHessian
    except ImportError as e:  # pragma: no cover - declared dependency
        raise SpecError("backend 'pyhessian' needs the PyPI package pyhessian "
                        "(pip install pyhessian)") from e
    dev = target_device(device, model)
    work = copy.deepcopy(model).to(dev)  # pyhessian writes .grad and sets eval mode
    crit = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
    batches = list(iter_batches(data, batch_size, dev))
    n = sum(len(x) for x, _ in batches)
    with (torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []),
          warnings.catch_warnings()):
        # its loss.backward(create_graph=True) warns about a reference cycle on a private copy
        warnings.simplefilter("ignore", UserWarning)
        torch.manual_seed(seed)
        if len(batches) == 1:
            h = _PyHessian(work, crit, data=batches[0], cuda=dev.type == "cuda")
        else:
            h = _PyHessian(work, crit, dataloader=batches, cuda=dev.type == "cuda")
        # tol=-inf: its relative-change stopping rule never fires, so exactly `probes` run
        samples = np.asarray(h.trace(maxIter=probes, tol=-math.inf), dtype=np.float64)
    return trace_result(samples, n, "pyhessian", "pyhessian")


def hessian_top_eigenvalues(model: nn.Module, loss_fn: Callable | None = None, data=None,
                            k: int = 1, iters: int = 100, tol: float = 1e-4, seed: int = 0,
                            masks: Mapping[str, Tensor] | None = None, *,
                            params: Sequence[str] | None = None, batch_size: int | None = None,
                            method: str = "autograd", device=None) -> HessianEigenResult:
    """Top-k Hessian eigenvalues (largest magnitude) by power iteration with deflation.

    Estimator: for j = 1..k, power iteration ``v <- P_j H v / ||P_j H v||`` from a seeded
    Gaussian start, where ``P_j`` projects out the j-1 eigenvectors already found (deflation by
    orthogonalisation); the Rayleigh quotient ``v^T H v`` is the eigenvalue estimate.  It stops
    when the relative change of the estimate falls below ``tol`` or after ``iters`` HVPs.
    Power iteration converges to the eigenvalue of largest *magnitude* at rate
    ``|lambda_2 / lambda_1|`` per step; at a minimum that is the largest (sharpness, Yang et
    al. 2021; Yao et al. 2020).  The error is deterministic given the seed (no variance term
    is reported); a small gap means slow convergence, flagged by ``converged``.
    Cost: up to ``k * iters`` HVPs.  Parameters as in :func:`hessian_trace`.

    Returns
    -------
    HessianEigenResult
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise SpecError(f"k must be an integer >= 1; got {k!r}")
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise SpecError(f"iters must be an integer >= 1; got {iters!r}")
    with _eval_mode(model):
        hvp = _HVP(model, loss_fn, data, params=params, masks=masks, batch_size=batch_size,
                   device=device, method=method)
        vecs: list[dict[str, Tensor]] = []
        vals, its, conv = [], [], []

        def project(w):
            for u in vecs:
                c = _dot(w, u)
                w = {n: w[n] - c * u[n] for n in w}
            return w

        def normalise(w):
            s = math.sqrt(_dot(w, w))
            return {n: t / s for n, t in w.items()}, s

        for j in range(k):
            v, _ = normalise(project(hvp.gaussian(seed, j)))
            lam, ok, it = math.nan, False, 0
            for it in range(1, iters + 1):
                hv = hvp(v)
                new = _dot(v, hv)
                w, s = normalise(project(hv))
                if s == 0.0:  # H v = 0 on the complement: eigenvalue 0
                    lam, ok = 0.0, True
                    break
                if not math.isnan(lam) and abs(new - lam) <= tol * max(abs(lam), 1e-30):
                    lam, ok = new, True
                    break
                lam, v = new, w
            vals.append(lam)
            its.append(it)
            conv.append(ok)
            vecs.append(v)
    return HessianEigenResult(eigenvalues=np.asarray(vals, dtype=np.float64),
                              iterations=np.asarray(its, dtype=np.int64),
                              converged=np.asarray(conv, dtype=bool), eigenvectors=vecs,
                              n=hvp.n)
