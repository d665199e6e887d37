"""One entry point from a pruning method name to what retraining needs (the stages' glue).

The sweep's ``prune.method`` names a *family*:

``magnitude``, ``global``, ``lamp``, ``random``, ``nm`` and any registered pruner
    One-shot masks (:func:`threeregime.pruning.masks.compute_masks`), held fixed while retraining.
``nm_N_M`` (e.g. ``nm_2_4``, ``nm_1_8``)
    N:M sparse *training* with progressive gradient flow (:mod:`threeregime.pruning.nm_training`):
    no fixed mask; the retraining recomputes N:M masks and decays the gradient flow to the
    pruned weights.  Its density is N/M.
``channel``
    Structured channel pruning (:mod:`threeregime.pruning.channel`): a smaller network, a new
    architecture template shared by all retraining seeds of the source.

:func:`prune_source` returns a :class:`PrunedSource` (template, starting weights, fixed masks,
density report, channel plan, N:M recipe), and :func:`start_state` the weights a retraining
mode starts from: ``finetune`` (the pruned weights), ``rewind`` (an earlier dense checkpoint,
pruned the same way) or ``scratch`` / ``reinit`` (a fresh random initialisation of the pruned
architecture, Liu et al., "Rethinking the Value of Network Pruning", ICLR 2019).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..errors import SpecError, did_you_mean
from ..models.zoo import prunable_names
from ..spec.specs import PruneSpec, nm_pattern
from .channel import apply_plan, channel_prune
from .masks import compute_masks, density_report, nm_mask
from .nm_training import NMTraining, check_layers

__all__ = ["PrunedSource", "family", "fresh_init", "nm_pattern", "prune_names",
           "check_family", "prune_source", "start_state"]


def family(method: str) -> str:
    """``"channel"``, ``"nm_training"`` or ``"mask"`` (fixed one-shot masks)."""
    if method == "channel":
        return "channel"
    return "nm_training" if nm_pattern(method) else "mask"


def prune_names(template: nn.Module, spec: PruneSpec, *,
                include_classifier: bool = False) -> list[str]:
    """The weights ``spec`` prunes: :func:`threeregime.models.zoo.prunable_names` without
    ``spec.dense_layers`` (each must be one of them: one-line error with did-you-mean)."""
    names = prunable_names(template, include_classifier=include_classifier)
    for i, name in enumerate(spec.dense_layers):
        if name not in names:
            raise SpecError(f"prune.dense_layers[{i}] must be a prunable weight of the model "
                            f"({', '.join(names)}); got {name!r}{did_you_mean(name, names)}")
    left = [n for n in names if n not in spec.dense_layers]
    if not left:
        raise SpecError("prune.dense_layers leaves no prunable weight; keep at least one "
                        "layer out of it")
    return left


def check_family(template: nn.Module, spec: PruneSpec, names: Sequence[str],
                 input_shape: Sequence[int]) -> None:
    """One-line SpecError, before any training, when ``spec`` cannot prune ``template``: an
    N:M pattern a layer cannot take, or a channel pruning that would remove a whole layer
    (decided by the layer sizes only, so ``template``'s own weights serve)."""
    pattern = nm_pattern(spec.method)
    if pattern:
        params = dict(template.named_parameters())
        cfg = NMTraining(n=pattern[0], m=pattern[1], **spec.options)
        try:
            check_layers(cfg, {k: tuple(params[k].shape) for k in names})
        except SpecError as e:
            raise SpecError(f"prune.method {spec.method}: {e} (e.g. prune.dense_layers: "
                            f"[{_first_bad(params, names, pattern[1])}])") from None
    elif spec.method == "channel":
        channel_prune(template, spec.density, names, input_shape,
                      norm=spec.options.get("norm", "l2"))


def _first_bad(params: Mapping[str, Tensor], names: Sequence[str], m: int) -> str:
    return next(k for k in names if math.prod(params[k].shape[1:]) % m)


@dataclass
class PrunedSource:
    """What retraining a pruned dense source needs.

    Attributes
    ----------
    template : the architecture to retrain (a new, smaller one for ``channel``).
    state : the pruned weights in ``template``'s layout (the fine-tuning start).
    masks : fixed masks to hold (empty for ``nm_N_M`` and ``channel``).
    report : density report (:func:`threeregime.pruning.masks.density_report` form).
    plan : the channel plan (``channel``), else ``[]``.
    nm : the N:M training recipe (``nm_N_M``), else None.
    """

    template: nn.Module
    state: dict[str, Tensor]
    masks: dict[str, Tensor] = field(default_factory=dict)
    report: dict = field(default_factory=dict)
    plan: list = field(default_factory=list)
    nm: NMTraining | None = None


def _loaded(template: nn.Module, state: Mapping[str, Tensor]) -> nn.Module:
    m = copy.deepcopy(template)
    m.load_state_dict(dict(state))
    return m


def prune_source(template: nn.Module, state: Mapping[str, Tensor], spec: PruneSpec | Mapping,
                 names: Sequence[str], input_shape: Sequence[int], *, seed: int = 0,
                 options: Mapping | None = None) -> PrunedSource:
    """Prune dense weights ``state`` of ``template`` by the family of ``spec.method``.

    ``options``: the N:M recipe's fields (:class:`~threeregime.pruning.nm_training.NMTraining`,
    without ``n``/``m``) or ``{"norm": "l1"|"l2"}`` for ``channel``.
    """
    method = spec["method"] if isinstance(spec, Mapping) else spec.method
    density = float(spec["density"] if isinstance(spec, Mapping) else spec.density)
    opts = dict(options or {})
    fam = family(method)
    if fam == "channel":
        res = channel_prune(_loaded(template, state), density, names, input_shape,
                            norm=opts.pop("norm", "l2"))
        if opts:
            raise SpecError(f"options.{next(iter(opts))}: unknown option for method channel; "
                            "allowed: norm")
        return PrunedSource(res.model, {k: v.detach().clone()
                                        for k, v in res.model.state_dict().items()},
                            report=res.report, plan=res.plan)
    if fam == "nm_training":
        n, m = nm_pattern(method)
        if abs(density - n / m) > 1e-9:
            raise SpecError(f"density must equal N/M = {n / m:g} for method {method}; got "
                            f"{density:g}")
        cfg = NMTraining(n=n, m=m, **opts)
        params = dict(template.named_parameters())
        check_layers(cfg, {k: tuple(params[k].shape) for k in names})
        first = {k: nm_mask(state[k], n, m) for k in names}
        return PrunedSource(template, dict(state), report=density_report(first), nm=cfg)
    masks = compute_masks(dict(state), spec, names, seed=seed)
    return PrunedSource(template, dict(state), masks=masks, report=density_report(masks))


def fresh_init(model: nn.Module, seed: int) -> dict[str, Tensor]:
    """A fresh random initialisation of ``model``'s architecture (its own widths), seeded.

    Every submodule's ``reset_parameters`` runs under a forked CPU RNG seeded with ``seed``
    (the global RNG is left as it was); then the model's own ``init_weights()`` if it has one
    (``PreResNet20``: He fan-out / BatchNorm 1, 0, as :func:`threeregime.models.zoo.build_model`).
    """
    m = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(int(seed))
        for mod in m.modules():
            if mod is not m and callable(getattr(mod, "reset_parameters", None)):
                mod.reset_parameters()
        own = getattr(m, "init_weights", None)
        if callable(own):
            own()
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def start_state(mode: str, pruned: PrunedSource, dense_template: nn.Module,
                input_shape: Sequence[int], *, rewind_state: Mapping[str, Tensor] | None = None,
                seed: int = 0) -> dict[str, Tensor]:
    """The weights a retraining starts from.

    ``finetune``: the pruned weights.  ``rewind``: ``rewind_state`` (a dense checkpoint of
    the original architecture), with the same channels removed for ``channel``.
    ``scratch`` / ``reinit``: :func:`fresh_init` of the pruned architecture with ``seed``.
    (Fixed masks and N:M masks are applied by the training loop.)
    """
    if mode == "finetune":
        return {k: v.clone() for k, v in pruned.state.items()}
    if mode == "rewind":
        if rewind_state is None:
            raise SpecError("retrain_mode rewind needs the rewind checkpoint; got none")
        if pruned.plan:
            small = apply_plan(_loaded(dense_template, rewind_state), pruned.plan, input_shape)
            return {k: v.detach().clone() for k, v in small.state_dict().items()}
        return {k: v.clone() for k, v in rewind_state.items()}
    if mode in ("scratch", "reinit"):
        return fresh_init(pruned.template, seed)
    raise SpecError(f"retrain_mode must be one of finetune, rewind, scratch; got {mode!r}")
