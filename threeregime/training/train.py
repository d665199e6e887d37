"""The one training loop: SGD (optionally SAM) for dense training and sparse retraining.

:func:`fit` trains M members of one architecture. Members may differ in their initial
weights, data-order seed, base learning rate, SAM radius and pruning mask. Two engines
compute exactly the same mathematics:

``engine="vmap"`` (default)
    All members are one stacked computation (``torch.func.vmap`` over ``functional_call``,
    see :mod:`threeregime.training.functional`): one batched forward/backward and one fused
    optimizer update per step for the whole ensemble.
``engine="loop"``
    The reference: one ordinary ``nn.Module`` forward/backward per member and step.

(The engines and the update below are implemented in :mod:`threeregime.training.engines`.)

Both draw the data order (and augmentation) of member ``m`` from its own
``torch.Generator(seed_m)``, so member ``m`` of a vmap run equals a loop run with the same
seed to float tolerance (``tests/test_train.py``).

The update per member (weight decay on all parameters, as the reference)::

    g <- grad(L)(w + e)  with  e = rho * grad(L)(w) / ||grad(L)(w)||   (SAM; e = 0 if rho = 0)
    g <- (g + wd * w) * mask
    b <- momentum * b + g ;   d <- g + momentum * b  (nesterov) or  b
    w <- (w - lr_t * d) * mask

With ``nm=NMTraining(...)`` the prunable layers are instead trained N:M-sparse with a decaying
gradient flow to their pruned weights (:mod:`threeregime.pruning.nm_training`): their masks are
recomputed from the weights during training, and they are not in ``masks``.

BatchNorm running statistics are updated on the first (unperturbed) pass only. A member whose
loss becomes NaN or infinite is marked diverged (at the end of that epoch); it stops
updating and the others carry on unaffected.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.sources import as_splits
from ..errors import DataError, SpecError, did_you_mean
from ..pruning.nm_training import NMTraining, check_layers
from ..pruning.nm_training import resolve as _resolve_nm
from ..spec.specs import TrainSpec
from .device import progress_bar as _tqdm
from .device import resolve_device
from .engines import LoopRunner, VmapRunner
from .functional import evaluate_states

__all__ = ["FitResult", "estimate_member_bytes", "evaluate", "fit", "init_states", "lr_factor",
           "resolve_device"]


# --------------------------------------------------------------------------- utilities
def lr_factor(spec: TrainSpec, step: int, total_steps: int) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based).

    ``step``: lr x gamma^k after the k-th milestone (milestones are fractions of the budget,
    rounded to whole steps); ``cosine``: half-cosine from 1 to 0; ``constant``: 1.
    """
    if spec.schedule == "constant":
        return 1.0
    if spec.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / max(1, total_steps)))
    passed = sum(step >= round(m * total_steps) for m in spec.milestones)
    return spec.gamma ** passed


def init_states(model: nn.Module) -> dict[str, Tensor]:
    """A detached copy of a model's state dict."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes
    ----------
    states : final state dict of each member (CPU tensors).
    snapshots : ``{epoch: [state dict per member]}`` for the requested snapshot epochs
        (epoch 0 = initial weights).
    diverged : per member, whether its loss became NaN/inf.
    diverged_at : per member, the epoch in which that was detected (or None).
    history : per-epoch arrays of shape (epochs, M): ``train_loss``, ``train_error`` (running,
        on the augmented mini-batches), ``test_loss`` and ``test_error`` (NaN where not
        evaluated), plus ``lr`` (epochs,).
    steps : optimizer steps taken.
    masks : per member, the final boolean masks of the N:M-trained parameters (``nm``);
        empty dicts otherwise.
    """

    states: list[dict[str, Tensor]]
    snapshots: dict[int, list[dict[str, Tensor]]] = field(default_factory=dict)
    diverged: list[bool] = field(default_factory=list)
    diverged_at: list[int | None] = field(default_factory=list)
    history: dict[str, np.ndarray] = field(default_factory=dict)
    steps: int = 0
    masks: list[dict[str, Tensor]] = field(default_factory=list)

    def last_test_error(self, k: int = 5) -> np.ndarray:
        """Mean test error over the last ``k`` evaluated epochs, per member (the reference's
        test error of a retrained model)."""
        te = self.history.get("test_error")
        if te is None or te.size == 0:
            return np.full(len(self.states), np.nan)
        out = np.full(te.shape[1], np.nan)
        for m in range(te.shape[1]):
            col = te[:, m][~np.isnan(te[:, m])]
            if col.size:
                out[m] = col[-k:].mean()
        return out

