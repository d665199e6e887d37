"""Stacked ("ensemble") computation of many same-architecture models as one.

M models of one architecture are held as one dict of stacked tensors (leading dim M) and run
with ``torch.func.vmap`` over ``torch.func.functional_call``.  BatchNorm running statistics
are stacked buffers too and are updated in place per member in train mode (checked against
per-model forward passes in ``tests/test_train.py``).

:func:`evaluate_stacked` is the package's one evaluator of a stacked ensemble (mean
cross-entropy and error per member); training (:mod:`threeregime.training.train`), mode
connectivity (:mod:`threeregime.metrics.lmc`) and the corruption error
(:mod:`threeregime.metrics.robustness`) use it, the last two without the training engines;
:func:`evaluate_states` evaluates a list of state dicts through it.  :func:`iter_batches` is the one
way data (an ``(x, y)`` pair or a DataLoader) is cut into evaluation batches.

All functions take the template ``model`` only for its structure; its own parameters are
never read or modified.
"""
from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from ..data.sources import as_tensor_data
from ..errors import DataError, SpecError

__all__ = ["ensemble_forward", "evaluate_stacked", "evaluate_stacked_states", "evaluate_states",
           "iter_batches", "load_state", "split_state", "stack_states", "template_of",
           "unstack_state"]


