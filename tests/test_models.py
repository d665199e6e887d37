"""Model zoo: one contract test over every registered model, plus bad-input messages."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from threeregime import ModelSpec, SpecError
from threeregime._functional import ensemble_forward, split_state, stack_states, template_of
from threeregime.models import MODELS, build_model, prunable_names

torch.set_num_threads(1)

# name -> (small spec kwargs, a matching input shape)
CASES = {
    "mlp": (dict(options={"hidden": [16, 8]}), (1, 40)),
    "cnn1d": (dict(width=0.25), (1, 40)),
    "preresnet20": (dict(width=0.25), (3, 8, 8)),
    "vgg": (dict(width=0.125), (3, 16, 16)),
}


def _states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("batchnorm", [False, True], ids=["plain", "bn"])
@pytest.mark.parametrize("name", MODELS.names())
def test_model_contract(name, batchnorm):
    assert name in CASES, f"add a contract case for the new model {name!r}"
    kwargs, shape = CASES[name]
    spec = ModelSpec(name, batchnorm=batchnorm, **kwargs)
    t_state, n_state = torch.get_rng_state(), np.random.get_state()
    models = [build_model(spec, shape, 5, seed=s) for s in (0, 1)]
    assert torch.equal(torch.get_rng_state(), t_state)
    assert np.array_equal(np.random.get_state()[1], n_state[1])

    # same seed -> identical weights; different seed -> different
    again = build_model(spec, shape, 5, seed=0)
    assert _states_equal(again.state_dict(), models[0].state_dict())
    assert not _states_equal(models[1].state_dict(), models[0].state_dict())

    x = torch.randn(2, 4, *shape, generator=torch.Generator().manual_seed(0))   # (M, B, ...)
    for m in models:
        m.eval()
        assert m(x[0]).shape == (4, 5)

    # prunable names: weights of Linear/Conv layers, classifier excluded unless asked for
    names = prunable_names(models[0])
    params = dict(models[0].named_parameters())
    assert names and all(n in params and params[n].ndim >= 2 for n in names)
    assert "classifier.weight" not in names
    assert prunable_names(models[0], include_classifier=True) == [*names, "classifier.weight"]

    # vmapped ensemble == per-model forward, in eval and train mode (BN buffers per member)
    template = template_of(models[0])
    for train in (False, True):
        refs = [copy.deepcopy(m).train(train) for m in models]
        stacked = stack_states([m.state_dict() for m in refs])
        p, b = split_state(template, stacked)
        out = ensemble_forward(template, p, b, x, train=train)
        assert out.shape == (2, 4, 5)
        for i, ref in enumerate(refs):
            torch.testing.assert_close(out[i], ref(x[i]), rtol=1e-4, atol=1e-5)
            for k, v in ref.state_dict().items():     # updated running statistics agree
                if k in b:
                    torch.testing.assert_close(b[k][i], v, rtol=1e-4, atol=1e-5)
        shared = ensemble_forward(template, *split_state(template, stack_states(
            [m.state_dict() for m in models])), x[0], train=False, shared_input=True)
        torch.testing.assert_close(shared[1], copy.deepcopy(models[1]).eval()(x[0]),
                                   rtol=1e-4, atol=1e-5)


def test_cnn1d_matches_probe_size():
    """Probe (PROBE.md): 32 channels on (1, 40): 6,304 prunable; 8,202 parameters with BN."""
    for bn, total in ((False, 8010), (True, 8202)):
        m = build_model(ModelSpec("cnn1d", batchnorm=bn), (1, 40), 10, seed=0)
        params = dict(m.named_parameters())
        assert sum(p.numel() for p in m.parameters()) == total
        assert sum(params[n].numel() for n in prunable_names(m)) == 6304


def test_preresnet20_structure():
    m = build_model(ModelSpec("preresnet20"), (3, 32, 32), 10, seed=0)
    names = prunable_names(m)
    assert len(names) == 1 + 18 + 2          # first conv, 9 blocks x 2 convs, 2 shortcuts
    assert names[0] == "conv1.weight" and sum("shortcut" in n for n in names) == 2
    assert 0.26e6 < sum(p.numel() for p in m.parameters()) < 0.28e6


def test_mlp_width_and_custom_prunable_names():
    m = build_model(ModelSpec("mlp", width=0.5, options={"hidden": [20]}), (64,), 10, seed=0)
    assert m.hidden[0].out_features == 10

    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3)

        def prunable_names(self, include_classifier):
            return ["a.weight"]

    assert prunable_names(Custom()) == ["a.weight"]


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("spec, shape, match", [
    (ModelSpec("cnn1"), (1, 40),
     r"model.name: unknown model 'cnn1' \(did you mean 'cnn1d'\?\); known: cnn1d, mlp, "
     r"preresnet20, vgg"),
    (ModelSpec("cnn1d"), (3, 32, 32),
     r"model 'cnn1d' needs a \(channels, length\) input such as \(1, 40\); got input_shape "
     r"\(3, 32, 32\)"),
    (ModelSpec("cnn1d"), (1, 2), r"model 'cnn1d' needs a signal length of at least 3"),
    (ModelSpec("preresnet20"), (64,),
     r"model 'preresnet20' needs a \(channels, height, width\) image input.*got input_shape "
     r"\(64,\)"),
    (ModelSpec("vgg"), (3, 4, 4), r"model 'vgg' needs height and width of at least 8"),
    (ModelSpec("mlp", options={"hiden": [8]}), (64,),
     r"options.hiden: unknown option for model 'mlp' \(did you mean 'hidden'\?\); "
     r"allowed: hidden"),
    (ModelSpec("preresnet20", options={"depth": 56}), (3, 32, 32),
     r"options.depth: unknown option for model 'preresnet20'; allowed: none"),
    (ModelSpec("mlp", options={"hidden": [8, 0]}), (64,),
     r"options.hidden of model 'mlp' must be a list of positive integers; got \[8, 0\]"),
    (ModelSpec("vgg", options={"cfg": [8, "X"]}), (3, 32, 32),
     r"options.cfg of model 'vgg' must be a list of positive integers or 'M'"),
])
def test_bad_model_specs(spec, shape, match):
    with pytest.raises(SpecError, match=match):
        build_model(spec, shape, 10, seed=0)


def test_bad_build_arguments_and_no_prunable_layers():
    with pytest.raises(SpecError, match=r"num_classes must be an integer >= 2; got 1"):
        build_model(ModelSpec("mlp"), (8,), 1, seed=0)
    with pytest.raises(SpecError, match=r"input_shape must be a non-empty sequence"):
        build_model(ModelSpec("mlp"), (0, 8), 10, seed=0)
    m = build_model(ModelSpec("mlp", options={"hidden": []}), (8,), 10, seed=0)
    with pytest.raises(SpecError, match=r"model has no prunable layers \(Linear/Conv weights\) "
                                        r"besides the classifier"):
        prunable_names(m)
    assert prunable_names(m, include_classifier=True) == ["classifier.weight"]
