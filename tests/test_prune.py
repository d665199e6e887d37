"""Pruning masks against brute-force references on tiny layers, for many seeds (the contract
test over every registered pruner is in test_registries.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from threeregime import PruneSpec, SpecError, ThreeRegimeError
from threeregime.pruning.masks import (
    PRUNERS,
    apply_masks,
    compute_masks,
    density_report,
    masks_from_state,
)

torch.set_num_threads(1)

SEEDS = range(8)
DENSITIES = [0.05, 0.3, 0.5, 0.77, 1.0]
# tiny layers of mixed rank; every flattened row length is divisible by 8 (for nm 2:4, 2:8 ...)
SHAPES = {"a.weight": (3, 8), "b.weight": (4, 2, 4), "c.weight": (2, 4, 2, 2), "d.weight": (5, 8)}


def _weights(seed: int) -> dict[str, torch.Tensor]:
    """Random float32 layers; odd seeds use small integers, so ties and zeros abound and
    LAMP's arithmetic is exact in both the library and the reference."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in SHAPES.items():
        if seed % 2:
            w = rng.integers(-3, 4, size=shape)
        else:
            w = rng.standard_normal(shape)
        out[name] = torch.tensor(w, dtype=torch.float32)
    return out


def _as_lists(ws):
    return {k: [float(x) for x in v.reshape(-1).tolist()] for k, v in ws.items()}


def _to_masks(ws, kept: dict[str, set[int]]):
    out = {}
    for k, v in ws.items():
        flat = [i in kept[k] for i in range(v.numel())]
        out[k] = torch.tensor(flat, dtype=torch.bool).reshape(v.shape)
    return out


# --------------------------------------------------------------------------- references
def ref_magnitude(ws, d):
    kept = {}
    for k, vals in _as_lists(ws).items():
        n = len(vals)
        order = sorted(range(n), key=lambda i: (-abs(vals[i]), i))
        kept[k] = set(order[:min(n, max(1, round(d * n)))])
    return _to_masks(ws, kept)


def _global_top(ws, d, scores: dict[str, list[float]]):
    items = [(-s, li, i, k) for li, (k, ss) in enumerate(scores.items())
             for i, s in enumerate(ss)]
    items.sort(key=lambda t: t[:3])
    total = len(items)
    kept = {k: set() for k in ws}
    for _, _, i, k in items[:min(total, max(1, round(d * total)))]:
        kept[k].add(i)
    return _to_masks(ws, kept)


def ref_global(ws, d):
    return _global_top(ws, d, {k: [abs(x) for x in v] for k, v in _as_lists(ws).items()})


def ref_lamp_scores(vals: list[float]) -> list[float]:
    """LAMP by its definition: ascending by w^2, score(u) = w_u^2 / sum_{v >= u} w_v^2."""
    n = len(vals)
    # ascending order; equal magnitudes: larger index first (the reverse of "keep" order)
    asc = sorted(range(n), key=lambda i: (abs(vals[i]), -i))
    scores = [0.0] * n
    for u in range(n):
        num = vals[asc[u]] ** 2
        den = 0.0
        for v in range(u, n):
            den += vals[asc[v]] ** 2
        scores[asc[u]] = num / den if num > 0 else 0.0
    return scores


def ref_lamp(ws, d):
    return _global_top(ws, d, {k: ref_lamp_scores(v) for k, v in _as_lists(ws).items()})


def ref_nm(ws, n_keep, m):
    kept = {}
    for k, v in ws.items():
        rows = v.reshape(v.shape[0], -1).tolist()
        length = len(rows[0])
        kept[k] = set()
        for r, row in enumerate(rows):
            for g in range(0, length, m):
                best = sorted(range(g, g + m), key=lambda j: (-abs(row[j]), j))[:n_keep]
                kept[k].update(r * length + j for j in best)
    return _to_masks(ws, kept)


def _assert_same(got, want):
    assert list(got) == list(want)
    for k in want:
        assert got[k].dtype == torch.bool and got[k].shape == want[k].shape
        assert torch.equal(got[k], want[k]), k


# --------------------------------------------------------------------------- vs references
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("method,ref", [("magnitude", ref_magnitude), ("global", ref_global),
                                        ("lamp", ref_lamp)])
def test_magnitude_methods_match_reference(method, ref, seed):
    ws = _weights(seed)
    for d in DENSITIES:
        _assert_same(compute_masks(ws, PruneSpec(method, d), list(ws)), ref(ws, d))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("nm", ["1:4", "2:4", "3:4", "4:4", "2:8", "1:2"])
def test_nm_matches_reference(nm, seed):
    ws = _weights(seed)
    n_keep, m = map(int, nm.split(":"))
    masks = compute_masks(ws, PruneSpec("nm", n_keep / m, nm), list(ws))
    _assert_same(masks, ref_nm(ws, n_keep, m))
    for k, mk in masks.items():                      # exactly N kept in every M-group
        counts = mk.reshape(mk.shape[0], -1).reshape(-1, m).sum(dim=1)
        assert bool((counts == n_keep).all()), k


