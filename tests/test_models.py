"""Model zoo: architecture details and bad-input messages (the contract test over every
registered model is in test_registries.py)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from threeregime import ModelSpec, SpecError
from threeregime.models.zoo import build_model, prunable_names

torch.set_num_threads(1)


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
