"""The words, numbers and lines of a phase diagram (no matplotlib, no torch): axis and
colour-bar labels, cell texts, colour-bar ticks with just enough decimals, the regime key,
the boundary segments between regimes.

Percent variables (errors, LMC) are stored as fractions and shown in per cent; the colour bar
says the unit once in its label (``test error (%)``) and its ticks are plain numbers.
"""
from __future__ import annotations

import json
import math
import re
import textwrap
from typing import Any

import numpy as np
import xarray as xr

from .regimes import REGIME_I, REGIME_II_UNRESOLVED, UNDETERMINED

__all__ = ["CELL_NAMES", "KEY", "REASON_NAMES", "axis_label", "boundary_segments", "cell_label",
           "colorbar_label", "key_text", "nice_ticks", "no_data_text", "rule_name", "sweep_name",
           "tick", "value_text", "with_note"]

#: a cell's regime in words (code 3 = Regime II, A vs B inside noise)
CELL_NAMES = {0: "I", 1: "II-A", 2: "II-B", 3: "unresolved"}
#: an undetermined cell, in words, by ``undetermined_reason``
REASON_NAMES = {1: "not run", 2: "failed", 3: "too few pairs", 4: "collapsed", 5: "near chance"}
#: variables stored as fractions and shown in per cent
PERCENT = ("test_error", "normalized_test_error", "lmc", "lmc_mean", "lmc_sem",
           "test_error_mean", "train_error", "dense_test_error", "dense_train_error")
#: what the regime labels mean; the lines and hatches are in the figure's legend
KEY = ("I: barrier between retrained seeds \u2192 train hotter  |  II-A: connected, lower CKA "
       "\u2192 train colder  |  II-B: connected, higher CKA \u2192 keep  |  unresolved: "
       "Regime II, A vs B within noise \u2192 keep")
_LMC = "LMC (% points of train error; < 0: barrier)"
#: colour-bar labels: a short readable name and the unit
_COLORBAR = {
    "test_error": "test error (%)", "test_error_mean": "test error (%)",
    "train_error": "train error (%)", "dense_test_error": "dense model's test error (%)",
    "dense_train_error": "dense model's train error (%)",
    "normalized_test_error": "test error minus the column's best (% points)",
    "lmc": _LMC, "lmc_mean": _LMC, "lmc_sem": "standard error of LMC (% points)",
    "cka": "CKA of softmax outputs (1 = same)", "cka_mean": "CKA of softmax outputs (1 = same)",
    "cka_logits": "CKA of logits (1 = same)", "cka_sem": "standard error of CKA",
    "regime_confidence": "confidence in the regime (0 to 1)",
    "hessian_trace": "Hessian trace", "hessian_trace_stderr": "s.e. of the Hessian trace",
    "hessian_top_eig": "top Hessian eigenvalue", "n_valid_pairs": "valid pairs (count)",
    "realized_density": "kept fraction of prunable weights",
}


def axis_label(attrs: Any, name: str) -> str:
    """``long_name (units)``, the units left out when dimensionless or already named."""
    long_name = str(attrs.get("long_name", name))
    units = str(attrs.get("units", "") or "")
    stem = units.lower()[:-1] if units.lower().endswith("s") and len(units) > 2 else units
    if units in ("", "1") or re.search(rf"\b{re.escape(stem.lower())}s?\b", long_name.lower()):
        return long_name
    return f"{long_name} ({units})"


def with_note(label: str, note: str) -> str:
    """``label (note)``, merged into a closing parenthesis: ``a (b; note)``."""
    return f"{label[:-1]}; {note})" if label.endswith(")") else f"{label} ({note})"


def colorbar_label(var: str, attrs: Any) -> str:
    """A short readable name with its unit for ``var``'s colour bar.

    Known variables have a fixed label; others use ``long_name (units)`` from ``attrs``,
    else the name with spaces for underscores (never the raw variable name).
    """
    text = _COLORBAR.get(var)
    if text is None:
        text = axis_label(attrs, var.replace("_", " ")) if attrs else var.replace("_", " ")
        if var in PERCENT:
            text += " (%)"
    return text


def value_text(var: str, v: float, fmt: str | None = None) -> str:
    """A cell's value as printed: percent for errors and LMC, 3 decimals for CKA, 2 for the
    regime confidence (a value that rounds to zero prints without a sign)."""
    if fmt is not None:
        return fmt.format(v)
    if var in PERCENT:
        p = round(100 * v, 1) + 0.0           # + 0.0: -0.0 -> 0.0
        return f"{p:+.1f}%" if var.startswith("lmc") and p else f"{p:.1f}%"
    if var == "regime_confidence":
        return f"{v:.2f}"
    return f"{v:.3f}" if var.startswith("cka") else f"{v:.3g}"