def stack_states(states: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """Stack M state dicts with identical keys into one dict of (M, ...) tensors."""
    if not states:
        raise ValueError("stack_states needs at least one state dict")
    keys = list(states[0])
    for i, s in enumerate(states[1:], 1):
        if list(s) != keys:
            missing = set(keys) ^ set(s)
            raise ValueError(f"state dict {i} has different keys than state dict 0: "
                             f"{sorted(missing)[:5]}")
    return {k: torch.stack([s[k].detach() for s in states]) for k in keys}


def unstack_state(stacked: Mapping[str, Tensor], i: int) -> dict[str, Tensor]:
    """Member ``i`` of a stacked state as an ordinary (cloned, detached) state dict."""
    return {k: v[i].detach().clone() for k, v in stacked.items()}


def split_state(model: nn.Module, state: Mapping[str, Tensor]) -> tuple[dict, dict]:
    """Split a (possibly stacked) state dict into (parameters, buffers) by the model's names."""
    pnames = {n for n, _ in model.named_parameters()}
    params = {k: v for k, v in state.items() if k in pnames}
    buffers = {k: v for k, v in state.items() if k not in pnames}
    return params, buffers


def template_of(model: nn.Module) -> nn.Module:
    """A private deep copy used only as the structure for functional calls."""
    return copy.deepcopy(model)


def load_state(model: nn.Module, state: Mapping[str, Tensor]) -> nn.Module:
    """Copy ``state`` into ``model`` in place (strict; keeps the model's device and dtype)."""
    model.load_state_dict({k: v for k, v in state.items()}, strict=True)
    return model


def ensemble_forward(template: nn.Module, params: Mapping[str, Tensor],
                     buffers: Mapping[str, Tensor], x: Tensor, *, train: bool,
                     shared_input: bool = False) -> Tensor:
    """Run M stacked models.

    Parameters
    ----------
    template : module giving the structure (its tensors are not used).
    params, buffers : stacked tensors, leading dim M.  In train mode BatchNorm buffers are
        updated in place per member.
    x : inputs, shape (M, B, ...) or, with ``shared_input=True``, (B, ...) fed to every member.
    train : module mode for the call (BatchNorm batch statistics, dropout).

    Returns
    -------
    Tensor of shape (M, B, ...) -- the members' outputs.
    """
    template.train(train)

    def f(p, b, xi):
        return functional_call(template, (p, b), (xi,), strict=False)

    in_x = None if shared_input else 0
    return vmap(f, in_dims=(0, 0, in_x), randomness="different")(dict(params), dict(buffers), x)


# --------------------------------------------------------------------------- batching
def _is_loader(data) -> bool:
    return isinstance(data, torch.utils.data.DataLoader) or (
        hasattr(data, "__iter__") and not isinstance(data, (tuple, list, Tensor, np.ndarray)))


def iter_batches(data, batch_size: int | None, device: torch.device | None = None,
                 *, what: str = "data") -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(x, y)`` batches from an ``(x, y)`` pair (incl. ``TensorData``) or a DataLoader.

    A pair is split into consecutive slices of ``batch_size`` (``None``: one batch); a loader
    is iterated as it is (its own batch size).  Nothing is shuffled or augmented.
    """
    if data is None:
        raise DataError(f"{what} must be an (inputs, targets) pair or a DataLoader; got None")
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], Tensor):
        x, y = data
        if not isinstance(y, Tensor) or len(x) != len(y):
            raise DataError(f"{what} must be (inputs, targets) tensors of equal length; got "
                            f"{type(y).__name__} targets, {len(x)} inputs")
        n = len(x)
        step = n if batch_size is None else max(1, int(batch_size))
        for i in range(0, n, step):
            xb, yb = x[i:i + step], y[i:i + step]
            yield (xb.to(device), yb.to(device)) if device is not None else (xb, yb)
        return
    if _is_loader(data):
        for b in data:
            if not (isinstance(b, (tuple, list)) and len(b) >= 2):
                raise DataError(f"{what}: a DataLoader must yield (inputs, targets) batches; "
                                f"got {type(b).__name__}")
            xb, yb = b[0], b[1]
            yield (xb.to(device), yb.to(device)) if device is not None else (xb, yb)
        return
    raise DataError(f"{what} must be an (inputs, targets) pair of tensors, a TensorData or a "
                    f"DataLoader; got {type(data).__name__}")


# --------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate_stacked(template: nn.Module, params: Mapping[str, Tensor],
                     buffers: Mapping[str, Tensor], data, *, batch_size: int | None,
                     device: torch.device, loss_dtype: torch.dtype | None = None,
                     what: str = "data") -> tuple[np.ndarray, np.ndarray]:
    """Mean cross-entropy and classification error of M stacked models, eval mode.

    Parameters
    ----------
    template : module giving the structure (its tensors are not used).
    params, buffers : stacked tensors, leading dim M (buffers are not changed).
    data : an ``(x, y)`` pair / ``TensorData`` (cut into slices of ``batch_size``; ``None``:
        one batch) or a DataLoader of ``(x, y)`` batches (see :func:`iter_batches`).
    device : where the batches and the float64 accumulators live.
    loss_dtype : the dtype the log-softmax is computed in (``None``: the logits' own, e.g.
        float32 during training; ``torch.float64`` for mode connectivity).  Per-example
        losses are summed per batch in float64, then over batches in float64.
    what : name of ``data`` in error messages.

    Returns
    -------
    (loss, error) : two float64 arrays of shape (M,), in this order.

    Raises
    ------
    SpecError
        ``data`` holds no example.
    """
    stacked = params if params else buffers
    m_count = next(iter(stacked.values())).shape[0]
    loss = torch.zeros(m_count, dtype=torch.float64, device=device)
    wrong = torch.zeros(m_count, dtype=torch.float64, device=device)
    n = 0
    for x, y in iter_batches(data, batch_size, device, what=what):
        out = ensemble_forward(template, params, buffers, x, train=False, shared_input=True)
        out = out.reshape(m_count, len(x), -1)                       # (M, B, C)
        logits = out if loss_dtype is None else out.to(loss_dtype)
        logp = torch.log_softmax(logits, dim=-1)
        yy = y.view(1, -1, 1).expand(m_count, -1, 1)
        loss += -logp.gather(-1, yy).squeeze(-1).double().sum(1)
        wrong += (out.argmax(-1) != y.view(1, -1)).sum(1).double()
        n += len(x)
    if n == 0:
        raise SpecError(f"{what} must hold at least one example; got 0")
    return (loss / n).cpu().numpy(), (wrong / n).cpu().numpy()


# --------------------------------------------------------------------------- evaluation
def evaluate_stacked_states(template: nn.Module, stacked: Mapping[str, Tensor], data, M: int,
                      batch_size: int = 1000, max_elems: int = 1 << 15
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(loss, error) of M stacked models on ``data`` (eval mode), in batches of at most
    ``max_elems // M`` examples (memory)."""
    dev = next(iter(stacked.values())).device
    p, b = split_state(template, stacked)
    bs = max(1, min(batch_size, max_elems // max(1, M)))
    return evaluate_stacked(template, p, b, data, batch_size=bs, device=dev, what="data")


def evaluate_states(model: nn.Module, states: Sequence[Mapping[str, Tensor]], data, *,
                    batch_size: int = 1000, device: torch.device
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(loss, error) of each state dict on ``data`` (coerced by ``as_tensor_data``), as one
    stacked computation on ``device``."""
    td = as_tensor_data(data)
    template = template_of(model).to(device)
    stacked = {k: v.to(device) for k, v in stack_states(list(states)).items()}
    return evaluate_stacked_states(template, stacked, td, len(states), batch_size=batch_size)
