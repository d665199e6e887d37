"""Assign grid cells to Regime I, II-A, II-B (or II unresolved) from LMC and CKA (no torch).

:func:`classify` labels every cell with a named :class:`~threeregime.analysis.rules.Rule`
(:data:`threeregime.analysis.rules.RULES`; the rules, their features, provenance and held-out
scores are :mod:`threeregime.analysis.rules`):

- ``rule=None`` -> the default rule :data:`threeregime.analysis.rules.DEFAULT_RULE`
  (``step_v2`` since issue 18: the paper's construction, Regime I = a barrier that passes a 5 %
  t test over dense seeds and is at least ``barrier_chance`` of chance error, on the cold side
  of the LMC change point along temperature when one counts; II-A hot / II-B cold of it,
  **unresolved** where the CKA difference is inside its noise).  Chosen by protocol v1
  amendment 1 (``docs/validation_protocol.md``): held out on the paper's table 90 % of regions
  and 96 % I vs II; on the corpus its advice agrees with the measured one-step direction in 70 %
  of 185 cells (``paper_step``, the default before, 63 %) and does not beat "always keep"
  (76 %): read its advice as a hint, not a verdict.
- ``rule="legacy"`` or any of the legacy keywords (``tau_lmc``, ``cka_rule``, ``tau_cka``,
  ``min_cka_spread``, ``collapse_margin``, ``chance_fraction``, ``min_pairs``) -> the rule of
  releases before issue 11, unchanged, so old results can be reproduced bit for bit (the
  ``legacy`` family of :mod:`threeregime.analysis.rules`, run by
  :func:`threeregime.analysis.rules.classify_with_rule` like every rule; the keywords replace
  its thresholds and settings, :data:`threeregime.analysis.rules.LEGACY_DEFAULTS`):

  1. **I vs II**: Regime I when the cell's mean ``mc`` (train-error scale; negative = barrier) is
     below ``-tau_lmc``, else Regime II.
  2. **II-A vs II-B** among the Regime II cells: ``cka_rule="relative"`` splits each load column
     at the midpoint of its [min, max] mean CKA (II-B at or above; a column whose range is below
     ``min_cka_spread`` is all II-B); ``cka_rule="absolute"``: II-B when CKA >= ``tau_cka``.
  3. **Undetermined** (-1): nothing computed, every point diverged or failed, fewer than
     ``min_pairs`` valid pairs, or collapse (test error above the column's best by more than
     ``collapse_margin``, or train error >= ``chance_fraction`` x chance).

  Its ``regime_confidence`` is ``Phi(|mean + tau_lmc| / sem)`` for I vs II times
  ``Phi(|cka - split| / sem)`` for II-A vs II-B (normal approximation over pairs; NaN with one
  pair).  Its defaults (``tau_lmc`` 0.02, ``min_cka_spread`` 0.01, ``collapse_margin`` 0.30,
  ``chance_fraction`` 0.9, ``min_pairs`` 1) were set by hand on one MNIST-1D CPU probe
  (PROBE.md: clear barriers from -2.4 % train error, the weakest useful CKA rise 0.02, collapsed
  cells at 76 % test error); they were never validated held out.

Flags (CF, every rule): ``regime`` int8 :data:`FLAG_VALUES` ``[0, 1, 2, 3, -1]`` =
:data:`FLAG_MEANINGS` ``regime_I regime_II_A regime_II_B regime_II_unresolved undetermined``;
``undetermined_reason`` :data:`REASONS`; ``regime_uncertain`` (new rules only) 1 where the label
flips across dense seeds or the barrier is within one standard error of its threshold.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..errors import SpecError
from ..spec.specs import check_choice, check_float, check_pos_int
from . import rules as _rules
from .rules import (  # the codes, names and flags: rules.py's one table
    FLAG_MEANINGS,
    FLAG_VALUES,
    NAMES,
    REASONS,
    REGIME_I,
    REGIME_II_A,
    REGIME_II_B,
    REGIME_II_UNRESOLVED,
    UNDETERMINED,
)

__all__ = [
    "FLAG_MEANINGS",
    "FLAG_VALUES",
    "REASONS",
    "FEATURE_VARS",
    "REGIME_VARS",
    "REGIME_I",
    "REGIME_II_A",
    "REGIME_II_B",
    "REGIME_II_UNRESOLVED",
    "UNDETERMINED",
    "classify",
    "decode",
    "regime_names",
    "regimes_of",
]

#: the three regime names, in code order
regime_names: tuple[str, ...] = ("I", "II-A", "II-B")
_CKA_RULES = ("relative", "absolute")


def decode(regime: Any) -> Any:
    """Map regime codes to names (``"I"``, ``"II-A"``, ``"II-B"``, ``"II-unresolved"``,
    ``"undetermined"``; any other code is ``"undetermined"``).

    A DataArray gives a DataArray of strings with the same dims and coords; anything else an
    ndarray of strings.
    """
    def _map(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a)
        out = np.full(a.shape, "undetermined", dtype=object)
        for code, name in NAMES.items():
            out[a == code] = name
        return out.astype(str)

    if isinstance(regime, xr.DataArray):
        return xr.DataArray(_map(regime.values), dims=regime.dims, coords=regime.coords,
                            name=regime.name, attrs={"long_name": "regime", "units": "1"})
    return _map(regime)


# --------------------------------------------------------------------------- classify
_UNSET: Any = type("_Unset", (), {"__repr__": lambda self: "<default>"})()
_LEGACY_KW = ("tau_lmc", "cka_rule", "tau_cka", "min_cka_spread", "collapse_margin",
              "chance_fraction", "min_pairs")


def classify(ds: xr.Dataset, *, rule: Any = None, tau_lmc: Any = _UNSET, cka_rule: Any = _UNSET,
             tau_cka: Any = _UNSET, min_cka_spread: Any = _UNSET,
             collapse_margin: Any = _UNSET, chance_fraction: Any = _UNSET,
             num_classes: int | None = None, min_pairs: Any = _UNSET,
             temperature: str | Sequence[str] | None = None,
             load: str | Sequence[str] | None = None) -> xr.Dataset:
    """Label every cell Regime I, II-A, II-B, II unresolved or undetermined (module docstring).

    Parameters
    ----------
    ds : xarray.Dataset
        Needs ``lmc`` and ``cka`` (fractions) over a temperature dim (and usually a load dim),
        with or without the replicate dims ``pair`` / ``dense_seed`` / ``retrain_seed``
        (averaged; their spread gives the standard errors).  Without replicate dims,
        ``lmc_sem`` / ``cka_sem`` are used when present.  Optional: ``status`` (non-ok points
        are left out), ``test_error`` and ``train_error`` (collapse checks), attr
        ``num_classes``.
    rule : Rule or str, optional
        A :class:`threeregime.analysis.rules.Rule` or the name of a shipped one
        (:data:`threeregime.analysis.rules.RULES`: ``step_v2``, ``paper_step``, ``level``,
        ``legacy``).  Default:
        :data:`threeregime.analysis.rules.DEFAULT_RULE` (module docstring), or
        ``legacy`` when a legacy keyword below is given.
    tau_lmc, cka_rule, tau_cka, min_cka_spread, collapse_margin, chance_fraction, min_pairs
        Legacy rule only (module docstring): Regime I below ``-tau_lmc``; ``cka_rule``
        ``"relative"`` (split at the column's CKA midpoint; ``min_cka_spread``) or
        ``"absolute"`` (II-B when CKA >= ``tau_cka``); ``collapse_margin`` / ``chance_fraction``
        (None: no such check); ``min_pairs`` valid pairs per cell.  Defaults:
        the legacy Rule's thresholds and settings
        (:data:`threeregime.analysis.rules.LEGACY_DEFAULTS`; ``tau_cka`` only with
        ``cka_rule="absolute"``).
    num_classes : int, optional
        Default ``ds.attrs["num_classes"]``.
    temperature, load : str or list of str, optional
        Dim names overriding the ``role`` attrs (the new rules take one temperature dim; every
        other cell dim is a load column).

    Returns
    -------
    xarray.Dataset
        Over the cell dims: ``regime`` (int8, CF flags :data:`FLAG_VALUES`),
        ``regime_confidence``, ``lmc_mean``, ``lmc_sem``, ``cka_mean``, ``cka_sem``,
        ``n_valid_pairs``, ``undetermined_reason`` (int8 flags :data:`REASONS`); the new rules
        add ``regime_uncertain`` (int8 0/1), ``test_error_mean`` and their features; attrs
        ``regime_rule`` (JSON; its ``name`` says which rule).

    Raises
    ------
    ResultsError
        ``lmc``/``cka`` missing or no temperature dim found.
    SpecError
        An unknown rule, a bad threshold, or a legacy keyword with a non-legacy rule.
    """
    given = {k: v for k, v in zip(_LEGACY_KW, (tau_lmc, cka_rule, tau_cka, min_cka_spread,
                                               collapse_margin, chance_fraction, min_pairs))
             if v is not _UNSET}
    if rule is None:
        rule = "legacy" if given else _rules.DEFAULT_RULE
    if isinstance(rule, str):
        rule = _rules.get_rule(rule)
    if not isinstance(rule, _rules.Rule):
        raise SpecError(f"rule must be a Rule or one of {', '.join(_rules.RULES)}; got "
                        f"{type(rule).__name__}")
    if given and rule.family != "legacy":
        raise SpecError(f"{next(iter(given))} is a threshold of the legacy rule; got it with "
                        f"rule={rule.name!r} (change a rule's thresholds with "
                        f"rule.replace(thresholds=...))")
    if given:
        kw = {**rule.thresholds, **rule.settings, **given}
        if "tau_cka" not in given and rule.settings["cka_rule"] == "relative":
            # the relative rule's tau_cka is its single-cell threshold, not a grid default:
            # cka_rule="absolute" without tau_cka is refused, as it always was
            kw["tau_cka"] = None
        _check_args(**kw)
        rule = rule.replace(
            thresholds={k: kw[k] for k in _rules.FAMILIES["legacy"]},
            settings={k: kw[k] for k in _rules.LEGACY_SETTINGS})
    return _rules.classify_with_rule(ds, rule, temperature=temperature, load=load,
                                     num_classes=num_classes)


def _check_args(tau_lmc: Any, cka_rule: Any, tau_cka: Any, min_cka_spread: Any,
                collapse_margin: Any, chance_fraction: Any, min_pairs: Any) -> None:
    """The rule's arguments, checked with spec's validators (numpy scalars accepted)."""
    def py(v: Any) -> Any:
        return v.item() if isinstance(v, (np.integer, np.floating)) else v

    check_float("tau_lmc", py(tau_lmc), 0.0, math.inf)
    check_choice("cka_rule", cka_rule, _CKA_RULES)
    if cka_rule == "absolute":
        if tau_cka is None:
            raise SpecError("tau_cka must be a number in [0, 1] with cka_rule='absolute'; "
                            "got None")
        check_float("tau_cka", py(tau_cka), 0.0, math.inf)
    check_float("min_cka_spread", py(min_cka_spread), 0.0, math.inf)
    for name, v in (("collapse_margin", collapse_margin), ("chance_fraction", chance_fraction)):
        if v is not None:
            check_float(name, py(v), 0.0, math.inf)
    check_pos_int("min_pairs", py(min_pairs))


#: the variables :func:`classify` adds (and :func:`regimes_of` takes from a Dataset)
REGIME_VARS = ("regime", "regime_confidence", "regime_uncertain", "lmc_mean", "lmc_sem",
               "cka_mean", "cka_sem", "n_valid_pairs", "undetermined_reason", "n_used",
               "n_collapsed")
#: the features a rule writes beside :data:`REGIME_VARS` (the union over the rule families): a
#: relabelling (:meth:`Dataset.threeregime.classify`) drops them with the regime variables
FEATURE_VARS = tuple(sorted({f for fs in _rules._FEATURES.values() for f in fs}
                            - set(REGIME_VARS)))


def regimes_of(ds: xr.Dataset, *, temperature: str | Sequence[str] | None = None,
               load: str | Sequence[str] | None = None, **classify_kw: Any) -> xr.Dataset:
    """The regimes of ``ds``: its own regime variables, else :func:`classify`'s.

    The one place that decides "take the regimes or classify": a Dataset that carries
    ``regime`` (``results.nc`` as assembled by the sweep) is read as it is when no rule
    argument is given; otherwise (no ``regime``, or any ``classify_kw`` such as ``rule`` or
    ``tau_lmc``) the Dataset is classified.  ``temperature`` and ``load`` only name dims for
    :func:`classify` and never force a reclassification.

    Returns
    -------
    xarray.Dataset
        The :data:`REGIME_VARS` present (with the ``regime_rule`` attr when known).

    Raises
    ------
    ResultsError, SpecError
        As :func:`classify` when classifying.
    """
    if not classify_kw and "regime" in ds:
        out = ds[[v for v in REGIME_VARS if v in ds]]
        rule = ds["regime"].attrs.get("rule", ds.attrs.get("regime_rule"))
        out.attrs = {} if rule is None else {"regime_rule": rule}
        return out
    return classify(ds, temperature=temperature, load=load, **classify_kw)
