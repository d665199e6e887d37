"""CKA: feature form == Gram form, invariances, streaming, debiased estimator (STYLE rule 8)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from threeregime import SpecError
from threeregime.metrics import cka, cka_pairs, gram_cka, linear_cka

torch.set_num_threads(1)


def feats(seed, n=40, p=5, q=7):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p, generator=g, dtype=torch.float64) + 3.0  # offset: centring matters
    y = (x @ torch.randn(p, q, generator=g, dtype=torch.float64)
         + 0.5 * torch.randn(n, q, generator=g, dtype=torch.float64))
    return x, y


def direct_gram_cka(x, y, debiased=False):
    """Textbook O(n^2) formulas, written independently of the library."""
    x = x.double().numpy()
    y = y.double().numpy()
    n = len(x)
    k, l = x @ x.T, y @ y.T

    def hsic(k, l):
        if not debiased:
            h = np.eye(n) - np.ones((n, n)) / n
            return np.trace(k @ h @ l @ h)
        kt, lt = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))
        one = np.ones(n)
        return (np.trace(kt @ lt) + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
                - 2 / (n - 2) * one @ kt @ lt @ one) / (n * (n - 3))

    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(6, 60), debiased=st.booleans())
def test_feature_form_equals_gram_form(seed, n, debiased):
    x, y = feats(seed, n=n)
    ref = direct_gram_cka(x, y, debiased)
    assert linear_cka(x, y, debiased=debiased) == pytest.approx(ref, rel=1e-9, abs=1e-12)
    assert gram_cka(x, y, debiased=debiased) == pytest.approx(ref, rel=1e-9, abs=1e-12)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(1e-3, 1e3), debiased=st.booleans())
def test_invariances(seed, scale, debiased):
    x, y = feats(seed, n=50, p=6, q=6)
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    assert linear_cka(x, x @ q, debiased=debiased) == pytest.approx(1.0, abs=1e-10)
    assert linear_cka(x, x, debiased=debiased) == pytest.approx(1.0, abs=1e-12)
    base = linear_cka(x, y, debiased=debiased)
    assert linear_cka(x, scale * y, debiased=debiased) == pytest.approx(base, rel=1e-9)
    assert linear_cka(x @ q, y, debiased=debiased) == pytest.approx(base, rel=1e-9)
    assert linear_cka(y, x, debiased=debiased) == pytest.approx(base, rel=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
def test_streamed_equals_one_shot(debiased):
    x, y = feats(3, n=103)
    one = linear_cka(x, y, debiased=debiased)
    for bs in (1, 7, 50):
        assert linear_cka(x, y, debiased=debiased, batch_size=bs) == pytest.approx(one,
                                                                                   rel=1e-11)
    # numpy input and float32 input accumulate in float64 as well
    assert linear_cka(x.numpy(), y.numpy(), debiased=debiased) == pytest.approx(one, rel=1e-12)


def test_rbf_is_one_for_identical_and_in_unit_interval():
    x, y = feats(1)
    assert gram_cka(x, x, kernel="rbf") == pytest.approx(1.0)
    v = gram_cka(x, y, kernel="rbf")
    assert 0 < v < 1


class Net(nn.Module):
    def __init__(self, seed, bn=True):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12) if bn else nn.Identity(),
                                  nn.ReLU())
        self.head = nn.Linear(12, 4)

    def forward(self, x):
        return self.head(self.body(x))


def test_model_cka_matches_features_and_leaves_models_untouched():
    a, b = Net(0), Net(1)
    a.train()
    x = torch.randn(90, 6)
    sa = copy.deepcopy(a.state_dict())
    r = cka(a, b, x, batch_size=16, layers=["body"])
    assert a.training
    for k, v in a.state_dict().items():
        assert torch.equal(v, sa[k])
    a.eval()
    b.eval()
    with torch.no_grad():
        za, zb = a(x), b(x)
        ha, hb = a.body(x), b.body(x)
    assert r.logits == pytest.approx(direct_gram_cka(za, zb), rel=1e-6)
    assert r.softmax == pytest.approx(direct_gram_cka(za.double().softmax(-1),
                                                      zb.double().softmax(-1)), rel=1e-6)
    assert r.layers["body"] == pytest.approx(direct_gram_cka(ha, hb), rel=1e-6)
    assert r.n == 90 and "softmax=" in repr(r)
    same = cka(a, copy.deepcopy(a), x)
    assert same.softmax == pytest.approx(1.0) and same.logits == pytest.approx(1.0)
    rd = cka(a, b, (x, torch.zeros(90, dtype=torch.long)), debiased=True)
    assert rd.logits == pytest.approx(direct_gram_cka(za, zb, debiased=True), rel=1e-6)
    rr = cka(a, b, x, kernel="rbf")
    assert 0 < rr.softmax <= 1


def test_cka_pairs_equals_looped_cka():
    nets = [Net(s) for s in range(3)]
    x = torch.randn(70, 6)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(70)),
                                         batch_size=32)
    pairs = [(0, 1), (0, 2), (1, 2)]
    r = cka_pairs(nets[0], [n.state_dict() for n in nets], pairs, loader)
    for k, (i, j) in enumerate(pairs):
        ref = cka(nets[i], nets[j], x)
        assert r.softmax[k] == pytest.approx(ref.softmax, rel=1e-6)
        assert r.logits[k] == pytest.approx(ref.logits, rel=1e-6)
    assert r[1].softmax == r.softmax[1]


def test_errors():
    a, b = Net(0), Net(1)
    x = torch.randn(10, 6)
    with pytest.raises(SpecError, match="kernel must be one of linear, rbf; got 'rfb'"):
        cka(a, b, x, kernel="rfb")
    with pytest.raises(SpecError, match="did you mean 'head'"):
        cka(a, b, x, layers=["haed"])
    with pytest.raises(SpecError, match="same number of rows"):
        linear_cka(torch.randn(5, 2), torch.randn(6, 2))
    with pytest.raises(SpecError, match="pairs must hold"):
        cka_pairs(a, [a.state_dict()], [(0, 1)], x)
