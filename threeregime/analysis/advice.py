"""Advice without torch: the rule that turns a regime into a move, and the objects that show it.

Regime I -> hotter, II-A -> colder, II-B and II unresolved -> keep (SPEC.md sections 1 and 5);
hotter means fewer epochs, a smaller batch, a larger learning rate or a larger SAM rho.  Here:
the display objects (:class:`Advice`, :class:`Selection`, :class:`TuneResult`); advice of one
measured model (:func:`advice_from_measurements`, through
:func:`threeregime.analysis.rules.classify_cell_with_rule`); advice read off a sweep
(:func:`advise_dataset`, any named rule of :mod:`threeregime.analysis.rules`; default
:data:`threeregime.analysis.rules.DEFAULT_RULE`, chosen by the corpus validation of
``docs/validation_protocol.md``); the case studies' torch-free rules (:func:`make_selection`,
:func:`step_value`); the input validators (over spec's).  The regime -> direction table is
:data:`threeregime.analysis.rules.ADVICE` (None: "unknown"); the legacy rule's single-model
threshold (``tau_cka`` 0.959 fitted on the quick sweep's dense seed 1,
:data:`threeregime.analysis.rules.LEGACY_DEFAULTS`) is documented in
``docs/advice_validation.md``.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from ..errors import SpecError
from ..spec.codec import choose_one
from ..spec.specs import AXES, check_choice, check_float, check_pos_int
from . import advice_text as _text
from .features import cell_index, find_dims
from .regimes import classify
from .rules import (
    ADVICE,
    LEGACY_DEFAULTS,
    NAMES,
    REASONS,
    Rule,
    classify_cell_with_rule,
    get_rule,
)

__all__ = ["Advice", "Selection", "TuneResult", "advice_from_measurements",
           "make_advice", "advise_dataset", "rank_candidates",
           "candidate_entry", "make_selection", "SELECT_RULE", "step_value", "move_for",
           "parse_point", "HYPERPARAMETERS", "check_density",
           "check_seeds", "check_hyperparameter", "check_value", "check_tau"]

#: the temperature-like hyperparameters and which way is hotter
HYPERPARAMETERS: dict[str, str] = {name: ax.hotter for name, ax in AXES.items()
                                   if ax.role == "temperature"}
_MOVES = {("epochs", "hotter"): "train fewer epochs", ("epochs", "colder"): "train more epochs",
          ("batch_size", "hotter"): "use a smaller batch",
          ("batch_size", "colder"): "use a larger batch",
          ("lr", "hotter"): "raise the learning rate", ("lr", "colder"): "lower the learning rate",
          ("sam_rho", "hotter"): "raise rho", ("sam_rho", "colder"): "lower rho"}
#: case study 2's choice, in words
SELECT_RULE = ("drop Regime I (and undetermined); pick the highest CKA; if every candidate is "
               "Regime I, pick the best connected (highest LMC mc)")
_REASON_TEXT = {1: "not computed", 2: "retraining diverged or failed",
                3: "too few valid seed pairs",
                4: ("the retrained models collapsed (train error near chance, or far above "
                    "the column's best)"), 5: "train error near chance"}


# --------------------------------------------------------------------------- validators
def _py(v: Any) -> Any:
    """A numpy scalar as the Python number spec's validators take."""
    return v.item() if isinstance(v, (np.integer, np.floating)) else v


def check_hyperparameter(hyperparameter: Any) -> str:
    """``hyperparameter`` if it is one of :data:`HYPERPARAMETERS` (did-you-mean otherwise)."""
    check_choice("hyperparameter", hyperparameter, tuple(HYPERPARAMETERS))
    return hyperparameter


def check_density(d: Any, name: str = "target_density") -> float:
    """A density in (0, 1] as a float."""
    check_float(name, _py(d), 0.0, 1.0, lo_open=True)
    return float(_py(d))


def check_tau(name: str, v: Any) -> float:
    """A threshold: a finite number >= 0, as a float."""
    check_float(name, _py(v), 0.0, math.inf)
    return float(_py(v))


