"""N:M sparse training with progressive gradient flow (a retraining mode of :func:`train.fit`).

Reference: Bambhaniya, Yazdanbakhsh, Subramanian, Kao, Kundu, Mishra & Krishna, "Progressive
Gradient Flow for Robust N:M Sparsity Training in Transformers" (2024), which builds on SR-STE
(Zhou et al., "Learning N:M Fine-grained Structured Sparse Neural Networks From Scratch", ICLR
2021).  The paper could not be consulted while writing this module; what follows is our reading
of its description, and the points where that reading is uncertain are marked.

What is trained
---------------
Every N:M layer keeps a *dense* latent weight ``W``.  Before every forward pass the mask
``M = nm(W)`` holds, in every group of ``M`` consecutive entries of the weight flattened to
``(out, in * k)`` (kernel positions included, memory order), the ``N`` entries of largest
``|W|`` (ties: the smaller index; scores in float64, as :func:`threeregime.pruning.masks.nm_mask`,
so the first mask equals the one-shot ``nm`` pruner's).  The mask is recomputed from the current
``W`` every ``every`` optimizer steps (1 = every step, SR-STE's choice).  The forward pass uses

``flow="gradient"`` (default)
    ``W~ = W * M``: the N:M-sparse weights exactly.  The backward pass sends the gradient
    ``g = dL/dW~`` to the kept weights unchanged and ``beta_t * g`` to the pruned ones:
    ``dW = g * (M + beta_t * (1 - M))``.  ``beta_t = 1`` for the whole run is the
    straight-through estimator of SR-STE (its "dense gradient"); a ``beta_t`` decaying to 0
    is the progressive reduction of that gradient flow which the paper argues makes high
    sparsity (1:8, 1:16, ...) robust.
``flow="mask"``
    The paper's mask-decay gradient flow (MDGF) as we read it: the pruned weights are not
    zeroed but *scaled* in the forward pass, ``W~ = W * (M + beta_t * (1 - M))``, so that the
    same factor reaches them in the backward pass; the pattern becomes exactly N:M once
    ``beta_t = 0``.  (Uncertain: whether the paper scales the forward, the backward or both.)

Optionally SR-STE's sparse-refined term ``refine * (1 - M) * W`` is added to the gradient of
the pruned latent weights (``refine = 0`` leaves it out; SR-STE uses about 2e-4).

The decay of the gradient-flow factor
-------------------------------------
With ``t`` the optimizer step (0-based), ``T`` the budget and
``u = clip((t / T - start) / (end - start), 0, 1)``:

=============== ============================================================================
``constant``    ``beta = beta0`` throughout (``beta0 = 1``: the SR-STE / STE baseline)
``linear``      ``beta = beta0 * (1 - u)``
``cosine``      ``beta = beta0 * (1 + cos(pi * u)) / 2``
``exponential`` ``beta = beta0 * (exp(-rate * u) - exp(-rate)) / (1 - exp(-rate))``
                (an exponential decay shifted to reach exactly 0 at ``u = 1``)
``step``        ``beta = beta0 * (1 - floor(steps * u) / steps)`` (``steps`` equal drops)
=============== ============================================================================

Before ``start`` the factor is ``beta0``; from ``end`` on it is 0 (the paper ends training with
a purely sparse phase; uncertain: the exact phase lengths and the constants of its exponential
and step-wise schedules, which we expose as ``start``, ``end``, ``rate`` and ``steps``).  Not
implemented: the paper's structure-decay variant (SDGF), which tightens the pattern itself
(e.g. 8:8 -> 4:8 -> 2:8 -> 1:8) during training.

The trained model
-----------------
What :func:`train.fit` returns for an N:M layer (states, snapshots, evaluations) is the
*effective sparse* weight ``W * M`` with the current mask, so every saved model is exactly N:M
(``flow="mask"`` included: the saved weight drops the pruned entries whatever ``beta_t``), and
:attr:`train.FitResult.masks` holds the masks.  The latent dense weights are internal to a run.

Implementation: the scaled gradient is obtained without a custom autograd function, as
``W~ = W * M + c * (W - W.detach())`` with ``c = beta_t * (1 - M)`` (forward value ``W * M``
exactly, derivative ``M + c``), so it runs unchanged under ``torch.func.vmap`` (ensemble engine)
and in an ordinary module forward (loop engine).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import SpecError
from ..spec.specs import FieldError, check_choice, check_float, check_pos_int
from .masks import check_nm_layer, nm_mask

__all__ = ["DECAYS", "FLOWS", "NMTraining", "Flow", "effective_weight", "check_layers"]

#: decay schedules of the gradient-flow factor
DECAYS = ("constant", "linear", "cosine", "exponential", "step")
#: where the factor acts: on the gradient only, or on the forward mask (MDGF)
FLOWS = ("gradient", "mask")


@dataclass(frozen=True)
class NMTraining:
    """N:M sparse training with a decaying gradient flow to the pruned weights.

    Attributes
    ----------
    n, m : the pattern: ``n`` of every ``m`` consecutive weights are kept (0 < n <= m).
    decay : schedule of the factor ``beta_t`` (:data:`DECAYS`; see the module docstring).
    beta0 : the factor before the decay starts, in [0, 1].
    start, end : fractions of the budget between which the factor decays (0 <= start < end
        <= 1); after ``end`` it is 0 (except ``constant``).
    rate : steepness of ``exponential`` (> 0).
    steps : number of equal drops of ``step`` (>= 1).
    every : recompute the masks every ``every`` optimizer steps.
    flow : ``gradient`` (forward exactly N:M, pruned weights get ``beta_t * g``) or ``mask``
        (MDGF: the pruned weights enter the forward scaled by ``beta_t``).
    refine : SR-STE's sparse-refined decay ``refine * (1 - M) * W`` on pruned weights (>= 0).
    """

    n: int = 2
    m: int = 4
    decay: str = "linear"
    beta0: float = 1.0
    start: float = 0.0
    end: float = 1.0
    rate: float = 5.0
    steps: int = 4
    every: int = 1
    flow: str = "gradient"
    refine: float = 0.0

    def __post_init__(self) -> None:
        check_pos_int("n", self.n)
        check_pos_int("m", self.m)
        if self.n > self.m:
            raise FieldError("n", f"n must be <= m for an N:M pattern; got {self.n}:{self.m}")
        check_choice("decay", self.decay, DECAYS)
        check_float("beta0", self.beta0, 0.0, 1.0)
        check_float("start", self.start, 0.0, 1.0)
        check_float("end", self.end, 0.0, 1.0)
        if self.end <= self.start:
            raise FieldError("end", f"end must be > start ({self.start:g}); got {self.end!r}")
        check_float("rate", self.rate, 0.0, math.inf, lo_open=True)
        check_pos_int("steps", self.steps)
        check_pos_int("every", self.every)
        check_choice("flow", self.flow, FLOWS)
        check_float("refine", self.refine, 0.0, math.inf)

    @property
    def pattern(self) -> str:
        return f"{self.n}:{self.m}"

    def factor(self, step: int, total: int) -> float:
        """The gradient-flow factor ``beta_t`` at optimizer step ``step`` of ``total``."""
        if self.decay == "constant":
            return float(self.beta0)
        frac = step / max(1, total)
        u = min(1.0, max(0.0, (frac - self.start) / (self.end - self.start)))
        if self.decay == "linear":
            shape = 1.0 - u
        elif self.decay == "cosine":
            shape = 0.5 * (1.0 + math.cos(math.pi * u))
        elif self.decay == "exponential":
            floor = math.exp(-self.rate)
            shape = (math.exp(-self.rate * u) - floor) / (1.0 - floor)
        else:  # step
            shape = 1.0 - math.floor(self.steps * u) / self.steps
        return float(self.beta0 * max(0.0, shape))


def effective_weight(w: Tensor, mask: Tensor, beta: float, flow: str = "gradient") -> Tensor:
    """The weight the forward pass uses, with the scaled gradient to pruned entries.

    Parameters
    ----------
    w : latent dense weight (requires grad).
    mask : float 0/1 tensor of ``w``'s shape (and dtype): 1 = kept.
    beta : gradient-flow factor for the pruned entries.
    flow : ``gradient``: value ``w * mask``, derivative ``mask + beta * (1 - mask)``;
        ``mask``: value and derivative ``w * (mask + beta * (1 - mask))``.
    """
    if flow == "mask":
        return w * (mask + beta * (1.0 - mask))
    return w * mask + (beta * (1.0 - mask)) * (w - w.detach())


def check_layers(cfg: NMTraining, shapes: Mapping[str, Sequence[int]]) -> None:
    """One-line SpecError for the first layer whose flattened rows ``M`` does not divide."""
    for name, shape in shapes.items():
        check_nm_layer(name, tuple(shape), cfg.n, cfg.m, what="retrain nm")


class Flow:
    """The per-run state of N:M training in one engine: masks of the N:M parameters.

    Parameters
    ----------
    cfg : the recipe.
    total : the optimizer-step budget of the run (for the decay).
    stacked : the engine's parameters carry a leading member dimension (vmap engine).
    """

    def __init__(self, cfg: NMTraining, total: int, *, stacked: bool) -> None:
        self.cfg, self.total, self.stacked = cfg, int(total), stacked
        self.t = 0

    @property
    def beta(self) -> float:
        """The factor of the step about to be taken."""
        return self.cfg.factor(self.t, self.total)

    def mask(self, w: Tensor) -> Tensor:
        """N:M mask (float, ``w``'s dtype) of a (stacked) latent weight."""
        return nm_mask(w.detach(), self.cfg.n, self.cfg.m).to(w.dtype)

    def forward(self, ws: Sequence[Tensor], masks: Sequence[Tensor | None]) -> list[Tensor]:
        """Effective weights for the forward pass (unchanged where ``masks[i] is None``)."""
        b = self.beta
        return [w if mk is None else effective_weight(w, mk, b, self.cfg.flow)
                for w, mk in zip(ws, masks)]

    def grads(self, grads: Sequence[Tensor], ws: Sequence[Tensor],
              masks: Sequence[Tensor | None]) -> list[Tensor]:
        """Add SR-STE's sparse-refined term to the gradients of the N:M weights."""
        lam = self.cfg.refine
        if lam == 0:
            return list(grads)
        return [g if mk is None else g + lam * (1.0 - mk) * w.detach()
                for g, w, mk in zip(grads, ws, masks)]

    def advance(self, ws: Sequence[Tensor], masks: list[Tensor | None]) -> None:
        """One optimizer step was taken: count it; refresh the masks every ``every`` steps."""
        self.t += 1
        if self.t % self.cfg.every == 0:
            with torch.no_grad():
                for i, (w, mk) in enumerate(zip(ws, masks)):
                    if mk is not None:
                        masks[i] = self.mask(w)


def resolve(cfg: NMTraining | Mapping | None) -> NMTraining | None:
    """``cfg`` as an :class:`NMTraining` (a mapping of its fields is accepted)."""
    if cfg is None or isinstance(cfg, NMTraining):
        return cfg
    if isinstance(cfg, Mapping):
        from ..spec.specs import from_dict
        return from_dict(NMTraining, cfg, path="nm")
    raise SpecError(f"nm must be an NMTraining or a mapping of its fields; got "
                    f"{type(cfg).__name__}")
