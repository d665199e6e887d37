"""The two training engines of :func:`threeregime.training.train.fit` and their shared math.

``VmapRunner`` steps all members as one stacked computation, ``LoopRunner`` one ordinary
module per member (the reference); both apply the same update (:func:`_sgd_update`, with SAM's
perturbation from :func:`_sam_perturbation`), as :mod:`threeregime.training.train` documents.  A
runner offers ``step(xb, yb, lr_factor) -> (loss[M], error[M])``, ``freeze(m)``, ``states()`` and
``evaluate(test) -> (loss[M], error[M])``.

With ``nm = (cfg, names, total)`` (:mod:`threeregime.pruning.nm_training`) the parameters ``names``
are
trained N:M-sparse: a :class:`~threeregime.pruning.nm_training.Flow` recomputes their masks from the
latent weights, the forward pass uses the effective weights and ``states()`` / ``evaluate``
give the sparse weights; ``masks()`` returns the current masks.  Without ``nm`` nothing of the
computation changes.

The runners evaluate through :func:`threeregime.training.functional.evaluate_states`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call, vmap

from ..pruning.nm_training import Flow
from ..spec.specs import TrainSpec
from .device import device_of
from .functional import (
    evaluate_stacked_states,
    evaluate_states,
    split_state,
    stack_states,
    template_of,
    unstack_state,
)

__all__ = ["LoopRunner", "VmapRunner"]


# --------------------------------------------------------------------------- losses
def _loss_and_error(loss_fn, out: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Loss and classification error of one model's outputs (B, C) on targets (B,).

    The error is NaN for non-integer targets (regression losses)."""
    loss = loss_fn(out, y)
    if y.dtype in (torch.int64, torch.int32) and out.dim() == 2:
        err = (out.argmax(-1) != y).float().mean()
    else:
        err = torch.full_like(loss, float("nan"))
    return loss, err


# --------------------------------------------------------------------------- optimizer math
def _sgd_update(params: Sequence[Tensor], grads: Sequence[Tensor], bufs: list[Tensor | None],
                lr: Tensor | float, spec: TrainSpec, masks: Sequence[Tensor | None]) -> None:
    """In-place SGD step shared by both engines.

    ``lr`` is a float (loop engine) or an (M,) tensor broadcast over each stacked parameter
    (vmap engine). Diverged members are frozen by passing lr = 0 for them.
    """
    with torch.no_grad():
        for i, (p, g) in enumerate(zip(params, grads)):
            mask = masks[i]
            d = g if spec.weight_decay == 0 else g.add(p, alpha=spec.weight_decay)
            if mask is not None:
                d = d * mask
            if spec.momentum:
                if bufs[i] is None:
                    bufs[i] = d.clone()
                else:
                    bufs[i].mul_(spec.momentum).add_(d)
                d = d.add(bufs[i], alpha=spec.momentum) if spec.nesterov else bufs[i]
            if isinstance(lr, Tensor):
                step = d * lr.reshape((-1,) + (1,) * (d.dim() - 1))
            else:
                step = d * lr
            p.sub_(step)
            if mask is not None:
                p.mul_(mask)


def _sam_perturbation(grads: Sequence[Tensor], rho: Tensor | float, stacked: bool
                      ) -> list[Tensor]:
    """e = rho * g / ||g||, the norm over all parameters of each member (global, non-adaptive,
    Foret et al. 2021)."""
    if stacked:
        M = grads[0].shape[0]
        sq = sum(g.reshape(M, -1).pow(2).sum(1) for g in grads)
        scale = rho / (sq.sqrt() + 1e-12)  # (M,)
        return [g * scale.reshape((-1,) + (1,) * (g.dim() - 1)) for g in grads]
    norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
    return [g * (rho / (norm + 1e-12)) for g in grads]


# --------------------------------------------------------------------------- runners
class VmapRunner:
    """All members as one stacked computation."""

    def __init__(self, model, init, masks, lrs, rhos, spec, dev, loss_fn, nm=None):
        self.template = template_of(model).to(dev)
        self.loss_fn = loss_fn
        stacked = {k: v.to(dev) for k, v in stack_states(init).items()}
        p, b = split_state(self.template, stacked)
        self.names = list(p)
        self.params = [p[k].clone() for k in self.names]
        self.buffers = {k: v.clone() for k, v in b.items()}
        self.spec = spec
        M = len(lrs)
        dtype = self.params[0].dtype if self.params else torch.float32
        self.lrs = torch.tensor(lrs, dtype=dtype, device=dev)
        self.rhos = torch.tensor(rhos, dtype=dtype, device=dev)
        self.use_sam = bool((self.rhos > 0).any())
        self.masks: list[Tensor | None] = []
        for k in self.names:
            if any(mk is not None and k in mk for mk in masks):
                ms = [(mk[k] if (mk is not None and k in mk) else torch.ones_like(p[k][0],
                      dtype=torch.bool)) for mk in masks]
                self.masks.append(torch.stack([m_.to(dev) for m_ in ms]).to(p[k].dtype))
            else:
                self.masks.append(None)
        with torch.no_grad():
            for prm, mk in zip(self.params, self.masks):
                if mk is not None:
                    prm.mul_(mk)
        self.bufs: list[Tensor | None] = [None] * len(self.names)
        self.M = M
        self.flow = None if nm is None else Flow(nm[0], nm[2], stacked=True)
        self.nm_masks = [self.flow.mask(p) if (self.flow and k in nm[1]) else None
                         for k, p in zip(self.names, self.params)]

    def _loss(self, params, buffers, x, y):
        template, loss_fn = self.template, self.loss_fn
        template.train(True)
        if self.flow is not None:
            params = self.flow.forward(params, self.nm_masks)

        def f(p, b, xi, yi):
            return _loss_and_error(loss_fn, functional_call(template, (p, b), (xi,)), yi)

        return vmap(f, randomness="different")(dict(zip(self.names, params)), buffers, x, y)

    def step(self, xb, yb, fac):
        x, y = torch.stack(xb), torch.stack(yb)
        params = [p.requires_grad_(True) for p in self.params]
        loss, err = self._loss(params, self.buffers, x, y)
        grads = torch.autograd.grad(loss.sum(), params)
        if self.use_sam:
            e = _sam_perturbation(grads, self.rhos, stacked=True)
            pert = [(p + ei).detach().requires_grad_(True) for p, ei in zip(params, e)]
            scratch = {k: v.clone() for k, v in self.buffers.items()}  # BN: first pass only
            loss2, _ = self._loss(pert, scratch, x, y)
            grads = torch.autograd.grad(loss2.sum(), pert)
        for p in params:
            p.requires_grad_(False)
        if self.flow is not None:
            grads = self.flow.grads(grads, self.params, self.nm_masks)
        _sgd_update(self.params, grads, self.bufs, self.lrs * fac, self.spec, self.masks)
        if self.flow is not None:
            self.flow.advance(self.params, self.nm_masks)
        return loss, err

    def freeze(self, m: int) -> None:
        self.lrs[m] = 0.0

    def _weights(self) -> list[Tensor]:
        """The parameters as the model uses them (N:M layers: the sparse weights)."""
        ps = [p.detach() for p in self.params]
        return ps if self.flow is None else [p if mk is None else p * mk
                                             for p, mk in zip(ps, self.nm_masks)]

    def masks_now(self) -> list[dict[str, Tensor]]:
        """Per member, the current boolean masks of the N:M parameters (empty without nm)."""
        out = [{} for _ in range(self.M)]
        for k, mk in zip(self.names, self.nm_masks):
            if mk is not None:
                for i in range(self.M):
                    out[i][k] = mk[i].detach().cpu().bool()
        return out

    def states(self) -> list[dict[str, Tensor]]:
        stacked = {**dict(zip(self.names, self._weights())), **self.buffers}
        order = list(self.template.state_dict())
        stacked = {k: stacked[k].detach().cpu() for k in order}
        return [unstack_state(stacked, i) for i in range(self.M)]

    def evaluate(self, data) -> tuple[np.ndarray, np.ndarray]:
        stacked = {**dict(zip(self.names, self._weights())), **self.buffers}
        return evaluate_stacked_states(self.template, stacked, data, self.M)


