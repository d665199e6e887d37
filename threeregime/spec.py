"""Frozen, typed specifications of every piece of work, and their content hashes.

A run is a frozen spec and its hash is its address: :func:`canonical_json` writes a spec with
sorted keys and *fields equal to their default left out*, so adding a new field with a default
renames nothing already stored.  :func:`spec_hash` is the first 16 hex digits of the SHA-256 of
that JSON.

Specs are validated on construction; a bad value raises :class:`~threeregime.SpecError` with a
one-line message naming the field, the value and what is allowed.  :func:`load_yaml` reads a
sweep or point file and prefixes the file name; unknown keys get a did-you-mean.  The
generic plain-data / YAML / canonical-JSON machinery lives in :mod:`threeregime.spec_io`; its
public names are re-exported here.

This module imports no torch.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import FieldError, SpecError, did_you_mean
from ._registry import registered_names
from .spec_io import canonical_json, dump_yaml, from_dict, read_yaml, spec_hash, to_dict

__all__ = [
    "DataSpec", "ModelSpec", "TrainSpec", "PruneSpec", "MeasureSpec", "PointSpec", "SweepSpec",
    "AXES", "canonical_json", "spec_hash", "load_yaml", "dump_yaml", "from_dict", "to_dict",
    "check_pos_int", "check_float", "check_choice", "FieldError", "prune_methods",
    "measure_names", "read_yaml",
]

#: built-in pruning methods; methods registered later in ``prune.PRUNERS`` are accepted too
PRUNE_METHODS = ("magnitude", "global", "lamp", "random", "nm")
#: built-in point measures (MeasureSpec's flags); more register in ``measures.MEASURES``
MEASURES = ("lmc", "cka", "hessian")
SCHEDULES = ("step", "cosine", "constant")
RETRAIN_MODES = ("finetune", "rewind", "reinit")
CKA_INPUTS = ("test", "train")
CORRUPTIONS = ("shift", "scale", "mask", "contrast", "brightness", "gaussian_noise", "blur", "jpeg")


# --------------------------------------------------------------------------- validators
# The one set of validators of the package: every user-facing check (specs, advise, plotting)
# goes through these, so errors read alike: "<field> must be <allowed>; got <value>".
# Each raises a FieldError, which carries the field's path: from_dict and load_yaml prefix the
# location (``base.prune.density``, ``sweeps/x.yaml: ...``) from it, never from the text.
def _err(field_name: str, value: Any, allowed: str) -> FieldError:
    return FieldError(field_name, f"{field_name} must be {allowed}; got {value!r}")


def _names(builtin: tuple[str, ...], kind: str) -> tuple[str, ...]:
    extra = sorted(registered_names(kind) - set(builtin))
    return (*builtin, *extra)


def prune_methods() -> tuple[str, ...]:
    """Built-in pruning methods, then those registered since (``prune.PRUNERS``)."""
    return _names(PRUNE_METHODS, "pruning method")


def measure_names() -> tuple[str, ...]:
    """Built-in point measures, then those registered since (``measures.MEASURES``)."""
    return _names(MEASURES, "measure")


def check_pos_int(name: str, v: Any, *, allow_none: bool = False, minimum: int = 1) -> None:
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise _err(name, v, f"an integer >= {minimum}" + (" or null" if allow_none else ""))


def check_float(name: str, v: Any, lo: float, hi: float, *, lo_open: bool = False,
                hi_open: bool = False) -> None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if ok:
        ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        lb = "(" if lo_open else "["
        rb = ")" if hi_open else "]"
        hi_s = "inf" if hi == math.inf else f"{hi:g}"
        raise _err(name, v, f"a number in {lb}{lo:g}, {hi_s}{rb}")


def check_choice(name: str, v: Any, choices: tuple[str, ...]) -> None:
    if v not in choices:
        raise FieldError(name, f"{name} must be one of {', '.join(choices)}; got {v!r}"
                               f"{did_you_mean(str(v), choices)}")


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
    """

    name: str = "mnist1d"
    train_size: int | None = None
    test_size: int | None = None
    seed: int = 0
    root: str | None = None
    augment: bool = False
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise _err("name", self.name, "a registered data source name")
        check_pos_int("train_size", self.train_size, allow_none=True)
        check_pos_int("test_size", self.test_size, allow_none=True)
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
    """One-shot pruning.

    Attributes
    ----------
    method : ``magnitude`` (layer-uniform magnitude, the reference), ``global`` (global
        magnitude), ``lamp`` (layer-adaptive magnitude scores), ``random``, ``nm`` (N:M
        structured magnitude, e.g. 2:4), or any method registered in ``prune.PRUNERS``.
    density : fraction of prunable weights kept, in (0, 1]; for ``nm`` it must equal N/M.
    nm : ``"N:M"`` for ``method: nm``.
    """

    method: str = "magnitude"
    density: float = 0.1
    nm: str | None = None

    def __post_init__(self) -> None:
        check_choice("method", self.method, prune_methods())
        check_float("density", self.density, 0.0, 1.0, lo_open=True)
        if self.method == "nm":
            n, m = self.nm_pair()
            if abs(self.density - n / m) > 1e-9:
                raise FieldError("density", f"density must equal N/M = {n}/{m} = {n / m:g} "
                                            f"for method nm; got {self.density!r}")
        elif self.nm is not None:
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
    mask, the "Rethinking the Value of Network Pruning" baseline).
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
class Axis:
    """What a sweep axis varies, its role and which way is hotter."""

    name: str
    role: str                 # "temperature" | "load"
    hotter: str | None        # "increasing" | "decreasing" | None for load axes
    field: str                # dotted path into PointSpec
    long_name: str
    units: str
    kind: type                # int or float


