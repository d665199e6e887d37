"""The one device rule of the package, and the one progress-bar factory (torch half)."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import SpecError

__all__ = ["device_of", "progress_bar", "resolve_device", "target_device"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/``None`` -> CUDA if available, else CPU; otherwise as given (validated)."""
    if device is None or (isinstance(device, str) and device == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise SpecError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SpecError(f"device {device!r} was requested but CUDA is not available; use "
                        "device='auto' or 'cpu'")
    return dev


def device_of(model: nn.Module) -> torch.device:
    """The device of a module's first parameter (CPU for a module without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def target_device(device: str | torch.device | None, model: nn.Module) -> torch.device:
    """Where to compute for ``model``: ``device`` (validated) if given, else the model's own."""
    return resolve_device(device) if device is not None else device_of(model)


def progress_bar(progress: bool | None):
    """tqdm.auto (notebook widgets) only when bars may show; plain tqdm otherwise, so a
    kernel without ipywidgets prints no warning for a disabled bar."""
    if progress is False:
        from tqdm import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm
