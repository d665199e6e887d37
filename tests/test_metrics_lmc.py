"""Linear mode connectivity: definitions, BN recalibration, name matching, batching."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from threeregime import SpecError
from threeregime.metrics import lmc, lmc_curve_bezier, lmc_pairs, mode_connectivity

torch.set_num_threads(1)


class Net(nn.Module):
    """A user-defined model: conv + optional BatchNorm + linear head."""

    def __init__(self, seed, bn=True):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv1d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm1d(4) if bn else nn.Identity()
        self.fc = nn.Linear(4 * 8, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


class NetReordered(nn.Module):
    """Same names as Net, registered in the opposite order."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4 * 8, 3)
        self.bn = nn.BatchNorm1d(4)
        self.conv = nn.Conv1d(1, 4, 3, padding=1)

    forward = Net.forward


def make_data(seed, n=120):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, generator=g)
    y = (x[:, 0, :4].sum(1) > 0).long() + (x[:, 0, 4:].sum(1) > 1).long()
    return x, y


def trained(seed, bn=True, steps=30):
    m = Net(seed, bn)
    x, y = make_data(100 + seed)
    opt = torch.optim.SGD(m.parameters(), lr=0.2)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    return m


def test_mode_connectivity_definition():
    e = np.array([0.1, 0.2, 0.5, 0.3, 0.1])
    mc, i = mode_connectivity(e)
    assert mc == pytest.approx(0.1 - 0.5) and i == 2
    mc, i = mode_connectivity(np.array([0.2, 0.05, 0.2]))
    assert mc == pytest.approx(0.15) and i == 1


@pytest.mark.parametrize("bn", [True, False])
def test_identical_endpoints_give_zero_and_flat_curve(bn):
    a = trained(0, bn)
    b = copy.deepcopy(a)
    train, test = make_data(1), make_data(2, n=50)
    r = lmc(a, b, train, test, batch_size=40)
    assert r.mc == 0.0
    assert lmc(a, b, train, test, batch_size=40, engine="vmap").mc == 0.0
    assert r.curve.shape == (11, 2, 2) and not np.isnan(r.curve).any()
    np.testing.assert_allclose(r.curve, r.curve[:1].repeat(11, 0), atol=1e-6)
    r2 = lmc(a, b, train, points=5)
    assert r2.curve.shape == (5, 2, 2) and np.isnan(r2.test_error).all()


def test_inputs_are_not_modified():
    a, b = trained(0), trained(1)
    a.train()
    b.eval()
    sa, sb = copy.deepcopy(a.state_dict()), copy.deepcopy(b.state_dict())
    lmc(a, b, make_data(1), make_data(2), batch_size=32)
    lmc(a, b, make_data(1), engine="loop")
    lmc_pairs(a, [a.state_dict(), b.state_dict()], [(0, 1)], make_data(1))
    for m, s in ((a, sa), (b, sb)):
        for k, v in m.state_dict().items():
            assert torch.equal(v, s[k]), k
    assert a.training and not b.training
    assert a.bn.momentum == 0.1


def test_matched_by_name_not_position():
    a, b = trained(0), trained(1)
    b2 = NetReordered()
    b2.load_state_dict(b.state_dict())
    assert [n for n, _ in b2.named_parameters()] != [n for n, _ in b.named_parameters()]
    data = make_data(1)
    for engine in ("loop", "vmap"):
        r1, r2 = lmc(a, b, data, engine=engine), lmc(a, b2, data, engine=engine)
        np.testing.assert_array_equal(r1.curve, r2.curve)


def test_mismatch_is_a_clear_error():
    a = trained(0)
    other = nn.Sequential(nn.Linear(8, 3))
    with pytest.raises(SpecError, match=r"same parameter and buffer names.*first: \['conv"):
        lmc(a, other, make_data(1))
    wide = Net(0)
    wide.fc = nn.Linear(4 * 8, 5)
    with pytest.raises(SpecError, match=r"first 'fc.weight': \(3, 32\) vs \(5, 32\)"):
        lmc(a, wide, make_data(1))
    with pytest.raises(SpecError, match="points must be an integer >= 2"):
        lmc(a, a, make_data(1), points=1)


class OneBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(3)
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(self.bn(x))


