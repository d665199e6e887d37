"""One-shot pruning masks: which prunable weights a sparse network keeps.

The reference pipeline of Zhou et al. ("A Three-regime Model of Network Pruning", ICML 2023)
prunes a dense network once, unstructured, by magnitude and *layer-uniformly* (the same kept
fraction in every prunable layer), then retrains with the mask fixed.  This module computes such
masks and a few alternatives, applies them and reports the realised density.

Methods (``PruneSpec.method``; each registered in :data:`PRUNERS`)
-------------------------------------------------------------------
``magnitude``
    Layer-uniform magnitude: layer ``l`` with ``n_l`` weights keeps the ``round(d * n_l)``
    weights of largest ``|w|`` (at least one).  The reference method of the paper.
``global``
    Global magnitude: one threshold over all prunable layers; keeps exactly ``round(d * N)``
    weights of largest ``|w|`` (``N`` = all prunable weights).  Small layers may lose all
    their weights (layer collapse); :func:`density_report` shows it.
``lamp``
    Layer-adaptive magnitude pruning (Lee, Park, Mo, Ahn & Shin, "Layer-adaptive sparsity for
    the magnitude-based pruning", ICLR 2021).  Within a layer, index the weights ascending by
    squared magnitude; the score of weight ``u`` is ``w_u^2 / sum_{v >= u} w_v^2``.  The
    ``round(d * N)`` weights of largest score are kept, over all prunable layers together.
    Every layer's largest weight scores 1, so no layer collapses while ``round(d * N)`` is at
    least the number of layers.
``random``
    Layer-uniform random: layer ``l`` keeps ``round(d * n_l)`` (at least one) weights drawn
    uniformly without replacement by a ``torch.Generator`` seeded with ``seed``; the draw
    depends on ``seed`` and on the order and sizes of ``names``, never on the weights.
``nm``
    N:M structured magnitude (``PruneSpec.nm``, e.g. ``"2:4"``, as accelerated by sparse tensor
    cores): each weight is viewed as a 2-D matrix ``(out, rest)`` (``w.reshape(out, -1)``; a
    1-D weight is one row) and every run of ``M`` consecutive entries of a row keeps its ``N``
    largest ``|w|``.  For a convolution ``(out, in, kh, kw)`` the groups therefore run over the
    flattened ``(in, kh, kw)`` axis in memory order, not over input channels at fixed kernel
    position (NVIDIA's ASP permutes first; this module does not).  A row length not divisible
    by ``M`` is an error.

Conventions
-----------
* Counts use Python's :func:`round` (half to even) on ``density * n``.
* Ties are broken deterministically: larger score first, then the layer that comes first in
  ``names``, then the smaller flat (row-major) index.  All scores are computed in float64.
* Density is counted over the prunable layers named in ``names`` only.
* Nothing touches the global RNG state; only ``random`` uses randomness, through its own
  generator.

Adding a method: register ``fn(weights, density, spec, generator) -> masks`` with
``@PRUNERS.register("name")``, where ``weights`` maps each prunable name to a detached tensor
and the result maps the same names to boolean tensors of the same shapes.
(``PruneSpec`` still validates ``method`` against its own list of names.)
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import SpecError, ThreeRegimeError, did_you_mean
from ..registry import Registry
from ..spec.specs import PruneSpec, from_dict

__all__ = ["PRUNERS", "apply_masks", "check_nm_layer", "compute_masks", "density_report",
           "masks_from_state", "nm_mask"]

Pruner = Callable[[dict[str, Tensor], float, PruneSpec, torch.Generator], dict[str, Tensor]]

#: Pruning methods by name; one signature ``fn(weights, density, spec, generator) -> masks``.
PRUNERS: Registry[Pruner] = Registry("pruning method")


# --------------------------------------------------------------------------- helpers
def _tensors_of(model_or_state: Any, what: str = "model_or_state") -> dict[str, Tensor]:
    """Name -> tensor view of a module (its parameters) or of a state dict (no copies)."""
    if isinstance(model_or_state, nn.Module):
        return dict(model_or_state.named_parameters())
    if isinstance(model_or_state, Mapping):
        return dict(model_or_state)
    raise SpecError(f"{what} must be an nn.Module or a mapping of name -> tensor; got "
                    f"{type(model_or_state).__name__}")


def _lookup(tensors: dict[str, Tensor], names: Any, what: str = "names") -> dict[str, Tensor]:
    """Check ``names`` against ``tensors`` and return them in order."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise SpecError(f"names must be a list of parameter names; got {names!r}")
    if len(names) == 0:
        raise SpecError("model has no prunable layers (names is empty); pass the names from "
                        "models.prunable_names(model), or include_classifier=True for a "
                        "one-layer model")
    seen: set[str] = set()
    out: dict[str, Tensor] = {}
    for name in names:
        if name in seen:
            raise SpecError(f"names lists {name!r} twice; each prunable layer must appear once")
        seen.add(name)
        if name not in tensors:
            known = [k for k, v in tensors.items() if isinstance(v, Tensor) and v.dim() >= 2]
            known = known or list(tensors)
            few = ", ".join(known[:5]) + (", ..." if len(known) > 5 else "")
            raise SpecError(f"{what}: {name!r} is not a parameter of the model"
                            f"{did_you_mean(str(name), tensors)}; valid names include: "
                            f"{few or '(none)'}")
        t = tensors[name]
        if not isinstance(t, Tensor):
            raise SpecError(f"state[{name!r}] must be a torch.Tensor; got {type(t).__name__}")
        out[name] = t
    return out


