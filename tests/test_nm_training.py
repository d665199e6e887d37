"""N:M sparse training with progressive gradient flow: the schedules, the scaled gradient by
hand, the N:M property after every step, both engines alike, one-line errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from threeregime.data.sources import Splits, TensorData
from threeregime.errors import SpecError
from threeregime.pruning.masks import compute_masks
from threeregime.pruning.nm_training import NMTraining, effective_weight
from threeregime.spec.specs import PruneSpec, TrainSpec
from threeregime.training.engines import LoopRunner, VmapRunner
from threeregime.training.train import fit, init_states

torch.set_num_threads(1)


def _groups_ok(w: torch.Tensor, n: int, m: int) -> bool:
    """At most n non-zeros in every run of m consecutive entries (rows of (out, in*k))."""
    return bool(((w.reshape(-1, m) != 0).sum(1) <= n).all())


def _conv_data(n=32, length=12, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, length, generator=g)
    y = (x[:, 0, :4].sum(1) > 0).long() + (x[:, 1, -4:].sum(1) > 1).long()
    xt = torch.randn(20, 2, length, generator=g)
    yt = (xt[:, 0, :4].sum(1) > 0).long() + (xt[:, 1, -4:].sum(1) > 1).long()
    return Splits(TensorData(x, y), TensorData(xt, yt), classes, (2, length), None)


def _conv_net(seed: int, bn: bool) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv1d(2, 4, 2, stride=2), nn.BatchNorm1d(4) if bn else nn.Identity(),
                         nn.ReLU(), nn.Conv1d(4, 4, 2, stride=2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(12, 3))


NAMES = ["0.weight", "3.weight"]          # (4, 2*2) and (4, 4*2): rows of 4 and 8


# --------------------------------------------------------------------------- schedules
def test_decay_schedules_hand_values():
    T = 100
    lin = NMTraining(decay="linear")
    assert lin.factor(0, T) == 1.0 and lin.factor(50, T) == 0.5 and lin.factor(100, T) == 0.0
    cos = NMTraining(decay="cosine", beta0=0.8)
    assert cos.factor(0, T) == pytest.approx(0.8)
    assert cos.factor(50, T) == pytest.approx(0.4)
    assert cos.factor(25, T) == pytest.approx(0.8 * (1 + math.cos(math.pi / 4)) / 2)
    ex = NMTraining(decay="exponential", rate=2.0)
    want = (math.exp(-1.0) - math.exp(-2.0)) / (1 - math.exp(-2.0))
    assert ex.factor(0, T) == 1.0 and ex.factor(50, T) == pytest.approx(want)
    assert ex.factor(100, T) == pytest.approx(0.0, abs=1e-15)
    st = NMTraining(decay="step", steps=4)
    assert [st.factor(t, T) for t in (0, 24, 25, 74, 75, 99)] == [1, 1, .75, .5, .25, .25]
    # a window: beta0 before start, 0 from end on; constant never decays (SR-STE)
    win = NMTraining(decay="linear", start=0.2, end=0.6)
    assert win.factor(10, T) == 1.0 and win.factor(40, T) == pytest.approx(0.5)
    assert win.factor(60, T) == 0.0 and win.factor(90, T) == 0.0
    assert NMTraining(decay="constant", beta0=0.3).factor(99, T) == 0.3


# --------------------------------------------------------------------------- gradient by hand
@pytest.mark.parametrize("flow", ["gradient", "mask"])
def test_effective_weight_gradient_equals_hand_computation(flow):
    w = torch.tensor([[0.5, -2.0, 0.1, 1.0], [3.0, 0.2, -0.3, 0.05]], requires_grad=True)
    mask = torch.tensor([[0, 1, 0, 1], [1, 0, 1, 0]], dtype=torch.float32)
    x = torch.tensor([[1.0, 2.0, -1.0, 0.5], [0.5, -1.0, 2.0, 1.0]])
    beta = 0.25
    out = x @ effective_weight(w, mask, beta, flow).T          # (2 examples, 2 outputs)
    loss = (out * torch.tensor([[1.0, -1.0], [2.0, 0.5]])).sum()
    loss.backward()
    # dL/dW~[o, i] = sum_b c[b, o] x[b, i], c the loss weights; pruned entries get beta of it
    c = torch.tensor([[1.0, -1.0], [2.0, 0.5]])
    g = c.T @ x
    want = g * (mask + beta * (1 - mask))
    torch.testing.assert_close(w.grad, want, rtol=0, atol=1e-6)
    wv = w.detach()
    fwd = wv * mask if flow == "gradient" else wv * (mask + beta * (1 - mask))
    torch.testing.assert_close(out.detach(), x @ fwd.T, rtol=0, atol=0)


@pytest.mark.parametrize("runner", [VmapRunner, LoopRunner])
def test_engine_step_applies_decayed_gradient_to_pruned_latent_weights(runner):
    """Two plain SGD steps of a bias-free linear layer, loss = mean output; by hand."""
    lin = nn.Linear(4, 1, bias=False)
    w0 = torch.tensor([[0.4, -0.1, 0.3, 0.2]])
    spec = TrainSpec(epochs=1, batch_size=2, lr=0.5, momentum=0.0, weight_decay=0.0,
                     schedule="constant")
    cfg = NMTraining(n=2, m=4, decay="linear")           # beta_0 = 1, beta_1 = 0.5 (T = 2)
    r = runner(lin, [{"weight": w0}], [None], [0.5], [0.0], spec, torch.device("cpu"),
               lambda out, y: out.mean(), nm=(cfg, frozenset({"weight"}), 2))
    xs = [torch.tensor([[1.0, 2.0, 3.0, 4.0], [3.0, 2.0, 1.0, 0.0]]),
          torch.tensor([[2.0, 0.0, 2.0, 2.0], [0.0, 2.0, 0.0, 0.0]])]
    w, y = w0.clone(), torch.zeros(2, dtype=torch.long)
    for t, x in enumerate(xs):
        beta = cfg.factor(t, 2)
        mask = torch.zeros(4)
        mask[torch.sort(w.abs()[0], descending=True, stable=True).indices[:2]] = 1
        g = x.mean(0, keepdim=True)                      # d mean(x @ (w*mask)) / d(w*mask)
        w = w - 0.5 * g * (mask + beta * (1 - mask))
        r.step([x], [y], 1.0)
    latent = r.params[0][0] if runner is VmapRunner else r.models[0].weight.detach()
    torch.testing.assert_close(latent, w, rtol=0, atol=1e-7)
    # the state is the sparse effective weight under the recomputed mask
    mask = torch.zeros(4, dtype=torch.bool)
    mask[torch.sort(w.abs()[0], descending=True, stable=True).indices[:2]] = True
    torch.testing.assert_close(r.states()[0]["weight"], w * mask, rtol=0, atol=1e-7)
    assert torch.equal(r.masks_now()[0]["weight"], mask.reshape(1, 4))


# --------------------------------------------------------------------------- every step
@pytest.mark.parametrize("engine", ["vmap", "loop"])
@pytest.mark.parametrize("nm", [(2, 4), (1, 4), (1, 2)])
def test_nm_property_holds_after_every_step(engine, nm):
    """One step per epoch and a snapshot at every epoch: every step's model is N:M."""
    data = _conv_data()
    epochs = 8
    spec = TrainSpec(epochs=epochs, batch_size=32, lr=0.2, momentum=0.9, weight_decay=1e-3,
                     schedule="constant", snapshots=tuple(range(epochs + 1)))
    cfg = NMTraining(n=nm[0], m=nm[1], decay="cosine")
    inits = [init_states(_conv_net(s, True)) for s in (0, 1)]
    res = fit(_conv_net(0, True), inits, data, spec, seeds=[3, 4], nm=cfg, nm_names=NAMES,
              engine=engine, progress=False)
    assert res.steps == epochs
    for e in range(1, epochs + 1):
        for st in res.snapshots[e]:
            for k in NAMES:
                assert _groups_ok(st[k], *nm), (e, k)
    for mk, st in zip(res.masks, res.states):
        for k in NAMES:
            groups = mk[k].reshape(-1, nm[1])
            assert bool((groups.sum(1) == nm[0]).all())     # exactly N kept per group
            assert torch.equal(st[k] != 0, mk[k])          # no kept weight is exactly 0 here
    # the masks moved during training (recomputed from the latent weights)
    first = compute_masks(inits[0], PruneSpec(method="nm", nm=f"{nm[0]}:{nm[1]}",
                                              density=nm[0] / nm[1]), NAMES)
    assert any(not torch.equal(first[k], res.masks[0][k]) for k in NAMES)
    # the initial snapshot is the dense init (epoch 0, before any step), the rest are sparse
    assert torch.equal(res.snapshots[0][0]["0.weight"], inits[0]["0.weight"] * first["0.weight"])


