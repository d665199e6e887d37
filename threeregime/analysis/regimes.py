"""Assign grid cells to Regime I, II-A, II-B (or II unresolved) from LMC and CKA (no torch).

:func:`classify` labels every cell with a named :class:`~threeregime.analysis.rules.Rule`
(:data:`threeregime.analysis.rules.RULES`; the rules, their features, provenance and held-out
scores are :mod:`threeregime.analysis.rules`):

- ``rule=None`` -> the default rule :data:`threeregime.analysis.rules.DEFAULT_RULE`
(``paper_step``: the
  paper's construction, Regime I = a significant barrier on the cold side of the LMC change point
  along temperature, II-A hot / II-B cold of it, **unresolved** where the CKA difference is inside
  its noise).  It has the highest pooled held-out advice accuracy on the validation corpus
  (``benchmarks/corpus_validation.py``, ``docs/advice_validation.md``): 54 % on 180 cells of 5
  settings, against 52 % (``level``) and 47 % (``legacy``); it misses the 75 % target and does
  not beat "always keep" (53 %): read its advice as a hint, not a verdict.
- ``rule="legacy"`` or any of the legacy keywords (``tau_lmc``, ``cka_rule``, ``tau_cka``,
  ``min_cka_spread``, ``collapse_margin``, ``chance_fraction``, ``min_pairs``) -> the rule of
  releases before issue 11, unchanged, so old results can be reproduced bit for bit:

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

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..errors import ResultsError, SpecError
from ..results.storage import REPLICATE_DIMS, STATUS
from ..spec.specs import AXES, check_choice, check_float, check_pos_int
from ..stats import mean_sem as _mean_sem
from . import rules as _rules

__all__ = [
    "DEFAULTS",
    "FLAG_MEANINGS",
    "FLAG_VALUES",
    "REASONS",
    "REGIMES",
    "REGIME_VARS",
    "REGIME_I",
    "REGIME_II_A",
    "REGIME_II_B",
    "REGIME_II_UNRESOLVED",
    "UNDETERMINED",
    "classify",
    "decode",
    "find_dims",
    "regime_names",
    "regimes_of",
]

REGIME_I, REGIME_II_A, REGIME_II_B, REGIME_II_UNRESOLVED, UNDETERMINED = 0, 1, 2, 3, -1
#: code -> display name
REGIMES: dict[int, str] = dict(_rules.NAMES)
#: the three regime names, in code order
regime_names: tuple[str, ...] = ("I", "II-A", "II-B")
FLAG_VALUES = _rules.FLAG_VALUES.copy()
FLAG_MEANINGS = _rules.FLAG_MEANINGS
#: why a cell is undetermined (``undetermined_reason`` flags)
REASONS: dict[str, int] = dict(_rules.REASONS)
DEFAULTS: dict[str, Any] = {"tau_lmc": 0.02, "cka_rule": "relative", "tau_cka": None,
                            "min_cka_spread": 0.01, "collapse_margin": 0.30,
                            "chance_fraction": 0.9, "min_pairs": 1}
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
        for code, name in REGIMES.items():
            out[a == code] = name
        return out.astype(str)

    if isinstance(regime, xr.DataArray):
        return xr.DataArray(_map(regime.values), dims=regime.dims, coords=regime.coords,
                            name=regime.name, attrs={"long_name": "regime", "units": "1"})
    return _map(regime)


# --------------------------------------------------------------------------- dims
def _role_of(ds: xr.Dataset, dim: str) -> str | None:
    if dim in ds.coords and ds[dim].attrs.get("role") in ("temperature", "load"):
        return ds[dim].attrs["role"]
    if dim in AXES:
        return AXES[dim].role
    return None


def _as_list(x: str | Sequence[str] | None) -> list[str] | None:
    if x is None:
        return None
    return [x] if isinstance(x, str) else list(x)


def find_dims(ds: xr.Dataset, var: str = "lmc", temperature: str | Sequence[str] | None = None,
              load: str | Sequence[str] | None = None) -> tuple[list[str], list[str], list[str]]:
    """Return ``(cell_dims, temperature_dims, load_dims)`` of ``ds[var]``.

    Cell dims are the dims of ``var`` other than the replicate dims (``dense_seed``,
    ``retrain_seed``, ``pair``).  Temperature and load dims come from the coordinates' ``role``
    attr, else from the names in :data:`threeregime.spec.specs.AXES`; explicit names override.
    """
    if var not in ds:
        raise ResultsError(f"dataset has no variable {var!r}; variables: "
                           f"{', '.join(map(str, ds.data_vars)) or 'none'}")
    cell = [str(d) for d in ds[var].dims if d not in REPLICATE_DIMS]
    temps = _as_list(temperature)
    loads = _as_list(load)
    for label, given in (("temperature", temps), ("load", loads)):
        for d in given or []:
            if d not in cell:
                raise ResultsError(f"{label}={d!r} is not a dim of {var}; allowed: "
                                   f"{', '.join(cell) or 'none'}")
    if temps is None:
        temps = [d for d in cell if _role_of(ds, d) == "temperature" and d not in (loads or [])]
    if loads is None:
        loads = [d for d in cell if _role_of(ds, d) == "load" and d not in temps]
    if not temps:
        raise ResultsError(f"cannot find a temperature dim of {var} (dims: "
                           f"{', '.join(cell) or 'none'}): no coordinate has attrs "
                           f"role='temperature'; pass temperature=<dim name>")
    if set(temps) & set(loads):
        raise ResultsError(f"a dim cannot be both temperature and load; got temperature={temps}"
                           f", load={loads}")
    return cell, temps, loads


# --------------------------------------------------------------------------- helpers
def _cells(da: xr.DataArray, cell: list[str]) -> np.ndarray:
    """(*cell, n_replicates) float array: replicate dims flattened last (added if absent)."""
    rep = [d for d in da.dims if d not in cell]
    missing = [d for d in cell if d not in da.dims]
    if missing:
        raise ResultsError(f"variable {da.name} lacks dims {missing} of the cells")
    vals = np.asarray(da.transpose(*cell, *rep).values, dtype=np.float64)
    return vals.reshape(vals.shape[:len(cell)] + (-1,))


def _broadcast_status(ds: xr.Dataset, da: xr.DataArray) -> xr.DataArray | None:
    if "status" not in ds:
        return None
    st = ds["status"]
    if not set(st.dims) <= set(da.dims):
        return None
    return st.broadcast_like(da)


def _phi_conf(distance: np.ndarray, sem: np.ndarray) -> np.ndarray:
    """P(chosen side) = Phi(|distance| / sem); 1 where sem == 0; NaN where sem is NaN."""
    from scipy.special import ndtr

    with np.errstate(all="ignore"):
        z = np.abs(distance) / sem
        out = np.where(sem == 0, 1.0, ndtr(z))
    return np.where(np.isnan(sem), np.nan, out)


def _to_columns(a: np.ndarray, cell: list[str], temps: list[str]) -> tuple[np.ndarray, Any]:
    """Reshape a cell array to (n_columns, n_temperature_cells) and return the inverse."""
    cols = [d for d in cell if d not in temps]
    perm = [cell.index(d) for d in cols + temps]
    t = np.transpose(a, perm)
    shape_t = t.shape
    n_temp = int(np.prod([a.shape[cell.index(d)] for d in temps]))
    flat = t.reshape(-1, n_temp)
    inv = np.argsort(perm)

    def back(b: np.ndarray) -> np.ndarray:
        return np.transpose(b.reshape(shape_t), inv)

    return flat, back


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
        (:data:`threeregime.analysis.rules.RULES`: ``paper_step``, ``level``, ``legacy``).  Default:
        :data:`threeregime.analysis.rules.DEFAULT_RULE` (module docstring), or
        ``legacy`` when a legacy keyword below is given.
    tau_lmc, cka_rule, tau_cka, min_cka_spread, collapse_margin, chance_fraction, min_pairs
        Legacy rule only (module docstring): Regime I below ``-tau_lmc``; ``cka_rule``
        ``"relative"`` (split at the column's CKA midpoint; ``min_cka_spread``) or
        ``"absolute"`` (II-B when CKA >= ``tau_cka``); ``collapse_margin`` / ``chance_fraction``
        (None: no such check); ``min_pairs`` valid pairs per cell.  Defaults:
        :data:`DEFAULTS`, or the legacy Rule's thresholds.
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
    if rule.family == "legacy":
        kw = {**DEFAULTS, **rule.thresholds,
              "chance_fraction": rule.settings["chance_fraction"], **given}
        out = _classify_legacy(ds, num_classes=num_classes, temperature=temperature,
                               load=load, **kw)
        rj = json.dumps({**json.loads(out.attrs["regime_rule"]), "name": rule.name,
                         "family": "legacy"}, sort_keys=True)
        out.attrs["regime_rule"] = out["regime"].attrs["rule"] = rj
        return out
    if given:
        raise SpecError(f"{next(iter(given))} is a threshold of the legacy rule; got it with "
                        f"rule={rule.name!r} (change a rule's thresholds with "
                        f"rule.replace(thresholds=...))")
    temps = _as_list(temperature)
    if temps is not None and len(temps) != 1:
        raise ResultsError(f"temperature must name one dim for rule {rule.name!r}; got {temps}")
    if num_classes is not None:
        ds = ds.assign_attrs(num_classes=int(num_classes))
    return _rules.classify_with_rule(ds, rule, temperature=temps[0] if temps else None)


def _classify_legacy(ds: xr.Dataset, *, tau_lmc: float, cka_rule: str, tau_cka: float | None,
                     min_cka_spread: float, collapse_margin: float | None,
                     chance_fraction: float | None, num_classes: int | None, min_pairs: int,
                     temperature: str | Sequence[str] | None,
                     load: str | Sequence[str] | None) -> xr.Dataset:
    """The legacy rule (module docstring), arithmetic unchanged."""
    _check_args(tau_lmc, cka_rule, tau_cka, min_cka_spread, collapse_margin, chance_fraction,
                min_pairs)
    src_l = "lmc" if "lmc" in ds else ("lmc_mean" if "lmc_mean" in ds else None)
    src_c = "cka" if "cka" in ds else ("cka_mean" if "cka_mean" in ds else None)
    if src_l is None or src_c is None:
        raise ResultsError("classify needs variables lmc and cka (or lmc_mean and cka_mean); "
                           f"got {', '.join(map(str, ds.data_vars)) or 'none'}")
    cell, temps, loads = find_dims(ds, src_l, temperature, load)
    lmc_da, cka_da = ds[src_l], ds[src_c]
    lmc_da, cka_da = xr.broadcast(lmc_da, cka_da)
    status = _broadcast_status(ds, lmc_da)
    if status is not None:
        ok = status == STATUS["ok"]
        lmc_da, cka_da = lmc_da.where(ok), cka_da.where(ok)
    lmc_s, cka_s = _cells(lmc_da, cell), _cells(cka_da, cell)
    both = np.isfinite(lmc_s) & np.isfinite(cka_s)
    lmc_s, cka_s = np.where(both, lmc_s, np.nan), np.where(both, cka_s, np.nan)
    lmc_mean, lmc_sem, n_valid = _mean_sem(lmc_s)
    cka_mean, cka_sem, _ = _mean_sem(cka_s)
    has_rep = any(d in REPLICATE_DIMS for d in ds[src_l].dims)
    if not has_rep:
        for name, target in (("lmc_sem", lmc_sem), ("cka_sem", cka_sem)):
            if name in ds and set(ds[name].dims) <= set(cell):
                target[...] = _cells(ds[name].broadcast_like(lmc_da), cell)[..., 0]
    cell_shape = lmc_mean.shape

    # ---- why undetermined
    reason = np.zeros(cell_shape, dtype=np.int8)
    if status is not None:
        st = _cells(ds["status"].broadcast_like(lmc_da).astype(np.float64), cell)
        any_ok = (st == STATUS["ok"]).any(-1)
        all_missing = (st == STATUS["missing"]).all(-1)
        reason[~any_ok] = REASONS["diverged_or_failed"]
        reason[~any_ok & all_missing] = REASONS["not_computed"]
    too_few = (reason == 0) & ((n_valid < min_pairs) | ~np.isfinite(lmc_mean))
    reason[too_few] = REASONS["too_few_valid_pairs"]

    def cell_mean_of(name: str) -> np.ndarray | None:
        if name not in ds or not set(cell) <= set(ds[name].dims):
            return None
        da = ds[name]
        st = _broadcast_status(ds, da)
        if st is not None:
            da = da.where(st <= STATUS["diverged"])
        return _mean_sem(_cells(da, cell))[0]

    test_mean = cell_mean_of("test_error")
    train_mean = cell_mean_of("train_error")
    if num_classes is None:
        num_classes = ds.attrs.get("num_classes")
    collapsed = np.zeros(cell_shape, dtype=bool)
    if chance_fraction is not None and train_mean is not None and num_classes:
        chance = 1.0 - 1.0 / float(num_classes)
        with np.errstate(invalid="ignore"):
            collapsed |= train_mean >= chance_fraction * chance
    if collapse_margin is not None and test_mean is not None:
        cand = np.where((reason == 0) & ~collapsed, test_mean, np.nan)
        flat, back = _to_columns(cand, cell, temps)
        with np.errstate(all="ignore"):
            best = np.where(np.isfinite(flat).any(1, keepdims=True),
                            np.nanmin(np.where(np.isfinite(flat), flat, np.inf), 1,
                                      keepdims=True), np.nan)
            tflat, _ = _to_columns(test_mean, cell, temps)
            collapsed |= back(tflat > best + collapse_margin)
    reason[(reason == 0) & collapsed] = REASONS["collapsed"]
    determined = reason == 0

    # ---- I vs II
    regime = np.full(cell_shape, UNDETERMINED, dtype=np.int8)
    is_one = determined & (lmc_mean < -tau_lmc)
    is_two = determined & ~is_one
    regime[is_one] = REGIME_I
    conf_12 = _phi_conf(lmc_mean + tau_lmc, lmc_sem)

    # ---- II-A vs II-B
    conf_ab = np.full(cell_shape, np.nan)
    if cka_rule == "absolute":
        regime[is_two & (cka_mean >= tau_cka)] = REGIME_II_B
        regime[is_two & (cka_mean < tau_cka)] = REGIME_II_A
        conf_ab = _phi_conf(cka_mean - tau_cka, cka_sem)
    else:
        c2, back = _to_columns(np.where(is_two, cka_mean, np.nan), cell, temps)
        s2, _ = _to_columns(cka_sem, cell, temps)
        lab = np.full(c2.shape, UNDETERMINED, dtype=np.int8)
        conf = np.full(c2.shape, np.nan)
        for i in range(c2.shape[0]):
            m = np.isfinite(c2[i])
            if not m.any():
                continue
            vals = c2[i][m]
            lo_i, hi_i = np.argmin(vals), np.argmax(vals)
            lo, hi = vals[lo_i], vals[hi_i]
            if hi - lo < min_cka_spread:
                lab[i][m] = REGIME_II_B
                sems = s2[i][m]
                sem_r = np.sqrt(sems[lo_i] ** 2 + sems[hi_i] ** 2) if vals.size > 1 else 0.0
                conf[i][m] = _phi_conf(np.asarray(min_cka_spread - (hi - lo)),
                                       np.asarray(sem_r))
            else:
                split = 0.5 * (lo + hi)
                lab[i][m] = np.where(vals >= split, REGIME_II_B, REGIME_II_A)
                conf[i][m] = _phi_conf(vals - split, s2[i][m])
        lab_c, conf_c = back(lab), back(conf)
        regime[is_two] = lab_c[is_two]
        conf_ab = conf_c
    confidence = np.where(is_one, conf_12, np.where(is_two, conf_12 * conf_ab, np.nan))

    rule = {"tau_lmc": float(tau_lmc), "cka_rule": cka_rule,
            "tau_cka": None if tau_cka is None else float(tau_cka),
            "min_cka_spread": float(min_cka_spread),
            "collapse_margin": None if collapse_margin is None else float(collapse_margin),
            "chance_fraction": None if chance_fraction is None else float(chance_fraction),
            "num_classes": None if num_classes is None else int(num_classes),
            "min_pairs": int(min_pairs), "temperature": temps, "load": loads,
            "lmc": src_l, "cka": src_c}
    rule_json = json.dumps(rule, sort_keys=True)
    coords = {}
    for name, c in ds.coords.items():
        if c.dims and set(c.dims) <= set(cell):
            coords[name] = c
    dims = tuple(cell)

    def var(a: np.ndarray, long_name: str, **extra: Any) -> tuple:
        return dims, a, {"long_name": long_name, "units": "1", **extra}

    out = xr.Dataset({
        "regime": var(regime, "three-regime label", flag_values=FLAG_VALUES.copy(),
                      flag_meanings=FLAG_MEANINGS, rule=rule_json),
        "regime_confidence": var(confidence, "probability of the assigned regime (normal "
                                             "approximation over pairs)"),
        "lmc_mean": var(lmc_mean, "mean linear mode connectivity over valid pairs"),
        "lmc_sem": var(lmc_sem, "standard error of the mean linear mode connectivity"),
        "cka_mean": var(cka_mean, "mean CKA over valid pairs"),
        "cka_sem": var(cka_sem, "standard error of the mean CKA"),
        "n_valid_pairs": var(n_valid.astype(np.int64), "number of valid pairs"),
        "undetermined_reason": var(reason, "why the regime is undetermined",
                                   flag_values=np.array(list(REASONS.values()), np.int8),
                                   flag_meanings=" ".join(REASONS)),
    }, coords=coords, attrs={"regime_rule": rule_json})
    return out


#: the variables :func:`classify` adds (and :func:`regimes_of` takes from a Dataset)
REGIME_VARS = ("regime", "regime_confidence", "regime_uncertain", "lmc_mean", "lmc_sem",
               "cka_mean", "cka_sem", "n_valid_pairs", "undetermined_reason", "n_used",
               "n_collapsed")


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