def _layer_count(n: int, density: float) -> int:
    """Weights kept by a layer-uniform method: round(d * n), at least 1 (0 for an empty layer)."""
    return min(n, max(1, round(density * n))) if n > 0 else 0


def _global_count(total: int, density: float) -> int:
    return min(total, max(1, round(density * total))) if total > 0 else 0


def _check_finite(name: str, w: Tensor) -> None:
    if w.is_floating_point() and not bool(torch.isfinite(w).all()):
        bad = int((~torch.isfinite(w)).sum())
        raise ThreeRegimeError(f"weight {name!r} has {bad} non-finite values; cannot rank it by "
                               "magnitude (did training diverge?)")


def _rank_desc(w: Tensor) -> tuple[Tensor, Tensor]:
    """Flat indices of ``|w|`` sorted descending, ties by smaller index; and the sorted |w|.

    Returns ``(order, mags)``, both of shape ``(numel,)``; ``mags`` is float64.
    """
    mag = w.detach().reshape(-1).to(torch.float64).abs()
    mags, order = torch.sort(mag, descending=True, stable=True)
    return order, mags


def _masks_from_ranks(weights: dict[str, Tensor], orders: dict[str, Tensor],
                      kept: dict[str, Tensor]) -> dict[str, Tensor]:
    """Scatter per-rank keep flags (``kept[name][r]`` for rank ``r``) back to weight shape."""
    masks = {}
    for name, w in weights.items():
        flat = torch.zeros(w.numel(), dtype=torch.bool, device=w.device)
        flat[orders[name][kept[name]]] = True
        masks[name] = flat.reshape(w.shape)
    return masks


def _global_select(weights: dict[str, Tensor], ranked_scores: dict[str, Tensor],
                   orders: dict[str, Tensor], k: int) -> dict[str, Tensor]:
    """Keep the ``k`` largest scores over all layers.

    ``ranked_scores[name]`` lists a layer's scores in its rank order (``orders[name]``); a
    stable descending sort of their concatenation breaks ties by layer position in ``names``,
    then by rank within the layer.
    """
    dev = next(iter(ranked_scores.values())).device
    cat = torch.cat([s.to(dev) for s in ranked_scores.values()])      # (N,)
    top = torch.sort(cat, descending=True, stable=True).indices[:k]
    keep = torch.zeros(cat.numel(), dtype=torch.bool, device=cat.device)
    keep[top] = True
    kept, start = {}, 0
    for name, s in ranked_scores.items():
        kept[name] = keep[start:start + s.numel()].to(s.device)
        start += s.numel()
    return _masks_from_ranks(weights, orders, kept)


