"""Crash, interrupt and concurrency tests of the sweep driver (GitHub issue #7).

A tiny sweep (4 points) runs in subprocesses (``python -m threeregime run ... --quiet``) that are
SIGKILLed at chosen moments through the ``THREEREGIME_FAULT=stage:n`` test hook of
:mod:`threeregime.results.artifacts` (dense training, pruning, retraining, metrics, claims, and the
instant between a complete temporary file and its rename), then rerun.  After every kill:

* every file under a final name is complete (loads), and every file that existed before the
  run still has the same inode and mtime: nothing finished was recomputed or rewritten;
* a reader assembling the sweep meanwhile gets a consistent partial Dataset (missing points
  have ``status`` 3).

After the last, undisturbed run the results equal those of an uninterrupted run
(``xr.testing.assert_identical``, the ``created`` time aside), no temporary file or claim is
left, and a rerun does no work.  ``--runslow`` adds a long randomized version (random stages,
random kill times, several fresh directories).
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import xarray as xr
import yaml
from _tiny import tiny_sweep, tiny_yaml

pytest.importorskip("torch")

from threeregime.results import artifacts as art
from threeregime.results.storage import STATUS, open_sweep
from threeregime.spec.specs import load_yaml
from threeregime.sweep.driver import assemble, run_sweep, sweep_status
from threeregime.sweep.torchio import load_torch

TINY = tiny_yaml("tiny_faults", densities=(0.2, 0.5))
N_POINTS = 4

# One crash at every stage, in the order a sweep meets them; each must really kill.
# write:k kills the k-th atomic write of that run after its temp file is complete, before rename.
SCHEDULE = [
    "dense:1",      # dense claim taken, training not started: a dead owner's claim remains
    "write:2",      # run.json committed, epoch_0001.pt complete under its temp name
    "write:3",      # both snapshots committed, final.pt lost
    "prune:1",      # dense done; inside pruning
    "claim:3",      # two retrain claims taken, third being taken
    "write:4",      # three retrained models committed, fourth lost (the other five retrain
                    # as a smaller ensemble next time: results must not depend on it)
    "measure:1",    # retraining done; inside the first metrics task
    "measure:2",    # one point measured, inside the second
    "write:2",      # another point committed, the next one lost before its rename
    "write:3",      # last two points committed, results.nc lost
]


def _env(fault: str | None = None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("THREEREGIME_FAULT", None)
    if fault:
        env["THREEREGIME_FAULT"] = fault
    return env


def _cmd(spec: Path, out: Path) -> list[str]:
    # --workers 1: the stages run in this process, so its fault hook counts every stage call
    # (the default, one worker process per core, would arm the hook in each worker instead)
    return [sys.executable, "-m", "threeregime", "run", str(spec), "--out", str(out), "--quiet",
            "--device", "cpu", "--threads", "1", "--workers", "1"]


def _run(spec: Path, out: Path, fault: str | None = None, timeout: float = 300):
    return subprocess.run(_cmd(spec, out), env=_env(fault), capture_output=True, text=True,
                          check=False, timeout=timeout)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny spec file and its uninterrupted results (computed in-process once)."""
    d = tmp_path_factory.mktemp("tiny")
    spec = d / "tiny.yaml"
    spec.write_text(TINY)
    ref = run_sweep(spec, d / "ref", device="cpu", progress=False, threads=1)
    return spec, ref


def _final_files(out: Path) -> dict[str, tuple[int, int]]:
    """Committed artifacts (not temp files, not claims, not the re-assembled results)."""
    snap = {}
    for p in out.rglob("*"):
        if (p.is_file() and not p.name.startswith(".") and p.parent.name != "claims"
                and p.name != "results.nc"):
            st = p.stat()
            snap[str(p.relative_to(out))] = (st.st_ino, st.st_mtime_ns)
    return snap


def _check_complete(out: Path) -> None:
    """Every file under a final name is whole (never a partial write)."""
    for p in out.rglob("*"):
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.suffix == ".pt":
            load_torch(p)
        elif p.suffix == ".nc":
            xr.load_dataset(p, engine="h5netcdf")
        elif p.suffix in (".json", ".claim"):
            art.read_json(p)


