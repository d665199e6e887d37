"""Structured channel pruning: whole filters removed, the network made physically smaller.

Channels are *coupled* when removing one forces a removal elsewhere: a convolution's output
channel is the next layer's input channel and its BatchNorm's channel; in a residual network
every layer that adds into the same residual stream (the stem, each block's last convolution,
the shortcut convolutions of a stage) shares one set of channels.  A coupled set of channels
across layers is a *group* ("Structurally Prune Anything", Fang et al. 2023 / 2024, whose
dependency graph this module uses through the maintained ``torch-pruning`` package).

The method (``prune.method: channel``)
--------------------------------------
1. Trace the model's dependency graph (``torch_pruning.DependencyGraph``) on an eval-mode copy.
   Every group rooted at the output channels of a prunable ``Conv``/``Linear`` (a weight in
   ``names``) is a candidate; the network's output layer (the last ``Linear``/``Conv`` module)
   and every ``Conv``/``Linear`` outside ``names`` keep their output channels.
2. Score each channel of a group by its group norm: the sum, over every coupled ``Conv``/
   ``Linear`` weight slice (the producing filters *and* the consuming input columns), of
   ``|w|^p`` (``norm="l1"``: p = 1; ``"l2"``: p = 2, i.e. the squared L2 norm, which ranks as
   the L2 norm).  BatchNorm affine parameters are not scored (they are removed with their
   channel).  This is ``torch_pruning.importance.GroupMagnitudeImportance(p, "sum", None,
   [Conv, Linear])``.
3. Layer-uniform, as the reference's unstructured pruning: every group keeps
   ``round(q * C_g)`` of its ``C_g`` channels, those of largest score (the smallest scores
   are removed; ties: the smaller index first), with one keep fraction ``q`` for all groups.
   ``q`` solves ``density(q) = d``, where
   ``density(q)`` is the fraction of the prunable weights (``names``) kept when every pruned
   dimension keeps the fraction ``q`` (a weight pruned along its output and its input keeps
   ``q^2``).  A group that would keep no channel is an error (it would remove a whole layer).
4. Prune: the kept channels are sliced out of every coupled parameter (weights, biases,
   BatchNorm parameters and running statistics) into a new, smaller module.

Density for structured pruning = the fraction of the prunable weights (``names``, as for the
unstructured methods) kept; :attr:`ChannelPruning.report` gives it overall and per layer in the
form of :func:`threeregime.pruning.masks.density_report` (numbers of entries of the original weights
that survive).

The masked equivalent
---------------------
:func:`masked_equivalent` is the *original* architecture with every parameter entry the
pruning removes set to zero: a removed output channel's filter and bias, its BatchNorm weight
*and bias* (so the normalised channel is exactly 0 in train and eval mode, whatever its running
statistics), and the consumers' input columns.  Its outputs equal those of the smaller network
(up to float summation order; ``tests/test_channel.py``).  Either the producers' zeros or the
consumers' zero columns alone would already silence a removed channel; the masked network has
both, so that it holds exactly the parameters the smaller network keeps.

Why torch-pruning: its dependency graph, traced from autograd, handles the residual additions,
BatchNorm, flatten and pooling of every zoo model and of ordinary user ``nn.Module`` s; writing
our own would mean re-deriving that graph per architecture.  We use only its graph, its group
importance and its slicing; the ranking, the layer-uniform rule, the density and the masks
are ours.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..errors import SpecError
from ..spec.specs import check_choice, check_float

__all__ = ["ChannelPruning", "NORMS", "apply_plan", "channel_prune", "masked_equivalent"]

NORMS = ("l1", "l2")
_PRUNABLE = (nn.Linear, nn.modules.conv._ConvNd)
_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


@dataclass
class ChannelPruning:
    """Result of :func:`channel_prune`.

    Attributes
    ----------
    model : the smaller network (a new module; the input model is not changed).
    plan : per pruned group, in the order applied: ``(root module name, removed channels)``
        (replayable with :func:`apply_plan`).
    keep_fraction : ``q``, the fraction of channels every group keeps (before rounding).
    report : ``{"overall", "layers", "kept", "total"}`` over the prunable weights, as
        :func:`threeregime.pruning.masks.density_report`.
    masks : per parameter of the *original* model touched by the pruning, a bool mask (True =
        kept); :func:`masked_equivalent` zeroes the rest.
    """

    model: nn.Module
    plan: list[tuple[str, list[int]]]
    keep_fraction: float
    report: dict
    masks: dict[str, Tensor] = field(default_factory=dict)


# --------------------------------------------------------------------------- graph
def _tp():
    try:
        import torch_pruning
    except ImportError:  # pragma: no cover - a declared dependency
        raise SpecError("prune.method channel needs the torch-pruning package; install it "
                        "with pip install torch-pruning") from None
    return torch_pruning


def _graph(model: nn.Module, input_shape: Sequence[int]):
    """Dependency graph of ``model`` (traced in eval mode on zeros; BN statistics untouched)."""
    tp = _tp()
    was = model.training
    model.eval()
    try:
        ex = torch.zeros((2, *[int(s) for s in input_shape]),
                         dtype=next(model.parameters()).dtype)
        return tp.DependencyGraph().build_dependency(model, example_inputs=ex)
    finally:
        model.train(was)


def _output_layer(model: nn.Module) -> nn.Module | None:
    last = None
    for m in model.modules():
        if isinstance(m, _PRUNABLE):
            last = m
    return last


def _groups(dg, model: nn.Module, names: Sequence[str]) -> list:
    """The candidate groups: rooted at a prunable layer's output channels."""
    mods = dict(model.named_modules())
    roots = {n.rsplit(".", 1)[0] if "." in n else "" for n in names}
    ignored = [m for n, m in mods.items() if isinstance(m, _PRUNABLE) and n not in roots]
    out = _output_layer(model)
    if out is not None and out not in ignored:
        ignored.append(out)
    return list(dg.get_all_groups(ignored_layers=ignored, root_module_types=list(_PRUNABLE)))


