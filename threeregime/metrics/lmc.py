"""Linear (and quadratic Bezier) mode connectivity with BatchNorm recalibration.

Definition (SPEC.md section 3; Yang et al. 2021; Zhou et al. 2023): the path
``theta(t) = (1 - t) theta_a + t theta_b`` over every parameter and every floating buffer,
matched by *name*.  At each t the BatchNorm running statistics are recomputed with one pass
over the training data (no augmentation), then the model is evaluated in eval mode.  With
``e(t)`` the train error (fraction), ``m = (e(0) + e(1)) / 2`` and
``t* = argmax_t |m - e(t)|``, the mode connectivity is ``mc = m - e(t*)``: negative = a barrier
(poorly connected), ~0 = connected, positive = the path is better than its ends.

BatchNorm recalibration: running mean/var are reset and re-estimated as the *batch-size
weighted* cumulative average of the per-batch statistics, with the model in train mode (as
``torch.optim.swa_utils.update_bn``).  With equal batch sizes this is exactly PyTorch's
``momentum=None``; unequal last batches are weighted by their size, so the running mean equals
the full-data mean of the layer input exactly.  The running variance is the size-weighted mean
of the per-batch *unbiased* variances: it equals the full-data unbiased variance when one batch
covers the data, and otherwise omits the (small) spread of the batch means, i.e.
``sum_b n_b/N * s_b^2`` instead of ``(1/(N-1)) sum_i (x_i - mean)^2``.

Cost: ``points`` x (one pass over train for BN + one evaluation pass over train [+ test]).
:func:`lmc_pairs` runs all pairs x points as one stacked ensemble (``torch.func.vmap``), which
matches a per-pair loop (``engine="loop"``) to float rounding.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import SpecError
from ..training.device import target_device
from ..training.functional import ensemble_forward, evaluate_stacked, split_state
from ._common import (
    bn_modules,
    bn_stat_names,
    check_same_names,
    iter_batches,
    named_state,
)

__all__ = [
    "LMCPairsResult",
    "LMCResult",
    "lmc",
    "lmc_curve_bezier",
    "lmc_pairs",
    "mode_connectivity",
]

SPLITS = ("train", "test")
QUANTITIES = ("error", "loss")


# --------------------------------------------------------------------------- results
def mode_connectivity(train_error: np.ndarray) -> tuple[float, int]:
    """``(mc, index of t*)`` from a train-error curve ``e(t)`` (see module docs)."""
    e = np.asarray(train_error, dtype=np.float64)
    m = 0.5 * (e[0] + e[-1])
    i = int(np.argmax(np.abs(m - e)))
    return float(m - e[i]), i


def _curve_column(split: int, quantity: int) -> property:
    """A read-only (T,) view ``curve[:, split, quantity]`` of an :class:`LMCResult`."""
    def get(self) -> np.ndarray:
        return self.curve[:, split, quantity]

    get.__doc__ = f"{SPLITS[split]} {QUANTITIES[quantity]} along the path, shape (T,)."
    return property(get)


@dataclass(frozen=True, repr=False)
class LMCResult:
    """Mode connectivity of one pair of models.

    Attributes
    ----------
    mc : ``m - e(t*)`` on the train-error scale (negative = barrier).
    t : (T,) path positions.
    curve : (T, 2, 2) float64 indexed (t, split, quantity), split in ``("train", "test")``,
        quantity in ``("error", "loss")``; test entries are NaN when no test data was given.
    t_star : the t maximising ``|m - e(t)|``.
    path : ``"linear"`` or ``"bezier"``.
    """

    mc: float
    t: np.ndarray = field(compare=False)
    curve: np.ndarray = field(compare=False)
    t_star: float = math.nan
    path: str = "linear"

    train_error = _curve_column(0, 0)
    train_loss = _curve_column(0, 1)
    test_error = _curve_column(1, 0)
    test_loss = _curve_column(1, 1)

    @property
    def barrier(self) -> float:
        """``max(0, -mc)``: the height of the error barrier (0 when there is none)."""
        return max(0.0, -self.mc)

    def __repr__(self) -> str:
        e = self.train_error
        return (f"LMCResult(mc={self.mc:+.4f}, t*={self.t_star:.2f}, path={self.path!r}, "
                f"points={len(self.t)}, train_error[0, t*, 1]=[{e[0]:.4f}, "
                f"{np.interp(self.t_star, self.t, e):.4f}, {e[-1]:.4f}])")


@dataclass(frozen=True, repr=False)
class LMCPairsResult:
    """Mode connectivity of many pairs (output of :func:`lmc_pairs`).

    Attributes
    ----------
    pairs : list of (i, j) indices into ``states``.
    mc : (P,) float64.
    t : (T,).
    curve : (P, T, 2, 2) float64 (pair, t, split, quantity).
    """

    pairs: list = field(compare=False)
    mc: np.ndarray = field(compare=False)
    t: np.ndarray = field(compare=False)
    curve: np.ndarray = field(compare=False)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, k: int) -> LMCResult:
        _, i = mode_connectivity(self.curve[k, :, 0, 0])
        return LMCResult(mc=float(self.mc[k]), t=self.t, curve=self.curve[k],
                         t_star=float(self.t[i]))

    def __repr__(self) -> str:
        body = ", ".join(f"{tuple(p)}: {m:+.4f}" for p, m in zip(self.pairs, self.mc))
        return f"LMCPairsResult(points={len(self.t)}, mc={{{body}}})"


# --------------------------------------------------------------------------- shared pieces
def _check_points(points) -> np.ndarray:
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise SpecError(f"points must be an integer >= 2; got {points!r}")
    return np.linspace(0.0, 1.0, points)


def _interpolable(name: str, t: Tensor, bn_stats: set[str]) -> bool:
    return torch.is_floating_point(t) and name not in bn_stats


def _set_bn_momentum(model: nn.Module, value: float | None) -> list:
    old = []
    for _, m in bn_modules(model):
        old.append((m, m.momentum))
        m.momentum = value
    return old


def _reset_bn(buffers: dict[str, Tensor], names: set[str]) -> None:
    """Reset stacked BN running statistics in place: mean 0, var 1, count 0."""
    for n in names:
        if n not in buffers:
            continue
        if n.endswith("running_mean"):
            buffers[n].zero_()
        elif n.endswith("running_var"):
            buffers[n].fill_(1.0)
        else:
            buffers[n].zero_()


@torch.no_grad()
def _recalibrate_stacked(template: nn.Module, params: dict, buffers: dict, train_data,
                         batch_size: int, device) -> None:
    """One pass over train_data updating stacked BN buffers (size-weighted cumulative mean)."""
    bns = bn_modules(template)
    if not bns:
        return
    _reset_bn(buffers, bn_stat_names(template))
    seen = 0
    old = _set_bn_momentum(template, 1.0)
    try:
        for x, _ in iter_batches(train_data, batch_size, device, what="train_data"):
            seen += len(x)
            for _, m in bns:
                m.momentum = len(x) / seen  # running <- (1 - w) running + w batch_stat
            ensemble_forward(template, params, buffers, x, train=True, shared_input=True)
    finally:
        for m, mom in old:
            m.momentum = mom
        template.eval()


def _path_curves(template, params, buffers, train_data, test_data, *, batch_size, device,
                 bn_recalibrate) -> np.ndarray:
    """(M, 2, 2) curve values for M stacked path points."""
    m_count = next(iter(params.values())).shape[0]
    if bn_recalibrate:
        _recalibrate_stacked(template, params, buffers, train_data, batch_size, device)
    out = np.full((m_count, 2, 2), np.nan)
    for s, (data, what) in enumerate(((train_data, "train_data"), (test_data, "test_data"))):
        if data is not None:
            out[:, s, 1], out[:, s, 0] = evaluate_stacked(
                template, params, buffers, data, batch_size=batch_size, device=device,
                loss_dtype=torch.float64, what=what)
    return out


def _full_state(model: nn.Module, state: Mapping[str, Tensor], i: int) -> dict[str, Tensor]:
    ref = named_state(model)
    missing = [k for k in ref if k not in state]
    if missing and not all(k in dict(model.named_buffers()) for k in missing):
        raise SpecError(f"states[{i}] must hold every parameter of the model; missing "
                        f"{missing[:3]}")
    full = {k: (state[k] if k in state else ref[k]) for k in ref}
    check_same_names(ref, full, what=f"states[{i}]")
    return full


# --------------------------------------------------------------------------- public API
def lmc_pairs(model: nn.Module, states: Sequence[Mapping[str, Tensor]],
              pairs: Sequence[tuple[int, int]], train_data, test_data=None, points: int = 11,
              *, batch_size: int = 1000, device=None, bn_recalibrate: bool = True,
              max_members: int | None = None, engine: str = "auto") -> LMCPairsResult:
    """Linear mode connectivity of many pairs of same-architecture models at once.

    With ``engine="vmap"`` all ``len(pairs) * points`` path points are one stacked ensemble
    run through :func:`threeregime.training.functional.ensemble_forward` (BatchNorm recalibrated per
    member), so a whole seed family costs about one batched pass per t-grid; ``engine="loop"`` runs
    :func:`lmc` pair by pair.  ``"auto"`` (default) loops on a CPU, where vmap turns a conv
    net's convolutions into slow grouped convolutions (the loop measured 2.5x faster on the quick
    sweep's CNN: benchmarks/RESULTS.md), and stacks on a GPU.  Estimator, cost and BatchNorm
    treatment as in :func:`lmc`; both engines give the same numbers to float rounding.

    Parameters
    ----------
    model : template giving the architecture; its tensors are neither used nor modified.
    states : K state dicts (parameters, and buffers; missing buffers come from ``model``).
    pairs : (i, j) index pairs into ``states``.
    train_data, test_data : ``(x, y)`` / ``TensorData`` / DataLoader.
    points : number of equally spaced t in [0, 1].
    batch_size : evaluation batch size for ``(x, y)`` data.
    max_members : evaluate at most this many stacked path points at a time (memory).
    engine : ``"auto"``, ``"vmap"`` or ``"loop"``.

    Returns
    -------
    LMCPairsResult with ``mc`` (P,) and ``curve`` (P, T, 2, 2).
    """
    t = _check_points(points)
    dev = target_device(device, model)
    if not pairs:
        raise SpecError("pairs must list at least one (i, j) pair; got []")
    if engine not in ("auto", "vmap", "loop"):
        raise SpecError(f"engine must be one of auto, vmap, loop; got {engine!r}")
    k_states = len(states)
    for p in pairs:
        if len(p) != 2 or not all(0 <= int(q) < k_states for q in p):
            raise SpecError(f"pairs must hold (i, j) with 0 <= i, j < {k_states}; got {p!r}")
    template = copy.deepcopy(model).to(dev)
    full = [_full_state(template, s, i) for i, s in enumerate(states)]
    if engine == "loop" or (engine == "auto" and dev.type == "cpu"):
        def _model(i: int) -> nn.Module:
            m = copy.deepcopy(template)
            m.load_state_dict(full[i])
            return m

        res = [lmc(_model(int(a)), _model(int(b)), train_data, test_data, points=points,
                   batch_size=batch_size, device=dev, bn_recalibrate=bn_recalibrate,
                   engine="loop") for a, b in pairs]
        return LMCPairsResult(pairs=[tuple(int(q) for q in p) for p in pairs],
                              mc=np.array([r.mc for r in res]), t=t,
                              curve=np.stack([r.curve for r in res]))
    bn_stats = bn_stat_names(template)
    names = list(full[0])
    # per-member endpoint indices and weights: member = (pair, t)
    ia = np.repeat([int(p[0]) for p in pairs], len(t))
    ib = np.repeat([int(p[1]) for p in pairs], len(t))
    tt = np.tile(t, len(pairs))
    members = len(tt)
    chunk = members if max_members is None else max(1, int(max_members))
    curves = np.empty((members, 2, 2))
    for lo in range(0, members, chunk):
        sl = slice(lo, min(members, lo + chunk))
        w = torch.tensor(tt[sl], device=dev)
        stacked = {}
        for n in names:
            a = torch.stack([full[i][n].detach() for i in ia[sl]]).to(dev)
            if _interpolable(n, a, bn_stats):
                b = torch.stack([full[j][n].detach() for j in ib[sl]]).to(dev)
                ww = w.to(a.dtype).view(-1, *([1] * (a.dim() - 1)))
                a = (1 - ww) * a + ww * b  # (m, *shape)
            stacked[n] = a.clone()
        params, buffers = split_state(template, stacked)
        curves[sl] = _path_curves(template, params, buffers, train_data, test_data,
                                  batch_size=batch_size, device=dev,
                                  bn_recalibrate=bn_recalibrate)
    curve = curves.reshape(len(pairs), len(t), 2, 2)
    mc = np.array([mode_connectivity(c[:, 0, 0])[0] for c in curve])
    return LMCPairsResult(pairs=[tuple(int(q) for q in p) for p in pairs], mc=mc, t=t,
                          curve=curve)


def lmc(model_a: nn.Module, model_b: nn.Module, train_data, test_data=None, points: int = 11,
        *, batch_size: int = 1000, device=None, bn_recalibrate: bool = True,
        engine: str = "loop") -> LMCResult:
    """Linear mode connectivity of two models (Yang et al. 2021 sign convention).

    Estimator: the train error ``e(t)`` on ``points`` equally spaced t of the straight path
    between the two parameter vectors (matched by name), BatchNorm statistics recomputed at
    every t (see module docs); ``mc = m - e(t*)``.  It is an exact evaluation on the data
    given: its only variance is that of the models and data (report the spread over seed
    pairs, SPEC.md section 2).  Cost: ``points`` x (BN pass + evaluation pass) over train
    [+ test], run one path point at a time (``engine="loop"``, the default: on a 1-thread CPU
    it was about 2x faster than the stacked engine for a conv net, see benchmarks/RESULTS.md)
    or as one stacked ensemble (``engine="vmap"``, as :func:`lmc_pairs`).  Neither model is
    modified.

    Parameters
    ----------
    model_a, model_b : same architecture; names and shapes of parameters and buffers must
        match (SpecError names the first differences).  Registration order does not matter.
    train_data : ``(x, y)`` / ``TensorData`` / DataLoader: BN recalibration and train metrics.
    test_data : optional, test error and loss along the path (else NaN).
    points : number of t values (11 in the paper).
    batch_size : batch size for ``(x, y)`` data (BN statistics are per batch of this size).
    device : where to compute (default: model_a's device).
    bn_recalibrate : recompute BN running statistics at every t (default; the paper).  With
        ``False`` the running statistics are interpolated like any buffer.
    engine : ``"loop"`` or ``"vmap"``.

    Returns
    -------
    LMCResult
    """
    sa, sb = named_state(model_a), named_state(model_b)
    check_same_names(sa, sb)
    if engine == "vmap":
        res = lmc_pairs(model_a, [sa, sb], [(0, 1)], train_data, test_data, points,
                        batch_size=batch_size, device=device, bn_recalibrate=bn_recalibrate)
        return res[0]
    if engine != "loop":
        raise SpecError(f"engine must be 'vmap' or 'loop'; got {engine!r}")
    t = _check_points(points)
    dev = target_device(device, model_a)
    work = copy.deepcopy(model_a).to(dev)
    bn_stats = bn_stat_names(work)
    wstate = named_state(work)
    curve = np.full((len(t), 2, 2), np.nan)
    with torch.no_grad():
        for k, tk in enumerate(t):
            for n, dst in wstate.items():
                a, b = sa[n].to(dev), sb[n].to(dev)
                dst.copy_((1 - tk) * a + tk * b if _interpolable(n, a, bn_stats) else a)
            if bn_recalibrate and bn_modules(work):
                for _, m in bn_modules(work):
                    m.reset_running_stats()
                old = _set_bn_momentum(work, 1.0)
                work.train()
                seen = 0
                for x, _ in iter_batches(train_data, batch_size, dev, what="train_data"):
                    seen += len(x)
                    for _, m in bn_modules(work):
                        m.momentum = len(x) / seen
                    work(x)
                for m, mom in old:
                    m.momentum = mom
            work.eval()
            for s, data in enumerate((train_data, test_data)):
                if data is None:
                    continue
                wrong = loss = 0.0
                n = 0
                for x, y in iter_batches(data, batch_size, dev):
                    out = work(x).double()
                    loss += float(nn.functional.cross_entropy(out, y, reduction="sum"))
                    wrong += float((out.argmax(-1) != y).sum())
                    n += len(x)
                curve[k, s] = (wrong / n, loss / n)
    mc, i = mode_connectivity(curve[:, 0, 0])
    return LMCResult(mc=mc, t=t, curve=curve, t_star=float(t[i]))


def lmc_curve_bezier(model_a: nn.Module, model_b: nn.Module, train_data, test_data=None,
                     points: int = 11, *, epochs: int = 10, lr: float = 0.01,
                     train_batch_size: int = 128, seed: int = 0, batch_size: int = 1000,
                     device=None, bn_recalibrate: bool = True) -> LMCResult:
    """Mode connectivity along a quadratic Bezier curve with a trained middle point.

    Path ``theta(t) = (1-t)^2 theta_a + 2 t (1-t) theta_c + t^2 theta_b`` (Garipov et al.
    2018, the curve variant used by Yang et al. 2021).  ``theta_c`` starts at the midpoint and
    is trained by SGD (momentum 0.9) for ``epochs`` passes of ``train_data`` in batches of
    ``train_batch_size``, with one ``t ~ U(0, 1)`` per step (seeded by ``seed``; BatchNorm in
    train mode uses batch statistics).  The curve is then evaluated like :func:`lmc` (BN
    recalibrated at every t) and ``mc`` computed the same way.  Cost: training
    (``epochs`` passes, about 3x a forward pass each) + the LMC evaluation.

    Returns
    -------
    LMCResult with ``path="bezier"``.
    """
    t_grid = _check_points(points)
    sa, sb = named_state(model_a), named_state(model_b)
    check_same_names(sa, sb)
    dev = target_device(device, model_a)
    template = copy.deepcopy(model_a).to(dev)
    bn_stats = bn_stat_names(template)
    pnames = {n for n, _ in template.named_parameters()}
    interp = [n for n in sa if _interpolable(n, sa[n], bn_stats)]
    a = {n: sa[n].to(dev) for n in sa}
    b = {n: sb[n].to(dev) for n in sb}
    c = {n: (0.5 * (a[n] + b[n])).clone().requires_grad_(n in pnames) for n in interp}
    gen = torch.Generator().manual_seed(int(seed))
    opt = torch.optim.SGD([c[n] for n in interp if n in pnames], lr=lr, momentum=0.9)

    def point(tv, cc):
        out = dict(a)
        for n in interp:
            out[n] = (1 - tv) ** 2 * a[n] + 2 * tv * (1 - tv) * cc[n] + tv ** 2 * b[n]
        return out

    xs, ys = zip(*iter_batches(train_data, None, dev, what="train_data"))
    x_all, y_all = torch.cat(xs), torch.cat(ys)
    template.train()
    for _ in range(int(epochs)):
        perm = torch.randperm(len(x_all), generator=gen).to(dev)
        for i in range(0, len(x_all), train_batch_size):
            idx = perm[i:i + train_batch_size]
            tv = float(torch.rand((), generator=gen))
            st = point(tv, c)
            st = {n: (v.detach().clone() if n in bn_stats else v) for n, v in st.items()}
            out = torch.func.functional_call(template, st, (x_all[idx],))
            loss = nn.functional.cross_entropy(out, y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        cd = {n: v.detach() for n, v in c.items()}
        stacked = {n: torch.stack([point(float(tk), cd)[n] for tk in t_grid]).clone()
                   for n in sa}
    params, buffers = split_state(template, stacked)
    curve = _path_curves(template, params, buffers, train_data, test_data,
                         batch_size=batch_size, device=dev, bn_recalibrate=bn_recalibrate)
    mc, i = mode_connectivity(curve[:, 0, 0])
    return LMCResult(mc=mc, t=t_grid, curve=curve, t_star=float(t_grid[i]), path="bezier")
