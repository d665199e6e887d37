"""Executor choice (results never depend on it: tests/test_sweep.py checks the numbers)."""
from __future__ import annotations

import os

import pytest

from threeregime import SpecError
from threeregime.sweep.executors import (
    InlineExecutor,
    ProcessExecutor,
    make_executor,
    resolve_workers,
)


def test_workers_auto_is_one_per_core():
    assert resolve_workers("auto") == max(1, os.cpu_count() or 1)
    assert resolve_workers(3) == 3 and resolve_workers("2") == 2 and resolve_workers(None) == 1
    ex = make_executor(workers="auto")
    if (os.cpu_count() or 1) > 1:
        assert isinstance(ex, ProcessExecutor) and ex.workers == os.cpu_count()
        assert ex.threads == 1
    ex.close()
    assert isinstance(make_executor(workers=1), InlineExecutor)


@pytest.mark.parametrize("bad", [0, -1, "many", True, 1.5])
def test_bad_workers_is_one_line(bad):
    with pytest.raises(SpecError, match=r"^workers must be 'auto' or an integer >= 1; got "):
        resolve_workers(bad)


def test_one_executor_only():
    with pytest.raises(SpecError, match="choose one executor; got --workers and --dask"):
        make_executor(workers=2, dask="local")
