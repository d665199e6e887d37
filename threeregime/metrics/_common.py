"""Helpers shared by the metrics: input batching, state matching.

``(x, y)`` batching is :func:`threeregime.training.functional.iter_batches` (re-exported here); the
device rule is :mod:`threeregime.training.device`.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import SpecError
from ..training.functional import iter_batches

__all__ = [
    "bn_modules",
    "check_same_names",
    "is_bn",
    "iter_batches",
    "iter_inputs",
    "named_state",
    "probe_seed",
]


def iter_inputs(inputs, batch_size: int, device: torch.device | None = None
                ) -> Iterator[Tensor]:
    """Yield input batches from a tensor, an ``(x, y)`` pair, or a DataLoader."""
    if isinstance(inputs, Tensor):
        for i in range(0, len(inputs), max(1, int(batch_size))):
            xb = inputs[i:i + batch_size]
            yield xb.to(device) if device is not None else xb
        return
    if isinstance(inputs, np.ndarray):
        yield from iter_inputs(torch.as_tensor(inputs), batch_size, device)
        return
    for xb, _ in iter_batches(inputs, batch_size, device, what="inputs"):
        yield xb


def named_state(model: nn.Module) -> dict[str, Tensor]:
    """Parameters and buffers by name (detached references, no copy)."""
    out = {n: p.detach() for n, p in model.named_parameters()}
    out.update({n: b.detach() for n, b in model.named_buffers()})
    return out


def check_same_names(a: Mapping[str, Tensor], b: Mapping[str, Tensor], *,
                     what: str = "model_b") -> None:
    """Raise SpecError naming the first differing names / shapes of two named states."""
    only_a = [k for k in a if k not in b]
    only_b = [k for k in b if k not in a]
    if only_a or only_b:
        raise SpecError(
            f"{what} must have the same parameter and buffer names as model_a; got "
            f"{len(only_a)} names only in model_a (first: {only_a[:3]}) and {len(only_b)} only "
            f"in {what} (first: {only_b[:3]})")
    bad = [k for k in a if tuple(a[k].shape) != tuple(b[k].shape)]
    if bad:
        k = bad[0]
        raise SpecError(f"{what} must match model_a in shape for every name; got {len(bad)} "
                        f"differing, first {k!r}: {tuple(a[k].shape)} vs {tuple(b[k].shape)}")


def is_bn(m: nn.Module) -> bool:
    return isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats


def bn_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if is_bn(m)]


def bn_stat_names(model: nn.Module) -> set[str]:
    """Names of the BatchNorm running-statistic buffers (recomputed, not interpolated)."""
    out = set()
    for n, _ in bn_modules(model):
        pre = f"{n}." if n else ""
        out |= {pre + "running_mean", pre + "running_var", pre + "num_batches_tracked"}
    return out


def probe_seed(seed: int, index: int) -> int:
    """A 63-bit seed for probe ``index`` of a run with ``seed`` (independent streams)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint64)[0]
               >> np.uint64(1))
