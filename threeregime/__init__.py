"""threeregime: the statistical mechanics of neural-network pruning.

Train families of dense models while varying temperature-like hyperparameters (epochs, batch
size, learning rate, SAM rho) and load-like ones (density, training-set size); prune, retrain
with several seeds, measure linear mode connectivity, CKA and the Hessian, and assign every grid
point to Regime I, II-A or II-B (Zhou et al., ICML 2023).

Importing this package does not import torch: heavy modules load on first use, so notebooks
that only read results start fast.
"""
from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any

try:   # the installed distribution's version (setuptools-scm: from the git tag)
    __version__ = importlib.metadata.version("threeregime")
except importlib.metadata.PackageNotFoundError:   # imported from a source tree, not installed
    __version__ = "0+unknown"

# public name -> module that defines it.  Torch-free modules: spec, _errors, storage, regimes,
# advice, validation, plotting, plan; the others load torch when first used.
_LAZY = {
    # specs (no torch)
    "DataSpec": "spec", "ModelSpec": "spec", "TrainSpec": "spec", "PruneSpec": "spec",
    "MeasureSpec": "spec", "PointSpec": "spec", "SweepSpec": "spec", "load_yaml": "spec",
    "dump_yaml": "spec", "spec_hash": "spec",
    # errors
    "ThreeRegimeError": "_errors", "SpecError": "_errors", "DataError": "_errors",
    "ResultsError": "_errors", "ThreeRegimeWarning": "_errors",
    # torch side
    "load_data": "data", "build_model": "models", "prunable_names": "models",
    "compute_masks": "prune", "fit": "train",
    "run_point": "driver", "run_sweep": "driver", "sweep_status": "driver",
    "advise": "casestudies", "select_model_to_prune": "casestudies",
    "tune_temperature": "casestudies",
    # results side (no torch)
    "plan_sweep": "plan", "open_sweep": "storage", "export": "storage",
    "classify": "regimes", "regimes_of": "regimes",
    "PhaseDiagram": "plotting", "plot_phase_diagrams": "plotting",
    "Advice": "advice", "Selection": "advice", "TuneResult": "advice",
    "validate_advice": "validation",
}

__all__ = [*sorted(_LAZY), "__version__", "metrics"]  # noqa: PLE0605

# register the ``ds.threeregime`` accessor, the one place it is registered (imports xarray,
# never torch or matplotlib)
from . import accessor as _accessor  # noqa: E402,F401


def __getattr__(name: str) -> Any:
    if name == "metrics":
        return importlib.import_module(".metrics", __name__)
    try:
        mod = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'threeregime' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value   # cached: later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return __all__
