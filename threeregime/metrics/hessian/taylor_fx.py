"""The ``"taylor-fx"`` engine of :func:`threeregime.metrics.hessian_trace`: exact ``v^T H v``
for any model that ``torch.fx`` can trace into supported operations, under cross-entropy.

Along the line ``theta + t v`` every intermediate tensor ``y(t)`` of the network has a tangent
``y' = dy/dt`` at ``t = 0``, and by the chain rule

    v^T H v = d^2/dt^2 L(theta + t v) = sum_ops <ybar_op, op''[x', x']> + z'^T H_CE z'

where ``ybar_op = dL/dy_op`` is the op's backprop signal (the same for every probe: computed
once per batch by one backward pass), ``op''[x', x']`` the op's second derivative along the
tangents of its inputs, ``z'`` the tangent of the logits and ``H_CE`` the Hessian of the
cross-entropy in the logits (``(diag(p) - p p^T) / n`` per row).  Only these ops have a
second-order term:

- ``Linear`` / ``Conv1d`` / ``Conv2d`` ``y = op(a, W) + b``, bilinear in ``(a, W)``:
  ``2 <ybar, op(a', V)>`` with ``V`` the probe's block of ``W``.  As in :mod:`.taylor`, two
  products ``op(a +- s a', W +- s V) = op(a, W) +- s y' + s^2 op(a', V)`` give both the tangent
  ``y'`` and this term (a double backward costs about six such products per layer);
- ``BatchNorm`` in eval mode ``y = xhat * gamma + beta``, ``xhat = (x - mean) / sqrt(var + eps)``
  (running statistics fixed), bilinear in ``(x, gamma)``: ``2 <ybar, x' / sqrt(var + eps) *
  gamma'>``;
- ``Tanh`` / ``Sigmoid``: ``<ybar, sigma''(z) z'^2>``.

Ops that are piecewise linear or linear in their tensor input pass the tangent through with no
second-order term: ``ReLU`` / ``LeakyReLU`` (modules, ``F.relu``, ``torch.relu``), max pooling
(the tangent is gathered at the argmax), average pooling, ``Flatten`` / ``Identity`` /
``Dropout`` in eval mode, ``+`` / ``-`` of tensors, multiplication by constants, and the tensor
methods ``mean``, ``sum``, ``flatten``, ``view``, ``reshape``.  Anything else (another op or
module, a hook, a loss other than plain cross-entropy with class indices, BatchNorm without
running statistics or in train mode) makes :meth:`GraphQuadForm.build` return None, and the
caller takes the HVP engine instead.  Cost per probe: one tangent (JVP-like) pass of about two
forward passes plus elementwise work; the probe-independent primal values and backprop signals
are computed once per batch and kept in memory (about the activations of one backward pass).
"""
from __future__ import annotations

import math
import operator
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .taylor import _global_hooks_empty, _is_cross_entropy, _no_hooks

__all__ = ["GraphQuadForm"]

_CONV = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d}
_RELU_FNS = (F.relu, torch.relu)
_LINEAR_MODULES = (nn.Flatten, nn.Identity, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
                   nn.AdaptiveAvgPool2d)
_LINEAR_METHODS = ("mean", "sum", "flatten", "view", "reshape", "contiguous")
_LINEAR_FNS = (torch.flatten, F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d,
               F.adaptive_avg_pool2d, torch.mean, torch.sum)


class _Unsupported(Exception):
    pass


def _bilinear_fn(m: nn.Module):
    """op(a, W) without bias for a Linear / Conv module, or None."""
    if type(m) is nn.Linear:
        return F.linear
    conv = _CONV.get(type(m))
    if conv is None or m.padding_mode != "zeros" or isinstance(m.padding, str):
        return None
    return lambda a, w: conv(a, w, None, m.stride, m.padding, m.dilation, m.groups)


def _is_eval_bn(m: nn.Module) -> bool:
    return (isinstance(m, nn.modules.batchnorm._BatchNorm) and type(m) in (
        nn.BatchNorm1d, nn.BatchNorm2d) and not m.training and m.running_mean is not None)


def _add(a: Tensor | None, b: Tensor | None, sign: float = 1.0) -> Tensor | None:
    if b is None:
        return a
    if a is None:
        return b if sign == 1.0 else -b
    return a + b if sign == 1.0 else a - b


