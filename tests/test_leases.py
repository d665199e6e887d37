"""Leases (:mod:`threeregime.results.artifacts`): heartbeats, takeover from any host, one winner.

* an owner renews its lease while it works (the counter and the file's mtime advance);
* a lease of a dead owner on another host ("node-17", a pid that means nothing here) is taken
  over once its heartbeat is ``STALE_PERIODS`` periods old, and not before; the measured
  takeover time is printed;
* with the owner's clock (the lease's mtime) far in the future, the lease is still taken over,
  after the taker has seen no heartbeat for ``STALE_PERIODS`` periods of its own clock;
* racing takers: many processes try to take the same stale lease at the same instant, over
  many rounds: exactly one wins every time (also when a former taker died mid-swap);
* a paused owner (SIGSTOP) loses its lease, notices at its next heartbeat, and its release does
  not remove the new owner's lease.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from threeregime.results import artifacts as art

K = art.STALE_PERIODS


def _remote(path: Path, period: float, *, age: float = 0.0, token: str = "feedc0de") -> None:
    """A lease written by a process on another host (its pid means nothing here)."""
    path.write_text(json.dumps({"host": "node-17.cluster", "pid": 4242, "token": token,
                                "counter": 7, "time": time.time() - age, "period": period}))
    if age:
        t = time.time() - age
        os.utime(path, (t, t))


def _wait_claim(path: Path, period: float, limit: float, poll: float = 0.02) -> float:
    t0 = time.monotonic()
    while not art.claim(path, period=period):
        assert time.monotonic() - t0 < limit, "the stale lease was never taken over"
        time.sleep(poll)
    return time.monotonic() - t0


def test_owner_renews_its_lease_and_release_removes_it(tmp_path):
    p = tmp_path / "a.claim"
    assert art.claim(p, period=0.1)
    assert art.claim(p, period=0.1)            # re-entrant within one process
    first, m0 = json.loads(p.read_text()), p.stat().st_mtime_ns
    time.sleep(0.55)
    later = json.loads(p.read_text())
    assert later["counter"] >= first["counter"] + 3, (first, later)
    assert later["token"] == first["token"] and later["pid"] == os.getpid()
    assert p.stat().st_mtime_ns > m0
    assert art.holding(p)
    art.release(p)
    assert not p.exists() and not art.holding(p)
    assert not list(tmp_path.iterdir())


def test_period_from_environment(monkeypatch):
    monkeypatch.setenv("THREEREGIME_LEASE_PERIOD", "12.5")
    assert art.lease_period() == 12.5
    assert art.lease_period(2) == 2.0
    monkeypatch.setenv("THREEREGIME_LEASE_PERIOD", "soon")
    with pytest.raises(ValueError, match="THREEREGIME_LEASE_PERIOD must be a number of seconds"
                       " > 0; got 'soon'"):
        art.lease_period()
    monkeypatch.delenv("THREEREGIME_LEASE_PERIOD")
    assert art.lease_period() == art.DEFAULT_LEASE_PERIOD == 30.0
    with pytest.raises(ValueError, match="got -1"):
        art.lease_period(-1)


def test_dead_owner_on_another_host_is_taken_over_within_the_stated_time(tmp_path):
    period = 0.5
    p = tmp_path / "b.claim"
    _remote(p, period)
    assert not art.claim(p, period=period)     # fresh: a live owner elsewhere, left alone
    took = _wait_claim(p, period, limit=10 * K * period)
    print(f"\nremote dead owner (period {period} s, stale after {K} periods = "
          f"{K * period} s): taken over after {took:.2f} s")
    assert K * period - 0.1 <= took <= K * period + 0.5
    rec = json.loads(p.read_text())
    assert rec["host"] == socket.gethostname() and rec["pid"] == os.getpid()
    art.release(p)
    assert not list(tmp_path.iterdir())        # no marker, no temporary file left


def test_owner_clock_in_the_future_still_goes_stale_by_silence(tmp_path):
    """Clock skew: the lease's mtime is an hour ahead, so its age never looks old; the taker
    sees no heartbeat (counter and mtime unchanged) for K periods and takes it over."""
    period = 0.25
    p = tmp_path / "c.claim"
    _remote(p, period)
    ahead = time.time() + 3600
    os.utime(p, (ahead, ahead))
    took = _wait_claim(p, period, limit=10 * K * period)
    print(f"\nskewed clock: taken over after {took:.2f} s of silence (K * period = "
          f"{K * period} s)")
    assert K * period - 0.05 <= took <= K * period + 0.5
    art.release(p)


def test_live_owner_elsewhere_is_never_taken_over(tmp_path):
    """A live owner in another process renews its lease: far past K periods, no takeover."""
    p = tmp_path / "d.claim"
    code = ("import sys, time; from threeregime.results import artifacts as a; "
            f"assert a.claim({str(p)!r}, period=0.1); print('held', flush=True); "
            "sys.stdin.readline(); a.release(" + repr(str(p)) + ")")
    owner = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        while time.monotonic() - t0 < 6 * K * 0.1:
            assert not art.claim(p, period=0.1)
            time.sleep(0.03)
        owner.stdin.write("\n")
        owner.stdin.flush()
        assert owner.wait(timeout=20) == 0
    finally:
        owner.kill()
    assert not p.exists()


# --------------------------------------------------------------------------- racing takers
def _racer(path: str, period: float, start, done, results, rounds: int) -> None:
    for r in range(rounds):
        start.wait()
        got = art.claim(path, period=period)
        results.put((r, os.getpid(), got))
        done.wait()              # everyone has tried while the winner still holds it
        if got:
            art.release(path)
        done.wait()              # released before the next round is set up


@pytest.mark.parametrize("why", ["expired", "dead_pid", "taker_died_mid_swap"])
def test_racing_takers_exactly_one_wins(tmp_path, why):
    n, rounds = 8, 25 if why == "expired" else 10
    period = 30.0                              # the winner's lease stays live all round
    p = tmp_path / "e.claim"
    ctx = mp.get_context("fork")
    start, done = ctx.Barrier(n + 1), ctx.Barrier(n + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(str(p), period, start, done, results, rounds))
             for _ in range(n)]
    for pr in procs:
        pr.start()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    winners = []
    try:
        for r in range(rounds):
            token = f"stale{r:04d}"
            if why == "dead_pid":      # an owner on this host that is gone: stale at once
                p.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead),
                                         "token": token, "counter": 1, "period": period}))
            else:
                _remote(p, 1.0, age=3600, token=token)
            if why == "taker_died_mid_swap":   # an old marker of a taker killed mid-swap
                m = p.with_name(f"{p.name}.{token}.take0")
                m.touch()
                os.utime(m, (time.time() - 3600,) * 2)
            start.wait()
            got = [results.get(timeout=60) for _ in range(n)]
            done.wait()
            done.wait()
            assert all(g[0] == r for g in got)
            won = [g[1] for g in got if g[2]]
            assert len(won) == 1, f"round {r} ({why}): {len(won)} winners"
            winners.append(won[0])
            left = sorted(x.name for x in tmp_path.iterdir())
            assert left == [], f"round {r}: left behind {left}"
    finally:
        for pr in procs:
            pr.join(timeout=30)
            if pr.is_alive():
                pr.kill()
    print(f"\n{why}: {rounds} rounds x {n} racing takers: exactly one winner each round "
          f"({len(set(winners))} distinct winners)")


def test_paused_owner_loses_its_lease_and_leaves_the_new_one_alone(tmp_path):
    p = tmp_path / "f.claim"
    code = ("import sys, time; from threeregime.results import artifacts as a; "
            f"p = {str(p)!r}; assert a.claim(p, period=0.1); print('held', flush=True); "
            "sys.stdin.readline(); time.sleep(0.4); lost = not a.holding(p); a.release(p); "
            "print('lost' if lost else 'kept', flush=True)")
    owner = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "held"
        os.kill(owner.pid, signal.SIGSTOP)     # paused (swapped out, a stuck NFS call, ...)
        took = _wait_claim(p, 0.1, limit=10)
        assert took >= K * 0.1 - 0.05
        mine = json.loads(p.read_text())["token"]
        os.kill(owner.pid, signal.SIGCONT)
        owner.stdin.write("\n")
        owner.stdin.flush()
        assert owner.stdout.readline().strip() == "lost"
        assert owner.wait(timeout=20) == 0
        assert json.loads(p.read_text())["token"] == mine   # its release left ours alone
        time.sleep(0.3)
        assert art.holding(p)
    finally:
        owner.kill()
    art.release(p)
    assert not p.exists()


def test_clean_claims_removes_dead_leases_and_orphan_markers_only(tmp_path):
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)
    (tmp_path / "dead.claim").write_text(json.dumps({"host": socket.gethostname(),
                                                     "pid": dead, "time": time.time()}))
    _remote(tmp_path / "remote.claim", 30.0, token="aaaa")
    (tmp_path / "remote.claim.aaaa.take0").touch()     # a taker working on it now: kept
    (tmp_path / "remote.claim.bbbb.take0").touch()     # of a lease long gone: removed
    assert art.claim(tmp_path / "mine.claim")
    assert art.clean_claims(tmp_path) == 1
    assert sorted(x.name for x in tmp_path.iterdir()) == [
        "mine.claim", "remote.claim", "remote.claim.aaaa.take0"]
    art.release(tmp_path / "mine.claim")


def test_trace_hook_records_claims_takeovers_and_writes(tmp_path):
    log = tmp_path / "trace.log"
    code = ("import json, os; from threeregime.results import artifacts as a; "
            f"d = {str(tmp_path)!r};"
            "a.claim(d + '/x.claim'); a.write_json(d + '/x.json', 1); a.release(d + '/x.claim')")
    _remote(tmp_path / "y.claim", 0.01, age=60)
    code += "; a.claim(d + '/y.claim'); a.release(d + '/y.claim')"
    env = dict(os.environ, THREEREGIME_TRACE=str(log))
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    events = [ln.split()[:2] for ln in log.read_text().splitlines()]
    assert events == [["claim", "x.claim"], ["write", str(tmp_path / "x.json")],
                      ["release", "x.claim"], ["takeover:expired", "y.claim"],
                      ["release", "y.claim"]]
    assert art.trace is art._no_trace          # unset here: the free hook
