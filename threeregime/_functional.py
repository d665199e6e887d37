"""Stacked ("ensemble") evaluation of many same-architecture models as one computation.

M models of one architecture are held as one dict of stacked tensors (leading dim M) and run
with ``torch.func.vmap`` over ``torch.func.functional_call``.  BatchNorm running statistics
are stacked buffers too and are updated in place per member in train mode (checked against
per-model forward passes in ``tests/test_train.py``).

All functions take the template ``model`` only for its structure; its own parameters are
never read or modified.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

__all__ = ["stack_states", "unstack_state", "split_state", "template_of", "ensemble_forward",
           "load_state"]


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
