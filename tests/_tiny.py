"""The tiny sweep the sweep, fault and cluster tests share: MNIST-1D (128 / 64 examples), a
quarter-width 1D CNN, 2 dense epochs, 2 retraining seeds, a 2 x 2 grid; seconds per stage."""
from __future__ import annotations

import copy

import yaml


def tiny_sweep(name: str = "tiny", *, retrain_epochs: int = 1,
               densities: tuple[float, ...] = (0.2, 0.6)) -> dict:
    """The tiny sweep as a dict (``from_dict(SweepSpec, ...)`` or :func:`tiny_yaml`)."""
    return copy.deepcopy({
        "name": name,
        "base": {
            "data": {"name": "mnist1d", "train_size": 128, "test_size": 64},
            "model": {"name": "cnn1d", "width": 0.25},
            "dense": {"epochs": 2, "batch_size": 32, "lr": 0.1},
            "retrain": {"epochs": retrain_epochs, "batch_size": 32, "lr": 0.05},
            "retrain_seeds": [0, 1],
            "measure": {"lmc_points": 3, "eval_batch_size": 128},
        },
        "axes": {"epochs": [1, 2], "density": list(densities)},
    })


def tiny_yaml(name: str = "tiny", **kw) -> str:
    """The tiny sweep as YAML text (for tests that go through files and the CLI)."""
    return yaml.safe_dump(tiny_sweep(name, **kw), sort_keys=False)
