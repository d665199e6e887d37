"""The ``"taylor"`` engine of :func:`threeregime.metrics.hessian_trace`: exact ``v^T H v``
for ``nn.Sequential`` MLPs under cross-entropy by a second-order forward (Taylor) pass.

The formula and the models it covers are in :mod:`threeregime.metrics.hessian`'s docstring.
:meth:`TaylorQuadForm.build` returns None for anything else, and the caller takes the HVP
engine instead.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

__all__ = ["TaylorQuadForm"]

_ACTS = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid)
_POLARIZE = True  # two GEMMs per layer and probe instead of three (see TaylorQuadForm._one)
_PASS = (nn.Identity, nn.Dropout)


def _no_hooks(m: nn.Module) -> bool:
    return not (m._forward_hooks or m._forward_pre_hooks)


def _flat_modules(mod: nn.Module, prefix: str = ""):
    """(name, module) of the leaves of (nested) ``nn.Sequential``; None when not such a chain."""
    if type(mod) is nn.Sequential and _no_hooks(mod):
        out = []
        for name, child in mod._modules.items():
            if child is None:
                continue
            sub = _flat_modules(child, f"{prefix}{name}.")
            if sub is None:
                return None
            out.extend(sub)
        return out
    if not prefix:  # the model itself is not a Sequential
        return None
    return [(prefix[:-1], mod)]


def _is_cross_entropy(loss_fn) -> bool:
    if loss_fn is nn.functional.cross_entropy:
        return True
    return (type(loss_fn) is nn.CrossEntropyLoss and _no_hooks(loss_fn)
            and loss_fn.weight is None and loss_fn.reduction == "mean"
            and loss_fn.label_smoothing == 0.0)


class TaylorQuadForm:
    """``v -> v^T H v`` for an MLP under cross-entropy by a second-order forward pass.

    Built once per call of :func:`hessian_trace` (probe-independent forward and backward
    quantities per batch); :meth:`build` returns None when the model or loss is not supported,
    and the caller falls back to the HVP engine.  See hessian's module docs for the formula.
    """

    def __init__(self, batches):
        self.batches = batches  # per batch: {"ops": saved tensors per op, "p": softmax, "n"}

    @classmethod
    def build(cls, hvp):
        """The quadratic form of ``hvp``'s loss (an ``hessian._HVP``: its model, loss, tensors
        and batches), or None when the model or loss is not supported."""
        if not _global_hooks_empty():
            return None
        mods = _flat_modules(hvp.model)
        if mods is None or len({id(m) for _, m in mods}) != len(mods):
            return None
        ignore = -100
        if hvp.loss_fn is not nn.functional.cross_entropy:
            if not _is_cross_entropy(hvp.loss_fn):
                return None
            ignore = hvp.loss_fn.ignore_index
        tensors = {**hvp.fixed, **hvp.p}
        layers = []
        for name, m in mods:
            if not _no_hooks(m):
                return None
            t = type(m)
            if t is nn.Linear:
                wn, bn = f"{name}.weight", f"{name}.bias"
                if wn not in tensors or (m.bias is not None and bn not in tensors):
                    return None
                layers.append(("lin", wn, bn if m.bias is not None else None))
            elif t in _ACTS:
                layers.append(("act", m))
            elif t is nn.Flatten:
                if m.start_dim != 1 or m.end_dim != -1:
                    return None
                layers.append(("flat",))
            elif t in _PASS:
                if t is nn.Dropout and m.training and m.p > 0:
                    return None
            else:
                return None
        if not any(l[0] == "lin" for l in layers):
            return None
        with torch.no_grad():
            tens = {k: v.detach() for k, v in tensors.items()}
            built = []
            for x, y in hvp.batches:
                b = TaylorQuadForm._prepare(layers, tens, x, y, hvp.n, ignore)
                if b is None:
                    return None
                built.append(b)
        return cls(built)

    @staticmethod
    def _prepare(layers, tens, x, y, n, ignore):
        """Forward once, keeping what every probe needs; then the backprop signals."""
        dtype = tens[next(l[1] for l in layers if l[0] == "lin")].dtype
        if not torch.is_tensor(x) or x.dtype != dtype or len(x) == 0:
            return None
        h = x
        started = False  # tangents are zero until the first Linear
        ops = []  # per op after the first Linear: dict of saved tensors
        for l in layers:
            kind = l[0]
            if kind == "lin":
                if h.dim() != 2:
                    return None
                w = tens[l[1]]
                bias = tens[l[2]] if l[2] is not None else None
                aw = h @ w.T
                ops.append({"kind": "lin", "a": h, "w": w, "wn": l[1], "bn": l[2], "aw": aw,
                            "a_sq": float((h * h).sum()), "w_sq": float((w * w).sum())})
                h = aw + bias if bias is not None else aw
                started = True
            elif kind == "act":  # out of place even for inplace=True modules
                m = l[1]
                z = h
                t = type(m)
                d2 = None  # sigma''(z); None where it is zero (piecewise linear)
                if t is nn.ReLU:
                    h = torch.relu(z)
                    d1 = (z > 0).to(z.dtype)
                elif t is nn.LeakyReLU:
                    h = nn.functional.leaky_relu(z, m.negative_slope)
                    d1 = torch.where(z > 0, torch.ones_like(z),
                                     torch.full_like(z, m.negative_slope))
                elif t is nn.Tanh:
                    h = torch.tanh(z)
                    d1 = 1 - h * h
                    d2 = -2 * h * d1
                else:  # Sigmoid
                    h = torch.sigmoid(z)
                    d1 = h * (1 - h)
                    d2 = d1 * (1 - 2 * h)
                if started:
                    ops.append({"kind": "act", "d1": d1, "d2": d2})
            else:  # flatten
                if h.dim() < 2 or (started and h.dim() != 2):
                    return None
                h = h.flatten(1)
        logits = h
        if (logits.dim() != 2 or y.dim() != 1 or y.dtype.is_floating_point or y.is_complex()
                or len(y) != len(logits)):
            return None
        c = logits.shape[1]
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= c or bool((y == ignore).any())):
            return None
        p = torch.softmax(logits, dim=1)
        # grad of (mean CE over this batch) * len/n = sum CE / n w.r.t. the logits
        g = p.clone()
        g[torch.arange(len(y), device=y.device), y] -= 1
        g /= n
        for k in range(len(ops) - 1, -1, -1):
            op = ops[k]
            if op["kind"] == "act":
                if op["d2"] is not None:
                    op["g_out"] = g  # dL/da at this activation's output
                g = g * op["d1"]
            else:
                op["delta"] = g   # dL/dz at this Linear's output
                op["d_aw"] = float((g * op.pop("aw")).double().sum())  # <delta, a W^T>
                if k > 0:
                    g = g @ op["w"]
        return {"ops": ops, "p": p, "n": n}

    def __call__(self, v: Mapping[str, Tensor]) -> float:
        with torch.no_grad():
            return float(sum(self._one(b, v) for b in self.batches))

    @staticmethod
    def _polar_scale(op, ra, vw) -> float:
        """t for the two-GEMM form, or 0 (use three GEMMs: nothing to save, or degenerate)."""
        if ra is None or vw is None:
            return 0.0
        ra_sq = float(torch.vdot(ra.reshape(-1), ra.reshape(-1)))  # a scale: rounding is moot
        v_sq = float(torch.vdot(vw.reshape(-1), vw.reshape(-1)))
        if not (ra_sq > 0 and v_sq > 0 and math.isfinite(ra_sq) and math.isfinite(v_sq)):
            return 0.0
        # |Rz|^2 / |Ra V^T|^2 for random-sign factors: so that t |Rz| ~ t^2 |Ra V^T|
        return math.sqrt(op["w_sq"] / v_sq + op["a_sq"] / ra_sq)

    @staticmethod
    def _one(b, v) -> Tensor:
        acc = []  # scalar tensors, summed in float64
        ra = None  # first-order tangent of the running activation (None = zero)
        for op in b["ops"]:
            if op["kind"] == "lin":
                vw = v.get(op["wn"])
                vb = v.get(op["bn"]) if op["bn"] is not None else None
                w, a = op["w"], op["a"]
                rz = None
                t = TaylorQuadForm._polar_scale(op, ra, vw) if _POLARIZE else 0.0
                if t > 0:
                    # (a +- t Ra)(W +- t V)^T = a W^T +- t Rz + t^2 Ra V^T: two GEMMs give the
                    # tangent Rz = Ra W^T + a V^T and the second-order term Ra V^T (three
                    # otherwise); t balances the magnitudes of the three parts (rounding)
                    up = torch.add(a, ra, alpha=t) @ torch.add(w, vw, alpha=t).T
                    um = torch.add(a, ra, alpha=-t) @ torch.add(w, vw, alpha=-t).T
                    acc.append(((up + um).mul_(op["delta"]).sum().double()
                                - 2 * op["d_aw"]) / (t * t))  # 2 <delta, Ra V^T>
                    rz = up.sub_(um).mul_(0.5 / t)
                elif ra is not None:
                    rz = ra @ w.T
                    if vw is not None:  # second-order term of the bilinear map (W, a) -> a W^T
                        acc.append(2 * (op["delta"] * (ra @ vw.T)).sum())
                if vw is not None and t == 0:
                    rz = a @ vw.T if rz is None else rz.addmm_(a, vw.T)
                if vb is not None:
                    rz = vb.expand(len(a), -1).clone() if rz is None else rz.add_(vb)
                ra = rz
            else:
                if ra is None:
                    continue
                if op["d2"] is not None:
                    acc.append((op["g_out"] * op["d2"] * ra * ra).sum())
                ra = ra * op["d1"]
        if ra is not None:  # output curvature: Rz^T (diag p - p p^T) Rz per row, / n
            p = b["p"].double()
            rz = ra.double()
            prz = p * rz
            acc.append(((prz * rz).sum() - (prz.sum(1) ** 2).sum()) / b["n"])
        if not acc:
            return torch.zeros((), dtype=torch.float64)
        return torch.stack([s.to(torch.float64).reshape(()) for s in acc]).sum()


def _global_hooks_empty() -> bool:
    from torch.nn.modules import module as _m
    return not any(getattr(_m, h, None) for h in (
        "_global_forward_hooks", "_global_forward_pre_hooks"))
