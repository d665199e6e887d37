"""Helpers shared by the metrics: data batching, device choice, state matching."""
from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from .._errors import DataError, SpecError
from .._device import resolve_device  # the one device rule of the package (re-exported)

__all__ = [
    "bn_modules",
    "check_same_names",
    "is_bn",
    "iter_batches",
    "iter_inputs",
    "named_state",
    "probe_seed",
    "resolve_device",
]


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