class LoopRunner:
    """The reference: one ordinary module per member, stepped one after another."""

    def __init__(self, model, init, masks, lrs, rhos, spec, dev, loss_fn, nm=None):
        self.loss_fn = loss_fn
        self.models = []
        for st in init:
            mdl = template_of(model).to(dev)
            mdl.load_state_dict({k: v.to(dev) for k, v in st.items()})
            self.models.append(mdl)
        self.spec = spec
        self.lrs, self.rhos = list(lrs), list(rhos)
        self.masks = []
        for mdl, mk in zip(self.models, masks):
            ml = [(mk[n].to(dev).to(prm.dtype) if (mk is not None and n in mk) else None)
                  for n, prm in mdl.named_parameters()]
            self.masks.append(ml)
            with torch.no_grad():
                for prm, mm in zip(mdl.parameters(), ml):
                    if mm is not None:
                        prm.mul_(mm)
        self.bufs = [[None] * len(list(mdl.parameters())) for mdl in self.models]
        self.nm_names = [] if nm is None else [n for n, _ in self.models[0].named_parameters()]
        self.flows = [None if nm is None else Flow(nm[0], nm[2], stacked=False)
                      for _ in self.models]
        self.nm_masks = [[(f.mask(p) if (f and n in nm[1]) else None)
                          for n, p in mdl.named_parameters()]
                         for f, mdl in zip(self.flows, self.models)]

    def _forward(self, m: int, x: Tensor) -> Tensor:
        """Member ``m``'s forward pass (N:M layers through their effective weights)."""
        mdl, flow = self.models[m], self.flows[m]
        if flow is None:
            return mdl(x)
        params = list(mdl.parameters())
        eff = flow.forward(params, self.nm_masks[m])
        swap = {n: e for n, e, mk in zip(self.nm_names, eff, self.nm_masks[m]) if mk is not None}
        return functional_call(mdl, swap, (x,), strict=False)

    def step(self, xb, yb, fac):
        losses, errs = [], []
        for m, mdl in enumerate(self.models):
            mdl.train()
            params = list(mdl.parameters())
            out = self._forward(m, xb[m])
            loss, err = _loss_and_error(self.loss_fn, out, yb[m])
            grads = torch.autograd.grad(loss, params)
            if self.rhos[m] > 0:
                e = _sam_perturbation(grads, self.rhos[m], stacked=False)
                saved = {k: v.clone() for k, v in mdl.named_buffers()}
                with torch.no_grad():
                    for p, ei in zip(params, e):
                        p.add_(ei)
                loss2 = self.loss_fn(self._forward(m, xb[m]), yb[m])
                grads = torch.autograd.grad(loss2, params)
                with torch.no_grad():
                    for p, ei in zip(params, e):
                        p.sub_(ei)
                    for k, v in mdl.named_buffers():  # BN statistics: first pass only
                        v.copy_(saved[k])
            flow = self.flows[m]
            if flow is not None:
                grads = flow.grads(grads, params, self.nm_masks[m])
            _sgd_update([p.data for p in params], grads, self.bufs[m], self.lrs[m] * fac,
                        self.spec, self.masks[m])
            if flow is not None:
                flow.advance([p.data for p in params], self.nm_masks[m])
            losses.append(loss.detach())
            errs.append(err.detach())
        return torch.stack(losses), torch.stack(errs)

    def freeze(self, m: int) -> None:
        self.lrs[m] = 0.0

    def _state(self, m: int) -> dict[str, Tensor]:
        """Member ``m``'s state dict as the model uses it (N:M layers: sparse weights)."""
        st = self.models[m].state_dict()
        if self.flows[m] is None:
            return st
        for n, mk in zip(self.nm_names, self.nm_masks[m]):
            if mk is not None:
                st[n] = st[n] * mk
        return st

    def masks_now(self) -> list[dict[str, Tensor]]:
        """Per member, the current boolean masks of the N:M parameters (empty without nm)."""
        return [{n: mk.detach().cpu().bool() for n, mk in zip(self.nm_names, mks)
                 if mk is not None} for mks in self.nm_masks]

    def states(self):
        return [{k: v.detach().cpu().clone() for k, v in self._state(m).items()}
                for m in range(len(self.models))]

    def evaluate(self, data):
        out = [evaluate_states(mdl, [self._state(m)], data, device=device_of(mdl))
               for m, mdl in enumerate(self.models)]
        return np.array([o[0][0] for o in out]), np.array([o[1][0] for o in out])
