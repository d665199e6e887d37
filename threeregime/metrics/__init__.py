"""Loss-landscape metrics: each a pure function of models + data -> a small frozen result.

- :func:`lmc`, :func:`lmc_pairs`, :func:`lmc_curve_bezier` -- linear / Bezier mode connectivity
  with BatchNorm recalibration (``mc = m - e(t*)``, negative = barrier).
- :func:`cka`, :func:`cka_pairs`, :func:`linear_cka` -- centered kernel alignment of outputs
  (softmax and logits), streamed feature form in float64; debiased and RBF variants.
- :func:`hessian_trace`, :func:`hessian_top_eigenvalues` -- Hutchinson trace with standard error
  and power-iteration eigenvalues of the loss Hessian.
- :func:`corruption_error` -- test error of an ensemble under input corruptions
  (:mod:`threeregime.data.corruptions`) at several severities.

See SPEC.md section 3 for the definitions; every function documents its estimator and cost.
"""
from __future__ import annotations

from .cka import CKAPairsResult, CKAResult, cka, cka_pairs, gram_cka, linear_cka
from .hessian import HessianEigenResult, HessianTraceResult, hessian_top_eigenvalues, hessian_trace
from .lmc import LMCPairsResult, LMCResult, lmc, lmc_curve_bezier, lmc_pairs, mode_connectivity
from .robustness import CorruptionResult, corruption_error

__all__ = [
                      "CKAPairsResult",
                      "CKAResult",
                      "CorruptionResult",
                      "HessianEigenResult",
                      "HessianTraceResult",
                      "LMCPairsResult",
                      "LMCResult",
                      "cka",
                      "cka_pairs",
                      "corruption_error",
                      "gram_cka",
                      "hessian_top_eigenvalues",
                      "hessian_trace",
                      "linear_cka",
                      "lmc",
                      "lmc_curve_bezier",
                      "lmc_pairs",
                      "mode_connectivity",
]