def _kind(dep) -> str:
    return "out" if dep.handler.__name__.endswith("out_channels") else "in"


# --------------------------------------------------------------------------- density
def _dims(groups, dg, names: Sequence[str]) -> dict[str, list[int]]:
    """Per prunable weight, which of its (out, in) dims a group prunes: 1 = pruned."""
    owner = {}
    for g in groups:
        for dep, _ in g:
            mod = dep.target.module
            if isinstance(mod, _PRUNABLE):
                owner.setdefault(dg._module2name[mod], set()).add(_kind(dep))
    out = {}
    for n in names:
        mname = n.rsplit(".", 1)[0] if "." in n else ""
        kinds = owner.get(mname, set())
        out[n] = [int("out" in kinds), int("in" in kinds)]
    return out


def _density_at(q: float, sizes: dict[str, int], dims: dict[str, list[int]]) -> float:
    total = sum(sizes.values())
    return sum(sizes[n] * q ** sum(dims[n]) for n in sizes) / total


def _solve_q(d: float, sizes: dict[str, int], dims: dict[str, list[int]]) -> float:
    """The keep fraction q in (0, 1] with density(q) = d (bisection; density is monotone)."""
    if _density_at(1.0, sizes, dims) <= d:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _density_at(mid, sizes, dims) < d:
            lo = mid
        else:
            hi = mid
    return hi


# --------------------------------------------------------------------------- masks
def _mask_group(group, dg, masks: dict[str, Tensor]) -> None:
    """Mark (False) every parameter entry the pruning ``group`` removes."""
    for dep, idxs in group:
        mod = dep.target.module
        if not isinstance(mod, nn.Module) or not any(True for _ in mod.parameters(False)):
            continue
        name = dg._module2name[mod]
        ix = torch.as_tensor(list(idxs), dtype=torch.long)
        kind = _kind(dep)
        for pname, p in mod.named_parameters(recurse=False):
            full = f"{name}.{pname}" if name else pname
            mk = masks.setdefault(full, torch.ones(p.shape, dtype=torch.bool))
            if isinstance(mod, _PRUNABLE):
                if getattr(mod, "groups", 1) != 1 or getattr(mod, "transposed", False):
                    raise SpecError(f"channel pruning: layer {name!r} ({type(mod).__name__}) "
                                    "is grouped or transposed; only plain Conv/Linear layers "
                                    "are supported")
                if kind == "out":
                    mk[ix] = False
                elif pname == "weight":
                    mk[:, ix] = False
            elif isinstance(mod, _NORM_TYPES):
                mk[ix] = False
            else:
                raise SpecError(f"channel pruning: layer {name!r} of type "
                                f"{type(mod).__name__} has parameters coupled to pruned "
                                "channels and no known masked form; leave it out of names")


