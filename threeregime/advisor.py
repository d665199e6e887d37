"""Advice on a model or a results Dataset: the case studies of SPEC.md section 5 (front end).

Torch is imported only on the model path: :func:`advise` on a results Dataset reads the advice
off the finished sweep without it.

1. :func:`advise`: prune a trained dense model one-shot to ``target_density``, retrain it with
   K seeds (the seeds differ only in data order, as the reference), measure linear mode
   connectivity and CKA of the softmax outputs on all K(K-1)/2 pairs, classify the one cell
   with the single-cell variant of a sweep's default rule
   (:data:`threeregime.analysis.rules.DEFAULT_RULE`, or the rule named;
   :func:`threeregime.analysis.rules.classify_cell_with_rule`) and say which way to move the
   hyperparameter (I -> hotter, II-A -> colder, II-B and II unresolved -> keep).  On a results
   Dataset it reads the advice off a finished sweep
   (:func:`threeregime.analysis.advice.advise_dataset`).
2. :func:`select_model_to_prune`: which of several dense models to prune.
3. :func:`tune_temperature`: the earlier name of ``threeregime.tune`` on a user's model
   (:func:`threeregime.tuning_run.tune_model`; selects on validation error).

No second pipeline: the user's model goes through the sweep's own stage functions
(:mod:`threeregime.sweep.stages`) in a store laid out as any sweep directory
(:mod:`threeregime.sweep.plan`).  The model is stored as a dense source under
:func:`threeregime.sweep.stages.user_dense_key` (its state bytes and a fingerprint of the data)
folded with what else decides the retraining (the architecture, the data's augmentation and
class count, the loss); retrainings and the point's measurements are keyed from it exactly as
in a sweep (``spec_hash`` of canonical JSON).  The store is ``cache_dir`` (default
``$THREEREGIME_CACHE`` or ``~/.cache/threeregime``; ``cache_dir=False``: a temporary
directory, deleted afterwards), so a second call with the same inputs trains nothing.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from .analysis.advice import (
    Advice,
    Selection,
    advice_from_measurements,
    advise_dataset,
    check_density,
    check_hyperparameter,
    check_seeds,
    check_tau,
    check_value,
    make_selection,
)
from .analysis.rules import check_rule, get_rule
from .errors import DataError, SpecError, ThreeRegimeWarning
from .spec.specs import (
    CKA_INPUTS,
    DataSpec,
    MeasureSpec,
    ModelSpec,
    PointSpec,
    PruneSpec,
    TrainSpec,
    canonical_json,
    check_choice,
    nm_pattern,
    spec_hash,
)
from .sweep.plan import Store, point_job, retrain_jobs

if TYPE_CHECKING:
    from torch import nn

    from .sweep.stages import Problem, RunOptions

# torch (and the torch half) is imported inside the functions that work on a model, so that
# advise(ds) on a results Dataset never imports it

__all__ = ["advise", "select_model_to_prune", "load_checkpoint", "cache_root"]

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


# --------------------------------------------------------------------------- the store
def cache_root(cache_dir: Any = None) -> Path | None:
    """The store of :func:`advise`: ``cache_dir``, else ``$THREEREGIME_CACHE``, else the
    platform's user cache folder (:func:`platformdirs.user_cache_dir`: ``~/.cache/threeregime``
    or ``$XDG_CACHE_HOME/threeregime`` on Linux, ``~/Library/Caches/threeregime`` on macOS);
    None for ``cache_dir=False`` (a temporary store)."""
    if cache_dir is False:
        return None
    if cache_dir is None:
        from platformdirs import user_cache_dir

        cache_dir = os.environ.get("THREEREGIME_CACHE") or user_cache_dir("threeregime")
    return Path(cache_dir).expanduser()


@contextlib.contextmanager
def _store(cache_dir: Any) -> Iterator[Path]:
    root = cache_root(cache_dir)
    if root is not None:
        yield root
        return
    with tempfile.TemporaryDirectory(prefix="threeregime-advise-") as tmp:
        yield Path(tmp)


@contextlib.contextmanager
def _numerics_kept() -> Iterator[None]:
    """The stages pin the process's numerics (one torch thread on CPU, deterministic cuDNN);
    a library call gives the caller's settings back afterwards."""
    import torch

    threads = torch.get_num_threads()
    env = {v: os.environ.get(v) for v in _THREAD_VARS}
    cudnn = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        for var, old in env.items():
            if old is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = old
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn


