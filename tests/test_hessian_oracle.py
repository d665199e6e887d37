"""Our Hessian products, quadratic forms and trace estimators against an independent
implementation: ``curvlinops-for-pytorch`` (HessianLinearOperator, hutchinson_trace,
hutchpp_trace, xtrace), on tiny float64 zoo models.  Skipped when the package is absent (it is
in the ``dev`` extra)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from threeregime.metrics import hessian_trace
from threeregime.metrics.hessian import _HVP

curvlinops = pytest.importorskip(
    "curvlinops", reason="curvlinops-for-pytorch is not installed (pip install -e '.[dev]')")

from test_metrics_hessian import ZOO, zoo_model  # noqa: E402

torch.set_num_threads(1)


def oracle_hessian(model, x, y):
    """The dense Hessian of the mean cross-entropy, from curvlinops."""
    params = [p for p in model.parameters() if p.requires_grad]
    op = curvlinops.HessianLinearOperator(model, nn.CrossEntropyLoss(), params, [(x, y)])
    return op @ torch.eye(op.shape[1], dtype=torch.float64)


@pytest.mark.parametrize(("name", "bn"), ZOO)
def test_hvps_and_quadratic_forms_match_curvlinops(name, bn):
    model, (x, y) = zoo_model(name, bn)
    h = oracle_hessian(model, x, y)
    hv = _HVP(model, None, (x, y), params=None, masks=None, batch_size=None, device=None,
              method="autograd")
    for i in range(3):
        v = hv.rademacher(0, i)
        np.testing.assert_allclose(hv.flat(hv(v)).numpy(), (h @ hv.flat(v)).numpy(),
                                   rtol=1e-9, atol=1e-11)
    r = hessian_trace(model, None, (x, y), probes=3, seed=0, method="taylor-fx")
    assert r.method == "taylor-fx"
    want = [float(hv.flat(hv.rademacher(0, i)) @ h @ hv.flat(hv.rademacher(0, i)))
            for i in range(3)]
    np.testing.assert_allclose(r.samples, want, rtol=1e-10, atol=1e-12)


def test_trace_estimators_agree_with_curvlinops_in_mean_and_variance():
    """At the same budget of 3k products (k sketch HVPs, k quadratic forms, k residual
    probes) our Hutch++ is curvlinops' hutchpp_trace: same mean (tr H) and the same spread
    over 150 repetitions; Hutchinson likewise; xtrace's mean as a third opinion."""
    model, (x, y) = zoo_model("cnn1d", True)
    h = oracle_hessian(model, x, y)
    true = float(torch.trace(h))
    k, reps = 6, 150
    torch.manual_seed(0)
    theirs = {"hutchpp": [float(curvlinops.hutchpp_trace(h, 3 * k)) for _ in range(reps)],
              "hutchinson": [float(curvlinops.hutchinson_trace(h, 3 * k)) for _ in range(reps)],
              "xtrace": [float(curvlinops.xtrace(h, 2 * k)) for _ in range(reps)]}
    ours = {e: [hessian_trace(model, None, (x, y), probes=k if e == "hutchpp" else 3 * k,
                              seed=s, estimator=e, sketch=k, method="taylor-fx").trace
                for s in range(reps)] for e in ("hutchpp", "hutchinson")}
    for name, vals in [*theirs.items(), *(("ours " + e, v) for e, v in ours.items())]:
        vals = np.asarray(vals)
        assert abs(vals.mean() - true) < 4 * vals.std(ddof=1) / np.sqrt(reps), name
    for e in ("hutchpp", "hutchinson"):
        ratio = np.var(ours[e]) / np.var(theirs[e])
        assert 0.6 < ratio < 1.7, (e, ratio)  # F(149, 149) 99.9 % range ~ [0.59, 1.69]
    assert np.var(ours["hutchpp"]) < np.var(ours["hutchinson"])
