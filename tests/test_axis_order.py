"""A sweep's axis order: the grid's point specs (and so every stage key) do not depend on it,
and a spec read back from its sorted-key ``sweep.json`` keeps the order the user gave.

Regression: ``threeregime status runs/families_nm`` (a directory) failed with "density must
equal N/M ... for method nm_2_4" because the axes came back sorted (density before
prune_method) and the density was applied to the N:M base before the method replaced it."""
from __future__ import annotations

import json

import torch

from threeregime.spec.specs import SweepSpec, canonical_json, from_dict, spec_hash, to_dict
from threeregime.sweep.driver import _resolve, _write_meta, run_sweep, sweep_status
from threeregime.sweep.plan import Store, plan_sweep

torch.set_num_threads(1)

#: a tiny families_nm-style sweep; axes in sorted key order, as sweep.json stores them
BASE = {"data": {"name": "mnist1d", "train_size": 128, "test_size": 64},
        "model": {"name": "cnn1d", "width": 0.25},
        "dense": {"epochs": 2, "batch_size": 32}, "retrain": {"epochs": 1, "batch_size": 32},
        "prune": {"method": "nm_2_4", "dense_layers": ["features.0.weight"],
                  "options": {"decay": "linear"}},
        "retrain_seeds": [0, 1], "measure": {"lmc_points": 3, "eval_batch_size": 128}}
SORTED = {"name": "tiny_nm_sorted", "base": BASE, "dense_seeds": [0],
          "axes": {"density": [0.25, 0.5], "epochs": [1, 2],
                   "prune_method": ["magnitude", "nm_2_4"]}}
USER = {**SORTED, "axes": {"epochs": [1, 2], "prune.method": ["magnitude", "nm_2_4"],
                           "density": [0.25, 0.5]}}


def _stored(spec: SweepSpec) -> SweepSpec:
    """What a sweep directory gives back: the plain data through sorted-key JSON."""
    return from_dict(SweepSpec, json.loads(json.dumps(to_dict(spec, drop_defaults=True),
                                                      sort_keys=True)))


def test_points_and_stage_keys_do_not_depend_on_axis_order():
    a, b = from_dict(SweepSpec, SORTED), from_dict(SweepSpec, USER)
    assert list(a.axes) == ["density", "epochs", "prune_method"]
    assert list(b.axes) == ["epochs", "prune_method", "density"]
    pa = {tuple(sorted(c.items())): spec_hash(p) for c, p in a.points()}
    pb = {tuple(sorted(c.items())): spec_hash(p) for c, p in b.points()}
    assert pa == pb and len(pa) == 2 * 3      # nm_2_4 exists at density 0.5 only
    keys = [sorted(j.key for j in getattr(plan_sweep(s), stage)) for s in (a, b)
            for stage in ("dense", "retrain", "points")]
    assert keys[:3] == keys[3:]
    # the order is presentation: the sweep's hash and canonical JSON ignore it
    assert spec_hash(a) == spec_hash(b) and "axis_order" not in canonical_json(b)


def test_stored_spec_keeps_the_user_axis_order():
    user = from_dict(SweepSpec, USER)
    back = _stored(user)
    assert list(back.axes) == list(user.axes) and back == user
    assert spec_hash(back) == spec_hash(user)
    assert to_dict(user, drop_defaults=True)["axis_order"] == list(user.axes)
    # sorted axes need no order; a stale axis_order (plain data edited) is ignored: the axes
    # named are others, or they are given in an order of their own
    assert "axis_order" not in to_dict(from_dict(SweepSpec, SORTED))
    edited = {**to_dict(user), "axes": {"density": [0.5], "lr": [0.05, 0.1]}}
    assert list(from_dict(SweepSpec, edited).axes) == ["density", "lr"]
    edited["axes"] = {"prune_method": ["magnitude"], "epochs": [1], "density": [0.25]}
    assert list(from_dict(SweepSpec, edited).axes) == ["prune_method", "epochs", "density"]


def test_status_of_a_directory_whose_axes_come_back_sorted(tmp_path):
    spec = from_dict(SweepSpec, SORTED)
    ds = run_sweep(spec, tmp_path, progress=False, threads=1, device="cpu")
    assert list(ds["status"].dims)[:3] == ["density", "epochs", "prune_method"]
    st = sweep_status(tmp_path)                 # re-planned from sweep.json
    assert (st.total, st.done, st.failed, st.pending) == (6, 6, 0, 0)
    # a directory written from the user's order re-plans in that order, same stage keys
    user = from_dict(SweepSpec, USER)
    root = tmp_path / "user"
    root.mkdir()
    _write_meta(Store(root), user)              # sorted-key JSON, as run_sweep writes it
    assert list(json.loads(Store(root).meta.read_text())["spec"]["axes"]) == sorted(user.axes)
    again, _ = _resolve(root, None)
    assert list(again.axes) == list(user.axes)
    assert sweep_status(root).total == 6
