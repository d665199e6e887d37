"""Executor choice (results never depend on it: tests/test_sweep.py checks the numbers)."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

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


# --------------------------------------------------------------------------- no orphans
def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (psutil if installed, else /proc on Linux)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            return [c.pid for c in psutil.Process(pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
    parents = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            parents[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        found += kids
        frontier += kids
    return found


def _alive(pid: int) -> bool:
    """Running (a zombie left for init to reap counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _is_worker(pid: int) -> bool:
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="scans /proc (Linux)")
def test_killed_run_leaves_no_worker_and_resumes(tmp_path):
    """SIGKILL a `threeregime run` driver while both pool workers train: within a few seconds
    no process it started is left (workers, resource tracker); the same command then resumes
    and finishes the sweep."""
    import signal
    import subprocess
    import sys
    import time

    from _tiny import tiny_yaml

    spec = tmp_path / "kill.yaml"
    spec.write_text(tiny_yaml("kill"))
    out = tmp_path / "out"
    # one member per ensemble: 8 retrain tasks, so both workers get work
    cmd = [sys.executable, "-m", "threeregime", "run", str(spec), "--out", str(out),
           "--workers", "2", "--max-members", "1", "--quiet"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    started: list[int] = []
    try:
        deadline = time.monotonic() + 180
        workers: list[int] = []
        while time.monotonic() < deadline and driver.poll() is None:
            kids = _children(driver.pid)
            workers = [p for p in kids if _is_worker(p)]
            if len(workers) >= 2:     # the second worker starts with the retrain stage
                break
            time.sleep(0.2)
        assert driver.poll() is None, "the sweep finished before it could be killed"
        assert len(workers) == 2, workers
        time.sleep(1.0)               # mid-stage
        started = _children(driver.pid)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        t0 = time.monotonic()
        while any(_alive(p) for p in started) and time.monotonic() - t0 < 10:
            time.sleep(0.1)
        left = [p for p in started if _alive(p)]
        assert not left, f"processes left {time.monotonic() - t0:.1f} s after the kill: {left}"
        assert time.monotonic() - t0 < 5, "workers took more than 5 s to exit"
    finally:
        if driver.poll() is None:
            driver.kill()
        for p in started:          # (only if the test failed: do not leave them either)
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGKILL)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    assert "kill: 4/4 points done" in r.stdout, r.stdout
