"""Measure registry: one contract test over every registered measure; registries torch-free."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from threeregime.spec.specs import (
    DataSpec,
    MeasureSpec,
    ModelSpec,
    PointSpec,
    PruneSpec,
    SpecError,
    spec_hash,
)

torch = pytest.importorskip("torch")

from threeregime.metrics.measures import MEASURES, MeasureInput, register_measure, run_measures  # noqa: E402
from threeregime.models.zoo import build_model  # noqa: E402
from threeregime.sweep.stages import problem_of  # noqa: E402
from threeregime.training.train import init_states  # noqa: E402

POINT = PointSpec(data=DataSpec(train_size=64, test_size=32), model=ModelSpec(width=0.25),
                  measure=MeasureSpec(lmc_points=3, hessian=True, hessian_probes=2,
                                      hessian_n=16, eval_batch_size=64),
                  retrain_seeds=(0, 1, 2, 3))


@pytest.fixture(scope="module")
def inp():
    pb = problem_of(POINT)
    d = pb.data
    states = [init_states(build_model(POINT.model, d.input_shape, d.num_classes, seed=s))
              for s in POINT.retrain_seeds]
    pairs = list(itertools.combinations(range(4), 2))   # 6 pairs, 4 models: shapes differ
    ok = [True, True, True, False]  # the last model "diverged": its pairs/entries are NaN
    return MeasureInput(pb.template, states, [{} for _ in states], ok,
                        [(i, a, b) for i, (a, b) in enumerate(pairs) if ok[a] and ok[b]],
                        len(pairs), d, POINT, "cpu")


@pytest.mark.parametrize("name", MEASURES.names())
def test_measure_contract(name, inp):
    """Every measure returns finite numbers for ok models/pairs, NaN for the others, with
    the shapes of its variables; and the same numbers twice (deterministic)."""
    schema, extra = run_measures(inp, [name])
    again, _ = run_measures(inp, [name])
    assert schema or extra, name
    for var, values in {**schema, **{k: v[1] for k, v in extra.items()}}.items():
        arr = np.asarray(values, dtype=float)
        lead = arr.shape[0]
        assert lead in (inp.K, inp.n_pairs), (name, var, arr.shape)
        if lead == inp.n_pairs:
            good = [i for i, *_ in inp.pairs]
        else:
            good = [k for k in range(inp.K) if inp.ok[k]]
        assert np.isfinite(arr[good]).all(), (name, var)
        bad = sorted(set(range(lead)) - set(good))
        assert np.isnan(arr[bad]).all(), (name, var)
        if var in again:
            np.testing.assert_array_equal(arr, np.asarray(again[var], dtype=float))


def test_registered_measure_runs_through_the_spec(inp):
    @register_measure("weight_sq", {"weight_sq": (("retrain_seed",), "sum of squared weights")})
    def _weight_sq(m):
        return {"weight_sq": [float(sum((v.float() ** 2).sum() for v in s.values()))
                              if ok else np.nan for s, ok in zip(m.states, m.ok)]}

    try:
        spec = MeasureSpec(extra=("weight_sq",))
        assert spec.names() == ("lmc", "cka", "weight_sq")
        schema, extra = run_measures(inp, ["weight_sq"])
        dims, vals, attrs = extra["weight_sq"]
        assert dims == ("retrain_seed",) and attrs["long_name"] and np.isnan(vals[3])
    finally:
        MEASURES.unregister("weight_sq")
    with pytest.raises(SpecError, match=r"extra\[0\] must be one of .*got 'weight_sq'"):
        MeasureSpec(extra=("weight_sq",))


def test_measure_spec_hash_unchanged_by_extra_default():
    assert spec_hash(MeasureSpec()) == spec_hash(MeasureSpec(extra=()))
    with pytest.raises(SpecError, match=r"extra\[0\] names the built-in measure 'cka'"):
        MeasureSpec(extra=("cka",))


def test_prune_spec_accepts_a_registered_pruner():
    from threeregime.pruning.masks import PRUNERS

    with pytest.raises(SpecError, match="method must be one of magnitude, global, lamp"):
        PruneSpec(method="mine")
    PRUNERS.register("mine")(lambda w, d, s, g: {k: torch.ones_like(v, dtype=torch.bool)
                                                 for k, v in w.items()})
    try:
        assert PruneSpec(method="mine", density=0.5).method == "mine"
    finally:
        PRUNERS.unregister("mine")
