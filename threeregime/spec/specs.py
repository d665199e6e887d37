"""Frozen, typed specifications of every piece of work, and their content hashes.

A run is a frozen spec and its hash is its address: :func:`canonical_json` writes a spec with
sorted keys and *fields equal to their default left out*, so adding a new field with a default
renames nothing already stored.  :func:`spec_hash`: 16 hex digits of that JSON's SHA-256.

Specs are validated on construction; a bad value raises :class:`~threeregime.SpecError` with a
one-line message naming the field, the value and what is allowed.  :func:`load_yaml` reads a
sweep or point file and prefixes the file name; unknown keys get a did-you-mean.  The generic
machinery (plain data, YAML, canonical JSON, validators, the axis table) lives in
:mod:`threeregime.spec.codec`; its public names are re-exported here.

This module imports no torch.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FieldError, SpecError, did_you_mean
from ..registry import BUILTIN, registered_names
from .codec import (
    AXES,
    AXIS_ALIASES,
    METHOD_OPTIONS,
    Axis,
    apply_axis,
    axis_values,
    canonical_json,
    cell_exists,
    check_choice,
    check_float,
    check_pos_int,
    dump_yaml,
    from_dict,
    nm_pattern,
    read_yaml,
    same_value,
    spec_hash,
    spec_kind,
    to_dict,
)
from .codec import field_error as _err

__all__ = [
    "DataSpec", "ModelSpec", "TrainSpec", "PruneSpec", "MeasureSpec", "PointSpec", "SweepSpec",
    "AXES", "Axis", "AXIS_ALIASES", "canonical_json", "spec_hash", "load_yaml", "dump_yaml",
    "from_dict", "to_dict",
    "check_pos_int", "check_float", "check_choice", "FieldError", "prune_methods",
    "measure_names", "read_yaml", "nm_pattern",
]

#: built-in pruning methods; methods registered later in ``prune.PRUNERS`` are accepted too, and
#: every ``nm_N_M`` (N:M sparse training with progressive gradient flow, e.g. ``nm_2_4``)
PRUNE_METHODS = ("magnitude", "global", "lamp", "random", "nm", "channel")
#: built-in point measures (MeasureSpec's flags); more register in ``measures.MEASURES``
MEASURES = ("lmc", "cka", "hessian")
SCHEDULES = ("step", "cosine", "constant")
#: ``scratch`` is another name of ``reinit`` (a PointSpec stores ``reinit``: hashes agree)
RETRAIN_MODES = ("finetune", "rewind", "reinit", "scratch")
CKA_INPUTS = ("test", "train")
#: the corruption names (``threeregime.data.corruptions.CORRUPTIONS``), known without torch
CORRUPTIONS = BUILTIN["corruption"]


# --------------------------------------------------------------------------- names
def _names(builtin: tuple[str, ...], kind: str) -> tuple[str, ...]:
    extra = sorted(registered_names(kind) - set(builtin))
    return (*builtin, *extra)


def prune_methods() -> tuple[str, ...]:
    """Built-in pruning methods, then those registered since (``prune.PRUNERS``); besides
    these, every ``nm_N_M`` name (N:M sparse training, :func:`nm_pattern`) is accepted."""
    return _names(PRUNE_METHODS, "pruning method")


def measure_names() -> tuple[str, ...]:
    """Built-in point measures, then those registered since (``measures.MEASURES``)."""
    return _names(MEASURES, "measure")


# --------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class DataSpec:
    """Which data, how much of it, and how it is sampled.

    Attributes
    ----------
    name : registered data source: ``mnist1d``, ``digits``, ``teacher_student``, ``cifar10``.
    train_size : number of training examples, drawn by a seeded subsample (the data-size load
        axis); ``None`` keeps the source's full training set.
    test_size : likewise for the test set.
    seed : seed of generation and subsampling.
    root : folder of files the user provides (``cifar10``: the python-pickle batches).
    augment : apply the source's training augmentation (``cifar10``: random crop + flip).
    options : source-specific keyword arguments (e.g. ``label_noise`` for teacher_student).
    val_size : number of validation examples, disjoint from train and test, on which retrained
        and dense models report ``val_error`` (selection on validation, reporting on test);
        ``None`` (default): no validation split.  Setting it leaves the train and test sets
        unchanged (:func:`threeregime.data.load_data` says where each source takes them from).
    """

    name: str = "mnist1d"
    train_size: int | None = None
    test_size: int | None = None
    seed: int = 0
    root: str | None = None
    augment: bool = False
    options: dict = field(default_factory=dict)
    val_size: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise _err("name", self.name, "a registered data source name")
        check_pos_int("train_size", self.train_size, allow_none=True)
        check_pos_int("test_size", self.test_size, allow_none=True)
        check_pos_int("val_size", self.val_size, allow_none=True)
        check_pos_int("seed", self.seed, minimum=0)


@dataclass(frozen=True)
class ModelSpec:
    """Which architecture.

    Attributes
    ----------
    name : registered model: ``mlp``, ``cnn1d``, ``preresnet20``, ``vgg``.
    width : width factor multiplying every hidden size / channel count.
    batchnorm : insert BatchNorm layers (where the architecture makes it optional).
    prune_classifier : whether the final classifier layer is prunable (reference: no).
    options : architecture-specific keyword arguments (e.g. ``hidden`` for mlp).
    """

    name: str = "cnn1d"
    width: float = 1.0
    batchnorm: bool = False
    prune_classifier: bool = False
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise _err("name", self.name, "a registered model name")
        check_float("width", self.width, 0.0, math.inf, lo_open=True)


@dataclass(frozen=True)
class TrainSpec:
    """One run of SGD (optionally SAM) with a learning-rate schedule.

    The budget is ``epochs`` passes over the training set, or, when ``iterations`` is set, a
    fixed number of optimizer steps (the batch-size axis keeps iterations fixed, as the
    reference does).  Schedule milestones are fractions of the budget.  ``snapshots`` are the
    epochs at which checkpoints are kept, so that one run serves a whole epochs axis.
    """

    epochs: int = 40
    iterations: int | None = None
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    schedule: str = "step"
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    sam_rho: float = 0.0
    snapshots: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_pos_int("epochs", self.epochs)
        check_pos_int("iterations", self.iterations, allow_none=True)
        check_pos_int("batch_size", self.batch_size)
        check_float("lr", self.lr, 0.0, math.inf, lo_open=True)
        check_float("momentum", self.momentum, 0.0, 1.0, hi_open=True)
        check_float("weight_decay", self.weight_decay, 0.0, math.inf)
        check_choice("schedule", self.schedule, SCHEDULES)
        object.__setattr__(self, "milestones", tuple(self.milestones))
        for i, m in enumerate(self.milestones):
            check_float(f"milestones[{i}]", m, 0.0, 1.0, lo_open=True, hi_open=True)
        check_float("gamma", self.gamma, 0.0, 1.0, lo_open=True)
        check_float("sam_rho", self.sam_rho, 0.0, math.inf)
        object.__setattr__(self, "snapshots", tuple(sorted(set(self.snapshots))))
        for i, s in enumerate(self.snapshots):
            check_pos_int(f"snapshots[{i}]", s, minimum=0)
            if self.iterations is None and s > self.epochs:
                raise FieldError(f"snapshots[{i}]", f"snapshots[{i}] must be <= train.epochs "
                                                    f"({self.epochs}); got {s}")

    def steps_per_epoch(self, n_train: int) -> int:
        """Optimizer steps per epoch (the last partial batch is dropped)."""
        return max(1, n_train // self.batch_size)

    def total_steps(self, n_train: int) -> int:
        if self.iterations is not None:
            return self.iterations
        return self.epochs * self.steps_per_epoch(n_train)


@dataclass(frozen=True)
class PruneSpec:
    """How the dense model is pruned (and, for N:M training, how it is retrained).

    Attributes
    ----------
    method : ``magnitude`` (layer-uniform magnitude, the reference), ``global`` (global
        magnitude), ``lamp`` (layer-adaptive magnitude scores), ``random``, ``nm`` (one-shot
        N:M structured magnitude, e.g. 2:4), or any method registered in ``prune.PRUNERS``:
        fixed masks held while retraining.  ``nm_N_M`` (e.g. ``nm_2_4``, ``nm_1_8``): N:M
        sparse *training* with progressive gradient flow (:mod:`threeregime.pruning.nm_training`).
        ``channel``: structured channel pruning, a smaller network
        (:mod:`threeregime.pruning.channel`).
    density : fraction of prunable weights kept, in (0, 1]; for ``nm`` and ``nm_N_M`` it must
        equal N/M (``nm_N_M`` with the default density 0.1 takes N/M).
    nm : ``"N:M"`` for ``method: nm``.
    options : ``nm_N_M``: fields of :class:`~threeregime.pruning.nm_training.NMTraining` other than
        ``n``/``m`` (``decay``, ``beta0``, ``start``, ``end``, ``every``, ``flow``, ...);
        ``channel``: ``norm`` (``l1`` or ``l2``); other methods take none.
    dense_layers : prunable weights left dense (e.g. a first convolution whose rows cannot
        take N:M); density is counted over the others.
    """

    method: str = "magnitude"
    density: float = 0.1
    nm: str | None = None
    options: dict = field(default_factory=dict)
    dense_layers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        pattern = nm_pattern(self.method) if isinstance(self.method, str) else None
        if pattern is None:
            check_choice("method", self.method, (*prune_methods(), "nm_N_M"))
            if self.method == "nm_N_M":
                raise FieldError("method", "method nm_N_M needs numbers, e.g. nm_2_4 (2 of "
                                           "every 4 weights kept); got 'nm_N_M'")
        elif self.density == 0.1 and pattern[0] / pattern[1] != 0.1:
            object.__setattr__(self, "density", pattern[0] / pattern[1])
        check_float("density", self.density, 0.0, 1.0, lo_open=True)
        object.__setattr__(self, "options", dict(self.options))
        object.__setattr__(self, "dense_layers", tuple(self.dense_layers))
        for i, name in enumerate(self.dense_layers):
            if not isinstance(name, str) or not name:
                raise _err(f"dense_layers[{i}]", name, "a parameter name (e.g. "
                           "features.0.weight)")
        allowed = METHOD_OPTIONS.get("nm_N_M" if pattern else self.method, ())
        for key in self.options:
            if key not in allowed:
                raise FieldError(f"options.{key}", f"options.{key}: unknown option for method "
                                 f"{self.method!r}{did_you_mean(str(key), allowed)}; allowed: "
                                 f"{', '.join(allowed) or 'none'}")
        if self.method == "channel" and "norm" in self.options:
            check_choice("options.norm", self.options["norm"], ("l1", "l2"))
        if self.method == "nm" or pattern is not None:
            n, m = self.nm_pair() if pattern is None else pattern
            if abs(self.density - n / m) > 1e-9:
                raise FieldError("density", f"density must equal N/M = {n}/{m} = {n / m:g} "
                                            f"for method {self.method}; got {self.density!r}")
        if self.method != "nm" and self.nm is not None:
            raise FieldError("nm", f"nm is only used with method nm; got nm={self.nm!r} with "
                                   f"method {self.method!r}")

    def nm_pair(self) -> tuple[int, int]:
        try:
            n_s, m_s = str(self.nm).split(":")
            n, m = int(n_s), int(m_s)
            if not 0 < n <= m:
                raise ValueError
        except ValueError:
            raise FieldError("nm", f"nm must be 'N:M' with 0 < N <= M (e.g. '2:4'); "
                                   f"got {self.nm!r}") from None
        return n, m


@dataclass(frozen=True)
class MeasureSpec:
    """What is measured on the retrained sparse models.

    LMC and CKA on every pair of retraining seeds; the Hessian (optional, costly) on every
    retrained model.  ``extra`` names further measures registered in ``measures.MEASURES``
    (defaults are left out of the canonical JSON: hashes of specs without them are unchanged).
    ``corruptions`` (empty: all that apply) and ``severities`` (0..5) set ``robustness``.
    ``cka_inputs``: the paper (and ``advise``) uses ``train`` (the first ``cka_n`` training
    inputs); ``test`` is the dataclass default only so that old content hashes stay valid.
    """

    lmc: bool = True
    lmc_points: int = 11
    lmc_test: bool = True
    cka: bool = True
    cka_inputs: str = "test"
    cka_n: int | None = None
    hessian: bool = False
    hessian_probes: int = 20
    hessian_n: int = 512
    hessian_top_k: int = 1
    eval_batch_size: int = 1000
    extra: tuple[str, ...] = ()
    corruptions: tuple[str, ...] = ()
    severities: tuple[int, ...] = (0, 1, 2, 3, 4, 5)

    def __post_init__(self) -> None:
        check_pos_int("lmc_points", self.lmc_points, minimum=2)
        object.__setattr__(self, "corruptions", tuple(self.corruptions))
        object.__setattr__(self, "severities", tuple(self.severities))
        for i, name in enumerate(self.corruptions):
            check_choice(f"corruptions[{i}]", name, CORRUPTIONS)
        object.__setattr__(self, "extra", tuple(self.extra))
        allowed = measure_names()[len(MEASURES):]
        for i, name in enumerate(self.extra):
            if name in MEASURES:
                raise FieldError(f"extra[{i}]", f"extra[{i}] names the built-in measure "
                                                f"{name!r}; switch it on with {name}: true")
            check_choice(f"extra[{i}]", name, allowed)
        check_choice("cka_inputs", self.cka_inputs, CKA_INPUTS)
        check_pos_int("cka_n", self.cka_n, allow_none=True, minimum=2)
        check_pos_int("hessian_probes", self.hessian_probes)
        check_pos_int("hessian_n", self.hessian_n)
        check_pos_int("hessian_top_k", self.hessian_top_k)
        check_pos_int("eval_batch_size", self.eval_batch_size)

    def names(self) -> tuple[str, ...]:
        """The measures this spec asks for, in the order the measure stage runs them."""
        flags = {"lmc": self.lmc, "cka": self.cka, "hessian": self.hessian}
        return (*(n for n in MEASURES if flags[n]), *self.extra)


@dataclass(frozen=True)
class PointSpec:
    """One grid point: dense training -> prune -> K retrainings -> measurements.

    ``snapshot_epoch`` selects the dense checkpoint at that epoch of the dense run (the epochs
    temperature axis); ``None`` uses the end of the run.  ``retrain_mode`` is ``finetune``
    (from the pruned weights, the reference), ``rewind`` (to the dense checkpoint at
    ``rewind_epoch``, lottery-ticket style) or ``reinit`` (random re-initialisation with the same
    mask, the "Rethinking the Value of Network Pruning" baseline; ``scratch`` is stored as
    ``reinit``).  With ``prune.method: channel`` both rewind and reinit apply to the smaller
    network (rewind: the checkpoint with the same channels removed).
    """

    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    dense: TrainSpec = field(default_factory=TrainSpec)
    prune: PruneSpec = field(default_factory=PruneSpec)
    retrain: TrainSpec = field(default_factory=TrainSpec)
    retrain_mode: str = "finetune"
    rewind_epoch: int = 0
    measure: MeasureSpec = field(default_factory=MeasureSpec)
    dense_seed: int = 0
    retrain_seeds: tuple[int, ...] = (0, 1, 2)
    snapshot_epoch: int | None = None

    def __post_init__(self) -> None:
        check_choice("retrain_mode", self.retrain_mode, RETRAIN_MODES)
        if self.retrain_mode == "scratch":
            object.__setattr__(self, "retrain_mode", "reinit")
        check_pos_int("rewind_epoch", self.rewind_epoch, minimum=0)
        check_pos_int("dense_seed", self.dense_seed, minimum=0)
        object.__setattr__(self, "retrain_seeds", tuple(self.retrain_seeds))
        if not self.retrain_seeds:
            raise FieldError("retrain_seeds", "retrain_seeds must list at least one seed; got []")
        if len(set(self.retrain_seeds)) != len(self.retrain_seeds):
            raise FieldError("retrain_seeds", f"retrain_seeds must be distinct; got "
                                              f"{list(self.retrain_seeds)}")
        for i, s in enumerate(self.retrain_seeds):
            check_pos_int(f"retrain_seeds[{i}]", s, minimum=0)
        check_pos_int("snapshot_epoch", self.snapshot_epoch, allow_none=True, minimum=0)
        by_epochs = self.dense.iterations is None
        snap = self.snapshot_epoch
        if by_epochs and snap is not None and snap > self.dense.epochs:
            raise FieldError("snapshot_epoch", f"snapshot_epoch must be <= dense.epochs "
                                               f"({self.dense.epochs}); got {self.snapshot_epoch}")
        if by_epochs and self.retrain_mode == "rewind" and self.rewind_epoch > self.dense.epochs:
            raise FieldError("rewind_epoch", f"rewind_epoch must be <= dense.epochs "
                                             f"({self.dense.epochs}); got {self.rewind_epoch}")


@dataclass(frozen=True)
class SweepSpec:
    """A grid over temperature-like and load-like axes around a base point.

    ``axes`` maps axis names (keys of :data:`AXES`) to lists of values; exactly one temperature
    axis and one load axis make a phase diagram, but any number >= 1 is accepted.  The
    category axes ``prune_method`` (also ``prune.method``) and ``retrain_mode`` give one
    phase diagram per value.
    ``dense_seeds`` are the dense-run replicates; the retraining seeds are ``base.retrain_seeds``.
    Its plain data (:func:`to_dict`) adds ``axis_order`` (not hashed) where the axes are not
    in sorted order, so a spec read back from sorted-key JSON (``sweep.json``) keeps its order.
    """

    name: str = "sweep"
    base: PointSpec = field(default_factory=PointSpec)
    axes: dict = field(default_factory=dict)
    dense_seeds: tuple[int, ...] = (0,)
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.replace("_", "").replace(
                "-", "").isalnum():
            raise _err("name", self.name, "a non-empty name of letters, digits, '_' or '-'")
        if not self.axes:
            raise SpecError("axes must name at least one axis; got {}; allowed: "
                            + ", ".join(AXES))
        axes: dict[str, tuple] = {}
        for k, vals in self.axes.items():
            k = AXIS_ALIASES.get(k, k)
            if k in axes:
                raise SpecError(f"axes.{k} is given twice (also as its field path); give it "
                                "once")
            axes[k] = axis_values(k, vals)
        for k in axes:
            if k == "density" and nm_pattern(self.base.prune.method) and any(
                    AXIS_ALIASES.get(a, a) == "prune_method" for a in self.axes):
                continue   # the method axis replaces the base's N:M density (checked below)
            # validate every value through the point spec it produces
            for i, v in enumerate(axes[k]):
                try:
                    apply_axis(self.base, k, v)
                except SpecError as e:
                    raise SpecError(f"axes.{k}[{i}]: {e}") from None
        for i, method in enumerate(axes.get("prune_method", ())):
            pattern = nm_pattern(method)
            if pattern and "density" in axes and not any(
                    same_value(d, pattern[0] / pattern[1]) for d in axes["density"]):
                raise SpecError(f"axes.prune_method[{i}]: {method} keeps density "
                                f"{pattern[0] / pattern[1]:g}, which is not on axes.density "
                                f"{list(axes['density'])}; add it there or drop the method")
        object.__setattr__(self, "axes", axes)
        object.__setattr__(self, "dense_seeds", tuple(self.dense_seeds))
        if not self.dense_seeds or len(set(self.dense_seeds)) != len(self.dense_seeds):
            raise SpecError(f"dense_seeds must be a non-empty list of distinct seeds; got "
                            f"{list(self.dense_seeds)}")
        if "epochs" in axes and self.base.dense.iterations is not None:
            raise SpecError("axes.epochs needs an epoch budget; got base.dense.iterations="
                            f"{self.base.dense.iterations} (remove it)")

    def _plain_extra(self) -> dict:
        return {} if list(self.axes) == sorted(self.axes) else {"axis_order": list(self.axes)}

    @staticmethod
    def _from_plain(data: dict) -> dict:
        """Reorder ``axes`` by ``axis_order`` (:meth:`_plain_extra`) where they come sorted (as
        from sorted-key JSON) and are the same axes; else ``axis_order`` is stale: ignored."""
        data = dict(data)
        order = [str(k) for k in data.pop("axis_order", None) or ()]
        axes = data.get("axes")
        if isinstance(axes, dict) and list(axes) == sorted(axes) and sorted(order) == list(axes):
            data["axes"] = {k: axes[k] for k in order}
        return data

    # -- grid -------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.axes.values())

    def points(self) -> list[tuple[dict, PointSpec]]:
        """Expand the grid deterministically: ``[(coords, point_spec), ...]``.

        Coordinates are in axis order, then dense seed (last, fastest).  For an epochs axis,
        the dense run of every point snapshots all the axis values, so one run serves them all.
        A cell that does not exist is left out (an ``nm_N_M`` method at a density other than
        N/M): it reads as missing in the sweep Dataset.  Category axes are applied first (a
        method replaces the base's before a density is set), so any axis order gives the same
        point specs.
        """
        names = list(self.axes)
        base = self.base
        if "epochs" in self.axes:
            snaps = tuple(sorted(set(base.dense.snapshots) | set(self.axes["epochs"])))
            base = dataclasses.replace(base, dense=dataclasses.replace(base.dense,
                                                                       snapshots=snaps))
        out = []
        for combo in itertools.product(*(self.axes[n] for n in names)):
            if not cell_exists(dict(zip(names, combo))):
                continue
            for seed in self.dense_seeds:
                p = dataclasses.replace(base, dense_seed=seed)
                for n, v in sorted(zip(names, combo), key=lambda nv: AXES[nv[0]].role
                                   != "category"):
                    p = apply_axis(p, n, v)
                coords = dict(zip(names, combo))
                coords["dense_seed"] = seed
                out.append((coords, p))
        return out


# --------------------------------------------------------------------------- YAML files
_KINDS: dict[str, type] = {"sweep": SweepSpec, "point": PointSpec}


def load_yaml(path: str | Path, kind: str | None = None) -> Any:
    """Read a sweep or point spec (``kind``; None: guessed by :func:`spec_kind`) from YAML."""
    p = Path(path)
    raw = read_yaml(p)
    kind = spec_kind(raw, kind, {k: [f.name for f in dataclasses.fields(c)]
                                 for k, c in _KINDS.items()})
    if kind == "sweep" and "axes" not in raw and "base" not in raw and set(raw) <= {
            f.name for f in dataclasses.fields(PointSpec)}:
        raise SpecError(f"{p}: is a point spec (no axes); run it with `threeregime point {p}`, "
                        "or put it under base: and add axes: to make a sweep")
    cls = _KINDS[kind]
    try:
        return from_dict(cls, raw)
    except SpecError as e:
        raise SpecError(f"{p}: {e}") from None