def _path_bn_stats(batch_size, x):
    """Run the stacked recalibration at t = 0 and read the BN buffers back."""
    from threeregime.metrics.lmc import _recalibrate_stacked
    from threeregime.training.functional import split_state, stack_states

    m = OneBN()
    state = stack_states([m.state_dict()])
    params, buffers = split_state(m, state)
    _recalibrate_stacked(copy.deepcopy(m), params, buffers, (x, torch.zeros(len(x))),
                         batch_size, torch.device("cpu"))
    return buffers["bn.running_mean"][0], buffers["bn.running_var"][0]


def test_bn_recalibration_statistics():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 3, generator=g) * torch.tensor([1.0, 2.0, 5.0]) + 3.0
    # one batch covering the data: exactly the full-data mean and unbiased variance
    mean, var = _path_bn_stats(None, x)
    torch.testing.assert_close(mean, x.mean(0))
    torch.testing.assert_close(var, x.var(0, unbiased=True))
    # unequal batches (32, 32, 32, 4): the mean is still the full-data mean (size-weighted),
    # the variance is the size-weighted mean of the per-batch unbiased variances
    mean, var = _path_bn_stats(32, x)
    torch.testing.assert_close(mean, x.mean(0))
    chunks = x.split(32)
    expect = sum(len(c) / 100 * c.var(0, unbiased=True) for c in chunks)
    torch.testing.assert_close(var, expect)
    # with equal batches this is exactly torch's momentum=None cumulative average
    ref = OneBN()
    ref.bn.momentum = None
    ref.train()
    for c in x.split(25):
        ref(c)
    mean, var = _path_bn_stats(25, x)
    torch.testing.assert_close(mean, ref.bn.running_mean)
    torch.testing.assert_close(var, ref.bn.running_var)


@pytest.mark.parametrize("engine", ["vmap", "loop", "auto"])
@pytest.mark.parametrize("bn", [True, False])
def test_pairs_equal_loop(bn, engine):
    models = [trained(s, bn) for s in range(3)]
    train, test = make_data(1), make_data(2, n=60)
    pairs = [(0, 1), (0, 2), (1, 2)]
    r = lmc_pairs(models[0], [m.state_dict() for m in models], pairs, train, test, points=6,
                  batch_size=50, engine=engine)
    assert r.curve.shape == (3, 6, 2, 2) and r.mc.shape == (3,)
    for k, (i, j) in enumerate(pairs):
        ref = lmc(models[i], models[j], train, test, points=6, batch_size=50)
        np.testing.assert_allclose(r.curve[k], ref.curve, rtol=1e-5, atol=1e-6)
        assert r.mc[k] == pytest.approx(ref.mc, abs=1e-12)
        assert r[k].mc == r.mc[k]
    chunked = lmc_pairs(models[0], [m.state_dict() for m in models], pairs, train, test,
                        points=6, batch_size=50, max_members=5, engine="vmap")
    np.testing.assert_allclose(chunked.curve, r.curve, rtol=1e-6, atol=1e-7)
    assert "LMCPairsResult" in repr(r)


def test_bn_recalibration_changes_the_curve_and_dataloader_works():
    a, b = trained(0), trained(1)
    train = make_data(1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*train), batch_size=40)
    r_pair = lmc(a, b, train, batch_size=40)
    r_load = lmc(a, b, loader, engine="vmap")
    np.testing.assert_allclose(r_pair.curve, r_load.curve, rtol=1e-6, atol=1e-7)
    r_no = lmc(a, b, train, bn_recalibrate=False)
    # the endpoints' stored statistics come from training data of another distribution
    assert not np.allclose(r_no.train_loss[1:-1], r_pair.train_loss[1:-1])


def test_bezier_runs_and_is_no_worse_at_the_middle():
    a, b = trained(0, steps=60), trained(1, steps=60)
    train = make_data(1)
    lin = lmc(a, b, train)
    bez = lmc_curve_bezier(a, b, train, epochs=15, lr=0.05, train_batch_size=40)
    assert bez.path == "bezier" and bez.curve.shape == (11, 2, 2)
    np.testing.assert_allclose(bez.curve[[0, -1]], lin.curve[[0, -1]], atol=1e-6)
    assert bez.train_loss[5] <= lin.train_loss[5] + 1e-6
