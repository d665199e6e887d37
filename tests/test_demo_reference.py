"""The embedded default against its shipped reference, by label and tolerance (issue 12).

The reference is ``validation/corpus/demo_epochs.nc``: ``sweeps/quick.yaml`` (the ``make demo``
setting) on its own dense seeds 0-3, as written on the machine that built it.  Floating-point
results differ between CPUs, so a fresh run elsewhere is compared cell by cell within the
spread over dense seeds, and its regime labels where both runs resolve them; never by bits.

Reproducibility, not determinism (issue 18 item 5): the fresh runs use dense seeds disjoint from
the reference's (8, and 8-11), and the two shipped files on disjoint seeds (0-3 and 4-7,
``validation/quick_seeds4567.nc``) are compared with each other.  Agreement figures per corpus
setting: ``python benchmarks/reproducibility.py validation/corpus/*.nc``.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import threeregime as tr
from threeregime.analysis.regimes import decode
from threeregime.spec.specs import SweepSpec, from_dict
from threeregime.sweep.driver import run_sweep

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "validation" / "corpus" / "demo_epochs.nc"
RESOLVED = ("I", "II-A", "II-B")


def _reference() -> xr.Dataset:
    return tr.open_sweep(REFERENCE).load()


def _points(spec: SweepSpec) -> dict:
    return {json.dumps(c, sort_keys=True): p for c, p in spec.points()}


def test_reference_is_the_demo_setting():
    """The shipped file was produced by exactly the demo's points and seeds (only the name
    differs), so comparing with it tests `make demo`."""
    demo = tr.load_yaml(ROOT / "sweeps" / "quick.yaml")
    ref = from_dict(SweepSpec, json.loads(_reference().attrs["spec_json"]))
    assert dataclasses.replace(ref, name=demo.name, description=demo.description) == demo
    assert _points(ref) == _points(demo)


def _within(fresh: xr.DataArray, ref: xr.DataArray, k: float = 4.0, floor: float = 0.02):
    """Cells where the fresh value is within k standard deviations over the reference's dense
    seeds (plus a floor for cells whose seeds happen to agree) of the reference mean."""
    mean, sd = ref.mean("dense_seed"), ref.std("dense_seed", ddof=1)
    return np.abs(fresh - mean) <= k * sd + floor


def test_fresh_dense_seed_within_reference_spread(tmp_path):
    """One dense seed of the demo that the reference does not have (8), at its hottest and
    coldest snapshot and its lowest and highest density, retrained and measured here: test
    error and mc (the barrier) lie within the reference's spread over dense seeds, and the
    dichotomy the demo shows is there (the hot snapshot prunes better at 5 %, the cold one
    at 80 %)."""
    demo = tr.load_yaml(ROOT / "sweeps" / "quick.yaml")
    axes = {"epochs": (4, 40), "density": (0.05, 0.8)}
    spec = dataclasses.replace(demo, name="demo_subset", axes=axes, dense_seeds=(8,))
    ds = run_sweep(spec, tmp_path / "run", progress=False)
    ref = _reference().sel(epochs=list(axes["epochs"]), density=list(axes["density"]))
    te = ds["test_error"].mean("retrain_seed").isel(dense_seed=0)
    ref_te = ref["test_error"].mean("retrain_seed")
    assert bool(_within(te, ref_te).all()), (te.values, ref_te.mean("dense_seed").values)
    mc = ds["lmc"].mean("pair").isel(dense_seed=0)
    assert bool(_within(mc, ref["lmc"].mean("pair")).all())
    assert float(te.sel(epochs=4, density=0.05)) < float(te.sel(epochs=40, density=0.05))
    assert float(te.sel(epochs=40, density=0.8)) < float(te.sel(epochs=4, density=0.8))


def _label_agreement(a: xr.Dataset, b: xr.Dataset) -> tuple[int, int, list]:
    la = decode(tr.classify(a)["regime"]).values.ravel()
    lb = decode(tr.classify(b)["regime"]).values.ravel()
    both = np.isin(la, RESOLVED) & np.isin(lb, RESOLVED)
    return int((la[both] == lb[both]).sum()), int(both.sum()), list(zip(la, lb))


@pytest.mark.xfail(strict=True, reason=(
    "measured: under the dense-seed statistics of issue 18 and the default rule step_v2 the "
    "demo's labels on dense seeds 0-3 and 4-7 agree in 10 of the 13 cells both resolve "
    "(benchmarks/reproducibility.py --pair; 9 of 15 under paper_step); 4 dense seeds do not "
    "reproduce the labels. strict: a fix makes this fail"))
def test_disjoint_seed_files_reproduce_labels():
    """The reproducibility target of issues 11 and 12: labels on disjoint dense seeds agree in
    >= 90 % of the cells both runs resolve, with at least half of the cells resolved."""
    k, n, pairs = _label_agreement(_reference(), tr.open_sweep(
        ROOT / "validation" / "quick_seeds4567.nc").load())
    assert n >= 12 and k / n >= 0.9, pairs


@pytest.mark.slow
def test_fresh_demo_on_disjoint_seeds_within_reference_spread(tmp_path):
    """The whole demo on dense seeds 8-11, which the reference does not have (about 5
    CPU-minutes): every cell's retrained test error lies within the reference's spread."""
    demo = tr.load_yaml(ROOT / "sweeps" / "quick.yaml")
    ds = run_sweep(dataclasses.replace(demo, dense_seeds=(8, 9, 10, 11)), tmp_path / "run",
                   progress=False)
    ref = _reference()
    te = ds["test_error"].mean("retrain_seed").mean("dense_seed")
    ref_te = ref["test_error"].mean("retrain_seed")
    sem = ref_te.std("dense_seed", ddof=1) / np.sqrt(ref_te.sizes["dense_seed"])
    assert bool((np.abs(te - ref_te.mean("dense_seed")) <= 4 * sem * np.sqrt(2) + 0.02).all())