# --------------------------------------------------------------------------- data order
class _Order:
    """Per-member data order: a reshuffle each epoch from the member's own generator."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device) -> None:
        self.n, self.bs = n, batch_size
        self.gen = torch.Generator().manual_seed(int(seed))
        self.steps_per_epoch = max(1, n // batch_size)
        self.perm: Tensor | None = None
        self.device = device

    def batch(self, step_in_epoch: int) -> Tensor:
        if step_in_epoch == 0 or self.perm is None:
            self.perm = torch.randperm(self.n, generator=self.gen)
        s = step_in_epoch * self.bs
        return self.perm[s:s + self.bs]


# --------------------------------------------------------------------------- fit
def fit(model: nn.Module, init: Sequence[Mapping[str, Tensor]] | Mapping[str, Tensor],
        data, spec: TrainSpec, *, seeds: Sequence[int] = (0,),
        lrs: Sequence[float] | None = None, rhos: Sequence[float] | None = None,
        masks: Sequence[Mapping[str, Tensor] | None] | None = None,
        device: str | torch.device | None = "cpu", engine: str = "vmap",
        eval_epochs: Sequence[int] | None = None, last_k: int = 5,
        progress: bool | None = None, desc: str = "train",
        loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
        stop_epoch: int | None = None,
        on_epoch_end: Callable[[int, dict], None] | None = None,
        nm: NMTraining | Mapping | None = None,
        nm_names: Sequence[str] | None = None) -> FitResult:
    """Train M members of the architecture of ``model`` with SGD/SAM.

    Parameters
    ----------
    model : template module (its own weights are not used or modified).
    init : initial state dict per member (or one state dict, broadcast to all seeds).
    data : :class:`threeregime.data.sources.Splits` (or any object with ``train``, ``test`` and
        ``augment`` attributes), or an ``(x, y)`` training pair.
    spec : the recipe; ``spec.lr``/``spec.sam_rho`` are defaults for ``lrs``/``rhos``.
    seeds : data-order seed of each member (its length is M).
    lrs, rhos : per-member base learning rate and SAM radius.
    masks : per-member ``{param name: bool mask}`` (pruned weights held at exactly 0).
    engine : ``"vmap"`` (vectorized) or ``"loop"`` (one model at a time, the reference).
    eval_epochs : epochs after which the test set is evaluated; default: the last
        ``last_k`` epochs and every snapshot epoch.
    progress : show a progress bar (None: only on a terminal).
    loss_fn : ``loss_fn(outputs, targets) -> scalar`` mean loss of one model on a batch
        (default: cross-entropy). Must be vmap-friendly for ``engine="vmap"``.
    stop_epoch : stop after this epoch while keeping the schedule of the full budget (the
        state then equals the snapshot at that epoch of the full run).
    on_epoch_end : called as ``on_epoch_end(epoch, info)`` after every epoch.
    nm : N:M sparse training of ``nm_names`` (:class:`~threeregime.pruning.nm_training.NMTraining`
        or a mapping of its fields); ``None``: the masks in ``masks`` are held fixed.
    nm_names : the parameters trained N:M-sparse (default: ``models.prunable_names(model)``);
        none of them may appear in ``masks``.

    Returns
    -------
    FitResult
    """
    if engine not in ("vmap", "loop"):
        raise SpecError(f"engine must be one of vmap, loop; got {engine!r}")
    splits = as_splits(data)
    dev = resolve_device(device)
    M = len(seeds)
    if isinstance(init, Mapping):
        init = [init] * M
    init = list(init)
    if len(init) != M:
        raise SpecError(f"init must hold one state dict per seed ({M}); got {len(init)}")
    lrs = [spec.lr] * M if lrs is None else [float(v) for v in lrs]
    rhos = [spec.sam_rho] * M if rhos is None else [float(v) for v in rhos]
    if masks is None:
        masks = [None] * M
    if not (len(lrs) == len(rhos) == len(masks) == M):
        raise SpecError(f"lrs, rhos and masks must have one entry per member ({M})")
    nm = _resolve_nm(nm)
    nm_set = _nm_layers(model, nm, nm_names, masks)
    n = int(splits.train.x.shape[0])
    if n < spec.batch_size:
        raise DataError(f"training set has {n} examples, fewer than one batch "
                        f"(batch_size={spec.batch_size}); lower batch_size or use more data")
    spe = spec.steps_per_epoch(n)
    total = spec.total_steps(n)
    n_epochs = math.ceil(total / spe)
    snaps = set(spec.snapshots)
    if eval_epochs is None:
        eval_epochs = set(range(max(1, n_epochs - last_k + 1), n_epochs + 1)) | (snaps - {0})
    eval_epochs = set(eval_epochs)

    runner = VmapRunner if engine == "vmap" else LoopRunner
    r = runner(model, init, masks, lrs, rhos, spec, dev, loss_fn or F.cross_entropy,
               nm=None if nm is None else (nm, nm_set, total))
    X, Y = splits.train.x.to(dev), splits.train.y.to(dev)
    test = splits.test if splits.test is not None else None
    orders = [_Order(n, spec.batch_size, s, dev) for s in seeds]
    augment = splits.augment if getattr(splits, "augment", None) else None

    hist = {k: np.full((n_epochs, M), np.nan) for k in
            ("train_loss", "train_error", "test_loss", "test_error")}
    hist["lr"] = np.full(n_epochs, np.nan)
    result = FitResult(states=[], diverged=[False] * M, diverged_at=[None] * M)
    if 0 in snaps:
        result.snapshots[0] = r.states()
    bar = _progress(total, desc, progress)
    step = 0
    try:
        for epoch in range(1, n_epochs + 1):
            run_loss = torch.zeros(M, dtype=torch.float64, device=dev)
            run_err = torch.zeros(M, dtype=torch.float64, device=dev)
            steps_this = min(spe, total - step)
            for k in range(steps_this):
                idx = [o.batch(k) for o in orders]
                xb, yb = [], []
                for m, ix in enumerate(idx):
                    x = X[ix.to(dev)]
                    if augment is not None:
                        x = augment(x, orders[m].gen)
                    xb.append(x)
                    yb.append(Y[ix.to(dev)])
                fac = lr_factor(spec, step, total)
                loss, err = r.step(xb, yb, fac)
                run_loss += loss.detach().double()
                run_err += err.detach().double()
                step += 1
                bar.update(1)
            hist["lr"][epoch - 1] = lr_factor(spec, step - 1, total)
            hist["train_loss"][epoch - 1] = (run_loss / steps_this).cpu().numpy()
            hist["train_error"][epoch - 1] = (run_err / steps_this).cpu().numpy()
            bad = ~np.isfinite(hist["train_loss"][epoch - 1])
            for m in np.flatnonzero(bad):
                if not result.diverged[m]:
                    result.diverged[m] = True
                    result.diverged_at[m] = epoch
                    r.freeze(int(m))
            if test is not None and epoch in eval_epochs:
                tl, te = r.evaluate(test)
                hist["test_loss"][epoch - 1], hist["test_error"][epoch - 1] = tl, te
            if epoch in snaps:
                result.snapshots[epoch] = r.states()
            if bar is not None:
                bar.set_postfix(loss=f"{np.nanmean(hist['train_loss'][epoch - 1]):.3f}",
                                diverged=int(sum(result.diverged)))
            if on_epoch_end is not None:
                on_epoch_end(epoch, {k: v[epoch - 1] for k, v in hist.items()})
            if step >= total or (stop_epoch is not None and epoch >= stop_epoch):
                break
    finally:
        bar.close()
    result.states = r.states()
    result.masks = r.masks_now()
    result.history = hist
    result.steps = step
    return result


def _nm_layers(model: nn.Module, nm: NMTraining | None, names: Sequence[str] | None,
               masks: Sequence) -> frozenset[str]:
    """The N:M-trained parameter names, checked (shapes take the pattern; not in masks)."""
    if nm is None:
        if names is not None:
            raise SpecError("nm_names is only used with nm; got nm_names without nm")
        return frozenset()
    if names is None:
        from ..models.zoo import prunable_names
        names = prunable_names(model)
    params = dict(model.named_parameters())
    for name in names:
        if name not in params:
            raise SpecError(f"nm_names: {name!r} is not a parameter of the model"
                            f"{did_you_mean(str(name), params)}")
    check_layers(nm, {k: tuple(params[k].shape) for k in names})
    for mk in masks:
        both = sorted(set(names) & set(mk or {}))
        if both:
            raise SpecError(f"masks and nm both name {both[0]!r}: an N:M-trained layer's mask "
                            "is recomputed during training; leave it out of masks")
    return frozenset(names)


def _progress(total: int, desc: str, progress: bool | None):
    return _tqdm(progress)(total=total, desc=desc, unit="step", leave=False,
                disable=(None if progress is None else not progress), mininterval=0.5)

# --------------------------------------------------------------------------- memory
def estimate_member_bytes(model: nn.Module, input_shape: Sequence[int], batch_size: int,
                          *, sam: bool = False) -> int:
    """Bytes one ensemble member needs during a training step (an estimate).

    Parameters x 3 (weights, gradient, momentum buffer; x 5 with SAM's perturbed copy and
    second gradient) and buffers, plus twice the activations of one forward pass on a batch of
    ``batch_size`` (kept for backward, and their gradients; twice again with SAM), measured with
    forward hooks on one zero example in eval mode (the model is not changed).  Used by the
    sweep driver to size ensembles under a memory budget.
    """
    p_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    b_bytes = sum(b.numel() * b.element_size() for b in model.buffers())
    act = 0

    def hook(_m, _i, out):
        nonlocal act
        if isinstance(out, Tensor):
            act += out.numel() * out.element_size()

    first = next(iter(model.parameters()), None)
    dtype = first.dtype if first is not None else torch.float32
    dev = first.device if first is not None else torch.device("cpu")
    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), dtype=dtype, device=dev))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    sam_factor = 2 if sam else 1
    return int((3 + 2 * (sam_factor - 1)) * p_bytes + b_bytes
               + 2 * sam_factor * act * batch_size)


# --------------------------------------------------------------------------- evaluation
def evaluate(model: nn.Module, states: Sequence[Mapping[str, Tensor]] | None, data, *,
             batch_size: int = 1000, device: str | torch.device | None = "cpu"
             ) -> tuple[np.ndarray, np.ndarray]:
    """Mean cross-entropy loss and error (fraction) of each state on ``data``, eval mode.

    Parameters
    ----------
    model : architecture template (and the weights used when ``states`` is None).
    states : state dicts to evaluate together (one stacked computation).
    data : a :class:`~threeregime.data.sources.TensorData`, an ``(x, y)`` pair or a DataLoader.

    Returns
    -------
    (loss, error) : two float64 arrays of shape (M,).
    """
    dev = resolve_device(device)
    if states is None:
        states = [init_states(model)]
    return evaluate_states(model, states, data, batch_size=batch_size, device=dev)


def own_errors(model: nn.Module, data, *, device: str | torch.device | None = "cpu"
               ) -> tuple[float, float, float, int]:
    """A model's own train and test error on ``data`` (Splits), the chance error ``1 - 1/k``
    and the class count ``k`` (``data.num_classes``, else the distinct training labels)."""
    _, tr = evaluate(model, None, data.train, device=device)
    _, te = evaluate(model, None, data.test, device=device)
    k = int(getattr(data, "num_classes", None) or torch.unique(data.train.y).numel())
    return float(tr[0]), float(te[0]), 1.0 - 1.0 / max(k, 2), k
