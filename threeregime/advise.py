"""Advice for a user's model: which way to move a temperature-like hyperparameter before pruning.

This is case study 1 of SPEC.md section 5 (and, built on it, case studies 2 and 3):

1. Prune the trained dense model one-shot to ``target_density`` (:func:`threeregime.prune.
   compute_masks`), retrain it with K seeds as one vectorized ensemble (:func:`threeregime.train.
   fit`; the seeds differ only in data order, as the reference), and measure linear mode
   connectivity and CKA of the softmax outputs on all K(K-1)/2 pairs.
2. Classify the one cell with :func:`threeregime.regimes.classify`:  Regime I when the mean mc
   is below ``-tau_lmc``; otherwise II-B when the mean CKA is at least ``tau_cka``, II-A below;
   undetermined when the retrained models failed (diverged, fewer than one valid pair, or train
   error within 10 % of chance -- a collapse that would look like perfect connectivity).
3. Map the regime to advice (SPEC.md section 1): I -> hotter, II-A -> colder, II-B -> keep.
   Hotter means fewer epochs, a smaller batch, a larger learning rate or a larger SAM rho.

A single model has no density column to compare its CKA with, so unlike the sweep classifier
(whose default is a split relative to the column) ``advise`` needs an *absolute* CKA threshold.

How the defaults were calibrated
--------------------------------
``tau_lmc = 0.02`` is :data:`threeregime.regimes.DEFAULTS` (its derivation is in that module).

``tau_cka = 0.959`` was fit on a *calibration* sweep and validated on a held-out one: the
embedded quick sweep (``sweeps/quick.yaml``: MNIST-1D, 1D CNN, temperature = dense epochs
{5, 10, 20, 30, 40}, density {0.05, 0.1, 0.2, 0.5}, 3 retraining seeds) run with dense seed 1
(``sweeps/quick_calibration.yaml``, shipped as ``tests/data/quick_dense_seed1.nc``) picks the
threshold (the lowest of the midpoints between its cells' CKA values that maximises agreement of
the advice with the direction that lowers retrained test error: 65 % there); the same sweep with
fresh dense seeds 2, 3, 4 (``sweeps/quick_validation.yaml``, ``tests/data/
quick_dense_seeds234.nc``; 3 dense x 3 retraining seeds per cell) is the held-out validation,
where the advice agrees in 55 % of the cells against 50 % for the best naive rule ("always
hotter"). ``python benchmarks/advice_validation.py`` recomputes both
(``docs/advice_validation.md``: a narrow margin, carried by the LMC signal).

Caveat, measured: at this scale the softmax CKA of Regime II cells depends on density as much
as on temperature (0.88-0.93 at 20 % density, 0.94-0.965 at 50 %) and moves by only ~0.01-0.02
with temperature, so one absolute threshold mostly splits the 50 % column (hot: II-A, cold:
II-B) and calls the connected 20 % cells II-A. PROBE.md saw the same weak split.
The value depends on the output dimension and the data (softmax CKA of a 10-class problem):
recalibrate with a sweep of your own setting, or read advice off a sweep (relative rule, no
absolute threshold) where you have one.

Caching
-------
Retraining is the expensive step.  Its outputs (retrained states, masks, errors) are stored
under ``cache_dir`` (default ``$THREEREGIME_CACHE`` or ``~/.cache/threeregime``) in
``advise/<key>.pt``, where ``key`` is the SHA-256 of the dense model's state-dict bytes, the
architecture's class name, a fingerprint of the data (the bytes of every split), the pruning
method and density, the retraining seeds, the retraining recipe (canonical JSON) and the loss
function's qualified name.  The pair measurements are cached next to it.  A second call with
the same inputs trains nothing.  ``cache_dir=False`` disables the cache.

The reading part (:func:`advise` on a results Dataset, :class:`Advice`, :func:`validate_advice`)
imports no torch.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ._errors import DataError, SpecError, did_you_mean
from .regimes import DEFAULTS as _REGIME_DEFAULTS
from .regimes import REGIMES, classify, find_dims
from .spec import AXES

__all__ = ["advise", "Advice", "advise_checkpoint", "select_model_to_prune", "Selection",
           "tune_temperature", "TuneResult", "validate_advice", "DEFAULTS", "HYPERPARAMETERS",
           "DIRECTIONS", "move_for"]

#: the temperature-like hyperparameters and which way is hotter
HYPERPARAMETERS: dict[str, str] = {name: ax.hotter for name, ax in AXES.items()
                                   if ax.role == "temperature"}
#: regime name -> direction of the advice
DIRECTIONS: dict[str, str] = {"I": "hotter", "II-A": "colder", "II-B": "keep",
                              "undetermined": "unknown"}
_MOVES = {("epochs", "hotter"): "train fewer epochs", ("epochs", "colder"): "train more epochs",
          ("batch_size", "hotter"): "use a smaller batch",
          ("batch_size", "colder"): "use a larger batch",
          ("lr", "hotter"): "raise the learning rate", ("lr", "colder"): "lower the learning rate",
          ("sam_rho", "hotter"): "raise rho", ("sam_rho", "colder"): "lower rho"}
#: calibrated defaults of the single-model rule (module docstring)
DEFAULTS: dict[str, float] = {"tau_lmc": float(_REGIME_DEFAULTS["tau_lmc"]), "tau_cka": 0.959}
#: default retraining recipe: the quick sweep's (40 epochs, batch 64, lr 0.1, step decay)
_DEFAULT_RETRAIN: dict[str, Any] = {}


def move_for(hyperparameter: str, direction: str) -> str:
    """The advice for ``hyperparameter`` in its own words, e.g. ``"train fewer epochs"``."""
    _check_hp(hyperparameter)
    if direction == "keep":
        return f"keep {hyperparameter}"
    if direction == "unknown":
        return f"no advice on {hyperparameter}: the regime is undetermined"
    try:
        return _MOVES[(hyperparameter, direction)]
    except KeyError:
        raise SpecError(f"direction must be one of hotter, colder, keep, unknown; got "
                        f"{direction!r}") from None


def _check_hp(hyperparameter: Any) -> str:
    if hyperparameter not in HYPERPARAMETERS:
        raise SpecError(f"hyperparameter must be one of {', '.join(HYPERPARAMETERS)}; got "
                        f"{hyperparameter!r}{did_you_mean(str(hyperparameter), HYPERPARAMETERS)}")
    return hyperparameter


# --------------------------------------------------------------------------- Advice
@dataclass(frozen=True)
class Advice:
    """Which way to move a temperature-like hyperparameter, and the evidence for it.

    Attributes
    ----------
    regime : {"I", "II-A", "II-B", "undetermined"}
    direction : {"hotter", "colder", "keep", "unknown"}
    move : str
        The move in the hyperparameter's own words ("train fewer epochs", "use a larger batch",
        "raise the learning rate", "lower rho", "keep epochs", ...).
    hyperparameter : str
        ``epochs``, ``batch_size``, ``lr`` or ``sam_rho``.
    value : float or None
        The value the dense model was trained with (None when not given).
    confidence : float
        Probability of the assigned regime under a normal approximation of the pair means
        (:func:`threeregime.regimes.classify`), in [0, 1]; NaN when it cannot be estimated
        (one valid pair, or undetermined).
    evidence : dict
        ``lmc_mean``, ``lmc_sem``, ``cka_mean``, ``cka_sem`` (over pairs), ``lmc``, ``cka``
        (per pair), ``pairs``, ``n_pairs``, ``test_error`` and ``train_error`` (per retrained
        model), ``test_error_mean``, ``density`` and ``undetermined_reason``.
    rule : dict
        The thresholds and rule used (``tau_lmc``, ``tau_cka`` or the relative rule, ...).
    """

    regime: str
    direction: str
    move: str
    hyperparameter: str
    value: float | None
    confidence: float
    evidence: dict = field(default_factory=dict)
    rule: dict = field(default_factory=dict)

    def __str__(self) -> str:
        ev = self.evidence
        val = "" if self.value is None else f" = {self.value:g}"
        conf = "n/a" if not np.isfinite(self.confidence) else f"{self.confidence:.2f}"
        dens = ev.get("density")
        dens_s = "" if dens is None else f" at density {dens:g}"
        lines = [f"Advice: {self.move} ({self.direction}; regime {self.regime}, "
                 f"confidence {conf})",
                 f"  {self.hyperparameter}{val}{dens_s}; {ev.get('n_pairs', 0)} seed pair(s)",
                 f"  LMC mc  {_pm(ev.get('lmc_mean'), ev.get('lmc_sem'))}   "
                 f"(Regime I below -{self.rule.get('tau_lmc', float('nan')):g})",
                 f"  CKA     {_pm(ev.get('cka_mean'), ev.get('cka_sem'), 3)}   "
                 f"({_cka_rule_text(self.rule)})"]
        te = ev.get("test_error_mean")
        if te is not None and np.isfinite(te):
            lines.append(f"  retrained test error {100 * te:.2f} %")
        reason = ev.get("undetermined_reason")
        if self.regime == "undetermined" and reason:
            lines.append(f"  undetermined: {reason}")
        return "\n".join(lines)

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
                 "confidence": float(self.confidence),
                 "density": float(_f(ev.get("density"))),
                 "rule": json.dumps(self.rule, sort_keys=True, default=str)}
        return xr.Dataset(data, coords=coords, attrs=attrs)


def _f(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _pm(mean: Any, sem: Any, digits: int = 4) -> str:
    mean, sem = _f(mean), _f(sem)
    if not np.isfinite(mean):
        return "n/a"
    s = f"{mean:+.{digits}f}" if digits == 4 else f"{mean:.{digits}f}"
    return s + (f" +/- {sem:.{digits}f}" if np.isfinite(sem) else "")


def _cka_rule_text(rule: Mapping) -> str:
    if rule.get("cka_rule") == "absolute":
        return f"II-B at or above {rule.get('tau_cka'):g}"
    return "II-B in the upper half of its density column"


_REASON_TEXT = {1: "not computed", 2: "retraining diverged or failed",
                3: "too few valid seed pairs",
                4: ("the retrained models collapsed (train error near chance, or far above "
                    "the column's best)")}


# --------------------------------------------------------------------------- the rule
def _check_tau(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
            or not np.isfinite(v) or v < 0:
        raise SpecError(f"{name} must be a finite number >= 0; got {v!r}")
    return float(v)


def _classify_one(lmc: np.ndarray, cka: np.ndarray, test_error: np.ndarray,
                  train_error: np.ndarray, *, hyperparameter: str, value: float | None,
                  num_classes: int | None, tau_lmc: float, tau_cka: float) -> tuple[str, float,
                                                                                     dict, dict]:
    """Classify one cell of per-pair measurements with the absolute CKA rule."""
    lmc = np.asarray(lmc, dtype=np.float64)
    cka = np.asarray(cka, dtype=np.float64)
    coord = float("nan") if value is None else float(value)
    ds = xr.Dataset(
        {"lmc": ((hyperparameter, "pair"), lmc[None]),
         "cka": ((hyperparameter, "pair"), cka[None]),
         "test_error": ((hyperparameter, "retrain_seed"), np.asarray(test_error, float)[None]),
         "train_error": ((hyperparameter, "retrain_seed"),
                         np.asarray(train_error, float)[None])},
        coords={hyperparameter: (hyperparameter, [coord], {"role": "temperature"})})
    reg = classify(ds, tau_lmc=tau_lmc, cka_rule="absolute", tau_cka=tau_cka,
                   num_classes=num_classes, temperature=hyperparameter)
    cell = reg.isel({hyperparameter: 0})
    code = int(cell["regime"].values)
    ev = {"lmc_mean": float(cell["lmc_mean"]), "lmc_sem": float(cell["lmc_sem"]),
          "cka_mean": float(cell["cka_mean"]), "cka_sem": float(cell["cka_sem"]),
          "n_valid_pairs": int(cell["n_valid_pairs"]),
          "undetermined_reason": _REASON_TEXT.get(int(cell["undetermined_reason"]), "")}
    rule = json.loads(reg.attrs["regime_rule"])
    rule = {k: rule[k] for k in ("tau_lmc", "cka_rule", "tau_cka", "chance_fraction",
                                 "num_classes", "min_pairs")}
    return REGIMES[code], float(cell["regime_confidence"]), ev, rule


def _make_advice(regime: str, confidence: float, evidence: dict, rule: dict,
                 hyperparameter: str, value: float | None) -> Advice:
    direction = DIRECTIONS[regime]
    return Advice(regime=regime, direction=direction, move=move_for(hyperparameter, direction),
                  hyperparameter=hyperparameter, value=None if value is None else float(value),
                  confidence=float(confidence), evidence=evidence, rule=rule)


# --------------------------------------------------------------------------- input checks
def _check_density(d: Any) -> float:
    if isinstance(d, bool) or not isinstance(d, (int, float, np.integer, np.floating)) \
            or not np.isfinite(d) or not 0 < d <= 1:
        raise SpecError(f"target_density must be a number in (0, 1]; got {d!r}")
    return float(d)


def _check_seeds(seeds: Any) -> tuple[int, ...]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 2:
            raise SpecError(f"seeds must be an integer >= 2 (LMC and CKA need a pair) or a list "
                            f"of >= 2 distinct seeds; got {seeds!r}")
        return tuple(range(int(seeds)))
    try:
        out = tuple(int(s) for s in seeds)
    except (TypeError, ValueError):
        raise SpecError(f"seeds must be an integer >= 2 or a list of >= 2 distinct seeds; got "
                        f"{seeds!r}") from None
    if len(out) < 2 or len(set(out)) != len(out) or min(out) < 0:
        raise SpecError(f"seeds must be an integer >= 2 or a list of >= 2 distinct seeds >= 0; "
                        f"got {seeds!r}")
    return out


def _check_value(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value):
        raise SpecError(f"value must be a finite number or None; got {value!r}")
    return float(value)


def _as_splits(data: Any):
    """A :class:`threeregime.data.Splits`, or ((x_train, y_train), (x_test, y_test))."""
    import torch

    from .data import Splits, TensorData, as_tensor_data

    if isinstance(data, Splits):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2 and not isinstance(data, TensorData) \
            and all(isinstance(d, (tuple, list)) and len(d) == 2 for d in data):
        train, test = as_tensor_data(data[0]), as_tensor_data(data[1])
        if tuple(train.x.shape[1:]) != tuple(test.x.shape[1:]):
            raise DataError(f"data: train and test inputs must have the same shape; got "
                            f"{tuple(train.x.shape[1:])} and {tuple(test.x.shape[1:])}")
        ncls = int(torch.cat([train.y, test.y]).max()) + 1 if len(train.y) else 0
        return Splits(train, test, max(ncls, 2), tuple(train.x.shape[1:]), None)
    raise DataError(f"data must be a Splits (threeregime.load_data) or a (train, test) pair of "
                    f"(x, y) pairs; got {type(data).__name__}")


# --------------------------------------------------------------------------- cache
def _cache_root(cache_dir: Any) -> Path | None:
    if cache_dir is False:
        return None
    if cache_dir is None:
        cache_dir = os.environ.get("THREEREGIME_CACHE") or Path.home() / ".cache" / "threeregime"
    return Path(cache_dir).expanduser() / "advise"


def _hash_tensors(h: Any, items: Any) -> None:
    import torch

    for name, t in items:
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.dtype == torch.bfloat16:
            t = t.float()
        h.update(t.numpy().tobytes())


def _state_hash(model) -> str:
    h = hashlib.sha256(type(model).__qualname__.encode())
    _hash_tensors(h, sorted(model.state_dict().items()))
    return h.hexdigest()


def _data_fingerprint(splits) -> str:
    h = hashlib.sha256()
    _hash_tensors(h, [("train.x", splits.train.x), ("train.y", splits.train.y),
                      ("test.x", splits.test.x), ("test.y", splits.test.y)])
    h.update(f"{splits.num_classes}|{splits.augment!r}".encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- measurement
def _retrain(model, splits, *, density: float, prune: str, seeds: tuple[int, ...], retrain,
             device, engine: str, progress, loss, cache: Path | None,
             key: str | None) -> dict:
    """Prune, retrain K seeds as one ensemble; cached by ``key``."""
    from . import _artifacts as art
    from .models import prunable_names
    from .prune import compute_masks, density_report
    from .spec import PruneSpec
    from .train import evaluate, fit, init_states

    path = cache / f"{key}.pt" if cache is not None else None
    if path is not None and path.exists():
        with contextlib.suppress(Exception):   # a corrupt cache entry is recomputed
            return {**art.load_torch(path), "from_cache": True}
    names = prunable_names(model)
    state = init_states(model)
    masks = compute_masks(state, PruneSpec(method=prune, density=density), names, seed=0)
    res = fit(model, state, splits, retrain, seeds=list(seeds), masks=[masks] * len(seeds),
              device=device, engine=engine, progress=progress, desc=f"advise x{len(seeds)}",
              loss_fn=loss)
    _, tr_err = evaluate(model, res.states, splits.train, device=device)
    out = {"states": res.states, "mask": masks, "diverged": list(map(bool, res.diverged)),
           "test_error": [float(v) for v in res.last_test_error(5)],
           "train_error": [float(v) for v in tr_err],
           "realized_density": float(density_report(masks)["overall"]), "seeds": list(seeds)}
    if path is not None:
        art.save_torch(path, out)
    return {**out, "from_cache": False}


def _measure(model, splits, ret: dict, *, device, cache: Path | None, key: str | None,
             pairs: list[tuple[int, int]]) -> dict:
    from . import _artifacts as art
    from .metrics import cka_pairs, lmc_pairs

    path = cache / f"{key}.measure.json" if cache is not None else None
    if path is not None and path.exists():
        with contextlib.suppress(Exception):
            return art.read_json(path)
    ok = [not d and np.isfinite(e) for d, e in zip(ret["diverged"], ret["train_error"])]
    good = [(i, p) for i, p in enumerate(pairs) if ok[p[0]] and ok[p[1]]]
    lmc = [float("nan")] * len(pairs)
    cka = [float("nan")] * len(pairs)
    if good:
        gp = [p for _, p in good]
        lr = lmc_pairs(model, ret["states"], gp, splits.train, splits.test, points=11,
                       device=device)
        cr = cka_pairs(model, ret["states"], gp, splits.test.x, device=device)
        for n, (i, _) in enumerate(good):
            lmc[i] = float(lr[n].mc)
            cka[i] = float(cr[n].softmax)
    out = {"lmc": lmc, "cka": cka}
    if path is not None:
        art.write_json(path, out)
    return out


# --------------------------------------------------------------------------- advise
def advise(model: Any, data: Any = None, *, target_density: float | None = None,
           hyperparameter: str | None = None, value: float | None = None, seeds: Any = 3,
           retrain: Any = None, prune: str = "magnitude", tau_lmc: float | None = None,
           tau_cka: float | None = None, device: str = "auto", cache_dir: Any = None,
           progress: bool | None = None, loss: Callable | None = None, engine: str = "vmap",
           point: Mapping[str, Any] | None = None) -> Advice:
    """Advise which way to move a temperature-like hyperparameter for pruning at a density.

    Two uses:

    * ``advise(model, data, target_density=..., hyperparameter=..., value=...)`` for a trained
      dense model: prune, retrain ``seeds`` times, measure LMC and CKA on all seed pairs,
      classify with the absolute rule (``tau_lmc``, ``tau_cka``; module docstring) and advise.
    * ``advise(results_ds, point={"epochs": 40, "density": 0.05})`` reads the advice off a
      finished sweep: the Dataset is classified (relative CKA rule, or absolute when
      ``tau_cka`` is given) and the cell selected; the hyperparameter is the Dataset's
      temperature axis.

    Parameters
    ----------
    model : torch.nn.Module or xarray.Dataset
        The trained dense model (any module; its prunable layers are
        :func:`threeregime.models.prunable_names`: every Linear/Conv weight but the
        classifier), or a sweep results Dataset.
    data : Splits or ((x_train, y_train), (x_test, y_test))
        The data it was trained on (train: retraining, LMC; test: test error, CKA).
    target_density : float in (0, 1]
        Fraction of prunable weights kept.
    hyperparameter : {"epochs", "batch_size", "lr", "sam_rho"}
        The temperature-like hyperparameter the advice is about.
    value : float, optional
        The value the model was trained with (reported only).
    seeds : int or list of int
        Retraining seeds (>= 2; default 3 -> 3 pairs).
    retrain : TrainSpec, optional
        Retraining recipe; default ``TrainSpec()``: 40 epochs, batch 64, SGD lr 0.1, momentum
        0.9, weight decay 1e-4, x0.1 at 50 % and 75 % (the quick sweep's).  Lower ``epochs`` for
        a quicker, noisier answer.
    prune : str
        Pruning method (:data:`threeregime.prune.PRUNERS`; default layer-uniform magnitude).
    tau_lmc, tau_cka : float, optional
        Thresholds; default :data:`DEFAULTS`.
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda:N"``.
    cache_dir : path, optional
        Where retrained models are cached (module docstring); ``False`` disables caching.
    progress : bool, optional
        Progress bar of retraining (None: only on a terminal).
    loss : callable, optional
        ``loss(outputs, targets)`` for retraining (default cross-entropy).
    engine : {"vmap", "loop"}
        ``"loop"`` for models that ``torch.func.vmap`` cannot run.
    point : mapping, optional
        Dataset use only: the cell, one value per cell dim.

    Returns
    -------
    Advice

    Raises
    ------
    SpecError
        Bad density, seeds, hyperparameter (with did-you-mean), thresholds, or a model without
        prunable layers.
    DataError
        Data of the wrong form, or too few training examples for one retraining batch.
    """
    if isinstance(model, xr.Dataset):
        return _advise_dataset(model, point, hyperparameter=hyperparameter, tau_lmc=tau_lmc,
                               tau_cka=tau_cka)
    if point is not None:
        raise SpecError("point is only used with a results Dataset; got a model")
    import torch

    from .models import prunable_names
    from .spec import PruneSpec, TrainSpec, canonical_json
    from .train import resolve_device

    if not isinstance(model, torch.nn.Module):
        raise SpecError(f"model must be a torch.nn.Module or a results xarray.Dataset; got "
                        f"{type(model).__name__}")
    if target_density is None:
        raise SpecError("target_density must be a number in (0, 1]; got None")
    density = _check_density(target_density)
    if hyperparameter is None:
        raise SpecError(f"hyperparameter must be one of {', '.join(HYPERPARAMETERS)}; got None")
    hp = _check_hp(hyperparameter)
    value = _check_value(value)
    seed_list = _check_seeds(seeds)
    tau_lmc = _check_tau("tau_lmc", DEFAULTS["tau_lmc"] if tau_lmc is None else tau_lmc)
    tau_cka = _check_tau("tau_cka", DEFAULTS["tau_cka"] if tau_cka is None else tau_cka)
    if retrain is None:
        retrain = TrainSpec(**_DEFAULT_RETRAIN)
    if not isinstance(retrain, TrainSpec):
        raise SpecError(f"retrain must be a threeregime.TrainSpec or None; got "
                        f"{type(retrain).__name__}")
    PruneSpec(method=prune, density=density)           # validates the method name
    prunable_names(model)                               # SpecError when nothing is prunable
    splits = _as_splits(data)
    n_train = int(splits.train.x.shape[0])
    if n_train < retrain.batch_size:
        raise DataError(f"retrain.batch_size must be <= the number of training examples "
                        f"({n_train}); got {retrain.batch_size}: lower retrain.batch_size or "
                        f"pass more data")
    if splits.test is None or int(splits.test.x.shape[0]) < 2:
        raise DataError("data must include a test split of at least 2 examples (test error "
                        "and CKA are measured on it)")
    dev = str(resolve_device(device))
    cache = _cache_root(cache_dir)
    key = None
    if cache is not None:
        key = hashlib.sha256(json.dumps({
            "model": _state_hash(model), "data": _data_fingerprint(splits),
            "prune": prune, "density": density, "seeds": list(seed_list),
            "retrain": canonical_json(retrain),
            "loss": None if loss is None else getattr(loss, "__qualname__", repr(loss)),
        }, sort_keys=True).encode()).hexdigest()[:24]
    import itertools

    pairs = list(itertools.combinations(range(len(seed_list)), 2))
    ret = _retrain(model, splits, density=density, prune=prune, seeds=seed_list,
                   retrain=retrain, device=dev, engine=engine, progress=progress, loss=loss,
                   cache=cache, key=key)
    meas = _measure(model, splits, ret, device=dev, cache=cache, key=key, pairs=pairs)
    test_error = [e if not d else float("nan") for e, d in zip(ret["test_error"],
                                                                 ret["diverged"])]
    train_error = [e if not d else float("nan") for e, d in zip(ret["train_error"],
                                                                  ret["diverged"])]
    regime, conf, ev, rule = _classify_one(
        np.array(meas["lmc"]), np.array(meas["cka"]), np.array(test_error),
        np.array(train_error), hyperparameter=hp, value=value,
        num_classes=int(splits.num_classes) if splits.num_classes else None,
        tau_lmc=tau_lmc, tau_cka=tau_cka)
    with np.errstate(all="ignore"):
        te_mean = float(np.nanmean(test_error)) if np.isfinite(test_error).any() else math.nan
    evidence = {**ev, "lmc": list(meas["lmc"]), "cka": list(meas["cka"]),
                "pairs": [[seed_list[a], seed_list[b]] for a, b in pairs],
                "n_pairs": int(ev.pop("n_valid_pairs")), "seeds": list(seed_list),
                "test_error": test_error, "train_error": train_error,
                "test_error_mean": te_mean, "density": density,
                "realized_density": ret["realized_density"],
                "from_cache": bool(ret["from_cache"])}
    rule = {**rule, "retrain": json.loads(canonical_json(retrain)), "prune": prune}
    return _make_advice(regime, conf, evidence, rule, hp, value)


def _advise_dataset(ds: xr.Dataset, point: Mapping[str, Any] | None, *,
                    hyperparameter: str | None, tau_lmc: float | None,
                    tau_cka: float | None) -> Advice:
    """Advice for one cell of a sweep results Dataset."""
    if point is None or not isinstance(point, Mapping):
        raise SpecError(f"point must be a mapping of the cell's coordinates, e.g. "
                        f"{{'epochs': 40, 'density': 0.05}}; got {point!r}")
    cell, temps, _ = find_dims(ds, "lmc" if "lmc" in ds else "lmc_mean")
    for k in point:
        if k not in cell:
            raise SpecError(f"point has unknown dim {k!r}; the cell dims are "
                            f"{', '.join(cell)}{did_you_mean(str(k), cell)}")
    missing = [d for d in cell if d not in point]
    if missing:
        raise SpecError(f"point must give a value for every cell dim; missing "
                        f"{', '.join(missing)} (cell dims: {', '.join(cell)})")
    if hyperparameter is None:
        if len(temps) != 1:
            raise SpecError(f"hyperparameter must name one of the temperature dims "
                            f"{', '.join(temps)}; got None")
        hyperparameter = temps[0]
    elif hyperparameter not in temps:
        raise SpecError(f"hyperparameter must be a temperature dim of the Dataset "
                        f"({', '.join(temps)}); got {hyperparameter!r}"
                        f"{did_you_mean(str(hyperparameter), temps)}")
    hp = _check_hp(hyperparameter)
    sel = {}
    for d in cell:
        vals = np.asarray(ds[d].values)
        hit = np.flatnonzero(np.isclose(vals.astype(float), float(point[d]), rtol=1e-9,
                                        atol=0)) if vals.dtype.kind in "fiu" else \
            np.flatnonzero(vals == point[d])
        if hit.size == 0:
            allowed = ", ".join(f"{v:g}" if vals.dtype.kind in "fiu" else str(v)
                                for v in vals)
            raise SpecError(f"point[{d!r}] must be one of {allowed}; got {point[d]!r}")
        sel[d] = int(hit[0])
    kw: dict[str, Any] = {"tau_lmc": _check_tau(
        "tau_lmc", DEFAULTS["tau_lmc"] if tau_lmc is None else tau_lmc)}
    if tau_cka is not None:
        kw.update(cka_rule="absolute", tau_cka=_check_tau("tau_cka", tau_cka))
    reg = classify(ds, **kw)
    c = reg.isel(sel)
    code = int(c["regime"].values)
    here = ds.isel(sel)

    def flat(name: str) -> list[float]:
        if name not in here:
            return []
        return [float(v) for v in np.asarray(here[name].values, dtype=float).ravel()]

    te = flat("test_error")
    with np.errstate(all="ignore"):
        te_mean = float(np.nanmean(te)) if np.isfinite(te).any() else math.nan
    density = None
    if "density" in point:
        density = float(point["density"])
    reason = int(c["undetermined_reason"].values)
    evidence = {"lmc_mean": float(c["lmc_mean"]), "lmc_sem": float(c["lmc_sem"]),
                "cka_mean": float(c["cka_mean"]), "cka_sem": float(c["cka_sem"]),
                "lmc": flat("lmc"), "cka": flat("cka"), "n_pairs": int(c["n_valid_pairs"]),
                "test_error": te, "train_error": flat("train_error"),
                "test_error_mean": te_mean, "density": density,
                "undetermined_reason": _REASON_TEXT.get(reason, ""),
                "point": {k: (v.item() if hasattr(v, "item") else v) for k, v in point.items()}}
    rule = json.loads(reg.attrs["regime_rule"])
    return _make_advice(REGIMES[code], float(c["regime_confidence"]), evidence, rule, hp,
                        float(point[hp]))


# --------------------------------------------------------------------------- checkpoint (CLI)
def _parse_point(items: Sequence[str]) -> dict[str, float]:
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


def advise_checkpoint(args: Any) -> Advice:
    """The ``threeregime advise`` command: advice for a saved checkpoint or a results cell.

    ``args.checkpoint`` is either a results ``.nc`` file / sweep folder (then ``args.point``
    holds ``AXIS=VALUE`` strings) or a ``.pt`` state dict of a zoo model (``args.model``,
    ``args.width``, ``args.batchnorm``) trained on ``args.data`` (a data source name with its
    default sizes); a sweep artifact ``{"state": ...}`` is accepted too.  ``args.epochs`` sets
    the retraining epochs (default 40).
    """
    path = Path(args.checkpoint)
    if path.suffix == ".nc" or path.is_dir():
        from .storage import open_sweep

        ds = open_sweep(path)
        return advise(ds, point=_parse_point(getattr(args, "point", [])),
                      hyperparameter=getattr(args, "hyperparameter", None))
    if getattr(args, "point", None):
        raise SpecError("--point is only used with a results .nc file; got a checkpoint "
                        f"{path.name}")
    if not path.is_file():
        raise DataError(f"checkpoint {str(path)!r} does not exist; pass a .pt state dict or a "
                        "results .nc file")
    import torch

    from .data import load_data
    from .models import build_model
    from .spec import DataSpec, ModelSpec, TrainSpec

    if args.density is None:
        raise SpecError("--density must be given for a checkpoint (a number in (0, 1]); got "
                        "none")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, TypeError) as e:
        raise DataError(f"checkpoint {str(path)!r} cannot be read as a torch state dict: "
                        f"{type(e).__name__}") from None
    if isinstance(obj, Mapping) and "state" in obj and isinstance(obj["state"], Mapping):
        obj = obj["state"]
    if not isinstance(obj, Mapping):
        raise DataError(f"checkpoint {str(path)!r} must hold a state dict; got "
                        f"{type(obj).__name__}")
    data = load_data(DataSpec(name=args.data))
    model = build_model(ModelSpec(name=args.model, width=float(args.width),
                                  batchnorm=bool(args.batchnorm)), data.input_shape,
                        data.num_classes, seed=0)
    try:
        model.load_state_dict(obj)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "mismatch"
        raise SpecError(f"checkpoint does not fit --model {args.model} (width {args.width:g}, "
                        f"batchnorm {bool(args.batchnorm)}): {first}") from None
    retrain = TrainSpec(epochs=args.epochs) if getattr(args, "epochs", None) else None
    return advise(model, data, target_density=args.density,
                  hyperparameter=getattr(args, "hyperparameter", None) or "epochs",
                  value=args.value, seeds=args.seeds, retrain=retrain,
                  device=getattr(args, "device", "auto"))


# --------------------------------------------------------------------------- case study 2
@dataclass(frozen=True)
class Selection:
    """Which candidate to prune (case study 2) and why.

    Attributes
    ----------
    best : name (dict key, or list index) of the chosen candidate; None when every candidate
        is undetermined.
    best_model : the chosen model (None likewise).
    ranking : list of dicts, best first: ``name``, ``regime``, ``lmc_mean``, ``cka_mean``,
        ``test_error``, ``eligible`` (not Regime I and not undetermined) and ``advice``.
    rule : how the choice was made, in words.
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
                         f"{r['lmc_mean']:+9.4f} {r['cka_mean']:7.3f} {te_s}"
                         f"{'' if r['eligible'] else '  (dropped)'}")
        return "\n".join(lines)


