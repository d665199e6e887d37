"""How an :class:`threeregime.advice.Advice` shows itself: text, HTML, a dict, a table row.

Two confidences, named apart because they answer different questions: a sweep's rules
(``paper_step``, ``level``) give the **seed agreement**, the fraction of dense seeds whose own
label is the pooled one ("3/4 dense seeds agree"); the legacy rule gives a **probability** of
the assigned regime from a normal approximation of the seed-pair means (one model, or a sweep
read with ``rule="legacy"``), printed as ``> 0.999`` rather than ``1.00`` when it is that
close to 1.  A sweep's Advice also carries its column along the temperature axis (test error
of every value with a 95 % t-interval over dense x retraining seeds) and the column's best
value; both a sweep's and one model's Advice carry the dense model's own error.  No torch.
"""
from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["confidence_kind", "confidence_text", "column_evidence", "text_lines", "to_html",
           "to_jsonable", "summary_row"]

PROBABILITY = "probability"
AGREEMENT = "seed agreement"


def confidence_kind(rule: Mapping) -> str:
    """What the confidence of an Advice labelled by ``rule`` (its dict) is."""
    legacy = rule.get("family") == "legacy" or "cka_rule" in rule
    return PROBABILITY if legacy else AGREEMENT


def _f(x: Any) -> float:
    return math.nan if x is None else float(x)


def confidence_text(confidence: float, kind: str, n_seeds: int | None = None) -> str:
    """``"probability 0.93"``, ``"probability > 0.999"``, ``"3/4 dense seeds agree"``; ``""``
    when there is none (one model under a seed-agreement rule)."""
    c = _f(confidence)
    if not math.isfinite(c):
        return "no seed agreement with one model" if kind == AGREEMENT else "probability n/a"
    if kind == PROBABILITY:
        if c > 0.999:
            return "probability > 0.999"
        return "probability < 0.001" if c < 0.001 else f"probability {c:.2f}"
    if kind == AGREEMENT and n_seeds:
        return f"{round(c * n_seeds)}/{n_seeds} dense seeds agree"
    return f"{kind or 'confidence'} {c:.2f}"


def _t_interval(values: np.ndarray) -> tuple[float, float, int]:
    """Mean, half-width of its 95 % t-interval (NaN with < 2 values) and n of the finite
    ``values``."""
    from scipy import stats

    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, 0
    if v.size < 2:
        return float(v.mean()), math.nan, 1
    half = stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return float(v.mean()), float(half), int(v.size)


def column_evidence(ds: xr.Dataset, sel: Mapping[str, int], hyperparameter: str) -> dict:
    """The cell's column along ``hyperparameter`` (the other cell coordinates of ``sel``
    fixed): every value's retrained test error with its 95 % t-interval over dense x
    retraining seeds, the value with the lowest mean error, and the cell's dense model error
    (mean over dense seeds)."""
    out: dict[str, Any] = {}
    if "test_error" in ds and hyperparameter in ds["test_error"].dims:
        col = ds["test_error"].isel({k: v for k, v in sel.items() if k != hyperparameter})
        rows = []
        for i, value in enumerate(np.asarray(ds[hyperparameter].values)):
            mean, half, n = _t_interval(col.isel({hyperparameter: i}).values)
            rows.append({"value": float(value), "test_error": mean, "ci95": half, "n": n})
        out["column"] = rows
        finite = [r for r in rows if math.isfinite(r["test_error"])]
        if finite:
            best = min(finite, key=lambda r: r["test_error"])
            out["best_value"], out["best_test_error"] = best["value"], best["test_error"]
    for k in ("dense_test_error", "dense_train_error"):
        if k in ds:
            v = np.asarray(ds[k].isel(sel).values, dtype=float)
            out[k] = float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
    return out


def _pct(e: float, half: float = math.nan) -> str:
    if not math.isfinite(e):
        return "n/a"
    return f"{100 * e:.1f} +/- {100 * half:.1f} %" if math.isfinite(half) else f"{100 * e:.1f} %"


