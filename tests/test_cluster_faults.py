"""A real cluster under faults: dask.distributed and submitit (Slurm) with workers killed.

* **dask**: a ``LocalCluster`` of 4 worker processes serves one ``threeregime run --dask
  ADDRESS``, while a second ``threeregime run`` (inline) works in the same sweep directory.
  Workers are SIGKILLed at random moments, preferring those that hold a lease (mid-stage); the
  nanny restarts them and the scheduler reruns their task elsewhere.
* **Slurm**: :class:`~threeregime.sweep.executors.SubmititExecutor` with submitit's local executor.
  A job is preempted mid-stage (SIGUSR2, the signal Slurm sends before preemption: submitit
  requeues it and it runs again), another is SIGKILLed (a node failure: the job is lost, the
  driver resubmits the stage and the new job takes the dead job's lease over).

Every process appends its lease and commit events to one file (``THREEREGIME_TRACE``).  The
checks: both runs exit 0 with every point; the Dataset is identical to an inline run of the same
spec; every artifact is committed once; no stage is computed again after its artifact was
committed, and each extra computation of a stage follows a takeover (its owner was killed) or
a release without a commit (preempted).  The counts are printed.  ``--runslow`` runs longer
versions (more kills, several rounds).
"""
from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from pathlib import Path

import pytest
import xarray as xr
from _tiny import tiny_yaml

pytest.importorskip("torch")
pytest.importorskip("psutil")

import psutil  # noqa: E402 - after the skip

from threeregime.errors import ThreeRegimeWarning
from threeregime.results import artifacts as art
from threeregime.results.storage import open_sweep
from threeregime.spec.specs import load_yaml
from threeregime.sweep.driver import run_sweep
from threeregime.sweep.plan import Store, plan_sweep

TINY = tiny_yaml("cluster_faults", retrain_epochs=2, densities=(0.2, 0.5))
N_POINTS = 4
MAX_MEMBERS = 2          # retraining in 4 chunks of 2: work for several workers at once
PERIOD = "1"             # lease period (s) in every process of these tests


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    d = tmp_path_factory.mktemp("cluster_ref")
    spec = d / "cluster.yaml"
    spec.write_text(TINY)
    ds = run_sweep(spec, d / "ref", device="cpu", progress=False, threads=1,
                   max_members=MAX_MEMBERS)
    return spec, ds


def _env(trace: Path) -> dict:
    return {"THREEREGIME_TRACE": str(trace), "THREEREGIME_LEASE_PERIOD": PERIOD,
            "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _cli(spec: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "threeregime", "run", str(spec), "--out", str(out), "--quiet",
            "--device", "cpu", "--threads", "1", "--max-members", str(MAX_MEMBERS), *extra]


def _holders(out: Path) -> set[int]:
    """Pids holding a lease in the sweep directory now."""
    pids = set()
    for p in (out / "claims").glob("*.claim") if (out / "claims").exists() else ():
        seen = art._read_lease(p)
        if seen and isinstance(seen[0].get("pid"), int):
            pids.add(seen[0]["pid"])
    return pids


def _same(out: Path, ref) -> None:
    got, want = open_sweep(out).copy(), ref.copy()
    for k in ("created", "date_created", "history", "git_sha"):
        got.attrs.pop(k, None)
        want.attrs.pop(k, None)
    xr.testing.assert_identical(got, want)          # every data variable, bit for bit