#: The axes a sweep may vary.  Fewer epochs, a smaller batch, a larger lr and a larger SAM rho
#: all mean a hotter dense run (SPEC.md section 1).
AXES: dict[str, Axis] = {
    "epochs": Axis("epochs", "temperature", "decreasing", "snapshot_epoch",
                   "dense training epochs (snapshot)", "epoch", int),
    "batch_size": Axis("batch_size", "temperature", "decreasing", "dense.batch_size",
                       "dense training batch size", "1", int),
    "lr": Axis("lr", "temperature", "increasing", "dense.lr", "dense training learning rate",
               "1", float),
    "sam_rho": Axis("sam_rho", "temperature", "increasing", "dense.sam_rho",
                    "SAM radius rho of dense training", "1", float),
    "density": Axis("density", "load", None, "prune.density",
                    "fraction of prunable weights kept", "1", float),
    "train_size": Axis("train_size", "load", None, "data.train_size",
                       "number of training examples", "1", int),
}


def _replace_path(obj: Any, path: str, value: Any) -> Any:
    head, _, rest = path.partition(".")
    if not rest:
        return dataclasses.replace(obj, **{head: value})
    return dataclasses.replace(obj, **{head: _replace_path(getattr(obj, head), rest, value)})


@dataclass(frozen=True)
class SweepSpec:
    """A grid over temperature-like and load-like axes around a base point.

    ``axes`` maps axis names (keys of :data:`AXES`) to lists of values; exactly one temperature
    axis and one load axis make a phase diagram, but any number >= 1 is accepted.
    ``dense_seeds`` are the dense-run replicates; the retraining seeds are ``base.retrain_seeds``.
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
            if k not in AXES:
                raise SpecError(f"axes.{k} is not a sweepable axis{did_you_mean(k, AXES)}; "
                                f"allowed: {', '.join(AXES)}")
            if isinstance(vals, (str, bytes)) or not isinstance(vals, (list, tuple)):
                raise _err(f"axes.{k}", vals, "a non-empty list of values")
            if len(vals) == 0:
                raise SpecError(f"axes.{k} must list at least one value; got []")
            kind = AXES[k].kind
            out = []
            for i, v in enumerate(vals):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or (
                        kind is int and not float(v).is_integer()):
                    raise _err(f"axes.{k}[{i}]", v, "an integer" if kind is int else "a number")
                out.append(kind(v))
            if len(set(out)) != len(out):
                dup = sorted({v for v in out if out.count(v) > 1})
                raise SpecError(f"axes.{k} has duplicate values {dup}; each value must appear "
                                "once")
            axes[k] = tuple(sorted(out))
            # validate every value through the point spec it produces
            for i, v in enumerate(axes[k]):
                try:
                    self._apply(self.base, k, v)
                except SpecError as e:
                    raise SpecError(f"axes.{k}[{i}]: {e}") from None
        object.__setattr__(self, "axes", axes)
        object.__setattr__(self, "dense_seeds", tuple(self.dense_seeds))
        if not self.dense_seeds or len(set(self.dense_seeds)) != len(self.dense_seeds):
            raise SpecError(f"dense_seeds must be a non-empty list of distinct seeds; got "
                            f"{list(self.dense_seeds)}")
        if "epochs" in axes and self.base.dense.iterations is not None:
            raise SpecError("axes.epochs needs an epoch budget; got base.dense.iterations="
                            f"{self.base.dense.iterations} (remove it)")

    # -- grid -------------------------------------------------------------------------------
    def _apply(self, point: PointSpec, axis: str, value: Any) -> PointSpec:
        if axis == "epochs":
            dense = point.dense
            if value > dense.epochs:
                raise SpecError(f"epochs value {value} exceeds base.dense.epochs "
                                f"({dense.epochs}): the epochs axis takes snapshots of one run")
            return dataclasses.replace(point, snapshot_epoch=int(value))
        if axis == "batch_size" and point.dense.iterations is None:
            raise SpecError("the batch_size axis keeps the iteration budget fixed: set "
                            "base.dense.iterations (e.g. epochs x steps per epoch at the base "
                            "batch size)")
        return _replace_path(point, AXES[axis].field, value)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.axes.values())

    def points(self) -> list[tuple[dict, PointSpec]]:
        """Expand the grid deterministically: ``[(coords, point_spec), ...]``.

        Coordinates are in axis order, then dense seed (last, fastest).  For an epochs axis,
        the dense run of every point snapshots all the axis values, so one run serves them all.
        """
        names = list(self.axes)
        base = self.base
        if "epochs" in self.axes:
            snaps = tuple(sorted(set(base.dense.snapshots) | set(self.axes["epochs"])))
            base = dataclasses.replace(base, dense=dataclasses.replace(base.dense,
                                                                       snapshots=snaps))
        out = []
        for combo in itertools.product(*(self.axes[n] for n in names)):
            for seed in self.dense_seeds:
                p = dataclasses.replace(base, dense_seed=seed)
                for n, v in zip(names, combo):
                    p = self._apply(p, n, v)
                coords = dict(zip(names, combo))
                coords["dense_seed"] = seed
                out.append((coords, p))
        return out


# --------------------------------------------------------------------------- YAML files
_KINDS: dict[str, type] = {"sweep": SweepSpec, "point": PointSpec}


def load_yaml(path: str | Path, kind: str | None = None) -> Any:
    """Read a sweep (has ``axes``) or point spec from YAML; errors name the file."""
    p = Path(path)
    raw = read_yaml(p)
    if kind is None:
        kind = "sweep" if "axes" in raw else "point"
    if kind == "sweep" and "axes" not in raw and "base" not in raw and set(raw) <= {
            f.name for f in dataclasses.fields(PointSpec)}:
        raise SpecError(f"{p}: is a point spec (no axes); run it with `threeregime point {p}`, "
                        "or put it under base: and add axes: to make a sweep")
    cls = _KINDS[kind]
    try:
        return from_dict(cls, raw)
    except SpecError as e:
        raise SpecError(f"{p}: {e}") from None