def test_lamp_hand_example():
    # A: ascending squares 1, 4, 9 -> scores 1/14, 4/13, 1; B: 2.25/102.25, 1.
    ws = {"A": torch.tensor([3.0, 1.0, 2.0]), "B": torch.tensor([1.5, 10.0])}
    assert ref_lamp_scores([3.0, 1.0, 2.0]) == [1.0, 1 / 14, 4 / 13]
    lamp = compute_masks(ws, PruneSpec("lamp", 0.6), ["A", "B"])     # keep 3
    assert lamp["A"].tolist() == [True, False, True] and lamp["B"].tolist() == [False, True]
    lamp = compute_masks(ws, PruneSpec("lamp", 0.8), ["A", "B"])     # keep 4: A's 1 beats B's 1.5
    assert lamp["A"].tolist() == [True, True, True] and lamp["B"].tolist() == [False, True]
    glob = compute_masks(ws, PruneSpec("global", 0.8), ["A", "B"])   # global keeps 1.5 instead
    assert glob["A"].tolist() == [True, False, True] and glob["B"].tolist() == [True, True]


def test_ties_are_broken_by_layer_then_index():
    ws = {"x": torch.ones(4), "y": torch.ones(4)}
    for method in ("magnitude", "global", "lamp"):
        m = compute_masks(ws, PruneSpec(method, 0.25), ["y", "x"])
        if method == "global":  # two kept in all: the first layer in names wins, then index
            assert m["y"].tolist() == [True, True, False, False]
            assert not m["x"].any()
        else:   # magnitude: one per layer; lamp: scores 1, 1/2, 1/3, 1/4 in each layer
            assert m["x"].tolist() == m["y"].tolist() == [True, False, False, False], method
        assert list(m) == ["y", "x"]


def test_global_can_collapse_a_layer_but_lamp_keeps_one_per_layer():
    ws = {"small": torch.full((4,), 0.01), "big": torch.arange(1.0, 97.0)}
    g = compute_masks(ws, PruneSpec("global", 0.1), ["small", "big"])
    assert int(g["small"].sum()) == 0 and int(g["big"].sum()) == 10
    lamp = compute_masks(ws, PruneSpec("lamp", 0.1), ["small", "big"])
    assert int(lamp["small"].sum()) >= 1
    assert int(lamp["small"].sum() + lamp["big"].sum()) == 10


# --------------------------------------------------------------------------- counts
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("method", ["magnitude", "random", "global", "lamp"])
def test_realised_density(method, seed):
    ws = _weights(seed)
    total = sum(w.numel() for w in ws.values())
    for d in DENSITIES:
        masks = compute_masks(ws, PruneSpec(method, d), list(ws), seed=seed)
        rep = density_report(masks)
        assert rep["total"] == total
        if method in ("magnitude", "random"):
            for k, w in ws.items():
                kept = int(masks[k].sum())
                assert kept == max(1, round(d * w.numel()))
                assert abs(kept - d * w.numel()) <= 1
        else:
            assert rep["kept"] == round(d * total)


def test_random_is_seeded_and_ignores_weights():
    ws = _weights(0)
    other = {k: torch.randn(v.shape, generator=torch.Generator().manual_seed(9))
             for k, v in ws.items()}
    spec = PruneSpec("random", 0.5)
    a = compute_masks(ws, spec, list(ws), seed=3)
    _assert_same(compute_masks(ws, spec, list(ws), seed=3), a)
    _assert_same(compute_masks(other, spec, list(ws), seed=3), a)
    b = compute_masks(ws, spec, list(ws), seed=4)
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_random_keeps_every_weight_with_equal_probability():
    ws = {"w": torch.zeros(10, 4)}
    freq = torch.stack([compute_masks(ws, PruneSpec("random", 0.25), ["w"], seed=s)["w"]
                        for s in range(400)]).double().mean(0)
    # each entry kept with prob 1/4; 400 draws -> sd ~ 0.022; 5 sd bound over 40 entries
    assert float((freq - 0.25).abs().max()) < 0.11


# --------------------------------------------------------------------------- apply / report
def _mlp() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 4))


def test_apply_masks_zeroes_exactly_the_pruned_entries():
    ws = _weights(2)
    ws["a.weight"][0, 0] = float("nan")
    masks = compute_masks({k: v.nan_to_num(0.0) for k, v in ws.items()},
                          PruneSpec("magnitude", 0.4), list(ws))
    masks["a.weight"][0, 0] = False
    saved_masks = {k: v.clone() for k, v in masks.items()}
    before = {k: v.clone() for k, v in ws.items()}
    apply_masks(ws, masks)
    for k in ws:
        assert bool((ws[k][~masks[k]] == 0).all())
        assert torch.equal(ws[k][masks[k]], before[k][masks[k]])  # kept entries bit for bit
        assert torch.equal(masks[k], saved_masks[k])
    assert torch.equal(masks_from_state(ws, list(ws))["b.weight"], masks["b.weight"])


def test_apply_masks_on_a_module_by_parameter_name():
    model = _mlp()
    masks = compute_masks(model, PruneSpec("magnitude", 0.25), ["0.weight"])
    bias = model[0].bias.detach().clone()
    apply_masks(model, masks)
    assert int((model[0].weight != 0).sum()) == round(0.25 * 96)
    assert torch.equal(model[0].bias, bias)
    _assert_same(masks_from_state(model, ["0.weight"]), masks)


