"""Regime rules as objects: named, serialisable, calibrated, with their held-out scores.

Torch-free (numpy / xarray / scipy).  A :class:`Rule` names a *family* (how features combine),
its fitted ``thresholds`` (what :func:`threeregime.analysis.calibrate.calibrate` searches), its
fixed
``settings`` (noise floors, collapse checks), the features it reads, and where its numbers come
from (``provenance``, ``scores``: held-out only).  :func:`classify_with_rule` labels a results
Dataset (or a means-only table) with the same variables as
:func:`threeregime.analysis.regimes.classify`,
plus ``regime_uncertain`` and the features; :func:`classify_cell_with_rule` labels one model.

Families (features in :mod:`threeregime.analysis.features`)
---------------------------------------------------
``step`` (the paper's construction).  Along temperature, the LMC change point of the grid
(``settings.scope``: one split shared by all load columns, or per column) is *significant* when
its ``step_z >= z_step``.  With a significant step a cell is **Regime I** when its barrier is
significant (``lmc_z < -z_barrier``) and it is on the cold side of the step or closer to the
column's cold LMC level than to its hot level; without one, when ``lmc_z < -z_barrier``.
Regime II cells on the hot side are **II-A**; on the cold side **II-B** when the cold side's
mean CKA exceeds the hot side's by more than ``z_cka`` standard errors, else **unresolved**
(``settings.unresolved_side = "both"`` makes the hot side unresolved too).  A column whose
Regime II cells all lie on the hot side (Regime I fills its cold side) is II-A.  Without a
significant step, the split of the Regime II cells is the CKA change point of the column.
``step_t`` and ``level_t`` (protocol v1, amendment 1, issue 18): the same constructions with
the significances fixed at a test level instead of fitted, and magnitudes on the chance scale
fitted instead.  A barrier counts when ``lmc_z`` is below minus the two-sided
:data:`SIGNIFICANCE` quantile of Student's t with ``lmc_df`` degrees of freedom (the normal
quantile for a means-only table) *and* ``lmc_rel_chance < -barrier_chance``; for ``step_t`` the
change point is significant when ``step_z`` passes the same quantile with ``step_df`` *and* the
step is at least ``step_chance`` of chance (``step_rel_chance``).  A magnitude relative to chance
transfers between settings and between the paper's table and a sweep; a fitted z does not.
``legacy`` (the rule of releases before issue 11, kept so old results can be reproduced bit for
bit; :func:`_classify_legacy`): Regime I when mean mc < ``-tau_lmc``; Regime II split at the
midpoint of its column's CKA range (``settings.cka_rule = "relative"``; all II-B when the range
is below ``min_cka_spread``) or at ``settings.tau_cka`` (``"absolute"``, and always for one
model: its single-cell variant, ``tau_cka`` 0.959 set on the quick sweep's dense seed 1,
``docs/advice_validation.md``); undetermined with fewer than ``settings.min_pairs`` valid pairs,
or collapsed when test error exceeds the column's best by ``collapse_margin`` or train error is
>= ``settings.chance_fraction`` x chance (None: no such check).  Its ``regime_confidence`` is
``Phi(|mean + tau_lmc| / sem)`` for I vs II times ``Phi(|cka - split| / sem)`` for II-A vs II-B
(normal approximation over pairs; NaN with one pair); it was never validated held out.
``level`` (no temperature structure; also the single-model variant).  Regime I when
``lmc_z < -z_barrier`` and ``lmc_rel_chance < -barrier_chance``; Regime II split by the CKA
change point of its column as above.
**Undetermined** before either: not computed, failed, no valid pair, *near chance* (train error
>= ``chance_fraction`` x chance) or *collapsed* (``headroom_lost > collapse_frac``): such cells
are never II-B.

Statistics (issue 18, :mod:`threeregime.stats`).  Every z a rule decides on is computed over
dense-seed means (pairs and retrain seeds averaged within a dense seed first; a dense or
retrained model at chance on its training data left out before, counted in ``n_collapsed``):
``lmc_z`` is the barrier over its noise, the standard error over dense seeds floored by its
load column's seed-to-seed spread (``settings.noise``; the t statistic where the cell's own
standard error binds); ``step_z`` is the t over dense seeds of the LMC step.  The thresholds
are on that scale (z over dense seeds).  ``paper_step`` and ``level`` keep the thresholds fitted
before issue 18 on the paper's table, whose noise is its reading error; ``step_v2`` (the
default) is the ``step_t`` family refitted on the table under amendment 1 of the protocol.

Confidence.  With two or more dense seeds the rule is re-applied to each dense seed alone (its
barrier against the spread of one dense seed measured on the whole sweep; the change point kept
from all seeds); ``regime_confidence`` = the fraction of dense seeds giving the pooled label;
``regime_uncertain`` = 1 where a dense seed disagrees or the barrier is within one standard
error of ``z_barrier``.
"""
from __future__ import annotations