_SELECT_RULE = ("drop Regime I (and undetermined); pick the highest CKA; if every candidate is "
                "Regime I, pick the best connected (highest LMC mc)")


def _rank(entries: list[dict]) -> list[dict]:
    """Eligible by CKA (desc), then Regime I by LMC (desc), then undetermined."""
    def nz(v: float, default: float) -> float:
        return v if np.isfinite(v) else default

    eligible = sorted([e for e in entries if e["eligible"]],
                      key=lambda e: -nz(e["cka_mean"], -np.inf))
    one = sorted([e for e in entries if e["regime"] == "I"],
                 key=lambda e: -nz(e["lmc_mean"], -np.inf))
    rest = [e for e in entries if not e["eligible"] and e["regime"] != "I"]
    return eligible + one + rest


def select_model_to_prune(candidates: Mapping[Any, Any] | Sequence[Any], data: Any, *,
                          target_density: float, seeds: Any = 3,
                          hyperparameter: str = "epochs", **advise_kwargs: Any) -> Selection:
    """Choose which of several dense models to prune to ``target_density`` (case study 2).

    Each candidate is pruned, retrained and measured by :func:`advise`.  Candidates in
    Regime I are dropped (a barrier between retrained copies), and undetermined ones too; among
    the rest the most similar (highest mean CKA) wins.  If every candidate is Regime I, the best
    connected (highest mean LMC mc) wins.

    Parameters
    ----------
    candidates : dict name -> model, or list of models (names are the indices)
    data, target_density, seeds : as in :func:`advise`
    hyperparameter : str
        Only used to phrase each candidate's advice.
    **advise_kwargs
        Passed to :func:`advise` (``retrain``, ``tau_lmc``, ``tau_cka``, ``device``,
        ``cache_dir``, ...).

    Returns
    -------
    Selection
    """
    if isinstance(candidates, Mapping):
        items = list(candidates.items())
    elif isinstance(candidates, Sequence) and not isinstance(candidates, (str, bytes)):
        items = list(enumerate(candidates))
    else:
        raise SpecError(f"candidates must be a dict name -> model or a list of models; got "
                        f"{type(candidates).__name__}")
    if not items:
        raise SpecError("candidates must hold at least one model; got none")
    _check_density(target_density)
    entries = []
    for name, m in items:
        adv = advise(m, data, target_density=target_density, hyperparameter=hyperparameter,
                     seeds=seeds, **advise_kwargs)
        ev = adv.evidence
        entries.append({"name": name, "regime": adv.regime,
                        "lmc_mean": _f(ev.get("lmc_mean")), "cka_mean": _f(ev.get("cka_mean")),
                        "test_error": _f(ev.get("test_error_mean")),
                        "eligible": adv.regime in ("II-A", "II-B"), "advice": adv})
    ranking = _rank(entries)
    best = ranking[0]["name"] if ranking and ranking[0]["regime"] != "undetermined" else None
    models = dict(items)
    return Selection(best=best, best_model=None if best is None else models[best],
                     ranking=ranking, rule=_SELECT_RULE)