def _audit(trace: Path, spec: Path, out: Path) -> dict:
    """Check the event log: each artifact committed once, no stage computed after its commit
    (a lease taken after it is released unused), every recomputation after a takeover or an
    uncommitted release; return the counts."""
    plan, store = plan_sweep(load_yaml(spec)), Store(out)
    final = {j.key: str(j.path(store)) for j in plan.dense}
    final.update({j.key: str(j.path(store)) for j in plan.retrain})
    final.update({j.key: str(j.path(store)) for j in plan.points})
    events = [ln.split() for ln in trace.read_text().splitlines()]
    writes = Counter(e[1] for e in events if e[0] == "write"
                     and any(f"/{d}/" in e[1] for d in ("dense", "retrain", "points")))
    twice = [p for p, n in writes.items() if n > 1]
    assert not twice, f"artifacts committed more than once: {twice}"
    c = Counter()
    committed: set[str] = set()
    released: dict[str, bool] = {}          # key -> its last holder released it
    late: set[tuple[str, str]] = set()      # (key, pid): claimed after the commit
    for ev, name, _host, pid, *_ in events:
        if ev == "write":
            assert not any(p == pid for _, p in late), (
                f"process {pid} wrote {name} while holding a finished stage's lease")
            committed.update(k for k, f in final.items() if f == name)
            continue
        key = name.removesuffix(".claim")
        if ev == "release":
            released[key] = True
            late.discard((key, pid))
        elif ev == "lost":
            c["lost"] += 1
        elif ev.startswith("takeover") and ev.endswith(":clean"):
            c["cleaned"] += 1
        elif key in committed:
            # done just before this claim: the stage must let it go unused (stages._claimed)
            late.add((key, pid))
            c["claimed after commit, released unused"] += 1
        elif ev == "claim" or ev.startswith("takeover"):
            c["computations"] += 1
            if ev.startswith("takeover"):
                c["after takeover"] += 1
                c[ev] += 1
            elif key in released:
                assert released[key], f"stage {key} claimed fresh while its owner held it"
                c["after preemption (released)"] += 1
            released[key] = False
    c["stages"] = len(final)
    missing = [k for k, f in final.items() if not Path(f).exists()]
    assert not missing, f"stages never committed: {missing}"
    assert c["computations"] == (c["stages"] + c["after takeover"]
                                 + c["after preemption (released)"])
    return dict(c)


# --------------------------------------------------------------------------- dask
def _dask_round(spec: Path, ref, tmp: Path, kills: int, seed: int) -> dict:
    distributed = pytest.importorskip("distributed")
    import logging

    import dask

    rng = random.Random(seed)
    out, trace = tmp / "sweep", tmp / "trace.log"
    env = _env(trace)
    with dask.config.set({"distributed.scheduler.allowed-failures": 1000}):
        cluster = distributed.LocalCluster(n_workers=4, threads_per_worker=1, processes=True,
                                           dashboard_address=None, env=env,
                                           silence_logs=logging.CRITICAL)
    client = distributed.Client(cluster)
    killed: list[float] = []
    t0 = time.monotonic()
    try:
        penv = dict(os.environ, **env)
        runs = [subprocess.Popen(_cli(spec, out, "--dask", cluster.scheduler_address),
                                 env=penv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)]
        pids: set[int] = set()
        refreshed, next_kill = 0.0, None
        while len(killed) < kills and all(r.poll() is None for r in runs):
            time.sleep(0.2)
            now = time.monotonic()
            if now - refreshed > 2:
                with contextlib.suppress(Exception):   # a worker restarting meanwhile
                    pids = {w for w in client.run(os.getpid, on_error="return").values()
                            if isinstance(w, int)}
                refreshed = now
            busy = sorted(pids & _holders(out))
            if len(runs) == 1 and (busy or now - t0 > 30):
                # the second run joins once the cluster has started working
                runs.append(subprocess.Popen(_cli(spec, out, "--workers", "1"), env=penv,
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                             text=True))
            if not busy:
                next_kill = None
            elif next_kill is None:
                next_kill = now + rng.uniform(0.0, 1.5)   # at a random moment of its stage
            elif now >= next_kill:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(rng.choice(busy), signal.SIGKILL)
                    killed.append(round(now - t0, 1))
                next_kill, refreshed = None, 0.0
        outs = [r.communicate(timeout=600) for r in runs]
    finally:
        client.close()
        cluster.close()
    for r, (o, e) in zip(runs, outs):
        assert r.returncode == 0, e[-3000:]
        assert f"{N_POINTS}/{N_POINTS} points done" in o, o + e[-2000:]
    _same(out, ref)
    counts = _audit(trace, spec, out)
    counts["kills"] = len(killed)
    counts["killed at (s)"] = killed
    counts["seconds"] = round(time.monotonic() - t0, 1)
    assert not list((out / "claims").glob("*")), "leases left behind"
    return counts


