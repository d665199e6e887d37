"""Structured channel pruning: a smaller network equal to the masked original, group norms by
hand, the density over prunable weights, the whole-layer error, every zoo model and a user's."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from threeregime.errors import SpecError
from threeregime.models.zoo import build_model, prunable_names
from threeregime.pruning.channel import apply_plan, channel_prune, masked_equivalent
from threeregime.spec.specs import ModelSpec

torch.set_num_threads(1)


def _shake_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters (a BN bias of 0 would hide a
    wrong masked equivalent)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 2 - 1)
    return model


class _UserResNet(nn.Module):
    """A user's module: stem conv, one residual block (identity shortcut), BN, pool, head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn_a = nn.BatchNorm2d(8)
        self.conv_a = nn.Conv2d(8, 6, 3, padding=1)
        self.bn_b = nn.BatchNorm2d(6)
        self.conv_b = nn.Conv2d(6, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        h = self.stem(x)
        r = self.conv_b(F.relu(self.bn_b(self.conv_a(F.relu(self.bn_a(h))))))
        return self.head((h + r).mean(dim=(-2, -1)))


CASES = [("cnn1d", False, (1, 40)), ("cnn1d", True, (1, 40)), ("mlp", False, (1, 40)),
         ("mlp", True, (1, 40)), ("preresnet20", True, (3, 8, 8)), ("vgg", True, (3, 8, 8)),
         ("user", True, (3, 6, 6))]


def _model(name, bn, shape):
    if name == "user":
        torch.manual_seed(0)
        return _UserResNet()
    return build_model(ModelSpec(name=name, batchnorm=bn, width=0.5), shape, 10, seed=0)


@pytest.mark.parametrize("name,bn,shape", CASES)
def test_smaller_network_equals_masked_original(name, bn, shape):
    model = _shake_bn(_model(name, bn, shape))
    before = copy.deepcopy(model.state_dict())
    names = prunable_names(model)
    res = channel_prune(model, 0.4, names, shape, norm="l2")
    # physically smaller: fewer parameters, every prunable weight no larger, some smaller
    small = dict(res.model.named_parameters())
    big = dict(model.named_parameters())
    assert sum(p.numel() for p in small.values()) < sum(p.numel() for p in big.values())
    assert all(small[n].numel() <= big[n].numel() for n in names)
    assert any(small[n].shape[0] < big[n].shape[0] for n in names)
    # the input model is untouched
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    # the plan replays to the same network
    again = apply_plan(model, res.plan, shape).eval()
    for k, v in res.model.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k
    # same outputs as the original with the removed entries zeroed, in eval and train mode
    masked = masked_equivalent(model, res)
    x = torch.randn(6, *shape, generator=torch.Generator().manual_seed(1))
    for train in (False, True):
        res.model.train(train)
        masked.train(train)
        torch.testing.assert_close(res.model(x), masked(x), rtol=1e-5, atol=1e-5)
    # but not the unmasked original's
    model.eval()
    res.model.eval()
    assert not torch.allclose(res.model(x), model(x), atol=1e-3)
    # the report counts the surviving entries of the prunable weights
    rep = res.report
    assert rep["total"] == sum(big[n].numel() for n in names)
    assert rep["kept"] == sum(small[n].numel() for n in names)
    assert rep["overall"] == pytest.approx(rep["kept"] / rep["total"])
    assert all(0 < rep["layers"][n] <= 1 for n in names)
    assert sum(int(res.masks[n].sum()) for n in names) == rep["kept"]


@pytest.mark.parametrize("target", [0.1, 0.25, 0.5, 0.8])
def test_realized_density_tracks_the_target(target):
    model = build_model(ModelSpec(name="preresnet20"), (3, 8, 8), 10, seed=0)
    res = channel_prune(model, target, prunable_names(model), (3, 8, 8))
    assert abs(res.report["overall"] - target) < 0.03
    full = channel_prune(model, 1.0, prunable_names(model), (3, 8, 8))
    assert full.plan == [] and full.report["overall"] == 1.0


@pytest.mark.parametrize("norm,p", [("l1", 1), ("l2", 2)])
def test_group_norm_ranking_by_hand(norm, p):
    """Hidden unit j of Linear(3,4) -> ReLU -> Linear(4,2): score = sum |W1[j,:]|^p +
    sum |W2[:,j]|^p (producing row and consuming column).  The weights are chosen so that
    L1 and L2 disagree."""
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    w1 = torch.tensor([[1.0, 1.0, 1.0], [2.2, 0.0, 0.0], [0.1, 0.1, 0.1], [1.0, 0.5, 0.5]])
    w2 = torch.tensor([[0.1, 0.1, 0.0, 0.4], [0.1, 0.1, 0.0, 0.4]])
    with torch.no_grad():
        net[0].weight.copy_(w1)
        net[2].weight.copy_(w2)
    score = w1.abs().pow(p).sum(1) + w2.abs().pow(p).sum(0)
    want_removed = sorted(torch.argsort(score)[:2].tolist())
    # density 0.5 over the single prunable weight (4x3) keeps 2 of 4 rows
    res = channel_prune(net, 0.5, ["0.weight"], (3,), norm=norm)
    assert res.plan == [("0", want_removed)]
    assert res.model[0].weight.shape == (2, 3) and res.model[2].weight.shape == (2, 2)
    # L1 and L2 pick differently here, so the norm matters
    l1 = sorted(torch.argsort(w1.abs().sum(1) + w2.abs().sum(0))[:2].tolist())
    l2 = sorted(torch.argsort(w1.pow(2).sum(1) + w2.pow(2).sum(0))[:2].tolist())
    assert l1 != l2


def test_pruning_a_whole_layer_away_is_one_line():
    model = build_model(ModelSpec(name="cnn1d", options={"channels": 4}), (1, 40), 10, seed=0)
    with pytest.raises(SpecError) as e:
        channel_prune(model, 0.01, prunable_names(model), (1, 40))
    msg = str(e.value)
    assert "\n" not in msg and "would remove every channel of layer 'features." in msg
    assert "(4 channels" in msg and "density of about" in msg


def test_bad_arguments_are_one_line():
    model = build_model(ModelSpec(name="mlp"), (1, 40), 10, seed=0)
    with pytest.raises(SpecError, match="norm must be one of l1, l2; got 'l3'"):
        channel_prune(model, 0.5, prunable_names(model), (1, 40), norm="l3")
    with pytest.raises(SpecError, match="density must be a number in"):
        channel_prune(model, 0.0, prunable_names(model), (1, 40))
    with pytest.raises(SpecError, match="'nope.weight' is not a parameter"):
        channel_prune(model, 0.5, ["nope.weight"], (1, 40))
