"""Centered kernel alignment (CKA) between the representations of two models.

Linear CKA (Kornblith et al., ICML 2019), feature form with column centring:
``CKA(X, Y) = ||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` for features X (n x p),
Y (n x q) of two models on the same n inputs.  It equals the Gram form
``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` with ``K = X X^T``, ``L = Y Y^T`` and
``HSIC(K, L) = tr(K H L H)`` (H the centring matrix) exactly, at cost O(n (p^2 + q^2 + pq))
instead of O(n^2 (p + q)).  Here it is *streamed*: the means and the centred co-moments
``Xc^T Xc``, ``Yc^T Yc``, ``Xc^T Yc`` are accumulated in float64 batch by batch (each batch
centred on its own mean, batches merged by the update of Chan et al. 1979), so n can be a whole
training set and a large common offset (softmax outputs near 1/C) costs no precision.  The value
lies in [0, 1] up to rounding; constant outputs (a model at chance) give NaN with one
:class:`ThreeRegimeWarning` per call.

Debiased variant (``debiased=True``): the unbiased HSIC estimator of Song et al. (2012), as
used for CKA by Nguyen et al. (ICLR 2021),
``HSIC_u = [tr(K~ L~) + 1^T K~ 1 1^T L~ 1 / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n(n-3))``
with K~, L~ the Gram matrices with zeroed diagonals.  For the linear kernel every term is a
function of the same streamed sums plus a few per-example norms, so it is streamed too.

RBF kernel (``kernel="rbf"``): Gram form, ``k(x, x') = exp(-||x - x'||^2 / (2 sigma^2))`` with
sigma = ``rbf_sigma`` x the median pairwise distance (median heuristic, Kornblith et al. use
fractions of it); needs all n x n Gram matrices in memory: O(n^2) time and memory.

Zhou et al. (2023) compare retrained sparse models by the linear CKA of their softmax outputs
(and logits) on ~6,400 unaugmented training images, models in eval mode.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import SpecError, ThreeRegimeWarning, did_you_mean
from ..training.device import target_device
from ..training.functional import ensemble_forward, split_state, stack_states
from ._common import iter_inputs, named_state

__all__ = ["CKAPairsResult", "CKAResult", "cka", "cka_pairs", "gram_cka", "linear_cka"]

KERNELS = ("linear", "rbf")


# --------------------------------------------------------------------------- results
@dataclass(frozen=True, repr=False)
class CKAResult:
    """CKA of two models.

    Attributes
    ----------
    softmax : CKA of the softmax outputs (the one Zhou et al. 2023 plot).
    logits : CKA of the logits.
    layers : dict module name -> CKA of that module's (flattened) output, when requested.
    n : number of inputs.
    kernel, debiased : the estimator used.
    """

    softmax: float
    logits: float
    layers: dict = field(default_factory=dict, compare=False)
    n: int = 0
    kernel: str = "linear"
    debiased: bool = False

    def __repr__(self) -> str:
        lay = "".join(f", {k}={v:.4f}" for k, v in self.layers.items())
        kind = self.kernel + (", debiased" if self.debiased else "")
        return (f"CKAResult(softmax={self.softmax:.4f}, logits={self.logits:.4f}{lay}, "
                f"n={self.n}, {kind})")


@dataclass(frozen=True, repr=False)
class CKAPairsResult:
    """CKA of many pairs of models: ``softmax`` and ``logits`` are (P,) float64."""

    pairs: list = field(compare=False)
    softmax: np.ndarray = field(compare=False)
    logits: np.ndarray = field(compare=False)
    n: int = 0
    debiased: bool = False

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, k: int) -> CKAResult:
        return CKAResult(softmax=float(self.softmax[k]), logits=float(self.logits[k]),
                         n=self.n, debiased=self.debiased)

    def __repr__(self) -> str:
        body = ", ".join(f"{tuple(p)}: {s:.4f}" for p, s in zip(self.pairs, self.softmax))
        return f"CKAPairsResult(n={self.n}, softmax={{{body}}})"


# --------------------------------------------------------------------------- streamed sums
def _batch_comoments(x: Tensor, y: Tensor):
    """Means and centred co-moments of one batch, two-pass (mean first, then centred sums)."""
    mx, my = x.mean(0), y.mean(0)  # (p,), (q,)
    xc, yc = x - mx, y - my  # (B, p), (B, q)
    return mx, my, xc.T @ xc, yc.T @ yc, xc.T @ yc


class _Moments:
    """Streamed float64 moments of one feature pair (X: n x p, Y: n x q).

    The plain estimator keeps means and *centred* co-moments ``Xc^T Xc``, ``Yc^T Yc``,
    ``Xc^T Yc``: each batch is centred on its own mean (two passes over the batch) and batches
    are merged with the pairwise update of Chan, Golub & LeVeque (1979),
    ``C = C_a + C_b + (n_a n_b / n) d_x d_y^T`` with ``d = mean_b - mean_a``.  Nothing is ever
    formed as a raw sum ``X^T X`` minus ``n mx mx^T``, whose cancellation lost every digit on
    near-constant outputs with a large mean (softmax of a model at chance) and produced CKA
    values above 1.  The merged matrices stay the Gram matrices of one stacked matrix, so the
    Cauchy-Schwarz bound CKA <= 1 holds up to rounding (~1e-15).

    The debiased estimator is invariant to shifting either feature set by a constant vector,
    so its raw sums are taken on features shifted by the first batch's mean (the "shifted data"
    algorithm), which removes the large common offset before anything is squared.
    """

    def __init__(self, debiased: bool):
        self.debiased = debiased
        self.n = 0
        self.mx = self.my = None  # running means (p,), (q,)
        self.cxx = self.cyy = self.cxy = None  # centred co-moments
        self.xx = self.yy = self.xy = self.sx = self.sy = None  # debiased: shifted raw sums
        self.shift_x = self.shift_y = None
        # debiased extras: sums of x_i ||x_i||^2, x_i ||y_i||^2, ... and scalar sums
        self.x_nx = self.x_ny = self.y_nx = self.y_ny = None
        self.nx = self.ny = self.nx2 = self.ny2 = self.nxny = 0.0

    def add(self, x: Tensor, y: Tensor) -> None:
        x = x.reshape(len(x), -1).double()  # (B, p)
        y = y.reshape(len(y), -1).double()  # (B, q)
        if len(x) == 0:
            return
        if self.debiased:
            self._add_debiased(x, y)
            return
        bx, by, bxx, byy, bxy = _batch_comoments(x, y)
        nb = len(x)
        if self.mx is None:
            self.n, self.mx, self.my = nb, bx, by
            self.cxx, self.cyy, self.cxy = bxx, byy, bxy
            return
        n = self.n + nb
        dx, dy = bx - self.mx, by - self.my  # (p,), (q,)
        w = self.n * nb / n
        self.cxx = self.cxx + bxx + w * torch.outer(dx, dx)
        self.cyy = self.cyy + byy + w * torch.outer(dy, dy)
        self.cxy = self.cxy + bxy + w * torch.outer(dx, dy)
        self.mx = self.mx + dx * (nb / n)
        self.my = self.my + dy * (nb / n)
        self.n = n

    def _add_debiased(self, x: Tensor, y: Tensor) -> None:
        if self.xx is None:
            p, q = x.shape[1], y.shape[1]
            z = lambda *s: torch.zeros(*s, dtype=torch.float64, device=x.device)
            self.xx, self.yy, self.xy = z(p, p), z(q, q), z(p, q)
            self.sx, self.sy = z(p), z(q)
            self.x_nx, self.x_ny, self.y_nx, self.y_ny = z(p), z(p), z(q), z(q)
            self.shift_x, self.shift_y = x.mean(0), y.mean(0)
        x = x - self.shift_x  # (B, p); the debiased HSIC does not see a constant shift
        y = y - self.shift_y  # (B, q)
        self.n += len(x)
        self.xx += x.T @ x
        self.yy += y.T @ y
        self.xy += x.T @ y
        self.sx += x.sum(0)
        self.sy += y.sum(0)
        nx, ny = (x * x).sum(1), (y * y).sum(1)  # (B,) squared norms = Gram diagonals
        self.x_nx += x.T @ nx
        self.x_ny += x.T @ ny
        self.y_nx += y.T @ nx
        self.y_ny += y.T @ ny
        self.nx += float(nx.sum())
        self.ny += float(ny.sum())
        self.nx2 += float((nx * nx).sum())
        self.ny2 += float((ny * ny).sum())
        self.nxny += float((nx * ny).sum())

    def constant(self) -> bool:
        """True when X or Y is constant over the inputs (up to float64 resolution)."""
        if self.debiased:
            n = self.n
            pairs = ((self.xx, self.sx, self.shift_x), (self.yy, self.sy, self.shift_y))
            traces = [(float(torch.trace(a)) - float(s @ s) / n, sh) for a, s, sh in pairs]
        else:
            traces = [(float(torch.trace(self.cxx)), self.mx),
                      (float(torch.trace(self.cyy)), self.my)]
        for tr, mean in traces:
            spread = math.sqrt(max(tr, 0.0) / self.n)  # root mean squared deviation
            if spread <= _CONSTANT_RTOL * float(mean.abs().max()) or tr <= 0:
                return True
        return False

    def cka(self) -> float:
        """The CKA, or NaN for a constant X or Y (the caller warns once)."""
        if self.n < 2:
            raise SpecError(f"CKA needs at least 2 inputs; got {self.n}")
        if self.debiased and self.n < 4:
            raise SpecError(f"debiased CKA needs at least 4 inputs; got {self.n}")
        if self.constant():
            return math.nan
        if self.debiased:
            return self._cka_debiased()
        den = torch.linalg.matrix_norm(self.cxx) * torch.linalg.matrix_norm(self.cyy)
        return float((self.cxy * self.cxy).sum() / den) if den > 0 else math.nan

    def _cka_debiased(self) -> float:
        n = self.n

        def hsic(ab_fro, sa, sb, a_nb, b_na, na, nb, nanb, ab_cross):
            # tr(K~ L~) = ||A^T B||_F^2 - sum_i |a_i|^2 |b_i|^2
            tr = ab_fro - nanb
            # 1^T K~ 1 = |sum a|^2 - sum |a_i|^2
            one_k = float(sa @ sa) - na
            one_l = float(sb @ sb) - nb
            # 1^T K~ L~ 1 = sum_i (a_i.sa - |a_i|^2)(b_i.sb - |b_i|^2)
            kl = ab_cross - float(sa @ a_nb) - float(sb @ b_na) + nanb
            return (tr + one_k * one_l / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * kl) / (
                n * (n - 3))

        xx, yy, xy = self.xx, self.yy, self.xy
        sx, sy = self.sx, self.sy
        hxy = hsic(float((xy * xy).sum()), sx, sy, self.x_ny, self.y_nx, self.nx, self.ny,
                   self.nxny, float(sx @ xy @ sy))
        hxx = hsic(float((xx * xx).sum()), sx, sx, self.x_nx, self.x_nx, self.nx, self.nx,
                   self.nx2, float(sx @ xx @ sx))
        hyy = hsic(float((yy * yy).sum()), sy, sy, self.y_ny, self.y_ny, self.ny, self.ny,
                   self.ny2, float(sy @ yy @ sy))
        den = math.sqrt(hxx * hyy) if hxx > 0 and hyy > 0 else 0.0
        return hxy / den if den > 0 else math.nan


# Features whose root-mean-square deviation from their mean is below this fraction of the
# mean's largest entry are constant: the spread is at float64 resolution, CKA is undefined.
_CONSTANT_RTOL = 1e-12


def _warn_constant(what: Sequence[str]) -> None:
    """One warning for all the CKAs of a call that came out NaN on constant outputs."""
    if what:
        warnings.warn(f"CKA is undefined (NaN) for constant outputs: {', '.join(what)}; a "
                      "model at chance gives the same output for every input",
                      ThreeRegimeWarning, stacklevel=3)


# --------------------------------------------------------------------------- Gram form
def _center_gram(k: Tensor) -> Tensor:
    return k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()


def _hsic_gram(k: Tensor, l: Tensor, debiased: bool) -> float:
    if not debiased:
        return float((_center_gram(k) * _center_gram(l)).sum())  # tr(K H L H)
    n = k.shape[0]
    k = k.clone()
    l = l.clone()
    k.fill_diagonal_(0)
    l.fill_diagonal_(0)
    tr = float((k * l).sum())
    k1, l1 = k.sum(1), l.sum(1)
    return (tr + float(k1.sum()) * float(l1.sum()) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * float(k1 @ l1)) / (n * (n - 3))


def _gram(x: Tensor, kernel: str, rbf_sigma: float) -> Tensor:
    x = x.reshape(len(x), -1).double()
    if kernel == "linear":
        # H X X^T H = Xc Xc^T, and the debiased HSIC ignores a constant shift: centring the
        # features first keeps a large common offset out of the products
        x = x - x.mean(0)
        return x @ x.T
    d2 = torch.cdist(x, x).pow(2)  # (n, n)
    med = torch.median(d2[~torch.eye(len(x), dtype=torch.bool, device=x.device)]).sqrt()
    sigma = rbf_sigma * float(med) if med > 0 else 1.0
    return torch.exp(-d2 / (2 * sigma * sigma))


def _is_constant(x: Tensor) -> bool:
    """Same test as :meth:`_Moments.constant`, on a whole feature matrix."""
    x = x.reshape(len(x), -1).double()
    mean = x.mean(0)
    spread = float((x - mean).pow(2).sum(1).mean().sqrt())
    return spread == 0 or spread <= _CONSTANT_RTOL * float(mean.abs().max())


def gram_cka(x, y, *, kernel: str = "linear", debiased: bool = False,
             rbf_sigma: float = 1.0) -> float:
    """CKA in Gram form, ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))``: O(n^2) time and memory.

    The reference for the feature form (linear kernel) and the only form for ``"rbf"``.
    Linear features are centred before the Gram matrix is formed.  Constant ``x`` or ``y``:
    NaN and one :class:`ThreeRegimeWarning`.
    """
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if len(x) != len(y):
        raise SpecError(f"x and y must have the same number of rows; got {len(x)} and {len(y)}")
    if _is_constant(x) or _is_constant(y):
        _warn_constant(["x" if _is_constant(x) else "y"])
        return math.nan
    k, l = _gram(x, kernel, rbf_sigma), _gram(y, kernel, rbf_sigma)  # (n, n) each
    if debiased:
        hkl, hkk, hll = (_hsic_gram(k, l, True), _hsic_gram(k, k, True),
                         _hsic_gram(l, l, True))
    else:  # centre each Gram matrix once: HSIC(K, L) = <HKH, HLH>_F
        k, l = _center_gram(k), _center_gram(l)
        hkl, hkk, hll = float((k * l).sum()), float((k * k).sum()), float((l * l).sum())
    den = math.sqrt(hkk * hll) if hkk > 0 and hll > 0 else 0.0
    return hkl / den if den > 0 else math.nan


def linear_cka(x, y, *, debiased: bool = False, batch_size: int | None = None) -> float:
    """Linear CKA of feature matrices ``x`` (n x p) and ``y`` (n x q), feature form.

    Estimator: ``||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` (Kornblith et al. 2019) in
    float64, optionally the debiased HSIC estimator (Nguyen et al. 2021).  Cost O(n (p+q)^2),
    memory O((p+q)^2).  Invariant to orthogonal transforms and isotropic scaling of either
    argument; the plain estimator is biased upwards for n not >> p, q (debiased is not).
    Centred moments (two-pass per batch, Chan et al. merge across batches): the plain value is
    in [0, 1] up to rounding for any input; constant ``x`` or ``y`` gives NaN and one
    :class:`ThreeRegimeWarning`.

    Parameters
    ----------
    x, y : arrays or tensors with the same number of rows (extra dims are flattened).
    debiased : use the unbiased HSIC estimator.
    batch_size : accumulate in row blocks of this size (default: all at once).
    """
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if len(x) != len(y):
        raise SpecError(f"x and y must have the same number of rows; got {len(x)} and {len(y)}")
    mom = _Moments(debiased)
    step = len(x) if batch_size is None else max(1, int(batch_size))
    for i in range(0, len(x), step):
        mom.add(x[i:i + step], y[i:i + step])
    value = mom.cka()
    if math.isnan(value):
        _warn_constant(["x or y"])
    return value


# --------------------------------------------------------------------------- model level
def _check_kernel(kernel: str) -> None:
    if kernel not in KERNELS:
        raise SpecError(f"kernel must be one of {', '.join(KERNELS)}; got {kernel!r}"
                        f"{did_you_mean(str(kernel), KERNELS)}")


class _Hooks:
    """Forward hooks storing the output of named modules for the current batch."""

    def __init__(self, model: nn.Module, layers: Sequence[str]):
        mods = dict(model.named_modules())
        self.out: dict[str, Tensor] = {}
        self.handles = []
        for name in layers:
            if name not in mods:
                raise SpecError(f"layers must name modules of the model; got {name!r}"
                                f"{did_you_mean(name, [m for m in mods if m])}")
            self.handles.append(mods[name].register_forward_hook(self._hook(name)))

    def _hook(self, name):
        def f(_mod, _inp, out):
            self.out[name] = out[0] if isinstance(out, (tuple, list)) else out
        return f

    def remove(self):
        for h in self.handles:
            h.remove()


@torch.no_grad()
def cka(model_a: nn.Module, model_b: nn.Module, inputs, *, batch_size: int = 1000,
        layers: Sequence[str] | None = None, kernel: str = "linear", debiased: bool = False,
        rbf_sigma: float = 1.0, device=None) -> CKAResult:
    """CKA between the outputs (softmax and logits) of two models on the same inputs.

    Estimator: linear CKA in feature form, streamed over batches in float64 (see module docs);
    optional debiased HSIC (Nguyen et al. 2021) or RBF kernel (Gram form).  Both models run in
    eval mode (their mode flags are restored) and are not modified.  It is a deterministic
    function of the inputs; its sampling variance over inputs is not reported (the paper
    averages over seed pairs).  Cost: one forward pass of each model over the inputs plus
    O(n C^2) for C classes (O(n d^2) per hooked layer of width d; O(n^2) for ``"rbf"``).
    Zhou et al. 2023 use the softmax CKA on ~6,400 unaugmented training images.

    Parameters
    ----------
    model_a, model_b : any two models with outputs of shape (n, C) on ``inputs``.
    inputs : tensor (n, ...), ``(x, y)`` pair / ``TensorData``, or a DataLoader.
    batch_size : forward batch size for tensor inputs.
    layers : module names whose outputs (flattened per example) are compared too; the same
        names must exist in both models.
    kernel : ``"linear"`` (streamed feature form) or ``"rbf"`` (Gram form, median heuristic).
    debiased : unbiased HSIC.
    rbf_sigma : RBF bandwidth as a multiple of the median pairwise distance.

    Returns
    -------
    CKAResult
    """
    _check_kernel(kernel)
    dev = target_device(device, model_a)
    layers = list(layers or [])
    flags = [(m, m.training) for mod in (model_a, model_b) for m in mod.modules()]
    model_a.eval()
    model_b.eval()
    ha, hb = _Hooks(model_a, layers), _Hooks(model_b, layers)
    keys = ["softmax", "logits", *layers]
    try:
        if kernel == "linear":
            mom = {k: _Moments(debiased) for k in keys}
        else:
            feats: dict[str, tuple[list, list]] = {k: ([], []) for k in keys}
        n = 0
        for x in iter_inputs(inputs, batch_size, dev):
            za, zb = model_a(x), model_b(x)  # (B, C)
            pairs = {"logits": (za, zb), "softmax": (za.double().softmax(-1),
                                                     zb.double().softmax(-1))}
            for name in layers:
                pairs[name] = (ha.out[name], hb.out[name])
            for k in keys:
                a, b = pairs[k]
                if kernel == "linear":
                    mom[k].add(a, b)
                else:
                    feats[k][0].append(a.reshape(len(a), -1).double().cpu())
                    feats[k][1].append(b.reshape(len(b), -1).double().cpu())
            n += len(x)
    finally:
        ha.remove()
        hb.remove()
        for m, f in flags:
            m.train(f)
    if kernel == "linear":
        vals = {k: mom[k].cka() for k in keys}
    else:
        with warnings.catch_warnings():  # warned once below, for all outputs together
            warnings.simplefilter("ignore", ThreeRegimeWarning)
            vals = {k: gram_cka(torch.cat(feats[k][0]), torch.cat(feats[k][1]), kernel="rbf",
                                debiased=debiased, rbf_sigma=rbf_sigma) for k in keys}
    _warn_constant([k for k in keys if math.isnan(vals[k])])
    return CKAResult(softmax=vals["softmax"], logits=vals["logits"],
                     layers={k: vals[k] for k in layers}, n=n, kernel=kernel,
                     debiased=debiased)


@torch.no_grad()
def cka_pairs(model: nn.Module, states: Sequence[Mapping[str, Tensor]],
              pairs: Sequence[tuple[int, int]], inputs, *, batch_size: int = 1000,
              debiased: bool = False, device=None) -> CKAPairsResult:
    """Linear CKA (softmax and logits) of many pairs of same-architecture models at once.

    The K distinct models run as one stacked ensemble (``ensemble_forward``, eval mode); per
    model the streamed sums ``X_k^T X_k`` and per pair ``X_i^T X_j`` are accumulated in float64,
    so the cost is one batched forward pass over the inputs plus O(n C^2) per model and pair.
    Same estimator as :func:`cka` with ``kernel="linear"`` (intermediate layers: use
    :func:`cka`).

    Returns
    -------
    CKAPairsResult with ``softmax`` and ``logits`` (P,).
    """
    if not pairs:
        raise SpecError("pairs must list at least one (i, j) pair; got []")
    k_states = len(states)
    for p in pairs:
        if len(p) != 2 or not all(0 <= int(q) < k_states for q in p):
            raise SpecError(f"pairs must hold (i, j) with 0 <= i, j < {k_states}; got {p!r}")
    dev = target_device(device, model)
    import copy

    template = copy.deepcopy(model).to(dev).eval()
    ref = named_state(template)
    full = [{k: (s[k] if k in s else ref[k]).to(dev) for k in ref} for s in states]
    params, buffers = split_state(template, stack_states(full))
    moms = {kind: [_Moments(debiased) for _ in pairs] for kind in ("softmax", "logits")}
    n = 0
    for x in iter_inputs(inputs, batch_size, dev):
        z = ensemble_forward(template, params, buffers, x, train=False, shared_input=True)
        z = z.reshape(k_states, len(x), -1)  # (K, B, C)
        feats = {"logits": z, "softmax": z.double().softmax(-1)}
        for kind, f in feats.items():
            for m, (i, j) in zip(moms[kind], pairs):
                m.add(f[int(i)], f[int(j)])
        n += len(x)
    out = {kind: np.array([m.cka() for m in moms[kind]]) for kind in moms}  # (P,) each
    _warn_constant([f"{kind} of pair {tuple(int(q) for q in p)}" for kind in out
                    for p, v in zip(pairs, out[kind]) if math.isnan(v)])
    return CKAPairsResult(pairs=[tuple(int(q) for q in p) for p in pairs],
                          softmax=out["softmax"], logits=out["logits"], n=n,
                          debiased=debiased)