def test_density_report_numbers():
    masks = {"a": torch.tensor([[True, False], [False, False]]),
             "b": torch.tensor([True, True, False, True, False, False])}
    rep = density_report(masks)
    assert rep == {"overall": 4 / 10, "layers": {"a": 0.25, "b": 0.5}, "kept": 4, "total": 10}


@pytest.mark.parametrize("mask_grads", [True, False])
def test_masks_survive_retraining(mask_grads):
    """SGD with momentum and weight decay, masks re-applied the way a trainer does."""
    model = _mlp()
    names = ["0.weight", "2.weight"]
    masks = compute_masks(model, PruneSpec("magnitude", 0.3), names)
    saved = {k: v.clone() for k, v in masks.items()}
    apply_masks(model, masks)
    params = dict(model.named_parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-3)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 8, generator=g), torch.randint(0, 4, (32,), generator=g)
    drifted = False
    for _ in range(15):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        if mask_grads:
            for k in names:
                params[k].grad.mul_(masks[k])
        opt.step()
        after_step = {k: params[k].detach().clone() for k in names}
        drifted |= any(bool((after_step[k][~masks[k]] != 0).any()) for k in names)
        apply_masks(model, masks)
        for k in names:
            assert bool((params[k][~masks[k]] == 0).all())
            assert torch.equal(params[k][masks[k]], after_step[k][masks[k]])
            assert torch.equal(masks[k], saved[k])
    # masked gradients keep pruned weights (and their momentum) at exactly 0 on their own;
    # unmasked gradients move them, which is what apply_masks undoes
    assert drifted is (not mask_grads)
    _assert_same(masks_from_state(model, names), masks)


# --------------------------------------------------------------------------- bad input
def test_error_messages(monkeypatch):
    ws = _weights(0)
    spec = PruneSpec("magnitude", 0.5)
    with pytest.raises(SpecError, match=r"model has no prunable layers"):
        compute_masks(ws, spec, [])
    with pytest.raises(SpecError, match=r"'a.weigth' is not a parameter.*did you mean "
                                        r"'a.weight'.*valid names include: a.weight, b.weight"):
        compute_masks(ws, spec, ["a.weigth"])
    with pytest.raises(SpecError, match=r"names must be a list of parameter names; got 'a"):
        compute_masks(ws, spec, "a.weight")
    with pytest.raises(SpecError, match=r"names lists 'a.weight' twice"):
        compute_masks(ws, spec, ["a.weight", "a.weight"])
    with pytest.raises(SpecError, match=r"model_or_state must be an nn.Module or a mapping"):
        compute_masks(3, spec, ["a"])
    with pytest.raises(SpecError, match=r"spec must be a PruneSpec; got str"):
        compute_masks(ws, "magnitude", ["a.weight"])
    with pytest.raises(SpecError, match=r"prune.density must be a number in \(0, 1\]; got 1.5"):
        compute_masks(ws, {"method": "magnitude", "density": 1.5}, ["a.weight"])
    with pytest.raises(SpecError, match=r"method must be one of .*did you mean 'lamp'"):
        compute_masks(ws, {"method": "lammp"}, ["a.weight"])
    with pytest.raises(SpecError, match=r"seed must be an integer; got True"):
        compute_masks(ws, spec, ["a.weight"], seed=True)
    with pytest.raises(SpecError, match=r"nm 2:4: layer 'odd' with shape \(2, 3, 2\) has rows "
                                        r"of length 6, not divisible by M=4"):
        compute_masks({"odd": torch.ones(2, 3, 2)}, PruneSpec("nm", 0.5, "2:4"), ["odd"])
    with pytest.raises(ThreeRegimeError, match=r"'a.weight' has 1 non-finite values"):
        compute_masks({"a.weight": torch.tensor([1.0, float("inf")])}, spec, ["a.weight"])
    masks = compute_masks(ws, spec, ["a.weight"])
    with pytest.raises(SpecError, match=r"masks: 'zz' is not a parameter"):
        apply_masks(ws, {"zz": masks["a.weight"]})
    with pytest.raises(SpecError, match=r"masks\['b.weight'\] must be a bool tensor of shape "
                                        r"\(4, 2, 4\); got torch.bool of shape \(3, 8\)"):
        apply_masks(ws, {"b.weight": masks["a.weight"]})
    with pytest.raises(SpecError, match=r"must be a bool tensor.*got torch.float32"):
        apply_masks(ws, {"a.weight": masks["a.weight"].float()})
    with pytest.raises(SpecError, match=r"masks must be a non-empty mapping.*got \{\}"):
        density_report({})
    # a registered method that breaks the mask contract is caught
    monkeypatch.setitem(PRUNERS._items, "magnitude", lambda w, d, s, g: {"a.weight": None})
    with pytest.raises(ThreeRegimeError, match=r"pruning method 'magnitude' returned for "
                                               r"'a.weight'"):
        compute_masks(ws, spec, ["a.weight"])