# --------------------------------------------------------------------------- case study 3
@dataclass(frozen=True)
class TuneResult:
    """A walk along a temperature axis guided by :func:`advise` (case study 3).

    Attributes
    ----------
    history : list of (value, Advice, test error) in the order visited.
    best_value : the visited value with the lowest retrained test error.
    best_advice : its Advice.
    stopped : why the walk ended (``"II-B (keep)"``, ``"no improvement"``, ``"budget"``,
        ``"undetermined"``, ``"revisit"``).
    hyperparameter : str
    """

    history: list
    best_value: float
    best_advice: Advice
    stopped: str
    hyperparameter: str

    def __str__(self) -> str:
        lines = [f"Tuning {self.hyperparameter}: best {self.best_value:g} "
                 f"(stopped: {self.stopped})",
                 f"  {self.hyperparameter:>12s}  {'regime':<13s} {'advice':<26s} test err"]
        for v, a, e in self.history:
            mark = "  <- best" if v == self.best_value else ""
            e_s = f"{100 * e:7.2f}%" if np.isfinite(e) else "    n/a"
            lines.append(f"  {v:>12g}  {a.regime:<13s} {a.move[:26]:<26s} {e_s}{mark}")
        return "\n".join(lines)


def _step(value: float, direction: str, hyperparameter: str, factor: float) -> float:
    """The next value one step ``direction`` (hotter / colder) along the axis."""
    up = (direction == "hotter") == (HYPERPARAMETERS[hyperparameter] == "increasing")
    new = value * factor if up else value / factor
    if hyperparameter in ("epochs", "batch_size"):
        new = round(new)
        if new == round(value):
            new = round(value) + (1 if up else -1)
        new = max(1, new)
    return new