import importlib.resources
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..errors import ResultsError, SpecError, did_you_mean
from ..results.schema import REPLICATE_DIMS, STATUS
from ..stats import mean_sem, one_sample_t, t_quantile
from .features import Grid, cell_stats, features, find_dims

__all__ = ["ADVICE", "DEFAULT_RULE", "FAMILIES", "FLAG_MEANINGS", "FLAG_VALUES", "LEGACY_DEFAULTS",
           "NAMES", "REASONS", "RULES", "REGIME_II_UNRESOLVED", "Rule", "advice_of",
           "classify_cell_with_rule", "classify_with_rule", "get_rule", "label_names",
           "step_fires"]

REGIME_I, REGIME_II_A, REGIME_II_B, REGIME_II_UNRESOLVED, UNDETERMINED = 0, 1, 2, 3, -1
FLAG_VALUES = np.array([0, 1, 2, 3, -1], dtype=np.int8)
FLAG_MEANINGS = "regime_I regime_II_A regime_II_B regime_II_unresolved undetermined"
NAMES = {0: "I", 1: "II-A", 2: "II-B", 3: "II-unresolved", -1: "undetermined"}
REASONS: dict[str, int] = {"none": 0, "not_computed": 1, "diverged_or_failed": 2,
                           "too_few_valid_pairs": 3, "collapsed": 4, "near_chance": 5}
#: regime -> advised move along temperature (SPEC.md section 5; unresolved -> keep; None: no
#: advice, shown as "unknown" by :class:`threeregime.analysis.advice.Advice`)
ADVICE = {"I": "hotter", "II-A": "colder", "II-B": "keep", "II-unresolved": "keep",
          "undetermined": None}
FAMILIES: dict[str, tuple[str, ...]] = {"step": ("z_barrier", "z_step", "z_cka"),
                                        "level": ("z_barrier", "barrier_chance", "z_cka"),
                                        "step_t": ("barrier_chance", "step_chance", "z_cka"),
                                        "level_t": ("barrier_chance", "z_cka"),
                                        "legacy": ("tau_lmc", "min_cka_spread",
                                                   "collapse_margin")}
#: fixed settings.  The noise of a cell is measured in the sweep (its standard error over dense
#: seeds, floored by its column's seed-to-seed spread: ``noise="column"``); ``lmc_floor`` /
#: ``cka_floor`` are optional constant floors on top (0: none; they were the reading errors of
#: the paper's figure, 0.01 / 0.002, before issue 18).  ``chance_fraction``: a dense or
#: retrained model with train error >= this fraction of chance is left out per replicate.
SETTINGS: dict[str, Any] = {"lmc_floor": 0.0, "cka_floor": 0.0, "noise": "column",
                            "scope": "joint", "unresolved_side": "cold", "collapse_frac": 0.5,
                            "chance_fraction": 0.9}
#: the fixed test level of the ``*_t`` families (two-sided): a barrier or a change point
#: counts when its t over dense seeds passes this quantile (protocol v1, amendment 1)
SIGNIFICANCE = 0.95
#: fixed settings of the legacy family (module docstring; ``tau_cka``: the absolute CKA
#: threshold, used by ``cka_rule="absolute"`` and by the single-cell variant; None in
#: ``tau_cka``, ``chance_fraction`` or the threshold ``collapse_margin``: no such check)
LEGACY_SETTINGS: dict[str, Any] = {"cka_rule": "relative", "tau_cka": 0.959,
                                   "chance_fraction": 0.9, "min_pairs": 1}
_OPTIONAL = ("tau_cka", "chance_fraction", "collapse_margin")
_CHOICES = {"scope": ("joint", "column"), "unresolved_side": ("cold", "both"),
            "noise": ("column", "grid", "cell"), "cka_rule": ("relative", "absolute")}
_FEATURES = {"step": ("lmc_z", "step_cold", "step_z", "cka_mean", "cka_noise", "headroom_lost"),
             "level": ("lmc_z", "lmc_rel_chance", "cka_mean", "cka_noise", "headroom_lost"),
             "step_t": ("lmc_z", "lmc_df", "lmc_rel_chance", "step_cold", "step_z", "step_df",
                        "step_rel_chance", "cka_mean", "cka_noise", "headroom_lost"),
             "level_t": ("lmc_z", "lmc_df", "lmc_rel_chance", "cka_mean", "cka_noise",
                         "headroom_lost"),
             "legacy": ("lmc_mean", "cka_mean", "test_error_mean")}