def _dense_key(model: nn.Module, splits: Any, loss: Callable | None) -> str:
    """Store key of the user's model as a dense source: its state and data
    (:func:`~threeregime.sweep.stages.user_dense_key`), its architecture, the data's class count and
    augmentation, and the retraining loss (by qualified name)."""
    from .sweep.stages import user_dense_key

    return spec_hash({"user_model": user_dense_key(model.state_dict(), splits),
                      "class": type(model).__qualname__, "architecture": repr(model),
                      "num_classes": getattr(splits, "num_classes", None),
                      "augment": repr(getattr(splits, "augment", None)),
                      "loss": None if loss is None else getattr(loss, "__qualname__",
                                                                repr(loss))})


# --------------------------------------------------------------------------- case study 1
def _problem(splits: Any, model: nn.Module, loss: Callable | None) -> Problem:
    from .sweep.stages import Problem

    if loss is not None and not callable(loss):
        raise SpecError(f"loss must be a callable loss(outputs, targets) or None; got "
                        f"{type(loss).__name__}")
    return Problem(splits, model, loss_fn=loss)


def _run_stages(root: Path, dkey: str, spec: PointSpec, problem: Problem,
                opts: RunOptions) -> tuple[dict[str, list[float]], float, bool]:
    """Store the user's model as dense source ``dkey``, retrain and measure it through the
    sweep's stages.  Returns the point's ``lmc``, ``cka`` (per pair), ``test_error`` and
    ``train_error`` (per retrained model, NaN where it diverged), the realized density of the
    mask (as the retrain stage recorded it) and whether the point was in the store already."""
    from .sweep.stages import run_on_dense, save_dense
    from .sweep.torchio import load_torch

    store = Store(root)
    rjs = retrain_jobs(spec, dkey, None)
    from_cache = point_job({}, spec, dkey, None, rjs).path(store).exists()
    save_dense(root, dkey, problem.template.state_dict(), problem, opts,
               extra={"what": "a user's model (threeregime.advise)",
                      "class": type(problem.template).__qualname__})
    ds = run_on_dense(root, dkey, spec, opts, problem=problem)
    measured = {name: [float(v) for v in np.asarray(ds[name].values, dtype=np.float64)]
                for name in ("lmc", "cka", "test_error", "train_error")}
    return measured, load_torch(store.retrain(rjs[0].key))["realized_density"], from_cache


def _checked_inputs(model: Any, data: Any, density: float | None, prune: str,
                    retrain: Any, dense_layers: Sequence[str]
                    ) -> tuple[Any, TrainSpec, PruneSpec]:
    """The data as Splits, the retraining recipe and the pruning spec, or one-line errors."""
    from .data.sources import as_splits
    from .pruning.families import check_family, prune_names

    retrain = TrainSpec() if retrain is None else retrain
    if not isinstance(retrain, TrainSpec):
        raise SpecError(f"retrain must be a threeregime.TrainSpec or None; got "
                        f"{type(retrain).__name__}")
    if isinstance(dense_layers, str):
        dense_layers = [dense_layers]
    pattern = nm_pattern(prune) if isinstance(prune, str) else None
    if density is None and pattern:   # nm_N_M: the pattern fixes the density
        density = pattern[0] / pattern[1]
    density = check_density(density)
    prune_spec = PruneSpec(method=prune, density=density,     # validates the method name
                           dense_layers=tuple(dense_layers))
    splits = as_splits(data)
    names = prune_names(model, prune_spec)                    # SpecError: nothing prunable
    check_family(model, prune_spec, names, splits.input_shape)
    n_train = int(splits.train.x.shape[0])
    if n_train < retrain.batch_size:
        raise DataError(f"retrain.batch_size must be <= the number of training examples "
                        f"({n_train}); got {retrain.batch_size}: lower retrain.batch_size or "
                        f"pass more data")
    if splits.test is None or int(splits.test.x.shape[0]) < 2:
        raise DataError("data must include a test split of at least 2 examples (test error "
                        "and CKA are measured on it)")
    return splits, retrain, prune_spec