@pytest.mark.timeout(600)
def test_dask_cluster_with_workers_killed_and_a_second_run(ref, tmp_path):
    spec, ds = ref
    counts = _dask_round(spec, ds, tmp_path, kills=2, seed=1)
    print(f"\ndask, 4 workers + a second run: {counts}")
    assert counts["kills"] >= 1


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_dask_cluster_many_kills(ref, tmp_path):
    spec, ds = ref
    total = Counter()
    for r in range(4):
        counts = _dask_round(spec, ds, tmp_path / f"round{r}", kills=6, seed=100 + r)
        print(f"\nround {r}: {counts}")
        counts.pop("killed at (s)")
        total.update(counts)
    print(f"\ndask, 4 rounds: {dict(total)}")
    assert total["kills"] >= 12 and total["after takeover"] >= 4


# --------------------------------------------------------------------------- Slurm
def _job_tasks() -> list[int]:
    """Pids of the running submitit job tasks under this process (controller -> task)."""
    tasks = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "submitit.local._local" in " ".join(p.parent().cmdline()):
                tasks.append(p.pid)
        except (psutil.Error, AttributeError):
            continue
    return tasks


def _slurm_round(spec: Path, ref, tmp: Path, monkeypatch, faults: list[str], seed: int
                 ) -> dict:
    pytest.importorskip("submitit")
    from threeregime.sweep.executors import SubmititExecutor

    rng = random.Random(seed)
    out, trace = tmp / "sweep", tmp / "trace.log"
    for k, v in _env(trace).items():
        monkeypatch.setenv(k, v)
    ex = SubmititExecutor(folder=str(tmp / "_submitit"), cluster="local", timeout_min=20)
    result: dict = {}

    def sweep():
        try:
            with warnings.catch_warnings(record=True) as caught:
                # a lost job is reported as a failed task even when its stage was then
                # taken over and finished: recorded here, the Dataset is checked below
                warnings.simplefilter("always", ThreeRegimeWarning)
                result["ds"] = run_sweep(spec, out, executor=ex, device="cpu",
                                         progress=False, threads=1,
                                         max_members=MAX_MEMBERS, poll=0.3)
            result["warnings"] = len(caught)
        except BaseException as e:  # noqa: BLE001 - reported below
            result["error"] = e

    t0 = time.monotonic()
    th = threading.Thread(target=sweep)
    th.start()
    done: list[str] = []
    while faults and th.is_alive():
        time.sleep(rng.uniform(0.2, 0.6))
        victims = sorted(set(_job_tasks()) & _holders(out))
        if not victims:
            continue
        how = faults.pop(0)
        with_signal = signal.SIGUSR2 if how == "preempt" else signal.SIGKILL
        try:
            os.kill(rng.choice(victims), with_signal)
            done.append(how)
        except ProcessLookupError:
            faults.insert(0, how)
    th.join(timeout=900)
    assert not th.is_alive()
    assert "error" not in result, repr(result.get("error"))
    assert int((result["ds"]["status"] == 0).sum()) == N_POINTS
    _same(out, ref)
    counts = _audit(trace, spec, out)
    counts.update(Counter(done))
    counts["failure warnings"] = result["warnings"]
    counts["seconds"] = round(time.monotonic() - t0, 1)
    return counts


@pytest.mark.timeout(900)
def test_slurm_preemption_requeue_and_node_failure(ref, tmp_path, monkeypatch):
    spec, ds = ref
    counts = _slurm_round(spec, ds, tmp_path, monkeypatch, ["preempt", "kill"], seed=3)
    print(f"\nsubmitit (local executor): {counts}")
    assert counts.get("preempt", 0) + counts.get("kill", 0) == 2
    assert counts.get("after preemption (released)", 0) + counts.get("after takeover", 0) >= 1


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_slurm_many_faults(ref, tmp_path, monkeypatch):
    spec, ds = ref
    total = Counter()
    for r in range(3):
        counts = _slurm_round(spec, ds, tmp_path / f"round{r}", monkeypatch,
                              ["preempt", "kill", "preempt", "kill"], seed=200 + r)
        print(f"\nround {r}: {counts}")
        total.update(counts)
    print(f"\nsubmitit, 3 rounds: {dict(total)}")
    assert total["kill"] + total["preempt"] >= 8
