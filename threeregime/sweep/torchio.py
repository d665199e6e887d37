"""Checkpoints on disk: torch's save/load through the atomic writer (torch half).

:mod:`threeregime.results.artifacts` (torch-free) owns atomic files and claims; this module adds the
two torch-specific calls, so the analysis half never needs torch to read or write anything.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import ResultsError
from ..results.artifacts import atomic_write

__all__ = ["save_torch", "load_torch"]


def save_torch(path: str | Path, obj: Any) -> Path:
    """``torch.save(obj)`` to ``path`` through
    :func:`~threeregime.results.artifacts.atomic_write`."""
    return atomic_write(path, lambda p: torch.save(obj, p))


def load_torch(path: str | Path) -> Any:
    """Load a checkpoint onto the CPU.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist (the stage has not run).
    ResultsError
        The file is corrupt or truncated (one line: delete it to recompute that stage).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as e:  # torch raises many kinds for truncated/corrupt pickles
        raise ResultsError(f"checkpoint {path} is corrupt or truncated "
                           f"({type(e).__name__}); delete it to recompute that stage") from None