def check_value(value: Any, name: str = "value") -> float | None:
    """None, or a finite number as a float."""
    if value is not None:
        check_float(name, _py(value), -math.inf, math.inf)
    return None if value is None else float(_py(value))


def check_seeds(seeds: Any) -> tuple[int, ...]:
    """Retraining seeds: an integer K >= 2 (seeds 0..K-1) or >= 2 distinct integers >= 0."""
    seeds = _py(seeds)
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        check_pos_int("seeds", seeds, minimum=2)
        return tuple(range(seeds))
    allowed = "an integer >= 2 or a list of >= 2 distinct integers >= 0"
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (Sequence, np.ndarray)):
        raise SpecError(f"seeds must be {allowed}; got {seeds!r}")
    out = tuple(_py(s) for s in seeds)
    for i, s in enumerate(out):
        check_pos_int(f"seeds[{i}]", s, minimum=0)
    if len(out) < 2 or len(set(out)) != len(out):
        raise SpecError(f"seeds must be {allowed}; got {seeds!r}")
    return out


def parse_point(items: Sequence[str] | None) -> dict[str, float]:
    """``["epochs=40", "density=0.05"]`` (the CLI's ``--point``) as ``{"epochs": 40.0, ...}``."""
    out: dict[str, float] = {}
    for it in items or []:
        k, sep, v = str(it).partition("=")
        try:
            if not sep or not k:
                raise ValueError
            out[k.strip()] = float(v)
        except ValueError:
            raise SpecError(f"--point must be AXIS=VALUE (e.g. epochs=40); got {it!r}") from None
    return out


def move_for(hyperparameter: str, direction: str) -> str:
    """The advice for ``hyperparameter`` in its own words, e.g. ``"train fewer epochs"``."""
    check_hyperparameter(hyperparameter)
    if direction == "keep":
        return f"keep {hyperparameter}"
    if direction == "unknown":
        return f"no advice on {hyperparameter}: the regime is undetermined"
    check_choice("direction", direction, ("hotter", "colder", "keep", "unknown"))
    return _MOVES[(hyperparameter, direction)]


def step_value(value: float, direction: str, hyperparameter: str, factor: float) -> float:
    """The next value one step ``direction`` (hotter / colder) along the axis.

    Multiplies or divides by ``factor``; epochs and batch size are rounded to integers >= 1
    and change by at least 1.
    """
    up = (direction == "hotter") == (HYPERPARAMETERS[hyperparameter] == "increasing")
    new = value * factor if up else value / factor
    if hyperparameter in ("epochs", "batch_size"):
        new = round(new)
        if new == round(value):
            new = round(value) + (1 if up else -1)
        new = max(1, new)
    return new