def _check_partial_read(spec_path: Path, out: Path) -> None:
    """A reader mid-sweep sees exactly the committed points; the rest are 'missing'."""
    n_done = len(list((out / "points").glob("*.nc"))) if (out / "points").exists() else 0
    if n_done == 0:
        return
    ds = assemble(load_yaml(spec_path), out)
    status = ds["status"].values.ravel()
    assert (status == STATUS["missing"]).sum() == N_POINTS - n_done
    assert (status == STATUS["ok"]).sum() == n_done
    missing = ds["status"] == STATUS["missing"]
    assert bool(ds["test_error"].where(missing).isnull().all())
    if "regime" in ds:  # a cell with nothing computed is undetermined
        cell_missing = missing.all("dense_seed")
        reg = ds["regime"].transpose(*cell_missing.dims).values
        assert (reg[cell_missing.values] == -1).all()


def _assert_same_results(out: Path, ref: xr.Dataset) -> None:
    got = open_sweep(out)
    a, b = got.copy(), ref.copy()
    for k in ("created", "date_created", "history", "git_sha"):   # when; the commit
        a.attrs.pop(k, None)
        b.attrs.pop(k, None)
    xr.testing.assert_identical(a, b)


def _assert_clean(out: Path) -> None:
    leftovers = [str(p) for p in out.rglob(f".*{art.TMP_SUFFIX}")]
    assert not leftovers, f"temporary files left behind: {leftovers}"
    claims = list((out / "claims").glob("*")) if (out / "claims").exists() else []
    assert not claims, f"claims left behind: {claims}"