@pytest.mark.parametrize("bn", [False, True])
@pytest.mark.parametrize("sam", [False, True])
def test_engines_agree_under_nm_training(bn, sam):
    data = _conv_data()
    spec = TrainSpec(epochs=3, batch_size=8, lr=0.05, momentum=0.9, weight_decay=1e-3,
                     milestones=(0.5,), snapshots=(2,))
    cfg = NMTraining(n=1, m=4, decay="exponential", refine=2e-4, every=2)
    inits = [init_states(_conv_net(s, bn)) for s in range(3)]
    kw = dict(seeds=[5, 6, 7], lrs=[0.05, 0.02, 0.1], rhos=[0.05, 0.1, 0.0] if sam else None,
              nm=cfg, nm_names=NAMES, progress=False)
    rv = fit(_conv_net(0, bn), inits, data, spec, engine="vmap", **kw)
    rl = fit(_conv_net(0, bn), inits, data, spec, engine="loop", **kw)
    for m in range(3):
        for k in rv.states[m]:
            torch.testing.assert_close(rv.states[m][k], rl.states[m][k], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(rv.snapshots[2][m][k], rl.snapshots[2][m][k],
                                       atol=1e-5, rtol=1e-4)
        for k in NAMES:
            assert torch.equal(rv.masks[m][k], rl.masks[m][k])
    np.testing.assert_allclose(rv.history["train_loss"], rl.history["train_loss"], rtol=1e-4)
    np.testing.assert_allclose(rv.history["test_error"], rl.history["test_error"])


def test_decay_changes_the_result_and_constant_is_ste():
    """beta = 0 throughout (hard sparse) vs beta = 1 (STE) vs a decay: different runs."""
    data = _conv_data()
    spec = TrainSpec(epochs=4, batch_size=8, lr=0.1, schedule="constant")
    init = init_states(_conv_net(0, False))
    runs = {d: fit(_conv_net(0, False), init, data, spec, seeds=[1], progress=False,
                   nm=NMTraining(n=1, m=4, decay=d, beta0=b), nm_names=NAMES).states[0]
            for d, b in (("constant", 1.0), ("linear", 1.0), ("cosine", 0.0))}
    a, b, c = (runs[k]["3.weight"] for k in ("constant", "linear", "cosine"))
    assert not torch.equal(a, b) and not torch.equal(b, c)


# --------------------------------------------------------------------------- errors
def test_pattern_a_layer_cannot_take_is_one_line():
    data = _conv_data()
    net = nn.Sequential(nn.Conv1d(2, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(20, 3))
    spec = TrainSpec(epochs=1, batch_size=8)
    with pytest.raises(SpecError) as e:
        fit(net, init_states(net), data, spec, nm=NMTraining(n=2, m=4), progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "'0.weight'" in msg and "(4, 2, 3)" in msg and "2:4" in msg
    assert "length 6" in msg


def test_bad_nm_config_and_overlap_are_one_line():
    with pytest.raises(SpecError, match=r"decay must be one of .*did you mean 'cosine'"):
        NMTraining(decay="cosin")
    with pytest.raises(SpecError, match="n must be <= m"):
        NMTraining(n=5, m=4)
    with pytest.raises(SpecError, match="end must be > start"):
        NMTraining(start=0.5, end=0.5)
    data = _conv_data()
    net = _conv_net(0, False)
    mk = {"0.weight": torch.ones(4, 2, 2, dtype=torch.bool)}
    with pytest.raises(SpecError, match="masks and nm both name '0.weight'"):
        fit(net, init_states(net), data, TrainSpec(epochs=1, batch_size=8), masks=[mk],
            nm={"n": 2, "m": 4}, nm_names=NAMES, progress=False)
    with pytest.raises(SpecError, match="nm_names: 'x.weight' is not a parameter"):
        fit(net, init_states(net), data, TrainSpec(epochs=1, batch_size=8),
            nm={"n": 2, "m": 4}, nm_names=["x.weight"], progress=False)
