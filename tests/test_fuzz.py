"""Property-based tests (hypothesis) of the spec loader and the regime classifier (issue #7).

* the spec loader, fed random dicts and random YAML text, either succeeds or raises
  :class:`~threeregime.SpecError` with a one-line message; whatever loads round-trips through
  ``to_dict`` / ``from_dict`` / ``canonical_json`` unchanged;
* ``classify`` on random Datasets (NaNs, single-cell axes, unsorted coordinates, missing
  optional variables) never crashes, gives labels in {0, 1, 2, 3, -1}, and a cell without one
  finite LMC and CKA value is undetermined (-1).

Examples are bounded (``max_examples`` <= 100, no deadline) so this file runs in seconds.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from threeregime import SpecError  # noqa: E402
from threeregime.analysis.regimes import classify  # noqa: E402
from threeregime.spec.specs import (  # noqa: E402
    AXES,
    PointSpec,
    SweepSpec,
    canonical_json,
    from_dict,
    load_yaml,
    spec_hash,
    to_dict,
)

FAST = settings(max_examples=80, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture])

# --------------------------------------------------------------------------- spec loader
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 200),
                    st.floats(allow_nan=True, allow_infinity=True, width=32),
                    st.sampled_from(["", "mnist1d", "cnn1d", "mlp", "magnitude", "nm", "2:4",
                                     "step", "cosine", "1e-3", "finetune", "rewind", "x"]))
values = st.recursive(scalars, lambda ch: st.one_of(
    st.lists(ch, max_size=4), st.dictionaries(st.text(max_size=6), ch, max_size=3)),
    max_leaves=8)

FIELDS = {
    "data": ["name", "train_size", "test_size", "seed", "augment", "options"],
    "model": ["name", "width", "batchnorm", "prune_classifier", "options"],
    "dense": ["epochs", "iterations", "batch_size", "lr", "momentum", "weight_decay",
              "schedule", "milestones", "gamma", "sam_rho", "snapshots"],
    "retrain": ["epochs", "batch_size", "lr", "schedule"],
    "prune": ["method", "density", "nm"],
    "measure": ["lmc", "lmc_points", "cka", "cka_inputs", "cka_n", "hessian"],
}
sub_specs = {k: st.dictionaries(st.sampled_from(v + ["typo"]), values, max_size=4)
             for k, v in FIELDS.items()}
base_dicts = st.fixed_dictionaries({}, optional={
    **sub_specs,
    "retrain_seeds": st.one_of(st.lists(st.integers(-1, 5), max_size=4), values),
    "retrain_mode": st.sampled_from(["finetune", "rewind", "reinit", "bogus"]),
    "rewind_epoch": st.integers(-1, 5),
    "dense_seed": st.integers(-1, 5),
})
axis_values = st.one_of(st.lists(st.one_of(st.integers(-2, 60), st.floats(-1, 2, width=32)),
                                 max_size=4), values)
sweep_dicts = st.fixed_dictionaries({}, optional={
    "name": st.one_of(st.sampled_from(["s", "my-sweep", "a b"]), values),
    "base": st.one_of(base_dicts, values),
    "axes": st.one_of(st.dictionaries(st.sampled_from([*AXES, "width", "densty"]), axis_values,
                                      max_size=3), values),
    "dense_seeds": st.one_of(st.lists(st.integers(-1, 3), max_size=3), values),
    "description": values,
})


def _check_round_trip(spec) -> None:
    cls = type(spec)
    again = from_dict(cls, to_dict(spec))
    assert again == spec
    assert canonical_json(again) == canonical_json(spec)
    assert spec_hash(from_dict(cls, json.loads(canonical_json(spec)))) == spec_hash(spec)
    assert from_dict(cls, to_dict(spec, drop_defaults=True)) == spec


@FAST
@given(sweep_dicts)
def test_sweep_from_dict_is_specerror_or_round_trips(raw):
    try:
        spec = from_dict(SweepSpec, raw)
    except SpecError as e:
        assert "\n" not in str(e) and str(e)
        return
    _check_round_trip(spec)


@FAST
@given(base_dicts)
def test_point_from_dict_is_specerror_or_round_trips(raw):
    try:
        spec = from_dict(PointSpec, raw)
    except SpecError as e:
        assert "\n" not in str(e) and str(e)
        return
    _check_round_trip(spec)


yamlish = st.one_of(
    st.text(alphabet=st.sampled_from(list("abxyz:-[]{},'\"#&*!|>?% \t\n01.e")), max_size=60),
    st.builds(lambda d: json.dumps(d, default=str), sweep_dicts),   # JSON is YAML
    st.builds(lambda d: "name: s\naxes: {density: [0.5]}\nbase:\n" + "".join(
        f"  {k}: {json.dumps(v, default=str)}\n" for k, v in d.items()), base_dicts),
)


@FAST
@given(text=yamlish)
def test_load_yaml_random_text(tmp_path_factory, text):
    f = tmp_path_factory.mktemp("y") / "s.yaml"
    f.write_text(text)
    try:
        spec = load_yaml(f)
    except SpecError as e:
        msg = str(e)
        assert msg.startswith(f"{f}: ") and "\n" not in msg
        return
    _check_round_trip(spec)


# --------------------------------------------------------------------------- classify
def _coord(draw, n):
    vals = draw(st.lists(st.integers(1, 1000), min_size=n, max_size=n, unique=True))
    return np.asarray(vals, dtype=float)    # unsorted on purpose


@st.composite
def sweep_datasets(draw):
    nt, nl = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ns, npair = draw(st.integers(1, 3)), draw(st.integers(0, 3))
    shape = (nt, nl, ns, npair)
    nan_p = draw(st.sampled_from([0.0, 0.3, 1.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))

    def field(lo, hi, shp=shape):
        a = rng.uniform(lo, hi, shp)
        a[rng.random(shp) < nan_p] = np.nan
        return a

    dims = ("epochs", "density", "dense_seed", "pair")
    ds = xr.Dataset(
        {"lmc": (dims, field(-0.5, 0.1)), "cka": (dims, field(0.0, 1.0))},
        coords={"epochs": ("epochs", _coord(draw, nt), {"role": "temperature",
                                                        "hotter": draw(st.sampled_from(
                                                            ["increasing", "decreasing"]))}),
                "density": ("density", _coord(draw, nl) / 1000, {"role": "load"}),
                "dense_seed": np.arange(ns), "pair": np.arange(npair)})
    if draw(st.booleans()):
        ds["status"] = (dims[:3], rng.integers(0, 4, shape[:3]).astype(np.int8))
    if draw(st.booleans()):
        k = draw(st.integers(1, 3))
        ds["test_error"] = (dims[:3] + ("retrain_seed",), field(0, 1, shape[:3] + (k,)))
        ds["train_error"] = (dims[:3] + ("retrain_seed",), field(0, 1, shape[:3] + (k,)))
    if draw(st.booleans()):
        ds.attrs["num_classes"] = draw(st.integers(2, 10))
    return ds


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sweep_datasets())
def test_classify_never_crashes(ds):
    out = classify(ds)
    reg = out["regime"]
    assert reg.dtype == np.int8
    assert set(np.unique(reg.values)) <= {0, 1, 2, 3, -1}
    assert set(reg.dims) == {"epochs", "density"}
    ok = ds["status"] == 0 if "status" in ds else xr.ones_like(ds["lmc"], dtype=bool)
    usable = (np.isfinite(ds["lmc"]) & np.isfinite(ds["cka"]) & ok).any(["dense_seed", "pair"])
    # a cell with no usable LMC/CKA value cannot be labelled
    assert bool((reg.where(~usable) == -1).where(~usable, True).all())
    conf = out["regime_confidence"].values
    assert np.all(np.isnan(conf) | ((conf >= 0) & (conf <= 1)))