# --------------------------------------------------------------------------- Advice
def _f(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _pm(mean: Any, sem: Any, digits: int = 4, percent: bool = False) -> str:
    """``mean +/- sem``; ``percent``: both x 100 with 2 decimals and a sign (LMC mc, in % as
    the notebooks' tables print it)."""
    mean, sem = _f(mean), _f(sem)
    if not np.isfinite(mean):
        return "n/a"
    if percent:
        return f"{100 * mean:+.2f}" + (f" +/- {100 * sem:.2f}" if np.isfinite(sem) else "") + " %"
    s = f"{mean:+.{digits}f}" if digits == 4 else f"{mean:.{digits}f}"
    return s + (f" +/- {sem:.{digits}f}" if np.isfinite(sem) else "")


def _rule_lines(rule: Mapping, ev: Mapping) -> tuple[str, str]:
    """The (LMC, CKA) criteria of the rule that labelled the cell, in words."""
    th = rule.get("thresholds")
    if isinstance(th, Mapping) and ("z_barrier" in th or "barrier_chance" in th):
        z = ev.get("lmc_z")
        z_s = f"z = {float(z):.1f} against its noise; " if z is not None and np.isfinite(z) else ""
        crit = (f"Regime I below z = -{th['z_barrier']:.3g}" if "z_barrier" in th else
                "Regime I when significant (t test at 5 %)")
        if "barrier_chance" in th:
            crit += f" and beyond {100 * th['barrier_chance']:.2g} % of chance error"
        return (f"({z_s}{crit}, rule {rule.get('name')})",
                f"(II-B: the colder side's CKA above the hotter side's by > {th['z_cka']:.2g} "
                "standard errors, else unresolved)")
    cka = (f"II-B at or above {rule.get('tau_cka'):g}" if rule.get("cka_rule") == "absolute"
           else "II-B in the upper half of its density column")
    return (f"(Regime I below -{100 * rule.get('tau_lmc', float('nan')):g} %)",
            f"({cka})")


@dataclass(frozen=True)
class Advice:
    """Which way to move a temperature-like hyperparameter, and the evidence for it.

    ``regime`` (I, II-A, II-B, II-unresolved, undetermined) gives ``direction`` (hotter,
    colder, keep, unknown) and ``move`` in the hyperparameter's own words ("train fewer
    epochs", "use a larger batch", ...).  ``value``: the value the dense model was trained with
    (or None).  ``confidence``: the rule's (:func:`threeregime.analysis.regimes.classify`; NaN when
    unknown), of the kind ``confidence_kind`` names: ``"seed agreement"`` (a sweep's rules:
    the fraction of dense seeds agreeing) or ``"probability"`` (the legacy rule's normal
    approximation; :mod:`threeregime.analysis.advice_text`).  ``evidence``:
    ``lmc_mean``, ``lmc_sem``, ``cka_mean``, ``cka_sem``, ``lmc``, ``cka`` (per pair),
    ``n_pairs``, ``test_error``,
    ``train_error`` (per retrained model), ``test_error_mean``, ``density``,
    ``undetermined_reason``, ``uncertain``, ``dense_test_error``, ``dense_train_error``; from
    a sweep also ``column`` (test error with a 95 % interval of every value along the axis),
    ``best_value``, ``best_test_error``, ``n_dense_seeds``; ``rule``: the rule used.
    ``to_dict()``, ``to_frame()`` and an HTML view in notebooks show it.
    """

    regime: str
    direction: str
    move: str
    hyperparameter: str
    value: float | None
    confidence: float
    evidence: dict = field(default_factory=dict)
    rule: dict = field(default_factory=dict)
    confidence_kind: str = ""

    def __str__(self) -> str:
        return "\n".join(self._lines())

    def _lines(self) -> list[str]:
        return _text.text_lines(self, _rule_lines(self.rule, self.evidence), _pm)

    def _repr_html_(self) -> str:
        return _text.to_html(self._lines())

    def to_dict(self) -> dict:
        """Every field as plain Python (numbers, strings, lists, dicts): ``json.dumps``-able."""
        return _text.to_jsonable(dataclasses.asdict(self))

    def to_frame(self) -> Any:
        """A one-row :class:`pandas.DataFrame` of the labels and the evidence's summaries
        (``pd.concat`` the frames of several Advices to compare them)."""
        import pandas as pd

        return pd.DataFrame([_text.summary_row(self)])

    def to_dataset(self) -> xr.Dataset:
        """The advice as an :class:`xarray.Dataset` (per-pair and per-model evidence as
        variables over ``pair`` / ``retrain_seed``; labels and thresholds as attrs)."""
        ev = self.evidence
        pairs = [tuple(p) for p in ev.get("pairs", [])]
        n_models = len(ev.get("test_error", []))
        coords = {"pair": np.arange(len(pairs)),
                  "pair_a": ("pair", np.array([p[0] for p in pairs], dtype=np.int64)),
                  "pair_b": ("pair", np.array([p[1] for p in pairs], dtype=np.int64)),
                  "retrain_seed": np.asarray(ev.get("seeds", list(range(n_models))),
                                             dtype=np.int64)}

        def v(dims, x, long_name):
            return dims, np.asarray(x, dtype=np.float64), {"long_name": long_name, "units": "1"}

        data = {
            "lmc": v("pair", ev.get("lmc", []), "linear mode connectivity mc (train error)"),
            "cka": v("pair", ev.get("cka", []), "linear CKA of softmax outputs"),
            "test_error": v("retrain_seed", ev.get("test_error", []),
                            "test error of the retrained model"),
            "train_error": v("retrain_seed", ev.get("train_error", []),
                             "train error of the retrained model"),
        }
        for k in ("lmc_mean", "lmc_sem", "cka_mean", "cka_sem"):
            data[k] = ((), float(_f(ev.get(k))), {"long_name": k.replace("_", " "), "units": "1"})
        attrs = {"regime": self.regime, "direction": self.direction, "move": self.move,
                 "hyperparameter": self.hyperparameter,
                 "value": float("nan") if self.value is None else float(self.value),
                 "confidence": float(self.confidence), "confidence_kind": self.confidence_kind,
                 "density": float(_f(ev.get("density"))),
                 "rule": json.dumps(self.rule, sort_keys=True, default=str)}
        return xr.Dataset(data, coords=coords, attrs=attrs)


def make_advice(regime: str, confidence: float, evidence: dict, rule: dict,
                hyperparameter: str, value: float | None) -> Advice:
    """The :class:`Advice` of a regime: its direction and move for ``hyperparameter``."""
    direction = ADVICE[regime] or "unknown"
    return Advice(regime=regime, direction=direction, move=move_for(hyperparameter, direction),
                  hyperparameter=hyperparameter, value=None if value is None else float(value),
                  confidence=float(confidence), evidence=evidence, rule=rule,
                  confidence_kind=_text.confidence_kind(rule))


# --------------------------------------------------------------------------- one model
def _mean_or_nan(values: Sequence[float]) -> float:
    with np.errstate(all="ignore"):
        return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan


def advice_from_measurements(lmc: Sequence[float], cka: Sequence[float],
                             test_error: Sequence[float], train_error: Sequence[float], *,
                             hyperparameter: str, value: float | None, num_classes: int | None,
                             tau_lmc: float | None = None, tau_cka: float | None = None,
                             evidence: Mapping | None = None, rule: Mapping | None = None,
                             regime_rule: Any = None) -> Advice:
    """The advice of one measured model: the rule's single-cell variant
    (:func:`threeregime.analysis.rules.classify_cell_with_rule`) and :func:`make_advice`.

    ``lmc``, ``cka`` per seed pair (NaN: a failed model's pair); ``test_error``,
    ``train_error`` per retrained model (collapse checks; ``num_classes`` None skips the legacy
    chance check).  ``regime_rule``: a Rule or a shipped rule's name (default
    :data:`threeregime.analysis.rules.DEFAULT_RULE`); ``tau_lmc`` / ``tau_cka`` (legacy rule
    only; they select it when no rule is named) replace its thresholds.  ``evidence`` and
    ``rule`` are merged into the Advice's (pairs, seeds, density, the retraining recipe, ...).
    The evidence gets ``lmc``, ``cka``, ``n_pairs``, ``test_error``, ``train_error`` and
    ``test_error_mean`` (NaN when no model has a finite test error).
    """
    legacy_kw = tau_lmc is not None or tau_cka is not None
    r = regime_rule if isinstance(regime_rule, Rule) else get_rule(
        "legacy" if regime_rule is None and legacy_kw else regime_rule)
    if legacy_kw:
        if r.family != "legacy":
            raise SpecError(f"tau_lmc / tau_cka are thresholds of the legacy rule; got them "
                            f"with rule={r.name!r}")
        r = r.replace(thresholds={} if tau_lmc is None else {"tau_lmc": tau_lmc},
                      settings={**r.settings, **({} if tau_cka is None
                                                 else {"tau_cka": tau_cka})})
    out = classify_cell_with_rule(np.array(lmc, dtype=float), cka=np.array(cka, dtype=float),
                                  test_error=np.array(test_error, dtype=float),
                                  train_error=np.array(train_error, dtype=float),
                                  num_classes=num_classes, rule=r,
                                  hyperparameter=hyperparameter, value=value)
    ev = {k: out[k] for k in ("lmc_mean", "lmc_sem", "lmc_z", "cka_mean", "cka_sem",
                              "n_valid_pairs")}
    if r.family == "legacy":
        ev.pop("lmc_z")
        ev["undetermined_reason"] = _REASON_TEXT.get(REASONS[out["reason"]], "")
        rl = out["rule"]
    else:
        ev["undetermined_reason"] = out["reason"] if out["reason"] != "none" else ""
        rl = {**out["rule"], "variant": out["variant"]}
    regime, conf = out["regime"], out["confidence"]
    full = {**ev, "lmc": list(lmc), "cka": list(cka), "n_pairs": int(ev["n_valid_pairs"]),
            "test_error": list(test_error), "train_error": list(train_error),
            "test_error_mean": _mean_or_nan(test_error), **(evidence or {})}
    return make_advice(regime, conf, full, {**rl, **(rule or {})}, hyperparameter, value)


# --------------------------------------------------------------------------- from a Dataset
def advise_dataset(ds: xr.Dataset, point: Mapping[str, Any] | None, *,
                   hyperparameter: str | None = None, rule: Any = None,
                   tau_lmc: float | None = None, tau_cka: float | None = None) -> Advice:
    """Advice for one cell of a sweep results Dataset.

    The Dataset is classified with ``rule`` (a :class:`threeregime.analysis.rules.Rule` or a shipped
    rule's name; default :data:`threeregime.analysis.rules.DEFAULT_RULE`) by
    :func:`threeregime.analysis.regimes.classify`, or with the legacy rule when ``tau_lmc`` /
    ``tau_cka``
    is given (absolute CKA rule with ``tau_cka``), and the cell ``point`` (one value per cell
    dim) selected; the hyperparameter is the Dataset's temperature dim.  Regime II unresolved
    advises "keep"; the evidence says whether the label is ``uncertain``.

    Raises
    ------
    SpecError
        ``point`` missing a cell dim, naming an unknown one (did-you-mean), or a value not on
        the grid; a bad hyperparameter, rule or threshold.
    """
    cell, temps, _ = find_dims(ds, "lmc" if "lmc" in ds else "lmc_mean")
    sel = cell_index(ds, point, cell)
    hyperparameter = choose_one("hyperparameter", hyperparameter, temps,
                                "the temperature dims")
    hp = check_hyperparameter(hyperparameter)
    kw: dict[str, Any] = {}
    if tau_lmc is not None or tau_cka is not None:
        kw["tau_lmc"] = check_tau("tau_lmc", LEGACY_DEFAULTS["tau_lmc"] if tau_lmc is None
                                   else tau_lmc)
    if tau_cka is not None:
        kw.update(cka_rule="absolute", tau_cka=check_tau("tau_cka", tau_cka))
    reg = classify(ds, rule=rule, **kw)
    c = reg.isel(sel)
    here = ds.isel(sel)

    def flat(name: str) -> list[float]:
        if name not in here:
            return []
        return [float(v) for v in np.asarray(here[name].values, dtype=float).ravel()]

    te = flat("test_error")
    evidence = {"lmc_mean": float(c["lmc_mean"]), "lmc_sem": float(c["lmc_sem"]),
                "cka_mean": float(c["cka_mean"]), "cka_sem": float(c["cka_sem"]),
                "lmc": flat("lmc"), "cka": flat("cka"), "n_pairs": int(c["n_valid_pairs"]),
                "test_error": te, "train_error": flat("train_error"),
                "test_error_mean": _mean_or_nan(te),
                "density": float(point["density"]) if "density" in point else None,
                "undetermined_reason": _REASON_TEXT.get(int(c["undetermined_reason"].values),
                                                        ""),
                "point": {k: (v.item() if hasattr(v, "item") else v) for k, v in point.items()},
                "uncertain": bool(c["regime_uncertain"]) if "regime_uncertain" in c else None,
                "lmc_z": float(c["lmc_z"]) if "lmc_z" in c else None,
                "n_dense_seeds": int(ds.sizes.get("dense_seed", 1)),
                **_text.column_evidence(ds, sel, hp)}
    rule = json.loads(reg.attrs["regime_rule"])
    return make_advice(NAMES[int(c["regime"].values)], float(c["regime_confidence"]),
                       evidence, rule, hp, float(point[hp]))


# --------------------------------------------------------------------------- case studies
@dataclass(frozen=True)
class Selection:
    """Which candidate to prune (case study 2) and why.

    ``best``: name (dict key or list index) of the chosen candidate, ``best_model`` the model
    (both None when every candidate is undetermined); ``ranking``: :func:`candidate_entry` rows,
    best first; ``rule``: how the choice was made, in words (:data:`SELECT_RULE`).
    """

    best: Any
    best_model: Any
    ranking: list = field(default_factory=list)
    rule: str = ""

    def __str__(self) -> str:
        lines = [f"Selected: {self.best!r}" if self.best is not None else
                 "Selected: none (every candidate is undetermined)", f"  rule: {self.rule}",
                 f"  {'rank':>4s}  {'candidate':<16s} {'regime':<13s} {'LMC mc':>9s} "
                 f"{'CKA':>7s} {'test err':>9s}"]
        for i, r in enumerate(self.ranking, 1):
            te = r["test_error"]
            te_s = f"{100 * te:8.2f}%" if np.isfinite(te) else f"{'n/a':>9s}"
            lines.append(f"  {i:>4d}  {str(r['name'])[:16]:<16s} {r['regime']:<13s} "
                         f"{100 * r['lmc_mean']:+8.2f}% {r['cka_mean']:7.3f} {te_s}"
                         f"{'' if r['eligible'] else '  (dropped)'}")
        return "\n".join(lines)


def candidate_entry(name: Any, advice: Advice) -> dict:
    """One candidate's row of a :class:`Selection` ranking."""
    ev = advice.evidence
    return {"name": name, "regime": advice.regime,
            "lmc_mean": _f(ev.get("lmc_mean")), "cka_mean": _f(ev.get("cka_mean")),
            "test_error": _f(ev.get("test_error_mean")),
            # every Regime II label, unresolved included: one model under the default rule is
            # never II-A / II-B (no column), and it is Regime II all the same
            "eligible": advice.regime in ("II-A", "II-B", "II-unresolved"), "advice": advice}


def rank_candidates(entries: list[dict]) -> list[dict]:
    """:data:`SELECT_RULE`: eligible by CKA (desc), then Regime I by LMC (desc), then
    undetermined."""
    def nz(v: float, default: float) -> float:
        return v if np.isfinite(v) else default

    eligible = sorted([e for e in entries if e["eligible"]],
                      key=lambda e: -nz(e["cka_mean"], -np.inf))
    one = sorted([e for e in entries if e["regime"] == "I"],
                 key=lambda e: -nz(e["lmc_mean"], -np.inf))
    rest = [e for e in entries if not e["eligible"] and e["regime"] != "I"]
    return eligible + one + rest


def make_selection(advised: Sequence[tuple[Any, Any, Advice]]) -> Selection:
    """The :class:`Selection` of ``(name, model, advice)`` triples, ranked by
    :func:`rank_candidates`."""
    ranking = rank_candidates([candidate_entry(name, adv) for name, _, adv in advised])
    best = ranking[0]["name"] if ranking and ranking[0]["regime"] != "undetermined" else None
    models = {name: m for name, m, _ in advised}
    return Selection(best=best, best_model=None if best is None else models[best],
                     ranking=ranking, rule=SELECT_RULE)


@dataclass(frozen=True)
class TuneResult:
    """A walk along a temperature axis guided by advice (case study 3).

    ``history``: (value, Advice, test error) in the order visited; ``best_value``: the visited
    value with the lowest retrained test error, ``best_advice`` its Advice; ``stopped``: why the
    walk ended ("II-B (keep)", "no improvement", "budget", "undetermined", "revisit").
    """

    history: list
    best_value: float
    best_advice: Advice
    stopped: str
    hyperparameter: str

    def __str__(self) -> str:
        lines = [f"Tuning {self.hyperparameter}: best {self.best_value:g} "
                 f"(stopped: {self.stopped})",
                 f"  {self.hyperparameter:>12s}  {'regime':<13s} test err  advice"]
        for v, a, e in self.history:       # the advice last and whole: it can be a sentence
            mark = "  <- best" if v == self.best_value else ""
            e_s = f"{100 * e:7.2f}%" if np.isfinite(e) else "    n/a "
            lines.append(f"  {v:>12g}  {a.regime:<13s} {e_s}  {a.move}{mark}")
        return "\n".join(lines)