def cell_label(code: int, reason: int = 0, uncertain: bool = False) -> str:
    """A cell's regime in words: ``I``, ``II-A``, ``II-B``, ``unresolved``, the reason it is
    undetermined, and ``uncertain`` on a second line when the label is uncertain."""
    if code == UNDETERMINED:
        return REASON_NAMES.get(int(reason), "undetermined")
    return CELL_NAMES.get(int(code), "undetermined") + ("\nuncertain" if uncertain else "")


def nice_ticks(lo: float, hi: float, scale: float = 1.0, n: int = 5
               ) -> tuple[list[float], list[str]]:
    """Colour-bar ticks between ``lo`` and ``hi`` (data units) at steps of 1, 2 or 5 times a
    power of ten (about ``n`` of them, shown times ``scale``; :class:`matplotlib.ticker.
    MaxNLocator`), labelled with just enough decimals to tell neighbours apart:
    ``(positions, labels)``.

    >>> nice_ticks(0.044, 0.567, scale=100)[1]
    ['10', '20', '30', '40', '50']
    """
    from matplotlib.ticker import MaxNLocator

    a, b = lo * scale, hi * scale
    if not (math.isfinite(a) and math.isfinite(b)):
        return [], []
    if b - a <= 1e-12 * max(1.0, abs(a)):
        dec = max(0, 3 - int(math.floor(math.log10(abs(a)))) - 1) if a else 0
        return [lo], [_fixed(a, min(dec, 4))]
    # n + 1 intervals at most: about n ticks fall inside [a, b] (the locator spans past it)
    tol = 1e-9 * (b - a)
    ticks = [float(t) for t in MaxNLocator(nbins=n + 1, steps=[1, 2, 5, 10]).tick_values(a, b)
             if a - tol <= t <= b + tol]
    step = ticks[1] - ticks[0] if len(ticks) > 1 else b - a
    dec = max(0, -int(math.floor(math.log10(step) + 1e-9)))
    return [t / scale for t in ticks], [_fixed(t, dec) for t in ticks]


def _fixed(v: float, dec: int) -> str:
    return f"{round(v, dec) + 0.0:.{dec}f}"


def no_data_text(var: str, regime: np.ndarray | None, reason: np.ndarray | None) -> str:
    """Why a panel has no value: every cell undetermined (and why, when one reason), or NaN."""
    if regime is not None and regime.size and (regime == UNDETERMINED).all():
        why = {REASON_NAMES.get(int(r), "undetermined")
               for r in (reason.ravel() if reason is not None else [0])}
        tail = f" ({why.pop()})" if len(why) == 1 else ""
        return f"no data: every cell is undetermined{tail}"
    return f"no data: {var.replace('_', ' ')} is NaN in every cell"


def key_text(rule: str, width_in: float) -> str:
    """The regime key, wrapped to a figure ``width_in`` inches wide."""
    return textwrap.fill((f"Regimes by rule {rule}: " if rule else "Regimes: ") + KEY,
                         max(60, int(width_in * 15)))


def tick(v: Any) -> str:
    """A coordinate value as an axis tick label (floats without trailing zeros)."""
    return f"{float(v):g}" if isinstance(v, (float, np.floating)) else str(v)


def rule_name(ds: xr.Dataset) -> str:
    """The name in a regimes Dataset's ``regime_rule`` attr (``""`` when unknown)."""
    try:
        return str(json.loads(ds.attrs.get("regime_rule", "{}")).get("name", ""))
    except (TypeError, ValueError, AttributeError):
        return ""


def sweep_name(ds: xr.Dataset) -> str:
    """The sweep's name from attrs ``name`` / ``sweep_name`` / ``spec_json``; else ``""``."""
    for key in (k for k in ("name", "sweep_name") if isinstance(ds.attrs.get(k), str)):
        return ds.attrs[key]
    try:
        spec = json.loads(ds.attrs.get("spec_json", ""))
        return str(spec.get("name", "")) if isinstance(spec, dict) else ""
    except (TypeError, ValueError):
        return ""


def boundary_segments(labels: np.ndarray, *, kinds: bool = False) -> list:
    """Line segments (in cell coordinates, cell (i, j) centred at x=j, y=i) between adjacent
    cells whose determined regimes differ; ``kinds=True`` pairs each with ``"I"`` (Regime I on
    one side only), ``"II"`` (II-A next to II-B) or ``"IIu"`` (II-unresolved next to II-A or
    II-B)."""
    ny, nx = labels.shape
    segs = []
    for i in range(ny):
        for j in range(nx):
            a = labels[i, j]
            if a == UNDETERMINED:
                continue
            for b, seg in (((i, j + 1), ((j + 0.5, i - 0.5), (j + 0.5, i + 0.5))),
                           ((i + 1, j), ((j - 0.5, i + 0.5), (j + 0.5, i + 0.5)))):
                if b[0] < ny and b[1] < nx and labels[b] not in (UNDETERMINED, a):
                    kind = ("I" if REGIME_I in (a, labels[b]) else
                            "IIu" if REGIME_II_UNRESOLVED in (a, labels[b]) else "II")
                    segs.append((seg, kind) if kinds else seg)
    return segs
