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


# --------------------------------------------------------------------------- stability (issue 18)
def centred_gram_cka(x, y):
    """float64 Gram-form reference: centre the features (two-pass), then <K, L> / (|K| |L|)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    xc, yc = x - x.mean(0), y - y.mean(0)
    k, l = xc @ xc.T, yc @ yc.T
    return float((k * l).sum() / np.sqrt((k * k).sum() * (l * l).sum()))


@pytest.mark.parametrize("batch_size", [None, 1, 7, 33])
def test_large_mean_offset_matches_centred_reference(batch_size):
    x, y = feats(11, n=80)
    ref = centred_gram_cka(x, y)
    off_x, off_y = x + 1e6, y - 1e6  # a mean 1e6 away from the spread of ~1
    assert linear_cka(off_x, off_y, batch_size=batch_size) == pytest.approx(ref, rel=1e-9)
    assert linear_cka(off_x, off_y, debiased=True, batch_size=batch_size) == pytest.approx(
        linear_cka(x, y, debiased=True), rel=1e-6)
    assert gram_cka(off_x, off_y) == pytest.approx(ref, rel=1e-9)


def near_chance_softmax(seed, n=300, classes=10, spread=1e-6):
    """Softmax of a model at chance: every row ~1/C, varying in the 6th decimal."""
    g = np.random.default_rng(seed)
    logits = spread * g.standard_normal((n, classes))
    z = np.exp(logits - logits.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


@pytest.mark.parametrize("batch_size", [None, 16])
def test_near_constant_outputs_match_reference_and_stay_below_one(batch_size):
    for seed in range(5):
        a = near_chance_softmax(seed)
        b = 0.5 * a + 0.5 * near_chance_softmax(seed + 100)
        ref = centred_gram_cka(a, b)
        v = linear_cka(a, b, batch_size=batch_size)
        assert v == pytest.approx(ref, rel=1e-6, abs=1e-9)
        assert 0.0 <= v <= 1.0 + 1e-12
        assert linear_cka(a, a, batch_size=batch_size) == pytest.approx(1.0, abs=1e-12)


def test_constant_outputs_give_nan_and_one_warning():
    from threeregime.errors import ThreeRegimeWarning

    x = np.full((30, 10), 0.1)
    y = np.random.default_rng(0).random((30, 10))
    for f in (lambda: linear_cka(x, y), lambda: linear_cka(x, y, batch_size=4),
              lambda: linear_cka(y, x, debiased=True), lambda: gram_cka(x, y),
              lambda: gram_cka(x, y, kernel="rbf")):
        with pytest.warns(ThreeRegimeWarning, match="constant outputs") as rec:
            assert np.isnan(f())
        assert len(rec) == 1

    class Const(nn.Module):
        def __init__(self):
            super().__init__()
            self.b = nn.Parameter(torch.zeros(4))

        def forward(self, x):
            return self.b.expand(len(x), 4)

    with pytest.warns(ThreeRegimeWarning, match="softmax, logits") as rec:
        r = cka(Const(), Net(0), torch.randn(20, 6), batch_size=8)
    assert len(rec) == 1 and np.isnan(r.softmax) and np.isnan(r.logits)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(3, 50), p=st.integers(1, 8),
       q=st.integers(1, 8), log_offset=st.floats(-3, 7), log_scale=st.floats(-8, 3),
       batch=st.sampled_from([None, 1, 5]))
def test_value_in_unit_interval_for_any_input(seed, n, p, q, log_offset, log_scale, batch):
    g = np.random.default_rng(seed)
    x = 10.0 ** log_offset + 10.0 ** log_scale * g.standard_normal((n, p))
    y = x[:, :1] * g.standard_normal(q) + 10.0 ** log_scale * g.standard_normal((n, q))
    import warnings

    with warnings.catch_warnings():  # a draw can be constant at float64 resolution
        warnings.simplefilter("ignore")
        v = linear_cka(x, y, batch_size=batch)
    if not np.isnan(v):
        assert -1e-12 <= v <= 1.0 + 1e-12
