"""The point measures the measure stage runs, by name: a registry (torch half).

A measure is one function ``fn(inp: MeasureInput) -> {variable: array}`` registered in
:data:`MEASURES`.  The measure stage (:func:`threeregime.sweep.stages.measure_point`) runs the
measures a :class:`~threeregime.spec.specs.MeasureSpec` names (:meth:`MeasureSpec.names`: ``lmc``,
``cka``, ``hessian`` by their flags, then ``extra``), in that order, and writes what they return
into the point Dataset.  The built-in measures fill the point schema's variables
(:mod:`threeregime.results.storage`); any other measure declares its variables (dims and long name)
when it registers, and they become variables of the point and sweep Datasets.

Adding a measure = one registered function plus its entry in the contract test
(``tests/test_measures.py``)::

    @register_measure("weight_norm", {"weight_norm": (("retrain_seed",), "L2 norm of weights")})
    def _weight_norm(inp):
        return {"weight_norm": [float(...) for s in inp.states]}

and ``measure: {extra: [weight_norm]}`` in a sweep file.  A measure built into this module is
also named in ``threeregime.registry.BUILTIN["measure"]``, so that specs naming it validate
without importing torch (``tests/test_builtin_names.py`` checks that the two agree).
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import metrics
from ..data.corruptions import CORRUPTIONS
from ..registry import Registry
from ..spec.specs import PointSpec
from ..training.device import resolve_device
from ..training.functional import evaluate_states
from .robustness import corruption_error

__all__ = ["MEASURES", "Measure", "MeasureInput", "register_measure", "run_measures",
           "val_errors"]


@dataclass(frozen=True)
class MeasureInput:
    """What a measure sees of one point.

    Attributes
    ----------
    template : architecture of the retrained models (its state is never used).
    states, masks : per retrained model (K of them), its state dict and pruning mask.
    ok : per retrained model, False when it (or its dense source) diverged: not measured.
    pairs : ``[(i, a, b), ...]``: pair index ``i`` (of all ``K(K-1)/2``) and the two models
        ``a < b``, only pairs of models that are ``ok``.
    n_pairs : ``K(K-1)/2``.
    data : the point's ``Splits`` (``.train``, ``.test`` with ``.x``, ``.y``).
    point : the point spec (``point.measure`` holds the measures' settings).
    device : where to compute (``"auto"``, ``"cpu"``, ``"cuda:N"``).
    """

    template: nn.Module
    states: Sequence[Mapping[str, torch.Tensor]]
    masks: Sequence[Mapping[str, torch.Tensor]]
    ok: Sequence[bool]
    pairs: Sequence[tuple[int, int, int]]
    n_pairs: int
    data: Any
    point: PointSpec
    device: str = "auto"

    @property
    def K(self) -> int:  # noqa: N802 (the paper's symbol)
        return len(self.states)


@dataclass(frozen=True)
class Measure:
    """A registered measure: its function and the variables it adds beyond the point schema
    (name -> (dims, long_name); units are "1")."""

    fn: Callable[[MeasureInput], dict[str, Any]]
    variables: dict[str, tuple[tuple[str, ...], str]] = field(default_factory=dict)


#: Point measures by name (``MeasureSpec.names()``).
MEASURES: Registry[Measure] = Registry("measure")


def register_measure(name: str, variables: Mapping[str, tuple[tuple[str, ...], str]] | None
                     = None) -> Callable:
    """Decorator: register ``fn(inp) -> {variable: array}`` as measure ``name``."""
    def deco(fn: Callable) -> Callable:
        MEASURES.register(name)(Measure(fn, dict(variables or {})))
        return fn
    return deco


def _pair_fill(n_pairs: int, pairs, values: Sequence[float]) -> np.ndarray:
    out = np.full(n_pairs, np.nan)
    for n, (i, _, _) in enumerate(pairs):
        out[i] = values[n]
    return out


@register_measure("lmc")
def _lmc(inp: MeasureInput) -> dict[str, Any]:
    """Linear mode connectivity of every ok pair (:func:`threeregime.metrics.lmc_pairs`)."""
    if not inp.pairs:
        return {}
    m = inp.point.measure
    T = m.lmc_points
    res = metrics.lmc_pairs(inp.template, inp.states, [(a, b) for _, a, b in inp.pairs],
                            inp.data.train, inp.data.test if m.lmc_test else None,
                            points=T, batch_size=m.eval_batch_size, device=inp.device)
    curve = np.full((inp.n_pairs, T, 2, 2), np.nan)
    for n, (i, _, _) in enumerate(inp.pairs):
        curve[i] = res[n].curve
    return {"lmc": _pair_fill(inp.n_pairs, inp.pairs, [r.mc for r in res]), "lmc_curve": curve}


@register_measure("cka")
def _cka(inp: MeasureInput) -> dict[str, Any]:
    """Linear CKA of softmax outputs and logits of every ok pair
    (:func:`threeregime.metrics.cka_pairs`)."""
    if not inp.pairs:
        return {}
    m = inp.point.measure
    inputs = inp.data.test.x if m.cka_inputs == "test" else inp.data.train.x
    if m.cka_n is not None:
        inputs = inputs[:m.cka_n]
    res = metrics.cka_pairs(inp.template, inp.states, [(a, b) for _, a, b in inp.pairs], inputs,
                            batch_size=m.eval_batch_size, device=inp.device)
    return {"cka": _pair_fill(inp.n_pairs, inp.pairs, [r.softmax for r in res]),
            "cka_logits": _pair_fill(inp.n_pairs, inp.pairs, [r.logits for r in res])}


def loaded(template: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """A copy of ``template`` holding ``state``, in eval mode."""
    m = copy.deepcopy(template)
    m.load_state_dict(state)
    return m.eval()


@register_measure("hessian")
def _hessian(inp: MeasureInput) -> dict[str, Any]:
    """Hutchinson trace (with its standard error) and top eigenvalue of the loss Hessian of
    every ok model, on the first ``hessian_n`` training examples."""
    m, p = inp.point.measure, inp.point
    dev = resolve_device(inp.device)
    sub = (inp.data.train.x[:m.hessian_n], inp.data.train.y[:m.hessian_n])
    tr_, se, eig = (np.full(inp.K, np.nan) for _ in range(3))
    loss = torch.nn.functional.cross_entropy
    for k, state in enumerate(inp.states):
        if not inp.ok[k]:
            continue
        mdl = loaded(inp.template, state).to(dev)
        t = metrics.hessian_trace(mdl, loss, sub, probes=m.hessian_probes,
                                  seed=p.dense_seed * 1000 + k, masks=inp.masks[k])
        tr_[k], se[k] = t.trace, t.stderr
        e = metrics.hessian_top_eigenvalues(mdl, loss, sub, k=m.hessian_top_k,
                                            seed=p.dense_seed, masks=inp.masks[k])
        eig[k] = e.eigenvalues[0]
    return {"hessian_trace": tr_, "hessian_trace_stderr": se, "hessian_top_eig": eig}


@register_measure("robustness", {"corrupted_test_error": (
        ("retrain_seed", "corruption", "severity"),
        "test error under input corruption (corruption: measure.corruptions or every one "
        "that applies to the inputs, in threeregime.data.corruptions order; severity: "
        "measure.severities)")})
def _robustness(inp: MeasureInput) -> dict[str, Any]:
    """Test error of every ok model under every corruption and severity
    (:func:`threeregime.metrics.robustness.corruption_error`); corruption seed 0 everywhere,
    so every cell of a sweep sees the same corrupted test set."""
    m = inp.point.measure
    spatial = inp.data.test.x.dim() - 2
    names = m.corruptions or tuple(n for n, (_, d) in CORRUPTIONS.items() if spatial in d)
    out = np.full((inp.K, len(names), len(m.severities)), np.nan)
    idx = [k for k in range(inp.K) if inp.ok[k]]
    if idx:
        res = corruption_error(inp.template, [inp.states[k] for k in idx], inp.data.test,
                               names, m.severities, 0, batch_size=m.eval_batch_size,
                               device=inp.device)
        out[idx] = res.error
    return {"corrupted_test_error": out}


def run_measures(inp: MeasureInput, names: Sequence[str]) -> tuple[dict[str, Any], dict]:
    """Run the measures ``names`` in order.

    Returns
    -------
    (schema, extra)
        ``schema``: values of the point schema's variables; ``extra``: name -> (dims, values,
        attrs) of the variables registered measures add.
    """
    schema: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for name in names:
        meas = MEASURES.get(name, field="measure")
        for var, values in meas.fn(inp).items():
            if var in meas.variables:
                dims, long_name = meas.variables[var]
                extra[var] = (dims, np.asarray(values, dtype=np.float64),
                              {"long_name": long_name, "units": "1"})
            else:
                schema[var] = values
    return schema, extra


def val_errors(inp: MeasureInput, dense: Mapping[str, Any], dense_template: nn.Module
               ) -> dict[str, Any]:
    """``val_error`` (per retrained model, its final state) and ``dense_val_error`` on the
    point's validation split (``inp.data.val``, ``data.val_size``); an empty dict without one
    (the point schema's NaN), NaN for a diverged model.

    Evaluated by the measure stage, not when training: the split is no part of the dense and
    retrain keys (:mod:`threeregime.sweep.plan`), so a spec with ``val_size`` reuses the models
    of the same spec without it.  ``dense`` is the dense checkpoint (``state``, ``diverged``) and
    ``dense_template`` its architecture (channel pruning retrains a smaller one).
    """
    val = getattr(inp.data, "val", None)
    if val is None:
        return {}
    live = [i for i, good in enumerate(inp.ok) if good]
    errs = np.full(inp.K, np.nan)
    if live:
        errs[live] = evaluate_states(inp.template, [inp.states[i] for i in live], val,
                                     device=resolve_device(inp.device))[1]
    dense_err = np.nan
    if not dense["diverged"]:
        dense_err = float(evaluate_states(dense_template, [dense["state"]], val,
                                          device=resolve_device(inp.device))[1][0])
    return {"val_error": errs, "dense_val_error": dense_err}