def _py(v: Any) -> Any:
    """A numpy scalar as the Python number spec's validators take."""
    return v.item() if isinstance(v, (np.integer, np.floating)) else v


def label_names(codes: Any) -> np.ndarray:
    """Regime codes -> names (``I``, ``II-A``, ``II-B``, ``II-unresolved``, ``undetermined``)."""
    a = np.asarray(codes)
    return np.vectorize(lambda c: NAMES.get(int(c), "undetermined"), otypes=[object])(a)


def advice_of(names: Any) -> np.ndarray:
    """Regime names -> advised direction (``hotter``/``colder``/``keep``; None undetermined)."""
    return np.vectorize(lambda n: ADVICE.get(str(n)), otypes=[object])(np.asarray(names))


# --------------------------------------------------------------------------- the Rule
@dataclass(frozen=True)
class Rule:
    """A named regime rule: family, thresholds, fixed settings, provenance, held-out scores.

    Attributes
    ----------
    name : str
    family : {"step", "level", "step_t", "level_t", "legacy"}
    thresholds : dict
        The fitted numbers (keys: :data:`FAMILIES` ``[family]``), each finite and >= 0
        (legacy's ``collapse_margin`` may be None: no such check).
    settings : dict
        Fixed, not fitted (keys of ``SETTINGS``, of ``LEGACY_SETTINGS`` for the legacy family;
        missing keys take the defaults).
    description : str
    provenance : dict
        What the thresholds were fitted on and how.
    scores : dict
        Held-out scores (never in-sample).
    """

    name: str
    family: str
    thresholds: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    description: str = ""
    provenance: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        from ..spec.specs import check_choice, check_float, check_pos_int

        if not isinstance(self.name, str) or not self.name:
            raise SpecError(f"rule.name must be a non-empty string; got {self.name!r}")
        check_choice("rule.family", self.family, tuple(FAMILIES))
        want = FAMILIES[self.family]
        defaults = LEGACY_SETTINGS if self.family == "legacy" else SETTINGS
        for k, v in self.thresholds.items():
            if k not in want:
                raise SpecError(f"rule.thresholds.{k} is not a threshold of family "
                                f"{self.family!r}; allowed: {', '.join(want)}"
                                f"{did_you_mean(k, want)}")
            if not (v is None and k in _OPTIONAL):
                check_float(f"rule.thresholds.{k}", _py(v), 0.0, float("inf"))
        missing = [k for k in want if k not in self.thresholds]
        if missing:
            raise SpecError(f"rule.thresholds must give {', '.join(want)}; missing "
                            f"{', '.join(missing)}")
        for k, v in self.settings.items():
            if k not in defaults:
                raise SpecError(f"rule.settings.{k} is not a setting of family "
                                f"{self.family!r}; allowed: {', '.join(defaults)}"
                                f"{did_you_mean(k, defaults)}")
            if k in _CHOICES:
                check_choice(f"rule.settings.{k}", v, _CHOICES[k])
            elif k == "min_pairs":
                check_pos_int(f"rule.settings.{k}", _py(v))
            elif not (v is None and k in _OPTIONAL):
                check_float(f"rule.settings.{k}", _py(v), 0.0, float("inf"))
        settings = {**defaults, **{k: _py(v) for k, v in self.settings.items()}}
        if settings.get("cka_rule") == "absolute" and settings["tau_cka"] is None:
            raise SpecError("rule.settings.tau_cka must be a number >= 0 with cka_rule="
                            "'absolute'; got None")
        object.__setattr__(self, "settings", settings)
        object.__setattr__(self, "thresholds", {k: None if v is None else float(v) for k, v in
                                                self.thresholds.items()})

    @property
    def features(self) -> tuple[str, ...]:
        """The features this rule reads (see :mod:`threeregime.analysis.features`)."""
        return _FEATURES[self.family]

    def replace(self, **changes: Any) -> Rule:
        """A copy with fields replaced (``thresholds`` merged into the current ones)."""
        d = self.to_dict()
        d.update(changes)
        if "thresholds" in changes:
            d["thresholds"] = {**self.thresholds, **changes["thresholds"]}
        return Rule.from_dict(d)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: Any) -> Rule:
        if not isinstance(data, dict):
            raise SpecError(f"rule must be a mapping; got {type(data).__name__}")
        allowed = ("name", "family", "thresholds", "settings", "description", "provenance",
                   "scores", "features")
        for k in data:
            if k not in allowed:
                raise SpecError(f"rule.{k} is not a field; allowed: {', '.join(allowed[:-1])}"
                                f"{did_you_mean(k, allowed)}")
        for k in ("thresholds", "settings", "provenance", "scores"):
            if not isinstance(data.get(k, {}), dict):
                raise SpecError(f"rule.{k} must be a mapping; got {data[k]!r}")
        return cls(**{k: v for k, v in data.items() if k != "features"})

    def to_json(self) -> str:
        return json.dumps({**self.to_dict(), "features": list(self.features)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Rule:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"rule JSON must parse; got error {e.msg} at char {e.pos}") from None
        return cls.from_dict(data)

    def dump_yaml(self, path: str | Path | None = None) -> str:
        """YAML text of the rule (written to ``path`` when given)."""
        import yaml

        text = yaml.safe_dump({**self.to_dict(), "features": list(self.features)},
                              sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def load_yaml(cls, path_or_text: str | Path) -> Rule:
        """Rule from a YAML file (or YAML text)."""
        import yaml

        p = Path(path_or_text)
        text = p.read_text() if "\n" not in str(path_or_text) and p.is_file() else str(
            path_or_text)
        return cls.from_dict(yaml.safe_load(text))


# --------------------------------------------------------------------------- labelling
def _split_by_cka(cka: np.ndarray, cse: np.ndarray, two: np.ndarray) -> np.ndarray:
    """Index of the CKA change point among a column's Regime II cells (cold side higher)."""
    idx = np.flatnonzero(two)
    best, best_z = 0, 0.0
    for j in range(1, idx.size):
        h, c = idx[:j], idx[j:]
        d = cka[c].mean() - cka[h].mean()
        se = np.sqrt((cse[h] ** 2).mean() / h.size + (cse[c] ** 2).mean() / c.size)
        with np.errstate(divide="ignore", invalid="ignore"):  # no seed spread: +-inf or NaN
            z = d / se
        if z > best_z:
            best, best_z = int(idx[j]), z
    return best


def z_barrier_of(rule: Rule, df: Any) -> Any:
    """The barrier's z threshold: the fitted ``z_barrier``, or for the ``*_t`` families the
    two-sided :data:`SIGNIFICANCE` quantile of Student's t with ``df`` degrees of freedom (the
    normal quantile where ``df`` is inf: a means-only table)."""
    if "z_barrier" in rule.thresholds:
        return rule.thresholds["z_barrier"]
    return t_quantile(SIGNIFICANCE, df)


def step_fires(rule: Rule, step_z: Any, step_df: Any = math.inf,
               step_rel_chance: Any = math.inf) -> np.ndarray:
    """Whether the LMC change point counts for ``rule`` (elementwise over columns): never for
    the level families; ``step_z >= z_step`` for ``step``; for ``step_t`` a significant step at
    the fixed :data:`SIGNIFICANCE` level (t with ``step_df`` degrees of freedom) that is at
    least ``step_chance`` of chance error (``step_rel_chance``)."""
    z = np.asarray(step_z, dtype=float)
    with np.errstate(invalid="ignore"):
        if rule.family == "step_t":
            return ((z >= t_quantile(SIGNIFICANCE, np.asarray(step_df, dtype=float)))
                    & (np.asarray(step_rel_chance, dtype=float) >= rule.thresholds["step_chance"]))
        if rule.family == "step":
            return z >= rule.thresholds["z_step"]
    return np.zeros(z.shape, dtype=bool)


def _label_grid(f: xr.Dataset, rule: Rule) -> tuple[np.ndarray, np.ndarray, Grid, np.ndarray]:
    """(n_col, n_temp) regime codes, undetermined reasons, the grid, and per column the CKA
    difference (cold - hot Regime II cells) over its standard error (NaN: not computed)."""
    th, st = rule.thresholds, rule.settings
    if rule.family == "legacy":
        raise SpecError(f"rule {rule.name!r} (family legacy) has no features to calibrate; "
                        "calibrate takes the families step, level")
    g = Grid(f, list(f["lmc_mean"].dims), f.attrs["temperature"])
    G = {k: g.grid(f[k]) for k in ("lmc_z", "lmc_mean", "cka_mean", "cka_noise", "step_cold",
                                   "step_z", "headroom_lost", "lmc_rel_chance",
                                   "train_error_mean", "reason", "lmc_df", "step_df",
                                   "step_rel_chance")}
    reason = G["reason"].astype(np.int8)
    chance = 1.0 - 1.0 / int(f.attrs.get("num_classes", 10))
    with np.errstate(invalid="ignore"):
        near = G["train_error_mean"] >= st["chance_fraction"] * chance
        coll = G["headroom_lost"] > st["collapse_frac"]
    reason[(reason == 0) & near] = REASONS["near_chance"]
    reason[(reason == 0) & coll] = REASONS["collapsed"]
    det = reason == 0
    lab = np.full(reason.shape, UNDETERMINED, dtype=np.int8)
    with np.errstate(invalid="ignore"):
        barrier = G["lmc_z"] < -z_barrier_of(rule, G["lmc_df"])
        if "barrier_chance" in th:
            barrier &= G["lmc_rel_chance"] < -th["barrier_chance"]
    has_step = step_fires(rule, G["step_z"][:, 0], G["step_df"][:, 0],
                          G["step_rel_chance"][:, 0])
    cold = G["step_cold"] > 0
    cka_z = np.full(reason.shape, np.nan)
    for i in range(g.n_col):
        lmc, one = G["lmc_mean"][i], det[i] & barrier[i]
        if has_step[i]:
            h, c = det[i] & ~cold[i], det[i] & cold[i]
            mid = 0.5 * (np.nanmean(np.where(h, lmc, np.nan))
                         + np.nanmean(np.where(c, lmc, np.nan))) if h.any() and c.any() else 0
            with np.errstate(invalid="ignore"):
                one &= cold[i] | (lmc < mid)
        lab[i][one] = REGIME_I
        two = det[i] & ~one
        if not two.any():
            continue
        k = int(np.argmax(cold[i])) if has_step[i] else _split_by_cka(
            G["cka_mean"][i], G["cka_noise"][i], two)
        pos = np.arange(g.n_temp)
        hot_two, cold_two = two & (pos < k), two & (pos >= k) if k > 0 else two & False
        if has_step[i] and not cold_two.any():
            lab[i][hot_two] = REGIME_II_A
            continue
        if not (hot_two.any() and cold_two.any()):
            lab[i][two] = REGIME_II_UNRESOLVED
            continue
        cka, cse = G["cka_mean"][i], G["cka_noise"][i]
        d = cka[cold_two].mean() - cka[hot_two].mean()
        se = np.sqrt((cse[hot_two] ** 2).mean() / hot_two.sum()
                     + (cse[cold_two] ** 2).mean() / cold_two.sum())
        with np.errstate(divide="ignore", invalid="ignore"):  # no seed spread: +-inf or NaN
            cka_z[i] = d / se
        if d > th["z_cka"] * se:
            lab[i][hot_two], lab[i][cold_two] = REGIME_II_A, REGIME_II_B
        else:
            both = st["unresolved_side"] == "both" or not has_step[i]
            lab[i][hot_two] = REGIME_II_UNRESOLVED if both else REGIME_II_A
            lab[i][cold_two] = REGIME_II_UNRESOLVED
    return lab, reason, g, cka_z


def _features_of(ds: xr.Dataset, rule: Rule, temperature: str | None,
                 unit_sd: tuple | None = None) -> xr.Dataset:
    st = rule.settings
    stats = cell_stats(ds, temperature=temperature, chance_fraction=st["chance_fraction"])
    return features(stats, lmc_floor=st["lmc_floor"], cka_floor=st["cka_floor"],
                    scope=st["scope"], noise=st["noise"], unit_sd=unit_sd)


def classify_with_rule(ds: xr.Dataset, rule: Rule | str | None = None, *,
                       temperature: str | Sequence[str] | None = None,
                       load: str | Sequence[str] | None = None,
                       num_classes: int | None = None) -> xr.Dataset:
    """Label every cell of ``ds`` with ``rule`` (default :data:`DEFAULT_RULE`): THE labelling
    of every rule, legacy included (:func:`threeregime.analysis.regimes.classify` calls it).

    Parameters
    ----------
    ds : xarray.Dataset
        A results Dataset (one temperature axis; replicate dims averaged) or a means-only
        Dataset such as :func:`threeregime.analysis.features.read_table` returns.
    rule : Rule or str, optional
        A :class:`Rule` or the name of a shipped one (:data:`RULES`).
    temperature : str (or, legacy only, list of str), optional
        The temperature dim when the coordinates carry no ``role`` attr.
    load : str or list of str, optional
        Legacy only: the load dims (the other families take every other cell dim as a load
        column).
    num_classes : int, optional
        Default ``ds.attrs["num_classes"]`` (chance level of the collapse checks).

    Returns
    -------
    xarray.Dataset
        Over the cell dims: ``regime`` (int8 CF flags :data:`FLAG_VALUES` /
        :data:`FLAG_MEANINGS`), ``regime_confidence`` (step / level: fraction of dense seeds
        agreeing, NaN with fewer than two; legacy: module docstring), ``lmc_mean``,
        ``lmc_sem``, ``cka_mean``, ``cka_sem``, ``n_valid_pairs``, ``undetermined_reason``;
        step / level add ``regime_uncertain`` (int8 0/1), ``test_error_mean`` and the rule's
        features; attrs ``regime_rule`` (the rule as JSON; legacy: its thresholds and dims).
    """
    rule = get_rule(rule) if not isinstance(rule, Rule) else rule
    if rule.family == "legacy":
        return _classify_legacy(ds, rule, num_classes=num_classes, temperature=temperature,
                                load=load)
    temps = None if temperature is None else (
        [temperature] if isinstance(temperature, str) else list(temperature))
    if temps is not None and len(temps) != 1:
        raise ResultsError(f"temperature must name one dim for rule {rule.name!r}; got {temps}")
    temperature = temps[0] if temps else None
    if num_classes is not None:
        ds = ds.assign_attrs(num_classes=int(num_classes))
    rule = get_rule(rule) if not isinstance(rule, Rule) else rule
    f = _features_of(ds, rule, temperature)
    lab, reason, g, _ = _label_grid(f, rule)
    seeds = ds["dense_seed"].values if "dense_seed" in ds.dims else []
    agree = np.full(lab.shape, np.nan)
    flips = np.zeros(lab.shape, dtype=bool)
    if len(seeds) >= 2:
        # one dense seed alone, against the spread of ONE seed measured on the whole sweep; the
        # change point is an event of the grid, tested over all dense seeds: kept as it is
        root_n = np.sqrt(f["n_used"].where(f["n_used"] > 0))
        unit_sd = (f["lmc_noise"] * root_n, f["cka_noise"] * root_n)
        step = {k: f[k] for k in ("step_z", "step_cold", "step_df", "step_rel_chance")}
        per = [_label_grid(_features_of(ds.isel(dense_seed=[j]), rule, temperature,
                                        unit_sd).assign(step), rule)[0]
               for j in range(len(seeds))]
        same = np.stack([p == lab for p in per])
        agree = same.mean(0)
        flips = ~same.all(0)
    with np.errstate(invalid="ignore"):
        near_thr = np.abs(g.grid(f["lmc_z"]) + z_barrier_of(rule, g.grid(f["lmc_df"]))) < 1.0
    uncertain = ((flips | near_thr) & (lab != UNDETERMINED)).astype(np.int8)
    out = xr.Dataset(coords={k: v for k, v in f.coords.items()})
    flags = {"flag_values": FLAG_VALUES.copy(), "flag_meanings": FLAG_MEANINGS,
             "rule": rule.to_json()}
    out["regime"] = g.back(lab, "regime", {"long_name": "three-regime label", "units": "1",
                                           **flags}).astype(np.int8)
    out["regime_confidence"] = g.back(agree, "regime_confidence", {
        "long_name": "fraction of dense seeds giving the same label", "units": "1"})
    out["regime_uncertain"] = g.back(uncertain, "regime_uncertain", {
        "long_name": "1 where the label flips across dense seeds or the barrier is within one "
                     "standard error of its threshold", "units": "1"}).astype(np.int8)
    out["undetermined_reason"] = g.back(reason, "undetermined_reason", {
        "long_name": "why the regime is undetermined", "units": "1",
        "flag_values": np.array(list(REASONS.values()), np.int8),
        "flag_meanings": " ".join(REASONS)}).astype(np.int8)
    for k in ("lmc_mean", "lmc_sem", "cka_mean", "cka_sem", "n_valid_pairs", "n_used",
              "n_collapsed", "lmc_sem_pooled", "cka_sem_pooled", "lmc_noise",
              "test_error_mean", *rule.features):
        if k not in out and k in f:
            out[k] = f[k]
    out.attrs["regime_rule"] = rule.to_json()
    return out


# --------------------------------------------------------------------------- legacy family
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


def _classify_legacy(ds: xr.Dataset, rule: Rule, *, num_classes: int | None,
                     temperature: str | Sequence[str] | None,
                     load: str | Sequence[str] | None) -> xr.Dataset:
    """The legacy family (module docstring), arithmetic unchanged from releases before issue
    11 (moved here from :mod:`threeregime.analysis.regimes` in issue 17)."""
    th, fixed = rule.thresholds, rule.settings
    tau_lmc, min_cka_spread, collapse_margin = (th["tau_lmc"], th["min_cka_spread"],
                                                th["collapse_margin"])
    cka_rule, chance_fraction, min_pairs = (fixed["cka_rule"], fixed["chance_fraction"],
                                            fixed["min_pairs"])
    tau_cka = fixed["tau_cka"] if cka_rule == "absolute" else None
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
    lmc_mean, lmc_sem, n_valid = mean_sem(lmc_s)
    cka_mean, cka_sem, _ = mean_sem(cka_s)
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
        return mean_sem(_cells(da, cell))[0]

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

    legacy = {"tau_lmc": float(tau_lmc), "cka_rule": cka_rule,
            "tau_cka": None if tau_cka is None else float(tau_cka),
            "min_cka_spread": float(min_cka_spread),
            "collapse_margin": None if collapse_margin is None else float(collapse_margin),
            "chance_fraction": None if chance_fraction is None else float(chance_fraction),
            "num_classes": None if num_classes is None else int(num_classes),
            "min_pairs": int(min_pairs), "temperature": temps, "load": loads,
            "lmc": src_l, "cka": src_c, "name": rule.name, "family": "legacy"}
    rule_json = json.dumps(legacy, sort_keys=True)
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


def _legacy_cell(lmc: np.ndarray, cka: Any, test_error: Any, train_error: Any,
                 num_classes: int | None, rule: Rule, dim: str, value: float | None) -> dict:
    """The legacy family's single-cell variant: a one-cell grid, CKA against ``tau_cka``."""
    n = lmc.size
    cka = np.broadcast_to(np.asarray(np.nan if cka is None else cka, dtype=np.float64), (n,))
    te = np.atleast_1d(np.asarray(np.nan if test_error is None else test_error, np.float64))
    tr = np.atleast_1d(np.asarray(np.nan if train_error is None else train_error, np.float64))
    ds = xr.Dataset(
        {"lmc": ((dim, "pair"), lmc[None]), "cka": ((dim, "pair"), np.array(cka)[None]),
         "test_error": ((dim, "retrain_seed"), te[None]),
         "train_error": ((dim, "retrain_seed"), tr[None])},
        coords={dim: (dim, [float("nan") if value is None else float(value)],
                      {"role": "temperature"})})
    if rule.settings["cka_rule"] != "absolute":
        rule = rule.replace(settings={**rule.settings, "cka_rule": "absolute"})
    cell = _classify_legacy(ds, rule, num_classes=num_classes, temperature=dim,
                            load=None).isel({dim: 0})
    code = int(cell["undetermined_reason"])
    name = NAMES[int(cell["regime"].values)]
    used = json.loads(cell["regime"].attrs["rule"])
    return {"regime": name, "advice": ADVICE[name], "confidence": float(
                cell["regime_confidence"]),
            "reason": next(k for k, v in REASONS.items() if v == code),
            "variant": "legacy/single-cell: I vs II from mean mc against -tau_lmc, II-A vs "
                       "II-B from CKA against tau_cka",
            "lmc_mean": float(cell["lmc_mean"]), "lmc_sem": float(cell["lmc_sem"]),
            "lmc_z": float("nan"), "cka_mean": float(cell["cka_mean"]),
            "cka_sem": float(cell["cka_sem"]), "n_valid_pairs": int(cell["n_valid_pairs"]),
            "rule": {k: used[k] for k in ("name", "family", "tau_lmc", "cka_rule", "tau_cka",
                                          "chance_fraction", "num_classes", "min_pairs")}}


def classify_cell_with_rule(lmc: Any, *, lmc_sem: float | None = None, cka: Any = None,
                            train_error: Any = None, test_error: Any = None,
                            num_classes: int | None = None, rule: Rule | str | None = None,
                            hyperparameter: str | None = None,
                            value: float | None = None) -> dict:
    """Label ONE model (no column, no temperature axis): the rule's single-cell variant, THE
    single-cell path (:func:`threeregime.advise` on a model goes through it).

    ``lmc`` (and ``cka``) are the values over seed pairs (a number or a sequence; NaN: a
    failed model's pair); ``train_error`` (and ``test_error``) per retrained model or their
    mean; ``num_classes`` None: 10 for step / level, no chance check for legacy.

    - step / level: only I vs II can be decided from one cell: Regime I when
      ``lmc_z < -z_barrier`` (and, for ``level``, ``lmc / chance < -barrier_chance``); a
      Regime II cell is ``II-unresolved`` (II-A vs II-B needs CKA relative to a column);
      ``confidence`` NaN.
    - legacy: the legacy rule on a one-cell grid with the absolute CKA rule at
      ``settings.tau_cka`` (module docstring); ``confidence`` its normal approximation.

    ``hyperparameter`` / ``value`` name the one-cell grid of the legacy variant.  Returns a dict:
    ``regime``, ``advice``, ``confidence``, ``reason`` (a key of :data:`REASONS`), ``variant``,
    ``lmc_mean``, ``lmc_sem``, ``lmc_z``, ``cka_mean``, ``cka_sem``, ``n_valid_pairs`` (pairs
    with finite LMC and, when given, CKA), ``rule`` (name, family, thresholds used).
    """
    rule = get_rule(rule) if not isinstance(rule, Rule) else rule
    x = np.atleast_1d(np.asarray(lmc, dtype=float))
    if rule.family == "legacy":
        return _legacy_cell(x, cka, test_error, train_error, num_classes, rule,
                            hyperparameter or "temperature", value)
    if train_error is not None:
        with np.errstate(all="ignore"):
            tr = np.atleast_1d(np.asarray(train_error, dtype=float))
            train_error = float(np.nanmean(tr)) if np.isfinite(tr).any() else math.nan
    c = np.atleast_1d(np.asarray(np.nan if cka is None else cka, dtype=float))
    c = np.broadcast_to(c, x.shape) if c.size == 1 else c
    ok = np.isfinite(x) & (np.isfinite(c) if cka is not None else True)
    x, c = x[ok], c[ok]
    chance = 1.0 - 1.0 / (num_classes or 10)
    and_chance = " and chance" if "barrier_chance" in rule.thresholds else ""
    out = {"variant": f"{rule.family}/single-cell: I vs II from the barrier vs its noise"
                      f"{and_chance}; II-A vs II-B unresolved without a column",
           "n_valid_pairs": int(x.size),
           "cka_mean": float(c.mean()) if cka is not None and c.size else None,
           "cka_sem": float(mean_sem(c)[1]) if c.size else float("nan"),
           "confidence": float("nan"),
           "rule": {"name": rule.name, "family": rule.family, "thresholds": rule.thresholds}}
    if x.size == 0:
        return {**out, "regime": "undetermined", "advice": None, "reason": "too_few_valid_pairs",
                "lmc_mean": float("nan"), "lmc_z": float("nan"), "lmc_sem": float("nan")}
    m = float(x.mean())
    sem = lmc_sem if lmc_sem is not None else float(mean_sem(x)[1])
    noise = max(sem, rule.settings["lmc_floor"]) if np.isfinite(sem) else rule.settings[
        "lmc_floor"]
    # one model: its seed pairs are the replicates; no spread (one pair) -> no z, no Regime I
    z = float(one_sample_t(m, noise))
    out["lmc_sem"] = sem
    if train_error is not None and train_error >= rule.settings["chance_fraction"] * chance:
        return {**out, "regime": "undetermined", "advice": None, "reason": "near_chance",
                "lmc_mean": m, "lmc_z": z}
    one = bool(z < -z_barrier_of(rule, x.size - 1))
    if "barrier_chance" in rule.thresholds:
        one = one and m / chance < -rule.thresholds["barrier_chance"]
    name = "I" if one else "II-unresolved"
    return {**out, "regime": name, "advice": ADVICE[name], "reason": "none", "lmc_mean": m,
            "lmc_z": z}


# --------------------------------------------------------------------------- shipped rules
#: the shipped rules as data, ``shipped_rules.json`` next to this module: each a dict of
#: :meth:`Rule.from_dict` with its thresholds, provenance and held-out scores as printed by
#: ``benchmarks/paper_table.py --emit`` (thresholds fitted on the paper's table, scores held out by
#: column), ``benchmarks/corpus_validation.py --emit`` (corpus scores) and
#: ``benchmarks/refit_amendment1.py --emit`` (``step_v2``, protocol v1 amendment 1); settings left
#: out are the defaults.  ``legacy`` was set by hand (its provenance says how).
_SHIPPED_FILE = "shipped_rules.json"
RULES: dict[str, Rule] = {
    d["name"]: Rule.from_dict(d) for d in json.loads(
        (importlib.resources.files(__package__) / _SHIPPED_FILE).read_text(encoding="utf-8"))}
#: THE defaults of the legacy rule, flat (its thresholds and settings): the keywords
#: ``tau_lmc`` ... of :func:`threeregime.analysis.regimes.classify` and ``advise`` start here
LEGACY_DEFAULTS: dict[str, Any] = {**RULES["legacy"].thresholds, **RULES["legacy"].settings}
#: name of the default rule, chosen by protocol v1 amendment 1 (docs/validation_protocol.md,
#: A1.4): among the refitted candidates whose held-out score on the paper's table reaches 90 %
#: of regions and 95 % I vs II, the highest pooled corpus advice accuracy (``step_v2``; before
#: issue 18 it was ``paper_step``, which stays shipped by name)
DEFAULT_RULE = "step_v2"


def check_rule(rule: Any) -> Any:
    """``rule`` as given when it is None, a :class:`Rule` or a shipped rule's name (checked
    before any work: :func:`get_rule`'s one-line error names the known rules)."""
    if isinstance(rule, str):
        get_rule(rule)
    elif rule is not None and not isinstance(rule, Rule):
        raise SpecError(f"rule must be a threeregime.rules.Rule, a rule name or None; got "
                        f"{type(rule).__name__}")
    return rule


def get_rule(name: str | None = None) -> Rule:
    """A shipped rule by name (``None``: :data:`DEFAULT_RULE`)."""
    name = DEFAULT_RULE if name is None else name
    if name not in RULES:
        raise SpecError(f"rule must be one of {', '.join(RULES) or 'none shipped'}; got "
                        f"{name!r}{did_you_mean(str(name), RULES)}")
    return RULES[name]