def tune_temperature(train_fn: Callable[[Any], Any], data: Any, *, hyperparameter: str,
                     start: float, target_density: float, factor: float = 2.0, budget: int = 5,
                     min_improvement: float = 0.0, **advise_kwargs: Any) -> TuneResult:
    """Walk a temperature-like hyperparameter by following :func:`advise` (case study 3).

    At each step the dense model ``train_fn(value)`` is advised; "hotter" / "colder" multiply
    or divide the value by ``factor`` in the direction that is hotter / colder for this
    hyperparameter (fewer epochs, a smaller batch, a larger lr, a larger rho are hotter;
    epochs and batch size are rounded to integers and change by at least 1).  The walk stops
    at Regime II-B ("keep"), when the retrained test error did not improve on the best so far
    by more than ``min_improvement``, at an undetermined cell, when it would revisit a value,
    or when ``budget`` models have been trained.

    Parameters
    ----------
    train_fn : callable value -> trained dense model
    data, target_density : as in :func:`advise`
    hyperparameter : {"epochs", "batch_size", "lr", "sam_rho"}
    start : the first value (> 0)
    factor : multiplicative step (> 1)
    budget : largest number of models trained (>= 1)
    min_improvement : test-error improvement (fraction) that counts as progress
    **advise_kwargs : passed to :func:`advise` (``seeds``, ``retrain``, ``device``, ...)

    Returns
    -------
    TuneResult
    """
    hp = _check_hp(hyperparameter)
    if isinstance(start, bool) or not isinstance(start, (int, float, np.integer, np.floating)) \
            or not np.isfinite(start) or start <= 0:
        raise SpecError(f"start must be a finite number > 0; got {start!r}")
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 1:
        raise SpecError(f"factor must be a number > 1; got {factor!r}")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise SpecError(f"budget must be an integer >= 1; got {budget!r}")
    _check_density(target_density)
    value: float = int(start) if hp in ("epochs", "batch_size") else float(start)
    history: list[tuple[float, Advice, float]] = []
    best_err = math.inf
    stopped = "budget"
    for _ in range(budget):
        model = train_fn(value)
        adv = advise(model, data, target_density=target_density, hyperparameter=hp,
                     value=value, **advise_kwargs)
        err = _f(adv.evidence.get("test_error_mean"))
        history.append((value, adv, err))
        improved = np.isfinite(err) and err < best_err - min_improvement
        if len(history) > 1 and not improved:
            stopped = "no improvement"
            break
        if np.isfinite(err):
            best_err = min(best_err, err)
        if adv.direction == "keep":
            stopped = "II-B (keep)"
            break
        if adv.direction == "unknown":
            stopped = "undetermined"
            break
        nxt = _step(value, adv.direction, hp, factor)
        if any(np.isclose(nxt, v) for v, _, _ in history):
            stopped = "revisit"
            break
        value = nxt
    finite = [h for h in history if np.isfinite(h[2])]
    best = min(finite, key=lambda h: h[2]) if finite else history[0]
    return TuneResult(history=history, best_value=best[0], best_advice=best[1],
                      stopped=stopped, hyperparameter=hp)


