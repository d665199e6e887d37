"""The validation split (``data.val_size``): disjoint from train and test, leaves them
bit-identical, keeps every stored hash, and reaches the point and sweep Datasets as
``val_error`` / ``dense_val_error``."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from _tiny import tiny_sweep
from _tiny_cifar import write_cifar

from threeregime import DataError, DataSpec, SpecError
from threeregime.data.sources import clear_cache, load_data
from threeregime.models.zoo import build_model
from threeregime.spec.specs import PointSpec, SweepSpec, canonical_json, from_dict, spec_hash
from threeregime.sweep.driver import run_sweep
from threeregime.sweep.plan import Store, plan_sweep
from threeregime.sweep.torchio import load_torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def _rows(x: torch.Tensor) -> set:
    return {r.tobytes() for r in x.reshape(len(x), -1).numpy()}


def _specs(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")      # 30 training, 8 test images
    return [
        DataSpec("mnist1d", train_size=200, test_size=100,
                 options={"n_train": 300, "n_test": 100}, seed=3),
        DataSpec("teacher_student", options={"n_train": 300, "n_test": 50,
                                             "label_noise": 0.2}),
        DataSpec("digits", train_size=1000, seed=1),
        DataSpec("cifar10", root=str(tmp_path), train_size=20),
    ]


@pytest.mark.parametrize("i", range(4), ids=["mnist1d", "teacher_student", "digits", "cifar10"])
def test_val_split_is_disjoint_and_leaves_train_and_test_unchanged(tmp_path, i):
    spec = _specs(tmp_path)[i]
    n_val = 8 if spec.name == "cifar10" else 120
    plain = load_data(spec)
    assert plain.val is None
    clear_cache()
    with_val = load_data(dataclasses.replace(spec, val_size=n_val))
    for split in ("train", "test"):            # bit-identical, not merely close
        for part in ("x", "y"):
            a, b = getattr(getattr(plain, split), part), getattr(getattr(with_val, split), part)
            assert a.dtype == b.dtype and torch.equal(a, b), (split, part)
    val = with_val.val
    assert val.x.shape == (n_val, *plain.input_shape) and val.y.shape == (n_val,)
    assert val.x.dtype == torch.float32 and val.y.dtype == torch.int64
    assert int(val.y.min()) >= 0 and int(val.y.max()) < plain.num_classes
    rows = _rows(val.x)
    assert len(rows) == n_val                              # no duplicates inside val
    assert not rows & _rows(plain.train.x), "validation examples also in train"
    assert not rows & _rows(plain.test.x), "validation examples also in test"


def test_generated_val_labels_are_clean_and_balanced():
    spec = DataSpec("teacher_student", options={"n_train": 200, "n_test": 50,
                                                "label_noise": 0.5}, val_size=500)
    d = load_data(spec)
    clean = load_data(dataclasses.replace(spec, options={**spec.options, "label_noise": 0.0}))
    assert torch.equal(d.val.y, clean.val.y)     # noise touches the training labels only
    m = load_data(DataSpec("mnist1d", options={"n_train": 100, "n_test": 50}, val_size=500))
    counts = m.val.y.bincount(minlength=10)
    assert int(counts.min()) >= 30 and int(counts.max()) <= 70   # ~50 per class
    # the validation generation is standardised like the train/test pool (same population)
    assert abs(float(m.val.x.mean()) - float(m.train.x.mean())) < 0.1
    assert abs(float(m.val.x.std()) / float(m.train.x.std()) - 1) < 0.1


def test_hashes_and_stage_keys():
    # the default (None) is left out of the canonical form: every stored hash stays put
    assert canonical_json(PointSpec(data=DataSpec(val_size=None))) == "{}"
    assert spec_hash(DataSpec(train_size=100)) == spec_hash(DataSpec(train_size=100,
                                                                     val_size=None))
    assert canonical_json(DataSpec(val_size=50)) == '{"val_size":50}'
    # training never sees the split: dense and retrain keys ignore it, point keys do not
    tiny = from_dict(SweepSpec, tiny_sweep("k"))
    d = tiny_sweep("k")
    d["base"]["data"]["val_size"] = 64
    with_val = from_dict(SweepSpec, d)
    a, b = plan_sweep(tiny), plan_sweep(with_val)
    assert [j.key for j in a.dense] == [j.key for j in b.dense]
    assert [j.key for j in a.retrain] == [j.key for j in b.retrain]
    assert not {j.key for j in a.points} & {j.key for j in b.points}


@pytest.mark.parametrize("make, exc, match", [
    (lambda: DataSpec(val_size=0), SpecError, r"val_size must be an integer >= 1 or null; "
                                              r"got 0"),
    (lambda: DataSpec(val_size=2.5), SpecError, r"val_size must be an integer >= 1 or null; "
                                                r"got 2.5"),
    (lambda: load_data(DataSpec("digits", val_size=100)), DataError,
     r"val_size: data source 'digits' holds validation examples out of its 1437-example "
     r"training pool, so train_size \+ val_size must be <= 1437; got train_size None and "
     r"val_size 100"),
    (lambda: load_data(DataSpec("digits", train_size=1400, val_size=100)), DataError,
     r"train_size \+ val_size must be <= 1437; got train_size 1400 and val_size 100"),
])
def test_bad_val_size_one_line(make, exc, match):
    with pytest.raises(exc, match=match) as e:
        make()
    assert "\n" not in str(e.value)


def test_bad_val_size_in_a_sweep_fails_before_any_work(tmp_path):
    d = tiny_sweep("bad")
    d["base"]["data"] = {"name": "digits", "val_size": 100}
    d["base"]["model"] = {"name": "mlp"}
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"^base.data: val_size: data source 'digits'") as e:
        run_sweep(from_dict(SweepSpec, d), out, progress=False, threads=1, device="cpu")
    assert "\n" not in str(e.value) and not out.exists()


def test_tiny_sweep_reports_val_error(tmp_path, monkeypatch):
    out = tmp_path / "tiny"
    plain = run_sweep(from_dict(SweepSpec, tiny_sweep("tiny")), out, progress=False,
                      threads=1, device="cpu")
    for name, like in (("val_error", "test_error"), ("dense_val_error", "dense_test_error")):
        assert plain[name].dims == plain[like].dims
        assert plain[name].attrs["units"] == "1" and "validation" in plain[name].attrs[
            "long_name"]
        assert bool(np.isnan(plain[name]).all())           # no split: NaN

    d = tiny_sweep("tiny")
    d["base"]["data"]["val_size"] = 64
    spec = from_dict(SweepSpec, d)
    import threeregime.sweep.stages as stages
    calls = []
    real_fit = stages.fit
    monkeypatch.setattr(stages, "fit", lambda *a, **k: calls.append(1) or real_fit(*a, **k))
    ds = run_sweep(spec, out, progress=False, threads=1, device="cpu")
    assert calls == [], "a validation split must reuse the dense and retrained models"
    for name, like in (("val_error", "test_error"), ("dense_val_error", "dense_test_error")):
        assert ds[name].dims == plain[like].dims
        assert bool(np.isfinite(ds[name]).all())
        assert float(ds[name].min()) >= 0 and float(ds[name].max()) <= 1
    # train and test numbers are those of the run without the split
    np.testing.assert_array_equal(ds["test_error"].values, plain["test_error"].values)

    # ground truth: one retrained model's validation error by hand from its stored state
    pj = plan_sweep(spec).points[0]
    store = Store(out)
    rec = load_torch(store.retrain(pj.retrain_keys[0]))
    data = load_data(spec.base.data)
    model = build_model(spec.base.model, data.input_shape, data.num_classes, seed=0)
    model.load_state_dict(rec["state"])
    model.eval()
    with torch.no_grad():
        want = float((model(data.val.x).argmax(1) != data.val.y).float().mean())
    got = ds["val_error"].sel(pj.coords).isel(retrain_seed=0)
    assert float(got) == pytest.approx(want, abs=1e-12)
