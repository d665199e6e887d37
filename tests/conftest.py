"""Test configuration: slow tests opt-in, one torch thread, headless matplotlib."""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):
    """Generated data sets are cached on disk (threeregime.data.disk_cache): in a folder of
    this test session, never the user's cache, unless THREEREGIME_DATA_CACHE is set."""
    if "THREEREGIME_DATA_CACHE" not in os.environ:
        config._data_cache = tempfile.mkdtemp(prefix="threeregime-test-data-")
        os.environ["THREEREGIME_DATA_CACHE"] = config._data_cache


def pytest_unconfigure(config):
    folder = getattr(config, "_data_cache", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop("THREEREGIME_DATA_CACHE", None)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run tests marked slow (long versions of sweeps and faults)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow test: run with --runslow (or `make test-all`)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    try:
        import torch
    except ImportError:  # results-side tests do not need torch
        return
    torch.set_num_threads(1)
