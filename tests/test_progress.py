"""Progress bars show only in the calling process: a sweep run by worker processes shows the
stage bars (dense / retrain / measure) here and prints nothing from its workers' fits (their
bars would reach a notebook as red stderr boxes)."""
from __future__ import annotations

import os
import re

import pytest
from test_sweep import TINY as TINY_SWEEP

from threeregime.spec.specs import SweepSpec, from_dict
from threeregime.sweep.driver import run_sweep
from threeregime.sweep.executors import InlineExecutor, ProcessExecutor

#: test_sweep's tiny sweep on one grid point (one task per stage)
TINY = {**TINY_SWEEP, "name": "tiny-progress", "axes": {"epochs": [2], "density": [0.2]}}
STAGE_BARS = ("dense   :", "retrain :", "measure :")
FIT_BARS = ("dense x", "retrain x")       # train.fit's per-ensemble bars (stages.py desc)


def _sweep(tmp_path, executor):
    spec = from_dict(SweepSpec, TINY)
    try:
        run_sweep(spec, tmp_path / "out", executor=executor, progress=True, threads=1,
                  device="cpu")
    finally:
        executor.close()


def test_inline_sweep_shows_fit_bars(tmp_path, capfd):
    """In this process the per-fit bars show too (so their text is what the test looks for)."""
    _sweep(tmp_path, InlineExecutor())
    err = capfd.readouterr().err
    assert all(s in err for s in STAGE_BARS), err[-2000:]
    assert all(s in err for s in FIT_BARS), err[-2000:]
    # the stage bars count models and points, as the status line does (issue 20): one task
    # retrains both retraining seeds of the point together
    assert re.search(r"retrain :\s*100%[^\n]*\b2/2\b[^\n]*model", err), err[-2000:]
    assert re.search(r"measure :\s*100%[^\n]*\b1/1\b[^\n]*point", err), err[-2000:]


@pytest.mark.timeout(120)
def test_process_pool_sweep_shows_only_stage_bars(tmp_path, capfd):
    ex = ProcessExecutor(workers=2, threads=1)
    # the check can see a worker's stderr at all (the pool's children share fd 2)
    probe = b"probe-from-worker\n"
    assert [out for _, out in ex.map(os.write, [(2, probe)])] == [len(probe)]
    assert "probe-from-worker" in capfd.readouterr().err
    _sweep(tmp_path, ex)
    err = capfd.readouterr().err
    assert all(s in err for s in STAGE_BARS), err[-2000:]
    leaked = [s for s in FIT_BARS if s in err]
    assert not leaked, f"worker processes printed progress bars {leaked}:\n{err[-2000:]}"
    # nothing else from the workers either: every stderr line belongs to a stage bar
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip()]
    assert all(ln.lstrip().startswith(STAGE_BARS) for ln in lines), lines