def _column_line(adv: Any) -> str | None:
    """The cell's neighbours along the axis, with intervals, and the column's best value."""
    ev, hp = adv.evidence, adv.hyperparameter
    rows = ev.get("column")
    if not rows or adv.value is None:
        return None
    here = min(range(len(rows)), key=lambda i: abs(rows[i]["value"] - adv.value))
    near = rows[max(0, here - 1):here + 2]
    cells = [f"{r['value']:g}{' (here)' if r is rows[here] else ''}: "
             f"{_pct(r['test_error'], r['ci95'])}" for r in near]
    best = (f"; best {hp} in the column: {ev['best_value']:g} ({_pct(ev['best_test_error'])})"
            if "best_value" in ev else "")
    return f"  test error by {hp} (95 % interval): " + " | ".join(cells) + best


def text_lines(adv: Any, rule_lines: tuple[str, str], pm: Any) -> list[str]:
    """The Advice as text lines (``rule_lines``: the rule's LMC and CKA criteria in words;
    ``pm``: the mean +/- sem formatter of :mod:`threeregime.advice`)."""
    ev = adv.evidence
    val = "" if adv.value is None else f" = {adv.value:g}"
    dens = ev.get("density")
    dens_s = "" if dens is None else f" at density {dens:g}"
    conf = confidence_text(adv.confidence, adv.confidence_kind, ev.get("n_dense_seeds"))
    lines = [f"Advice: {adv.move} ({adv.direction}; regime {adv.regime}, {conf})",
             f"  {adv.hyperparameter}{val}{dens_s}; {ev.get('n_pairs', 0)} seed pair(s)",
             f"  LMC mc  {pm(ev.get('lmc_mean'), ev.get('lmc_sem'), percent=True)}   "
             f"{rule_lines[0]}",
             f"  CKA     {pm(ev.get('cka_mean'), ev.get('cka_sem'), 3)}   {rule_lines[1]}"]
    if ev.get("uncertain"):
        lines.append("  uncertain: the label flips across dense seeds or sits within one "
                     "standard error of its threshold")
    errs = []
    te = _f(ev.get("test_error_mean"))
    if math.isfinite(te):
        errs.append(f"retrained test error {100 * te:.2f} %")
    dte, dtr = _f(ev.get("dense_test_error")), _f(ev.get("dense_train_error"))
    if math.isfinite(dte):
        errs.append(f"dense model: test error {100 * dte:.2f} %, train error {100 * dtr:.2f} %")
    if errs:
        lines.append("  " + "; ".join(errs))
    column = _column_line(adv)
    if column:
        lines.append(column)
    reason = ev.get("undetermined_reason")
    if adv.regime == "undetermined" and reason:
        lines.append(f"  undetermined: {reason}")
    return lines


def to_jsonable(x: Any) -> Any:
    """``x`` with numpy scalars and arrays as Python numbers and lists (``json.dumps``-able;
    NaN stays a float NaN)."""
    if isinstance(x, Mapping):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    return x


_SUMMARY = ("density", "lmc_mean", "lmc_sem", "cka_mean", "cka_sem", "n_pairs",
            "test_error_mean", "dense_test_error", "dense_train_error", "best_value",
            "best_test_error", "uncertain", "undetermined_reason")


def summary_row(adv: Any) -> dict:
    """One flat row of scalars: the labels, the confidence and its kind, the evidence's
    summaries and the rule's name (``to_frame``)."""
    row = {"regime": adv.regime, "direction": adv.direction, "move": adv.move,
           "hyperparameter": adv.hyperparameter,
           "value": math.nan if adv.value is None else adv.value,
           "confidence": adv.confidence, "confidence_kind": adv.confidence_kind}
    row.update({k: adv.evidence.get(k) for k in _SUMMARY})
    row["rule"] = adv.rule.get("name", "legacy" if "cka_rule" in adv.rule else None)
    return to_jsonable(row)


def to_html(lines: list[str]) -> str:
    """A notebook view: the advice as a heading, the evidence lines as a table."""
    head, *rest = lines
    rows = "".join(f"<tr><td style='text-align:left'>{html.escape(ln.strip())}</td></tr>"
                   for ln in rest)
    return (f"<div class='threeregime-advice'><strong>{html.escape(head)}</strong>"
            f"<table>{rows}</table></div>")
