"""The legacy rule gives the labels it gave before it became a rule family of ``rules.py``.

``tests/data/legacy_labels.json`` was written by the pre-move code (``regimes._classify_legacy``
and ``advice.classify_cell``, commit 22a2d23) on every shipped results file: per file the
legacy rule's regime codes, undetermined reasons, confidences and rule JSON, by name
(``rule="legacy"``) and with the absolute CKA keywords; and, for every cell of the test files,
the legacy single-model rule's label and confidence.  Issue 17 moved the rule into
:func:`threeregime.analysis.rules.classify_with_rule` and
:func:`threeregime.analysis.rules.classify_cell_with_rule`; nothing may change.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import threeregime as tr
from threeregime.analysis.regimes import classify
from threeregime.analysis.rules import classify_cell_with_rule

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = json.loads((ROOT / "tests" / "data" / "legacy_labels.json").read_text())
VARIANTS = {"rule": {"rule": "legacy"}, "absolute": {"cka_rule": "absolute", "tau_cka": 0.959}}


def _conf(values):
    return [None if not np.isfinite(v) else round(float(v), 10) for v in np.ravel(values)]


@pytest.mark.parametrize("path", sorted({k.split("|")[0] for k in GOLDEN["grid"]}))
def test_legacy_grid_labels_unchanged(path):
    ds = tr.open_sweep(ROOT / path)
    for tag, kw in VARIANTS.items():
        want = GOLDEN["grid"][f"{path}|{tag}"]
        got = classify(ds, **kw)
        assert list(got["regime"].dims) == want["dims"]
        assert got["regime"].values.astype(int).ravel().tolist() == want["regime"], tag
        assert got["undetermined_reason"].values.astype(int).ravel().tolist() == want["reason"]
        assert _conf(got["regime_confidence"].values) == want["confidence"], tag
        assert json.loads(got.attrs["regime_rule"]) == want["regime_rule"], tag


def test_legacy_single_cell_labels_unchanged():
    files = sorted({k.split("|")[0] for k in GOLDEN["single"]})
    assert len(GOLDEN["single"]) == 60
    for path in files:
        ds = tr.open_sweep(ROOT / path)
        for e in ds.epochs.values:
            for d in ds.density.values:
                c = ds.sel(epochs=e, density=d)
                out = classify_cell_with_rule(
                    c["lmc"].values.ravel(), cka=c["cka"].values.ravel(),
                    test_error=c["test_error"].values.ravel(),
                    train_error=c["train_error"].values.ravel(), num_classes=10,
                    hyperparameter="epochs", value=float(e), rule="legacy")
                conf = out["confidence"]
                got = [out["regime"], None if conf != conf else round(conf, 10)]
                assert got == GOLDEN["single"][f"{path}|{int(e)}|{float(d)}"], (path, e, d)