# --------------------------------------------------------------------------- API
def channel_prune(model: nn.Module, density: float, names: Sequence[str],
                  input_shape: Sequence[int], *, norm: str = "l2") -> ChannelPruning:
    """Remove whole channels so that about ``density`` of the prunable weights remain.

    Parameters
    ----------
    model : the dense network (not modified).
    density : target fraction of the weights in ``names`` kept, in (0, 1].
    names : the prunable weights (``models.prunable_names(model)``); their layers' output
        channels may be removed, and density is counted over them.
    input_shape : shape of one input example (for tracing the graph).
    norm : group importance, ``l1`` or ``l2`` (module docstring).

    Returns
    -------
    ChannelPruning

    Raises
    ------
    SpecError
        A bad density or norm, a name that is not a parameter, or a density so low that a
        group would keep no channel (a whole layer removed).
    """
    check_float("density", density, 0.0, 1.0, lo_open=True)
    check_choice("norm", norm, NORMS)
    params = dict(model.named_parameters())
    for n in names:
        if n not in params:
            raise SpecError(f"names: {n!r} is not a parameter of the model")
    tp = _tp()
    work = copy.deepcopy(model)
    dg = _graph(work, input_shape)
    groups = _groups(dg, work, names)
    sizes = {n: params[n].numel() for n in names}
    q = _solve_q(float(density), sizes, _dims(groups, dg, names))
    imp = tp.importance.GroupMagnitudeImportance(
        p=1 if norm == "l1" else 2, group_reduction="sum", normalizer=None,
        target_types=list(_PRUNABLE))
    chosen = []
    for g in groups:
        root = g[0].dep.target.module
        rname = dg._module2name[root]
        c = len(g[0].idxs)
        keep = round(q * c)
        if keep < 1:
            low = _density_at(max(1.0 / len(h[0].idxs) for h in groups), sizes,
                              _dims(groups, dg, names))
            raise SpecError(f"channel pruning to density {density:g} would remove every "
                            f"channel of layer {rname!r} ({c} channels, keep fraction "
                            f"{q:.3g}); use a density of about {low:.3g} or more")
        score = imp(g).double()
        order = torch.sort(score, stable=True).indices        # smallest first
        removed = sorted(int(i) for i in order[:c - keep])
        chosen.append((rname, removed))
    masks: dict[str, Tensor] = {}
    plan = []
    mods = dict(work.named_modules())
    for rname, removed in chosen:
        if not removed:
            continue
        root = mods[rname]
        grp = dg.get_pruning_group(root, dg.get_pruner_of_module(root).prune_out_channels,
                                   removed)
        _mask_group(grp, dg, masks)
        grp.prune()
        plan.append((rname, removed))
    pruned = dict(work.named_parameters())
    layers = {n: pruned[n].numel() / sizes[n] for n in names}
    kept = sum(pruned[n].numel() for n in names)
    total = sum(sizes.values())
    report = {"overall": kept / total, "layers": layers, "kept": kept, "total": total}
    return ChannelPruning(work, plan, q, report, masks)


def apply_plan(model: nn.Module, plan: Sequence[tuple[str, Sequence[int]]],
               input_shape: Sequence[int]) -> nn.Module:
    """A smaller copy of ``model`` with the plan's channels removed (the architecture and the
    kept weights of :attr:`ChannelPruning.model` when ``model`` is the same dense network)."""
    work = copy.deepcopy(model)
    if not plan:
        return work
    dg = _graph(work, input_shape)
    mods = dict(work.named_modules())
    for rname, removed in plan:
        if rname not in mods:
            raise SpecError(f"plan: {rname!r} is not a module of the model")
        root = mods[rname]
        dg.get_pruning_group(root, dg.get_pruner_of_module(root).prune_out_channels,
                             list(removed)).prune()
    return work


def masked_equivalent(model: nn.Module, result: ChannelPruning) -> nn.Module:
    """A copy of the original ``model`` with every entry the pruning removes set to 0."""
    work = copy.deepcopy(model)
    params = dict(work.named_parameters())
    with torch.no_grad():
        for name, mk in result.masks.items():
            params[name].mul_(mk.to(params[name].device, params[name].dtype))
    return work
