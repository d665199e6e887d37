"""Test error under input corruptions, for an ensemble of models of one architecture.

:func:`corruption_error` corrupts the test inputs once per (corruption, severity) with
:func:`threeregime.data.corruptions.corrupt` (the same corrupted set for every model, deterministic
for ``seed``) and evaluates all models on it as one stacked computation (eval mode, the
package's one ensemble evaluator).  Severity 0 is the clean test error.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..data.corruptions import check_corruption, corrupt
from ..data.sources import as_tensor_data
from ..errors import SpecError
from ..training.device import resolve_device
from ..training.functional import evaluate_states

__all__ = ["CorruptionResult", "corruption_error"]


@dataclass(frozen=True)
class CorruptionResult:
    """Test error (fraction) of every model under every corruption and severity.

    ``error[k, c, s]``: model ``k``, ``corruptions[c]``, ``severities[s]``.
    """

    error: np.ndarray
    corruptions: tuple[str, ...]
    severities: tuple[int, ...]


def corruption_error(model: nn.Module, states: Sequence[Mapping[str, Tensor]], data,
                     corruptions: Sequence[str], severities: Sequence[int] = (0, 1, 2, 3, 4, 5),
                     seed: int = 0, *, batch_size: int = 1000,
                     device: str | torch.device | None = "cpu") -> CorruptionResult:
    """Test error of each state under each corruption at each severity.

    Parameters
    ----------
    model : the architecture (its own weights are not used).
    states : the models' state dicts (one stacked evaluation).
    data : the test set: a ``TensorData`` / ``(x, y)`` pair of float inputs ``(N, C, L)``
        (signals) or ``(N, C, H, W)`` (images) and integer labels.
    corruptions : names from :data:`threeregime.data.corruptions.CORRUPTIONS`.
    severities : integers in 0..5 (0 = clean).
    seed : seed of the corruptions' randomness.

    Returns
    -------
    CorruptionResult
        ``error`` of shape ``(len(states), len(corruptions), len(severities))``.

    Raises
    ------
    SpecError
        An unknown corruption (with a did-you-mean), a severity outside 0..5, a corruption
        that does not apply to the inputs' kind, or no states.
    """
    td = as_tensor_data(data)
    x, y = td.x, td.y
    if not states:
        raise SpecError("states must hold at least one state dict; got none")
    if isinstance(corruptions, str):
        corruptions = [corruptions]
    spatial = x.dim() - 2 if isinstance(x, Tensor) else None
    for c in corruptions:
        for s in severities:
            check_corruption(c, s, spatial=spatial)
    dev = resolve_device(device)
    err = np.full((len(states), len(corruptions), len(severities)), np.nan)
    for ci, c in enumerate(corruptions):
        for si, s in enumerate(severities):
            xc = corrupt(x, c, int(s), seed)
            _, e = evaluate_states(model, states, (xc, y), batch_size=batch_size, device=dev)
            err[:, ci, si] = e
    return CorruptionResult(err, tuple(corruptions), tuple(int(s) for s in severities))
