"""The training loop: engines agree, SAM is SAM, snapshots are runs, masks hold, NaN is local."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from threeregime.data.sources import Splits, TensorData
from threeregime.spec.specs import TrainSpec
from threeregime.training.train import evaluate, fit, init_states, lr_factor

torch.set_num_threads(1)


def _data(n=96, d=6, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    xt = torch.randn(40, d, generator=g)
    yt = (xt[:, 0] > 0).long() + (xt[:, 1] > 0.5).long()
    return Splits(TensorData(x, y), TensorData(xt, yt), classes, (d,), None)


def _net(bn: bool, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Linear(6, 16)] + ([nn.BatchNorm1d(16)] if bn else []) + [nn.ReLU(),
                                                                         nn.Linear(16, 3)]
    return nn.Sequential(*layers)


SPEC = TrainSpec(epochs=3, batch_size=16, lr=0.05, momentum=0.9, weight_decay=1e-3,
                 milestones=(0.5,), snapshots=(0, 2))


def _states_close(a, b, atol=1e-5):
    for k in a:
        if a[k].is_floating_point():
            torch.testing.assert_close(a[k], b[k], atol=atol, rtol=1e-4, msg=k)
        else:
            assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("bn", [False, True])
@pytest.mark.parametrize("sam", [False, True])
def test_vmap_members_equal_single_model_loop(bn, sam):
    data = _data()
    template = _net(bn, 0)
    inits = [init_states(_net(bn, s)) for s in range(3)]
    gen = torch.Generator().manual_seed(1)
    masks = [None, {"0.weight": torch.rand(16, 6, generator=gen) > 0.5}, None]
    kw = dict(seeds=[5, 6, 7], lrs=[0.05, 0.02, 0.1], masks=masks,
              rhos=[0.05, 0.1, 0.0] if sam else None, progress=False)
    rv = fit(template, inits, data, SPEC, engine="vmap", **kw)
    rl = fit(template, inits, data, SPEC, engine="loop", **kw)
    for m in range(3):
        _states_close(rv.states[m], rl.states[m])
        _states_close(rv.snapshots[2][m], rl.snapshots[2][m])
    np.testing.assert_allclose(rv.history["train_loss"], rl.history["train_loss"], rtol=1e-4)
    np.testing.assert_allclose(rv.history["test_error"], rl.history["test_error"])
    if bn:  # BatchNorm statistics moved, and equally
        assert not torch.equal(rv.states[0]["1.running_mean"], inits[0]["1.running_mean"])


def test_same_seed_identical_weights_and_template_untouched():
    data = _data()
    template = _net(False, 0)
    before = init_states(template)
    a = fit(template, init_states(template), data, SPEC, seeds=[3], progress=False)
    b = fit(template, init_states(template), data, SPEC, seeds=[3], progress=False)
    c = fit(template, init_states(template), data, SPEC, seeds=[4], progress=False)
    for k in a.states[0]:
        assert torch.equal(a.states[0][k], b.states[0][k])
    assert not torch.equal(a.states[0]["0.weight"], c.states[0]["0.weight"])
    _states_close(init_states(template), before, atol=0)


@pytest.mark.parametrize("engine", ["vmap", "loop"])
def test_snapshot_equals_separate_run_stopped_there(engine):
    """Snapshot at epoch e == a run of the same recipe (same step schedule) stopped after e."""
    data = _data()
    template = _net(True, 1)
    full = fit(template, init_states(template), data, SPEC, seeds=[0], progress=False,
               engine=engine)
    for e in (2,):
        stopped = fit(template, init_states(template), data,
                      dataclasses.replace(SPEC, snapshots=()), seeds=[0], progress=False,
                      stop_epoch=e, engine=engine)
        _states_close(full.snapshots[e][0], stopped.states[0], atol=0)
    assert not torch.equal(full.snapshots[2][0]["0.weight"], full.states[0]["0.weight"])
    _states_close(full.snapshots[0][0], init_states(template), atol=0)


def test_snapshot_at_epoch_e_equals_run_with_e_epochs_under_constant_lr():
    data = _data()
    template = _net(False, 2)
    spec = dataclasses.replace(SPEC, schedule="constant", snapshots=(1, 2))
    full = fit(template, init_states(template), data, spec, seeds=[9], progress=False)
    for e in (1, 2):
        short = fit(template, init_states(template), data,
                    dataclasses.replace(spec, epochs=e, snapshots=()), seeds=[9],
                    progress=False)
        _states_close(full.snapshots[e][0], short.states[0], atol=0)


class _Quadratic(nn.Module):
    """Model whose 'output' is its parameter vector; loss = 0.5 w^T A w."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))

    def forward(self, x):
        return self.w.unsqueeze(0).expand(x.shape[0], 2)


A = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=torch.float64)


def _quad_loss(out, y):
    w = out[0]
    return 0.5 * w @ A @ w


@pytest.mark.parametrize("engine", ["vmap", "loop"])
def test_sam_step_equals_hand_computed_step_on_quadratic(engine):
    rho, lr = 0.3, 0.1
    x = torch.zeros(8, 1, dtype=torch.float64)
    y = torch.zeros(8, dtype=torch.float64)
    spec = TrainSpec(epochs=1, iterations=1, batch_size=8, lr=lr, momentum=0.0,
                     weight_decay=0.0, schedule="constant", sam_rho=rho)
    model = _Quadratic()
    r = fit(model, init_states(model), (x, y), spec, seeds=[0], engine=engine,
            loss_fn=_quad_loss, progress=False)
    w = torch.tensor([1.0, -2.0], dtype=torch.float64)
    g = A @ w
    e = rho * g / g.norm()
    expected = w - lr * (A @ (w + e))
    torch.testing.assert_close(r.states[0]["w"], expected)


def test_masked_weights_stay_exactly_zero_through_momentum_and_weight_decay():
    data = _data()
    template = _net(False, 3)
    mask = {"0.weight": torch.rand(16, 6, generator=torch.Generator().manual_seed(0)) > 0.7,
            "2.weight": torch.rand(3, 16, generator=torch.Generator().manual_seed(1)) > 0.5}
    for engine in ("vmap", "loop"):
        r = fit(template, init_states(template), data, dataclasses.replace(
            SPEC, weight_decay=0.1), seeds=[0], masks=[mask], engine=engine, progress=False)
        for k, mk in mask.items():
            w = r.states[0][k]
            assert torch.all(w[~mk] == 0), (engine, k)
            assert torch.all(w[mk] != 0), (engine, k)


def test_one_diverging_member_does_not_spoil_the_others():
    data = _data()
    template = _net(True, 4)
    inits = [init_states(template)] * 2
    spec = dataclasses.replace(SPEC, momentum=0.0)
    r = fit(template, inits, data, spec, seeds=[0, 1], lrs=[1e12, 0.05], progress=False)
    alone = fit(template, inits[1:], data, spec, seeds=[1], lrs=[0.05], progress=False)
    assert r.diverged == [True, False]
    assert r.diverged_at[0] == 1
    _states_close(r.states[1], alone.states[0])


def test_lr_schedules():
    s = TrainSpec(epochs=10, milestones=(0.5, 0.75), gamma=0.1)
    assert [lr_factor(s, k, 100) for k in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])
    c = dataclasses.replace(s, schedule="cosine")
    assert lr_factor(c, 0, 100) == 1.0 and lr_factor(c, 50, 100) == pytest.approx(0.5)
    assert lr_factor(dataclasses.replace(s, schedule="constant"), 99, 100) == 1.0


def test_iteration_budget_counts_steps():
    data = _data()
    template = _net(False, 0)
    r = fit(template, init_states(template), data,
            TrainSpec(epochs=1, iterations=10, batch_size=16), seeds=[0], progress=False)
    assert r.steps == 10
    assert r.history["train_loss"].shape == (2, 1)  # 6 steps per epoch -> 2 epochs


def test_evaluate_matches_manual():
    data = _data()
    model = _net(True, 0).eval()
    loss, err = evaluate(model, None, data.test)
    with torch.no_grad():
        out = model(data.test.x)
    assert err[0] == pytest.approx((out.argmax(1) != data.test.y).float().mean().item())
    assert loss[0] == pytest.approx(nn.functional.cross_entropy(out, data.test.y).item(),
                                    rel=1e-6)
