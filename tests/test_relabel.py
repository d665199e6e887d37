"""scripts/relabel.py: shipped files relabelled with a rule, raw data bit for bit (issue 18)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from _results_synth import TRUTH, synthetic_sweep

from threeregime.analysis.regimes import classify
from threeregime.analysis.rules import DEFAULT_RULE, label_names
from threeregime.results.storage import ENGINE, write_dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import relabel as relabel_script  # noqa: E402  (scripts/relabel.py)


def _labels(ds: xr.Dataset) -> np.ndarray:
    return ds["regime"].transpose("epochs", "density").values


def test_relabel_replaces_labels_and_features_keeps_raw_data(tmp_path):
    path = tmp_path / "sweep.nc"
    old = synthetic_sweep(1, classify={"rule": "paper_step"})
    old.attrs["regime_rule"] = classify(old, rule="paper_step").attrs["regime_rule"]
    write_dataset(old, path)
    before = xr.load_dataset(path, engine=ENGINE)
    msg = relabel_script.relabel(path, "step_v2")
    after = xr.load_dataset(path, engine=ENGINE)
    # the labels are the new rule's; on these data its step does not count: TRUTH, and the
    # message counts the cells that changed (row 1 of STEP_TRUTH vs TRUTH)
    np.testing.assert_array_equal(_labels(after), TRUTH)
    changed = int((label_names(_labels(before)) != label_names(TRUTH)).sum())
    assert changed > 0 and f"paper_step -> step_v2, {changed}/16 labels changed" in msg
    assert json.loads(after.attrs["regime_rule"])["name"] == "step_v2"
    assert "step_rel_chance" in after and "relabelled with rule step_v2" in after.attrs["history"]
    for name in ("lmc", "cka", "test_error", "train_error", "status"):
        assert after[name].values.tobytes() == before[name].values.tobytes(), name
    # a second run finds nothing to do and leaves the file alone
    stamp = path.stat().st_mtime_ns
    assert relabel_script.relabel(path, "step_v2").endswith("(current)")
    assert path.stat().st_mtime_ns == stamp
    # --check reports without writing
    assert "step_v2 -> paper_step" in relabel_script.relabel(path, "paper_step", check=True)
    assert path.stat().st_mtime_ns == stamp


def test_every_shipped_sweep_file_carries_the_default_rules_labels():
    """A default rule switched without relabelling the shipped files fails here."""
    files = [p for p in relabel_script.shipped_files()
             if "regime_rule" in xr.open_dataset(p, engine=ENGINE).attrs]
    assert len(files) >= 8
    for path in files:
        ds = xr.load_dataset(path, engine=ENGINE)
        assert json.loads(ds.attrs["regime_rule"])["name"] == DEFAULT_RULE, path.name
        _, changed, total = relabel_script.relabelled(ds, DEFAULT_RULE)
        assert changed == 0, f"{path.name}: {changed}/{total} labels differ from {DEFAULT_RULE}"


def test_unknown_rule_is_one_line_before_any_work(capsys):
    with pytest.raises(Exception, match=r"^rule must be one of .*; got 'stepv2'"):
        relabel_script.main(["--rule", "stepv2"])
    assert capsys.readouterr().out == ""