def _global_top(weights: dict[str, Tensor], density: float,
                rank: Callable[[Tensor], tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
    """Keep the round(d * N) largest scores over all layers; ``rank(w)`` gives a layer's
    ``(order, scores in that order)``."""
    orders, scores = {}, {}
    for name, w in weights.items():
        _check_finite(name, w)
        orders[name], scores[name] = rank(w)
    total = sum(w.numel() for w in weights.values())
    return _global_select(weights, scores, orders, _global_count(total, density))


# --------------------------------------------------------------------------- methods
@PRUNERS.register("magnitude")
def _magnitude(weights: dict[str, Tensor], density: float, spec: PruneSpec,
               generator: torch.Generator) -> dict[str, Tensor]:
    """Layer-uniform magnitude: each layer keeps its round(d * n_l) largest |w|."""
    orders, kept = {}, {}
    for name, w in weights.items():
        _check_finite(name, w)
        orders[name], _ = _rank_desc(w)
        keep = torch.zeros(w.numel(), dtype=torch.bool, device=w.device)
        keep[:_layer_count(w.numel(), density)] = True
        kept[name] = keep
    return _masks_from_ranks(weights, orders, kept)


@PRUNERS.register("global")
def _global(weights: dict[str, Tensor], density: float, spec: PruneSpec,
            generator: torch.Generator) -> dict[str, Tensor]:
    """Global magnitude: the round(d * N) largest |w| over all prunable layers."""
    return _global_top(weights, density, _rank_desc)


def _lamp_scores(w: Tensor) -> tuple[Tensor, Tensor]:
    """LAMP scores of one layer in rank order (Lee et al., ICLR 2021).

    With the weights indexed ascending by squared magnitude, the score of ``u`` is
    ``w_u^2 / sum_{v >= u} w_v^2``.  Listed in *descending* rank order, the denominator is the
    running sum of the squares seen so far, so one cumulative sum gives all scores.
    A weight of zero (and so also a 0/0) scores 0.

    Returns
    -------
    order : (numel,) int64 flat indices, largest ``|w|`` first (ties: smaller index first).
    scores : (numel,) float64 scores of ``w.flatten()[order]``, non-increasing.
    """
    order, mags = _rank_desc(w)
    sq = mags * mags                        # exact for float32 weights
    denom = torch.cumsum(sq, dim=0)         # sum over this weight and all larger ones
    scores = torch.where(sq > 0, sq / torch.where(denom > 0, denom, 1.0), 0.0)
    return order, scores


@PRUNERS.register("lamp")
def _lamp(weights: dict[str, Tensor], density: float, spec: PruneSpec,
          generator: torch.Generator) -> dict[str, Tensor]:
    """LAMP: global top round(d * N) of the layer-wise LAMP scores."""
    return _global_top(weights, density, _lamp_scores)


@PRUNERS.register("random")
def _random(weights: dict[str, Tensor], density: float, spec: PruneSpec,
            generator: torch.Generator) -> dict[str, Tensor]:
    """Layer-uniform random: round(d * n_l) weights per layer, uniformly without replacement."""
    masks = {}
    for name, w in weights.items():
        n = w.numel()
        pick = torch.randperm(n, generator=generator)[:_layer_count(n, density)]  # CPU draw
        flat = torch.zeros(n, dtype=torch.bool)
        flat[pick] = True
        masks[name] = flat.reshape(w.shape).to(w.device)
    return masks


def check_nm_layer(name: str, shape: tuple[int, ...], n_keep: int, m: int, *,
                   what: str = "nm") -> None:
    """One-line SpecError when layer ``name`` cannot take the N:M pattern: its weight,
    flattened to rows ``(out, in * k)``, must have a row length divisible by ``m``."""
    row = math.prod(shape[1:]) if len(shape) >= 2 else math.prod(shape)
    if row % m:
        raise SpecError(f"{what} {n_keep}:{m}: layer {name!r} with shape {tuple(shape)} has "
                        f"rows of length {row}, not divisible by M={m}; use an M "
                        "that divides it or leave the layer out of names")


def nm_mask(w: Tensor, n_keep: int, m: int) -> Tensor:
    """Boolean N:M mask of ``w``: every run of ``m`` consecutive entries (memory order) keeps
    its ``n_keep`` largest ``|w|`` (float64; ties: the smaller index).

    The rows of ``w`` (or of each member of a stacked ``w``) must have a length divisible by
    ``m`` (:func:`check_nm_layer`), so that no group straddles two rows.
    """
    groups = w.detach().reshape(-1, m).to(torch.float64).abs()         # (G, M)
    order = torch.sort(groups, dim=1, descending=True, stable=True).indices
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(1, order[:, :n_keep], True)
    return keep.reshape(w.shape)


@PRUNERS.register("nm")
def _nm(weights: dict[str, Tensor], density: float, spec: PruneSpec,
        generator: torch.Generator) -> dict[str, Tensor]:
    """N:M: every M consecutive weights of a flattened row keep their N largest |w|."""
    n_keep, m = spec.nm_pair()
    masks = {}
    for name, w in weights.items():
        _check_finite(name, w)
        check_nm_layer(name, tuple(w.shape), n_keep, m)
        masks[name] = nm_mask(w, n_keep, m)
    return masks


# --------------------------------------------------------------------------- public API
def compute_masks(model_or_state: nn.Module | Mapping[str, Tensor], spec: PruneSpec,
                  names: Sequence[str], *, seed: int = 0) -> dict[str, Tensor]:
    """One-shot pruning masks of the prunable layers.

    Parameters
    ----------
    model_or_state : nn.Module or mapping of name -> tensor
        The dense model, or its state dict.  Not modified.
    spec : PruneSpec (or a mapping of its fields)
        ``method``, ``density`` (fraction of the prunable weights kept, in (0, 1]) and, for
        ``nm``, ``nm = "N:M"``.  See the module docstring for the methods and their papers.
    names : list of str
        The prunable parameter names, usually ``models.prunable_names(model)``.  Density is
        counted over these layers only.
    seed : int
        Seed of the ``torch.Generator`` passed to the method (used by ``random`` only).

    Returns
    -------
    dict of str -> torch.BoolTensor
        For every name (in the order of ``names``), a mask of the parameter's shape and device;
        ``True`` means kept.  Layer-uniform methods keep ``round(d * n_l)`` (at least 1)
        weights per layer; ``global`` and ``lamp`` keep exactly ``round(d * N)`` overall.

    Raises
    ------
    SpecError
        An invalid spec, an empty or ill-formed ``names``, a name that is not a parameter, or
        (``nm``) a row length not divisible by M.
    ThreeRegimeError
        A magnitude-based method meets non-finite weights.
    """
    if isinstance(spec, Mapping):
        spec = from_dict(PruneSpec, spec, path="prune")
    if not isinstance(spec, PruneSpec):
        raise SpecError(f"spec must be a PruneSpec; got {type(spec).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SpecError(f"seed must be an integer; got {seed!r}")
    fn = PRUNERS.get(spec.method, field="method")
    weights = {k: v.detach() for k, v in _lookup(_tensors_of(model_or_state), names).items()}
    generator = torch.Generator().manual_seed(seed)
    masks = fn(weights, float(spec.density), spec, generator)
    return _check_masks(spec.method, weights, masks)


def _check_masks(method: str, weights: dict[str, Tensor], masks: Any) -> dict[str, Tensor]:
    """The pruner contract: same names, same shapes, boolean."""
    if not isinstance(masks, Mapping) or set(masks) != set(weights):
        got = sorted(masks) if isinstance(masks, Mapping) else type(masks).__name__
        raise ThreeRegimeError(f"pruning method {method!r} must return a mask for exactly the "
                               f"names {list(weights)}; got {got}")
    out = {}
    for name, w in weights.items():
        m = masks[name]
        if not isinstance(m, Tensor) or m.dtype != torch.bool or m.shape != w.shape:
            raise ThreeRegimeError(
                f"pruning method {method!r} returned for {name!r} "
                f"{getattr(m, 'dtype', type(m).__name__)} of shape "
                f"{tuple(getattr(m, 'shape', ()))}; need torch.bool of shape {tuple(w.shape)}")
        out[name] = m
    return out


def apply_masks(model_or_state: nn.Module | Mapping[str, Tensor],
                masks: Mapping[str, Tensor]) -> None:
    """Zero the pruned entries in place (``w[~mask] = 0``, under ``torch.no_grad``).

    Kept entries are untouched (bit for bit), and a pruned NaN becomes 0.  Call it after every
    optimiser step of retraining: momentum and weight decay would otherwise move pruned
    weights off zero.

    Parameters
    ----------
    model_or_state : nn.Module or mapping of name -> tensor
        Parameters (by ``named_parameters`` name) or state-dict tensors to modify.
    masks : mapping of name -> bool tensor
        As returned by :func:`compute_masks`.

    Raises
    ------
    SpecError
        A name that is not in the model, or a mask of the wrong shape or dtype.
    """
    tensors = _tensors_of(model_or_state)
    if not isinstance(masks, Mapping):
        raise SpecError(f"masks must be a mapping of name -> bool tensor; got "
                        f"{type(masks).__name__}")
    targets = _lookup(tensors, list(masks), "masks") if masks else {}
    for name, t in targets.items():
        m = masks[name]
        if not isinstance(m, Tensor) or m.dtype != torch.bool or m.shape != t.shape:
            raise SpecError(f"masks[{name!r}] must be a bool tensor of shape {tuple(t.shape)}; "
                            f"got {getattr(m, 'dtype', type(m).__name__)} of shape "
                            f"{tuple(getattr(m, 'shape', ()))}")
    with torch.no_grad():
        for name, t in targets.items():
            t.masked_fill_(~masks[name].to(t.device), 0)


def density_report(masks: Mapping[str, Tensor]) -> dict:
    """Realised density of a set of masks.

    Returns
    -------
    dict
        ``{"overall": kept / total, "layers": {name: kept_l / n_l}, "kept": int,
        "total": int}``; a layer with no entries has density ``nan``.
    """
    if not isinstance(masks, Mapping) or not masks:
        got = "{}" if isinstance(masks, Mapping) else type(masks).__name__
        raise SpecError(f"masks must be a non-empty mapping of name -> bool tensor; got {got}")
    layers, kept, total = {}, 0, 0
    for name, m in masks.items():
        if not isinstance(m, Tensor) or m.dtype != torch.bool:
            raise SpecError(f"masks[{name!r}] must be a bool tensor; got "
                            f"{getattr(m, 'dtype', type(m).__name__)}")
        k, n = int(m.sum()), m.numel()
        layers[name] = k / n if n else float("nan")
        kept += k
        total += n
    return {"overall": kept / total if total else float("nan"), "layers": layers,
            "kept": kept, "total": total}


def masks_from_state(model_or_state: nn.Module | Mapping[str, Tensor],
                     names: Sequence[str]) -> dict[str, Tensor]:
    """Recover masks from a pruned model or checkpoint: ``mask = (w != 0)``.

    Exact when no kept weight is exactly zero (true of trained float weights in practice);
    a kept weight that happens to be 0.0 is reported as pruned.
    """
    tensors = _lookup(_tensors_of(model_or_state), names)
    return {name: (t.detach() != 0) for name, t in tensors.items()}
