"""The vectorized engine equals the one-model-at-a-time loop on the zoo's conv models.

``tests/test_train.py`` checks this on an MLP; here the models the sweeps actually use
(cnn1d with and without BatchNorm, a tiny preresnet20) run a few steps with per-member
learning rates, SAM radii, masks and BatchNorm statistics, and every member of the stacked
run must equal its own loop run (weights, BN buffers, snapshots, histories).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from threeregime.data.sources import Splits, TensorData
from threeregime.models.zoo import build_model, prunable_names
from threeregime.spec.specs import ModelSpec, TrainSpec
from threeregime.training.train import fit, init_states

torch.set_num_threads(1)

SPEC = TrainSpec(epochs=2, batch_size=8, lr=0.05, momentum=0.9, weight_decay=1e-3,
                 milestones=(0.5,), snapshots=(1,))


def _splits(shape, n=32, n_test=16, classes=4, seed=0) -> Splits:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g)
    xt = torch.randn(n_test, *shape, generator=g)
    # labels depend on the input, so the loss moves
    y = (x.flatten(1)[:, :4].argmax(1) % classes).long()
    yt = (xt.flatten(1)[:, :4].argmax(1) % classes).long()
    return Splits(TensorData(x, y), TensorData(xt, yt), classes, tuple(shape), None)


def _masks(template, seeds, density=0.5):
    """A different random mask per member (None for the last one: an unpruned member)."""
    out = []
    for i in seeds[:-1]:
        g = torch.Generator().manual_seed(100 + i)
        st = template.state_dict()
        out.append({k: torch.rand(st[k].shape, generator=g) < density
                    for k in prunable_names(template)})
    return out + [None]


def _close(a, b, what):
    for k in a:
        if a[k].is_floating_point():
            torch.testing.assert_close(a[k], b[k], atol=2e-5, rtol=1e-4, msg=f"{what}: {k}")
        else:
            assert torch.equal(a[k], b[k]), f"{what}: {k}"


CASES = {
    "cnn1d": (ModelSpec(name="cnn1d", width=0.25), (1, 40)),
    "cnn1d-bn": (ModelSpec(name="cnn1d", width=0.25, batchnorm=True), (1, 40)),
    "preresnet20": (ModelSpec(name="preresnet20", width=0.25), (3, 8, 8)),
}


@pytest.mark.parametrize("sam", [False, True], ids=["sgd", "sam"])
@pytest.mark.parametrize("case", list(CASES))
def test_vmap_equals_loop_on_zoo_models(case, sam):
    mspec, shape = CASES[case]
    data = _splits(shape)
    template = build_model(mspec, shape, data.num_classes, seed=0)
    seeds = [3, 4, 5]
    inits = [init_states(build_model(mspec, shape, data.num_classes, seed=s)) for s in seeds]
    kw = dict(seeds=seeds, lrs=[0.05, 0.02, 0.08], masks=_masks(template, seeds),
              rhos=[0.05, 0.0, 0.1] if sam else None, progress=False)
    rv = fit(template, inits, data, SPEC, engine="vmap", **kw)
    rl = fit(template, inits, data, SPEC, engine="loop", **kw)
    for m in range(len(seeds)):
        _close(rv.states[m], rl.states[m], f"member {m}")
        _close(rv.snapshots[1][m], rl.snapshots[1][m], f"snapshot of member {m}")
    np.testing.assert_allclose(rv.history["train_loss"], rl.history["train_loss"], rtol=1e-4)
    np.testing.assert_allclose(rv.history["test_error"], rl.history["test_error"])
    # the members really differ (per-member lr/mask/seed), so equality is not vacuous
    k = prunable_names(template)[0]
    assert not torch.equal(rv.states[0][k], rv.states[1][k])
    for m, mk in enumerate(kw["masks"]):
        if mk is not None:
            for name, keep in mk.items():
                assert torch.all(rv.states[m][name][~keep] == 0), (m, name)
    bn_means = [n for n in rv.states[0] if n.endswith("running_mean")]
    if bn_means:  # per-member BatchNorm statistics moved, differently per member
        n = bn_means[0]
        assert not torch.equal(rv.states[0][n], inits[0][n])
        assert not torch.equal(rv.states[0][n], rv.states[1][n])
