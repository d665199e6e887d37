"""Corruptions: severity 0 is the identity, deterministic for a seed, hand values, one-line
errors; corruption_error over an ensemble."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from threeregime.data.corruptions import CORRUPTIONS, _dct_matrix, corrupt
from threeregime.errors import SpecError
from threeregime.metrics.robustness import corruption_error
from threeregime.training.train import evaluate, init_states

torch.set_num_threads(1)

_T = torch.arange(40.0)
_PH = torch.rand(6, 1, 1, generator=torch.Generator().manual_seed(0)) * 6.3
SIGNAL = torch.sin(2 * math.pi * _T / 50 + _PH) + 0.5 * torch.sin(2 * math.pi * _T / 23 + 2 * _PH)
IMAGE = torch.randn(4, 3, 12, 10, generator=torch.Generator().manual_seed(1))
ONE_D = [n for n, (_, d) in CORRUPTIONS.items() if 1 in d]
TWO_D = [n for n, (_, d) in CORRUPTIONS.items() if 2 in d]


def _cases():
    return [(n, SIGNAL) for n in ONE_D] + [(n, IMAGE) for n in TWO_D]


def test_the_families_asked_for_exist():
    assert {"shift", "scale", "gaussian_noise", "mask"} <= set(ONE_D)
    assert {"gaussian_noise", "blur", "contrast", "brightness", "jpeg"} <= set(TWO_D)


@pytest.mark.parametrize("name,x", _cases())
def test_severity_zero_is_identity_and_calls_are_deterministic(name, x):
    rng = torch.random.get_rng_state()
    out0 = corrupt(x, name, 0, seed=3)
    assert torch.equal(out0, x) and out0 is not x
    a, b = corrupt(x, name, 3, seed=3), corrupt(x, name, 3, seed=3)
    assert torch.equal(a, b) and a.shape == x.shape and a.dtype == x.dtype
    assert not torch.equal(a, x)
    # stronger severity moves further from the clean input
    d1 = (corrupt(x, name, 1, seed=3) - x).norm()
    d5 = (corrupt(x, name, 5, seed=3) - x).norm()
    assert d5 > d1 > 0
    assert torch.equal(torch.random.get_rng_state(), rng)   # global RNG untouched


@pytest.mark.parametrize("name", ["shift", "mask", "gaussian_noise"])
def test_random_corruptions_depend_on_the_seed(name):
    assert not torch.equal(corrupt(SIGNAL, name, 2, seed=0), corrupt(SIGNAL, name, 2, seed=1))


def test_hand_values():
    ramp = torch.arange(1.0, 41.0).reshape(1, 1, 40).repeat(8, 1, 1)
    sh = corrupt(ramp, "shift", 1, seed=0)                      # k = ceil(40/20) = 2 samples
    for row in sh[:, 0]:
        right = torch.equal(row[2:], ramp[0, 0, :-2]) and torch.equal(row[:2], torch.zeros(2))
        left = torch.equal(row[:-2], ramp[0, 0, 2:]) and torch.equal(row[-2:], torch.zeros(2))
        assert right or left
    m = corrupt(torch.ones(5, 2, 40), "mask", 3, seed=0)        # 12 samples zeroed, both channels
    assert ((m == 0).sum(-1) == 12).all()
    sc = corrupt(ramp, "scale", 5, seed=0)                      # stretch x1.5 about the centre
    c = 19.5
    i = 30
    pos = c + (i - c) / 1.5
    lo, w = math.floor(pos), pos % 1
    want = ramp[0, 0, lo] * (1 - w) + ramp[0, 0, lo + 1] * w
    assert sc[0, 0, i].item() == pytest.approx(want.item(), rel=1e-6)
    img = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    ct = corrupt(img, "contrast", 2, seed=0)
    mean = img.mean(dim=(-2, -1), keepdim=True)
    torch.testing.assert_close(ct, mean + 0.7 * (img - mean))
    br = corrupt(img, "brightness", 4, seed=0)
    std = img.reshape(2, -1).std(1, unbiased=False).reshape(2, 1, 1, 1)
    torch.testing.assert_close(br, img + 0.8 * std)
    flat = torch.full((2, 3, 9, 9), 0.7)                        # blur keeps a constant image
    torch.testing.assert_close(corrupt(flat, "blur", 5, seed=0), flat)
    D = _dct_matrix(8, torch.float64, "cpu")                    # orthonormal DCT
    torch.testing.assert_close(D @ D.T, torch.eye(8, dtype=torch.float64))
    jp = corrupt(img, "jpeg", 5, seed=0)                        # quantised, near the original
    assert 0 < (jp - img).norm() < img.norm()


def test_bad_input_is_one_line():
    with pytest.raises(SpecError) as e:
        corrupt(IMAGE, "gausian_noise", 1)
    assert "\n" not in str(e.value) and "did you mean 'gaussian_noise'" in str(e.value)
    with pytest.raises(SpecError, match="severity must be an integer in 0..5; got 6"):
        corrupt(IMAGE, "blur", 6)
    with pytest.raises(SpecError, match=r"'contrast' does not apply to 1-D signals"):
        corrupt(SIGNAL, "contrast", 1)
    with pytest.raises(SpecError, match=r"'shift' does not apply to images"):
        corrupt(IMAGE, "shift", 1)
    with pytest.raises(SpecError, match="x must be a float tensor"):
        corrupt(torch.zeros(3, 40), "mask", 1)


def _net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv1d(1, 4, 5, stride=2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(72, 3))


def test_corruption_error_of_an_ensemble():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(50, 1, 40, generator=g)
    y = torch.randint(0, 3, (50,), generator=g)
    states = [init_states(_net(s)) for s in range(3)]
    res = corruption_error(_net(0), states, (x, y), ["shift", "gaussian_noise"], (0, 2, 5),
                           seed=1)
    assert res.error.shape == (3, 2, 3) and res.severities == (0, 2, 5)
    _, clean = evaluate(_net(0), states, (x, y))
    np.testing.assert_array_equal(res.error[:, 0, 0], clean)   # severity 0 = clean error
    np.testing.assert_array_equal(res.error[:, 1, 0], clean)
    # each entry equals a direct evaluation on the corrupted inputs
    _, direct = evaluate(_net(0), states, (corrupt(x, "shift", 5, 1), y))
    np.testing.assert_array_equal(res.error[:, 0, 2], direct)
    again = corruption_error(_net(0), states, (x, y), ["shift", "gaussian_noise"], (0, 2, 5),
                             seed=1)
    np.testing.assert_array_equal(res.error, again.error)
    with pytest.raises(SpecError, match="did you mean 'mask'"):
        corruption_error(_net(0), states, (x, y), ["masc"], (1,))


def test_spec_names_match_the_registry_and_the_measure_is_registered():
    from threeregime.metrics.measures import MEASURES
    from threeregime.spec.specs import CORRUPTIONS as SPEC_NAMES
    from threeregime.spec.specs import MeasureSpec

    assert tuple(CORRUPTIONS) == SPEC_NAMES
    assert "robustness" in MEASURES
    ms = MeasureSpec(extra=("robustness",), corruptions=("blur",), severities=(0, 3))
    assert ms.names()[-1] == "robustness"
    with pytest.raises(SpecError, match=r"corruptions\[0\] must be one of .*did you mean 'blur'"):
        MeasureSpec(corruptions=("blr",))
    # the defaults stay out of the canonical JSON (no stored hash changes)
    from threeregime.spec.specs import canonical_json
    assert canonical_json(MeasureSpec()) == "{}"