# --------------------------------------------------------------------------- validation
def _true_directions(ds: xr.Dataset, temp: str, z: float, margin: float | None
                     ) -> tuple[np.ndarray, dict]:
    """Per cell (temperature x load columns): the direction that lowers the test error."""
    te = ds["test_error"]
    rep = [d for d in te.dims if d in ("dense_seed", "retrain_seed")]
    mean = te.mean(rep, skipna=True)
    n = te.notnull().sum(rep)
    sem = te.std(rep, skipna=True, ddof=1) / np.sqrt(n.where(n > 0))
    cell, _, _ = find_dims(ds, "test_error")
    others = [d for d in cell if d != temp]
    mean = mean.transpose(temp, *others)
    sem = sem.transpose(temp, *others)
    m = mean.values.reshape(mean.shape[0], -1)
    s = sem.values.reshape(sem.shape[0], -1)
    tv = np.asarray(ds[temp].values, dtype=float)
    hotter_inc = (ds[temp].attrs.get("hotter") or HYPERPARAMETERS.get(temp)) == "increasing"
    truth = np.full(m.shape, "unknown", dtype=object)
    for j in range(m.shape[1]):
        col = m[:, j]
        if not np.isfinite(col).any():
            continue
        b = int(np.nanargmin(col))
        for i in range(m.shape[0]):
            if not np.isfinite(col[i]):
                continue
            tol = margin if margin is not None else z * math.sqrt(
                np.nan_to_num(s[i, j]) ** 2 + np.nan_to_num(s[b, j]) ** 2)
            if i == b or col[i] - col[b] <= tol:
                truth[i, j] = "keep"
            else:
                best_hotter = (tv[b] > tv[i]) == hotter_inc
                truth[i, j] = "hotter" if best_hotter else "colder"
    return truth, {"mean": m, "sem": s, "others": others}


