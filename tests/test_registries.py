"""One contract test per registry, run over every registered entry.

Data sources (``data.DATA_SOURCES``), models (``models.MODELS``) and pruners
(``prune.PRUNERS``): registering a new entry puts it under the same checks.  Data sources and
models need a small case below (a source's options, a model's input shape): the test says so
when one is missing.  Pruners need none, and one registered inside a test goes through the
same contract and through :func:`~threeregime.pruning.masks.compute_masks` end to end.
"""
from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
from _tiny_cifar import CIFAR_TEST, CIFAR_TRAIN_PER_BATCH, write_cifar
from torch import nn

from threeregime import DataSpec, ModelSpec, PruneSpec, SpecError
from threeregime.data.sources import DATA_SOURCES, Splits, TensorData, clear_cache, load_data
from threeregime.models.zoo import MODELS, build_model, prunable_names
from threeregime.pruning.masks import PRUNERS, compute_masks, density_report
from threeregime.training.functional import ensemble_forward, split_state, stack_states, template_of

torch.set_num_threads(1)


def _rng_states():
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def _assert_rng_unchanged(before):
    t, n, p = before
    assert torch.equal(torch.get_rng_state(), t)
    n2 = np.random.get_state()
    assert n2[0] == n[0] and np.array_equal(n2[1], n[1]) and n2[2:] == n[2:]
    assert random.getstate() == p


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- data sources
@pytest.fixture
def cifar_root(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    return str(tmp_path)          # the parent folder: the source must find the subfolder


@pytest.fixture
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


# name -> (spec kwargs for a small, fast load; input_shape; num_classes; pool sizes)
DATA_CASES = {
    "mnist1d": (dict(options={"n_train": 300, "n_test": 100}), (1, 40), 10, (300, 100)),
    "digits": (dict(), (64,), 10, (1437, 360)),
    "teacher_student": (dict(options={"n_train": 300, "n_test": 100, "dim": 7}), (7,), 10,
                        (300, 100)),
    "cifar10": (dict(), (3, 32, 32), 10, (5 * CIFAR_TRAIN_PER_BATCH, CIFAR_TEST)),
}


def _row_set(x):
    return {tuple(r) for r in x.reshape(len(x), -1).tolist()}


@pytest.mark.usefixtures("_fresh_cache")
@pytest.mark.parametrize("name", DATA_SOURCES.names())
def test_data_source_contract(name, request):
    assert name in DATA_CASES, f"add a contract case for the new data source {name!r}"
    kwargs, shape, classes, (n_train, n_test) = DATA_CASES[name]
    if name == "cifar10":
        kwargs = dict(kwargs, root=request.getfixturevalue("cifar_root"))
    before = _rng_states()

    full = load_data(DataSpec(name, **kwargs))
    assert isinstance(full, Splits)
    assert full.input_shape == shape and full.num_classes == classes
    assert full.augment is None
    for split, n in ((full.train, n_train), (full.test, n_test)):
        assert isinstance(split, TensorData)
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert split.x.shape == (n, *shape) and split.y.shape == (n,)
        assert torch.isfinite(split.x).all()
        assert int(split.y.min()) >= 0 and int(split.y.max()) < classes
    assert load_data(DataSpec(name, **kwargs)) is full          # in-process cache

    # seeded subsample: honoured, a subset of the pool, reproducible, seed-dependent
    sub_spec = DataSpec(name, train_size=20, test_size=5, **kwargs)
    sub = load_data(sub_spec)
    assert sub.train.x.shape == (20, *shape) and sub.test.x.shape == (5, *shape)
    assert sub.train.y.shape == (20,) and sub.test.y.shape == (5,)
    assert _row_set(sub.train.x) <= _row_set(full.train.x)
    assert _row_set(sub.test.x) <= _row_set(full.test.x)
    clear_cache()
    again = load_data(sub_spec)
    assert torch.equal(again.train.x, sub.train.x) and torch.equal(again.train.y, sub.train.y)
    assert torch.equal(again.test.x, sub.test.x)
    other = load_data(DataSpec(name, train_size=20, test_size=5, seed=1, **kwargs))
    assert not torch.equal(other.train.x, sub.train.x)
    # for a fixed seed, a smaller training set is nested in a larger one (data-size axis)
    smaller = load_data(DataSpec(name, train_size=10, test_size=5, **kwargs))
    assert _row_set(smaller.train.x) <= _row_set(sub.train.x)

    # augmentation
    if DATA_SOURCES.get(name).augmentable:
        aug = load_data(DataSpec(name, augment=True, **kwargs))
        assert callable(aug.augment)
        xb = aug.train.x[:8]
        out1 = aug.augment(xb, torch.Generator().manual_seed(3))
        out2 = aug.augment(xb, torch.Generator().manual_seed(3))
        assert out1.shape == xb.shape and out1.dtype == xb.dtype
        assert torch.equal(out1, out2)
        assert not torch.equal(out1, aug.augment(xb, torch.Generator().manual_seed(4)))
    else:
        with pytest.raises(SpecError, match=f"augment: data source '{name}' has no training "
                                            "augmentation; set augment: false"):
            load_data(DataSpec(name, augment=True, **kwargs))

    _assert_rng_unchanged(before)


# --------------------------------------------------------------------------- models
# name -> (small spec kwargs, a matching input shape)
MODEL_CASES = {
    "mlp": (dict(options={"hidden": [16, 8]}), (1, 40)),
    "cnn1d": (dict(width=0.25), (1, 40)),
    "preresnet20": (dict(width=0.25), (3, 8, 8)),
    "vgg": (dict(width=0.125), (3, 16, 16)),
}
_PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@pytest.mark.parametrize("batchnorm", [False, True], ids=["plain", "bn"])
@pytest.mark.parametrize("name", MODELS.names())
def test_model_contract(name, batchnorm):
    assert name in MODEL_CASES, f"add a contract case for the new model {name!r}"
    kwargs, shape = MODEL_CASES[name]
    spec = ModelSpec(name, batchnorm=batchnorm, **kwargs)
    before = _rng_states()
    models = [build_model(spec, shape, 5, seed=s) for s in (0, 1)]
    _assert_rng_unchanged(before)

    # same seed -> identical weights; different seed -> different
    again = build_model(spec, shape, 5, seed=0)
    assert _same(again.state_dict(), models[0].state_dict())
    assert not _same(models[1].state_dict(), models[0].state_dict())

    x = torch.randn(2, 4, *shape, generator=torch.Generator().manual_seed(0))   # (M, B, ...)
    for m in models:
        m.eval()
        assert m(x[0]).shape == (4, 5)

    # prunable names: the weights of Linear/Conv layers, classifier excluded unless asked for
    names = prunable_names(models[0])
    assert names
    for n in names:
        owner, _, leaf = n.rpartition(".")
        assert leaf == "weight" and isinstance(models[0].get_submodule(owner), _PRUNABLE), n
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


# --------------------------------------------------------------------------- pruners
# method -> a spec for methods whose spec needs more than a density (default: density 0.5)
PRUNER_SPECS = {"nm": PruneSpec("nm", 0.5, "2:4")}


def _prunable_model() -> nn.Module:
    """Conv (4, 2, 4), Linear (12, 20), Linear (4, 12): at density 1/2 every layer keeps a whole
    number of weights, and every row length is a multiple of 4 (N:M)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv1d(2, 4, 4), nn.ReLU(), nn.Flatten(), nn.Linear(20, 12),
                             nn.ReLU(), nn.Linear(12, 4))


def check_pruner_contract(spec: PruneSpec) -> None:
    """What every pruner must do on a tiny model (see test_pruner_contract)."""
    model = _prunable_model()
    assert model(torch.zeros(1, 2, 8)).shape == (1, 4)
    names = prunable_names(model, include_classifier=True)[::-1]   # order is the caller's
    params = dict(model.named_parameters())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    masks = compute_masks(model, spec, names, seed=1)
    assert torch.equal(torch.get_rng_state(), rng)                 # global RNG untouched
    assert list(masks) == names
    for k in names:
        assert masks[k].dtype == torch.bool and masks[k].shape == params[k].shape
        assert masks[k].device == params[k].device
    assert _same(model.state_dict(), before)                       # model not modified
    # exact density: density * (weights of the listed layers), whole in every layer here
    total = sum(params[k].numel() for k in names)
    assert density_report(masks)["kept"] == spec.density * total
    # deterministic, and a state dict gives what the module gives
    assert _same(compute_masks(model, spec, names, seed=1), masks)
    assert _same(compute_masks(model.state_dict(), spec, names, seed=1), masks)


@pytest.mark.parametrize("method", PRUNERS.names())
def test_pruner_contract(method):
    check_pruner_contract(PRUNER_SPECS.get(method) or PruneSpec(method, 0.5))


@pytest.fixture
def mine():
    """A pruner registered by the test ("mine": each layer keeps its first entries in memory
    order), unregistered afterwards."""
    @PRUNERS.register("mine")
    def _first(weights, density, spec, generator):
        out = {}
        for name, w in weights.items():
            flat = torch.zeros(w.numel(), dtype=torch.bool, device=w.device)
            flat[:round(density * w.numel())] = True
            out[name] = flat.reshape(w.shape)
        return out

    yield "mine"
    PRUNERS.unregister("mine")


def test_a_newly_registered_pruner_works_end_to_end(mine):
    assert mine in PRUNERS.names()
    spec = PruneSpec(mine, 0.5)
    check_pruner_contract(spec)
    model = _prunable_model()
    names = prunable_names(model)
    masks = compute_masks(model, {"method": mine, "density": 0.25}, names)   # spec as a mapping
    assert masks["0.weight"].reshape(-1).tolist() == [True] * 8 + [False] * 24
    assert density_report(masks)["kept"] == (32 + 240) // 4


def test_the_pruner_contract_catches_a_wrong_density():
    @PRUNERS.register("sloppy")
    def _one_too_many(weights, density, spec, generator):
        return {name: torch.arange(w.numel()).reshape(w.shape) <= round(density * w.numel())
                for name, w in weights.items()}

    try:
        with pytest.raises(AssertionError):
            check_pruner_contract(PruneSpec("sloppy", 0.5))
    finally:
        PRUNERS.unregister("sloppy")