def _dense_errors(model: nn.Module, splits: Any, device: str) -> dict[str, float]:
    """The dense model's own train and test error, and a warning before any retraining when it
    is at chance level (untrained, or given the wrong data: its advice is about noise)."""
    from .training.train import own_errors

    tr, te, chance, k = own_errors(model, splits, device=device)
    if tr >= get_rule().settings["chance_fraction"] * chance:   # as the rule's chance check
        warnings.warn(f"the dense model is at chance level: train error {100 * tr:.1f} %, "
                      f"test error {100 * te:.1f} % (chance {100 * chance:.1f} % for {k} "
                      "classes); its advice describes an untrained model: check that it is "
                      "trained, and on this data", ThreeRegimeWarning, stacklevel=3)
    return {"dense_train_error": tr, "dense_test_error": te}


def _measure_spec(cka_inputs: str, n_train: int) -> MeasureSpec:
    """LMC and CKA as the paper measures them: CKA on the first min(6400, n) training inputs
    (``cka_inputs="train"``, the default of :func:`advise`) or on the test inputs."""
    check_choice("cka_inputs", cka_inputs, CKA_INPUTS)
    if cka_inputs == "train":
        return MeasureSpec(cka_inputs="train", cka_n=max(2, min(6400, n_train)))
    return MeasureSpec()


