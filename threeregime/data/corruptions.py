"""Input corruptions at severities 0..5: pure, seeded functions on tensors (no download).

In the spirit of CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019) and of "Understanding Robustness
Lottery" (a study of pruned networks' robustness), computed on the fly from any test tensor.
Every corruption maps a batch ``x`` to a corrupted copy of the same shape and dtype; severity 0
returns ``x`` unchanged (an exact copy), severities 1..5 are increasingly strong.  Randomness
comes only from a ``torch.Generator`` seeded by ``(seed, name, severity)``: the same call gives
the same tensor, and the global RNG is never touched.  Amplitudes are relative to each
example's own standard deviation, so the corruptions do not depend on how the data were
normalised.

1-D signals ``(B, C, L)`` (MNIST-1D)
    ``shift``: translation by ``s * ceil(L / 20)`` samples, direction drawn per example, zeros
    shifted in.  ``scale``: time stretch about the centre by ``1 + 0.1 s`` (linear
    interpolation, zeros outside).  ``mask``: a segment of ``round(0.1 s L)`` samples at a
    random position per example set to 0.
Images ``(B, C, H, W)``
    ``contrast``: ``mean + c (x - mean)`` per example and channel, ``c = 1 - 0.15 s``.
    ``brightness``: ``x + 0.2 s std``.
Both
    ``gaussian_noise``: ``x + sigma std N(0, 1)``, ``sigma = (0.1, 0.2, 0.35, 0.5, 0.8)[s-1]``.
    ``blur``: Gaussian blur along the spatial axes, ``sigma = (0.5, 0.75, 1, 1.5, 2)[s-1]``
    samples/pixels, reflected borders.
    ``jpeg``: JPEG-like quantisation: orthonormal DCT of 8-sample (8x8-pixel) blocks,
    coefficient ``(u, v)`` rounded to multiples of ``q (1 + u + v)`` with
    ``q = (0.05, 0.1, 0.2, 0.35, 0.5)[s-1] std``, inverse DCT (edges padded by replication to
    whole blocks, then cropped).
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import SpecError, did_you_mean

__all__ = ["CORRUPTIONS", "SEVERITIES", "corrupt", "check_corruption"]

SEVERITIES = (0, 1, 2, 3, 4, 5)
Corruption = Callable[[Tensor, int, torch.Generator], Tensor]

#: name -> (function(x, severity, generator), spatial dims it accepts: {1}, {2} or {1, 2}); the
#: names, in this order, are known without torch as ``threeregime.registry.BUILTIN["corruption"]``
#: (the spec checks against them; ``tests/test_corruptions.py`` checks that the two agree)
CORRUPTIONS: dict[str, tuple[Corruption, frozenset[int]]] = {}


def _register(name: str, dims: tuple[int, ...]):
    def deco(fn: Corruption) -> Corruption:
        CORRUPTIONS[name] = (fn, frozenset(dims))
        return fn
    return deco


def _std(x: Tensor) -> Tensor:
    """Per-example standard deviation, shaped to broadcast over ``x`` (never 0)."""
    s = x.reshape(x.shape[0], -1).std(dim=1, unbiased=False)
    s = torch.where(s > 0, s, torch.ones_like(s))
    return s.reshape((-1,) + (1,) * (x.dim() - 1))


# --------------------------------------------------------------------------- 1-D signals
@_register("shift", (1,))
def _shift(x: Tensor, s: int, g: torch.Generator) -> Tensor:
    L = x.shape[-1]
    k = s * math.ceil(L / 20)
    sign = torch.randint(0, 2, (x.shape[0],), generator=g) * 2 - 1
    idx = torch.arange(L).unsqueeze(0) - (sign * k).unsqueeze(1)          # (B, L) source index
    valid = (idx >= 0) & (idx < L)
    src = idx.clamp(0, L - 1).to(x.device)
    out = torch.gather(x, -1, src.unsqueeze(1).expand(-1, x.shape[1], -1))
    return out * valid.to(x.device).unsqueeze(1).to(x.dtype)


@_register("scale", (1,))
def _scale(x: Tensor, s: int, g: torch.Generator) -> Tensor:
    L = x.shape[-1]
    f = 1.0 + 0.1 * s
    c = (L - 1) / 2
    pos = c + (torch.arange(L, dtype=torch.float64) - c) / f               # source positions
    lo = pos.floor().long()
    w = (pos - lo).to(x.dtype).to(x.device)

    def at(i: Tensor) -> Tensor:
        ok = ((i >= 0) & (i < L)).to(x.device).to(x.dtype)
        return x[..., i.clamp(0, L - 1).to(x.device)] * ok

    return at(lo) * (1 - w) + at(lo + 1) * w


@_register("mask", (1,))
def _mask(x: Tensor, s: int, g: torch.Generator) -> Tensor:
    L = x.shape[-1]
    n = max(1, round(0.1 * s * L))
    start = torch.randint(0, L - n + 1, (x.shape[0],), generator=g)
    pos = torch.arange(L).unsqueeze(0)
    hole = (pos >= start.unsqueeze(1)) & (pos < (start + n).unsqueeze(1))   # (B, L)
    return x * (~hole).to(x.device).unsqueeze(1).to(x.dtype)


# --------------------------------------------------------------------------- images
@_register("contrast", (2,))
def _contrast(x: Tensor, s: int, g: torch.Generator) -> Tensor:
    mean = x.mean(dim=(-2, -1), keepdim=True)
    return mean + (1.0 - 0.15 * s) * (x - mean)


@_register("brightness", (2,))
def _brightness(x: Tensor, s: int, g: torch.Generator) -> Tensor:
    return x + 0.2 * s * _std(x)


# --------------------------------------------------------------------------- both
@_register("gaussian_noise", (1, 2))
def _gaussian_noise(x: Tensor, s: int, g: torch.Generator) -> Tensor:
    sigma = (0.1, 0.2, 0.35, 0.5, 0.8)[s - 1]
    noise = torch.randn(x.shape, generator=g, dtype=torch.float32).to(x.device, x.dtype)
    return x + sigma * _std(x) * noise


def _blur_1d(x: Tensor, sigma: float, dim: int) -> Tensor:
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(x.dtype).to(x.device)
    xt = x.movedim(dim, -1)
    shape = xt.shape
    flat = xt.reshape(-1, 1, shape[-1])
    pad = min(r, shape[-1] - 1)
    if pad < r:   # a very short axis: reflect as far as possible, then replicate
        flat = F.pad(flat, (pad, pad), mode="reflect")
        flat = F.pad(flat, (r - pad, r - pad), mode="replicate")
    else:
        flat = F.pad(flat, (r, r), mode="reflect")
    out = F.conv1d(flat, k.reshape(1, 1, -1)).reshape(shape)
    return out.movedim(-1, dim)


@_register("blur", (1, 2))
def _blur(x: Tensor, s: int, g: torch.Generator) -> Tensor:
    sigma = (0.5, 0.75, 1.0, 1.5, 2.0)[s - 1]
    out = _blur_1d(x, sigma, -1)
    return _blur_1d(out, sigma, -2) if x.dim() == 4 else out


def _dct_matrix(n: int, dtype: torch.dtype, device) -> Tensor:
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    i = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.to(dtype).to(device)                                       # orthonormal DCT-II


@_register("jpeg", (1, 2))
def _jpeg(x: Tensor, s: int, g: torch.Generator) -> Tensor:
    q = (0.05, 0.1, 0.2, 0.35, 0.5)[s - 1]
    B = 8
    two_d = x.dim() == 4
    sizes = x.shape[-2:] if two_d else x.shape[-1:]
    pads = [(-n) % B for n in sizes]
    pad_arg = (0, pads[-1], 0, pads[0]) if two_d else (0, pads[0])
    xp = F.pad(x, pad_arg, mode="replicate")
    D = _dct_matrix(B, torch.float64, x.device)
    step = _std(x).double() * q
    if two_d:
        b, c, h, w = xp.shape
        blocks = xp.double().reshape(b, c, h // B, B, w // B, B).transpose(3, 4)
        coef = D @ blocks @ D.T
        u = torch.arange(B, dtype=torch.float64, device=x.device)
        qm = (1 + u.unsqueeze(1) + u.unsqueeze(0)) * step.reshape(b, 1, 1, 1, 1, 1)
        rec = D.T @ (torch.round(coef / qm) * qm) @ D
        out = rec.transpose(3, 4).reshape(b, c, h, w)[..., :sizes[0], :sizes[1]]
    else:
        b, c, n = xp.shape
        blocks = xp.double().reshape(b, c, n // B, B)
        coef = blocks @ D.T
        u = torch.arange(B, dtype=torch.float64, device=x.device)
        qm = (1 + u) * step.reshape(b, 1, 1, 1)
        out = ((torch.round(coef / qm) * qm) @ D).reshape(b, c, n)[..., :sizes[0]]
    return out.to(x.dtype)


# --------------------------------------------------------------------------- API
def check_corruption(name: str, severity: int | None = None, *, spatial: int | None = None
                     ) -> None:
    """One-line SpecError for an unknown corruption, a severity outside 0..5, or a
    corruption that does not apply to inputs with ``spatial`` (1: signals, 2: images) axes."""
    if name not in CORRUPTIONS:
        raise SpecError(f"corruption must be one of {', '.join(CORRUPTIONS)}; got {name!r}"
                        f"{did_you_mean(str(name), CORRUPTIONS)}")
    if severity is not None and (isinstance(severity, bool) or severity not in SEVERITIES):
        raise SpecError(f"severity must be an integer in 0..5; got {severity!r}")
    if spatial is not None and spatial not in CORRUPTIONS[name][1]:
        ok = [n for n, (_, d) in CORRUPTIONS.items() if spatial in d]
        kind = "1-D signals (B, C, L)" if spatial == 1 else "images (B, C, H, W)"
        raise SpecError(f"corruption {name!r} does not apply to {kind}; for these use one of "
                        f"{', '.join(ok)}")


def _spatial(x: Tensor) -> int:
    if not isinstance(x, Tensor) or x.dim() not in (3, 4) or not x.is_floating_point():
        got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
        raise SpecError(f"x must be a float tensor of 1-D signals (B, C, L) or images "
                        f"(B, C, H, W); got {got}")
    return x.dim() - 2


def corrupt(x: Tensor, name: str, severity: int, seed: int = 0) -> Tensor:
    """Corrupted copy of the batch ``x`` (``(B, C, L)`` or ``(B, C, H, W)``, float).

    Deterministic for ``(seed, name, severity)``; severity 0 returns an exact copy of ``x``.
    """
    check_corruption(name, severity, spatial=_spatial(x))
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SpecError(f"seed must be an integer >= 0; got {seed!r}")
    if severity == 0:
        return x.clone()
    g = torch.Generator().manual_seed(
        (seed * 1_000_003 + zlib.crc32(name.encode()) * 11 + severity) % (2**63 - 1))
    with torch.no_grad():
        return CORRUPTIONS[name][0](x.detach(), severity, g).contiguous()
