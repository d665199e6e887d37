"""Specs: content hashes are stable addresses, validation names field/value/allowed."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from threeregime import SpecError
from threeregime.spec.specs import (
    AXES,
    DataSpec,
    MeasureSpec,
    ModelSpec,
    PointSpec,
    PruneSpec,
    SweepSpec,
    TrainSpec,
    canonical_json,
    dump_yaml,
    from_dict,
    load_yaml,
    spec_hash,
    to_dict,
)

ROOT = Path(__file__).resolve().parents[1]


def test_golden_hashes():
    """Renaming, reordering or adding defaulted fields must not move stored results."""
    assert canonical_json(PointSpec()) == "{}"
    assert spec_hash(PointSpec()) == "44136fa355b3678a"
    assert spec_hash(PointSpec(prune=PruneSpec(density=0.05))) == "4796e50414b1e05d"
    assert spec_hash(load_yaml(ROOT / "sweeps" / "smoke.yaml")) == "1a3632c2b9759abc"


def test_defaults_are_left_out_and_keys_sorted():
    p = PointSpec(dense=TrainSpec(lr=0.05), data=DataSpec(train_size=100))
    assert canonical_json(p) == '{"data":{"train_size":100},"dense":{"lr":0.05}}'
    # explicitly passing a default value is the same spec
    assert spec_hash(PointSpec(dense=TrainSpec(lr=0.1))) == spec_hash(PointSpec())


@pytest.mark.parametrize("path", sorted((ROOT / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_sweeps_load_and_round_trip(path, tmp_path):
    s = load_yaml(path)
    assert isinstance(s, SweepSpec)
    out = tmp_path / "again.yaml"
    dump_yaml(s, out)
    assert spec_hash(load_yaml(out)) == spec_hash(s)
    assert from_dict(SweepSpec, to_dict(s)) == s
    roles = [AXES[a].role for a in s.axes]
    # every shipped sweep is a phase diagram: one temperature and one load axis, plus at most
    # a category axis (pruning method or retraining mode: one diagram per value)
    assert sorted(r for r in roles if r != "category") == ["load", "temperature"], roles
    assert roles.count("category") <= 1, roles


def test_grid_expansion_is_deterministic_and_epochs_are_snapshots():
    s = SweepSpec(name="g", axes={"epochs": [10, 5], "density": [0.5, 0.1]},
                  dense_seeds=(1, 0))
    pts = s.points()
    assert len(pts) == 8
    assert [c["epochs"] for c, _ in pts[:4]] == [5, 5, 5, 5]  # axes sorted
    assert {p.dense.snapshots for _, p in pts} == {(5, 10)}
    assert {p.snapshot_epoch for _, p in pts} == {5, 10}
    assert [c for c, _ in s.points()] == [c for c, _ in pts]


@pytest.mark.parametrize("make, match", [
    (lambda: PruneSpec(density=1.5), r"density must be a number in \(0, 1\]; got 1.5"),
    (lambda: PruneSpec(density=0), r"density must be a number in \(0, 1\]; got 0"),
    (lambda: TrainSpec(lr=-0.1), r"lr must be a number in \(0, inf\]; got -0.1"),
    (lambda: TrainSpec(schedule="cosin"), r"schedule must be one of .*did you mean 'cosine'"),
    (lambda: PruneSpec(method="lamp2"), r"method must be one of .*did you mean 'lamp'"),
    (lambda: PruneSpec(method="nm", nm="2:4", density=0.3), r"must equal N/M = 2/4"),
    (lambda: PruneSpec(method="nm", nm="4:2", density=2.0), r"density must be"),
    (lambda: PointSpec(retrain_seeds=()), r"retrain_seeds must list at least one seed"),
    (lambda: PointSpec(retrain_seeds=(1, 1)), r"retrain_seeds must be distinct"),
    (lambda: SweepSpec(axes={}), r"axes must name at least one axis"),
    (lambda: SweepSpec(axes={"density": []}), r"axes.density must list at least one value"),
    (lambda: SweepSpec(axes={"density": [0.1, 0.1]}), r"duplicate values \[0.1\]"),
    (lambda: SweepSpec(axes={"denisty": [0.1]}), r"did you mean 'density'"),
    (lambda: SweepSpec(axes={"epochs": [50]}), r"exceeds base.dense.epochs \(40\)"),
    (lambda: SweepSpec(axes={"batch_size": [16]}), r"set base.dense.iterations"),
    (lambda: MeasureSpec(lmc_points=1), r"lmc_points must be an integer >= 2; got 1"),
])
def test_validation_messages(make, match):
    with pytest.raises(SpecError, match=match):
        make()


def test_yaml_errors_name_the_file_and_path(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("name: x\naxes: {density: [0.1]}\nbase:\n  prune: {densty: 0.3}\n")
    with pytest.raises(SpecError, match=r"bad.yaml: base.prune.densty: unknown key \(did you "
                                        r"mean 'density'\?\)"):
        load_yaml(f)
    f.write_text("name: x\naxes: {density: [0.1]}\nbase:\n  dense: {lr: fast}\n")
    with pytest.raises(SpecError, match=r"bad.yaml: base.dense.lr must be a number; got 'fast'"):
        load_yaml(f)
    f.write_text("name: x\naxes: {density: [0.1\n")
    with pytest.raises(SpecError, match=r"bad.yaml: malformed YAML at line"):
        load_yaml(f)
    with pytest.raises(SpecError, match=r"spec file not found"):
        load_yaml(tmp_path / "nope.yaml")


def test_specs_are_frozen():
    p = PointSpec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.dense_seed = 3  # type: ignore[misc]


def test_spec_module_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, threeregime, threeregime.spec.specs, threeregime.results.storage, "
            "threeregime.analysis.regimes; threeregime.SweepSpec; "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_model_spec_name_is_checked_at_build_time():
    from threeregime.models.zoo import build_model

    with pytest.raises(SpecError, match=r"unknown model 'cnn' .*known: "):
        build_model(ModelSpec(name="cnn"), (1, 40), 10, seed=0)