def advise(model_or_ds: Any, data: Any = None, *, target_density: float | None = None,
           hyperparameter: str | None = None, value: float | None = None, seeds: Any = 3,
           retrain: TrainSpec | None = None, prune: str = "magnitude",
           tau_lmc: float | None = None, tau_cka: float | None = None, rule: Any = None,
           device: str = "auto", cache_dir: Any = None, progress: bool | None = None,
           loss: Callable | None = None, engine: str = "vmap",
           point: Mapping[str, Any] | None = None, cka_inputs: str = "train",
           dense_layers: Sequence[str] = ()) -> Advice:
    """Advise which way to move a temperature-like hyperparameter for pruning at a density.

    Two uses:

    * ``advise(model, data, target_density=..., hyperparameter=..., value=...)`` for a trained
      dense model: prune, retrain ``seeds`` times, measure LMC and CKA on all seed pairs,
      classify with the single-cell variant of ``rule`` (default: the sweep's default rule
      :data:`threeregime.analysis.rules.DEFAULT_RULE`, which tells Regime I from Regime II
      and leaves II-A vs II-B unresolved, advice keep) and advise.
    * ``advise(results_ds, point={"epochs": 40, "density": 0.05})`` reads the advice off a
      finished sweep (:func:`threeregime.analysis.advice.advise_dataset`): the Dataset is classified
      with ``rule`` (the same default; the legacy rule when ``tau_lmc`` / ``tau_cka`` is given)
      and the cell selected.

    Parameters
    ----------
    model_or_ds : torch.nn.Module or xarray.Dataset
        The trained dense model (any module; its prunable layers are
        :func:`threeregime.models.zoo.prunable_names`: every Linear/Conv weight but the
        classifier), or a sweep results Dataset.
    data : Splits or ((x_train, y_train), (x_test, y_test))
        The data it was trained on (train: retraining, LMC; test: test error, CKA).
    target_density : float in (0, 1]
        Fraction of prunable weights kept (``nm_N_M``: N/M, the default there).
    hyperparameter : {"epochs", "batch_size", "lr", "sam_rho"}
        The temperature-like hyperparameter the advice is about (for a Dataset: default its
        temperature dim).
    value : float, optional
        The value the model was trained with (reported only).
    seeds : int or list of int
        Retraining seeds (>= 2; default 3 -> 3 pairs).
    retrain : TrainSpec, optional
        Retraining recipe; default ``TrainSpec()``: 40 epochs, batch 64, SGD lr 0.1, momentum
        0.9, weight decay 1e-4, x0.1 at 50 % and 75 % (the quick sweep's).  Lower ``epochs``
        for a quicker, noisier answer.
    prune : str
        Pruning method (:data:`threeregime.pruning.masks.PRUNERS`; default layer-uniform magnitude),
        ``nm_N_M`` (e.g. ``nm_2_4``: N:M sparse retraining with progressive gradient flow) or
        ``channel`` (structured channel pruning: a smaller network is retrained).
    tau_lmc, tau_cka : float, optional
        Thresholds of the legacy rule (giving one selects it; defaults
        :data:`threeregime.analysis.rules.LEGACY_DEFAULTS`: for a model, II-A vs II-B by CKA
        against ``tau_cka``).
    rule : Rule or str, optional
        A named rule (:data:`threeregime.analysis.rules.RULES`); for a model its single-cell
        variant (step / level: I vs II only, Regime II is II-unresolved, advice keep; legacy:
        the absolute CKA rule); for a Dataset :func:`threeregime.analysis.advice.advise_dataset`.
        Default: :data:`threeregime.analysis.rules.DEFAULT_RULE`, for a model as for a Dataset
        (before issue 17 a model defaulted to the legacy single-model rule: pass
        ``rule="legacy"`` for it).
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda:N"``.
    cache_dir : path or False, optional
        The store (a sweep directory; module docstring); ``False``: a temporary one.
    progress : bool, optional
        Progress bar of retraining (None: only on a terminal).
    loss : callable, optional
        ``loss(outputs, targets)`` for retraining (default cross-entropy).
    engine : {"vmap", "loop"}
        ``"loop"`` for models that ``torch.func.vmap`` cannot run.
    point : mapping, optional
        Dataset use only: the cell, one value per cell dim.
    cka_inputs : {"train", "test"}
        Inputs of CKA: the first min(6400, n) training inputs (default, as the paper) or the
        test inputs.
    dense_layers : list of str
        Prunable weights left dense (e.g. a first convolution whose rows cannot take N:M).

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
    if isinstance(model_or_ds, xr.Dataset):
        return advise_dataset(model_or_ds, point, hyperparameter=hyperparameter, rule=rule,
                              tau_lmc=tau_lmc, tau_cka=tau_cka)
    if point is not None:
        raise SpecError("point is only used with a results Dataset; got a model")
    from torch import nn

    from .sweep.stages import RunOptions

    if not isinstance(model_or_ds, nn.Module):
        raise SpecError(f"model must be a torch.nn.Module or a results xarray.Dataset; got "
                        f"{type(model_or_ds).__name__}")
    hp = check_hyperparameter(hyperparameter)
    value = check_value(value)
    seed_list = check_seeds(seeds)
    rule = check_rule(rule)                     # an unknown name fails before any training
    if rule is not None and (tau_lmc is not None or tau_cka is not None):
        raise SpecError("tau_lmc / tau_cka are thresholds of the legacy rule; got them with "
                        f"rule={getattr(rule, 'name', rule)!r}")
    if tau_lmc is not None:
        tau_lmc = check_tau("tau_lmc", tau_lmc)
    if tau_cka is not None:
        tau_cka = check_tau("tau_cka", tau_cka)
    splits, retrain, prune_spec = _checked_inputs(model_or_ds, data, target_density, prune,
                                                  retrain, dense_layers)
    density = prune_spec.density
    spec = PointSpec(prune=prune_spec, retrain=retrain, retrain_seeds=seed_list,
                     measure=_measure_spec(cka_inputs, int(splits.train.x.shape[0])))
    problem = _problem(splits, model_or_ds, loss)
    opts = RunOptions(device=device, engine=engine, progress=progress)   # validates device
    dense_errors = _dense_errors(model_or_ds, splits, opts.device)   # warns at chance level
    with _numerics_kept(), _store(cache_dir) as root:
        # all K retrainings in one ensemble, whatever K: a member's last bits depend on the
        # ensemble it trains in, and advise has always trained the K seeds together
        opts.max_members = max(opts.max_members, len(seed_list))
        meas, realized, from_cache = _run_stages(root, _dense_key(model_or_ds, splits, loss),
                                               spec, problem, opts)

    pairs = list(itertools.combinations(seed_list, 2))
    return advice_from_measurements(
        meas["lmc"], meas["cka"], meas["test_error"], meas["train_error"],
        hyperparameter=hp, value=value,
        num_classes=int(getattr(splits, "num_classes", None) or 0) or None,
        tau_lmc=tau_lmc, tau_cka=tau_cka, regime_rule=rule,
        evidence={"pairs": [list(p) for p in pairs], "seeds": list(seed_list),
                  "density": density, "realized_density": float(realized),
                  "from_cache": bool(from_cache), **dense_errors},
        rule={"retrain": json.loads(canonical_json(retrain)), "prune": prune})


def load_checkpoint(path: str | Path, *, data: str = "mnist1d", model: str = "cnn1d",
                    width: float = 1.0, batchnorm: bool = False) -> tuple[nn.Module, Any]:
    """A zoo model holding a saved state dict, and the data source it was trained on.

    Parameters
    ----------
    path : path
        ``torch.save(model.state_dict(), path)``; a sweep artifact ``{"state": ...}`` works too.
    data : str
        Data source name (:func:`threeregime.load_data`, its default sizes).
    model, width, batchnorm
        The zoo architecture (:func:`threeregime.build_model`).

    Returns
    -------
    (torch.nn.Module, Splits)

    Raises
    ------
    DataError
        The file is missing or not a torch state dict.
    SpecError
        The state dict does not fit the architecture.
    """
    import torch

    from .data.sources import load_data
    from .models.zoo import build_model

    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {str(path)!r} does not exist; pass a .pt state dict or a "
                        "results .nc file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - garbage files fail in many ways inside torch.load
        raise DataError(f"checkpoint {str(path)!r} cannot be read as a torch state dict: "
                        f"{type(e).__name__}") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state"), Mapping):
        obj = obj["state"]
    if not isinstance(obj, Mapping):
        raise DataError(f"checkpoint {str(path)!r} must hold a state dict; got "
                        f"{type(obj).__name__}")
    splits = load_data(DataSpec(name=data))
    net = build_model(ModelSpec(name=model, width=float(width), batchnorm=bool(batchnorm)),
                      splits.input_shape, splits.num_classes, seed=0)
    try:
        net.load_state_dict(obj)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "mismatch"
        raise SpecError(f"checkpoint does not fit model {model} (width {width:g}, batchnorm "
                        f"{bool(batchnorm)}): {first}") from None
    return net, splits


# --------------------------------------------------------------------------- case study 2
def select_model_to_prune(candidates: Mapping[Any, Any] | Sequence[Any], data: Any, *,
                          target_density: float, seeds: Any = 3,
                          hyperparameter: str = "epochs", **advise_kwargs: Any) -> Selection:
    """Choose which of several dense models to prune to ``target_density`` (case study 2).

    Each candidate is pruned, retrained and measured by :func:`advise`.  Candidates in
    Regime I are dropped (a barrier between retrained copies), and undetermined ones too; among
    the rest the most similar (highest mean CKA) wins.  If every candidate is Regime I, the best
    connected (highest mean LMC mc) wins (:func:`threeregime.analysis.advice.make_selection`).

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
    check_density(target_density)
    return make_selection([(name, m, advise(m, data, target_density=target_density,
                                            hyperparameter=hyperparameter, seeds=seeds,
                                            **advise_kwargs))
                           for name, m in items])
