"""Atomic files and leases: the durability layer of the sweep driver.

Every artifact is written to a unique temporary name in its final directory, flushed and
fsynced, then renamed over the final name (``os.replace`` is atomic on POSIX), so a reader sees
either nothing or a complete file, and a crash at any moment leaves at most an orphaned
``.tmp`` file, which is never read as a result and is removed by :func:`clean_temp`.

Claims (``claim``/``release``) let several processes, on one host or many, share one sweep
directory.  A claim is a **lease**: a file created complete (written to a temporary file, then
hard-linked to its name, so it is never seen empty) holding the owner's host, pid, a unique
token, its period and a heartbeat counter.  While the owner works, a daemon thread rewrites
the lease in place every ``period`` seconds (default 30, ``THREEREGIME_LEASE_PERIOD`` or
``claim(period=)``), incrementing the counter and fsyncing it.  A lease is stale, and is taken
over by any host, when its heartbeat is more than :data:`STALE_PERIODS` of its own periods old,
judged by the file's mtime against the mtime of a file the taker has just written in the same
directory (both stamped by the same clock: the file server's, so client clocks may be skewed),
or by the taker having seen no heartbeat for that long on its own monotonic clock.  On the same
host a lease whose process is gone is stale at once.  Exactly one taker wins: the takeover of
the lease with token ``T`` first creates ``<lease>.<T>.take<i>`` with ``O_CREAT | O_EXCL``,
which only one process can do (a taker that dies in between leaves a marker that itself goes
stale after the same time, and generation ``i + 1`` is tried); the winner checks the lease
still is the one it judged, then renames its own complete lease over it.  An owner whose lease
was taken over notices at its next heartbeat (the name no longer points at its file) and stops
renewing; its writes are still atomic and deterministic, so the cost is time, not results.

Fault injection (a named test hook, :func:`fault`): the durability layer is tested by crashing
a sweep at each point of :data:`FAULT_POINTS`.  With ``THREEREGIME_FAULT=point:n`` in the
environment when this module is imported, the process SIGKILLs itself (``point:n:INT``: sends
itself SIGINT, a Ctrl-C) at its n-th call of ``fault(point)``.  Unset (the normal case),
``fault`` is a function that does nothing, bound once at import: no parsing, no lookup.
Likewise ``THREEREGIME_TRACE=FILE`` makes :func:`trace` append one line per event (a lease
claimed, taken over, lost; an artifact committed) to ``FILE``: how tests count computations
across processes and hosts.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ResultsError

TMP_SUFFIX = ".tmp"
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
# ".<name>.<host hash>_<pid>.<random>.tmp": clean_temp knows whose temporary file it is
_TMP_OWNER = re.compile(r"\.([0-9a-f]{8})_(\d+)\.[0-9a-f]{8}\.tmp")

#: The named fault points of the package (see the module docstring):
#: dense / prune / retrain / measure: inside the stage, before its work is committed;
#: claim: before a claim file is created; write: a complete temporary file not yet renamed.
FAULT_POINTS = ("dense", "prune", "retrain", "measure", "claim", "write")


def _no_fault(point: str) -> None:
    """Fault hook when ``THREEREGIME_FAULT`` is unset: free."""


def _fault_injector(setting: str) -> Callable[[str], None]:
    """The armed hook for ``THREEREGIME_FAULT=point:n[:SIGNAL]``."""
    parts = setting.split(":")
    want = parts[0]
    n = int(parts[1]) if len(parts) > 1 else 1
    sig = getattr(signal, f"SIG{parts[2] if len(parts) > 2 else 'KILL'}")
    if want not in FAULT_POINTS:
        raise ValueError(f"THREEREGIME_FAULT point must be one of {', '.join(FAULT_POINTS)}; "
                         f"got {want!r}")
    calls = [0]

    def fault(point: str) -> None:
        if point != want:
            return
        calls[0] += 1
        if calls[0] == n:
            os.kill(os.getpid(), sig)
    return fault


#: ``fault(point)``: the test hook called at each of :data:`FAULT_POINTS`.
fault: Callable[[str], None] = (_fault_injector(os.environ["THREEREGIME_FAULT"])
                                if os.environ.get("THREEREGIME_FAULT") else _no_fault)


def _no_trace(event: str, name: str) -> None:
    """Trace hook when ``THREEREGIME_TRACE`` is unset: free."""


def _tracer(target: str) -> Callable[[str, str], None]:
    """The armed hook for ``THREEREGIME_TRACE=FILE``: one appended line per event."""
    host = socket.gethostname()

    def trace(event: str, name: str) -> None:
        line = f"{event} {name} {host} {os.getpid()} {time.time():.3f}\n".encode()
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)   # one small O_APPEND write: lines of processes never mix
        finally:
            os.close(fd)
    return trace


#: ``trace(event, name)``: events ``claim``, ``takeover:<why>``, ``release``, ``lost`` (a lease
#: name) and ``write`` (an artifact's path); free when ``THREEREGIME_TRACE`` is unset.
trace: Callable[[str, str], None] = (_tracer(os.environ["THREEREGIME_TRACE"])
                                     if os.environ.get("THREEREGIME_TRACE") else _no_trace)


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{_HOST}_{os.getpid()}.{uuid.uuid4().hex[:8]}"
                          f"{TMP_SUFFIX}")


def _fsync_dir(folder: Path) -> None:
    """Flush a directory entry (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` then atomically move the result to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        writer(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        fault("write")
        os.replace(tmp, path)
        trace("write", str(path))
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ResultsError(f"cannot write {path}: {e.strerror or e} (check free disk space "
                           "and write permission of the output directory)") from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)  # make the rename itself durable
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    text = json.dumps(obj, indent=1, sort_keys=True, default=str)
    return atomic_write(path, lambda p: p.write_text(text))


def read_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        msg = f"{path} is unreadable or corrupt ({e}); delete it to recompute"
        raise ResultsError(msg) from None


def clean_temp(root: str | Path, *, max_age: float = 3600.0) -> int:
    """Remove orphaned temporary files under ``root``; return the count.

    A temporary file written on this host is orphaned when the process named in it is gone
    (a crash); one from another host, or without an owner in its name, when it is older than
    ``max_age`` seconds.  Files of live writers are left alone.
    """
    n = 0
    now = time.time()
    for p in Path(root).rglob(f".*{TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            m = _TMP_OWNER.search(p.name)
            if m and m.group(1) == _HOST:
                orphan = int(m.group(2)) != os.getpid() and not _pid_alive(int(m.group(2)))
            else:
                orphan = now - p.stat().st_mtime > max_age
            if orphan:
                p.unlink()
                n += 1
    return n


# --------------------------------------------------------------------------- leases
#: A lease whose heartbeat is more than this many of its periods old is stale.
STALE_PERIODS = 4
DEFAULT_LEASE_PERIOD = 30.0


def lease_period(period: float | None = None) -> float:
    """Seconds between heartbeats: ``period``, else ``$THREEREGIME_LEASE_PERIOD``, else 30."""
    if period is None:
        text = os.environ.get("THREEREGIME_LEASE_PERIOD", "").strip()
        try:
            period = float(text) if text else DEFAULT_LEASE_PERIOD
        except ValueError:
            raise ValueError(f"THREEREGIME_LEASE_PERIOD must be a number of seconds > 0; got "
                             f"{text!r}") from None
    if not (isinstance(period, (int, float)) and 0 < period < float("inf")):
        raise ValueError(f"lease period must be a number of seconds > 0; got {period!r}")
    return float(period)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (dead, not yet reaped by its parent) is not alive
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@dataclass
class _Lease:
    """A lease this process holds: its open file (renewed in place) and its record."""

    path: Path
    fd: int
    rec: dict
    due: float          # time.monotonic() of the next heartbeat
    lost: bool = False


_held: dict[str, _Lease] = {}        # absolute path -> lease held by this process
_seen: dict[str, tuple] = {}         # absolute path -> (heartbeat seen, monotonic time first seen)
_lock = threading.RLock()
_wake = threading.Event()
_beater: list[threading.Thread] = []


def _put(fd: int, rec: dict) -> None:
    """Write the record in place (fixed size: a rewrite never leaves a shorter tail)."""
    os.pwrite(fd, json.dumps(rec).encode().ljust(255) + b"\n", 0)
    os.fsync(fd)     # a heartbeat must reach the file server, not wait in a client cache


def _read_lease(path: Path) -> tuple[dict, os.stat_result] | None:
    """The lease record and its file's stat (taken after open: fresh on NFS), None if absent."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        rec = json.loads(data or b"{}")
    except ValueError:
        rec = {}     # torn read of a heartbeat: judged by its mtime and counter alone
    return (rec if isinstance(rec, dict) else {}), st


def _token(rec: dict, st: os.stat_result) -> str:
    # claims of older versions carry no token: their inode and mtime identify them
    return str(rec.get("token") or f"i{st.st_ino}m{st.st_mtime_ns}")


def _stale(path: Path, rec: dict, st: os.stat_result, now: float, period: float) -> str | None:
    """Why the lease is stale (``dead``, ``expired``, ``silent``), or None while it is live.

    ``now`` is the mtime of a file just written next to the lease: the same clock as the
    lease's own mtime (on NFS/Lustre the server's), whatever the clocks of the clients.
    """
    host, pid = rec.get("host"), rec.get("pid")
    if host == socket.gethostname() and isinstance(pid, int):
        if pid != os.getpid() and not _pid_alive(pid):
            return "dead"
        if pid == os.getpid() and not any(h.rec.get("token") == rec.get("token")
                                          for h in _held.values()):
            return "dead"   # names this process, which does not hold it: a former life
    try:
        limit = STALE_PERIODS * lease_period(rec.get("period", period))
    except ValueError:
        limit = STALE_PERIODS * period
    if now - st.st_mtime > limit:
        return "expired"
    beat = (_token(rec, st), rec.get("counter"), st.st_mtime_ns)
    key = os.path.abspath(path)
    last = _seen.get(key)
    if last is None or last[0] != beat:
        _seen[key] = (beat, time.monotonic())
        return None
    return "silent" if time.monotonic() - last[1] > limit else None


def _take_over(path: Path, rec: dict, st: os.stat_result, mine: Path, now: float,
               limit: float) -> bool:
    """Compare-and-swap the stale lease (``rec``, ``st``) for ours (complete at ``mine``)."""
    token = _token(rec, st)
    for gen in range(64):
        marker = path.with_name(f"{path.name}.{token}.take{gen}")
        try:   # only one process creates this name: the one that may swap the lease
            os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            break
        except FileExistsError:
            with contextlib.suppress(OSError):   # a taker that died mid-swap: next generation
                if now - marker.stat().st_mtime > limit:
                    continue
            return False
    else:
        return False
    cur = _read_lease(path)
    if cur is None or _token(*cur) != token or cur[1].st_ino != st.st_ino:
        with contextlib.suppress(OSError):
            marker.unlink()     # released or replaced meanwhile: judge it again
        return False
    os.replace(mine, path)
    _drop_markers(path, token)
    return True


def _drop_markers(path: Path, token: str) -> None:
    for m in path.parent.glob(f"{path.name}.{token}.take*"):
        with contextlib.suppress(OSError):
            m.unlink()


def _beat() -> None:
    """Heartbeat thread: renew every held lease each period; notice a lease taken over."""
    while True:
        with _lock:
            now = time.monotonic()
            for lease in list(_held.values()):
                if lease.lost or now < lease.due:
                    continue
                try:
                    lost = os.stat(lease.path).st_ino != os.fstat(lease.fd).st_ino
                except OSError:
                    lost = True
                if lost:
                    lease.lost = True
                    trace("lost", lease.path.name)
                    continue
                lease.rec.update(counter=lease.rec["counter"] + 1, time=time.time())
                with contextlib.suppress(OSError):
                    _put(lease.fd, lease.rec)
                lease.due = now + lease.rec["period"]
            dues = [h.due for h in _held.values() if not h.lost]
        _wake.wait(timeout=max(0.01, min(dues) - time.monotonic()) if dues else None)
        _wake.clear()


def _register(path: Path, fd: int, rec: dict) -> None:
    with _lock:
        _held[os.path.abspath(path)] = _Lease(path, fd, rec, time.monotonic() + rec["period"])
        _seen.pop(os.path.abspath(path), None)
        if not _beater:
            _beater.append(threading.Thread(target=_beat, name="threeregime-lease",
                                            daemon=True))
            _beater[0].start()
    _wake.set()


def _after_fork() -> None:   # a forked child holds none of its parent's leases
    global _lock
    _lock = threading.RLock()
    _held.clear()
    _seen.clear()
    _beater.clear()


os.register_at_fork(after_in_child=_after_fork)


def _attempt(path: Path, period: float, note: str) -> str | None:
    """One try: ``claim`` / ``takeover:<why>`` when this process got the lease, ``busy``
    when a live owner holds it, None when it changed meanwhile (try again)."""
    mine = _tmp_name(path)
    fd = os.open(mine, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    rec = {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex,
           "counter": 0, "time": time.time(), "period": period}
    got = None
    try:
        _put(fd, rec)
        try:
            os.link(mine, path)   # atomic, fails if the lease exists: never an empty claim
            got = "claim"
        except FileExistsError:
            seen = _read_lease(path)
            if seen is None:
                return None       # released meanwhile
            now = os.fstat(fd).st_mtime
            why = _stale(path, *seen, now, period)
            if why is None:
                return "busy"
            limit = STALE_PERIODS * period
            if not _take_over(path, *seen, mine, now, limit):
                return None
            got = f"takeover:{why}{note}"
        _register(path, fd, rec)
        trace(got, path.name)
        return got
    finally:
        if got is None:
            os.close(fd)
        with contextlib.suppress(OSError):
            mine.unlink()


def claim(path: str | Path, *, period: float | None = None) -> bool:
    """Try to take the lease ``path``; True if this process now holds it.

    A live owner's lease is left alone (False); a stale one (see the module docstring) is
    taken over by exactly one of the processes trying.  While held, the lease is renewed every
    ``period`` seconds (default :func:`lease_period`) until :func:`release`.
    """
    return _claim(Path(path), lease_period(period))


def _claim(path: Path, period: float, note: str = "") -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock:
        held = _held.get(os.path.abspath(path))
        if held is not None and not held.lost:
            return True
    for _ in range(3):
        if not note:
            fault("claim")
        got = _attempt(path, period, note)
        if got is not None:
            return got != "busy"
    return False


def holding(path: str | Path) -> bool:
    """True while this process holds the lease ``path`` (claimed, not released, not lost)."""
    held = _held.get(os.path.abspath(path))
    return held is not None and not held.lost


def release(path: str | Path) -> None:
    """Give the lease up: remove it unless it was taken over (then it is another's now)."""
    with _lock:
        held = _held.pop(os.path.abspath(path), None)
        if held is None:
            return
        trace("release", held.path.name)
        with contextlib.suppress(OSError):
            if not held.lost and os.stat(held.path).st_ino == os.fstat(held.fd).st_ino:
                held.path.unlink()
        os.close(held.fd)


def clean_claims(folder: str | Path) -> int:
    """Remove the leases in ``folder`` left by dead processes of this host, and orphaned
    takeover markers; return the count of leases removed."""
    n = 0
    folder = Path(folder)
    host = socket.gethostname()
    for p in folder.glob("*.claim"):
        seen = _read_lease(p)
        if seen is None or seen[0].get("host") != host or holding(p):
            continue
        pid = seen[0].get("pid")
        if (isinstance(pid, int) and not _pid_alive(pid)
                and _claim(p, lease_period(), ":clean")):    # a takeover (CAS), not work
            release(p)
            n += 1
    for m in folder.glob("*.claim.*.take*"):
        lease = m.with_name(m.name.split(".claim.", 1)[0] + ".claim")
        cur = _read_lease(lease)
        if cur is None or not m.name.startswith(f"{lease.name}.{_token(*cur)}."):
            with contextlib.suppress(OSError):
                m.unlink()
    return n


@contextlib.contextmanager
def claimed(path: str | Path, **kw) -> Iterator[bool]:
    got = claim(path, **kw)
    try:
        yield got
    finally:
        if got:
            release(path)