def _dot64(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(dtype=torch.float64)


class GraphQuadForm:
    """``v -> v^T H v`` for a traced model under cross-entropy (module docs for the formula).

    :meth:`build` traces the model once and runs one forward and one backward per batch;
    each call then costs one tangent pass per batch.
    """

    def __init__(self, steps, batches):
        self.steps = steps      # per graph node: (node name, rule, static info)
        self.batches = batches  # per batch: {"saved": node name -> dict, "p", "n"}

    # -- building -----------------------------------------------------------------------------
    @classmethod
    def build(cls, hvp):
        """The quadratic form of ``hvp``'s loss (an ``hessian._HVP``), or None when the model,
        a layer or the loss is not supported."""
        if not _global_hooks_empty():
            return None
        if hvp.loss_fn is not nn.functional.cross_entropy and not _is_cross_entropy(hvp.loss_fn):
            return None
        ignore = getattr(hvp.loss_fn, "ignore_index", -100)
        if any(not _no_hooks(m) for m in hvp.model.modules()):
            return None
        try:
            import torch.fx as fx
            gm = fx.symbolic_trace(hvp.model)
            steps = cls._compile(gm, hvp)
            tens = {k: t.detach() for k, t in {**hvp.fixed, **hvp.p}.items()}
            batches = [cls._prepare(steps, tens, x, y, hvp.n, ignore) for x, y in hvp.batches]
        except _Unsupported:
            return None
        except Exception:  # noqa: BLE001 - fx cannot trace it (control flow on values, ...)
            return None
        return cls(steps, batches)

    @staticmethod
    def _compile(gm, hvp):
        """One rule per node of the traced graph; raises _Unsupported."""
        steps, placeholders = [], 0
        for node in gm.graph.nodes:
            op, tgt = node.op, node.target
            if op == "placeholder":
                placeholders += 1
                if placeholders > 1:
                    raise _Unsupported
                steps.append((node, "input", None))
            elif op == "get_attr":
                steps.append((node, "attr", tgt))
            elif op == "output":
                if len(node.args) != 1 or not isinstance(node.args[0], torch.fx.Node):
                    raise _Unsupported
                steps.append((node, "output", None))
            elif op == "call_module":
                steps.append((node, *GraphQuadForm._module_rule(gm.get_submodule(tgt), tgt)))
            elif op == "call_method":
                if tgt not in _LINEAR_METHODS:
                    raise _Unsupported
                steps.append((node, "linear", None))
            elif op == "call_function":
                if tgt in _RELU_FNS and not node.kwargs.get("inplace", False):
                    steps.append((node, "relu", 0.0))
                elif tgt in (operator.add, torch.add, operator.sub, torch.sub) and not (
                        node.kwargs):
                    steps.append((node, "add", -1.0 if tgt in (operator.sub, torch.sub)
                                  else 1.0))
                elif tgt in (operator.mul, torch.mul, operator.truediv, operator.neg):
                    steps.append((node, "scale", None))
                elif tgt in _LINEAR_FNS:
                    steps.append((node, "linear", None))
                else:
                    raise _Unsupported
            else:
                raise _Unsupported
        return steps

    @staticmethod
    def _module_rule(m: nn.Module, name: str):
        pre = f"{name}." if name else ""
        fn = _bilinear_fn(m)
        if fn is not None:
            return "bilinear", (fn, pre + "weight", pre + "bias" if m.bias is not None else None)
        if _is_eval_bn(m):
            return "bn", (m, pre + "weight" if m.affine else None,
                          pre + "bias" if m.affine else None)
        if type(m) is nn.ReLU:
            return "relu", 0.0
        if type(m) is nn.LeakyReLU:
            return "relu", float(m.negative_slope)
        if type(m) in (nn.Tanh, nn.Sigmoid):
            return "curved", type(m)
        if type(m) is nn.Dropout and not (m.training and m.p > 0):
            return "linear", m
        if isinstance(m, _LINEAR_MODULES) and not list(m.parameters(recurse=False)):
            return "linear", m
        if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)) and not m.return_indices:
            return "maxpool", m
        raise _Unsupported

    @staticmethod
    def _prepare(steps, tens, x, y, n, ignore):
        """Forward once (primal values), then one backward for the signals ``ybar``."""
        if not torch.is_tensor(x) or not x.is_floating_point() or len(x) == 0:
            raise _Unsupported
        env, saved, need = {}, {}, {}
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            for node, rule, info in steps:
                val = GraphQuadForm._primal(node, rule, info, env, tens, x, saved)
                env[node.name] = val
                if rule in ("bilinear", "bn", "curved"):
                    need[node.name] = val
            logits = env[steps[-1][0].args[0].name]
            if (not torch.is_tensor(logits) or logits.dim() != 2 or y.dim() != 1
                    or y.dtype.is_floating_point or y.is_complex() or len(y) != len(logits)):
                raise _Unsupported
            c = logits.shape[1]
            if int(y.min()) < 0 or int(y.max()) >= c or bool((y == ignore).any()):
                raise _Unsupported
            loss = F.cross_entropy(logits, y, reduction="sum") / n
            names = list(need)
            if any(not need[k].requires_grad for k in names):
                raise _Unsupported
            bars = torch.autograd.grad(loss, [need[k] for k in names], allow_unused=True)
        for k, b in zip(names, bars):
            s = saved[k]
            s["ybar"] = torch.zeros_like(need[k]) if b is None else b.detach()
            if "aw" in s:  # <ybar, op(a, W)> for the polarised form
                s["d_aw"] = _dot64(s["ybar"], s.pop("aw"))
        return {"saved": saved, "p": torch.softmax(logits.detach(), dim=1), "n": n}

    @staticmethod
    def _primal(node, rule, info, env, tens, x, saved):
        def val(a):
            return torch.fx.node.map_arg(a, lambda nd: env[nd.name])

        if rule == "input":
            return x
        if rule == "attr":
            if info not in tens:
                raise _Unsupported
            return tens[info]
        if rule == "output":
            return None
        args, kwargs = val(node.args), val(node.kwargs)
        if rule == "bilinear":
            fn, wn, bn = info
            if len(args) != 1 or kwargs or wn not in tens or (bn is not None and bn not in tens):
                raise _Unsupported
            a, w = args[0], tens[wn]
            aw = fn(a, w)
            a = a.detach()
            saved[node.name] = {"a": a, "w": w, "aw": aw.detach(), "a_sq": float(_dot64(a, a)),
                                "w_sq": float(_dot64(w, w))}
            shape = (1, -1) + (1,) * (a.dim() - 2)
            return aw + tens[bn].view(shape) if bn is not None else aw
        if rule == "bn":
            m, gn, bn = info
            if len(args) != 1 or kwargs:
                raise _Unsupported
            a = args[0]
            shape = (1, -1) + (1,) * (a.dim() - 2)
            inv = torch.rsqrt(m.running_var.to(a) + m.eps).view(shape)
            xhat = (a - m.running_mean.to(a).view(shape)) * inv
            gamma = tens[gn] if gn is not None else None
            saved[node.name] = {"inv": inv, "xhat": xhat.detach(), "shape": shape,
                                "scale": inv * gamma.view(shape) if gamma is not None else inv}
            out = xhat * gamma.view(shape) if gamma is not None else xhat
            return out + tens[bn].view(shape) if bn is not None else out
        if rule == "relu":
            a = args[0]
            if info == 0.0:
                out = torch.relu(a)
                d1 = (a > 0).to(a.dtype)
            else:
                out = F.leaky_relu(a, info)
                d1 = torch.where(a > 0, torch.ones_like(a), torch.full_like(a, info))
            saved[node.name] = {"d1": d1.detach()}
            return out
        if rule == "curved":
            a = args[0]
            if info is nn.Tanh:
                out = torch.tanh(a)
                d1 = 1 - out * out
                d2 = -2 * out * d1
            else:
                out = torch.sigmoid(a)
                d1 = out * (1 - out)
                d2 = d1 * (1 - 2 * out)
            saved[node.name] = {"d1": d1.detach(), "d2": d2.detach()}
            return out
        if rule == "maxpool":
            m = info
            fn = F.max_pool1d if isinstance(m, nn.MaxPool1d) else F.max_pool2d
            out, idx = fn(args[0], m.kernel_size, m.stride, m.padding, m.dilation,
                          m.ceil_mode, return_indices=True)
            saved[node.name] = {"idx": idx.flatten(2), "shape": out.shape}
            return out
        # "linear" / "scale" / "add": evaluate the op itself; linear ones keep their arguments
        if rule != "add":
            if sum(torch.is_tensor(a) for a in (*args, *kwargs.values())) != 1:
                raise _Unsupported  # linear in exactly one tensor input
            saved[node.name] = {"args": args, "kwargs": kwargs}
        return _apply(node, info, args, kwargs)

    # -- one probe ----------------------------------------------------------------------------
    def __call__(self, v: Mapping[str, Tensor]) -> float:
        with torch.no_grad():
            return float(sum(self._one(b, v) for b in self.batches))

    def _one(self, b, v) -> Tensor:
        acc = []  # float64 scalars
        tan: dict[str, Tensor | None] = {}
        saved = b["saved"]
        for node, rule, info in self.steps:
            if rule == "output":
                break
            t = self._tangent(node, rule, info, tan, saved.get(node.name), v, acc)
            tan[node.name] = t
        rz = tan.get(self.steps[-1][0].args[0].name)
        if rz is not None:  # output curvature: z'^T (diag p - p p^T) z' per row, / n
            p, rz = b["p"].double(), rz.double()
            prz = p * rz
            acc.append(((prz * rz).sum() - (prz.sum(1) ** 2).sum()) / b["n"])
        if not acc:
            return torch.zeros((), dtype=torch.float64)
        return torch.stack([s.to(torch.float64).reshape(()) for s in acc]).sum()

    @staticmethod
    def _tangent(node, rule, info, tan, s, v, acc):
        def targ(a):
            return tan.get(a.name) if isinstance(a, torch.fx.Node) else None

        if rule == "input":
            return None
        if rule == "attr":
            return v.get(info)
        ta = targ(node.args[0]) if node.args else None
        if rule == "bilinear":
            fn, wn, bn = info
            vw, vb = v.get(wn), v.get(bn) if bn is not None else None
            rz = GraphQuadForm._bilinear_tangent(fn, s, ta, vw, acc)
            if vb is not None:
                shape = (1, -1) + (1,) * (s["a"].dim() - 2)
                rz = vb.view(shape).expand_as(s["ybar"]).clone() if rz is None else (
                    rz.add_(vb.view(shape)))
            return rz
        if rule == "bn":
            m, gn, bn = info
            vg, vb = (v.get(gn) if gn else None), (v.get(bn) if bn else None)
            shape = s["shape"]
            rz = ta * s["scale"] if ta is not None else None
            if vg is not None:
                rz = _add(rz, s["xhat"] * vg.view(shape))
                if ta is not None:  # 2 <ybar, x' / sqrt(var + eps) * gamma'>
                    acc.append(2 * _dot64(s["ybar"], ta * (s["inv"] * vg.view(shape))))
            if vb is not None:
                rz = _add(rz, vb.view(shape).expand_as(s["xhat"]))
            return rz
        if ta is None and rule not in ("add", "scale", "linear"):
            return None
        if rule == "relu":
            return ta * s["d1"]
        if rule == "curved":
            acc.append(_dot64(s["ybar"], s["d2"] * ta * ta))
            return ta * s["d1"]
        if rule == "maxpool":
            return ta.flatten(2).gather(2, s["idx"]).view(s["shape"])
        if rule == "add":
            a, c = (targ(x) for x in node.args[:2])
            return _add(a, c, info)
        # linear in its one tensor input: apply the op to that input's tangent
        args = tuple(targ(a) if isinstance(a, torch.fx.Node) and torch.is_tensor(p) else p
                     for a, p in zip(node.args, s["args"]))
        kwargs = s["kwargs"]
        if not any(torch.is_tensor(a) for a in (*args, *kwargs.values())):
            return None  # its input has no tangent
        if any(torch.is_tensor(a) for a in kwargs.values()):
            raise _Unsupported
        return _apply(node, info, args, kwargs)

    @staticmethod
    def _bilinear_tangent(fn, s, ta, vw, acc):
        """Tangent of ``op(a, W)`` and its second-order term ``2 <ybar, op(a', V)>``."""
        a = s["a"]
        t = _polar_scale(s, ta, vw)
        if t > 0:
            up = fn(torch.add(a, ta, alpha=t), torch.add(s["w"], vw, alpha=t))
            um = fn(torch.add(a, ta, alpha=-t), torch.add(s["w"], vw, alpha=-t))
            acc.append((_dot64(up.add_(um), s["ybar"]) - 2 * s["d_aw"]) / (t * t))
            return up.sub_(um).sub_(um).mul_(0.5 / t)  # (up + um) - 2 um = up - um
        rz = None
        if ta is not None:
            rz = fn(ta, s["w"])
            if vw is not None:
                acc.append(2 * _dot64(s["ybar"], fn(ta, vw)))
        if vw is not None:
            rz = _add(rz, fn(a, vw))
        return rz


def _apply(node, module, args, kwargs):
    """Evaluate ``node``'s op on ``args`` (a call_module node's module is ``module``)."""
    if node.op == "call_method":
        return getattr(args[0], node.target)(*args[1:], **kwargs)
    if node.op == "call_module":
        return module(*args, **kwargs)
    return node.target(*args, **kwargs)


def _polar_scale(s, ta, vw) -> float:
    """The scale of the two-product form, or 0 (three products: nothing to save, or
    degenerate); it balances ``s |y'|`` against ``s^2 |op(a', V)|`` (rounding)."""
    if ta is None or vw is None:
        return 0.0
    ra_sq, v_sq = float(_dot64(ta, ta)), float(_dot64(vw, vw))
    if not (ra_sq > 0 and v_sq > 0 and math.isfinite(ra_sq) and math.isfinite(v_sq)):
        return 0.0
    return math.sqrt(s["w_sq"] / v_sq + s["a_sq"] / ra_sq)
