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

# public name -> module that defines it.  The torch-free half: spec, results, analysis (and
# errors, registry, sweep.plan); the others load torch when first used.
_LAZY = {
    # specs (no torch)
    "DataSpec": "spec.specs", "ModelSpec": "spec.specs", "TrainSpec": "spec.specs",
    "PruneSpec": "spec.specs", "MeasureSpec": "spec.specs", "PointSpec": "spec.specs",
    "SweepSpec": "spec.specs", "load_yaml": "spec.specs", "dump_yaml": "spec.specs",
    "spec_hash": "spec.specs",
    # errors
    "ThreeRegimeError": "errors", "SpecError": "errors", "DataError": "errors",
    "ResultsError": "errors", "ThreeRegimeWarning": "errors",
    # torch side
    "load_data": "data.sources", "build_model": "models.zoo", "prunable_names": "models.zoo",
    "compute_masks": "pruning.masks", "fit": "training.train",
    "run_point": "sweep.driver", "run_sweep": "sweep.driver", "sweep_status": "sweep.driver",
    # advice on a model (torch) or a results Dataset (no torch)
    "advise": "advisor", "select_model_to_prune": "advisor", "tune_temperature": "tuning_run",
    "tune": "tuning_run",
    # results side (no torch)
    "plan_sweep": "sweep.plan", "open_sweep": "results.storage", "export": "results.storage",
    "classify": "analysis.regimes", "regimes_of": "analysis.regimes",
    "PhaseDiagram": "analysis.plotting", "plot_phase_diagrams": "analysis.plotting",
    "Advice": "analysis.advice", "Selection": "analysis.advice", "TuneResult": "analysis.advice",
    "validate_advice": "analysis.validation", "TuneTrace": "analysis.tuning_trace",
}

__all__ = [*sorted(_LAZY), "__version__", "metrics"]  # noqa: PLE0605

# register the ``ds.threeregime`` accessor, the one place it is registered (imports xarray,
# never torch or matplotlib)
from .analysis import accessor as _accessor  # noqa: E402,F401


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
