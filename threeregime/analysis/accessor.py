"""The ``ds.threeregime`` xarray accessor: classify and plot results in place.

Registered in one place: ``import threeregime`` imports this module (so does importing any
submodule, as Python imports the package first), hence every Dataset, including one read with
plain ``xr.open_dataset``, has ``ds.threeregime``.  Extends Datasets without subclassing them
(STYLE rule 4).  No torch, no matplotlib at import.

Examples
--------
>>> ds = threeregime.open_sweep("runs/quick")                 # doctest: +SKIP
>>> ds = ds.threeregime.classify(rule="legacy")               # doctest: +SKIP
>>> ds.threeregime.plot("lmc")                                # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any

import xarray as xr

__all__ = ["ThreeRegimeAccessor"]


@xr.register_dataset_accessor("threeregime")
class ThreeRegimeAccessor:
    """Three-regime methods on a results Dataset (``ds.threeregime``)."""

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    def dims(self, var: str = "lmc") -> dict[str, list[str]]:
        """``{"cells": [...], "temperature": [...], "load": [...]}`` of ``var``."""
        from .features import find_dims

        cell, temps, loads = find_dims(self._ds, var)
        return {"cells": cell, "temperature": temps, "load": loads}

    def regimes(self, **classify_kw: Any) -> xr.Dataset:
        """The regime variables: the Dataset's own, else classified
        (:func:`threeregime.analysis.regimes.regimes_of`; rule arguments force a classification)."""
        from .regimes import regimes_of

        return regimes_of(self._ds, **classify_kw)

    def classify(self, rule: Any = None, **kwargs: Any) -> xr.Dataset:
        """Return a copy of the Dataset with the regime variables (re)computed.

        ``rule`` (a :class:`threeregime.analysis.rules.Rule` or a shipped rule's name; default the
        library's default rule) and the keyword arguments go to
        :func:`threeregime.analysis.regimes.classify`; its output variables (``regime``,
        ``regime_confidence``, ``regime_uncertain``, ``lmc_mean``, ...) and the new rule's
        features replace the old regime variables and every rule's features
        (:data:`~threeregime.analysis.regimes.FEATURE_VARS`), and the ``regime_rule`` attr says
        which rule labelled them.
        """
        from .regimes import FEATURE_VARS, REGIME_VARS, classify

        reg = classify(self._ds, rule=rule, **kwargs)
        out = self._ds.drop_vars([v for v in (*REGIME_VARS, *FEATURE_VARS) if v in self._ds])
        for name in reg.data_vars:
            out[name] = reg[name]
        out.attrs["regime_rule"] = reg.attrs["regime_rule"]
        return out

    def phase_diagram(self, var: str = "test_error", *, x: str | None = None,
                      y: str | None = None, **kwargs: Any) -> Any:
        """Compute a :class:`~threeregime.analysis.plotting.PhaseDiagram` of ``var`` (nothing
        drawn)."""
        from .plotting import PhaseDiagram

        return PhaseDiagram.from_dataset(self._ds, x=x, y=y, var=var, **kwargs)

    def plot(self, var: str = "test_error", *, x: str | None = None, y: str | None = None,
             ax: Any = None, **plot_kwargs: Any) -> Any:
        """Draw the phase diagram of ``var``; returns its :class:`PhaseDiagramArtists`."""
        return self.phase_diagram(var, x=x, y=y).plot(ax=ax, **plot_kwargs)

    def plot_all(self, **kwargs: Any) -> Any:
        """The paper's four panels (:func:`threeregime.analysis.plotting.plot_phase_diagrams`)."""
        from .plotting import plot_phase_diagrams

        return plot_phase_diagrams(self._ds, **kwargs)

    def table(self, rule: Any = None) -> str:
        """The phase diagram cell by cell as Markdown: regime, test error, mc %, CKA
        (:func:`threeregime.analysis.tables.results_table`; ``print(ds.threeregime.table())``)."""
        from .tables import results_table

        return results_table(self._ds, rule=rule)

    def export(self, path: Any, format: str = "netcdf") -> Any:
        """Write the Dataset (:func:`threeregime.results.storage.export`)."""
        from ..results.storage import export

        return export(self._ds, path, format=format)