def validate_advice(ds: xr.Dataset, *, z: float = 1.0, margin: float | None = None,
                    rule: str = "advise", tau_lmc: float | None = None,
                    tau_cka: float | None = None) -> dict:
    """Compare the advice of every cell of a sweep with the direction that lowers test error.

    For every cell the *true* direction is read off its load column (all cells sharing the
    load values): ``keep`` when the cell's mean retrained test error is within a noise margin
    of the column's best (``z`` standard errors of the difference, the standard errors over
    dense and retraining seeds; or a fixed ``margin``), else ``hotter`` / ``colder`` towards
    the column's best temperature.  The *advised* direction comes from the cell's regime.
    The naive rules "always hotter", "always colder" and "always keep" are scored alike.

    Parameters
    ----------
    ds : sweep results Dataset with ``test_error``, ``lmc``, ``cka`` and one temperature dim.
    z : float
        Width of the noise margin in standard errors.
    margin : float, optional
        A fixed margin (fraction of test error) instead.
    rule : {"advise", "sweep"}
        ``"advise"``: the single-model rule of :func:`advise` (absolute CKA threshold
        ``tau_cka``); ``"sweep"``: :func:`threeregime.regimes.classify` with its defaults
        (relative CKA rule within the column).
    tau_lmc, tau_cka : thresholds (default :data:`DEFAULTS`).

    Returns
    -------
    dict
        ``agreement`` (fraction of all cells; undetermined counts as a miss),
        ``agreement_determined`` (over cells with a regime), ``naive`` (rule -> agreement),
        ``n_cells``, ``n_determined``, and ``cells``: one dict per cell with its coordinates,
        ``regime``, ``advised``, ``truth``, ``test_error`` (mean) and ``sem``.
    """
    if rule not in ("advise", "sweep"):
        raise SpecError(f"rule must be one of advise, sweep; got {rule!r}")
    _, temps, _ = find_dims(ds, "lmc")
    if len(temps) != 1:
        raise SpecError(f"validate_advice needs exactly one temperature dim; got {temps}")
    temp = temps[0]
    t_lmc = DEFAULTS["tau_lmc"] if tau_lmc is None else _check_tau("tau_lmc", tau_lmc)
    if rule == "advise":
        t_cka = DEFAULTS["tau_cka"] if tau_cka is None else _check_tau("tau_cka", tau_cka)
        reg = classify(ds, tau_lmc=t_lmc, cka_rule="absolute", tau_cka=t_cka)
    else:
        reg = classify(ds, tau_lmc=t_lmc)
    truth, stats = _true_directions(ds, temp, z, margin)
    others = stats["others"]
    codes = reg["regime"].transpose(temp, *others).values.reshape(truth.shape)
    advised = np.vectorize(lambda c: DIRECTIONS[REGIMES[int(c)]], otypes=[object])(codes)
    valid = truth != "unknown"
    det = valid & (advised != "unknown")
    shape_o = [ds.sizes[d] for d in others]
    cells = []
    tv = ds[temp].values
    for i in range(truth.shape[0]):
        for j in range(truth.shape[1]):
            idx = np.unravel_index(j, shape_o) if others else ()
            coords = {temp: tv[i].item()}
            coords.update({d: ds[d].values[k].item() for d, k in zip(others, idx)})
            cells.append({**coords, "regime": REGIMES[int(codes[i, j])],
                          "advised": advised[i, j], "truth": truth[i, j],
                          "test_error": float(stats["mean"][i, j]),
                          "sem": float(stats["sem"][i, j])})
    n = int(valid.sum())

    def score(pred: np.ndarray, mask: np.ndarray) -> float:
        k = int(mask.sum())
        return float((pred[mask] == truth[mask]).sum() / k) if k else float("nan")

    naive = {d: score(np.full(truth.shape, d, dtype=object), valid)
             for d in ("hotter", "colder", "keep")}
    return {"agreement": score(advised, valid), "agreement_determined": score(advised, det),
            "naive": naive, "n_cells": n, "n_determined": int(det.sum()),
            "rule": rule, "tau_lmc": t_lmc,
            "tau_cka": t_cka if rule == "advise" else None, "z": z, "margin": margin,
            "temperature": temp, "cells": cells}


# --------------------------------------------------------------------------- callable module
class _CallableModule(types.ModuleType):
    """``threeregime.advise`` is both this module and the function: importing the submodule
    sets the package attribute ``advise`` to the module, which would shadow the lazily exported
    function; making the module callable keeps ``threeregime.advise(model, ...)`` working."""

    def __call__(self, *args: Any, **kwargs: Any) -> Advice:
        return advise(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