def _crash_and_resume(spec: Path, out: Path, faults, *, timer_kills=()) -> int:
    """Run ``faults`` (hooked kills) then ``timer_kills`` (SIGKILL after t seconds), checking
    the invariants after each; return the number of kills that happened."""
    kills = 0
    for fault in faults:
        before = _final_files(out) if out.exists() else {}
        r = _run(spec, out, fault)
        assert r.returncode == -signal.SIGKILL, (
            f"{fault}: expected a SIGKILL, got rc={r.returncode}: {r.stderr[-2000:]}")
        kills += 1
        after = _final_files(out)
        changed = [k for k, v in before.items() if after.get(k) != v]
        assert not changed, f"after {fault}: finished artifacts rewritten: {changed}"
        _check_complete(out)
        _check_partial_read(spec, out)
    for delay in timer_kills:
        before = _final_files(out) if out.exists() else {}
        proc = subprocess.Popen(_cmd(spec, out), env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
        after = _final_files(out)
        changed = [k for k, v in before.items() if after.get(k) != v]
        assert not changed, f"after a kill at {delay:.1f}s: finished artifacts rewritten: {changed}"
        _check_complete(out)
        _check_partial_read(spec, out)
    return kills


def _finish(spec: Path, out: Path, ref: xr.Dataset) -> None:
    before = _final_files(out)
    r = _run(spec, out)
    assert r.returncode == 0, r.stderr[-3000:]
    after = _final_files(out)
    assert all(after.get(k) == v for k, v in before.items()), "finished artifacts rewritten"
    _assert_same_results(out, ref)
    _assert_clean(out)
    st = sweep_status(out)
    assert (st.done, st.failed, st.pending) == (N_POINTS, 0, 0)
    # a rerun of a finished sweep does no work: only results.nc is written again
    run_sweep(spec, out, device="cpu", progress=False, threads=1)
    assert _final_files(out) == after


def test_sigkill_at_every_stage_loses_nothing(tiny, tmp_path):
    spec, ref = tiny
    out = tmp_path / "crashy"
    kills = _crash_and_resume(spec, out, SCHEDULE)
    assert kills >= 10
    _finish(spec, out, ref)


def test_orphan_temp_files_are_never_read_and_are_removed(tiny, tmp_path):
    """A crash mid-write leaves ``.NAME.<host>_<pid>.<id>.tmp``: never a result, and gone after
    the next run (its writer is dead); a live writer's temp file is left alone."""
    spec, ref = tiny
    out = tmp_path / "orphans"
    r = _run(spec, out, "measure:1")
    assert r.returncode == -signal.SIGKILL
    points = out / "points"
    points.mkdir(exist_ok=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # garbage under temp names of a dead writer, a live one (us), and an old foreign host
    orphan = points / f".0123456789abcdef.nc.{art._HOST}_{dead}.deadbeef.tmp"
    orphan.write_bytes(b"\x89HDF\r\n partial")
    live = points / f".fedcba9876543210.nc.{art._HOST}_{os.getpid()}.cafecafe.tmp"
    live.write_bytes(b"in progress")
    r = _run(spec, out)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not orphan.exists()
    assert live.exists()
    live.unlink()
    _assert_same_results(out, ref)


def _one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {stderr!r}"
    assert "Traceback" not in stderr
    return lines[0]


def test_ctrl_c_stops_cleanly_with_one_line(tiny, tmp_path):
    spec, ref = tiny
    out = tmp_path / "ctrlc"
    # deterministic Ctrl-C inside the second metrics task
    r = _run(spec, out, "measure:2:INT")
    assert r.returncode == 130, r.stderr[-2000:]
    line = _one_line(r.stderr)
    assert line == (f"interrupted: 1/{N_POINTS} points saved in {out}; rerun the same command "
                    "to continue")
    _assert_clean(out)          # claim released, no temp file
    _check_complete(out)
    # a real Ctrl-C from outside, as soon as the next point file appears
    proc = subprocess.Popen(_cmd(spec, out), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while (len(list((out / "points").glob("*.nc"))) < 2 and proc.poll() is None
           and time.time() - t0 < 120):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 130:       # (the sweep may have finished before the signal)
        assert "points saved in" in _one_line(err)
        _assert_clean(out)
        _check_complete(out)
    _finish(spec, out, ref)


@pytest.mark.timeout(400)
def test_two_processes_share_one_sweep(tiny, tmp_path):
    """Two concurrent runs: no point computed twice, no corrupt file, both end complete."""
    spec, ref = tiny
    out = tmp_path / "shared"
    partial_reads = []
    stop = threading.Event()

    def reader():
        spec_obj = load_yaml(spec)
        while not stop.is_set():
            if (out / "points").exists() and any((out / "points").glob("*.nc")):
                partial_reads.append(assemble(spec_obj, out))
            time.sleep(0.2)

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    procs = [subprocess.Popen(_cmd(spec, out), env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    stop.set()
    th.join()
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, e[-3000:]
        assert f"{N_POINTS}/{N_POINTS} points done" in o
    _assert_same_results(out, ref)
    _assert_clean(out)
    # each point/retrain/dense artifact was committed once: exactly the plan's files exist,
    # and each rename left one inode (a second writer would have replaced it after the first)
    assert len(list((out / "points").glob("*.nc"))) == N_POINTS
    for ds in partial_reads:     # whatever the reader caught was consistent
        n_ok = int((ds["status"] == STATUS["ok"]).sum())
        assert int((ds["status"] == STATUS["missing"]).sum()) == N_POINTS - n_ok


@pytest.mark.timeout(300)
def test_waits_for_a_live_claim_then_takes_over_a_dead_one(tiny, tmp_path):
    """A stage claimed by a live process is waited for; once that process is gone (same host),
    the claim is stale and taken over, so the run still ends with every point."""
    spec, ref = tiny
    out = tmp_path / "waits"
    r = _run(spec, out, "measure:1")   # everything up to the metrics is done
    assert r.returncode == -signal.SIGKILL
    # the dead process's claim is stale already; replace it by one of a live stranger
    claims = list((out / "claims").glob("*.claim"))
    assert len(claims) == 1
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import json
        import socket
        claims[0].write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid,
                                         "time": time.time()}))
        released = threading.Timer(4.0, holder.kill)   # the holder "crashes" after 4 s
        # (left unreaped on purpose: a zombie counts as dead)
        released.start()
        t0 = time.time()
        ds = run_sweep(spec, out, device="cpu", progress=False, threads=1, poll=0.2)
        waited = time.time() - t0
        released.cancel()
    finally:
        holder.kill()
        holder.wait()
    assert waited >= 3.5, "the run did not wait for the live claim"
    assert int((ds["status"] == STATUS["ok"]).sum()) == N_POINTS
    _assert_same_results(out, ref)
    _assert_clean(out)


@pytest.mark.slow
def test_many_random_kills(tiny, tmp_path):
    """Long version: random stages, random counts and random kill times, in fresh directories
    until at least 30 kills have happened."""
    spec, ref = tiny
    rng = random.Random(7)
    total = 0
    def stages_left(out):   # hooks that can still fire in this directory
        n_ret = len(list(out.glob("retrain/*.pt")))
        if not list(out.glob("dense/*/final.pt")):
            return ["dense", "claim", "write"]
        if n_ret < 8:
            return ["prune", "retrain", "claim", "write"]
        if len(list(out.glob("points/*.nc"))) < N_POINTS:
            return ["measure", "claim", "write"]
        return []

    round_ = 0
    while total < 30 and round_ < 10:
        out = tmp_path / f"round{round_}"
        round_ += 1
        total += _crash_and_resume(spec, out, [], timer_kills=[
            rng.uniform(3.0, 8.0) for _ in range(2)])
        for _ in range(40):
            if not stages_left(out):
                break
            stage = rng.choice(stages_left(out))
            fault = f"{stage}:{rng.randint(2, 3) if stage == 'write' else 1}"
            before = _final_files(out) if out.exists() else {}
            r = _run(spec, out, fault)
            if r.returncode == 0:
                break
            assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
            total += 1
            after = _final_files(out)
            assert all(after.get(k) == v for k, v in before.items())
            _check_complete(out)
            _check_partial_read(spec, out)
        _finish(spec, out, ref)
    assert total >= 30
    print(f"survived {total} kills in {round_} directories")


# --------------------------------------------------------------------------- spec edits
def _count_fits(monkeypatch) -> list[tuple[str, int]]:
    from threeregime.sweep import stages

    calls: list[tuple[str, int]] = []
    real = stages.fit

    def counting(*a, **k):
        calls.append((k.get("desc", "").split(" ")[0], len(k["seeds"])))
        return real(*a, **k)

    monkeypatch.setattr(stages, "fit", counting)
    return calls


def test_spec_edit_reuses_exactly_the_unchanged_stages(tiny, tmp_path, monkeypatch):
    import dataclasses
    import shutil

    from threeregime.spec.specs import spec_hash
    from threeregime.sweep.plan import plan_sweep

    spec_path, _ = tiny
    spec = load_yaml(spec_path)
    out = tmp_path / "edit"
    shutil.copytree(spec_path.parent / "ref", out)
    old = {p.name for p in out.rglob("*.pt")} | {p.name for p in out.rglob("*.nc")}
    calls = _count_fits(monkeypatch)
    # 1. change the retraining epochs: the dense run is reused, every retraining redone
    edited = dataclasses.replace(spec, base=dataclasses.replace(
        spec.base, retrain=dataclasses.replace(spec.base.retrain, epochs=2)))
    ds = run_sweep(edited, out, device="cpu", progress=False, threads=1)
    assert calls == [("retrain", 8)]
    assert ds.attrs["spec_hash"] == spec_hash(edited) != spec_hash(spec)
    assert int((ds["status"] == 0).sum()) == 4
    # never mixes: the Dataset is built from the edited spec's points only (new addresses);
    # the old points stay on disk for the old spec, unused
    plan = plan_sweep(edited)
    assert {f"{p.key}.nc" for p in plan.points}.isdisjoint(old)
    assert len(list((out / "points").glob("*.nc"))) == 8
    # 2. add a density value: dense and all old retrain/points reused, only 2x2 new retrains
    calls.clear()
    grown = dataclasses.replace(edited, axes={**edited.axes, "density": (0.2, 0.35, 0.5)})
    ds2 = run_sweep(grown, out, device="cpu", progress=False, threads=1)
    assert calls == [("retrain", 4)]
    xr.testing.assert_equal(ds2.sel(density=[0.2, 0.5])[["test_error", "lmc", "cka"]],
                                ds[["test_error", "lmc", "cka"]])
    # 3. back to the original spec: nothing to do at all
    calls.clear()
    run_sweep(spec, out, device="cpu", progress=False, threads=1)
    assert calls == []
    assert sweep_status(out).done == 4


# --------------------------------------------------------------------------- divergence
def test_diverged_point_is_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    from threeregime.cli import main

    spec = tmp_path / "div.yaml"
    div = tiny_sweep("diverging", densities=(0.2, 0.5))
    div["axes"] = {"lr": [0.1, 1.0e+6], "density": [0.2, 0.5]}
    spec.write_text(yaml.safe_dump(div, sort_keys=False))
    out = tmp_path / "div"
    assert main(["run", str(spec), "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "4/4 points done (2 diverged), 0 failed, 0 pending" in text
    ds = open_sweep(out)
    hot = ds.sel(lr=1e6)
    assert (hot["status"] == STATUS["diverged"]).all()
    for v in ("test_error", "lmc", "cka", "dense_test_error"):
        assert bool(hot[v].isnull().all()), v
    assert (hot["regime"] == -1).all()                    # undetermined
    cold = ds.sel(lr=0.1)
    assert (cold["status"] == STATUS["ok"]).all() and bool(cold["test_error"].notnull().all())
    st = sweep_status(out)
    assert (st.done, st.diverged, st.failed) == (4, 2, 0)
    # the phase diagram marks the diverged cells (hatched "xx")
    pytest.importorskip("matplotlib")
    from threeregime.analysis.plotting import PhaseDiagram

    d = PhaseDiagram.from_dataset(ds)
    art_ = d.plot()
    assert [h.get_hatch() for h in art_.hatches].count("xx") == 2   # diverged or failed
